"""``protocol=training_free``: the README's one command on generated trees of the 8 benchmarks,
the results table beside the published numbers, the background threshold in evaluation."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from src.errors import UserError
from src.eval import protocol_settings, protocol_windows
from src.evaluation.benchmarks import TRAINING_FREE_BENCHMARKS
from src.teacher.heads import published_rows
from tests.data.layouts import (
    make_ade20k,
    make_cityscapes,
    make_coco,
    make_coco_object,
    make_context,
    make_voc,
)
from tests.test_eval import compose_eval

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = [name for name, _ in TRAINING_FREE_BENCHMARKS]
#: data -> (classes, short side, sliding window, background threshold, names file)
EXPECTED = {
    "voc21": (21, 336, False, 0.1, "voc21"),
    "context60": (60, 336, True, 0.1, "context60"),
    "coco_object": (81, 336, True, 0.1, "coco_object"),
    "voc20": (20, 336, False, None, "voc20"),
    "context59": (59, 336, True, None, "context59"),
    "cocostuff171": (171, 336, True, None, "cocostuff171"),
    "cityscapes": (19, 560, True, None, "cityscapes"),
    "ade20k": (150, 336, True, None, "ade20k"),
}


def compose_protocol(tmp_path: Path, *overrides: str):
    """The eval config composed in-process with the protocol's own sizes."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("eval", overrides=[f"paths.data_dir={tmp_path}", *overrides])


def make_benchmarks(base: Path) -> None:
    """Tiny trees of all 8 benchmarks, one validation image each, in their real layouts."""
    make_voc(base, n_val=1)
    make_context(base, n_val=1)
    make_coco(base, n_val=1)
    make_coco_object(base, n_val=1)
    make_cityscapes(base, n_val=1)
    make_ade20k(base, n_val=1)


