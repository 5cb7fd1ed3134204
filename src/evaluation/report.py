"""Evaluation reports: :func:`metrics_dict` (``metrics.json``'s dict), :func:`write_report`
(the per-class markdown table and the confusion matrix as CSV and picture)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import Tensor

from src.evaluation.metrics import most_confused_pairs
from src.utils.io import atomic_write_text

SUMMARY_KEYS = (
    "miou", "miou_seen", "miou_unseen", "hiou",
    "pacc", "pacc_seen", "pacc_unseen", "macc", "macc_seen", "macc_unseen",
)  # fmt: skip


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
        from src.pictures.confusion import confusion_matrix_figure, save_figure

        paths["figure"] = out / "confusion_matrix.png"
        fig = confusion_matrix_figure(confmat.numpy(), class_names, pairs=pairs, title=title)
        save_figure(fig, paths["figure"])
    return paths


def _csv(name: str) -> str:
    return f'"{name}"' if "," in name else name
