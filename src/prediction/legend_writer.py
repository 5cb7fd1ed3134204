"""``legend.json`` kept true while prediction writes: it lists exactly the image files beside
it, whatever stops the run (a full disk, Ctrl-C).

Each image's files are written first, then the legend is rewritten to list them; the legend
is rewritten after every image while it is short and after a batch of images growing with it
(a twentieth of the images so far), so the writing stays linear in the number of images.
When writing stops, the files of images not yet in the legend on disk are removed.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from src.errors import UserError
from src.prediction.outputs import write_legend


def record_files(record: dict[str, Any]) -> list[str]:
    """The file names one image's legend record lists."""
    names = [record.get("mask"), record.get("overlay"), record.get("logits")]
    names += list((record.get("confidence_maps") or {}).values())
    return [n for n in names if n]


class LegendWriter:
    """The legend of ``out_dir``: ``head`` (classes, model, settings), the ``records`` of an
    earlier run of the same settings, this run's images as they are written."""

    def __init__(
        self,
        out_dir: Path,
        head: dict[str, Any],
        records: Sequence[dict[str, Any]],
        failed: list[dict[str, str]],
    ) -> None:
        self.out_dir, self.head, self.failed = out_dir, head, failed
        self.records = list(records)  #: in the legend on disk
        self.pending: list[dict[str, Any]] = []  #: written, not yet in the legend on disk
        self.added = 0  #: this run's images in the legend on disk

    def start(self) -> None:
        """Write the legend before the first image (the earlier run's images only)."""
        self._write(complete=False)

    def add(self, record: dict[str, Any]) -> None:
        """One more image, its files written; the legend follows now or with the batch."""
        self.pending.append(record)
        if len(self.pending) >= max(1, len(self.records) // 20):
            self._write(complete=False)

    def finish(self) -> None:
        """The final legend (``"complete": true``)."""
        self._write(complete=True)

    def abandon(self) -> None:
        """Remove the files of images the legend on disk does not list."""
        listed = {name for r in self.records for name in record_files(r)}
        for record in self.pending:
            for name in record_files(record):
                if name not in listed:
                    (self.out_dir / name).unlink(missing_ok=True)
        self.pending = []

    @contextlib.contextmanager
    def abandoning(self) -> Iterator[None]:
        """Whatever stops the block (Ctrl-C, an error), remove the files not in the legend."""
        try:
            yield
        except BaseException:
            self.abandon()
            raise

    def _write(self, *, complete: bool) -> None:
        try:
            write_legend(self.out_dir, self.head, self.records + self.pending, self.failed,
                         complete=complete)  # fmt: skip
        except BaseException:
            self.abandon()
            raise
        self.added += len(self.pending)
        self.records += self.pending
        self.pending = []


def write_error(err: OSError, out_dir: Path, what: str, written: int) -> UserError:
    """One line for a write that failed in ``out_dir`` (a full disk, a read-only folder)."""
    reason = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is used up",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.ENAMETOOLONG: "a file name is too long",
    }.get(err.errno or 0, err.strerror or str(err))
    return UserError(
        f"cannot write {what} into output_dir {out_dir}: {reason}; legend.json lists the "
        f"{written} image(s) written before, nothing else was left",
        "free space (or pass another output_dir) and rerun: a rerun into the same folder "
        "adds the other images",
    )
