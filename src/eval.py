"""Evaluate the training-free teacher, or with ``ckpt_path=`` a trained student.

    python -m src.eval data=voc data.root=/datasets/VOCdevkit/VOC2012 teacher=rn50
    python -m src.eval data=voc split=voc_zs5 ckpt_path=logs/train/runs/.../last.ckpt
    python -m src.eval -m protocol=training_free teacher=vit_b16 data=voc21,context60,...

``protocol=training_free`` evaluates as the training-free papers do (their sizes, sliding
windows, class-name files, background threshold; ``conf/protocol``, docs/FIDELITY.md).

Writes ``metrics.json`` (``val/miou`` ... and ``val/iou/<class>``, fractions; null where a
class has no ground truth; ``teacher_config``: the teacher in full), ``per_class.md``,
``confusion_matrix.csv`` and
``confusion_matrix.png`` in the run directory.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from src.data.corruptions import corruption_from_options, corruption_record
from src.errors import UserError
from src.evaluation.module import EvaluationModule
from src.evaluation.report import metrics_dict, write_report
from src.utils.records import teacher_record
from src.utils.task import (
    GROUPS,
    check_group_choices,
    check_trainer_options,
    instantiate,
    run_task,
    seed_run,
)
from src.utils.teachers import build_teacher

log = logging.getLogger(__name__)


def load_student_for(ckpt_path: str, dm: Any) -> Any:
    """A trained :class:`DenseClipPlus` from ``ckpt_path``, scoring ``dm``'s classes."""
    from src.student.checkpoint import load_student  # the student is only needed here

    student = load_student(ckpt_path)
    names = list(student.class_names)
    if names != list(dm.class_names):
        if student.class_offset != dm.class_offset:
            raise UserError(
                f"the checkpoint scores {len(names)} classes "
                f"({'with' if student.class_offset else 'without'} background) but the "
                f"data has {dm.num_classes}",
                "evaluate with the data and split the student was trained on",
            )
        log.warning("re-encoding the student's classifier for the data's class names")
        student.set_class_names(dm.teacher_class_names)
    return student


def protocol_settings(cfg: DictConfig) -> dict[str, Any]:
    """The evaluation protocol's settings (``protocol=``; none: ``{}``), checked."""
    node = cfg.get("protocol")
    protocol = {} if node is None else dict(OmegaConf.to_container(node, resolve=True))
    name = protocol.get("name", "none")
    if name != "none" and protocol.get("dataset") is None:
        choice = cfg.data.get("dataset")
        raise UserError(
            f"protocol={name} has no settings for this dataset ({choice})",
            f"use one of its benchmarks: data={','.join(protocol.get('benchmarks', []))}",
        )
    if protocol.get("sliding_window"):
        window, stride = int(protocol["window"]), int(protocol["stride"])
        if not 0 < stride <= window:
            raise UserError(
                f"protocol.window={window} / protocol.stride={stride}: need 0 < stride <= window"
            )
        pad = protocol.get("window_pad")
        if pad is not None and (not isinstance(pad, int) or pad < 0):
            raise UserError(
                f"protocol.window_pad={pad!r} is not a valid value",
                "give a whole number of pixels (CorrCLIP's 56) or null for no padding",
            )
    return protocol


def check_background(teacher: Any, dm: Any) -> None:
    """A teacher with a background (words or a threshold) needs data that counts it."""
    if getattr(teacher, "has_background", False) and not dm.count_background:
        raise UserError(
            f"the teacher has a background class (teacher.background_threshold="
            f"{teacher.background_threshold}) but {dm.dataset!r} does not count background "
            "here",
            "evaluate on data that counts it (voc21, context60, coco_object, shapes_bg with "
            "split=supervised or protocol=training_free), or set teacher.background_threshold=null",
        )


def protocol_windows(protocol: dict[str, Any]) -> Any:
    """The protocol's sliding windows for the one scoring path (:mod:`src.scoring`), or
    ``None`` (whole images); ``protocol.window_pad``: each crop padded in the middle to a
    multiple of it (CorrCLIP's 56; null: none)."""
    from src.scoring import Windows

    if not protocol.get("sliding_window"):
        return None
    return Windows(
        int(protocol["window"]),
        int(protocol["stride"]),
        int(protocol.get("window_batch", 8)),
        int(protocol.get("window_pad") or 0),
    )


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Build data and model from ``cfg``, score the validation split, write the report."""
    check_trainer_options(cfg.trainer)
    seed_run(cfg.get("seed"))
    corruption_cfg = cfg.get("corruption")  # ImageNet-C corruption of the evaluation images
    corruption = corruption_from_options(
        None if corruption_cfg is None else OmegaConf.to_container(corruption_cfg, resolve=True)
    )
    dm = instantiate(cfg.data, corruption=corruption)
    if not dm.has_labels:
        raise UserError(
            f"dataset {dm.dataset!r} has no labels to evaluate against",
            "evaluate on a labelled dataset (voc, context59, ...); use src.predict for folders",
        )
    dm.build_raw(dm.val_split)  # a missing root or file fails here, before the model is built
    protocol = protocol_settings(cfg)
    if cfg.get("ckpt_path"):
        model, kind = load_student_for(str(cfg.ckpt_path), dm), "student"
    else:
        model = build_teacher(
            cfg.teacher,
            dm.teacher_class_names,
            cache_dir=cfg.paths.cache_dir,
            background=dm.teacher_background,
        )
        kind = "teacher"
        check_background(model, dm)
    dm.set_normalization(model.mean, model.std)
    module = EvaluationModule(
        model,
        num_classes=dm.num_classes,
        class_offset=dm.class_offset,
        unseen_indices=dm.unseen_indices,
        windows=protocol_windows(protocol),
    )
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        user_errors=(ValueError, TypeError),  # its arguments come from the command line
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.test(module, datamodule=dm, verbose=False)
    if not trainer.is_global_zero:
        return {}
    assert module.scores is not None and module.confmat is not None
    title = f"{kind} on {dm.dataset} ({dm.setting}, {dm.num_classes} classes)"
    if protocol.get("name", "none") != "none":
        title += f", protocol {protocol['name']} ({protocol['dataset']})"
    if corruption is not None:
        title += f", {corruption.name} severity {corruption.severity}"
    paths = write_report(
        cfg.paths.output_dir,
        confmat=module.confmat,
        scores=module.scores,
        class_names=dm.class_names,
        unseen_indices=dm.unseen_indices,
        title=title,
        top_confused=int(cfg.report.top_confused),
        figure=bool(cfg.report.figure),
    )
    metrics = metrics_dict(module.scores, dm.class_names)
    summary = ", ".join(
        f"{k.split('/')[-1]} {100 * v:.2f}"
        for k, v in metrics.items()
        if "/iou/" not in k and v is not None
    )
    log.info("%s: %s", title, summary)
    log.info("report: %s", ", ".join(os.fspath(p) for p in paths.values()))
    metrics.update(corruption_record(corruption))  # corruption/name, corruption/severity
    teacher = model.teacher if kind == "student" else model
    metrics["teacher_config"] = teacher_record(teacher)  # what made these scores, in full
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    """Entry point: ``python -m src.eval``; returns ``cfg.optimized_metric`` for sweepers."""
    metrics = run_task(evaluate, cfg, output_dir=cfg.paths.output_dir)
    return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    run_task(
        check_group_choices, sys.argv[1:], GROUPS, "eval", output_dir=None
    )  # one line, not Hydra's
    main()
