"""Whole-image inference for any dense scorer: resize, sliding window, labels at full size.

A *scorer* is any callable ``(B, 3, h, w) normalised images -> (B, K, h, w) logits`` (the
teacher's ``predict_logits``, the student's). Nothing here knows which model it runs.

- :func:`resize_short_side`: shrink (enlarge) an image so its short side is at most
  ``max_size`` (at least ``min_size``).
- :func:`sliding_window_logits`: logits averaged over ``window`` crops taken every ``stride``
  pixels (MMSegmentation's ``slide`` mode: the last crop of a row or column is moved back to
  end at the border; an image smaller than the window is one crop).
- :func:`decode_logits`: upsample logits bilinearly to the original size in row bands (memory
  ``K x band x W``, never ``K x H x W`` floats), then per pixel the argmax, an optional
  confidence threshold (``softmax(scale * logits)``; below it -> 255), and optional per-class
  confidence maps as uint8.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Scorer = Callable[[torch.Tensor], torch.Tensor]

NO_CLASS = 255  #: mask value for pixels given no class


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


@dataclass
class Decoded:
    """Per-pixel results at the original size."""

    mask: torch.Tensor  #: (H, W) uint8: class index, or NO_CLASS below the threshold
    confidence: torch.Tensor | None  #: (K, H, W) uint8 probabilities x 255 (if asked)
    pixels_per_class: list[int]  #: pixels given each class


def _band_grid(rows: range, h_out: int, w_out: int, device: torch.device) -> torch.Tensor:
    """``grid_sample`` grid for output rows ``rows``: bilinear, align_corners=False."""
    ys = (2 * torch.arange(rows.start, rows.stop, device=device) + 1) / h_out - 1
    xs = (2 * torch.arange(w_out, device=device) + 1) / w_out - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)[None].float()


@torch.no_grad()
def decode_logits(
    logits: torch.Tensor,
    size: tuple[int, int],
    *,
    scale: float = 1.0,
    threshold: float | None = None,
    confidence_maps: bool = False,
    band_elements: int = 1 << 24,
) -> Decoded:
    """(K, h, w) logits -> labels (and confidences) at ``size`` = (H, W).

    The upsampling equals ``F.interpolate(..., mode="bilinear", align_corners=False)``; it runs
    in bands of rows so that at most ``band_elements`` floats are live. ``scale`` multiplies
    the logits before the softmax (100 for CLIP cosine scores).
    """
    if logits.ndim != 3:
        raise ValueError(f"expected (K, h, w) logits, got shape {tuple(logits.shape)}")
    k = logits.shape[0]
    h_out, w_out = int(size[0]), int(size[1])
    src = logits.float()[None]
    device = src.device
    need_probs = threshold is not None or confidence_maps
    mask = torch.empty(h_out, w_out, dtype=torch.uint8, device=device)
    conf = (
        torch.empty(k, h_out, w_out, dtype=torch.uint8, device=device) if confidence_maps else None
    )
    band = max(1, band_elements // max(1, k * w_out))
    same = tuple(src.shape[-2:]) == (h_out, w_out)
    for r0 in range(0, h_out, band):
        rows = range(r0, min(r0 + band, h_out))
        if same:
            up = src[0, :, rows.start : rows.stop]
        else:
            grid = _band_grid(rows, h_out, w_out, device)
            up = F.grid_sample(
                src, grid, mode="bilinear", padding_mode="border", align_corners=False
            )[0]
        if need_probs:
            probs = torch.softmax(up * scale, dim=0)
            best, idx = probs.max(dim=0)
            if threshold is not None:
                idx = torch.where(best >= threshold, idx, torch.full_like(idx, NO_CLASS))
            if conf is not None:
                conf[:, rows.start : rows.stop] = (probs * 255).round().to(torch.uint8)
        else:
            idx = up.argmax(dim=0)
        mask[rows.start : rows.stop] = idx.to(torch.uint8)
    counts = torch.bincount(mask.flatten().long(), minlength=256)[:k]
    return Decoded(mask=mask, confidence=conf, pixels_per_class=[int(c) for c in counts])
