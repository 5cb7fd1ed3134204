"""The ViT pieces the training-free heads share, on open_clip's modules: the tower up to its
last block, that block's q / k / v and output, the authors' positional-embedding resize, and
the Gaussian neighbourhood bias over the patch grid."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock, VisionTransformer
from torch import nn

from src.teacher.packed_linear import linear


def authors_pos_embed(
    pos: torch.Tensor, grid0: tuple[int, int], grid: tuple[int, int]
) -> torch.Tensor:
    """(1 + gh*gw, C) positional embedding the authors' way: the pretrained table as is when
    the patch count is the pretrained one (even on another grid shape), else the 2-D table
    resized bicubically by the scale factor ``(n + 0.1) / n0`` per axis.

    While tracing (ONNX / TorchScript export of a student with a ViT trunk) the same rule is
    recorded for any input size by :func:`_traced_pos_embed`."""
    if torch.jit.is_tracing():
        return _traced_pos_embed(pos, grid0, grid)
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


def _bicubic_matrix(size: torch.Tensor, size0: int) -> torch.Tensor:
    """(size, size0) matrix of ``F.interpolate(mode="bicubic", align_corners=False)`` along one
    axis with the scale factor ``(size + 0.1) / size0`` (``recompute_scale_factor=False``):
    PyTorch's source coordinates, cubic convolution weights (A = -0.75) and border clamping,
    built from a size that may be a traced tensor."""
    a = -0.75
    dst = torch.arange(size, dtype=torch.float32)
    real = (dst + 0.5) * (size0 / (size.float() + 0.1)) - 0.5
    base = torch.floor(real)
    t = real - base

    def near(x: torch.Tensor) -> torch.Tensor:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: torch.Tensor) -> torch.Tensor:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    columns = torch.arange(size0, dtype=torch.float32)
    matrix = torch.zeros_like(real)[:, None] * columns[None, :]
    for offset, weight in ((-1, far(t + 1)), (0, near(t)), (1, near(1 - t)), (2, far(2 - t))):
        index = (base + offset).clamp(0, size0 - 1)
        matrix = matrix + weight[:, None] * (index[:, None] == columns[None, :]).float()
    return matrix


def _traced_pos_embed(
    pos: torch.Tensor, grid0: tuple[int, int], grid: tuple[int, int]
) -> torch.Tensor:
    """:func:`authors_pos_embed` for a grid whose sizes are traced tensors: both branches
    computed (the table as is, gathered to ``gh * gw`` rows; the bicubic resize as two
    matrices) and the one the rule picks selected in the graph."""
    gh, gw = (torch.as_tensor(g) for g in grid)
    count0 = grid0[0] * grid0[1]
    table = pos[1:].float().reshape(grid0[0], grid0[1], -1).permute(2, 0, 1)  # (C, h0, w0)
    rows, cols = _bicubic_matrix(gh, grid0[0]), _bicubic_matrix(gw, grid0[1])
    resized = torch.matmul(torch.matmul(rows, table), cols.transpose(0, 1))  # (C, gh, gw)
    resized = resized.flatten(1).transpose(0, 1)  # (gh * gw, C)
    as_is = pos[1:].float()[torch.arange(gh * gw) % count0]
    table = torch.where(gh * gw == count0, as_is, resized).to(pos.dtype)
    return torch.cat([pos[:1], table], dim=0)


def _plain_block(block: nn.Module) -> bool:
    """An open_clip ``ResidualAttentionBlock`` with plain self-attention (no extra key/value
    norm, biases or zero attention): what :func:`_sdpa_block` computes."""
    attn = getattr(block, "attn", None)
    return (
        type(block) is ResidualAttentionBlock
        and isinstance(attn, nn.MultiheadAttention)
        and not hasattr(block, "ln_1_kv")
        and attn._qkv_same_embed_dim
        and attn.bias_k is None
        and attn.bias_v is None
        and not attn.add_zero_attn
    )


def _sdpa_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An unchanged block on batch-first tokens, its attention through
    ``F.scaled_dot_product_attention``: what ``nn.MultiheadAttention`` runs off its fused
    inference path (and the authors' CLIP code, sequence-first, always runs). The fused path
    writes every (N, N) attention map out, on a CPU 10-20% slower for a ViT-B/16 at 448 px."""
    attn: nn.MultiheadAttention = block.attn
    b, n, d = x.shape
    heads = attn.num_heads
    qkv = linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.view(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4).unbind(0)
    out = F.scaled_dot_product_attention(q, k, v)
    x = x + block.ls_1(attn.out_proj(out.transpose(1, 2).reshape(b, n, d)))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def _run_block(block: nn.Module, x: torch.Tensor, batch_first: bool) -> torch.Tensor:
    if _plain_block(block):
        return _sdpa_block(block, x)
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


def vit_embed(
    visual: VisionTransformer, images: torch.Tensor
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Tokens entering the first block (B, 1 + gh*gw, width) -- patch embedding, class token,
    the authors' positional embedding, ``ln_pre`` -- and the grid."""
    x = visual.conv1(images.to(visual.conv1.weight.dtype))
    b, c, gh, gw = x.shape
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.to(x.dtype).expand(b, 1, c), x], dim=1)
    pos = authors_pos_embed(visual.positional_embedding, tuple(visual.grid_size), (gh, gw))
    return visual.ln_pre(x + pos.to(x.dtype)), (gh, gw)


def run_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An unchanged block on batch-first tokens, whatever the transformer's layout."""
    return _run_block(block, x, getattr(block.attn, "batch_first", True))


def vit_trunk(
    visual: VisionTransformer, images: torch.Tensor, *, attention_of: Sequence[int] = ()
) -> tuple[torch.Tensor, tuple[int, int], dict[int, torch.Tensor]]:
    """Tokens entering the last block (B, 1 + gh*gw, width), the grid, and the attention maps
    of the blocks ``attention_of``. ``images`` are cut to whole patches by the stride."""
    x, (gh, gw) = vit_embed(visual, images)
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
    y = linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
    heads = attn.num_heads
    return tuple(t.reshape(b, n, heads, d // heads).transpose(1, 2) for t in y.chunk(3, dim=-1))


def merge_heads(block: nn.Module, out: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, head_dim) -> ``out_proj`` -> (B, N, width)."""
    b, h, n, hd = out.shape
    return block.attn.out_proj(out.transpose(1, 2).reshape(b, n, h * hd))


def self_attention(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Scaled logits ``a b^T * head_dim^-0.5`` per head."""
    return (a @ b.transpose(-2, -1)).mul_(a.shape[-1] ** -0.5)  # in place: one N x N buffer


def tokens_to_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Patch tokens (B, gh*gw, C) -> a map (B, C, gh, gw)."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, grid[0], grid[1])


def tokens_to_features(visual: VisionTransformer, tokens: torch.Tensor, grid) -> torch.Tensor:
    """Patch tokens (B, gh*gw, width) -> ``ln_post`` -> ``proj`` -> (B, D, gh, gw)."""
    y = visual.ln_post(tokens)
    if visual.proj is not None:
        y = y @ visual.proj
    return tokens_to_map(y, grid)


def patch_keys(k: torch.Tensor, grid) -> torch.Tensor:
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
