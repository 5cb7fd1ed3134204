"""scripts/collect_results.py rebuilds the paper-shaped tables from run folders."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from src.teacher.heads import published_rows

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "collect_results.py"
_spec = importlib.util.spec_from_file_location("collect_results", SCRIPT)
cr = importlib.util.module_from_spec(_spec)
sys.modules["collect_results"] = cr
_spec.loader.exec_module(cr)


def make_run(
    folder: Path,
    metrics: dict[str, Any],
    *,
    task: str = "eval",
    data: str = "voc",
    setting: str = "annotation_free",
    teacher: str = "rn50",
    student: str | None = None,
    corruption: tuple[str, int] = ("none", 0),
    ckpt_path: str | None = None,
) -> Path:
    """A run folder as Hydra and the entry points leave it."""
    hydra_dir = folder / ".hydra"
    hydra_dir.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    choices = {"data": data, "split": setting, "teacher": teacher, "hydra": "default"}
    config: dict[str, Any] = {
        "task_name": task,
        "ckpt_path": ckpt_path,
        "paths": {"output_dir": "${hydra:runtime.output_dir}"},
        "data": {"dataset": data, "setting": setting, "root": "${paths.data_dir}/x"},
        "teacher": {"clip_model": teacher.upper()},
    }
    overrides = [f"data={data}", f"teacher={teacher}"]
    if student is not None:
        choices["student"] = student
    if task == "eval":
        choices["corruption"] = corruption[0]
        config["corruption"] = {"name": corruption[0], "severity": corruption[1], "seed": 0}
        overrides += [f"corruption={corruption[0]}", f"corruption.severity={corruption[1]}"]
    hydra = {"hydra": {"runtime": {"choices": choices}, "job": {"name": task}}}
    (hydra_dir / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    (hydra_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    return folder


def corrupted(name: str, severity: int, miou: float) -> dict[str, Any]:
    return {"val/miou": miou, "corruption/name": name, "corruption/severity": severity}


@pytest.fixture()
def sweeps(tmp_path: Path) -> Path:
    ev, tr = (
        tmp_path / "logs" / "eval" / "multiruns" / "d1",
        tmp_path / "logs" / "train" / "multiruns" / "d2",
    )
    make_run(ev / "0", {"val/miou": 0.415, "val/pacc": 0.7, "val/iou/cat": 0.5})
    make_run(ev / "1", {"val/miou": 0.509}, teacher="rn50x16")
    make_run(ev / "2", {"val/miou": 0.511}, teacher="rn50x16")  # a second seed
    make_run(ev / "3", {"val/miou": 0.185}, data="context59")
    af = make_run(
        tr / "0",
        {"val/miou": 0.584, "teacher/val/miou": 0.415},
        task="train",
        student="deeplabv2_r101",
    )
    zs = {"val/miou_seen": 0.888, "val/miou_unseen": 0.861, "val/miou": 0.881, "val/hiou": 0.874}
    zs |= {"teacher/val/miou": 0.63, "teacher/val/miou_unseen": float("nan")}
    make_run(tr / "1", zs, task="train", setting="zero_shot", student="deeplabv2_r101")
    for i, (name, sev, clip, miou) in enumerate(
        [
            ("gaussian_noise", 1, "rn50", 0.265),
            ("gaussian_noise", 5, "rn50", 0.040),
            ("gaussian_noise", 1, "rn50x16", 0.481),
            ("gaussian_noise", 5, "rn50x16", 0.235),
            ("jpeg_compression", 1, "rn50", 0.307),
        ]
    ):
        make_run(ev / f"c{i}", corrupted(name, sev, miou), teacher=clip, corruption=(name, sev))
    # the student of tr/0 evaluated under noise: CLIP and student come from its run folder
    ckpt = str(af / "checkpoints" / "last.ckpt")
    make_run(
        ev / "s5",
        corrupted("gaussian_noise", 5, 0.30),
        teacher="rn50x16",
        corruption=("gaussian_noise", 5),
        ckpt_path=ckpt,
    )
    return tmp_path


TABLE1 = """\
### mIoU(S), mIoU(U), mIoU, hIoU by dataset and method (Table 1)

