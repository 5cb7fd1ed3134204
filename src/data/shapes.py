"""The embedded ``shapes`` world: procedural scenes of coloured shapes, no files needed.

Every scene is a pure function of ``(config.seed, split, index)``: the same numbers give the
same pixels on every machine. A scene is drawn by a small numpy rasteriser (hard edges, pixel
centres), so its mask is exactly what was drawn: ``0`` = background, ``1..N`` = the config's
classes in order. :mod:`src.data.shapes_captions` turns scenes into the captioned images and
object-centric crops the tiny CLIPs are trained on; this module also exports scenes to the
VOC folder layout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from src.data.base import RawDataset, RawSample, register_dataset
from src.errors import UserError
from src.pictures.palette import pascal_palette

#: RGB of every colour word the world knows.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 225),
    "yellow": (235, 215, 40),
    "purple": (145, 55, 200),
    "orange": (245, 140, 30),
    "white": (245, 245, 245),
    "cyan": (40, 205, 215),
}
#: Every shape kind the rasteriser can draw.
SHAPE_KINDS = ("circle", "square", "triangle", "star", "cross", "hexagon")
SPLITS = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class ShapesConfig:
    """What a world draws. The defaults are the demo's world (the one the bars are set on)."""

    image_size: int = 128  # side of the square scene, pixels
    shapes: tuple[str, ...] = ("circle", "square", "triangle")  # shape kinds drawn (SHAPE_KINDS)
    colours: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")  # COLOURS
    colour_classes: bool = False  # classes are "red circle", ... (colour-major per shape)
    min_shapes: int = 1  # fewest shapes in a scene
    max_shapes: int = 4  # most shapes in a scene (fewer when they do not fit apart)
    min_size: float = 0.16  # smallest shape extent, fraction of image_size
    max_size: float = 0.34  # largest shape extent, fraction of image_size
    rotation: float = 0.0  # largest rotation, degrees (0: axis-aligned)
    overlap: bool = False  # True: shapes may overlap; later ones occlude earlier ones
    background: str = "gradient"  # "gradient" (noisy two-colour ramp) | "texture" | "plain"
    noise: float = 6.0  # std of the Gaussian pixel noise over the whole image
    colour_jitter: int = 12  # per-shape uniform jitter of each RGB channel
    seed: int = 0  # world seed: scene (split, index) is drawn from rng(seed, split, index)

    def __post_init__(self) -> None:
        bad = [s for s in self.shapes if s not in SHAPE_KINDS]
        if bad or not self.shapes:
            raise UserError(
                f"shapes world: unknown shape kinds {bad}", f"choose from {SHAPE_KINDS}"
            )
        badc = [c for c in self.colours if c not in COLOURS]
        if badc or not self.colours:
            raise UserError(f"shapes world: unknown colours {badc}", f"choose from {list(COLOURS)}")
        if not 1 <= self.min_shapes <= self.max_shapes:
            raise UserError("shapes world: need 1 <= min_shapes <= max_shapes", "fix the counts")
        if not 0 < self.min_size <= self.max_size < 1:
            raise UserError("shapes world: need 0 < min_size <= max_size < 1", "fix the sizes")
        if self.background not in ("gradient", "texture", "plain"):
            raise UserError(
                f"shapes world: unknown background {self.background!r}",
                "use gradient, texture or plain",
            )
        if self.image_size < 16:
            raise UserError("shapes world: image_size must be at least 16", "raise image_size")

    @property
    def class_names(self) -> list[str]:
        """Foreground class names; mask value ``i + 1`` is ``class_names[i]``."""
        if self.colour_classes:
            return [f"{c} {s}" for s in self.shapes for c in self.colours]
        return list(self.shapes)

    def class_index(self, kind: str, colour: str) -> int:
        """Mask value (1-based) of a shape of ``kind`` and ``colour``."""
        k = self.shapes.index(kind)
        if self.colour_classes:
            return 1 + k * len(self.colours) + self.colours.index(colour)
        return 1 + k


