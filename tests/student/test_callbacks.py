"""ValidationImages writes image | teacher | student | ground truth panels; ValidateAtEnd;
FlushDenormals."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from src.pictures.palette import colorize
from src.pictures.panels import PALETTE, denormalise, panel
from src.student.callbacks import FlushDenormals, ValidateAtEnd, ValidationImages
from tests.student.fakes import Scenes, ScenesData, quick_trainer, tiny_student


def test_panel_layout_and_colours() -> None:
    labels = np.array([[0, 1], [255, 2]])
    assert (colorize(labels, PALETTE) == PALETTE[labels]).all()
    pic = panel(np.zeros((4, 4, 3), np.uint8), labels, labels, gap=1)
    assert pic.shape == (2, 2 + 1 + 2 + 1 + 2, 3)  # the image is resized to the label size
    assert (pic[:, 3:5] == colorize(labels, PALETTE)).all()
    img = torch.rand(3, 5, 6)
    rgb = denormalise((img - 0.5) / 0.25, (0.5,) * 3, (0.25,) * 3)
    assert np.abs(rgb.astype(float) - img.permute(1, 2, 0).numpy() * 255).max() <= 0.51


def test_writes_the_first_validation_samples(tmp_path) -> None:
    student = tiny_student()
    cb = ValidationImages(num_images=3, dirpath=str(tmp_path / "pics"))
    trainer = quick_trainer(tmp_path, max_steps=1, val_check_interval=1, callbacks=[cb])
    trainer.fit(student, datamodule=ScenesData(n_val=4, batch_size=2))
    names = sorted(p.name for p in (tmp_path / "pics").iterdir())
    assert names == [f"step000001_scene{i}.png" for i in range(3)]
    full = np.asarray(Image.open(tmp_path / "pics" / "step000001_scene1.png"))
    assert full.shape[1] == 4 * 32 + 3 * 4 and full.shape[0] > 32 + 15
    pic = full[15 : 15 + 32]  # below the titles (10 px text, 15 px strip), above the legend
    truth = Scenes(4, train=False)[1]["target"].numpy()
    assert (pic[:, -32:] == colorize(truth, PALETTE)).all()  # last panel: the ground truth
    student.eval()
    with torch.no_grad():
        pred = student.predict_logits(Scenes(4, train=False)[1]["image"][None]).argmax(1)[0]
    shown = pic[:, 2 * 36 : 2 * 36 + 32].astype(int)  # third panel: the student
    col = colorize(pred.numpy(), PALETTE).astype(int)
    void = truth == 255  # faded where the metric ignores the pixel
    assert (shown[~void] == col[~void]).all() and (shown[void] == col[void] // 2 + 128).all()


def test_validate_at_end_scores_the_final_step(tmp_path) -> None:
    plain = quick_trainer(tmp_path, max_steps=3)
    plain.fit(tiny_student(), datamodule=ScenesData())
    assert "val/miou" not in plain.callback_metrics
    trainer = quick_trainer(tmp_path, max_steps=3, callbacks=[ValidateAtEnd()])
    trainer.fit(tiny_student(), datamodule=ScenesData())
    assert trainer.callback_metrics["val/step"] == 3 and trainer.global_step == 3


class _SeesDenormals(pl.Callback):
    """Records whether a denormal float survives arithmetic during the first training step."""

    def __init__(self) -> None:
        self.kept: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        tiny = torch.tensor([1e-39], dtype=torch.float32)  # below float32's normal range
        self.kept.append(bool((tiny * 1.0).item() != 0.0))


def test_flush_denormals_only_while_fitting_and_only_when_enabled(tmp_path) -> None:
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals (torch.set_flush_denormal: x86 with SSE3)")
    tiny = torch.tensor([1e-39], dtype=torch.float32)
    assert (tiny * 1.0).item() != 0.0  # denormals are kept outside of it
    for enabled, kept in ((True, False), (False, True)):
        probe = _SeesDenormals()
        trainer = quick_trainer(
            tmp_path / str(enabled), max_steps=1, callbacks=[FlushDenormals(enabled), probe]
        )
        trainer.fit(tiny_student(), datamodule=ScenesData(n_val=2, batch_size=2))
        assert probe.kept == [kept]
        assert (tiny * 1.0).item() != 0.0  # restored after fit
