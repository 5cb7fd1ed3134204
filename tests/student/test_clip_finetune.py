"""``student=clip_finetune`` (Figure 2's baseline): CLIP's own image encoder (ResNet or ViT)
as a trainable backbone under the text-embedding classifier."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from src.errors import UserError
from src.student.backbones import ClipResNetBackbone, ClipViTBackbone
from src.student.checkpoint import load_student
from src.teacher.features import resnet_trunk
from src.teacher.heads.vit import run_block, vit_trunk
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
    with pytest.raises(UserError, match="student.backbone=clip needs a ResNet or ViT CLIP"):
        ClipResNetBackbone(torch.nn.Linear(2, 2))  # a tower that is neither


# ---------------------------------------------------------------- a ViT CLIP's tower (dc-test-vit)
@pytest.fixture(scope="module")
def vit_teacher():
    return tiny_teacher(clip_model="dc-test-vit")  # 2 blocks, width 64, patch 16, 64 px (4 x 4)


def _images(*shape: int) -> torch.Tensor:
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(0)).float() / 256


def test_a_vit_tower_is_a_trunk_at_its_patch_stride(vit_teacher) -> None:
    student = tiny_student(vit_teacher, backbone="clip", head_channels=16).eval()
    backbone = student.net.backbone
    assert isinstance(backbone, ClipViTBackbone)
    assert (backbone.out_channels, backbone.low_level_channels, backbone.output_stride) == (
        64,
        64,
        16,
    )
    with torch.no_grad():
        for h, w in [(64, 64), (96, 80), (48, 112), (40, 70)]:  # cut to whole patches
            out = backbone(_images(2, 3, h, w))
            assert out["out"].shape == out["low"].shape == (2, 64, h // 16, w // 16)
            # background + 3 classes at the patch grid; upsampled to the input by predict
            assert student.net(_images(2, 3, h, w)).shape == (2, 4, h // 16, w // 16)
            assert student.predict_logits(_images(1, 3, h, w)).shape == (1, 4, h, w)
    # the projection to the text space is not part of the trunk (it would never train)
    assert backbone.visual.proj is None and vit_teacher.clip.visual.proj is not None


def test_at_init_the_vit_trunk_is_the_teachers_tower(vit_teacher) -> None:
    """Equal to open_clip's own forward (the last block's patch tokens after ln_post) at the
    pretrained size, up to SDPA's rounding; at another grid exactly the teachers' ViT path
    (the authors' positional-embedding resize, src/teacher/heads/vit.py)."""
    backbone = ClipViTBackbone(vit_teacher.trainable_visual()).eval()
    visual = vit_teacher.clip.visual
    images = _images(2, 3, 64, 64)
    tokens = {}
    hook = visual.transformer.register_forward_hook(lambda m, i, o: tokens.update(x=o))
    with torch.no_grad():
        visual(images)
        hook.remove()
        expected = visual.ln_post(tokens["x"][:, 1:]).transpose(1, 2).reshape(2, 64, 4, 4)
        assert torch.allclose(backbone(images)["out"], expected, atol=1e-5, rtol=0)
        images = _images(2, 3, 96, 80)  # a 6 x 5 grid: the positional table resized
        x, grid, _ = vit_trunk(visual, images)
        x = run_block(visual.transformer.resblocks[-1], x)
        expected = visual.ln_post(x[:, 1:]).transpose(1, 2).reshape(2, 64, 6, 5)
        assert grid == (6, 5) and torch.equal(backbone(images)["out"], expected)


def test_fine_tuning_a_vit_moves_the_copy_not_the_teacher(vit_teacher, tmp_path) -> None:
    student = tiny_student(vit_teacher, backbone="clip", head_channels=16)
    # the trunk is a copy: no parameter shared with the frozen teacher
    teacher_ids = {id(p) for p in student.teacher.parameters()}
    assert not teacher_ids & {id(p) for p in student.net.parameters()}
    # one backward: gradients reach every trunk parameter, none the teacher's
    batch = next(iter(ScenesData(batch_size=2).train_dataloader()))
    loss = student.net(student.normalize(batch["image"].clamp(0, 1))).square().mean()
    loss.backward()
    trunk = dict(student.net.backbone.named_parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trunk.values()), [
        n for n, p in trunk.items() if p.grad is None or not p.grad.abs().sum()
    ]
    assert all(p.grad is None for p in student.teacher.parameters())
    student.zero_grad(set_to_none=True)
    frozen = {k: v.clone() for k, v in vit_teacher.clip.visual.state_dict().items()}
    start = {k: v.clone() for k, v in student.net.backbone.state_dict().items()}
    trainer = quick_trainer(tmp_path, max_steps=2)
    trainer.fit(student, datamodule=ScenesData())
    optimised = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert {id(p) for p in student.net.backbone.parameters()} <= optimised
    assert not optimised & teacher_ids
    after = student.net.backbone.state_dict()
    assert any(not torch.equal(start[k], after[k]) for k in start if "resblocks" in k)
    assert all(torch.equal(v, vit_teacher.clip.visual.state_dict()[k]) for k, v in frozen.items())
    # the checkpoint holds the trained trunk, not the teacher, and rebuilds the same student
    path = tmp_path / "vit.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    assert not [k for k in saved if k.startswith("teacher.")]
    assert torch.equal(saved["net.backbone.visual.conv1.weight"], after["visual.conv1.weight"])
    loaded = load_student(path).eval()
    assert isinstance(loaded.net.backbone, ClipViTBackbone)
    images = _images(1, 3, 48, 80)
    with torch.no_grad():
        assert torch.equal(loaded.predict_logits(images), student.eval().predict_logits(images))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_vit_student_exports_for_any_size(vit_teacher, tmp_path, fmt: str) -> None:
    """The positional table is resized in the graph (the traced rule), so the file runs on
    sizes the export never saw, the pretrained patch count included."""
    if fmt == "onnx":
        pytest.importorskip("onnxruntime", reason="pip install -e '.[export]'")
    from src.student.export import SUFFIXES, check_parity, export_student, parity_images

    student = tiny_student(vit_teacher, backbone="clip", head_channels=16).eval()
    path = export_student(student, tmp_path / f"vit{SUFFIXES[fmt]}", fmt=fmt)
    sizes = [(64, 64), (32, 128), (96, 80), (40, 70)]  # 16 patches twice (as is), resized twice
    parity = check_parity(student, path, fmt=fmt, images=parity_images(sizes))
    assert parity["max_abs_diff"] < 1e-4 and parity["argmax_agree"] == 1.0
