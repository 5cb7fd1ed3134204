"""Tiny dataset trees in the real (MMSegmentation) layouts, for tests.

Every label is a pure function of its index: a few rectangles of classes on background, with
a void border where the dataset has one, so tests can predict exact decoded values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from src.pictures.palette import pascal_palette

SIZE = (24, 32)  # (H, W) of every generated image


def label_pattern(index: int, max_class: int, *, size=SIZE, void_border: bool = True) -> np.ndarray:
    """A (H, W) uint8 label: class ``1 + index % max_class`` left, the next one right,
    0 in the middle band, 255 on the border (``void_border``)."""
    h, w = size
    label = np.zeros((h, w), dtype=np.uint8)
    a = 1 + index % max_class
    b = 1 + (index + 1) % max_class
    label[:, : w // 3] = a
    label[:, 2 * w // 3 :] = b
    if void_border:
        label[0, :] = 255
        label[:, 0] = 255
    return label


def image_for(label: np.ndarray, seed: int) -> np.ndarray:
    """An RGB image whose colour follows the label (plus noise)."""
    rng = np.random.default_rng(seed)
    base = pascal_palette()[label].astype(np.int16)
    noise = rng.integers(-10, 11, size=base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def save_palette_png(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(label, mode="P")
    im.putpalette(pascal_palette().flatten().tolist())
    im.save(path)


def save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def save_jpg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=95)


def write_list(path: Path, ids: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))


def make_voc(base: Path, *, n_train: int = 3, n_val: int = 2, n_aug: int = 2) -> Path:
    """``base/VOCdevkit/VOC2012`` with palette labels; ``aug.txt`` ids have SBD (grey) labels."""
    root = base / "VOCdevkit" / "VOC2012"
    train = [f"2007_{i:06d}" for i in range(n_train)]
    val = [f"2008_{i:06d}" for i in range(n_val)]
    aug = [f"2011_{i:06d}" for i in range(n_aug)]
    for k, name in enumerate(train + val + aug):
        label = label_pattern(k, 20)
        save_jpg(root / "JPEGImages" / f"{name}.jpg", image_for(label, k))
        if name in aug:
            save_png(root / "SegmentationClassAug" / f"{name}.png", label)
        else:
            save_palette_png(root / "SegmentationClass" / f"{name}.png", label)
    lists = root / "ImageSets" / "Segmentation"
    write_list(lists / "train.txt", train)
    write_list(lists / "val.txt", val)
    write_list(lists / "aug.txt", aug)
    return root


def make_context(base: Path, *, n_train: int = 2, n_val: int = 2) -> Path:
    """``base/VOCdevkit/VOC2010`` with greyscale labels 0..59 (0 = background)."""
    root = base / "VOCdevkit" / "VOC2010"
    train = [f"2008_{i:06d}" for i in range(n_train)]
    val = [f"2009_{i:06d}" for i in range(n_val)]
    for k, name in enumerate(train + val):
        label = label_pattern(50 + k, 59, void_border=False)
        save_jpg(root / "JPEGImages" / f"{name}.jpg", image_for(label, k))
        save_png(root / "SegmentationClassContext" / f"{name}.png", label)
    lists = root / "ImageSets" / "SegmentationContext"
    write_list(lists / "train.txt", train)
    write_list(lists / "val.txt", val)
    return root


def make_coco(base: Path, *, n_train: int = 2, n_val: int = 2) -> Path:
    """``base/coco_stuff164k`` with ``*_labelTrainIds.png`` labels 0..170 (255 unlabeled)."""
    root = base / "coco_stuff164k"
    for split, n, offset in (("train2017", n_train, 0), ("val2017", n_val, 100)):
        for k in range(n):
            name = f"{offset + k:012d}"
            label = label_pattern(165 + k, 171) - 1  # background band -> 255 (unlabeled)
            label[label == 254] = 255
            save_jpg(root / "images" / split / f"{name}.jpg", image_for(label, k))
            save_png(root / "annotations" / split / f"{name}_labelTrainIds.png", label)
    return root


def make_folder(base: Path, n: int = 3) -> Path:
    """``base/photos`` with ``n`` JPEGs (and a text file that is not an image)."""
    root = base / "photos"
    for k in range(n):
        save_jpg(root / f"img{k}.jpg", image_for(label_pattern(k, 20), k))
    (root / "notes.txt").write_text("not an image\n")
    return root


def make_ade20k(base: Path, *, n_train: int = 2, n_val: int = 2) -> Path:
    """``base/ade/ADEChallengeData2016`` with greyscale labels 0..150 (0 = other)."""
    root = base / "ade" / "ADEChallengeData2016"
    for split, prefix, n in (("training", "ADE_train", n_train), ("validation", "ADE_val", n_val)):
        for k in range(n):
            name = f"{prefix}_{k + 1:08d}"
            label = label_pattern(148 + k, 150, void_border=False)
            save_jpg(root / "images" / split / f"{name}.jpg", image_for(label, k))
            save_png(root / "annotations" / split / f"{name}.png", label)
    return root


def make_cityscapes(base: Path, *, n_train: int = 2, n_val: int = 2) -> Path:
    """``base/cityscapes``: PNG images under ``leftImg8bit/<split>/<city>/`` and train-id
    labels 0..18 (255 = ignore) under ``gtFine/<split>/<city>/``, two cities per split."""
    root = base / "cityscapes"
    for split, n in (("train", n_train), ("val", n_val)):
        for k in range(n):
            city = (
                ("aachen", "bochum")[k % 2] if split == "train" else ("frankfurt", "lindau")[k % 2]
            )
            name = f"{city}_{k:06d}_000019"
            label = label_pattern(17 + k, 19) - 1  # background band -> 255 (ignore)
            label[label == 254] = 255
            save_png(
                root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", image_for(label, k)
            )
            save_png(root / "gtFine" / split / city / f"{name}_gtFine_labelTrainIds.png", label)
    return root


def make_coco_object(base: Path, *, n_train: int = 2, n_val: int = 2) -> Path:
    """``base/coco_stuff164k`` with ``*_instanceTrainIds.png`` labels 0..80 (0 = background)
    for the same image ids as :func:`make_coco` (images are written where missing)."""
    root = base / "coco_stuff164k"
    for split, n, offset in (("train2017", n_train, 0), ("val2017", n_val, 100)):
        for k in range(n):
            name = f"{offset + k:012d}"
            label = label_pattern(78 + k, 80, void_border=False)
            image = root / "images" / split / f"{name}.jpg"
            if not image.exists():
                save_jpg(image, image_for(label, k))
            save_png(root / "annotations" / split / f"{name}_instanceTrainIds.png", label)
    return root