def readme_command(start: str) -> list[str]:
    """The words of the README command that begins with ``start`` (its continuation lines
    joined), as a user types it."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "README.md").read_text())
    lines = [line for line in text.splitlines() if line.startswith(start)]
    assert len(lines) == 1, f"README.md should hold one command starting {start!r}"
    return shlex.split(lines[0])


def run_readme_command(
    start: str, root: Path, replace: dict[str, str], timeout: int = 900
) -> tuple[Path, str]:
    """Runs the README command that begins with ``start`` as written, but for the words in
    ``replace`` (each must be there: the real CLIP for a shipped tiny one, the user's files
    for the test's), in the repository with ``DENSECLIP_ROOT=root`` (the benchmarks under
    ``root/data``, as the default paths have them); then ``collect_results.py`` on its sweep.
    Returns the sweep folder and the printed table."""
    words = readme_command(start)
    missing = sorted(set(replace) - set(words))
    assert not missing, f"the README command no longer has {missing}"
    command = [sys.executable, *[replace.get(w, w) for w in words[1:]]]
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1",
           "DENSECLIP_ROOT": str(root), "DENSECLIP_CACHE_DIR": str(root / ".cache")}  # fmt: skip
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = next((root / "logs" / "eval" / "multiruns").iterdir())
    table = subprocess.run([sys.executable, "scripts/collect_results.py", str(sweep)], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert table.returncode == 0, table.stderr
    return sweep, table.stdout


def test_the_readme_command_evaluates_all_8_and_prints_the_table(tmp_path: Path) -> None:
    make_benchmarks(tmp_path)
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    # the README's command, with the tiny test CLIP (no head yet) and the generated trees
    command = [sys.executable, "-m", "src.eval", "-m", "protocol=training_free",
               f"data={','.join(BENCHMARKS)}", "teacher=tiny_vit_test",
               f"paths.data_dir={tmp_path}", f"paths.log_dir={tmp_path}/logs",
               f"paths.cache_dir={tmp_path}/cache", "data.num_workers=0"]  # fmt: skip
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = next((tmp_path / "logs" / "eval" / "multiruns").iterdir())
    runs = {}
    for path in sweep.glob("*/metrics.json"):
        config = yaml.safe_load((path.parent / ".hydra" / "config.yaml").read_text())
        runs[re.search(r"data=(\w+)", path.parent.name).group(1)] = (
            json.loads(path.read_text()),
            config,
        )
    assert sorted(runs) == sorted(BENCHMARKS)
    for data, (classes, short, sliding, threshold, names) in EXPECTED.items():
        metrics, config = runs[data]
        assert len([k for k in metrics if k.startswith("val/iou/")]) == classes, data
        assert (
            config["data"]["eval_scale"] == [2048, short] and config["data"]["names_file"] == names
        )
        assert (
            config["protocol"]["sliding_window"] is sliding and config["protocol"]["window"] == 224
        )
        assert config["teacher"]["background_threshold"] == threshold
        assert (
            config["teacher"]["logit_scale"] == 40
            and config["teacher"]["templates"] == "imagenet80"
        )
    assert runs["voc21"][0]["val/iou/background"] is not None  # scored: background words

    table = subprocess.run([sys.executable, "scripts/collect_results.py", str(sweep)], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert table.returncode == 0, table.stderr
    header = "| VOC21 | PC60 | Object | VOC20 | PC59 | Stuff | City | ADE | Mean |"
    assert header in table.stdout
    rows = [line for line in table.stdout.splitlines() if line.startswith("| measured")]
    assert len(rows) == 1 and "tiny_vit_test" in rows[0]
    cells = [c.strip() for c in rows[0].strip("|").split("|")][-9:]
    mious = [100 * runs[d][0]["val/miou"] for d in BENCHMARKS]
    assert cells == [f"{v:.1f}" for v in [*mious, sum(mious) / 8]]
    published = [line for line in table.stdout.splitlines() if line.startswith("| published")]
    assert len(published) == len(published_rows())
    naclip = next(line for line in published if "NACLIP with PAMR" in line)
    assert naclip.rstrip(" |").endswith("| 42.5")  # the NACLIP README's average, 42.46
    assert (sweep / "training_free.csv").is_file()


@pytest.mark.parametrize("data", BENCHMARKS)
def test_protocol_values_compose_for_every_benchmark(tmp_path: Path, data: str) -> None:
    classes, short, sliding, threshold, names = EXPECTED[data]
    cfg = compose_protocol(tmp_path, "protocol=training_free", f"data={data}", "teacher=vit_b16")
    assert cfg.protocol.dataset == data and cfg.data.setting == "supervised"
    assert list(cfg.data.eval_scale) == [2048, short] and cfg.data.names_file == names
    assert cfg.protocol.sliding_window is sliding and (
        cfg.protocol.window,
        cfg.protocol.stride,
    ) == (
        224,
        112,
    )
    assert cfg.teacher.background_threshold == threshold and cfg.teacher.logit_scale == 40
    assert cfg.data.count_background is (data in ("voc21", "context60", "coco_object"))


def test_protocol_rejects_other_data_and_a_threshold_without_background(tmp_path: Path) -> None:
    from src.eval import evaluate

    make_voc(tmp_path)
    with pytest.raises(UserError, match="protocol=training_free has no settings") as err:
        evaluate(compose_eval(tmp_path, "protocol=training_free", "data=voc"))
    assert "voc21,context60" in err.value.fix
    with pytest.raises(UserError, match="does not count background"):
        evaluate(compose_eval(tmp_path, "data=voc20", "teacher.background_threshold=0.5"))


def test_shapes_background_threshold_is_scored_as_the_teacher_decides(tmp_path: Path) -> None:
    """Evaluation under the protocol equals the teacher's own decisions, pixel for pixel."""
    from src.data.shapes import make_config, render_scene
    from src.eval import evaluate
    from src.evaluation.metrics import SegmentationMetrics
    from src.teacher.model import DenseClipTeacher

    overrides = ["protocol=training_free", "data=shapes_bg", "teacher=tiny_shapes",
                 "data.dataset_options.val_length=3", "data.eval_scale=null",
                 "teacher.logit_scale=3", "teacher.background_threshold=0.6",
                 "report.figure=false"]  # fmt: skip
    metrics = evaluate(compose_eval(tmp_path, *overrides))
    teacher = DenseClipTeacher(clip_model="tiny_shapes", pretrained="shapes",
                               class_names=["circle", "square", "triangle"], logit_scale=3,
                               background_threshold=0.6)  # fmt: skip
    expected = SegmentationMetrics(4)
    for index in range(3):
        scene = render_scene(make_config(), index, "val")
        x = torch.from_numpy(np.ascontiguousarray(scene.image)).permute(2, 0, 1)[None] / 255
        expected.update(
            teacher.predict(teacher.normalize(x.float())), torch.from_numpy(scene.mask)[None]
        )
    scores = expected.compute()
    assert metrics["val/miou"] == pytest.approx(float(scores["miou"]), abs=1e-12)
    assert metrics["val/iou/background"] == pytest.approx(float(scores["iou/0"]), abs=1e-12)
    assert metrics["val/iou/background"] > 0.5  # background is found
    plain = evaluate(compose_eval(tmp_path, *overrides[:-2], "teacher.background_threshold=null",
                                  "report.figure=false"))  # fmt: skip
    assert plain["val/iou/background"] == 0.0  # without a threshold it never is


