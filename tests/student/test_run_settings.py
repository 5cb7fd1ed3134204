"""A checkpoint carries the settings of its run; a resume under other settings is one line
naming each difference, before anything is built (issue 23, item 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from src.errors import UserError
from src.student.run_settings import KEY, run_settings
from src.train import train
from tests.test_train import compose_run, compose_train


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``last.ckpt`` of a 4-step annotation-free run of the tiny world (the demo's kind)."""
    out = tmp_path_factory.mktemp("settings") / "demo"
    train(
        compose_train(
            out,
            "trainer.max_steps=4",
            "trainer.val_check_interval=1000",
            "callbacks.validation_images.num_images=0",
            "callbacks.validation_report.figure=false",
        )
    )
    return out / "checkpoints" / "last.ckpt"


def resume(out: Path, ckpt: Path, *overrides: str) -> dict:
    return train(compose_train(out, "trainer.max_steps=4", *overrides, f"ckpt_path={ckpt}"))


def test_the_checkpoint_records_the_run_settings(demo: Path) -> None:
    saved = torch.load(demo, map_location="cpu", weights_only=True)[KEY]
    assert saved["data.setting"] == "annotation_free" and saved["data.unseen_classes"] == []
    assert saved["data.class_names"] == ["circle", "square", "triangle"]
    assert saved["teacher.clip_model"] == "dc-test-rn" and saved["teacher.head"] == "maskclip"
    assert saved["teacher.head_options"] is None and saved["teacher.refine"] is None
    assert saved["student.backbone"] == 18 and saved["trainer.max_steps"] == 4
    assert saved["seed"] == 0 and "data.root" not in saved and "data.num_workers" not in saved


def test_resuming_under_the_zero_shot_experiment_names_the_differences(demo, tmp_path) -> None:
    """The issue's case: the demo's checkpoint resumed with ``experiment=shapes_zero_shot``
    trained 0 steps and reported the annotation-free score as a zero-shot one (exit 0)."""
    with pytest.raises(UserError) as info:
        train(compose_run(tmp_path / "zs", "experiment=shapes_zero_shot", f"ckpt_path={demo}"))
    text = str(info.value)
    assert "was written by a run with other settings" in text
    assert "data.setting was annotation_free, now zero_shot" in text
    assert 'data.unseen_classes was [], now ["square", "triangle"]' in text
    assert "fix: resume with that run's settings" in text and "resume_allow=[" in text
    assert not (tmp_path / "zs" / "checkpoints").exists()  # refused before training


def test_resuming_with_another_teacher_and_head_is_refused(demo, tmp_path) -> None:
    with pytest.raises(UserError) as info:
        resume(tmp_path / "t", demo, "teacher=tiny_shapes_vit_plain", "teacher.head=naclip",
               "teacher.templates=photo")  # fmt: skip
    assert "teacher.clip_model was dc-test-rn, now tiny_shapes_vit_plain" in str(info.value)
    assert "teacher.head was maskclip, now naclip" in str(info.value)
    with pytest.raises(
        UserError, match=r'teacher\.head_options was null, now \{"gaussian_std": 3\}'
    ):
        resume(tmp_path / "o", demo, "teacher.head_options={gaussian_std:3}")


def test_an_earlier_checkpoint_without_settings_is_checked_by_its_teacher(demo, tmp_path):
    ckpt = torch.load(demo, map_location="cpu", weights_only=True)
    del ckpt[KEY]
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    with pytest.raises(UserError, match="teacher.head was maskclip, now naclip"):
        resume(tmp_path / "t", old, "teacher.head=naclip")


def test_a_deliberate_change_is_allowed_and_max_steps_below_the_step_is_refused(demo, tmp_path):
    with pytest.raises(UserError, match="trainer.max_steps was 4, now 6"):
        resume(tmp_path / "a", demo, "trainer.max_steps=6")
    metrics = resume(tmp_path / "b", demo, "trainer.max_steps=6",
                     "resume_allow=[trainer.max_steps]")  # fmt: skip
    assert metrics["train/global_step"] == 6
    saved = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved[KEY]["trainer.max_steps"] == 6  # the new run's own settings
    with pytest.raises(UserError, match="is at step 4, beyond trainer.max_steps=2"):
        resume(tmp_path / "c", demo, "trainer.max_steps=2", "resume_allow=[trainer]")
    with pytest.raises(UserError, match="resume_allow names trainer.max_step,"):
        resume(tmp_path / "d", demo, "resume_allow=[trainer.max_step]")


def test_paths_and_workers_are_not_settings_of_the_run(tmp_path) -> None:
    one = run_settings(compose_train(tmp_path / "a"))
    two = run_settings(compose_train(tmp_path / "b", "data.num_workers=2", "data.root=/x"))
    assert one == two
