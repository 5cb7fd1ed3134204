"""ResCLIP (Yang et al., 2025) on NACLIP's last block: NACLIP's attention mixed with the
mean attention of the middle blocks (RCS), then a second pass whose attention is also pulled
towards patches the first pass gave the same label (SFR). Softmax scale 40."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer

from src.teacher.heads.registry import Features, HeadSpec, Published, number, pair, register_head
from src.teacher.heads.vit import (
    gaussian_bias,
    merge_heads,
    patch_keys,
    self_attention,
    split_qkv,
    tokens_to_features,
    vit_trunk,
)
from src.teacher.pamr import pamr
from src.teacher.precision import full_precision, softmax32_


def rcs_blocks(depth: int) -> range:
    """The blocks whose attention ResCLIP averages: 6-9 of ViT-B's 12 (0-based 5..8), the same
    share of the depth for other ViTs (at least one block before the last)."""
    start, stop = depth * 5 // 12, depth * 9 // 12
    stop = min(max(stop, start + 1), depth - 1)
    return range(min(start, stop - 1), stop)


def line_of_sight(
    labels: torch.Tensor, levels: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """ResCLIP's walk between patches (row-major over the (gh, gw) ``labels``):
    ``valid[i, j]`` when the samples ``round(p_i (1 - t) + p_j t)``, ``t = s / M`` for
    ``s = 0..steps_ij`` (``steps_ij`` the Chebyshev distance, ``M`` the largest on the grid;
    fp32, round half to even), all carry ``i``'s label. Returns (valid, steps, M).
    ``levels``: an upper bound of the labels (compared as bytes when at most 256).

    The sample's row depends only on the two rows and ``s``, its column only on the two
    columns: both come from (gh, gh) and (gw, gw) tables per step (the same fp32 arithmetic
    as ResCLIP's walk over all N x N pairs), then one gather of the labels per step over the
    pairs (i's row, i's column, j's row, j's column)."""
    gh, gw = labels.shape
    n = gh * gw
    device = labels.device
    r = torch.arange(gh, device=device)
    c = torch.arange(gw, device=device)
    dr = (r[None] - r[:, None]).abs()  # (gh, gh): [ri, rj]
    dc = (c[None] - c[:, None]).abs()  # (gw, gw): [ci, cj]
    big = max(gh, gw) - 1  # = steps.max(), from the shape: no host-device synchronisation
    # pairs (i, j) laid out as (ci, cj, ri, rj): a step's samples are whole rows of a table;
    # labels and steps in bytes where they fit (contiguous byte compares are the cheap ones)
    # (``levels``: labels are below it; bytes then; read from no tensor: no host-device sync)
    small = labels.to(torch.uint8) if levels is not None and levels <= 256 else labels
    by_column = small.t().contiguous()  # (gw, gh): [c, r]
    own = by_column.view(gw, 1, gh, 1).expand(gw, gw, gh, gh).contiguous()
    steps = torch.maximum(dc.view(gw, gw, 1, 1), dr.view(1, 1, gh, gh))
    steps_small = steps.to(torch.uint8) if big < 255 else steps
    level = torch.empty_like(steps_small)
    broken = torch.zeros(gw, gw, gh, gh, dtype=torch.bool, device=device)
    t = torch.linspace(0, 1, big + 1, device=device)
    ri, rj, ci, cj = r[:, None], r[None, :], c[:, None], c[None, :]
    for s in range(1, big + 1):
        ts = t[s]
        pr = (ri * (1 - ts) + rj * ts).round().long()  # (gh, gh): the sample's row
        pc = (ci * (1 - ts) + cj * ts).round().long()  # (gw, gw): the sample's column
        rows = by_column[:, pr.view(-1)]  # (gw, gh * gh): [c, (ri, rj)]
        sample = rows.index_select(0, pc.view(-1)).view(gw, gw, gh, gh)
        broken |= (sample != own) & (steps_small >= level.fill_(s))  # off i's label, s <= steps
    return (
        broken.logical_not_().permute(2, 0, 3, 1).reshape(n, n),
        steps.permute(2, 0, 3, 1).reshape(n, n),
        big,
    )


def sfr_matrix(labels: torch.Tensor, std: float, levels: int | None = None) -> torch.Tensor:
    """ResCLIP's semantic-feedback matrix (1 + N, 1 + N) from per-patch labels (gh, gw):
    same-label pairs 1, decayed by ``exp(-steps / M)`` where the line of sight breaks, each
    row of the flattened matrix blurred by a 1-D Gaussian (zero padding), ReLU, rows scaled
    to sum 1; zero CLS row and column."""
    n = labels.numel()
    flat = labels.reshape(-1)
    same = (flat[:, None] == flat[None, :]).float()
    valid, steps, big = line_of_sight(labels, levels)
    if big > 0:  # exp(-steps / M) from a table of the M + 1 step counts
        decay = torch.exp(-torch.arange(big + 1, device=labels.device) / big)
        same = torch.where(valid, same, same * decay[steps])
    size = min(n, int(6 * std + 1))
    size += 1 - size % 2
    u = torch.arange(size) - size // 2  # on the CPU: its weights are read as Python numbers
    kernel = torch.exp(-(u**2) / (2 * std**2))
    kernel = kernel / kernel.sum()
    # the 1-D convolution of every row (zero padding) as one shifted multiply-add per tap,
    # in the tap order of F.conv1d (equal to it here; conv1d over N rows of N is slow on a CPU)
    pad = size // 2
    padded = F.pad(same, (pad, pad))
    blurred = torch.zeros_like(same)
    for tap, weight in enumerate(kernel.tolist()):
        blurred.add_(padded[:, tap : tap + n], alpha=weight)
    blurred = F.relu_(blurred)
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
    logits: torch.Tensor,
    v: torch.Tensor,
    rcs: torch.Tensor,
    bias: torch.Tensor,
    opts: Mapping[str, Any],
    sfr: torch.Tensor | None = None,
) -> torch.Tensor:
    """One pass's attention output from the shared scaled ``k k^T`` ``logits`` (left as they
    are) and the Gaussian ``bias``; the same arithmetic as ResCLIP's, done in place."""
    if sfr is not None:  # (B, N, N), rounded to fp16 as ResCLIP's code does
        tau, lam = opts["sfr_weights"]
        peak = sfr.flatten(1).amax(1).view(-1, 1, 1, 1)
        sfr16 = (sfr[:, None] / peak).to(torch.float16)
        mixed = torch.mul(logits, 1 - lam).add_((lam * sfr16).to(logits.dtype)).mul_(tau)
        mixed.add_(bias)
    else:
        mixed = logits + bias
    attn = softmax32_(mixed)  # float32 softmax (bf16 / fp16 weights or autocast), in place
    del mixed
    tau, lam = opts["rcs_weights"]
    attn.mul_(1 - lam).add_(rcs * lam).mul_(tau)  # rows sum to tau
    return attn.to(v.dtype) @ v


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
    rcs = maps.pop(chosen[0])  # (B, heads, N, N): the mean, summed in place
    for i in chosen[1:]:
        rcs += maps.pop(i)
    rcs /= len(chosen)
    block = blocks[-1]
    q, k, v = split_qkv(block, x)
    logits = self_attention(k, k)  # both passes start from it
    bias = gaussian_bias(grid, gaussian_std, k.device).to(logits.dtype)
    first = tokens_to_features(
        visual, merge_heads(block, _resclip_attention(logits, v, rcs, bias, opts))[:, 1:], grid
    )
    with full_precision(first.device):  # the first pass's labels in float32, as the authors'
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
    levels = int(text.shape[0])  # the labels are name indices
    sfr = torch.stack([sfr_matrix(lab, gaussian_std, levels) for lab in per_patch])
    tokens = merge_heads(block, _resclip_attention(logits, v, rcs, bias, opts, sfr))
    return tokens_to_features(visual, tokens[:, 1:], grid), patch_keys(
        k, grid
    ) if with_keys else None


