"""Finding and reading the images a user points at, as RGB uint8, with clear errors.

- :func:`find_images`: an image file, a folder (its images, not recursive) or a glob pattern.
- :func:`load_rgb`: any image PIL reads, turned upright (EXIF orientation) and converted to
  8-bit RGB: grayscale and palette images are expanded, transparency is composited on white,
  16-bit images are scaled (65535 -> 255), 32-bit integer and float images are scaled to their
  range. Unreadable files raise a :class:`~src.errors.UserError` naming the file.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from src.errors import UserError

log = logging.getLogger(__name__)

#: File suffixes taken from folders and glob matches (case does not matter).
IMAGE_SUFFIXES: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
    ".pbm",
)

#: Names that :mod:`src.predict` writes; skipped in folders holding predictions.
OUTPUT_NAME = re.compile(r"(_mask\.png|_overlay\.jpg|_conf_.+\.png)$")
_GLOB_CHARS = re.compile(r"[*?\[]")


def is_image_file(path: Path) -> bool:
    """A visible file with an image suffix."""
    return (
        path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    )


def find_images(spec: str, *, skip_outputs_in: str | os.PathLike | None = None) -> list[Path]:
    """The image files named by ``spec``: one file, a folder's images (sorted), or a glob.

    Files whose names look like prediction outputs are left out where they are outputs: in
    ``skip_outputs_in`` and in any folder holding a ``legend.json`` (an earlier run's output
    folder), so predicting a folder into itself, or a folder of earlier outputs, does not
    predict the masks and overlays. An explicitly named file is always taken. Raises
    :class:`UserError` for a missing path, a glob that matches no image, an empty folder.
    """
    text = str(spec).strip()
    if not text:
        raise UserError(
            "no input given", "pass input=<image file, folder, or glob like 'photos/*.jpg'>"
        )
    path = Path(os.path.expanduser(text))
    if path.is_file():
        return [path]
    skip_dir = None if skip_outputs_in is None else Path(skip_outputs_in).resolve()
    if path.is_dir():
        files = _keep(sorted(path.iterdir()), skip_dir)
        if not files:
            raise UserError(
                f"the folder {path} has no images",
                f"put images ({', '.join(IMAGE_SUFFIXES)}) in it, or pass another input=",
            )
        return files
    if _GLOB_CHARS.search(text):
        matches = sorted({Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True)})
        files = _keep(matches, skip_dir)
        if not files:
            what = "no files" if not matches else f"{len(matches)} paths but no image files"
            raise UserError(
                f"the pattern '{text}' matches {what}",
                "check the pattern (quote it so the shell does not expand it)",
            )
        return files
    if path.is_symlink():  # it exists as a link, but leads nowhere
        try:
            path.resolve(strict=True)
        except RuntimeError:  # Python < 3.13
            why = "a loop of symbolic links"
        except OSError as err:
            why = "a loop of symbolic links" if err.errno == 40 else "a broken symbolic link"
        else:
            why = "a symbolic link to something that is not a file or folder"
        raise UserError(
            f"input {path} is {why} (to {os.readlink(path)})",
            "point the link at an image or folder, or pass input=<the file or folder itself>",
        )
    raise UserError(
        f"input not found: {path}",
        "pass input=<an existing image file, folder, or glob like 'photos/*.jpg'>",
    )


def _keep(paths: Iterable[Path], skip_dir: Path | None) -> list[Path]:
    out, skipped = [], 0
    for p in paths:
        if not is_image_file(p):
            continue
        if OUTPUT_NAME.search(p.name) and (
            (skip_dir is not None and p.parent.resolve() == skip_dir)
            or (p.parent / "legend.json").is_file()
        ):
            skipped += 1
            continue
        out.append(p)
    if skipped:
        log.info("left out %d earlier prediction outputs (masks, overlays)", skipped)
    return out


def check_readable(path: str | os.PathLike) -> None:
    """Cheap check (header only) that PIL recognises ``path``; ``UserError`` naming it if not."""
    path = Path(path)
    try:
        with Image.open(path):
            pass
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        raise UserError(
            f"cannot read the image {path}: {err}",
            "check that the file is an image, or remove it from the input",
        ) from None


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Read ``path`` as an upright 8-bit RGB image; a ``UserError`` names unreadable files."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            upright = ImageOps.exif_transpose(im)
            return to_rgb(upright)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        raise UserError(
            f"cannot read the image {path}: {err}",
            "check that the file is a complete image, or remove it from the input",
        ) from None
    except Image.DecompressionBombError as err:
        raise UserError(
            f"the image {path} is too large to read safely: {err}",
            "downscale it first",
        ) from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (see the module docstring for the rules)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(im), mode), mode="L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def _to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """Scale a single-channel 16-bit, 32-bit integer or float array to uint8."""
    a = arr.astype(np.float64)
    if mode.startswith("I;16"):
        a = a / 257.0  # 16-bit: 0..65535 -> 0..255
    else:
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if mode == "F" and lo >= 0.0 and hi <= 1.0:
            a = a * 255.0
        elif lo >= 0.0 and hi <= 255.0:
            pass
        elif lo >= 0.0 and hi <= 65535.0:
            a = a / 257.0
        elif hi > lo:
            a = (a - lo) * (255.0 / (hi - lo))
        else:
            a = np.zeros_like(a)
    return np.clip(np.rint(np.nan_to_num(a)), 0, 255).astype(np.uint8)
