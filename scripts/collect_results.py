"""Collect the ``metrics.json`` of runs and sweeps into tables shaped like the paper's.

    python scripts/collect_results.py logs/eval/multiruns/2024-05-01_10-00-00 [more dirs] [--out DIR]

Finds every ``metrics.json`` under the given folders (or the given files) and reads each run's
``.hydra/`` files (``hydra.yaml`` config choices, ``config.yaml``, ``overrides.yaml``) to know
its dataset, CLIP variant (``teacher=``), student, setting and corruption. A training run gives
two rows: DenseCLIP+ (``val/*``) and its teacher, DenseCLIP (``teacher/val/*``); an evaluation
gives DenseCLIP, or DenseCLIP+ with ``ckpt_path=`` (CLIP and student then come from the
checkpoint's run folder). Prints, and writes to ``--out`` (default: the folder holding all the
inputs) as markdown and CSV, atomically:

- ``table1_by_dataset``: mIoU(S), mIoU(U), mIoU, hIoU by dataset and method (Table 1);
- ``table3_by_clip``: mIoU by CLIP variant and method, datasets as columns (Tables 2b, 3);
- ``table5_corruption``: mIoU by corruption x severity (and CLIP), one block per dataset and
  method (Tables 4-5); the clean runs fill the "None" row;
- ``table2a_ablation``: training runs with an ``ablation=`` choice (Table 2a): mIoU(S),
  mIoU(U), hIoU (and mIoU), mean +- standard deviation over the runs (seeds) of each row, by dataset
  and CLIP, with their teacher (DenseCLIP) as the first row; self-training runs with
  ``callbacks.drift_guard.enabled=true`` are a row of their own; these runs stay out of the
  other tables (their DenseCLIP+ rows are not the paper's method). A shapes world widened
  with ``world=`` is named ``shapes[<world>]``;
- ``training_free``: runs under ``protocol=training_free``: mIoU on the 8 benchmarks (VOC21,
  PC60, Object, VOC20, PC59, Stuff, City, ADE) and their mean, by head and CLIP, with the
  published rows of every head beside them (``src/evaluation/benchmarks.py``); these runs stay
  out of the other tables;
- ``runs.csv``: one line per run, and ``results.md`` with every table.

Scores are percentages of the fractions in ``metrics.json``. A cell averages every run that
falls in it (seeds) and is marked ``*`` when there are several; a missing value shows as ``-``.
Runs are averaged only when their configs (``.hydra/config.yaml``) differ in nothing but the
seed (and paths, workers, logging): runs of a sweep such as ``teacher.head=<a>,<b>``
are a row each, the keys that differ in the row's name (``DenseCLIP+ [teacher.head=<b>]``).
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import math
import os
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.data.corruptions import ALIASES, CORRUPTIONS, NONE  # noqa: E402
from src.errors import UserError  # noqa: E402
from src.evaluation.benchmarks import TRAINING_FREE_BENCHMARKS  # noqa: E402
from src.utils.io import atomic_write_text  # noqa: E402

METRICS = (("miou_seen", "mIoU(S)"), ("miou_unseen", "mIoU(U)"), ("miou", "mIoU"), ("hiou", "hIoU"))
RUN_PREFIXES = ("test/", "val/", "eval/", "")
TEACHER_PREFIXES = ("teacher/test/", "teacher/val/", "teacher/")
CORRUPTION_LABELS = {
    NONE: "None",
    "gaussian_noise": "Gaussian Noise",
    "shot_noise": "Shot Noise",
    "impulse_noise": "Impulse Noise",
    "speckle_noise": "Speckle Noise",
    "gaussian_blur": "Gaussian Blur",
    "defocus_blur": "Defocus Blur",
    "spatter": "Spatter",
    "jpeg": "JPEG",
}
SETTING_ORDER = ("supervised", "zero_shot", "annotation_free")
METHOD_ORDER = ("DenseCLIP", "DenseCLIP+")
CLIP_ORDER = ("rn50", "rn101", "rn50x4", "rn50x16", "rn50x64", "vit_b32", "vit_b16", "vit_l14")
UNKNOWN = "-"
TRAINING_FREE = "training_free"
#: Table 2a's rows: the ``ablation=`` choice and the paper's name for it
ABLATIONS = {
    "text_classifier": "Adapted DeepLabv2 (seen only)",
    "teacher_guidance": "+ DenseCLIP-Guided",
    "self_training": "+ Self-Training",
    "self_training+drift_guard": "+ Self-Training, drift guard",
}
GUARD = "+drift_guard"  #: appended to the ablation of runs with callbacks.drift_guard.enabled


def _is_ablation(ablation: str) -> bool:
    """A Table 2a row: one of :data:`ABLATIONS`, or a guard with options of its own."""
    return ablation.split("(")[0] in ABLATIONS


def _paper_row(ablation: str) -> str:
    base = ablation.split("(")[0]
    return ABLATIONS[base] + ablation[len(base) :].replace("(", " (")


@functools.cache
def _shipped_guard() -> dict[str, Any]:
    """The drift guard's options as shipped (conf/callbacks/default.yaml), read once."""
    shipped = yaml.safe_load((ROOT / "conf" / "callbacks" / "default.yaml").read_text())
    return dict(shipped.get("drift_guard") or {})


