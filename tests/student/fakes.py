"""Small fakes shared by the student and callback tests: a tiny teacher and in-memory data."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from src.batch import CANDIDATES, IMAGE, NAME, TARGET, UNLABELLED
from src.student.model import DenseClipPlus
from src.teacher.model import DenseClipTeacher

CLASSES = ["circle", "square", "triangle"]


def tiny_teacher(**kwargs: Any) -> DenseClipTeacher:
    """The random-weight test CLIP (dc-test-rn) with one prompt template."""
    options = {"clip_model": "dc-test-rn", "pretrained": None, "class_names": CLASSES,
               "templates": ["a photo of a {}."]} | kwargs  # fmt: skip
    return DenseClipTeacher(**options)


def tiny_student(teacher: DenseClipTeacher | None = None, **kwargs: Any) -> DenseClipPlus:
    options = {"background": True, "unseen_indices": [2, 3], "backbone": 18,
               "backbone_weights": "none"} | kwargs  # fmt: skip
    return DenseClipPlus(teacher=teacher or tiny_teacher(), **options)


class Scenes(Dataset):
    """``n`` random 32 px samples: GT classes 0/1 seen, 2/3 hidden as UNLABELLED in training."""

    def __init__(self, n: int, *, train: bool, size: int = 32) -> None:
        self.n, self.train, self.size = n, train, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(i)
        target = torch.zeros(self.size, self.size, dtype=torch.long)
        target[: self.size // 2] = 1 + i % 3
        target[:, : self.size // 4] = 255
        image = torch.randn(3, self.size, self.size, generator=g) + target.float()[None] / 3
        if self.train:
            target[(target == 2) | (target == 3)] = UNLABELLED
        return {IMAGE: image, TARGET: target, CANDIDATES: torch.tensor([False, False, True, True]),
                NAME: f"scene{i}"}  # fmt: skip


class ScenesData(pl.LightningDataModule):
    def __init__(self, n_train: int = 8, n_val: int = 4, batch_size: int = 2) -> None:
        super().__init__()
        self.n_train, self.n_val, self.batch_size = n_train, n_val, batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(Scenes(self.n_train, train=True), batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(Scenes(self.n_val, train=False), batch_size=self.batch_size)


def quick_trainer(tmp_path: Any, **kwargs: Any) -> pl.Trainer:
    options = {"accelerator": "cpu", "devices": 1, "max_steps": 3, "logger": False,
               "enable_progress_bar": False, "enable_model_summary": False,
               "num_sanity_val_steps": 0, "default_root_dir": str(tmp_path),
               "enable_checkpointing": False,
               "val_check_interval": 1000, "check_val_every_n_epoch": None} | kwargs  # fmt: skip
    return pl.Trainer(**options)


def save_tiny_checkpoint(path: Any, **options: Any) -> Any:
    """A tiny DenseCLIP+ checkpoint (2-stage ResNet-18, dc-test-rn teacher, background counted)
    written as Lightning writes one (the teacher left out, rebuilt on load), with BatchNorm
    statistics that are not the identity; ``options`` go to :func:`tiny_student`."""
    student = tiny_student(**({"backbone_stages": 2, "head_channels": 16} | options))
    with torch.no_grad():
        for module in student.net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    state = {k: v for k, v in student.state_dict().items() if not k.startswith("teacher.")}
    ckpt = {"state_dict": state, "hyper_parameters": dict(student.hparams)}
    torch.save(ckpt | {"pytorch-lightning_version": pl.__version__}, path)
    return path
