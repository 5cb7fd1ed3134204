"""The evaluation module, the report files and the pictures (in-process, tiny)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from torch import nn

from src.batch import IMAGE, TARGET
from src.errors import UserError
from src.evaluation.metrics import segmentation_scores
from src.evaluation.module import EvaluationModule, align_logits
from src.evaluation.report import metrics_dict, write_report
from src.pictures.confusion import confusion_matrix_figure


class FixedModel(nn.Module):
    """Scores channel ``(x // 4) % channels`` highest at column ``x``: a known answer."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.calls: list[tuple[int, int]] = []

    def predict_logits(self, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        self.calls.append(tuple(size))
        h, w = size
        cls = (torch.arange(w) // 4) % self.channels
        onehot = nn.functional.one_hot(cls, self.channels).T.float()  # (C, W)
        return onehot[None, :, None, :].expand(images.shape[0], -1, h, -1).clone()


def test_align_logits_gives_background_minus_infinity() -> None:
    logits = torch.randn(2, 20, 3, 5)
    out = align_logits(logits, 21, 1)
    assert out.shape == (2, 21, 3, 5) and torch.isinf(out[:, 0]).all()
    assert torch.equal(out[:, 1:], logits) and (out.argmax(1) > 0).all()
    assert align_logits(logits, 20, 0) is logits
    with pytest.raises(UserError, match="scores 20 classes but the data has 30"):
        align_logits(logits, 30, 1)


def test_module_scores_a_model_through_lightning() -> None:
    target = torch.full((1, 2, 16), 255, dtype=torch.long)
    target[0, 0] = torch.tensor([1] * 8 + [2] * 8)  # true classes 1,1 | 2,2 per 4 columns
    target[0, 1, :12] = 3
    samples = [{IMAGE: torch.zeros(3, 8, 8), TARGET: target[0]}] * 2
    loader = torch.utils.data.DataLoader(samples, batch_size=1)
    model = FixedModel(channels=3)  # teacher-like: 3 channels for classes 1..3
    module = EvaluationModule(model, num_classes=4, class_offset=1, unseen_indices=[3])
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False)  # fmt: skip
    trainer.test(module, dataloaders=loader, verbose=False)
    assert model.calls == [(2, 16), (2, 16)]  # predictions at the label's size
    # predicted class per column block: 1 + (x // 4) % 3 -> blocks 1, 2, 3, 1
    per_image = np.zeros((4, 4), np.int64)
    for row in target[0].numpy():
        for x, t in enumerate(row):
            if t != 255:
                per_image[t, 1 + (x // 4) % 3] += 1
    assert module.confmat.tolist() == (2 * per_image).tolist()
    assert module.scores["miou_unseen"].item() == pytest.approx(4 / (12 + 8 - 4))


def test_report_files(tmp_path: Path) -> None:
    cm = torch.tensor([[5, 1, 0], [0, 0, 0], [2, 0, 3]])
    names = ["background", "red car", "grass"]
    scores = segmentation_scores(cm, unseen_indices=[2])
    paths = write_report(tmp_path, confmat=cm, scores=scores, class_names=names,
                         unseen_indices=[2], title="t", top_confused=2)  # fmt: skip
    table = paths["table"].read_text()
    assert "| 1 | red car | seen | n/a | n/a | 0 |" in table
    assert "| 2 | grass | unseen | 60.00 | 60.00 | 5 |" in table
    assert "| grass | background | 40.00 | 2 |" in table  # most confused pair
    assert paths["csv"].read_text().splitlines()[2] == "red car,0,0,0"
    with Image.open(paths["figure"]) as im:
        assert im.format == "PNG" and im.size[0] > 300
    metrics = metrics_dict(scores, names)
    assert metrics["val/iou/red car"] is None and math.isclose(metrics["val/iou/grass"], 0.6)
    assert set(metrics) >= {"val/miou", "val/miou_seen", "val/miou_unseen", "val/hiou"}


def test_confusion_figure_names_every_class() -> None:
    names = [f"class {i}" for i in range(30)]
    fig = confusion_matrix_figure(np.eye(30) * 5 + 1, names, pairs=[("class 1", "class 2", 0.5, 9)])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    assert any("class 1 -> class 2: 50.0%" in t.get_text() for a in fig.axes for t in a.texts)
