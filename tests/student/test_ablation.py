"""Table 2a's rows: seen-only training (``student.unlabelled=ignore``), teacher guidance, and
self-training, as the ``ablation`` config group composes them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from src.batch import CANDIDATES, IGNORE_INDEX, IMAGE, TARGET, UNLABELLED
from src.errors import UserError
from src.student.targets import ignore_unlabelled
from src.utils.task import CONF_DIR
from tests.student.fakes import ScenesData, quick_trainer, tiny_student, tiny_teacher

U, V = UNLABELLED, IGNORE_INDEX
ROOT = Path(__file__).resolve().parents[2]


def test_ignore_unlabelled_voids_only_the_unlabelled_pixels() -> None:
    target = torch.tensor([[[0, 1, U, 3], [U, V, 2, U]]])
    assert ignore_unlabelled(target).tolist() == [[[0, 1, V, 3], [V, V, 2, V]]]


def test_ignore_mode_never_runs_the_teacher_and_self_labels_after_the_switch(monkeypatch) -> None:
    student = tiny_student(tiny_teacher(), unlabelled="ignore")
    monkeypatch.setattr(
        student.teacher, "predict_logits", lambda *a, **k: pytest.fail("teacher was run")
    )
    target = torch.tensor([[[0, 1, U, U], [U, V, 1, U]]])
    batch = {IMAGE: torch.randn(1, 3, 2, 4), TARGET: target,
             CANDIDATES: torch.tensor([[False, False, True, True]])}  # fmt: skip
    logits = torch.zeros(1, 4, 2, 4)
    logits[:, 0] = 3.0  # background wins overall but is not a candidate
    logits[0, 2, 1] = 1.0  # square among the candidates in the second row
    logits[0, 3, 0] = 1.0  # triangle in the first
    assert student.pseudo_targets(batch, logits).tolist() == [[[0, 1, V, V], [V, V, 1, V]]]
    student.self_training = True  # after a switch both modes take the student's own labels
    assert student.pseudo_targets(batch, logits).tolist() == [[[0, 1, 3, 3], [2, V, 1, 2]]]


def test_ignore_mode_trains_on_seen_pixels_only(tmp_path) -> None:
    """With every pixel of the batch UNLABELLED or void the loss is exactly zero (nothing to
    learn); the same batches with teacher guidance give a positive loss."""
    losses: dict[str, list[float]] = {"ignore": [], "teacher": []}
    for mode in losses:
        torch.manual_seed(0)
        student = tiny_student(tiny_teacher(), unlabelled=mode, backbone_stages=2)
        original = student.training_step

        def spy(batch, batch_idx, original=original, mode=mode):
            seen = batch[TARGET] < U  # void every labelled pixel: only UNLABELLED ones left
            batch = {**batch, TARGET: batch[TARGET].masked_fill(seen, V)}
            loss = original(batch, batch_idx)
            losses[mode].append(float(loss.detach()))
            return loss

        student.training_step = spy
        quick_trainer(tmp_path / mode, max_steps=2).fit(student, datamodule=ScenesData())
    assert losses["ignore"] == [0.0, 0.0]
    assert all(v > 0 for v in losses["teacher"])


def test_unknown_mode_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"student.unlabelled must be one of .*'teachr'"):
        tiny_student(tiny_teacher(), unlabelled="teachr")


@pytest.mark.parametrize(
    ("ablation", "unlabelled", "switch"),
    [
        ("none", "teacher", True),
        ("text_classifier", "ignore", False),
        ("teacher_guidance", "teacher", False),
        ("self_training", "teacher", True),
    ],
)
def test_ablation_group_composes_over_every_zero_shot_experiment(ablation, unlabelled, switch):
    experiments = ["shapes_zero_shot", "voc_zero_shot", "context_zero_shot", "cocostuff_zero_shot"]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        for experiment in experiments:
            cfg = compose("train", [f"experiment={experiment}", f"ablation={ablation}"])
            assert cfg.student.unlabelled == unlabelled, experiment
            assert cfg.callbacks.pseudo_label_switch.enabled is switch, experiment
            assert cfg.callbacks.pseudo_label_switch.fraction == 0.1, experiment
            assert cfg.data.setting == "zero_shot"


def test_seen_only_training_on_an_annotation_free_run_is_one_clear_line(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "src.train", "experiment=shapes_demo", "ablation=text_classifier",
         f"paths.log_dir={tmp_path}"],
        capture_output=True, text=True, cwd=ROOT, env=os.environ | {"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-2].startswith("error: student.unlabelled=ignore (ablation=text_classifier)")
    assert lines[-1].strip().startswith("fix: use it with a zero-shot experiment")


@pytest.mark.parametrize(
    ("ablation", "teacher_steps", "phases"),
    [
        ("text_classifier", 0, [0.0] * 10),
        ("teacher_guidance", 10, [0.0] * 10),
        ("self_training", 1, [0.0] + [1.0] * 9),  # the switch at round(0.1 * 10) = 1
    ],
)
def test_the_voc_sweep_runs_each_row_on_a_generated_voc_tree(
    ablation, teacher_steps, phases, tmp_path, monkeypatch
) -> None:
    """``experiment=voc_zero_shot ablation=...`` on a VOC tree in its real layout, shrunk to 10
    tiny steps; the generated labels hold classes 1-8 on background, all made unseen here (every
    crop has unlabelled pixels). Counts the teacher's forwards while training and reads the logged phase."""
    from src.student.model import DenseClipPlus
    from src.train import train
    from tests.data.layouts import make_voc
    from tests.test_train import ONE_STEP, compose_run, csv_column

    data = tmp_path / "data"
    make_voc(data)
    calls: list[bool] = []
    original = DenseClipPlus.teacher_logits

    def counted(self, *args, **kwargs):
        calls.append(self.trainer.training)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DenseClipPlus, "teacher_logits", counted)
    out = tmp_path / "run"
    cfg = compose_run(
        out, "experiment=voc_zero_shot", f"ablation={ablation}", f"paths.data_dir={data}",
        *ONE_STEP, "trainer.max_steps=10", "trainer.val_check_interval=1000",
        "trainer.log_every_n_steps=1", "data.unseen_classes=[aeroplane,bicycle,bird,boat,bottle,bus,car,cat]",
    )  # fmt: skip
    metrics = train(cfg)
    assert metrics["train/global_step"] == 10
    assert {"val/miou_seen", "val/miou_unseen", "val/hiou"} <= set(metrics)
    assert sum(calls) == teacher_steps  # training-time teacher forwards
    logged = csv_column(out, "train/self_training")
    assert [logged[s] for s in sorted(logged)] == phases


@pytest.mark.parametrize(
    ("world", "options"),
    [
        ("default", {}),
        ("rotation45", {"rotation": 45.0}),
        ("texture", {"background": "texture"}),
        ("occlusion", {"overlap": True, "min_shapes": 2, "max_shapes": 6}),
        ("scale2x", {"image_size": 256}),
        ("new_kinds", {"shapes": ["circle", "square", "triangle", "star", "cross"]}),
    ],
)
def test_world_group_widens_the_shapes_experiments(world, options) -> None:
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        for experiment in ("shapes_zero_shot", "shapes_demo"):
            cfg = compose("train", [f"experiment={experiment}", f"world={world}"])
            got = cfg.data.dataset_options
            assert {k: got[k] for k in options} == options, (experiment, world)
            assert got.train_length == 20000  # the experiment's own options stay
            if world == "new_kinds":
                assert list(cfg.data.class_names) == options["shapes"]
