"""Atomic writes: whole files or none, usual permissions."""

from __future__ import annotations

import json
import os
import stat

import pytest

from src.utils import io


def test_atomic_json_and_permissions(tmp_path) -> None:
    path = io.atomic_save_json(tmp_path / "sub" / "metrics.json", {"val/miou": 0.5})
    assert json.loads(path.read_text()) == {"val/miou": 0.5}
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]  # no temp file left


def test_failed_write_leaves_old_file_and_no_temp(tmp_path) -> None:
    path = tmp_path / "out.json"
    io.atomic_save_json(path, {"a": 1})
    with pytest.raises(TypeError):
        io.atomic_save_json(path, {"a": object()})  # not serialisable
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
