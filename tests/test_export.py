"""``python -m src.export``: every student head to ONNX and TorchScript, checked against PyTorch
by the test itself (onnxruntime / torch.jit.load on sizes the export never saw)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from src.errors import UserError
from src.export import export
from src.student.checkpoint import load_student
from src.student.export import AdaptiveAvgPool2dExportable, read_metadata, reference_scores
from src.utils.records import teacher_record
from tests.student.fakes import save_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ort = pytest.importorskip("onnxruntime", reason="pip install -e '.[export]'")
TOLERANCE = 1e-4


def config(tmp_path: Path, *overrides: str) -> DictConfig:
    """The export config as ``python -m src.export`` composes it (no subprocess)."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(
            "export",
            overrides=[
                f"paths.root_dir={tmp_path}",
                f"paths.output_dir={tmp_path}/run",
                *overrides,
            ],
        )


def run_file(path: Path, fmt: str, x: torch.Tensor) -> np.ndarray:
    if fmt == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == ["image"]
        return session.run(None, {"image": x.numpy()})[0]
    return torch.jit.load(str(path)).eval()(x).detach().numpy()


@pytest.mark.parametrize("head", ["deeplabv2", "deeplabv3plus", "pspnet"])
def test_every_head_exports_with_dynamic_sizes_and_matches_pytorch(
    tmp_path: Path, head: str
) -> None:
    ckpt = save_tiny_checkpoint(tmp_path / f"{head}.ckpt", head=head)
    student = load_student(ckpt)
    for fmt, suffix in [("onnx", ".onnx"), ("torchscript", ".pt")]:
        metrics = export(config(tmp_path, f"ckpt_path={ckpt}", f"format={fmt}",
                                "parity_sizes=[[64,64],[45,77]]"))  # fmt: skip
        path = tmp_path / "run" / f"{head}{suffix}"
        assert metrics["export/path"] == str(path) and path.is_file()
        assert metrics["export/max_abs_diff"] <= TOLERANCE and metrics["export/parity"] == "ok"
        assert metrics["export/file_mb"] == pytest.approx(path.stat().st_size / 2**20, abs=1e-3)
        meta = read_metadata(path, fmt=fmt)
        assert json.loads(meta["class_names"]) == ["background", "circle", "square", "triangle"]
        assert json.loads(meta["normalization_mean"]) == pytest.approx(list(student.mean))
        assert meta["student_head"] == head
        assert json.loads(meta["teacher_config"]) == teacher_record(student.teacher)
        assert json.loads(meta["teacher_config"])["head"] == "maskclip"
        # sizes and a batch the export and its own check never saw; odd sizes test the
        # upsampling and PSPNet's pooling bins
        for shape in [(2, 3, 53, 91), (1, 3, 130, 67)]:
            x = torch.rand(*shape, generator=torch.Generator().manual_seed(shape[2]))
            out = run_file(path, fmt, x)
            ref = reference_scores(student, x).numpy()
            assert out.shape == (shape[0], 4, shape[2], shape[3])
            assert np.abs(out - ref).max() <= TOLERANCE
            assert ref.std() > 1e-3  # the scores vary: agreeing on constants proves nothing


def test_exportable_adaptive_pool_equals_pytorch_on_uneven_bins() -> None:
    x = torch.randn(2, 3, 13, 22)
    for size in [1, 2, 3, 6, (4, 5)]:
        expected = torch.nn.AdaptiveAvgPool2d(size)(x)
        torch.testing.assert_close(AdaptiveAvgPool2dExportable(size)(x), expected)


