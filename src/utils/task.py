"""Task wrapper shared by the entry points (``src.train``, ``src.eval``, ``src.predict``)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from src.errors import UserError
from src.utils.io import atomic_save_json, flatten_metrics

log = logging.getLogger(__name__)


def show_tracebacks() -> bool:
    """True when developers asked for full traces (``HYDRA_FULL_ERROR=1``)."""
    return os.environ.get("HYDRA_FULL_ERROR", "0") == "1"


def run_task(
    task: Callable[..., Mapping[str, Any] | None], *args: Any, output_dir: str | os.PathLike | None
) -> dict[str, Any]:
    """Run ``task(*args)``; write its metrics to ``<output_dir>/metrics.json``.

    A :class:`~src.errors.UserError` is printed as one clear message (no traceback) and the
    process exits with status 2; ``HYDRA_FULL_ERROR=1`` re-raises it with its trace.
    """
    try:
        metrics = task(*args)
    except UserError as err:
        if show_tracebacks():
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    metrics = flatten_metrics(metrics or {})
    if metrics and output_dir is not None:
        path = atomic_save_json(Path(output_dir) / "metrics.json", metrics)
        log.info("metrics written to %s", path)
    return metrics
