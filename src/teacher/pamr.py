"""PAMR, pixel-adaptive mask refinement (Araslanov & Roth, CVPR 2020), as NACLIP and SCLIP
apply it to a training-free head's scores (docs/TEACHERS.md).

Every pixel's scores become a weighted average of its 8 neighbours at each dilation (16
neighbours for the default dilations 8 and 16), ``num_iter`` times. The weights come from the
image: per colour channel ``-|I(p) - I(q)| / (1e-8 + 0.1 * std)``, with ``std`` the unbiased
standard deviation over the centre and the 8 neighbours of every dilation (18 values), averaged
over the channels and normalised by a softmax over the neighbours. Borders replicate. The
centre pixel is not one of its own neighbours.

Batched and device-agnostic; it runs in float32 whatever the input's precision. How it is made
fast (docs/TEACHERS.md, "Throughput"): the weights once per image and dilation, in buffers
reused image after image (a two-pass float32 standard deviation where ``torch.std`` would
accumulate in float64 at three times the cost; the softmax written over the logits); the iterations, which are linear and the same
for every class, on a CPU with many classes as one sparse matrix (one row per pixel, 16
weights) applied to all classes at once (``torch.sparse.mm``), else as 16 in-place shifted
multiply-adds over all classes, between two padded buffers. Both agree with the plain loop
within float32 rounding (tests/teacher/test_pamr.py: 1e-6 on cosine-sized scores).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from src.teacher.precision import softmax32_

#: NACLIP's headline setting (``pamr_steps=10``, ``pamr_stride=(8, 16)``).
PAMR_ITERATIONS = 10
PAMR_DILATIONS = (8, 16)
_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
#: from this many classes on, the iterations run as one sparse matrix product (on a CPU the
#: shifted multiply-adds win below it: 3 classes at 128 px, batch 16, 34 ms against 74 ms)
SPARSE_FROM_CLASSES = 6


def _shifted(padded: torch.Tensor, pad: int, d: int, dy: int, dx: int, h: int, w: int):
    """The value ``d * (dy, dx)`` pixels away from every pixel of a map padded by ``pad >= d``."""
    return padded[..., pad + dy * d : pad + dy * d + h, pad + dx * d : pad + dx * d + w]


def pamr_weights(images: torch.Tensor, dilations: Sequence[int] = PAMR_DILATIONS) -> torch.Tensor:
    """(B, P, H, W) neighbour weights (softmax over the ``P = 8 * len(dilations)`` neighbours)."""
    x = images.float()
    b, c, h, w = x.shape
    big, groups = max(dilations), len(dilations)
    n = 9 * groups  # the window: the centre and its 8 neighbours, per dilation
    padded = F.pad(x, [big] * 4, mode="replicate")
    logits = x.new_empty(b, groups, 8, h, w)
    window = x.new_empty(c, groups, 9, h, w)  # buffers reused image after image
    spread = x.new_empty(c, n, h, w)
    for i in range(b):
        centre = x[i]
        for g, d in enumerate(dilations):
            window[:, g, 0] = centre
            for k, (dy, dx) in enumerate(_OFFSETS):
                window[:, g, k + 1] = _shifted(padded[i], big, d, dy, dx, h, w)
        flat = window.view(c, n, h, w)
        torch.sub(flat, flat.mean(dim=1, keepdim=True), out=spread)  # two-pass unbiased std
        scale = spread.square_().sum(dim=1).div_(n - 1).sqrt_().mul_(0.1).add_(1e-8)
        neighbours = window[:, :, 1:]
        # -|I(p) - I(q)| / scale: dividing by -scale gives the negated quotient exactly
        scale.neg_()
        neighbours.sub_(centre.view(c, 1, 1, h, w)).abs_().div_(scale.view(c, 1, 1, h, w))
        torch.mean(neighbours, dim=0, out=logits[i])
    logits = logits.view(b, 8 * groups, h, w)
    # the softmax over the neighbours written over the logits (the CPU kernel: the same bits)
    return softmax32_(logits, dim=1)


def _replicate_border(buffer: torch.Tensor, pad: int) -> None:
    """Fill the ``pad``-wide border of (..., H + 2 pad, W + 2 pad) from its interior, in place."""
    h, w = buffer.shape[-2] - 2 * pad, buffer.shape[-1] - 2 * pad
    buffer[..., :pad, pad : pad + w] = buffer[..., pad : pad + 1, pad : pad + w]
    buffer[..., pad + h :, pad : pad + w] = buffer[..., pad + h - 1 : pad + h, pad : pad + w]
    buffer[..., :, :pad] = buffer[..., :, pad : pad + 1]
    buffer[..., :, pad + w :] = buffer[..., :, pad + w - 1 : pad + w]


def _iterate_shifted(
    weights: torch.Tensor, scores: torch.Tensor, num_iter: int, dilations: Sequence[int]
) -> torch.Tensor:
    """``num_iter`` steps as in-place shifted multiply-adds, between two padded buffers."""
    b, k, h, w = scores.shape
    big = max(dilations)
    buffers = [scores.new_empty(b, k, h + 2 * big, w + 2 * big) for _ in range(2)]
    buffers[0][..., big : big + h, big : big + w] = scores
    for step in range(num_iter):
        src, dst = buffers[step % 2], buffers[(step + 1) % 2]
        _replicate_border(src, big)
        inner = dst[..., big : big + h, big : big + w]
        p = 0
        for d in dilations:
            for dy, dx in _OFFSETS:
                shifted = _shifted(src, big, d, dy, dx, h, w)
                if p == 0:
                    torch.mul(weights[:, :1], shifted, out=inner)
                else:
                    inner.addcmul_(weights[:, p : p + 1], shifted)
                p += 1
    return buffers[num_iter % 2][..., big : big + h, big : big + w].contiguous()


def _iterate_sparse(
    weights: torch.Tensor, scores: torch.Tensor, num_iter: int, dilations: Sequence[int]
) -> torch.Tensor:
    """``num_iter`` steps as one CSR matrix (pixels x pixels) times (pixels, classes).

    Row ``i`` holds pixel ``i``'s 16 weights at the columns of its neighbours, clamped to the
    image (the replicate border): near a border two neighbours can be one pixel, a repeated
    column that ``torch.sparse.mm`` on a CPU adds up (checked in tests/teacher/test_pamr.py).
    """
    b, k, h, w = scores.shape
    p = weights.shape[1]
    device = scores.device
    itype = torch.int32 if b * h * w * p < 2**31 else torch.int64
    ys = torch.arange(h, device=device, dtype=itype).view(h, 1)
    xs = torch.arange(w, device=device, dtype=itype).view(1, w)
    columns = torch.empty(b, h, w, p, device=device, dtype=itype)
    q = 0
    for d in dilations:
        for dy, dx in _OFFSETS:
            rows = (ys + dy * d).clamp_(0, h - 1).mul_(w)
            torch.add(rows, (xs + dx * d).clamp_(0, w - 1), out=columns[0, :, :, q])
            q += 1
    if b > 1:
        columns[1:] = columns[0]
        columns += (torch.arange(b, device=device, dtype=itype) * (h * w)).view(b, 1, 1, 1)
    values = weights.permute(0, 2, 3, 1).reshape(-1)
    crow = torch.arange(0, b * h * w * p + 1, p, device=device, dtype=itype)
    n = b * h * w
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore")
        matrix = torch.sparse_csr_tensor(crow, columns.view(-1), values, size=(n, n))
    x = scores.permute(0, 2, 3, 1).reshape(n, k)  # channels last: one row per pixel
    for _ in range(num_iter):
        x = torch.sparse.mm(matrix, x)
    return x.view(b, h, w, k).permute(0, 3, 1, 2).contiguous()


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
    if num_iter <= 0:
        return out.contiguous()
    weights = pamr_weights(images, dilations)
    if out.device.type == "cpu" and out.shape[1] >= SPARSE_FROM_CLASSES:
        return _iterate_sparse(weights, out, num_iter, dilations)
    return _iterate_shifted(weights, out, num_iter, dilations)