def _guard_label(guard: Any) -> str:
    """``+drift_guard``, with the options a run set away from the shipped defaults
    (conf/callbacks/default.yaml), e.g. ``+drift_guard(hold_switch=false)``."""
    defaults = _shipped_guard()
    options = guard if isinstance(guard, Mapping) else {}
    changed = [
        f"{key}={json.dumps(value)}"
        for key, value in sorted(options.items())
        if key not in ("enabled", "_target_") and key in defaults and value != defaults[key]
    ]
    return GUARD + (f"({','.join(changed)})" if changed else "")


#: Table 2a's columns, and mIoU (the only score of annotation-free runs)
ABLATION_METRICS = (
    ("miou_seen", "mIoU(S)"),
    ("miou_unseen", "mIoU(U)"),
    ("hiou", "hIoU"),
    ("miou", "mIoU"),
)


@dataclass
class Run:
    """One row of results: a method on a dataset under one setting and corruption."""

    source: str
    method: str
    dataset: str = UNKNOWN
    clip: str = UNKNOWN
    student: str = UNKNOWN
    setting: str = UNKNOWN
    corruption: str = NONE
    severity: int = 0
    scores: dict[str, float | None] = field(default_factory=dict)
    protocol: str = NONE  #: the evaluation protocol (``protocol=``), ``none`` by default
    head: str = ""  #: the teacher's dense head (``teacher.head``)
    ablation: str = NONE  #: the ``ablation=`` choice of a training run (Table 2a)
    #: the run's settings (flat config keys, less :data:`NOT_SETTINGS`), to tell runs apart
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    #: the settings that set this run apart from others of its row, e.g. ``teacher.head=<b>``
    variant: str = ""

    @property
    def label(self) -> str:
        """The method as a row names it: with the settings that set it apart, if any."""
        return self.method + (f" [{self.variant}]" if self.variant else "")


#: config keys that do not make a run another experiment: seeds, where files are, workers,
#: logging, checkpointing (and what a row already names: corruption, task)
NOT_SETTINGS = (
    "seed", "paths", "hydra", "ckpt_path", "task_name", "logger", "corruption",
    "optimized_metric", "output_dir", "input", "device", "progress", "resume_allow",
    "data.root", "data.num_workers", "data.pin_memory", "data.val_batch_size",
    "trainer.accelerator", "trainer.devices", "trainer.strategy", "trainer.num_nodes",
    "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.enable_checkpointing",
    "trainer.default_root_dir", "callbacks.model_checkpoint", "callbacks.periodic_checkpoint",
    "callbacks.validation_images", "callbacks.validation_report", "callbacks.flush_denormals",
    "teacher.cache_dir",
)  # fmt: skip
#: what the teacher's scores depend on (a training run's DenseCLIP row ignores its student)
TEACHER_SETTINGS = (
    "teacher", "protocol", "data.class_names", "data.unseen_classes", "data.count_background",
    "data.eval_scale", "data.names_file", "data.val_split", "data.dataset", "world",
)  # fmt: skip


