"""Raw datasets on tiny trees in the real layouts: counts, decoding, and every bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from src.data.base import DATASETS, DataFileError
from src.data.datasets import CocoStuffDataset, ContextDataset, FolderDataset, VOCDataset
from src.errors import UserError
from src.pictures.palette import pascal_palette
from tests.data.layouts import (
    SIZE,
    label_pattern,
    make_coco,
    make_context,
    make_folder,
    make_voc,
    save_png,
)


def test_registry_names() -> None:
    for name in ("voc", "context59", "context60", "cocostuff171", "folder"):
        assert name in DATASETS
    assert DATASETS["context59"] is DATASETS["context60"] is ContextDataset


def test_voc_counts_and_palette_decoding(tmp_path: Path) -> None:
    root = make_voc(tmp_path, n_train=3, n_val=2, n_aug=2)
    assert len(VOCDataset(root=root, split="train")) == 3
    val = VOCDataset(root=root, split="val")
    assert len(val) == 2
    sample = val[0]  # ids: train 0..2, val 3..4
    assert sample.name == "2008_000000"
    assert sample.image.shape == (*SIZE, 3) and sample.image.dtype == np.uint8
    np.testing.assert_array_equal(sample.label, label_pattern(3, 20))
    assert set(np.unique(sample.label)) == {0, 4, 5, 255}  # palette indices, not colours


def test_voc_aug_is_train_plus_aug_with_sbd_labels(tmp_path: Path) -> None:
    root = make_voc(tmp_path, n_train=3, n_val=2, n_aug=2)
    aug = VOCDataset(root=root, split="aug")
    assert [n for n, _, _ in aug.items] == [f"2007_{i:06d}" for i in range(3)] + [
        f"2011_{i:06d}" for i in range(2)
    ]
    assert aug.items[0][2].parent.name == "SegmentationClass"
    assert aug.items[3][2].parent.name == "SegmentationClassAug"
    np.testing.assert_array_equal(aug[4].label, label_pattern(6, 20))
    # MMSegmentation's trainaug.txt (train + aug) gives the same set without duplicates
    lists = root / "ImageSets" / "Segmentation"
    (lists / "trainaug.txt").write_text(
        (lists / "train.txt").read_text() + (lists / "aug.txt").read_text()
    )
    assert len(VOCDataset(root=root, split="aug")) == 5
    (lists / "aug.txt").unlink()
    (lists / "trainaug.txt").unlink()
    assert len(VOCDataset(root=root, split="aug")) == 3  # no aug list: train only


def test_voc_rgb_colour_labels_decode(tmp_path: Path) -> None:
    root = make_voc(tmp_path, n_train=1, n_val=1, n_aug=0)
    label = label_pattern(1, 20)
    save_png(root / "SegmentationClass" / "2008_000000.png", pascal_palette()[label])
    np.testing.assert_array_equal(VOCDataset(root=root, split="val")[0].label, label)


def test_context_counts_and_values(tmp_path: Path) -> None:
    root = make_context(tmp_path, n_train=2, n_val=3)
    assert len(ContextDataset(root=root, split="train")) == 2
    val = ContextDataset(root=root, split="val")
    assert len(val) == 3 and val.has_background and val.max_class == 59
    np.testing.assert_array_equal(val[0].label, label_pattern(52, 59, void_border=False))
    assert val[0].label.max() == 54


def test_coco_counts_and_values(tmp_path: Path) -> None:
    root = make_coco(tmp_path, n_train=2, n_val=3)
    assert len(CocoStuffDataset(root=root, split="train")) == 2
    val = CocoStuffDataset(root=root, split="val2017")
    assert len(val) == 3 and not val.has_background
    values = set(np.unique(val[0].label))
    assert values == {165, 166, 255}  # classes 0-based, background band unlabeled


def test_folder_lists_images_only(tmp_path: Path) -> None:
    root = make_folder(tmp_path, n=3)
    (root / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(root / "sub" / "deep.png")
    flat = FolderDataset(root=root, split="val")
    assert [n for n, _, _ in flat.items] == ["img0", "img1", "img2"]
    assert flat[1].label is None and flat[1].image.shape == (*SIZE, 3)
    assert len(FolderDataset(root=root, split="train", recursive=True)) == 4
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        FolderDataset(root=tmp_path / "empty", split="train")


@pytest.mark.parametrize(
    ("cls", "sub", "script"),
    [
        (VOCDataset, "VOCdevkit/VOC2012", "prepare_voc_aug.py"),
        (ContextDataset, "VOCdevkit/VOC2010", "prepare_pascal_context.py"),
        (CocoStuffDataset, "coco_stuff164k", "prepare_coco_stuff.py"),
    ],
)
def test_missing_root_names_path_and_script(tmp_path: Path, cls, sub: str, script: str) -> None:
    root = tmp_path / sub
    with pytest.raises(UserError) as err:
        cls(root=root, split="val")
    assert str(root) in str(err.value) and script in str(err.value)


def test_list_entry_without_image_or_label(tmp_path: Path) -> None:
    root = make_voc(tmp_path, n_train=1, n_val=2, n_aug=0)
    (root / "JPEGImages" / "2008_000001.jpg").unlink()
    with pytest.raises(UserError, match=r"image missing: .*2008_000001\.jpg, listed in .*val\.txt"):
        VOCDataset(root=root, split="val")
    ctx = make_context(tmp_path, n_train=1, n_val=1)
    (ctx / "SegmentationClassContext" / "2009_000000.png").unlink()
    with pytest.raises(UserError, match=r"label missing: .*2009_000000\.png"):
        ContextDataset(root=ctx, split="val")
    coco = make_coco(tmp_path, n_train=1, n_val=1)
    next((coco / "annotations" / "val2017").glob("*.png")).unlink()
    with pytest.raises(UserError, match=r"label missing: .*_labelTrainIds\.png"):
        CocoStuffDataset(root=coco, split="val")


def test_size_mismatch_names_both_files(tmp_path: Path) -> None:
    root = make_voc(tmp_path, n_train=1, n_val=1, n_aug=0)
    save_png(root / "SegmentationClass" / "2008_000000.png", np.zeros((10, 12), np.uint8))
    with pytest.raises(DataFileError, match=r"2008_000000\.jpg is 32x24 but its label .*is 12x10"):
        VOCDataset(root=root, split="val")[0]


def test_label_value_out_of_range_names_file_and_value(tmp_path: Path) -> None:
    root = make_context(tmp_path, n_train=1, n_val=1)
    label = label_pattern(0, 59, void_border=False)
    label[3, 3] = 77
    save_png(root / "SegmentationClassContext" / "2009_000000.png", label)
    with pytest.raises(
        DataFileError, match=r"2009_000000\.png contains the value 77, outside .*0\.\.59"
    ):
        ContextDataset(root=root, split="val")[0]


def test_corrupt_image_names_the_file(tmp_path: Path) -> None:
    root = make_coco(tmp_path, n_train=1, n_val=1)
    image = next((root / "images" / "val2017").glob("*.jpg"))
    image.write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(DataFileError, match=rf"cannot read image {image}"):
        CocoStuffDataset(root=root, split="val")[0]


def test_data_error_survives_a_dataloader_worker(tmp_path: Path) -> None:
    root = make_context(tmp_path, n_train=1, n_val=1)
    label = label_pattern(0, 59, void_border=False)
    label[0, 0] = 99
    save_png(root / "SegmentationClassContext" / "2009_000000.png", label)
    ds = ContextDataset(root=root, split="val")
    loader = torch.utils.data.DataLoader(ds, num_workers=1, collate_fn=lambda x: x)
    with pytest.raises(DataFileError) as err:
        next(iter(loader))
    message = str(err.value)
    assert "Traceback" not in message and "worker" not in message
    assert message.startswith(f"label {root / 'SegmentationClassContext' / '2009_000000.png'}")
    assert "contains the value 99" in message and "\n  fix: " in message
