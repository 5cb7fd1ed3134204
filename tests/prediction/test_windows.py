"""Resize, sliding window and full-size decoding for any dense scorer."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from src.prediction.decode import NO_CLASS, decode_logits
from src.prediction.windows import resize_short_side, sliding_window_logits, window_starts


def test_resize_short_side_bounds_and_aspect() -> None:
    x = torch.rand(1, 3, 300, 200)
    assert resize_short_side(x, 100).shape[-2:] == (150, 100)
    assert resize_short_side(x, 500) is x  # never enlarged by max_size
    assert resize_short_side(x, None, 400).shape[-2:] == (600, 400)
    assert resize_short_side(x, 512, 64) is x
    assert resize_short_side(torch.rand(1, 3, 20, 10), 512, 64).shape[-2:] == (128, 64)


def test_window_starts_cover_the_axis() -> None:
    assert window_starts(100, 32, 24) == [0, 24, 48, 68]
    assert window_starts(20, 32, 24) == [0]
    assert window_starts(64, 32, 32) == [0, 32]


def test_sliding_window_equals_whole_image_for_a_pointwise_scorer() -> None:
    weight = torch.randn(5, 3, 1, 1)
    scorer = lambda x: F.conv2d(x, weight)  # noqa: E731 - each pixel scored on its own
    image = torch.randn(1, 3, 70, 45)
    calls = []

    def counted(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return scorer(x)

    got = sliding_window_logits(counted, image, window=32, stride=20, batch_size=3)
    assert got.shape == (1, 5, 70, 45)
    assert torch.allclose(got, scorer(image), atol=1e-5)
    # rows at 0, 20, 38 and columns at 0, 13: 6 crops of 32 x 32, in batches of 3
    assert calls == [(3, 3, 32, 32), (3, 3, 32, 32)]


def test_sliding_window_averages_overlaps() -> None:
    def position_scorer(x: torch.Tensor) -> torch.Tensor:  # each crop scores 1 at its top-left
        out = torch.zeros(x.shape[0], 1, *x.shape[-2:])
        out[:, :, 0, 0] = 1.0
        return out

    got = sliding_window_logits(position_scorer, torch.zeros(1, 3, 8, 8), window=4, stride=2)
    starts = [0, 2, 4]
    hits, count = torch.zeros(8, 8), torch.zeros(8, 8)
    for y in starts:
        for x in starts:
            hits[y, x] = 1.0
            count[y : y + 4, x : x + 4] += 1
    assert torch.allclose(got[0, 0], hits / count)
    assert got[0, 0, 2, 2] == 0.25  # covered by four crops, the top-left of one


def test_decode_equals_full_interpolation_in_bands() -> None:
    logits = torch.randn(4, 9, 13)
    full = F.interpolate(logits[None], size=(70, 101), mode="bilinear", align_corners=False)[0]
    out = decode_logits(
        logits, (70, 101), scale=10.0, confidence_maps=True, band_elements=4 * 101 * 7
    )
    assert out.mask.dtype == torch.uint8 and out.mask.shape == (70, 101)
    assert torch.equal(out.mask.long(), full.argmax(0))
    probs = torch.softmax(10.0 * full, dim=0)
    assert (out.confidence.float() - 255 * probs).abs().max() <= 0.51
    assert sum(out.pixels_per_class) == 70 * 101
    assert out.pixels_per_class == [int((full.argmax(0) == k).sum()) for k in range(4)]


def test_decode_threshold_marks_unsure_pixels() -> None:
    logits = torch.zeros(3, 2, 2)
    logits[0, 0, 0] = 1.0  # one sure pixel (softmax(100 * 1) ~ 1), the rest uniform
    out = decode_logits(logits, (2, 2), scale=100.0, threshold=0.5)
    assert out.mask.tolist() == [[0, NO_CLASS], [NO_CLASS, NO_CLASS]]
    assert out.pixels_per_class == [1, 0, 0]


def test_decode_reduces_names_after_upsampling_and_gives_background_no_class() -> None:
    names = torch.randn(5, 6, 7)  # names: bg word, a, a', b, b'

    def reduce(x: torch.Tensor) -> torch.Tensor:  # background first, then a and b
        return torch.stack([x[:, 0], x[:, 1:3].amax(1), x[:, 3:5].amax(1)], dim=1)

    out = decode_logits(names, (20, 30), scale=5.0, confidence_maps=True, reduce=reduce,
                        background=True, band_elements=5 * 30 * 3)  # fmt: skip
    up = F.interpolate(names[None], size=(20, 30), mode="bilinear", align_corners=False)
    classes = reduce(up)[0]  # max over names *after* the resize, as the papers do
    best = classes.argmax(0)
    expected = torch.where(best == 0, NO_CLASS, best - 1)
    assert torch.equal(out.mask.long(), expected)
    assert out.confidence.shape == (2, 20, 30)  # the named classes only
    probs = torch.softmax(5.0 * classes, dim=0)[1:]
    assert (out.confidence.float() - 255 * probs).abs().max() <= 0.51
    assert out.pixels_per_class == [int((expected == k).sum()) for k in range(2)]
    assert 0 < int((expected == NO_CLASS).sum()) < 600
