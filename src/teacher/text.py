"""Text embeddings of class names: prompt templates, per-class averaging, and an on-disk cache.

Per class (REFERENCE section 4): encode every template filled with the class name,
L2-normalise each encoding, average, L2-normalise again. Results are cached on disk, keyed by
model, weights, templates and class names, so a second run encodes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from open_clip.transformer import text_global_pool

from src.errors import UserError
from src.utils.io import atomic_torch_save

log = logging.getLogger(__name__)

from src.prompts import TEMPLATE_SETS  # noqa: E402


def resolve_templates(templates: str | Sequence[str]) -> tuple[str, ...]:
    """A template set name (``imagenet85``, ...) or a list of ``{}`` templates -> tuple."""
    if isinstance(templates, str):
        if templates not in TEMPLATE_SETS:
            raise UserError(
                f"unknown template set '{templates}'",
                f"use one of {sorted(TEMPLATE_SETS)} or a list of strings with '{{}}'",
            )
        return TEMPLATE_SETS[templates]
    out = tuple(str(t) for t in templates)
    bad = [t for t in out if "{}" not in t]
    if not out or bad:
        raise UserError(
            f"prompt templates must be a non-empty list of strings containing '{{}}' (got {bad or 'none'})",
            "e.g. templates='[a photo of a {}.]' or templates=imagenet85",
        )
    return out


def validate_class_names(class_names: Sequence[str]) -> list[str]:
    """Strip names; reject an empty list, empty names and duplicates with a ``UserError``."""
    names = [str(n).strip() for n in (class_names or [])]
    if not names:
        raise UserError(
            "the class list is empty", "give at least one class, e.g. 'classes=[cat,dog]'"
        )
    if any(not n for n in names):
        raise UserError(f"the class list {list(class_names)} has an empty name", "remove it")
    seen: set[str] = set()
    dups = sorted({n for n in names if n.lower() in seen or seen.add(n.lower())})
    if dups:
        raise UserError(f"duplicate class names: {dups}", "give each class once")
    return names


def long_phrases(
    tokenizer: Any, class_names: Sequence[str], templates: Sequence[str]
) -> list[tuple[str, int, int]]:
    """``(name, tokens, context)`` of each class whose longest prompt does not fit the text
    context (CLIP then reads only its first ``context`` tokens: the rest is cut, silently).

    Counts the start and end tokens; uses the three longest templates (tokens add up).
    """
    context = getattr(tokenizer, "context_length", None)
    encode = getattr(tokenizer, "encode", None)
    if not context or encode is None:
        return []
    longest = sorted(templates, key=lambda t: -len(encode(t.replace("{}", ""))))[:3]
    out = []
    for name in class_names:
        tokens = max(len(encode(t.format(name))) for t in longest) + 2  # start, end of text
        if tokens > context:
            out.append((str(name), tokens, int(context)))
    return out


def fast_text_encoder(clip: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``clip.encode_text`` without the padding after the longest prompt of a batch.

    CLIP's text transformer is causal and pools at the end-of-text token, so the padding never
    influences the result: dropping it gives the same embeddings (to float rounding) several
    times faster for short prompts. Falls back to ``clip.encode_text`` for other text towers.
    """
    needed = ("token_embedding", "positional_embedding", "attn_mask", "transformer", "ln_final")
    pool = getattr(clip, "text_pool_type", None)
    if not all(getattr(clip, n, None) is not None for n in needed) or pool not in ("argmax", "eos"):
        return clip.encode_text

    def encode(tokens: torch.Tensor) -> torch.Tensor:
        length = int((tokens != 0).sum(dim=1).max())  # pad id is 0; SOT/EOT are not
        tokens = tokens[:, :length]
        cast = clip.transformer.get_cast_dtype()
        x = clip.token_embedding(tokens).to(cast) + clip.positional_embedding[:length].to(cast)
        x = clip.transformer(x, attn_mask=clip.attn_mask[:length, :length])
        x = clip.ln_final(x)
        x = text_global_pool(x, tokens, pool, eos_token_id=getattr(clip, "text_eos_id", None))
        proj = clip.text_projection
        if proj is not None:
            x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
        return x

    return encode


@torch.no_grad()
def encode_class_names(
    encode_text: Callable[[torch.Tensor], torch.Tensor],
    tokenizer: Callable[[list[str]], torch.Tensor],
    class_names: Sequence[str],
    templates: Sequence[str],
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 1024,
) -> torch.Tensor:
    """(K, D) L2-normalised class embeddings: mean of normalised per-template encodings."""
    prompts = [t.format(name) for name in class_names for t in templates]
    chunks = []
    for start in range(0, len(prompts), batch_size):
        tokens = tokenizer(prompts[start : start + batch_size]).to(device)
        chunks.append(F.normalize(encode_text(tokens).float(), dim=-1))
    per_prompt = torch.cat(chunks).view(len(class_names), len(templates), -1)
    return F.normalize(per_prompt.mean(dim=1), dim=-1).cpu()


def cache_key(model_id: dict, class_names: Sequence[str], templates: Sequence[str]) -> str:
    """A stable hash of everything the embeddings depend on."""
    payload = json.dumps(
        {"model": model_id, "classes": list(class_names), "templates": list(templates)},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def load_or_build(
    key: str,
    cache_dir: str | os.PathLike | None,
    build: Callable[[], torch.Tensor],
    *,
    num_classes: int,
) -> torch.Tensor:
    """Return cached embeddings for ``key`` or ``build()`` them and cache them atomically.

    A missing, unreadable, mismatched or non-finite cache file is rebuilt.
    """
    if cache_dir is None:
        return build()
    path = Path(cache_dir) / "text_embeddings" / f"{key[:32]}.pt"
    if path.is_file():
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            emb = entry["embeddings"]
            if (
                entry.get("key") == key
                and isinstance(emb, torch.Tensor)
                and emb.ndim == 2
                and emb.shape[0] == num_classes
                and torch.isfinite(emb).all()
            ):
                return emb.float()
            log.warning("text-embedding cache %s does not match; rebuilding it", path)
        except Exception as err:  # corrupt file: truncated, not a torch file, wrong content
            log.warning("text-embedding cache %s is unreadable (%s); rebuilding it", path, err)
    emb = build()
    atomic_torch_save(path, {"key": key, "embeddings": emb})
    return emb
