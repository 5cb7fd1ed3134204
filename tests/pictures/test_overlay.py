"""Overlays: blended colours and a legend of class names."""

from __future__ import annotations

import numpy as np

from src.pictures.overlay import blend, legend_entries, overlay_with_legend
from src.pictures.palette import prediction_palette


def test_blend_keeps_pixels_without_class() -> None:
    image = np.full((2, 2, 3), 100, dtype=np.uint8)
    mask = np.array([[0, 255], [1, 0]], dtype=np.uint8)
    pal = prediction_palette(["a", "b"])
    out = blend(image, mask, pal, alpha=0.5)
    assert out[0, 1].tolist() == [100, 100, 100]
    assert out[0, 0].tolist() == np.rint(0.5 * 100 + 0.5 * pal[0]).astype(int).tolist()
    assert np.array_equal(blend(image, mask, pal, alpha=0.0), image)


def test_overlay_has_a_legend_of_present_classes() -> None:
    image = np.zeros((60, 80, 3), dtype=np.uint8)
    mask = np.zeros((60, 80), dtype=np.uint8)
    mask[:, 40:] = 2
    mask[:10, :10] = 255
    names = ["cat", "dog", "red car"]
    counts = [int((mask == k).sum()) for k in range(3)]
    entries = legend_entries(names, counts)
    assert [e[1] for e in entries] == ["red car", "cat"]  # present only, largest first
    canvas = overlay_with_legend(image, mask, names, prediction_palette(names), counts)
    assert canvas.mode == "RGB" and canvas.height >= 60 and canvas.width > 80
    body = np.asarray(canvas)[:60, :80]
    assert np.array_equal(body, blend(image, mask, prediction_palette(names), 0.5))
    panel = np.asarray(canvas)[:, 80:]
    colours = {tuple(c) for c in panel.reshape(-1, 3)}
    pal = prediction_palette(names)
    assert tuple(pal[2]) in colours and tuple(pal[0]) in colours  # swatches drawn
    assert tuple(pal[1]) not in colours  # dog is absent from the legend


def test_legend_shares_are_of_the_whole_image_when_pixels_have_no_class() -> None:
    entries = legend_entries(["a", "b"], [30, 10], total=100)  # 60 pixels with no class
    assert entries == [(0, "a", 0.3), (1, "b", 0.1)]
