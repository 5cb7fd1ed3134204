"""Dilated torchvision ResNets for the student (output stride 8 or 16, no classifier), and the
teacher CLIP's own image tower as a trainable trunk (:func:`build_clip_backbone`: a ResNet CLIP
through :class:`ClipResNetBackbone`, a ViT CLIP through :class:`ClipViTBackbone`).

``build_backbone(depth=101, weights="imagenet")`` returns a :class:`ResNetBackbone` whose
forward gives ``{"low": layer1, "out": layer4}``. ResNet-50/101 use torchvision's
``replace_stride_with_dilation``; ResNet-18/34 (BasicBlock, which torchvision refuses to
dilate) are dilated by editing their 3x3 convolutions in place (:func:`_dilate_basic_stage`).
Either way the dilated trunk computes the undilated one's features on a denser grid, so
ImageNet weights keep their meaning.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision.models as tvm
from open_clip.transformer import VisionTransformer
from torch import Tensor, nn

from src.errors import UserError
from src.teacher.heads.vit import run_block, tokens_to_map, vit_embed

DEPTHS = (18, 34, 50, 101)
_BUILDERS = {18: tvm.resnet18, 34: tvm.resnet34, 50: tvm.resnet50, 101: tvm.resnet101}
_WEIGHTS = {
    18: tvm.ResNet18_Weights.IMAGENET1K_V1,
    34: tvm.ResNet34_Weights.IMAGENET1K_V1,
    50: tvm.ResNet50_Weights.IMAGENET1K_V1,
    101: tvm.ResNet101_Weights.IMAGENET1K_V1,
}


class ResNetBackbone(nn.Module):
    """A torchvision ResNet trunk (stem + layer1..4) without pooling and classifier.

    ``num_stages`` < 4 drops the last stages (``"out"`` is then layer2 or layer3): a shallow,
    much cheaper trunk for CPU runs (the output stride is then at most 8 or 16).
    """

    def __init__(self, resnet: tvm.ResNet, *, output_stride: int, num_stages: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.layer1, self.layer2 = resnet.layer1, resnet.layer2
        self.layer3 = resnet.layer3 if num_stages >= 3 else None
        self.layer4 = resnet.layer4 if num_stages >= 4 else None
        expansion = 4 if isinstance(resnet.layer1[0], tvm.resnet.Bottleneck) else 1
        self.low_level_channels = 64 * expansion  #: channels of ``"low"`` (layer1)
        #: channels of ``"out"`` (the last stage kept)
        self.out_channels = 64 * 2 ** (num_stages - 1) * expansion
        self.num_stages = num_stages
        self.output_stride = min(output_stride, 2 ** (num_stages + 1))

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """``images`` (B, 3, H, W) -> ``{"low": (B, C1, H/4, W/4), "out": (B, C, H/os, W/os)}``."""
        low = self.layer1(self.stem(images))
        out = self.layer2(low)
        for stage in (self.layer3, self.layer4):
            if stage is not None:
                out = stage(out)
        return {"low": low, "out": out}


def _set_dilation(conv: nn.Conv2d, dilation: int) -> None:
    conv.stride = (1, 1)
    conv.dilation = (dilation, dilation)
    conv.padding = (dilation, dilation)


def _dilate_basic_stage(stage: nn.Sequential, *, dilation: int, previous: int) -> None:
    """Turn a BasicBlock stage's stride 2 into dilation, exactly (a trous).

    The first block's strided conv keeps the previous dilation (stride dropped); every 3x3
    conv after it is dilated by the new rate, so the output equals the undilated network's
    on the subsampled grid (the same rule torchvision applies to Bottleneck stages).
    """
    for index, block in enumerate(stage):
        _set_dilation(block.conv1, previous if index == 0 else dilation)
        _set_dilation(block.conv2, dilation)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)
        block.stride = 1


def _load_state(path: Path) -> dict[str, Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(
            f"backbone weights {path} hold a {type(state).__name__}, not a state dict",
            "point student.backbone_weights at a torchvision ResNet state_dict file",
        )
    return {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("fc.")}


def imagenet_weights_file(depth: int) -> Path:
    """Where torch hub caches torchvision's ImageNet weights for ResNet-``depth``."""
    name = os.path.basename(_WEIGHTS[depth].url)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def build_backbone(
    *,
    depth: int = 101,
    weights: str | os.PathLike | None = "imagenet",
    output_stride: int = 8,
    num_stages: int = 4,
) -> ResNetBackbone:
    """A ResNet-``depth`` trunk with output stride 8 (dilations 2, 4) or 16 (dilation 2).

    ``num_stages``: keep layer1..layer``num_stages`` (2-4; 4 = the whole trunk, the paper's).

    ``weights``: ``"imagenet"`` (torchvision's IMAGENET1K_V1 file, read from the torch hub
    cache, never downloaded), ``"none"``/``None`` (random init) or a local state-dict path.
    """
    if depth not in _BUILDERS:
        raise UserError(f"unknown ResNet depth {depth!r}", f"choose one of {list(DEPTHS)}")
    if num_stages not in (2, 3, 4):
        raise UserError(f"num_stages must be 2, 3 or 4, got {num_stages!r}")
    if output_stride not in (8, 16, 32):
        raise UserError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
    dilate = {8: [False, True, True], 16: [False, False, True], 32: [False, False, False]}
    flags = dilate[output_stride]
    if depth >= 50:
        resnet = _BUILDERS[depth](weights=None, replace_stride_with_dilation=flags)
    else:
        resnet = _BUILDERS[depth](weights=None)
        current = 1
        for stage, flag in zip((resnet.layer2, resnet.layer3, resnet.layer4), flags, strict=True):
            if flag:
                _dilate_basic_stage(stage, dilation=current * 2, previous=current)
                current *= 2
    resnet.fc = nn.Identity()
    if weights is not None and str(weights).lower() != "none":
        if str(weights).lower() == "imagenet":
            path = imagenet_weights_file(depth)
            if not path.is_file():
                raise UserError(
                    f"ImageNet weights for ResNet-{depth} not found: {path.name} is not in "
                    f"{path.parent} (torch hub's cache; this project never downloads)",
                    f"download {_WEIGHTS[depth].url} into {path.parent} (or set TORCH_HOME), "
                    "or use student.backbone_weights=none / a local file path",
                )
        else:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise UserError(
                    f"backbone weights file {path} does not exist",
                    "give student.backbone_weights as imagenet, none, or an existing path",
                )
        state = _load_state(path)
        try:
            missing, unexpected = resnet.load_state_dict(state, strict=False)
            problem = f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        except RuntimeError as err:  # shape mismatches
            missing, unexpected = ["?"], []
            problem = str(err).splitlines()[1].strip()
        if missing or unexpected:
            raise UserError(
                f"backbone weights {path} do not fit ResNet-{depth} ({problem})",
                f"use a torchvision resnet{depth} state dict",
            )
    return ResNetBackbone(resnet, output_stride=output_stride, num_stages=num_stages)