_WEIGHT = number(1.0, low=0.0, low_open=True)
_MIX = number(0.5, low=0.0, high=1.0)

register_head(
    HeadSpec(
        name="resclip",
        features=resclip_features,
        logit_scale=40.0,
        # temp_thd / rcs_weights / sfr_weights have no default in ResCLIP's code: these are its
        # COCO-Stuff (and COCO-Object) config; docs/TEACHERS.md lists every dataset's
        options={
            "gaussian_std": number(5.0, low=0.0, low_open=True),
            "temp_thd": number(0.11, low=0.0, high=1.0),
            "rcs_weights": pair((2.0, 0.4), _WEIGHT, _MIX, "[tau, lambda]"),
            "sfr_weights": pair((1.8, 0.7), _WEIGHT, _MIX, "[tau, lambda]"),
            "logit_scale": number(40.0, low=0.0, low_open=True),
        },
        summary="ResCLIP: NACLIP with residual cross-correlation (RCS) and semantic feedback (SFR)",
        min_blocks=2,
        uses_text=True,
        order=40,
        published=(
            Published(
                "ResCLIP on NACLIP, paper",
                "ResCLIP README figures (yvhangyang/ResCLIP figs/main_results_w(o).png)",
                (61.1, 33.5, 35.0, 86.0, 36.8, 24.7, 35.9, 18.0),
            ),
        ),
    )
)
