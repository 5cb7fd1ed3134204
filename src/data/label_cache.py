"""Teacher labels computed once per image, cached on disk, instead of once per crop and step.

With the switch off (annotation-free: teacher labels throughout) the teacher's labels of an
image never change, yet online labelling runs the teacher on every crop of every epoch: a heavy
head (PAMR, region masks, a DINO proxy) is paid again each epoch. :class:`TeacherLabelCache`
(opt-in, ``callbacks.teacher_label_cache.enabled=true``) labels each unlabelled training image
once, before the first step, at the evaluation scale (``data.eval_scale``, upsampled back to the
image's size), and writes it as a PNG (class indices, 255 where the teacher names no class)
atomically under ``<dirpath>/<key>/``, ``key`` a hash of the teacher, the classes, the scale and
the image folder: an interrupted fill resumes where it stopped, and later runs (other seeds)
reuse it. The training augmentation then crops and flips image and labels together.

Not the same labels as online: the teacher sees each whole image at one scale, not each
augmented crop (the ``student.train_crop`` trade-off, cheaper).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image

from src.data.base import DataFileError
from src.data.transforms import eval_transform
from src.errors import UserError
from src.utils.io import atomic_save_image

log = logging.getLogger(__name__)

NO_CLASS = 255


class CachedLabels:
    """``(index, name) -> (H, W) uint8`` cached teacher labels of one training set (picklable,
    for DataLoader workers)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.png"

    def __call__(self, index: int, name: str) -> np.ndarray:
        path = self.path(name)
        try:
            with Image.open(path) as im:
                return np.asarray(im, dtype=np.uint8)
        except (OSError, ValueError) as err:
            raise DataFileError(
                f"cached teacher labels {path} cannot be read: {err}",
                f"delete {self.folder} (it is refilled), or callbacks.teacher_label_cache.enabled=false",
            ) from None


def cache_key(pl_module: Any, dm: Any) -> str:
    """What the cached labels depend on, hashed: the teacher, the classes, the scale, the data."""
    what = {
        "teacher": pl_module.hparams.get("teacher"),
        "classes": list(pl_module.class_names),
        "teacher_names": list(getattr(pl_module.teacher, "class_names", [])),
        "scale": list(dm.eval_scale) if dm.eval_scale else None,
        "mean": list(dm.mean),
        "std": list(dm.std),
        "data": [dm.dataset, str(Path(dm.root).expanduser().resolve()), dm.train_split],
        "options": dm.dataset_options,
    }
    text = json.dumps(what, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _name(raw: Any, index: int) -> str:
    items = getattr(raw, "items", None)
    return str(items[index][0]) if items is not None else raw[index].name


@torch.no_grad()
def teacher_label(
    pl_module: Any, image: np.ndarray, transform: Any, name: str | None = None
) -> np.ndarray:
    """The teacher's (H, W) uint8 labels of one uint8 RGB image (255: no class; ``name``: its
    file stem, for precomputed region masks)."""
    h, w = image.shape[:2]
    x = transform(image=image)["image"]
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(pl_module.device)
    extra = {} if name is None else {"names": [name]}
    scores = pl_module.teacher_logits(x, size=(h, w), **extra).float()
    labels = scores.argmax(1)[0]
    labels[~torch.isfinite(scores).any(1)[0]] = NO_CLASS
    return labels.to(torch.uint8).cpu().numpy()


class TeacherLabelCache(pl.Callback):
    """Fill (or reuse) the cache before training and hand it to the training samples; see the
    module docstring. ``dirpath``: where the caches live (default
    ``<trainer.default_root_dir>/teacher_labels``)."""

    def __init__(self, enabled: bool = False, dirpath: str | None = None) -> None:
        super().__init__()
        self.enabled, self.dirpath = bool(enabled), dirpath
        self.folder: Path | None = None  #: the cache in use
        self.filled: int = 0  #: images labelled by this run (the others were cached)
        self.fill_seconds: float = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.enabled:
            return
        switches = [c for c in trainer.callbacks if getattr(c, "moves_label_schedule", False)]
        if any(getattr(c, "enabled", True) for c in switches):  # a switch to self-training
            raise UserError(
                "callbacks.teacher_label_cache needs the teacher's labels throughout, but the "
                "pseudo-label switch (self-training) is on",
                "set callbacks.pseudo_label_switch.enabled=false, or leave the cache off",
            )
        dm = trainer.datamodule
        data = dm.train_dataset()
        base = Path(self.dirpath or Path(trainer.default_root_dir) / "teacher_labels")
        self.folder = base / cache_key(pl_module, dm)
        labels = CachedLabels(self.folder)
        if trainer.is_global_zero:
            self._fill(pl_module, data.raw, labels, eval_transform(mean=dm.mean, std=dm.std,
                       scale=dm.eval_scale))  # fmt: skip
        trainer.strategy.barrier("teacher_label_cache")
        data.teacher_labels = labels

    def _fill(self, pl_module: Any, raw: Any, labels: CachedLabels, transform: Any) -> None:
        from tqdm import tqdm

        todo = [i for i in range(len(raw)) if not labels.path(_name(raw, i)).is_file()]
        log.info(
            "teacher labels: %d of %d image(s) cached in %s, %d to label",
            len(raw) - len(todo), len(raw), labels.folder, len(todo),
        )  # fmt: skip
        start = time.perf_counter()
        was_training = pl_module.training
        pl_module.eval()
        for i in tqdm(todo, desc="teacher labels", unit="img", disable=len(todo) < 2):
            sample = raw[i]
            name = sample.name if getattr(pl_module.teacher, "needs_image_names", False) else None
            mask = teacher_label(pl_module, sample.image, transform, name)
            atomic_save_image(labels.path(sample.name), Image.fromarray(mask, mode="L"))
        pl_module.train(was_training)
        self.filled, self.fill_seconds = len(todo), time.perf_counter() - start
