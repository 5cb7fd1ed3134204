"""Throughput and peak memory of every teacher head (and PAMR) on a CPU (docs/TEACHERS.md).

Each (model, head, refine) point runs in a fresh process, so its peak resident memory is its
own: the process builds the teacher, notes its peak RSS, then runs ``--warmup`` + ``--repeats``
forwards (``predict_logits`` on a batch of random images) and notes the peak again. Images/s
is the batch over the median forward time, timed with the thread's CPU time on one thread
(steady on a shared machine; wall time otherwise).

    python scripts/bench_heads.py                       # tiny_shapes_vit_plain + ViT-B/16, minutes
    python scripts/bench_heads.py --quick               # tiny only, seconds
    python scripts/bench_heads.py --out docs/bench_heads.json
    python scripts/bench_heads.py --device cuda --models ViT-B-16@448   # peak = CUDA memory
    python scripts/bench_heads.py --heads <head> --generators slic felzenszwalb  # + masks

``--generators``: a region-mask generator alone (``teacher.masks=superpixels`` with its
``method``; uncached), on shapes-world scenes resized to each model's size and batch, also in a
fresh process each: ``RegionMasks.maps`` on the batch, the same clock and peak memory.

ViT-B/16 runs with random weights (nothing is downloaded) and ProxyCLIP with a random DINO
ViT-B/8 proxy written to a temporary file: speed and memory do not depend on the weights.
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: (label, teacher kwargs, image height, width, batch)
MODELS = {
    "tiny_shapes_vit_plain@128": (
        {"clip_model": "tiny_shapes_vit_plain", "pretrained": "shapes"},
        128,
        128,
        16,
    ),
    "ViT-B-16@224x4": (
        {"clip_model": "ViT-B-16", "pretrained": None, "quick_gelu": True},
        224,
        224,
        4,
    ),
    "ViT-B-16@448": (
        {"clip_model": "ViT-B-16", "pretrained": None, "quick_gelu": True},
        448,
        448,
        1,
    ),
}
CLASSES = {"tiny_shapes_vit_plain@128": 3}
DEFAULT_CLASSES = 21


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(model: str, head: str, refine: str | None, proxy_file: str | None, args) -> dict:
    """One point, in this process."""
    import torch

    from src.teacher.heads import head_spec
    from src.teacher.model import DenseClipTeacher

    torch.set_num_threads(args.threads)
    kwargs, h, w, batch = MODELS[model]
    names = [f"class {i}" for i in range(CLASSES.get(model, DEFAULT_CLASSES))]
    teacher = DenseClipTeacher(
        **kwargs,
        class_names=names,
        templates=["a photo of a {}."],
        head=head,
        refine=refine,
        proxy="dino_vitb8",
        proxy_weights=proxy_file,
        # heads that read region masks get the weights-free ones, computed in every forward
        # (no cache): their time is in the head's
        masks="superpixels" if head_spec(head).needs_regions else None,
    )
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    teacher = teacher.to(device)
    built = _peak_mb()
    x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)
    clock = time.thread_time if args.threads == 1 and not cuda else time.perf_counter
    times = []
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        for i in range(args.warmup + args.repeats):
            start = clock()
            teacher.predict_logits(x)
            if cuda:
                torch.cuda.synchronize(device)
            if i >= args.warmup:
                times.append(clock() - start)
    median = statistics.median(times)
    if cuda:
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        return {"model": model, "head": head, "refine": refine, "batch": batch, "size": [h, w],
                "seconds_per_batch": median, "images_per_s": batch / median,
                "peak_rss_mb": peak, "forward_extra_mb": peak, "clock": "wall, CUDA"}  # fmt: skip
    return {
        "model": model,
        "head": head,
        "refine": refine,
        "batch": batch,
        "size": [h, w],
        "seconds_per_batch": median,
        "images_per_s": batch / median,
        "peak_rss_mb": _peak_mb(),
        "forward_extra_mb": _peak_mb() - built,
        "clock": "thread CPU time" if args.threads == 1 else "wall",
    }


#: generator points: name -> (teacher.masks, teacher.masks_options)
GENERATORS = {
    "slic": ("superpixels", {"method": "slic"}),
    "felzenszwalb": ("superpixels", {"method": "felzenszwalb"}),
}


def run_generator(model: str, generator: str, args) -> dict:
    """One mask-generator point, in this process: the (B, H, W) region maps of a batch of
    ``model``'s size, uncached. The images are shapes-world scenes resized to that size (a
    superpixel method's time depends on the content: on random noise slic collapses to one
    region and felzenszwalb splits into hundreds)."""
    import torch
    import torch.nn.functional as F

    from src.data.shapes import ShapesConfig, render_scene
    from src.teacher.masks import RegionMasks

    torch.set_num_threads(args.threads)
    _, h, w, batch = MODELS[model]
    name, options = GENERATORS[generator]
    masks = RegionMasks(name, options, None)
    built = _peak_mb()
    scenes = [torch.from_numpy(render_scene(ShapesConfig(), i, "val").image) for i in range(batch)]
    pixels = torch.stack(scenes).permute(0, 3, 1, 2).float() / 255
    pixels = F.interpolate(pixels, size=(h, w), mode="bilinear", align_corners=False)
    mean, std = (0.48, 0.46, 0.41), (0.27, 0.26, 0.28)  # CLIP's, rounded
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    x = (pixels - m) / s  # normalised, as the teacher hands images to its masks
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    times = []
    for i in range(args.warmup + args.repeats):
        start = clock()
        maps = masks.maps(x, mean=mean, std=std)
        if i >= args.warmup:
            times.append(clock() - start)
    assert tuple(maps.shape) == (batch, h, w)
    median = statistics.median(times)
    return {"model": model, "generator": generator, "batch": batch, "size": [h, w],
            "seconds_per_batch": median, "images_per_s": batch / median,
            "peak_rss_mb": _peak_mb(), "forward_extra_mb": _peak_mb() - built,
            "regions_per_image": float(torch.tensor([len(m.unique()) for m in maps]).float().mean()),
            "clock": "thread CPU time" if args.threads == 1 else "wall"}  # fmt: skip


def proxy_weights_file(folder: Path) -> Path:
    """A random DINO ViT-B/8 (timm layout) for ProxyCLIP's speed."""
    import timm
    import torch

    model = timm.create_model("vit_base_patch8_224.dino", pretrained=False, num_classes=0)
    path = folder / "dino_vitb8_random.pth"
    torch.save({k: v.half() for k, v in model.state_dict().items()}, path)
    return path


