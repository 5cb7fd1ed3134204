"""GPU benchmark (``make bench-gpu``): writes a ``gpu`` section into docs/benchmarks.json.

On a machine without CUDA it prints one line and exits 0. On CUDA, with random weights
(nothing is downloaded):

- ``teacher``: images/s and peak memory of the DenseCLIP teacher's forward (dense scores for
  ``--classes`` classes, upsampled to the input) for every head the teacher offers
  (``teacher.head``, read from the registry; ResNet CLIPs have the heads that run on any
  tower; a head that needs a proxy's weights gets random ones) and input size, against
  open_clip's ``encode_image`` of the same CLIP at the same size, per ``--dtypes``: ``fp32``,
  ``bf16`` / ``fp16`` (``teacher.precision``: the weights in that dtype) and ``amp_bf16``
  (fp32 weights under ``torch.autocast``); eager and with ``teacher.compile=true``
  (``torch.compile`` of the head's forward; ``first_call_s`` includes the compilation).
  After warm-up one more forward runs under ``torch.cuda.set_sync_debug_mode("error")``,
  without refinement and with each of ``--sync-refines``: ``sync`` says ``none`` or the first
  line of the error naming the operation that synchronised host and device.
- ``student``: one DenseCLIP+ training step (online teacher labels, student forward, loss,
  backward, SGD step) at the paper's crop (512) and batch 4 / 8 / 16, in bf16 autocast with
  channels_last, with and without ``torch.compile`` of the student net: milliseconds per
  step, images/s, model FLOPs per step (counted by ``torch.utils.flop_counter``: student
  forward + backward and the teacher's forward), MFU against the device's dense bf16 peak
  (``--peak-tflops`` for a device not in :data:`PEAK_BF16_TFLOPS`), and peak memory.

    make bench-gpu                                  # = python scripts/bench_gpu.py
    python scripts/bench_gpu.py --students deeplabv2 --batches 8 --no-compile
    python scripts/bench_gpu.py --device cpu --quick --out /tmp/b.json   # tiny CPU smoke test
"""

from __future__ import annotations

import argparse
import datetime as _dt
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "scripts"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import torch  # noqa: E402
from bench import merge_results, write_outputs  # noqa: E402

from src.batch import CANDIDATES, IMAGE, TARGET, UNLABELLED  # noqa: E402

KEY = "gpu"
#: dense bf16 tensor-core peaks (TFLOP/s, no sparsity) by a part of the device name
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 80GB HBM3": 989.0,
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "H100": 756.0,
    "GH200": 989.0,
    "B200": 2250.0,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
}


def peak_tflops(device_name: str, override: float | None = None) -> float | None:
    """The dense bf16 peak of a device by its name (the longest matching key), or ``override``."""
    if override:
        return float(override)
    matches = [k for k in PEAK_BF16_TFLOPS if k.lower() in device_name.lower()]
    return PEAK_BF16_TFLOPS[max(matches, key=len)] if matches else None


def mfu(flops_per_step: float, seconds_per_step: float, peak: float | None) -> float | None:
    """Model FLOP utilisation: achieved FLOP/s over the peak (TFLOP/s)."""
    if not peak or seconds_per_step <= 0:
        return None
    return flops_per_step / seconds_per_step / (peak * 1e12)


def teacher_heads_for(clip_model: str) -> list[str]:
    """The heads to measure on ``clip_model``: every registered head on a ViT, the heads that
    run on any tower (DenseCLIP's value path) on a ResNet."""
    from src.teacher.heads import head_spec, registered_heads

    heads = registered_heads()
    if clip_model.upper().startswith("RN") or clip_model.endswith("-rn"):
        return [h for h in heads if not head_spec(h).vit_only]
    return heads


def _timer(device: torch.device) -> tuple[Callable[[], Any], Callable[[Any], float]]:
    """(start, stop) of a timing: CUDA events on a GPU, perf_counter elsewhere."""
    import time

    if device.type == "cuda":

        def start() -> Any:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            return begin, end

        def stop(events: Any) -> float:
            events[1].record()
            torch.cuda.synchronize(device)
            return events[0].elapsed_time(events[1]) / 1000

        return start, stop
    return time.perf_counter, lambda t0: time.perf_counter() - t0


def median_seconds(
    fn: Callable[[], Any], *, repeats: int, warmup: int, device: torch.device
) -> float:
    """Median seconds per call of ``fn`` after ``warmup`` calls."""
    start, stop = _timer(device)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = start()
        fn()
        times.append(stop(t))
    return statistics.median(times)


