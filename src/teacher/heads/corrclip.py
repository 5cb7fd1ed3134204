"""CorrCLIP v1 (Zhang et al., ICCV 2025; zdk258/CorrCLIP, ``CorrCLIPv1/``): CLIP's last-block
attention is replaced by one built from a proxy ViT (DINO ViT-B/8: ``q + k`` of its last block,
normalised) and restricted by class-agnostic region masks.

Per image (the authors' ``VisionTransformer.forward`` in their vendored open_clip):

1. *Mask merging*: the region map is resized (nearest) to the proxy grid; when it holds more
   than two ids, the regions other than the minimum (the "no region" part) whose mean proxy
   features are close (DBSCAN, eps 0.2, one sample: connected components of
   ``max(S) - S <= eps``) become one region.
2. *Scope reconstruction*: the proxy similarity ``S`` is kept between patches of the same
   region; a patch in no region (and any patch, towards one in no region) keeps the entries
   above the mean of ``S``; the rest is masked; softmax of ``tau * S``.
3. *Value reconstruction*: that attention (shared by every head) is applied to the last
   block's values, resized bilinearly to the proxy grid, of two inputs: the last block's input
   (main branch) and the mean of the inputs of the blocks before it (spatial branch, the 5 blocks
   ``L-7 .. L-3`` for 12 blocks), then ``out_proj``; no residual, no FFN.
4. *Semantic branch*: one copy of the class token per region (regions at CLIP's grid) attends
   through every block only to the class token and its region's patches; each patch gets its
   region's final token.
5. ``ln_post`` of each branch, ``main + alpha * spatial + beta * semantic``, ``proj``; the
   output is on the proxy's grid.

After the classes are scored, :func:`src.teacher.regions.region_vote` sets each region's
pixels to its most frequent label (the authors' map correction). Softmax scale 40.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer
from torch import nn

from src.errors import UserError
from src.teacher.heads.registry import (
    Features,
    HeadSetup,
    HeadSpec,
    Published,
    number,
    pair,
    register_head,
)
from src.teacher.heads.vit import patch_keys, run_block, split_qkv, vit_embed
from src.teacher.precision import softmax32
from src.teacher.proxy import PROXIES, load_proxy, resolve_proxy_weights
from src.teacher.regions import region_vote

#: the id the authors give merged regions (``cluster + 10000``); also their crop padding's id
MERGED_BASE = 10000


def spatial_blocks(layers: int) -> int:
    """How many blocks before the last two feed the spatial branch (authors: 5 for 12 blocks,
    12 for 24, 28 for 32, else ``layers - 4``; at least 1 here, where theirs would average
    nothing: 3 or 4 blocks, the tiny shipped ViTs)."""
    return {12: 5, 24: 12, 32: 28}.get(layers, max(layers - 4, 1))


def _components(close: torch.Tensor) -> list[int]:
    """Connected components of a symmetric boolean matrix, numbered in order of their first
    member (what DBSCAN with ``min_samples=1`` returns on a precomputed distance)."""
    n = close.shape[0]
    label = [-1] * n
    neighbours = [torch.nonzero(row).flatten().tolist() for row in close]
    count = 0
    for start in range(n):
        if label[start] != -1:
            continue
        label[start], stack = count, [start]
        while stack:
            for j in neighbours[stack.pop()]:
                if label[j] == -1:
                    label[j] = count
                    stack.append(j)
        count += 1
    return label


def merge_regions(regions: torch.Tensor, feats: torch.Tensor, eps: float) -> torch.Tensor:
    """One (h, w) region map on the proxy grid with the regions (ids but the minimum) whose
    mean normalised proxy features (``feats`` (h, w, D)) are within cosine distance ``eps`` of
    each other, relative to the closest pair (``max(S) - S <= eps``, transitively), given one
    id ``MERGED_BASE + cluster``. Unchanged with two ids or fewer."""
    ids = torch.unique(regions)
    if ids.shape[0] <= 2:
        return regions
    masks = [regions == i for i in ids]
    mean = torch.stack([feats[m].mean(dim=0) for m in masks])
    inst = F.normalize(mean, dim=1)[1:]
    sim = inst @ inst.T
    clusters = _components((sim.max() - sim) <= eps)
    out = regions.clone()
    for mask, cluster in zip(masks[1:], clusters, strict=True):
        out[mask] = cluster + MERGED_BASE
    return out


def scoped_attention(sim: torch.Tensor, regions: torch.Tensor, tau: float) -> torch.Tensor:
    """(M, M) attention from the proxy similarity ``sim`` and the (M,) region of each patch:
    same-region pairs (minimum id excluded), and pairs with a patch in the minimum region whose
    similarity is above the mean of ``sim``; softmax of ``tau * sim`` over them."""
    rest = regions == regions.min()
    same = (regions[:, None] == regions[None, :]) & ~rest[:, None]
    keep = same | ((rest[:, None] | rest[None, :]) & (sim > sim.mean()))
    return softmax32(sim.masked_fill(~keep, float("-inf")) * tau, dim=-1)  # float32 softmax


def _allowed(region_grid: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """(R, 1 + N): the class token and the patches of each region (one row per id)."""
    cls = torch.ones(len(ids), 1, dtype=torch.bool, device=region_grid.device)
    return torch.cat([cls, region_grid.flatten()[None] == ids[:, None]], dim=1)


def _region_tokens(
    block: nn.Module, x: torch.Tensor, tokens: torch.Tensor, allowed: torch.Tensor
) -> torch.Tensor:
    """One block for the semantic branch's tokens (R, width): each attends only to the image
    tokens ``x`` (N, width) that ``allowed`` (R, N) marks; the image tokens are not changed."""
    attn: nn.MultiheadAttention = block.attn
    heads = attn.num_heads
    width = x.shape[-1]
    hd = width // heads
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3)
    y, yt = block.ln_1(x), block.ln_1(tokens)
    q = F.linear(yt, w_q, b_q).reshape(-1, heads, hd).transpose(0, 1)
    k = F.linear(y, w_k, b_k).reshape(-1, heads, hd).transpose(0, 1)
    v = F.linear(y, w_v, b_v).reshape(-1, heads, hd).transpose(0, 1)
    logits = (q * hd**-0.5) @ k.transpose(-2, -1)
    logits = logits.masked_fill(~allowed[None], float("-inf"))
    out = (softmax32(logits).to(v.dtype) @ v).transpose(0, 1).reshape(-1, width)
    tokens = tokens + block.ls_1(attn.out_proj(out))
    return tokens + block.ls_2(block.mlp(block.ln_2(tokens)))


def _one_image(
    visual: VisionTransformer,
    x: torch.Tensor,
    spatial: torch.Tensor,
    region_grid: torch.Tensor,
    tokens: torch.Tensor,
    attn_map: torch.Tensor,
    grid: tuple[int, int],
    fine: tuple[int, int],
    weights: tuple[float, float],
) -> torch.Tensor:
    """The last block's three branches for one image -> (M, width) tokens before ``ln_post``
    summed as the authors do (after ``ln_post`` each)."""
    block = visual.transformer.resblocks[-1]
    width = x.shape[-1]
    both = torch.stack([x, spatial])  # main and spatial branch inputs, (2, N, width)
    w_v = block.attn.in_proj_weight[2 * width :]
    b_v = block.attn.in_proj_bias[2 * width :]
    v = F.linear(block.ln_1(both), w_v, b_v)[:, 1:]
    v = v.transpose(1, 2).reshape(2, width, *grid)
    v = F.interpolate(v, size=fine, mode="bilinear", align_corners=False)
    v = v.flatten(2).transpose(1, 2)  # (2, M, width)
    out = block.attn.out_proj(attn_map.to(v.dtype) @ v)
    ids = torch.unique(region_grid)
    final = _region_tokens(block, x, tokens, _allowed(region_grid, ids))
    # each fine cell takes the token of its region on CLIP's grid (nearest)
    index = torch.searchsorted(ids, region_grid)
    index = F.interpolate(index[None, None].float(), size=fine, mode="nearest")[0, 0].long()
    semantic = final[index.flatten()]
    post = visual.ln_post(torch.cat([out, semantic[None]]))
    alpha, beta = weights
    return post[0] + post[1] * alpha + post[2] * beta


def corrclip_features(
    visual: VisionTransformer,
    images: torch.Tensor,
    *,
    with_keys: bool,
    proxy: nn.Module,
    mean: Sequence[float],
    std: Sequence[float],
    regions: torch.Tensor | None = None,
    branch_weights: tuple[float, float] = (1.0, 0.5),
    tau: float = 4.0,
    merge_eps: float = 0.2,
) -> Features:
    """CorrCLIP's dense features (B, D, gh, gw) on the proxy's grid (module docstring).

    ``regions``: (B, H, W) integer region map at the images' size (0: no region; the authors'
    crops are padded with id 10000); ``None``: every patch in no region. ``branch_weights``:
    ``[alpha, beta]`` of the spatial and semantic branches; ``tau``: the attention's
    temperature; ``merge_eps``: the merging distance."""
    m = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    qk = proxy.query_plus_key(images.float() * s + m)  # undo CLIP's normalisation
    b, _, gi, gj = qk.shape
    fine = (gi, gj)
    qk = F.normalize(qk.flatten(2).transpose(1, 2), dim=-1)  # (B, M, D)
    if regions is None:
        regions = torch.zeros(b, *images.shape[-2:], dtype=torch.int32, device=images.device)
    maps = F.interpolate(regions[:, None].float(), size=fine, mode="nearest").int()[:, 0]

    x, grid = vit_embed(visual, images)
    layers = len(visual.transformer.resblocks)
    first = layers - 2 - spatial_blocks(layers)
    feats = []
    for batch in range(b):
        f = qk[batch]
        sim = f @ f.T
        merged = merge_regions(maps[batch], f.reshape(gi, gj, -1), merge_eps)
        attn_map = scoped_attention(sim, merged.flatten(), tau)
        coarse = F.interpolate(merged[None, None].float(), size=grid, mode="nearest")
        coarse = coarse.int()[0, 0]
        ids = torch.unique(coarse)
        allowed = _allowed(coarse, ids)
        xb = x[batch : batch + 1]
        tokens = xb[0, :1].expand(len(ids), -1)  # the class token, once per region
        spatial = []
        for i, block in enumerate(visual.transformer.resblocks[:-1]):
            tokens = _region_tokens(block, xb[0], tokens, allowed)
            xb = run_block(block, xb)
            if first <= i <= layers - 3:
                spatial.append(xb[0])
        spatial_mean = torch.stack(spatial).mean(0)
        y = _one_image(visual, xb[0], spatial_mean, coarse, tokens, attn_map, grid, fine,
                       branch_weights)  # fmt: skip
        if visual.proj is not None:
            y = y @ visual.proj
        feats.append(y.T.reshape(-1, gi, gj))
        x = torch.cat([x[:batch], xb, x[batch + 1 :]]) if with_keys else x
    out = torch.stack(feats)
    if not with_keys:
        return out, None
    _, k, _ = split_qkv(visual.transformer.resblocks[-1], x)
    keys = F.interpolate(patch_keys(k, grid).float(), size=fine, mode="bilinear")
    return out, keys


def _precheck(setup: HeadSetup) -> None:
    if setup.proxy in (None, "", "none", "None"):
        raise UserError(
            "teacher.head=corrclip needs a DINO proxy ViT (its authors read DINO ViT-B/8), "
            "but teacher.proxy is not set",
            "add teacher.proxy=dino_vitb8 teacher.proxy_weights=/path/to/"
            f"{PROXIES['dino_vitb8'].original_file}",
        )
    try:
        resolve_proxy_weights(setup.proxy, setup.proxy_weights)
    except UserError as err:  # say which head asks for it
        raise UserError(
            f"teacher.head=corrclip reads a DINO proxy: {err.problem}", err.fix
        ) from None


def _extras(setup: HeadSetup) -> dict[str, Any]:
    """The proxy ViT (in the tower's dtype, on its device) and CLIP's normalisation."""
    assert setup.visual is not None
    weight = setup.visual.conv1.weight
    proxy = load_proxy(str(setup.proxy), setup.proxy_weights, dtype=weight.dtype)
    return {"proxy": proxy.to(weight.device), "mean": tuple(setup.mean), "std": tuple(setup.std)}


_README = "zdk258/CorrCLIP @ 103bc18, CorrCLIPv1/README.md, section 3. Results"
_ROWS = (  # (mask generator, CLIP, VOC21, VOC20, PC59, PC60, City, ADE, Stuff, Object)
    ("SAM2 (32 points)", "B", 74.8, 88.8, 48.8, 44.2, 49.4, 26.9, 31.6, 43.7),
    ("SAM2 (8 points)", "B", 73.9, 87.6, 48.0, 43.7, 47.9, 26.5, 31.8, 43.6),
    ("Mask2Former", "B", 73.9, 87.8, 48.2, 43.7, 44.3, 24.6, 33.9, 46.2),
    ("EoMT", "B", 76.0, 90.6, 50.4, 45.4, 48.0, 26.7, 34.5, 46.6),
    ("EntitySeg", "B", 76.2, 89.6, 50.7, 45.7, 51.6, 28.6, 32.4, 44.5),
    ("SAM2 (32 points)", "L", 76.7, 91.5, 50.8, 44.9, 51.1, 30.7, 34.0, 49.4),
    ("SAM2 (8 points)", "L", 76.2, 91.2, 49.9, 44.2, 48.9, 29.8, 33.7, 49.0),
    ("Mask2Former", "L", 76.3, 90.8, 50.2, 44.6, 45.4, 26.9, 35.6, 52.2),
    ("EoMT", "L", 78.0, 92.2, 52.8, 46.4, 50.2, 30.1, 36.3, 52.9),
    ("EntitySeg", "L", 78.9, 92.0, 53.0, 46.8, 53.7, 32.6, 34.9, 51.0),
)


def _published(row: tuple) -> Published:
    """The README's order is VOC21, VOC20, PC59, PC60, City, ADE, Stuff, Object; the table's
    is VOC21, PC60, Object, VOC20, PC59, Stuff, City, ADE."""
    gen, size, voc21, voc20, pc59, pc60, city, ade, stuff, obj = row
    return Published(
        f"CorrCLIP, {gen} masks (MetaCLIP metaclip_fullcc, DINO ViT-B/8)",
        _README,
        (voc21, pc60, obj, voc20, pc59, stuff, city, ade),
        clip="MetaCLIP ViT-B/16" if size == "B" else "MetaCLIP ViT-L/14",
    )


register_head(
    HeadSpec(
        name="corrclip",
        features=corrclip_features,
        logit_scale=40.0,
        options={
            "branch_weights": pair(
                (1.0, 0.5), number(1.0, low=0.0), number(0.5, low=0.0), "[alpha, beta]"
            ),
            "tau": number(4.0, low=0.0, low_open=True),
            "merge_eps": number(0.2, low=0.0, low_open=True),
        },
        summary="CorrCLIP: proxy (DINO) attention scoped by region masks, two extra branches",
        extras=_extras,
        precheck=_precheck,
        needs_weights=True,
        min_blocks=3,  # the spatial branch averages a block before the last two
        order=60,
        published=tuple(_published(r) for r in _ROWS),
        needs_regions=True,
        region_vote=region_vote,
    )
)
