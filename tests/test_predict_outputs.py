"""What ``python -m src.predict`` leaves in its output folder when things go wrong: an
unreadable image is skipped and counted, a folder of another run's predictions is refused,
earlier outputs are never read as inputs, and a bad output folder fails before any work.

In process (``predict`` with the config the command line composes; ``run_task`` turns the
``UserError`` into one line and exit status 2, tests/test_reliability.py checks that path).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from src.errors import UserError
from src.predict import predict
from tests.test_predict import _noise, compose


def images(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_noise(24, 32)).save(folder / "a.png")
    Image.fromarray(_noise(20, 20, 3, 1)).save(folder / "b.png")
    return folder


def legend(out: Path) -> dict:
    return json.loads((out / "legend.json").read_text())


def test_unreadable_images_are_skipped_and_counted(tmp_path: Path) -> None:
    folder = images(tmp_path / "in")
    Image.fromarray(_noise(64, 64, 3, 2)).save(folder / "cut.png")
    data = (folder / "cut.png").read_bytes()
    (folder / "cut.png").write_bytes(data[: len(data) // 2])  # header fine, pixels missing
    (folder / "text.jpg").write_text("not a JPEG")  # fails the header check, before the model
    out = tmp_path / "o"
    with pytest.raises(UserError, match=r"^2 of 4 image\(s\) could not be read") as info:
        predict(compose(tmp_path, f"input={folder}"))
    assert "and 1 more" in info.value.problem and "the other 2 were written" in info.value.fix
    assert sorted(p.name for p in out.glob("*_mask.png")) == ["a_mask.png", "b_mask.png"]
    written = legend(out)
    assert written["complete"] is True
    assert [Path(r["input"]).name for r in written["images"]] == ["a.png", "b.png"]
    assert sorted(Path(f["input"]).name for f in written["failed"]) == ["cut.png", "text.jpg"]


def test_a_folder_of_another_runs_predictions_is_refused(tmp_path: Path) -> None:
    folder = images(tmp_path / "in")
    out = tmp_path / "o"
    predict(compose(tmp_path, f"input={folder / 'a.png'}"))
    before = (out / "legend.json").read_text()
    with pytest.raises(UserError, match="holds predictions of another run .* classes"):
        predict(compose(tmp_path, f"input={folder / 'b.png'}", "classes=[sky,tree]"))
    with pytest.raises(UserError, match="differs in settings"):
        predict(compose(tmp_path, f"input={folder / 'b.png'}", "threshold=0.5"))
    assert (out / "legend.json").read_text() == before and not (out / "b_mask.png").exists()
    # the same classes, model and settings: the new masks join the legend
    predict(compose(tmp_path, f"input={folder / 'b.png'}", "device=cpu"))
    assert [r["mask"] for r in legend(out)["images"]] == ["a_mask.png", "b_mask.png"]
    # masks without a legend beside them: unknown classes
    (out / "legend.json").unlink()
    with pytest.raises(UserError, match="holds masks without a legend.json"):
        predict(compose(tmp_path, f"input={folder / 'b.png'}"))


def test_earlier_outputs_are_not_inputs(tmp_path: Path) -> None:
    folder = images(tmp_path / "in")
    predict(compose(tmp_path, f"input={folder}", f"output_dir={folder}"))  # into itself
    names = sorted(p.name for p in folder.iterdir())
    assert "a_mask.png" in names and "b_overlay.jpg" in names
    out = tmp_path / "second"  # the folder of earlier outputs as input, somewhere else
    predict(compose(tmp_path, f"input={folder}", f"output_dir={out}"))
    assert sorted(Path(r["input"]).name for r in legend(out)["images"]) == ["a.png", "b.png"]
    predict(compose(tmp_path, f"input={folder}/*.png", f"output_dir={tmp_path / 'third'}"))
    assert len(legend(tmp_path / "third")["images"]) == 2
    # a file named explicitly is always taken
    predict(compose(tmp_path, f"input={folder / 'a_mask.png'}", f"output_dir={tmp_path / 'm'}"))
    assert (tmp_path / "m" / "a_mask_mask.png").is_file()


@pytest.mark.parametrize("kind", ["file", "under_a_file"])
def test_a_bad_output_folder_fails_before_the_model_loads(tmp_path: Path, kind: str) -> None:
    (tmp_path / "taken").write_text("a file")
    target = tmp_path / "taken" if kind == "file" else tmp_path / "taken" / "sub"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
    # an unknown CLIP would fail when the model is built: the folder is checked first
    cfg = compose(tmp_path, f"input={tmp_path / 'x.png'}", f"output_dir={target}",
                  "teacher.clip_model=RN51")  # fmt: skip
    expected = "is a file, not a folder" if kind == "file" else "cannot create output_dir"
    with pytest.raises(UserError, match=expected):
        predict(cfg)


def test_the_legend_records_the_teacher_in_full_and_other_head_options_are_refused(
    tmp_path: Path,
) -> None:
    """``legend.json`` had no ``head_options``: a rerun with other options into the same
    folder was accepted, one legend describing masks made two ways (issue 23, item 3)."""
    folder = images(tmp_path / "in")
    out = tmp_path / "o"
    naclip = ["teacher=tiny_vit_test", "teacher.head=naclip"]
    predict(compose(tmp_path, f"input={folder / 'a.png'}", *naclip))
    config = legend(out)["model"]["teacher_config"]
    assert config["head"] == "naclip" and config["head_options"] == {}
    assert {"clip_model", "pretrained", "templates", "proxy", "refine", "logit_scale"} <= set(
        config
    )
    before = (out / "legend.json").read_text()
    with pytest.raises(UserError, match="differs in model"):
        predict(compose(tmp_path, f"input={folder / 'b.png'}", *naclip,
                        "teacher.head_options={gaussian_std:3}"))  # fmt: skip
    assert (out / "legend.json").read_text() == before and not (out / "b_mask.png").exists()


def _listed(out: Path) -> set[str]:
    from src.prediction.legend_writer import record_files

    return {name for r in legend(out)["images"] for name in record_files(r)} | {"legend.json"}


def test_a_full_disk_leaves_a_legend_that_matches_the_files(tmp_path: Path, monkeypatch) -> None:
    """The disk fills while the second image's overlay is written (OSError 28): one line, the
    second image's mask removed, ``legend.json`` listing exactly the first image's files (it
    listed 0 images while masks existed)."""
    from src.prediction import outputs

    folder = images(tmp_path / "in")
    saves = []
    original = outputs.atomic_save_image

    def save(path, image, **kwargs):
        saves.append(Path(path).name)
        if Path(path).name == "b_overlay.jpg":
            raise OSError(28, "No space left on device")
        return original(path, image, **kwargs)

    monkeypatch.setattr(outputs, "atomic_save_image", save)
    out = tmp_path / "o"
    with pytest.raises(UserError, match=r"the disk is full; legend.json lists the 1 image\(s\)"):
        predict(compose(tmp_path, f"input={folder}"))
    assert "b_mask.png" in saves  # written, then removed
    assert {p.name for p in out.iterdir()} == _listed(out) == {
        "legend.json", "a_mask.png", "a_overlay.jpg"}  # fmt: skip


def test_a_very_long_class_name_gets_a_safe_unique_file_name(tmp_path: Path) -> None:
    """A 310-character class name with ``confidence_maps=true`` was OSError 36 (file name too
    long), the outputs half written."""
    folder = images(tmp_path / "in")
    long_a, long_b = "a" * 305 + " red", "a" * 305 + " blue"
    out = tmp_path / "o"
    predict(compose(tmp_path, f"input={folder / 'a.png'}", f"classes=['{long_a}','{long_b}']",
                    "confidence_maps=true"))  # fmt: skip
    maps = legend(out)["images"][0]["confidence_maps"]
    assert set(maps) == {long_a, long_b} and len(set(maps.values())) == 2
    assert all(len(name.encode()) <= 255 and (out / name).is_file() for name in maps.values())
    assert {p.name for p in out.iterdir()} == _listed(out)


def test_too_many_classes_are_refused_before_any_prompt_is_encoded(tmp_path, monkeypatch):
    """500 classes were refused only after encoding 500 x 85 prompts."""
    folder = images(tmp_path / "in")

    def never(*args, **kwargs):
        raise AssertionError("the teacher was built")

    monkeypatch.setattr("src.predict.build_teacher", never)
    names = ",".join(f"class{i}" for i in range(500))
    with pytest.raises(UserError, match=r"^500 classes are too many for a uint8 mask"):
        predict(compose(tmp_path, f"input={folder}", f"classes=[{names}]"))
