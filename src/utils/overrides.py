"""Command-line overrides checked before Hydra composes: a key no config has is one line
naming it and the nearest real keys (Hydra's own advice, ``+key=...``, adds a setting that
nothing reads)."""

from __future__ import annotations

import difflib
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from src.errors import UserError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
_NOT_IN_STRUCT = re.compile(r"Key '[^']+' is not in struct\s+full_key: (\S+)")


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name, overrides=overrides)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name, overrides=overrides)


def check_launcher(argv: Sequence[str]) -> None:
    """``hydra/launcher=slurm_*`` (or the plugin's ``submitit_slurm``) off a SLURM cluster is
    one :class:`UserError` (submitit's own is a traceback: ``Could not detect "srun"``)."""
    for arg in argv:
        key, _, value = arg.lstrip("+~").partition("=")
        if key == "hydra/launcher" and "slurm" in value and shutil.which("sbatch") is None:
            raise UserError(
                f"hydra/launcher={value} submits to SLURM, and this machine has no SLURM "
                "(no sbatch on the PATH)",
                "run the command on the cluster's login node, or leave hydra/launcher out "
                "to run the sweep here, one job after the other",
            )


def check_override_keys(argv: Sequence[str], config_name: str) -> None:
    """Fail, as a :class:`UserError`, on ``key=value`` for a key the composed ``config_name``
    lacks (``teacher.hed=...``), naming the closest keys of that node. Sweeps (``-m``) and
    every other composition problem are left to Hydra. ``group=null`` for a config group
    (Hydra: "Config group override must be a string or a list") is one line naming ``~group``."""
    for arg in argv:
        key, _, value = arg.partition("=")
        if value.lower() in ("null", "none") and key.isidentifier() and (CONF_DIR / key).is_dir():
            raise UserError(
                f"{arg}: {key} is a config group, which Hydra removes with ~{key}, not null",
                f"write ~{key} (or pick one of conf/{key}/)",
            )
    if any(a in ("-m", "--multirun") or a.startswith("-") for a in argv):
        return
    overrides = [a for a in argv if "=" in a and not a.startswith("hydra")]
    try:
        _compose(config_name, overrides)
    except Exception as err:  # Hydra's composition errors: only the unknown key is ours
        text, cause = str(err), err.__cause__
        while cause is not None:  # Hydra's message names the key only in its cause
            text, cause = f"{text}\n{cause}", cause.__cause__
        match = _NOT_IN_STRUCT.search(text)
        if match is None:
            return
        bad = match.group(1)
    else:
        return
    parent, _, name = bad.rpartition(".")
    keep = [a for a in overrides if a.split("=", 1)[0].lstrip("+~") != bad]
    try:
        node = OmegaConf.select(_compose(config_name, keep), parent) if parent else None
    except Exception:
        node = None
    keys = [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
    close = difflib.get_close_matches(name, keys, n=3, cutoff=0.6)
    where = f"{parent}." if parent else ""
    hint = (
        f"did you mean {' or '.join(where + c for c in close)}?"
        if close
        else f"use a key of {parent}: {', '.join(keys[:12])}"
        if keys
        else "check the spelling against conf/"
    )
    raise UserError(f"unknown setting {bad}: the {config_name} config has no such key", hint)
