"""The fast PAMR (src/teacher/pamr.py) gives the numbers of the plain loop it replaced.

``reference_pamr`` below is a frozen copy of the algorithm as it was before it was made fast
(16 shifted multiply-adds per step, weights from a stacked window and ``torch.std``); it is
the reference here, beside the authors' own output in tests/teacher/test_heads_parity.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from src.teacher import pamr as pamr_module
from src.teacher.pamr import pamr, pamr_weights

_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
TOL = 1e-6


# ------------------------------------------------------------------ the frozen reference
def _ref_shifted(padded, d, dy, dx, h, w):
    return padded[..., d + dy * d : d + dy * d + h, d + dx * d : d + dx * d + w]


def reference_weights(images, dilations=(8, 16)):
    h, w = images.shape[-2:]
    centre = images.float()
    neighbours = []
    for d in dilations:
        padded = F.pad(centre, [d] * 4, mode="replicate")
        neighbours += [_ref_shifted(padded, d, dy, dx, h, w) for dy, dx in _OFFSETS]
    window = [centre] + neighbours[:8]
    for i in range(1, len(dilations)):
        window += [centre] + neighbours[8 * i : 8 * (i + 1)]
    std = torch.stack(window, dim=2).std(dim=2)
    scale = 1e-8 + 0.1 * std
    logits = torch.stack([(-(centre - n).abs() / scale).mean(dim=1) for n in neighbours], dim=1)
    return torch.softmax(logits, dim=1)


def reference_pamr(images, scores, num_iter=10, dilations=(8, 16)):
    h, w = images.shape[-2:]
    out = scores.float()
    if tuple(out.shape[-2:]) != (h, w):
        out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=True)
    weights = reference_weights(images, dilations)
    for _ in range(num_iter):
        new = torch.zeros_like(out)
        p = 0
        for d in dilations:
            padded = F.pad(out, [d] * 4, mode="replicate")
            for dy, dx in _OFFSETS:
                new.addcmul_(weights[:, p : p + 1], _ref_shifted(padded, d, dy, dx, h, w))
                p += 1
        out = new
    return out


# ------------------------------------------------------------------ inputs
def photo_like(b: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Normalised 8-bit images with flat blocks and small noise (tiny local spreads)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randint(0, 256, (b, 3, h // 12 + 1, w // 12 + 1), generator=g).float()
    img = low.repeat_interleave(12, 2).repeat_interleave(12, 3)[..., :h, :w]
    img = (img + torch.randint(-3, 4, img.shape, generator=g)).clamp(0, 255)
    return (img - 117.0) / 68.0


CASES = [  # (batch, classes, image h, w, score h, w, image kind): both iteration paths
    (2, 3, 60, 90, 30, 45, "randn"),
    (3, 2, 37, 53, 37, 53, "photo"),
    (2, 21, 48, 64, 3, 4, "randn"),
    (1, 8, 40, 40, 40, 40, "photo"),
    (2, 7, 20, 12, 5, 3, "randn"),  # smaller than the dilation 16: the borders everywhere
]


@pytest.mark.parametrize(("b", "k", "h", "w", "sh", "sw", "kind"), CASES)
def test_pamr_equals_the_plain_loop(b, k, h, w, sh, sw, kind) -> None:
    g = torch.Generator().manual_seed(b * 100 + k)
    images = torch.randn(b, 3, h, w, generator=g) if kind == "randn" else photo_like(b, h, w, k)
    for scale in (0.1, 0.2):  # cosine-sized scores (what the heads hand PAMR)
        scores = scale * torch.randn(b, k, sh, sw, generator=g)
        want = reference_pamr(images, scores)
        got = pamr(images, scores)
        assert got.shape == want.shape == (b, k, h, w) and got.dtype == torch.float32
        assert got.is_contiguous()
        assert (got - want).abs().max().item() <= TOL, (got - want).abs().max().item()
    assert (
        got - F.interpolate(scores, size=(h, w), mode="bilinear", align_corners=True)
    ).abs().max() > 1e-3


def test_the_weights_equal_the_plain_ones() -> None:
    g = torch.Generator().manual_seed(3)
    for images in (torch.randn(2, 3, 33, 47, generator=g), photo_like(2, 33, 47, 5)):
        want, got = reference_weights(images), pamr_weights(images)
        assert got.shape == want.shape == (2, 16, 33, 47)
        assert (got - want).abs().max().item() <= TOL
        assert torch.allclose(got.sum(1), torch.ones(2, 33, 47), atol=1e-6)


def test_both_iteration_paths_agree_and_other_settings(monkeypatch) -> None:
    g = torch.Generator().manual_seed(9)
    images, scores = (
        torch.randn(2, 3, 30, 41, generator=g),
        0.2 * torch.randn(2, 4, 30, 41, generator=g),
    )
    for dilations, steps in (((8, 16), 10), ((1,), 3), ((2, 4, 6), 5)):
        want = reference_pamr(images, scores, steps, dilations)
        for threshold in (1, 1000):  # sparse matrix / shifted multiply-adds
            monkeypatch.setattr(pamr_module, "SPARSE_FROM_CLASSES", threshold)
            got = pamr(images, scores, num_iter=steps, dilations=dilations)
            assert (got - want).abs().max().item() <= TOL
    assert torch.equal(pamr(images, scores, num_iter=0), scores)


def test_pamr_is_batch_independent_and_takes_half_precision() -> None:
    g = torch.Generator().manual_seed(4)
    images, scores = (
        torch.randn(3, 3, 32, 32, generator=g),
        0.1 * torch.randn(3, 21, 8, 8, generator=g),
    )
    both = pamr(images, scores)
    for i in range(3):
        assert torch.allclose(
            both[i : i + 1], pamr(images[i : i + 1], scores[i : i + 1]), atol=1e-6
        )
    half = pamr(images.half(), scores.half())
    assert half.dtype == torch.float32
    assert (half - reference_pamr(images.half(), scores.half())).abs().max().item() <= TOL
