"""``teacher=vit_b16_metaclip`` (issue 21): MetaCLIP's ViT-B/16 (fullcc 2.5B, QuickGELU), the
CLIP of CorrCLIP's headline runs, from open_clip's ``metaclip_fullcc`` tag or a local file;
any head runs on it (random weights here: the real ones are a download)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from open_clip.transformer import QuickGELU

from src.errors import UserError
from src.teacher.model import DenseClipTeacher
from tests.test_eval import compose_eval
from tests.test_readme import SHIPPED_TEACHERS

ROOT = Path(__file__).resolve().parents[2]


def test_the_config_names_metaclip_and_needs_its_download(tmp_path: Path) -> None:
    cfg = compose_eval(tmp_path, "teacher=vit_b16_metaclip", "teacher.head=naclip")
    assert (cfg.teacher.clip_model, cfg.teacher.pretrained) == (
        "ViT-B-16-quickgelu",
        "metaclip_fullcc",
    )
    assert cfg.teacher.masks is None and cfg.teacher.head == "naclip"
    assert "vit_b16_metaclip" not in SHIPPED_TEACHERS  # the README treats it as a download


@pytest.mark.slow
def test_any_head_runs_on_its_tower() -> None:
    for head in ("naclip", "sclip"):
        teacher = DenseClipTeacher(clip_model="ViT-B-16-quickgelu", pretrained=None,
                                   class_names=["a", "b"], templates="photo", head=head)  # fmt: skip
        assert isinstance(teacher.clip.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)
        x = torch.randint(0, 8, (1, 3, 32, 48)).float() / 8
        assert teacher.predict_logits(x).shape == (1, 2, 32, 48)


@pytest.mark.slow
def test_offline_the_missing_weights_are_one_line() -> None:
    with pytest.raises(UserError) as err:
        DenseClipTeacher(clip_model="ViT-B-16-quickgelu", pretrained="metaclip_fullcc",
                         class_names=["a"])  # fmt: skip
    assert "'metaclip_fullcc' weights of ViT-B-16-quickgelu" in err.value.problem
    assert "teacher.pretrained=/path/to/" in err.value.fix and "\n" not in err.value.problem


@pytest.mark.slow
def test_a_local_metaclip_file_runs_in_train_eval_and_predict(tmp_path: Path) -> None:
    """``teacher=vit_b16_metaclip teacher.pretrained=<file>`` (MetaCLIP's ``b16_fullcc2.5b.pt``
    layout: a ``state_dict`` key) through training, eval and predict, with a 2025 head."""
    import open_clip

    from src.eval import evaluate
    from src.student.checkpoint import load_student
    from src.train import train
    from tests.test_eval import compose_eval
    from tests.test_heads_entry_points import scenes
    from tests.test_train import compose_train

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16-quickgelu", pretrained=None)
    weights = tmp_path / "b16_fullcc2.5b.pt"
    torch.save({"state_dict": model.state_dict()}, weights)
    metaclip = ["teacher=vit_b16_metaclip", f"teacher.pretrained={weights}", "teacher.head=pearl"]
    out = tmp_path / "run"
    metrics = train(compose_train(out, *metaclip, "trainer.max_steps=1",
                                  "trainer.val_check_interval=1",
                                  "data.dataset_options.val_length=2"))  # fmt: skip
    assert metrics["train/global_step"] == 1
    teacher = load_student(out / "checkpoints" / "last.ckpt").teacher
    assert (teacher.clip_model, teacher.head) == ("ViT-B-16-quickgelu", "pearl")
    # the checkpoint's teacher is rebuilt from the file (not a fresh random tower)
    assert torch.equal(teacher.clip.visual.conv1.weight, model.visual.conv1.weight)
    scores = evaluate(compose_eval(tmp_path / "eval", "data=shapes", *metaclip,
                                   "data.dataset_options.val_length=2"))  # fmt: skip
    assert 0.0 <= scores["val/miou"] <= 1.0
    scenes(tmp_path / "scenes")
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "src.predict", "input=scenes/",
                           "classes=[circle,square,triangle]", *metaclip], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (legend,) = (tmp_path / "logs" / "predict").rglob("legend.json")
    assert len(json.loads(legend.read_text())["images"]) == 2
