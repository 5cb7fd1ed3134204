"""The data module: raw dataset + background protocol + setting + augmentation -> batches.

Samples follow the batch contract of :mod:`src.batch`. Training samples carry the setting's
target (hidden pixels = 254) on an augmented crop; evaluation samples carry the image resized
per protocol and the full ground truth at the label's original size.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader, Dataset, default_collate

from src.batch import BACKGROUND, CANDIDATES, IGNORE_INDEX, IMAGE, NAME, TARGET, UNLABELLED
from src.data import datasets as _datasets  # noqa: F401  (fills the registry)
from src.data.base import DATASETS, DataFileError, RawDataset, read_label
from src.data.classnames import read_names_file
from src.data.sampling import ResumableLoader, TrainSampler, sample_seed
from src.data.splits import (
    candidate_mask,
    check_setting,
    eval_label_lut,
    target_lut,
    unseen_indices,
    validate_setting,
)
from src.data.transforms import eval_transform, reseed, train_transform
from src.errors import UserError
from src.prompts import entry_names

log = logging.getLogger(__name__)

#: CLIP's own normalisation (the default; the entry points set the model's).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def dataset_builder(name: str) -> Any:
    """The registered raw dataset builder ``name`` (importing ``src.data.<name>`` if needed)."""
    if name not in DATASETS:
        try:
            importlib.import_module(f"src.data.{name}")
        except ModuleNotFoundError:
            pass
    if name not in DATASETS:
        raise UserError(
            f"unknown dataset {name!r}", f"use one of {', '.join(sorted(DATASETS))} (data=...)"
        )
    return DATASETS[name]


class SegmentationSamples(Dataset):
    """Raw samples -> batch-contract dicts (training or evaluation flavour)."""

    def __init__(
        self,
        raw: RawDataset,
        *,
        transform: Any,
        label_lut: np.ndarray,
        hide_lut: np.ndarray | None,
        candidates: np.ndarray,
        train: bool,
        corruption: Callable[[np.ndarray, int], np.ndarray] | None = None,
        seed: int = 0,
    ) -> None:
        self.raw = raw
        self.transform = transform
        self.label_lut = label_lut
        self.hide_lut = hide_lut
        self.candidates = torch.from_numpy(candidates)
        self.train = train
        self.corruption = corruption  # eval only: (uint8 image, index) -> image, before resize
        self.seed = int(seed)  #: training augmentation: sample i of epoch e uses (seed, e, i)
        #: training, unlabelled samples: (index, name) -> cached (H, W) uint8 teacher labels
        #: (class indices, 255 none) augmented with the image instead of the teacher running on
        #: each crop (src.data.label_cache); None: the teacher labels each crop online
        self.teacher_labels: Callable[[int, str], np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """Sample ``key``: an index, or ``(index, epoch)`` from a :class:`TrainSampler`
        (training draws its augmentation from ``(seed, epoch, index)``; an index is epoch 0)."""
        index, epoch = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), 0)
        sample = self.raw[index]
        h, w = sample.image.shape[:2]
        if sample.label is None and self.train and self.teacher_labels is not None:
            label = self.teacher_labels(index, sample.name)
        elif sample.label is None:
            fill = UNLABELLED if self.train else IGNORE_INDEX
            label = np.full((h, w), fill, dtype=np.uint8)
        else:
            label = self.label_lut[sample.label]
        if self.train:
            if self.hide_lut is not None and sample.label is not None:
                label = self.hide_lut[label]
            reseed(self.transform, sample_seed(self.seed, epoch, index))
            out = self.transform(image=sample.image, mask=label)
            image, target = out["image"], out["mask"]
        else:
            raw_image = sample.image
            if self.corruption is not None:
                raw_image = self.corruption(raw_image, index)
            image, target = self.transform(image=raw_image)["image"], label
        return {
            IMAGE: torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            TARGET: torch.from_numpy(target.astype(np.int64)),
            CANDIDATES: self.candidates.clone(),
            NAME: sample.name,
        }


def _worker_init(worker_id: int) -> None:
    """Seed a DataLoader worker's Python/numpy/torch as Lightning does (the augmentation is
    seeded per sample, see :class:`SegmentationSamples`)."""
    pl_worker_init_function(worker_id)


def data_seed() -> int:
    """The seed of the training order and augmentation: ``seed_everything``'s (shared by every
    process of a run, ``PL_GLOBAL_SEED``), else 0."""
    return int(os.environ.get("PL_GLOBAL_SEED", "0"))


def _collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    image_sizes = {tuple(s[IMAGE].shape) for s in samples}
    target_sizes = {tuple(s[TARGET].shape) for s in samples}
    if len(image_sizes) > 1 or len(target_sizes) > 1:
        raise DataFileError(
            "a batch holds images of different sizes: " + ", ".join(s[NAME] for s in samples),
            "evaluate with data.val_batch_size=1 (sizes vary per image)",
        )
    return default_collate(samples)


def _split_names_file(
    entries: list[str], num_classes: int, *, count_background: bool, path: Any
) -> tuple[list[str], str | None]:
    """A names file's entries as (class entries, background entry or None)."""
    expected = num_classes + (1 if count_background else 0)
    if len(entries) != expected:
        what = "background first, then " if count_background else ""
        raise UserError(
            f"class-name file {path!r} lists {len(entries)} classes but the data has {expected} "
            f"({what}{num_classes} classes)",
            "give one line per class in label order"
            + (" (the background words first)" if count_background else ""),
        )
    if count_background:
        return entries[1:], entries[0]
    return list(entries), None