def make_config(**options: object) -> ShapesConfig:
    """A :class:`ShapesConfig` from keyword options (lists become tuples; unknown -> UserError)."""
    known = {f.name for f in fields(ShapesConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(
            f"shapes world: unknown options {unknown}", f"known options: {sorted(known)}"
        )
    clean = {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in options.items()}
    return ShapesConfig(**clean)  # type: ignore[arg-type]


@dataclass
class ShapeInstance:
    """One drawn shape (pixel units)."""

    kind: str
    colour: str
    cx: float
    cy: float
    size: float  # extent (diameter of the circumscribing circle for most kinds)
    angle: float  # radians


@dataclass
class Scene:
    """A rendered scene: image, semantic mask, per-instance masks and what was drawn."""

    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) uint8, 0 = background, i = class_names[i - 1]
    instances: np.ndarray  # (H, W) int16, -1 = background, j = objects[j] (visible part)
    objects: list[ShapeInstance] = field(default_factory=list)
    background: str = "gradient"  # the background kind drawn


def scene_rng(seed: int, split: str, index: int, stream: int = 0) -> np.random.Generator:
    """The generator of scene ``index`` of ``split`` (``stream`` > 0: extra independent draws)."""
    if split not in SPLITS:
        raise UserError(f"shapes world: unknown split {split!r}", f"use one of {list(SPLITS)}")
    if index < 0:
        raise UserError(f"shapes world: negative index {index}", "use an index >= 0")
    return np.random.default_rng([seed, SPLITS[split], index, stream])


def _polygon(kind: str) -> np.ndarray:
    """Unit polygon (extent 1, centred at 0, y down) of a kind, (P, 2)."""
    if kind == "square":
        return np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    if kind == "triangle":  # equilateral, pointing up, bounding box centred
        h = math.sqrt(3) / 2
        return np.array([[0.0, -h / 2], [0.5, h / 2], [-0.5, h / 2]])
    if kind == "hexagon":
        a = np.arange(6) * math.pi / 3
        return 0.5 * np.stack([np.cos(a), np.sin(a)], 1)
    if kind == "star":
        a = -math.pi / 2 + np.arange(10) * math.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 0.5, 0.2)
        return np.stack([r * np.cos(a), r * np.sin(a)], 1)
    if kind == "cross":
        t = 1 / 6
        return np.array(
            [[-t, -0.5], [t, -0.5], [t, -t], [0.5, -t], [0.5, t], [t, t], [t, 0.5], [-t, 0.5]]
            + [[-t, t], [-0.5, t], [-0.5, -t], [-t, -t]]
        )
    raise ValueError(kind)


def shape_mask(obj: ShapeInstance, height: int, width: int) -> np.ndarray:
    """Boolean (H, W) mask of the pixels whose centres lie inside ``obj``."""
    out = np.zeros((height, width), dtype=bool)
    r = obj.size / 2 * 1.5 + 1  # a box that holds the shape at any angle
    x0, x1 = max(0, int(obj.cx - r)), min(width, int(math.ceil(obj.cx + r)))
    y0, y1 = max(0, int(obj.cy - r)), min(height, int(math.ceil(obj.cy + r)))
    if x0 >= x1 or y0 >= y1:
        return out
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5
    px, py = xs - obj.cx, ys - obj.cy
    if obj.kind == "circle":
        out[y0:y1, x0:x1] = px * px + py * py <= (obj.size / 2) ** 2
        return out
    c, s = math.cos(obj.angle), math.sin(obj.angle)
    u, v = c * px + s * py, -s * px + c * py  # rotate points into the shape's frame
    poly = _polygon(obj.kind) * obj.size
    inside = np.zeros(u.shape, dtype=bool)
    for (xa, ya), (xb, yb) in zip(poly, np.roll(poly, -1, axis=0), strict=True):
        crosses = (ya > v) != (yb > v)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = (xb - xa) * (v - ya) / (yb - ya) + xa
        inside ^= crosses & (u < xint)
    out[y0:y1, x0:x1] = inside
    return out


