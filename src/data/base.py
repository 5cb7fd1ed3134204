"""What every raw dataset returns, and the registry the data module picks datasets from.

A raw dataset knows files (or procedures), not settings: ``ds[i]`` returns a
:class:`RawSample` whose label is decoded to class indices in the dataset's own convention
(``0`` = background where the dataset has one, ``255`` = void). Background protocol,
zero-shot masking, augmentation and normalisation happen later, in the data module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np


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
