"""scripts/bench_gpu.py: one line and exit 0 without CUDA; its arithmetic; a CPU smoke run of
every measurement (slow) so that the code a GPU will run has run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

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


def test_teacher_dtypes_and_the_sync_check_off_cuda(bench_gpu) -> None:
    assert bench_gpu.DTYPES["bf16"] == ("bf16", None)  # teacher.precision: the weights
    assert bench_gpu.DTYPES["amp_bf16"] == ("fp32", torch.bfloat16)  # autocast, fp32 weights
    ran = []
    assert bench_gpu.sync_check(lambda: ran.append(1), torch.device("cpu")) == "n/a"
    assert ran == []  # nothing to check without CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_sync_check_names_a_synchronising_call(bench_gpu) -> None:
    device = torch.device("cuda")
    x = torch.ones(4, device=device)
    assert bench_gpu.sync_check(lambda: x * 2, device) == "none"
    assert bench_gpu.sync_check(lambda: x.sum().item(), device) != "none"


@pytest.mark.slow
def test_cpu_smoke_run_writes_a_gpu_section_and_keeps_other_keys(bench_gpu, tmp_path) -> None:
    out = tmp_path / "benchmarks.json"
    out.write_text(json.dumps({"machine": {"cores": 2}}))
    assert bench_gpu.main(["--device", "cpu", "--quick", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["machine"] == {"cores": 2} and data["gpu"]["device"] == "cpu"
    teachers = data["gpu"]["teacher"]  # one row per head of the ViT teacher
    heads = bench_gpu.teacher_heads_for(
        "tiny_shapes_vit_plain"
    )  # each in bf16 weights and autocast
    assert [t["head"] for t in teachers] == [h for h in heads for _ in range(2)]
    assert [t["dtype"] for t in teachers[:2]] == ["bf16", "amp_bf16"]
    for teacher in teachers:  # ProxyCLIP's proxy: random weights of its architecture
        assert teacher["teacher_images_per_s"] > 0 and teacher["encode_image_images_per_s"] > 0
        assert teacher["compile"] is False and teacher["sync"] == "n/a"
    (student,) = data["gpu"]["student"]
    assert student["step_ms"] > 0 and student["tflops_per_step"] > 0 and student["mfu"] is None
    assert "## GPU: cpu" in (tmp_path / "BENCHMARKS.md").read_text()
