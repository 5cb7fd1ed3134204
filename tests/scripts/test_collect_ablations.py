"""scripts/collect_results.py prints Table 2a (rows = ablation, mean ± std over seeds) from
training runs that carry an ``ablation=`` choice, and keeps them out of the other tables."""

from __future__ import annotations

import csv
from pathlib import Path

import yaml

from tests.scripts.test_collect_results import cr, make_run


def _ablation_run(folder: Path, ablation: str, seen: float, unseen: float, hiou: float) -> None:
    metrics = {"val/miou_seen": seen, "val/miou_unseen": unseen, "val/hiou": hiou,
               "val/miou": (seen + 2 * unseen) / 3, "teacher/val/miou_seen": 0.847,
               "teacher/val/miou_unseen": 0.881, "teacher/val/hiou": 0.864,
               "teacher/val/miou": 0.870}  # fmt: skip
    make_run(folder, metrics, task="train", data="shapes", setting="zero_shot",
             teacher="tiny_shapes", student="deeplabv2_r18_shallow")  # fmt: skip
    hydra = yaml.safe_load((folder / ".hydra" / "hydra.yaml").read_text())
    hydra["hydra"]["runtime"]["choices"]["ablation"] = ablation
    (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))


TABLE2A = """\
### Ablations (Table 2a): mIoU(S), mIoU(U), hIoU and mIoU, mean ± std over runs

| Dataset | CLIP | Student | Ablation | Paper row | Runs | mIoU(S) | mIoU(U) | hIoU | mIoU |
|---|---|---|---|---|---|---:|---:|---:|---:|
| shapes | tiny_shapes | - | - | DenseCLIP (teacher) | 5 | 84.7 ± 0.0 | 88.1 ± 0.0 | 86.4 ± 0.0 | 87.0 ± 0.0 |
| shapes | tiny_shapes | deeplabv2_r18_shallow | text_classifier | Adapted DeepLabv2 (seen only) | 3 | 99.0 ± 1.0 | 20.0 ± 10.0 | 33.0 ± 3.0 | 46.3 ± 7.0 |
| shapes | tiny_shapes | deeplabv2_r18_shallow | teacher_guidance | + DenseCLIP-Guided | 1 | 98.0 | 90.0 | 93.8 | 92.7 |
| shapes | tiny_shapes | deeplabv2_r18_shallow | self_training | + Self-Training | 1 | 97.0 | 95.0 | 96.0 | 95.7 |
"""


def test_table_2a_rows_are_ablations_with_mean_and_std_over_seeds(tmp_path: Path) -> None:
    sweep = tmp_path / "multiruns" / "d"
    for i, (seen, unseen, hiou) in enumerate([(0.99, 0.20, 0.33), (1.00, 0.30, 0.36),
                                               (0.98, 0.10, 0.30)]):  # fmt: skip
        _ablation_run(sweep / f"tc{i}", "text_classifier", seen, unseen, hiou)
    _ablation_run(sweep / "tg0", "teacher_guidance", 0.98, 0.90, 0.938)
    _ablation_run(sweep / "st0", "self_training", 0.97, 0.95, 0.96)
    zs = {"val/miou_seen": 0.5, "val/miou_unseen": 0.5, "val/miou": 0.5, "val/hiou": 0.5}
    make_run(sweep / "plain", zs, task="train", data="shapes", setting="zero_shot",
             teacher="tiny_shapes", student="deeplabv2_r18_shallow")  # fmt: skip
    out = tmp_path / "tables"
    markdown, written = cr.collect([sweep], out)
    assert TABLE2A in markdown
    # the ablation runs stay out of Table 1: its DenseCLIP+ row is the plain run alone
    table1 = (out / "table1_by_dataset.csv").read_text().splitlines()
    assert table1[1:] == [
        "zero_shot,DenseCLIP+,tiny_shapes,deeplabv2_r18_shallow,50.00,50.00,50.00,50.00"
    ]
    csv_lines = (out / "table2a_ablation.csv").read_text().splitlines()
    assert csv_lines[0] == (
        "Dataset,CLIP,Student,Ablation,Paper row,Runs,mIoU(S),mIoU(U),hIoU,mIoU,"
        "mIoU(S) std,mIoU(U) std,hIoU std,mIoU std"
    )
    assert csv_lines[2] == (
        "shapes,tiny_shapes,deeplabv2_r18_shallow,text_classifier,Adapted DeepLabv2 (seen only),"
        "3,99.00,20.00,33.00,46.33,1.00,10.00,3.00,7.00"
    )
    assert csv_lines[3].endswith(",1,98.00,90.00,93.80,92.67,,,,")  # one run: no spread
    assert out / "table2a_ablation.csv" in written


def test_no_ablation_runs_no_table_2a(tmp_path: Path) -> None:
    make_run(tmp_path / "r", {"val/miou": 0.4})
    markdown, _ = cr.collect([tmp_path / "r"], tmp_path / "out")
    assert "Table 2a" not in markdown and not (tmp_path / "out" / "table2a_ablation.csv").exists()


def test_guarded_runs_and_widened_worlds_are_rows_and_blocks_of_their_own(tmp_path: Path) -> None:
    af = {"val/miou": 0.40, "teacher/val/miou": 0.31}
    for name, ablation, guard, world, miou in [
        ("a", "self_training", False, "rotation45", 0.20),
        ("b", "self_training", True, "rotation45", 0.45),
        (
            "e",
            "self_training",
            {"enabled": True, "hold_switch": False, "every_n_steps": 10, "release_checks": 1},
            "rotation45",
            0.15,
        ),  # fmt: skip
        ("c", "teacher_guidance", False, "rotation45", 0.50),
        ("d", "teacher_guidance", False, "default", 0.90),
    ]:
        folder = tmp_path / name
        make_run(folder, af | {"val/miou": miou}, task="train", data="shapes",
                 teacher="tiny_shapes", student="deeplabv2_r18_shallow")  # fmt: skip
        hydra = yaml.safe_load((folder / ".hydra" / "hydra.yaml").read_text())
        hydra["hydra"]["runtime"]["choices"] |= {"ablation": ablation, "world": world}
        (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
        config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
        config["callbacks"] = {
            "drift_guard": guard if isinstance(guard, dict) else {"enabled": guard}
        }
        (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    cr.collect([tmp_path], tmp_path / "out")
    rows = list(csv.reader((tmp_path / "out" / "table2a_ablation.csv").open()))[1:]
    cells = [(r[0], r[3], r[9]) for r in rows]
    assert cells == [
        ("shapes", "-", "31.00"),
        ("shapes", "teacher_guidance", "90.00"),
        ("shapes[rotation45]", "-", "31.00"),
        ("shapes[rotation45]", "teacher_guidance", "50.00"),
        ("shapes[rotation45]", "self_training", "20.00"),
        ("shapes[rotation45]", "self_training+drift_guard", "45.00"),
        # options away from the shipped guard make a row of their own (every_n_steps is not)
        (
            "shapes[rotation45]",
            "self_training+drift_guard(hold_switch=false,release_checks=1)",
            "15.00",
        ),  # fmt: skip
    ]
