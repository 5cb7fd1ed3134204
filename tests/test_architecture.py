"""The layering of docs/ARCHITECTURE.md, checked on the source: which folder imports which."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINTS = ("train", "eval", "predict", "app", "export")
IMPORT = re.compile(r"^\s*(?:from|import)\s+(src(?:\.\w+)*)", re.MULTILINE)


def imports_of(folder: str) -> dict[str, set[str]]:
    """``{file: {imported src modules}}`` for every Python file under ``folder``."""
    out = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        out[str(path.relative_to(ROOT))] = set(IMPORT.findall(path.read_text()))
    return out


def offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{file}: {module}"
        for file, modules in imports_of(folder).items()
        for module in sorted(modules)
        if any(module == f or module.startswith(f + ".") for f in forbidden)
    ]


def test_no_library_module_or_script_imports_an_entry_point() -> None:
    entry = tuple(f"src.{name}" for name in ENTRY_POINTS)
    found = offenders("src", entry) + offenders("scripts", entry)
    assert found == []


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("src/data", ("src.teacher", "src.student", "src.evaluation", "src.prediction")),
        ("src/teacher", ("src.student", "src.data", "src.evaluation", "src.prediction")),
        ("src/student", ("src.data", "src.prediction")),
        ("src/evaluation", ("src.teacher", "src.student", "src.data", "src.prediction")),
        # pictures draw; prediction predicts (issue 20)
        (
            "src/pictures",
            ("src.teacher", "src.student", "src.data", "src.prediction", "src.evaluation"),
        ),  # fmt: skip
        ("src/prediction", ("src.data", "src.evaluation", "src.web")),
        ("src/web", ("src.evaluation",)),
    ],
)
def test_layers_import_only_downwards(folder: str, forbidden: tuple[str, ...]) -> None:
    assert offenders(folder, forbidden) == []


def test_one_home_for_instantiate_palette_and_checkpoint_loading() -> None:
    sources = {p: p.read_text() for p in (ROOT / "src").rglob("*.py")}

    def defining(pattern: str) -> list[str]:
        return sorted(str(p.relative_to(ROOT)) for p, s in sources.items() if re.search(pattern, s))

    assert defining(r"(?m)^def instantiate\(") == ["src/utils/task.py"]
    assert defining(r"(?m)^VOID_COLOR\s*=") == ["src/pictures/palette.py"]
    assert defining(r"(?m)^def pascal_palette\(") == ["src/pictures/palette.py"]
    assert defining(r"load_from_checkpoint\(") == ["src/student/checkpoint.py"]


def test_one_teacher_factory_for_the_entry_points() -> None:
    """train, eval, predict and app build the teacher with ``build_teacher`` (one factory)."""
    for name in ("train", "eval", "predict", "app"):
        text = (ROOT / "src" / f"{name}.py").read_text()
        assert "build_teacher(" in text, name
        assert not re.search(r"instantiate\(\s*(cfg\.teacher|node)\b", text), name
