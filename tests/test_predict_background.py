"""``src.predict`` with classes of several names and a teacher that can say "none of these"."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from PIL import Image

from src.data.shapes import make_config, render_scene
from src.predict import predict

ROOT = Path(__file__).resolve().parents[1]


def test_predict_names_several_per_class_and_leaves_background_unclassed(tmp_path: Path) -> None:
    scene = render_scene(make_config(), 1, "val")
    Image.fromarray(scene.image).save(tmp_path / "scene.png")
    out = tmp_path / "out"
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "predict",
            overrides=[
                f"input={tmp_path}/scene.png",
                'classes=[circle,"square, box",triangle]',  # as typed on the command line
                "teacher=tiny_shapes",
                "teacher.background_threshold=0.6",
                "teacher.logit_scale=10",
                f"output_dir={out}",
                f"paths.root_dir={tmp_path}",
                f"paths.output_dir={tmp_path}/run",
                "progress=false",
            ],
        )
    predict(cfg)
    legend = json.loads((out / "legend.json").read_text())
    assert legend["classes"] == ["circle", "square", "triangle"]  # shown by the first name
    assert legend["model"]["background_threshold"] == 0.6
    mask = np.asarray(Image.open(out / "scene_mask.png"))
    assert mask.shape == scene.mask.shape and set(np.unique(mask)) <= {0, 1, 2, 255}
    background, shapes = scene.mask == 0, scene.mask > 0
    assert (mask[background] == 255).mean() > 0.5  # "none of these" on most of the background
    assert (mask[shapes] == scene.mask[shapes] - 1).mean() > 0.5  # the shapes keep their class
    record = legend["images"][0]
    assert record["pixels_no_class"] == int((mask == 255).sum()) > 0
    assert sum(record["pixels"].values()) + record["pixels_no_class"] == mask.size
