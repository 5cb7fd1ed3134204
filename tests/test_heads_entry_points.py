"""``teacher.head``, ``teacher.refine`` and ``save_logits`` through train, eval and predict:
the head lands in the student's checkpoint, eval/predict rebuild the same teacher, a sweep
over heads trains one student each, and a real-CLIP command fails only on what is missing."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from src.data.shapes import ShapesConfig, render_scene
from src.errors import UserError
from src.eval import evaluate
from src.student.checkpoint import load_student
from src.train import train
from src.utils.task import instantiate
from tests.data.layouts import make_voc
from tests.test_eval import compose_eval
from tests.test_train import TINY, _run_cli, _sweep_args, compose_run, compose_train

ROOT = Path(__file__).resolve().parents[1]
HEAD = ["teacher=tiny_shapes_vit_plain", "teacher.head=naclip", "teacher.refine=pamr"]


def scenes(folder: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(render_scene(ShapesConfig(), i, "val").image).save(folder / f"s{i}.png")
    return folder


def test_the_student_checkpoint_rebuilds_the_teachers_head(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = compose_train(out, *HEAD, "trainer.max_steps=1", "trainer.val_check_interval=1")
    metrics = train(cfg)
    assert metrics["train/global_step"] == 1 and "teacher/val/miou" in metrics
    student = load_student(out / "checkpoints" / "last.ckpt")
    teacher = student.teacher
    assert (teacher.head, teacher.refine, teacher.clip_model) == (
        "naclip",
        "pamr",
        "tiny_shapes_vit_plain",
    )
    fresh = instantiate(cfg.teacher, class_names=list(teacher.class_names))
    x = torch.randn(2, 3, 48, 64)
    assert torch.allclose(teacher.predict_logits(x), fresh.predict_logits(x), atol=1e-6)
    plain = instantiate(cfg.teacher, class_names=list(teacher.class_names), head="maskclip")
    assert not torch.allclose(plain.predict_logits(x), fresh.predict_logits(x))

    # eval with the checkpoint: the student; predict with it: same command shape as README
    eval_metrics = evaluate(
        compose_eval(tmp_path, "data=shapes", f"ckpt_path={out}/checkpoints/last.ckpt",
                     "data.dataset_options.val_length=4", "data.dataset_options.image_size=32")
    )  # fmt: skip
    assert 0.0 <= eval_metrics["val/miou"] <= 1.0


def test_eval_with_a_head_and_pamr_differs_from_maskclip(tmp_path: Path) -> None:
    small = ["data=shapes", "teacher=tiny_shapes_vit_plain", "data.dataset_options.val_length=8"]
    base = evaluate(compose_eval(tmp_path / "a", *small))
    naclip = evaluate(compose_eval(tmp_path / "b", *small, "teacher.head=naclip"))
    refined = evaluate(compose_eval(tmp_path / "c", *small, "teacher.head=naclip",
                                    "teacher.refine=pamr"))  # fmt: skip
    assert len({base["val/miou"], naclip["val/miou"], refined["val/miou"]}) == 3


#: the README's command (section "Teacher heads"), run as written in a folder holding scenes/
README_PREDICT = (
    "python -m src.predict input=scenes/ 'classes=[circle,square,triangle]' "
    "teacher=tiny_shapes_vit_plain teacher.head=naclip teacher.refine=pamr save_logits=true"
)


def test_predict_writes_the_logits_the_mask_was_taken_from(tmp_path: Path) -> None:
    assert README_PREDICT in (ROOT / "README.md").read_text()
    scenes(tmp_path / "scenes")
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    args = shlex.split(README_PREDICT)[1:]
    proc = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (legend_path,) = (tmp_path / "logs" / "predict").rglob("legend.json")
    legend = json.loads(legend_path.read_text())
    assert legend["model"]["head"] == "naclip" and legend["model"]["refine"] == "pamr"
    assert legend["settings"]["logit_scale"] == 40.0 and legend["settings"]["save_logits"]
    assert len(legend["images"]) == 2
    for record in legend["images"]:
        logits = np.load(legend_path.parent / record["logits"])
        mask = np.array(Image.open(legend_path.parent / record["mask"]))
        assert logits.dtype == np.float32 and logits.shape == (3, 128, 128)
        assert np.array_equal(logits.argmax(0), mask)
    assert not list(legend_path.parent.glob(".*.tmp"))  # written atomically


def test_a_vit_b16_naclip_pamr_run_fails_only_on_the_missing_weights(tmp_path: Path) -> None:
    """``python -m src.train experiment=voc_annotation_free teacher=vit_b16 teacher.head=naclip
    teacher.refine=pamr`` composes; offline it stops at the CLIP weights, not at the head."""
    args = ["experiment=voc_annotation_free", "teacher=vit_b16", "teacher.head=naclip",
            "teacher.refine=pamr"]  # fmt: skip
    make_voc(tmp_path / "data")  # the data is checked first: with it there, the weights are next
    cfg = compose_run(tmp_path / "run", *args, f"paths.data_dir={tmp_path}/data")
    assert (cfg.teacher.head, cfg.teacher.refine, cfg.teacher.clip_model) == (
        "naclip",
        "pamr",
        "ViT-B-16",
    )
    assert cfg.data.dataset == "voc" and cfg.trainer.max_steps == 2000
    with pytest.raises(UserError) as info:
        train(cfg)
    assert "weights of ViT-B-16" in info.value.problem and "head" not in info.value.problem
    assert "teacher.pretrained=/path/to/ViT-B-16" in info.value.fix


@pytest.mark.slow
def test_a_sweep_over_heads_trains_one_student_each(tmp_path: Path) -> None:
    _run_cli([*_sweep_args(tmp_path), *TINY, "teacher=tiny_vit_test",
              "teacher.head=maskclip,naclip,resclip", "trainer.max_steps=2"], tmp_path)  # fmt: skip
    runs = sorted((tmp_path / "multirun").glob("*/checkpoints/last.ckpt"))
    assert len(runs) == 3
    heads = [load_student(path).teacher.head for path in runs]
    assert heads == ["maskclip", "naclip", "resclip"]


@pytest.fixture(scope="module")
def dino_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DINO ViT-B/8 with random weights (timm layout, fp16), for CorrCLIP's proxy."""
    import timm

    path = tmp_path_factory.mktemp("dino") / "dino_vitbase8_pretrain.pth"
    dino = timm.create_model("vit_base_patch8_224.dino", pretrained=False, num_classes=0)
    torch.save({k: v.half() for k, v in dino.state_dict().items()}, path)
    return path


