"""Region masks, a teacher component (``teacher.masks``): class-agnostic regions per image
that heads such as CorrCLIP read (their spec's ``needs_regions``) and vote with
(``region_vote``). A region map is a (B, H, W) int32 tensor, 0 where no region covers a
pixel. Generators register themselves here (one module each); :class:`RegionMasks` is what
the teacher holds (the built generator and its per-image cache)."""

from src.scoring import PAD_REGION  # the id a padded crop's map gets (one home: the path)
from src.teacher.masks import (  # noqa: F401  (each registers its generator)
    mask2former_generator,
    precomputed,
    sam2_generator,
    superpixels,
)
from src.teacher.masks.registry import (
    MaskSpec,
    generator_spec,
    register_generator,
    registered_generators,
    resolve_generator_options,
    unregister_generator,
)
from src.teacher.masks.source import RegionMasks, image_hash, to_uint8

__all__ = [
    "PAD_REGION",
    "MaskSpec",
    "RegionMasks",
    "generator_spec",
    "image_hash",
    "register_generator",
    "registered_generators",
    "resolve_generator_options",
    "to_uint8",
    "unregister_generator",
]
