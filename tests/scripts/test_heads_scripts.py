"""scripts/bench_heads.py and scripts/heads_grid.py at tiny size."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from tests.script_module import load_script

ROOT = Path(__file__).resolve().parents[2]


def _script(name: str):
    return load_script(name)


def test_bench_heads_measures_one_point_in_process() -> None:
    bench = _script("bench_heads")
    args = argparse.Namespace(threads=1, warmup=0, repeats=1, device="cpu")
    result = bench.run_one("tiny_shapes_vit_plain@128", "naclip", "pamr", None, args)
    assert (result["head"], result["refine"], result["batch"]) == ("naclip", "pamr", 16)
    assert result["images_per_s"] > 0 and result["peak_rss_mb"] > 0
    assert result["forward_extra_mb"] >= 0 and result["clock"] == "thread CPU time"


def test_heads_grid_draws_one_column_per_head(tmp_path: Path) -> None:
    grid = _script("heads_grid")
    out = grid.main(["--heads", "maskclip", "naclip", "--scenes", "0", "--out",
                     str(tmp_path / "g.png")])  # fmt: skip
    picture = np.asarray(Image.open(out))
    assert picture.ndim == 3 and picture.shape[1] > 2 * picture.shape[0]  # 5 columns, 1 row


def test_bench_heads_states_what_pamr_adds() -> None:
    bench = _script("bench_heads")
    rows = [
        {"model": "m", "head": "naclip", "refine": None, "seconds_per_batch": 2.0},
        {"model": "m", "head": "naclip", "refine": "pamr", "seconds_per_batch": 2.5},
        {"model": "m", "head": "sclip", "refine": "pamr", "seconds_per_batch": 9.0},  # no base
    ]
    (o,) = bench.pamr_overheads(rows)
    assert (o["head"], o["slowdown"], o["pamr_adds"]) == ("naclip", 1.25, 0.25)


def test_bench_heads_times_a_mask_generator_alone() -> None:
    bench = _script("bench_heads")
    args = argparse.Namespace(threads=1, warmup=0, repeats=1, device="cpu")
    result = bench.run_generator("tiny_shapes_vit_plain@128", "slic", args)
    assert (result["generator"], result["batch"], result["size"]) == ("slic", 16, [128, 128])
    assert result["images_per_s"] > 0 and result["peak_rss_mb"] > 0
    assert 1 < result["regions_per_image"] <= 64 * 2  # about segments=64 SLIC regions
    assert result["clock"] == "thread CPU time"
