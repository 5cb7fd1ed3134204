"""ClearCLIP (Lan et al., 2024): query-query attention in the last block, no residual, no
FFN. Softmax scale 50. ``attention=qk`` is what the repository's eval config runs."""

from __future__ import annotations

import torch
from open_clip.transformer import VisionTransformer

from src.teacher.heads.registry import Features, HeadSpec, Published, choice, register_head
from src.teacher.heads.vit import (
    merge_heads,
    patch_keys,
    self_attention,
    split_qkv,
    tokens_to_features,
    vit_trunk,
)
from src.teacher.precision import softmax32_


def clearclip_features(
    visual: VisionTransformer, images: torch.Tensor, *, with_keys: bool, attention: str = "qq"
) -> Features:
    """ClearCLIP: query-query attention, no residual, no FFN."""
    x, grid, _ = vit_trunk(visual, images)
    block = visual.transformer.resblocks[-1]
    q, k, v = split_qkv(block, x)
    attn = softmax32_(self_attention(q, q if attention == "qq" else k))  # float32, in place
    tokens = merge_heads(block, attn @ v)
    return tokens_to_features(visual, tokens[:, 1:], grid), patch_keys(
        k, grid
    ) if with_keys else None


register_head(
    HeadSpec(
        name="clearclip",
        features=clearclip_features,
        logit_scale=50.0,
        # "qq" is the paper's ClearCLIP; "qk" is what the repository's eval config runs
        options={"attention": choice("qq", ("qq", "qk"))},
        summary="ClearCLIP: query-query attention, no residual, no FFN",
        order=20,
        published=(
            Published(
                "ClearCLIP, paper",
                "ResCLIP README figures (yvhangyang/ResCLIP figs/main_results_w(o).png)",
                (51.8, 32.6, 33.0, 80.9, 35.9, 23.9, 30.0, 16.7),
            ),
        ),
    )
)
