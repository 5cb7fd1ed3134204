"""Evaluate any model with ``predict_logits(images, size)``: :class:`EvaluationModule` wraps
it for ``Trainer.test`` (progress bar, devices, DDP: the confusion matrix is summed over
processes). With sliding windows the model is asked for ``predict_logits(images, size,
windows=...)``: the one scoring path (:mod:`src.scoring`) slides, resizes, refines, reduces."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from src.batch import IMAGE, NAME, TARGET
from src.errors import UserError
from src.evaluation.metrics import SegmentationMetrics, segmentation_scores
from src.scoring import Windows


def align_logits(logits: Tensor, num_classes: int, class_offset: int) -> Tensor:
    """Bring a model's ``(B, C, H, W)`` scores into the data's class space.

    A model without background channels (the teacher, ``C = K - offset``) gets ``-inf`` for
    the ``class_offset`` leading classes; ``C = K`` is returned as it is.
    """
    channels = logits.shape[1]
    if channels == num_classes:
        return logits
    if class_offset and channels == num_classes - class_offset:
        pad = logits.new_full((logits.shape[0], class_offset, *logits.shape[2:]), float("-inf"))
        return torch.cat([pad, logits], dim=1)
    raise UserError(
        f"the model scores {channels} classes but the data has {num_classes}"
        + (f" ({class_offset} of them background)" if class_offset else ""),
        "evaluate with the data/split the model was built for",
    )


class EvaluationModule(pl.LightningModule):
    """Scores a frozen model on evaluation batches (``Trainer.test`` or ``validate``).

    After the run, ``confmat`` holds the (process-summed) confusion matrix and ``scores``
    :func:`~src.evaluation.metrics.segmentation_scores` of it.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        num_classes: int,
        class_offset: int = 0,
        unseen_indices: Sequence[int] = (),
        windows: Windows | None = None,
    ) -> None:
        super().__init__()
        if not callable(getattr(model, "predict_logits", None)):
            raise UserError(f"{type(model).__name__} has no predict_logits(images, size)")
        self.model = model
        self.model.requires_grad_(False)
        self.num_classes, self.class_offset = num_classes, class_offset
        self.unseen_indices = [int(i) for i in unseen_indices]
        self.windows = windows  #: sliding windows (``None``: the whole image)
        self.metric = SegmentationMetrics(num_classes, unseen_indices=self.unseen_indices)
        self.confmat: Tensor | None = None
        self.scores: dict[str, Tensor] | None = None

    def _step(self, batch: Mapping[str, Any]) -> None:
        target = batch[TARGET]
        names = batch.get(NAME) if getattr(self.model, "needs_image_names", False) else None
        logits = self.model_scores(batch[IMAGE], tuple(target.shape[-2:]), names=names)
        logits = align_logits(logits, self.num_classes, self.class_offset)
        self.metric.update(logits.argmax(dim=1), target)

    def model_scores(
        self, images: Tensor, size: tuple[int, int], names: Sequence[str] | None = None
    ) -> Tensor:
        """The model's (B, C, H, W) class scores of normalised ``images`` at ``size`` (over
        :attr:`windows` when set; ``names``: the images' file stems, for a teacher that reads
        its region masks by them, ``teacher.masks=precomputed``)."""
        kwargs: dict[str, Any] = {} if names is None else {"names": list(names)}
        if self.windows is None:
            return self.model.predict_logits(images, size=size, **kwargs)
        return self.model.predict_logits(images, size=size, windows=self.windows, **kwargs)

    def _finish(self) -> None:
        with self.metric.sync_context():
            self.confmat = self.metric.confmat.detach().cpu().clone()
        self.scores = segmentation_scores(self.confmat, self.unseen_indices)
        self.metric.reset()

    def on_test_epoch_start(self) -> None:
        self.model.eval()
        self.metric.reset()

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._step(batch)

    def on_test_epoch_end(self) -> None:
        self._finish()

    on_validation_epoch_start = on_test_epoch_start

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._step(batch)

    def on_validation_epoch_end(self) -> None:
        self._finish()
