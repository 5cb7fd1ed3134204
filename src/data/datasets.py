"""Raw datasets in the layouts MMSegmentation users already have (see ``conf/data/*.yaml``).

Each builder takes ``root`` and ``split`` (plus options) and returns a :class:`RawDataset`
whose labels keep the dataset's own convention: VOC and PASCAL Context use 0 for background
and 1..K for classes, COCO-Stuff uses 0..170 for classes; 255 is void everywhere. Missing
folders, missing files, unreadable files, size mismatches and out-of-range label values are
:class:`~src.errors.UserError` s naming the path and the fix.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from src.data.base import (
    RawSample,
    check_same_size,
    read_image,
    read_label,
    register_dataset,
)
from src.errors import UserError
from src.pictures.palette import pascal_palette
from src.utils.images import IMAGE_SUFFIXES

log = logging.getLogger(__name__)


class PairedDataset:
    """Image files with optional label files, decoded on access."""

    has_background: bool = False  #: label 0 is background (VOC, Context)
    has_labels: bool = True  #: samples carry labels
    max_class: int = 0  #: the largest valid class value in the label files

    def __init__(self, items: list[tuple[str, Path, Path | None]]) -> None:
        self.items = items  # (name, image path, label path or None)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> RawSample:
        name, image_path, label_path = self.items[index]
        image = read_image(image_path)
        label = None
        if label_path is not None:
            label = read_label(label_path, max_class=self.max_class, palette=self.palette())
            check_same_size(image, label, image_path, label_path)
        return RawSample(image=image, label=label, name=name)

    def palette(self) -> np.ndarray | None:
        """Colours for decoding RGB label files (None: RGB labels are an error)."""
        return None


def _require_dir(path: Path, what: str, prepare: str) -> None:
    if not path.is_dir():
        raise UserError(
            f"{what} not found: looked for the folder {path}",
            f"{prepare}; or point data.root at the folder that holds it",
        )


def _read_list(path: Path, prepare: str) -> list[str]:
    if not path.is_file():
        raise UserError(f"split list not found: looked for {path}", prepare)
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise UserError(f"split list {path} is empty", prepare)
    return ids


def _files(folder: Path) -> set[str]:
    return set(os.listdir(folder)) if folder.is_dir() else set()


def _missing_error(kind: str, path: Path, count: int, listed_in: Path) -> UserError:
    more = f" ({count - 1} more entries are missing files too)" if count > 1 else ""
    return UserError(
        f"{kind} missing: {path}, listed in {listed_in}{more}",
        "re-run the preparation script, or remove the entries from the list",
    )


VOC_PREPARE = (
    "download VOC2012 (and SBD for the aug split) and run "
    "`python scripts/prepare_voc_aug.py --devkit <VOCdevkit> --sbd <benchmark_RELEASE>`"
)


@register_dataset("voc")
class VOCDataset(PairedDataset):
    """PASCAL VOC 2012 (``root`` = ``VOCdevkit/VOC2012``), optionally with SBD's aug labels.

    ``split="aug"`` is MMSegmentation's 10,582-image training set: the ids of ``train.txt``
    plus ``aug.txt`` (and ``trainaug.txt`` when present), minus ``val.txt``. Labels come from
    ``SegmentationClass/<id>.png`` when it exists, else ``SegmentationClassAug/<id>.png``.
    Without an aug list, ``aug`` falls back to ``train`` with a warning.
    """

    has_background = True
    max_class = 20

    def __init__(self, *, root: str | os.PathLike, split: str) -> None:
        root = Path(root)
        _require_dir(root, "PASCAL VOC 2012 root", VOC_PREPARE)
        _require_dir(root / "JPEGImages", "PASCAL VOC images", VOC_PREPARE)
        lists = root / "ImageSets" / "Segmentation"
        if split == "aug":
            ids = _read_list(lists / "train.txt", VOC_PREPARE)
            aug_lists = [lists / n for n in ("aug.txt", "trainaug.txt") if (lists / n).is_file()]
            if not aug_lists:
                log.warning("no %s: training on VOC train.txt only", lists / "aug.txt")
            val = set(_read_list(lists / "val.txt", VOC_PREPARE)) if aug_lists else set()
            for path in aug_lists:
                ids += _read_list(path, VOC_PREPARE)
            ids = [i for i in dict.fromkeys(ids) if i not in val]
            list_path = aug_lists[0] if aug_lists else lists / "train.txt"
        else:
            list_path = lists / f"{split}.txt"
            ids = _read_list(list_path, VOC_PREPARE)
        images = _files(root / "JPEGImages")
        seg, aug = _files(root / "SegmentationClass"), _files(root / "SegmentationClassAug")
        items, missing = [], []
        for i in ids:
            image_path = root / "JPEGImages" / f"{i}.jpg"
            if f"{i}.png" in seg:
                label_path = root / "SegmentationClass" / f"{i}.png"
            else:
                label_path = root / "SegmentationClassAug" / f"{i}.png"
            if f"{i}.jpg" not in images:
                missing.append(("image", image_path))
            elif f"{i}.png" not in seg and f"{i}.png" not in aug:
                missing.append(("label", root / "SegmentationClass" / f"{i}.png"))
            items.append((i, image_path, label_path))
        if missing:
            raise _missing_error(*missing[0], len(missing), list_path)
        super().__init__(items)

    def palette(self) -> np.ndarray:
        return pascal_palette()


CONTEXT_PREPARE = (
    "download VOC2010 and PASCAL Context's trainval annotations and run "
    "`python scripts/prepare_pascal_context.py --devkit <VOCdevkit> --annotations <trainval>`"
)


@register_dataset("context59")
@register_dataset("context60")
class ContextDataset(PairedDataset):
    """PASCAL Context (``root`` = ``VOCdevkit/VOC2010``): labels 0..59, 0 = background.

    The same files serve Context-59 (background not counted) and Context-60 (counted); the
    data module applies the protocol.
    """

    has_background = True
    max_class = 59

    def __init__(self, *, root: str | os.PathLike, split: str) -> None:
        root = Path(root)
        _require_dir(root, "PASCAL Context (VOC2010) root", CONTEXT_PREPARE)
        _require_dir(root / "JPEGImages", "VOC2010 images", CONTEXT_PREPARE)
        _require_dir(root / "SegmentationClassContext", "PASCAL Context labels", CONTEXT_PREPARE)
        list_path = root / "ImageSets" / "SegmentationContext" / f"{split}.txt"
        ids = _read_list(list_path, CONTEXT_PREPARE)
        images, labels = _files(root / "JPEGImages"), _files(root / "SegmentationClassContext")
        items, missing = [], []
        for i in ids:
            image_path = root / "JPEGImages" / f"{i}.jpg"
            label_path = root / "SegmentationClassContext" / f"{i}.png"
            if f"{i}.jpg" not in images:
                missing.append(("image", image_path))
            elif f"{i}.png" not in labels:
                missing.append(("label", label_path))
            items.append((i, image_path, label_path))
        if missing:
            raise _missing_error(*missing[0], len(missing), list_path)
        super().__init__(items)


COCO_PREPARE = (
    "download COCO 2017 images and stuffthingmaps_trainval2017 and run "
    "`python scripts/prepare_coco_stuff.py --root <coco_stuff164k>`"
)


@register_dataset("cocostuff171")
class CocoStuffDataset(PairedDataset):
    """COCO-Stuff 164k (``root`` = ``coco_stuff164k``): labels 0..170, 255 = unlabeled.

    Every ``images/<split>2017/*.jpg`` is a sample; its label is
    ``annotations/<split>2017/<stem>_labelTrainIds.png``.
    """

    has_background = False
    max_class = 170

    def __init__(self, *, root: str | os.PathLike, split: str) -> None:
        root = Path(root)
        folder = split if split.endswith("2017") else f"{split}2017"
        _require_dir(root, "COCO-Stuff 164k root", COCO_PREPARE)
        image_dir, label_dir = root / "images" / folder, root / "annotations" / folder
        _require_dir(image_dir, "COCO-Stuff images", COCO_PREPARE)
        _require_dir(label_dir, "COCO-Stuff labels", COCO_PREPARE)
        labels = _files(label_dir)
        names = sorted(f for f in os.listdir(image_dir) if f.lower().endswith(".jpg"))
        if not names:
            raise UserError(f"no .jpg images in {image_dir}", COCO_PREPARE)
        items, missing = [], []
        for fname in names:
            stem = fname.rsplit(".", 1)[0]
            label_name = f"{stem}_labelTrainIds.png"
            if label_name not in labels:
                missing.append(("label", label_dir / label_name))
            items.append((stem, image_dir / fname, label_dir / label_name))
        if missing:
            raise _missing_error(*missing[0], len(missing), image_dir)
        super().__init__(items)


@register_dataset("folder")
class FolderDataset(PairedDataset):
    """Any folder of images, without labels (annotation-free training and prediction).

    ``recursive=True`` also takes images from sub-folders (names are then the relative paths
    without suffix). Files PIL cannot identify (header only) are skipped and counted in one
    warning; a folder of nothing else is a :class:`UserError`.

    ``holdout`` (a share in [0, 1)) sets aside that share of the images, drawn with
    ``holdout_seed``, never trained on: split ``train`` lists the others, any other split the
    held-out ones. ``holdout=0`` (the default): every split lists every image.
    """

    has_labels = False

    def __init__(
        self,
        *,
        root: str | os.PathLike,
        split: str = "train",
        recursive: bool = False,
        holdout: float = 0.0,
        holdout_seed: int = 0,
    ) -> None:
        root = Path(root)
        _require_dir(root, "image folder", "create it and put images in it")
        paths = root.rglob("*") if recursive else root.iterdir()
        files = sorted(p for p in paths if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(
                f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root}",
                "point data.root at a folder of images"
                + (
                    ""
                    if recursive
                    else " (or set data.dataset_options.recursive=true for sub-folders)"
                ),
            )
        files, self.unreadable = _readable(files)
        if not files:
            raise UserError(
                f"none of the {len(self.unreadable)} image file(s) in {root} can be read "
                f"({self.unreadable[0]})",
                "point data.root at a folder of readable images (PNG, JPEG, ...)",
            )
        if self.unreadable and (str(root), tuple(self.unreadable)) not in _WARNED:
            _WARNED.add((str(root), tuple(self.unreadable)))  # once, not once per split
            log.warning(
                "skipping %d unreadable image file(s) of %d in %s (first: %s)",
                len(self.unreadable),
                len(files) + len(self.unreadable),
                root,
                self.unreadable[0],
            )
        held = set(holdout_indices(len(files), holdout, holdout_seed))
        #: the held-out images' paths relative to ``root`` (whatever the split)
        self.held_out = [str(f.relative_to(root)) for i, f in enumerate(files) if i in held]
        if held:
            files = [f for i, f in enumerate(files) if (i in held) != (split == "train")]
        items = [(str(p.relative_to(root).with_suffix("")), p, None) for p in files]
        super().__init__(items)


_WARNED: set[tuple[str, tuple[str, ...]]] = set()  #: folders whose unreadable files were named


def _readable(files: list[Path]) -> tuple[list[Path], list[str]]:
    """The files PIL identifies (header only) and the names of the others."""
    from PIL import Image, UnidentifiedImageError

    good, bad = [], []
    for path in files:
        try:
            with Image.open(path):
                good.append(path)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
            bad.append(path.name)
    return good, bad


def holdout_indices(count: int, share: float, seed: int) -> list[int]:
    """The sorted indices of the held-out share of ``count`` images (seeded; at least one
    image when ``share > 0``); a :class:`UserError` when the share is outside [0, 1) or
    leaves nothing to train on."""
    try:
        share = float(share)
    except (TypeError, ValueError):
        share = -1.0
    if not 0.0 <= share < 1.0:
        raise UserError(
            f"data.dataset_options.holdout={share!r} is not a share in [0, 1)",
            "give e.g. data.dataset_options.holdout=0.1 (10% of the images held out)",
        )
    if share == 0.0:
        return []
    held = max(1, round(count * share))
    if held >= count:
        raise UserError(
            f"data.dataset_options.holdout={share:g} of {count} image(s) holds out {held} and "
            "leaves nothing to train on",
            "add images or lower data.dataset_options.holdout",
        )
    order = np.random.default_rng(int(seed)).permutation(count)
    return sorted(int(i) for i in order[:held])


def _split_folder(split: str, aliases: dict[str, str]) -> str:
    """A split name as the layout's folder (``val`` -> ``validation`` for ADE20K, ...)."""
    return aliases.get(split, split)


def _pair_by_suffix(
    image_dir: Path,
    label_dir: Path,
    *,
    image_suffix: str,
    label_suffix: str,
    recursive: bool,
    prepare: str,
) -> list[tuple[str, Path, Path]]:
    """``(name, image, label)`` for every ``*<image_suffix>`` under ``image_dir``; the label is
    the same relative path under ``label_dir`` with ``label_suffix``. A missing label is an
    error naming the first one (and how many more are missing)."""
    pattern = f"*{image_suffix}"
    images = sorted(image_dir.rglob(pattern) if recursive else image_dir.glob(pattern))
    if not images:
        raise UserError(f"no *{image_suffix} images in {image_dir}", prepare)
    items, missing = [], []
    for image_path in images:
        rel = image_path.relative_to(image_dir)
        stem = rel.name[: -len(image_suffix)]
        label_path = label_dir / rel.parent / f"{stem}{label_suffix}"
        if not label_path.is_file():
            missing.append(label_path)
        items.append((stem, image_path, label_path))
    if missing:
        more = f" ({len(missing) - 1} more images lack a label too)" if len(missing) > 1 else ""
        raise UserError(
            f"label missing: {missing[0]} (for the images in {image_dir}){more}", prepare
        )
    return items


ADE_PREPARE = (
    "download ADEChallengeData2016.zip (the SceneParsing benchmark) and extract it under data/ade/"
)


@register_dataset("ade20k")
class ADE20KDataset(PairedDataset):
    """ADE20K / SceneParsing (``root`` = ``ADEChallengeData2016``): labels 0..150, 0 = other.

    ``images/{training,validation}/*.jpg`` with ``annotations/{training,validation}/*.png``
    (``split`` may also be ``train`` / ``val``). Label 0 ("other") is dropped by the protocol
    (``count_background: false``: MMSegmentation's ``reduce_zero_label``), 1..150 are classes.
    """

    has_background = True
    max_class = 150

    def __init__(self, *, root: str | os.PathLike, split: str) -> None:
        root = Path(root)
        folder = _split_folder(split, {"train": "training", "val": "validation"})
        _require_dir(root, "ADE20K root (ADEChallengeData2016)", ADE_PREPARE)
        image_dir, label_dir = root / "images" / folder, root / "annotations" / folder
        _require_dir(image_dir, "ADE20K images", ADE_PREPARE)
        _require_dir(label_dir, "ADE20K annotations", ADE_PREPARE)
        super().__init__(
            _pair_by_suffix(
                image_dir,
                label_dir,
                image_suffix=".jpg",
                label_suffix=".png",
                recursive=False,
                prepare=ADE_PREPARE,
            )
        )


CITYSCAPES_PREPARE = (
    "download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from cityscapes-dataset.com, "
    "extract them under data/cityscapes and run "
    "`python scripts/prepare_cityscapes.py --root data/cityscapes` (writes *_labelTrainIds.png)"
)


@register_dataset("cityscapes")
class CityscapesDataset(PairedDataset):
    """Cityscapes (``root`` = ``cityscapes``): 19 classes (train ids 0..18), 255 = ignore.

    ``leftImg8bit/<split>/<city>/<id>_leftImg8bit.png`` with
    ``gtFine/<split>/<city>/<id>_gtFine_labelTrainIds.png``.
    """

    has_background = False
    max_class = 18

    def __init__(self, *, root: str | os.PathLike, split: str) -> None:
        root = Path(root)
        _require_dir(root, "Cityscapes root", CITYSCAPES_PREPARE)
        image_dir, label_dir = root / "leftImg8bit" / split, root / "gtFine" / split
        _require_dir(image_dir, "Cityscapes images (leftImg8bit)", CITYSCAPES_PREPARE)
        _require_dir(label_dir, "Cityscapes labels (gtFine)", CITYSCAPES_PREPARE)
        super().__init__(
            _pair_by_suffix(
                image_dir,
                label_dir,
                image_suffix="_leftImg8bit.png",
                label_suffix="_gtFine_labelTrainIds.png",
                recursive=True,
                prepare=CITYSCAPES_PREPARE,
            )
        )


COCO_OBJECT_PREPARE = (
    "download COCO 2017 images and stuffthingmaps_trainval2017.zip, extract them under "
    "data/coco_stuff164k and run `python scripts/prepare_coco_object.py --root data/coco_stuff164k`"
)


@register_dataset("coco_object")
class CocoObjectDataset(PairedDataset):
    """COCO-Object (``root`` = ``coco_stuff164k``): labels 0..80, 0 = background.

    ``images/<split>2017/*.jpg`` with ``annotations/<split>2017/<stem>_instanceTrainIds.png``
    (the 80 COCO things as 1..80, everything else background), as the training-free papers'
    conversion of the COCO-Stuff maps (``scripts/prepare_coco_object.py``).
    """

    has_background = True
    max_class = 80

    def __init__(self, *, root: str | os.PathLike, split: str) -> None:
        root = Path(root)
        folder = split if split.endswith("2017") else f"{split}2017"
        _require_dir(root, "COCO-Object root (coco_stuff164k)", COCO_OBJECT_PREPARE)
        image_dir, label_dir = root / "images" / folder, root / "annotations" / folder
        _require_dir(image_dir, "COCO images", COCO_OBJECT_PREPARE)
        _require_dir(label_dir, "COCO-Object labels", COCO_OBJECT_PREPARE)
        super().__init__(
            _pair_by_suffix(
                image_dir,
                label_dir,
                image_suffix=".jpg",
                label_suffix="_instanceTrainIds.png",
                recursive=False,
                prepare=COCO_OBJECT_PREPARE,
            )
        )
