"""Sizing and sliding windows for any dense scorer.

A *scorer* is any callable ``(B, 3, h, w) normalised images -> (B, K, h, w) logits`` (the
teacher's ``predict_logits``, the student's). Nothing here knows which model it runs.

- :func:`resize_short_side`: shrink (enlarge) an image so its short side is at most
  ``max_size`` (at least ``min_size``).
- :func:`sliding_window_logits`: logits averaged over ``window`` crops taken every ``stride``
  pixels (MMSegmentation's ``slide`` mode: the last crop of a row or column is moved back to
  end at the border; an image smaller than the window is one crop).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Scorer = Callable[[torch.Tensor], torch.Tensor]


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


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of the crops along one axis (the last one ends at the border)."""
    if length <= window:
        return [0]
    count = (length - window + stride - 1) // stride + 1
    return sorted({min(i * stride, length - window) for i in range(count)})


@torch.no_grad()
def sliding_window_logits(
    scorer: Scorer, image: torch.Tensor, *, window: int, stride: int, batch_size: int = 4
) -> torch.Tensor:
    """(1, 3, H, W) -> (1, K, H, W) logits averaged over overlapping crops."""
    if window <= 0 or stride <= 0 or stride > window:
        raise ValueError(f"need 0 < stride <= window, got window={window}, stride={stride}")
    _, _, h, w = image.shape
    boxes = [
        (y, x, min(y + window, h), min(x + window, w))
        for y in window_starts(h, window, stride)
        for x in window_starts(w, window, stride)
    ]
    total: torch.Tensor | None = None
    count = torch.zeros(1, 1, h, w, device=image.device)
    for start in range(0, len(boxes), max(1, batch_size)):
        group = boxes[start : start + batch_size]
        crops = torch.cat([image[..., y0:y1, x0:x1] for y0, x0, y1, x1 in group])
        logits = scorer(crops).float()
        if total is None:
            total = logits.new_zeros(1, logits.shape[1], h, w)
        for (y0, x0, y1, x1), crop_logits in zip(group, logits, strict=True):
            total[0, :, y0:y1, x0:x1] += crop_logits
            count[..., y0:y1, x0:x1] += 1
    assert total is not None
    return total / count
