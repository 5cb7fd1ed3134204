"""Student vs teacher speed for ``experiment=distill_folder`` (docs/BENCHMARKS.md).

Same images (``--images`` smooth random 512 x 512 RGB pictures), same run, each point in a
fresh process (its own peak resident memory), on the CPU:

- teacher ViT-B/16 + NACLIP + PAMR with the training-free protocol's windows (short side 336,
  224 px windows every 112 px), as ``src.predict`` runs it;
- teacher RN50 MaskCLIP (DenseCLIP) on the whole 512 px image;
- the ``distill_folder`` student (its default, and ``deeplabv3plus_r18``) exported to ONNX,
  run by onnxruntime through ``src.predict``'s ONNX path at 512 px.

Random weights at the real sizes (ViT-B/16 and RN50 weights are not available offline; speed
and memory do not depend on the weights), 21 classes. Images/s: images over the median time
per image after a warm-up; one thread timed by the thread's CPU time (steady on a shared
machine), two threads by wall time.

    python scripts/bench_distill.py          # merged into docs/benchmarks.json, BENCHMARKS.md
    python scripts/bench_distill.py --out /tmp/b.json --images 1 --threads 1   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "scripts"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

KEY = "distill_student_vs_teacher"  #: its section of docs/benchmarks.json

NAMES = [f"class {i}" for i in range(21)]
#: point -> (teacher kwargs, prediction settings)
TEACHERS = {
    "ViT-B/16 NACLIP + PAMR, windows 224/112 at 336": (
        {"clip_model": "ViT-B-16", "pretrained": None, "quick_gelu": True, "head": "naclip",
         "refine": "pamr"},
        {"max_size": 336, "min_size": 336, "sliding_window": True, "window": 224, "stride": 112},
    ),
    "RN50 MaskCLIP at 512": (
        {"clip_model": "RN50", "pretrained": None, "head": "maskclip"},
        {"max_size": 512, "min_size": None, "sliding_window": False, "window": 512, "stride": 512},
    ),
}  # fmt: skip
STUDENTS = ("deeplabv2_r18_shallow", "deeplabv3plus_r18")


def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ``ru_maxrss``, not inherited from
    the parent across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _images(count: int) -> list:
    import numpy as np

    from src.student.export import parity_images

    return [
        (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        for img in parity_images([(512, 512)] * count, seed=1)
    ]


def _settings(**kw):
    from src.prediction.predictor import Settings

    base = {"max_size": 512, "min_size": None, "sliding_window": False, "window": 512,
            "stride": 512, "window_batch": 8, "threshold": None, "logit_scale": None,
            "confidence_maps": False, "overlay_alpha": 0.5, "legend_max_entries": 24}  # fmt: skip
    return Settings(**(base | kw))


def _time(predictor, settings, images, threads: int, warmup: int) -> dict:
    import torch

    from src.prediction.predictor import predict_image

    clock = time.thread_time if threads == 1 else time.perf_counter
    times = []
    with torch.inference_mode():
        for i, image in enumerate([*images[:warmup], *images]):
            start = clock()
            predict_image(predictor, image, settings, torch.device("cpu"))
            if i >= warmup:
                times.append(clock() - start)
    median = statistics.median(times)
    return {"seconds_per_image": median, "images_per_s": 1.0 / median, "peak_rss_mb": _peak_mb(),
            "clock": "thread CPU time" if threads == 1 else "wall"}  # fmt: skip


def export_student(name: str, path: Path) -> None:
    """The distill_folder student ``name`` (random weights, ViT-B/16 text width) as ONNX."""
    import warnings

    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from src.student.export import export_student as export
    from src.teacher.model import DenseClipTeacher

    teacher = DenseClipTeacher(clip_model="ViT-B-16", pretrained=None, quick_gelu=True,
                               class_names=NAMES, templates=["a photo of a {}."])  # fmt: skip
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=distill_folder", f"student={name}",
                                          "data.class_names=[a]", "paths.output_dir=."])  # fmt: skip
    student = instantiate(cfg.student, _partial_=True)(
        teacher=teacher, class_names=NAMES, background=False, unseen_indices=[]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export(student.eval(), path, fmt="onnx")


def run_point(args) -> dict:
    """One point, in this process."""
    import torch

    torch.set_num_threads(args.threads)
    images = _images(args.images)
    if args.point in TEACHERS:
        from src.prediction.predictor import predictor_from_teacher
        from src.teacher.model import DenseClipTeacher

        kwargs, settings = TEACHERS[args.point]
        teacher = DenseClipTeacher(**kwargs, class_names=NAMES, templates=["a photo of a {}."])
        predictor = predictor_from_teacher(teacher.eval())
        out = _time(predictor, _settings(**settings), images, args.threads, args.warmup)
    else:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        from src.prediction.onnx_student import onnx_predictor

        predictor = onnx_predictor(args.onnx)
        out = _time(predictor, _settings(), images, args.threads, args.warmup)
        out["file_mb"] = round(Path(args.onnx).stat().st_size / 2**20, 1)
    return {"point": args.point, "threads": args.threads, **out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.json")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--point", help=argparse.SUPPRESS)
    parser.add_argument("--onnx", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.point:
        args.threads = args.threads[0]
        print(json.dumps(run_point(args)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        points = [(p, None) for p in TEACHERS]
        for name in STUDENTS:
            path = Path(tmp) / f"{name}.onnx"
            export_student(name, path)
            points.append((f"student {name} (ONNX) at 512", path))
        for point, onnx in points:
            for threads in args.threads:
                cmd = [sys.executable, __file__, "--point", point, "--threads", str(threads),
                       "--images", str(args.images), "--warmup", str(args.warmup)]  # fmt: skip
                if onnx:
                    cmd += ["--onnx", str(onnx)]
                env = os.environ | {"OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
                if proc.returncode:
                    raise SystemExit(proc.stderr[-3000:])
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                print(rows[-1], flush=True)
    doc = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        f"(load average {os.getloadavg()[0]:.1f} at the end)",
        "images": args.images,
        "rows": rows,
        "load_note": None
        if os.getloadavg()[0] <= (os.cpu_count() or 1)
        else (
            "The machine was busier than its cores during the run: the two-thread (wall time) "
            "rows measure the contention, not the models; rerun on an idle machine."
        ),
    }
    publish(doc, args.out)


def publish(doc: dict, path: Path) -> None:
    """Merge ``doc`` into the benchmark JSON ``path`` (key :data:`KEY`) and regenerate the
    BENCHMARKS.md beside it; print the table."""
    from bench import merge_results, write_outputs

    write_outputs(merge_results(path, {KEY: doc}), path, path.with_name("BENCHMARKS.md"))
    print("\n".join(section(doc)))


def section(doc: dict) -> list[str]:
    """The BENCHMARKS.md section of :data:`KEY`."""
    lines = [
        "## distill_folder: the exported student vs its teacher",
        "",
        f"`scripts/bench_distill.py`, {doc['date']}, {doc['machine']}; {doc['images']} images of "
        "512 x 512 px, each point in its own process, CPU. Random weights at the real sizes "
        "(ViT-B/16 and RN50 weights are not available offline; speed and memory do not depend "
        "on them), 21 classes. One thread: thread CPU time; two threads: wall time. The "
        "student runs through `src.predict`'s ONNX path (onnxruntime, plus torch for resizing "
        "and decoding: most of its resident memory).",
    ]
    if doc.get("load_note"):
        lines += ["", f"**{doc['load_note']}**"]
    lines += [
        "",
        "| model | threads | images/s | s/image | peak RSS (MB) |",
        "|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        lines.append(f"| {r['point']} | {r['threads']} | {r['images_per_s']:.2f} | "
                     f"{r['seconds_per_image']:.3f} | {r['peak_rss_mb']:.0f} |")  # fmt: skip
    return [*lines, ""]


if __name__ == "__main__":
    main()
