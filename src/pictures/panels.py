"""Validation panels: ``image | teacher | student | ground truth`` side by side.

Colours: :func:`src.pictures.palette.label_palette` by class index (the data module's
``class_names`` order); predictions on pixels the metric ignores (void) are shown faded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from src.batch import IGNORE_INDEX
from src.pictures.palette import colorize, label_palette

PALETTE = label_palette()


def denormalise(image: torch.Tensor, mean: Any, std: Any) -> np.ndarray:
    """(3, H, W) normalised tensor -> (H, W, 3) uint8."""
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    rgb = (image.detach().float().cpu() * s + m).clamp(0, 1)
    return (rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def panel(
    image: np.ndarray, *labels: np.ndarray, gap: int = 4, void: np.ndarray | None = None
) -> np.ndarray:
    """Side by side: the image (resized to the labels' size) then each colourised label map.

    ``void``: (H, W) bool, pixels the metric ignores; predictions there are shown faded.
    """
    h, w = labels[0].shape
    if image.shape[:2] != (h, w):
        image = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    sep = np.full((h, gap, 3), 255, dtype=np.uint8)
    parts = [image]
    for lab in labels:
        pic = colorize(lab, PALETTE)
        if void is not None:
            fade = void & (lab != IGNORE_INDEX)  # the truth's own void keeps its colour
            pic = np.where(fade[..., None], pic // 2 + 128, pic).astype(np.uint8)
        parts += [sep, pic]
    return np.concatenate(parts, axis=1)
