"""Predicting images with any dense model: sizing, windows, decoding, and the files written.

Plain typed code behind ``python -m src.predict`` (which reads the config): a
:class:`Predictor` wraps a model (teacher or student), :func:`predict_image` turns one RGB
image into a :class:`~src.inference.Decoded` mask at its own size, :func:`write_outputs`
writes ``<stem>_mask.png``, ``<stem>_overlay.jpg`` and ``<stem>_conf_<class>.png``
atomically. torch is imported inside the functions, so that bad input is reported before it
loads.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from src.errors import UserError
from src.utils.io import atomic_save_image
from src.visualize_overlay import mask_image, overlay_with_legend

if TYPE_CHECKING:
    import torch

    from src.inference import Decoded
    from src.models.student import DenseClipPlus
    from src.models.teacher import DenseClipTeacher


@dataclass
class Predictor:
    """A model reduced to what prediction needs."""

    scorer: Callable[[torch.Tensor], torch.Tensor]  #: normalised (B,3,h,w) -> (B,K,h,w) logits
    normalize: Callable[[torch.Tensor], torch.Tensor]  #: [0, 1] images -> model input
    class_names: list[str]
    logit_scale: float
    native_size: int  #: the model's own input size: smaller images are enlarged to it
    info: dict[str, Any] = field(default_factory=dict)


def predictor_from_teacher(teacher: DenseClipTeacher) -> Predictor:
    """A built :class:`~src.models.teacher.DenseClipTeacher` as a :class:`Predictor`
    (cosine scores, softmax scale 100, enlarged to the CLIP's input size like ``src.predict``)."""
    return Predictor(
        scorer=lambda x: teacher.predict_logits(x),
        normalize=teacher.normalize,
        class_names=list(teacher.class_names),
        logit_scale=100.0,
        native_size=int(teacher.image_size),
        info={"model": "teacher", "clip_model": teacher.clip_model},
    )


def predictor_from_student(student: DenseClipPlus) -> Predictor:
    """A trained :class:`~src.models.student.DenseClipPlus` in memory as a :class:`Predictor`
    (its logits, softmax scale 1, its teacher's normalisation); put it in eval mode first."""
    return Predictor(
        scorer=lambda x: student.predict_logits(x),
        normalize=student.teacher.normalize,
        class_names=list(student.class_names),
        logit_scale=1.0,
        native_size=int(student.teacher.image_size),
        info={"model": "student", "clip_model": student.teacher.clip_model},
    )


@dataclass
class Settings:
    """How images are sized, windowed and decoded (validated from the config)."""

    max_size: int | None
    min_size: int | str | None  #: pixels, ``"auto"`` (the model's input size) or None
    sliding_window: bool
    window: int
    stride: int
    window_batch: int
    threshold: float | None
    logit_scale: float | None  #: None: the model's own (100 for cosine scores)
    confidence_maps: bool
    overlay_alpha: float
    legend_max_entries: int


def check_class_names(classes: Sequence[str]) -> None:
    """Fail fast (before a model loads) on an empty list, empty names or duplicates.

    The same rule as :func:`src.models.text.validate_class_names`, which the models apply.
    """
    names = [str(c).strip() for c in classes]
    if not names:
        raise UserError(
            "the class list is empty", "give at least one class, e.g. 'classes=[cat,dog]'"
        )
    if not all(names):
        raise UserError(f"the class list {list(classes)} has an empty name", "remove it")
    lowered = [n.lower() for n in names]
    dups = sorted({n for n in names if lowered.count(n.lower()) > 1})
    if dups:
        raise UserError(f"duplicate class names: {dups}", "give each class once")


def output_stems(paths: Sequence[Path]) -> list[str]:
    """One distinct file stem per input (``a.jpg`` and ``a.png`` -> ``a_jpg``, ``a_png``)."""
    counts = Counter(p.stem for p in paths)
    stems, used = [], set()
    for p in paths:
        stem = p.stem if counts[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}"
        base, n = stem, 2
        while stem in used:
            stem, n = f"{base}_{n}", n + 1
        used.add(stem)
        stems.append(stem)
    return stems


def class_slugs(class_names: Sequence[str]) -> list[str]:
    """File-name-safe, distinct names for the confidence maps (``red car`` -> ``red_car``)."""
    out: list[str] = []
    for i, name in enumerate(class_names):
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.") or f"class{i}"
        while slug in out:
            slug = f"{slug}_{i}"
        out.append(slug)
    return out


def predict_image(
    predictor: Predictor, image: np.ndarray, settings: Settings, device: torch.device
) -> Decoded:
    """(H, W, 3) uint8 image -> :class:`~src.inference.Decoded` at the image's size."""
    import torch

    from src.inference import decode_logits, resize_short_side, sliding_window_logits

    h, w = image.shape[:2]
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).to(device).permute(2, 0, 1)[None]
    min_size = predictor.native_size if settings.min_size == "auto" else settings.min_size
    if min_size is not None and settings.max_size is not None:
        min_size = min(int(min_size), settings.max_size)
    x = resize_short_side(x.float() / 255, settings.max_size, min_size)
    x = predictor.normalize(x)
    if settings.sliding_window:
        logits = sliding_window_logits(
            predictor.scorer,
            x,
            window=settings.window,
            stride=settings.stride,
            batch_size=settings.window_batch,
        )
    else:
        logits = predictor.scorer(x)
    scale = predictor.logit_scale if settings.logit_scale is None else settings.logit_scale
    return decode_logits(
        logits[0],
        (h, w),
        scale=scale,
        threshold=settings.threshold,
        confidence_maps=settings.confidence_maps,
    )


def write_outputs(
    out_dir: Path,
    stem: str,
    image: np.ndarray,
    decoded: Decoded,
    class_names: Sequence[str],
    palette: np.ndarray,
    settings: Settings,
) -> dict[str, Any]:
    """Write one image's mask, overlay (and confidence maps); return its legend record."""
    mask = decoded.mask.cpu().numpy()
    record: dict[str, Any] = {
        "height": int(mask.shape[0]),
        "width": int(mask.shape[1]),
        "mask": f"{stem}_mask.png",
        "overlay": f"{stem}_overlay.jpg",
        "pixels": dict(zip(class_names, decoded.pixels_per_class, strict=True)),
        "pixels_no_class": int(mask.size - sum(decoded.pixels_per_class)),
    }
    atomic_save_image(out_dir / record["mask"], mask_image(mask, palette))
    overlay = overlay_with_legend(
        image,
        mask,
        class_names,
        palette,
        decoded.pixels_per_class,
        alpha=settings.overlay_alpha,
        max_entries=settings.legend_max_entries,
    )
    atomic_save_image(out_dir / record["overlay"], overlay, quality=90)
    if decoded.confidence is not None:
        conf = decoded.confidence.cpu().numpy()
        record["confidence_maps"] = {}
        for k, slug in enumerate(class_slugs(class_names)):
            name = f"{stem}_conf_{slug}.png"
            atomic_save_image(out_dir / name, Image.fromarray(conf[k], mode="L"))
            record["confidence_maps"][class_names[k]] = name
    return record
