"""Training checkpoints a user can count on: periodic ones (the demo), one on Ctrl-C, the
final model in ``last.ckpt``; and the step progress bar."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from src.student.callbacks import StepProgressBar
from src.train import train
from tests.test_train import compose_run, compose_train

PERIODIC = [  # the demo's periodic checkpoint (conf/experiment/shapes_demo.yaml), every 2 steps
    "+callbacks.periodic_checkpoint._target_=pytorch_lightning.callbacks.ModelCheckpoint",
    "+callbacks.periodic_checkpoint.dirpath=${paths.output_dir}/checkpoints",
    "+callbacks.periodic_checkpoint.save_last=true",
    "+callbacks.periodic_checkpoint.save_top_k=0",
    "+callbacks.periodic_checkpoint.every_n_train_steps=2",
    "+callbacks.periodic_checkpoint.enable_version_counter=false",
    "trainer.val_check_interval=1000",  # validated only at the end, like the demo
    "callbacks.validation_images.num_images=0",
    "callbacks.validation_report.figure=false",
]


class CtrlCAt(pl.Callback):
    """Press Ctrl-C after optimizer step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


def saved_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def test_demo_config_checkpoints_every_100_steps() -> None:
    cfg = compose_run(Path("/tmp/unused"), "experiment=shapes_demo")
    periodic = cfg.callbacks.periodic_checkpoint
    assert (periodic.every_n_train_steps, periodic.save_last, periodic.save_top_k) == (100, True, 0)
    assert cfg.callbacks.model_checkpoint.save_on_exception is True


def test_periodic_checkpoints_keep_the_final_model_and_the_bar_counts_steps(tmp_path) -> None:
    """``last.ckpt`` is the final model even with periodic saves; Lightning's progress bar read
    ``Epoch 0/-2`` (max_epochs=-1), this one counts steps to max_steps across epochs (8
    batches an epoch, 10 steps)."""
    seen: list[tuple[str, float, float]] = []

    class Recording(StepProgressBar):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            task = self.train_progress_bar
            seen.append((task.description.strip(), task.completed, task.total))

    out = tmp_path / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("src.train.StepProgressBar", Recording)
        train(compose_train(out, "trainer.max_steps=10", "trainer.enable_progress_bar=true",
                            *PERIODIC))  # fmt: skip
    files = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert files == ["last.ckpt", "step000010.ckpt"]  # no last-v1.ckpt
    assert saved_step(out / "checkpoints" / "last.ckpt") == 10
    assert seen == [("Training", float(s), 10.0) for s in range(1, 11)]


def test_ctrl_c_saves_last_ckpt_that_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = compose_train(out, "trainer.max_steps=4", *PERIODIC)
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("src.train.instantiate_group", _with_ctrl_c(3))
            with pytest.raises(SystemExit) as info:
                train(cfg)
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C on shutdown
    assert info.value.code == 1
    assert saved_step(out / "checkpoints" / "last.ckpt") == 3  # not step 2 of the periodic one
    metrics = train(
        compose_train(
            tmp_path / "resumed",
            "trainer.max_steps=4",
            *PERIODIC,
            f"ckpt_path={out}/checkpoints/last.ckpt",
        )
    )
    assert metrics["train/global_step"] == 4


def _with_ctrl_c(step: int):
    from src.utils.task import instantiate_group

    def build(group):
        built = instantiate_group(group)
        if any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in built):
            built.append(CtrlCAt(step))
        return built

    return build


def test_a_teacher_rebuilt_from_a_student_checkpoint_keeps_quick_gelu(tmp_path: Path) -> None:
    """The student stores its teacher's own config (``DenseClipTeacher.config()``): the
    activation chosen for the CLIP (QuickGELU for OpenAI's weights) comes back with it."""
    from open_clip.transformer import QuickGELU

    from src.student.checkpoint import load_student
    from src.student.model import DenseClipPlus
    from src.teacher.model import DenseClipTeacher

    teacher = DenseClipTeacher(clip_model="dc-test-rn", pretrained=None, templates="photo",
                               class_names=["circle", "square"], quick_gelu=True)  # fmt: skip
    student = DenseClipPlus(teacher=teacher, backbone=18, backbone_weights="none")
    state = {k: v for k, v in student.state_dict().items() if not k.startswith("teacher.")}
    path = tmp_path / "student.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": dict(student.hparams),
                "pytorch-lightning_version": pl.__version__}, path)  # fmt: skip
    loaded = load_student(path)
    assert loaded.teacher.config()["quick_gelu"] is True
    assert any(isinstance(m, QuickGELU) for m in loaded.teacher.clip.modules())


def test_a_student_whose_teacher_weights_moved_names_them(tmp_path: Path) -> None:
    """It said "one of the tags (none for this model)" though the shipped tag exists, and
    named nothing to fix."""
    from src.errors import UserError
    from src.student.checkpoint import load_student
    from tests.student.fakes import save_tiny_checkpoint

    ckpt = torch.load(save_tiny_checkpoint(tmp_path / "s.ckpt"), weights_only=False)
    ckpt["hyper_parameters"]["teacher"] |= {"clip_model": "tiny_shapes",
                                            "pretrained": str(tmp_path / "moved.pt")}  # fmt: skip
    torch.save(ckpt, tmp_path / "moved.ckpt")
    with pytest.raises(UserError) as info:
        load_student(tmp_path / "moved.ckpt")
    assert "cannot rebuild its teacher: pretrained weights" in info.value.problem
    assert str(tmp_path / "moved.pt") in info.value.problem
    assert "put the teacher's weights back" in info.value.fix
    with pytest.raises(UserError, match="or one of the tags shapes"):
        from src.teacher.loading import create_clip

        create_clip("tiny_shapes", str(tmp_path / "moved.pt"))
