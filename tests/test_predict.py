"""``python -m src.predict`` on generated images of every kind, and its bad-input errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose as compose_config
from hydra import initialize_config_dir
from omegaconf import DictConfig
from PIL import Image

from src.errors import UserError
from src.predict import predict

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["cat", "dog", "red car"]


def run_predict(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    args = [f"paths.log_dir={tmp_path}/logs", f"paths.cache_dir={tmp_path}/cache", *overrides]
    return subprocess.run(
        [sys.executable, "-m", "src.predict", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _noise(h: int, w: int, c: int | None = 3, seed: int = 0) -> np.ndarray:
    shape = (h, w) if c is None else (h, w, c)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def make_images(folder: Path) -> dict[str, tuple[int, int]]:
    """One image of each kind; returns ``file name -> upright (height, width)``."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_noise(37, 53)).save(folder / "rgb.jpg", quality=90)
    Image.fromarray(_noise(41, 29, None, 1), mode="L").save(folder / "gray.png")
    rgba = _noise(30, 45, 4, 2)
    rgba[:10, :, 3] = 0  # a transparent band
    Image.fromarray(rgba, mode="RGBA").save(folder / "rgba.png")
    deep = (np.arange(33 * 47, dtype=np.uint16).reshape(33, 47) * 40).astype(np.uint16)
    Image.fromarray(deep).save(folder / "deep16.png")  # 16-bit grayscale ('I;16')
    Image.fromarray(_noise(26, 31, None, 3), mode="L").convert("P").save(folder / "palette.gif")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: rotate 90 degrees clockwise to display
    Image.fromarray(_noise(24, 40, 3, 4)).save(folder / "rotated.jpg", exif=exif)
    Image.fromarray(_noise(150, 210, 3, 5)).save(folder / "big.png")  # resized to max_size
    (folder / "notes.txt").write_text("not an image")  # ignored in folders
    return {
        "rgb.jpg": (37, 53),
        "gray.png": (41, 29),
        "rgba.png": (30, 45),
        "deep16.png": (33, 47),
        "palette.gif": (26, 31),
        "rotated.jpg": (40, 24),  # stored 24 x 40 (h x w), displayed upright as 40 x 24
        "big.png": (150, 210),
    }