def head_choices() -> list[str]:
    """Every registered teacher head (:func:`src.teacher.heads.registered_heads`)."""
    from src.teacher.heads import registered_heads

    return registered_heads()


def refined_points(heads: Sequence[str]) -> list[tuple[str, str]]:
    """(head, refine) points measured with a refinement: the default head with PAMR, and each
    head its authors pair with a refinement."""
    from src.teacher.heads import default_head, head_spec

    out = []
    for head in heads:
        refine = head_spec(head).authors_refine or ("pamr" if head == default_head() else None)
        if refine:
            out.append((head, refine))
    return out


def pamr_overheads(results: list[dict]) -> list[dict[str, Any]]:
    """For each (model, head) measured with and without PAMR: the time PAMR adds, as a
    fraction of the head's own time, and the slowdown (the issue's goals: +25% for NACLIP on
    ViT-B/16 at 224 px, batch 4; x2 on the tiny plain ViT at 128 px, batch 16)."""
    plain = {(r["model"], r["head"]): r for r in results if r["refine"] is None}
    out = []
    for r in results:
        base = plain.get((r["model"], r["head"]))
        if r["refine"] == "pamr" and base is not None:
            slowdown = r["seconds_per_batch"] / base["seconds_per_batch"]
            out.append({"model": r["model"], "head": r["head"], "slowdown": slowdown,
                        "pamr_adds": slowdown - 1.0})  # fmt: skip
    return out


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    heads = head_choices()
    parser.add_argument("--quick", action="store_true", help="the tiny model only")
    parser.add_argument("--models", nargs="*", default=None, choices=list(MODELS))
    parser.add_argument("--heads", nargs="*", default=heads, choices=heads)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:n]")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--generators", nargs="*", default=[], choices=list(GENERATORS),
                        help="also time these region-mask generators alone")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--one", nargs=4, metavar=("MODEL", "HEAD", "REFINE", "PROXY"),
                        help=argparse.SUPPRESS)  # fmt: skip
    parser.add_argument("--one-generator", nargs=2, metavar=("MODEL", "GENERATOR"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args(argv)
    if args.one_generator:
        result = run_generator(*args.one_generator, args)
        print("RESULT " + json.dumps(result))
        return [result]
    if args.one:
        model, head, refine, proxy = args.one
        result = run_one(model, head, None if refine == "none" else refine,
                         None if proxy == "none" else proxy, args)  # fmt: skip
        print("RESULT " + json.dumps(result))
        return [result]

    models = args.models or (["tiny_shapes_vit_plain@128"] if args.quick else list(MODELS))
    points = [(m, h, None) for m in models for h in args.heads]
    points += [(m, h, r) for m in models for h, r in refined_points(args.heads)]
    results: list[dict[str, Any]] = []
    generated: list[dict[str, Any]] = []  # the mask generators' points
    from src.teacher.heads import head_spec

    with tempfile.TemporaryDirectory() as tmp:
        weights = any(head_spec(h).needs_weights for h in args.heads)
        proxy = str(proxy_weights_file(Path(tmp))) if weights else "none"
        common = ["--threads", str(args.threads), "--device", args.device, "--warmup",
                  str(args.warmup), "--repeats", str(args.repeats)]  # fmt: skip
        runs = [(f"{m} {h} {r}", ["--one", m, h, r or "none", proxy]) for m, h, r in points]
        runs += [(f"{m} masks={g}", ["--one-generator", m, g])
                 for m in models for g in args.generators]  # fmt: skip
        for what, point in runs:
            cmd = [sys.executable, __file__, *point, *common]
            env = os.environ | {"OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                print(f"{what}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            result = json.loads(lines[-1][len("RESULT ") :])
            (generated if "generator" in result else results).append(result)
            print(f"{what:42s} {result['images_per_s']:8.2f} img/s  "
                  f"peak {result['peak_rss_mb']:7.0f} MB (+{result['forward_extra_mb']:.0f})",
                  flush=True)  # fmt: skip
    overheads = pamr_overheads(results)
    for o in overheads:
        print(f"PAMR adds {100 * o['pamr_adds']:.0f}% to {o['head']} on {o['model']} "
              f"(x{o['slowdown']:.2f})", flush=True)  # fmt: skip
    if args.out:
        from src.utils.io import atomic_save_json

        atomic_save_json(args.out, {
            "machine": {"cpu": platform.processor() or platform.machine(),
                        "cores": os.cpu_count(), "threads": args.threads},
            "results": results,
            "pamr_overheads": overheads,
            **({"generators": generated} if generated else {}),
        })  # fmt: skip
    return results


if __name__ == "__main__":
    main()
