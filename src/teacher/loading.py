"""open_clip loading: the shipped tiny CLIPs' configs, and CLIPs built with clear errors.

Model definitions stay in open_clip; this module (1) adds the JSON configs shipped in
``src/teacher/weights`` to open_clip with its public ``add_model_config``, and resolves the
pretrained tag ``shapes`` of those models to the ``.pt`` file beside the config, and (2) turns
open_clip's failures (unknown name, unknown tag, weights that cannot be had offline, a file
that is not a checkpoint) into one :class:`~src.errors.UserError`.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import open_clip
import torch
from open_clip import pretrained as oc_pretrained
from open_clip.transformer import QuickGELU

from src.errors import UserError

log = logging.getLogger(__name__)

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


def known_tags(model_name: str) -> list[str]:
    """The pretrained tags of ``model_name``: open_clip's and the shipped ``shapes``."""
    tags = list(oc_pretrained.list_pretrained_tags_by_model(model_name))
    if shipped_weights(model_name, SHIPPED_TAG) is not None:
        tags.append(SHIPPED_TAG)
    return tags


#: words in class phrases that carry no meaning of their own (skipped by the vocabulary check)
_FILLER = frozenset({"a", "an", "the", "and", "of", "with"})
_warned_words: set[tuple[str, str]] = set()


def shipped_vocabulary(model_name: str) -> frozenset[str] | None:
    """The words a shipped tiny CLIP was trained on (``<name>.vocabulary.txt`` beside its
    weights: the shapes world's shape and colour words), or None for any other CLIP."""
    path = WEIGHTS_DIR / f"{model_name.replace('/', '-')}.vocabulary.txt"
    if not path.is_file():
        return None
    lines = (line.split("#", 1)[0] for line in path.read_text().splitlines())
    return frozenset(word for line in lines for word in line.split())


def unknown_words(model_name: str, class_names: Sequence[str]) -> list[str]:
    """Words of ``class_names`` a shipped tiny CLIP never saw (empty for other CLIPs)."""
    vocabulary = shipped_vocabulary(model_name)
    if vocabulary is None:
        return []
    words = (w for name in class_names for w in re.findall(r"[\w']+", name.lower()))
    return sorted({w for w in words if w not in vocabulary and w not in _FILLER})


def warn_unknown_words(model_name: str, class_names: Sequence[str]) -> list[str]:
    """Warn once per word when a class phrase uses words a shipped tiny CLIP never saw."""
    new = [
        w for w in unknown_words(model_name, class_names) if (model_name, w) not in _warned_words
    ]
    if new:
        _warned_words.update((model_name, w) for w in new)
        vocabulary = sorted(shipped_vocabulary(model_name) or ())
        log.warning(
            "%s is a tiny CLIP trained on the shapes world only: it never saw %s. It knows %s; "
            "for other phrases use a real CLIP (teacher=rn50, ...)",
            model_name,
            ", ".join(repr(w) for w in new),
            ", ".join(vocabulary),
        )
    return new


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
        parts.append(str(Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(cfg["url"])))
    if cfg.get("hf_hub"):
        repo, names = _hf_candidates(cfg["hf_hub"])
        parts.append(f"the Hugging Face cache of {repo}/{names[-1]}")
    return " or ".join(parts) or "open_clip's pretrained registry"


def _hf_candidates(hf_hub: str) -> tuple[str, list[str]]:
    """The Hugging Face repo of an open_clip ``hf_hub`` entry and the files open_clip tries."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    repo, filename = os.path.split(hf_hub)
    filename = filename or HF_WEIGHTS_NAME
    names = [filename]
    if filename == HF_WEIGHTS_NAME:
        names.insert(0, HF_SAFE_WEIGHTS_NAME)
    elif filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    return repo, names


def weights_cached(tag_cfg: dict) -> bool:
    """Whether open_clip will find a tag's weights on this machine (no download needed)."""
    url_cache = _url_cache_path(tag_cfg)
    if url_cache is not None and url_cache.is_file():
        return True
    if tag_cfg.get("file"):
        return Path(tag_cfg["file"]).is_file()
    if tag_cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo, names = _hf_candidates(tag_cfg["hf_hub"])
        return any(isinstance(try_to_load_from_cache(repo, name), str) for name in names)
    return False


def _offline_reason(tag_cfg: dict, *, timeout: float = 3.0) -> str | None:
    """Why the weights cannot be downloaded now (``HF_HUB_OFFLINE``, host unreachable), or
    None when a download may work. One short connection attempt, no retries (none behind a
    proxy, where only the download itself can tell)."""
    if tag_cfg.get("hf_hub"):
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return "HF_HUB_OFFLINE is set"
        url = constants.ENDPOINT
    else:
        url = tag_cfg.get("url", "")
    parsed = urlparse(url)
    host = parsed.hostname
    proxies = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
    if not host or any(os.environ.get(name) for name in proxies):
        return None  # behind a proxy a direct connection says nothing: let open_clip try
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    outcome: list[str | None] = []

    def attempt() -> None:  # DNS has no timeout of its own: run it in a thread and wait
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as err:
            outcome.append(f"{host} cannot be reached ({err.strerror or err})")

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    return outcome[0] if outcome else f"{host} did not answer within {timeout:.0f} s"


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
        elif not weights_cached(tag_cfg):  # fail at once offline, not after download retries
            reason = _offline_reason(tag_cfg)
            if reason is not None:
                raise UserError(
                    f"the '{pretrained}' weights of {model_name} are not on this machine and "
                    f"cannot be downloaded: {reason}",
                    f"put the file where open_clip looks ({_expected_locations(lookup, pretrained)})"
                    f", or pass a local file: teacher.pretrained=/path/to/{model_name}.pt",
                )
    if pretrained is not None and not is_tag:
        path = Path(os.path.expanduser(pretrained))
        if not path.is_file():
            tags = known_tags(lookup)
            raise UserError(
                f"pretrained weights '{pretrained}' for {model_name} are neither a known tag nor "
                f"an existing file",
                "pass a checkpoint path (teacher.pretrained=/path/to/weights.pt)"
                + (f", or one of the tags {', '.join(tags)}" if tags else ""),
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
                f"put the file where open_clip looks ({_expected_locations(lookup, pretrained)})"
                f", or pass a local file: teacher.pretrained=/path/to/{model_name}.pt",
            ) from err
        raise UserError(
            f"'{pretrained}' is not a valid open_clip checkpoint for {model_name}: {_short(err)}",
            "pass a checkpoint saved from this model (a state dict or an OpenAI JIT archive)",
        ) from err
    return model


class QuickGELUInPlace(QuickGELU):
    """open_clip's ``QuickGELU`` (``x * sigmoid(1.702 x)``) with one temporary instead of three
    when no gradient is recorded: the same numbers (a product is the same either way round),
    and on a CPU ten times faster at ViT-B/16's 197 x 3072 (each fresh temporary is paged in).
    A ``QuickGELU`` still (``isinstance`` checks keep working)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad and torch.is_grad_enabled():
            return x * torch.sigmoid(1.702 * x)
        return torch.mul(x, 1.702).sigmoid_().mul_(x)


def inplace_quick_gelu(model: torch.nn.Module) -> int:
    """Swap every open_clip ``QuickGELU`` in ``model`` for :class:`QuickGELUInPlace`; the
    number swapped (no weights change: the activation has none)."""
    swapped = 0
    for module in list(model.modules()):
        for name, child in module.named_children():
            if type(child) is QuickGELU:
                setattr(module, name, QuickGELUInPlace())
                swapped += 1
    return swapped


def _short(err: BaseException, limit: int = 300) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit] + "..."
