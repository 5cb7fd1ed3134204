"""scripts/bench_vs_authors.py: one line without the authors' checkouts, its table, and (slow,
only where /tmp/ext holds the authors' code, never in CI: their code is not committed) one
real side-by-side point."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.script_module import load_script

ROOT = Path(__file__).resolve().parents[2]
EXT = Path("/tmp/ext")


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_vs_authors")


def test_without_the_checkouts_it_says_so_in_one_line(bench, tmp_path, capsys) -> None:
    out = tmp_path / "benchmarks.json"
    assert bench.main(["--ext", str(tmp_path / "nothing"), "--out", str(out)]) is None
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "not under" in lines[0] and "sclip" in lines[0]
    assert not out.exists()
    assert bench.cases_for("sclip", list(bench.CASES)) == ["whole224", "whole448", "slide"]
    assert "slide_pamr" in bench.cases_for("naclip", list(bench.CASES))


def test_maskclip_runs_the_whole_cases_and_only_needs_its_checkouts(bench, tmp_path) -> None:
    assert bench.cases_for("maskclip", list(bench.CASES)) == ["whole224", "whole448"]
    (tmp_path / "maskclip").mkdir()
    assert bench.missing_checkouts(tmp_path, ["maskclip"]) == []
    assert bench.missing_checkouts(tmp_path, ["maskclip", "proxyclip"]) == ["proxyclip", "dino"]


def test_the_issue_preset_and_what_overrides_it(bench) -> None:
    args = bench.parse_args(["--issue"])
    assert args.heads == bench.HEADS and "maskclip" in args.heads and "proxyclip" in args.heads
    assert (args.threads, args.batch, args.slide_batch) == ([1, 2], [4], [])
    assert (args.cases, args.repeats, args.warmup) == (["whole224", "slide", "slide_pamr"], 3, 1)
    narrowed = bench.parse_args(["--issue", "--heads", "naclip", "--repeats", "5",
                                 "--slide-batch", "2"])  # fmt: skip
    assert (narrowed.heads, narrowed.repeats, narrowed.slide_batch) == (["naclip"], 5, [2])
    assert narrowed.threads == [1, 2]
    plain = bench.parse_args([])
    assert plain.slide_batch is None and plain.repeats == 5 and plain.batch == [4]
    # the issue's table has ours in bf16 beside fp32; fp32 is always run (bf16 is compared)
    assert args.ours_precision == ["fp32", "bf16"] and plain.ours_precision == ["fp32"]
    assert bench.ours_precisions(bench.parse_args(["--ours-precision", "bf16"])) == ["fp32", "bf16"]
    assert bench.ours_precisions(plain) == ["fp32"]


def test_labels_are_classes_and_agreement_is_a_fraction_of_pixels(bench) -> None:
    """Queries (names) map to their class (NAME_LINES: background and sky are class 0)."""
    import torch

    logits = torch.zeros(2, 5, 2, 3)
    logits[0, 1, 0, 0] = logits[0, 2, 0, 1] = logits[0, 4, 1, 2] = 1.0  # the rest: query 0
    expected = torch.tensor([[0, 1, 0], [0, 0, 3]])
    assert torch.equal(bench.class_labels(logits, "ours"), expected)
    assert torch.equal(bench.class_labels(logits, "theirs"), expected)
    queries = torch.tensor([[[1, 2, 0], [3, 4, 4]]])  # our slide labels: query indices
    assert torch.equal(bench.class_labels(queries, "ours"), torch.tensor([[0, 1, 0], [2, 3, 3]]))
    assert torch.equal(bench.class_labels(queries, "theirs"), queries[0])  # already classes
    assert bench.label_agreement(expected, torch.tensor([[0, 1, 0], [0, 2, 2]])) == 4 / 6
    assert bench.label_agreement(expected, None) is None
    assert bench.label_agreement(expected, expected[:1]) is None


def test_the_section_renders_as_a_table_of_ratios(tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("bench", ROOT / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    side = {"batch": 1, "images_per_s": 2.0, "seconds": 0.5, "peak_mb": 1500.0,
            "forward_extra_mb": 10.0}  # fmt: skip
    row = {"head": "naclip", "case": "slide_pamr", "size": [336, 448], "threads": 1,
           "device": "cpu", "theirs": side, "ours_b1": {**side, "images_per_s": 3.0},
           "ours_b4": {**side, "batch": 4, "images_per_s": 5.0}, "ratio_b1": 1.5,
           "ratio_b4": 2.5, "best_batch": 4}  # fmt: skip
    section = {"date": "today", "machine": {"cpu": "x86_64", "cores": 2, "torch": "2",
               "device": "cpu", "load_average_before": [3.5, 2.0, 1.0],
               "load_average_after": [4.0, 3.0, 2.0]}, "command": "cmd", "quick": False,
               "repeats": 3, "rows": [row], "minutes": 21.5, "batches": [4],
               "slide_batches": []}  # fmt: skip
    md = tmp_path / "B.md"
    bf16 = {**row, "precision": "bf16", "labels_agree": {"theirs": 0.9976, "ours_fp32": 0.99}}
    section["rows"].append(bf16)
    module.write_outputs({"vs_authors": section}, tmp_path / "b.json", md)
    text = md.read_text()
    assert "## Our heads beside the authors' code" in text
    # a row without a precision is an older fp32 row
    assert (
        "| naclip | slide_pamr | 1 | fp32 | 2 | 3 | 1.50 | 5 (x4) | 2.50 | 1500 / 1500 | - / - |"
        in text
    )
    assert (
        "| naclip | slide_pamr | 1 | bf16 | 2 | 3 | 1.50 | 5 (x4) | 2.50 | 1500 / 1500 | "
        "99.76% / 99.00% |"
    ) in text
    assert "a precision change, not an fp32 speed-up" in text
    assert "load average (1/5/15 min) [3.5, 2.0, 1.0] before" in text and "21.5 min" in text
    assert "best batch: the fastest of ours at batch 1 and 4 (the slide cases: batch 1)." in text


@pytest.mark.slow
@pytest.mark.skipif(not (EXT / "sclip").is_dir(), reason="the authors' checkouts are not under "
                    "/tmp/ext (never committed; see scripts/make_head_fixtures.py)")  # fmt: skip
def test_one_point_beside_the_authors_sclip(bench, tmp_path) -> None:
    out = tmp_path / "benchmarks.json"
    section = bench.main(["--heads", "sclip", "--cases", "whole224", "--threads", "1",
                          "--batch", "2", "--repeats", "1", "--warmup", "0",
                          "--out", str(out)])  # fmt: skip
    (row,) = section["rows"]
    assert (row["head"], row["case"], row["size"]) == ("sclip", "whole224", [224, 224])
    assert row["precision"] == "fp32" and 0.9 < row["labels_agree"]["theirs"] <= 1.0
    for key in ("theirs", "ours_b1", "ours_b2"):
        assert row[key]["images_per_s"] > 0 and row[key]["peak_mb"] > 0
    assert row["ratio_b1"] == row["ours_b1"]["images_per_s"] / row["theirs"]["images_per_s"]
    assert json.loads(out.read_text())["vs_authors"]["rows"][0]["case"] == "whole224"
