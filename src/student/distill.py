"""Distilling a teacher into a student on a folder of unlabelled images (``experiment=distill_folder``):
the hold-out list, judging the student without labels, and the deployable file.

:class:`DistillReport` writes, in ``<run>/distill/``:

- ``holdout.txt`` at the start: the images never trained on (one path per line, relative to
  ``data.root``), and a one-line warning counting images smaller than the training crop;
- ``agreement.json`` at the end, on the hold-out: teacher-student pixel agreement (overall and
  per class: of the teacher's pixels of a class, the share the student gives the same class,
  and the two masks' IoU), each model's per-class pixel shares, and histograms of each model's
  confidence (its largest class probability per pixel); the figures also go to the loggers
  (``distill/*``, TensorBoard histograms) and to ``metrics.json`` (``val/teacher_agreement``);
- ``grid.png``: image | teacher | student for the first hold-out images (also TensorBoard);
- with ``data.val_root`` (a labelled set in a layout ``src.eval`` reads): the student's mIoU
  on it at each validation and at the end, and the teacher's once (``labelled`` in
  ``agreement.json``; ``val/labelled/miou`` and ``teacher/val/labelled/miou`` in the loggers
  and ``metrics.json``);
- ``student.onnx`` (``export: onnx``; ``torchscript``; ``null`` for none) with its class names
  beside it (``student_classes.txt``), and the printed ``python -m src.predict`` command that
  segments a new folder with it (onnxruntime only, no training stack).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image

from src.batch import IMAGE, NAME, TARGET
from src.errors import UserError
from src.evaluation.metrics import SegmentationMetrics, segmentation_scores
from src.pictures.panels import denormalise, panel
from src.utils.io import atomic_save_image, atomic_save_json, atomic_write_text

log = logging.getLogger(__name__)

NO_CLASS = 255  #: teacher pixels given to its background words / below its threshold
GRID_TITLES = ("image", "teacher", "student")


class AgreementMeter:
    """Accumulates teacher-student agreement, pixel shares and confidence histograms."""

    def __init__(self, num_classes: int, bins: int = 10) -> None:
        self.k, self.bins = int(num_classes), int(bins)
        self.joint = np.zeros((self.k + 1, self.k), dtype=np.int64)  # teacher (+none) x student
        self.hist = {
            "teacher": np.zeros(self.bins, np.int64),
            "student": np.zeros(self.bins, np.int64),
        }

    def update(
        self,
        teacher: np.ndarray,
        student: np.ndarray,
        teacher_conf: np.ndarray,
        student_conf: np.ndarray,
    ) -> None:
        """One image's masks (teacher: :data:`NO_CLASS` where it names none) and confidences."""
        t = np.where(teacher == NO_CLASS, self.k, teacher).astype(np.int64).ravel()
        s = student.astype(np.int64).ravel()
        self.joint += np.bincount(t * self.k + s, minlength=(self.k + 1) * self.k).reshape(
            self.k + 1, self.k
        )
        for key, conf in (
            ("teacher", teacher_conf[teacher != NO_CLASS]),
            ("student", student_conf),
        ):
            self.hist[key] += np.histogram(conf, bins=self.bins, range=(0.0, 1.0))[0]

    def result(self, class_names: list[str]) -> dict[str, Any]:
        """The figures (fractions; ``None`` where a class has no pixel)."""
        joint = self.joint
        total = int(joint.sum())
        named = joint[: self.k]  # pixels the teacher gives a class
        per_class = {}
        for c, name in enumerate(class_names):
            teacher_c, student_c, both = (
                int(named[c].sum()),
                int(joint[:, c].sum()),
                int(named[c, c]),
            )
            union = teacher_c + student_c - both
            per_class[name] = {
                "agreement": both / teacher_c if teacher_c else None,
                "iou": both / union if union else None,
                "teacher_share": teacher_c / total if total else None,
                "student_share": student_c / total if total else None,
            }
        edges = np.linspace(0.0, 1.0, self.bins + 1).round(4).tolist()
        return {
            "pixels": total,
            "agreement": float(np.trace(named)) / named.sum() if named.sum() else None,
            "teacher_no_class_share": float(joint[self.k].sum()) / total if total else None,
            "per_class": per_class,
            "confidence_bins": edges,
            "confidence_histogram": {
                key: (h / max(1, h.sum())).round(6).tolist() for key, h in self.hist.items()
            },
        }


