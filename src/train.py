"""Train DenseCLIP+: a segmentation student on the frozen DenseCLIP teacher's pseudo labels.

    python -m src.train experiment=voc_zero_shot data.root=/datasets/VOCdevkit/VOC2012
    python -m src.train experiment=shapes_demo                       # CPU, minutes
    python -m src.train -m teacher=rn50,rn50x16 experiment=voc_annotation_free
    python -m src.train experiment=voc_zero_shot ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt

Writes checkpoints (``checkpoints/last.ckpt`` ...), logs (CSV, TensorBoard), validation
pictures and ``metrics.json`` (``val/*`` of the final model and ``teacher/val/*``, the
teacher on the same validation set, fractions; null where undefined; ``teacher_config``: the
teacher in full) in the run directory. Every checkpoint records the run's settings; a resume
under other settings is refused (``resume_allow=[trainer.max_steps]`` lets one through).
"""

from __future__ import annotations

import logging
import math
import sys
import warnings
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint

from src.errors import UserError
from src.student.callbacks import StepProgressBar
from src.student.checkpoint import check_resumable, read_checkpoint
from src.student.run_settings import RecordRunSettings, check_same_run, run_settings
from src.utils.records import teacher_record
from src.utils.task import (
    GROUPS,
    check_group_choices,
    check_trainer_options,
    instantiate,
    instantiate_group,
    log_hyperparameters,
    run_task,
    seed_run,
)
from src.utils.teachers import build_teacher

log = logging.getLogger(__name__)

_QUIET = (
    ".*does not have many workers.*",
    ".*module\\(s\\) in eval mode.*",
    ".*LeafSpec.*",
    ".*litlogger.*",
    ".*litmodels.*",
)


def _final_metrics(trainer: pl.Trainer) -> dict[str, Any]:
    """``val/*`` and ``teacher/val/*`` from the last validation, NaN -> ``None``."""
    out: dict[str, Any] = {}
    for key, value in sorted(trainer.callback_metrics.items()):
        if key.startswith(("val/", "teacher/val/")):
            number = float(value)
            out[key] = None if math.isnan(number) else number
    return out


def train(cfg: DictConfig) -> dict[str, Any]:
    """Build data, teacher, student, callbacks, loggers and trainer from ``cfg``; fit."""
    for pattern in _QUIET:
        warnings.filterwarnings("ignore", message=pattern)
    seed_run(cfg.get("seed"))
    check_trainer_options(cfg.trainer)
    ckpt_path = cfg.get("ckpt_path")
    resume = None
    if ckpt_path:  # a bad file is named before anything is built
        resume = read_checkpoint(
            ckpt_path,
            what="checkpoint to resume from",
            fix="pass ckpt_path=<run>/checkpoints/last.ckpt of a training run",
        )
    settings = run_settings(cfg)  # recorded in every checkpoint; a resume must keep them
    if resume is not None:
        check_same_run(resume, settings, str(ckpt_path), list(cfg.get("resume_allow") or []))

    dm = instantiate(cfg.data)  # the vocabulary first: the teacher encodes it
    for split in dict.fromkeys((dm.train_split, dm.val_split)):
        dm.build_raw(split)  # a missing data root or split list fails before the teacher loads
    teacher = build_teacher(
        cfg.teacher,
        dm.teacher_class_names,
        cache_dir=cfg.paths.cache_dir,
        background=dm.teacher_background,
    )
    dm.set_normalization(teacher.mean, teacher.std)
    if cfg.student.get("unlabelled") == "ignore" and dm.setting == "annotation_free":
        raise UserError(
            "student.unlabelled=ignore (ablation=text_classifier) leaves an annotation-free "
            "run without a single label",
            "use it with a zero-shot experiment (e.g. experiment=shapes_zero_shot)",
        )
    student = instantiate(cfg.student, _partial_=True)(
        teacher=teacher,
        class_names=dm.class_names,
        background=dm.class_offset == 1,
        unseen_indices=dm.unseen_indices,
    )
    if resume is not None:
        check_resumable(resume, student, str(ckpt_path))
        del resume
    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    extra: dict[str, Any] = {}
    if cfg.trainer.get("fast_dev_run") or not cfg.trainer.get("enable_checkpointing", True):
        # a smoke test, or checkpoints off: no ModelCheckpoint (periodic ones included)
        callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
        extra["enable_checkpointing"] = False
    callbacks.append(RecordRunSettings(settings))
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks.append(StepProgressBar())  # counts steps, not "Epoch 0/-2"
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        user_errors=(ValueError, TypeError),  # its arguments come from the command line
        **extra,
    )
    log_hyperparameters(cfg, loggers)

    log.info(
        "DenseCLIP+ on %s (%s, %d classes, unseen %s), teacher %s, run dir %s",
        dm.dataset,
        dm.setting,
        dm.num_classes,
        [dm.class_names[i] for i in dm.unseen_indices],
        cfg.teacher.clip_model,
        cfg.paths.output_dir,
    )
    trainer.fit(student, datamodule=dm, ckpt_path=str(ckpt_path) if ckpt_path else None)

    # Spawned processes (ddp_spawn) hand back weights and metrics but not the step count.
    validated = trainer.callback_metrics.get("val/step")
    step = max(trainer.global_step, -1 if validated is None else int(validated))
    if (validated is None or int(validated) < step) and not trainer.fast_dev_run:
        trainer.validate(student, datamodule=dm, verbose=False)  # validate_at_end was off
    if not trainer.is_global_zero:
        return {}
    metrics = _final_metrics(trainer)
    metrics["train/global_step"] = step
    summary = ", ".join(
        f"{k} {v:.4f}" for k, v in metrics.items() if v is not None and "/iou/" not in k
    )
    log.info("final: %s", summary)
    if metrics.get("val/miou") is not None and metrics.get("teacher/val/miou") is not None:
        log.info(
            "mIoU: DenseCLIP (teacher) %.2f -> DenseCLIP+ (student) %.2f",
            100 * metrics["teacher/val/miou"],
            100 * metrics["val/miou"],
        )
    metrics["teacher_config"] = teacher_record(teacher)  # what labelled the student, in full
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Entry point: ``python -m src.train``; returns ``cfg.optimized_metric`` for sweepers."""
    metrics = run_task(train, cfg, output_dir=cfg.paths.output_dir)
    return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    run_task(
        check_group_choices, sys.argv[1:], GROUPS, "train", output_dir=None
    )  # one line, not Hydra's
    main()
