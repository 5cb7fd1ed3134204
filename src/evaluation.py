"""Evaluate any model with ``predict_logits(images, size)`` and write its report.

:class:`EvaluationModule` wraps the model for ``Trainer.test`` (progress bar, devices, DDP:
the confusion matrix is summed over processes); :func:`write_report` writes the per-class
markdown table, the confusion matrix (CSV and picture) and returns ``metrics.json``'s dict.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from src.batch import IMAGE, TARGET
from src.errors import UserError
from src.metrics import SegmentationMetrics, most_confused_pairs, segmentation_scores
from src.utils.io import atomic_write_text

SUMMARY_KEYS = (
    "miou", "miou_seen", "miou_unseen", "hiou",
    "pacc", "pacc_seen", "pacc_unseen", "macc", "macc_seen", "macc_unseen",
)  # fmt: skip


def align_logits(logits: Tensor, num_classes: int, class_offset: int) -> Tensor:
    """Bring a model's ``(B, C, H, W)`` scores into the data's class space.

    A model without background channels (the teacher, ``C = K - offset``) gets ``-inf`` for
    the ``class_offset`` leading classes; ``C = K`` is returned as it is.
    """
    channels = logits.shape[1]
    if channels == num_classes:
        return logits
    if class_offset and channels == num_classes - class_offset:
        pad = logits.new_full((logits.shape[0], class_offset, *logits.shape[2:]), float("-inf"))
        return torch.cat([pad, logits], dim=1)
    raise UserError(
        f"the model scores {channels} classes but the data has {num_classes}"
        + (f" ({class_offset} of them background)" if class_offset else ""),
        "evaluate with the data/split the model was built for",
    )


class EvaluationModule(pl.LightningModule):
    """Scores a frozen model on evaluation batches (``Trainer.test`` or ``validate``).

    After the run, ``confmat`` holds the (process-summed) confusion matrix and ``scores``
    :func:`~src.metrics.segmentation_scores` of it.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        num_classes: int,
        class_offset: int = 0,
        unseen_indices: Sequence[int] = (),
    ) -> None:
        super().__init__()
        if not callable(getattr(model, "predict_logits", None)):
            raise UserError(f"{type(model).__name__} has no predict_logits(images, size)")
        self.model = model
        self.model.requires_grad_(False)
        self.num_classes, self.class_offset = num_classes, class_offset
        self.unseen_indices = [int(i) for i in unseen_indices]
        self.metric = SegmentationMetrics(num_classes, unseen_indices=self.unseen_indices)
        self.confmat: Tensor | None = None
        self.scores: dict[str, Tensor] | None = None

    def _step(self, batch: Mapping[str, Any]) -> None:
        target = batch[TARGET]
        logits = self.model.predict_logits(batch[IMAGE], size=tuple(target.shape[-2:]))
        logits = align_logits(logits, self.num_classes, self.class_offset)
        self.metric.update(logits.argmax(dim=1), target)

    def _finish(self) -> None:
        with self.metric.sync_context():
            self.confmat = self.metric.confmat.detach().cpu().clone()
        self.scores = segmentation_scores(self.confmat, self.unseen_indices)
        self.metric.reset()

    def on_test_epoch_start(self) -> None:
        self.model.eval()
        self.metric.reset()

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._step(batch)

    def on_test_epoch_end(self) -> None:
        self._finish()

    on_validation_epoch_start = on_test_epoch_start

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._step(batch)

    def on_validation_epoch_end(self) -> None:
        self._finish()


def _value(x: Tensor | float) -> float | None:
    v = float(x)
    return None if math.isnan(v) else v


def metrics_dict(
    scores: Mapping[str, Tensor], class_names: Sequence[str], *, prefix: str = "val"
) -> dict[str, float | None]:
    """``{prefix}/miou`` ... and ``{prefix}/iou/<class>``: fractions, None where undefined."""
    out = {f"{prefix}/{k}": _value(scores[k]) for k in SUMMARY_KEYS if k in scores}
    for name, value in zip(class_names, scores["iou"], strict=True):
        out[f"{prefix}/iou/{name}"] = _value(value)
    return out


def _pct(x: Tensor | float) -> str:
    v = float(x)
    return "n/a" if math.isnan(v) else f"{100 * v:.2f}"


def markdown_table(
    scores: Mapping[str, Tensor],
    confmat: Tensor,
    class_names: Sequence[str],
    *,
    unseen_indices: Sequence[int] = (),
    title: str = "Evaluation",
    pairs: Sequence[tuple[str, str, float, int]] = (),
) -> str:
    """A markdown report: the summary in percent, one row per class, the most confused pairs."""
    lines = [f"# {title}", "", "| metric | value (%) |", "|---|---:|"]
    lines += [f"| {k} | {_pct(scores[k])} |" for k in SUMMARY_KEYS if k in scores]
    gt = confmat.sum(dim=1)
    lines += [
        "",
        "| # | class | split | IoU (%) | Acc (%) | GT pixels |",
        "|---:|---|---|---:|---:|---:|",
    ]
    unseen = set(int(i) for i in unseen_indices)
    for i, name in enumerate(class_names):
        split = ("unseen" if i in unseen else "seen") if unseen else "-"
        lines.append(
            f"| {i} | {name} | {split} | {_pct(scores['iou'][i])} | {_pct(scores['acc'][i])} "
            f"| {int(gt[i])} |"
        )
    lines += ["", "Classes without ground-truth pixels (n/a) are left out of the means.", ""]
    if pairs:
        lines += ["## Most confused pairs", "", "| true | predicted | % of true | pixels |"]
        lines += ["|---|---|---:|---:|"]
        lines += [f"| {t} | {p} | {100 * f:.2f} | {n} |" for t, p, f, n in pairs]
        lines.append("")
    return "\n".join(lines)


def write_report(
    out_dir: str | os.PathLike,
    *,
    confmat: Tensor,
    scores: Mapping[str, Tensor],
    class_names: Sequence[str],
    unseen_indices: Sequence[int] = (),
    title: str = "Evaluation",
    top_confused: int = 10,
    figure: bool = True,
) -> dict[str, Path]:
    """Write ``per_class.md``, ``confusion_matrix.csv`` and ``confusion_matrix.png``."""
    out = Path(out_dir)
    pairs = most_confused_pairs(confmat, class_names, k=top_confused)
    paths = {"table": out / "per_class.md", "csv": out / "confusion_matrix.csv"}
    atomic_write_text(
        paths["table"],
        markdown_table(
            scores, confmat, class_names, unseen_indices=unseen_indices, title=title, pairs=pairs
        ),
    )
    rows = [",".join(["true\\predicted", *(_csv(n) for n in class_names)])]
    for name, row in zip(class_names, confmat.tolist(), strict=True):
        rows.append(",".join([_csv(name), *(str(int(v)) for v in row)]))
    atomic_write_text(paths["csv"], "\n".join(rows) + "\n")
    if figure:
        from src.viz import confusion_matrix_figure, save_figure

        paths["figure"] = out / "confusion_matrix.png"
        fig = confusion_matrix_figure(confmat.numpy(), class_names, pairs=pairs, title=title)
        save_figure(fig, paths["figure"])
    return paths


def _csv(name: str) -> str:
    return f'"{name}"' if "," in name else name
