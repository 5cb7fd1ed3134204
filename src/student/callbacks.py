"""The student's training callbacks besides the label switch: validate at the last step,
validation pictures, validation reports (per-class table, confusion matrix), a progress bar
that counts steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.callbacks import RichProgressBar

from src.batch import IGNORE_INDEX, IMAGE, NAME, TARGET
from src.errors import UserError
from src.evaluation.metrics import segmentation_scores
from src.evaluation.report import write_report
from src.pictures.panels import denormalise, panel
from src.utils.io import atomic_save_image


class ValidateAtEnd(pl.Callback):
    """Ask Lightning for a validation run after the final optimizer step.

    With an iteration-based schedule (``val_check_interval`` every N steps) the last step is
    validated only when N divides ``max_steps``. Requesting a stop at the last step makes
    Lightning validate there, so the logged ``val/*`` and ``checkpoints/last.ckpt`` are those
    of the final model, inside the same (possibly spawned) processes.
    """

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if trainer.fast_dev_run:
            return
        last_step = 0 < trainer.max_steps <= trainer.global_step
        epoch_loop = trainer.fit_loop.epoch_loop
        max_epochs = trainer.max_epochs if trainer.max_epochs is not None else -1
        last_epoch_end = (
            trainer.max_steps == -1
            and 0 < max_epochs == trainer.current_epoch + 1
            and epoch_loop.batch_progress.is_last_batch
        )
        if last_step or last_epoch_end:
            trainer.should_stop = True


PANEL_TITLES = ("image", "teacher (DenseCLIP)", "student (DenseCLIP+)", "ground truth")


class FlushDenormals(pl.Callback):
    """Opt-in: while fitting, the CPU treats denormal floats (below about 1.2e-38) as zero
    (:func:`torch.set_flush_denormal`, in every training process's main thread).

    A network whose weights and gradients shrink towards zero can spend most of its CPU time
    on denormal arithmetic: ``student=clip_finetune`` on the shapes world went from about 20 s
    to 1.3 s a step (one thread; docs/ABLATIONS.md). Values that small become 0, so a run with
    it is not bit-identical to one without it; off by default.
    """

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self._active = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.enabled and stage == "fit":
            self._active = torch.set_flush_denormal(True)  # False: this CPU cannot

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._active:
            torch.set_flush_denormal(False)
            self._active = False


class ValidationImages(pl.Callback):
    """Save the first ``num_images`` validation samples of every validation run.

    Files: ``<dirpath>/step<global step>_<name>.png`` (default ``dirpath``:
    ``<trainer.default_root_dir>/val_images``); also sent to TensorBoard when it logs.
    Needs a module with ``predict_logits``, ``teacher_logits``, ``mean`` and ``std``.
    """

    def __init__(self, num_images: int = 4, dirpath: str | None = None) -> None:
        super().__init__()
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 0:
            raise UserError(
                f"validation_images.num_images must be a non-negative integer, got {num_images!r}"
            )
        self.num_images = num_images
        self.dirpath = dirpath
        self._written = 0
        self.paths: list[Path] = []  #: files written by the last validation run

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._written = 0
        self.paths = []

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or dataloader_idx != 0:
            return
        left = self.num_images - self._written
        if left <= 0:
            return
        images, target = batch[IMAGE][:left], batch[TARGET][:left]
        names = list(batch.get(NAME, []))[:left]
        size = target.shape[-2:]
        with torch.no_grad():
            student = pl_module.predict_logits(images, size).argmax(1).cpu().numpy()
            by_name = getattr(pl_module.teacher, "needs_image_names", False) and names
            teacher = pl_module.teacher_logits(images, size, names=names if by_name else None)
            teacher = teacher.argmax(1).cpu().numpy()
        truth = target.cpu().numpy()
        mean, std = pl_module.mean, pl_module.std
        folder = Path(self.dirpath or Path(trainer.default_root_dir) / "val_images")
        for i in range(images.shape[0]):
            name = str(names[i]) if i < len(names) else f"{self._written:03d}"
            void = truth[i] == IGNORE_INDEX  # predictions there are not scored: faded
            pic = panel(
                denormalise(images[i], mean, std),
                teacher[i],
                student[i],
                truth[i],
                void=void,
                titles=PANEL_TITLES,
                class_names=list(getattr(pl_module, "class_names", [])) or None,
            )
            path = folder / f"step{trainer.global_step:06d}_{name}.png"
            self.paths.append(atomic_save_image(path, Image.fromarray(pic)))
            for logger in trainer.loggers:
                exp = getattr(logger, "experiment", None)
                if hasattr(exp, "add_image"):
                    exp.add_image(f"val_images/{name}", pic, trainer.global_step, dataformats="HWC")
            self._written += 1


class ValidationReport(pl.Callback):
    """After every validation run, ``<dirpath>/{student,teacher}/`` get ``per_class.md``,
    ``confusion_matrix.csv`` and ``confusion_matrix.png`` (rows: truth, columns: prediction;
    summed over processes). Each run overwrites the previous one (files are written
    atomically), so at the end they describe the final model; the teacher's are written once.

    Needs a module with ``validation`` (:class:`~src.student.validation.StudentValidation`).
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


class StepProgressBar(RichProgressBar):
    """Lightning's progress bar counting optimizer steps up to ``max_steps``.

    The schedules here are iteration-based (``max_epochs=-1``): Lightning's own bar reads
    ``Epoch 0/-2`` and restarts at every epoch. This one reads ``Training`` and runs once from
    the first (or the resumed) step to ``max_steps``.
    """

    def _get_train_description(self, current_epoch: int) -> str:
        if self.trainer.max_steps is None or self.trainer.max_steps < 0:
            return super()._get_train_description(current_epoch)
        return f"{'Training':{len(self.validation_description)}}"

    @property
    def total_train_batches(self) -> int | float:
        if self.trainer.max_steps is not None and self.trainer.max_steps > 0:
            return self.trainer.max_steps
        return super().total_train_batches

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.train_progress_bar_id is None or trainer.max_steps is None or trainer.max_steps < 0:
            super().on_train_epoch_start(trainer, pl_module)  # the first epoch: create the bar

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.is_enabled and trainer.max_steps is not None and trainer.max_steps > 0:
            self._update(self.train_progress_bar_id, trainer.global_step)
            self.refresh()
