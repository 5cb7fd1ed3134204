"""The SLURM launcher configs compose with Hydra's submitit plugin (the optional 'slurm' extra)."""

from __future__ import annotations

from pathlib import Path

import hydra
import hydra_plugins.hydra_submitit_launcher  # noqa: F401  (in the dev extra)
import pytest

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.mark.parametrize(("launcher", "gpus"), [("slurm_4gpu", 4), ("slurm_1gpu", 1)])
@pytest.mark.parametrize("entry", ["train", "eval"])
def test_launcher_configs_compose(launcher: str, gpus: int, entry: str) -> None:
    overrides = [f"hydra/launcher={launcher}", "hydra.launcher.partition=gpu"]
    with hydra.initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = hydra.compose(entry, overrides=overrides, return_hydra_config=True)
    launcher_cfg = cfg.hydra.launcher
    assert launcher_cfg._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher_cfg.gpus_per_node == gpus and launcher_cfg.tasks_per_node == gpus
    assert launcher_cfg.nodes == 1 and launcher_cfg.partition == "gpu"
    with pytest.raises(Exception, match="not_a_key"):  # a structured config: typos fail early
        with hydra.initialize_config_dir(str(CONF), version_base="1.3"):
            bad = [*overrides, "hydra.launcher.not_a_key=1"]
            hydra.compose(entry, overrides=bad, return_hydra_config=True)


def test_the_slurm_launcher_off_a_cluster_is_one_line(monkeypatch) -> None:
    """The README's SLURM command on a machine without SLURM was submitit's traceback
    (``Could not detect "srun"``)."""
    from src.errors import UserError
    from src.utils import overrides
    from src.utils.task import GROUPS, check_group_choices

    monkeypatch.setattr(overrides.shutil, "which", lambda name: None)
    argv = ["-m", "hydra/launcher=slurm_4gpu", "trainer=ddp", "experiment=shapes_demo"]
    with pytest.raises(UserError, match="this machine has no SLURM"):
        check_group_choices(argv, GROUPS, "train")
    monkeypatch.setattr(overrides.shutil, "which", lambda name: f"/usr/bin/{name}")
    check_group_choices(argv, GROUPS, "train")  # on a cluster: on to Hydra
