"""The one checkpoint loader: a trained DenseCLIP+ student from a ``.ckpt`` file, or a
:class:`~src.errors.UserError` that names the file and the fix (eval, predict, scripts); and
the checks a training run makes before it resumes from one."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from src.errors import UserError
from src.student.model import DenseClipPlus

_FIX = "pass a checkpoint python -m src.train wrote (<run>/checkpoints/last.ckpt)"


def _what_file(file: Path) -> str:
    """What a file that ``torch.load`` cannot read looks like, for the error message."""
    if file.suffix.lower() == ".onnx":
        return "an exported ONNX student, not a training checkpoint (no optimizer state)"
    with open(file, "rb") as f:
        head = f.read(4096)
    if head.startswith(b"PK\x03\x04"):
        return "a damaged or truncated PyTorch checkpoint (the archive is cut short)"
    try:
        text = head.decode("utf-8").lstrip()
    except UnicodeDecodeError:
        return "not a PyTorch checkpoint"
    if text.startswith(("{", "[")):
        return "a JSON file, not a checkpoint"
    return "a text file, not a checkpoint" if text else "empty"


def read_checkpoint(
    path: str | os.PathLike, *, what: str = "checkpoint", fix: str = _FIX
) -> dict[str, Any]:
    """The contents of a DenseCLIP+ checkpoint, memory-mapped (cheap for large files).

    A missing file, a file of another kind (text, JSON, truncated) or a PyTorch file without a
    student is one :class:`UserError` naming the file.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"{what} not found: {file}", fix)
    try:
        ckpt = torch.load(file, map_location="cpu", mmap=True, weights_only=True)
    except Exception:  # zip, pickle or format errors: the file is not what it should be
        raise UserError(f"the {what} {file} is {_what_file(file)}", fix) from None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, Mapping) else None
    if not isinstance(hparams, Mapping) or "teacher" not in hparams or "state_dict" not in ckpt:
        raise UserError(
            f"the {what} {file} is a PyTorch file but not a DenseCLIP+ checkpoint "
            "(no student and teacher settings in it)",
            fix,
        )
    return dict(ckpt)


def check_resumable(ckpt: Mapping[str, Any], student: DenseClipPlus, path: str) -> None:
    """Fail before training if ``ckpt`` cannot resume ``student``: no training state in the
    file, or a student of another shape (other head, backbone or classes)."""
    if "optimizer_states" not in ckpt or "loops" not in ckpt:
        raise UserError(
            f"the checkpoint {path} holds weights only, no training state to resume",
            "resume from <run>/checkpoints/last.ckpt of a training run",
        )
    saved = ckpt["state_dict"]
    own = {k: v for k, v in student.state_dict().items() if not k.startswith("teacher.")}
    missing = [k for k in own if k not in saved]
    resized = [k for k in own if k in saved and tuple(saved[k].shape) != tuple(own[k].shape)]
    if missing or resized:
        key = (resized or missing)[0]
        detail = (
            f"{key} is {tuple(saved[key].shape)} in the file, {tuple(own[key].shape)} here"
            if resized
            else f"{key} is not in the file"
        )
        raise UserError(
            f"the checkpoint {path} holds another student than this run's ({detail})",
            "resume with the settings of the run that wrote it (its .hydra/config.yaml: "
            "experiment, student, data and classes)",
        )


def load_student(path: str | os.PathLike, *, map_location: str = "cpu") -> DenseClipPlus:
    """Load a :class:`DenseClipPlus` (its frozen teacher rebuilt from the saved config).

    Any failure a user can cause (no such file, a truncated or foreign file, a checkpoint of
    another model) is one :class:`UserError`.
    """
    file = Path(path).expanduser()
    read_checkpoint(file)  # a bad file is named as such, before the teacher is built
    try:
        student = DenseClipPlus.load_from_checkpoint(str(file), map_location=map_location)
    except UserError:
        raise
    except Exception as err:  # missing keys, wrong class: a checkpoint of another model
        raise UserError(
            f"cannot load the checkpoint {file}: {' '.join(str(err).split())[:300]}", _FIX
        ) from None
    return student.eval()
