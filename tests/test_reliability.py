"""Every row of the bad-input table in docs/RELIABILITY.md, run as written: exactly the line
the table shows, one ``error:`` line, exit status 2, no traceback.

Each command runs in this process as ``python -m`` runs it (``runpy``, ``__main__``, the
same ``sys.argv``), in a folder holding the files the table names, with the fd-level output
captured: no interpreter start-up per row. The one row that needs "no network" points the
Hugging Face endpoint at a closed local port (nothing leaves the machine).
"""

from __future__ import annotations

import json
import logging
import re
import runpy
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.data.layouts import label_pattern, make_voc, save_png
from tests.student.fakes import save_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "RELIABILITY.md"
# runpy notes that the entry point was imported before (by other tests): harmless here
pytestmark = pytest.mark.filterwarnings("ignore:.*found in sys.modules after import:RuntimeWarning")


def table_rows() -> list[tuple[str, str, str]]:
    """(when, command, printed line) of every row between the table's markers."""
    text = DOC.read_text()
    start = text.index("<!-- bad-input-table")
    end = text.index("<!-- end bad-input-table")
    rows = []
    for line in text[start:end].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 3 and cells[1].startswith("`") and cells[2].startswith("`"):
            rows.append((cells[0], cells[1].strip("`"), cells[2].strip("`")))
    return rows


ROWS = table_rows()


def test_the_table_covers_every_entry_point() -> None:
    commands = [command for _, command, _ in ROWS]
    for entry in ("src.train", "src.eval", "src.predict"):
        assert sum(f"-m {entry}" in c for c in commands) >= 5, entry


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the table's commands name."""
    base = tmp_path_factory.mktemp("bad_inputs")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(base / "photo.png")
    (base / "notes.txt").write_text("just some notes\n")
    (base / "metrics.json").write_text(json.dumps({"val/miou": 0.5}))
    torch.save({"state_dict": {"w": torch.zeros(4096)}}, base / "full.ckpt")
    data = (base / "full.ckpt").read_bytes()
    (base / "cut.ckpt").write_bytes(data[: len(data) // 2])
    student = {"state_dict": {"net.w": torch.zeros(1)}, "hyper_parameters": {"teacher": {}}}
    torch.save(student, base / "weights.ckpt")
    torch.save({**student, "optimizer_states": [], "loops": {}}, base / "other.ckpt")
    settings = {"experiment": "shapes_demo", "data.setting": "annotation_free",
                "data.unseen_classes": [], "trainer.max_steps": 650}  # fmt: skip
    torch.save({**student, "optimizer_states": [], "loops": {}, "global_step": 650,
                "run_settings": settings}, base / "demo.ckpt")  # fmt: skip
    (base / "broken").mkdir()
    (base / "broken" / "notes.jpg").write_text("not a JPEG")
    (base / "mixed").mkdir()
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(base / "mixed/a.png")
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(base / "mixed/cut.png")
    cut = (base / "mixed" / "cut.png").read_bytes()
    (base / "mixed" / "cut.png").write_bytes(cut[: len(cut) // 2])
    (base / "taken").write_text("a file")
    (base / "loop").symlink_to("loop2")
    save_tiny_checkpoint(base / "student.ckpt")
    (base / "loop2").symlink_to("loop")
    (base / "out").mkdir()
    legend = {"classes": ["cat", "dog"], "colors": [[128, 0, 0], [0, 128, 0]], "images": [],
              "no_class": {"value": 255, "color": [224, 224, 192]}, "model": {}, "settings": {}}  # fmt: skip
    (base / "out" / "legend.json").write_text(json.dumps(legend))
    import timm  # the DINO ViT-B/8 a region head reads (random weights, stored fp16)

    dino = timm.create_model("vit_base_patch8_224.dino", pretrained=False, num_classes=0)
    torch.save({k: v.half() for k, v in dino.state_dict().items()}, base / "dino.pth")
    for name, stem in (("masks", "not_in_the_data"), ("badmasks", "photo")):
        (base / name).mkdir()
        np.savez(base / name / f"{stem}.npz", instance_mask=np.zeros((8, 8), dtype=np.int32))
    voc = make_voc(base / "VOCbad")
    label = label_pattern(0, 20)
    label[5, 5] = 42
    save_png(voc / "SegmentationClass" / "2008_000000.png", label)
    return base


def run_command(
    command: str, when: str, cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> int | str | None:
    """Run ``[VAR=value ...] python -m <module> <args>`` as written, in ``cwd``."""
    from huggingface_hub import constants

    words = shlex.split(command)
    env = {}
    while "=" in words[0] and not words[0].startswith("python"):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    assert words[:2] == ["python", "-m"], command
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HOME", str(cwd))  # no ~/.cache/clip of the machine running the tests
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cwd / "hf"))
    if "no network" in when:  # a refused connection, as a machine without network gets
        for name in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
                     "ALL_PROXY", "all_proxy"):  # fmt: skip
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    else:  # tests never touch the network
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", [words[2], *words[3:]])
    handlers = list(logging.root.handlers)  # Hydra adds its own, bound to this test's stderr
    try:
        runpy.run_module(words[2], run_name="__main__", alter_sys=True)
    except SystemExit as done:
        return done.code
    finally:  # later tests must not log into this test's closed capture
        logging.root.handlers[:] = handlers
    return 0


def expected(line: str) -> re.Pattern[str]:
    """The table's line as a pattern: ``…`` stands for any text."""
    return re.compile(".*".join(re.escape(part) for part in line.split("…")))


@pytest.mark.parametrize(("when", "command", "line"), ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_prints_its_one_line(
    when: str, command: str, line: str, folder: Path, monkeypatch, capfd
) -> None:
    code = run_command(command, when, folder, monkeypatch)
    out, err = capfd.readouterr()
    assert code == 2, (code, err[-3000:])
    assert "Traceback" not in out + err
    errors = [row for row in err.splitlines() if row.startswith("error:")]
    assert len(errors) == 1, err[-3000:]
    assert expected(line).fullmatch(errors[0]), (errors[0], line)
    after = err.splitlines()[err.splitlines().index(errors[0]) + 1]
    assert after.startswith("  fix: ") and len(after) > len("  fix: ") + 5, err[-2000:]
