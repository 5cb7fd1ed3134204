"""Settings, unseen masking, background protocol and the data module's samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from src.batch import CANDIDATES, IGNORE_INDEX, IMAGE, NAME, TARGET, UNLABELLED
from src.data.classnames import COCOSTUFF171, CONTEXT59, VOC20
from src.data.datamodule import SegmentationDataModule
from src.data.splits import (
    UNSEEN,
    candidate_mask,
    eval_label_lut,
    target_lut,
    unseen_indices,
    validate_setting,
)
from src.errors import UserError
from tests.data.layouts import SIZE, label_pattern, make_coco, make_context, make_folder, make_voc

CONF = Path(__file__).resolve().parents[2] / "conf"
FAST = {"num_workers": 0, "crop_size": 32, "scale": (64, 32), "eval_scale": (64, 48)}


def test_eval_label_lut_reduces_zero_only_when_background_not_counted() -> None:
    raw = np.array([0, 1, 5, 20, 255], np.uint8)
    voc20 = eval_label_lut(has_background=True, count_background=False)
    assert voc20[raw].tolist() == [255, 0, 4, 19, 255]
    voc21 = eval_label_lut(has_background=True, count_background=True)
    assert voc21[raw].tolist() == [0, 1, 5, 20, 255]
    coco = eval_label_lut(has_background=False, count_background=False)
    assert coco[raw].tolist() == [0, 1, 5, 20, 255]


def test_unseen_names_match_loosely_and_reject_unknowns() -> None:
    names = ["background", *VOC20]
    assert unseen_indices(["TV-monitor", "pottedplant", "sheep"], names) == [16, 17, 20]
    assert unseen_indices(["aeroplane"], list(CONTEXT59)) == [0]
    assert unseen_indices(["wall-concrete"], list(COCOSTUFF171)) == [
        COCOSTUFF171.index("concrete wall")
    ]
    with pytest.raises(UserError, match="'unicorn' is not one of"):
        unseen_indices(["unicorn"], names)
    with pytest.raises(UserError, match="background cannot be"):
        unseen_indices(["background"], names)


def test_target_lut_and_candidates_per_setting() -> None:
    labels = np.array([0, 1, 2, 3, 255], np.uint8)  # 0 = background (counted)
    zs = target_lut(setting="zero_shot", num_classes=4, unseen=[2, 3])
    assert zs[labels].tolist() == [0, 1, UNLABELLED, UNLABELLED, 255]
    af = target_lut(setting="annotation_free", num_classes=4, unseen=[])
    assert af[labels].tolist() == [UNLABELLED] * 4 + [255]
    sup = target_lut(setting="supervised", num_classes=4, unseen=[2])
    assert sup[labels].tolist() == labels.tolist()
    kw = {"num_classes": 4, "unseen": [2, 3], "class_offset": 1}
    assert candidate_mask(setting="zero_shot", **kw).tolist() == [False, False, True, True]
    assert candidate_mask(setting="annotation_free", **kw).tolist() == [False, True, True, True]
    assert not candidate_mask(setting="supervised", **kw).any()


def test_invalid_settings_are_user_errors() -> None:
    with pytest.raises(UserError, match="needs unseen classes"):
        validate_setting(setting="zero_shot", unseen=[], count_background=True, has_labels=True)
    with pytest.raises(UserError, match="cannot count background"):
        validate_setting(
            setting="annotation_free", unseen=[], count_background=True, has_labels=True
        )
    with pytest.raises(UserError, match="needs labels"):
        validate_setting(setting="supervised", unseen=[], count_background=False, has_labels=False)
    with pytest.raises(UserError, match="unknown training setting"):
        validate_setting(setting="semi", unseen=[], count_background=False, has_labels=True)


def test_configs_carry_the_reference_lists() -> None:
    for name, expected in UNSEEN.items():
        cfg = OmegaConf.load(CONF / "split" / f"{name}.yaml")
        assert cfg.setting == "zero_shot" and list(cfg.unseen_classes) == list(expected)
    assert len(UNSEEN["voc_zs5"]) == 5 and len(UNSEEN["context_zs10"]) == 10
    assert len(UNSEEN["cocostuff_zs15"]) == 15
    for name, names in (("voc", VOC20), ("context59", CONTEXT59), ("context60", CONTEXT59),
                        ("cocostuff171", COCOSTUFF171)):  # fmt: skip
        assert list(OmegaConf.load(CONF / "data" / f"{name}.yaml").class_names) == list(names)
    for name in ("potted plant", "tv monitor", "dining table"):
        assert name in VOC20


def voc_dm(tmp_path: Path, **kw) -> SegmentationDataModule:
    root = make_voc(tmp_path, n_train=3, n_val=2, n_aug=2)
    args = {
        "dataset": "voc",
        "root": str(root),
        "class_names": list(VOC20),
        "has_background": True,
        "train_split": "aug",
    }
    return SegmentationDataModule(**{**args, **FAST, **kw})


def test_voc_zero_shot_training_sample(tmp_path: Path) -> None:
    dm = voc_dm(tmp_path, count_background=True, setting="zero_shot",
                unseen_classes=list(UNSEEN["voc_zs5"]))  # fmt: skip
    assert dm.class_names[0] == "background" and dm.num_classes == 21 and dm.class_offset == 1
    assert dm.teacher_class_names == list(VOC20) and dm.unseen_indices == [16, 17, 18, 19, 20]
    assert dm.seen_indices == list(range(16)) and dm.ignore_index == IGNORE_INDEX
    # the tree's labels hold classes 1..8: make bicycle (2) and bird (3) the unseen ones
    dm = voc_dm(tmp_path, count_background=True, setting="zero_shot",
                unseen_classes=["bicycle", "bird"], batch_size=2, ratio_range=(1.0, 1.0),
                cat_max_ratio=1.0, flip_prob=0.0, photometric=False, scale=(32, 24))  # fmt: skip
    dm.setup("fit")
    assert len(dm.train_set) == 5  # train.txt + aug.txt
    for index, pattern in ((0, 0), (1, 1), (4, 6)):  # train ids 0, 1; aug id 1 (7th image)
        sample = dm.train_set[index]
        assert sample[IMAGE].shape == (3, 32, 32) and sample[IMAGE].dtype == torch.float32
        assert sample[TARGET].dtype == torch.int64
        label = label_pattern(pattern, 20).astype(np.int64)
        label[(label == 2) | (label == 3)] = UNLABELLED  # hidden: location known, class not
        expected = np.full((32, 32), 255)
        expected[:24, :32] = label  # padded with void
        np.testing.assert_array_equal(sample[TARGET].numpy(), expected)
        assert sample[CANDIDATES].tolist() == [i in (2, 3) for i in range(21)]
    assert dm.train_set[4][NAME] == "2011_000001"
    batch = next(iter(dm.train_dataloader()))
    assert batch[IMAGE].shape == (2, 3, 32, 32) and batch[TARGET].shape == (2, 32, 32)
    assert batch[CANDIDATES].shape == (2, 21) and len(batch[NAME]) == 2


def test_voc20_annotation_free_hides_every_labelled_pixel(tmp_path: Path) -> None:
    dm = voc_dm(tmp_path, count_background=False, setting="annotation_free")
    assert dm.num_classes == 20 and dm.class_offset == 0 and dm.class_names == list(VOC20)
    dm.setup("fit")
    for i in range(len(dm.train_set)):
        values = set(np.unique(dm.train_set[i][TARGET].numpy()))
        assert values <= {UNLABELLED, IGNORE_INDEX} and UNLABELLED in values
    assert dm.train_set[0][CANDIDATES].all()


def test_eval_sample_has_full_truth_at_label_size(tmp_path: Path) -> None:
    dm = voc_dm(tmp_path, count_background=False, setting="zero_shot",
                unseen_classes=["sheep"], eval_scale=(2048, 48))  # fmt: skip
    dm.setup("validate")
    sample = dm.val_set[0]
    assert sample[IMAGE].shape == (3, 48, 64)  # short side 48, aspect kept
    expected = label_pattern(3, 20).astype(np.int64) - 1  # VOC-20: background -> 255
    expected[expected == -1] = 255
    expected[label_pattern(3, 20) == 255] = 255
    np.testing.assert_array_equal(sample[TARGET].numpy(), expected)
    assert UNLABELLED not in sample[TARGET]
    batch = next(iter(dm.val_dataloader()))
    assert batch[TARGET].shape == (1, *SIZE)


def test_context_and_coco_protocols(tmp_path: Path) -> None:
    root = make_context(tmp_path)
    base = {"dataset": "context60", "root": str(root), "class_names": list(CONTEXT59), **FAST}
    c60 = SegmentationDataModule(**base, has_background=True, count_background=True)
    c59 = SegmentationDataModule(**base, has_background=True, count_background=False)
    assert (c60.num_classes, c59.num_classes) == (60, 59)
    c60.setup("validate")
    c59.setup("validate")
    t60, t59 = c60.val_set[0][TARGET], c59.val_set[0][TARGET]
    assert (t60 == 0).any() and not (t59 == 0).logical_and(t60 == 0).any()
    assert torch.equal(t59[t60 > 0], t60[t60 > 0] - 1)
    coco = make_coco(tmp_path)
    args = {"dataset": "cocostuff171", "root": str(coco), "class_names": list(COCOSTUFF171), **FAST}
    dm = SegmentationDataModule(**args)
    assert dm.num_classes == 171 and not dm.has_background
    with pytest.raises(UserError, match="no background class to count"):
        SegmentationDataModule(**args, count_background=True)


def test_folder_trains_annotation_free_only(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    args = {"dataset": "folder", "root": str(root), "class_names": ["cat", "dog"], **FAST}
    dm = SegmentationDataModule(**args, setting="annotation_free")
    assert not dm.has_labels
    dm.setup("fit")
    values = set(np.unique(dm.train_set[0][TARGET].numpy()))
    assert UNLABELLED in values and values <= {UNLABELLED, IGNORE_INDEX}
    with pytest.raises(UserError, match="needs labels"):
        SegmentationDataModule(**args, setting="supervised")
    with pytest.raises(UserError, match="non-empty list"):
        SegmentationDataModule(**{**args, "class_names": []}, setting="annotation_free")


def test_class_count_mismatch_and_unknown_dataset(tmp_path: Path) -> None:
    dm = voc_dm(tmp_path, class_names=list(VOC20[:19]))
    with pytest.raises(UserError, match="has 20 classes .* lists 19"):
        dm.setup("validate")
    with pytest.raises(UserError, match="unknown dataset 'imagenet'"):
        SegmentationDataModule(dataset="imagenet", root=".", class_names=["a"])


def test_workers_draw_different_augmentations(tmp_path: Path) -> None:
    dm = voc_dm(tmp_path, setting="annotation_free", count_background=False, num_workers=2,
                batch_size=1, photometric=True)  # fmt: skip
    dm.setup("fit")
    dm.train_set.raw.items = [dm.train_set.raw.items[0]] * 4  # one image, four draws
    images = [b[IMAGE] for b in torch.utils.data.DataLoader(
        dm.train_set, batch_size=1, num_workers=2,
        worker_init_fn=dm.train_dataloader().worker_init_fn)]  # fmt: skip
    # worker 0 draws samples 0 and 2, worker 1 samples 1 and 3: same stream would repeat
    assert not torch.equal(images[0], images[1])
