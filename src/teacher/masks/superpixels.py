"""``teacher.masks=superpixels``: weights-free region maps from scikit-image (ours, opt-in:
for CPUs and the offline world; measured in docs/TEACHERS.md, not claimed equal to any
learned generator). ``slic`` (default: k-means in Lab colour + position, ``segments``
regions of about equal size, ``compactness`` trading colour for shape) or ``felzenszwalb``
(graph merging: ``scale`` larger = larger regions, ``sigma`` pre-smoothing, ``min_size``
pixels per region). Every pixel is in a region (ids 1..N)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from src.errors import UserError
from src.teacher.masks.registry import (
    Generator,
    MaskSpec,
    integer,
    real,
    register_generator,
    require_package,
    word,
)


def build(options: Mapping[str, Any]) -> Generator:
    """The superpixel generator with ``options`` (``method``, ``segments``, ``compactness``,
    ``scale``, ``sigma``, ``min_size``)."""
    require_package("skimage", "superpixels", "scikit-image")
    from skimage.segmentation import felzenszwalb, slic

    opts = dict(options)

    def generate(image: np.ndarray | None, stem: str | None, device: Any = None) -> np.ndarray:
        if image is None:
            raise UserError("teacher.masks=superpixels needs the image's pixels")
        if opts["method"] == "felzenszwalb":
            labels = felzenszwalb(
                image, scale=opts["scale"], sigma=opts["sigma"], min_size=opts["min_size"]
            )
        else:
            labels = slic(
                image,
                n_segments=opts["segments"],
                compactness=opts["compactness"],
                sigma=opts["sigma"],
                start_label=0,
                channel_axis=-1,
            )
        return labels.astype(np.int32) + 1  # every pixel in a region; 0 stays "none"

    return generate


SPEC = register_generator(
    MaskSpec(
        name="superpixels",
        build=build,
        options={
            "method": word("slic", ("slic", "felzenszwalb")),
            "segments": integer(64),  # slic: about this many regions per image
            "compactness": real(10.0),  # slic: colour vs position (scikit-image's default)
            "scale": real(100.0),  # felzenszwalb: larger, larger regions
            "sigma": real(0.8),  # Gaussian pre-smoothing (both methods)
            "min_size": integer(50),  # felzenszwalb: smallest region (pixels)
        },
        summary="scikit-image superpixels (slic | felzenszwalb): weights-free, ours",
    )
)
