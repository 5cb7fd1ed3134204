"""Segmentation heads mapping backbone features to the text-embedding dimension ``D``.

Every head takes the backbone's ``{"low": layer1, "out": layer4}`` and returns unnormalised
``(B, D, h, w)`` features at the resolution of ``"out"`` (DeepLabv3+: of ``"low"``). The
student's classifier (the frozen text embeddings) is applied after the head.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.errors import UserError


def _conv_bn_relu(cin: int, cout: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _separable(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    """Depthwise 3x3 (dilated) + BN + ReLU, then pointwise 1x1 + BN + ReLU (mmseg's style)."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, padding=dilation, dilation=dilation, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU(inplace=True),
        _conv_bn_relu(cin, cout, 1),
    )


def _resize(x: Tensor, size: Sequence[int]) -> Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class DeepLabV2Head(nn.Module):
    """DeepLabv2 ASPP: four dilated 3x3 convs straight to ``D``, summed (MaskCLIP+'s head)."""

    def __init__(
        self, *, in_channels: int, embed_dim: int, dilations: Sequence[int] = (6, 12, 18, 24)
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, embed_dim, 3, padding=d, dilation=d) for d in dilations
        )
        for conv in self.branches:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        x = features["out"]
        return torch.stack([branch(x) for branch in self.branches]).sum(0)


class ASPPPooling(nn.Sequential):
    """ASPP's image-level branch: global average pool, 1x1 conv, upsampled back."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), _conv_bn_relu(in_channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        return _resize(super().forward(x), x.shape[-2:])


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabv3): image pooling + a 1x1 branch + dilated
    depthwise-separable branches, concatenated and fused by a 3x3 bottleneck."""

    def __init__(
        self, in_channels: int, channels: int, dilations: Sequence[int] = (1, 12, 24, 36)
    ) -> None:
        super().__init__()
        self.image_pool = ASPPPooling(in_channels, channels)
        self.branches = nn.ModuleList(
            _conv_bn_relu(in_channels, channels) if d == 1 else _separable(in_channels, channels, d)
            for d in dilations
        )
        self.bottleneck = _conv_bn_relu((len(dilations) + 1) * channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.bottleneck(
            torch.cat([self.image_pool(x), *(branch(x) for branch in self.branches)], dim=1)
        )


class DeepLabV3PlusHead(nn.Module):
    """:class:`ASPP` (1/12/24/36 + image pooling) with a low-level skip (-> 48)."""

    def __init__(
        self,
        *,
        in_channels: int,
        low_level_channels: int,
        embed_dim: int,
        channels: int = 512,
        skip_channels: int = 48,
        dilations: Sequence[int] = (1, 12, 24, 36),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.aspp = ASPP(in_channels, channels, dilations)
        self.skip = _conv_bn_relu(low_level_channels, skip_channels)
        self.fuse = nn.Sequential(
            _separable(channels + skip_channels, channels),
            _separable(channels, channels),
        )
        self.dropout = nn.Dropout2d(dropout)
        self.proj = nn.Conv2d(channels, embed_dim, 1)

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        x, low = self.aspp(features["out"]), features["low"]
        x = torch.cat([_resize(x, low.shape[-2:]), self.skip(low)], dim=1)
        return self.proj(self.dropout(self.fuse(x)))


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling: the input concatenated with its pooled (1/2/3/6 bins) and
    upsampled summaries."""

    def __init__(self, in_channels: int, channels: int, scales: Sequence[int] = (1, 2, 3, 6)):
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), _conv_bn_relu(in_channels, channels))
            for s in scales
        )
        self.out_channels = in_channels + len(scales) * channels

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, *(_resize(stage(x), x.shape[-2:]) for stage in self.stages)], dim=1)


class PSPHead(nn.Module):
    """:class:`PyramidPooling`, a 3x3 bottleneck, then 1x1 to ``D``."""

    def __init__(
        self,
        *,
        in_channels: int,
        embed_dim: int,
        channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.pyramid = PyramidPooling(in_channels, channels, pool_scales)
        self.bottleneck = _conv_bn_relu(self.pyramid.out_channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.proj = nn.Conv2d(channels, embed_dim, 1)

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        return self.proj(self.dropout(self.bottleneck(self.pyramid(features["out"]))))


HEADS = ("deeplabv2", "deeplabv3plus", "pspnet")


def build_head(
    *,
    name: str,
    in_channels: int,
    low_level_channels: int,
    embed_dim: int,
    channels: int = 512,
    dilations: Sequence[int] | None = None,
) -> nn.Module:
    """The head called ``name`` (one of :data:`HEADS`); ``channels`` is ignored by DeepLabv2.

    ``dilations``: the DeepLabv2 ASPP rates (default 6/12/18/24, the paper's); other heads
    take none.
    """
    if dilations is not None and name != "deeplabv2":
        raise UserError(
            f"student.head_dilations applies to the deeplabv2 head, not {name!r}",
            "set student.head_dilations=null",
        )
    if name == "deeplabv2":
        rates = tuple(int(d) for d in dilations) if dilations is not None else (6, 12, 18, 24)
        if not rates or min(rates) < 1:
            raise UserError(
                f"student.head_dilations must be positive integers, got {list(rates)}",
                "use e.g. [6, 12, 18, 24] (the paper's) or null",
            )
        return DeepLabV2Head(in_channels=in_channels, embed_dim=embed_dim, dilations=rates)
    if name == "deeplabv3plus":
        return DeepLabV3PlusHead(
            in_channels=in_channels,
            low_level_channels=low_level_channels,
            embed_dim=embed_dim,
            channels=channels,
        )
    if name == "pspnet":
        return PSPHead(in_channels=in_channels, embed_dim=embed_dim, channels=channels)
    raise UserError(f"unknown student head {name!r}", f"choose student.head from {list(HEADS)}")
