"""One request of the web page: an image and typed classes -> the overlay, the mask, the
confidence maps, the legend, the time taken, and the files ``src.predict`` writes (zipped).

The prediction path is ``src.prediction``'s (:func:`predict_image`, :func:`write_outputs`,
:func:`legend_document`); models come from a :class:`~src.prediction.models.ModelCache`
through a loader the entry point gives (it alone reads configs). Every mistake a user can
make is a :class:`~src.errors.UserError` whose text the page shows.
"""

from __future__ import annotations

import io
import itertools
import re
import shutil
import threading
import time
import zipfile
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from src.errors import UserError
from src.pictures.heatmap import confidence_heatmap
from src.pictures.overlay import legend_entries
from src.pictures.palette import MAX_CLASSES, colorize, prediction_palette
from src.prediction.models import LoadedModel, ModelCache, vocabulary_predictor
from src.prediction.outputs import legend_document, output_stems, write_outputs
from src.prediction.predictor import Settings, predict_image
from src.teacher.text import validate_class_names
from src.utils.images import check_readable, load_rgb
from src.utils.io import atomic_save_json, atomic_write_bytes


def parse_classes(text: str | None) -> list[str]:
    """The classes typed in the page: comma-separated (``circle, square, triangle``); when the
    text has several lines or semicolons, one class per line / between semicolons (so that a
    class may hold commas, e.g. several names of one class). Empty names and duplicates are a
    :class:`UserError`."""
    text = (text or "").strip()
    if not text:
        raise UserError(
            "no classes given", "type the classes to find, e.g. circle, square, triangle"
        )
    parts = re.split(r"[;\n]", text) if re.search(r"[;\n]", text) else text.split(",")
    names = [p.strip() for p in parts if p.strip()]  # a trailing comma is no class
    if not names:
        raise UserError(f"no class names in {text!r}", "type e.g. circle, square, triangle")
    if len(names) > MAX_CLASSES:
        raise UserError(f"{len(names)} classes are too many", f"give at most {MAX_CLASSES}")
    return validate_class_names(names)


@dataclass(frozen=True)
class ModelRequest:
    """Which model a request asks for: a student checkpoint when ``ckpt_path`` is given, else
    the teacher config ``teacher`` with ``options`` (``key=value`` overrides of it)."""

    teacher: str
    options: tuple[str, ...] = ()
    ckpt_path: str | None = None

    def key(self) -> Hashable:
        """The cache key: the checkpoint file as it is now (path, size, time), or the teacher
        config and its options."""
        if self.ckpt_path:
            path = Path(self.ckpt_path).expanduser()
            try:
                st = path.stat()
                stamp: tuple = (st.st_size, st.st_mtime_ns)
            except OSError:
                stamp = ()
            return ("student", str(path.resolve()), stamp)
        return ("teacher", self.teacher, self.options)


@dataclass
class PageResult:
    """What the page shows for one request."""

    overlay: Image.Image
    mask: np.ndarray  #: (H, W, 3) the class mask in the legend's colours
    confidence: list[tuple[np.ndarray, str]]  #: per class: (H, W, 3) heat map, caption
    legend: list[dict[str, Any]]  #: present classes, largest first: name, colour, share
    class_names: list[str]
    seconds: float  #: the prediction (sizing, model, decoding)
    load_seconds: float  #: loading the model (0 when it was cached)
    cached: bool
    files: Path  #: the zip of the request's files
    folder: Path
    model: dict[str, Any] = field(default_factory=dict)

    def timing(self) -> str:
        """One line for the page: time taken, and whether the model was loaded."""
        h, w = self.mask.shape[:2]
        load = (
            "model cached"
            if self.cached
            else f"model loaded in {self.load_seconds:.1f} s (kept for the next requests)"
        )
        return (
            f"Segmented {w} x {h} px into {len(self.class_names)} classes in "
            f"{self.seconds:.2f} s; {load}."
        )


