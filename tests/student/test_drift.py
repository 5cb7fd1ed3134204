"""The drift guard: a constructed drift (a student forced to predict one unseen class) makes it
fall back to the teacher for the collapsed class; a student that agrees with the teacher
triggers nothing; its decisions survive a checkpoint."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import open_dict
from pytorch_lightning.loggers import CSVLogger

from src.batch import CANDIDATES, IMAGE, TARGET, UNLABELLED
from src.errors import UserError
from src.student import DriftGuard, PseudoLabelSwitch
from src.student.drift import label_statistics
from tests.student.fakes import ScenesData, quick_trainer, tiny_student

# dataset classes: 0 background, 1 circle (seen), 2 square, 3 triangle (unseen candidates)
SQUARE, TRIANGLE = 2, 3


def teacher_pattern(images, size=None):
    """Teacher scores (teacher space: circle, square, triangle): square left of x=20,
    triangle from x=20 on; circle is the overall favourite (not a candidate)."""
    h, w = size if size is not None else images.shape[-2:]
    scores = torch.zeros(images.shape[0], 3, h, w)
    scores[:, 0] = 5.0
    scores[:, 1, :, :20] = 1.0
    scores[:, 2, :, 20:] = 1.0
    return scores


def forced(student, cls: int | None):
    """Make the student's net predict ``cls`` everywhere (None: the teacher's pattern), still
    through its parameters (so training steps run)."""
    original = student.net.forward
    student.forced_class = cls  # may be changed while training

    def forward(images):  # logits at the image's resolution: the pattern's edge stays exact
        out = torch.nn.functional.interpolate(original(images), size=images.shape[-2:])
        bias = torch.zeros_like(out)
        cls = student.forced_class
        if cls is None:
            pattern = teacher_pattern(images, out.shape[-2:])
            bias[:, 1:] = 10.0 * (pattern - pattern.amax(dim=1, keepdim=True) + 1)
        else:
            bias[:, cls] = 10.0
        return out * 0.0 + bias

    student.net.forward = forward
    student.teacher.predict_logits = teacher_pattern
    return student


def test_label_statistics_exact() -> None:
    v = 255
    student = torch.tensor([[2, 2, 2, 3, v, 2]])
    teacher = torch.tensor([[2, 3, 3, 3, 2, v]])
    stats = label_statistics(student, teacher, 4)  # 4 pixels both label
    assert stats["student_share"].tolist() == [0.0, 0.0, 0.75, 0.25]
    assert stats["teacher_share"].tolist() == [0.0, 0.0, 0.25, 0.75]
    agreement = stats["agreement"].tolist()
    assert agreement[2:] == [1.0, pytest.approx(1 / 3)]
    assert all(a != a for a in agreement[:2])  # NaN: the teacher gives them nothing
    assert float(stats["agreement_all"]) == 0.5


class Spy(pl.Callback):
    """Records, per step, the guard's fallback classes and the training targets built."""

    def __init__(self) -> None:
        self.fallback: list[list[int]] = []
        self.targets: list[torch.Tensor] = []
        self.self_training: list[bool] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.fallback.append(list(module.teacher_classes))
        self.self_training.append(module.uses_self_labels)  # switched and not held


def _fit(tmp_path, student, guard, max_steps=4, switch_step=2, callbacks_extra=(), **kwargs):
    spy = Spy()
    original = student.pseudo_targets

    def pseudo_targets(batch, logits=None):
        out = original(batch, logits)
        if student.trainer.training:
            spy.targets.append(out.clone())
        return out

    student.pseudo_targets = pseudo_targets
    logger = CSVLogger(tmp_path, name="", version="")
    trainer = quick_trainer(
        tmp_path, max_steps=max_steps, logger=logger, log_every_n_steps=1,
        callbacks=[PseudoLabelSwitch(step=switch_step), guard, spy, *callbacks_extra], **kwargs,
    )  # fmt: skip
    trainer.fit(student, datamodule=ScenesData(n_train=8, batch_size=4))
    return trainer, spy


