"""ProxyCLIP (Lan et al., 2024): the attention comes from a proxy ViT's patch-feature cosine
similarities (:mod:`src.teacher.proxy`) and is applied to CLIP's values; the output grid is
the proxy's. The spec builds the proxy (``teacher.proxy``, ``teacher.proxy_weights``) and
checks its weights before the CLIP loads. Softmax scale 40."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer
from torch import nn

from src.teacher.heads.registry import Features, HeadSetup, HeadSpec, number, register_head
from src.teacher.heads.vit import (
    merge_heads,
    patch_keys,
    split_qkv,
    tokens_to_features,
    vit_trunk,
)
from src.teacher.precision import full_precision
from src.teacher.proxy import load_proxy, resolve_proxy_weights


def proxy_attention(features: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """(B, M, M) attention from proxy features (B, D, I, J): cosine similarities ``S``,
    ``(S - beta * mean(S)) * gamma`` (mean over each image's whole matrix), negatives masked,
    softmax per row. A row with nothing left keeps only itself (the authors' code gives NaN).
    Float32 whatever the proxy's precision (autocast off); no host-device synchronisation."""
    with full_precision(features.device):
        f = F.normalize(features.flatten(2).float(), dim=1)
        sim = f.transpose(1, 2) @ f
        sim = (sim - sim.mean(dim=(1, 2), keepdim=True) * beta) * gamma
        sim = sim.masked_fill(sim < 0, float("-inf"))
        empty = torch.isinf(sim).all(-1)
        diag = sim.diagonal(dim1=-2, dim2=-1)  # zero where a row is empty, unchanged elsewhere
        diag.copy_(torch.where(empty, torch.zeros_like(diag), diag))
    return sim


def proxyclip_features(
    visual: VisionTransformer,
    images: torch.Tensor,
    *,
    with_keys: bool,
    proxy: nn.Module,
    mean: Sequence[float],
    std: Sequence[float],
    beta: float = 1.2,
    gamma: float = 3.0,
) -> Features:
    """ProxyCLIP: the proxy's attention (same for every head) on the last block's values
    resized to the proxy grid; no residual, no FFN, no CLS. Output on the proxy's grid."""
    # undo CLIP's normalisation (the proxy applies its own), channel by channel with Python
    # numbers: no host-to-device copy of the statistics in the forward
    x = images.float()
    pf = proxy(torch.cat([x[:, c : c + 1] * std[c] + mean[c] for c in range(3)], dim=1))
    b, _, gi, gj = pf.shape
    x, grid, _ = vit_trunk(visual, images)
    block = visual.transformer.resblocks[-1]
    q, k, v = split_qkv(block, x)
    heads, hd = v.shape[1], v.shape[-1]
    vg = v[:, :, 1:].reshape(b * heads, grid[0], grid[1], hd).permute(0, 3, 1, 2)
    vg = F.interpolate(vg, size=(gi, gj), mode="bilinear", align_corners=False)
    vg = vg.permute(0, 2, 3, 1).reshape(b, heads, gi * gj, hd)
    attn = proxy_attention(pf, beta, gamma).softmax(-1).to(v.dtype)  # float32 softmax
    tokens = merge_heads(block, attn[:, None] @ vg)
    feats = tokens_to_features(visual, tokens, (gi, gj))
    if not with_keys:
        return feats, None
    keys = F.interpolate(patch_keys(k, grid).float(), size=(gi, gj), mode="bilinear")
    return feats, keys


def _precheck(setup: HeadSetup) -> None:
    resolve_proxy_weights(setup.proxy, setup.proxy_weights)


def _extras(setup: HeadSetup) -> dict[str, Any]:
    """The proxy ViT (in the tower's dtype, on its device) and CLIP's normalisation."""
    assert setup.visual is not None
    weight = setup.visual.conv1.weight
    proxy = load_proxy(str(setup.proxy), setup.proxy_weights, dtype=weight.dtype)
    return {"proxy": proxy.to(weight.device), "mean": tuple(setup.mean), "std": tuple(setup.std)}


register_head(
    HeadSpec(
        name="proxyclip",
        features=proxyclip_features,
        logit_scale=40.0,
        options={
            "beta": number(1.2, low=0.0),
            "gamma": number(3.0, low=0.0, low_open=True),
        },
        summary="ProxyCLIP: attention from a proxy ViT's (DINO) patch similarities",
        extras=_extras,
        precheck=_precheck,
        needs_weights=True,
        order=50,
    )
)
