"""Run folders never collide: two runs started in the same second get two folders; the paths
resolve without Hydra's runtime (a ``-m`` sweep names its folder before that exists)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

from src.utils import run_dirs
from src.utils.run_dirs import new_run_dir, register_resolvers

ROOT = Path(__file__).resolve().parents[1]


def test_two_runs_in_the_same_second_get_two_folders(tmp_path: Path, monkeypatch) -> None:
    now = datetime(2026, 12, 1, 9, 30, 5)
    first, second = (new_run_dir(tmp_path / "runs", now=now) for _ in range(2))
    assert first != second
    for path in (first, second):
        assert Path(path).is_dir() and Path(path).name.startswith("2026-12-01_09-30-05_")
    # the same id drawn twice: the folder is taken (exclusive mkdir), another id is drawn
    ids = iter(["beef", "beef", "cafe"])
    monkeypatch.setattr(run_dirs.secrets, "token_hex", lambda n: next(ids))
    assert Path(new_run_dir(tmp_path / "x", now=now)).name == "2026-12-01_09-30-05_beef"
    assert Path(new_run_dir(tmp_path / "x", now=now)).name == "2026-12-01_09-30-05_cafe"


def test_paths_and_sweep_folder_resolve_without_hydra_runtime(tmp_path: Path, monkeypatch) -> None:
    """What failed: ``hydra.sweep.dir`` built from ``hydra:runtime.cwd`` ("HydraConfig was not
    set") when a sweep starts. Resolved here with no Hydra run at all."""
    register_resolvers()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DENSECLIP_ROOT", raising=False)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("eval", overrides=["data=shapes"], return_hydra_config=True)
    assert cfg.paths.root_dir == str(tmp_path) and cfg.paths.log_dir == f"{tmp_path}/logs"
    sweep = Path(OmegaConf.select(cfg, "hydra.sweep.dir"))
    assert sweep.parent == tmp_path / "logs" / "eval" / "multiruns" and sweep.is_dir()
    assert OmegaConf.select(cfg, "hydra.sweep.dir") == str(sweep)  # cached: one folder per run


def test_two_commands_started_together_write_two_run_folders(tmp_path: Path) -> None:
    """The same command twice at the same moment, in the same folder: each run keeps its
    own ``metrics.json``, ``legend.json`` and ``.hydra``."""
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "dot.png")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "src.predict", "input=dot.png", "classes=[circle,square]"]
    procs = [
        subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    runs = sorted((tmp_path / "logs" / "predict" / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:
        assert json.loads((run / "metrics.json").read_text())["predict/images"] == 1
        assert len(json.loads((run / "legend.json").read_text())["images"]) == 1
        assert (run / ".hydra" / "overrides.yaml").read_text().count("input=dot.png") == 1


def test_a_sweep_jobs_folder_is_one_folder_of_at_most_200_bytes() -> None:
    """A path in an override (``teacher.proxy_weights=/w/dino.pth``) made nested job folders
    (``sweep/*/metrics.json`` found none of them); a long override list can pass the file
    system's 255 bytes per name."""
    name = "0_data=voc21,teacher.proxy_weights=/w/dino.pth"
    assert run_dirs.job_dir(name) == "0_data=voc21,teacher.proxy_weights=_w_dino.pth"
    long = "1_" + ",".join(f"teacher.masks_options={{dir:/data/masks/{i:03d}}}" for i in range(9))
    short = run_dirs.job_dir(long)
    assert "/" not in short and len(short.encode()) <= run_dirs.MAX_JOB_DIR
    assert short.startswith("1_teacher.masks_options={dir:_data_masks_000}")
    assert short != run_dirs.job_dir(long.replace("008", "009"))  # the hash tells them apart
    assert run_dirs.job_dir("2_data=shapes") == "2_data=shapes"  # short ones as they were
    register_resolvers()
    cfg = OmegaConf.create({"n": "3_a=/x/y", "d": "${dc.job_dir:${n}}"})
    assert cfg.d == "3_a=_x_y"
