"""The dataset preparation scripts on tiny fake downloads: outputs, resuming, errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat

from src.data.datasets import ContextDataset, VOCDataset
from tests.data.layouts import write_list

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def run_script(name: str, *args: object) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SCRIPTS / name), *map(str, args), "--workers", "1"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def test_prepare_voc_aug(tmp_path: Path) -> None:
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    lists = voc / "ImageSets" / "Segmentation"
    write_list(lists / "train.txt", ["a", "b"])
    write_list(lists / "val.txt", ["c"])
    sbd = tmp_path / "benchmark_RELEASE" / "dataset"
    write_list(sbd / "train.txt", ["a", "c", "d"])
    write_list(sbd / "val.txt", ["e"])
    (sbd / "cls").mkdir(parents=True)
    masks = {}
    for k, name in enumerate(["a", "c", "d", "e"]):
        masks[name] = np.full((6, 7), k + 1, np.uint8)
        masks[name][0, 0] = 0
        savemat(sbd / "cls" / f"{name}.mat", {"GTcls": {"Segmentation": masks[name],
                                                         "CategoriesPresent": [k + 1]}})  # fmt: skip
    proc = run_script("prepare_voc_aug.py", "--devkit", tmp_path / "VOCdevkit", "--sbd", sbd.parent)
    assert proc.returncode == 0, proc.stderr
    for name, mask in masks.items():
        np.testing.assert_array_equal(read_png(voc / "SegmentationClassAug" / f"{name}.png"), mask)
    assert (lists / "trainaug.txt").read_text().split() == ["a", "b", "d", "e"]  # minus val c
    assert (lists / "aug.txt").read_text().split() == ["d", "e"]  # minus VOC train and val
    stamp = (voc / "SegmentationClassAug" / "d.png").stat().st_mtime_ns
    again = run_script(
        "prepare_voc_aug.py", "--devkit", tmp_path / "VOCdevkit", "--sbd", sbd.parent
    )
    assert again.returncode == 0 and "4 already converted" in again.stdout
    assert "(unchanged)" in again.stdout
    assert (voc / "SegmentationClassAug" / "d.png").stat().st_mtime_ns == stamp
    # the prepared tree loads: train (a, b) + aug (d, e) once images and VOC labels exist
    (voc / "JPEGImages").mkdir()
    (voc / "SegmentationClass").mkdir()
    for name in "abcde":
        Image.new("RGB", (7, 6)).save(voc / "JPEGImages" / f"{name}.jpg")
    for name in "ab":
        Image.fromarray(np.zeros((6, 7), np.uint8)).save(voc / "SegmentationClass" / f"{name}.png")
    aug = VOCDataset(root=voc, split="aug")
    assert [n for n, _, _ in aug.items] == ["a", "b", "d", "e"]
    np.testing.assert_array_equal(aug[3].label, masks["e"])


def test_prepare_voc_aug_missing_input_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "VOCdevkit" / "VOC2012").mkdir(parents=True)
    proc = run_script(
        "prepare_voc_aug.py", "--devkit", tmp_path / "VOCdevkit", "--sbd", tmp_path / "nope"
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.startswith("error: SBD class annotations")
        and str(tmp_path / "nope") in proc.stderr
    )


def test_prepare_pascal_context(tmp_path: Path) -> None:
    voc = tmp_path / "VOCdevkit" / "VOC2010"
    write_list(voc / "ImageSets" / "Main" / "train.txt", ["t1", "t2"])
    write_list(voc / "ImageSets" / "Main" / "val.txt", ["v1", "v2"])
    ann = tmp_path / "trainval"
    ann.mkdir()
    # 459-class ids: 2 aeroplane -> 1, 9 bag -> 2, 458 wood -> 59, 1 accordion -> 0 (other)
    label = np.array([[2, 9, 458], [1, 0, 115]], np.uint16)
    for name in ("t1", "t2", "v1"):  # v2 has no annotation: left out of the list
        savemat(ann / f"{name}.mat", {"LabelMap": label})
    proc = run_script(
        "prepare_pascal_context.py", "--devkit", tmp_path / "VOCdevkit", "--annotations", ann
    )
    assert proc.returncode == 0, proc.stderr
    out = read_png(voc / "SegmentationClassContext" / "t1.png")
    assert out.tolist() == [[1, 2, 59], [0, 0, 24]]  # 115 is the 24th of the 59 ids
    lists = voc / "ImageSets" / "SegmentationContext"
    assert (lists / "train.txt").read_text().split() == ["t1", "t2"]
    assert (lists / "val.txt").read_text().split() == ["v1"]
    assert "1 without annotation left out" in proc.stdout
    again = run_script(
        "prepare_pascal_context.py", "--devkit", tmp_path / "VOCdevkit", "--annotations", ann
    )
    assert again.returncode == 0 and "3 already converted" in again.stdout
    (voc / "JPEGImages").mkdir()
    Image.new("RGB", (3, 2)).save(voc / "JPEGImages" / "v1.jpg")
    assert ContextDataset(root=voc, split="val")[0].label.tolist() == out.tolist()


def test_prepare_coco_stuff(tmp_path: Path) -> None:
    root = tmp_path / "coco_stuff164k"
    for split in ("train2017", "val2017"):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        values = np.array([[0, 10, 11, 12], [90, 91, 181, 255]], np.uint8)
        Image.fromarray(values).save(root / "annotations" / split / "000000000001.png")
    proc = run_script("prepare_coco_stuff.py", "--root", root)
    assert proc.returncode == 0, proc.stderr
    out = read_png(root / "annotations" / "val2017" / "000000000001_labelTrainIds.png")
    assert out.tolist() == [[0, 10, 255, 11], [255, 80, 170, 255]]  # 11 and 90 name no class
    again = run_script("prepare_coco_stuff.py", "--root", root)
    assert again.returncode == 0 and "1 already converted" in again.stdout
    missing = run_script("prepare_coco_stuff.py", "--root", tmp_path / "elsewhere")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert str(tmp_path / "elsewhere" / "annotations" / "train2017") in missing.stderr


def test_prepare_coco_object_as_the_training_free_papers(tmp_path: Path) -> None:
    root = tmp_path / "coco_stuff164k"
    values = np.array([[0, 10, 12, 89], [91, 181, 255, 50]], np.uint8)
    for split in ("train2017", "val2017"):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        Image.fromarray(values).save(root / "annotations" / split / "000000000001.png")
    assert run_script("prepare_coco_stuff.py", "--root", root).returncode == 0
    proc = run_script("prepare_coco_object.py", "--root", root)
    assert proc.returncode == 0, proc.stderr
    out = read_png(root / "annotations" / "val2017" / "000000000001_instanceTrainIds.png")
    # things: COCO-Stuff train id + 1 (id 12 is the 12th used thing: 11 is unused); stuff and
    # unlabeled -> background 0 (GroupViT's / SCLIP's cvt_coco_object.py)
    assert out.tolist() == [[1, 11, 12, 80], [0, 0, 0, 46]]  # 50: 5 unused ids below
    again = run_script("prepare_coco_object.py", "--root", root)
    assert again.returncode == 0 and "1 maps, 1 already converted" in again.stdout
    # neither script takes the other's outputs for stuff maps
    stuff = run_script("prepare_coco_stuff.py", "--root", root)
    assert "1 maps, 1 already converted" in stuff.stdout
    missing = run_script("prepare_coco_object.py", "--root", tmp_path / "elsewhere")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_prepare_cityscapes_writes_train_ids(tmp_path: Path) -> None:
    root = tmp_path / "cityscapes"
    folder = root / "gtFine" / "val" / "lindau"
    folder.mkdir(parents=True)
    (root / "gtFine" / "train").mkdir(parents=True)
    Image.fromarray(np.array([[7, 8, 33, 0], [24, 26, 29, 255]], np.uint8)).save(
        folder / "lindau_000000_000019_gtFine_labelIds.png"
    )
    proc = run_script("prepare_cityscapes.py", "--root", root)
    assert proc.returncode == 2 and "no *_gtFine_labelIds.png" in proc.stderr  # train is empty
    train = root / "gtFine" / "train" / "aachen"
    train.mkdir()
    Image.fromarray(np.full((2, 2), 11, np.uint8)).save(train / "aachen_0_1_gtFine_labelIds.png")
    proc = run_script("prepare_cityscapes.py", "--root", root)
    assert proc.returncode == 0, proc.stderr
    out = read_png(folder / "lindau_000000_000019_gtFine_labelTrainIds.png")
    assert out.tolist() == [[0, 1, 18, 255], [11, 13, 255, 255]]
    assert read_png(train / "aachen_0_1_gtFine_labelTrainIds.png").tolist() == [[2, 2], [2, 2]]
