"""The shipped shapes-world proxy ViT (``teacher.proxy=tiny_shapes_dino``): it loads offline
with no option, ProxyCLIP and CorrCLIP run with it through ``src.eval`` exactly as the teacher
scores, a missing file is one line, and its training script is reproducible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from src.data.shapes import make_config, render_scene
from src.errors import UserError
from src.evaluation.metrics import SegmentationMetrics
from src.teacher import proxy as proxy_module
from src.teacher.model import DenseClipTeacher
from src.teacher.proxy import load_proxy, resolve_proxy_weights
from tests.script_module import load_script
from tests.test_eval import compose_eval

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "src" / "teacher" / "weights" / "tiny_shapes_dino.pt"
SHAPES = ["data=shapes", "teacher=tiny_shapes_vit_plain", "data.eval_scale=null",
          "data.dataset_options.val_length=3", "report.figure=false",
          "teacher.proxy=tiny_shapes_dino"]  # fmt: skip


def _script():
    return load_script("train_tiny_proxy")


def test_the_shipped_proxy_loads_offline_with_no_option() -> None:
    assert resolve_proxy_weights("tiny_shapes_dino", None) == SHIPPED
    assert SHIPPED.stat().st_size < 4_000_000  # small: a few MB at most
    proxy = load_proxy("tiny_shapes_dino")
    state = torch.load(SHIPPED, map_location="cpu", weights_only=True)
    assert set(state) == set(proxy.model.state_dict())
    for key, value in proxy.model.state_dict().items():
        assert torch.equal(value, state[key].float()), key
    assert proxy.patch == 8 and proxy.grid0 == (12, 12)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (2, 3, 128, 128)).float() / 256
    feats = proxy(images)
    assert feats.shape == (2, 128, 16, 16)  # twice as fine as the tiny CLIP's 8 x 8 grid
    assert feats.shape == proxy.query_plus_key(images).shape


def _own_shape_share(proxy, scenes) -> float:
    """Mean share of ProxyCLIP's attention (authors' beta, gamma) on ``q + k`` features that a
    foreground patch gives its own shape (the shape under each 8-px patch's centre)."""
    from src.teacher.heads.proxyclip import proxy_attention

    x = torch.stack([torch.from_numpy(s.image).permute(2, 0, 1) for s in scenes]).float() / 255
    with torch.no_grad():
        attn = proxy_attention(proxy.query_plus_key(x), 1.2, 3.0).softmax(-1)
    centre = torch.arange(4, 128, 8)
    inst = torch.stack([torch.from_numpy(s.instances.astype(np.int64)) for s in scenes])
    inst = inst[:, centre][:, :, centre].flatten(1)  # (B, 256), -1 = background
    same = (inst[:, :, None] == inst[:, None, :]) & (inst[:, :, None] >= 0)
    share = (attn * same).sum(-1)  # (B, 256)
    return float(share[inst >= 0].mean())


def test_the_shipped_proxy_attends_within_shapes_better_than_a_random_one() -> None:
    """The training is what makes the attention (measured on 48 scenes: 0.89 against 0.74
    for the random initialisation, docs/TEACHERS.md); bars on 16 scenes."""
    scenes = [render_scene(make_config(), i, "val") for i in range(16)]
    torch.manual_seed(0)
    random = proxy_module.ProxyViT(proxy_module.PROXIES["tiny_shapes_dino"].create()).eval()
    trained, control = (
        _own_shape_share(load_proxy("tiny_shapes_dino"), scenes),
        _own_shape_share(random, scenes),
    )
    assert trained > 0.85 and trained > control + 0.1, (trained, control)


def _direct_scores(teacher: DenseClipTeacher, n: int) -> dict:
    """The teacher's own predictions on the first ``n`` validation scenes, scored."""
    scores = SegmentationMetrics(4, ignore_index=255)
    for index in range(n):
        scene = render_scene(make_config(), index, "val")
        x = torch.from_numpy(np.ascontiguousarray(scene.image)).permute(2, 0, 1)[None] / 255
        mask = torch.from_numpy(scene.mask.astype(np.int64))[None]
        mask[mask == 0] = 255  # background ignored, as data=shapes scores
        scores.update(teacher.predict(teacher.normalize(x.float())) + 1, mask)
    return scores.compute()


@pytest.mark.parametrize(
    ("head", "masks"),
    [("proxyclip", None), ("corrclip", "superpixels")],
)
def test_eval_runs_the_heads_with_the_shipped_proxy(tmp_path: Path, head, masks) -> None:
    """``python -m src.eval data=shapes teacher=tiny_shapes_vit_plain teacher.head=<head>
    teacher.proxy=tiny_shapes_dino`` on 3 scenes equals the teacher's own predictions."""
    from src.eval import evaluate

    extra = [f"teacher.head={head}"] + ([f"teacher.masks={masks}"] if masks else [])
    metrics = evaluate(compose_eval(tmp_path, *SHAPES, *extra))
    assert metrics["teacher_config"]["proxy"] == "tiny_shapes_dino"
    teacher = DenseClipTeacher(clip_model="tiny_shapes_vit_plain", pretrained="shapes",
                               class_names=["circle", "square", "triangle"], head=head,
                               proxy="tiny_shapes_dino", masks=masks)  # fmt: skip
    expected = _direct_scores(teacher, 3)
    assert metrics["val/miou"] == pytest.approx(float(expected["miou"]), abs=1e-12)
    assert 0.0 < metrics["val/miou"] < 1.0


def test_a_missing_shipped_proxy_file_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    from src.eval import evaluate
    from src.utils.task import run_task

    monkeypatch.setattr(proxy_module, "SHIPPED_DIR", tmp_path / "weights")
    with pytest.raises(UserError) as info:
        resolve_proxy_weights("tiny_shapes_dino", None)
    assert "tiny_shapes_dino.pt is not there" in info.value.problem
    assert "scripts/train_tiny_proxy.py" in info.value.fix
    cfg = compose_eval(tmp_path, *SHAPES, "teacher.head=proxyclip")
    with pytest.raises(SystemExit) as done:
        run_task(evaluate, cfg, output_dir=tmp_path / "out")
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 1, err[-2000:]
    assert "teacher.proxy=tiny_shapes_dino needs the shapes-world DINO ViT" in err
    assert "fix: restore" in err


def test_a_foreign_file_for_the_shipped_proxy_names_the_script(tmp_path: Path) -> None:
    bad = tmp_path / "vit_tiny.pth"
    torch.save({"pos_embed": torch.zeros(1, 197, 192)}, bad)
    with pytest.raises(UserError) as info:
        load_proxy("tiny_shapes_dino", bad)
    assert "cannot load" in info.value.problem and "vit_tiny.pth" in info.value.problem
    assert "written by scripts/train_tiny_proxy.py" in info.value.fix


def test_the_training_script_is_reproducible(tmp_path: Path) -> None:
    """Two 2-step runs give bit-identical weights, which load as the proxy; 0 steps is the
    random initialisation (the control of docs/TEACHERS.md), different from them."""
    script = _script()
    small = ["--steps", "2", "--batch-size", "2", "--local-crops", "1", "--eval-scenes", "0",
             "--out", str(tmp_path), "--log-dir", str(tmp_path / "logs")]  # fmt: skip
    first = script.main([*small, "--name", "a"])
    script.main([*small, "--name", "b"])
    script.main([*small, "--name", "r", "--steps", "0"])
    a, b, r = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in "abr")
    assert set(a) == set(b) == set(r)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], r[k]) for k in a)
    assert np.isfinite(first["final_loss"]) and first["steps"] == 2
    proxy = load_proxy("tiny_shapes_dino", tmp_path / "a.pt")
    assert torch.equal(proxy.model.pos_embed, a["pos_embed"].float())
