"""Sizing of images for any dense model, and the sliding windows of the one scoring path.

- :func:`resize_short_side`: shrink (enlarge) an image so its short side is at most
  ``max_size`` (at least ``min_size``).
- :func:`sliding_window_logits`, :func:`window_starts`: defined in :mod:`src.scoring` (scores
  averaged over ``window`` crops taken every ``stride`` pixels, MMSegmentation's ``slide``
  mode), named here too for prediction code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from src.scoring import Scorer, sliding_window_logits, window_starts

__all__ = ["Scorer", "resize_short_side", "sliding_window_logits", "window_starts"]


def resize_short_side(
    image: torch.Tensor, max_size: int | None, min_size: int | None = None
) -> torch.Tensor:
    """(B, 3, H, W) resized so that ``min_size <= min(H, W) <= max_size`` (``None``: no bound).

    Shrinking is antialiased; the aspect ratio is kept.
    """
    h, w = image.shape[-2:]
    short = min(h, w)
    if max_size is not None and short > max_size:
        scale = max_size / short
    elif min_size is not None and short < min_size:
        scale = min_size / short
    else:
        return image
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(
        image, size=size, mode="bilinear", align_corners=False, antialias=scale < 1
    )
