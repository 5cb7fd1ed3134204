"""A teacher with a background (threshold or words) in training: where its labels go."""

from __future__ import annotations

import torch

from src.batch import CANDIDATES, IGNORE_INDEX, IMAGE, TARGET, UNLABELLED
from src.student.targets import build_targets
from tests.student.fakes import tiny_student, tiny_teacher

U, V = UNLABELLED, IGNORE_INDEX


def test_pixels_without_a_finite_candidate_score_stay_void() -> None:
    target = torch.tensor([[[U, U, 1]]])
    scores = torch.tensor([[[[0.0, float("-inf"), 0.0]], [[1.0, float("-inf"), 0.0]]]])
    cand = torch.tensor([[True, True]])
    assert build_targets(target, cand, scores).tolist() == [[[1, V, 1]]]


def test_annotation_free_student_leaves_the_teachers_background_out_of_its_labels() -> None:
    teacher = tiny_teacher(clip_model="dc-test-vit", background_threshold=0.45, logit_scale=10)
    student = tiny_student(teacher, background=False, unseen_indices=[])
    assert student.class_names == ["circle", "square", "triangle"]
    images = torch.randn(2, 3, 40, 40)
    full = teacher.predict_logits(images)  # (2, 4, 40, 40): background first
    background = full.argmax(1) == 0
    assert 0 < int(background.sum()) < background.numel()  # some pixels below the threshold
    scores = student.teacher_logits(images)
    assert scores.shape == (2, 3, 40, 40)
    assert torch.isinf(scores[background.unsqueeze(1).expand_as(scores)]).all()
    torch.testing.assert_close(scores[:, :, ~background[0]][0], full[0, 1:, ~background[0]])
    batch = {
        IMAGE: images,
        TARGET: torch.full((2, 40, 40), U),
        CANDIDATES: torch.ones(2, 3, dtype=torch.bool),
    }
    labels = student.pseudo_targets(batch)
    assert torch.equal(labels == V, background)  # below the threshold: no training label
    assert torch.equal(labels[~background], full.argmax(1)[~background] - 1)


def test_student_counting_background_takes_the_teachers_background_channel() -> None:
    teacher = tiny_teacher(background="sky, wall", background_threshold=0.5)
    student = tiny_student(teacher, background=True, unseen_indices=[2])
    images = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(student.teacher_logits(images), teacher.predict_logits(images))
    assert student.net.classifier().shape[0] == 4  # learned background + 3 classes
