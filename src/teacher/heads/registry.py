"""The registry of dense heads: each head registers a :class:`HeadSpec` from its own module
(``src/teacher/heads/<name>.py``); the teacher, the entry points' messages, the web page and
the scripts read the list from here. Nothing outside a head's module names it.

A spec holds the head's features function, its options (:class:`Option`: default, type, range,
validation), its softmax scale, and what it needs: a ViT (``vit_only``, ``min_blocks``), the
text embeddings in its forward (``uses_text``), extra modules it builds itself (``extras``:
ProxyCLIP's proxy ViT) and checks to run before the CLIP loads (``precheck``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from src.errors import UserError

Features = tuple[torch.Tensor, torch.Tensor | None]


def plain_config(value: Any) -> Any:
    """Config containers (DictConfig, ListConfig, tuples) as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): plain_config(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [plain_config(v) for v in value]
    return value


# ------------------------------------------------------------------ options
@dataclass(frozen=True)
class Option:
    """One head option: its default, what it accepts (``allowed``, said in error messages) and
    ``parse`` (value -> the value the head gets; raises ``ValueError`` when not allowed)."""

    default: Any
    allowed: str
    parse: Callable[[Any], Any]


def _real(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("not a number")
    if not math.isfinite(float(value)):
        raise ValueError("not finite")
    return float(value)


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return "any finite value"


def _in_range(x: float, low, high, low_open: bool, high_open: bool) -> bool:
    if low is not None and (x <= low if low_open else x < low):
        return False
    return not (high is not None and (x >= high if high_open else x > high))


def number(
    default: float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> Option:
    """A real-number option in a range (``low_open``: ``low`` itself excluded)."""
    span = _bounds(low, high, low_open, high_open)

    def parse(value: Any) -> float:
        x = _real(value)
        if not _in_range(x, low, high, low_open, high_open):
            raise ValueError(f"out of range {span}")
        return x

    return Option(default, f"a number {span}" if low is not None or high is not None else span,
                  parse)  # fmt: skip


def choice(default: str, values: Sequence[str]) -> Option:
    """A string option, one of ``values``."""

    def parse(value: Any) -> str:
        if not isinstance(value, str) or value not in values:
            raise ValueError("not one of the choices")
        return value

    return Option(default, "one of " + " | ".join(values), parse)


def pair(default: Sequence[float], first: Option, second: Option, names: str) -> Option:
    """A ``[a, b]`` option whose two numbers are checked by ``first`` and ``second``
    (``names``: what they are, e.g. ``[tau, lambda]``)."""

    def parse(value: Any) -> tuple[float, float]:
        if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
            raise ValueError("not a pair")
        return first.parse(value[0]), second.parse(value[1])

    a, b = (part.strip() for part in names.strip("[]").split(","))
    allowed = f"a pair {names} ({a}: {first.allowed}; {b}: {second.allowed})"
    return Option(tuple(default), allowed, parse)


# ------------------------------------------------------------------ the spec
@dataclass(frozen=True)
class HeadSetup:
    """What a head's extra modules are built from (the teacher's settings and tower)."""

    visual: nn.Module | None
    clip_model: str
    mean: Sequence[float] = (0.0, 0.0, 0.0)
    std: Sequence[float] = (1.0, 1.0, 1.0)
    proxy: str | None = None
    proxy_weights: str | None = None


@dataclass(frozen=True)
class Published:
    """A published row of the head: mIoU (percent) on the 8 training-free benchmarks in
    ``src.evaluation.benchmarks.TRAINING_FREE_BENCHMARKS``'s column order, with ``clip``."""

    label: str  #: what the row is (paper, repository README, post-processing)
    source: str  #: where the numbers are printed
    miou: tuple[float, float, float, float, float, float, float, float]
    clip: str = "ViT-B/16"  #: the CLIP the numbers are on


@dataclass(frozen=True)
class HeadSpec:
    """A dense head: ``features(visual, images, *, with_keys, **options, **extras[, text])
    -> (features (B, D, h, w), keys (B, C, h, w) | None)``.

    Args:
        name: the ``teacher.head`` value.
        features: the features function.
        logit_scale: its authors' softmax scale of the cosine scores.
        options: name -> :class:`Option` (the authors' defaults).
        summary: one line for the docs and the page.
        vit_only: needs an open_clip ViT with plain attention blocks.
        min_blocks: the fewest transformer blocks it runs on.
        uses_text: the forward takes the names' text embeddings (``text=``).
        extras: builds the extra inputs (modules such as a proxy ViT, callables) from a
            :class:`HeadSetup`; they become arguments of ``features`` (modules are kept as
            submodules of the teacher).
        precheck: checks a :class:`HeadSetup` (without the tower) before the CLIP loads.
        needs_weights: it needs weights beyond the CLIP's (ProxyCLIP's proxy file): left out
            of the runs that have none (the qualitative grid's default).
        authors_refine: the refinement its authors pair it with (``pamr``), or ``None``.
        order: where the head is listed (lower first; ties by name).
        published: its published 8-benchmark rows (:class:`Published`), for the results table.
        needs_regions: its features function takes ``regions=``: a (B, H, W) int32 region map
            (0: no region) at the size of the images it gets (crops, in sliding windows).
        region_vote: applied to the class scores (B, C, H, W) with the region map at their size
            (the authors' map update after the argmax), or ``None``.
    """

    name: str
    features: Callable[..., Features]
    logit_scale: float
    options: Mapping[str, Option] = field(default_factory=dict)
    summary: str = ""
    vit_only: bool = True
    min_blocks: int = 1
    uses_text: bool = False
    extras: Callable[[HeadSetup], dict[str, Any]] | None = None
    precheck: Callable[[HeadSetup], None] | None = None
    needs_weights: bool = False
    authors_refine: str | None = None
    order: int = 100
    published: tuple[Published, ...] = ()
    needs_regions: bool = False
    region_vote: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None


_HEADS: dict[str, HeadSpec] = {}


def register_head(spec: HeadSpec) -> HeadSpec:
    """Add ``spec`` to the registry (a head module calls this once, at import); a name taken
    by another spec is a ``ValueError``."""
    if not spec.name or not spec.name.isidentifier():
        raise ValueError(f"a head's name must be an identifier, got {spec.name!r}")
    known = _HEADS.get(spec.name)
    if known is not None and known is not spec:
        raise ValueError(f"a head named {spec.name!r} is registered already")
    _HEADS[spec.name] = spec
    return spec


def unregister_head(name: str) -> None:
    """Remove a registered head (tests, notebooks)."""
    _HEADS.pop(name, None)


def registered_heads() -> list[str]:
    """The registered heads' names, in their listing order (the default first)."""
    return [s.name for s in sorted(_HEADS.values(), key=lambda s: (s.order, s.name))]


def published_rows() -> list[tuple[str, Published]]:
    """``(head, row)`` for every registered head's published rows, in the listing order."""
    ordered = sorted(_HEADS.values(), key=lambda s: (s.order, s.name))
    return [(spec.name, row) for spec in ordered for row in spec.published]


def default_head() -> str:
    """The head a teacher uses when none is named: the first registered (lowest ``order``)."""
    return registered_heads()[0]


def head_spec(name: str) -> HeadSpec:
    """The spec of head ``name``; an unregistered name is one line listing the registered."""
    spec = _HEADS.get(str(name))
    if spec is None:
        raise UserError(
            f"unknown teacher.head '{name}'", f"use one of: {', '.join(registered_heads())}"
        )
    return spec


def resolve_head_options(head: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``head``'s defaults updated with ``options``, each validated; an unknown head or
    option, a wrong type or a value out of range is one :class:`UserError` line."""
    spec = head_spec(head)
    given = plain_config(options or {})
    if not isinstance(given, Mapping):
        raise UserError(
            f"teacher.head_options={given!r} is not a mapping",
            "give option: value pairs, e.g. 'teacher.head_options={name: value}'",
        )
    unknown = sorted(set(given) - set(spec.options))
    if unknown:
        known = "; ".join(f"{k}: {o.allowed}" for k, o in spec.options.items()) or "none"
        raise UserError(
            f"teacher.head_options {unknown} are not options of teacher.head={head}",
            f"its options are: {known}",
        )
    out = {k: o.default for k, o in spec.options.items()}
    for key, value in given.items():
        option = spec.options[key]
        try:
            out[key] = option.parse(value)
        except (TypeError, ValueError):
            default = plain_config(option.default)
            raise UserError(
                f"teacher.head_options.{key}={value!r} is not valid for teacher.head={head}",
                f"give {option.allowed} (default {default}), e.g. "
                f"'teacher.head_options={{{key}:{default}}}'",
            ) from None
    return out


def check_head_fits(head: str, visual: nn.Module, clip_model: str) -> None:
    """A UserError unless ``head`` can run on this vision tower."""
    from open_clip.transformer import VisionTransformer

    spec = head_spec(head)
    if not spec.vit_only:
        return
    default = default_head()
    if not isinstance(visual, VisionTransformer):
        raise UserError(
            f"teacher.head={head} needs a ViT CLIP, but {clip_model} is a {type(visual).__name__}",
            f"use teacher.head={default} with ResNet CLIPs, or a ViT teacher (e.g. teacher=vit_b16)",
        )
    blocks = visual.transformer.resblocks
    if getattr(visual, "attn_pool", None) is not None or not all(
        isinstance(getattr(b, "attn", None), nn.MultiheadAttention) for b in blocks
    ):
        raise UserError(
            f"teacher.head={head} supports open_clip ViTs with plain attention blocks; "
            f"{clip_model} has another block type or an attentional pooler",
            f"use teacher.head={default} for this CLIP",
        )
    if len(blocks) < spec.min_blocks:
        raise UserError(
            f"teacher.head={head} needs a ViT with {spec.min_blocks} or more blocks ({clip_model})"
        )


# ------------------------------------------------------------------ the head as one callable
class DenseHead(nn.Module):
    """A registered head bound to its options and extras (modules among them are
    submodules): ``head(visual, images, text=..., with_keys=...) -> (features, keys)``."""

    def __init__(
        self, name: str, options: Mapping[str, Any], extras: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.spec = head_spec(name)
        self.name = name
        self.options = dict(options)
        extras = dict(extras or {})
        self.module_names = [k for k, v in extras.items() if isinstance(v, nn.Module)]
        for key in self.module_names:  # submodules under their own names (``proxy``)
            self.add_module(key, extras[key])
        self.plain_extras = {k: v for k, v in extras.items() if not isinstance(v, nn.Module)}

    def forward(
        self,
        visual: nn.Module,
        images: torch.Tensor,
        *,
        text: torch.Tensor,
        with_keys: bool,
        regions: torch.Tensor | None = None,
    ) -> Features:
        """Dense features and keys of ``images`` (normalised, padded to whole patches);
        ``regions``: their (B, H, W) region map, given to heads that read one."""
        kwargs = {**self.options, **self.plain_extras}
        kwargs.update({key: getattr(self, key) for key in self.module_names})
        if self.spec.uses_text:
            kwargs["text"] = text
        if self.spec.needs_regions:
            kwargs["regions"] = regions
        return self.spec.features(visual, images, with_keys=with_keys, **kwargs)
