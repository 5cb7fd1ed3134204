"""Colour overlays with a legend of class names (predict, the web page, notebooks).

Plain numpy / PIL in and out; colours come from :mod:`src.pictures.palette`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from src.pictures.fonts import label_font, shorten
from src.pictures.palette import VOID_COLOR


def blend(image: np.ndarray, mask: np.ndarray, palette: np.ndarray, alpha: float) -> np.ndarray:
    """(H, W, 3) uint8 image with the mask's colours laid over it at ``alpha``.

    Pixels without a class (254, 255) keep the image's colour.
    """
    img = np.asarray(image, dtype=np.float32)
    colours = np.asarray(palette, dtype=np.float32)[np.asarray(mask, dtype=np.intp)]
    out = (1.0 - alpha) * img + alpha * colours
    void = np.asarray(mask) >= 254
    out[void] = img[void]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def legend_entries(
    class_names: Sequence[str],
    pixels_per_class: Sequence[int],
    *,
    max_entries: int = 24,
    total: int | None = None,
) -> list[tuple[int, str, float]]:
    """(index, name, fraction) of the classes present, largest first, at most ``max_entries``;
    fractions of ``total`` pixels (default: the classified ones)."""
    total = max(1, int(sum(pixels_per_class) if total is None else total))
    present = [
        (i, n, c / total)
        for i, (n, c) in enumerate(zip(class_names, pixels_per_class, strict=True))
        if c > 0
    ]
    present.sort(key=lambda e: -e[2])
    return present[:max_entries]


def overlay_with_legend(
    image: np.ndarray,
    mask: np.ndarray,
    class_names: Sequence[str],
    palette: np.ndarray,
    pixels_per_class: Sequence[int],
    *,
    alpha: float = 0.5,
    max_entries: int = 24,
) -> Image.Image:
    """The blended image with a legend panel at its right: a swatch, name and share per class.

    Only classes present in the mask are listed (largest first, at most ``max_entries``;
    the rest are summarised in one line); pixels with no class are listed as ``(no class)``.
    The text scales with the image (about 1/30 of its short side, at least 11 px), long names
    are shortened with an ellipsis, and the font has the names' glyphs (:mod:`.fonts`).
    """
    h, w = np.asarray(mask).shape
    body = Image.fromarray(blend(image, mask, palette, alpha))
    entries = legend_entries(class_names, pixels_per_class, max_entries=max_entries, total=h * w)
    rows = [
        (tuple(int(v) for v in palette[i]), f"{shorten(name)} ({100 * f:.1f}%)")
        for i, name, f in entries
    ]
    present = sum(1 for c in pixels_per_class if c > 0)
    if present > len(entries):
        rows.append((None, f"... {present - len(entries)} more"))
    void = h * w - int(sum(pixels_per_class))
    if void > 0:
        rows.append((VOID_COLOR, f"(no class) ({100 * void / (h * w):.1f}%)"))

    size = max(11, round(min(h, w) / 30))
    fonts = [label_font(size, [text]) for _, text in rows]  # each row a font with its glyphs
    pad, line = size // 2 + 2, size + size // 2
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widths = [int(probe.textlength(text, font=f)) for (_, text), f in zip(rows, fonts, strict=True)]
    text_w = max(widths, default=0)
    panel_w = pad * 3 + size + text_w
    panel_h = pad * 2 + line * len(rows)
    canvas = Image.new("RGB", (w + panel_w, max(h, panel_h)), (255, 255, 255))
    canvas.paste(body, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for row, (colour, text) in enumerate(rows):
        y = pad + row * line
        x = w + pad
        if colour is not None:
            draw.rectangle([x, y, x + size, y + size], fill=colour, outline=(0, 0, 0))
        draw.text((x + size + pad, y), text, fill=(0, 0, 0), font=fonts[row])
    return canvas
