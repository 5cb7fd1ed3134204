"""NACLIP (Hajimiri et al., 2025): ``softmax(k k^T s + G)`` in the last block, ``G`` a
Gaussian (std 5 patches) over the patch grid; no residual, no FFN. Softmax scale 40."""

from __future__ import annotations

import torch
from open_clip.transformer import VisionTransformer

from src.teacher.heads.registry import Features, HeadSpec, Published, number, register_head
from src.teacher.heads.vit import (
    gaussian_bias,
    merge_heads,
    patch_keys,
    self_attention,
    split_qkv,
    tokens_to_features,
    vit_trunk,
)
from src.teacher.precision import softmax32_


def naclip_features(
    visual: VisionTransformer, images: torch.Tensor, *, with_keys: bool, gaussian_std: float = 5.0
) -> Features:
    """NACLIP: key-key attention plus a Gaussian neighbourhood bias, no residual, no FFN."""
    x, grid, _ = vit_trunk(visual, images)
    block = visual.transformer.resblocks[-1]
    q, k, v = split_qkv(block, x)
    # the bias added and the softmax taken in float32 (bf16 / fp16 weights or autocast)
    logits = self_attention(k, k).float().add_(gaussian_bias(grid, gaussian_std, k.device))
    tokens = merge_heads(block, softmax32_(logits).to(v.dtype) @ v)  # one (B, h, N, N) buffer
    return tokens_to_features(visual, tokens[:, 1:], grid), patch_keys(
        k, grid
    ) if with_keys else None


register_head(
    HeadSpec(
        name="naclip",
        features=naclip_features,
        logit_scale=40.0,
        options={"gaussian_std": number(5.0, low=0.0, low_open=True)},
        summary="NACLIP: key-key attention plus a Gaussian neighbourhood bias",
        authors_refine="pamr",  # NACLIP's headline: slide + PAMR
        order=30,
        published=(
            Published(
                "NACLIP, no post-processing",
                "ResCLIP README figures (yvhangyang/ResCLIP figs/main_results_w(o).png)",
                (58.9, 32.2, 33.2, 79.7, 35.2, 23.3, 35.5, 17.4),
            ),
            Published(
                "NACLIP with PAMR, repository",
                "NACLIP README @ 0cac3a6",
                (64.07, 34.99, 36.19, 83.03, 38.35, 25.69, 38.27, 19.05),
            ),
        ),
    )
)
