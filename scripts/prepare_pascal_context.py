"""PASCAL Context full annotations -> MMSegmentation's 59/60-class labels.

    python scripts/prepare_pascal_context.py --devkit data/VOCdevkit --annotations data/trainval

Inputs: ``<devkit>/VOC2010`` (VOCtrainval_03-May-2010.tar: ``JPEGImages/`` and
``ImageSets/Main/{train,val}.txt``) and PASCAL Context's full annotations
(``trainval.tar.gz`` from https://cs.stanford.edu/~roozbeh/pascal-context/: a folder of
``<id>.mat`` files, each with a ``LabelMap`` of the 459 classes of its ``labels.txt``).

MMSegmentation's ``pascal_context.py`` reads the same masks through the ``detail`` API (not
available here); this script reads the ``.mat`` files directly and applies the same mapping:
the 59 most frequent classes become 1..59 in alphabetical order, everything else 0
(background). Outputs: ``VOC2010/SegmentationClassContext/<id>.png`` (greyscale, 0..59) and
``VOC2010/ImageSets/SegmentationContext/{train,val}.txt`` (VOC2010's Main train/val ids with
an annotation: 4,998 / 5,105). Existing PNGs are skipped; rerun to resume.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import numpy as np
from _prepare import UserError, convert_all, read_ids, require, run, save_label, write_ids
from scipy.io import loadmat

#: The 459-class ids (labels.txt, 1-based) of the 59 classes, as in MMSegmentation; 0 first.
CONTEXT59_IDS = np.sort(
    np.array([
        0, 2, 259, 260, 415, 324, 9, 258, 144, 18, 19, 22, 23, 397, 25, 284, 158, 159, 416, 33,
        162, 420, 454, 295, 296, 427, 44, 45, 46, 308, 59, 440, 445, 31, 232, 65, 354, 424, 68,
        326, 72, 458, 34, 207, 80, 355, 85, 347, 220, 349, 360, 98, 187, 104, 105, 366, 189,
        368, 113, 115,
    ])
)  # fmt: skip
FIX = (
    "download VOCtrainval_03-May-2010.tar and PASCAL Context's trainval.tar.gz, and pass the "
    "VOCdevkit folder and the extracted trainval/ folder of .mat files"
)


def label_lut(max_id: int = 512) -> np.ndarray:
    """Table from 459-class ids to 0..59 (0: background and every class outside the 59)."""
    lut = np.zeros(max_id + 1, dtype=np.uint8)
    lut[CONTEXT59_IDS] = np.arange(len(CONTEXT59_IDS), dtype=np.uint8)
    return lut


def convert_mat(mat_path: Path, out_dir: Path) -> None:
    """``LabelMap`` of one ``.mat`` -> ``<out_dir>/<id>.png`` with labels 0..59."""
    out = out_dir / f"{mat_path.stem}.png"
    if out.exists():
        return
    try:
        labels = np.asarray(loadmat(str(mat_path))["LabelMap"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(
            f"cannot read the PASCAL Context annotation {mat_path}: {err}", FIX
        ) from None
    lut = label_lut()
    if labels.ndim != 2 or labels.size == 0 or labels.min() < 0 or labels.max() >= len(lut):
        raise UserError(f"{mat_path} holds no 459-class LabelMap", FIX)
    save_label(out, lut[labels.astype(np.int64)])


def _voc_root(devkit: Path) -> Path:
    if (devkit / "VOC2010").is_dir():
        return devkit / "VOC2010"
    if (devkit / "JPEGImages").is_dir():
        return devkit
    raise UserError(f"VOC2010 not found: looked for the folder {devkit / 'VOC2010'}", FIX)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devkit", type=Path, required=True, help="VOCdevkit (holding VOC2010/)")
    parser.add_argument("--annotations", type=Path, required=True, help="folder of <id>.mat files")
    parser.add_argument(
        "--out", type=Path, default=None, help="default: VOC2010/SegmentationClassContext"
    )
    parser.add_argument("--workers", type=int, default=4, help="processes converting .mat files")
    args = parser.parse_args(argv)

    voc = _voc_root(args.devkit)
    ann = require(args.annotations, "PASCAL Context annotations", FIX)
    mats = {p.stem: p for p in ann.glob("*.mat")}
    if not mats:
        raise UserError(f"no .mat files in {ann}", FIX)
    main_lists = voc / "ImageSets" / "Main"
    splits = {s: read_ids(main_lists / f"{s}.txt", FIX) for s in ("train", "val")}
    out_dir = args.out or voc / "SegmentationClassContext"
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = [i for s in ("train", "val") for i in splits[s] if i in mats]
    todo = [mats[i] for i in wanted if not (out_dir / f"{i}.png").exists()]
    print(f"{len(wanted)} annotated images, {len(wanted) - len(todo)} already converted")
    convert_all(
        partial(convert_mat, out_dir=out_dir), todo, workers=args.workers, desc="Context -> PNG"
    )

    lists = voc / "ImageSets" / "SegmentationContext"
    for split, ids in splits.items():
        kept = sorted(i for i in ids if i in mats)
        written = write_ids(lists / f"{split}.txt", kept)
        skipped = len(ids) - len(kept)
        note = f", {skipped} without annotation left out" if skipped else ""
        print(f"{lists / split}.txt: {len(kept)} ids{note}{'' if written else ' (unchanged)'}")
    return 0


if __name__ == "__main__":
    run(main)
