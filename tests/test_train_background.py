"""Training with classes of several names and a teacher background threshold (one step)."""

from __future__ import annotations

from src.train import train
from tests.test_train import compose_train


def test_training_takes_multi_name_classes_and_a_threshold(tmp_path) -> None:
    out = tmp_path / "run"
    cfg = compose_train(
        out,
        "debug=fdr",
        'data.class_names=["circle, round shape",square,"triangle, three corners"]',
        "teacher.background_threshold=0.5",
        "teacher.logit_scale=10",
    )
    metrics = train(cfg)
    assert {"val/miou", "teacher/val/miou"} <= set(metrics)
    report = (out / "report" / "teacher" / "confusion_matrix.csv").read_text().splitlines()
    assert report[0].split(",")[1:] == ["circle", "square", "triangle"]  # the first names
