"""The switch from teacher pseudo labels to self-training (the paper's Algorithm 1)."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytorch_lightning as pl

from src.errors import UserError

log = logging.getLogger(__name__)


class PseudoLabelSwitch(pl.Callback):
    """Swap the teacher's labels for the student's own after a share of the training steps.

    The switch happens before the optimizer step ``switch_step`` (0-based): ``step`` when
    given, else ``round(fraction * trainer.estimated_stepping_batches)`` (the paper: 10%).
    ``enabled=False`` never switches (annotation-free, as in the paper). The resolved step and
    whether it happened are stored in checkpoints, so a resumed run continues in its phase.
    Logs ``train/self_training`` (0 or 1) at every logged step. It only moves the student's
    :class:`~src.student.schedule.LabelSchedule` (``switch``).
    """

    moves_label_schedule = True  #: the student warns when no callback does

    def __init__(
        self, fraction: float = 0.1, step: int | None = None, enabled: bool = True
    ) -> None:
        super().__init__()
        if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
            raise UserError(
                f"pseudo_label_switch.step must be a non-negative integer or null, got {step!r}",
                "give the optimizer step at which self-training starts, or null to use fraction",
            )
        if step is None and (
            isinstance(fraction, bool)
            or not isinstance(fraction, int | float)
            or not 0.0 <= float(fraction) <= 1.0
        ):
            raise UserError(
                f"pseudo_label_switch.fraction must be a number in [0, 1], got {fraction!r}",
                "use e.g. 0.1 (the paper: self-training after 10% of the steps)",
            )
        self.fraction = float(fraction)
        self.step = step
        self.enabled = bool(enabled)
        self.switch_step: int | None = None  #: resolved at the start of training
        self.switched = False

    @staticmethod
    def _check_module(pl_module: pl.LightningModule) -> None:
        if not hasattr(pl_module, "label_schedule"):
            raise UserError(
                f"PseudoLabelSwitch needs a DenseClipPlus student, got {type(pl_module).__name__}",
                "remove callbacks.pseudo_label_switch or train a DenseClipPlus",
            )

    def resolve(self, trainer: pl.Trainer) -> int | None:
        """The optimizer step at which self-training starts (``None``: never)."""
        if not self.enabled:
            return None
        if self.step is not None:
            return self.step
        total = trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise UserError(
                "PseudoLabelSwitch cannot take a fraction of an endless run",
                "set trainer.max_steps (or max_epochs), or callbacks.pseudo_label_switch.step",
            )
        return int(round(self.fraction * total))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check_module(pl_module)
        if self.switch_step is None:
            self.switch_step = self.resolve(trainer)
            if self.switch_step is not None:
                log.info("self-training starts at step %d", self.switch_step)
        pl_module.label_schedule.switch(self.switched)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if (
            not self.switched
            and self.switch_step is not None
            and trainer.global_step >= self.switch_step
        ):
            self.switched = True
            log.info("step %d: switching to self-training", trainer.global_step)
        schedule = pl_module.label_schedule
        schedule.switch(self.switched)
        pl_module.log(
            "train/self_training", float(schedule.self_labels), on_step=True, on_epoch=False
        )

    def state_dict(self) -> dict[str, Any]:
        return {"switch_step": self.switch_step, "switched": self.switched}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.switch_step = state_dict.get("switch_step", self.switch_step)
        self.switched = bool(state_dict.get("switched", False))