| Setting | Method | CLIP | Student | context59 mIoU(S) | context59 mIoU(U) | context59 mIoU | context59 hIoU | voc mIoU(S) | voc mIoU(U) | voc mIoU | voc hIoU |
|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|
| zero_shot | DenseCLIP | rn50 | - | - | - | - | - | - | - | 63.0 | - |
| zero_shot | DenseCLIP+ | rn50 | deeplabv2_r101 | - | - | - | - | 88.8 | 86.1 | 88.1 | 87.4 |
| annotation_free | DenseCLIP | rn50 | - | - | - | 18.5 | - | - | - | 41.5* | - |
| annotation_free | DenseCLIP | rn50x16 | - | - | - | - | - | - | - | 51.0* | - |
| annotation_free | DenseCLIP+ | rn50 | deeplabv2_r101 | - | - | - | - | - | - | 58.4 | - |

\\* mean of several runs (see runs.csv).
"""

TABLE3_CSV = """\
Setting,Method,CLIP,Student,context59,voc
zero_shot,DenseCLIP,rn50,-,,63.00
zero_shot,DenseCLIP+,rn50,deeplabv2_r101,,88.10
annotation_free,DenseCLIP,rn50,-,18.50,41.50
annotation_free,DenseCLIP,rn50x16,-,,51.00
annotation_free,DenseCLIP+,rn50,deeplabv2_r101,,58.40
"""

TABLE5 = """\
### mIoU under ImageNet-C corruptions by severity (Tables 4-5)

| Dataset | Setting | Method | Student | Corruption | level 1 rn50 | level 1 rn50x16 | level 5 rn50 | level 5 rn50x16 |
|---|---|---|---|---|---:|---:|---:|---:|
| voc | annotation_free | DenseCLIP | - | None | 41.5* | 51.0* | 41.5* | 51.0* |
| voc | annotation_free | DenseCLIP | - | Gaussian Noise | 26.5 | 48.1 | 4.0 | 23.5 |
| voc | annotation_free | DenseCLIP | - | JPEG | 30.7 | - | - | - |
| voc | annotation_free | DenseCLIP+ | deeplabv2_r101 | None | 58.4 | - | 58.4 | - |
| voc | annotation_free | DenseCLIP+ | deeplabv2_r101 | Gaussian Noise | - | - | 30.0 | - |

