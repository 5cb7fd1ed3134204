"""Captions and object-centric crops of shapes-world scenes, for training the tiny CLIPs.

``clip_pair(config, index, ...)`` turns train scene ``index`` of :mod:`src.data.shapes` into
one image-text pair (see docs/SHAPES_WORLD.md for the recipe and why).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from src.data.shapes import ShapeInstance, ShapesConfig, render_scene, scene_rng
from src.prompts import SCENE_TEMPLATES


def describe(obj: ShapeInstance, *, colour: bool) -> str:
    """Noun phrase for one shape: ``"red circle"`` or ``"circle"``."""
    return f"{obj.colour} {obj.kind}" if colour else obj.kind


def caption(
    objects: Sequence[ShapeInstance],
    rng: np.random.Generator,
    *,
    colour_prob: float = 0.5,
    template_prob: float = 0.5,
    templates: Sequence[str] = SCENE_TEMPLATES,
) -> tuple[str, tuple[str, ...]]:
    """A caption naming every shape in ``objects`` and its key (the sorted distinct phrases).

    With probability ``colour_prob`` the phrases carry colour words. With ``template_prob``
    the phrases fill a random prompt template (``"a photo of a {}."``), so that prompt
    ensembles work on the trained CLIP; otherwise a plain list (``"a red circle and a square"``).
    """
    if not objects:
        raise ValueError("caption needs at least one object")
    with_colour = bool(rng.random() < colour_prob)
    phrases = sorted({describe(o, colour=with_colour) for o in objects})
    order = [phrases[i] for i in rng.permutation(len(phrases))]
    if rng.random() < template_prob and templates:
        template = templates[int(rng.integers(len(templates)))]
        return template.format(" and ".join(order)), tuple(phrases)
    return " and ".join(f"a {p}" for p in order), tuple(phrases)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if image.shape[0] == size and image.shape[1] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


@dataclass
class ClipPair:
    """One image-text pair for CLIP training."""

    image: np.ndarray  # (S, S, 3) uint8
    text: str  # the caption
    key: tuple[str, ...]  # sorted distinct phrases the caption names
    shown: tuple[tuple[str, str], ...]  # sorted distinct (colour, kind) of the named shapes

    def matches(self, key: tuple[str, ...]) -> bool:
        """True when a caption with phrase set ``key`` describes this image exactly."""
        with_colour = any(" " in k for k in key)
        mine = {f"{c} {k}" if with_colour else k for c, k in self.shown}
        return mine == set(key)


def clip_pair(
    config: ShapesConfig,
    index: int,
    *,
    image_size: int,
    crop_prob: float = 0.5,
    colour_prob: float = 0.5,
    template_prob: float = 0.5,
    templates: Sequence[str] = SCENE_TEMPLATES,
    crop_scale: tuple[float, float] = (1.3, 3.0),
    min_visible: float = 0.5,
) -> ClipPair:
    """One CLIP training pair from train scene ``index``.

    With probability ``crop_prob`` the image is an object-centric square crop around one shape
    (side = its extent times a factor in ``crop_scale``), captioned with the shapes of which at
    least ``min_visible`` of the area lies inside the crop; otherwise the whole scene.
    """
    scene = render_scene(config, index, "train")
    rng = scene_rng(config.seed, "train", index, stream=1)
    objs = scene.objects
    n = config.image_size
    image = scene.image
    named = objs
    if objs and rng.random() < crop_prob:
        obj = objs[int(rng.integers(len(objs)))]
        side = int(round(min(n, max(8.0, obj.size * rng.uniform(*crop_scale)))))
        jitter = rng.uniform(-0.25, 0.25, size=2) * (side - obj.size) / 2
        x0 = int(round(np.clip(obj.cx + jitter[0] - side / 2, 0, n - side)))
        y0 = int(round(np.clip(obj.cy + jitter[1] - side / 2, 0, n - side)))
        image = image[y0 : y0 + side, x0 : x0 + side]
        window = scene.instances[y0 : y0 + side, x0 : x0 + side]
        named = []
        for j, o in enumerate(objs):
            total = int((scene.instances == j).sum())
            if total and (window == j).sum() >= min_visible * total:
                named.append(o)
        if not named:
            named = [obj]
    text, key = caption(
        named, rng, colour_prob=colour_prob, template_prob=template_prob, templates=templates
    )
    shown = tuple(sorted({(o.colour, o.kind) for o in named}))
    return ClipPair(_resize(np.ascontiguousarray(image), image_size), text, key, shown)