class Segmenter:
    """The web page's back end: one request at a time, models cached, files per request.

    Args:
        loader: builds the model a :class:`ModelRequest` asks for, given the request's
            classes (``None``: a student's own); the entry point composes the teacher config
            or loads the checkpoint; raises :class:`UserError`.
        settings: sizing and decoding (the form sets ``threshold`` and ``sliding_window``;
            confidence maps are always made).
        device: where the models run.
        out_dir: each request writes into ``out_dir/<number>_<image name>/`` and a zip of it.
        cache: the model cache (default: the two most recent models).
    """

    def __init__(
        self,
        *,
        loader: Callable[[ModelRequest, list[str] | None], LoadedModel],
        settings: Settings,
        device: Any,
        out_dir: str | Path,
        cache: ModelCache | None = None,
    ) -> None:
        self.loader = loader
        self.settings = replace(settings, confidence_maps=True)
        self.device = device
        self.out_dir = Path(out_dir)
        self.cache = cache or ModelCache()
        self._count = itertools.count(1)
        self._count_lock = threading.Lock()

    def _folder(self, stem: str) -> Path:
        with self._count_lock:
            n = next(self._count)
        folder = self.out_dir / f"{n:04d}_{stem}"
        while folder.exists():  # a request folder is never shared, even across restarts
            with self._count_lock:
                n = next(self._count)
            folder = self.out_dir / f"{n:04d}_{stem}"
        return folder

    def settings_for(self, threshold: float | None, sliding_window: bool) -> Settings:
        """The page's settings for one request: ``threshold`` 0 or ``None`` is off."""
        if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
            raise UserError(f"background threshold {threshold} is not in 0..1", "use 0 (off) to 1")
        value = float(threshold) if threshold else None
        return replace(self.settings, threshold=value, sliding_window=bool(sliding_window))

    def segment(
        self,
        image_path: str | Path | None,
        classes: str | None,
        model: ModelRequest,
        *,
        threshold: float | None = None,
        sliding_window: bool = False,
    ) -> PageResult:
        """Run one request; a :class:`UserError` says what to fix."""
        if not image_path:
            raise UserError("no image given", "upload an image or pick one of the examples")
        check_readable(image_path)
        names = parse_classes(classes) if (classes or "").strip() or not model.ckpt_path else None
        settings = self.settings_for(threshold, sliding_window)
        rgb = np.asarray(load_rgb(image_path))

        import torch

        with self.cache.lock:
            loaded, cached = self.cache.get(model.key(), lambda: self.loader(model, names))
            predictor = vocabulary_predictor(loaded, names)
            class_names = predictor.class_names
            palette = prediction_palette(class_names)
            start = time.perf_counter()
            with torch.inference_mode():
                decoded = predict_image(
                    predictor, rgb, settings, self.device, name=Path(image_path).stem
                )
            seconds = time.perf_counter() - start
            info = dict(predictor.info)
            logit_scale = predictor.logit_scale
        (stem,) = output_stems([Path(image_path)])
        folder = self._folder(stem)
        used = asdict(settings) | {"device": str(self.device)}
        if used["logit_scale"] is None:
            used["logit_scale"] = logit_scale
        try:  # all of the request's files, or none (a full disk leaves no half folder)
            record = write_outputs(folder, stem, rgb, decoded, class_names, palette, settings)
            record = {"input": Path(image_path).name, **record}
            legend = legend_document(class_names, palette, model=info, settings=used,
                                     images=[record])  # fmt: skip
            atomic_save_json(folder / "legend.json", legend)
            zipped = self._zip(folder)
        except OSError as err:
            shutil.rmtree(folder, ignore_errors=True)
            folder.with_suffix(".zip").unlink(missing_ok=True)
            raise UserError(
                f"cannot write the request's files into {self.out_dir}: {err.strerror or err}",
                "free space on that disk (or restart the page with another paths.log_dir)",
            ) from None

        pixels = decoded.pixels_per_class
        entries = legend_entries(class_names, pixels, max_entries=settings.legend_max_entries)
        no_class = int(decoded.mask.numel() - sum(pixels))
        rows = [
            {"name": name, "color": [int(v) for v in palette[i]], "share": share}
            for i, name, share in entries
        ]
        if no_class:
            rows.append(
                {"name": "(no class)", "color": None, "share": no_class / decoded.mask.numel()}
            )
        mask = decoded.mask.cpu().numpy()
        conf = decoded.confidence.cpu().numpy() if decoded.confidence is not None else []
        return PageResult(
            overlay=Image.open(folder / record["overlay"]).convert("RGB"),
            mask=colorize(mask, palette),
            confidence=[(confidence_heatmap(c), n) for c, n in zip(conf, class_names, strict=True)],
            legend=rows,
            class_names=list(class_names),
            seconds=seconds,
            load_seconds=0.0 if cached else loaded.load_seconds,
            cached=cached,
            files=zipped,
            folder=folder,
            model=info,
        )

    @staticmethod
    def _zip(folder: Path) -> Path:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.iterdir()):
                if path.is_file() and not path.name.startswith("."):
                    archive.write(path, arcname=f"{folder.name}/{path.name}")
        return atomic_write_bytes(folder.with_suffix(".zip"), buffer.getvalue())
