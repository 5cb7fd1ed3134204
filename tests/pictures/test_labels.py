"""Text in pictures: glyphs for non-Latin class names, legends that scale with the image,
long phrases shortened, titles and a legend on the training validation panels."""

from __future__ import annotations

import numpy as np

from src.pictures.fonts import label_font, shorten
from src.pictures.overlay import overlay_with_legend
from src.pictures.palette import label_palette, prediction_palette
from src.pictures.panels import panel


def legend_panel(names: list[str], h: int = 60, w: int = 80) -> np.ndarray:
    """The legend part of an overlay where every pixel is class 0."""
    mask = np.zeros((h, w), np.uint8)
    counts = [h * w] + [0] * (len(names) - 1)
    canvas = overlay_with_legend(
        np.zeros((h, w, 3), np.uint8), mask, names, prediction_palette(names), counts
    )
    return np.asarray(canvas)[:, w:]


def test_non_latin_names_are_drawn_with_their_glyphs() -> None:
    # a font without the glyphs draws every letter as the same box: the two rows would match
    for word, same_length in (("кошка", "ккккк"), ("γάτα", "γγγγ"), ("Straße", "SSSSSS")):
        assert not np.array_equal(legend_panel([word]), legend_panel([same_length])), word
        font = label_font(20, [word])
        assert len(
            {(font.getmask(c).size, bytes(np.asarray(font.getmask(c)))) for c in set(word)}
        ) == len(set(word)), word


def test_legend_scales_with_the_image_and_long_names_are_shortened() -> None:
    phrase = "a red car parked under a tree beside a house " * 4  # 180 characters
    assert shorten(phrase).endswith("…") and len(shorten(phrase)) <= 40
    for h, w in ((60, 80), (1500, 2000)):
        legend = legend_panel([phrase, "cat"], h, w)
        swatch = np.all(legend == prediction_palette([phrase, "cat"])[0], axis=-1)
        rows = np.flatnonzero(swatch.any(axis=1))
        size = rows.max() - rows.min() + 1  # the class colour swatch, as tall as the text
        assert size == max(11, round(min(h, w) / 30)) - 1, (h, w)  # 11 px, then 1/30
        assert legend.shape[1] < 40 * size  # about 50 characters wide, not 190


def test_validation_panels_have_titles_and_a_legend_of_the_classes_shown() -> None:
    truth = np.zeros((64, 64), np.uint8)
    truth[10:30, 10:30] = 1
    truth[40:60, 40:60] = 2
    truth[:2] = 255
    student = np.where(truth == 255, 0, truth).astype(np.uint8)
    image = np.zeros((64, 64, 3), np.uint8)
    names = ["background", "circle", "square", "triangle"]
    titles = ("image", "teacher", "student", "ground truth")
    plain = panel(image, student, student, truth)
    full = panel(image, student, student, truth, titles=titles, class_names=names)
    assert plain.shape == (64, 4 * 64 + 3 * 4, 3) and full.shape[1] == plain.shape[1]
    top = full.shape[0] - plain.shape[0]
    header = next(y for y in range(full.shape[0]) if np.array_equal(full[y : y + 64], plain))
    assert 0 < header < top  # a title strip above, a legend strip below
    for k in range(4):  # dark title text over every column
        column = full[:header, k * 68 : k * 68 + 64]
        assert (column < 100).all(axis=-1).any(), titles[k]
    legend = full[header + 64 :]
    colours = {tuple(c) for c in legend.reshape(-1, 3)}
    pal = label_palette()
    assert {tuple(pal[0]), tuple(pal[1]), tuple(pal[2]), tuple(pal[255])} <= colours
    assert tuple(pal[3]) not in colours  # triangle is in no label map