def test_a_student_collapsed_onto_square_falls_back_to_the_teacher_for_triangle(tmp_path):
    student = forced(tiny_student(backbone_stages=2), SQUARE)
    guard = DriftGuard(enabled=True, every_n_steps=1, probe_size=6, hold_switch=False)
    _, spy = _fit(tmp_path, student, guard)
    # the first check, at the switch (step 2): triangle's share 0 against the teacher's 0.5
    assert [(d["step"], d["class"], d["index"]) for d in guard.decisions] == [(2, "triangle", 3)]
    assert guard.decisions[0]["share"] == 0.0 and guard.decisions[0]["teacher_share"] == 0.5
    assert spy.fallback == [[], [], [3], [3]]
    # before the switch: teacher labels; after: the student's square, but triangle wherever
    # the teacher says triangle (x >= 20), so the targets equal the teacher's labels here
    for step, target in enumerate(spy.targets):
        hidden = ScenesData(8, 4, 4).train_dataloader()
        batch = list(hidden)[step % 2]
        unl = batch[TARGET] == UNLABELLED
        assert unl.any()
        left = torch.zeros_like(unl)
        left[..., :20] = True
        assert (target[unl & left] == SQUARE).all() and (target[unl & ~left] == TRIANGLE).all()
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    logged = {int(r["step"]): r for r in rows if r.get("drift/share/triangle")}
    assert sorted(logged) == [2, 3]  # checked only while self-training
    assert float(logged[2]["drift/share/triangle"]) == 0.0
    assert float(logged[2]["drift/teacher_share/triangle"]) == 0.5
    assert float(logged[2]["drift/share/square"]) == 1.0
    assert float(logged[2]["drift/agreement/square"]) == 1.0
    assert float(logged[2]["drift/agreement"]) == 0.5
    assert float(logged[3]["drift/fallback_classes"]) == 1.0
    assert "drift/share/circle" not in rows[0]  # only the candidates are watched


def test_without_the_guard_the_collapsed_student_trains_on_its_own_square(tmp_path):
    student = forced(tiny_student(backbone_stages=2), SQUARE)
    _, spy = _fit(tmp_path, student, DriftGuard(enabled=False))
    after = torch.cat([t.flatten() for t in spy.targets[2:]])
    assert not (after == TRIANGLE).any() and (after == SQUARE).any()
    assert spy.fallback == [[], [], [], []]


def test_a_student_that_agrees_with_the_teacher_triggers_nothing(tmp_path):
    student = forced(tiny_student(backbone_stages=2), None)
    guard = DriftGuard(enabled=True, every_n_steps=1, probe_size=6, hold_switch=False)
    _, spy = _fit(tmp_path, student, guard)
    assert guard.decisions == [] and guard.fallback_classes == []
    assert spy.self_training == [False, False, True, True]
    assert guard.last["drift/agreement"] == 1.0 and guard.last["drift/fallback_classes"] == 0.0


def test_a_student_that_agrees_is_released_after_release_checks_in_a_row(tmp_path):
    held = DriftGuard(enabled=True, every_n_steps=1, probe_size=6)  # holds, 3 checks in a row
    _, spy = _fit(tmp_path, forced(tiny_student(backbone_stages=2), None), held, max_steps=6)
    assert [(d["step"], d["reason"]) for d in held.decisions] == [
        (2, "switch held: the first of the checks in a row"),
        (4, "switch released: the student agrees with the teacher on 3 checks in a row"),
    ]
    assert spy.self_training == [False] * 4 + [True] * 2
    at_once = DriftGuard(enabled=True, every_n_steps=1, probe_size=6, release_checks=1)
    _, spy = _fit(tmp_path / "once", forced(tiny_student(backbone_stages=2), None), at_once)
    assert [d["step"] for d in at_once.decisions] == [2] and spy.self_training[2:] == [True] * 2
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    passes = {int(r["step"]): float(r["drift/release_passes"]) for r in rows
              if r.get("drift/release_passes")}  # fmt: skip
    assert {s: p for s, p in passes.items() if s <= 4} == {2: 1.0, 3: 2.0, 4: 3.0}


