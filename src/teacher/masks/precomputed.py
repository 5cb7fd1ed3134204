"""``teacher.masks=precomputed``: region maps read from a folder, one ``<stem>.npz`` per image
with key ``instance_mask`` at the image's original size: the format CorrCLIP publishes for
its SAM2 masks (``CorrCLIPv1/corrclip_segmentor.py``, ``generate_mask``), so its table is
reproduced without running SAM2. An image is found by its sample id (its file stem), or by
``<id>_<suffix>.npz`` when that is the only such file: the image file's stem where the id
drops a suffix (Cityscapes' ``<id>_leftImg8bit``, as CorrCLIP names its files)."""

from __future__ import annotations

import bisect
import itertools
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from src.errors import UserError
from src.teacher.masks.registry import (
    Generator,
    MaskSpec,
    path,
    register_generator,
    require_file,
)

KEY = "instance_mask"


def load_mask_file(file: Path) -> np.ndarray:
    """The (H, W) integer map in ``file`` (``<stem>.npz``, key ``instance_mask``); an
    unreadable file, a missing key or a map that is not 2-D integers is one line."""
    try:
        with np.load(file) as data:
            if KEY not in data:
                raise UserError(
                    f"mask file {file} has no '{KEY}' array (it has {sorted(data.files)})",
                    f"save each image's region map as np.savez(path, {KEY}=map)",
                )
            mask = np.asarray(data[KEY])
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise UserError(
            f"mask file {file} cannot be read: {err}", "regenerate it or remove it"
        ) from None
    if mask.ndim != 2 or not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == bool):
        raise UserError(
            f"mask file {file} holds a {mask.dtype} array of shape {mask.shape}, not an "
            "(H, W) integer region map",
            f"save each image's map as integers of the image's size under '{KEY}'",
        )
    return mask


def build(options: Mapping[str, Any]) -> Generator:
    """A reader of ``options['dir']/<stem>.npz`` (a missing folder or file: one line)."""
    folder = Path(require_file(options["dir"], "dir", "precomputed", "a folder of <image stem>.npz "
                               "masks", folder=True))  # fmt: skip

    #: the folder's stems, sorted, and the folder's time when listed (listed again when the
    #: folder changes: a long-running page sees files added later)
    listing: list[str] = []
    listed: list[int] = [-1]

    def suffixed(stem: str) -> Path | None:
        """``<stem>_<suffix>.npz`` when it is the only such file: the image file's own stem
        where the sample's id drops a suffix (Cityscapes' ``<id>_leftImg8bit``)."""
        stamp = folder.stat().st_mtime_ns
        if listed[0] != stamp:
            listing[:] = sorted(path.stem for path in folder.glob("*.npz"))
            listed[0] = stamp
        prefix = f"{stem}_"
        start = bisect.bisect_left(listing, prefix)
        found = list(
            itertools.takewhile(lambda s: s.startswith(prefix), listing[start : start + 2])
        )
        return folder / f"{found[0]}.npz" if len(found) == 1 else None

    def generate(image: np.ndarray | None, stem: str | None, device: Any = None) -> np.ndarray:
        if stem is None:
            raise UserError(
                "teacher.masks=precomputed needs each image's file name, and this image has none",
                "precomputed masks label whole named images (eval, predict, the page, "
                "callbacks.teacher_label_cache.enabled=true for training); otherwise use "
                "teacher.masks=superpixels|sam2|mask2former, which read the pixels",
            )
        file = folder / f"{stem}.npz"
        if not file.is_file():
            file = suffixed(stem) or file
        if not file.is_file():
            raise UserError(
                f"teacher.masks=precomputed: no mask for image '{stem}' ({file} does not exist)",
                f"add {stem}.npz to {folder}, or point teacher.masks_options.dir at the "
                "folder that holds this data's masks",
            )
        mask = load_mask_file(file).astype(np.int64)
        # CorrCLIP's convention: the map's minimum is the union of pixels in no region
        return (mask - mask.min()).astype(np.int32) if mask.size else mask.astype(np.int32)

    return generate


SPEC = register_generator(
    MaskSpec(
        name="precomputed",
        build=build,
        options={"dir": path(None, "a folder of <image stem>.npz files (key instance_mask)")},
        summary="a folder of <image stem>.npz region maps (key instance_mask): CorrCLIP's "
        "published SAM2 masks",
        reads_pixels=False,
    )
)
