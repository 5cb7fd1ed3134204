"""The settings that define a training run, recorded in its checkpoints, and the check that a
resume keeps them.

A checkpoint carries ``run_settings``: the experiment, the seed, the data (vocabulary, split,
world), the teacher (CLIP, head, head options, proxy, refinement), the student, the step
budget and the label switch, as flat ``"group.key": value`` pairs of the composed config.
Resuming with any of them changed is one :class:`~src.errors.UserError` naming each
difference, before anything is built; ``resume_allow=[trainer.max_steps]`` (keys or groups)
lets a deliberate change through. Paths, workers and logging are not settings of the run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from src.errors import UserError

#: what a checkpoint calls its settings
KEY = "run_settings"
#: config groups recorded whole (less ``SKIP``) and the trainer options that shape training
GROUPS = ("data", "teacher", "student", "callbacks.pseudo_label_switch", "callbacks.drift_guard")
TRAINER = ("max_steps", "max_epochs", "accumulate_grad_batches", "gradient_clip_val")
#: keys that do not change what is trained (where files are, how fast they are read)
SKIP = {
    "_target_",
    "_convert_",
    "_partial_",
    "root",
    "num_workers",
    "pin_memory",
    "val_batch_size",
    "cache_dir",
    "names_file_dir",
    "val_root",  # a labelled set only scored (data.val_root), never trained on
    "val_layout",
}
#: mappings recorded as one value (a head's options are one setting)
LEAVES = {"head_options"}
_SHOWN = 6  # differences spelled out in the message; the rest are counted


def _plain(value: Any) -> Any:
    """A JSON value (lists, not tuples); an empty mapping is ``None`` (``head_options``)."""
    value = json.loads(json.dumps(value, default=str))
    return None if value == {} else value


def _flatten(prefix: str, node: Any, out: dict[str, Any]) -> None:
    if isinstance(node, Mapping) and node and prefix.rsplit(".", 1)[-1] not in LEAVES:
        for key, value in node.items():
            if str(key) not in SKIP:
                _flatten(f"{prefix}.{key}", value, out)
    else:
        out[prefix] = _plain(node)


def _experiment() -> str | None:
    """The ``experiment=`` choice of a command-line run (``None`` outside Hydra's runtime)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().runtime.choices.get("experiment")


def run_settings(cfg: DictConfig) -> dict[str, Any]:
    """The settings of the run ``cfg`` composes, as flat ``"group.key": value`` pairs."""
    out: dict[str, Any] = {"experiment": _experiment(), "seed": _plain(cfg.get("seed"))}
    for group in GROUPS:
        node = OmegaConf.select(cfg, group)
        if node is not None:
            _flatten(group, OmegaConf.to_container(node, resolve=True), out)
    trainer = cfg.get("trainer") or {}
    for key in TRAINER:
        out[f"trainer.{key}"] = _plain(trainer.get(key))
    return out


def _from_hparams(hparams: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """What a checkpoint of an earlier version tells of its run: the teacher's and the
    student's keyword arguments (its ``hyper_parameters``), where this run has the key."""
    out: dict[str, Any] = {}
    _flatten("teacher", dict(hparams.get("teacher") or {}), out)
    _flatten("student", {k: v for k, v in hparams.items() if k != "teacher"}, out)
    skip = ("student.backbone_weights", "student.class_names", "teacher.class_names")
    return {k: v for k, v in out.items() if k in current and k not in skip}


def _show(value: Any) -> str:
    return "null" if value is None else json.dumps(value) if not isinstance(value, str) else value


def _allowed(key: str, allow: Sequence[str]) -> bool:
    return any(key == a or key.startswith(f"{a}.") for a in allow)


def check_same_run(
    ckpt: Mapping[str, Any], current: Mapping[str, Any], path: str, allow: Sequence[str] = ()
) -> None:
    """Refuse, as one :class:`UserError`, to resume ``ckpt`` under other settings than the
    run that wrote it (keys in ``allow``, or under a group in it, may differ), or with a
    ``trainer.max_steps`` below the checkpoint's step."""
    allow = [str(a) for a in (allow or [])]
    unknown = [a for a in allow if not any(_allowed(k, [a]) for k in current)]
    if unknown:
        raise UserError(
            f"resume_allow names {unknown[0]}, not a setting a checkpoint records",
            "name keys of the run's config, e.g. resume_allow=[trainer.max_steps]",
        )
    saved = ckpt.get(KEY)
    if not isinstance(saved, Mapping):  # a checkpoint of an earlier version
        saved = _from_hparams(ckpt.get("hyper_parameters") or {}, current)
    if saved:
        differ = [
            k
            for k in current
            if k in saved and saved[k] != current[k] and not _allowed(k, allow)
            and not (k == "experiment" and (saved[k] is None or current[k] is None))
        ]  # fmt: skip
        differ += [k for k in saved if k not in current and not _allowed(k, allow)]
        if differ:
            shown = "; ".join(
                f"{k} was {_show(saved.get(k))}, now {_show(current.get(k))}"
                for k in differ[:_SHOWN]
            )
            more = f" and {len(differ) - _SHOWN} more" if len(differ) > _SHOWN else ""
            raise UserError(
                f"the checkpoint {path} was written by a run with other settings: {shown}{more}",
                "resume with that run's settings (its .hydra/config.yaml), or allow a "
                f"deliberate change: resume_allow=[{','.join(differ)}]",
            )
    step = int(ckpt.get("global_step", 0))
    max_steps = current.get("trainer.max_steps")
    if isinstance(max_steps, int) and 0 <= max_steps < step:
        raise UserError(
            f"the checkpoint {path} is at step {step}, beyond trainer.max_steps={max_steps}: "
            "nothing would be trained",
            f"give trainer.max_steps above {step} (and resume_allow=[trainer.max_steps]), or "
            "evaluate the checkpoint: python -m src.eval ckpt_path=...",
        )


class RecordRunSettings(pl.Callback):
    """Write the run's settings into every checkpoint (``checkpoint["run_settings"]``)."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[KEY] = dict(self.settings)