def _background(cfg: ShapesConfig, rng: np.random.Generator) -> np.ndarray:
    n = cfg.image_size
    grey = rng.uniform(25, 230, size=2)
    ends = np.clip(grey[:, None] + rng.uniform(-35, 35, size=(2, 3)), 0, 255)
    if cfg.background == "plain":
        return np.broadcast_to(ends[0], (n, n, 3)).astype(np.float64).copy()
    ys, xs = np.mgrid[0:n, 0:n] / max(n - 1, 1)
    theta = rng.uniform(0, 2 * math.pi)
    t = (math.cos(theta) * (xs - 0.5) + math.sin(theta) * (ys - 0.5)) / math.sqrt(0.5) + 0.5
    img = ends[0] + np.clip(t, 0, 1)[..., None] * (ends[1] - ends[0])
    if cfg.background == "texture":
        kind = rng.integers(3)
        period = rng.uniform(6, 18)
        if kind == 0:  # stripes
            phi = rng.uniform(0, math.pi)
            wave = np.sin(2 * math.pi * (math.cos(phi) * xs + math.sin(phi) * ys) * n / period)
        elif kind == 1:  # checks
            wave = np.sign(
                np.sin(2 * math.pi * xs * n / period) * np.sin(2 * math.pi * ys * n / period)
            )
        else:  # soft blobs: a few random low-frequency waves
            wave = (
                sum(
                    np.sin(
                        2 * math.pi * (rng.uniform(-3, 3) * xs + rng.uniform(-3, 3) * ys)
                        + rng.uniform(0, 6)
                    )
                    for _ in range(3)
                )
                / 2
            )
        img = img + rng.uniform(12, 30) * wave[..., None]
    return img


def _place(cfg: ShapesConfig, rng: np.random.Generator) -> list[ShapeInstance]:
    n = cfg.image_size
    count = int(rng.integers(cfg.min_shapes, cfg.max_shapes + 1))
    objs: list[ShapeInstance] = []
    tries = 0
    while len(objs) < count and tries < 60:
        tries += 1
        size = rng.uniform(cfg.min_size, cfg.max_size) * n
        r = size / 2
        cx, cy = rng.uniform(r + 1, n - r - 1, size=2)
        gap = 0.0 if cfg.overlap else 2.0
        if not cfg.overlap and any(
            math.hypot(cx - o.cx, cy - o.cy) < r * 1.42 + o.size / 2 * 1.42 + gap for o in objs
        ):
            continue
        angle = math.radians(rng.uniform(-cfg.rotation, cfg.rotation)) if cfg.rotation else 0.0
        kind = cfg.shapes[int(rng.integers(len(cfg.shapes)))]
        colour = cfg.colours[int(rng.integers(len(cfg.colours)))]
        objs.append(ShapeInstance(kind, colour, float(cx), float(cy), float(size), angle))
    return objs


def render_scene(config: ShapesConfig, index: int, split: str = "train") -> Scene:
    """Draw scene ``index`` of ``split``: deterministic in ``(config.seed, split, index)``."""
    rng = scene_rng(config.seed, split, index)
    n = config.image_size
    img = _background(config, rng)
    mask = np.zeros((n, n), dtype=np.uint8)
    inst = np.full((n, n), -1, dtype=np.int16)
    objs = _place(config, rng)
    for j, obj in enumerate(objs):
        m = shape_mask(obj, n, n)
        rgb = np.array(COLOURS[obj.colour], dtype=np.float64)
        rgb = rgb + rng.integers(-config.colour_jitter, config.colour_jitter + 1, size=3)
        img[m] = rgb
        mask[m] = config.class_index(obj.kind, obj.colour)
        inst[m] = j
    if config.noise > 0:
        img = img + rng.normal(0, config.noise, size=img.shape)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return Scene(image, mask, inst, objs, config.background)


# ---------------------------------------------------------------- dataset and VOC export


