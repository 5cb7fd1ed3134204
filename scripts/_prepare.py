"""Shared pieces of the dataset preparation scripts (``scripts/prepare_*.py``).

Every script is idempotent and resumable: an output that exists is skipped, every output is
written to a temporary file and renamed, so an interrupted run leaves no half-written file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from src.errors import UserError  # noqa: E402
from src.utils.io import atomic_save_image, atomic_write_text  # noqa: E402


def run(main: Callable[[], int | None]) -> None:
    """Run ``main``; a :class:`UserError` prints one ``error:`` line and exits with 2."""
    try:
        sys.exit(main() or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished outputs are kept; run again to resume", file=sys.stderr)
        sys.exit(130)


def require(path: Path, what: str, fix: str, *, folder: bool = True) -> Path:
    """Return ``path`` or raise a :class:`UserError` naming it."""
    ok = path.is_dir() if folder else path.is_file()
    if not ok:
        kind = "folder" if folder else "file"
        raise UserError(f"{what} not found: looked for the {kind} {path}", fix)
    return path


def read_ids(path: Path, fix: str) -> list[str]:
    """The ids of a split list (first word of every non-empty line)."""
    require(path, "split list", fix, folder=False)
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def write_ids(path: Path, ids: Sequence[str]) -> bool:
    """Write a split list atomically unless it already holds ``ids``; True when written."""
    text = "".join(f"{i}\n" for i in ids)
    if path.is_file() and path.read_text() == text:
        return False
    atomic_write_text(path, text)
    return True


def save_label(path: Path, label: np.ndarray) -> None:
    """Save a uint8 label map as a greyscale PNG, atomically."""
    atomic_save_image(path, Image.fromarray(np.ascontiguousarray(label, dtype=np.uint8), mode="L"))


def convert_all(
    convert: Callable[[Any], None],
    jobs: Iterable[Any],
    *,
    workers: int,
    desc: str,
    total: int | None = None,
) -> None:
    """Run ``convert(job)`` for every job with a progress bar (``workers`` processes)."""
    jobs = list(jobs)
    if workers <= 1:
        for job in tqdm(jobs, desc=desc, total=total or len(jobs), unit="file"):
            convert(job)
        return
    with Pool(workers) as pool:
        for _ in tqdm(
            pool.imap_unordered(convert, jobs, chunksize=16),
            desc=desc,
            total=len(jobs),
            unit="file",
        ):
            pass


def root_parser(doc: str | None, root_help: str, workers_help: str) -> argparse.ArgumentParser:
    """An argument parser with ``--root`` (required) and ``--workers`` (default 4)."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, required=True, help=root_help)
    parser.add_argument("--workers", type=int, default=4, help=workers_help)
    return parser


def remap_label(path: Path, out: Path, lut: np.ndarray, *, what: str, fix: str) -> None:
    """Map the single-channel label PNG ``path`` through ``lut`` (``(256,)`` uint8) into
    ``out``, atomically; an existing ``out`` is kept (resume)."""
    if out.exists():
        return
    try:
        with Image.open(path) as im:
            values = np.asarray(im)
    except OSError as err:
        raise UserError(f"cannot read the {what} {path}: {err}", fix) from None
    if values.ndim != 2:
        raise UserError(f"{path} is not a single-channel {what} (shape {values.shape})", fix)
    save_label(out, lut[values.astype(np.uint8)])
