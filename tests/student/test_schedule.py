"""The student owns its label schedule (teacher labels -> self labels, holds, per-class
fallbacks); the switch and the drift guard only move it; a zero-shot run with no switch
callback says so in one line (issue 20)."""

from __future__ import annotations

import logging

import pytest

from src.student.schedule import LabelSchedule
from src.student.switch import PseudoLabelSwitch
from tests.student.fakes import ScenesData, quick_trainer, tiny_student


def test_the_schedule_moves_teacher_self_held_and_fallback() -> None:
    schedule = LabelSchedule()
    assert not schedule.self_labels
    schedule.switch()
    assert schedule.self_labels
    schedule.hold()
    assert schedule.switched and not schedule.self_labels
    schedule.hold(False)
    schedule.fall_back((2, 3.0))
    assert schedule.self_labels and schedule.fallback_classes == [2, 3]


def test_the_student_reads_its_own_schedule() -> None:
    student = tiny_student()
    assert student.label_schedule == LabelSchedule() and not student.uses_self_labels
    student.label_schedule.switch()
    assert student.uses_self_labels and student.self_training
    student.label_schedule.hold()
    assert not student.uses_self_labels and student.self_training_held
    student.label_schedule.fall_back([2])
    assert student.teacher_classes == [2]


@pytest.mark.parametrize("with_switch", [False, True], ids=["no_switch", "switch"])
def test_a_zero_shot_run_without_a_switch_says_so_once(tmp_path, caplog, with_switch) -> None:
    student = tiny_student()  # zero-shot: classes 2 and 3 unseen, labelled by the teacher
    callbacks = [PseudoLabelSwitch(step=1)] if with_switch else []
    trainer = quick_trainer(tmp_path, max_steps=2, callbacks=callbacks, limit_val_batches=0)
    with caplog.at_level(logging.WARNING, logger="src.student.model"):
        trainer.fit(student, datamodule=ScenesData())
    lines = [r.getMessage() for r in caplog.records if "pseudo-label switch" in r.getMessage()]
    if with_switch:
        assert lines == [] and student.label_schedule.switched
    else:
        assert len(lines) == 1 and "\n" not in lines[0] and "never self-trains" in lines[0]
        assert not student.label_schedule.switched
