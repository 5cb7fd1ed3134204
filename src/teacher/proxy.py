"""ProxyCLIP's proxy: a vision foundation model whose patch features give the attention that
ProxyCLIP applies to CLIP's values (docs/TEACHERS.md); CorrCLIP reads ``q + k`` of its last
block instead (:meth:`ProxyViT.query_plus_key`).

The architectures come from timm; the weights from a local file (``teacher.proxy_weights``),
the file shipped in ``src/teacher/weights/`` (``tiny_shapes_dino``: a small ViT trained
self-supervised on the shapes world by ``scripts/train_tiny_proxy.py``, docs/SHAPES_WORLD.md)
or timm's Hugging Face cache, never from the network. Run the way ProxyCLIP runs DINO
(``get_intermediate_layers(x)[0]``): patch embedding, class token, positional embedding
(the 2-D table resized bicubically by the scale factor ``(n + 0.1) / n0`` unless the grid is
the pretrained one), every block, the final norm; the patch tokens are the features.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from src.errors import UserError, shorten
from src.utils.io import describe_file

log = logging.getLogger(__name__)

#: ProxyCLIP re-normalises CLIP's input with ImageNet's statistics for the proxy.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: where shipped proxy weights live (beside the tiny CLIPs)
SHIPPED_DIR = Path(__file__).resolve().parent / "weights"


#: the shapes-world proxy's architecture (timm ``VisionTransformer`` arguments); its recipe is
#: ``scripts/train_tiny_proxy.py``
TINY_SHAPES_DINO: tuple[tuple[str, Any], ...] = (
    ("img_size", 96),
    ("patch_size", 8),
    ("embed_dim", 128),
    ("depth", 4),
    ("num_heads", 4),
    ("mlp_ratio", 2.0),
)


@dataclass(frozen=True)
class ProxySpec:
    """One proxy choice: its timm architecture and what its weights file is called."""

    timm_name: str
    description: str
    original_file: str  #: the authors' release file that loads as well
    timm_kwargs: tuple[tuple[str, Any], ...] = ()  #: overrides of the timm architecture
    shipped: str | None = None  #: a file in src/teacher/weights/ used when no weights are given

    def create(self) -> nn.Module:
        """The timm model of this proxy, random weights, no classifier."""
        import timm

        return timm.create_model(
            self.timm_name, pretrained=False, num_classes=0, **dict(self.timm_kwargs)
        )


PROXIES: dict[str, ProxySpec] = {
    "dino_vitb8": ProxySpec(
        "vit_base_patch8_224.dino", "DINO ViT-B/8", "dino_vitbase8_pretrain.pth"
    ),
    "dino_vitb16": ProxySpec(
        "vit_base_patch16_224.dino", "DINO ViT-B/16", "dino_vitbase16_pretrain.pth"
    ),
    "dinov2_vitb14": ProxySpec(
        "vit_base_patch14_dinov2.lvd142m", "DINOv2 ViT-B/14", "dinov2_vitb14_pretrain.pth"
    ),
    "tiny_shapes_dino": ProxySpec(
        "vit_tiny_patch16_224",
        "shapes-world DINO ViT (patch 8, width 128, 4 blocks)",
        "tiny_shapes_dino.pt",
        timm_kwargs=TINY_SHAPES_DINO,
        shipped="tiny_shapes_dino.pt",
    ),
}


def proxy_spec(name: str | None) -> ProxySpec:
    """The :class:`ProxySpec` of ``name``; an unknown name is a :class:`UserError`."""
    if name in (None, "", "none", "None"):
        raise UserError(
            "this teacher.head needs a teacher.proxy", f"use one of: {', '.join(PROXIES)}"
        )
    if name not in PROXIES:
        raise UserError(f"unknown teacher.proxy '{name}'", f"use one of: {', '.join(PROXIES)}")
    return PROXIES[name]


def _cached_file(timm_name: str) -> Path | None:
    """The weights of ``timm/<timm_name>`` in the Hugging Face cache (no network), if any."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - open_clip depends on huggingface_hub
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(f"timm/{timm_name}", filename)
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def shipped_path(spec: ProxySpec) -> Path | None:
    """Where ``spec``'s shipped weights file belongs (``src/teacher/weights/``), if it has one."""
    return None if spec.shipped is None else SHIPPED_DIR / spec.shipped


def _missing_weights(name: str | None, spec: ProxySpec, detail: str) -> UserError:
    if spec.shipped is not None:
        return UserError(
            f"teacher.proxy={name} needs the {spec.description} weights: {detail}",
            f"restore {shipped_path(spec)} (git checkout) or retrain it (python "
            f"scripts/train_tiny_proxy.py) and leave teacher.proxy_weights null, or pass "
            f"teacher.proxy_weights=/path/to/{spec.shipped} (a file that script wrote)",
        )
    return UserError(
        f"teacher.proxy={name} needs the {spec.description} weights: {detail}",
        f"pass teacher.proxy_weights=/path/to/{spec.original_file} (the authors' file or a "
        f"timm state dict), or fill timm's cache where there is internet: python -c \"import "
        f"timm; timm.create_model('{spec.timm_name}', pretrained=True)\"",
    )


