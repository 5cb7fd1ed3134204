"""Start ``python -m src.app`` on a free port of 127.0.0.1 for a test, and stop it after."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port of 127.0.0.1 nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving_app(tmp: Path, *overrides: str) -> Iterator[tuple[str, Path, int]]:
    """``python -m src.app`` with ``overrides`` until its page answers: (its address, its run
    folder, its process id); terminated on exit. Fails the test if it exits or never serves."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}  # fmt: skip
    log_path = tmp / "app.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "src.app", f"port={port}", f"paths.log_dir={tmp}/logs",
         f"paths.cache_dir={tmp}/cache", *overrides],  # fmt: skip
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"  # never anything but this machine
    try:
        for _ in range(240):  # at most 2 minutes for python, torch and gradio to start
            if proc.poll() is not None:
                pytest.fail(f"the app exited: {log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=30):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"the app did not serve: {log_path.read_text()[-3000:]}")
        (run,) = (tmp / "logs" / "app" / "runs").iterdir()
        yield url, run, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def app_state(pid: int, log_path: Path, tail: int = 6000) -> str:
    """The end of the app's console after asking it for every thread's stack (``SIGUSR1``,
    which the app registers with ``faulthandler``): what a failing test shows of the app."""
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGUSR1)
        time.sleep(1.0)
    return log_path.read_text(errors="replace")[-tail:]