def _masks(
    pl_module: Any, images: torch.Tensor, names: list[str] | None = None
) -> tuple[torch.Tensor, ...]:
    """(teacher mask, teacher confidence, student mask, student confidence) of a batch
    (``names``: the images' file stems, for a teacher that reads its region masks by them)."""
    extra = {} if names is None else {"names": names}
    t_scores = pl_module.teacher_logits(images, **extra).float()
    none = ~torch.isfinite(t_scores).any(1)  # the teacher's background words won there
    scale = float(getattr(pl_module.teacher, "logit_scale", 1.0))
    t_prob = F.softmax(scale * t_scores.masked_fill(none[:, None], 0.0), dim=1)
    t_conf, t_mask = t_prob.max(1)
    t_mask = t_mask.masked_fill(none, NO_CLASS)
    s_prob = F.softmax(pl_module.predict_logits(images).float(), dim=1)
    s_conf, s_mask = s_prob.max(1)
    return t_mask, t_conf, s_mask, s_conf


def labelled_scores(confmat: torch.Tensor, class_names: list[str]) -> dict[str, Any]:
    """mIoU and per-class IoU of a ``(K+1, K+1)`` confusion matrix whose last column counts
    the pixels given no class (a teacher's background): misses of their true class."""
    iou = segmentation_scores(confmat)["iou"][: len(class_names)]
    known = iou[~torch.isnan(iou)]
    return {
        "miou": float(known.mean()) if known.numel() else None,
        "iou": {
            n: None if math.isnan(v) else float(v)
            for n, v in zip(class_names, iou.tolist(), strict=True)
        },
        "pixels": int(confmat.sum()),
    }


def _stack_rows(rows: list[np.ndarray], gap: int = 6) -> np.ndarray:
    """Panels one below the other, padded white to the widest."""
    width = max(r.shape[1] for r in rows)
    out = []
    for r in rows:
        pad = np.full((r.shape[0], width - r.shape[1], 3), 255, np.uint8)
        out += [np.concatenate([r, pad], axis=1), np.full((gap, width, 3), 255, np.uint8)]
    return np.concatenate(out[:-1], axis=0)


