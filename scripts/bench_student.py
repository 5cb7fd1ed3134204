"""Teacher overhead in a DenseCLIP+ training step (merged into docs/benchmarks.json).

``teacher_overhead_in_step``: the time of one training step (forward, pseudo labels, loss,
backward, optimizer step) with the online teacher labelling UNLABELLED pixels, over the same
step on ground-truth targets (the teacher is not run), same student, batch and crop, the two
timed alternately in one process; each the median of ``--repeats`` steps after ``--warmup``.
The paper's setting is an RN50 teacher with a DeepLabv2-ResNet-101 student on 512 px crops;
on a CPU the crop and batch are reduced (``--crop``, ``--batch``). Random weights: nothing is
downloaded. Text embeddings are computed once, when the teacher is built (never per step).
Goal: at most 1.10.

    python scripts/bench_student.py                  # RN50 + DeepLabv2-R101, CPU sizes
    python scripts/bench_student.py --quick --out /tmp/b.json   # tiny models (smoke test)
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "scripts"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import torch  # noqa: E402
from bench import interleaved_times, machine_info, merge_results, write_outputs  # noqa: E402

from src.batch import CANDIDATES, IMAGE, TARGET, UNLABELLED  # noqa: E402

GOAL = 1.10
KEY = "teacher_overhead_in_step"


def overhead_in_step(
    *,
    clip_model: str,
    depth: int,
    head: str,
    classes: int,
    batch: int,
    crop: int,
    repeats: int,
    warmup: int,
    device: torch.device,
) -> dict[str, Any]:
    """Median step times with and without the online teacher, and their ratio."""
    from src.student.model import DenseClipPlus
    from src.teacher.model import DenseClipTeacher

    names = [f"class {i}" for i in range(classes)]
    teacher = DenseClipTeacher(
        clip_model=clip_model, pretrained=None, class_names=names, templates="photo"
    )
    student = DenseClipPlus(teacher=teacher, backbone=depth, backbone_weights="none", head=head).to(
        device
    )
    student.train()
    opt = torch.optim.SGD(student.net.parameters(), lr=1e-3, momentum=0.9)
    images = torch.randn(batch, 3, crop, crop, device=device)
    truth = torch.randint(0, classes, (batch, crop, crop), device=device)
    candidates = torch.ones(batch, classes, dtype=torch.bool, device=device)
    hidden = torch.full_like(truth, UNLABELLED)

    def step(target: torch.Tensor) -> None:
        batch_ = {IMAGE: images, TARGET: target, CANDIDATES: candidates}
        logits = torch.nn.functional.interpolate(
            student.net(images), size=(crop, crop), mode="bilinear", align_corners=False
        )
        labels = student.pseudo_targets(batch_, logits)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels, ignore_index=255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    times = interleaved_times(
        {"with_teacher": lambda: step(hidden), "ground_truth": lambda: step(truth)},
        repeats=repeats,
        warmup=warmup,
        device=device,
    )
    with_t, without = (
        statistics.median(times["with_teacher"]),
        statistics.median(times["ground_truth"]),
    )
    return {
        "teacher": clip_model,
        "student": f"{head}-resnet{depth}-d8",
        "device": device.type,
        "batch": batch,
        "crop": crop,
        "classes": classes,
        "threads": torch.get_num_threads(),
        "step_with_teacher_ms": 1000 * with_t,
        "step_ground_truth_ms": 1000 * without,
        "ratio": with_t / without,
        "goal_max": GOAL,
        "goal_met": with_t / without <= GOAL,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.json")
    parser.add_argument("--md", type=Path, default=None, help="default: BENCHMARKS.md beside --out")
    parser.add_argument("--teacher", default="RN50")
    parser.add_argument("--depth", type=int, default=101)
    parser.add_argument("--head", default="deeplabv2")
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--batch", type=int, default=None, help="default: 1 on CPU, 4 on GPU")
    parser.add_argument("--crop", type=int, default=None, help="default: 256 on CPU, 512 on GPU")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads on CPU (0: default)")
    parser.add_argument("--quick", action="store_true", help="tiny models (smoke test)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.teacher, args.depth, args.classes = "dc-test-rn", 18, 3
        args.repeats, args.warmup, args.batch, args.crop = 2, 1, 1, 64
    runs = []
    for dev in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        gpu = dev == "cuda"
        runs.append(
            overhead_in_step(
                clip_model=args.teacher,
                depth=args.depth,
                head=args.head,
                classes=args.classes,
                batch=args.batch or (4 if gpu else 1),
                crop=args.crop or (512 if gpu else 256),
                repeats=args.repeats,
                warmup=args.warmup,
                device=torch.device(dev),
            )
        )
        r = runs[-1]
        print(
            f"{r['teacher']} + {r['student']} on {dev}: {r['step_with_teacher_ms']:.0f} ms / "
            f"{r['step_ground_truth_ms']:.0f} ms = {r['ratio']:.3f} (goal <= {GOAL})"
        )
    data = merge_results(args.out, {KEY: {"runs": runs}, "machine": machine_info()})
    write_outputs(data, args.out, args.md or args.out.with_name("BENCHMARKS.md"))
    return data


if __name__ == "__main__":
    main()
