"""Speed benchmarks (``make bench``): writes docs/benchmarks.json and docs/BENCHMARKS.md.

- ``teacher_over_encode_image``: the DenseCLIP teacher's forward (dense features, cosine
  logits for each of ``--classes`` vocabulary sizes, upsampled to the input) over
  open_clip's own ``encode_image``, same CLIP instance, batch and resolution (each model's
  native one), random weights (nothing is downloaded); also the dense pass alone (before
  the upsampling). They are timed alternately in one run; each time is the median of
  ``--repeats`` runs after ``--warmup`` runs, on ``--threads`` threads. Goal: at most 1.05.
- ``text_embeddings``: class embeddings of the 171 COCO-Stuff classes x 85 templates with
  RN50's text tower (random weights, CPU): time to build once (measured on the first
  ``--text-templates`` templates and scaled to all 85, since encoding is linear in the
  number of prompts; ``--text-templates 85`` measures it all) and time to load from the cache
  (an explicit cache folder in a temporary directory). Goal for the load: under 1 s.

The JSON is merged: keys other benchmarks wrote (e.g. ``teacher_overhead_in_step``) are kept,
and BENCHMARKS.md is regenerated from the whole file.

    python scripts/bench.py                 # the full set, a few minutes on 2 CPU cores
    python scripts/bench.py --quick --out /tmp/b.json   # tiny models, seconds (smoke test)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from src.utils.io import atomic_save_json, atomic_write_text  # noqa: E402

GOAL_RATIO = 1.05
GOAL_LOAD_S = 1.0
MY_KEYS = ("teacher_over_encode_image", "text_embeddings", "machine")


# ---------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_clock(device: torch.device) -> tuple[Callable[[], float], str]:
    """The clock to time with: the calling thread's CPU time when torch runs on one CPU
    thread (it does not count the time other processes hold the core, so a shared machine
    gives steady ratios), else wall time."""
    if device.type == "cpu" and torch.get_num_threads() == 1:
        return time.thread_time, "thread CPU time"
    return time.perf_counter, "wall time"


def interleaved_times(
    fns: dict[str, Callable[[], Any]], *, repeats: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds per call of each function, calling them in turn so that a change in machine
    load hits all of them alike; the order rotates every round (``ABC BCA CAB ...``) so that
    none always runs first."""
    clock, _ = bench_clock(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for i in range(warmup + repeats):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            fn = fns[name]
            _sync(device)
            start = clock()
            fn()
            _sync(device)
            if i >= warmup:
                times[name].append(clock() - start)
    return times


def paired_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median over repeats of ``num[i] / den[i]`` (pairs timed back to back)."""
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


def teacher_over_encode_image(
    clip_model: str,
    *,
    batch: int = 2,
    classes: Sequence[int] = (20, 171),
    repeats: int = 5,
    warmup: int = 1,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """Teacher forward time / ``encode_image`` time of the same random-weight CLIP, for each
    vocabulary size in ``classes``; also the dense pass alone (``dense_scores``: features and
    cosine scores at feature resolution, before the upsampling to the input size)."""
    from src.teacher.model import DenseClipTeacher

    dev = torch.device(device)
    teacher = DenseClipTeacher(
        clip_model=clip_model,
        pretrained=None,
        class_names=["class 0"],
        templates="photo",  # one template: the vocabulary's size, not its text, costs here
    ).to(dev)
    size = teacher.image_size
    images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(dev)
    runs = []
    for k in classes:
        teacher.set_class_names([f"class {i}" for i in range(k)])
        with torch.inference_mode():
            times = interleaved_times(
                {
                    "forward": lambda: teacher(images),
                    "dense_scores": lambda: teacher.dense_scores(images),
                    "encode_image": lambda: teacher.clip.encode_image(images),
                },
                repeats=repeats,
                warmup=warmup,
                device=dev,
            )
        ms = {name: 1000 * statistics.median(t) for name, t in times.items()}
        runs.append(
            {
                "model": clip_model,
                "device": device,
                "classes": k,
                "ratio": round(paired_ratio(times["forward"], times["encode_image"]), 4),
                "dense_scores_ratio": round(
                    paired_ratio(times["dense_scores"], times["encode_image"]), 4
                ),
                "teacher_forward_ms": round(ms["forward"], 2),
                "dense_scores_ms": round(ms["dense_scores"], 2),
                "encode_image_ms": round(ms["encode_image"], 2),
                "batch": batch,
                "resolution": size,
                "repeats": repeats,
                "warmup": warmup,
                "threads": torch.get_num_threads(),
                "clock": bench_clock(dev)[1],
            }
        )
    return runs


def text_embedding_times(
    clip_model: str = "RN50",
    *,
    class_names: Sequence[str],
    num_templates: int = 85,
    measure_templates: int | None = None,
    cache_dir: str | os.PathLike,
    load_repeats: int = 5,
) -> dict[str, Any]:
    """Build the (K, D) text embeddings once (timed) and load them from the cache (timed)."""
    import open_clip

    from src.prompts import TEMPLATES
    from src.teacher.loading import create_clip
    from src.teacher.text import (
        cache_key,
        encode_class_names,
        fast_text_encoder,
        load_or_build,
    )

    templates = TEMPLATES[:num_templates]
    measured = templates[: measure_templates or num_templates]
    clip = create_clip(clip_model, None).eval()
    tokenizer = open_clip.get_tokenizer(clip_model)
    names = list(class_names)

    def build() -> torch.Tensor:
        # the teacher's encoder: open_clip's encode_text without the padding past the longest prompt
        return encode_class_names(fast_text_encoder(clip), tokenizer, names, measured)

    key = cache_key({"model": clip_model, "weights": "random (bench)"}, names, measured)
    clock, clock_name = bench_clock(torch.device("cpu"))
    start = clock()
    emb = load_or_build(key, cache_dir, build, num_classes=len(names))
    build_s = clock() - start

    def must_not_build() -> torch.Tensor:
        raise RuntimeError("the text cache was not used")

    loads = []
    for _ in range(load_repeats):
        start = time.perf_counter()
        again = load_or_build(key, cache_dir, must_not_build, num_classes=len(names))
        loads.append(time.perf_counter() - start)
    assert torch.equal(again, emb)
    scale = len(templates) / len(measured)
    return {
        "clip_model": clip_model,
        "classes": len(names),
        "templates": len(templates),
        "prompts": len(names) * len(templates),
        "build_s": round(build_s * scale, 3),
        "build_measured_templates": len(measured),
        "build_extrapolated": len(measured) != len(templates),
        "build_clock": clock_name,
        "load_from_cache_s": round(statistics.median(loads), 4),
        "cache_entry": list(emb.shape),
        "threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------------- reporting
def machine_info() -> dict[str, Any]:
    """CPU model, cores, torch version, GPU (if any) and date."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    try:
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def merge_results(path: Path, updates: dict[str, Any]) -> dict[str, Any]:
    """Read ``path`` (if any), replace the keys in ``updates``, keep every other key."""
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            print(f"warning: {path} is not valid JSON; starting a new one", file=sys.stderr)
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def render_markdown(data: dict[str, Any]) -> str:
    """BENCHMARKS.md from the benchmark JSON (every key, known ones as tables)."""
    lines = ["# Benchmarks", "", "Generated by `make bench` (`scripts/bench.py`) from `docs/benchmarks.json`;", "do not edit by hand.", ""]  # fmt: skip
    machine = data.get("machine", {})
    if machine:
        lines += ["## Machine", ""]
        lines += [f"- {k}: {v}" for k, v in machine.items()]
        lines.append("")
    ratio = data.get("teacher_over_encode_image")
    if isinstance(ratio, dict):
        goal = ratio.get("goal_max", GOAL_RATIO)
        lines += [
            "## Teacher forward / CLIP `encode_image`",
            "",
            "Same CLIP instance (random weights), batch and native resolution; the three are "
            "timed alternately after warm-up (on one CPU thread with the thread's CPU time); "
            "times are medians, ratios the median of the back-to-back pairs' ratios. "
            f"Goal: forward / encode_image at most {goal}. "
            "`dense` is the dense pass alone (features and cosine scores at feature "
            "resolution); `forward` adds the bilinear upsampling of the K score maps to the "
            "input size, whose cost grows with K x H x W: at 171 classes a batch of two 224 px "
            "images gives 2 x 171 x 224 x 224 floats (69 MB), and allocating and writing them "
            "alone costs about a tenth of an RN50 `encode_image` on one CPU thread.",
            "",
            "| model | device | classes | forward / encode_image | dense / encode_image | forward (ms) | dense (ms) | encode_image (ms) | batch x resolution | threads | goal met |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in ratio.get("runs", []):
            ok = "yes" if r["ratio"] <= goal else "**no**"
            lines.append(
                f"| {r['model']} | {r['device']} | {r['classes']} | {r['ratio']:.3f} | "
                f"{r['dense_scores_ratio']:.3f} | {r['teacher_forward_ms']:.1f} | "
                f"{r['dense_scores_ms']:.1f} | {r['encode_image_ms']:.1f} | "
                f"{r['batch']} x {r['resolution']}px | {r['threads']} | {ok} |"
            )
        lines.append("")
    text = data.get("text_embeddings")
    if isinstance(text, dict):
        lines += ["## Text embeddings", ""]
        for dev, t in text.items():
            if not isinstance(t, dict):
                continue
            how = (
                f"extrapolated from {t['build_measured_templates']} of {t['templates']} templates"
                if t.get("build_extrapolated")
                else "measured"
            )
            ok = "yes" if t["load_from_cache_s"] < GOAL_LOAD_S else "**no**"
            lines += [
                f"- {t['clip_model']} text tower on {dev}, {t['classes']} classes x "
                f"{t['templates']} templates ({t['prompts']} prompts):",
                f"  - build once: {t['build_s']:.1f} s ({how}; {t.get('build_clock', 'wall time')})",
                f"  - load from cache: {t['load_from_cache_s']:.4f} s "
                f"(goal under {GOAL_LOAD_S:.0f} s: {ok})",
            ]
        lines.append("")
    others = {k: v for k, v in data.items() if k not in MY_KEYS}
    for key, value in others.items():
        if key in SECTION_RENDERERS and isinstance(value, dict):
            lines += SECTION_RENDERERS[key](value)
            continue
        lines += [
            f"## {key}",
            "",
            "```json",
            json.dumps(value, indent=2, sort_keys=True),
            "```",
            "",
        ]
    return "\n".join(lines)


def _export_section(section: dict[str, Any]) -> list[str]:
    """``export`` (scripts/bench_export.py): parity of exported students with PyTorch."""
    lines = [
        "## Export parity (`python -m src.export`)",
        "",
        "Exported file against the student in PyTorch (fp32, CPU), on the images "
        "`src.export` checks with (sizes below); `scripts/bench_export.py`. Forward: one "
        "image at the largest size, median, onnxruntime / `torch.jit.load` vs PyTorch eager. "
        "`vs fp64`: the largest difference to the same student run in float64, of PyTorch "
        "in fp32 and of the file: how much rounding the network itself amplifies (a deep "
        "random-weight network amplifies it far more than a trained one).",
        "",
        "| model | format | max abs diff to PyTorch | largest score | PyTorch fp32 vs fp64 | file vs fp64 | argmax agreement | file (MB) | forward exported (ms) | forward PyTorch (ms) | sizes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in section.get("runs", []):
        sizes = ", ".join(f"{h}x{w}" for h, w in r.get("sizes", []))
        lines.append(
            f"| {r['model']} | {r['format']} | {r['max_abs_diff']:.1e} | "
            f"{r.get('max_abs_score', float('nan')):.3g} | "
            f"{r.get('pytorch_fp32_vs_fp64', float('nan')):.1e} | "
            f"{r.get('exported_vs_fp64', float('nan')):.1e} | {100 * r['argmax_agree']:.2f}% | {r['file_mb']} | {r['forward_ms_exported']} | "
            f"{r['forward_ms_pytorch']} | {sizes} |"
        )
    machine = section.get("machine", {})
    if machine:
        lines.append(f"\nMeasured {machine.get('date', '')} on {machine.get('cpu', '')}, "
                     f"{section.get('runs', [{}])[0].get('threads', '?')} thread(s), load "
                     f"average {machine.get('load_average_1min', '?')} (a shared machine: "
                     "forward times are rough, the differences are exact).")  # fmt: skip
    return [*lines, ""]


def _gpu_section(section: dict[str, Any]) -> list[str]:
    """``gpu`` (scripts/bench_gpu.py, ``make bench-gpu``): teacher and student on CUDA."""
    lines = [
        f"## GPU: {section.get('device')} (`make bench-gpu`)",
        "",
        f"torch {section.get('torch')}, CUDA {section.get('cuda')}, {section.get('date')}; "
        f"dense bf16 peak used for MFU: {section.get('peak_bf16_tflops')} TFLOP/s.",
        "",
        "Teacher dtypes: `fp32`; `bf16` / `fp16`: `teacher.precision` (the weights); "
        "`amp_bf16`: fp32 weights under `torch.autocast`. compile: `teacher.compile=true` "
        "(first call: the compilation included). sync: the forward under "
        "`torch.cuda.set_sync_debug_mode('error')` after warm-up (`none`: no host-device "
        "synchronisation; else the error), and with each refinement.",
        "",
        "| CLIP | head | size | dtype | compile | teacher img/s | encode_image img/s | teacher / encode_image | peak GB | first call s | sync (head / +refine) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in section.get("teacher", []):
        compiled = r.get("compile", False)
        if "error" in r:
            lines.append(f"| {r['model']} | {r['head']} | {r['size']} | {r['dtype']} | "
                         f"{compiled} | error: {r['error']} | | | | | |")  # fmt: skip
            continue
        syncs = [str(r.get("sync", "n/a"))] + [
            f"{k.removeprefix('sync_')}: {v}" for k, v in r.items() if k.startswith("sync_")
        ]
        lines.append(
            f"| {r['model']} | {r['head']} | {r['size']} | {r['dtype']} | {compiled} | "
            f"{r['teacher_images_per_s']} | {r['encode_image_images_per_s']} | "
            f"{r['teacher_over_encode_image']} | {r['teacher_peak_memory_gb']} | "
            f"{r.get('first_call_s', '')} | {' / '.join(syncs)} |"
        )
    lines += [
        "",
        "| student (teacher) | crop | batch | compile | ms / step | img/s | TFLOP / step | MFU | peak GB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in section.get("student", []):
        who = f"{r['student']} ({r['teacher']})"
        if "error" in r:
            lines.append(f"| {who} | {r['crop']} | {r['batch']} | {r['compile']} | "
                         f"error: {r['error']} | | | | |")  # fmt: skip
            continue
        mfu = "n/a" if r.get("mfu") is None else f"{100 * r['mfu']:.1f}%"
        lines.append(
            f"| {who} | {r['crop']} | {r['batch']} | {r['compile']} | {r['step_ms']} | "
            f"{r['images_per_s']} | {r['tflops_per_step']} | {mfu} | {r['peak_memory_gb']} |"
        )
    return [*lines, ""]


def _vs_authors_section(section: dict[str, Any]) -> list[str]:
    """scripts/bench_vs_authors.py: ours / theirs per head, case and thread count."""
    m = section.get("machine", {})
    lines = [
        "## Our heads beside the authors' code",
        "",
        f"`make bench-authors` (`{section.get('command', '')}`), {section.get('date', '')}, "
        f"{m.get('cpu')} ({m.get('cores')} cores), torch {m.get('torch')}, device "
        f"{m.get('device')}{' ' + m['cuda'] if m.get('cuda') else ''}"
        + (
            f", load average (1/5/15 min) {m['load_average_before']} before and "
            f"{m['load_average_after']} after the run ({section.get('minutes')} min; the machine "
            "is shared: times are rough, the alternation keeps the ratios fair)"
            if m.get("load_average_before")
            else ""
        )
        + f"{'; a --quick development run, not the numbers' if section.get('quick') else ''}. "
        "The authors' segmentor (their repository, run as scripts/make_head_fixtures.py runs "
        "it, batch 1) and ours on the same seeded random ViT-B/16 (and DINO ViT-B/8 proxy), "
        "text and images, one process each, timed alternately after warm-up "
        f"(median of {section.get('repeats')}). `whole`: image-size logits of one image; "
        "`slide`: a 336 x 448 image through each author's own crop / stride, resize, softmax "
        "and argmax; `slide_pamr`: the same with PAMR (NACLIP). Ratio > 1: ours is faster; "
        "best batch: the fastest of ours at batch 1 and "
        f"{', '.join(str(b) for b in section.get('batches', [])) or 'the batch given'}"
        + (
            ""
            if section.get("slide_batches") is None
            else f" (the slide cases: batch 1{''.join(f', {b}' for b in section['slide_batches'])})"
        )
        + ".",
        "",
        *(
            [
                "Ours runs with the teacher's defaults, `teacher.packed_weights=true` among "
                "them: on a CPU in fp32 the image towers' linear layers go through oneDNN with "
                "their weights packed once (the same products to rounding; one more copy of "
                "those weights in memory: the ProxyCLIP rows' peak; docs/TEACHERS.md).",
                "",
            ]
            if section.get("ours_packed_weights")
            else []
        ),
        "Ours in bf16 (`--ours-precision bf16`, rows `bf16`) is a precision change, not an fp32 "
        "speed-up: bf16 weights and matrix products, the label-deciding parts (softmaxes, "
        "cosines, PAMR) in fp32; the authors' side is fp32 in every row. `labels agree`: the "
        "fraction of the first image's pixels whose class (batch 1) is the same as theirs and, "
        "for bf16, as ours in fp32.",
        "",
        "| head | case | threads | ours precision | theirs img/s | ours b1 img/s | ours / theirs (b1) | ours best batch img/s | ours / theirs (best) | peak MB theirs / ours b1 | labels agree: theirs / our fp32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def pct(v) -> str:
        return "-" if v is None else f"{100 * v:.2f}%"

    for r in section.get("rows", []):
        if "error" in r:
            lines.append(f"| {r['head']} | {r['case']} | {r['threads']} | | failed: {r['error']} "
                         "| | | | | | |")  # fmt: skip
            continue
        best = r.get("best_batch")
        b = r.get(f"ours_b{best}") if best else None
        agree = r.get("labels_agree", {})
        lines.append(
            f"| {r['head']} | {r['case']} | {r['threads']} | {r.get('precision', 'fp32')} | "
            f"{r['theirs']['images_per_s']:.3g} | "
            f"{r['ours_b1']['images_per_s']:.3g} | {r['ratio_b1']:.2f} | "
            + (f"{b['images_per_s']:.3g} (x{best}) | {r[f'ratio_b{best}']:.2f}" if b else "| ")
            + f" | {r['theirs']['peak_mb']:.0f} / {r['ours_b1']['peak_mb']:.0f} | "
            + f"{pct(agree.get('theirs'))} / {pct(agree.get('ours_fp32'))} |"
        )
    return [*lines, ""]


#: tables for sections other scripts write (the rest are shown as JSON)
def _distill_section(section: dict[str, Any]) -> list[str]:
    from bench_distill import section as render  # scripts/bench_distill.py

    return render(section)


SECTION_RENDERERS = {
    "export": _export_section,
    "gpu": _gpu_section,
    "vs_authors": _vs_authors_section,
    "distill_student_vs_teacher": _distill_section,
}


def write_outputs(data: dict[str, Any], json_path: Path, md_path: Path) -> None:
    atomic_save_json(json_path, data)
    atomic_write_text(md_path, render_markdown(data))


# ---------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.json")
    parser.add_argument("--md", type=Path, default=None, help="default: BENCHMARKS.md beside --out")
    parser.add_argument("--models", nargs="+", default=["RN50", "ViT-B-16"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--classes", type=int, nargs="+", default=[20, 171])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--text-model", default="RN50")
    parser.add_argument("--text-templates", type=int, default=None,
                        help="templates actually encoded, the rest extrapolated (default 1)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (0: torch's default); one thread gives "
                        "steadier ratios on a shared machine")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="tiny test models (smoke test)")
    parser.add_argument("--skip-text", action="store_true")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    md_path = args.md or args.out.with_name("BENCHMARKS.md")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if args.quick:
        args.models, args.batch, args.classes = ["dc-test-rn", "dc-test-vit"], 1, [3]
        args.repeats, args.warmup, args.text_model = 2, 1, "dc-test-rn"

    runs: list[dict[str, Any]] = []
    for model in args.models:
        for dev in devices:
            for r in teacher_over_encode_image(
                model,
                batch=args.batch,
                classes=args.classes,
                repeats=args.repeats,
                warmup=args.warmup,
                device=dev,
            ):
                runs.append(r)
                print(
                    f"{model} on {dev}, {r['classes']} classes: teacher / encode_image = "
                    f"{r['ratio']:.3f} (dense pass alone {r['dense_scores_ratio']:.3f})",
                    flush=True,
                )
    ratios = {"goal_max": GOAL_RATIO, "runs": runs}
    updates: dict[str, Any] = {"teacher_over_encode_image": ratios}

    if not args.skip_text:
        from src.data.classnames import COCOSTUFF171

        names = list(COCOSTUFF171[:5]) if args.quick else list(COCOSTUFF171)
        text: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="bench-text-cache-") as cache_dir:
            templates = 2 if args.quick else 85
            measure = args.text_templates or 1
            t = text_embedding_times(
                args.text_model,
                class_names=names,
                num_templates=templates,
                measure_templates=min(measure, templates),
                cache_dir=cache_dir,
            )
        text["cpu"] = t
        print(
            f"text embeddings {t['classes']} x {t['templates']}: build {t['build_s']:.1f} s, "
            f"load {t['load_from_cache_s']:.4f} s",
            flush=True,
        )
        updates["text_embeddings"] = text

    updates["machine"] = machine_info()
    data = merge_results(args.out, updates)
    write_outputs(data, args.out, md_path)
    print(f"wrote {args.out} and {md_path}")
    return data


if __name__ == "__main__":
    main()
