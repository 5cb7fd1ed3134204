"""The one palette: PASCAL colours for class indices, one void colour, colourised masks.

- :func:`pascal_palette`: the PASCAL VOC colour map (the datasets' label colours too).
- :func:`prediction_palette`: colours for a free-text vocabulary (never black, unless the
  class is called ``background``), used by predict's masks and overlays and the grids.
- :func:`label_palette`: colours by class index of a dataset (``background`` = 0 is black),
  used by the validation panels.
- :data:`VOID_COLOR`: pixels with no class (mask values 254 and 255), everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

VOID_COLOR = (224, 224, 192)  #: VOC's void colour: pixels given no class (254, 255)
MAX_CLASSES = 254  #: mask values 254 and 255 are reserved
NO_CLASS = 255  #: the mask value of pixels given no class (drawn in :data:`VOID_COLOR`)


def pascal_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map, ``(n, 3)`` uint8: row ``i`` is the colour of value ``i``.

    Row 0 is black (background) and row 255 is :data:`VOID_COLOR`.
    """
    out = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out[i] = (r, g, b)
    return out


def label_palette() -> np.ndarray:
    """``(256, 3)`` uint8 colours by a dataset's class index (the PASCAL map: 0 is black),
    :data:`VOID_COLOR` for 254 and 255."""
    palette = pascal_palette(256)
    palette[254] = palette[255] = VOID_COLOR
    return palette


def prediction_palette(class_names: Sequence[str]) -> np.ndarray:
    """``(256, 3)`` uint8 colours indexed by mask value for a free-text vocabulary.

    Class ``i`` gets PASCAL colour ``i + 1`` (distinct, never black); a class called
    ``background`` is black; 254 and 255 are :data:`VOID_COLOR`.
    """
    if not 0 < len(class_names) <= MAX_CLASSES:
        raise ValueError(f"need 1..{MAX_CLASSES} classes, got {len(class_names)}")
    base = pascal_palette(256)
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[:255] = base[1:256]
    for i, name in enumerate(class_names):
        if str(name).strip().lower() == "background":
            palette[i] = (0, 0, 0)
    palette[254] = palette[255] = VOID_COLOR
    return palette


def colorize(mask: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """``(H, W)`` class indices -> ``(H, W, 3)`` uint8 RGB (values clipped to 0..255)."""
    index = np.clip(np.asarray(mask), 0, len(palette) - 1).astype(np.intp)
    return np.asarray(palette, dtype=np.uint8)[index]


def mask_image(mask: np.ndarray, palette: np.ndarray) -> Image.Image:
    """(H, W) uint8 mask -> a palette ('P') PIL image whose values are the class indices."""
    im = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    im.putpalette(np.asarray(palette, dtype=np.uint8).reshape(-1).tolist())
    return im
