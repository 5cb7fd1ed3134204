"""Offline proof of ``experiment=distill_folder``: teacher -> student mIoU on images it never saw.

Writes ``--images`` scenes of the project's second renderer (``shapes_independent``, split
``train``) into a plain folder as PNGs without labels, runs the README command on it (plus a
step limit and crops sized for these small images) for each entry of :data:`TEACHERS` (the
teacher's overrides and the student's, e.g. ``student.class_balance=1``) and seed, then scores the
students and their teachers with ``src.eval`` on the labelled ``val`` split of the same renderer
(240 scenes, never trained on). One thread per run (``OMP_NUM_THREADS=1``); results to
``--out/results.json`` (with each run's per-class hold-out figures) and a Markdown table on
stdout (docs/STUDENT.md).

    OMP_NUM_THREADS=1 python scripts/distill_offline.py --out /tmp/distill_offline
    python scripts/distill_offline.py --out /tmp/d --images 16 --steps 2 --seeds 0   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NACLIP = ["teacher=tiny_shapes_vit_plain", "teacher.head=naclip"]
PEARL = ["teacher=tiny_shapes_vit_plain", "teacher.head=pearl"]
#: a majority vote of the teacher's labels over felzenszwalb superpixels (teacher.vote)
VOTE = ["teacher.masks=superpixels", "teacher.masks_options={method: felzenszwalb}",
        "teacher.vote=true"]  # fmt: skip
BALANCED = "student.class_balance=1"
#: the teacher's own image tower as the student's trunk (a trainable copy; for the tiny ViT,
#: ClipViTBackbone) and a tenth of distill_folder's AdamW learning rate for it
VIT_STUDENT = ["student=clip_finetune"]
LOW_LR = ["student.lr=1e-4", "student.min_lr=1e-6"]
#: name -> (teacher overrides, student overrides): the tiny RN CLIP; the plain tiny ViT with
#: NACLIP, as is, with the class-balanced loss, with PAMR, with the region vote
#: (``teacher.vote``) and with self-training after the teacher phase; with PEARL (issue 21's
#: student comparison); a student whose trunk is a trainable copy of the teacher's own ViT tower
#: (``student=clip_finetune``, ``+vitstudent``; ``_lr1e-4``: a tenth of the experiment's AdamW
#: learning rate; with half or no class balance). Measured in docs/STUDENT.md ("Beating the
#: NACLIP teacher")
TEACHERS = {
    "tiny_shapes": (["teacher=tiny_shapes"], []),
    "tiny_shapes_vit_plain+naclip": (NACLIP, []),
    "tiny_shapes_vit_plain+naclip+balanced": (NACLIP, ["student.class_balance=1"]),
    "tiny_shapes_vit_plain+naclip+balanced0.5": (NACLIP, ["student.class_balance=0.5"]),
    "tiny_shapes_vit_plain+naclip+balanced+cached": (
        NACLIP,
        ["student.class_balance=1", "callbacks.teacher_label_cache.enabled=true"],
    ),
    "tiny_shapes_vit_plain+naclip+pamr+balanced": (
        [*NACLIP, "teacher.refine=pamr"],
        ["student.class_balance=1"],
    ),
    "tiny_shapes_vit_plain+naclip+vote+balanced": ([*NACLIP, *VOTE], ["student.class_balance=1"]),
    "tiny_shapes_vit_plain+pearl+balanced": (PEARL, ["student.class_balance=1"]),
    "tiny_shapes_vit_plain+naclip+balanced+vitstudent": (NACLIP, [*VIT_STUDENT, BALANCED]),
    "tiny_shapes_vit_plain+naclip+balanced+vitstudent_lr1e-4": (
        NACLIP,
        [*VIT_STUDENT, BALANCED, *LOW_LR],
    ),
    "tiny_shapes_vit_plain+naclip+balanced0.5+vitstudent_lr1e-4": (
        NACLIP,
        [*VIT_STUDENT, "student.class_balance=0.5", *LOW_LR],
    ),
    "tiny_shapes_vit_plain+naclip+vitstudent_lr1e-4": (NACLIP, [*VIT_STUDENT, *LOW_LR]),
    # self-training after the teacher phase (the student's own labels from half the steps on)
    "tiny_shapes_vit_plain+naclip+balanced+switch": (
        NACLIP,
        [
            "student.class_balance=1",
            "callbacks.pseudo_label_switch.enabled=true",
            "callbacks.pseudo_label_switch.fraction=0.5",
        ],
    ),
}
CLASSES = "data.class_names=[circle, square, triangle]"
#: the scenes are 112-176 px: crops and rescale at their own size (README: "set data.crop_size
#: lower for small images"); no workers (one thread per run)
SMALL_IMAGES = ["data.crop_size=128", "data.scale=[512,128]", "data.eval_scale=[512,128]",
                "data.num_workers=0"]  # fmt: skip


def write_scenes(folder: Path, count: int) -> None:
    """``count`` unlabelled PNG scenes of the independent renderer's ``train`` split."""
    from PIL import Image

    from src.data.shapes_independent import build_shapes_independent

    folder.mkdir(parents=True, exist_ok=True)
    data = build_shapes_independent(split="train", length=count)
    for i in range(count):
        path = folder / f"scene{i:05d}.png"
        if not path.is_file():
            Image.fromarray(data[i].image).save(path)


