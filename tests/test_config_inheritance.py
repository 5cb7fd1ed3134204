"""Teacher and data configs inherit a base with ``defaults:`` (conf/teacher/rn50.yaml,
conf/data/voc.yaml), so each file holds only what differs, and every teacher composes every
key of the base (issue 20)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"
BASES = {"teacher": "rn50", "data": "voc"}


def _plain(path: Path) -> dict:
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def _inherited(group: str, name: str) -> dict:
    """What ``name`` gets from its ``defaults`` chain (its own keys last)."""
    own = _plain(CONF / group / f"{name}.yaml")
    out: dict = {}
    for parent in own.pop("defaults", []):
        if parent != "_self_":
            out |= _inherited(group, parent)
    return out | own


@pytest.mark.parametrize("group", sorted(BASES))
def test_each_config_holds_only_what_differs_from_its_base(group: str) -> None:
    for path in sorted((CONF / group).glob("*.yaml")):
        if path.stem == BASES[group]:
            continue
        own = _plain(path)
        assert own.get("defaults"), path.name  # the base, or a sibling that inherits it
        parents: dict = {}
        for parent in own["defaults"]:
            if parent != "_self_":
                parents |= _inherited(group, parent)
        assert set(parents) >= set(_plain(CONF / group / f"{BASES[group]}.yaml")), path.name
        repeated = [k for k, v in own.items() if k != "defaults" and parents.get(k) == v]
        assert repeated == [], (path.name, repeated)


def test_every_teacher_composes_every_key_of_the_base(tmp_path: Path) -> None:
    base = set(_plain(CONF / "teacher" / "rn50.yaml"))
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for path in sorted((CONF / "teacher").glob("*.yaml")):
            cfg = compose("eval", overrides=[f"teacher={path.stem}", f"paths.root_dir={tmp_path}"])
            assert set(cfg.teacher) == base, path.stem  # e.g. background_threshold everywhere
