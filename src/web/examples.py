"""Built-in example images for the web page: scenes drawn by the shapes world's two
renderers, so the page works offline with the shipped ``tiny_shapes`` teacher."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from src.data.shapes import ShapesConfig, render_scene
from src.data.shapes_independent import IndependentConfig, render_independent
from src.utils.io import atomic_save_image

#: the classes the shipped tiny CLIPs know, as typed in the page
SHAPE_CLASSES = "circle, square, triangle"


def example_scenes(count: int = 4) -> list[tuple[str, np.ndarray]]:
    """``count`` (name, RGB image) pairs: validation scenes of the shapes world and of its
    independent renderer, alternating, at the sizes the tiny CLIPs were trained at (they are
    not scale-robust); deterministic."""
    main = ShapesConfig(min_shapes=2)
    other = IndependentConfig(max_shapes=4)
    out: list[tuple[str, np.ndarray]] = []
    for i in range(count):
        if i % 2 == 0:
            out.append((f"shapes_{i // 2}", render_scene(main, i // 2, "val").image))
        else:
            out.append((f"shapes_independent_{i // 2}", render_independent(other, i // 2)[0]))
    return out


def write_examples(folder: str | os.PathLike, count: int = 4) -> list[Path]:
    """Write :func:`example_scenes` as PNG files into ``folder``; their paths."""
    paths = []
    for name, image in example_scenes(count):
        path = Path(folder) / f"{name}.png"
        atomic_save_image(path, Image.fromarray(image))
        paths.append(path)
    return paths
