"""Qualitative grids: ``src.prediction.grid`` (masks, confidences), ``src.pictures.grid`` (figure) and its command line."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from src.errors import UserError
from src.pictures.grid import grid_figure
from src.pictures.overlay import blend
from src.prediction.grid import GridModel, build_grid, grid_settings, legend_classes
from src.prediction.predictor import predict_image, predictor_from_student, predictor_from_teacher
from src.teacher.model import DenseClipTeacher

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "qualitative_grid.py"
CLASSES = ["cat", "dog", "red car"]


def _load_script():
    spec = importlib.util.spec_from_file_location("qualitative_grid", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


grid_cli = _load_script()


def _noise(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def teacher() -> DenseClipTeacher:
    return DenseClipTeacher(clip_model="dc-test-rn", pretrained=None, class_names=CLASSES,
                            templates=["a photo of a {}."])  # fmt: skip


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(_noise(40, 56, 0)).save(folder / "a.png")
    Image.fromarray(_noise(33, 27, 1)).save(folder / "b.jpg", quality=95)
    (folder / "notes.txt").write_text("not an image")
    return folder


def save_student(path: Path):
    """A tiny DenseCLIP+ (dc-test-rn teacher, ResNet-18, background counted) saved to ``path``."""
    import pytorch_lightning as pl

    from tests.student.fakes import tiny_student

    student = tiny_student()
    state = {k: v for k, v in student.state_dict().items() if not k.startswith("teacher.")}
    ckpt = {"state_dict": state, "hyper_parameters": dict(student.hparams)}
    torch.save(ckpt | {"pytorch-lightning_version": pl.__version__}, path)
    return student


@pytest.fixture()
def student_ckpt(tmp_path: Path) -> Path:
    save_student(tmp_path / "student.ckpt")
    return tmp_path / "student.ckpt"


def test_grid_cells_are_the_predictions_of_src_prediction(teacher: DenseClipTeacher) -> None:
    pred = predictor_from_teacher(teacher)
    # a second model with another vocabulary order: its masks map into the shared legend
    other = predictor_from_teacher(teacher)
    other.class_names = list(reversed(CLASSES))
    original = other.scorer
    other.scorer = lambda x: original(x).flip(1)  # scores in the reversed order
    pics = [("a", _noise(40, 56, 0)), ("b", _noise(21, 30, 1))]
    settings = grid_settings(max_size=48)
    models = [GridModel("DenseCLIP", pred), GridModel("other", other)]
    grid = build_grid(pics, models, phrase="dog", settings=settings)

    assert grid.columns == ["image", "DenseCLIP", "other", "DenseCLIP: p(dog)", "other: p(dog)"]
    assert grid.class_names == CLASSES == legend_classes(models)
    for (name, image), row in zip(pics, grid.rows, strict=True):
        decoded = predict_image(pred, image, settings, torch.device("cpu"))
        mask = decoded.mask.numpy()
        assert row.name == name and row.masks["DenseCLIP"].shape == image.shape[:2]
        np.testing.assert_array_equal(row.masks["DenseCLIP"], mask)
        np.testing.assert_array_equal(row.masks["other"], mask)  # same labels, same colours
        conf = decoded.confidence[1].numpy() / 255.0
        np.testing.assert_allclose(row.confidence["DenseCLIP"], conf, atol=1e-6)
        np.testing.assert_allclose(row.confidence["other"], conf, atol=1.5 / 255)
        assert 0.0 <= row.confidence["DenseCLIP"].min() <= row.confidence["DenseCLIP"].max() <= 1

    fig = grid_figure(grid)
    axes = [ax for ax in fig.axes if ax.get_title() or ax.images]
    drawn = [ax for ax in axes if ax.images]
    assert len(drawn) == 2 * 5  # rows x columns
    assert [ax.get_title() for ax in drawn[:5]] == grid.columns
    shown = np.asarray(drawn[1].images[0].get_array())
    np.testing.assert_array_equal(shown, blend(pics[0][1], grid.rows[0].masks["DenseCLIP"],
                                               grid.palette, 0.6))  # fmt: skip
    legend = fig.legends[0]
    names = [t.get_text() for t in legend.get_texts()]
    present = set(np.unique(np.concatenate([r.masks["DenseCLIP"].ravel() for r in grid.rows])))
    assert names == [CLASSES[i] for i in sorted(present)]


def test_a_student_in_memory_predicts_as_its_checkpoint_does(tmp_path: Path) -> None:
    from src.prediction.predictor import student_predictor

    student = save_student(tmp_path / "s.ckpt").eval()
    image, settings, cpu = _noise(30, 41, 3), grid_settings(max_size=40), torch.device("cpu")
    loaded = student_predictor(str(tmp_path / "s.ckpt"), None, cpu)
    in_memory = predictor_from_student(student)
    assert (
        in_memory.class_names
        == loaded.class_names
        == ["background", "circle", "square", "triangle"]
    )
    with torch.inference_mode():
        a = predict_image(in_memory, image, settings, cpu)
        b = predict_image(loaded, image, settings, cpu)
    assert torch.equal(a.mask, b.mask) and torch.equal(a.confidence, b.confidence)


def test_a_phrase_outside_the_vocabulary_is_a_user_error(teacher: DenseClipTeacher) -> None:
    with pytest.raises(UserError, match="'horse' is not one of DenseCLIP's classes"):
        build_grid([("a", _noise(20, 20, 0))], [GridModel("DenseCLIP", predictor_from_teacher(teacher))],
                   phrase="horse", settings=grid_settings())  # fmt: skip


def test_cli_teacher_only_writes_a_grid_without_student_columns(
    tmp_path: Path, images: Path, capsys
) -> None:
    out = tmp_path / "grid.png"
    args = [str(images), "--classes", "cat,dog", "red car", "--phrase", "red car",
            "--teacher", "tiny_rn_test", "--out", str(out), "--max-size", "48",
            "--cache-dir", str(tmp_path / "cache"), "--cell", "1.5", "--dpi", "50"]  # fmt: skip
    assert grid_cli.main(args) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.format == "PNG"
        width, height = im.size
    # 3 columns (image, DenseCLIP, confidence) and 2 rows of 1.5-inch cells at 50 dpi
    assert width == 3 * 75 and 2 * 75 < height < 2 * 75 + 75
    assert not list(tmp_path.glob(".grid.png.*"))  # atomic: no temporary left behind


def test_cli_with_a_student_checkpoint_adds_its_columns(
    tmp_path: Path, images: Path, student_ckpt: Path
) -> None:
    out = tmp_path / "grid.png"
    args = [f"{images}/*.png", "--ckpt", str(student_ckpt), "--classes", "cat", "dog",
            "--phrase", "dog", "--out", str(out), "--max-size", "48", "--cell", "1.5",
            "--dpi", "50", "--title", "student"]  # fmt: skip
    assert grid_cli.main(args) == 0
    with Image.open(out) as im:
        width, height = im.size
    assert width == 5 * 75 and 75 < height < 2 * 75  # image | DenseCLIP | DenseCLIP+ | 2 conf.


def test_script_runs_standalone_and_fails_without_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    run = [sys.executable, str(SCRIPT)]
    kwargs = {"cwd": tmp_path, "env": env, "capture_output": True, "text": True, "timeout": 120}
    proc = subprocess.run([*run, "--help"], **kwargs)
    assert proc.returncode == 0 and "--phrase" in proc.stdout and "--ckpt" in proc.stdout
    proc = subprocess.run([*run, str(tmp_path / "none"), "--classes", "cat"], **kwargs)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr and not (tmp_path / "qualitative_grid.png").exists()


@pytest.mark.parametrize(
    "case",
    [
        "missing input",
        "no classes",
        "duplicate classes",
        "phrase",
        "teacher",
        "ckpt",
        "bad ckpt",
        "alpha",
        "suffix",
        "unreadable",
    ],  # fmt: skip
)
def test_bad_input_is_one_clear_error(
    tmp_path: Path, images: Path, case: str, capsys, monkeypatch
) -> None:
    base = [
        "--classes",
        "cat",
        "dog",
        "--teacher",
        "tiny_rn_test",
        "--out",
        str(tmp_path / "g.png"),
    ]
    (tmp_path / "bad.ckpt").write_bytes(b"garbage")
    if case == "unreadable":
        (images / "broken.png").write_bytes(b"no png")
    argv, expected = {
        "missing input": ([str(tmp_path / "nope"), *base], "nope"),
        "no classes": ([str(images), "--teacher", "tiny_rn_test"], "no classes given"),
        "duplicate classes": ([str(images), *base, "--classes", "cat", "cat"], "duplicate"),
        "phrase": ([str(images), *base, "--phrase", "horse"], "--phrase 'horse'"),
        "teacher": ([str(images), *base[:3], "--teacher", "rn5O"], "unknown teacher 'rn5O'"),
        "ckpt": ([str(images), *base, "--ckpt", str(tmp_path / "x.ckpt")], "x.ckpt"),
        "bad ckpt": ([str(images), *base, "--ckpt", str(tmp_path / "bad.ckpt")], "bad.ckpt is a"),
        "alpha": ([str(images), *base, "--alpha", "2"], "--alpha 2.0 is out of range"),
        "suffix": ([str(images), *base, "--out", str(tmp_path / "g.txt")], "g.txt"),
        "unreadable": ([str(images), *base], "broken.png"),
    }[case]
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    assert grid_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and "Traceback" not in err
    assert not (tmp_path / "g.png").exists()
