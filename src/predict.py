"""Open-vocabulary prediction on any images, with the teacher or a trained student.

    python -m src.predict input=photos/ 'classes=[cat,dog,red car]' teacher=rn50 output_dir=out
    python -m src.predict input='shots/*.png' 'classes=[sky,tree]' ckpt_path=path/to/last.ckpt
    python -m src.predict input=photos/ ckpt_path=path/to/student.onnx   # onnxruntime only

For each image writes ``<stem>_mask.png`` (uint8 palette PNG: value ``i`` is ``classes[i]``,
255 is no class), ``<stem>_overlay.jpg`` (image, colour mask, legend), with
``confidence_maps=true`` ``<stem>_conf_<class>.png``, with ``save_logits=true``
``<stem>_logits.npy`` (float32 classes x H x W, the scores the mask was taken from); and one
``legend.json`` (classes, colours, settings, per-image files and pixel counts, unreadable
inputs), written before the first mask and again at the end. Every file is written
atomically. An output folder holding another run's predictions is refused; an unreadable image
is skipped, and counted in the final error line (exit status 2).
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from src.errors import UserError
from src.pictures.palette import MAX_CLASSES, prediction_palette
from src.prediction.legend_writer import LegendWriter, write_error
from src.prediction.onnx_student import is_onnx_file, onnx_predictor
from src.prediction.outputs import (
    LEGEND,
    earlier_records,
    legend_document,
    output_stems,
    prepare_output_dir,
    write_outputs,
)
from src.prediction.predictor import (
    Predictor,
    Settings,
    choose_device,
    class_list,
    predict_image,
    predictor_from_teacher,
    student_predictor,
)
from src.utils.images import check_readable, find_images, load_rgb
from src.utils.task import check_group_choices, run_task
from src.utils.teachers import build_teacher

if TYPE_CHECKING:  # torch and the models are imported once the input is known to be good
    import torch

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- configuration
def read_settings(cfg: DictConfig) -> Settings:
    """The prediction settings of ``cfg``; a :class:`UserError` names a bad value."""

    def number(key: str, kind: type, *, low: float, high: float = float("inf"), null=False):
        value = cfg.get(key)
        if value is None and null:
            return None
        try:
            out = kind(value)
        except (TypeError, ValueError):
            out = None
        if out is None or not low <= out <= high:
            bounds = f"{low}..{high}" + (" or null" if null else "")
            raise UserError(f"{key}={value!r} is not a valid value", f"give a number in {bounds}")
        return out

    min_size = cfg.get("min_size")
    settings = Settings(
        max_size=number("max_size", int, low=1, null=True),
        min_size=min_size if min_size == "auto" else number("min_size", int, low=1, null=True),
        sliding_window=bool(cfg.sliding_window),
        window=number("window", int, low=1),
        stride=number("stride", int, low=1),
        window_batch=number("window_batch", int, low=1),
        window_pad=number("window_pad", int, low=0, null=True) or 0,
        threshold=number("threshold", float, low=1e-9, high=1.0, null=True),
        logit_scale=number("logit_scale", float, low=1e-9, null=True),
        confidence_maps=bool(cfg.confidence_maps),
        save_logits=bool(cfg.get("save_logits", False)),
        overlay_alpha=number("overlay_alpha", float, low=0.0, high=1.0),
        legend_max_entries=number("legend_max_entries", int, low=1),
    )
    if settings.sliding_window and settings.stride > settings.window:
        raise UserError(
            f"stride={settings.stride} is larger than window={settings.window}: pixels would "
            "be skipped",
            "use stride <= window, e.g. window=512 stride=384",
        )
    return settings


# ---------------------------------------------------------------------- models
def teacher_predictor(
    cfg: DictConfig, classes: list[str] | None, device: torch.device
) -> Predictor:
    """The configured :class:`~src.teacher.model.DenseClipTeacher` on ``classes``."""
    if classes is None:
        raise UserError(
            "no classes given", "name the classes to find, e.g. 'classes=[cat,dog,red car]'"
        )
    teacher = build_teacher(cfg.teacher, classes, cache_dir=cfg.paths.cache_dir, device=device)
    choice = HydraConfig.get().runtime.choices.get("teacher") if HydraConfig.initialized() else None
    predictor = predictor_from_teacher(teacher)
    predictor.info.update(
        teacher=choice,
        pretrained=teacher.pretrained,
        key_smoothing=teacher.key_smoothing,
        prompt_denoising=teacher.prompt_denoising,
        background=teacher.background,
        background_threshold=teacher.background_threshold,
        refine=teacher.refine,
    )
    return predictor


# ---------------------------------------------------------------------- the task
def readable_images(paths: list[Path]) -> tuple[list[Path], list[dict[str, str]]]:
    """``paths`` PIL can identify (header only) and a failure record for each other one; a
    :class:`UserError` when none is readable (before any model loads)."""
    good, failed = [], []
    for path in paths:
        try:
            check_readable(path)
        except UserError as err:
            log.error("skipping %s: %s", path, err.problem)
            failed.append({"input": str(path), "error": err.problem})
        else:
            good.append(path)
    if not good:
        raise UserError(
            f"none of the {len(paths)} input image(s) can be read: {failed[0]['error']}",
            "check that the files are images, or pass another input=",
        )
    return good, failed


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Predict every image of ``cfg.input``; write masks, overlays and ``legend.json``.

    An image that cannot be read is reported and skipped; the others are written, and the
    run ends with a :class:`UserError` that counts the failures (non-zero exit).
    """
    settings = read_settings(cfg)
    if cfg.get("input") is None:
        raise UserError(
            "no input given", "pass input=<image file, folder, or glob like 'photos/*.jpg'>"
        )
    out_dir = prepare_output_dir(str(cfg.output_dir))  # a bad folder fails before any work
    paths, failed = readable_images(find_images(str(cfg.input), skip_outputs_in=out_dir))
    total = len(paths) + len(failed)
    classes = class_list(cfg.get("classes"))
    exported = is_onnx_file(cfg.get("ckpt_path"))  # onnxruntime: no training stack imported
    if classes is not None and not exported:
        from src.teacher.text import validate_class_names  # imports open_clip

        validate_class_names(classes)
    if classes is not None and len(classes) > MAX_CLASSES:  # before encoding them as prompts
        raise UserError(
            f"{len(classes)} classes are too many for a uint8 mask", f"give at most {MAX_CLASSES}"
        )
    device = choose_device("cpu" if exported else cfg.get("device", "auto"))
    if exported:
        predictor = onnx_predictor(str(cfg.ckpt_path), classes)
    elif cfg.get("ckpt_path"):
        predictor = student_predictor(str(cfg.ckpt_path), classes, device)
    else:
        predictor = teacher_predictor(cfg, classes, device)
    names = predictor.class_names
    if len(names) > MAX_CLASSES:
        raise UserError(
            f"{len(names)} classes are too many for a uint8 mask", f"give at most {MAX_CLASSES}"
        )
    palette = prediction_palette(names)
    used = asdict(settings) | {"device": str(device)}
    if used["logit_scale"] is None:
        used["logit_scale"] = predictor.logit_scale
    head = legend_document(names, palette, model=predictor.info, settings=used)
    records = earlier_records(out_dir, head)  # another run's outputs there: refused
    legend = LegendWriter(out_dir, head, records, failed)  # it lists exactly the files there
    try:
        legend.start()  # before the first mask
    except OSError as err:
        raise write_error(err, out_dir, LEGEND, 0) from None
    log.info("predicting %d image(s) with %s into %s", len(paths), predictor.info, out_dir)

    import torch
    from tqdm import tqdm

    done = 0
    start = time.perf_counter()
    bar = tqdm(paths, desc="predict", unit="img", disable=not cfg.progress or len(paths) < 2)
    with torch.inference_mode(), legend.abandoning():
        for path, stem in zip(bar, output_stems(paths), strict=True):
            try:
                rgb = np.asarray(load_rgb(path))
            except UserError as err:  # unreadable past its header: reported, skipped
                log.error("skipping %s: %s", path, err.problem)
                failed.append({"input": str(path), "error": err.problem})
                continue
            decoded = predict_image(predictor, rgb, settings, device, name=Path(path).stem)
            try:
                record = write_outputs(out_dir, stem, rgb, decoded, names, palette, settings)
                legend.add({"input": str(path), **record})
            except OSError as err:  # a full disk: this image's files removed, the legend true
                legend.abandon()
                raise write_error(err, out_dir, f"the outputs of {path}", legend.added) from None
            done += 1
    seconds = time.perf_counter() - start
    try:
        legend.finish()
    except OSError as err:
        raise write_error(err, out_dir, LEGEND, legend.added) from None
    log.info("predicted %d of %d image(s) into %s (legend.json)", done, total, out_dir)
    if failed:
        raise UserError(
            f"{len(failed)} of {total} image(s) could not be read and were skipped: "
            + failed[0]["error"]
            + (f" (and {len(failed) - 1} more, listed above)" if len(failed) > 1 else ""),
            f"fix or remove them; the other {done} were written to {out_dir} "
            "(legend.json lists the failures)",
        )
    return {"predict/images": done, "predict/seconds_per_image": seconds / max(done, 1)}


# ---------------------------------------------------------------------- entry point
@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def _hydra_main(cfg: DictConfig) -> dict[str, Any]:
    return run_task(predict, cfg, output_dir=cfg.paths.output_dir)


def main() -> None:
    """Entry point: ``python -m src.predict``."""
    run_task(check_group_choices, sys.argv[1:], ("teacher",), "predict", output_dir=None)
    _hydra_main()


if __name__ == "__main__":
    main()
