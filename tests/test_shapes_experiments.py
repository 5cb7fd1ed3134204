"""The embedded-world experiments end to end: the real tiny shapes CLIP teaches a student.

A reduced demo in the fast suite (a threshold far above chance, about 0.2, that a broken
teacher, student or target building would miss; the switch has its own tests in
tests/test_train.py); the full ``make demo`` bar over three seeds and the zero-shot bars (teacher
guidance, and self-training under the drift guard) are
``slow`` (``make test-full``, about 8 minutes each). Numbers: docs/STUDENT.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from src.train import train

ROOT = Path(__file__).resolve().parents[1]
QUIET = [
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks.validation_images.num_images=2",
]


def run(out: Path, experiment: str, *overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3", job_name="t"):
        cfg = compose(
            "train",
            overrides=[
                f"experiment={experiment}",
                f"paths.root_dir={ROOT}",
                f"paths.output_dir={out}",
                f"paths.cache_dir={out.parent / 'cache'}",
                *QUIET,
                *overrides,
            ],
        )
    return train(cfg)


#: a short run: 250 steps without the EMA (it lags early on), 48 validation scenes
REDUCED = ["trainer.max_steps=250", "student.ema_decay=null", "data.dataset_options.val_length=48"]


def test_demo_student_learns_the_shapes_from_the_teacher_alone(tmp_path: Path) -> None:
    metrics = run(tmp_path / "run", "shapes_demo", *REDUCED)
    assert metrics["teacher/val/miou"] >= 0.8  # the shipped tiny CLIP, 48 scenes
    # measured: teacher 0.843, student 0.921 on these 48 scenes (chance: about 0.2)
    assert metrics["val/miou"] >= max(0.8, metrics["teacher/val/miou"]), metrics
    assert sorted(p.name for p in (tmp_path / "run" / "val_images").iterdir())[0].endswith(".png")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_make_demo_student_beats_its_teacher_by_5_points(tmp_path: Path, seed: int) -> None:
    """5 points on the mean of the seeds (measured 2026-12-07: +6.1 / +4.9 / +5.7, mean +5.5;
    docs/STUDENT.md); one seed is held to 4.5, inside the seeds' spread of about 0.6."""
    metrics = run(tmp_path / "run", "shapes_demo", f"seed={seed}")
    assert metrics["val/miou"] >= metrics["teacher/val/miou"] + 0.045, metrics


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        ["ablation=teacher_guidance"],
        ["ablation=self_training", "callbacks.drift_guard.enabled=true"],
    ],
    ids=["teacher_guidance", "guarded_self_training"],
)
def test_zero_shot_student_reaches_the_teacher_on_unseen(tmp_path: Path, overrides) -> None:
    """Measured (docs/ABLATIONS.md, seeds 0-2): 0.999-1.000 unseen for both (the guard held the switch
    until step 100-140), teacher 0.881; the unguarded switch at 10% collapses triangles into
    squares here (0.335)."""
    metrics = run(tmp_path / "run", "shapes_zero_shot", *overrides)
    assert metrics["val/miou_unseen"] >= metrics["teacher/val/miou_unseen"], metrics
