"""Metrics against hand-computed confusion matrices."""

from __future__ import annotations

import math

import pytest
import torch

from src.evaluation.metrics import (
    SegmentationMetrics,
    harmonic_mean,
    most_confused_pairs,
    segmentation_scores,
)

# 3 classes; 255 is void. Rows: ground truth, columns: prediction.
TARGET = torch.tensor([[0, 0, 1, 1], [1, 2, 2, 255], [0, 254, 2, 2]])
PREDS = torch.tensor([[0, 1, 1, 1], [0, 2, 1, 0], [0, 2, 2, 2]])
#          pred 0  1  2
CONFMAT = [[2, 1, 0],  # gt 0: (0,0)->0, (0,1)->1, (2,0)->0
           [1, 2, 0],  # gt 1: (0,2)->1, (0,3)->1, (1,0)->0
           [0, 1, 3]]  # gt 2: (1,1)->2, (1,2)->1, (2,2)->2, (2,3)->2   (255 and 254 ignored)  # fmt: skip


def test_confusion_matrix_matches_hand_count() -> None:
    m = SegmentationMetrics(3)
    m.update(PREDS[None], TARGET[None])
    assert m.confmat.tolist() == CONFMAT


def test_scores_equal_hand_computation() -> None:
    m = SegmentationMetrics(3, class_names=["a", "b", "c"])
    m.update(PREDS[None], TARGET[None])
    out = m.compute()
    # IoU_c = TP / (GT + PRED - TP): a 2/(3+3-2), b 2/(3+4-2), c 3/(4+3-3)
    iou = [2 / 4, 2 / 5, 3 / 4]
    assert out["iou/a"].item() == pytest.approx(iou[0])
    assert out["iou/b"].item() == pytest.approx(iou[1])
    assert out["iou/c"].item() == pytest.approx(iou[2])
    assert out["miou"].item() == pytest.approx(sum(iou) / 3)
    assert out["pacc"].item() == pytest.approx(7 / 10)
    assert out["macc"].item() == pytest.approx((2 / 3 + 2 / 3 + 3 / 4) / 3)
    assert all(v.ndim == 0 for v in out.values())  # scalars only, loggable
    assert "miou_seen" not in out and "hiou" not in out


def test_logits_and_batches_accumulate_like_one_update() -> None:
    logits = torch.nn.functional.one_hot(PREDS, 3).permute(2, 0, 1).float()[None]
    a = SegmentationMetrics(3)
    a.update(logits, TARGET[None])
    b = SegmentationMetrics(3)
    b.update(PREDS[None, :2], TARGET[None, :2])
    b.update(PREDS[None, 2:], TARGET[None, 2:])
    assert a.confmat.tolist() == CONFMAT == b.confmat.tolist()


def test_absent_classes_are_nan_and_left_out_of_means() -> None:
    cm = torch.tensor([[5, 1, 0, 0], [0, 0, 0, 0], [2, 0, 2, 0], [0, 3, 0, 0]])
    s = segmentation_scores(cm)
    assert math.isnan(s["iou"][1]) and math.isnan(s["acc"][1])  # class 1: no ground truth
    assert s["iou"][3].item() == 0.0  # present, never right: counts as 0
    iou = [5 / 8, 2 / 4, 0.0]
    assert s["miou"].item() == pytest.approx(sum(iou) / 3)
    assert s["macc"].item() == pytest.approx((5 / 6 + 2 / 4 + 0) / 3)
    assert s["pacc"].item() == pytest.approx(7 / 13)


def test_seen_unseen_and_harmonic_aggregation() -> None:
    cm = torch.tensor([[8, 2, 0, 0], [1, 3, 0, 0], [0, 0, 5, 5], [0, 0, 0, 0]])
    s = segmentation_scores(cm, unseen_indices=[2, 3])
    iou = [8 / 11, 3 / 6, 5 / 10]
    seen, unseen = (iou[0] + iou[1]) / 2, iou[2]  # class 3 absent: left out of unseen
    assert s["miou_seen"].item() == pytest.approx(seen)
    assert s["miou_unseen"].item() == pytest.approx(unseen)
    assert s["hiou"].item() == pytest.approx(2 * seen * unseen / (seen + unseen))
    assert s["pacc_seen"].item() == pytest.approx(11 / 14)
    assert s["pacc_unseen"].item() == pytest.approx(5 / 10)
    assert s["macc_unseen"].item() == pytest.approx(0.5)
    assert s["macc_seen"].item() == pytest.approx((8 / 10 + 3 / 4) / 2)
    assert s["miou"].item() == pytest.approx(sum(iou) / 3)


def test_harmonic_mean_edge_cases() -> None:
    assert harmonic_mean(torch.tensor(0.0), torch.tensor(0.0)).item() == 0.0
    assert math.isnan(harmonic_mean(torch.tensor(0.5), torch.tensor(float("nan"))).item())
    assert harmonic_mean(torch.tensor(0.5), torch.tensor(0.25)).item() == pytest.approx(1 / 3)


def test_state_sums_across_processes() -> None:
    """The confusion matrix is a sum state: DDP's reduction of two shards equals one run."""
    a, b, whole = SegmentationMetrics(3), SegmentationMetrics(3), SegmentationMetrics(3)
    a.update(PREDS[None, :1], TARGET[None, :1])
    b.update(PREDS[None, 1:], TARGET[None, 1:])
    whole.update(PREDS[None], TARGET[None])
    reduce = a._reductions["confmat"]
    stacked = torch.stack([a.confmat, b.confmat])
    assert reduce(stacked).tolist() == whole.confmat.tolist()
    a.merge_state(b)
    assert a.confmat.tolist() == CONFMAT


def test_bad_inputs_raise() -> None:
    m = SegmentationMetrics(3)
    with pytest.raises(ValueError, match="differ"):
        m.update(PREDS[None], TARGET[None, :2])
    with pytest.raises(ValueError, match="predictions must lie"):
        m.update(torch.full((1, 2, 2), 3), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="channels"):
        m.update(torch.zeros(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))


def test_most_confused_pairs() -> None:
    pairs = most_confused_pairs(torch.tensor(CONFMAT), ["a", "b", "c"], k=2)
    assert pairs == [("a", "b", pytest.approx(1 / 3), 1), ("b", "a", pytest.approx(1 / 3), 1)]
    assert most_confused_pairs(torch.eye(3, dtype=torch.long), ["a", "b", "c"]) == []
