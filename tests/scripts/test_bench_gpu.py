"""scripts/bench_gpu.py: one line and exit 0 without CUDA; its arithmetic; a CPU smoke run of
every measurement (slow) so that the code a GPU will run has run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from src.teacher.heads import head_spec

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench_gpu():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "scripts" / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: make bench-gpu runs")
def test_without_cuda_it_says_so_in_one_line_and_writes_nothing(bench_gpu, tmp_path, capsys):
    out = tmp_path / "benchmarks.json"
    assert bench_gpu.main(["--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0]
    assert not out.exists()


def test_peak_lookup_mfu_and_heads(bench_gpu) -> None:
    assert bench_gpu.peak_tflops("NVIDIA H200") == 989.0
    assert bench_gpu.peak_tflops("NVIDIA H100 PCIe") == 756.0  # the longest matching name
    assert bench_gpu.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert bench_gpu.peak_tflops("Some Future GPU") is None
    assert bench_gpu.peak_tflops("Some Future GPU", 100.0) == 100.0
    # 500 TFLOP in 1 s on a 1000 TFLOP/s device: 50 %
    assert bench_gpu.mfu(500e12, 1.0, 1000.0) == pytest.approx(0.5)
    assert bench_gpu.mfu(1e12, 1.0, None) is None
    assert bench_gpu.teacher_heads_for("RN50") == ["maskclip"]
    assert "maskclip" in bench_gpu.teacher_heads_for("ViT-B-16")


@pytest.mark.slow
def test_cpu_smoke_run_writes_a_gpu_section_and_keeps_other_keys(bench_gpu, tmp_path) -> None:
    out = tmp_path / "benchmarks.json"
    out.write_text(json.dumps({"machine": {"cores": 2}}))
    assert bench_gpu.main(["--device", "cpu", "--quick", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["machine"] == {"cores": 2} and data["gpu"]["device"] == "cpu"
    teachers = data["gpu"]["teacher"]  # one row per head of the ViT teacher
    assert [t["head"] for t in teachers] == bench_gpu.teacher_heads_for("dc-test-vit")
    for teacher in teachers:
        if head_spec(teacher["head"]).needs_weights and "error" in teacher:  # no DINO offline
            assert "teacher.proxy_weights" in teacher["error"]
            continue
        assert teacher["teacher_images_per_s"] > 0 and teacher["encode_image_images_per_s"] > 0
    (student,) = data["gpu"]["student"]
    assert student["step_ms"] > 0 and student["tflops_per_step"] > 0 and student["mfu"] is None
    assert "## GPU: cpu" in (tmp_path / "BENCHMARKS.md").read_text()
