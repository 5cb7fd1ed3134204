"""Augmentation: image and label stay aligned pixel by pixel; mmseg's crop and resize rules."""

from __future__ import annotations

import numpy as np
import pytest

from src.data.transforms import (
    CatRatioCrop,
    PhotoMetricDistortion,
    Rescale,
    eval_transform,
    rescale_size,
    train_transform,
)

IDENTITY = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # normalised image = pixel / 255
COLOURS = np.array([[10 + 20 * c, 240 - 20 * c, (70 * c) % 256] for c in range(12)], np.uint8)


def checker(h: int = 90, w: int = 130, block: int = 10) -> np.ndarray:
    """A label of 10-pixel blocks whose class depends on (row, column): no symmetry."""
    ys, xs = np.mgrid[0:h, 0:w] // block
    return ((3 * ys + 5 * xs + ys * xs) % 12).astype(np.uint8)


def decode(image: np.ndarray) -> np.ndarray:
    """Nearest colour class of every pixel of a [0, 1] image."""
    pixels = (image * 255.0).reshape(-1, 1, 3)
    dist = ((pixels - COLOURS[None].astype(np.float32)) ** 2).sum(-1)
    return dist.argmin(-1).reshape(image.shape[:2])


def interior(mask: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood has one label (bilinear image = that colour there)."""
    pad = np.pad(mask.astype(np.int16), 1, mode="edge")
    same = np.ones(mask.shape, bool)
    for dy in range(3):
        for dx in range(3):
            same &= pad[dy : dy + mask.shape[0], dx : dx + mask.shape[1]] == mask
    return same & (mask < 254)


def test_rescale_size_follows_mmcv() -> None:
    assert rescale_size(375, 500, (2048, 512)) == (512, 683)  # VOC eval: short side 512
    assert rescale_size(375, 500, (520, 520)) == (390, 520)  # Context eval: long side 520
    assert rescale_size(100, 3000, (2048, 512)) == (68, 2048)  # the long side caps


@pytest.mark.parametrize("seed", range(6))
def test_train_pipeline_keeps_image_and_label_aligned(seed: int) -> None:
    label = checker()
    image = COLOURS[label]
    t = train_transform(**IDENTITY, crop_size=64, scale=(260, 90), photometric=False, seed=seed)
    checked = 0
    for _ in range(4):
        out = t(image=image, mask=label)
        img, mask = out["image"], out["mask"]
        assert img.shape == (64, 64, 3) and mask.shape == (64, 64)
        assert img.dtype == np.float32 and mask.dtype == np.uint8
        keep = interior(mask)
        assert keep.sum() > 100
        np.testing.assert_array_equal(decode(img)[keep], mask[keep])
        pad = mask == 255
        assert np.all(img[pad] == 0.0)  # padding: 0 after normalisation, 255 in the label
        checked += keep.sum()
    assert checked > 4 * 200


def test_flip_and_crop_really_move_pixels() -> None:
    """The alignment test would catch a flip applied to the image only."""
    label = checker()
    flipped = train_transform(**IDENTITY, crop_size=200, scale=(130, 90), ratio_range=(1, 1),
                              flip_prob=1.0, photometric=False)  # fmt: skip
    out = flipped(image=COLOURS[label], mask=label)
    np.testing.assert_array_equal(out["mask"][:90, :130], label[:, ::-1])
    assert np.all(out["mask"][90:] == 255) and np.all(out["mask"][:, 130:] == 255)


def test_rescale_ratio_range_and_nearest_labels() -> None:
    label = checker(100, 200)
    label[0, 0] = 254
    t = Rescale(scale=(2048, 512), ratio_range=(0.5, 2.0))
    t.set_random_seed(0)
    shorts = []
    for _ in range(20):
        out = t(image=COLOURS[label % 12], mask=label)
        h, w = out["mask"].shape
        assert out["image"].shape[:2] == (h, w)
        assert abs(w / h - 2.0) < 0.02
        assert set(np.unique(out["mask"])) <= set(np.unique(label))  # no blended values
        shorts.append(h)
    assert min(shorts) >= 256 - 1 and max(shorts) <= 1024 and max(shorts) - min(shorts) > 200


def test_cat_max_ratio_crop_prefers_mixed_crops() -> None:
    label = np.zeros((100, 100), np.uint8)
    label[:, :60] = 1
    label[:, 60:] = 2
    image = COLOURS[label]

    def ok_fraction(ratio: float) -> float:
        crop = CatRatioCrop(size=50, cat_max_ratio=ratio)
        crop.set_random_seed(1)
        ok = 0
        for _ in range(60):
            m = crop(image=image, mask=label)["mask"]
            counts = np.bincount(m.ravel(), minlength=3)[1:]
            ok += counts.max() / counts.sum() < 0.75 and (counts > 0).all()
        return ok / 60

    assert ok_fraction(0.75) > 0.95
    assert ok_fraction(1.0) < 0.75  # without the rule about half the crops are one class


def test_cat_max_ratio_ignores_hidden_and_void_pixels() -> None:
    """A crop of one visible class plus unlabelled pixels never satisfies the rule."""
    label = np.full((60, 60), 254, np.uint8)
    label[:, :30] = 3
    crop = CatRatioCrop(size=40, cat_max_ratio=0.75)
    crop.set_random_seed(0)
    params = crop.get_params_dependent_on_data({"shape": label.shape}, {"mask": label})
    assert len(params["bbox"]) == 4  # falls back to the 10th random crop, does not loop


def test_photometric_distortion_changes_image_only() -> None:
    label = checker()
    image = COLOURS[label]
    t = PhotoMetricDistortion()
    t.set_random_seed(3)
    changed = 0
    for _ in range(5):
        out = t(image=image, mask=label)
        assert out["image"].dtype == np.uint8 and out["image"].shape == image.shape
        np.testing.assert_array_equal(out["mask"], label)
        changed += int(not np.array_equal(out["image"], image))
    assert changed >= 3


def test_eval_transform_keeps_aspect_or_size() -> None:
    image = np.zeros((375, 500, 3), np.uint8)
    assert eval_transform(**IDENTITY, scale=(2048, 512))(image=image)["image"].shape == (
        512,
        683,
        3,
    )
    assert eval_transform(**IDENTITY, scale=(520, 520))(image=image)["image"].shape == (390, 520, 3)
    assert eval_transform(**IDENTITY, scale=None)(image=image)["image"].shape == (375, 500, 3)


def test_clip_normalisation() -> None:
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    image = np.full((4, 4, 3), 255, np.uint8)
    out = eval_transform(mean=mean, std=std, scale=None)(image=image)["image"]
    np.testing.assert_allclose(out[0, 0], (1.0 - np.array(mean)) / np.array(std), rtol=1e-5)
