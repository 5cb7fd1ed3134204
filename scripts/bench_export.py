"""Export parity (merged into docs/benchmarks.json as ``export``): every student head at the
paper's size (ResNet-101-d8 with a random-weight RN50 teacher; nothing is downloaded), and any
trained checkpoint given, exported to ONNX and TorchScript by :mod:`src.student.export` and run
against PyTorch (fp32, CPU) on the images ``python -m src.export`` checks with: the largest
absolute score difference (and the largest score, for scale; random students get BatchNorm
statistics from a few passes first, see :func:`calibrate_batchnorm`), the share of pixels whose class agrees, the file size, and the
time of one forward pass of each runtime at the largest size (median of ``--repeats``).

    python scripts/bench_export.py                      # three heads, a few minutes on a CPU
    python scripts/bench_export.py --ckpt logs/train/runs/<run>/checkpoints/last.ckpt
    python scripts/bench_export.py --quick --out /tmp/b.json   # tiny students (smoke test)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "scripts"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import torch  # noqa: E402
from bench import machine_info, merge_results, write_outputs  # noqa: E402

from src.student.export import (  # noqa: E402
    SUFFIXES,
    check_parity,
    export_student,
    load_runner,
    parity_images,
    reference_scores,
    rounding_floor,
)

KEY = "export"
SIZES = [(224, 224), (181, 263), (320, 240)]  # conf/export.yaml's parity_sizes


def calibrate_batchnorm(student: Any, *, steps: int = 3, size: int = 224) -> None:
    """Give a random-weight student the BatchNorm statistics of real activations (running
    averages over a few train-mode passes on parity-style images), so that its scores have a
    trained network's scale: with the initial statistics (mean 0, var 1) the activations grow
    through 101 layers to sizes no trained student has, and so do their rounding errors."""
    for module in student.net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average
    student.net.train()
    with torch.no_grad():
        for i in range(steps):
            images = torch.stack(parity_images([(size, size)] * 2, seed=100 + i))
            student.net(student.normalize(images))
    student.eval()


def measure(student: Any, name: str, fmt: str, *, repeats: int, folder: Path) -> dict[str, Any]:
    """Export ``student`` as ``fmt``, check parity, time both runtimes at the largest size."""
    path = folder / f"{name}{SUFFIXES[fmt]}"
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_student(student, path, fmt=fmt)
        export_s = time.perf_counter() - start
        parity = check_parity(student, path, fmt=fmt, images=parity_images(SIZES))
        floor = rounding_floor(student, path, fmt=fmt, images=parity_images(SIZES))
        run = load_runner(path, fmt=fmt)
    x = parity_images([max(SIZES, key=lambda s: s[0] * s[1])])[0][None]

    def median(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    exported_s = median(lambda: run(x.numpy()))
    pytorch_s = median(lambda: reference_scores(student, x))
    path.unlink()
    return {
        "model": name,
        "format": fmt,
        "max_abs_diff": parity["max_abs_diff"],
        "max_abs_score": parity["max_abs_score"],
        "pytorch_fp32_vs_fp64": floor["pytorch_vs_fp64"],
        "exported_vs_fp64": floor["exported_vs_fp64"],
        "argmax_agree": parity["argmax_agree"],
        "file_mb": round(parity["file_bytes"] / 2**20, 1),
        "export_s": round(export_s, 1),
        "sizes": [list(s) for s in SIZES],
        "forward_ms_exported": round(1000 * exported_s, 1),
        "forward_ms_pytorch": round(1000 * pytorch_s, 1),
        "forward_size": list(x.shape[-2:]),
        "threads": torch.get_num_threads(),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.json")
    parser.add_argument("--md", type=Path, default=None, help="default: BENCHMARKS.md beside --out")
    parser.add_argument("--heads", nargs="+", default=["deeplabv2", "deeplabv3plus", "pspnet"])
    parser.add_argument("--ckpt", nargs="*", default=[], help="trained checkpoints to add")
    parser.add_argument("--ckpt-label", nargs="*", default=[], help="a name for each --ckpt")
    parser.add_argument("--formats", nargs="+", default=["onnx", "torchscript"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch / onnxruntime threads")
    parser.add_argument("--quick", action="store_true", help="tiny students (smoke test)")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    from src.student.checkpoint import load_student
    from src.student.model import DenseClipPlus
    from src.teacher.model import DenseClipTeacher

    clip, depth, stages = ("dc-test-rn", 18, 2) if args.quick else ("RN50", 101, 4)
    names = [f"class {i}" for i in range(3 if args.quick else 20)]
    students: list[tuple[str, Any]] = []
    for head in args.heads:
        torch.manual_seed(0)  # the same random teacher and student on every run
        teacher = DenseClipTeacher(clip_model=clip, pretrained=None, class_names=names,
                                   templates="photo")  # fmt: skip
        student = DenseClipPlus(teacher=teacher, backbone=depth, backbone_weights="none",
                                backbone_stages=stages, head=head, background=True)  # fmt: skip
        calibrate_batchnorm(student, size=64 if args.quick else 224)
        students.append((f"{head}-resnet{depth}-d8 (random, {clip} teacher)", student))
    labels = list(args.ckpt_label) + [f"checkpoint {ckpt}" for ckpt in args.ckpt]
    for ckpt, label in zip(args.ckpt, labels[: len(args.ckpt)], strict=True):
        students.append((label, load_student(ckpt)))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-export-") as folder:
        for i, (name, student) in enumerate(students):
            for fmt in args.formats:
                r = measure(student, name, fmt, repeats=args.repeats, folder=Path(folder) / str(i))
                rows.append(r)
                print(f"{name} {fmt}: max abs diff {r['max_abs_diff']:.2e} (scores up to "
                      f"{r['max_abs_score']:.3g}; vs float64: PyTorch fp32 {r['pytorch_fp32_vs_fp64']:.2e}, "
                      f"file {r['exported_vs_fp64']:.2e}), argmax agree "
                      f"{100 * r['argmax_agree']:.2f}%, {r['file_mb']} MB, forward "
                      f"{r['forward_ms_exported']} ms vs PyTorch {r['forward_ms_pytorch']} ms",
                      flush=True)  # fmt: skip
    data = merge_results(args.out, {KEY: {"runs": rows, "machine": machine_info()}})
    write_outputs(data, args.out, args.md or args.out.with_name("BENCHMARKS.md"))
    return data


if __name__ == "__main__":
    main()
