"""A local web page to segment any image by typing phrases (Gradio, on 127.0.0.1).

    python -m src.app                       # http://127.0.0.1:7860, teacher tiny_shapes (make app)
    python -m src.app port=8080 teacher=rn50 teacher.pretrained=/path/to/RN50.pt
    python -m src.app ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt

Upload an image or pick an example scene, type the classes, press Segment: the page shows
the overlay with a legend, the class mask, a confidence map per class, the time taken, and
offers the files ``python -m src.predict`` writes as a zip. Teachers are the configs of
``conf/teacher`` (with ``key=value`` options, e.g. ``head=...`` where the teacher has heads),
composed through Hydra when chosen; each model is loaded once and kept. Prediction settings
are ``src.predict``'s (``conf/app.yaml`` extends ``conf/predict.yaml``).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading
from dataclasses import fields
from pathlib import Path
from typing import Any

import hydra
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig

from src.errors import UserError, shorten
from src.prediction.models import LoadedModel, ModelCache, teacher_has_head_option, teacher_heads
from src.prediction.predictor import Settings, choose_device, class_list
from src.utils.task import CONF_DIR, check_group_choices, run_task
from src.utils.teachers import build_teacher

# never phone home: set before gradio (or huggingface_hub) is imported
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

log = logging.getLogger(__name__)
_compose_lock = threading.Lock()


# ---------------------------------------------------------------------- configuration
def teacher_names() -> list[str]:
    """Every teacher config (``conf/teacher/<name>.yaml``)."""
    return sorted(p.stem for p in (CONF_DIR / "teacher").glob("*.yaml"))


def page_settings(cfg: DictConfig) -> Settings:
    """The prediction settings of the config (``src.predict``'s keys and defaults)."""
    values = {f.name: cfg.get(f.name) for f in fields(Settings)}
    missing = [k for k, v in values.items() if v is None and k not in ("threshold", "logit_scale",
               "max_size", "min_size", "window_pad")]  # fmt: skip
    if missing:
        raise UserError(f"the app config lacks {missing}", "restore conf/app.yaml's defaults")
    return Settings(**{**values, "window_pad": int(values["window_pad"] or 0)})


def compose_teacher(choice: str, options: tuple[str, ...]) -> DictConfig:
    """The ``teacher`` node of ``teacher=<choice>`` with ``key=value`` options, composed by
    Hydra as the command line would (a key the config lacks is added, like ``+teacher.key``)."""
    if choice not in teacher_names():
        raise UserError(f"unknown teacher '{choice}'", f"use one of: {', '.join(teacher_names())}")

    def compose(overrides: list[str]) -> DictConfig:
        with _compose_lock:
            if GlobalHydra.instance().is_initialized():
                return hydra.compose("app", overrides=overrides)
            with hydra.initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                return hydra.compose("app", overrides=overrides)

    base = compose([f"teacher={choice}"]).teacher
    overrides = [f"teacher={choice}"]
    for option in options:
        key = option.split("=", 1)[0]
        overrides.append(f"teacher.{option}" if key in base else f"+teacher.{option}")
    try:
        return compose(overrides).teacher
    except HydraException as err:
        raise UserError(
            f"teacher options {list(options)} do not apply to '{choice}': {shorten(str(err))}",
            "use keys of conf/teacher/<name>.yaml with values of their type",
        ) from None


def make_loader(cfg: DictConfig, device: Any):
    """The page's model loader: a student from a checkpoint, or the composed teacher (the
    run's own ``teacher`` node, command-line overrides included, for the default choice)."""
    default_choice = _default_teacher(cfg)
    cache_dir = str(cfg.paths.cache_dir)

    def load(request, classes: list[str] | None) -> LoadedModel:
        if request.ckpt_path:
            from src.student.checkpoint import load_student

            student = load_student(request.ckpt_path).to(device).eval()
            info = {"ckpt_path": str(Path(request.ckpt_path).expanduser())}
            return LoadedModel(student, "student", info, list(student.teacher.class_names))
        if classes is None:
            raise UserError("no classes given", "type the classes to find")
        if request.teacher == default_choice and not request.options:
            node = cfg.teacher
        else:
            node = compose_teacher(request.teacher, request.options)
        try:
            teacher = build_teacher(node, classes, cache_dir=cache_dir, device=device)
        except UserError:
            raise
        except Exception as err:  # an option the teacher does not take
            if "unexpected keyword argument" not in str(err):
                raise
            raise UserError(
                f"teacher '{request.teacher}' does not take an option of "
                f"{list(request.options)}: {shorten(str(err))}",
                "use keys of conf/teacher/<name>.yaml",
            ) from None
        info = {
            "teacher": request.teacher,
            "options": list(request.options),
            "pretrained": teacher.pretrained,
        }
        return LoadedModel(teacher, "teacher", info, list(classes))

    return load


def check_startup_model(cfg: DictConfig) -> None:
    """The page's default model, checked before serving (cheaply: files, not models): the
    student checkpoint is a DenseCLIP+ checkpoint, the teacher's ``pretrained`` a tag or a
    file. A :class:`UserError` otherwise."""
    if cfg.get("ckpt_path"):
        from src.student.checkpoint import read_checkpoint

        read_checkpoint(str(cfg.ckpt_path))
        return
    from src.teacher.pretrained_check import check_pretrained

    check_pretrained(str(cfg.teacher.clip_model), cfg.teacher.get("pretrained"))


def _default_teacher(cfg: DictConfig) -> str:
    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get("teacher")
        if choice:
            return str(choice)
    return "tiny_shapes"


def _offered_teachers(cfg: DictConfig, default: str) -> list[str]:
    known = teacher_names()
    wanted = known if cfg.get("teachers") is None else [str(t) for t in cfg.teachers]
    unknown = [t for t in wanted if t not in known]
    if unknown:
        raise UserError(f"unknown teachers {unknown} in teachers=", f"use names from {known}")
    return wanted if default in wanted else [default, *wanted]


# ---------------------------------------------------------------------- the task
def serve(cfg: DictConfig) -> dict[str, Any]:
    """Build the page and serve it until interrupted."""
    host, port = str(cfg.host), cfg.port
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise UserError(f"port={cfg.port} is not a port number", "use e.g. port=7860")
    settings = page_settings(cfg)
    device = choose_device(cfg.get("device", "auto"))
    check_startup_model(cfg)  # a wrong weights file or checkpoint fails now, not on a request
    upload_limit = cfg.get("max_upload_mb")
    if upload_limit is not None and (
        isinstance(upload_limit, bool) or not isinstance(upload_limit, int | float)
        or upload_limit <= 0
    ):  # fmt: skip
        raise UserError(
            f"max_upload_mb={upload_limit!r} is not a positive number", "use e.g. max_upload_mb=20"
        )
    run_dir = Path(str(cfg.paths.output_dir))
    os.environ.setdefault("GRADIO_TEMP_DIR", str(run_dir / "gradio"))  # this run's uploads

    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UserError("the web page needs gradio", "pip install -e '.[app]'") from None
    from src.web.examples import write_examples
    from src.web.page import build_page, launch
    from src.web.segment import Segmenter

    default = _default_teacher(cfg)
    segmenter = Segmenter(
        loader=make_loader(cfg, device),
        settings=settings,
        device=device,
        out_dir=run_dir / "requests",
        cache=ModelCache(int(cfg.cache_models)),
    )
    classes = class_list(cfg.get("classes"))
    page = build_page(
        segmenter,
        teachers=_offered_teachers(cfg, default),
        default_teacher=default,
        heads=teacher_heads() if teacher_has_head_option() else None,
        examples=write_examples(run_dir / "examples", int(cfg.examples)),
        default_threshold=settings.threshold,
        default_classes=", ".join(classes) if classes else None,
        default_ckpt=str(cfg.ckpt_path) if cfg.get("ckpt_path") else None,
        default_sliding_window=settings.sliding_window,
        max_upload_mb=upload_limit,
    )
    if hasattr(signal, "SIGUSR1"):  # kill -USR1 <pid>: every thread's stack to the console
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: other machines can reach this page", host)
    log.info(
        "starting the page on http://%s:%d (Ctrl-C stops); requests go to %s", host, port, run_dir
    )
    try:
        launch(page, host=host, port=port, allowed_paths=[run_dir])
    except OSError as err:
        why = "the port is in use" if "empty port" in str(err) else shorten(str(err))
        raise UserError(
            f"cannot serve on {host}:{port}: {why}",
            "pass another port=, or stop what uses this one",
        ) from None
    return {}


# ---------------------------------------------------------------------- entry point
@hydra.main(version_base="1.3", config_path="../conf", config_name="app")
def _hydra_main(cfg: DictConfig) -> dict[str, Any]:
    return run_task(serve, cfg, output_dir=None)


def main() -> None:
    """Entry point: ``python -m src.app``."""
    run_task(check_group_choices, sys.argv[1:], ("teacher",), "app", output_dir=None)
    _hydra_main()


if __name__ == "__main__":
    main()
