"""Batched sliding windows (issue 24): the crops of every image of a batch go through the
scorer together, ``Windows.batch`` at a time, and give each image the average the old
per-image loop gave it (a frozen copy below)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from src.scoring import (
    Windows,
    crop_windows,
    dense_scores,
    sliding_window_logits,
    upsample,
    window_boxes,
    window_starts,
)
from src.teacher.model import DenseClipTeacher


def _per_image_loop(scorer, image, *, window, stride, batch_size=4):
    """The per-image loop src.scoring had before issue 24 (one (1, 3, H, W) image)."""
    _, _, h, w = image.shape
    boxes = [
        (y, x, min(y + window, h), min(x + window, w))
        for y in window_starts(h, window, stride)
        for x in window_starts(w, window, stride)
    ]
    total = None
    count = torch.zeros(1, 1, h, w, device=image.device)
    for start in range(0, len(boxes), max(1, batch_size)):
        group = boxes[start : start + batch_size]
        crops = torch.cat([image[..., y0:y1, x0:x1] for y0, x0, y1, x1 in group])
        logits = upsample(scorer(crops).float(), crops.shape[-2:])
        if total is None:
            total = logits.new_zeros(1, logits.shape[1], h, w)
        for (y0, x0, y1, x1), crop_logits in zip(group, logits, strict=True):
            total[0, :, y0:y1, x0:x1] += crop_logits
            count[..., y0:y1, x0:x1] += 1
    return total / count


def _images(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-64, 64, (b, 3, h, w), generator=g).float() / 32


def test_window_boxes_and_crops_of_any_per_pixel_tensor() -> None:
    boxes = window_boxes(48, 70, 32, 20)
    assert boxes == [(y, x, y + 32, x + 32) for y in (0, 16) for x in (0, 20, 38)]
    assert window_boxes(20, 70, 32, 20)[-1] == (0, 38, 20, 70)  # short side: one crop of 20
    regions = torch.arange(2 * 48 * 70).view(2, 48, 70)  # a (B, H, W) map crops the same way
    got = crop_windows(regions, [(1, boxes[4]), (0, boxes[0])])
    assert got.shape == (2, 32, 32)
    assert torch.equal(got[0], regions[1, 16:48, 20:52])
    assert torch.equal(got[1], regions[0, :32, :32])


def test_batched_windows_equal_the_per_image_loop_bitwise_on_a_toy_scorer() -> None:
    weight = torch.randint(-8, 8, (5, 3, 3, 3)).float() / 16
    calls = []

    def scorer(x: torch.Tensor) -> torch.Tensor:  # a coarser grid than the crop: upsampled
        calls.append(x.shape[0])
        return F.conv2d(x, weight, stride=2, padding=1)

    images = _images(3, 70, 45)
    got = sliding_window_logits(scorer, images, window=32, stride=20, batch_size=4)
    assert calls == [4, 4, 4, 4, 2]  # 3 images x 6 crops, 4 at a time across the images
    assert got.shape == (3, 5, 70, 45)
    for i in range(3):
        old = _per_image_loop(scorer, images[i : i + 1], window=32, stride=20, batch_size=4)
        assert torch.equal(got[i : i + 1], old)


def test_batched_windows_equal_the_per_image_loop_on_a_tiny_teacher() -> None:
    teacher = DenseClipTeacher(
        clip_model="dc-test-vit", pretrained=None, class_names=["cat", "person, person in shirt"],
        templates="photo", head="naclip", background="sky, wall", logit_scale=40,
    )  # fmt: skip
    images = _images(2, 48, 80, seed=1)
    windows = Windows(32, 16, batch=5)
    with torch.no_grad():
        got = dense_scores(teacher.input_scores, images, windows=windows, size=(30, 50))
        for i in range(2):
            old = _per_image_loop(
                teacher.input_scores, images[i : i + 1], window=32, stride=16, batch_size=5
            )
            old = F.interpolate(old, size=(30, 50), mode="bilinear", align_corners=False)
            torch.testing.assert_close(got[i : i + 1], old, rtol=0, atol=1e-6)