#: issue 21's heads as a user sets them (CorrCLIP: superpixel regions, the random DINO file)
NEW_HEADS = {
    "corrclip": [
        "teacher.head=corrclip",
        "teacher.masks=superpixels",
        "teacher.masks_options={segments:16}",
    ],  # fmt: skip
    "pearl": ["teacher.head=pearl", "teacher.refine=tlp"],
}


@pytest.mark.slow
@pytest.mark.parametrize("head", sorted(NEW_HEADS))
def test_the_issue_21_heads_in_training_eval_predict_and_the_page(
    head: str, dino_file: Path, tmp_path: Path
) -> None:
    """``teacher.head=corrclip teacher.masks=superpixels`` and ``teacher.head=pearl
    teacher.refine=tlp`` on the tiny plain ViT: a student trained on their labels keeps them
    in its checkpoint, eval scores with them, and predict and the page give the same logits
    (whole image and sliding windows, CorrCLIP's padded to 56)."""
    from dataclasses import replace

    from src.prediction.models import LoadedModel, ModelCache
    from src.prediction.predictor import predict_image, predictor_from_teacher
    from src.web.segment import ModelRequest, Segmenter
    from tests.teacher.test_region_masks import CPU, SETTINGS

    over = ["teacher=tiny_shapes_vit_plain", *NEW_HEADS[head], f"teacher.proxy_weights={dino_file}"]
    out = tmp_path / "run"
    cfg = compose_train(out, *over, "callbacks.pseudo_label_switch.enabled=false",
                        "trainer.max_steps=1", "trainer.val_check_interval=1")  # fmt: skip
    metrics = train(cfg)
    assert metrics["train/global_step"] == 1 and 0.0 <= metrics["teacher/val/miou"] <= 1.0
    teacher = load_student(out / "checkpoints" / "last.ckpt").teacher
    assert teacher.head == head and teacher.refine == ("tlp" if head == "pearl" else None)
    assert teacher.config()["masks"] == ("superpixels" if head == "corrclip" else None)
    small = ["data=shapes", "data.dataset_options.val_length=4"]
    evaluated = evaluate(compose_eval(tmp_path / "eval", *small, *over))
    assert evaluated["teacher_config"]["head"] == head and 0.0 <= evaluated["val/miou"] <= 1.0

    teacher = instantiate(cfg.teacher, class_names=["circle", "square", "triangle"])
    image = render_scene(ShapesConfig(), 0, "val").image[:90, :120]  # not whole patches
    path = tmp_path / "scene.png"
    Image.fromarray(image).save(path)
    loaded = LoadedModel(teacher, "teacher", {}, list(teacher.class_names))
    for windowed in (False, True):
        settings = replace(SETTINGS, sliding_window=windowed, window=64, stride=32,
                           window_pad=56 if head == "corrclip" else 0)  # fmt: skip
        with torch.inference_mode():
            predicted = predict_image(predictor_from_teacher(teacher), image, settings, CPU)
        page = Segmenter(loader=lambda request, classes, m=loaded: m, settings=settings,
                         device=CPU, out_dir=tmp_path / f"page{windowed}", cache=ModelCache(1))  # fmt: skip
        result = page.segment(path, "circle, square, triangle", ModelRequest("any"),
                              sliding_window=windowed)  # fmt: skip
        paged = torch.from_numpy(np.load(result.folder / "scene_logits.npy"))
        assert predicted.logits.shape == (3, 90, 120)
        assert torch.isfinite(predicted.logits).all()
        assert torch.equal(paged, predicted.logits)
