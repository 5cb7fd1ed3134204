"""The robustness sweep on the shapes world (docs/ROBUSTNESS.md), reduced to 24 scenes:

``python -m src.eval -m data=shapes teacher=tiny_shapes corruption=... corruption.severity=1,5``
must give a lower mIoU at severity 5 than at severity 1 and on clean images, and
``scripts/collect_results.py`` must tabulate it.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENES = 24


def _collect_results():
    name = "collect_results_for_robustness"
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "collect_results.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_gaussian_noise_severity_5_scores_below_severity_1_and_clean(tmp_path: Path) -> None:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    args = [
        "-m",
        "data=shapes",
        "teacher=tiny_shapes",
        "corruption=none,gaussian_noise",
        "corruption.severity=1,5",
        f"data.dataset_options.val_length={SCENES}",
        "data.val_batch_size=24",
        "report.figure=false",
        "trainer.enable_progress_bar=false",
        f"paths.log_dir={tmp_path}/logs",
        f"paths.cache_dir={tmp_path}/cache",
    ]
    proc = subprocess.run([sys.executable, "-m", "src.eval", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = tmp_path / "logs" / "eval" / "multiruns"
    runs = sorted(sweep.glob("*/*/metrics.json"))
    assert len(runs) == 4  # none x {1, 5} (the same clean run twice), gaussian_noise x {1, 5}
    miou: dict[tuple[str, int], float] = {}
    for path in runs:
        metrics = json.loads(path.read_text())
        miou[(metrics["corruption/name"], metrics["corruption/severity"])] = metrics["val/miou"]
    assert set(miou) == {("none", 0), ("gaussian_noise", 1), ("gaussian_noise", 5)}
    clean, mild, strong = miou["none", 0], miou["gaussian_noise", 1], miou["gaussian_noise", 5]
    assert clean > 0.6  # the tiny CLIP does segment the clean scenes
    assert strong < mild < clean, miou

    markdown, written = _collect_results().collect([sweep], tmp_path / "tables")
    assert "mIoU under ImageNet-C corruptions" in markdown
    with open(tmp_path / "tables" / "table5_corruption.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][-2:] == ["level 1", "level 5"]
    table = {row[-3]: [float(v) for v in row[-2:]] for row in rows[1:]}
    assert table["None"] == [round(100 * clean, 2)] * 2
    assert table["Gaussian Noise"] == [round(100 * mild, 2), round(100 * strong, 2)]