def resolve_proxy_weights(name: str | None, weights: str | os.PathLike | None) -> Path:
    """The local file holding proxy ``name``'s weights (``weights`` or timm's cache)."""
    spec = proxy_spec(name)
    if weights not in (None, "", "none", "None"):
        path = Path(os.path.expanduser(str(weights)))
        if not path.is_file():
            raise _missing_weights(name, spec, f"teacher.proxy_weights={weights} is not a file")
        return path
    shipped = shipped_path(spec)
    if shipped is not None:
        if not shipped.is_file():
            raise _missing_weights(name, spec, f"the shipped file {shipped} is not there")
        return shipped
    cached = _cached_file(spec.timm_name)
    if cached is None:
        raise _missing_weights(
            name, spec, f"no teacher.proxy_weights and timm/{spec.timm_name} is not in the cache"
        )
    return cached


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:  # torch's message advises weights_only=False: not for a foreign file
        raise ValueError(f"the file is {describe_file(path)}") from None
    if isinstance(state, dict) and "teacher" in state:  # DINO's full training checkpoint
        state = state["teacher"]
    if not isinstance(state, dict):
        raise TypeError(f"expected a state dict, got {type(state).__name__}")
    prefixes = ("module.", "backbone.")
    out = {}
    for key, value in state.items():
        for prefix in prefixes:
            key = key[len(prefix) :] if key.startswith(prefix) else key
        out[key] = value
    return out


class ProxyViT(nn.Module):
    """A timm ViT run as ProxyCLIP runs its proxy: (B, 3, H, W) -> (B, D, H/p, W/p)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.patch = int(model.patch_embed.proj.kernel_size[0])
        grid = model.patch_embed.grid_size
        self.grid0 = (int(grid[0]), int(grid[1]))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def pos_embed(self, grid: tuple[int, int]) -> torch.Tensor:
        """(1, prefix + gh*gw, D): the table as is on the pretrained grid, else resized by the
        scale factor ``(n + 0.1) / n0`` (DINO's ``interpolate_pos_encoding``)."""
        pos = self.model.pos_embed
        if tuple(grid) == self.grid0:
            return pos
        prefix = 0 if getattr(self.model, "no_embed_class", False) else 1
        g0h, g0w = self.grid0
        table = pos[:, prefix:].float().reshape(1, g0h, g0w, -1).permute(0, 3, 1, 2)
        table = F.interpolate(
            table,
            scale_factor=((grid[0] + 0.1) / g0h, (grid[1] + 0.1) / g0w),
            mode="bicubic",
            align_corners=False,
        )
        if tuple(table.shape[-2:]) != tuple(grid):  # guard against float rounding
            table = F.interpolate(table, size=grid, mode="bicubic", align_corners=False)
        table = table.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1).to(pos.dtype)
        return torch.cat([pos[:, :prefix], table], dim=1)

    def tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Tokens entering the first block (B, prefix + gh*gw, D) of (B, 3, H, W) images in
        [0, 1] (normalised here with ImageNet's statistics), and the grid."""
        m = self.model
        dtype = m.patch_embed.proj.weight.dtype
        x = ((images.float() - self.mean) / self.std).to(dtype)
        x = m.patch_embed.proj(x)
        b, d, gh, gw = x.shape
        x = x.flatten(2).transpose(1, 2)
        pos = self.pos_embed((gh, gw)).to(x.dtype)
        cls = m.cls_token.to(x.dtype).expand(b, -1, -1)
        if getattr(m, "no_embed_class", False):
            x = torch.cat([cls, x + pos], dim=1)
        else:
            x = torch.cat([cls, x], dim=1) + pos
        if getattr(m, "reg_token", None) is not None:
            x = torch.cat([x[:, :1], m.reg_token.to(x.dtype).expand(b, -1, -1), x[:, 1:]], 1)
        return m.norm_pre(x), (gh, gw)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Proxy features of (B, 3, H, W) images in [0, 1] (normalised here with ImageNet's
        statistics), as (B, D, gh, gw)."""
        m = self.model
        x, (gh, gw) = self.tokens(images)
        for block in m.blocks:
            x = block(x)
        x = m.norm(x)
        return x[:, m.num_prefix_tokens :].transpose(1, 2).reshape(x.shape[0], -1, gh, gw)

    def query_plus_key(self, images: torch.Tensor) -> torch.Tensor:
        """CorrCLIP's reading of the proxy: ``q + k`` of the last block's ``qkv`` projection
        (its input normed by the block's ``norm1``; all heads, not normalised) for the patch
        tokens, as (B, D, gh, gw) -- what a forward hook on ``blocks[-1].attn.qkv`` sees."""
        m = self.model
        x, (gh, gw) = self.tokens(images)
        for block in m.blocks[:-1]:
            x = block(x)
        last = m.blocks[-1]
        b, n, d = x.shape
        qkv = last.attn.qkv(last.norm1(x)).reshape(b, n, 3, d)
        qk = qkv[:, :, 0] + qkv[:, :, 1]
        return qk[:, m.num_prefix_tokens :].transpose(1, 2).reshape(b, d, gh, gw)


def load_proxy(
    name: str, weights: str | os.PathLike | None = None, *, dtype: torch.dtype = torch.float32
) -> ProxyViT:
    """Build proxy ``name`` (timm) with its local weights; every failure is a UserError."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    spec = proxy_spec(name)
    path = resolve_proxy_weights(name, weights)
    model = spec.create()
    try:
        state = checkpoint_filter_fn(_read_state_dict(path), model)
        model.load_state_dict(state, strict=True)
    except Exception as err:  # a foreign or truncated file
        raise UserError(
            f"cannot load {path} as {spec.description} weights for teacher.proxy={name}: "
            f"{shorten(str(err))}",
            f"pass the {spec.original_file} file written by scripts/train_tiny_proxy.py"
            if spec.shipped is not None
            else f"pass the {spec.original_file} file or a timm '{spec.timm_name}' state dict",
        ) from None
    log.info("proxy %s (%s) loaded from %s", name, spec.description, path)
    proxy = ProxyViT(model.to(dtype))
    proxy.requires_grad_(False)
    return proxy.eval()
