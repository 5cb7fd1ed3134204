"""Measure the weights-free region masks (``teacher.masks=superpixels``) on the shapes world:
how well their regions fit the scenes' shapes, their speed per image, and what a vote with
them does to a teacher's labels. Prints markdown tables (docs/TEACHERS.md, "Region masks").

    python scripts/measure_masks.py --scenes 100

- fit: regions per image, and the achievable accuracy (ASA): the share of pixels whose
  region's majority true label is their own (the labels a perfect per-region vote could give);
- speed: median milliseconds per image at 224 and 448 px (a scene resized bicubic), one thread;
- vote: val mIoU of ``teacher=tiny_shapes_vit_plain`` with a head, alone and followed by a
  region vote (each region's pixels take the region's most frequent label: CorrCLIP's map
  update, written here as a measurement head, not CorrCLIP's code) over superpixels, and over
  the scenes' own shapes (precomputed: each connected shape of one class a region, the
  background none; the vote's upper bound).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.data.shapes import ShapesConfig, render_scene  # noqa: E402
from src.teacher.masks import RegionMasks  # noqa: E402

SETTINGS = {
    "slic (default: 64 segments)": {},
    "slic, 16 segments": {"segments": 16},
    "felzenszwalb (scale 100)": {"method": "felzenszwalb"},
}


def asa(regions: np.ndarray, labels: np.ndarray) -> float:
    """Achievable segmentation accuracy of ``regions`` for ``labels`` (void 255 left out)."""
    keep = labels != 255
    r, y = regions[keep].astype(np.int64), labels[keep].astype(np.int64)
    joint = np.zeros((r.max() + 1, y.max() + 1), dtype=np.int64)
    np.add.at(joint, (r, y), 1)
    return float(joint.max(1).sum()) / max(1, keep.sum())


def mode_vote(scores: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Each region's (id != 0) pixels take the region's most frequent argmax label."""
    out = scores.clone()
    labels = scores.argmax(1)
    big = scores.abs().amax() * 4 + 1
    for b in range(scores.shape[0]):
        for rid in regions[b].unique().tolist():
            if rid == 0:
                continue
            inside = regions[b] == rid
            winner = int(torch.mode(labels[b][inside])[0])
            out[b, winner][inside] += big
    return out


def fit_and_speed(scenes: int) -> None:
    cfg = ShapesConfig()
    rows = []
    for title, options in SETTINGS.items():
        masks = RegionMasks("superpixels", options)
        counts, fits = [], []
        for i in range(scenes):
            scene = render_scene(cfg, i, "val")
            regions = masks.one(scene.image, None)
            counts.append(len(np.unique(regions)))
            fits.append(asa(regions, scene.mask))
        times = {}
        for side in (224, 448):
            from PIL import Image

            ms = []
            for i in range(min(scenes, 20)):
                image = np.asarray(
                    Image.fromarray(render_scene(cfg, i, "val").image).resize((side, side), 3)
                )
                start = time.perf_counter()
                masks.one(image, None)
                ms.append(1000 * (time.perf_counter() - start))
            times[side] = statistics.median(ms)
        rows.append((title, np.mean(counts), 100 * np.mean(fits), times[224], times[448]))
    print(f"\nfit and speed, {scenes} val scenes (128 px; speed on 20, resized)\n")
    print("| superpixels | regions / image | ASA % | ms / image 224 px | ms / image 448 px |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for title, n, fit, t224, t448 in rows:
        print(f"| {title} | {n:.1f} | {fit:.1f} | {t224:.1f} | {t448:.1f} |")


def vote(scenes: int, heads: list[str]) -> None:
    from hydra import compose, initialize_config_dir

    from src.batch import IMAGE, NAME, TARGET
    from src.evaluation.module import EvaluationModule, align_logits
    from src.teacher.heads import head_spec, register_head, unregister_head
    from src.utils.task import instantiate
    from src.utils.teachers import build_teacher

    tmp = Path(tempfile.mkdtemp(prefix="measure_masks_"))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("eval", overrides=[
            f"paths.root_dir={ROOT}", "data=shapes", "teacher=tiny_shapes_vit_plain",
            f"data.dataset_options.val_length={scenes}"])  # fmt: skip
    dm = instantiate(cfg.data)
    raw = dm.build_raw(dm.val_split)
    shapes = tmp / "shapes"  # the scenes' own shapes as precomputed masks: the upper bound
    shapes.mkdir()
    from scipy import ndimage

    for i in range(len(raw)):
        s = raw[i]
        regions = np.zeros(s.label.shape, dtype=np.int32)  # each shape a region, 0 elsewhere
        for c in np.unique(s.label[(s.label > 0) & (s.label != 255)]):
            parts, n = ndimage.label(s.label == c)
            regions[parts > 0] = parts[parts > 0] + regions.max()
        np.savez(shapes / f"{s.name}.npz", instance_mask=regions)

    normalised: list[bool] = []

    def miou(head: str, masks: str | None = None, options: dict | None = None) -> float:
        """Val mIoU (%) as ``src.eval`` scores it (its EvaluationModule's step)."""
        node = cfg.teacher.copy()
        node.head, node.masks, node.masks_options = head, masks, options
        teacher = build_teacher(node, dm.teacher_class_names, cache_dir=str(tmp / "cache"))
        if not normalised:  # one CLIP: one normalisation for every run
            dm.set_normalization(teacher.mean, teacher.std)
            normalised.append(True)
        module = EvaluationModule(teacher, num_classes=dm.num_classes,
                                  class_offset=dm.class_offset)  # fmt: skip
        with torch.no_grad():
            for batch in dm.val_dataloader():
                names = batch[NAME] if teacher.needs_image_names else None
                size = tuple(batch[TARGET].shape[-2:])
                logits = module.model_scores(batch[IMAGE], size, names=names)
                logits = align_logits(logits, dm.num_classes, dm.class_offset)
                module.metric.update(logits.argmax(1), batch[TARGET])
        module._finish()
        return 100 * float(module.scores["miou"])

    print(f"\nvote, val mIoU % of teacher=tiny_shapes_vit_plain on {scenes} scenes\n")
    print("| head | alone | + vote, slic 64 | + vote, slic 16 | + vote, felzenszwalb | "
          "+ vote, the true shapes |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for head in heads:
        name = f"{head}_vote"
        register_head(replace(head_spec(head), name=name, region_vote=mode_vote, published=()))
        try:
            cells = [miou(head)]
            for options in ({}, {"segments": 16}, {"method": "felzenszwalb"}):
                cells.append(miou(name, "superpixels", options))
            cells.append(miou(name, "precomputed", {"dir": str(shapes)}))
        finally:
            unregister_head(name)
        print(f"| {head} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=100)
    parser.add_argument("--heads", nargs="*", default=None,
                        help="default: every registered head that needs no extra weights and "
                        "reads no regions itself")  # fmt: skip
    parser.add_argument("--skip-fit", action="store_true", help="the vote table only")
    args = parser.parse_args()
    from src.teacher.heads import head_spec, registered_heads

    heads = args.heads or [
        h for h in registered_heads()
        if not head_spec(h).needs_weights and not head_spec(h).needs_regions
    ]  # fmt: skip
    torch.set_num_threads(1)
    if not args.skip_fit:
        fit_and_speed(args.scenes)
    vote(args.scenes, heads)


if __name__ == "__main__":
    main()
