"""Write the per-class table and confusion matrix of each validation run (student, teacher)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from src.evaluation import write_report
from src.metrics import segmentation_scores


class ValidationReport(pl.Callback):
    """After every validation run, ``<dirpath>/{student,teacher}/`` get ``per_class.md``,
    ``confusion_matrix.csv`` and ``confusion_matrix.png`` (rows: truth, columns: prediction;
    summed over processes). Each run overwrites the previous one (files are written
    atomically), so at the end they describe the final model; the teacher's are written once.

    Needs a module with ``validation`` (:class:`~src.models.student_eval.StudentValidation`).
    """

    def __init__(self, dirpath: str | None = None, top_confused: int = 10, figure: bool = True):
        super().__init__()
        self.dirpath = dirpath
        self.top_confused = int(top_confused)
        self.figure = bool(figure)
        self.paths: dict[str, dict[str, Path]] = {}  #: what the last run wrote, per model

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        validation: Any = getattr(pl_module, "validation", None)
        if validation is None:
            return
        folder = Path(self.dirpath or Path(trainer.default_root_dir) / "report")
        step = trainer.global_step
        models = {"student": (validation.student, f"DenseCLIP+ (student), step {step}")}
        if "teacher" not in self.paths and validation.teacher_metrics is not None:
            models["teacher"] = (validation.teacher, "DenseCLIP (teacher)")
        for name, (metric, title) in models.items():
            confmat = getattr(metric, "last_confmat", None)
            if confmat is None or int(confmat.sum()) == 0:
                continue
            self.paths[name] = write_report(
                folder / name,
                confmat=confmat,
                scores=segmentation_scores(confmat, metric.unseen_indices),
                class_names=metric.class_names or [str(i) for i in range(metric.num_classes)],
                unseen_indices=metric.unseen_indices,
                title=title,
                top_confused=self.top_confused,
                figure=self.figure,
            )