def _label_of(raw: Any, index: int) -> np.ndarray:
    """Sample ``index``'s label, from its file alone where the dataset lists files."""
    items = getattr(raw, "items", None)
    if items is not None and items[index][2] is not None:
        palette = raw.palette() if hasattr(raw, "palette") else None
        return read_label(items[index][2], max_class=raw.max_class, palette=palette)
    label = raw[index].label
    return np.zeros(0, np.uint8) if label is None else np.asarray(label)


class SegmentationDataModule(pl.LightningDataModule):
    """Segmentation data for one dataset, background protocol and training setting.

    ``class_names`` are the dataset's classes without background; ``class_names`` (the
    attribute) adds ``"background"`` first when ``count_background``. An entry may hold several
    names (``"person, person in shirt"``): the teacher scores the best of them
    (``teacher_class_names`` keeps the entries), reports and metrics show the first.
    ``names_file`` (a shipped list such as ``voc21``, or a path: one class per line) gives the
    teacher's entries instead of ``class_names``; where background is counted its first line is
    the background class's words (``teacher_background``). ``scale`` is the base
    scale of the training rescale (long, short), ``eval_scale`` the evaluation resize (None:
    keep the image as it is). ``dataset_options`` go to the raw dataset builder.
    ``corruption`` (e.g. a :class:`src.data.corruptions.Corruption`) is called as
    ``corruption(image, index)`` on each uint8 evaluation image before resize and normalisation.
    """

    def __init__(
        self,
        *,
        dataset: str,
        root: str,
        class_names: Sequence[str],
        has_background: bool | None = None,
        count_background: bool = False,
        setting: str = "supervised",
        unseen_classes: Sequence[str] = (),
        train_split: str = "train",
        val_split: str = "val",
        crop_size: int = 512,
        scale: Sequence[int] = (2048, 512),
        ratio_range: Sequence[float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        flip_prob: float = 0.5,
        photometric: bool = True,
        eval_scale: Sequence[int] | None = (2048, 512),
        batch_size: int = 16,
        val_batch_size: int = 1,
        num_workers: int = 4,
        pin_memory: bool = True,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        dataset_options: Mapping[str, Any] | None = None,
        corruption: Callable[[np.ndarray, int], np.ndarray] | None = None,
        names_file: str | None = None,
        val_root: str | None = None,
        val_layout: str = "voc",
    ) -> None:
        super().__init__()
        builder = dataset_builder(dataset)
        entries = [", ".join(entry_names(n)) for n in class_names]
        file_entries = read_names_file(names_file) if names_file else None
        if file_entries is not None and not entries:  # the file names the classes
            entries = file_entries[1:] if count_background else list(file_entries)
        names = [(entry_names(e) or [""])[0] for e in entries]
        if not names or not all(names) or len(set(names)) != len(names):
            raise UserError(
                f"data.class_names must be a non-empty list of distinct names, got {names}",
                "set data.class_names, e.g. 'data.class_names=[cat, dog, grass, sky]'",
            )
        if has_background is None:
            has_background = bool(getattr(builder, "has_background", False))
        if count_background and not has_background:
            raise UserError(
                f"dataset {dataset!r} has no background class to count",
                "set data.count_background=false",
            )
        self.dataset, self.root, self.builder = dataset, str(root), builder
        self.dataset_options = dict(dataset_options or {})
        self.corruption = corruption  # applied to evaluation images (see src.data.corruptions)
        self.has_background, self.count_background = bool(has_background), bool(count_background)
        self.setting = check_setting(setting)
        self.teacher_class_names: list[str] = entries
        #: the background class's words for the teacher (the names file's first line), or None
        self.teacher_background: str | None = None
        if file_entries is not None:
            self.teacher_class_names, self.teacher_background = _split_names_file(
                file_entries, len(names), count_background=self.count_background, path=names_file
            )
        self.class_offset = 1 if self.count_background else 0
        self.class_names: list[str] = [BACKGROUND] * self.class_offset + names
        self.num_classes = len(self.class_names)
        self.ignore_index = IGNORE_INDEX
        self.unseen_indices: list[int] = unseen_indices(list(unseen_classes), self.class_names)
        self.seen_indices = [i for i in range(self.num_classes) if i not in self.unseen_indices]
        self.has_labels = bool(getattr(builder, "has_labels", True))
        validate_setting(
            setting=self.setting,
            unseen=self.unseen_indices,
            count_background=self.count_background,
            has_labels=self.has_labels,
        )
        self.train_split, self.val_split = train_split, val_split
        self.crop_size, self.scale, self.ratio_range = crop_size, tuple(scale), tuple(ratio_range)
        self.cat_max_ratio, self.flip_prob, self.photometric = cat_max_ratio, flip_prob, photometric
        self.eval_scale = None if eval_scale is None else tuple(eval_scale)
        for key, value in (("batch_size", batch_size), ("val_batch_size", val_batch_size),
                           ("num_workers", num_workers)):  # fmt: skip
            low = 0 if key == "num_workers" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UserError(
                    f"data.{key}={value!r} is not an integer of at least {low}",
                    f"give one, e.g. data.{key}={max(low, 2)}",
                )
        self.batch_size, self.val_batch_size = batch_size, val_batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.candidates = candidate_mask(
            setting=self.setting,
            num_classes=self.num_classes,
            unseen=self.unseen_indices,
            class_offset=self.class_offset,
        )
        self.label_lut = eval_label_lut(
            has_background=self.has_background, count_background=self.count_background
        )
        self.train_set: SegmentationSamples | None = None
        self.val_set: SegmentationSamples | None = None
        #: a labelled set scored besides the (unlabelled) validation split: ``val_root`` read
        #: in the layout of dataset ``val_layout`` (:meth:`labelled_val_dataset`)
        self.val_root = None if val_root in (None, "") else str(val_root)
        self.val_layout = str(val_layout)
        self.labelled_set: SegmentationSamples | None = None
        if self.val_root is not None:  # a bad labelled set fails here, before any training
            self._labelled_raw_checked = self._labelled_raw()

    def set_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Normalise images with the model's ``mean``/``std`` (call before the data is built).

        The model is built after the data module (it needs the vocabulary), so the entry
        points hand its normalisation over here instead of building the data module twice.
        """
        if self.train_set is not None or self.val_set is not None:
            raise RuntimeError("set_normalization() must come before the datasets are built")
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)

    # -- building ---------------------------------------------------------------------------
    def build_raw(self, split: str) -> RawDataset:
        """The raw dataset of ``split``, checked against the configured class names."""
        raw = self.builder(root=self.root, split=split, **self.dataset_options)
        max_class = getattr(raw, "max_class", None)
        if max_class is not None and self.has_labels:
            expected = max_class + (0 if self.has_background else 1)
            if expected != len(self.teacher_class_names):
                raise UserError(
                    f"dataset {self.dataset!r} has {expected} classes (besides background) but "
                    f"data.class_names lists {len(self.teacher_class_names)}",
                    "give one name per class, in label order",
                )
        if len(raw) == 0:
            raise UserError(f"dataset {self.dataset!r} split {split!r} at {self.root} is empty")
        return raw

    def train_dataset(self) -> SegmentationSamples:
        """Training samples (built once)."""
        if self.train_set is None:
            transform = train_transform(
                mean=self.mean,
                std=self.std,
                crop_size=self.crop_size,
                scale=self.scale,
                ratio_range=self.ratio_range,
                cat_max_ratio=self.cat_max_ratio,
                flip_prob=self.flip_prob,
                photometric=self.photometric,
            )
            hide = target_lut(
                setting=self.setting, num_classes=self.num_classes, unseen=self.unseen_indices
            )
            self.train_set = SegmentationSamples(
                self.build_raw(self.train_split),
                transform=transform,
                label_lut=self.label_lut,
                hide_lut=hide,
                candidates=self.candidates,
                train=True,
                seed=data_seed(),
            )
        return self.train_set

    def val_dataset(self) -> SegmentationSamples:
        """Evaluation samples (built once): full ground truth at the label's size."""
        if self.val_set is None:
            if not self.has_labels:
                log.warning(
                    "dataset %r has no labels: evaluation targets are all void", self.dataset
                )
            self.val_set = SegmentationSamples(
                self.build_raw(self.val_split),
                transform=eval_transform(mean=self.mean, std=self.std, scale=self.eval_scale),
                label_lut=self.label_lut,
                hide_lut=None,
                candidates=self.candidates,
                train=False,
                corruption=self.corruption,
            )
        return self.val_set

    def _labelled_raw(self) -> RawDataset:
        """The raw labelled set at ``val_root``, checked: a missing folder or label, no
        images, or a label value beyond ``class_names`` is one line naming ``data.val_root``."""
        where = f"data.val_root={self.val_root} (data.val_layout={self.val_layout})"
        builder = dataset_builder(self.val_layout)
        if not getattr(builder, "has_labels", True):
            raise UserError(
                f"data.val_layout={self.val_layout} has no labels",
                "name the layout of the labelled set: voc, ade20k, cityscapes, context59, ...",
            )
        try:
            raw = builder(root=self.val_root, split=self.val_split)
        except UserError as err:
            raise UserError(f"{where}: {err.problem}", err.fix) from None
        if len(raw) == 0:
            raise UserError(
                f"{where}: no labelled images in split {self.val_split!r}",
                "point data.val_root at a labelled set in that layout",
            )
        background = bool(getattr(builder, "has_background", False))
        top = -1
        for index in range(len(raw)):
            try:
                label = _label_of(raw, index)
            except DataFileError as err:
                raise UserError(f"{where}: {err.problem}", err.fix) from None
            values = np.unique(label[label != IGNORE_INDEX])
            top = max(top, int(values.max()) if values.size else -1)
        if top < int(background):
            raise UserError(
                f"{where}: no labelled pixel of a class (all void"
                + (" or background" if background else "")
                + ")",
                "point data.val_root at a labelled set (class indices in the label PNGs)",
            )
        classes = len(self.teacher_class_names)
        if top - int(background) >= classes:
            first = int(background)
            raise UserError(
                f"{where}: the labels hold class value {top} but data.class_names lists "
                f"{classes} classes (label values {first}..{classes - 1 + first}"
                + (", 0 background" if background else "")
                + ")",
                "list every labelled class in data.class_names, in label order",
            )
        return raw

    def labelled_val_dataset(self) -> SegmentationSamples | None:
        """The labelled set at ``val_root`` (``None`` without one), read by the builder of
        dataset ``val_layout`` (any layout ``src.eval`` reads: ``voc``, ``ade20k``, ...; its
        ``val_split``) and scored on this data's classes, background ignored. Checked when the
        data module is built (:meth:`_labelled_raw`), before anything is trained."""
        if self.val_root is None:
            return None
        if self.labelled_set is None:
            raw = self._labelled_raw_checked
            self.labelled_set = SegmentationSamples(
                raw,
                transform=eval_transform(mean=self.mean, std=self.std, scale=self.eval_scale),
                label_lut=eval_label_lut(
                    has_background=bool(getattr(raw, "has_background", False)),
                    count_background=False,
                ),
                hide_lut=None,
                candidates=self.candidates,
                train=False,
            )
        return self.labelled_set

    def labelled_val_dataloader(self) -> DataLoader | None:
        """Batches of :meth:`labelled_val_dataset` (``None`` without ``val_root``)."""
        data = self.labelled_val_dataset()
        return None if data is None else self._eval_loader(data, batch_size=self.val_batch_size)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.train_dataset()
        if stage in (None, "fit", "validate", "test"):
            self.val_dataset()

    # -- loaders ----------------------------------------------------------------------------
    def _eval_loader(self, data: Dataset, *, batch_size: int) -> DataLoader:
        return DataLoader(
            data,
            batch_size=batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            worker_init_fn=_worker_init,
            collate_fn=_collate,
            generator=torch.Generator().manual_seed(0),  # worker seeds off the global stream
        )

    def train_dataloader(self) -> DataLoader:
        """Training batches: a seeded order and augmentation that a checkpoint resumes."""
        data = self.train_dataset()
        return ResumableLoader(
            data,
            batch_size=self.batch_size,
            sampler=TrainSampler(data, seed=data.seed),
            drop_last=len(data) >= self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            worker_init_fn=_worker_init,
            collate_fn=_collate,
            generator=torch.Generator().manual_seed(data.seed),  # not the global stream
            progress=self._train_progress,
        )

    def _train_progress(self) -> tuple[int, int]:
        """(batches of the current epoch trained, batches per epoch), from the trainer."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        done = int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)
        total = trainer.num_training_batches
        return done, int(total) if total != float("inf") else 2**62

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_dataset(), batch_size=self.val_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
