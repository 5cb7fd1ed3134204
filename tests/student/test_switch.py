"""PseudoLabelSwitch: when it switches, its arguments, its state across resumes, its log."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger

from src.errors import UserError
from src.student.schedule import LabelSchedule
from src.student.switch import PseudoLabelSwitch
from tests.student.fakes import ScenesData, quick_trainer, tiny_student


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fraction": 1.5},
        {"fraction": -0.1},
        {"fraction": "half"},
        {"fraction": True},
        {"step": -1},
        {"step": 2.5},
        {"step": "10"},
    ],  # fmt: skip
)
def test_bad_arguments_raise_user_errors(kwargs) -> None:
    with pytest.raises(UserError, match="pseudo_label_switch"):
        PseudoLabelSwitch(**kwargs)


def test_switch_step_from_fraction_explicit_step_or_never() -> None:
    trainer = SimpleNamespace(estimated_stepping_batches=40)
    assert PseudoLabelSwitch().resolve(trainer) == 4
    assert PseudoLabelSwitch(fraction=0.25).resolve(trainer) == 10
    assert PseudoLabelSwitch(fraction=0.1, step=7).resolve(trainer) == 7  # the step wins
    assert PseudoLabelSwitch(enabled=False).resolve(trainer) is None
    with pytest.raises(UserError, match="endless"):
        PseudoLabelSwitch().resolve(SimpleNamespace(estimated_stepping_batches=float("inf")))


def test_state_round_trip_puts_a_resumed_module_in_its_phase() -> None:
    done = PseudoLabelSwitch()
    done.switch_step, done.switched = 4, True
    resumed = PseudoLabelSwitch(fraction=0.5)
    resumed.load_state_dict(done.state_dict())
    module = SimpleNamespace(label_schedule=LabelSchedule())
    resumed.on_train_start(SimpleNamespace(estimated_stepping_batches=1000), module)
    assert module.label_schedule.switched and resumed.switch_step == 4  # not 500: stored


def test_needs_a_student() -> None:
    with pytest.raises(UserError, match="DenseClipPlus"):
        PseudoLabelSwitch().on_train_start(SimpleNamespace(), pl.LightningModule())


def test_switches_teacher_labels_for_self_labels_during_fit(tmp_path, monkeypatch) -> None:
    student = tiny_student()
    teacher_calls = []
    original = student.teacher.predict_logits
    monkeypatch.setattr(
        student.teacher, "predict_logits",
        lambda *a, **k: teacher_calls.append(1) or original(*a, **k),
    )  # fmt: skip
    phases = []

    class Spy(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            phases.append(module.self_training)

    logger = CSVLogger(tmp_path, name="", version="")
    trainer = quick_trainer(
        tmp_path, max_steps=6, logger=logger, log_every_n_steps=1,
        callbacks=[PseudoLabelSwitch(fraction=0.5), Spy()],
    )  # fmt: skip
    trainer.fit(student, datamodule=ScenesData())
    assert phases == [False, False, False, True, True, True]
    assert len(teacher_calls) == 3  # no teacher forward once self-training
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    logged = {int(r["step"]): float(r["train/self_training"]) for r in rows
              if r.get("train/self_training")}  # fmt: skip
    assert logged == {0: 0.0, 1: 0.0, 2: 0.0, 3: 1.0, 4: 1.0, 5: 1.0}
