"""ADE20K, Cityscapes, COCO-Object in their real layouts; the protocol's class-name files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from src.data.base import DATASETS
from src.data.classnames import (
    ADE20K,
    CITYSCAPES,
    COCO_OBJECT80,
    VOC20,
    normalise_name,
    read_names_file,
    shipped_names_files,
)
from src.data.datamodule import SegmentationDataModule
from src.data.datasets import ADE20KDataset, CityscapesDataset, CocoObjectDataset
from src.errors import UserError
from src.prompts import entry_names
from tests.data.layouts import (
    SIZE,
    label_pattern,
    make_ade20k,
    make_cityscapes,
    make_coco,
    make_coco_object,
    make_voc,
)

CONF = Path(__file__).resolve().parents[2] / "conf"
FAST = {"num_workers": 0, "pin_memory": False, "eval_scale": None}


def test_ade20k_reads_training_and_validation(tmp_path: Path) -> None:
    root = make_ade20k(tmp_path, n_train=2, n_val=3)
    assert "ade20k" in DATASETS
    assert len(ADE20KDataset(root=root, split="training")) == 2
    val = ADE20KDataset(root=root, split="val")  # "val" is the validation folder
    assert len(val) == 3 and val[1].name == "ADE_val_00000002"
    np.testing.assert_array_equal(val[1].label, label_pattern(149, 150, void_border=False))
    dm = SegmentationDataModule(dataset="ade20k", root=str(root), class_names=list(ADE20K),
                                val_split="validation", **FAST)  # fmt: skip
    target = dm.val_dataset()[1]["target"].numpy()
    expected = label_pattern(149, 150, void_border=False).astype(np.int64) - 1
    expected[expected < 0] = 255  # 0 = "other": not counted (reduce_zero_label)
    np.testing.assert_array_equal(target, expected)
    assert dm.num_classes == 150 and dm.class_names[0] == "wall"


def test_cityscapes_pairs_images_and_train_ids_across_cities(tmp_path: Path) -> None:
    root = make_cityscapes(tmp_path, n_train=2, n_val=2)
    val = CityscapesDataset(root=root, split="val")
    assert [n for n, _, _ in val.items] == ["frankfurt_000000_000019", "lindau_000001_000019"]
    sample = val[1]
    assert sample.image.shape == (*SIZE, 3)
    expected = label_pattern(18, 19) - 1
    expected[expected == 254] = 255
    np.testing.assert_array_equal(sample.label, expected)
    assert set(np.unique(sample.label)) <= set(range(19)) | {255}


def test_coco_object_shares_the_coco_stuff_root(tmp_path: Path) -> None:
    make_coco(tmp_path)
    root = make_coco_object(tmp_path)
    val = CocoObjectDataset(root=root, split="val")
    assert len(val) == 2 and val[0].name == "000000000100"
    np.testing.assert_array_equal(val[0].label, label_pattern(78, 80, void_border=False))
    dm = SegmentationDataModule(dataset="coco_object", root=str(root),
                                class_names=list(COCO_OBJECT80), count_background=True,
                                names_file="coco_object", **FAST)  # fmt: skip
    assert dm.num_classes == 81 and dm.class_names[:2] == ["background", "person"]
    assert dm.teacher_background.startswith("sky, wall, tree") and len(dm.teacher_class_names) == 80
    assert dm.teacher_class_names[0].startswith("person, person in shirt")
    target = dm.val_dataset()[0]["target"].numpy()
    np.testing.assert_array_equal(target, label_pattern(78, 80, void_border=False))


@pytest.mark.parametrize(
    ("maker", "cls", "remove", "words"),
    [
        (make_ade20k, ADE20KDataset, "annotations/validation", ["ADE20K annotations", "not found"]),
        (make_cityscapes, CityscapesDataset, "gtFine/val/lindau/lindau_000001_000019_gtFine_labelTrainIds.png",
         ["label missing", "lindau_000001_000019_gtFine_labelTrainIds.png", "prepare_cityscapes.py"]),
        (make_coco_object, CocoObjectDataset, "annotations/val2017/000000000101_instanceTrainIds.png",
         ["label missing", "000000000101_instanceTrainIds.png", "prepare_coco_object.py"]),
    ],
)  # fmt: skip
def test_bad_layouts_are_one_line_naming_the_file_and_the_fix(tmp_path, maker, cls, remove, words):
    root = maker(tmp_path)
    path = root / remove
    if path.is_dir():
        for f in path.iterdir():
            f.unlink()
        path.rmdir()
    else:
        path.unlink()
    with pytest.raises(UserError) as err:
        cls(root=root, split="val" if cls is not ADE20KDataset else "validation")
    text = str(err.value)
    assert "\n" not in text.split("\n  fix:")[0]
    for word in words:
        assert word in text


def test_missing_roots_name_the_download(tmp_path: Path) -> None:
    for cls, hint in ((ADE20KDataset, "ADEChallengeData2016"), (CityscapesDataset, "gtFine"),
                      (CocoObjectDataset, "prepare_coco_object.py")):  # fmt: skip
        with pytest.raises(UserError, match=hint):
            cls(root=tmp_path / "nowhere", split="val")


def test_shipped_names_files_match_the_data_configs() -> None:
    benchmarks = ["ade20k", "cityscapes", "coco_object", "cocostuff171", "context59",
                  "context60", "voc20", "voc21"]  # fmt: skip
    # CorrCLIP's own lists (protocol=corrclip): "people" for "person", its background words
    assert shipped_names_files() == sorted(benchmarks + [f"corrclip_{b}" for b in benchmarks])
    corrclip = {"voc21": (21, 46), "context60": (60, 60), "coco_object": (81, 96),
                "voc20": (20, 20), "context59": (59, 59), "cocostuff171": (171, 171),
                "cityscapes": (19, 19), "ade20k": (150, 150)}  # fmt: skip
    for name, (classes, names) in corrclip.items():
        entries = read_names_file(f"corrclip_{name}")
        assert len(entries) == classes and sum(len(entry_names(e)) for e in entries) == names
        assert len(entries) == len(read_names_file(name))
    counts = {"voc21": (21, 56), "context60": (60, 60), "coco_object": (81, 113),
              "voc20": (20, 30), "context59": (59, 59), "cocostuff171": (171, 171),
              "cityscapes": (19, 19), "ade20k": (150, 150)}  # fmt: skip
    for name, (classes, names) in counts.items():
        entries = read_names_file(name)
        assert len(entries) == classes and sum(len(entry_names(e)) for e in entries) == names
        cfg = OmegaConf.load(CONF / "data" / f"{name}.yaml")
        base = cfg.get("class_names") or OmegaConf.load(CONF / "data" / "voc.yaml").class_names
        offset = 1 if name in ("voc21", "context60", "coco_object") else 0
        assert len(base) + offset == classes
        # the first name of each line is the config's class (spelling aside), background aside
        firsts = [normalise_name(entry_names(e)[0]) for e in entries[offset:]]
        mine = [normalise_name(n) for n in base]
        same = sum(a == b for a, b in zip(firsts, mine, strict=True))
        assert same >= 0.75 * len(mine), name  # "ship" for boat, "table" for dining table ...
    assert read_names_file("voc21")[15].startswith("person, person in shirt")
    assert read_names_file("context60")[0] == "background"
    for names in (ADE20K, CITYSCAPES):
        assert len(set(names)) == len(names)


def test_names_file_gives_the_teacher_entries_and_background_words(tmp_path: Path) -> None:
    root = make_voc(tmp_path)
    args = {"dataset": "voc", "root": str(root), "class_names": list(VOC20), **FAST}
    dm = SegmentationDataModule(count_background=True, names_file="voc21", **args)
    assert dm.class_names == ["background", *VOC20]  # reports keep the config's names
    assert dm.teacher_class_names[14].startswith("person, person in shirt")
    assert (
        dm.teacher_class_names[19] == "television monitor, tv monitor, monitor, television, screen"
    )
    assert dm.teacher_background.split(", ")[:3] == ["sky", "wall", "tree"]
    dm20 = SegmentationDataModule(count_background=False, names_file="voc20", **args)
    assert dm20.teacher_background is None and dm20.class_names == list(VOC20)
    custom = tmp_path / "names.txt"
    custom.write_text("\n".join(["things, stuff"] + [f"c{i}, k{i}" for i in range(20)]) + "\n")
    dmc = SegmentationDataModule(count_background=True, names_file=str(custom), **args)
    assert dmc.teacher_background == "things, stuff" and dmc.teacher_class_names[3] == "c3, k3"
    with pytest.raises(UserError, match="lists 20 classes but the data has 21"):
        SegmentationDataModule(count_background=True, names_file="voc20", **args)
    with pytest.raises(UserError, match="not found"):
        SegmentationDataModule(count_background=True, names_file="voc99", **args)
    # several names in data.class_names: the teacher gets them, reports the first
    multi = SegmentationDataModule(
        **{**args, "class_names": ["airplane, plane", *VOC20[1:]]}, count_background=False
    )
    assert multi.class_names[0] == "airplane" and multi.teacher_class_names[0] == "airplane, plane"