def test_predict_writes_masks_overlays_and_legend_for_every_image_kind(tmp_path: Path) -> None:
    expected = make_images(tmp_path / "in")
    out = tmp_path / "out"
    proc = run_predict(
        tmp_path,
        f"input={tmp_path / 'in'}",
        "classes=[cat,dog,red car]",
        "teacher=tiny_rn_test",
        f"output_dir={out}",
        "max_size=64",
        "confidence_maps=true",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    legend = json.loads((out / "legend.json").read_text())
    assert legend["classes"] == CLASSES
    assert len(legend["colors"]) == 3 and len({tuple(c) for c in legend["colors"]}) == 3
    assert legend["settings"]["max_size"] == 64 and legend["model"]["clip_model"] == "dc-test-rn"
    records = {Path(r["input"]).name: r for r in legend["images"]}
    assert set(records) == set(expected)

    for name, (h, w) in expected.items():
        stem = Path(name).stem
        mask_im = Image.open(out / f"{stem}_mask.png")
        assert mask_im.mode == "P" and mask_im.size == (w, h), name
        palette = np.array(mask_im.getpalette()[: 3 * 256]).reshape(-1, 3)
        assert [list(palette[i]) for i in range(3)] == legend["colors"]
        mask = np.asarray(mask_im)
        assert mask.max() < len(CLASSES), name  # no threshold: every pixel gets a class
        assert sum(records[name]["pixels"].values()) == h * w
        assert records[name]["pixels"]["red car"] == int((mask == 2).sum())

        overlay = Image.open(out / f"{stem}_overlay.jpg")
        assert overlay.format == "JPEG" and overlay.width > w and overlay.height >= h

        conf = np.stack(
            [
                np.asarray(Image.open(out / f"{stem}_conf_{s}.png"))
                for s in ("cat", "dog", "red_car")
            ]
        ).astype(int)
        assert conf.shape == (3, h, w)
        assert np.abs(conf.sum(0) - 255).max() <= 2  # probabilities x 255 sum to 255
        chosen = np.take_along_axis(conf, mask[None].astype(np.int64), axis=0)[0]
        # the mask's class is the most confident one, up to the x255 rounding of the maps
        assert (chosen >= conf.max(0) - 1).all()
    assert not (out / "notes_mask.png").exists()


def test_predict_glob_sliding_window_threshold_on_vit(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(_noise(70, 90)).save(folder / "a.png")
    Image.fromarray(_noise(20, 25, 3, 1)).save(folder / "small.png")
    Image.fromarray(_noise(30, 30)).save(folder / "skip.jpg")
    out = tmp_path / "out"
    proc = run_predict(
        tmp_path,
        f"input={folder}/*.png",
        "classes=[sky,tree,Batman]",
        "teacher=tiny_vit_test",
        f"output_dir={out}",
        "sliding_window=true",
        "window=32",
        "stride=24",
        "threshold=0.9",
        "logit_scale=1",  # cosines in [-1, 1]: the best of 3 probabilities is at most 0.79
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*_mask.png")) == ["a_mask.png", "small_mask.png"]
    for stem, size in (("a", (90, 70)), ("small", (25, 20))):
        mask = Image.open(out / f"{stem}_mask.png")
        assert mask.size == size
        assert set(np.unique(np.asarray(mask)).tolist()) == {255}  # all below the threshold
    legend = json.loads((out / "legend.json").read_text())
    assert legend["settings"]["sliding_window"] is True and legend["settings"]["threshold"] == 0.9
    assert legend["images"][0]["pixels_no_class"] == 90 * 70


@pytest.fixture()
def student_ckpt(tmp_path: Path) -> Path:
    """A tiny DenseCLIP+ checkpoint (dc-test-rn teacher, ResNet-18, background counted)."""
    pl = pytest.importorskip("pytorch_lightning")
    import torch

    from tests.student.fakes import tiny_student

    student = tiny_student()
    state = {k: v for k, v in student.state_dict().items() if not k.startswith("teacher.")}
    path = tmp_path / "student.ckpt"
    ckpt = {"state_dict": state, "hyper_parameters": dict(student.hparams)}
    torch.save(ckpt | {"pytorch-lightning_version": pl.__version__}, path)
    return path


def test_predict_with_a_student_checkpoint(tmp_path: Path, student_ckpt: Path) -> None:
    Image.fromarray(_noise(40, 56)).save(tmp_path / "photo.jpg")
    out = tmp_path / "out"
    proc = run_predict(
        tmp_path,
        f"input={tmp_path / 'photo.jpg'}",
        "classes=[cat,dog]",  # a new vocabulary: re-encoded, background kept as class 0
        f"ckpt_path={student_ckpt}",
        f"output_dir={out}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    legend = json.loads((out / "legend.json").read_text())
    assert legend["classes"] == ["background", "cat", "dog"]
    assert legend["model"]["model"] == "student" and legend["colors"][0] == [0, 0, 0]
    mask = np.asarray(Image.open(out / "photo_mask.png"))
    assert mask.shape == (40, 56) and mask.max() <= 2


# ---------------------------------------------------------------------- bad input
def _missing(tmp_path: Path) -> tuple[list[str], list[str]]:
    return [f"input={tmp_path}/nope.jpg"], ["input not found", "nope.jpg"]


def _glob_nothing(tmp_path: Path) -> tuple[list[str], list[str]]:
    return [f"input={tmp_path}/*.webp"], ["matches no files", "*.webp"]


def _empty_folder(tmp_path: Path) -> tuple[list[str], list[str]]:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    return [f"input={tmp_path / 'empty'}"], ["has no images", "empty"]


def _corrupt(tmp_path: Path) -> tuple[list[str], list[str]]:
    (tmp_path / "in").mkdir()
    Image.fromarray(_noise(20, 20)).save(tmp_path / "in" / "fine.png")
    (tmp_path / "in" / "broken.jpg").write_bytes(b"this is not a JPEG at all")
    return [f"input={tmp_path / 'in'}"], ["cannot read the image", "broken.jpg"]


def _truncated(tmp_path: Path) -> tuple[list[str], list[str]]:
    Image.fromarray(_noise(64, 64)).save(tmp_path / "cut.png")
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])  # header fine, pixels missing
    return [f"input={tmp_path / 'cut.png'}"], ["cannot read the image", "cut.png"]


def _empty_classes(tmp_path: Path) -> tuple[list[str], list[str]]:
    return [f"input={_one_image(tmp_path)}", "classes=[]"], ["class list is empty"]


def _duplicate_classes(tmp_path: Path) -> tuple[list[str], list[str]]:
    return [f"input={_one_image(tmp_path)}", "classes=[cat,dog,Cat]"], ["duplicate", "cat"]


def _unknown_teacher(tmp_path: Path) -> tuple[list[str], list[str]]:
    return [f"input={_one_image(tmp_path)}", "teacher=rn51"], ["unknown teacher 'rn51'", "rn50"]


def _unknown_clip(tmp_path: Path) -> tuple[list[str], list[str]]:
    overrides = [f"input={_one_image(tmp_path)}", "teacher.clip_model=RN51"]
    return overrides, ["unknown CLIP model 'RN51'", "RN50"]


def _bad_checkpoint(tmp_path: Path) -> tuple[list[str], list[str]]:
    (tmp_path / "bad.ckpt").write_bytes(b"garbage")
    overrides = [f"input={_one_image(tmp_path)}", f"ckpt_path={tmp_path / 'bad.ckpt'}"]
    return overrides, ["bad.ckpt is a text file, not a checkpoint"]


def _bad_window(tmp_path: Path) -> tuple[list[str], list[str]]:
    overrides = [f"input={_one_image(tmp_path)}", "sliding_window=true", "window=32", "stride=40"]
    return overrides, ["stride=40 is larger than window=32"]


def _one_image(tmp_path: Path) -> Path:
    path = tmp_path / "one.png"
    Image.fromarray(_noise(16, 16)).save(path)
    return path


@pytest.mark.parametrize(
    "case",
    [
        _missing,
        _glob_nothing,
        _empty_folder,
        _corrupt,
        _empty_classes,
        _duplicate_classes,
        _unknown_teacher,
        _bad_window,
    ],
)
def test_bad_input_is_one_clear_error(tmp_path: Path, case) -> None:
    overrides, expected = case(tmp_path)
    if not any(o.startswith("classes=") for o in overrides):
        overrides.append("classes=[cat,dog]")
    proc = run_predict(tmp_path, "teacher=tiny_rn_test", *overrides, f"output_dir={tmp_path}/o")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    for text in expected:
        assert text in proc.stderr, (text, proc.stderr[-3000:])
    assert "fix:" in proc.stderr


def compose(tmp_path: Path, *overrides: str) -> DictConfig:
    """The predict config as ``python -m src.predict`` composes it (no subprocess)."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose_config(
            "predict",
            overrides=[
                "teacher=tiny_rn_test",
                "classes=[cat,dog]",
                f"paths.root_dir={tmp_path}",
                f"paths.output_dir={tmp_path}/run",
                f"output_dir={tmp_path}/o",
                "progress=false",
                *overrides,
            ],
        )


@pytest.mark.parametrize("case", [_truncated, _unknown_clip, _bad_checkpoint])
def test_errors_after_the_model_loads_are_user_errors(tmp_path: Path, case) -> None:
    """Errors raised once torch and the model are loaded; the same ``run_task`` path as above
    turns them into exit code 2 without a traceback (in process: no 10 s interpreter start)."""
    overrides, expected = case(tmp_path)
    with pytest.raises(UserError) as info:
        predict(compose(tmp_path, *overrides))
    for text in expected:
        assert text in str(info.value), (text, str(info.value))
    assert info.value.fix
