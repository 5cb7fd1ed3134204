"""Reading any image as upright 8-bit RGB, and finding images from a file, folder or glob."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from src.errors import UserError
from src.utils.images import check_readable, find_images, load_rgb


def test_16_bit_grayscale_is_scaled_to_8_bit(tmp_path: Path) -> None:
    values = np.array([[0, 257, 1000], [32768, 65535, 12850]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    rgb = np.asarray(load_rgb(tmp_path / "deep.png"))
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    expected = np.rint(values / 257.0).astype(np.uint8)
    assert np.array_equal(rgb[..., 0], expected) and np.array_equal(rgb[..., 2], expected)


def test_32_bit_integer_and_float_images_are_scaled_to_their_range(tmp_path: Path) -> None:
    wide = np.array([[-1000, 0], [500, 3000]], dtype=np.int32)
    Image.fromarray(wide, mode="I").save(tmp_path / "wide.tif")
    got = np.asarray(load_rgb(tmp_path / "wide.tif"))[..., 0]
    assert got[0, 0] == 0 and got[1, 1] == 255 and 0 < got[0, 1] < got[1, 0] < 255
    unit = np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32)
    Image.fromarray(unit, mode="F").save(tmp_path / "unit.tif")
    got = np.asarray(load_rgb(tmp_path / "unit.tif"))[..., 0]
    assert got.tolist() == [[0, 128], [255, 64]]


def test_transparency_is_composited_on_white_and_gray_expanded(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 0  # transparent top half
    rgba[2:, :, 3] = 255
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    rgb = np.asarray(load_rgb(tmp_path / "a.png"))
    assert (rgb[:2] == 255).all() and (rgb[2:] == (200, 0, 0)).all()
    Image.fromarray(np.full((3, 5), 77, np.uint8), mode="L").save(tmp_path / "g.png")
    gray = load_rgb(tmp_path / "g.png")
    assert gray.mode == "RGB" and np.asarray(gray).tolist() == [[[77] * 3] * 5] * 3


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = np.zeros((20, 30, 3), dtype=np.uint8)
    img[:, :10] = 255  # white left third
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(img).save(tmp_path / "r.png", exif=exif)
    upright = np.asarray(load_rgb(tmp_path / "r.png"))
    assert upright.shape == (30, 20, 3)
    assert (upright[:10] == 255).all() and (upright[10:] == 0).all()  # left third -> top


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(UserError, match="bad.jpg"):
        check_readable(bad)
    with pytest.raises(UserError, match="bad.jpg"):
        load_rgb(bad)


def test_find_images_file_folder_glob_and_errors(tmp_path: Path) -> None:
    for name in ("b.png", "a.JPG", "c_mask.png", ".hidden.png"):
        Image.new("RGB", (4, 4)).save(tmp_path / name, format="PNG")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "sub" / "d.png")

    assert find_images(str(tmp_path / "b.png")) == [tmp_path / "b.png"]
    names = [p.name for p in find_images(str(tmp_path))]
    assert names == ["a.JPG", "b.png", "c_mask.png"]  # not recursive, no hidden, no text
    names = [p.name for p in find_images(str(tmp_path), skip_outputs_in=tmp_path)]
    assert names == ["a.JPG", "b.png"]  # our own masks are not predicted again
    assert [p.name for p in find_images(f"{tmp_path}/**/*.png")] == ["b.png", "c_mask.png", "d.png"]

    with pytest.raises(UserError, match="input not found"):
        find_images(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="matches no files"):
        find_images(f"{tmp_path}/*.webp")
    with pytest.raises(UserError, match="no image files"):
        find_images(f"{tmp_path}/*.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no images"):
        find_images(str(tmp_path / "empty"))
