"""What every raw dataset returns, and the registry the data module picks datasets from.

A raw dataset knows files (or procedures), not settings: ``ds[i]`` returns a
:class:`RawSample` whose label is decoded to class indices in the dataset's own convention
(``0`` = background where the dataset has one, ``255`` = void). Background protocol,
zero-shot masking, augmentation and normalisation happen later, in the data module.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from PIL import Image

from src.errors import UserError

VOID = 255  #: the datasets' void / unlabeled value (same as ``src.batch.IGNORE_INDEX``)


@dataclass
class RawSample:
    """One decoded sample."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    label: np.ndarray | None  # (H, W) uint8 class indices, 255 = void; None when unlabelled
    name: str  # image id (file stem)


class RawDataset(Protocol):
    """A sized, indexable collection of :class:`RawSample`."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> RawSample: ...


#: name -> builder(*, root, split, **options) -> RawDataset. Filled by ``register_dataset``.
DATASETS: dict[str, Callable[..., RawDataset]] = {}


def register_dataset(name: str) -> Callable[[Callable[..., RawDataset]], Callable[..., RawDataset]]:
    """Class/function decorator adding a raw dataset builder under ``name``."""

    def wrap(builder: Callable[..., RawDataset]) -> Callable[..., RawDataset]:
        DATASETS[name] = builder
        return builder

    return wrap


class DataFileError(UserError):
    """A :class:`UserError` about one data file that survives a DataLoader worker.

    PyTorch re-raises a worker's exception as ``type(err)(formatted_traceback)``; this class
    recovers the original problem and fix from that text, so the user still sees one clear
    message and no traceback.
    """

    def __init__(self, problem: str, fix: str | None = None) -> None:
        marker = "DataFileError: "
        if fix is None and problem.startswith("Caught DataFileError") and marker in problem:
            text = problem[problem.rfind(marker) + len(marker) :].rstrip()
            problem, _, fix_text = text.partition("\n  fix: ")
            fix = fix_text or None
        super().__init__(problem, fix)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to ``(H, W, 3)`` uint8 RGB; a broken file names itself."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as err:
        raise DataFileError(
            f"cannot read image {path}: {err}",
            "re-download or re-extract the file, or remove its id from the split list",
        ) from None


def read_label(
    path: str | os.PathLike,
    *,
    max_class: int,
    palette: np.ndarray | None = None,
) -> np.ndarray:
    """Decode a label PNG to ``(H, W)`` uint8 class indices and check its values.

    Palette (``P``) and greyscale (``L``) PNGs hold the indices; an ``RGB`` label is decoded
    with ``palette`` (``(N, 3)``, row ``i`` the colour of value ``i``; a colour not in it is
    an error). Allowed values are ``0..max_class`` and 255 (void); any other
    value raises :class:`DataFileError` naming the file and the value.
    """
    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.asarray(im)
    except (OSError, ValueError, SyntaxError) as err:
        raise DataFileError(
            f"cannot read label {path}: {err}", "re-create it with the preparation script"
        ) from None
    if mode == "RGB" and palette is not None:
        arr = _decode_rgb(arr, palette, path)
    elif arr.ndim != 2:
        raise DataFileError(
            f"label {path} has mode {mode} (shape {arr.shape}); expected a palette or greyscale "
            "PNG of class indices",
            "re-create the label with the dataset's preparation script",
        )
    if arr.dtype != np.uint8:
        big = np.unique(arr[(arr < 0) | (arr > 255)])
        if big.size:
            _bad_value(path, int(big[0]), max_class)
        arr = arr.astype(np.uint8)
    values = np.unique(arr)
    bad = values[(values > max_class) & (values != VOID)]
    if bad.size:
        _bad_value(path, int(bad[0]), max_class)
    return arr


def _bad_value(path: str | os.PathLike, value: int, max_class: int) -> None:
    raise DataFileError(
        f"label {path} contains the value {value}, outside the class range 0..{max_class} "
        f"(and {VOID} = void)",
        "check that data.root points at the right dataset and that labels were prepared with "
        "the matching script",
    )


def _decode_rgb(arr: np.ndarray, palette: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    codes = (arr[..., 0].astype(np.int64) << 16) | (arr[..., 1].astype(np.int64) << 8) | arr[..., 2]
    pal = palette.astype(np.int64)
    keys = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    lut = {int(k): i for i, k in enumerate(keys)}
    out = np.full(codes.shape, VOID, dtype=np.uint8)
    for code in np.unique(codes):
        cls = lut.get(int(code))
        if cls is None:
            colour = ((int(code) >> 16) & 255, (int(code) >> 8) & 255, int(code) & 255)
            raise DataFileError(
                f"label {path} contains the colour {colour}, which is no class of the palette",
                "use palette or greyscale PNGs of class indices",
            )
        out[codes == code] = cls if cls < 256 else VOID
    return out


def check_same_size(image: np.ndarray, label: np.ndarray, image_path: Any, label_path: Any) -> None:
    """Raise :class:`DataFileError` when an image and its label differ in size."""
    if image.shape[:2] != label.shape[:2]:
        raise DataFileError(
            f"image {image_path} is {image.shape[1]}x{image.shape[0]} but its label "
            f"{label_path} is {label.shape[1]}x{label.shape[0]} (width x height)",
            "image and label must have the same size; re-create the label",
        )
