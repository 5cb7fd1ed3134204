"""Training order and augmentation that a seed reproduces and a resumed run continues.

- :class:`TrainSampler` shuffles each epoch from ``(seed, epoch)`` (as ``DistributedSampler``,
  whose subclass it is, so Lightning keeps it under DDP) and yields ``(index, epoch)`` keys:
  the dataset seeds each sample's augmentation from ``(seed, epoch, index)``, so a sample
  looks the same whatever the number of DataLoader workers or processes.
- :class:`ResumableLoader` is a ``DataLoader`` whose state (seed, epoch, batches already
  trained in that epoch) Lightning saves in checkpoints; a resumed run skips exactly those
  batches and sees the rest of the epoch, then the following epochs, as the uninterrupted
  run would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of sample ``index`` in ``epoch`` (a 32-bit integer)."""
    return int(np.random.SeedSequence([seed % 2**63, epoch, index]).generate_state(1)[0])


class TrainSampler(DistributedSampler):
    """Seeded per-epoch shuffling over this process's share of the samples; yields
    ``(index, epoch)``. ``resume_from(epoch, samples)`` skips the first ``samples`` of this
    process's share in ``epoch`` (once)."""

    def __init__(self, dataset: Any, *, seed: int, shuffle: bool = True) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            replicas, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
        else:
            replicas, rank = 1, 0
        super().__init__(dataset, num_replicas=replicas, rank=rank, shuffle=shuffle, seed=seed)
        self._resume: tuple[int, int] | None = None

    def resume_from(self, epoch: int, samples: int) -> None:
        """Skip the first ``samples`` of ``epoch`` the next time ``epoch`` is iterated."""
        self._resume = (int(epoch), int(samples))
        self.set_epoch(int(epoch))

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        epoch, skip = self.epoch, 0
        if self._resume is not None and self._resume[0] == epoch:
            skip = self._resume[1]
        self._resume = None
        for i, index in enumerate(super().__iter__()):
            if i >= skip:
                yield index, epoch


class ResumableLoader(DataLoader):
    """A training ``DataLoader`` over a :class:`TrainSampler` that Lightning can resume.

    ``progress`` reports ``(batches of the current epoch trained, batches per epoch)`` from the
    trainer (the loader itself runs ahead by the batches Lightning prefetches).
    """

    def __init__(
        self, *args: Any, progress: Callable[[], tuple[int, int]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.progress = progress

    @property
    def train_sampler(self) -> TrainSampler:
        """The :class:`TrainSampler` (under Lightning's own wrappers, if any)."""
        sampler = self.sampler
        if not isinstance(sampler, TrainSampler):
            raise TypeError(f"ResumableLoader needs a TrainSampler, got {type(sampler).__name__}")
        return sampler

    def state_dict(self) -> dict[str, int]:
        """``seed``, and where training continues: batch ``batches`` of ``epoch``."""
        sampler = self.train_sampler
        epoch, done = int(sampler.epoch), 0
        if self.progress is not None:
            done, per_epoch = self.progress()
            if done >= per_epoch:  # saved after the epoch's last batch: the next one is next
                epoch, done = epoch + 1, 0
        return {"seed": int(sampler.seed), "epoch": epoch, "batches": int(done)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue the saved stream: its seed, and its epoch after the batches trained."""
        sampler = self.train_sampler
        sampler.seed = int(state["seed"])
        if hasattr(self.dataset, "seed"):
            self.dataset.seed = int(state["seed"])
        batch = self.batch_size or 1
        sampler.resume_from(int(state["epoch"]), int(state["batches"]) * batch)
