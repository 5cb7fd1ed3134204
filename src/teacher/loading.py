"""open_clip loading: the shipped tiny CLIPs' configs, and CLIPs built with clear errors.

Model definitions stay in open_clip; this module (1) adds the JSON configs shipped in
``src/teacher/weights`` to open_clip with its public ``add_model_config``, and resolves the
pretrained tag ``shapes`` of those models to the ``.pt`` file beside the config, and (2) turns
open_clip's failures (unknown name, unknown tag, weights that cannot be had offline, a file
that is not a checkpoint) into one :class:`~src.errors.UserError`.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import open_clip
import torch
from open_clip import pretrained as oc_pretrained

from src.errors import UserError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED_TAG = "shapes"  #: pretrained tag of the shipped ``<name>.pt`` weights

_registered = False


def register_shipped_models(weights_dir: Path = WEIGHTS_DIR) -> list[str]:
    """Add every ``<name>.json`` in ``weights_dir`` to open_clip's model configs (idempotent).

    Returns the registered model names.
    """
    global _registered
    if not _registered:
        open_clip.add_model_config(weights_dir)
        _registered = True
    return sorted(p.stem for p in weights_dir.glob("*.json"))


def shipped_weights(model_name: str, tag: str | None) -> Path | None:
    """The shipped ``<name>.pt`` file for ``tag`` ``shapes`` of a shipped model, else None."""
    if tag != SHIPPED_TAG:
        return None
    path = WEIGHTS_DIR / f"{model_name}.pt"
    return path if path.is_file() else None


def _url_cache_path(tag_cfg: dict) -> Path | None:
    """Where OpenAI's ``clip`` package and open_clip's url download cache a tag's file."""
    url = tag_cfg.get("url")
    if not url:
        return None
    return Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)


def _expected_locations(model_name: str, tag: str) -> str:
    cfg = oc_pretrained.get_pretrained_cfg(model_name, tag)
    parts = []
    if cfg.get("url"):
        cache = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(cfg["url"])
        parts.append(f"url {cfg['url']} (cached as {cache})")
    if cfg.get("hf_hub"):
        parts.append(f"Hugging Face repo {cfg['hf_hub']} (cached under ~/.cache/huggingface)")
    return "; ".join(parts) or "open_clip's pretrained registry"


def is_torchscript_archive(path: str | os.PathLike) -> bool:
    """True for a TorchScript zip archive (the format of OpenAI's original CLIP ``.pt`` files)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in archive.namelist())


def _load_torchscript_weights(model: torch.nn.Module, path: str) -> None:
    state = torch.jit.load(path, map_location="cpu").state_dict()
    for key in ("input_resolution", "context_length", "vocab_size"):
        state.pop(key, None)
    missing, unexpected = model.load_state_dict(state, strict=False)
    unexpected = [k for k in unexpected if not k.endswith("attn_mask")]
    if missing or unexpected:
        raise RuntimeError(f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")


def create_clip(
    model_name: str,
    pretrained: str | None,
    *,
    precision: str = "fp32",
    quick_gelu: bool | None = None,
) -> torch.nn.Module:
    """Build the open_clip model ``model_name`` with ``pretrained`` weights.

    ``pretrained`` is an open_clip tag (``"openai"``, ...), a local checkpoint path (an
    open_clip state dict or OpenAI's TorchScript archive), or ``None`` for random weights.
    ``quick_gelu=None`` follows the weights (OpenAI's CLIPs were trained with QuickGELU).
    Every failure a user can cause is a ``UserError``.
    """
    register_shipped_models()
    known = open_clip.list_models()
    lookup = model_name.replace("/", "-")
    if lookup not in known:
        raise UserError(
            f"unknown CLIP model '{model_name}'",
            f"use one of: {', '.join(known)}",
        )
    if pretrained in (None, "", "none", "None"):
        pretrained = None
    shipped = shipped_weights(lookup, pretrained)
    if shipped is not None:
        pretrained = str(shipped)
    is_tag = pretrained is not None and oc_pretrained.is_pretrained_cfg(lookup, pretrained)
    torchscript = False
    if is_tag:
        tag_cfg = oc_pretrained.get_pretrained_cfg(lookup, pretrained)
        if quick_gelu is None:
            quick_gelu = bool(tag_cfg.get("quick_gelu", False))
        url_cache = _url_cache_path(tag_cfg)
        if url_cache is not None and url_cache.is_file():  # e.g. ~/.cache/clip/RN50.pt
            pretrained, is_tag = str(url_cache), False
    if pretrained is not None and not is_tag:
        path = Path(os.path.expanduser(pretrained))
        if not path.is_file():
            tags = oc_pretrained.list_pretrained_tags_by_model(lookup)
            raise UserError(
                f"pretrained weights '{pretrained}' for {model_name} are neither a known tag nor "
                f"an existing file",
                f"pass a checkpoint path, or one of the tags {tags or '(none for this model)'}",
            )
        pretrained = str(path)
        torchscript = is_torchscript_archive(path)
        if quick_gelu is None:
            quick_gelu = torchscript
    try:
        model = open_clip.create_model(
            lookup,
            pretrained=None if torchscript else pretrained,
            precision="fp32" if torchscript else precision,
            force_quick_gelu=bool(quick_gelu),
        )
        if torchscript:
            _load_torchscript_weights(model, pretrained)
            if precision in ("fp16", "bf16"):
                model = model.to(torch.float16 if precision == "fp16" else torch.bfloat16)
    except UserError:
        raise
    except Exception as err:  # open_clip raises RuntimeError/OSError/KeyError/pickle errors
        if is_tag:
            raise UserError(
                f"could not load the '{pretrained}' weights of {model_name}: {_short(err)}",
                f"without network, put the weights file where open_clip caches it: "
                f"{_expected_locations(lookup, pretrained)}; or download it elsewhere and pass "
                f"its path as teacher.pretrained=/path/to/file",
            ) from err
        raise UserError(
            f"'{pretrained}' is not a valid open_clip checkpoint for {model_name}: {_short(err)}",
            "pass a checkpoint saved from this model (a state dict or an OpenAI JIT archive)",
        ) from err
    return model


def _short(err: BaseException, limit: int = 300) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit] + "..."
