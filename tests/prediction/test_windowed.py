"""Evaluation over sliding windows: the one window implementation, names reduced last."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from src.evaluation.module import EvaluationModule
from src.scoring import Windows, sliding_window_logits
from src.teacher.model import DenseClipTeacher


def test_windowed_teacher_slides_on_names_resizes_then_reduces() -> None:
    teacher = DenseClipTeacher(
        clip_model="dc-test-vit",
        pretrained=None,
        class_names=["cat", "person, person in shirt"],
        templates="photo",
        background="sky, wall",
        background_threshold=0.45,
        logit_scale=40,
    )
    module = EvaluationModule(teacher, num_classes=3, windows=Windows(32, 16, batch=3))
    assert module.model is teacher
    images = torch.randn(2, 3, 48, 80)
    got = module.model_scores(images, (30, 50))
    assert got.shape == (2, 3, 30, 50)
    for i in range(2):
        names = sliding_window_logits(teacher.input_scores, images[i : i + 1], window=32, stride=16)
        names = F.interpolate(names, size=(30, 50), mode="bilinear", align_corners=False)
        torch.testing.assert_close(got[i : i + 1], teacher.classify(names))
    # a window covering the whole image is the plain forward pass
    whole = EvaluationModule(teacher, num_classes=3, windows=Windows(96, 96))
    torch.testing.assert_close(whole.model_scores(images, (48, 80)), teacher.predict_logits(images))
