"""One scoring path: eval, predict and the web page give the same scores for the same image and
settings (whole image and sliding windows, with and without PAMR, teacher and student), and
``teacher.refine`` applies under the protocol's sliding windows (issue 20)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from src.evaluation.module import EvaluationModule
from src.prediction.models import LoadedModel, ModelCache
from src.prediction.predictor import (
    Settings,
    predict_image,
    predictor_from_student,
    predictor_from_teacher,
)
from src.scoring import Windows, sliding_window_logits
from src.teacher.model import DenseClipTeacher
from src.web.segment import ModelRequest, Segmenter
from tests.student.fakes import tiny_student, tiny_teacher
from tests.test_eval import compose_eval

CPU = torch.device("cpu")
WINDOW = Windows(window=32, stride=16, batch=3)
SETTINGS = Settings(
    max_size=None, min_size=None, sliding_window=False, window=WINDOW.window,
    stride=WINDOW.stride, window_batch=WINDOW.batch, threshold=None, logit_scale=None,
    confidence_maps=False, overlay_alpha=0.5, legend_max_entries=10, save_logits=True,
)  # fmt: skip


def _image(h: int = 45, w: int = 62) -> np.ndarray:
    """A blocky (H, W, 3) uint8 scene: regions for PAMR to follow."""
    g = np.random.default_rng(0)
    small = g.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    big = np.kron(small, np.ones((10, 10, 1), dtype=np.uint8))[:h, :w]
    return np.ascontiguousarray(big)


def _vit_teacher(refine: str | None) -> DenseClipTeacher:
    return DenseClipTeacher(
        clip_model="dc-test-vit", pretrained=None, class_names=["cat", "person, person in shirt"],
        templates="photo", head="naclip", refine=refine, background="sky, wall",
        background_threshold=0.3, logit_scale=40,
    )  # fmt: skip


def _three_ways(model, kind: str, tmp_path: Path, windowed: bool):
    """The image's (C, H, W) class scores from eval's module, predict and the page."""
    image = _image()
    windows = WINDOW if windowed else None
    # eval: the data module's normalised image, the module src.eval builds
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    module = EvaluationModule(model, num_classes=4, windows=windows)
    with torch.no_grad():
        evaluated = module.model_scores(model.normalize(x), image.shape[:2])[0]
    # predict: src.predict's function on the same image and settings
    settings = replace(SETTINGS, sliding_window=windowed)
    predictor = (
        predictor_from_teacher(model) if kind == "teacher" else predictor_from_student(model)
    )
    with torch.inference_mode():
        predicted = predict_image(predictor, image, settings, CPU)
    # the page: a request through the Segmenter, its logits file
    path = tmp_path / "scene.png"
    Image.fromarray(image).save(path)
    names = list(model.class_names if kind == "teacher" else model.teacher.class_names)
    loaded = LoadedModel(model, kind, {}, names)
    page = Segmenter(loader=lambda request, classes: loaded, settings=settings, device=CPU,
                     out_dir=tmp_path / "requests", cache=ModelCache(1))  # fmt: skip
    result = page.segment(path, ", ".join(names), ModelRequest("any"), sliding_window=windowed)
    paged = torch.from_numpy(np.load(result.folder / "scene_logits.npy"))
    return evaluated, predicted, paged


@pytest.mark.parametrize("windowed", [False, True], ids=["whole", "windows"])
@pytest.mark.parametrize("refine", [None, "pamr"], ids=["raw", "pamr"])
def test_eval_predict_and_the_page_give_the_teacher_the_same_scores(
    tmp_path: Path, refine: str | None, windowed: bool
) -> None:
    teacher = _vit_teacher(refine)
    evaluated, predicted, paged = _three_ways(teacher, "teacher", tmp_path, windowed)
    assert evaluated.shape == (3, 45, 62)  # background, cat, person
    torch.testing.assert_close(predicted.logits, evaluated, rtol=0, atol=1e-6)
    assert torch.equal(paged, predicted.logits)
    # the masks agree: eval's argmax (background channel 0 -> no class) is predict's mask
    labels = evaluated.argmax(0)
    expected = torch.where(labels == 0, 255, labels - 1).to(torch.uint8)
    assert torch.equal(predicted.mask, expected)
    # and every path is the composition slide -> resize -> PAMR -> classes, spelled out
    x = teacher.normalize(torch.from_numpy(_image()).permute(2, 0, 1)[None].float() / 255)
    with torch.no_grad():
        names = (
            sliding_window_logits(teacher.input_scores, x, window=32, stride=16)
            if windowed
            else teacher.name_logits(x, refine=False)
        )
        if refine:
            names = teacher.refine_logits(x, names)
        torch.testing.assert_close(teacher.classify(names)[0], evaluated, rtol=0, atol=1e-6)


@pytest.mark.parametrize("windowed", [False, True], ids=["whole", "windows"])
def test_eval_predict_and_the_page_give_the_student_the_same_scores(
    tmp_path: Path, windowed: bool
) -> None:
    torch.manual_seed(0)
    student = tiny_student(tiny_teacher(refine="pamr")).eval()
    evaluated, predicted, paged = _three_ways(student, "student", tmp_path, windowed)
    assert evaluated.shape == (4, 45, 62)  # background, circle, square, triangle
    torch.testing.assert_close(predicted.logits, evaluated, rtol=0, atol=1e-6)
    assert torch.equal(paged, predicted.logits)
    assert torch.equal(predicted.mask, evaluated.argmax(0).to(torch.uint8))


def test_refine_applies_to_windows_after_resizing_to_the_image() -> None:
    """The old windowed evaluation never refined: PAMR now changes windowed scores, and it
    runs at the output size (NACLIP's order: slide, resize to the image, then PAMR)."""
    images = torch.randn(2, 3, 48, 80)
    pamr = _vit_teacher("pamr")
    with torch.no_grad():
        raw = pamr.name_logits(images, (30, 50), windows=WINDOW, refine=False)
        refined = pamr.name_logits(images, (30, 50), windows=WINDOW)
        assert not torch.allclose(raw, refined)
        small = torch.nn.functional.interpolate(
            images, size=(30, 50), mode="bilinear", align_corners=False
        )
        torch.testing.assert_close(refined, pamr.refine_logits(small, raw))
        # a window covering the whole image is the plain forward pass
        whole = Windows(window=96, stride=96)
        torch.testing.assert_close(
            pamr.predict_logits(images, windows=whole), pamr.predict_logits(images)
        )


def test_the_issue_command_gives_pamr_its_own_miou(tmp_path: Path) -> None:
    """Issue 20's command (three validation scenes): PAMR moves val/miou under windows."""
    from src.eval import evaluate

    overrides = ["protocol=training_free", "data=shapes_bg", "teacher=tiny_shapes_vit_plain",
                 "teacher.head=naclip", "protocol.sliding_window=true", "protocol.window=64",
                 "protocol.stride=32", "data.dataset_options.val_length=3",
                 "report.figure=false"]  # fmt: skip
    pamr = evaluate(compose_eval(tmp_path, *overrides, "teacher.refine=pamr"))
    plain = evaluate(compose_eval(tmp_path, *overrides, "teacher.refine=null"))
    assert pamr["val/miou"] != pytest.approx(plain["val/miou"], abs=1e-6)
