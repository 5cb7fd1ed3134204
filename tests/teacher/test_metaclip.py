"""``teacher=vit_b16_metaclip`` (issue 21): MetaCLIP's ViT-B/16 (fullcc 2.5B, QuickGELU), the
CLIP of CorrCLIP's headline runs, from open_clip's ``metaclip_fullcc`` tag or a local file;
any head runs on it (random weights here: the real ones are a download)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from open_clip.transformer import QuickGELU

from src.errors import UserError
from src.teacher.model import DenseClipTeacher
from tests.test_eval import compose_eval
from tests.test_readme import SHIPPED_TEACHERS


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