def _under(key: str, prefixes: Sequence[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b": value}`` of a nested config (lists as JSON text)."""
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out |= _flat(value, f"{prefix}{key}.")
        return out
    value = json.dumps(node, sort_keys=True, default=str) if isinstance(node, list) else node
    return {prefix[:-1]: value} if prefix else {}


def run_settings(config: Any, *, teacher_only: bool = False) -> dict[str, Any]:
    """The settings of a run's config that tell it apart from another run (not the seed)."""
    plain = OmegaConf.to_container(config, resolve=False) if OmegaConf.is_config(config) else config
    flat = {k: v for k, v in _flat(plain or {}).items() if not _under(k, NOT_SETTINGS)}
    if teacher_only:
        flat = {k: v for k, v in flat.items() if _under(k, TEACHER_SETTINGS)}
    return flat


def name_variants(runs: list[Run]) -> None:
    """Set ``variant`` on runs that would share a row but differ in settings beyond the seed:
    the keys that differ within the row, with this run's values (``teacher.head=<b>``)."""
    rows: dict[tuple[Any, ...], list[Run]] = defaultdict(list)
    for r in runs:
        head = r.head if r.protocol == TRAINING_FREE else ""  # that table names the head
        key = (r.method, r.dataset, r.setting, r.clip, r.student, r.corruption, r.severity,
               r.protocol, r.ablation, head)  # fmt: skip
        rows[key].append(r)
    for members in rows.values():
        keys = sorted({k for r in members for k in r.config})
        differ = [k for k in keys if len({json.dumps(r.config.get(k), default=str)
                                          for r in members}) > 1]  # fmt: skip
        if head_key := ("teacher.head" if "teacher.head" in differ else None):
            differ = [head_key] + [k for k in differ if k != head_key]
        for r in members:
            r.variant = ",".join(f"{k}={_value_text(r.config.get(k))}" for k in differ)


def _value_text(value: Any) -> str:
    return (
        "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    )


@dataclass
class Table:
    """Label columns, then value columns holding ``(mean fraction or None, runs averaged)``."""

    name: str
    title: str
    labels: list[str]
    columns: list[str]
    rows: list[tuple[list[str], list[tuple[float | None, int]]]]
    #: per row and column, the standard deviation over the runs averaged (None: one run)
    stds: list[list[float | None]] | None = None

    def __post_init__(self) -> None:  # drop label columns nobody filled (e.g. Student)
        keep = [i for i in range(len(self.labels)) if any(r[0][i] != UNKNOWN for r in self.rows)]
        self.labels = [self.labels[i] for i in keep]
        self.rows = [([labels[i] for i in keep], values) for labels, values in self.rows]


# -- reading runs -------------------------------------------------------------------------------


def find_metrics(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Every ``metrics.json`` in ``paths`` (files, or folders searched recursively)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise UserError(f"{path} does not exist", "pass run or sweep folders (logs/<task>/...)")
        if path.is_file():
            if path.name != "metrics.json":
                raise UserError(f"{path} is not a metrics.json file", "pass run or sweep folders")
            found.append(path)
            continue
        here = sorted(path.rglob("metrics.json"))
        if not here:
            raise UserError(
                f"no metrics.json under {path}",
                "pass the folder of a finished run (logs/eval/runs/<date>) or sweep "
                "(logs/eval/multiruns/<date>); a run writes metrics.json when it ends",
            )
        found.extend(here)
    return list(dict.fromkeys(p.resolve() for p in found))


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text()) if path.is_file() else None
    except yaml.YAMLError:
        return None


def _select(config: Any, key: str) -> Any:
    """``config.<key>`` with interpolations resolved where possible (None when missing)."""
    if config is None:
        return None
    try:
        value = OmegaConf.select(config, key, default=None, throw_on_resolution_failure=False)
    except Exception:  # an unusual config: treat the key as missing
        return None
    return OmegaConf.to_container(value, resolve=False) if OmegaConf.is_config(value) else value


def _hydra_info(run_dir: Path) -> tuple[dict[str, str], Any, dict[str, str]]:
    """``(config-group choices, config, overrides as key -> value)`` of a run folder; the
    choices also hold the job's name (``src.train`` -> ``train``) under ``_job``."""
    hydra_dir = run_dir / ".hydra"
    hydra_cfg = OmegaConf.create(_yaml(hydra_dir / "hydra.yaml") or {})
    choices = dict(_select(hydra_cfg, "hydra.runtime.choices") or {})
    choices["_job"] = _select(hydra_cfg, "hydra.job.name")
    config = OmegaConf.create(_yaml(hydra_dir / "config.yaml") or {})
    overrides: dict[str, str] = {}
    for item in _yaml(hydra_dir / "overrides.yaml") or []:
        key, sep, value = str(item).lstrip("+~").partition("=")
        if sep:
            overrides[key] = value
    choices = {str(k): str(v) for k, v in choices.items() if v is not None}
    return choices, config, overrides


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _scores(metrics: Mapping[str, Any], prefixes: Iterable[str]) -> dict[str, float | None] | None:
    """The four scores under the first prefix that has any of them (None: no prefix has)."""
    for prefix in prefixes:
        if any(prefix + key in metrics for key, _ in METRICS):
            return {key: _number(metrics.get(prefix + key)) for key, _ in METRICS}
    return None


@functools.cache
def _default_head() -> str:
    """The teacher's head when a run's config names none (the registry's default)."""
    from src.teacher.heads import default_head

    return default_head()


def _text(*candidates: Any) -> str:
    for value in candidates:
        if value is not None and not isinstance(value, (dict, list)) and str(value) != "":
            return str(value)
    return UNKNOWN


def _corruption(
    metrics: Mapping[str, Any], config: Any, choices: Mapping[str, str]
) -> tuple[str, int]:
    name = _text(
        metrics.get("corruption/name"),
        _select(config, "corruption.name"),
        choices.get("corruption"),
        NONE,
    )
    name = ALIASES.get(name.lower(), name.lower())
    if name == NONE:
        return NONE, 0
    severity = metrics.get("corruption/severity", _select(config, "corruption.severity"))
    try:
        return name, int(severity)
    except (TypeError, ValueError):
        return name, 0


def load_runs(metrics_path: Path) -> list[Run]:
    """The rows of one run folder (none, with a warning, if it holds no mIoU)."""
    try:
        metrics = json.loads(metrics_path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {metrics_path}: {err}", "delete or re-run that run") from None
    if not isinstance(metrics, dict):
        raise UserError(f"{metrics_path} does not hold a JSON object of metrics")
    run_dir = metrics_path.parent
    choices, config, overrides = _hydra_info(run_dir)
    task = _text(_select(config, "task_name"), choices.get("_job", "").rpartition(".")[2])
    ckpt = _select(config, "ckpt_path") or overrides.get("ckpt_path")
    ckpt_choices: dict[str, str] = {}
    if task != "train" and ckpt and str(ckpt) != "null":  # a student evaluated from its checkpoint
        ckpt_run = Path(str(ckpt)).expanduser().parent.parent
        ckpt_choices = _hydra_info(ckpt_run)[0] if (ckpt_run / ".hydra").is_dir() else {}
    base = dict(
        source=str(run_dir),
        dataset=_text(choices.get("data"), overrides.get("data"), _select(config, "data.dataset")),
        setting=_text(_select(config, "data.setting"), choices.get("split")),
    )
    base["corruption"], base["severity"] = _corruption(metrics, config, choices)
    # a preset of a protocol (protocol=<preset>) counts as the protocol it names (protocol.name)
    base["protocol"] = _text(_select(config, "protocol.name"), choices.get("protocol"), NONE)
    base["head"] = _text(_select(config, "teacher.head"), _default_head())
    refine = _select(config, "teacher.refine")
    if refine not in (None, "", "null", "none", False):  # "<head> + <refine>": its own row
        base["head"] += f" + {refine}"
    masks = _select(config, "teacher.masks")
    if masks not in (None, "", "null", "none", False):  # region masks: "<head>, <masks> masks"
        base["head"] += f", {masks} masks"
    base["ablation"] = _text(choices.get("ablation"), overrides.get("ablation"), NONE)
    if _select(config, "callbacks.drift_guard.enabled") is True:
        base["ablation"] += _guard_label(_select(config, "callbacks.drift_guard"))
    world = _text(choices.get("world"), overrides.get("world"), "default")
    if world != "default":  # a widened shapes world is a dataset of its own
        base["dataset"] = f"{base['dataset']}[{world}]"
    clip = _text(
        ckpt_choices.get("teacher"),
        choices.get("teacher"),
        overrides.get("teacher"),
        _select(config, "teacher.clip_model"),
    )
    student = _text(ckpt_choices.get("student"), choices.get("student"), overrides.get("student"))
    runs: list[Run] = []
    main = _scores(metrics, RUN_PREFIXES)
    if isinstance(metrics.get("method"), str):
        is_student = metrics["method"] != "DenseCLIP"
        methods = [(metrics["method"], main, student if is_student else UNKNOWN)]
    elif task == "train":
        teacher = _scores(metrics, TEACHER_PREFIXES)
        methods = [("DenseCLIP+", main, student), ("DenseCLIP", teacher, UNKNOWN)]
    elif ckpt and str(ckpt) != "null":
        methods = [("DenseCLIP+", main, student)]
    else:
        methods = [("DenseCLIP", main, UNKNOWN)]
    for method, scores, who in methods:
        if scores is not None:
            settings = run_settings(config, teacher_only=method == "DenseCLIP")
            runs.append(
                Run(method=method, clip=clip, student=who, scores=scores, config=settings, **base)
            )
    if not runs:
        print(f"warning: no mIoU in {metrics_path}; skipped", file=sys.stderr)
    return runs


# -- tables -------------------------------------------------------------------------------------


def _order(value: str, known: Sequence[str]) -> tuple[int, str]:
    return (known.index(value), "") if value in known else (len(known), value)


def _row_order(key: tuple[str, ...]) -> tuple[Any, ...]:
    setting, method, clip, student = key
    base, _, variant = method.partition(" [")
    return (
        _order(setting, SETTING_ORDER),
        _order(base, METHOD_ORDER),
        variant,
        _order(clip, CLIP_ORDER),
        student,
    )


def _mean(values: list[float | None]) -> tuple[float | None, int]:
    kept = [v for v in values if v is not None]
    return (sum(kept) / len(kept), len(kept)) if kept else (None, 0)


def _pivot(
    runs: list[Run], metrics: Sequence[tuple[str, str]], name: str, title: str
) -> Table | None:
    clean = [r for r in runs if r.corruption == NONE]
    if not clean:
        return None
    datasets = sorted({r.dataset for r in clean})
    cells: dict[tuple[str, ...], list[float | None]] = defaultdict(list)
    for r in clean:
        for key, _ in metrics:
            cells[(r.setting, r.label, r.clip, r.student, r.dataset, key)].append(r.scores.get(key))
    keys = sorted({(r.setting, r.label, r.clip, r.student) for r in clean}, key=_row_order)
    columns = [d if len(metrics) == 1 else f"{d} {label}" for d in datasets for _, label in metrics]
    rows = [
        (list(k), [_mean(cells.get((*k, d, m), [])) for d in datasets for m, _ in metrics])
        for k in keys
    ]
    return Table(name, title, ["Setting", "Method", "CLIP", "Student"], columns, rows)


def table_by_dataset(runs: list[Run]) -> Table | None:
    """Table 1's shape: mIoU(S), mIoU(U), mIoU, hIoU per dataset; rows are methods."""
    title = "mIoU(S), mIoU(U), mIoU, hIoU by dataset and method (Table 1)"
    return _pivot(runs, METRICS, "table1_by_dataset", title)


def table_by_clip(runs: list[Run]) -> Table | None:
    """Tables 2b / 3's shape: mIoU per dataset; rows are method and CLIP variant."""
    title = "mIoU by CLIP variant and method (Tables 2b, 3)"
    return _pivot(runs, METRICS[2:3], "table3_by_clip", title)


def table_corruption(runs: list[Run]) -> Table | None:
    """Tables 4-5's shape: corruption x (severity, CLIP) mIoU, per dataset / method block;
    the clean runs of a block fill its None row at every level."""
    groups: dict[tuple[str, ...], list[Run]] = defaultdict(list)
    for r in runs:
        groups[(r.dataset, r.setting, r.label, r.student)].append(r)
    blocks = sorted(
        ((g, rs) for g, rs in groups.items() if any(r.corruption != NONE for r in rs)),
        key=lambda b: (b[0][0], _row_order((b[0][1], b[0][2], "", b[0][3]))),
    )
    if not blocks:
        return None
    levels = sorted({r.severity for _, rs in blocks for r in rs if r.corruption != NONE})
    clips = sorted({r.clip for _, rs in blocks for r in rs}, key=lambda c: _order(c, CLIP_ORDER))
    grid = [(s, c) for s in levels for c in clips]
    columns = [f"level {s}" + (f" {c}" if len(clips) > 1 else "") for s, c in grid]
    rows = []
    for group, rs in blocks:
        cells: dict[tuple[str, int, str], list[float | None]] = defaultdict(list)
        for r in rs:
            for s in levels if r.corruption == NONE else [r.severity]:
                cells[(r.corruption, s, r.clip)].append(r.scores.get("miou"))
        names = sorted(
            {r.corruption for r in rs} | {NONE}, key=lambda n: _order(n, (NONE, *CORRUPTIONS))
        )
        for n in names:
            label = CORRUPTION_LABELS.get(n, n)
            rows.append(([*group, label], [_mean(cells.get((n, s, c), [])) for s, c in grid]))
    labels = ["Dataset", "Setting", "Method", "Student", "Corruption"]
    title = "mIoU under ImageNet-C corruptions by severity (Tables 4-5)"
    return Table("table5_corruption", title, labels, columns, rows)


def table_training_free(runs: list[Run]) -> Table | None:
    """The training-free benchmark: mIoU on its 8 datasets and their mean (only when all 8 are
    there), by head and CLIP, then the published rows (``src/evaluation/benchmarks.py``)."""
    ours = [r for r in runs if r.protocol == TRAINING_FREE and r.corruption == NONE]
    if not ours:
        return None
    keys = sorted({(r.label, r.head, r.clip) for r in ours}, key=lambda k: k)
    cells: dict[tuple[str, ...], list[float | None]] = defaultdict(list)
    for r in ours:
        cells[(r.label, r.head, r.clip, r.dataset)].append(r.scores.get("miou"))
    rows = []
    for method, head, clip in keys:
        values = [
            _mean(cells.get((method, head, clip, d), [])) for d, _ in TRAINING_FREE_BENCHMARKS
        ]
        rows.append((["measured", f"{method} ({head})", clip, "this run"], _with_mean(values)))
    from src.teacher.heads import published_rows  # each head's published rows

    for _, row in published_rows():
        values = [(v / 100.0, 1) for v in row.miou]
        rows.append((["published", row.label, row.clip, row.source], _with_mean(values)))
    columns = [label for _, label in TRAINING_FREE_BENCHMARKS] + ["Mean"]
    title = "Training-free benchmark (protocol=training_free): mIoU, measured and published"
    return Table("training_free", title, ["Source", "Method", "CLIP", "Reference"], columns, rows)


def _std(values: list[float]) -> float | None:
    """The sample standard deviation (None for fewer than two values)."""
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def table_ablation(runs: list[Run]) -> Table | None:
    """Table 2a's shape: mIoU(S), mIoU(U), hIoU (mean +- std over seeds) per ablation row,
    by dataset and CLIP; the first row of each block is the teacher of those runs."""
    ours = [r for r in runs if _is_ablation(r.ablation) and r.corruption == NONE]
    if not ours:
        return None
    order = list(ABLATIONS) + sorted({r.ablation for r in ours} - set(ABLATIONS))
    keys = sorted(
        {(r.dataset, r.setting, r.clip, r.student) for r in ours if r.method == "DenseCLIP+"},
        key=lambda k: (k[0], _order(k[1], SETTING_ORDER), _order(k[2], CLIP_ORDER), k[3]),
    )
    rows: list[tuple[list[str], list[tuple[float | None, int]]]] = []
    stds: list[list[float | None]] = []
    for dataset, setting, clip, student in keys:
        block = [r for r in ours if (r.dataset, r.setting, r.clip) == (dataset, setting, clip)]
        teacher = [r for r in block if r.method == "DenseCLIP"]
        lines = [("DenseCLIP (teacher)", "-", teacher)] + [
            (_paper_row(a), a, [r for r in block if r.ablation == a and r.student == student])
            for a in order
        ]
        split = []
        for paper_row, ablation, members in lines:
            for variant in dict.fromkeys(r.variant for r in members):
                suffix = f" [{variant}]" if variant else ""
                split.append((paper_row + suffix, ablation, [r for r in members
                                                             if r.variant == variant]))  # fmt: skip
        for paper_row, ablation, members in split:
            if not members:
                continue
            values, spread = [], []
            for key, _ in ABLATION_METRICS:
                kept = [v for v in (r.scores.get(key) for r in members) if v is not None]
                values.append((sum(kept) / len(kept), len(kept)) if kept else (None, 0))
                spread.append(_std(kept))
            who = UNKNOWN if ablation == "-" else student
            labels = [dataset, clip, who, ablation, paper_row, str(len(members))]
            rows.append((labels, values))
            stds.append(spread)
    columns = [label for _, label in ABLATION_METRICS]
    labels = ["Dataset", "CLIP", "Student", "Ablation", "Paper row", "Runs"]
    title = "Ablations (Table 2a): mIoU(S), mIoU(U), hIoU and mIoU, mean ± std over runs"
    return Table("table2a_ablation", title, labels, columns, rows, stds)


def _with_mean(values: list[tuple[float | None, int]]) -> list[tuple[float | None, int]]:
    """``values`` plus their mean (None unless every value is there)."""
    if any(v is None for v, _ in values):
        return [*values, (None, 0)]
    return [*values, (sum(v for v, _ in values) / len(values), 1)]  # type: ignore[misc]


# -- writing ------------------------------------------------------------------------------------


def _number_text(value: float | None, count: int, *, markdown: bool) -> str:
    if value is None:
        return UNKNOWN if markdown else ""
    if not markdown:
        return f"{100 * value:.2f}"
    return f"{100 * value:.1f}" + ("*" if count > 1 else "")


def to_markdown(table: Table) -> str:
    """The table as GitHub markdown (percentages, 1 decimal; ``*``: mean of several runs)."""
    header = table.labels + table.columns
    lines = [f"### {table.title}", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "---|" * len(table.labels) + "---:|" * len(table.columns))
    for i, (labels, values) in enumerate(table.rows):
        if table.stds is not None:
            cells = labels + [
                _number_text(v, 1, markdown=True) + ("" if sd is None else f" ± {100 * sd:.1f}")
                for (v, _), sd in zip(values, table.stds[i], strict=True)
            ]
        else:
            cells = labels + [_number_text(v, n, markdown=True) for v, n in values]
        lines.append("| " + " | ".join(cells) + " |")
    if table.stds is None and any(n > 1 for _, values in table.rows for _, n in values):
        lines += ["", "\\* mean of several runs (see runs.csv)."]
    return "\n".join(lines) + "\n"


def _csv_text(rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def to_csv(table: Table) -> str:
    """The table as CSV (percentages, 2 decimals; empty: missing)."""
    rows = [
        [*labels, *(_number_text(v, n, markdown=False) for v, n in values)]
        for labels, values in table.rows
    ]
    header = table.labels + table.columns
    if table.stds is not None:  # the standard deviations follow, one column each
        header += [f"{c} std" for c in table.columns]
        for row, spread in zip(rows, table.stds, strict=True):
            row += [_number_text(sd, 1, markdown=False) for sd in spread]
    return _csv_text([header, *rows])


def runs_csv(runs: list[Run], relative_to: Path) -> str:
    """Every row read, one per line (sources relative to ``relative_to``)."""
    header = ["source", "method", "dataset", "clip", "student", "setting", "corruption", "severity"]
    rows = [
        [os.path.relpath(r.source, relative_to), r.label, r.dataset, r.clip, r.student, r.setting]
        + [r.corruption, r.severity]
        + [_number_text(r.scores.get(key), 1, markdown=False) for key, _ in METRICS]
        for r in runs
    ]
    return _csv_text([header + [label for _, label in METRICS], *rows])


def collect(
    paths: Sequence[str | os.PathLike], out: str | os.PathLike | None = None
) -> tuple[str, list[Path]]:
    """Read ``paths``, build the tables, write them under ``out``; returns (markdown, files)."""
    metrics_files = find_metrics(paths)
    runs = [run for path in metrics_files for run in load_runs(path)]
    if not runs:
        raise UserError("none of the metrics.json files holds an mIoU", "pass eval or train runs")
    name_variants(runs)  # runs of other settings are never averaged
    plain = [r for r in runs if r.protocol != TRAINING_FREE and not _is_ablation(r.ablation)]
    tables = [
        t
        for t in (
            table_ablation(runs),
            table_by_dataset(plain),
            table_by_clip(plain),
            table_corruption(plain),
            table_training_free(runs),
        )
        if t
    ]
    markdown = "\n".join(to_markdown(t) for t in tables)
    if out is None:
        out = os.path.commonpath([p.parent for p in metrics_files])
    out = Path(out)
    written = [atomic_write_text(out / "results.md", f"# Results ({len(runs)} rows)\n\n{markdown}")]
    written += [atomic_write_text(out / f"{t.name}.csv", to_csv(t)) for t in tables]
    written.append(atomic_write_text(out / "runs.csv", runs_csv(runs, out.resolve())))
    return markdown, written


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``collect_results.py PATH... [--out DIR]``; exit 2 on a user error."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="+", help="run or sweep folders (or metrics.json files)")
    parser.add_argument("--out", help="folder for the tables (default: the inputs' common folder)")
    args = parser.parse_args(argv)
    try:
        markdown, written = collect(args.paths, args.out)
    except UserError as err:
        if os.environ.get("HYDRA_FULL_ERROR", "0") == "1":
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(markdown)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