class ClipResNetBackbone(nn.Module):
    """CLIP's own ResNet image encoder (open_clip ``ModifiedResNet``) as a trainable trunk:
    the stem and layer1..4, without the attention pool (Figure 2's fine-tuning baseline).

    ``output_stride`` 8 or 16 removes the average pools that stride layer3 / layer4 and
    dilates the 3x3 convolutions after them (as a trous; CLIP's anti-aliasing pools make it
    close to, not exactly, the original features); 32 keeps the encoder as trained.
    """

    def __init__(self, visual: nn.Module, *, output_stride: int = 8) -> None:
        super().__init__()
        if not all(hasattr(visual, n) for n in ("layer1", "layer4", "attnpool")):
            raise UserError(
                f"student.backbone=clip needs a ResNet or ViT CLIP (open_clip's ModifiedResNet "
                f"or VisionTransformer), got a {type(visual).__name__}",
                "use a ResNet or ViT teacher (rn50, tiny_shapes, vit_b16, tiny_shapes_vit_plain) "
                "or a torchvision backbone (student.backbone=18 ... 101)",
            )
        if output_stride not in (8, 16, 32):
            raise UserError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
        self.stem = nn.Sequential(
            *(getattr(visual, n) for n in ("conv1", "bn1", "act1", "conv2", "bn2", "act2")),
            *(getattr(visual, n) for n in ("conv3", "bn3", "act3", "avgpool")),
        )
        self.layer1, self.layer2 = visual.layer1, visual.layer2
        self.layer3, self.layer4 = visual.layer3, visual.layer4
        stages = {8: [self.layer3, self.layer4], 16: [self.layer4], 32: []}[output_stride]
        current = 1
        for stage in stages:
            for i, block in enumerate(stage):
                dilation = current if i == 0 else current * 2
                _set_dilation(block.conv2, dilation)
                if i == 0:
                    block.avgpool = nn.Identity()
                    if block.downsample is not None:
                        block.downsample[0] = nn.Identity()  # its AvgPool2d (named "-1")
            current *= 2
        self.low_level_channels = int(self.layer1[-1].conv3.out_channels)
        self.out_channels = int(self.layer4[-1].conv3.out_channels)
        self.output_stride = output_stride

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """``images`` (B, 3, H, W) -> ``{"low": layer1 (H/4), "out": layer4 (H/os)}``."""
        low = self.layer1(self.stem(images.to(self.stem[0].weight.dtype)))
        return {"low": low, "out": self.layer4(self.layer3(self.layer2(low)))}


