"""Logits to labels at the original size: :func:`decode_logits` upsamples bilinearly in row
bands (memory ``K x band x W``, never ``K x H x W`` floats), then per pixel takes the argmax,
an optional confidence threshold (``softmax(scale * logits)``; below it -> 255), and optional
per-class confidence maps as uint8.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from src.pictures.palette import NO_CLASS  # the mask value of pixels given no class


@dataclass
class Decoded:
    """Per-pixel results at the original size."""

    mask: torch.Tensor  #: (H, W) uint8: class index, or NO_CLASS below the threshold
    confidence: torch.Tensor | None  #: (K, H, W) uint8 probabilities x 255 (if asked)
    pixels_per_class: list[int]  #: pixels given each class
    logits: torch.Tensor | None = None  #: (K, H, W) float32 logits the mask was taken from


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
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    background: bool = False,
    keep_logits: bool = False,
) -> Decoded:
    """(Q, h, w) logits -> labels (and confidences) at ``size`` = (H, W).

    The upsampling equals ``F.interpolate(..., mode="bilinear", align_corners=False)``; it runs
    in bands of rows so that at most ``band_elements`` floats are live. ``reduce`` turns the
    upsampled ``(1, Q, band, W)`` scores into class scores (a teacher's names -> classes;
    None: they are already). ``scale`` multiplies the class scores before the softmax (100 for
    CLIP cosine scores). With ``background``, class score 0 is "none of these": pixels it wins
    get :data:`NO_CLASS` and class ``i`` is score ``i + 1`` (its confidence map is not kept). ``keep_logits`` also returns
    the upsampled class scores ((K, H, W), with the background score first when
    ``background``: the scores the mask was taken from; that one tensor holds every band).
    """
    if logits.ndim != 3:
        raise ValueError(f"expected (K, h, w) logits, got shape {tuple(logits.shape)}")
    q = logits.shape[0]
    k = q
    if reduce is not None:
        k = int(reduce(logits[None, :, :1, :1].float()).shape[1])
    offset = 1 if background else 0
    k -= offset
    h_out, w_out = int(size[0]), int(size[1])
    src = logits.float()[None]
    device = src.device
    need_probs = threshold is not None or confidence_maps
    mask = torch.empty(h_out, w_out, dtype=torch.uint8, device=device)
    conf = (
        torch.empty(k, h_out, w_out, dtype=torch.uint8, device=device) if confidence_maps else None
    )
    kept = torch.empty(k + offset, h_out, w_out, device=device) if keep_logits else None
    band = max(1, band_elements // max(1, max(q, k + offset) * w_out))
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
        if reduce is not None:
            up = reduce(up[None])[0].float()
        if kept is not None:
            kept[:, rows.start : rows.stop] = up
        if need_probs:
            probs = torch.softmax(up * scale, dim=0)
            best, idx = probs.max(dim=0)
            if threshold is not None:
                idx = torch.where(best >= threshold, idx, torch.full_like(idx, NO_CLASS))
            if conf is not None:
                conf[:, rows.start : rows.stop] = (probs[offset:] * 255).round().to(torch.uint8)
        else:
            idx = up.argmax(dim=0)
        if offset:
            idx = torch.where((idx == 0) | (idx == NO_CLASS), NO_CLASS, idx - offset)
        mask[rows.start : rows.stop] = idx.to(torch.uint8)
    counts = torch.bincount(mask.flatten().long(), minlength=256)[:k]
    return Decoded(
        mask=mask, confidence=conf, pixels_per_class=[int(c) for c in counts], logits=kept
    )
