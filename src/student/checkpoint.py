"""The one checkpoint loader: a trained DenseCLIP+ student from a ``.ckpt`` file, or a
:class:`~src.errors.UserError` that names the file and the fix (eval, predict, scripts)."""

from __future__ import annotations

import os
from pathlib import Path

from src.errors import UserError
from src.student.model import DenseClipPlus


def load_student(path: str | os.PathLike, *, map_location: str = "cpu") -> DenseClipPlus:
    """Load a :class:`DenseClipPlus` (its frozen teacher rebuilt from the saved config).

    Any failure a user can cause (no such file, a truncated or foreign file, a checkpoint of
    another model) is one :class:`UserError`.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"checkpoint not found: {file}", "pass ckpt_path=<path to a .ckpt file>")
    try:
        student = DenseClipPlus.load_from_checkpoint(str(file), map_location=map_location)
    except UserError:
        raise
    except Exception as err:  # pickle, zip, missing keys, wrong class: all a bad file
        raise UserError(
            f"cannot load the checkpoint {file}: {' '.join(str(err).split())[:300]}",
            "pass a DenseCLIP+ checkpoint written by python -m src.train",
        ) from None
    return student.eval()
