"""Validation panels: ``image | teacher | student | ground truth`` side by side, with a title
over each column and a legend of the classes shown below.

Colours: :func:`src.pictures.palette.label_palette` by class index (the data module's
``class_names`` order); predictions on pixels the metric ignores (void) are shown faded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from src.batch import IGNORE_INDEX
from src.pictures.fonts import label_font, shorten
from src.pictures.palette import VOID_COLOR, colorize, label_palette

PALETTE = label_palette()


def denormalise(image: torch.Tensor, mean: Any, std: Any) -> np.ndarray:
    """(3, H, W) normalised tensor -> (H, W, 3) uint8."""
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    rgb = (image.detach().float().cpu() * s + m).clamp(0, 1)
    return (rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def panel(
    image: np.ndarray,
    *labels: np.ndarray,
    gap: int = 4,
    void: np.ndarray | None = None,
    titles: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Side by side: the image (resized to the labels' size) then each colourised label map.

    ``void``: (H, W) bool, pixels the metric ignores; predictions there are shown faded.
    ``titles``: one per column (image first), drawn above; ``class_names``: a legend below of
    the classes present in any label map (and void, where the truth has it).
    """
    body = _columns(image, *labels, gap=gap, void=void)
    if not titles and class_names is None:
        return body
    h, w = labels[0].shape
    size = max(10, round(min(h, 240) / 12))
    canvas = body
    if titles:
        header = Image.new("RGB", (body.shape[1], size + size // 2), (255, 255, 255))
        draw, font = ImageDraw.Draw(header), label_font(size, titles)
        for k, title in enumerate(titles):
            x = k * (w + gap) + w / 2
            draw.text((x, size // 4), shorten(title, 24), fill=(0, 0, 0), font=font, anchor="mt")
        canvas = np.concatenate([np.asarray(header), canvas], axis=0)
    if class_names is not None:
        legend = _legend(labels, class_names, width=body.shape[1], size=size)
        canvas = np.concatenate([canvas, legend], axis=0)
    return canvas


def _legend(
    labels: Sequence[np.ndarray], class_names: Sequence[str], *, width: int, size: int
) -> np.ndarray:
    """Rows of ``swatch name`` for the classes present in ``labels``, wrapped to ``width``."""
    values = sorted({int(v) for lab in labels for v in np.unique(lab)})
    entries = [(tuple(int(c) for c in PALETTE[v]), shorten(class_names[v], 24))
               for v in values if v < len(class_names)]  # fmt: skip
    if IGNORE_INDEX in values:
        entries.append((VOID_COLOR, "void (not scored)"))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    pad, line = size // 2, size + size // 2
    placed, x, y = [], pad, pad // 2
    for colour, name in entries:
        font = label_font(size, [name])
        item = size + pad // 2 + int(probe.textlength(name, font=font)) + pad
        if x > pad and x + item > width:
            x, y = pad, y + line
        placed.append((x, y, colour, name, font))
        x += item
    strip = Image.new("RGB", (width, y + line), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for x, y, colour, name, font in placed:
        draw.rectangle([x, y, x + size, y + size], fill=colour, outline=(0, 0, 0))
        draw.text((x + size + pad // 2, y), name, fill=(0, 0, 0), font=font)
    return np.asarray(strip)


def _columns(
    image: np.ndarray, *labels: np.ndarray, gap: int, void: np.ndarray | None
) -> np.ndarray:
    h, w = labels[0].shape
    if image.shape[:2] != (h, w):
        image = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    sep = np.full((h, gap, 3), 255, dtype=np.uint8)
    parts = [image]
    for lab in labels:
        pic = colorize(lab, PALETTE)
        if void is not None:
            fade = void & (lab != IGNORE_INDEX)  # the truth's own void keeps its colour
            pic = np.where(fade[..., None], pic // 2 + 128, pic).astype(np.uint8)
        parts += [sep, pic]
    return np.concatenate(parts, axis=1)
