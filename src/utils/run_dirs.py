"""Run folders that never collide, and the working folder, as OmegaConf resolvers.

``conf/hydra/default.yaml`` names every run folder ``${dc.run_dir:<parent>}`` and
``conf/paths/default.yaml`` roots the paths at ``${dc.cwd:}``. Both resolve without Hydra's
runtime (``hydra:runtime.cwd`` is not set yet when a ``-m`` sweep names its folder).

A run folder is ``<parent>/<YYYY-MM-DD>_<HH-MM-SS>_<4 hex digits>``, claimed with an exclusive
``mkdir``: two runs started in the same second (or on two machines sharing the disk) always
get two folders. The resolver is cached per config (Hydra copies the cache to every job of a
sweep), so one run resolves its folder once.
"""

from __future__ import annotations

import os
import secrets
import sys
from datetime import datetime
from pathlib import Path
from typing import NoReturn

from omegaconf import OmegaConf

RESOLVERS = ("dc.cwd", "dc.run_dir", "dc.job_dir")
#: the longest name of a sweep job's folder (file systems allow 255 bytes)
MAX_JOB_DIR = 200


def new_run_dir(parent: str | os.PathLike, *, now: datetime | None = None) -> str:
    """Create and return a fresh folder ``<parent>/<date>_<time>_<id>`` no other run holds.

    A folder that cannot be created (a read-only disk, a file in the way) ends the command
    with one ``error:`` line and exit status 2: this runs inside Hydra's config resolution,
    which would otherwise print an ``InterpolationResolutionError`` trace.
    """
    folder = Path(parent).expanduser()
    stamp = (now or datetime.now()).strftime("%Y-%m-%d_%H-%M-%S")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            path = folder / f"{stamp}_{secrets.token_hex(2)}"
            try:
                path.mkdir()
            except FileExistsError:
                continue  # another run took this name in this second: draw another id
            return str(path)
    except OSError as err:
        _cannot_create(folder, err)


def job_dir(name: str) -> str:
    """A sweep job's folder name from ``<job num>_<overrides>``: one folder, never nested
    (a path in an override, e.g. ``teacher.proxy_weights=/w/dino.pth``, has its ``/`` written
    as ``_``), at most :data:`MAX_JOB_DIR` bytes (a longer one ends in a hash of the whole)."""
    import hashlib

    safe = str(name).replace("/", "_").replace(os.sep, "_")
    if len(safe.encode()) <= MAX_JOB_DIR:
        return safe
    digest = hashlib.sha256(safe.encode()).hexdigest()[:8]
    head = safe.encode()[: MAX_JOB_DIR - 10].decode(errors="ignore")
    return f"{head}~{digest}"


def _cannot_create(folder: Path, err: OSError) -> NoReturn:
    from src.errors import UserError

    problem = UserError(
        f"cannot create the run folder under {folder}: {err.strerror or err}",
        "run from a folder you can write to, or set DENSECLIP_ROOT=<a writable folder>",
    )
    if os.environ.get("HYDRA_FULL_ERROR", "0") == "1":
        raise problem from err
    print(f"error: {problem}", file=sys.stderr)
    raise SystemExit(2)  # not an Exception: passes OmegaConf's and Hydra's wrappers


def register_resolvers() -> None:
    """Register ``dc.cwd``, ``dc.run_dir`` and ``dc.job_dir`` with OmegaConf (idempotent)."""
    if not OmegaConf.has_resolver("dc.cwd"):
        OmegaConf.register_new_resolver("dc.cwd", os.getcwd)
    if not OmegaConf.has_resolver("dc.run_dir"):
        OmegaConf.register_new_resolver("dc.run_dir", new_run_dir, use_cache=True)
    if not OmegaConf.has_resolver("dc.job_dir"):
        OmegaConf.register_new_resolver("dc.job_dir", job_dir)
