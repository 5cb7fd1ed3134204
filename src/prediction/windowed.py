"""A model scored over sliding windows, for evaluation under a protocol that slides windows.

:class:`WindowedModel` gives any :class:`~src.prediction.predictor.Predictor` the
``predict_logits(images, size)`` that :class:`~src.evaluation.module.EvaluationModule` calls:
per image, the scorer's scores averaged over ``window`` crops every ``stride`` pixels
(:func:`~src.prediction.windows.sliding_window_logits`, the one implementation), resized
bilinearly to ``size``, then reduced to class scores (a teacher's names -> classes and its
background channel) -- the training-free papers' order: slide, resize to the original size,
then softmax, best name, threshold.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from src.prediction.predictor import Predictor
from src.prediction.windows import sliding_window_logits


class WindowedModel(nn.Module):
    """``predictor.model`` evaluated over sliding windows (the model stays a submodule, so
    moving this module moves it)."""

    def __init__(
        self, predictor: Predictor, *, window: int, stride: int, window_batch: int = 8
    ) -> None:
        super().__init__()
        if window <= 0 or stride <= 0 or stride > window:
            raise ValueError(f"need 0 < stride <= window, got window={window}, stride={stride}")
        if not isinstance(predictor.model, nn.Module):
            raise TypeError("the predictor must wrap an nn.Module model")
        self.model = predictor.model
        self.predictor = predictor
        self.window, self.stride, self.window_batch = int(window), int(stride), int(window_batch)

    @torch.no_grad()
    def predict_logits(
        self, images: torch.Tensor, size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """(B, 3, h, w) normalised images -> (B, C, H, W) class scores at ``size``."""
        out = []
        for image in images:
            scores = sliding_window_logits(
                self.predictor.scorer,
                image[None],
                window=self.window,
                stride=self.stride,
                batch_size=self.window_batch,
            )
            if size is not None and tuple(scores.shape[-2:]) != tuple(size):
                scores = F.interpolate(
                    scores, size=tuple(size), mode="bilinear", align_corners=False
                )
            out.append(scores if self.predictor.reduce is None else self.predictor.reduce(scores))
        return torch.cat(out)
