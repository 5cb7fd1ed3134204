"""The student's training targets: teacher (or self) labels on unlabelled pixels, crops."""

from __future__ import annotations

import torch
from torch import Tensor

from src.batch import IGNORE_INDEX, UNLABELLED


def build_targets(target: Tensor, candidates: Tensor, scores: Tensor) -> Tensor:
    """Fill ``UNLABELLED`` pixels of ``target`` with the argmax of ``scores`` over candidates.

    ``target`` (B, H, W) int64, ``candidates`` (B, K) bool, ``scores`` (B, K, H, W) in the data
    module's class space. Labelled pixels and void (255) are kept; an image without candidates,
    and a pixel where no candidate has a finite score (the teacher gave it no class), get void
    where they were unlabelled.
    """
    unlabelled = target == UNLABELLED
    if not bool(unlabelled.any()):
        return target
    cand = candidates.to(device=scores.device, dtype=torch.bool)
    masked = scores.detach().float().masked_fill(~cand[:, :, None, None], float("-inf"))
    pseudo = masked.argmax(dim=1)
    pseudo = torch.where(torch.isfinite(masked.amax(dim=1)), pseudo, IGNORE_INDEX)
    return torch.where(unlabelled, pseudo, target)


def ignore_unlabelled(target: Tensor) -> Tensor:
    """``target`` with its ``UNLABELLED`` pixels made void (255): seen-only training.

    The paper's "adapted DeepLabv2" (Table 2a, first row): unseen pixels take no part in the
    loss, so the text classifier learns the seen classes only.
    """
    return target.masked_fill(target == UNLABELLED, IGNORE_INDEX)


def random_crops(images: Tensor, target: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """One random ``size`` x ``size`` window per sample (the whole side where it is smaller)."""
    b, _, h, w = images.shape
    ch, cw = min(size, h), min(size, w)
    if (ch, cw) == (h, w):
        return images, target
    ys = torch.randint(0, h - ch + 1, (b,)).tolist()
    xs = torch.randint(0, w - cw + 1, (b,)).tolist()
    crops = [(images[i, :, y : y + ch, x : x + cw], target[i, y : y + ch, x : x + cw])
             for i, (y, x) in enumerate(zip(ys, xs, strict=True))]  # fmt: skip
    return torch.stack([c[0] for c in crops]), torch.stack([c[1] for c in crops])
