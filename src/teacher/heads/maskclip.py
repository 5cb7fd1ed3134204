"""MaskCLIP / DenseCLIP's value path (:mod:`src.teacher.features`): the default head, on ResNet
and ViT CLIPs. Softmax scale 100 (CLIP's)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from src.teacher.features import dense_extractor
from src.teacher.heads.registry import Features, HeadSetup, HeadSpec, Published, register_head


def maskclip_features(
    visual: nn.Module, images: torch.Tensor, *, with_keys: bool, extractor: Callable[..., Features]
) -> Features:
    """DenseCLIP's dense features: the tower's value path (ResNet or ViT extractor)."""
    return extractor(visual, images, with_keys=with_keys)


def _extras(setup: HeadSetup) -> dict[str, Any]:
    return {"extractor": dense_extractor(setup.visual)}


register_head(
    HeadSpec(
        name="maskclip",
        features=maskclip_features,
        logit_scale=100.0,
        summary="DenseCLIP's (MaskCLIP's) value path; ResNet and ViT CLIPs",
        vit_only=False,
        extras=_extras,
        order=0,
        published=(
            Published(
                "MaskCLIP",
                "ResCLIP README figures (yvhangyang/ResCLIP figs/main_results_w(o).png)",
                (38.8, 23.6, 20.6, 74.9, 26.4, 16.4, 12.6, 9.8),
            ),
        ),
    )
)
