"""Training-free dense heads of a ViT CLIP: the teacher's ``teacher.head`` choice.

``maskclip`` (the default) is DenseCLIP's value path (:mod:`src.teacher.features`). The others
are the published heads, written from their authors' code on open_clip's modules
(docs/TEACHERS.md holds the file:line references and the parity evidence). All keep blocks
1..L-1 of CLIP unchanged and replace what the last block does with its ``ln_1`` tokens:

- ``sclip`` (SCLIP): attention ``softmax(q q^T s) + softmax(k k^T s)``; residual and FFN kept.
- ``clearclip`` (ClearCLIP): ``softmax(q q^T s)``; no residual, no FFN.
- ``naclip`` (NACLIP): ``softmax(k k^T s + G)`` with ``G`` a Gaussian (std 5 patches) over
  the patch grid; no residual, no FFN.
- ``resclip`` (ResCLIP on NACLIP): NACLIP's attention mixed with the mean attention of the
  middle blocks (RCS), then a second pass whose attention is also pulled towards patches the
  first pass gave the same label (SFR).
- ``proxyclip`` (ProxyCLIP): the attention comes from a proxy ViT's patch-feature cosine
  similarities (:mod:`src.teacher.proxy`) and is applied to CLIP's values; the output grid is
  the proxy's.

These heads resize the positional embedding the authors' way (bicubic by the scale factor
``(n + 0.1) / n0``, and not at all when the patch count is the pretrained one); ``maskclip``
keeps DenseCLIP's resize. Each head returns ``(features (B, D, h, w), keys (B, C, h, w) | None)``
like the extractors of :mod:`src.teacher.features`; the keys (the last block's) feed key
smoothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer
from torch import nn

from src.errors import UserError
from src.teacher.features import dense_extractor
from src.teacher.pamr import pamr

HEADS = ("maskclip", "sclip", "clearclip", "naclip", "resclip", "proxyclip")

#: The softmax temperature each head's authors use on its cosine scores (MaskCLIP: CLIP's 100).
LOGIT_SCALES = {
    "maskclip": 100.0,
    "sclip": 40.0,
    "clearclip": 50.0,
    "naclip": 40.0,
    "resclip": 40.0,
    "proxyclip": 40.0,
}

#: Each head's options and their defaults (the authors' headline settings).
HEAD_OPTIONS: dict[str, dict[str, Any]] = {
    "maskclip": {},
    "sclip": {},
    # "qq" is the paper's ClearCLIP; "qk" is what the repository's eval config runs ('vanilla')
    "clearclip": {"attention": "qq"},
    "naclip": {"gaussian_std": 5.0},
    # temp_thd / rcs_weights / sfr_weights have no default in ResCLIP's code: these are its
    # COCO-Stuff (and COCO-Object) config; docs/TEACHERS.md lists every dataset's
    "resclip": {
        "gaussian_std": 5.0,
        "temp_thd": 0.11,
        "rcs_weights": (2.0, 0.4),
        "sfr_weights": (1.8, 0.7),
        "logit_scale": 40.0,
    },
    "proxyclip": {"beta": 1.2, "gamma": 3.0},
}

Features = tuple[torch.Tensor, torch.Tensor | None]


def plain_config(value: Any) -> Any:
    """Config containers (DictConfig, ListConfig, tuples) as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): plain_config(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [plain_config(v) for v in value]
    return value


def resolve_head_options(head: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``head``'s defaults updated with ``options``; unknown heads / options are UserErrors."""
    if head not in HEADS:
        raise UserError(f"unknown teacher.head '{head}'", f"use one of: {', '.join(HEADS)}")
    defaults = HEAD_OPTIONS[head]
    given = plain_config(options or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        known = ", ".join(defaults) or "none"
        raise UserError(
            f"teacher.head_options {unknown} are not options of teacher.head={head}",
            f"its options are: {known}",
        )
    out = {**plain_config(defaults), **given}
    if head == "clearclip" and out["attention"] not in ("qq", "qk"):
        raise UserError(
            f"teacher.head_options.attention={out['attention']!r} is not valid for clearclip",
            "use qq (the paper) or qk (the repository's eval config)",
        )
    for key in ("rcs_weights", "sfr_weights"):
        if key in out and len(out[key]) != 2:
            raise UserError(f"teacher.head_options.{key} must be [tau, lambda]", "e.g. [2.0, 0.4]")
    return out


def check_head_fits(head: str, visual: nn.Module, clip_model: str) -> None:
    """A UserError unless ``head`` can run on this vision tower."""
    if head == "maskclip":
        return
    if not isinstance(visual, VisionTransformer):
        raise UserError(
            f"teacher.head={head} needs a ViT CLIP, but {clip_model} is a {type(visual).__name__}",
            "use teacher.head=maskclip with ResNet CLIPs, or a ViT teacher (e.g. teacher=vit_b16)",
        )
    blocks = visual.transformer.resblocks
    if getattr(visual, "attn_pool", None) is not None or not all(
        isinstance(getattr(b, "attn", None), nn.MultiheadAttention) for b in blocks
    ):
        raise UserError(
            f"teacher.head={head} supports open_clip ViTs with plain attention blocks; "
            f"{clip_model} has another block type or an attentional pooler",
            "use teacher.head=maskclip for this CLIP",
        )
    if head == "resclip" and len(blocks) < 2:
        raise UserError(f"teacher.head=resclip needs a ViT with 2 or more blocks ({clip_model})")


# ------------------------------------------------------------------ the ViT up to the last block
def authors_pos_embed(
    pos: torch.Tensor, grid0: tuple[int, int], grid: tuple[int, int]
) -> torch.Tensor:
    """(1 + gh*gw, C) positional embedding the authors' way: the pretrained table as is when
    the patch count is the pretrained one (even on another grid shape), else the 2-D table
    resized bicubically by the scale factor ``(n + 0.1) / n0`` per axis."""
    if grid[0] * grid[1] == grid0[0] * grid0[1]:
        return pos
    table = pos[1:].float().reshape(1, grid0[0], grid0[1], -1).permute(0, 3, 1, 2)
    table = F.interpolate(
        table,
        scale_factor=((grid[0] + 0.1) / grid0[0], (grid[1] + 0.1) / grid0[1]),
        mode="bicubic",
        align_corners=False,
        recompute_scale_factor=False,
    )
    if tuple(table.shape[-2:]) != tuple(grid):  # guard against float rounding
        table = F.interpolate(table, size=grid, mode="bicubic", align_corners=False)
    table = table.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1).to(pos.dtype)
    return torch.cat([pos[:1], table], dim=0)


def _run_block(block: nn.Module, x: torch.Tensor, batch_first: bool) -> torch.Tensor:
    return block(x) if batch_first else block(x.transpose(0, 1)).transpose(0, 1)


def block_with_attention(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An unchanged block on batch-first tokens, also returning its attention (B, heads, N, N)."""
    attn: nn.MultiheadAttention = block.attn
    y = block.ln_1(x)
    if not attn.batch_first:
        y = y.transpose(0, 1)
    out, weights = attn(y, y, y, need_weights=True, average_attn_weights=False)
    if not attn.batch_first:
        out = out.transpose(0, 1)
    x = x + block.ls_1(out)
    x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return x, weights


def vit_trunk(
    visual: VisionTransformer, images: torch.Tensor, *, attention_of: Sequence[int] = ()
) -> tuple[torch.Tensor, tuple[int, int], dict[int, torch.Tensor]]:
    """Tokens entering the last block (B, 1 + gh*gw, width), the grid, and the attention maps
    of the blocks ``attention_of``. ``images`` are cut to whole patches by the stride."""
    x = visual.conv1(images.to(visual.conv1.weight.dtype))
    b, c, gh, gw = x.shape
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.to(x.dtype).expand(b, 1, c), x], dim=1)
    pos = authors_pos_embed(visual.positional_embedding, tuple(visual.grid_size), (gh, gw))
    x = visual.ln_pre(x + pos.to(x.dtype))
    batch_first = getattr(visual.transformer, "batch_first", True)
    maps: dict[int, torch.Tensor] = {}
    for i, block in enumerate(visual.transformer.resblocks[:-1]):
        if i in attention_of:
            x, maps[i] = block_with_attention(block, x)
        else:
            x = _run_block(block, x, batch_first)
    return x, (gh, gw), maps


def split_qkv(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """q, k, v of ``ln_1(x)``, each (B, heads, N, head_dim)."""
    attn: nn.MultiheadAttention = block.attn
    b, n, d = x.shape
    y = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
    heads = attn.num_heads
    return tuple(t.reshape(b, n, heads, d // heads).transpose(1, 2) for t in y.chunk(3, dim=-1))


def merge_heads(block: nn.Module, out: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, head_dim) -> ``out_proj`` -> (B, N, width)."""
    b, h, n, hd = out.shape
    return block.attn.out_proj(out.transpose(1, 2).reshape(b, n, h * hd))


def _self_attention(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Scaled logits ``a b^T * head_dim^-0.5`` per head."""
    return (a @ b.transpose(-2, -1)) * (a.shape[-1] ** -0.5)


def tokens_to_features(visual: VisionTransformer, tokens: torch.Tensor, grid) -> torch.Tensor:
    """Patch tokens (B, gh*gw, width) -> ``ln_post`` -> ``proj`` -> (B, D, gh, gw)."""
    y = visual.ln_post(tokens)
    if visual.proj is not None:
        y = y @ visual.proj
    return y.transpose(1, 2).reshape(y.shape[0], -1, grid[0], grid[1])


def _keys(k: torch.Tensor, grid) -> torch.Tensor:
    """Patch keys (B, heads, N, hd) -> (B, width, gh, gw) (the CLS key dropped)."""
    b, h, n, hd = k.shape
    return (
        k[:, :, 1:]
        .transpose(1, 2)
        .reshape(b, n - 1, h * hd)
        .transpose(1, 2)
        .reshape(b, h * hd, grid[0], grid[1])
    )


def gaussian_bias(grid: tuple[int, int], std: float, device=None) -> torch.Tensor:
    """NACLIP's (1 + N, 1 + N) bias ``exp(-|p - q|^2 / (2 std^2))`` between patch positions
    (row-major, in patches), zero on the CLS row and column."""
    gh, gw = grid
    r = torch.arange(gh, dtype=torch.float32, device=device).repeat_interleave(gw)
    c = torch.arange(gw, dtype=torch.float32, device=device).repeat(gh)
    d2 = (r[:, None] - r[None, :]) ** 2 + (c[:, None] - c[None, :]) ** 2
    out = torch.zeros(gh * gw + 1, gh * gw + 1, device=device)
    out[1:, 1:] = torch.exp(-d2 / (2 * std**2))
    return out


# ------------------------------------------------------------------ SCLIP, ClearCLIP, NACLIP
def sclip_features(visual: VisionTransformer, images: torch.Tensor, *, with_keys: bool) -> Features:
    """SCLIP: correlative self-attention in the last block, residual and FFN kept."""
    x, grid, _ = vit_trunk(visual, images)
    block = visual.transformer.resblocks[-1]
    q, k, v = split_qkv(block, x)
    attn = _self_attention(q, q).softmax(-1) + _self_attention(k, k).softmax(-1)
    x = x + block.ls_1(merge_heads(block, attn @ v))
    x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return tokens_to_features(visual, x[:, 1:], grid), _keys(k, grid) if with_keys else None


def clearclip_features(
    visual: VisionTransformer, images: torch.Tensor, *, with_keys: bool, attention: str = "qq"
) -> Features:
    """ClearCLIP: query-query attention, no residual, no FFN."""
    x, grid, _ = vit_trunk(visual, images)
    block = visual.transformer.resblocks[-1]
    q, k, v = split_qkv(block, x)
    attn = _self_attention(q, q if attention == "qq" else k).softmax(-1)
    tokens = merge_heads(block, attn @ v)
    return tokens_to_features(visual, tokens[:, 1:], grid), _keys(k, grid) if with_keys else None


def naclip_features(
    visual: VisionTransformer, images: torch.Tensor, *, with_keys: bool, gaussian_std: float = 5.0
) -> Features:
    """NACLIP: key-key attention plus a Gaussian neighbourhood bias, no residual, no FFN."""
    x, grid, _ = vit_trunk(visual, images)
    block = visual.transformer.resblocks[-1]
    q, k, v = split_qkv(block, x)
    logits = _self_attention(k, k) + gaussian_bias(grid, gaussian_std, k.device).to(k.dtype)
    tokens = merge_heads(block, logits.softmax(-1) @ v)
    return tokens_to_features(visual, tokens[:, 1:], grid), _keys(k, grid) if with_keys else None


# ------------------------------------------------------------------ ResCLIP
def rcs_blocks(depth: int) -> range:
    """The blocks whose attention ResCLIP averages: 6-9 of ViT-B's 12 (0-based 5..8), the same
    share of the depth for other ViTs (at least one block before the last)."""
    start, stop = depth * 5 // 12, depth * 9 // 12
    stop = min(max(stop, start + 1), depth - 1)
    return range(min(start, stop - 1), stop)


def line_of_sight(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """ResCLIP's walk between patches (row-major over the (gh, gw) ``labels``):
    ``valid[i, j]`` when the samples ``round(p_i (1 - t) + p_j t)``, ``t = s / M`` for
    ``s = 0..steps_ij`` (``steps_ij`` the Chebyshev distance, ``M`` the largest on the grid;
    fp32, round half to even), all carry ``i``'s label. Returns (valid, steps, M)."""
    gh, gw = labels.shape
    n = gh * gw
    idx = torch.arange(n, device=labels.device)
    r, c = idx // gw, idx % gw
    steps = torch.maximum((r[None] - r[:, None]).abs(), (c[None] - c[:, None]).abs())
    big = int(steps.max())
    flat = labels.reshape(-1)
    own = flat[:, None]
    valid = torch.ones(n, n, dtype=torch.bool, device=labels.device)
    t = torch.linspace(0, 1, big + 1, device=labels.device)
    ri, rj, ci, cj = r[:, None], r[None, :], c[:, None], c[None, :]
    for s in range(1, big + 1):
        ts = t[s]
        pr = (ri * (1 - ts) + rj * ts).round().long()
        pc = (ci * (1 - ts) + cj * ts).round().long()
        valid &= (steps < s) | (flat[pr * gw + pc] == own)
    return valid, steps, big


def sfr_matrix(labels: torch.Tensor, std: float) -> torch.Tensor:
    """ResCLIP's semantic-feedback matrix (1 + N, 1 + N) from per-patch labels (gh, gw):
    same-label pairs 1, decayed by ``exp(-steps / M)`` where the line of sight breaks, each
    row of the flattened matrix blurred by a 1-D Gaussian (zero padding), ReLU, rows scaled
    to sum 1; zero CLS row and column."""
    n = labels.numel()
    flat = labels.reshape(-1)
    same = (flat[:, None] == flat[None, :]).float()
    valid, steps, big = line_of_sight(labels)
    if big > 0:
        same = torch.where(valid, same, same * torch.exp(-steps / big))
    size = min(n, int(6 * std + 1))
    size += 1 - size % 2
    u = torch.arange(size, device=labels.device) - size // 2
    kernel = torch.exp(-(u**2) / (2 * std**2))
    kernel = (kernel / kernel.sum()).view(1, 1, -1)
    blurred = F.relu(F.conv1d(same.unsqueeze(1), kernel, padding=size // 2).squeeze(1))
    blurred = blurred / (blurred.sum(1, keepdim=True) + 1e-8)
    out = torch.zeros(n + 1, n + 1, device=labels.device)
    out[1:, 1:] = blurred
    return out


def patch_labels(labels: torch.Tensor, grid: tuple[int, int], patch: int) -> torch.Tensor:
    """Per-patch mode (the smallest of the most frequent values) of (B, H, W) pixel labels."""
    b = labels.shape[0]
    gh, gw = grid
    blocks = labels[:, : gh * patch, : gw * patch].reshape(b, gh, patch, gw, patch)
    blocks = blocks.permute(0, 1, 3, 2, 4).reshape(b, gh, gw, patch * patch)
    return torch.mode(blocks, dim=-1).values


def _resclip_attention(
    q_k: tuple[torch.Tensor, torch.Tensor],
    rcs: torch.Tensor,
    opts: Mapping[str, Any],
    grid: tuple[int, int],
    sfr: torch.Tensor | None = None,
) -> torch.Tensor:
    k, v = q_k
    logits = _self_attention(k, k)
    if sfr is not None:  # (B, N, N), rounded to fp16 as ResCLIP's code does
        tau, lam = opts["sfr_weights"]
        peak = sfr.flatten(1).amax(1).view(-1, 1, 1, 1)
        sfr16 = (sfr[:, None] / peak).to(torch.float16)
        logits = tau * ((1 - lam) * logits + (lam * sfr16).to(logits.dtype))
    logits = logits + gaussian_bias(grid, opts["gaussian_std"], k.device).to(logits.dtype)
    tau, lam = opts["rcs_weights"]
    attn = tau * ((1 - lam) * logits.softmax(-1) + lam * rcs)  # rows sum to tau
    return attn @ v


def resclip_features(
    visual: VisionTransformer,
    images: torch.Tensor,
    *,
    with_keys: bool,
    text: torch.Tensor,
    gaussian_std: float = 5.0,
    temp_thd: float = 0.11,
    rcs_weights: Sequence[float] = (2.0, 0.4),
    sfr_weights: Sequence[float] = (1.8, 0.7),
    logit_scale: float = 40.0,
    first_pass: dict[str, torch.Tensor] | None = None,
) -> Features:
    """ResCLIP (RCS + SFR on NACLIP's last block, no residual, no FFN). A first pass (RCS
    only) labels the image: its scores at image size refined by PAMR, ``softmax(logit_scale
    * scores)``, label 0 where the top probability is below ``temp_thd``, the mode per patch;
    the second pass adds the semantic-feedback attention of those labels. A ``first_pass``
    dict receives the first pass's grid cosines (``cos``) and patch labels (``labels``)."""
    opts = {
        "gaussian_std": gaussian_std,
        "rcs_weights": tuple(rcs_weights),
        "sfr_weights": tuple(sfr_weights),
    }
    blocks = visual.transformer.resblocks
    chosen = rcs_blocks(len(blocks))
    x, grid, maps = vit_trunk(visual, images, attention_of=tuple(chosen))
    rcs = torch.stack([maps[i] for i in chosen]).mean(0)  # (B, heads, N, N)
    block = blocks[-1]
    q, k, v = split_qkv(block, x)
    first = tokens_to_features(
        visual, merge_heads(block, _resclip_attention((k, v), rcs, opts, grid))[:, 1:], grid
    )
    cos = torch.einsum(
        "bdhw,kd->bkhw", F.normalize(first.float(), dim=1), text.float().to(first.device)
    )
    if first_pass is not None:
        first_pass["cos"] = cos
    cos = F.interpolate(cos, size=images.shape[-2:], mode="bilinear", align_corners=False)
    probs = torch.softmax(logit_scale * pamr(images.float(), cos), dim=1)
    top, labels = probs.max(dim=1)
    labels = torch.where(top < temp_thd, torch.zeros_like(labels), labels)
    patch = int(visual.patch_size[0])
    per_patch = patch_labels(labels, grid, patch)
    if first_pass is not None:
        first_pass["labels"] = per_patch
    sfr = torch.stack([sfr_matrix(lab, gaussian_std) for lab in per_patch])
    tokens = merge_heads(block, _resclip_attention((k, v), rcs, opts, grid, sfr))
    return tokens_to_features(visual, tokens[:, 1:], grid), _keys(k, grid) if with_keys else None


# ------------------------------------------------------------------ ProxyCLIP
def proxy_attention(features: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """(B, M, M) attention from proxy features (B, D, I, J): cosine similarities ``S``,
    ``(S - beta * mean(S)) * gamma`` (mean over each image's whole matrix), negatives masked,
    softmax per row. A row with nothing left keeps only itself (the authors' code gives NaN)."""
    f = F.normalize(features.flatten(2), dim=1)
    sim = f.transpose(1, 2) @ f
    sim = (sim - sim.mean(dim=(1, 2), keepdim=True) * beta) * gamma
    sim = sim.masked_fill(sim < 0, float("-inf"))
    empty = torch.isinf(sim).all(-1)
    if bool(empty.any()):
        diag = sim.diagonal(dim1=-2, dim2=-1)
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
    m = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    pf = proxy(images.float() * s + m)  # undo CLIP's normalisation; the proxy applies its own
    b, _, gi, gj = pf.shape
    x, grid, _ = vit_trunk(visual, images)
    block = visual.transformer.resblocks[-1]
    q, k, v = split_qkv(block, x)
    heads, hd = v.shape[1], v.shape[-1]
    vg = v[:, :, 1:].reshape(b * heads, grid[0], grid[1], hd).permute(0, 3, 1, 2)
    vg = F.interpolate(vg, size=(gi, gj), mode="bilinear", align_corners=False)
    vg = vg.permute(0, 2, 3, 1).reshape(b, heads, gi * gj, hd)
    attn = proxy_attention(pf, beta, gamma).to(v.dtype).softmax(-1)
    tokens = merge_heads(block, attn[:, None] @ vg)
    feats = tokens_to_features(visual, tokens, (gi, gj))
    if not with_keys:
        return feats, None
    keys = F.interpolate(_keys(k, grid).float(), size=(gi, gj), mode="bilinear")
    return feats, keys


# ------------------------------------------------------------------ the head as one callable
class DenseHead(nn.Module):
    """``teacher.head`` bound to its options (and ProxyCLIP's proxy, a submodule):
    ``head(visual, images, text=..., with_keys=...) -> (features, keys)``."""

    def __init__(
        self,
        name: str,
        visual: nn.Module,
        options: Mapping[str, Any],
        *,
        proxy: nn.Module | None = None,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
    ) -> None:
        super().__init__()
        self.name = name
        self.options = dict(options)
        self.proxy = proxy
        self._maskclip = dense_extractor(visual) if name == "maskclip" else None
        self._mean, self._std = tuple(mean), tuple(std)

    def forward(
        self, visual: nn.Module, images: torch.Tensor, *, text: torch.Tensor, with_keys: bool
    ) -> Features:
        """Dense features and keys of ``images`` (normalised, padded to whole patches)."""
        fn: Callable[..., Features]
        if self._maskclip is not None:
            return self._maskclip(visual, images, with_keys=with_keys)
        kwargs = dict(self.options)
        if self.name == "sclip":
            fn = sclip_features
        elif self.name == "clearclip":
            fn = clearclip_features
        elif self.name == "naclip":
            fn = naclip_features
        elif self.name == "resclip":
            fn, kwargs["text"] = resclip_features, text
        else:
            fn = proxyclip_features
            kwargs.update(proxy=self.proxy, mean=self._mean, std=self._std)
        return fn(visual, images, with_keys=with_keys, **kwargs)