def test_the_switch_waits_for_agreement_not_only_for_shares(tmp_path):
    """A student that swaps the two unseen classes keeps the teacher's shares (no collapse) but
    agrees on none of their pixels: the switch stays held."""
    student = forced(tiny_student(backbone_stages=2), None)
    swapped_forward = student.net.forward

    def forward(images):  # square where the teacher says triangle and vice versa
        return swapped_forward(images)[:, [0, 1, 3, 2]]

    student.net.forward = forward
    guard = DriftGuard(enabled=True, every_n_steps=1, probe_size=6, min_agreement=0.0)
    _, spy = _fit(tmp_path, student, guard)
    assert [(d["step"], d["reason"]) for d in guard.decisions] == [
        (2, "switch held: agreement square 0.00 < 0.9; agreement triangle 0.00 < 0.9")
    ]
    assert guard.last["drift/share/square"] == guard.last["drift/teacher_share/square"] == 0.5
    assert spy.self_training == [False] * 4 and not guard.released


def test_action_all_takes_the_teacher_for_every_candidate(tmp_path):
    student = forced(tiny_student(backbone_stages=2), SQUARE)
    guard = DriftGuard(enabled=True, every_n_steps=1, probe_size=6, action="all", hold_switch=False)
    _, spy = _fit(tmp_path, student, guard)
    assert guard.fallback_classes == [SQUARE, TRIANGLE] and len(guard.decisions) == 1
    assert spy.fallback[-1] == [SQUARE, TRIANGLE]


def test_decisions_survive_a_checkpoint_round_trip(tmp_path):
    student = forced(tiny_student(backbone_stages=2), SQUARE)
    guard = DriftGuard(enabled=True, every_n_steps=1, probe_size=6, hold_switch=False)
    trainer, _ = _fit(tmp_path / "a", student, guard)
    ckpt = tmp_path / "step4.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=False)["callbacks"]
    state = next(v for k, v in saved.items() if k.startswith("DriftGuard"))
    assert state["fallback_classes"] == [3] and state["decisions"][0]["class"] == "triangle"

    seen: list[list[int]] = []

    class AtStart(pl.Callback):
        def on_train_start(self, trainer, module):
            seen.append(list(module.teacher_classes))

    resumed = forced(tiny_student(backbone_stages=2), None)  # agrees: decides nothing new
    fresh = DriftGuard(enabled=True, every_n_steps=1, probe_size=6, hold_switch=False)
    trainer = quick_trainer(
        tmp_path / "b", max_steps=6,
        callbacks=[PseudoLabelSwitch(step=2), fresh, AtStart()],
    )  # fmt: skip
    trainer.fit(resumed, datamodule=ScenesData(n_train=8, batch_size=4), ckpt_path=ckpt)
    assert seen == [[3]]  # pushed to the student before the first resumed step
    assert fresh.decisions == guard.decisions and resumed.teacher_classes == [3]
    assert DriftGuard().state_dict() == {
        "fallback_classes": [], "decisions": [], "released": False, "passes": 0,
        "hold_start": None, "last_check": -1,
    }  # fmt: skip
    assert DriftGuard(hold_switch=False).state_dict()["released"] is True


def test_a_disabled_guard_does_nothing(tmp_path):
    student = forced(tiny_student(backbone_stages=2), SQUARE)
    guard = DriftGuard(enabled=False, every_n_steps=1)
    _fit(tmp_path, student, guard)
    assert guard.decisions == [] and guard.last == {} and student.teacher_classes == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"every_n_steps": 0}, "drift_guard.every_n_steps must be a positive integer"),
        ({"probe_size": 2.5}, "drift_guard.probe_size must be a positive integer"),
        ({"share_ratio": 1.5}, r"drift_guard.share_ratio must be a number in \[0, 1\]"),
        ({"action": "none"}, "drift_guard.action must be one of"),
        ({"release_checks": 0}, "drift_guard.release_checks must be a positive integer"),
        ({"release_agreement": 2}, r"drift_guard.release_agreement must be a number in \[0, 1\]"),
    ],
)
def test_bad_arguments_are_user_errors(kwargs, match) -> None:
    with pytest.raises(UserError, match=match):
        DriftGuard(enabled=True, **kwargs)


def test_the_guard_needs_a_student() -> None:
    with pytest.raises(UserError, match="needs a DenseClipPlus"):
        DriftGuard(enabled=True).on_train_start(None, pl.LightningModule())  # type: ignore[arg-type]


