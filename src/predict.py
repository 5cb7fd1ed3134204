"""Open-vocabulary prediction on any images, with the teacher or a trained student.

    python -m src.predict input=photos/ 'classes=[cat,dog,red car]' teacher=rn50 output_dir=out
    python -m src.predict input='shots/*.png' 'classes=[sky,tree]' ckpt_path=path/to/last.ckpt

For each image writes ``<stem>_mask.png`` (uint8 palette PNG: value ``i`` is ``classes[i]``,
255 is no class), ``<stem>_overlay.jpg`` (image, colour mask, legend) and, with
``confidence_maps=true``, ``<stem>_conf_<class>.png``; then one ``legend.json`` (classes,
colours, settings, per-image files and pixel counts). Every file is written atomically.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig, ListConfig

from src.errors import UserError
from src.prediction import (
    Predictor,
    Settings,
    check_class_names,
    output_stems,
    predict_image,
    predictor_from_student,
    predictor_from_teacher,
    write_outputs,
)
from src.utils.images import check_readable, find_images, load_rgb
from src.utils.io import atomic_save_json
from src.utils.task import run_task
from src.visualize_overlay import MAX_CLASSES, VOID_COLOR, prediction_palette

if TYPE_CHECKING:  # torch and the models are imported once the input is known to be good
    import torch

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


# ---------------------------------------------------------------------- configuration
def class_list(value: Any) -> list[str] | None:
    """``classes`` from the command line: a list, or one comma-separated string."""
    if value is None:
        return None
    if isinstance(value, ListConfig | list | tuple):
        return [str(v) for v in value]
    if isinstance(value, str):
        return [part for part in value.split(",")] if value.strip() else []
    raise UserError(f"classes must be a list of names, got {value!r}", "e.g. 'classes=[cat,dog]'")


def choose_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:<n>``."""
    import torch

    name = str(name).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device={name} but CUDA is not available", "use device=cpu or auto")
        return torch.device(name)
    raise UserError(f"unknown device {name!r}", "use device=auto, cpu, cuda or cuda:<n>")


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
        threshold=number("threshold", float, low=1e-9, high=1.0, null=True),
        logit_scale=number("logit_scale", float, low=1e-9, null=True),
        confidence_maps=bool(cfg.confidence_maps),
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