\\* mean of several runs (see runs.csv).
"""


def test_rebuilds_the_known_tables_exactly(sweeps: Path, capsys: pytest.CaptureFixture) -> None:
    out = sweeps / "tables"
    assert (
        cr.main([str(sweeps / "logs" / "eval"), str(sweeps / "logs" / "train"), "--out", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert TABLE1 in printed and TABLE5 in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "results.md",
        "runs.csv",
        "table1_by_dataset.csv",
        "table3_by_clip.csv",
        "table5_corruption.csv",
    ]
    results = (out / "results.md").read_text()
    assert results.startswith("# Results (14 rows)") and TABLE1 in results and TABLE5 in results
    assert (out / "table3_by_clip.csv").read_text() == TABLE3_CSV
    table5 = (out / "table5_corruption.csv").read_text().splitlines()
    assert (
        table5[0]
        == "Dataset,Setting,Method,Student,Corruption,level 1 rn50,level 1 rn50x16,level 5 rn50,level 5 rn50x16"
    )
    assert table5[2] == "voc,annotation_free,DenseCLIP,-,Gaussian Noise,26.50,48.10,4.00,23.50"
    runs = (out / "runs.csv").read_text().splitlines()
    assert (
        runs[0]
        == "source,method,dataset,clip,student,setting,corruption,severity,mIoU(S),mIoU(U),mIoU,hIoU"
    )
    assert (
        "../logs/train/multiruns/d2/1,DenseCLIP+,voc,rn50,deeplabv2_r101,zero_shot,none,0,88.80,86.10,88.10,87.40"
        in runs
    )
    assert not list(out.glob(".*tmp"))  # atomic writes leave no temporary files


def test_default_output_is_the_inputs_common_folder(
    sweeps: Path, capsys: pytest.CaptureFixture
) -> None:
    sweep = sweeps / "logs" / "eval" / "multiruns" / "d1"
    assert cr.main([str(sweep)]) == 0
    assert (sweep / "table5_corruption.csv").is_file() and (sweep / "results.md").is_file()
    assert not (sweep / "table1_by_dataset.csv").read_text().count("DenseCLIP+")  # clean evals only
    capsys.readouterr()


def test_tolerates_missing_hydra_files_and_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "metrics.json").write_text(json.dumps({"val/miou": 0.5, "val/hiou": None}))
    (tmp_path / "predict").mkdir()
    (tmp_path / "predict" / "metrics.json").write_text(json.dumps({"images": 3}))
    assert cr.main([str(tmp_path), "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "| DenseCLIP | - | - | 50.0 | - |" in captured.out  # unknown labels left out
    assert "no mIoU in" in captured.err and "predict" in captured.err
    table1 = (tmp_path / "table1_by_dataset.csv").read_text()
    assert table1 == "Method,- mIoU(S),- mIoU(U),- mIoU,- hIoU\nDenseCLIP,,,50.00,\n"


def test_a_folder_without_metrics_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "empty", tmp_path / "missing"):
        done = subprocess.run(
            [sys.executable, str(SCRIPT), str(target)], capture_output=True, text=True, cwd=ROOT
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and str(target) in done.stderr
        assert done.stderr.startswith("error: ")


def _protocol_run(folder: Path, data: str, miou: float, head: str | None = None) -> None:
    make_run(folder, {"val/miou": miou}, data=data, setting="supervised", teacher="vit_b16")
    hydra = yaml.safe_load((folder / ".hydra" / "hydra.yaml").read_text())
    hydra["hydra"]["runtime"]["choices"]["protocol"] = "training_free"
    (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    if head is not None:
        config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
        config["teacher"]["head"] = head
        (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))


def test_training_free_table_has_8_columns_the_mean_and_the_published_rows(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    values = [0.40, 0.20, 0.18, 0.70, 0.25, 0.15, 0.10, 0.08]
    names = ["voc21", "context60", "coco_object", "voc20", "context59", "cocostuff171",
             "cityscapes", "ade20k"]  # fmt: skip
    for i, (data, miou) in enumerate(zip(names, values, strict=True)):
        _protocol_run(sweep / f"m{i}", data, miou)
        if i < 7:  # another head, missing ADE: no mean
            _protocol_run(sweep / f"n{i}", data, miou + 0.1, head="naclip")
    make_run(sweep / "plain", {"val/miou": 0.33}, data="voc")  # no protocol: the other tables
    markdown, written = cr.collect([sweep])
    table = markdown.split("### Training-free benchmark")[1]
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert lines[0] == (
        "| Source | Method | CLIP | Reference | VOC21 | PC60 | Object | VOC20 | PC59 | Stuff "
        "| City | ADE | Mean |"
    )
    assert lines[1] == (
        "| measured | DenseCLIP (maskclip) | vit_b16 | this run | 40.0 | 20.0 | 18.0 | 70.0 "
        "| 25.0 | 15.0 | 10.0 | 8.0 | 25.8 |"
    )
    assert lines[2].startswith("| measured | DenseCLIP (naclip) | vit_b16 | this run | 50.0 |")
    assert lines[2].endswith("| 20.0 | - | - |")
    naclip = next(line for line in lines if "NACLIP with PAMR" in line)
    assert naclip.endswith("| 64.1 | 35.0 | 36.2 | 83.0 | 38.4 | 25.7 | 38.3 | 19.1 | 42.5 |")
    corrclip = next(line for line in lines if "CorrCLIP, SAM2 (32 points)" in line)
    assert "| MetaCLIP ViT-B/16 | zdk258/CorrCLIP @ 103bc18" in corrclip
    assert corrclip.endswith("| 74.8 | 44.2 | 43.7 | 88.8 | 48.8 | 31.6 | 49.4 | 26.9 | 51.0 |")
    assert len(lines) == 3 + len(published_rows())
    assert "| voc mIoU |" in markdown.split("### Training-free")[0]  # the plain run, elsewhere
    assert "voc21" not in markdown.split("### Training-free")[0]
    assert sweep / "training_free.csv" in written


def _set_config(run: Path, **values: Any) -> None:
    """Set dotted keys of a run folder's ``.hydra/config.yaml``."""
    path = run / ".hydra" / "config.yaml"
    config = yaml.safe_load(path.read_text())
    for dotted, value in values.items():
        node = config
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    path.write_text(yaml.safe_dump(config))


