"""scripts/bench.py at tiny size: the measured ratio, the text cache timing, the JSON merge."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench", ROOT / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ratio_and_text_times_at_tiny_size(bench, tmp_path: Path) -> None:
    runs = bench.teacher_over_encode_image(
        "dc-test-rn", batch=1, classes=[3, 5], repeats=2, warmup=1
    )
    assert [(r["classes"], r["resolution"], r["repeats"]) for r in runs] == [(3, 64, 2), (5, 64, 2)]
    for r in runs:
        assert r["ratio"] > 0 and r["dense_scores_ratio"] > 0 and r["encode_image_ms"] > 0
    assert bench.paired_ratio([2.0, 9.0, 3.0], [1.0, 3.0, 1.0]) == 3.0  # median of 2, 3, 3
    t = bench.text_embedding_times(
        "dc-test-rn",
        class_names=["cat", "dog", "red car"],
        num_templates=4,
        measure_templates=2,
        cache_dir=tmp_path,
        load_repeats=2,
    )
    assert t["prompts"] == 12 and t["build_extrapolated"] and t["cache_entry"] == [3, 32]
    assert t["load_from_cache_s"] > 0  # a time, not a bound: speed goals live in make bench
    assert list((tmp_path / "text_embeddings").glob("*.pt"))  # it really went through the cache


def test_results_merge_keeps_other_keys_and_markdown_lists_them(bench, tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.json"
    other = {"teacher_overhead_in_step": {"ratio": 0.3}}
    path.write_text(json.dumps({**other, "teacher_over_encode_image": {"runs": []}}))
    run = {"model": "ViT-B-16", "device": "cpu", "classes": 171, "ratio": 1.1,
           "dense_scores_ratio": 0.9, "teacher_forward_ms": 11.0, "dense_scores_ms": 9.0,
           "encode_image_ms": 10.0, "batch": 2, "resolution": 224, "threads": 1}  # fmt: skip
    data = bench.merge_results(path, {"teacher_over_encode_image": {"runs": [run]}})
    assert data["teacher_overhead_in_step"] == other["teacher_overhead_in_step"]
    bench.write_outputs(data, path, tmp_path / "BENCHMARKS.md")
    md = (tmp_path / "BENCHMARKS.md").read_text()
    row = "| ViT-B-16 | cpu | 171 | 1.100 | 0.900 | 11.0 | 9.0 | 10.0 | 2 x 224px | 1 | **no** |"
    assert row in md
    assert "## teacher_overhead_in_step" in md
    assert json.loads(path.read_text())["teacher_overhead_in_step"] == {"ratio": 0.3}


def test_teacher_overhead_in_step_quick(tmp_path: Path, monkeypatch) -> None:
    """Both steps run for real (tiny models); the times are replaced by known ones, so the
    reported numbers are checked against a hand computation: medians, then their ratio."""
    spec = importlib.util.spec_from_file_location(
        "bench_student", ROOT / "scripts" / "bench_student.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    calls = {}

    def known_times(fns, *, repeats, warmup, device):
        for name, fn in fns.items():
            for _ in range(warmup + repeats):
                fn()  # a real training step (with the teacher, or on ground truth)
            calls[name] = (repeats, warmup)
        return {"with_teacher": [0.030, 0.010, 0.020], "ground_truth": [0.010, 0.010, 0.040]}

    monkeypatch.setattr(module, "interleaved_times", known_times)
    out = tmp_path / "benchmarks.json"
    data = module.main(["--quick", "--out", str(out)])
    assert calls == {"with_teacher": (2, 1), "ground_truth": (2, 1)}
    (run,) = [r for r in data["teacher_overhead_in_step"]["runs"] if r["device"] == "cpu"]
    assert (run["teacher"], run["student"], run["batch"], run["crop"]) == (
        "dc-test-rn", "deeplabv2-resnet18-d8", 1, 64)  # fmt: skip
    # medians 20 ms and 10 ms (the means would give 20 and 20): ratio 2, over the 1.10 goal
    assert run["step_with_teacher_ms"] == pytest.approx(20.0)
    assert run["step_ground_truth_ms"] == pytest.approx(10.0)
    assert run["ratio"] == pytest.approx(2.0) and run["goal_met"] is False
    assert "teacher_overhead_in_step" in (tmp_path / "BENCHMARKS.md").read_text()
    assert json.loads(out.read_text())["machine"]
