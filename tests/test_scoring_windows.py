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


def _forward_slide(scorer, img, regions, *, crop, stride, multiple, pad_id):
    """CorrCLIP's ``forward_slide`` (zdk258/CorrCLIP @ 103bc18, corrclip_segmentor.py:123-175)
    written out: each crop padded in the middle to a multiple of ``multiple`` (image 0, map
    ``pad_id``), its logits at the padded size cut back, summed, divided by the count."""
    _, _, h, w = img.shape
    total = count = None
    rows = max(h - crop + stride - 1, 0) // stride + 1
    cols = max(w - crop + stride - 1, 0) // stride + 1
    for i in range(rows):
        for j in range(cols):
            y2, x2 = min(i * stride + crop, h), min(j * stride + crop, w)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            c_img, c_reg = img[..., y1:y2, x1:x2], regions[:, y1:y2, x1:x2]
            ch, cw = c_img.shape[-2:]
            lr, tb = (-cw) % multiple, (-ch) % multiple
            pad = (lr // 2, lr - lr // 2, tb // 2, tb - tb // 2)
            c_img, c_reg = F.pad(c_img, pad), F.pad(c_reg, pad, value=pad_id)
            out = scorer(c_img, regions=c_reg)
            out = F.interpolate(out, size=c_img.shape[-2:], mode="bilinear", align_corners=False)
            out = out[..., pad[2] : pad[2] + ch, pad[0] : pad[0] + cw]
            if total is None:
                total = out.new_zeros(1, out.shape[1], h, w)
                count = out.new_zeros(1, 1, h, w)
            total[..., y1:y2, x1:x2] += out
            count[..., y1:y2, x1:x2] += 1
    return total / count


def test_windows_padded_in_the_middle_are_corrclips_forward_slide() -> None:
    """``Windows(pad=8)``: 20 x 20 crops of a 30 x 44 image reach the scorer as 24 x 24 (2 px
    of zeros each side, the map's border :data:`PAD_REGION`) and the average equals the
    authors' loop; ``pad=0`` hands them over unpadded (every other head's way) and differs."""
    from src.scoring import PAD_REGION

    seen = []

    def scorer(x: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        seen.append((x.clone(), regions.clone()))
        pooled = F.avg_pool2d(torch.cat([x, regions[:, None].float() / 64], 1), 4)
        return pooled * torch.arange(1, 5).view(1, 4, 1, 1)  # position-dependent, (N, 4, h/4, w/4)

    images = _images(1, 30, 44, seed=3)
    g = torch.Generator().manual_seed(4)
    regions = torch.randint(0, 5, (1, 30, 44), generator=g).int()
    got = sliding_window_logits(
        scorer, images, window=20, stride=12, batch_size=3, regions=regions, pad=8
    )
    crops, maps = torch.cat([s[0] for s in seen]), torch.cat([s[1] for s in seen])
    assert crops.shape == (6, 3, 24, 24) and maps.shape == (6, 24, 24)
    assert torch.equal(crops[0, :, 2:22, 2:22], images[0, :, :20, :20])
    assert crops[:, :, :2].abs().sum() == 0 and crops[:, :, :, 22:].abs().sum() == 0
    assert bool((maps[:, :2] == PAD_REGION).all()) and bool((maps[:, :, 22:] == PAD_REGION).all())
    assert torch.equal(maps[5, 2:22, 2:22], regions[0, 10:30, 24:44])
    want = _forward_slide(
        scorer, images, regions, crop=20, stride=12, multiple=8, pad_id=PAD_REGION
    )
    assert got.shape == (1, 4, 30, 44)
    assert torch.allclose(got, want, atol=1e-6, rtol=0)
    seen.clear()
    plain = dense_scores(scorer, images, windows=Windows(20, 12, batch=3), regions=regions)
    assert torch.cat([s[0] for s in seen]).shape == (6, 3, 20, 20)
    assert (plain - want).abs().max() > 1e-2
    # the same through dense_scores (what the teacher, the predictor and eval call)
    via = dense_scores(scorer, images, windows=Windows(20, 12, batch=2, pad=8), regions=regions)
    assert torch.allclose(via, want, atol=1e-6, rtol=0)
    # a crop that is a multiple already is not padded
    seen.clear()
    sliding_window_logits(scorer, images, window=24, stride=12, regions=regions, pad=8)
    assert torch.cat([s[0] for s in seen]).shape[-2:] == (24, 24)
