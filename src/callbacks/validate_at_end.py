"""Validate (and so checkpoint) at the very last training step."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl


class ValidateAtEnd(pl.Callback):
    """Ask Lightning for a validation run after the final optimizer step.

    With an iteration-based schedule (``val_check_interval`` every N steps) the last step is
    validated only when N divides ``max_steps``. Requesting a stop at the last step makes
    Lightning validate there, so the logged ``val/*`` and ``checkpoints/last.ckpt`` are those
    of the final model, inside the same (possibly spawned) processes.
    """

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if trainer.fast_dev_run:
            return
        last_step = 0 < trainer.max_steps <= trainer.global_step
        epoch_loop = trainer.fit_loop.epoch_loop
        max_epochs = trainer.max_epochs if trainer.max_epochs is not None else -1
        last_epoch_end = (
            trainer.max_steps == -1
            and 0 < max_epochs == trainer.current_epoch + 1
            and epoch_loop.batch_progress.is_last_batch
        )
        if last_step or last_epoch_end:
            trainer.should_stop = True
