"""Per-pixel CLIP embeddings from open_clip's own modules (no copied weights, no new layers).

- ResNet CLIPs (REFERENCE section 1): the trunk unchanged, then the attention pool's
  ``v_proj`` and ``c_proj`` applied at every location as 1x1 convolutions; ``q_proj``/``k_proj``
  and the positional embedding are not used.
- ViT CLIPs (REFERENCE section 2): all blocks but the last as usual; in the last block the
  attention mixing is skipped and only the value path kept
  (``v = x + out_proj(v_proj(ln_1(x)))``, ``v = v + mlp(ln_2(v))``), then ``ln_post`` and
  ``proj`` per patch. The positional embedding is resized to the input's patch grid.

Each extractor returns ``(features (B, D, h, w), keys (B, C, h, w))``; the keys feed key
smoothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer
from torch import nn


def resnet_trunk(visual: ModifiedResNet, images: torch.Tensor) -> torch.Tensor:
    """ModifiedResNet stem + layer1..4: (B, C, H/32, W/32)."""
    x = visual.stem(images.to(visual.conv1.weight.dtype))
    return visual.layer4(visual.layer3(visual.layer2(visual.layer1(x))))


def _linear_1x1(x: torch.Tensor, *layers: nn.Linear) -> torch.Tensor:
    """Apply Linear layers in turn at every location of a (B, C, h, w) map (1x1 convs).

    The map is flattened to (B*h*w, C) rows once, so each layer is one plain matrix product
    (a Linear on a permuted 4-D view runs as a slower batched product).
    """
    b, c, h, w = x.shape
    y = x.permute(0, 2, 3, 1).reshape(b * h * w, c)
    for layer in layers:
        y = F.linear(y, layer.weight, layer.bias)
    return y.view(b, h, w, -1).permute(0, 3, 1, 2).contiguous()


def resnet_dense(
    visual: ModifiedResNet, images: torch.Tensor, *, with_keys: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Dense features ``c_proj(v_proj(x))`` and keys ``k_proj(x)`` (``None`` unless
    ``with_keys``: only key smoothing needs them) of a ResNet CLIP."""
    x = resnet_trunk(visual, images)
    pool = visual.attnpool
    feats = _linear_1x1(x, pool.v_proj, pool.c_proj)
    keys = _linear_1x1(x, pool.k_proj) if with_keys else None
    return feats, keys


def resize_vit_pos_embed(
    pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]
) -> torch.Tensor:
    """Resize a (1 + gh*gw, C) positional embedding bicubically, keeping the CLS position."""
    if tuple(old_grid) == tuple(new_grid):
        return pos
    cls_pos, grid_pos = pos[:1], pos[1:]
    c = grid_pos.shape[-1]
    grid_pos = grid_pos.reshape(1, old_grid[0], old_grid[1], c).permute(0, 3, 1, 2)
    grid_pos = F.interpolate(grid_pos.float(), size=new_grid, mode="bicubic", align_corners=False)
    grid_pos = grid_pos.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], c).to(pos.dtype)
    return torch.cat([cls_pos, grid_pos], dim=0)


def pad_to_multiple(images: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad (B, C, H, W) at the bottom/right so H and W are multiples of ``multiple``."""
    h, w = images.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(images, (0, pw, 0, ph)) if (ph or pw) else images


def vit_dense(
    visual: VisionTransformer, images: torch.Tensor, *, with_keys: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Dense features and last-block keys (``None`` unless ``with_keys``) of a ViT CLIP;
    input padded to the patch size."""
    if getattr(visual, "attn_pool", None) is not None:
        raise ValueError("ViT towers with an attentional pooler are not supported by DenseCLIP")
    patch = visual.patch_size[0]
    images = pad_to_multiple(images, patch).to(visual.conv1.weight.dtype)
    x = visual.conv1(images)  # (B, width, gh, gw)
    b, c, gh, gw = x.shape
    x = x.flatten(2).transpose(1, 2)  # (B, gh*gw, width)
    cls = visual.class_embedding.to(x.dtype).expand(b, 1, c)
    x = torch.cat([cls, x], dim=1)
    x = x + resize_vit_pos_embed(visual.positional_embedding, visual.grid_size, (gh, gw)).to(
        x.dtype
    )
    x = visual.ln_pre(x)

    blocks = visual.transformer.resblocks
    batch_first = getattr(visual.transformer, "batch_first", True)
    if not batch_first:
        x = x.transpose(0, 1)
    for block in blocks[:-1]:
        x = block(x)
    if not batch_first:
        x = x.transpose(0, 1)

    last = blocks[-1]
    attn: nn.MultiheadAttention = last.attn
    y = last.ln_1(x)
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3, dim=0)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3, dim=0)
    v = F.linear(y, w_v, b_v)
    v = x + last.ls_1(attn.out_proj(v))
    v = v + last.ls_2(last.mlp(last.ln_2(v)))
    v = visual.ln_post(v)
    if visual.proj is not None:
        v = v @ visual.proj
    feats = v[:, 1:].transpose(1, 2).reshape(b, -1, gh, gw)
    if not with_keys:
        return feats, None
    keys = F.linear(y[:, 1:], w_k, b_k).transpose(1, 2).reshape(b, -1, gh, gw)
    return feats, keys


def dense_extractor(visual: nn.Module):
    """The dense extractor for an open_clip vision tower (ResNet or ViT)."""
    if isinstance(visual, ModifiedResNet):
        return resnet_dense
    if isinstance(visual, VisionTransformer):
        return vit_dense
    raise ValueError(
        f"DenseCLIP supports open_clip's ModifiedResNet and VisionTransformer towers, not "
        f"{type(visual).__name__}"
    )


def output_stride(visual: nn.Module) -> int:
    """Input pixels per feature cell (32 for ResNets, the patch size for ViTs)."""
    if isinstance(visual, VisionTransformer):
        return int(visual.patch_size[0])
    return 32