def test_runs_whose_configs_differ_beyond_the_seed_are_rows_of_their_own(tmp_path) -> None:
    """The README's head sweep (``teacher.head=maskclip,naclip``) printed one row, "42.2*
    mean of several runs", from 33.94 and 50.54; two seeds of one config are still averaged."""
    sweep = tmp_path / "logs" / "train" / "multiruns" / "d"
    for i, (head, seed, miou, teacher) in enumerate(
        [("maskclip", 0, 0.3394, 0.30), ("naclip", 0, 0.5054, 0.45), ("naclip", 1, 0.5154, 0.45)]
    ):
        run = make_run(sweep / str(i), {"val/miou": miou, "teacher/val/miou": teacher},
                       task="train", data="shapes", teacher="tiny_shapes_vit_plain",
                       student="deeplabv2_r18_shallow")  # fmt: skip
        _set_config(run, **{"teacher.head": head, "seed": seed, "student.lr": 0.001,
                            "paths.output_dir": str(run), "data.num_workers": i})  # fmt: skip
    markdown, _ = cr.collect([str(sweep)], tmp_path / "out")
    rows = [line for line in markdown.splitlines() if "tiny_shapes_vit_plain" in line]
    table1 = [line for line in rows if line.count("|") > 8][:4]
    assert table1 == [
        "| annotation_free | DenseCLIP [teacher.head=maskclip] | tiny_shapes_vit_plain | - | - | - | 30.0 | - |",
        "| annotation_free | DenseCLIP [teacher.head=naclip] | tiny_shapes_vit_plain | - | - | - | 45.0* | - |",
        "| annotation_free | DenseCLIP+ [teacher.head=maskclip] | tiny_shapes_vit_plain | "
        "deeplabv2_r18_shallow | - | - | 33.9 | - |",
        "| annotation_free | DenseCLIP+ [teacher.head=naclip] | tiny_shapes_vit_plain | "
        "deeplabv2_r18_shallow | - | - | 51.0* | - |",
    ]
    assert "42.2" not in markdown
    runs = (tmp_path / "out" / "runs.csv").read_text()
    assert "DenseCLIP+ [teacher.head=naclip],shapes" in runs


def test_a_protocol_preset_counts_as_its_protocol_and_names_the_refinement(tmp_path) -> None:
    """``protocol=pearl`` runs (``protocol.name: training_free``) land in the training-free
    table as ``pearl + tlp``, beside PEARL's published row (mean 43.2)."""
    sweep = tmp_path / "sweep"
    names = [d for d, _ in cr.TRAINING_FREE_BENCHMARKS]
    for i, data in enumerate(names):
        folder = sweep / f"p{i}"
        _protocol_run(folder, data, 0.30, head="pearl")
        hydra = yaml.safe_load((folder / ".hydra" / "hydra.yaml").read_text())
        hydra["hydra"]["runtime"]["choices"]["protocol"] = "pearl"
        (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
        config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
        config["protocol"] = {"name": "training_free", "preset": "pearl", "dataset": data}
        config["teacher"]["refine"] = "tlp"
        (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    markdown, _ = cr.collect([sweep])
    table = markdown.split("### Training-free benchmark")[1]
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert lines[1].startswith("| measured | DenseCLIP (pearl + tlp) | vit_b16 | this run | 30.0 |")
    assert lines[1].endswith("| 30.0 | 30.0 |")
    pearl = next(line for line in lines if "PEARL with TLP" in line)
    assert "PEARL README @ c26062b" in pearl
    assert pearl.endswith("| 64.1 | 35.1 | 37.3 | 86.9 | 38.6 | 26.3 | 37.6 | 19.4 | 43.2 |")