@pytest.mark.parametrize("data", BENCHMARKS)
def test_pearl_preset_is_the_protocol_plus_pearls_settings(tmp_path: Path, data: str) -> None:
    """``protocol=pearl``: the protocol's values on every benchmark (PEARL's configs hold the
    same), PEARL's head and TLP, ``alpha_kk`` 0.3 on ADE20K / Cityscapes, TLP grid 224 on
    Cityscapes (PGSmall/PEARL @ c26062b configs)."""
    classes, short, sliding, threshold, names = EXPECTED[data]
    cfg = compose_protocol(tmp_path, "protocol=pearl", f"data={data}", "teacher=vit_b16")
    assert cfg.protocol.name == "training_free" and cfg.protocol.dataset == data
    assert list(cfg.data.eval_scale) == [2048, short] and cfg.data.names_file == names
    assert cfg.protocol.sliding_window is sliding and cfg.data.setting == "supervised"
    assert cfg.teacher.background_threshold == threshold and cfg.teacher.logit_scale == 40
    assert (cfg.teacher.head, cfg.teacher.refine) == ("pearl", "tlp")
    alpha = 0.3 if data in ("ade20k", "cityscapes") else 0.08
    assert cfg.teacher.head_options.alpha_kk == alpha
    assert cfg.teacher.refine_options.grid == (224 if data == "cityscapes" else 80)


@pytest.mark.slow
def test_the_pearl_command_evaluates_all_8_and_prints_pearls_row(tmp_path: Path) -> None:
    """README's ``protocol=pearl teacher.head=pearl`` command on the 8 generated trees (the
    tiny test CLIP for ViT-B/16): every benchmark scored with PEARL's settings, its row beside
    PEARL's published one."""
    make_benchmarks(tmp_path / "data")
    sweep, table = run_readme_command(
        "python -m src.eval -m protocol=pearl",
        tmp_path,
        {"teacher=vit_b16": "teacher=tiny_vit_test"},
    )
    configs = [yaml.safe_load((p.parent / ".hydra" / "config.yaml").read_text())
               for p in sweep.glob("*/metrics.json")]  # fmt: skip
    assert len(configs) == 8
    assert {c["protocol"]["dataset"] for c in configs} == set(BENCHMARKS)
    assert all((c["teacher"]["head"], c["teacher"]["refine"]) == ("pearl", "tlp") for c in configs)
    rows = [line for line in table.splitlines() if line.startswith("| measured")]
    assert len(rows) == 1 and "(pearl + tlp)" in rows[0] and "tiny_vit_test" in rows[0]
    assert rows[0].rstrip(" |").split("|")[-1].strip() != "-"  # all 8 there: a mean
    pearl = next(line for line in table.splitlines() if "PEARL with TLP" in line)
    assert pearl.rstrip(" |").endswith("| 43.2")


#: data -> CorrCLIP's (short side, window, background threshold), zdk258/CorrCLIP @ 103bc18
CORRCLIP = {
    "voc21": (336, 336, 0.2),
    "context60": (336, 336, 0.15),
    "coco_object": (336, 336, 0.25),
    "voc20": (336, 336, None),
    "context59": (336, 336, None),
    "cocostuff171": (336, 336, None),
    "cityscapes": (448, 224, None),
    "ade20k": (448, 336, None),
}


@pytest.mark.parametrize("data", BENCHMARKS)
def test_corrclip_preset_is_its_configs(tmp_path: Path, data: str) -> None:
    """``protocol=corrclip``: CorrCLIP's configs (CorrCLIPv1/configs/cfg_*.py and the
    segmentor's defaults): every benchmark in 336 windows every 112 px (Cityscapes 224), short
    side 336 (ADE20K, Cityscapes 448), its thresholds and its own class-name files."""
    short, window, threshold = CORRCLIP[data]
    cfg = compose_protocol(tmp_path, "protocol=corrclip", f"data={data}", "teacher=vit_b16")
    assert cfg.protocol.name == "training_free" and cfg.protocol.dataset == data
    assert cfg.protocol.preset == "corrclip" and cfg.protocol.sliding_window is True
    assert (cfg.protocol.window, cfg.protocol.stride) == (window, 112)
    assert list(cfg.data.eval_scale) == [2048, short]
    assert cfg.data.names_file == f"corrclip_{data}" and cfg.data.setting == "supervised"
    assert cfg.teacher.background_threshold == threshold and cfg.teacher.logit_scale == 40
    assert (cfg.teacher.head, cfg.teacher.proxy) == ("corrclip", "dino_vitb8")
    assert cfg.teacher.templates == "imagenet80"
    # each window padded in the middle to 56 (forward_slide), as the scoring path is asked to
    windows = protocol_windows(protocol_settings(cfg))
    assert (windows.window, windows.stride, windows.pad) == (window, 112, 56)


def test_only_corrclip_pads_its_windows(tmp_path: Path) -> None:
    """Every other protocol's windows go to the model as they are (``window_pad: null``);
    a bad padding is one line."""
    for protocol in ("training_free", "pearl"):
        cfg = compose_protocol(tmp_path, f"protocol={protocol}", "data=ade20k", "teacher=vit_b16")
        assert protocol_windows(protocol_settings(cfg)).pad == 0
    cfg = compose_protocol(tmp_path, "protocol=corrclip", "data=ade20k", "protocol.window_pad=-8")
    with pytest.raises(UserError, match="protocol.window_pad=-8"):
        protocol_settings(cfg)