def test_export_command_prints_parity_and_size_and_bakes_new_classes(tmp_path: Path) -> None:
    ckpt = save_tiny_checkpoint(tmp_path / "student.ckpt", head="pspnet")
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "src.export", f"ckpt_path={ckpt}", "format=onnx",
         "classes=[cat,dog]", f"paths.log_dir={tmp_path}/logs"],  # fmt: skip
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "max abs diff" in proc.stdout and " MB" in proc.stdout, proc.stdout
    (run,) = (tmp_path / "logs" / "export" / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["export/max_abs_diff"] <= TOLERANCE
    meta = read_metadata(run / "student.onnx", fmt="onnx")
    assert json.loads(meta["class_names"]) == ["background", "cat", "dog"]
    out = run_file(run / "student.onnx", "onnx", torch.rand(1, 3, 40, 60))
    assert out.shape == (1, 3, 40, 60)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], "no checkpoint given"),
        (["ckpt_path=missing.ckpt"], "checkpoint not found"),
        (["ckpt_path=x.ckpt", "format=tflite"], "format='tflite' is not known"),
        (["ckpt_path=x.ckpt", "parity_sizes=[[3,3]]"], "parity_sizes="),
    ],
)
def test_bad_export_input_is_a_user_error(tmp_path: Path, overrides, expected) -> None:
    with pytest.raises(UserError) as info:
        export(config(tmp_path, *overrides))
    assert expected in str(info.value) and info.value.fix


@pytest.mark.slow
def test_the_demo_checkpoint_exports_and_matches_pytorch(tmp_path: Path) -> None:
    """``make demo``'s recipe (shallow ResNet-18 DeepLabv2 with an EMA, tiny shapes CLIP),
    cut to a few steps, through the commands a user types."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    logs = f"paths.log_dir={tmp_path}/logs"
    train = subprocess.run(
        [sys.executable, "-m", "src.train", "experiment=shapes_demo", "trainer.max_steps=3",
         "data.dataset_options.val_length=4", logs],  # fmt: skip
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    (ckpt,) = (tmp_path / "logs" / "train" / "runs").glob("*/checkpoints/last.ckpt")
    for fmt in ("onnx", "torchscript"):
        proc = subprocess.run(
            [sys.executable, "-m", "src.export", f"ckpt_path={ckpt}", f"format={fmt}", logs],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "max abs diff" in proc.stdout
    student = load_student(ckpt)
    assert student.ema is not None  # the exported file holds the EMA weights predict uses
    x = torch.rand(1, 3, 128, 96)
    for path in (tmp_path / "logs" / "export" / "runs").glob("*/last.*"):
        fmt = "onnx" if path.suffix == ".onnx" else "torchscript"
        ref = reference_scores(student, x).numpy()
        assert np.abs(run_file(path, fmt, x) - ref).max() <= TOLERANCE


def test_a_difference_from_rounding_is_told_apart_from_a_wrong_file(tmp_path: Path) -> None:
    from src.student.export import export_student, parity_images, parity_verdict, rounding_floor

    assert parity_verdict(5e-5, 1e-4) == "ok"
    assert parity_verdict(3e-3, 1e-4) == "fail"  # no float64 reference: a failure
    # PyTorch's own fp32 is 2e-3 from exact and the file 2.5e-3: the network's rounding
    assert parity_verdict(3e-3, 1e-4, {"pytorch_vs_fp64": 2e-3, "exported_vs_fp64": 2.5e-3}) == "rounding"  # fmt: skip
    assert parity_verdict(3e-3, 1e-4, {"pytorch_vs_fp64": 1e-6, "exported_vs_fp64": 3e-3}) == "fail"  # fmt: skip
    student = load_student(save_tiny_checkpoint(tmp_path / "s.ckpt", head="pspnet"))
    path = export_student(student, tmp_path / "s.onnx", fmt="onnx")
    floor = rounding_floor(student, path, fmt="onnx", images=parity_images([(40, 56)]))
    assert 0 < floor["pytorch_vs_fp64"] < 1e-4 and 0 < floor["exported_vs_fp64"] < 1e-4


def test_a_write_that_fails_after_the_checks_is_one_line(tmp_path: Path, monkeypatch) -> None:
    """A read-only output_path was a PermissionError traceback (the write itself failing here:
    a root user passes the up-front access check)."""
    from src.student import export as student_export

    ckpt = save_tiny_checkpoint(tmp_path / "s.ckpt")

    def refuse(path, data):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(student_export, "atomic_write_bytes", refuse)
    with pytest.raises(UserError, match=r"cannot write output_path=.*m\.onnx: Permission denied"):
        export(config(tmp_path, f"ckpt_path={ckpt}", f"output_path={tmp_path}/m.onnx"))
    assert not (tmp_path / "m.onnx").exists()
