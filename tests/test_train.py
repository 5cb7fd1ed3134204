"""The training entry point ``python -m src.train``: runs, switch, resume, sweeps, DDP."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from src.errors import UserError
from src.train import train
from tests.data.layouts import make_coco, make_context, make_voc

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
#: a tiny, fast, offline world: random-weight CLIP, ResNet-18 student, 32 px shapes scenes
TINY = [
    "data=shapes",
    "split=annotation_free",
    "teacher=tiny_rn_test",
    "student=deeplabv2_r18",
    "trainer=cpu",
    "logger=csv",
    "teacher.templates=photo",
    "data.crop_size=32",
    "data.scale=[32,32]",
    "data.batch_size=2",
    "data.val_batch_size=4",
    "data.num_workers=0",
    "data.dataset_options.image_size=32",
    "data.dataset_options.train_length=16",
    "data.dataset_options.val_length=4",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "callbacks.validation_images.num_images=1",
]


def compose_run(out: Path, *overrides: str):
    """The train config for a run writing into ``out`` (its text cache beside it)."""
    paths = [
        f"paths.root_dir={ROOT}",
        f"paths.output_dir={out}",
        f"paths.cache_dir={out.parent / 'cache'}",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="train"):
        return compose("train", overrides=[*paths, *overrides])


def compose_train(out: Path, *overrides: str):
    return compose_run(out, *TINY, *overrides)


def csv_column(run: Path, column: str) -> dict[int, float]:
    rows = list(csv.DictReader(open(run / "csv" / "metrics.csv")))
    return {int(r["step"]): float(r[column]) for r in rows if r.get(column)}


def test_fast_dev_run_returns_student_and_teacher_metrics(tmp_path) -> None:
    out = tmp_path / "run"
    metrics = train(compose_train(out, "debug=fdr"))
    assert {"val/miou", "val/pacc", "teacher/val/miou"} <= set(metrics)
    assert 0.0 <= metrics["val/miou"] <= 1.0 and metrics["train/global_step"] == 1
    assert not list(out.rglob("*.ckpt"))  # fast_dev_run writes no checkpoint
    for model in ("student", "teacher"):  # the confusion matrices behind the scores
        report = out / "report" / model
        assert {"per_class.md", "confusion_matrix.csv", "confusion_matrix.png"} <= {
            p.name for p in report.iterdir()
        }
        rows = list(csv.reader(open(report / "confusion_matrix.csv")))
        assert rows[0][1:] == ["circle", "square", "triangle"]
        cm = torch.tensor([[int(v) for v in row[1:]] for row in rows[1:]])
        pacc = metrics["val/pacc" if model == "student" else "teacher/val/pacc"]
        assert cm.sum() > 0 and float(cm.trace() / cm.sum()) == pytest.approx(pacc, abs=1e-6)


def test_switch_at_step_4_of_40_and_resumes_keep_the_phase(tmp_path) -> None:
    ckpt = [
        "callbacks.model_checkpoint.every_n_train_steps=3",
        "callbacks.model_checkpoint.monitor=step",  # keep the two earliest: steps 3 and 6
        "callbacks.model_checkpoint.mode=min",
        "callbacks.model_checkpoint.save_top_k=2",
        "trainer.val_check_interval=1000",
    ]
    first = tmp_path / "first"
    metrics = train(compose_train(first, "trainer.max_steps=40", *ckpt))
    phase = csv_column(first, "train/self_training")
    assert sorted(phase) == list(range(40))
    assert [s for s, v in phase.items() if v == 1.0] == list(range(4, 40))
    assert metrics["val/step"] == 40 and metrics["train/global_step"] == 40
    names = sorted(p.name for p in (first / "checkpoints").iterdir())
    assert names == ["last.ckpt", "step000003.ckpt", "step000006.ckpt"]
    last = torch.load(first / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 40
    assert not [k for k in last["state_dict"] if k.startswith("teacher.")]

    before = tmp_path / "before"  # resumed at step 3 (teacher labels): switches at step 4
    train(
        compose_train(
            before,
            "trainer.max_steps=6",
            "resume_allow=[trainer.max_steps]",  # a deliberate change (others are refused)
            f"ckpt_path={first}/checkpoints/step000003.ckpt",
        )
    )
    assert csv_column(before, "train/self_training") == {3: 0.0, 4: 1.0, 5: 1.0}

    after = tmp_path / "after"  # resumed at step 6 (self labels): stays self-training,
    train(  # even though a fresh run with this config would switch only at step 7
        compose_train(
            after,
            "trainer.max_steps=8",
            "callbacks.pseudo_label_switch.step=7",
            "resume_allow=[trainer.max_steps,callbacks.pseudo_label_switch.step]",
            f"ckpt_path={first}/checkpoints/step000006.ckpt",
        )
    )
    assert csv_column(after, "train/self_training") == {6: 1.0, 7: 1.0}


def test_missing_resume_checkpoint_is_a_user_error(tmp_path) -> None:
    with pytest.raises(UserError, match="ckpt_path"):
        train(compose_train(tmp_path / "run", f"ckpt_path={tmp_path}/nope.ckpt"))


def _run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "src.train", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _sweep_args(tmp_path: Path) -> list[str]:
    return [
        "-m",
        f"hydra.sweep.dir={tmp_path}/multirun",
        "hydra.sweep.subdir=${hydra.job.num}",
        f"paths.cache_dir={tmp_path}/cache",
    ]


def test_multirun_over_clip_variants_writes_one_run_each(tmp_path) -> None:
    _run_cli([*_sweep_args(tmp_path), *TINY, "teacher=tiny_rn_test,tiny_vit_test",
              "trainer.max_steps=2"], tmp_path)  # fmt: skip
    runs = sorted((tmp_path / "multirun").glob("*/metrics.json"))
    assert len(runs) == 2
    models = []
    for path in runs:
        metrics = json.loads(path.read_text())
        assert metrics["train/global_step"] == 2 and "teacher/val/miou" in metrics
        assert (path.parent / "checkpoints" / "last.ckpt").is_file()
        models.append((path.parent / ".hydra" / "config.yaml").read_text())
    assert "clip_model: dc-test-rn" in models[0] and "clip_model: dc-test-vit" in models[1]


EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
#: shrink any experiment to one tiny step (its data, split, head and schedule stay its own)
ONE_STEP = [
    "teacher=tiny_rn_test",
    "teacher.templates=photo",
    "student.backbone=18",
    "student.backbone_weights=none",
    "student.head_channels=16",
    "trainer=cpu",
    "trainer.max_steps=1",
    "trainer.val_check_interval=1",
    "trainer.limit_val_batches=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.enable_checkpointing=false",
    "callbacks.model_checkpoint=null",
    "callbacks.validation_images.num_images=1",
    "logger=csv",
    "data.crop_size=32",
    "data.scale=[64,32]",
    "data.eval_scale=[64,32]",
    "data.batch_size=2",
    "data.val_batch_size=1",
    "data.num_workers=0",
]


@pytest.fixture(scope="module")
def dataset_trees(tmp_path_factory) -> Path:
    """Tiny VOC, Context and COCO-Stuff trees in their real layouts."""
    data = tmp_path_factory.mktemp("data")
    make_voc(data), make_context(data), make_coco(data)
    (data / "images").mkdir()  # data=folder's default root (experiment=distill_folder)
    for i in range(3):
        Image.fromarray(np.full((40, 48, 3), 60 * i, np.uint8)).save(data / "images" / f"{i}.png")
    return data


def compose_experiment(out: Path, name: str, data: Path):
    words = ["data.class_names=[circle,square]"] if name == "distill_folder" else []  # yours
    return compose_run(out, f"experiment={name}", f"paths.data_dir={data}", *ONE_STEP, *words)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_config_runs_one_step(name: str, dataset_trees: Path, tmp_path) -> None:
    cfg = compose_experiment(tmp_path / "run", name, dataset_trees)
    # the paper drops self-training when annotation-free
    assert cfg.callbacks.pseudo_label_switch.enabled == (cfg.data.setting != "annotation_free")
    metrics = train(cfg)
    assert metrics["train/global_step"] == 1 and "val/miou" in metrics
    assert "teacher/val/miou" in metrics
    if "zero_shot" in name:
        assert {"val/miou_seen", "val/miou_unseen", "val/hiou"} <= set(metrics)


def test_paper_experiments_follow_the_paper() -> None:
    """REFERENCE section 5: students, learning rates, schedules and switch of the paper."""
    expected = {  # name: (data, head, lr, weight decay, max_steps, self-training)
        "voc_zero_shot": ("voc", "deeplabv2", 0.01, 5e-4, 20000, True),
        "context_zero_shot": ("context60", "deeplabv3plus", 0.004, 1e-4, 40000, True),
        "cocostuff_zero_shot": ("cocostuff171", "deeplabv2", 0.01, 5e-4, 80000, True),
        "voc_annotation_free": ("voc", "deeplabv2", 0.01, 5e-4, 2000, False),
        "context_annotation_free": ("context59", "deeplabv2", 0.004, 1e-4, 4000, False),
        "cocostuff_annotation_free": ("cocostuff171", "deeplabv2", 0.01, 5e-4, 8000, False),
    }
    for name, (data, head, lr, wd, steps, self_training) in expected.items():
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="train"):
            cfg = compose("train", overrides=[f"experiment={name}", f"paths.root_dir={ROOT}"])
        assert cfg.data.dataset == data and cfg.student.head == head, name
        assert (cfg.student.backbone, cfg.student.backbone_weights) == (101, "imagenet")
        assert (cfg.student.optimizer, cfg.student.lr, cfg.student.weight_decay) == ("sgd", lr, wd)
        assert (cfg.student.schedule, cfg.student.poly_power, cfg.student.min_lr) == (
            "poly", 0.9, 1e-4)  # fmt: skip
        assert cfg.trainer.max_steps == steps and cfg.data.batch_size == 16
        assert cfg.teacher.clip_model == "RN50" and cfg.teacher.templates == "imagenet85"
        assert cfg.callbacks.pseudo_label_switch.enabled == self_training
        assert cfg.callbacks.pseudo_label_switch.fraction == 0.1


def test_ddp_sim_two_processes_agree_with_one_process(tmp_path) -> None:
    """Same data per step: 4 scenes, one global batch of 4 (2 processes x 2 or 1 x 4), no
    random augmentation, no void pixel (so the per-process mean losses average to the global
    one), BatchNorm statistics fixed (torch's SyncBatchNorm needs GPUs): the trained weights
    and the metrics agree. With an EMA of the weights (the shapes experiments keep one; the
    spawned processes must pickle its averaging function), scored through the EMA."""
    same = [
        "split=supervised",
        "data.count_background=true",
        "data.dataset_options.train_length=4",
        "data.ratio_range=[1.0,1.0]",
        "data.flip_prob=0.0",
        "data.val_batch_size=2",
        "trainer.max_steps=3",
        "trainer.val_check_interval=1000",
        "callbacks.model_checkpoint.save_top_k=0",  # last.ckpt only
        "callbacks.validation_images.num_images=0",
        "student.freeze_bn=true",
        "student.lr=0.1",
        "student.ema_decay=0.5",
    ]
    single = train(compose_train(tmp_path / "single", *same, "data.batch_size=4"))
    ddp = train(compose_train(tmp_path / "ddp", *same, "trainer=ddp_sim", "data.batch_size=2"))
    assert ddp["train/global_step"] == single["train/global_step"] == 3
    assert ddp["teacher/val/miou"] == pytest.approx(single["teacher/val/miou"], abs=1e-6)
    for key in ("val/miou", "val/pacc", "val/macc"):
        assert ddp[key] == pytest.approx(single[key], abs=2e-3), key
    weights = [
        torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
        for run in ("single", "ddp")
    ]
    for key, value in weights[0].items():
        if key.startswith(("net.", "ema.module.")) and value.is_floating_point():
            torch.testing.assert_close(weights[1][key], value, rtol=1e-3, atol=1e-5)
    loss = csv_column(tmp_path / "single", "train/loss")  # the same 4 scenes at every step:
    assert loss[2] < loss[0] - 1e-3  # the loss fell, so the weights did move


def test_trainer_configs() -> None:
    expected = {  # name: (accelerator, devices, strategy, sync_batchnorm)
        "default": ("auto", 1, "auto", False),
        "cpu": ("cpu", 1, "auto", False),
        "gpu": ("gpu", 1, "auto", False),
        "ddp": ("gpu", 4, "ddp", True),
        "ddp_sim": ("cpu", 2, "ddp_spawn", False),
    }
    for name, want in expected.items():
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="train"):
            t = compose("train", overrides=[f"trainer={name}", f"paths.root_dir={ROOT}"]).trainer
        assert (t.accelerator, t.devices, t.strategy, t.sync_batchnorm) == want, name
        assert t._target_ == "pytorch_lightning.Trainer" and t.max_epochs == -1