class DistillReport(pl.Callback):
    """Hold-out list, label-free judging and the deployable student of a folder distillation
    (see the module docstring). ``num_images``: rows of the picture grid; ``bins``: confidence
    histogram bins; ``export``: ``onnx`` | ``torchscript`` | ``None``; ``dirpath``: default
    ``<trainer.default_root_dir>/distill``."""

    def __init__(
        self,
        dirpath: str | None = None,
        num_images: int = 6,
        bins: int = 10,
        export: str | None = "onnx",
        opset: int = 17,
    ) -> None:
        super().__init__()
        fmt = None if export in (None, False, "none", "null", "") else str(export).lower()
        if fmt not in (None, "onnx", "torchscript"):
            raise UserError(
                f"callbacks.distill_report.export={export!r} is not a format",
                "use onnx (the default), torchscript, or null (no exported file)",
            )
        if fmt == "onnx":
            try:
                import onnx  # noqa: F401  (checked before training, not after it)
            except ImportError:
                raise UserError(
                    "exporting the student to ONNX needs the onnx package",
                    "pip install -e '.[export]', or callbacks.distill_report.export=null",
                ) from None
        self.dirpath, self.num_images, self.bins = dirpath, int(num_images), int(bins)
        self.export, self.opset = fmt, int(opset)
        self.result: dict[str, Any] | None = None  #: the last agreement figures
        self.epoch_seconds: list[float] = []  #: wall time of each whole training epoch
        self._epoch_start: float | None = None
        self.exported: Path | None = None  #: the exported file
        #: the last scores on ``data.val_root`` (student, at ``step``) and the teacher's (once)
        self.labelled: dict[str, Any] | None = None
        self._teacher_labelled: dict[str, Any] | None = None

    def _folder(self, trainer: pl.Trainer) -> Path:
        return Path(self.dirpath or Path(trainer.default_root_dir) / "distill")

    # ------------------------------------------------------------------ start
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        dm = trainer.datamodule
        raw = dm.train_dataset().raw
        held = list(getattr(raw, "held_out", []))
        head = f"# {len(held)} image(s) held out (never trained on); {len(raw)} to train on\n"
        atomic_write_text(
            self._folder(trainer) / "holdout.txt", head + "".join(f"{h}\n" for h in held)
        )
        crop = int(getattr(dm, "crop_size", 0) or 0)
        small = 0
        for _name, path, _label in getattr(raw, "items", []):
            with Image.open(path) as im:
                small += min(im.size) < crop
        if small:
            log.warning(
                "%d of %d training image(s) are smaller than the %d px crop: the rescale "
                "enlarges them (set data.crop_size lower for small images)",
                small,
                len(raw),
                crop,
            )

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._epoch_start is not None and not trainer.should_stop:  # a whole epoch
            self.epoch_seconds.append(round(time.perf_counter() - self._epoch_start, 3))
        self._epoch_start = None

    # ------------------------------------------------------------------ labelled set
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.is_global_zero:
            self.score_labelled(trainer, pl_module)

    @torch.no_grad()
    def score_labelled(self, trainer: pl.Trainer, pl_module: Any) -> dict[str, Any] | None:
        """The student's mIoU on ``data.val_root`` at this step (and the teacher's, once):
        ``{"step", "student", "teacher"}`` (:func:`labelled_scores`), logged as
        ``val/labelled/miou`` and ``teacher/val/labelled/miou``; ``None`` without a labelled
        set. Pixels a teacher with a background gives no class count as misses."""
        make = getattr(trainer.datamodule, "labelled_val_dataloader", None)
        loader = None if make is None else make()
        if loader is None:
            return None
        step = int(trainer.global_step)
        if self.labelled is not None and self.labelled["step"] == step:
            return self.labelled
        names = list(pl_module.class_names)
        k = len(names)
        student = SegmentationMetrics(k + 1).to(pl_module.device)
        teacher = (
            None if self._teacher_labelled else SegmentationMetrics(k + 1).to(pl_module.device)
        )
        was_training = pl_module.training
        pl_module.eval()
        for batch in loader:
            images, target = batch[IMAGE].to(pl_module.device), batch[TARGET].to(pl_module.device)
            size = tuple(target.shape[-2:])
            student.update(pl_module.predict_logits(images, size).argmax(1), target)
            if teacher is not None:
                stems = batch.get(NAME) if isinstance(batch, dict) else None
                scores = pl_module.teacher_logits(  # stems: for precomputed region masks
                    images, size, names=None if stems is None else list(stems)
                )
                none = ~torch.isfinite(scores).any(1)
                teacher.update(scores.argmax(1).masked_fill(none, k), target)
        pl_module.train(was_training)
        if teacher is not None:
            self._teacher_labelled = labelled_scores(teacher.confmat.cpu(), names)
        self.labelled = {
            "step": step,
            "images": len(loader.dataset),
            "student": labelled_scores(student.confmat.cpu(), names),
            "teacher": self._teacher_labelled,
        }
        flat = {
            "val/labelled/miou": self.labelled["student"]["miou"],
            "teacher/val/labelled/miou": self._teacher_labelled["miou"],
        }
        flat = {key: value for key, value in flat.items() if value is not None}
        for logger in trainer.loggers:
            logger.log_metrics(flat, step)
        for key, value in flat.items():  # metrics.json (src.train keeps val/* and teacher/val/*)
            trainer.callback_metrics[key] = torch.tensor(value)
        log.info(
            "labelled set %s (%d images): student mIoU %s, teacher %s",
            trainer.datamodule.val_root,
            self.labelled["images"],
            _pct(self.labelled["student"]["miou"]),
            _pct(self._teacher_labelled["miou"]),
        )
        return self.labelled

    # ------------------------------------------------------------------ end
    @torch.no_grad()
    def judge(self, trainer: pl.Trainer, pl_module: Any) -> dict[str, Any]:
        """Agreement figures on the hold-out; writes ``agreement.json`` and ``grid.png``."""
        folder = self._folder(trainer)
        meter = AgreementMeter(len(pl_module.class_names), self.bins)
        rows: list[np.ndarray] = []
        was_training = pl_module.training
        pl_module.eval()
        loader = trainer.datamodule.val_dataloader()
        for batch in loader:
            images = batch[IMAGE].to(pl_module.device)
            by_name = getattr(pl_module.teacher, "needs_image_names", False)
            names = list(batch[NAME]) if by_name else None
            t_mask, t_conf, s_mask, s_conf = (
                x.cpu().numpy() for x in _masks(pl_module, images, names)
            )
            for i in range(images.shape[0]):
                meter.update(t_mask[i], s_mask[i], t_conf[i], s_conf[i])
                if len(rows) < self.num_images:
                    picture = denormalise(images[i], pl_module.mean, pl_module.std)
                    rows.append(
                        panel(
                            picture,
                            t_mask[i],
                            s_mask[i],
                            titles=GRID_TITLES,
                            class_names=list(pl_module.class_names),
                        )  # fmt: skip
                    )
        pl_module.train(was_training)
        result = meter.result(list(pl_module.class_names))
        result["images"] = len(loader.dataset)
        result["step"] = int(trainer.global_step)
        result["epoch_seconds"] = list(self.epoch_seconds)  # whole training epochs only
        labelled = self.score_labelled(trainer, pl_module)
        if labelled is not None:
            result["labelled"] = labelled
        atomic_save_json(folder / "agreement.json", result)
        grid = _stack_rows(rows) if rows else None
        if grid is not None:
            atomic_save_image(folder / "grid.png", Image.fromarray(grid))
        for logger in trainer.loggers:
            flat = {"distill/agreement": result["agreement"]}
            for name, figures in result["per_class"].items():
                flat[f"distill/agreement/{name}"] = figures["agreement"]
            logger.log_metrics(
                {k: v for k, v in flat.items() if v is not None}, trainer.global_step
            )
            exp = getattr(logger, "experiment", None)
            if grid is not None and hasattr(exp, "add_image"):
                exp.add_image("distill/grid", grid, trainer.global_step, dataformats="HWC")
            if hasattr(exp, "add_histogram_raw"):
                edges = result["confidence_bins"]
                for key, h in meter.hist.items():
                    if h.sum():
                        exp.add_histogram_raw(
                            f"distill/confidence/{key}", min=0.0, max=1.0, num=int(h.sum()),
                            sum=float((h * (np.array(edges[:-1]) + 0.5 / self.bins)).sum()),
                            sum_squares=0.0, bucket_limits=edges[1:], bucket_counts=h.tolist(),
                            global_step=trainer.global_step,
                        )  # fmt: skip
        # metrics.json (src.train keeps the val/* of trainer.callback_metrics)
        if result["agreement"] is not None:
            trainer.callback_metrics["val/teacher_agreement"] = torch.tensor(result["agreement"])
        return result

    def export_student(self, trainer: pl.Trainer, pl_module: Any) -> Path:
        """Write the deployable file and the class names beside it; print the predict command."""
        from src.student.export import SUFFIXES, export_student

        folder = Path(trainer.default_root_dir)
        path = folder / f"student{SUFFIXES[self.export]}"
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_student(
                pl_module, path, fmt=self.export, opset=self.opset, source="distill_folder"
            )
        atomic_write_text(
            folder / "student_classes.txt", "".join(f"{n}\n" for n in pl_module.class_names)
        )
        return path

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.fast_dev_run:
            return
        self.result = self.judge(trainer, pl_module)
        agreement = self.result["agreement"]
        shown = "n/a" if agreement is None or math.isnan(agreement) else f"{100 * agreement:.1f}%"
        log.info(
            "hold-out (%d images): the student agrees with the teacher on %s of the pixels (%s)",
            self.result["images"],
            shown,
            self._folder(trainer) / "agreement.json",
        )
        if self.export is None:
            return
        self.exported = self.export_student(trainer, pl_module)
        model = self.exported
        if self.export != "onnx":  # src.predict runs .onnx files and checkpoints
            model = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        out = Path(trainer.default_root_dir) / "predictions"
        command = (
            f"python -m src.predict ckpt_path={_shown(model)} input=<new images> "
            f"output_dir={_shown(out)}"
        )
        print(
            f"student exported to {_shown(self.exported)} (classes in student_classes.txt); "
            f"segment a new folder with:\n  {command}",
            flush=True,
        )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when inside it (shorter to copy)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