class ClipViTBackbone(nn.Module):
    """CLIP's own ViT image encoder (open_clip ``VisionTransformer``) as a trainable trunk:
    patch embedding, class token, positional embedding (resized the authors' way for other
    grids, :func:`~src.teacher.heads.vit.vit_embed`), ``ln_pre``, every block and ``ln_post``
    (when the tower has no attentional pool), without the projection to the text space.

    The output stride is the patch size (a ViT has no stride to dilate away); ``"out"`` is the
    last block's patch tokens after ``ln_post``, ``"low"`` the first block's patch tokens
    (DeepLabv3+'s skip, at the same stride); both (B, width, H/patch, W/patch), the class token
    dropped. The projection and pooling parameters are removed (they would never train).
    """

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        if not isinstance(visual, VisionTransformer):
            raise UserError(f"ClipViTBackbone needs an open_clip VisionTransformer, got a "
                            f"{type(visual).__name__}")  # fmt: skip
        self.use_ln_post = getattr(visual, "attn_pool", None) is None
        visual.proj = None  # the projection to the text space: not part of the trunk
        if getattr(visual, "attn_pool", None) is not None:
            visual.attn_pool = None
        if getattr(visual, "attn_pool_contrastive", None) is not None:
            visual.attn_pool_contrastive = None
        if not self.use_ln_post:
            visual.ln_post = nn.Identity()
        self.visual = visual
        width = int(visual.conv1.out_channels)
        self.low_level_channels = width  #: channels of ``"low"`` (the first block's tokens)
        self.out_channels = width  #: channels of ``"out"`` (the last block's, ``ln_post``)
        self.output_stride = int(visual.conv1.stride[0])

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """``images`` (B, 3, H, W) -> ``{"low": (B, width, H/p, W/p), "out": (B, width, H/p,
        W/p)}`` for patch size ``p`` (images cut to whole patches, as the teacher's heads)."""
        x, grid = vit_embed(self.visual, images)
        low = x
        for i, block in enumerate(self.visual.transformer.resblocks):
            x = run_block(block, x)
            if i == 0:
                low = x
        out = self.visual.ln_post(x[:, 1:])
        return {"low": tokens_to_map(low[:, 1:], grid), "out": tokens_to_map(out, grid)}


def build_clip_backbone(visual: nn.Module, *, output_stride: int = 8) -> nn.Module:
    """The teacher CLIP's image tower (a trainable copy) as the student's trunk: a ViT through
    :class:`ClipViTBackbone` (its stride is the patch size; ``output_stride`` does not apply),
    anything else through :class:`ClipResNetBackbone` (which refuses a tower that is not a
    ResNet CLIP in one line)."""
    if isinstance(visual, VisionTransformer):
        return ClipViTBackbone(visual)
    return ClipResNetBackbone(visual, output_stride=output_stride)