def _instantiate(node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that lets a :class:`UserError` through unwrapped."""
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, UserError):
            raise err.__cause__ from None
        raise


# ---------------------------------------------------------------------- models
def teacher_predictor(
    cfg: DictConfig, classes: list[str] | None, device: torch.device
) -> Predictor:
    """The configured :class:`~src.models.teacher.DenseClipTeacher` on ``classes``."""
    if classes is None:
        raise UserError(
            "no classes given", "name the classes to find, e.g. 'classes=[cat,dog,red car]'"
        )
    teacher = _instantiate(cfg.teacher, class_names=classes, cache_dir=cfg.paths.cache_dir)
    teacher = teacher.to(device)
    choice = HydraConfig.get().runtime.choices.get("teacher") if HydraConfig.initialized() else None
    predictor = predictor_from_teacher(teacher)
    predictor.info.update(
        teacher=choice,
        pretrained=teacher.pretrained,
        key_smoothing=teacher.key_smoothing,
        prompt_denoising=teacher.prompt_denoising,
    )
    return predictor


def student_predictor(ckpt_path: str, classes: list[str] | None, device: torch.device) -> Predictor:
    """A trained DenseCLIP+ student from ``ckpt_path``; ``classes`` re-encodes its vocabulary."""
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}", "pass ckpt_path=<path to a .ckpt file>")
    from src.models.student import DenseClipPlus  # only needed with a checkpoint

    try:
        student = DenseClipPlus.load_from_checkpoint(str(path), map_location="cpu")
    except UserError:
        raise
    except Exception as err:  # pickle, zip, missing keys, wrong class: all a bad file
        raise UserError(
            f"cannot load the checkpoint {path}: {' '.join(str(err).split())[:300]}",
            "pass a DenseCLIP+ checkpoint written by python -m src.train",
        ) from None
    if classes is not None:
        if student.class_offset and any(c.strip().lower() == "background" for c in classes):
            raise UserError(
                "this student has a learned 'background' class already",
                "leave 'background' out of classes (it is class 0 of the mask)",
            )
        student.set_class_names(classes)
    student = student.to(device).eval()
    predictor = predictor_from_student(student)
    predictor.info["ckpt_path"] = str(path)
    return predictor


# ---------------------------------------------------------------------- the task
def predict(cfg: DictConfig) -> dict[str, Any]:
    """Predict every image of ``cfg.input``; write masks, overlays and ``legend.json``."""
    settings = read_settings(cfg)
    out_dir = Path(str(cfg.output_dir)).expanduser()
    if cfg.get("input") is None:
        raise UserError(
            "no input given", "pass input=<image file, folder, or glob like 'photos/*.jpg'>"
        )
    paths = find_images(str(cfg.input), skip_outputs_in=out_dir)
    for path in paths:  # a file PIL cannot identify fails here, before any model loads
        check_readable(path)
    classes = class_list(cfg.get("classes"))
    if classes is not None:
        check_class_names(classes)
    device = choose_device(cfg.get("device", "auto"))
    if cfg.get("ckpt_path"):
        predictor = student_predictor(str(cfg.ckpt_path), classes, device)
    else:
        predictor = teacher_predictor(cfg, classes, device)
    names = predictor.class_names
    if len(names) > MAX_CLASSES:
        raise UserError(
            f"{len(names)} classes are too many for a uint8 mask", f"give at most {MAX_CLASSES}"
        )
    palette = prediction_palette(names)
    log.info("predicting %d image(s) with %s into %s", len(paths), predictor.info, out_dir)

    import torch
    from tqdm import tqdm

    records = []
    start = time.perf_counter()
    bar = tqdm(paths, desc="predict", unit="img", disable=not cfg.progress or len(paths) < 2)
    with torch.inference_mode():
        for path, stem in zip(bar, output_stems(paths), strict=True):
            rgb = np.asarray(load_rgb(path))
            decoded = predict_image(predictor, rgb, settings, device)
            record = write_outputs(out_dir, stem, rgb, decoded, names, palette, settings)
            records.append({"input": str(path), **record})
    seconds = time.perf_counter() - start

    used = asdict(settings) | {"device": str(device)}
    if used["logit_scale"] is None:
        used["logit_scale"] = predictor.logit_scale
    legend = {
        "classes": names,
        "colors": [[int(v) for v in palette[i]] for i in range(len(names))],
        "no_class": {"value": 255, "color": list(VOID_COLOR)},
        "model": predictor.info,
        "settings": used,
        "images": records,
    }
    atomic_save_json(out_dir / "legend.json", legend)
    log.info("wrote %d mask(s), overlays and legend.json to %s", len(records), out_dir)
    return {"predict/images": len(records), "predict/seconds_per_image": seconds / len(records)}


# ---------------------------------------------------------------------- entry point
def check_group_choices(argv: Sequence[str], groups: Sequence[str] = ("teacher",)) -> None:
    """Fail early, as a :class:`UserError`, on ``<group>=<name>`` naming no config file
    (Hydra's own message would exit with status 1; a sweep ``a,b`` checks each name)."""
    for arg in argv:
        match = re.fullmatch(r"\+{0,2}([\w.]+)=(.*)", arg)
        if not match or match.group(1) not in groups or "(" in match.group(2):
            continue  # not a group choice, or a sweep function such as glob(...)
        group = match.group(1)
        known = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        for choice in match.group(2).split(","):
            choice = choice.strip().strip("'\"")
            if choice not in known:
                raise UserError(f"unknown {group} '{choice}'", f"use one of: {', '.join(known)}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def _hydra_main(cfg: DictConfig) -> dict[str, Any]:
    return run_task(predict, cfg, output_dir=cfg.paths.output_dir)


def main() -> None:
    """Entry point: ``python -m src.predict``."""
    run_task(check_group_choices, sys.argv[1:], output_dir=None)
    _hydra_main()


if __name__ == "__main__":
    main()
