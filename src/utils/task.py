"""Entry-point plumbing shared by ``src.train``, ``src.eval`` and ``src.predict``: one
instantiate wrapper, one task wrapper (one clear line for user errors), hyper-parameter
logging, and early checks of config-group choices."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from src.errors import UserError
from src.utils.io import atomic_save_json, flatten_metrics
from src.utils.run_dirs import register_resolvers

log = logging.getLogger(__name__)
register_resolvers()  # conf/ uses ${dc.cwd:} and ${dc.run_dir:...}: before any config composes

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def show_tracebacks() -> bool:
    """True when developers asked for full traces (``HYDRA_FULL_ERROR=1``)."""
    return os.environ.get("HYDRA_FULL_ERROR", "0") == "1"


def instantiate(
    node: Any, *, user_errors: tuple[type[BaseException], ...] = (), **kwargs: Any
) -> Any:
    """``hydra.utils.instantiate`` that lets a :class:`UserError` anywhere in the cause chain
    through, unwrapped (Hydra wraps constructor errors in ``InstantiationException``), and
    turns Lightning's configuration errors (``MisconfigurationException``) and the constructor
    errors named in ``user_errors`` (e.g. ``ValueError`` of the Trainer, whose arguments all
    come from the command line) into one, naming the config node."""
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    caught = (UserError, MisconfigurationException, *user_errors)
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        while cause is not None and not isinstance(cause, caught):
            cause = cause.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        if cause is not None:
            key = node._get_full_key(None) if isinstance(node, DictConfig) else "the config"
            raise UserError(
                f"{key}: {' '.join(str(cause).split())}",
                f"change the {key}.* values given on the command line (or conf/{key}/)",
            ) from None
        raise


def seed_run(seed: Any) -> None:
    """``seed_everything(seed)`` (Python, numpy, torch, workers); ``None`` leaves the run
    unseeded; anything but an integer is a :class:`UserError`."""
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UserError(f"seed={seed!r} is not an integer", "give an integer, e.g. seed=0")
    import pytorch_lightning as pl

    pl.seed_everything(seed, workers=True, verbose=False)


#: Trainer options that must be numbers: name -> (integers only, an example)
_TRAINER_NUMBERS = {
    "max_steps": (True, "2000"),
    "max_epochs": (True, "-1"),
    "val_check_interval": (False, "500 (batches) or 0.5 (of an epoch)"),
    "check_val_every_n_epoch": (True, "1 or null"),
    "num_sanity_val_steps": (True, "2"),
    "limit_train_batches": (False, "10 (batches) or 0.5 (a fraction)"),
    "limit_val_batches": (False, "10 (batches) or 0.5 (a fraction)"),
    "limit_test_batches": (False, "10 (batches) or 0.5 (a fraction)"),
    "log_every_n_steps": (True, "50"),
    "accumulate_grad_batches": (True, "1"),
    "gradient_clip_val": (False, "1.0 or null"),
}


def check_trainer_options(trainer: Mapping[str, Any]) -> None:
    """Fail early, as a :class:`UserError`, on a trainer option that is not a number
    (``trainer.max_steps=abc``), before Lightning compares it with one deep inside."""
    for key, (integer, example) in _TRAINER_NUMBERS.items():
        value = trainer.get(key)
        if value is None:
            continue
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or (integer and not float(value).is_integer()):
            kind = "an integer" if integer else "a number"
            raise UserError(
                f"trainer.{key}={value!r} is not {kind}",
                f"give {kind}, e.g. trainer.{key}={example}",
            )


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a config group (``null`` entries are off)."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node is not None and "_target_" in node]


def log_hyperparameters(cfg: DictConfig, loggers: Sequence[Any]) -> None:
    """Send the whole composed config (resolved) to every logger as hyper-parameters."""
    params = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    for logger in loggers:
        if hasattr(logger, "log_hyperparams"):
            logger.log_hyperparams(params)


#: config groups whose choices ``src.train`` and ``src.eval`` check before Hydra composes
GROUPS = (
    "teacher",
    "data",
    "split",
    "student",
    "trainer",
    "experiment",
    "world",
    "ablation",
    "corruption",
    "logger",
)


def check_group_choices(
    argv: Sequence[str], groups: Sequence[str] = ("teacher",), config_name: str | None = None
) -> None:
    """Fail early, as a :class:`UserError`, on ``<group>=<name>`` naming no config file
    (Hydra's own message would exit with status 1; a sweep ``a,b`` checks each name), and,
    given ``config_name``, on a ``key=value`` whose key that config lacks."""
    for arg in argv:
        match = re.fullmatch(r"\+{0,2}([\w.]+)=(.*)", arg)
        if not match or match.group(1) not in groups or "(" in match.group(2):
            continue  # not a group choice, or a sweep function such as glob(...)
        group = match.group(1)
        known = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        for choice in match.group(2).split(","):
            choice = choice.strip().strip("'\"")
            if choice not in known and choice != "null":
                raise UserError(f"unknown {group} '{choice}'", f"use one of: {', '.join(known)}")
    if config_name is not None:
        from src.utils.overrides import check_launcher, check_override_keys

        check_launcher(argv)
        check_override_keys(argv, config_name)


def run_task(
    task: Callable[..., Mapping[str, Any] | None], *args: Any, output_dir: str | os.PathLike | None
) -> dict[str, Any]:
    """Run ``task(*args)``; write its metrics to ``<output_dir>/metrics.json``.

    A :class:`~src.errors.UserError` is printed as one clear message (no traceback) and the
    process exits with status 2; ``HYDRA_FULL_ERROR=1`` re-raises it with its trace.
    """
    try:
        metrics = task(*args)
    except UserError as err:
        if show_tracebacks():
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    metrics = flatten_metrics(metrics or {})
    if metrics and output_dir is not None:
        path = atomic_save_json(Path(output_dir) / "metrics.json", metrics)
        log.info("metrics written to %s", path)
    return metrics
