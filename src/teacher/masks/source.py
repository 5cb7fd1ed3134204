"""The teacher's region masks: a built generator, its per-image cache, and the region maps of
a batch (:meth:`RegionMasks.maps`).

The cache (generators that read pixels) holds one ``<hash>.npz`` per image under
``<cache_dir>/region_masks/<generator>-<settings hash>/``, ``hash`` the image's content (its
uint8 pixels and size), the settings hash the generator's options and the identity (path,
size, time) of any weights file or folder among them; each file is written atomically
(temporary file and rename), so an interrupted run resumes and a sweep over heads computes
each image's masks once. ``cache_dir=None``: no cache.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from src.errors import UserError
from src.scoring import resize_regions
from src.teacher.masks.registry import generator_spec, resolve_generator_options
from src.utils.io import atomic_write_bytes

log = logging.getLogger(__name__)


def _identity(value: Any) -> Any:
    """An option's value for the settings hash: a file or folder also by size and time."""
    if isinstance(value, str) and os.path.exists(value):
        st = os.stat(value)
        return [os.path.abspath(value), st.st_size, st.st_mtime_ns]
    return value


def same_shape(a: Sequence[int], b: Sequence[int]) -> bool:
    """Whether sizes ``a`` and ``b`` (height, width) are one picture at two scales (the
    keep-ratio rescale rounds each side to a pixel)."""
    (ha, wa), (hb, wb) = a, b
    return abs(ha * wb - wa * hb) <= max(ha, wa, hb, wb)


def image_hash(image: np.ndarray) -> str:
    """The content hash of a uint8 (H, W, 3) image (pixels and size)."""
    h = hashlib.sha256(str(image.shape).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()[:32]


def to_uint8(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> list[np.ndarray]:
    """(B, 3, H, W) normalised images -> B uint8 (H, W, 3) RGB arrays (the pixels the
    normalisation was taken from, rounded)."""
    m = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    pixels = ((images.float() * s + m) * 255).round().clamp(0, 255).to(torch.uint8)
    return [np.ascontiguousarray(p) for p in pixels.permute(0, 2, 3, 1).cpu().numpy()]


class RegionMasks:
    """Generator ``name`` with ``options`` (``teacher.masks`` / ``teacher.masks_options``),
    built once (its weights loaded; a missing package or file is one line), its maps cached
    under ``cache_dir`` per image."""

    def __init__(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        self.spec = generator_spec(name)
        self.name = self.spec.name
        self.options = resolve_generator_options(name, options)
        self.generate = self.spec.build(self.options)
        settings = json.dumps(
            {"generator": self.name, **{k: _identity(v) for k, v in self.options.items()}},
            sort_keys=True,
            default=str,
        )
        self.key = hashlib.sha256(settings.encode()).hexdigest()[:16]
        self.folder = (
            None
            if cache_dir is None or not self.spec.reads_pixels
            else Path(cache_dir) / "region_masks" / f"{self.name}-{self.key}"
        )
        self.computed = 0  #: maps the generator computed (not read from the cache)

    @property
    def reads_pixels(self) -> bool:
        """Whether the maps come from the pixels (else from the images' file stems)."""
        return self.spec.reads_pixels

    def one(self, image: np.ndarray | None, stem: str | None, device: Any = None) -> np.ndarray:
        """The (H, W) int32 region map of one image (from the cache when there)."""
        file = None
        if self.folder is not None and image is not None:
            file = self.folder / f"{image_hash(image)}.npz"
            if file.is_file():
                try:
                    with np.load(file) as data:
                        return data["regions"].astype(np.int32)
                except (OSError, KeyError, ValueError, zipfile.BadZipFile):
                    log.warning("region mask cache %s unreadable: computing it again", file)
        regions = np.asarray(self.generate(image, stem, device))
        if regions.ndim != 2:
            raise UserError(
                f"teacher.masks={self.name} gave a map of shape {regions.shape}, not (H, W)"
            )
        regions = regions.astype(np.int32)
        self.computed += 1
        if file is not None:
            buf = io.BytesIO()
            np.savez_compressed(buf, regions=regions)
            atomic_write_bytes(file, buf.getvalue())
        return regions

    def maps(
        self,
        images: torch.Tensor,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        size: Sequence[int] | None = None,
        names: Sequence[str | None] | None = None,
    ) -> torch.Tensor:
        """The (B, H, W) int32 region maps of (B, 3, h, w) normalised ``images`` on their
        device: at the images' size (generators that read the pixels), or read by file stem
        (``names``) at the original size ``size`` (default: the images'), which each
        precomputed map must have (a map of another size is one line)."""
        b = images.shape[0]
        device = images.device
        stems = list(names) if names is not None else [None] * b
        if len(stems) != b:
            raise ValueError(f"{len(stems)} names for {b} images")
        if self.reads_pixels:
            pixels: list[np.ndarray | None] = list(to_uint8(images, mean, std))
            expected = tuple(images.shape[-2:])
        else:
            pixels = [None] * b
            expected = tuple(int(v) for v in (size if size is not None else images.shape[-2:]))
        out = []
        for image, stem in zip(pixels, stems, strict=True):
            regions = self.one(image, None if stem is None else str(stem), device)
            shape = tuple(regions.shape)
            # the original size; without one (``size=None``) any size of the image's shape,
            # which the scoring path resizes nearest (as the authors resize theirs)
            fits = shape == expected or (size is None and same_shape(shape, expected))
            if not fits:
                raise UserError(
                    f"teacher.masks={self.name}: the mask of image '{stem}' is "
                    f"{shape[0]}x{shape[1]} but the image is {expected[0]}x{expected[1]} "
                    "(height x width)",
                    "give each image's region map at the image's original size "
                    "(regenerate the masks for these images)",
                )
            out.append(torch.from_numpy(regions))
        if len({tuple(r.shape) for r in out}) > 1:  # one batch, one size: each at the images'
            out = [resize_regions(r[None], expected)[0] for r in out]
        return torch.stack(out).to(device)
