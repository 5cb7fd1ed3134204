"""``student=clip_finetune`` (Figure 2's baseline): CLIP's own ResNet image encoder as a
trainable backbone under the text-embedding classifier."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from src.errors import UserError
from src.student.backbones import ClipResNetBackbone
from src.student.checkpoint import load_student
from src.teacher.features import resnet_trunk
from tests.student.fakes import ScenesData, quick_trainer, tiny_student, tiny_teacher


@pytest.fixture(scope="module")
def teacher():
    return tiny_teacher()


@pytest.mark.parametrize(("stride", "side"), [(8, 8), (16, 4), (32, 2)])
def test_output_strides_and_channels(teacher, stride: int, side: int) -> None:
    backbone = ClipResNetBackbone(teacher.trainable_visual(), output_stride=stride).eval()
    out = backbone(torch.randn(2, 3, 64, 64))
    assert out["out"].shape == (2, 16 * 32, side, side)  # dc-test-rn: width 16
    assert out["low"].shape == (2, 16 * 4, 16, 16)
    assert (backbone.out_channels, backbone.low_level_channels) == (512, 64)


def test_at_stride_32_it_is_the_teachers_encoder_exactly(teacher) -> None:
    images = torch.randn(2, 3, 64, 64)
    backbone = ClipResNetBackbone(teacher.trainable_visual(), output_stride=32).eval()
    with torch.no_grad():
        expected = resnet_trunk(teacher.clip.visual, images)
        assert torch.equal(backbone(images)["out"], expected)


def test_fine_tuning_moves_the_copy_not_the_teacher(teacher, tmp_path) -> None:
    student = tiny_student(teacher, backbone="clip", head_channels=16)
    frozen = {k: v.clone() for k, v in teacher.clip.visual.state_dict().items()}
    start = {k: v.clone() for k, v in student.net.backbone.state_dict().items()}
    quick_trainer(tmp_path, max_steps=2).fit(student, datamodule=ScenesData())
    after = student.net.backbone.state_dict()
    assert any(not torch.equal(start[k], after[k]) for k in start if "conv" in k)
    assert all(torch.equal(v, teacher.clip.visual.state_dict()[k]) for k, v in frozen.items())
    assert not any(p.requires_grad for p in student.teacher.parameters())
    # a checkpoint of it loads back to the same predictions (the trained copy, not CLIP's)
    path = tmp_path / "clip.ckpt"
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(student)
    trainer.save_checkpoint(path)
    loaded = load_student(path).eval()
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded.predict_logits(images), student.eval().predict_logits(images))


def test_bad_backbones_are_user_errors(teacher) -> None:
    with pytest.raises(UserError, match="student.backbone must be a ResNet depth or clip"):
        tiny_student(teacher, backbone="clop")
    vit = tiny_teacher(clip_model="dc-test-vit")
    with pytest.raises(UserError, match="student.backbone=clip needs a ResNet CLIP"):
        tiny_student(vit, backbone="clip")
