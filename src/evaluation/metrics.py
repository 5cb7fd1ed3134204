"""Segmentation metrics from one confusion matrix (a torchmetrics state summed under DDP).

Semantics follow MMSegmentation's "mIoU over the classes present": a class without any
ground-truth pixel in the evaluated set has IoU and accuracy NaN and is left out of every
mean (MMSegmentation leaves out only classes neither present nor predicted; on a full
benchmark split, where every class is present, the two agree). Pixels whose target is not a
class index (255 void, 254) are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

from src.batch import IGNORE_INDEX


def _nanmean(values: torch.Tensor) -> torch.Tensor:
    return (
        torch.nanmean(values) if values.numel() else torch.tensor(float("nan"), dtype=values.dtype)
    )


def harmonic_mean(seen: torch.Tensor, unseen: torch.Tensor) -> torch.Tensor:
    """``2 s u / (s + u)``: 0 when both are 0, NaN when either is NaN."""
    total = seen + unseen
    if total == 0:
        return torch.zeros_like(total)
    return 2 * seen * unseen / total


def segmentation_scores(
    confmat: torch.Tensor, unseen_indices: Sequence[int] = ()
) -> dict[str, torch.Tensor]:
    """Scores of a ``(K, K)`` confusion matrix (rows: ground truth, columns: prediction).

    Returns ``iou`` and ``acc`` (``(K,)``, NaN for classes without ground truth), ``miou``,
    ``macc``, ``pacc`` and, when ``unseen_indices`` is given, their ``_seen`` / ``_unseen``
    variants and ``hiou`` (harmonic mean of seen and unseen mIoU). Values are fractions.
    """
    cm = confmat.detach().to("cpu", torch.float64)
    num_classes = cm.shape[0]
    tp = cm.diagonal()
    gt = cm.sum(dim=1)
    pred = cm.sum(dim=0)
    present = gt > 0
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    iou = torch.where(present, tp / (gt + pred - tp).clamp(min=1), nan)
    acc = torch.where(present, tp / gt.clamp(min=1), nan)

    def pixel_acc(idx: torch.Tensor) -> torch.Tensor:
        total = gt[idx].sum()
        return tp[idx].sum() / total if total > 0 else nan

    every = torch.arange(num_classes)
    out = {
        "iou": iou,
        "acc": acc,
        "miou": _nanmean(iou),
        "macc": _nanmean(acc),
        "pacc": pixel_acc(every),
    }
    if len(unseen_indices):
        unseen = torch.as_tensor(sorted(set(unseen_indices)), dtype=torch.long)
        seen_mask = torch.ones(num_classes, dtype=torch.bool)
        seen_mask[unseen] = False
        seen = every[seen_mask]
        for name, idx in (("seen", seen), ("unseen", unseen)):
            out[f"miou_{name}"] = _nanmean(iou[idx])
            out[f"macc_{name}"] = _nanmean(acc[idx])
            out[f"pacc_{name}"] = pixel_acc(idx)
        out["hiou"] = harmonic_mean(out["miou_seen"], out["miou_unseen"])
    return out


def most_confused_pairs(
    confmat: torch.Tensor, class_names: Sequence[str], k: int = 10
) -> list[tuple[str, str, float, int]]:
    """The ``k`` largest off-diagonal entries as ``(true, predicted, fraction of the true
    class's pixels, pixel count)``, largest fraction first; empty entries are left out."""
    cm = confmat.detach().to("cpu", torch.float64)
    rows = cm / cm.sum(dim=1, keepdim=True).clamp(min=1)
    rows.fill_diagonal_(0)
    values, flat = rows.flatten().sort(descending=True, stable=True)
    out = []
    for value, index in zip(values.tolist(), flat.tolist(), strict=True):
        if value <= 0 or len(out) >= k:
            break
        i, j = divmod(index, cm.shape[0])
        out.append((class_names[i], class_names[j], value, int(cm[i, j])))
    return out


class SegmentationMetrics(Metric):
    """Confusion-matrix metric: ``update(preds, target)``, ``compute()`` -> dict of scalars.

    ``preds`` are class indices ``(B, H, W)`` or logits ``(B, K, H, W)`` (argmax taken);
    ``target`` is ``(B, H, W)`` with 255 (and any value outside ``[0, K)``) ignored.
    ``compute()`` gives ``miou``, ``macc``, ``pacc`` (with ``_seen`` / ``_unseen`` variants
    and ``hiou`` when there are unseen classes) and ``iou/<class name>`` per class (the
    index when no ``class_names``), all fractions in [0, 1], NaN where undefined. The summed
    matrix is the ``confmat`` state; :func:`segmentation_scores` gives per-class vectors.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(
        self,
        num_classes: int,
        *,
        unseen_indices: Sequence[int] = (),
        ignore_index: int = IGNORE_INDEX,
        class_names: Sequence[str] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        self.num_classes = num_classes
        self.class_names = [str(n) for n in class_names] if class_names is not None else None
        self.unseen_indices = [int(i) for i in unseen_indices]
        self.ignore_index = ignore_index
        self.add_state(
            "confmat",
            default=torch.zeros(num_classes, num_classes, dtype=torch.long),
            dist_reduce_fx="sum",
        )

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if preds.ndim == target.ndim + 1:
            if preds.shape[1] != self.num_classes:
                raise ValueError(
                    f"logits have {preds.shape[1]} channels, expected {self.num_classes}"
                )
            preds = preds.argmax(dim=1)
        if preds.shape != target.shape:
            raise ValueError(f"preds {tuple(preds.shape)} and target {tuple(target.shape)} differ")
        k = self.num_classes
        target = target.long()
        preds = preds.long()
        keep = (target >= 0) & (target < k) & (target != self.ignore_index)
        t, p = target[keep], preds[keep]
        if p.numel() and (p.min() < 0 or p.max() >= k):
            raise ValueError(
                f"predictions must lie in [0, {k}), got {int(p.min())}..{int(p.max())}"
            )
        self.confmat += torch.bincount(t * k + p, minlength=k * k).reshape(k, k)

    def compute(self) -> dict[str, torch.Tensor]:
        #: the matrix the last ``compute`` scored (summed over processes under DDP)
        self.last_confmat = self.confmat.detach().cpu().clone()
        scores = segmentation_scores(self.confmat, self.unseen_indices)
        iou = scores.pop("iou")
        scores.pop("acc")
        names = self.class_names or [str(i) for i in range(self.num_classes)]
        scores.update({f"iou/{name}": value for name, value in zip(names, iou, strict=True)})
        return scores
