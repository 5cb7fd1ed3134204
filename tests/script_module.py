"""Load a file of ``scripts/`` (not a package) as a module, for the tests of the scripts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str, *, register: bool = False) -> ModuleType:
    """``scripts/<name>.py`` as a fresh module (``register``: also in ``sys.modules``, for
    scripts whose dataclasses or pickles look their module up by name)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
