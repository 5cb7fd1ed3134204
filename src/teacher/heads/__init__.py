"""The teacher's dense heads (``teacher.head``): a registry, and one module per head.

Each module in this package (DenseCLIP's value path, the default, and the training-free heads
of ViT CLIPs) registers a :class:`HeadSpec` with :func:`register_head` when imported; this package
imports every module it holds, so adding a head is adding its file (docs/TEACHERS.md, "Adding
a head"). Everything else -- the teacher, the entry points' messages, the web page, the
benchmark and grid scripts -- reads the list from :func:`registered_heads` and a head's
settings from :func:`head_spec`. Shared ViT pieces live in :mod:`src.teacher.heads.vit`.
"""

from __future__ import annotations

import importlib
import pkgutil

from src.teacher.heads.registry import (
    DenseHead,
    Features,
    HeadSetup,
    HeadSpec,
    Option,
    Published,
    check_head_fits,
    choice,
    default_head,
    head_spec,
    number,
    pair,
    plain_config,
    published_rows,
    register_head,
    registered_heads,
    resolve_head_options,
    unregister_head,
)
from src.teacher.heads.vit import authors_pos_embed, gaussian_bias, vit_trunk

#: modules of this package that hold no head
_NOT_HEADS = {"registry", "vit"}

for _module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _module.name not in _NOT_HEADS and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "DenseHead",
    "Features",
    "HeadSetup",
    "HeadSpec",
    "Option",
    "Published",
    "authors_pos_embed",
    "check_head_fits",
    "choice",
    "default_head",
    "gaussian_bias",
    "head_spec",
    "number",
    "pair",
    "plain_config",
    "published_rows",
    "register_head",
    "registered_heads",
    "resolve_head_options",
    "unregister_head",
    "vit_trunk",
]
