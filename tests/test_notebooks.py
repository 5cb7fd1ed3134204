"""The notebooks run top to bottom with the tiny models (nbclient, this interpreter's kernel)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"

# Faster than the notebooks' own defaults (a couple of minutes for shapes_world).
FAST = {
    "quickstart.ipynb": {"NUM_IMAGES": 2},
    "shapes_world.ipynb": {
        "TRAIN_STEPS": 3,
        "BATCH_SIZE": 4,
        "TRAIN_CROP": 48,
        "VAL_SCENES": 16,
        "SEVERITIES": [0, 5],
        "CURVE_SCENES": 8,
    },
}


def kernel_name() -> str:
    """``python3``, checked to start this interpreter: jupyter_client runs ``sys.executable``
    for a kernel whose command is a bare ``python``/``python3``; nothing is registered."""
    command = KernelSpecManager().get_kernel_spec("python3").argv[0]
    bare = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
    if command not in bare and Path(command).resolve() != Path(sys.executable).resolve():
        pytest.fail(f"kernel python3 runs {command}, not this interpreter {sys.executable}")
    return "python3"


def with_parameters(nb: Any, values: dict[str, Any]) -> Any:
    """Insert a cell setting ``values`` after the cell tagged ``parameters`` (papermill's way)."""
    index = next(
        i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])
    )
    lines = [f"{name} = {value!r}" for name, value in values.items()]
    lines += ["import sys", f"assert sys.executable == {sys.executable!r}, sys.executable"]
    source = "\n".join(lines)
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, cell)
    return nb


def run_notebook(name: str, values: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    nb = with_parameters(nbformat.read(NOTEBOOKS / name, as_version=4), values)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits the environment
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    client = NotebookClient(
        nb, kernel_name=kernel_name(), timeout=300, resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()
    return nb


def outputs(nb: Any) -> tuple[str, int]:
    """All printed text of the notebook and the number of pictures it showed."""
    text, pictures = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text.append(out.get("text", ""))
            data = out.get("data", {})
            text.append(data.get("text/plain", ""))
            pictures += "image/png" in data
    return "\n".join(text), pictures


@pytest.mark.parametrize("name", sorted(FAST))
def test_notebooks_are_saved_without_outputs_and_import_only_src(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and all(f"{k} =" in params[0].source for k in FAST[name])
    allowed = {"src", "sys", "pathlib", "logging", "time", "warnings", "numpy", "torch",
               "matplotlib", "pytorch_lightning"}  # fmt: skip
    for cell in code:
        for line in cell.source.splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]):
                assert words[1].split(".")[0] in allowed, line


def test_quickstart_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    nb = run_notebook("quickstart.ipynb", FAST["quickstart.ipynb"], monkeypatch)
    text, pictures = outputs(nb)
    assert "classes: ['circle', 'square', 'triangle']" in text
    assert "of the pixels are below 0.9" in text
    assert pictures >= 6  # images, overlays, confidence maps, threshold, free text, grid


def test_shapes_world_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = FAST["shapes_world.ipynb"] | {"OUT_DIR": str(tmp_path / "out")}
    nb = run_notebook("shapes_world.ipynb", values, monkeypatch)
    text, pictures = outputs(nb)
    assert "DenseCLIP (teacher) mIoU on 16 scenes" in text
    assert "DenseCLIP+ (student) mIoU" in text and "severity 5:" in text
    assert (tmp_path / "out" / "student.ckpt").is_file()
    assert pictures >= 4  # two confusion matrices, the grid, the curve
