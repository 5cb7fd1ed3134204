"""The one palette: PASCAL colours by class index, prediction colours, one void colour."""

from __future__ import annotations

import numpy as np
import pytest

from src.pictures.palette import (
    VOID_COLOR,
    colorize,
    label_palette,
    mask_image,
    pascal_palette,
    prediction_palette,
)


def test_label_palette_is_pascal_by_class_index_with_the_void_colour() -> None:
    mask = np.array([[0, 1, 255], [254, 15, 2]])
    rgb = colorize(mask, label_palette())
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[0, 1].tolist() == [128, 0, 0]
    assert rgb[0, 2].tolist() == list(VOID_COLOR) == rgb[1, 0].tolist()
    assert rgb[1, 1].tolist() == [192, 128, 128]  # VOC's person
    assert len({tuple(c) for c in label_palette()[:254]}) == 254  # distinct class colours
    assert tuple(pascal_palette()[255]) == VOID_COLOR  # VOC's own void colour


def test_palette_is_distinct_never_black_except_background() -> None:
    pal = prediction_palette(["cat", "dog", "red car"])
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    assert len({tuple(c) for c in pal[:254]}) == 254  # every class value has its own colour
    assert not (pal[:254] == 0).all(axis=1).any()
    assert tuple(pal[255]) == VOID_COLOR and tuple(pal[254]) == VOID_COLOR
    pal = prediction_palette(["background", "cat"])
    assert tuple(pal[0]) == (0, 0, 0) and tuple(pal[1]) != (0, 0, 0)
    with pytest.raises(ValueError):
        prediction_palette([])


def test_mask_image_keeps_values_and_palette() -> None:
    mask = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    pal = prediction_palette(["a", "b", "c"])
    im = mask_image(mask, pal)
    assert im.mode == "P" and np.array_equal(np.asarray(im), mask)
    assert im.getpalette()[:9] == pal[:3].reshape(-1).tolist()
