"""The registry of region-mask generators (``teacher.masks``): each generator registers a
:class:`MaskSpec` from its own module (``src/teacher/masks/<name>.py``); the teacher builds
the one it is given through :func:`build_generator` and reads its region maps through
:class:`~src.teacher.masks.source.RegionMasks` (cache, sizes, identity).

A generator turns one image into a *region map*: an integer (H, W) array at the image's
size, 0 where no region covers a pixel, other values region ids (CorrCLIP's convention: the
map's minimum is the union of pixels in no region). It reads either the image's pixels
(``reads_pixels``: SAM2, Mask2Former, superpixels) or only its identity, the file stem
(``precomputed``: a folder of ``<stem>.npz`` files).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from src.errors import UserError
from src.teacher.heads.registry import Option, plain_config

#: a built generator: ``generate(image, stem, device)``: a uint8 (H, W, 3) RGB image (or None
#: where it reads none), the image's file stem (or None), the device to run on -> (H, W) ints
Generator = Callable[[np.ndarray | None, str | None, Any], np.ndarray]


# ------------------------------------------------------------------ options
def integer(default: int | None, *, low: int = 1) -> Option:
    """An integer option ``>= low``."""

    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError("not an integer in range")
        return int(value)

    return Option(default, f"an integer >= {low}", parse)


def real(default: float, *, low: float = 0.0) -> Option:
    """A real option ``>= low``."""

    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= low:
            raise ValueError("not a number in range")
        return float(value)

    return Option(default, f"a number >= {low:g}", parse)


def path(default: str | None, what: str) -> Option:
    """A local file or folder (``what`` says which), given as a string; ``None``: not given
    (a required path is checked by the generator's ``build``)."""

    def parse(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str | os.PathLike) or not str(value).strip():
            raise ValueError("not a path")
        return os.path.expanduser(str(value))

    return Option(default, what, parse)


def flag(default: bool) -> Option:
    """A boolean option."""

    def parse(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError("not a boolean")
        return value

    return Option(default, "true or false", parse)


def word(default: str, values: tuple[str, ...]) -> Option:
    """A string option, one of ``values``."""

    def parse(value: Any) -> str:
        if value not in values:
            raise ValueError("not one of the choices")
        return str(value)

    return Option(default, "one of " + " | ".join(values), parse)


# ------------------------------------------------------------------ the spec
@dataclass(frozen=True)
class MaskSpec:
    """A region-mask generator.

    Args:
        name: the ``teacher.masks`` value.
        build: ``(options) -> generator`` (loads weights once; a missing package or weights
            file is one :class:`~src.errors.UserError` line).
        options: name -> :class:`~src.teacher.heads.registry.Option` (the authors' settings;
            ``teacher.masks_options``).
        summary: one line for the docs.
        reads_pixels: the generator reads the image's pixels (its maps are cached per image
            content); ``False``: it reads the file stem only (precomputed files, not cached).
    """

    name: str
    build: Callable[[Mapping[str, Any]], Generator]
    options: Mapping[str, Option] = field(default_factory=dict)
    summary: str = ""
    reads_pixels: bool = True


_GENERATORS: dict[str, MaskSpec] = {}


def register_generator(spec: MaskSpec) -> MaskSpec:
    """Add ``spec`` (a generator module calls this once, at import)."""
    known = _GENERATORS.get(spec.name)
    if known is not None and known is not spec:
        raise ValueError(f"a mask generator named {spec.name!r} is registered already")
    _GENERATORS[spec.name] = spec
    return spec


def unregister_generator(name: str) -> None:
    """Remove a registered generator (tests)."""
    _GENERATORS.pop(name, None)


def registered_generators() -> list[str]:
    """The registered generators' names, sorted."""
    return sorted(_GENERATORS)


def generator_spec(name: str) -> MaskSpec:
    """The spec of generator ``name``; an unknown name is one line (with a did-you-mean)."""
    spec = _GENERATORS.get(str(name))
    if spec is None:
        close = difflib.get_close_matches(str(name), registered_generators(), n=1)
        hint = f"did you mean teacher.masks={close[0]}? " if close else ""
        raise UserError(
            f"unknown teacher.masks '{name}'",
            f"{hint}use one of: {', '.join(registered_generators())} (or null: no masks)",
        )
    return spec


def resolve_generator_options(name: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``name``'s defaults updated with ``options``, each checked; an unknown option or a bad
    value is one line."""
    spec = generator_spec(name)
    given = plain_config(options or {})
    if not isinstance(given, Mapping):
        raise UserError(
            f"teacher.masks_options={given!r} is not a mapping",
            "give option: value pairs, e.g. 'teacher.masks_options={dir: /path/to/masks}'",
        )
    known = "; ".join(f"{k}: {o.allowed}" for k, o in spec.options.items()) or "none"
    unknown = sorted(set(given) - set(spec.options))
    if unknown:
        raise UserError(
            f"teacher.masks_options {unknown} are not options of teacher.masks={name}",
            f"its options are: {known}",
        )
    out = {k: o.default for k, o in spec.options.items()}
    for key, value in given.items():
        option = spec.options[key]
        try:
            out[key] = option.parse(value)
        except (TypeError, ValueError):
            raise UserError(
                f"teacher.masks_options.{key}={value!r} is not valid for teacher.masks={name}",
                f"give {option.allowed} (default {option.default})",
            ) from None
    return out


def require_package(module: str, name: str, extra: str) -> None:
    """One line when ``module`` (the package generator ``name`` runs on) is not installed."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise UserError(
            f"teacher.masks={name} needs the '{module}' package, which is not installed",
            f"pip install {extra}, or use teacher.masks=superpixels (no weights) or "
            "teacher.masks=precomputed",
        )


def require_file(value: str | None, option: str, name: str, what: str, *, folder: bool) -> str:
    """The local ``what`` of option ``option`` (a file or a folder); missing: one line."""
    ok = value is not None and (os.path.isdir(value) if folder else os.path.isfile(value))
    if not ok:
        kind = "folder" if folder else "file"
        given = " is not set" if value is None else f"={value} is not a {kind}"
        raise UserError(
            f"teacher.masks={name} needs {what}: teacher.masks_options.{option}{given}",
            f"give it with 'teacher.masks_options={{{option}: /path/to/it}}' (weights are "
            "read from local files only, never downloaded)",
        )
    return str(value)
