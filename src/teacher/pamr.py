"""PAMR, pixel-adaptive mask refinement (Araslanov & Roth, CVPR 2020), as NACLIP and SCLIP
apply it to a training-free head's scores (docs/TEACHERS.md).

Every pixel's scores become a weighted average of its 8 neighbours at each dilation (16
neighbours for the default dilations 8 and 16), ``num_iter`` times. The weights come from the
image: per colour channel ``-|I(p) - I(q)| / (1e-8 + 0.1 * std)``, with ``std`` the unbiased
standard deviation over the centre and the 8 neighbours of every dilation (18 values), averaged
over the channels and normalised by a softmax over the neighbours. Borders replicate. The
centre pixel is not one of its own neighbours.

Batched and device-agnostic; it runs in float32 whatever the input's precision, and never
stacks all neighbours of the scores at once (memory ``2 x B x K x H x W``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

#: NACLIP's headline setting (``pamr_steps=10``, ``pamr_stride=(8, 16)``).
PAMR_ITERATIONS = 10
PAMR_DILATIONS = (8, 16)
_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def _shifted(padded: torch.Tensor, d: int, dy: int, dx: int, h: int, w: int) -> torch.Tensor:
    """The value ``d * (dy, dx)`` pixels away from every pixel of a map padded by ``d``."""
    return padded[..., d + dy * d : d + dy * d + h, d + dx * d : d + dx * d + w]


def pamr_weights(images: torch.Tensor, dilations: Sequence[int] = PAMR_DILATIONS) -> torch.Tensor:
    """(B, P, H, W) neighbour weights (softmax over the ``P = 8 * len(dilations)`` neighbours)."""
    h, w = images.shape[-2:]
    centre = images.float()
    neighbours = []
    for d in dilations:
        padded = F.pad(centre, [d] * 4, mode="replicate")
        neighbours += [_shifted(padded, d, dy, dx, h, w) for dy, dx in _OFFSETS]
    # unbiased std over (centre + 8 neighbours) of every dilation: (B, 3, H, W)
    window = [centre] + neighbours[:8]
    for i in range(1, len(dilations)):
        window += [centre] + neighbours[8 * i : 8 * (i + 1)]
    std = torch.stack(window, dim=2).std(dim=2)
    scale = 1e-8 + 0.1 * std
    logits = torch.stack([(-(centre - n).abs() / scale).mean(dim=1) for n in neighbours], dim=1)
    return torch.softmax(logits, dim=1)


def pamr(
    images: torch.Tensor,
    scores: torch.Tensor,
    *,
    num_iter: int = PAMR_ITERATIONS,
    dilations: Sequence[int] = PAMR_DILATIONS,
) -> torch.Tensor:
    """Refine (B, K, h, w) ``scores`` with (B, 3, H, W) normalised ``images``; (B, K, H, W) out.

    Scores at another size than the image are first resized to it (bilinear,
    ``align_corners=True``, as the original PAMR does).
    """
    h, w = images.shape[-2:]
    out = scores.float()
    if tuple(out.shape[-2:]) != (h, w):
        out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=True)
    weights = pamr_weights(images, dilations)
    for _ in range(num_iter):
        new = torch.zeros_like(out)
        p = 0
        for d in dilations:
            padded = F.pad(out, [d] * 4, mode="replicate")
            for dy, dx in _OFFSETS:
                new.addcmul_(weights[:, p : p + 1], _shifted(padded, d, dy, dx, h, w))
                p += 1
        out = new
    return out