def test_fallback_targets_on_one_batch() -> None:
    student = forced(tiny_student(backbone_stages=2), SQUARE)
    target = torch.full((1, 2, 24), UNLABELLED)
    target[0, 0, 0] = 1  # a seen pixel stays
    batch = {IMAGE: torch.zeros(1, 3, 2, 24), TARGET: target,
             CANDIDATES: torch.tensor([[False, False, True, True]])}  # fmt: skip
    logits = torch.zeros(1, 4, 2, 24)
    logits[:, SQUARE] = 1.0
    student.self_training = True
    assert (student.pseudo_targets(batch, logits)[target == UNLABELLED] == SQUARE).all()
    student.teacher_classes = [TRIANGLE]
    out = student.pseudo_targets(batch, logits)
    assert out[0, 0, 0] == 1
    assert (out[0, :, 20:] == TRIANGLE).all() and (out[0, 1, :20] == SQUARE).all()


def test_after_falling_back_for_every_class_the_targets_are_the_teachers(tmp_path):
    """Once every candidate has fallen back, self-training trains on exactly the targets that
    teacher guidance (no switch) builds from the same batches."""
    guarded = forced(tiny_student(backbone_stages=2), SQUARE)
    _, spy = _fit(tmp_path / "g", guarded, DriftGuard(enabled=True, every_n_steps=1,
                  probe_size=6, action="all", hold_switch=False))  # fmt: skip
    plain = forced(tiny_student(backbone_stages=2), SQUARE)
    _, ref = _fit(tmp_path / "t", plain, DriftGuard(enabled=False), switch_step=1000)
    assert len(spy.targets) == len(ref.targets) == 4
    for got, want in zip(spy.targets, ref.targets, strict=True):
        assert torch.equal(got, want)


def test_the_switch_is_held_while_a_class_is_collapsed(tmp_path):
    """hold_switch: a student collapsed onto square at the switch keeps the teacher's labels,
    exactly the targets of a run without the switch, and never self-trains."""
    held = forced(tiny_student(backbone_stages=2), SQUARE)
    guard = DriftGuard(enabled=True, every_n_steps=1, probe_size=6, hold_switch=True)
    _, spy = _fit(tmp_path / "g", held, guard)
    assert [(d["step"], d["reason"]) for d in guard.decisions] == [
        (2, "switch held: triangle collapsed")
    ]
    assert not guard.released and guard.fallback_classes == []
    assert spy.self_training == [False] * 4
    plain = forced(tiny_student(backbone_stages=2), SQUARE)
    _, ref = _fit(tmp_path / "t", plain, DriftGuard(enabled=False), switch_step=1000)
    for got, want in zip(spy.targets, ref.targets, strict=True):
        assert torch.equal(got, want)
    rows = list(csv.DictReader(open(tmp_path / "g" / "metrics.csv")))
    held_steps = {int(r["step"]): float(r["drift/held"]) for r in rows if r.get("drift/held")}
    assert held_steps == {2: 1.0, 3: 1.0}


