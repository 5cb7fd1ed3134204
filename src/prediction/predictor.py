"""The predictor: any dense model (teacher or student) reduced to what prediction needs,
and :func:`predict_image`, one RGB image -> a :class:`~src.prediction.decode.Decoded` mask at
its own size (sizing, sliding windows, decoding).

Plain typed code behind ``python -m src.predict`` and the web page (which read the config).
torch is imported inside the functions, so that bad input is reported before it loads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from src.errors import UserError
from src.utils.records import teacher_record

if TYPE_CHECKING:
    import torch

    from src.prediction.decode import Decoded
    from src.student.model import DenseClipPlus
    from src.teacher.model import DenseClipTeacher


@dataclass
class Predictor:
    """A model reduced to what prediction needs."""

    #: normalised (B, 3, h, w) -> (B, Q, h', w') scores (:mod:`src.scoring`'s scorer)
    scorer: Callable[[torch.Tensor], torch.Tensor]
    normalize: Callable[[torch.Tensor], torch.Tensor]  #: [0, 1] images -> model input
    class_names: list[str]
    logit_scale: float
    native_size: int  #: the model's own input size: smaller images are enlarged to it
    info: dict[str, Any] = field(default_factory=dict)
    model: Any = None  #: the wrapped model (a teacher or a student)
    #: the scorer's (B, Q, H, W) scores -> (B, C, H, W) class scores, applied after windows,
    #: refinement and resizing (the teacher's names -> classes); None: the scores are the classes'
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
    background: bool = False  #: class score 0 is "none of these" (mask 255), class i is i + 1
    #: (images, scores) at the image's size -> refined scores, after windows and resizing (PAMR)
    refine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    #: (normalised images, the image's size, its file stem or None) -> (1, H, W) region map
    #: or None (``teacher.masks``); None: the model reads no regions
    regions: Callable[[torch.Tensor, tuple[int, int], str | None], torch.Tensor | None] | None = (
        None
    )
    #: (class scores, region map at their size) -> class scores, after ``reduce`` (the head's
    #: region vote); None: no vote
    vote: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None


def predictor_from_teacher(teacher: DenseClipTeacher) -> Predictor:
    """A built :class:`~src.teacher.model.DenseClipTeacher` as a :class:`Predictor`: its
    scorer (the names' cosine scores), its refiner (``teacher.refine``), its names -> classes
    reduction (``classify``: best name, background channel), softmax scale
    ``teacher.logit_scale`` (the head's: 100 for DenseCLIP's), enlarged to the CLIP's input
    size like ``src.predict``; the same parts its ``predict_logits`` composes."""
    return Predictor(
        scorer=teacher.input_scores,
        normalize=teacher.normalize,
        class_names=list(teacher.class_names),
        logit_scale=float(teacher.logit_scale),
        native_size=int(teacher.image_size),
        info={
            "model": "teacher",
            "clip_model": teacher.clip_model,
            "head": teacher.head,
            "teacher_config": teacher_record(teacher),
        },
        model=teacher,
        reduce=teacher.classify,
        background=bool(teacher.has_background),
        refine=teacher.refiner,
        regions=None
        if teacher.region_masks is None
        else lambda x, size, name: teacher.region_maps(x, size, [name]),
        vote=teacher.region_vote,
    )


def predictor_from_student(student: DenseClipPlus) -> Predictor:
    """A trained :class:`~src.student.model.DenseClipPlus` in memory as a :class:`Predictor`
    (its logits, softmax scale 1, its teacher's normalisation); put it in eval mode first."""
    return Predictor(
        scorer=lambda x: student.predict_logits(x),
        normalize=student.normalize,
        class_names=list(student.class_names),
        logit_scale=1.0,
        native_size=int(student.image_size),
        info={
            "model": "student",
            "clip_model": student.clip_model,
            "teacher_config": teacher_record(student.teacher),
        },
        model=student,
    )


def student_predictor(
    ckpt_path: str, classes: Sequence[str] | None, device: torch.device | str = "cpu"
) -> Predictor:
    """A trained DenseCLIP+ student from ``ckpt_path`` (``classes``: a new vocabulary)."""
    from pathlib import Path

    from src.student.checkpoint import load_student  # only needed with a checkpoint

    student = load_student(ckpt_path)
    if classes is not None:
        set_student_classes(student, classes)
    predictor = predictor_from_student(student.to(device).eval())
    predictor.info["ckpt_path"] = str(Path(ckpt_path).expanduser())
    return predictor


def set_student_classes(student: DenseClipPlus, classes: Sequence[str]) -> None:
    """Give a trained student a new vocabulary (its learned background stays class 0)."""
    if student.class_offset and any(c.strip().lower() == "background" for c in classes):
        raise UserError(
            "this student has a learned 'background' class already",
            "leave 'background' out of classes (it is class 0 of the mask)",
        )
    student.set_class_names(list(classes))


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
    save_logits: bool = False  #: also keep the (K, H, W) float32 logits at the image's size
    window_pad: int = 0  #: crops padded in the middle to a multiple of it (0: none; CorrCLIP 56)


def class_list(value: Any) -> list[str] | None:
    """A class list from the command line or a form: a list (each entry kept whole, so
    ``[cat, "person, person in shirt"]`` is two classes, the second with two names), or one
    comma-separated string of single-name classes."""
    if value is None:
        return None
    if isinstance(value, str):
        return [part for part in value.split(",")] if value.strip() else []
    if isinstance(value, Sequence):
        return [str(v) for v in value]
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


def predict_image(
    predictor: Predictor,
    image: np.ndarray,
    settings: Settings,
    device: torch.device,
    *,
    name: str | None = None,
) -> Decoded:
    """(H, W, 3) uint8 image -> :class:`~src.prediction.decode.Decoded` at the image's size:
    resized for the model, normalised, scored through the one scoring path
    (:func:`src.scoring.dense_scores`: whole image or sliding windows, upsampled, refined),
    then reduced to classes and decoded. ``name``: the image's file stem (precomputed region
    masks are read by it); with region masks their vote follows the classes
    (:func:`src.scoring.score_images`)."""
    import torch

    from src.prediction.decode import decode_logits
    from src.prediction.windows import resize_short_side
    from src.scoring import Windows, dense_scores, score_images

    h, w = image.shape[:2]
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).to(device).permute(2, 0, 1)[None]
    min_size = predictor.native_size if settings.min_size == "auto" else settings.min_size
    if min_size is not None and settings.max_size is not None:
        min_size = min(int(min_size), settings.max_size)
    x = resize_short_side(x.float() / 255, settings.max_size, min_size)
    x = predictor.normalize(x)
    windows = (
        Windows(settings.window, settings.stride, settings.window_batch, settings.window_pad)
        if settings.sliding_window
        else None
    )
    # a refinement runs on the scores at the image's size (the authors' order: resize to the
    # image, then PAMR); without one the decoder upsamples them in bands (same values, less
    # memory than K x H x W floats)
    size = (h, w) if predictor.refine is not None else None
    regions = None if predictor.regions is None else predictor.regions(x, (h, w), name)
    reduce = predictor.reduce
    if regions is not None and predictor.vote is not None:  # the vote acts on the classes
        logits = score_images(predictor.scorer, x, size=(h, w), windows=windows,
                              refine=predictor.refine, reduce=reduce, regions=regions,
                              vote=predictor.vote)  # fmt: skip
        reduce = None
    else:
        logits = dense_scores(predictor.scorer, x, size=size, windows=windows,
                              refine=predictor.refine, regions=regions)  # fmt: skip
    scale = predictor.logit_scale if settings.logit_scale is None else settings.logit_scale
    return decode_logits(
        logits[0],
        (h, w),
        scale=scale,
        threshold=settings.threshold,
        confidence_maps=settings.confidence_maps,
        reduce=reduce,
        background=predictor.background,
        keep_logits=settings.save_logits,
    )
