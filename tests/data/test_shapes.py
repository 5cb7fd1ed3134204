"""The embedded shapes world: determinism, masks, captions, VOC export, independent renderer."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from src.data.base import DATASETS
from src.data.shapes import (
    COLOURS,
    ShapesConfig,
    export_voc_layout,
    make_config,
    render_scene,
    shape_mask,
)
from src.data.shapes_captions import SCENE_TEMPLATES, caption, clip_pair
from src.data.shapes_independent import SHADES, IndependentConfig, render_independent
from src.errors import UserError

CLEAN = ShapesConfig(noise=0.0, colour_jitter=0)


def test_scenes_are_deterministic_per_seed_split_index() -> None:
    a, b = render_scene(ShapesConfig(), 7, "val"), render_scene(ShapesConfig(), 7, "val")
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert a.image.shape == (128, 128, 3) and a.image.dtype == np.uint8
    assert a.mask.shape == (128, 128) and a.mask.dtype == np.uint8
    assert not np.array_equal(a.image, render_scene(ShapesConfig(), 8, "val").image)
    assert not np.array_equal(a.image, render_scene(ShapesConfig(), 7, "train").image)
    assert not np.array_equal(a.image, render_scene(ShapesConfig(seed=1), 7, "val").image)


def test_masks_match_the_drawing() -> None:
    cfg = CLEAN
    for index in range(12):
        scene = render_scene(cfg, index, "val")
        assert 1 <= len(scene.objects) <= cfg.max_shapes
        assert set(np.unique(scene.mask)) <= {0, 1, 2, 3}
        assert np.array_equal(scene.mask == 0, scene.instances == -1)
        for j, obj in enumerate(scene.objects):
            visible = scene.instances == j
            full = shape_mask(obj, 128, 128)
            # kept apart: nothing occludes anything, every shape is fully visible
            assert np.array_equal(visible, full)
            assert np.all(scene.mask[visible] == cfg.class_names.index(obj.kind) + 1)
            # without noise and jitter a shape's pixels are exactly its colour
            assert np.all(scene.image[visible] == np.array(COLOURS[obj.colour]))
            r = obj.size / 2
            area = {"circle": math.pi * r * r, "square": obj.size**2}.get(obj.kind)
            area = area or math.sqrt(3) / 4 * obj.size**2  # triangle
            assert abs(visible.sum() - area) <= 0.06 * area + 4


def test_wider_world_options() -> None:
    cfg = ShapesConfig(
        shapes=("circle", "square", "triangle", "star", "cross", "hexagon"),
        rotation=45,
        overlap=True,
        background="texture",
        image_size=96,
        max_shapes=6,
        colour_jitter=0,
        noise=0,
    )
    kinds = set()
    for i in range(20):
        s = render_scene(cfg, i)
        assert s.image.shape == (96, 96, 3)
        for j, obj in enumerate(s.objects):
            kinds.add(obj.kind)
            vis = s.instances == j
            assert np.all(s.mask[vis] == cfg.class_names.index(obj.kind) + 1)
            assert np.all(vis <= shape_mask(obj, 96, 96))  # visible part lies inside the shape
    assert kinds == set(cfg.shapes)
    star = shape_mask(replace(s.objects[0], kind="star", cx=48, cy=48, size=60, angle=0), 96, 96)
    assert not star[48 - 22, 48 - 10]  # between two star points: concave, not filled
    assert star[48, 48] and star[48 - 27, 48]  # centre and top point


def test_colour_classes() -> None:
    cfg = replace(CLEAN, colour_classes=True)
    assert cfg.class_names[:2] == ["red circle", "green circle"] and len(cfg.class_names) == 18
    s = render_scene(cfg, 3, "val")
    for j, obj in enumerate(s.objects):
        name = cfg.class_names[s.mask[s.instances == j][0] - 1]
        assert name == f"{obj.colour} {obj.kind}"


def test_bad_options_are_user_errors() -> None:
    with pytest.raises(UserError, match="hexagonal"):
        make_config(shapes=["hexagonal"])
    with pytest.raises(UserError, match="unknown options"):
        make_config(colour="red")
    with pytest.raises(UserError, match="split"):
        render_scene(ShapesConfig(), 0, "dev")


def test_captions_name_what_is_drawn() -> None:
    rng = np.random.default_rng(0)
    scene = render_scene(CLEAN, 2, "val")
    text, key = caption(scene.objects, rng, colour_prob=1.0, template_prob=0.0)
    assert set(key) == {f"{o.colour} {o.kind}" for o in scene.objects}
    assert all(phrase in text for phrase in key)
    text, key = caption(scene.objects, rng, colour_prob=0.0, template_prob=1.0)
    assert set(key) == {o.kind for o in scene.objects}
    assert not any(c in text for c in COLOURS)
    assert any(
        text == t.format(" and ".join(p for p in text_order(text, key))) for t in SCENE_TEMPLATES
    )


def text_order(text: str, key: tuple[str, ...]) -> list[str]:
    """The phrases of ``key`` in the order they appear in ``text``."""
    return sorted(key, key=text.index)


def test_clip_pairs_scene_and_crop() -> None:
    cfg = ShapesConfig()
    for i in range(20):
        whole = clip_pair(cfg, i, image_size=96, crop_prob=0.0, colour_prob=1.0)
        scene = render_scene(cfg, i, "train")
        assert whole.image.shape == (96, 96, 3)
        assert set(whole.shown) == {(o.colour, o.kind) for o in scene.objects}
        assert whole.matches(whole.key)
        crop = clip_pair(cfg, i, image_size=64, crop_prob=1.0, colour_prob=0.0)
        assert crop.image.shape == (64, 64, 3)
        assert set(crop.key) <= {o.kind for o in scene.objects} and crop.key
        assert crop.matches(crop.key)
        assert crop.matches(tuple(sorted({k for _, k in crop.shown})))
    # a caption naming a shape that is not shown does not match
    assert not whole.matches(("hexagon",))


def test_registered_dataset_and_lengths() -> None:
    builder = DATASETS["shapes"]
    assert builder.has_background is True
    ds = builder(root=None, split="val", val_length=5, image_size=64)
    assert len(ds) == 5 and ds.max_class == 3
    sample = ds[4]
    assert sample.image.shape == (64, 64, 3) and sample.label.shape == (64, 64)
    assert sample.name == "shapes_val_00004"
    with pytest.raises(IndexError):
        ds[5]


def test_voc_export_layout(tmp_path: Path) -> None:
    cfg = ShapesConfig(image_size=64)
    root = export_voc_layout(tmp_path / "voc", config=cfg, lengths={"train": 3, "val": 2})
    names = (root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    assert names == ["shapes_val_00000", "shapes_val_00001"]
    assert len((root / "ImageSets" / "Segmentation" / "train.txt").read_text().split()) == 3
    label = Image.open(root / "SegmentationClass" / "shapes_val_00001.png")
    assert label.mode == "P"
    assert np.array_equal(np.asarray(label), render_scene(cfg, 1, "val").mask)
    image = np.asarray(Image.open(root / "JPEGImages" / "shapes_val_00001.jpg"))
    assert image.shape == (64, 64, 3)
    assert np.abs(image.astype(int) - render_scene(cfg, 1, "val").image).mean() < 6
    assert (root / "class_names.txt").read_text().split("\n")[:4] == [
        "background",
        "circle",
        "square",
        "triangle",
    ]


def test_data_module_from_conf() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from src.batch import IGNORE_INDEX
    from src.utils.run_dirs import register_resolvers

    register_resolvers()
    conf = Path(__file__).parents[2] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("eval", overrides=["data=shapes", "data.dataset_options.val_length=4"]).data
    dm = instantiate(cfg)
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (4, 3, 128, 128)
    raw = render_scene(ShapesConfig(), 0, "val").mask
    target = batch["target"][0].numpy()
    assert np.all(target[raw == 0] == IGNORE_INDEX)  # background ignored (VOC-20 style)
    assert np.array_equal(target[raw > 0], raw[raw > 0].astype(np.int64) - 1)
    assert dm.class_names == ["circle", "square", "triangle"]


def test_independent_renderer() -> None:
    cfg = IndependentConfig()
    a, b = render_independent(cfg, 5), render_independent(cfg, 5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    sizes = set()
    for i in range(16):
        image, mask, drawn = render_independent(cfg, i)
        sizes.add(image.shape[:2])
        assert mask.shape == image.shape[:2] and set(np.unique(mask)) <= {0, 1, 2, 3}
        assert {cfg.shapes[v - 1] for v in np.unique(mask) if v} == {d.kind for d in drawn}
        yy, xx = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]] + 0.5
        for d in drawn:  # the core of each shape has its kind's label and its colour's shade
            core = np.hypot(xx - d.x, yy - d.y) < 0.4 * d.radius
            assert np.all(mask[core] == cfg.shapes.index(d.kind) + 1)
            assert np.abs(image[core].mean(0) - SHADES[d.colour]).max() < 16
    assert len(sizes) >= 3 and (128, 128) not in sizes