def test_a_held_switch_goes_through_once_the_student_recovers(tmp_path):
    """Released after 3 passing checks in a row: a student that passes once and collapses
    again starts counting anew; the count and the release survive a checkpoint."""
    student = forced(tiny_student(backbone_stages=2), SQUARE)
    plan = {4: None, 5: SQUARE, 6: None}  # after step N's batch, the student labels like this

    class Recover(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.global_step in plan:
                module.forced_class = plan[trainer.global_step]

    guard = DriftGuard(enabled=True, every_n_steps=1, probe_size=6)
    _, spy = _fit(tmp_path, student, guard, max_steps=10, callbacks_extra=[Recover()])
    assert [(d["step"], d["reason"]) for d in guard.decisions] == [
        (2, "switch held: triangle collapsed"),
        (8, "switch released: the student agrees with the teacher on 3 checks in a row"),
    ]
    assert spy.self_training == [False] * 8 + [True] * 2
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    passes = {int(r["step"]): float(r["drift/release_passes"]) for r in rows
              if r.get("drift/release_passes")}  # fmt: skip
    assert {s: p for s, p in passes.items() if s <= 8} == {
        2: 0.0, 3: 0.0, 4: 1.0, 5: 0.0, 6: 1.0, 7: 2.0, 8: 3.0}  # fmt: skip
    assert guard.released and guard.state_dict()["released"] is True
    fresh = DriftGuard(enabled=True)
    fresh.load_state_dict(guard.state_dict())
    assert fresh.released and fresh.decisions == guard.decisions


def test_held_checks_count_from_the_switch_step_and_in_either_callback_order(tmp_path):
    """Switch at step 3, checks every 2 steps: the held switch is checked at 3, 5, 7 (not at
    the multiples of 2), and holds even when the guard comes before the switch in the
    callback list (the switch sets ``self_training``, the guard ``self_training_held``)."""
    student = forced(tiny_student(backbone_stages=2), None)
    guard = DriftGuard(enabled=True, every_n_steps=2, probe_size=6)
    spy = Spy()
    trainer = quick_trainer(
        tmp_path, max_steps=9, logger=CSVLogger(tmp_path, name="", version=""),
        log_every_n_steps=1, callbacks=[guard, PseudoLabelSwitch(step=3), spy],
    )  # fmt: skip
    trainer.fit(student, datamodule=ScenesData(n_train=8, batch_size=4))
    # the guard runs first: it sees the switch one step late (4), then checks at 4, 6, 8
    assert [d["step"] for d in guard.decisions] == [4, 8]
    assert guard.decisions[1]["reason"].startswith("switch released")
    assert spy.self_training == [False] * 8 + [True]
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    logged = {int(r["step"]): float(r["train/self_training"]) for r in rows
              if r.get("train/self_training")}  # fmt: skip
    assert [logged[s] for s in range(3, 8)] == [0.0] * 5  # held: logged as not self-training

    in_order = DriftGuard(enabled=True, every_n_steps=2, probe_size=6)
    _, spy = _fit(tmp_path / "b", forced(tiny_student(backbone_stages=2), None), in_order,
                  max_steps=9, switch_step=3)  # fmt: skip
    assert [d["step"] for d in in_order.decisions] == [3, 7]
    assert spy.self_training == [False] * 7 + [True] * 2


def test_a_run_resumed_while_held_keeps_its_count(tmp_path):
    """Stopped while held after two passing checks (steps 2, 3): the resumed run releases at
    its first check (step 4). A checkpoint saved after a check it counted (a crash inside that
    step) does not count that step twice: the resumed run checks again from the next step."""
    guard = DriftGuard(enabled=True, every_n_steps=1, probe_size=6)
    trainer, _ = _fit(tmp_path / "a", forced(tiny_student(backbone_stages=2), None), guard)
    assert (guard.passes, guard.released, guard.last_check) == (2, False, 3)
    ckpt = tmp_path / "held.ckpt"
    trainer.save_checkpoint(ckpt)

    def resume(path, max_steps):
        fresh = DriftGuard(enabled=True, every_n_steps=1, probe_size=6)
        spy = Spy()
        trainer = quick_trainer(
            tmp_path / path.stem, max_steps=max_steps,
            callbacks=[PseudoLabelSwitch(step=2), fresh, spy],
        )  # fmt: skip
        trainer.fit(forced(tiny_student(backbone_stages=2), None),
                    datamodule=ScenesData(n_train=8, batch_size=4), ckpt_path=path)  # fmt: skip
        return fresh, spy

    fresh, spy = resume(ckpt, 6)
    assert [d["step"] for d in fresh.decisions] == [2, 4] and spy.self_training == [True] * 2

    blob = torch.load(ckpt, weights_only=False)  # as if saved inside step 4, after its check
    key = next(k for k in blob["callbacks"] if k.startswith("DriftGuard"))
    blob["callbacks"][key] |= {"passes": 1, "last_check": 4}
    torch.save(blob, tmp_path / "crashed.ckpt")
    fresh, spy = resume(tmp_path / "crashed.ckpt", 8)
    # step 4 already counted: checks at 5 (2 in a row) and 6 (3): released at 6, not at 5
    assert [d["step"] for d in fresh.decisions] == [2, 6]
    assert spy.self_training == [False, False, True, True]

    unheld = DriftGuard(enabled=True, hold_switch=False)  # a checkpoint cannot hold a run
    unheld.load_state_dict(blob["callbacks"][key])  # resumed with hold_switch=false
    assert unheld.released


class RankSkewedGuard(DriftGuard):
    """On process 1 the guard's own thresholds would never find a collapse (nor release a
    held switch): whatever process 1 does must then come from process 0's broadcast. Each
    process writes what it decided and trained on to ``dump/rank<N>.json``."""

    def __init__(self, dump: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dump, self.seen, self.own = Path(dump), [], []

    def check(self, pl_module, step, *, decide=True):  # what this process's thresholds say
        metrics = super().check(pl_module, step, decide=decide)
        self.own.append((list(self.collapsed), list(self.unlearned)))
        return metrics

    def on_train_start(self, trainer, pl_module):
        super().on_train_start(trainer, pl_module)
        if trainer.global_rank == 1:
            self.share_ratio, self.min_agreement, self.release_agreement = 0.0, 0.0, 1.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen.append((list(pl_module.teacher_classes), pl_module.uses_self_labels))

    def on_train_end(self, trainer, pl_module):
        path = self.dump / f"rank{trainer.global_rank}.json"
        path.write_text(
            json.dumps({"decisions": self.decisions, "seen": self.seen, "own": self.own})
        )


@pytest.mark.parametrize("hold_switch", [False, True], ids=["fallback", "hold"])
def test_under_ddp_every_process_follows_process_0(tmp_path, hold_switch):
    """trainer=ddp_sim (2 processes). Process 0 decides: without the hold a class collapses
    wherever the student's labels differ from the teacher's at all (share_ratio 1,
    min_agreement 1); with it the switch is released at the first check (nothing counts as
    collapsed or unlearned). Process 1, whose
    own thresholds would decide nothing (or hold forever), takes the same decisions and
    trains on the same labels at every step."""
    from src.train import train
    from tests.test_train import compose_train

    dump = tmp_path / "ranks"
    dump.mkdir()
    strict = 0.0 if hold_switch else 1.0
    guard = {
        "_target_": f"{__name__}.RankSkewedGuard", "dump": str(dump), "enabled": True,
        "every_n_steps": 1, "probe_size": 4, "share_ratio": strict, "min_agreement": strict,
        "hold_switch": hold_switch, "release_agreement": 0.0, "release_checks": 1,
    }  # fmt: skip
    cfg = compose_train(
        tmp_path / "run",
        "trainer=ddp_sim",
        "split=supervised",
        "data.setting=zero_shot",
        "data.unseen_classes=[square,triangle]",
        "callbacks.pseudo_label_switch.enabled=true",
        "callbacks.pseudo_label_switch.step=1",
        "trainer.max_steps=4",
        "callbacks.validation_images.num_images=0",
        "teacher=tiny_shapes",
    )  # fmt: skip  (the shipped shapes CLIP: its labels give the probe both unseen classes)
    with open_dict(cfg):
        cfg.callbacks.drift_guard = guard
    train(cfg)
    ranks = [json.loads((dump / f"rank{r}.json").read_text()) for r in (0, 1)]
    own = ranks[1].pop("own")
    ranks[0].pop("own")
    assert ranks[0] == ranks[1]
    if hold_switch:  # on its own, process 1 would have held (agreement below 1 somewhere)
        assert own[0][1]
    else:  # on its own, process 1 would never have found a collapse
        assert all(collapsed == [] for collapsed, _ in own)
    decisions, seen = ranks[0]["decisions"], ranks[0]["seen"]
    assert [s[1] for s in seen] == [False, True, True, True]  # self-training from step 1
    if hold_switch:
        assert [(d["step"], d["reason"][:15]) for d in decisions] == [(1, "switch released")]
        assert seen[-1][0] == []
    else:  # process 0's collapses (from the switch on), followed on both processes
        assert decisions and decisions[0]["step"] == 1
        for step, (fallback, _) in enumerate(seen):
            assert fallback == sorted({d["index"] for d in decisions if d["step"] <= step})