def run(args: list[str], out: Path) -> dict:
    """``python -m <args>`` with its run folder ``out``; its metrics.json and wall time."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", *args, f"hydra.run.dir={out}"], cwd=ROOT,
                          env=env, capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{proc.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    return metrics | {"wall_s": round(time.perf_counter() - start, 1)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--teachers", nargs="+", default=list(TEACHERS))
    parser.add_argument("--no-teacher-eval", action="store_true",
                        help="students only (the teachers' mIoU measured by another call)")  # fmt: skip
    args = parser.parse_args(argv)
    folder = args.out / "scenes"
    write_scenes(folder, args.images)
    results: dict = {"images": args.images, "steps": args.steps, "teachers": {}}
    for name in args.teachers:
        teacher, student_options = TEACHERS[name]
        evaluated = (
            {"val/miou": float("nan")}
            if args.no_teacher_eval
            else run(
                ["src.eval", "data=shapes_independent", *teacher],
                args.out / "eval" / f"{name}_teacher",
            )
        )
        rows = []
        for seed in args.seeds:
            train_dir = args.out / "train" / f"{name}_seed{seed}"
            command = ["src.train", "experiment=distill_folder", f"data.root={folder}", CLASSES,
                       *teacher, *student_options, *SMALL_IMAGES, f"trainer.max_steps={args.steps}",
                       f"seed={seed}"]  # fmt: skip
            trained = run(command, train_dir)
            student = run(["src.eval", "data=shapes_independent",
                           f"ckpt_path={train_dir}/checkpoints/last.ckpt"],
                          args.out / "eval" / f"{name}_seed{seed}")  # fmt: skip
            report = json.loads((train_dir / "distill" / "agreement.json").read_text())
            rows.append({"seed": seed, "student_miou": student["val/miou"],
                         "holdout_agreement": trained.get("val/teacher_agreement"),
                         "holdout_per_class": report["per_class"],
                         "train_wall_s": trained["wall_s"],
                         "command": "python -m " + " ".join(command)})  # fmt: skip
            print(name, rows[-1], flush=True)
        miou = [r["student_miou"] for r in rows]
        results["teachers"][name] = {
            "teacher_miou": evaluated["val/miou"],
            "student_miou_mean": statistics.mean(miou),
            "student_miou_std": statistics.stdev(miou) if len(miou) > 1 else 0.0,
            "runs": rows,
        }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print("| teacher | teacher mIoU | student mIoU (mean ± sd) | per seed |")
    print("|---|---|---|---|")
    for name, r in results["teachers"].items():
        seeds = ", ".join(f"{100 * x['student_miou']:.1f}" for x in r["runs"])
        print(f"| {name} | {100 * r['teacher_miou']:.1f} | {100 * r['student_miou_mean']:.1f} ± "
              f"{100 * r['student_miou_std']:.1f} | {seeds} |")  # fmt: skip
    return results


if __name__ == "__main__":
    main()
