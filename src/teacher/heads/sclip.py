"""SCLIP (Wang et al., 2024): correlative self-attention ``softmax(q q^T s) + softmax(k k^T s)``
in the last block; residual and FFN kept. Softmax scale 40."""

from __future__ import annotations

import torch
from open_clip.transformer import VisionTransformer

from src.teacher.heads.registry import Features, HeadSpec, Published, register_head
from src.teacher.heads.vit import (
    merge_heads,
    patch_keys,
    self_attention,
    split_qkv,
    tokens_to_features,
    vit_trunk,
)
from src.teacher.precision import softmax32_


def sclip_features(visual: VisionTransformer, images: torch.Tensor, *, with_keys: bool) -> Features:
    """SCLIP: correlative self-attention in the last block, residual and FFN kept."""
    x, grid, _ = vit_trunk(visual, images)
    block = visual.transformer.resblocks[-1]
    q, k, v = split_qkv(block, x)
    # both softmaxes and their sum in float32 (bf16 / fp16 weights or autocast); the sum in
    # place: fewer (N, N) buffers, the same sum
    attn = softmax32_(self_attention(q, q).float())  # each softmax over its own logits
    attn += softmax32_(self_attention(k, k).float())
    x = x + block.ls_1(merge_heads(block, attn.to(v.dtype) @ v))
    x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return tokens_to_features(visual, x[:, 1:], grid), patch_keys(k, grid) if with_keys else None


register_head(
    HeadSpec(
        name="sclip",
        features=sclip_features,
        logit_scale=40.0,
        summary="SCLIP: correlative self-attention (q-q + k-k), residual and FFN kept",
        order=10,
        published=(
            Published(
                "SCLIP, paper",
                "ResCLIP README figures (yvhangyang/ResCLIP figs/main_results_w(o).png)",
                (59.1, 30.4, 30.5, 80.4, 34.2, 22.4, 32.2, 16.1),
            ),
            Published(
                "SCLIP, repository",
                "SCLIP README @ b56bd30",
                (59.63, 31.74, 33.52, 81.54, 34.46, 22.77, 32.34, 16.45),
            ),
        ),
    )
)
