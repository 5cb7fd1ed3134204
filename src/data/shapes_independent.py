"""A second, independent renderer of the shapes world's concepts (for generalisation checks).

Nothing is shared with :mod:`src.data.shapes` but the concept names: the drawing is PIL's
``ImageDraw`` at 4x resolution, box-filtered down (anti-aliased edges); colours are other
shades of the same colour words; backgrounds are radial ramps or smooth blotches; images are
other sizes (not always square); shapes are placed on a jittered grid with their own size
range. A CLIP trained on :mod:`src.data.shapes` that has learnt *circle*, *square* and
*triangle* (and not the rasteriser's pixels) segments these images too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from src.data.base import RawSample, register_dataset
from src.errors import UserError

#: Other shades of the colour words (not the main renderer's RGB values).
SHADES: dict[str, tuple[int, int, int]] = {
    "red": (200, 25, 55),
    "green": (70, 195, 80),
    "blue": (25, 60, 195),
    "yellow": (250, 230, 80),
    "purple": (120, 45, 170),
    "orange": (255, 120, 15),
}
KINDS = ("circle", "square", "triangle", "star", "cross")
_SPLIT_CODE = {"train": 11, "val": 12, "test": 13}
SS = 4  # supersampling factor


@dataclass(frozen=True)
class IndependentConfig:
    """What the independent renderer draws."""

    sizes: tuple[tuple[int, int], ...] = ((160, 120), (144, 144), (112, 160), (176, 176))  # (W, H)
    shapes: tuple[str, ...] = ("circle", "square", "triangle")  # kinds; mask value = index + 1
    colours: tuple[str, ...] = tuple(SHADES)  # colour words drawn (SHADES)
    min_radius: float = 11.0  # smallest circumradius in pixels (independent of image size)
    max_radius: float = 21.0  # largest circumradius in pixels
    max_shapes: int = 5  # most shapes per image (at least one)
    seed: int = 0  # deterministic per (seed, split, index)

    def __post_init__(self) -> None:
        bad = [k for k in self.shapes if k not in KINDS] + [
            c for c in self.colours if c not in SHADES
        ]
        if bad or not self.shapes or not self.colours:
            raise UserError(
                f"independent shapes renderer: unknown kinds/colours {bad}",
                f"kinds from {KINDS}, colours from {list(SHADES)}",
            )
        if not 0 < self.min_radius <= self.max_radius:
            raise UserError("independent shapes renderer: need 0 < min_radius <= max_radius")

    @property
    def class_names(self) -> list[str]:
        """Foreground class names; mask value ``i + 1`` is ``class_names[i]``."""
        return list(self.shapes)


@dataclass
class Drawn:
    """One drawn shape: its kind, colour word and circumcircle (pixels)."""

    kind: str
    colour: str
    x: float
    y: float
    radius: float


def _outline(kind: str, x: float, y: float, r: float) -> list[tuple[float, float]]:
    """Polygon vertices (supersampled pixels) of a non-circle kind, axis-aligned."""
    if kind == "square":
        h = r / math.sqrt(2)
        return [(x - h, y - h), (x + h, y - h), (x + h, y + h), (x - h, y + h)]
    if kind == "triangle":
        return [
            (x + r * math.cos(a), y + r * math.sin(a))
            for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)
        ]
    if kind == "star":
        pts = []
        for i in range(10):
            a = -math.pi / 2 + i * math.pi / 5
            rr = r if i % 2 == 0 else 0.42 * r
            pts.append((x + rr * math.cos(a), y + rr * math.sin(a)))
        return pts
    if kind == "cross":
        t, h = r * 0.3, r * 0.95
        return [
            (x - t, y - h), (x + t, y - h), (x + t, y - t), (x + h, y - t), (x + h, y + t),
            (x + t, y + t), (x + t, y + h), (x - t, y + h), (x - t, y + t), (x - h, y + t),
            (x - h, y - t), (x - t, y - t),
        ]  # fmt: skip
    raise ValueError(kind)


def _background(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    if rng.random() < 0.5:  # radial ramp from a random centre
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        ys, xs = np.mgrid[0:h, 0:w]
        d = np.hypot(xs - cx, ys - cy) / math.hypot(w, h)
        inner, outer = rng.uniform(40, 220, size=3), rng.uniform(10, 200, size=3)
        img = inner + np.clip(d * 1.6, 0, 1)[..., None] * (outer - inner)
    else:  # smooth blotches: a coarse random grid, bicubically enlarged
        grid = rng.uniform(30, 220, size=(3, 4, 3)).astype(np.uint8)
        img = np.asarray(Image.fromarray(grid).resize((w, h), Image.BICUBIC), dtype=np.float64)
    img = 0.5 * img + 0.5 * img.mean(-1, keepdims=True)  # desaturate toward grey
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def render_independent(
    config: IndependentConfig, index: int, split: str = "val"
) -> tuple[np.ndarray, np.ndarray, list[Drawn]]:
    """Draw image ``index`` of ``split``: (image uint8 HxWx3, mask uint8 HxW, shapes)."""
    if split not in _SPLIT_CODE or index < 0:
        raise UserError(f"independent shapes renderer: bad split/index {split!r}/{index}")
    rng = np.random.default_rng([config.seed, _SPLIT_CODE[split], index, 7])
    w, h = config.sizes[int(rng.integers(len(config.sizes)))]
    # jittered grid: one candidate cell per shape, cells big enough for the largest shape
    cell = 2 * config.max_radius + 4
    nx, ny = max(1, int(w // cell)), max(1, int(h // cell))
    count = int(rng.integers(1, min(config.max_shapes, nx * ny) + 1))
    cells = rng.permutation(nx * ny)[:count]
    drawn: list[Drawn] = []
    for c in cells:
        gx, gy = c % nx, c // nx
        r = rng.uniform(config.min_radius, config.max_radius)
        cw, ch = w / nx, h / ny
        x = gx * cw + cw / 2 + rng.uniform(-1, 1) * max(0.0, cw / 2 - r - 1)
        y = gy * ch + ch / 2 + rng.uniform(-1, 1) * max(0.0, ch / 2 - r - 1)
        kind = config.shapes[int(rng.integers(len(config.shapes)))]
        colour = config.colours[int(rng.integers(len(config.colours)))]
        drawn.append(Drawn(kind, colour, float(x), float(y), float(r)))
    big = _background(w, h, rng).resize((w * SS, h * SS), Image.BILINEAR)
    label = Image.new("L", (w * SS, h * SS), 0)
    paint, mark = ImageDraw.Draw(big), ImageDraw.Draw(label)
    for d in drawn:
        x, y, r = d.x * SS, d.y * SS, d.radius * SS
        value = config.shapes.index(d.kind) + 1
        fill = tuple(
            int(v) for v in np.clip(np.array(SHADES[d.colour]) + rng.integers(-10, 11, 3), 0, 255)
        )
        if d.kind == "circle":
            box = [x - r, y - r, x + r, y + r]
            paint.ellipse(box, fill=fill)
            mark.ellipse(box, fill=value)
        else:
            pts = _outline(d.kind, x, y, r)
            paint.polygon(pts, fill=fill)
            mark.polygon(pts, fill=value)
    image = big.resize((w, h), Image.BOX).filter(ImageFilter.GaussianBlur(0.5))
    arr = np.asarray(image).astype(np.float64) + rng.normal(0, 4.0, size=(h, w, 3))
    mask = np.asarray(label)[SS // 2 :: SS, SS // 2 :: SS].copy()  # pixel-centre sample
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8), mask, drawn


class IndependentShapes:
    """Raw dataset of the independent renderer (``length`` images of one split)."""

    has_background = True
    has_labels = True

    def __init__(self, config: IndependentConfig, split: str, length: int) -> None:
        if length < 1:
            raise UserError(
                f"independent shapes: length {length} < 1", "ask for at least one image"
            )
        self.config, self.split, self.length = config, split, length

    @property
    def max_class(self) -> int:
        """Largest mask value."""
        return len(self.config.shapes)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> RawSample:
        if not 0 <= index < self.length:
            raise IndexError(index)
        image, mask, _ = render_independent(self.config, index, self.split)
        return RawSample(image, mask, f"shapes_indep_{self.split}_{index:05d}")


@register_dataset("shapes_independent")
def build_shapes_independent(
    *,
    root: str | None = None,
    split: str,
    length: int = 240,
    shapes: Sequence[str] = ("circle", "square", "triangle"),
    seed: int = 0,
) -> IndependentShapes:
    """Builder for the data module (``root`` unused): ``length`` images of ``split``."""
    del root
    return IndependentShapes(IndependentConfig(shapes=tuple(shapes), seed=seed), split, length)


build_shapes_independent.has_background = True  # type: ignore[attr-defined]
build_shapes_independent.has_labels = True  # type: ignore[attr-defined]
