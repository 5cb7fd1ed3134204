"""Confidence maps as colour pictures (the web page's gallery; the files stay grey-level)."""

from __future__ import annotations

import numpy as np


def confidence_heatmap(confidence: np.ndarray, *, cmap: str = "inferno") -> np.ndarray:
    """(H, W) confidence (uint8 probability x 255, or floats in [0, 1]) -> (H, W, 3) uint8 RGB
    through a matplotlib colour map (the qualitative grids' ``inferno``: dark is 0, yellow 1)."""
    from matplotlib import colormaps

    values = np.asarray(confidence)
    if values.dtype == np.uint8:
        values = values.astype(np.float32) / 255.0
    lut = (colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)
    return lut[np.clip(np.rint(values * 255), 0, 255).astype(np.intp)]
