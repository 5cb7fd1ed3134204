"""A guard against self-training drift: the student's own labels watched against the teacher's.

Self-training (the paper's switch to the student's own labels after 10% of the steps) can
drift with a weak teacher: a class's share of the self labels shrinks step after step until
the student never predicts it. :class:`DriftGuard` (opt-in, ``callbacks.drift_guard``) labels a
fixed probe set every ``every_n_steps`` steps once self-training is due and compares the
student's labels with the teacher's on the probe's unlabelled pixels (``drift/*``). By default
it first holds the switch until the student has learned its teacher (every watched class's
agreement at least ``release_agreement`` on ``release_checks`` checks in a row:
the student's :class:`~src.student.schedule.LabelSchedule` ``hold``): self-training refines a student
that reproduces its teacher, never one still learning it. After the release, when a class
collapses, the student takes the teacher's labels for that class (or every class) from then on
(its ``fall_back`` classes).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import default_collate

from src.batch import CANDIDATES, IGNORE_INDEX, IMAGE, TARGET, UNLABELLED
from src.errors import UserError
from src.student.targets import build_targets

log = logging.getLogger(__name__)

ACTIONS = ("class", "all")


def label_statistics(student: Tensor, teacher: Tensor, num_classes: int) -> dict[str, Tensor]:
    """Pixel shares and agreement of two label maps over the pixels both label.

    ``student`` and ``teacher``: int64 label maps of one shape (void 255 anywhere is left out).
    Returns ``student_share``, ``teacher_share`` ((num_classes,) fractions of the counted
    pixels), ``agreement`` ((num_classes,): of the pixels the teacher gives class c, the
    fraction the student gives c too; NaN where the teacher gives c none) and
    ``agreement_all`` (the fraction of equal labels).
    """
    valid = (student != IGNORE_INDEX) & (teacher != IGNORE_INDEX)
    s, t = student[valid], teacher[valid]
    total = max(int(valid.sum()), 1)
    s_count = torch.bincount(s, minlength=num_classes)[:num_classes].float()
    t_count = torch.bincount(t, minlength=num_classes)[:num_classes].float()
    same = torch.bincount(t[s == t], minlength=num_classes)[:num_classes].float()
    agreement = torch.where(t_count > 0, same / t_count.clamp(min=1), torch.nan)
    return {
        "student_share": s_count / total,
        "teacher_share": t_count / total,
        "agreement": agreement,
        "agreement_all": torch.tensor(float((s == t).sum()) / total),
    }


class DriftGuard(pl.Callback):
    """Watch self-training on a fixed probe set; fall back to the teacher where it drifts.

    The probe is the first ``probe_size`` samples of the training set, as the data module
    draws them at epoch 0 (its augmentation is a function of the seed and the index, so a
    resumed run rebuilds the same probe); the teacher labels its unlabelled pixels once. Every
    ``every_n_steps`` optimizer steps while self-training, the student (EMA weights when it
    takes its self labels from them) labels the probe in eval mode, and for each candidate
    class c the guard logs ``drift/share/<c>`` (the student's pixel share),
    ``drift/teacher_share/<c>``, ``drift/agreement/<c>`` (of the teacher's c pixels, the share
    the student also calls c), ``drift/agreement``, ``drift/entropy`` (the student's mean
    normalised entropy over the candidates) and ``drift/fallback_classes``.

    A class collapses when the teacher gives it at least ``min_teacher_share`` of the probe's
    unlabelled pixels and the student's share falls below ``share_ratio`` times the teacher's,
    or its agreement falls below ``min_agreement``. Then ``action='class'`` makes the student
    take the teacher's label on every unlabelled pixel the teacher gives that class;
    ``action='all'`` takes the teacher's labels everywhere (self-training undone). Decisions
    are permanent, logged, kept in :meth:`state_dict` (a resumed run keeps them) and taken on
    process 0 and broadcast (every DDP process acts alike). ``enabled=False`` does nothing
    (the paper's experiments).

    ``hold_switch=True`` (the default) also checks *before* letting the switch through: from the
    step self-training is due, the student keeps the teacher's labels (``drift/held`` 1) until
    it has learned them: on ``release_checks`` consecutive checks (at that step, then every
    ``every_n_steps`` steps) no class is collapsed and, of every watched class's teacher
    pixels, at least ``release_agreement`` get the same label from the student. Then the switch
    goes through (a decision, logged and kept). A student that never reproduces its teacher
    never self-trains (it trains on exactly teacher guidance's targets).
    ``release_agreement=0, release_checks=1``: let it through at the first check where no
    class is collapsed. Measured in docs/ABLATIONS.md.
    """

    def __init__(
        self,
        enabled: bool = False,
        every_n_steps: int = 10,
        probe_size: int = 32,
        share_ratio: float = 0.5,
        min_agreement: float = 0.25,
        min_teacher_share: float = 0.02,
        action: str = "class",
        hold_switch: bool = True,
        release_agreement: float = 0.9,
        release_checks: int = 3,
    ) -> None:
        super().__init__()
        for name, value, example in (
            ("every_n_steps", every_n_steps, 10),
            ("probe_size", probe_size, 32),
            ("release_checks", release_checks, 3),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(
                    f"drift_guard.{name} must be a positive integer, got {value!r}",
                    f"set callbacks.drift_guard.{name} to e.g. {example}",
                )
        for name, value in (
            ("share_ratio", share_ratio),
            ("min_agreement", min_agreement),
            ("min_teacher_share", min_teacher_share),
            ("release_agreement", release_agreement),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise UserError(
                    f"drift_guard.{name} must be a number in [0, 1], got {value!r}",
                    f"set callbacks.drift_guard.{name} to a fraction",
                )
        if action not in ACTIONS:
            raise UserError(
                f"drift_guard.action must be one of {list(ACTIONS)}, got {action!r}",
                "use class (teacher labels for the collapsed class) or all",
            )
        self.enabled = bool(enabled)
        self.every_n_steps = int(every_n_steps)
        self.probe_size = int(probe_size)
        self.share_ratio = float(share_ratio)
        self.min_agreement = float(min_agreement)
        self.min_teacher_share = float(min_teacher_share)
        self.action = action
        self.hold_switch = bool(hold_switch)
        self.release_agreement = float(release_agreement)
        self.release_checks = int(release_checks)
        #: the switch went through (with ``hold_switch``, once the student learned the teacher)
        self.released = not self.hold_switch
        #: consecutive passing checks while the switch is held
        self.passes = 0
        self.hold_start: int | None = None  #: the step the held switch was first due
        self.last_check: int = -1  #: the step of the last check while held (not counted twice)
        #: classes (data-module indices) whose unlabelled pixels take the teacher's label
        self.fallback_classes: list[int] = []
        #: every decision: ``{"step", "class", "reason", "share", "teacher_share", "agreement"}``
        self.decisions: list[dict[str, Any]] = []
        self.last: dict[str, float] = {}  #: the metrics of the last check
        self.collapsed: list[str] = []  #: the classes the last check found collapsed
        #: the last check's watched classes whose agreement is below ``release_agreement``
        self.unlearned: list[str] = []
        self._probe: dict[str, Tensor] | None = None
        self._teacher_labels: Tensor | None = None

    # ------------------------------------------------------------------ probe
    def _build_probe(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loader = trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        if dataset is None:
            raise UserError(
                "the drift guard needs a training DataLoader with a dataset to draw its probe",
                "disable callbacks.drift_guard or train from a data module",
            )
        n = min(self.probe_size, len(dataset))
        collate = getattr(loader, "collate_fn", None) or default_collate
        batch = collate([dataset[i] for i in range(n)])
        probe = {k: batch[k].to(pl_module.device) for k in (IMAGE, TARGET, CANDIDATES)}
        if not bool((probe[TARGET] == UNLABELLED).any()):
            log.warning("drift guard: the probe has no unlabelled pixel; nothing to watch")
        with torch.no_grad():
            scores = pl_module.teacher_logits(probe[IMAGE], size=probe[TARGET].shape[-2:])
        self._probe = probe
        self._teacher_labels = self._unlabelled_only(
            build_targets(probe[TARGET], probe[CANDIDATES], scores), probe[TARGET]
        )

    @staticmethod
    def _unlabelled_only(labels: Tensor, target: Tensor) -> Tensor:
        return labels.masked_fill(target != UNLABELLED, IGNORE_INDEX)

    @torch.no_grad()
    def _student_scores(self, pl_module: Any) -> Tensor:
        """The student's probe logits from the weights its self labels come from, eval mode."""
        assert self._probe is not None
        use_ema = pl_module.ema is not None and pl_module.hparams.get("ema_self_labels")
        net = pl_module.ema.module if use_ema else pl_module.net
        was_training = net.training
        net.eval()
        try:
            images, target = self._probe[IMAGE], self._probe[TARGET]
            logits = net(images)
            return torch.nn.functional.interpolate(
                logits, size=target.shape[-2:], mode="bilinear", align_corners=False
            ).float()
        finally:
            net.train(was_training)

    # ------------------------------------------------------------------ checks
    def check(self, pl_module: Any, step: int, *, decide: bool = True) -> dict[str, float]:
        """Label the probe with the student, compare with the teacher, decide; the metrics.

        ``decide=False`` only measures: the classes that count as collapsed are left in
        :attr:`collapsed` and no fallback is taken."""
        if self._probe is None or self._teacher_labels is None:
            raise RuntimeError("the drift guard's probe is built when training starts")
        probe, teacher = self._probe, self._teacher_labels
        scores = self._student_scores(pl_module)
        student = self._unlabelled_only(
            build_targets(probe[TARGET], probe[CANDIDATES], scores), probe[TARGET]
        )
        num_classes = scores.shape[1]
        classes = sorted(int(c) for c in probe[CANDIDATES].any(dim=0).nonzero().flatten())
        stats = label_statistics(student, teacher, num_classes)
        names = list(getattr(pl_module, "class_names", [])) or [str(c) for c in range(num_classes)]
        cand = probe[CANDIDATES].to(torch.bool)
        masked = scores.masked_fill(~cand[:, :, None, None], float("-inf"))
        prob = masked.softmax(dim=1)
        ent = -(prob * prob.clamp(min=1e-12).log()).sum(dim=1)
        unl = probe[TARGET] == UNLABELLED
        k = max(int(cand.sum(dim=1).max()), 2)
        entropy = float(ent[unl].mean() / math.log(k)) if bool(unl.any()) else 0.0

        metrics: dict[str, float] = {
            "drift/agreement": float(stats["agreement_all"]),
            "drift/entropy": entropy,
        }
        new: list[dict[str, Any]] = []
        unlearned: list[str] = []
        for c in classes:
            share, t_share = float(stats["student_share"][c]), float(stats["teacher_share"][c])
            agree = float(stats["agreement"][c])
            metrics[f"drift/share/{names[c]}"] = share
            metrics[f"drift/teacher_share/{names[c]}"] = t_share
            if not math.isnan(agree):
                metrics[f"drift/agreement/{names[c]}"] = agree
            if c in self.fallback_classes or t_share < self.min_teacher_share:
                continue
            reason = None
            if share < self.share_ratio * t_share:
                reason = f"share {share:.3f} < {self.share_ratio} x teacher's {t_share:.3f}"
            elif not math.isnan(agree) and agree < self.min_agreement:
                reason = f"agreement {agree:.3f} < {self.min_agreement}"
            if reason is None and not math.isnan(agree) and agree < self.release_agreement:
                unlearned.append(f"{names[c]} {agree:.2f}")
            if reason is not None:
                new.append({"step": int(step), "class": names[c], "index": c, "reason": reason,
                            "share": share, "teacher_share": t_share, "agreement": agree})  # fmt: skip
        self.collapsed = [d["class"] for d in new]
        self.unlearned = unlearned
        if new and decide:
            targets = classes if self.action == "all" else [d["index"] for d in new]
            self.fallback_classes = sorted(set(self.fallback_classes) | set(targets))
            self.decisions.extend(new)
            for d in new:
                log.warning(
                    "drift guard, step %d: class %s collapsed (%s); teacher labels for %s",
                    step,
                    d["class"],
                    d["reason"],
                    "every class" if self.action == "all" else d["class"],
                )
        metrics["drift/fallback_classes"] = float(len(self.fallback_classes))
        self.last = metrics
        return metrics

    # ------------------------------------------------------------------ Lightning hooks
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.enabled:
            return
        if not hasattr(pl_module, "label_schedule"):
            raise UserError(
                f"the drift guard needs a DenseClipPlus student, got {type(pl_module).__name__}",
                "remove callbacks.drift_guard or train a DenseClipPlus",
            )
        self._build_probe(trainer, pl_module)
        schedule = pl_module.label_schedule  # the student's; the guard only moves it
        schedule.fall_back(self.fallback_classes)  # restored on resume
        schedule.hold(not self.released)  # whichever callback runs first

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self.enabled or not pl_module.label_schedule.switched:
            return
        step = trainer.global_step
        if not self.released:  # the switch is due: held until the student has learned the teacher
            self._hold_or_release(trainer, pl_module, step)
            pl_module.label_schedule.hold(not self.released)
            return
        if step % self.every_n_steps:
            return
        metrics = self.check(pl_module, step)
        state = trainer.strategy.broadcast(
            (self.fallback_classes, self.decisions), src=0
        )  # process 0 decides for all
        self.fallback_classes, self.decisions = list(state[0]), list(state[1])
        pl_module.label_schedule.fall_back(self.fallback_classes)
        pl_module.log_dict(metrics, on_step=True, on_epoch=False)

    def _hold_or_release(self, trainer: pl.Trainer, pl_module: Any, step: int) -> None:
        """Self-training is due: check the probe (at once, then every ``every_n_steps``) and
        let the switch through after ``release_checks`` passing checks in a row."""
        first = self.hold_start is None
        if first:
            self.hold_start = step
        if (step - self.hold_start) % self.every_n_steps or step <= self.last_check:
            return  # not a check step, or already counted (a run resumed at this step)
        self.last_check = step
        metrics = self.check(pl_module, step, decide=False)
        passed = not self.collapsed and not self.unlearned
        why = [f"{c} collapsed" for c in self.collapsed] + [
            f"agreement {u} < {self.release_agreement}" for u in self.unlearned
        ]
        self.passes, released, why = trainer.strategy.broadcast(
            (
                self.passes + 1 if passed else 0,
                self.passes + 1 >= self.release_checks and passed,
                why,
            ),
            src=0,
        )  # process 0 decides for all
        if released:
            self.released = True
            self.decisions.append({"step": int(step), "class": None, "index": None,
                                   "reason": f"switch released: the student agrees with the "
                                             f"teacher on {self.passes} checks in a row"})  # fmt: skip
            log.info(
                "drift guard, step %d: the student has learned the teacher; self-training starts",
                step,
            )
        elif first:
            self.decisions.append({"step": int(step), "class": None, "index": None,
                                   "reason": "switch held: " + ("; ".join(why) or
                                             "the first of the checks in a row")})  # fmt: skip
            log.warning(
                "drift guard, step %d: holding the switch to self-training (%s); teacher labels "
                "until the student agrees with them on %d checks in a row",
                step,
                "; ".join(why) or "it agrees, on the first of the checks",
                self.release_checks,
            )
        metrics["drift/held"] = 0.0 if released else 1.0
        metrics["drift/release_passes"] = float(self.passes)
        pl_module.log_dict(metrics, on_step=True, on_epoch=False)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.enabled and self.hold_switch and not self.released and self.decisions:
            log.warning(
                "drift guard: the switch was held to the end (the student never agreed with the "
                "teacher on %d checks in a row): this run trained on the teacher's labels only",
                self.release_checks,
            )

    def state_dict(self) -> dict[str, Any]:
        return {
            "fallback_classes": list(self.fallback_classes),
            "decisions": list(self.decisions),
            "released": self.released,
            "passes": self.passes,
            "hold_start": self.hold_start,
            "last_check": self.last_check,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.fallback_classes = [int(c) for c in state_dict.get("fallback_classes", [])]
        self.decisions = [dict(d) for d in state_dict.get("decisions", [])]
        # a run resumed with hold_switch=false is not held by its checkpoint
        self.released = bool(state_dict.get("released", False)) or not self.hold_switch
        self.passes = int(state_dict.get("passes", 0))
        start = state_dict.get("hold_start")
        self.hold_start = None if start is None else int(start)
        self.last_check = int(state_dict.get("last_check", -1))