#: ``--dtypes``: name -> (``teacher.precision``, autocast dtype or None)
DTYPES = {
    "fp32": ("fp32", None),
    "bf16": ("bf16", None),
    "fp16": ("fp16", None),
    "amp_bf16": ("fp32", torch.bfloat16),
}


def _autocast(device: torch.device, dtype: str):
    """Autocast for the student's ``bf16`` and the teacher's ``amp_bf16``; else nothing."""
    if dtype in ("bf16", "amp_bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def sync_check(fn: Callable[[], Any], device: torch.device) -> str:
    """``none`` when ``fn`` runs without a host-device synchronisation (CUDA's sync debug mode
    set to ``error``), else the first line of the error (the operation that synchronised);
    ``n/a`` off CUDA."""
    if device.type != "cuda":
        return "n/a"
    torch.cuda.synchronize(device)
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        fn()
        return "none"
    except RuntimeError as err:
        return " ".join(str(err).split())[:200]
    finally:
        torch.cuda.set_sync_debug_mode(previous)
        torch.cuda.synchronize(device)


def _random_proxy_weights(head: str, folder: Path) -> str | None:
    """A random state dict of the default proxy's architecture, for a head whose spec
    ``needs_weights`` (nothing is downloaded); ``None`` for the others."""
    import inspect

    from src.teacher.heads import head_spec
    from src.teacher.model import DenseClipTeacher
    from src.teacher.proxy import proxy_spec

    if not head_spec(head).needs_weights:
        return None
    name = inspect.signature(DenseClipTeacher).parameters["proxy"].default
    path = folder / f"{name}_random.pth"
    if not path.is_file():
        import timm

        model = timm.create_model(proxy_spec(name).timm_name, pretrained=False, num_classes=0)
        torch.save(model.state_dict(), path)
    return str(path)


def teacher_throughput(
    clip_model: str,
    *,
    head: str,
    size: int,
    batch: int,
    classes: int,
    dtype: str,
    repeats: int,
    warmup: int,
    device: torch.device,
    compiled: bool = False,
    sync_refines: Sequence[str] = (),
    folder: Path | None = None,
) -> dict[str, Any]:
    """Images/s and peak memory of the teacher's forward (eager or compiled) and of
    ``encode_image`` of the same CLIP, same size; the sync check (:func:`sync_check`)."""
    import time

    from src.prediction.models import teacher_has_head_option
    from src.teacher.model import DenseClipTeacher

    names = [f"class {i}" for i in range(classes)]
    precision, autocast = DTYPES[dtype]
    options: dict[str, Any] = {"head": head} if teacher_has_head_option() else {}
    from src.teacher.heads import head_spec

    if options and head_spec(head).needs_regions:  # weights-free region masks, uncached
        options["masks"] = "superpixels"
    row: dict[str, Any] = {"model": clip_model, "head": head, "size": size, "batch": batch,
                           "classes": classes, "dtype": dtype, "compile": compiled}  # fmt: skip
    try:
        proxy = _random_proxy_weights(head, folder or Path("."))
        if proxy is not None:
            options["proxy_weights"] = proxy
        teacher = DenseClipTeacher(
            clip_model=clip_model, pretrained=None, class_names=names, templates="photo",
            precision=precision, compile=compiled, **options,
        ).to(device)  # fmt: skip
    except Exception as err:  # e.g. a head its CLIP cannot run
        return row | {"error": " ".join(str(err).split())[:200]}
    images = torch.randn(batch, 3, size, size, device=device)
    import open_clip

    encoder = (
        open_clip.create_model(
            clip_model,
            pretrained=None,
            force_image_size=size if size != teacher.image_size else None,
        )
        .visual.to(device)
        .eval()
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    amp = torch.autocast(device.type, dtype=autocast) if autocast else nullcontext()
    with torch.inference_mode(), amp:
        try:
            begin = time.perf_counter()
            teacher(images)  # the first call compiles (teacher.compile=true)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            row["first_call_s"] = round(time.perf_counter() - begin, 2)
            forward = median_seconds(lambda: teacher(images), repeats=repeats, warmup=warmup,
                                     device=device)  # fmt: skip
        except Exception as err:  # e.g. torch.compile without a working Triton
            return row | {"error": " ".join(str(err).split())[:300]}
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
        row["sync"] = sync_check(lambda: teacher(images), device)
        for refine in sync_refines:  # the refinements on the same scores
            teacher.refine = refine
            row[f"sync_{refine}"] = sync_check(lambda: teacher(images), device)
            teacher.refine = None
        try:
            encode = median_seconds(lambda: encoder(images), repeats=repeats, warmup=warmup,
                                    device=device)  # fmt: skip
        except Exception as err:  # noqa: BLE001 - an encoder that cannot take this size
            encode, row["encode_error"] = None, " ".join(str(err).split())[:200]
    return row | {
        "teacher_images_per_s": round(batch / forward, 2),
        "precision": precision,
        "autocast": None if autocast is None else str(autocast).removeprefix("torch."),
        "encode_image_images_per_s": None if encode is None else round(batch / encode, 2),
        "teacher_over_encode_image": None if encode is None else round(forward / encode, 3),
        "teacher_peak_memory_gb": round(peak / 2**30, 3),
    }


def student_step(
    *,
    clip_model: str,
    head: str,
    depth: int,
    stages: int,
    crop: int,
    batch: int,
    classes: int,
    compile: bool,
    dtype: str,
    channels_last: bool,
    repeats: int,
    warmup: int,
    device: torch.device,
    peak: float | None,
) -> dict[str, Any]:
    """Step time, images/s, FLOPs, MFU and peak memory of one DenseCLIP+ training step."""
    import time

    from torch.utils.flop_counter import FlopCounterMode

    from src.student.model import DenseClipPlus
    from src.teacher.model import DenseClipTeacher

    row: dict[str, Any] = {"teacher": clip_model, "student": f"{head}-resnet{depth}-d8",
                           "crop": crop, "batch": batch, "classes": classes, "dtype": dtype,
                           "channels_last": channels_last, "compile": compile}  # fmt: skip
    names = [f"class {i}" for i in range(classes)]
    teacher = DenseClipTeacher(clip_model=clip_model, pretrained=None, class_names=names,
                               templates="photo")  # fmt: skip
    student = DenseClipPlus(teacher=teacher, backbone=depth, backbone_weights="none", head=head,
                            backbone_stages=stages).to(device)  # fmt: skip
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    student.net.to(memory_format=fmt)
    student.train()
    net = torch.compile(student.net) if compile else student.net
    opt = torch.optim.SGD(student.net.parameters(), lr=1e-3, momentum=0.9)
    images = torch.randn(batch, 3, crop, crop, device=device).contiguous(memory_format=fmt)
    target = torch.full((batch, crop, crop), UNLABELLED, device=device)
    candidates = torch.ones(batch, classes, dtype=torch.bool, device=device)
    data = {IMAGE: images, TARGET: target, CANDIDATES: candidates}

    def step(model: torch.nn.Module = net) -> None:
        with _autocast(device, dtype):
            logits = torch.nn.functional.interpolate(
                model(images), size=(crop, crop), mode="bilinear", align_corners=False
            )
            labels = student.pseudo_targets(data, logits)  # the online teacher
            loss = torch.nn.functional.cross_entropy(logits.float(), labels, ignore_index=255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    try:
        begin = time.perf_counter()
        step()  # the first step compiles
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        first = time.perf_counter() - begin
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = median_seconds(step, repeats=repeats, warmup=warmup, device=device)
        memory = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    except Exception as err:  # e.g. torch.compile without a working Triton
        return row | {"error": " ".join(str(err).split())[:300]}
    counter = FlopCounterMode(display=False)
    with counter:  # eager, same shapes: the model's FLOPs, whatever compile fused
        step(student.net)
    flops = float(counter.get_total_flops())
    utilisation = mfu(flops, seconds, peak)
    return row | {
        "step_ms": round(1000 * seconds, 2),
        "images_per_s": round(batch / seconds, 2),
        "first_step_s": round(first, 2),
        "tflops_per_step": round(flops / 1e12, 4),
        "achieved_tflops": round(flops / seconds / 1e12, 2),
        "mfu": None if utilisation is None else round(utilisation, 4),
        "peak_memory_gb": round(memory / 2**30, 3),
    }


def teacher_section(args: argparse.Namespace, device: torch.device, folder: Path) -> list:
    """The teacher rows: every CLIP x head x size x dtype, eager and (``--compile-teacher``)
    compiled; ``folder`` holds random proxy weights."""
    teacher_rows = []
    compiles = [False, True] if args.compile_teacher else [False]
    for model in args.teachers:
        for head in teacher_heads_for(model):
            for size in args.sizes:
                for dtype in args.dtypes:
                    for compiled in compiles:
                        r = teacher_throughput(model, head=head, size=size,
                                               batch=args.teacher_batch, classes=args.classes,
                                               dtype=dtype, repeats=args.repeats,
                                               warmup=args.warmup, device=device,
                                               compiled=compiled, folder=folder,
                                               sync_refines=args.sync_refines)  # fmt: skip
                        teacher_rows.append(r)
                        print(f"teacher {model} {head} {size}px {dtype} compile={compiled}: "
                              f"{r.get('teacher_images_per_s', r.get('error'))} img/s, "
                              f"{r.get('teacher_peak_memory_gb')} GB (encode_image "
                              f"{r.get('encode_image_images_per_s')}); sync: {r.get('sync')}, "
                              + ", ".join(f"{k}: {v}" for k, v in r.items()
                                          if k.startswith("sync_")), flush=True)  # fmt: skip
    return teacher_rows


def run(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Every teacher and student measurement of ``args`` on ``device``."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = peak_tflops(name, args.peak_tflops)
    teacher_rows, student_rows = [], []
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as folder:  # random proxy weights
        teacher_rows = teacher_section(args, device, Path(folder))
    for head in args.students:
        for batch in args.batches:
            for compiled in [False, True] if args.compile else [False]:
                r = student_step(clip_model=args.student_teacher, head=head, depth=args.depth,
                                 stages=args.stages, crop=args.crop, batch=batch,
                                 classes=args.classes, compile=compiled, dtype="bf16",
                                 channels_last=True, repeats=args.repeats, warmup=args.warmup,
                                 device=device, peak=peak)  # fmt: skip
                student_rows.append(r)
                print(f"student {r['student']} batch {batch} compile={compiled}: "
                      f"{r.get('step_ms', r.get('error'))} ms/step, MFU {r.get('mfu')}, "
                      f"{r.get('peak_memory_gb')} GB", flush=True)  # fmt: skip
    return {
        "device": name,
        "peak_bf16_tflops": peak,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "teacher": teacher_rows,
        "student": student_rows,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.json")
    parser.add_argument("--md", type=Path, default=None, help="default: BENCHMARKS.md beside --out")
    parser.add_argument(
        "--device", default="cuda", help="cuda (cpu only with --quick, a smoke test)"
    )
    parser.add_argument("--teachers", nargs="+", default=["RN50", "ViT-B-16"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 448, 672])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16", "amp_bf16"],
                        choices=list(DTYPES),
                        help="the teacher's: fp32, bf16 / fp16 weights (teacher.precision), "
                        "amp_bf16 (fp32 weights, autocast)")  # fmt: skip
    parser.add_argument("--no-compile-teacher", dest="compile_teacher", action="store_false",
                        help="the teacher eager only (default: eager and teacher.compile=true)")  # fmt: skip
    parser.add_argument("--sync-refines", nargs="*", default=["pamr", "tlp"],
                        help="refinements whose forward the sync check also runs")  # fmt: skip
    parser.add_argument("--teacher-batch", type=int, default=16)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--students", nargs="*", default=["deeplabv2", "deeplabv3plus", "pspnet"],
                        help="student heads (none: the teacher rows only)")  # fmt: skip
    parser.add_argument("--student-teacher", default="RN50")
    parser.add_argument("--depth", type=int, default=101)
    parser.add_argument("--stages", type=int, default=4)
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's dense bf16 peak when its name is not known")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="tiny models and sizes (smoke test)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "bench-gpu: no CUDA device here (torch.cuda.is_available() is False); nothing measured"
        )
        return 0
    if args.device == "cpu" and not args.quick:
        parser.error("--device cpu is a smoke test: add --quick")
    if args.quick:
        args.teachers, args.sizes, args.dtypes, args.teacher_batch = (
            ["tiny_shapes_vit_plain"],  # 4 blocks: every head runs (CorrCLIP needs 3)
            [64],
            ["bf16", "amp_bf16"],
            2,
        )
        args.student_teacher, args.depth, args.stages, args.crop = "dc-test-rn", 18, 2, 64
        args.students, args.batches, args.classes = ["pspnet"], [2], 3
        args.compile, args.repeats, args.warmup = False, 2, 1
        args.compile_teacher = False
    device = torch.device(args.device)
    results = run(args, device)
    data = merge_results(args.out, {KEY: results})
    write_outputs(data, args.out, args.md or args.out.with_name("BENCHMARKS.md"))
    print(f"wrote the '{KEY}' section of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
