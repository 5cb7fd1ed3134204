"""Atomic file writes: a reader never sees a half-written output or cache."""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def atomic_save_image(path: str | os.PathLike, image: Any, **save_kwargs: Any) -> Path:
    """Save a PIL image atomically; the format follows the file's suffix."""
    path = Path(path)
    buf = io.BytesIO()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}.get(path.suffix.lower(), None)
    image.save(buf, format=fmt, **save_kwargs)
    return atomic_write_bytes(path, buf.getvalue())


def atomic_save_npy(path: str | os.PathLike, array: Any) -> Path:
    """``numpy.save`` ``array`` to ``path`` (``.npy``) atomically."""
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return atomic_write_bytes(path, buf.getvalue())


def flatten_metrics(metrics: Mapping[str, Any]) -> dict[str, float | int | str]:
    """Turn tensors and numpy scalars into plain Python numbers for ``metrics.json``."""
    out: dict[str, float | int | str] = {}
    for key, value in metrics.items():
        if hasattr(value, "item"):
            value = value.item()
        out[str(key)] = value
    return out


def describe_file(file: str | os.PathLike) -> str:
    """What a file that ``torch.load`` cannot read looks like, for an error message: a
    truncated archive, an exported ONNX student, JSON, text, empty, or not a PyTorch file."""
    if str(file).lower().endswith(".onnx"):
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