class ShapesDataset:
    """Raw ``shapes`` dataset: ``length`` scenes of one split, rendered on access."""

    has_background = True  #: mask value 0 is background
    has_labels = True

    def __init__(self, config: ShapesConfig, split: str, length: int) -> None:
        if split not in SPLITS:
            raise UserError(
                f"shapes dataset: unknown split {split!r}", f"use one of {list(SPLITS)}"
            )
        if length < 1:
            raise UserError(f"shapes dataset: length {length} < 1", "ask for at least one scene")
        self.config, self.split, self.length = config, split, length

    @property
    def class_names(self) -> list[str]:
        """Foreground class names (mask value ``i + 1`` is ``class_names[i]``)."""
        return self.config.class_names

    @property
    def max_class(self) -> int:
        """Largest mask value (the number of foreground classes)."""
        return len(self.config.class_names)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> RawSample:
        if not 0 <= index < self.length:
            raise IndexError(index)
        scene = render_scene(self.config, index, self.split)
        return RawSample(scene.image, scene.mask, f"shapes_{self.split}_{index:05d}")


DEFAULT_LENGTHS = {"train": 2000, "val": 240, "test": 240}


@register_dataset("shapes")
def build_shapes(
    *,
    root: str | None = None,
    split: str,
    train_length: int = DEFAULT_LENGTHS["train"],
    val_length: int = DEFAULT_LENGTHS["val"],
    test_length: int = DEFAULT_LENGTHS["test"],
    **options: object,
) -> ShapesDataset:
    """Builder for the data module. ``root`` is unused (the world needs no files);
    ``<split>_length`` is the number of scenes of each split; ``options`` are
    :class:`ShapesConfig` fields (``image_size=160``, ``rotation=30``, ...)."""
    del root
    config = make_config(**options)
    lengths = {"train": train_length, "val": val_length, "test": test_length}
    if split not in lengths:
        raise UserError(f"shapes dataset: unknown split {split!r}", f"use one of {list(lengths)}")
    return ShapesDataset(config, split, int(lengths[split]))


build_shapes.has_background = True  # type: ignore[attr-defined]  # read by the data module
build_shapes.has_labels = True  # type: ignore[attr-defined]


def write_voc_layout(
    root: str | Path, datasets: Mapping[str, RawDataset], class_names: Sequence[str]
) -> Path:
    """Write raw datasets (split -> dataset) in the VOC folder layout under ``root``.

    ``JPEGImages/<name>.jpg`` (quality 95), ``SegmentationClass/<name>.png`` (palette PNG,
    values = label), ``ImageSets/Segmentation/<split>.txt``, and ``class_names.txt``
    (``background`` first).
    """
    from PIL import Image

    from src.utils.io import atomic_save_image, atomic_write_text

    root = Path(root)
    palette = pascal_palette().ravel().tolist()
    for split, ds in datasets.items():
        names = []
        for i in range(len(ds)):
            sample = ds[i]
            image = Image.fromarray(sample.image)
            atomic_save_image(root / "JPEGImages" / f"{sample.name}.jpg", image, quality=95)
            label = Image.fromarray(sample.label, mode="P")
            label.putpalette(palette)
            atomic_save_image(root / "SegmentationClass" / f"{sample.name}.png", label)
            names.append(sample.name)
        listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        atomic_write_text(listing, "\n".join(names) + "\n")
    atomic_write_text(root / "class_names.txt", "\n".join(["background", *class_names]) + "\n")
    return root


def export_voc_layout(
    root: str | Path,
    *,
    config: ShapesConfig | None = None,
    lengths: Mapping[str, int] | None = None,
) -> Path:
    """Write scenes of ``config`` (default world) in the VOC folder layout under ``root``:
    ``lengths`` scenes per split (default 2000 train, 240 val). See :func:`write_voc_layout`."""
    config = config or ShapesConfig()
    lengths = lengths or {"train": DEFAULT_LENGTHS["train"], "val": DEFAULT_LENGTHS["val"]}
    sets = {split: ShapesDataset(config, split, n) for split, n in lengths.items()}
    return write_voc_layout(root, sets, config.class_names)


__all__ = [
    "COLOURS",
    "SHAPE_KINDS",
    "ShapesConfig",
    "Scene",
    "ShapeInstance",
    "ShapesDataset",
    "build_shapes",
    "export_voc_layout",
    "write_voc_layout",
    "make_config",
    "render_scene",
    "shape_mask",
]
