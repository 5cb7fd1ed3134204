"""A seed reproduces a training run bit for bit, and a resumed run continues it exactly.

The tiny world of tests/test_train.py with random flips and rescaling on (the shapes
default), a DeepLabv3+ head (dropout), random training crops and an EMA of the weights: every
random stream and every state a step draws from. 6 batches per epoch, so a run of 9 steps crosses an epoch boundary.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from src.data.sampling import TrainSampler
from src.train import train
from tests.test_train import compose_run, compose_train, csv_column

CHECKPOINTS = [
    "data.dataset_options.train_length=12",
    "callbacks.model_checkpoint.every_n_train_steps=3",
    "callbacks.model_checkpoint.save_top_k=-1",
    "trainer.val_check_interval=1000",
    "student.head=deeplabv3plus",
    "student.head_channels=16",
    "student.train_crop=24",
    "student.ema_decay=0.5",  # its state must come back too (and be saved after its update)
    "callbacks.validation_images.num_images=0",
    "callbacks.validation_report.figure=false",
]


def weights(run: Path, step: int = 9) -> dict[str, torch.Tensor]:
    """The weights a run saved at ``step``."""
    path = run / "checkpoints" / f"step{step:06d}.ckpt"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == step
    return ckpt["state_dict"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]


def test_seeded_runs_are_identical_and_resumes_continue_them(tmp_path: Path) -> None:
    run = ["trainer.max_steps=9", *CHECKPOINTS]
    train(compose_train(tmp_path / "a", *run))
    train(compose_train(tmp_path / "b", *run))
    loss = csv_column(tmp_path / "a", "train/loss")
    assert sorted(loss) == list(range(9))
    assert csv_column(tmp_path / "b", "train/loss") == loss  # bit-identical losses
    assert_same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))

    loaders = [  # where a resumed run continues: batch 3 of epoch 0, then batch 0 of epoch 1
        torch.load(tmp_path / "a" / "checkpoints" / f"step00000{step}.ckpt", weights_only=True)[
            "loops"]["fit_loop"]["state_dict"]["combined_loader"]
        for step in (3, 6)
    ]  # fmt: skip
    assert loaders == [
        [{"seed": 0, "epoch": 0, "batches": 3}],
        [{"seed": 0, "epoch": 1, "batches": 0}],
    ]
    # mid-epoch (step 3 of 6), and at the epoch's end with a DataLoader worker (it fetches
    # its first indices before Lightning names the epoch)
    for step, extra in ((3, []), (6, ["data.num_workers=1"])):
        resumed = tmp_path / f"resumed{step}"
        ckpt = tmp_path / "a" / "checkpoints" / f"step{step:06d}.ckpt"
        train(compose_train(resumed, *run, *extra, f"ckpt_path={ckpt}"))
        assert csv_column(resumed, "train/loss") == {s: v for s, v in loss.items() if s >= step}
        assert_same_weights(weights(tmp_path / "a"), weights(resumed))


def test_train_sampler_shuffles_per_epoch_and_skips_once_on_resume() -> None:
    data = list(range(10))
    sampler = TrainSampler(data, seed=3)
    first = list(sampler)
    assert sorted(i for i, _ in first) == data and {e for _, e in first} == {0}
    assert list(sampler) == first  # the order is a function of (seed, epoch)
    assert list(TrainSampler(data, seed=4)) != first
    sampler.set_epoch(1)
    second = list(sampler)
    assert [i for i, _ in second] != [i for i, _ in first] and {e for _, e in second} == {1}
    sampler.resume_from(1, 4)
    assert list(sampler) == second[4:]  # the rest of the epoch ...
    assert list(sampler) == second  # ... once
    sampler.resume_from(0, 4)
    sampler.set_epoch(2)  # the saved epoch was over: nothing is skipped in the next one
    assert len(list(sampler)) == 10


@pytest.mark.slow
def test_make_demo_seeded_runs_are_identical(tmp_path: Path) -> None:
    """The issue's case: two 8-step runs of ``experiment=shapes_demo`` (step-0 losses were
    1.054 and 1.101), then one resumed from step 4 of the first."""
    common = [
        "experiment=shapes_demo",
        "trainer.max_steps=8",
        "callbacks.model_checkpoint.every_n_train_steps=4",
        "callbacks.model_checkpoint.save_top_k=-1",
        "data.dataset_options.val_length=16",
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1",
    ]
    runs = {}
    for name in ("a", "b"):
        out = tmp_path / name
        train(compose_run(out, *common))
        runs[name] = csv_column(out, "train/loss")
    assert runs["a"] == runs["b"] and len(runs["a"]) >= 2
    assert_same_weights(weights(tmp_path / "a", 8), weights(tmp_path / "b", 8))
    resumed = tmp_path / "resumed"
    train(compose_run(resumed, *common, f"ckpt_path={tmp_path}/a/checkpoints/step000004.ckpt"))
    assert csv_column(resumed, "train/loss") == {s: v for s, v in runs["a"].items() if s >= 4}
    assert_same_weights(weights(tmp_path / "a", 8), weights(resumed, 8))


def _interrupt_at(step: int, how: str):
    """A ``random_crops`` that, at optimizer step ``step`` (after drawing the crop, before the
    update), presses Ctrl-C (``how="int"``) or sends this process SIGTERM (``"term"``: Lightning
    stops after the step, as a cluster's preemption)."""
    import os
    import signal

    from src.student import model

    original = model.random_crops

    def crops(images, target, size):
        out = original(images, target, size)
        module = crops.module
        if module is not None and module.trainer.global_step == step:
            crops.module = None
            if how == "int":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    return crops


def test_resume_after_ctrl_c_or_sigterm_mid_run_is_the_uninterrupted_run(tmp_path: Path) -> None:
    """Cut at steps that are no checkpoint boundary (every 3): Ctrl-C in the middle of step 4's
    forward pass (its crop drawn), then SIGTERM during step 7; each resume continues with the
    uninterrupted run's losses, learning rates and weights (EMA included). The resumed
    learning rate used to be logged one step behind."""
    import signal

    from src.student import model

    run = ["trainer.max_steps=9", *CHECKPOINTS]
    train(compose_train(tmp_path / "a", *run))
    first = tmp_path / "cut"
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    results = {}
    try:
        for out, step, how, ckpt in (
            (first, 4, "int", None),
            (tmp_path / "term", 7, "term", first / "checkpoints" / "last.ckpt"),
        ):
            crops = _interrupt_at(step, how)
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(model, "random_crops", crops)
                watch = lambda self, crops=crops: setattr(crops, "module", self)  # noqa: E731
                mp.setattr(model.DenseClipPlus, "on_fit_start", watch, raising=False)
                extra = [f"ckpt_path={ckpt}"] if ckpt else []
                with pytest.raises(SystemExit) as info:
                    train(compose_train(out, *run, *extra))
            results[how] = info.value.code
            saved = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
            assert saved["global_step"] == (step if how == "int" else step + 1)
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
    assert results["int"] == 1
    resumed = tmp_path / "resumed"
    train(compose_train(resumed, *run, f"ckpt_path={tmp_path}/term/checkpoints/last.ckpt"))
    for column in ("train/loss", "train/lr"):
        whole = csv_column(tmp_path / "a", column)
        assert csv_column(first, column) == {s: v for s, v in whole.items() if s < 4}
        assert csv_column(tmp_path / "term", column) == {
            s: v for s, v in whole.items() if 4 <= s <= 7
        }
        assert csv_column(resumed, column) == {s: v for s, v in whole.items() if s >= 8}
    assert_same_weights(weights(tmp_path / "a"), weights(resumed))
