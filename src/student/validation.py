"""Validation bookkeeping of the student: its metrics every run, the teacher's once."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from src.batch import IGNORE_INDEX
from src.evaluation.metrics import SegmentationMetrics


class StudentValidation(nn.Module):
    """Accumulates the student's (and, on the first real validation, the teacher's) metrics.

    ``compute`` returns ``val/<metric>`` for the student and ``teacher/val/<metric>`` for the
    teacher (computed on the first validation run that is not Lightning's sanity check, then
    remembered and repeated).
    """

    def __init__(self, *, class_names: Sequence[str], unseen_indices: Sequence[int]) -> None:
        super().__init__()
        kwargs = {
            "unseen_indices": list(unseen_indices),
            "ignore_index": IGNORE_INDEX,
            "class_names": list(class_names),
        }
        self.student = SegmentationMetrics(len(class_names), **kwargs)
        self.teacher = SegmentationMetrics(len(class_names), **kwargs)
        self.teacher_metrics: dict[str, float] | None = None
        self._with_teacher = False

    @property
    def wants_teacher(self) -> bool:
        """Whether this validation run should also score the teacher."""
        return self._with_teacher and self.teacher_metrics is None

    def reset(self, *, with_teacher: bool) -> None:
        self.student.reset()
        self.teacher.reset()
        self._with_teacher = with_teacher

    def update_student(self, preds: Tensor, target: Tensor) -> None:
        self.student.update(preds, target)

    def update_teacher(self, preds: Tensor, target: Tensor) -> None:
        self.teacher.update(preds, target)

    @torch.no_grad()
    def compute(self, *, sanity: bool = False) -> dict[str, float]:
        out = {f"val/{k}": float(v) for k, v in self.student.compute().items()}
        if self.wants_teacher and not sanity:
            self.teacher_metrics = {
                f"teacher/val/{k}": float(v) for k, v in self.teacher.compute().items()
            }
        if self.teacher_metrics is not None:
            out.update(self.teacher_metrics)
        return out
