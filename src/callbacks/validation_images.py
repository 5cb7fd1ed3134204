"""Write a few validation predictions as ``image | teacher | student | ground truth`` PNGs.

Colours: the PASCAL palette of the class index (the data module's ``class_names`` order);
predictions on pixels the metric ignores (void) are shown faded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image

from src.batch import IGNORE_INDEX, IMAGE, NAME, TARGET
from src.data.base import pascal_palette
from src.errors import UserError
from src.utils.io import atomic_save_image

PALETTE = pascal_palette(256)


def colourise(labels: np.ndarray) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 with the PASCAL palette (255 = void colour)."""
    return PALETTE[np.clip(labels, 0, 255).astype(np.uint8)]


def denormalise(image: torch.Tensor, mean: Any, std: Any) -> np.ndarray:
    """(3, H, W) normalised tensor -> (H, W, 3) uint8."""
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    rgb = (image.detach().float().cpu() * s + m).clamp(0, 1)
    return (rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def panel(
    image: np.ndarray, *labels: np.ndarray, gap: int = 4, void: np.ndarray | None = None
) -> np.ndarray:
    """Side by side: the image (resized to the labels' size) then each colourised label map.

    ``void``: (H, W) bool, pixels the metric ignores; predictions there are shown faded.
    """
    h, w = labels[0].shape
    if image.shape[:2] != (h, w):
        image = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    sep = np.full((h, gap, 3), 255, dtype=np.uint8)
    parts = [image]
    for lab in labels:
        pic = colourise(lab)
        if void is not None:
            fade = void & (lab != IGNORE_INDEX)  # the truth's own void keeps its colour
            pic = np.where(fade[..., None], pic // 2 + 128, pic).astype(np.uint8)
        parts += [sep, pic]
    return np.concatenate(parts, axis=1)


class ValidationImages(pl.Callback):
    """Save the first ``num_images`` validation samples of every validation run.

    Files: ``<dirpath>/step<global step>_<name>.png`` (default ``dirpath``:
    ``<trainer.default_root_dir>/val_images``); also sent to TensorBoard when it logs.
    Needs a module with ``predict_logits``, ``teacher_logits`` and ``teacher.mean/std``.
    """

    def __init__(self, num_images: int = 4, dirpath: str | None = None) -> None:
        super().__init__()
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 0:
            raise UserError(
                f"validation_images.num_images must be a non-negative integer, got {num_images!r}"
            )
        self.num_images = num_images
        self.dirpath = dirpath
        self._written = 0
        self.paths: list[Path] = []  #: files written by the last validation run

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._written = 0
        self.paths = []

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or dataloader_idx != 0:
            return
        left = self.num_images - self._written
        if left <= 0:
            return
        images, target = batch[IMAGE][:left], batch[TARGET][:left]
        names = list(batch.get(NAME, []))[:left]
        size = target.shape[-2:]
        with torch.no_grad():
            student = pl_module.predict_logits(images, size).argmax(1).cpu().numpy()
            teacher = pl_module.teacher_logits(images, size).argmax(1).cpu().numpy()
        truth = target.cpu().numpy()
        mean, std = pl_module.teacher.mean, pl_module.teacher.std
        folder = Path(self.dirpath or Path(trainer.default_root_dir) / "val_images")
        for i in range(images.shape[0]):
            name = str(names[i]) if i < len(names) else f"{self._written:03d}"
            void = truth[i] == IGNORE_INDEX  # predictions there are not scored: faded
            pic = panel(
                denormalise(images[i], mean, std), teacher[i], student[i], truth[i], void=void
            )
            path = folder / f"step{trainer.global_step:06d}_{name}.png"
            self.paths.append(atomic_save_image(path, Image.fromarray(pic)))
            for logger in trainer.loggers:
                exp = getattr(logger, "experiment", None)
                if hasattr(exp, "add_image"):
                    exp.add_image(f"val_images/{name}", pic, trainer.global_step, dataformats="HWC")
            self._written += 1
