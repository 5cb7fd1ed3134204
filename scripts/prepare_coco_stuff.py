"""COCO-Stuff 164k stuffthingmaps -> MMSegmentation's 171-class ``*_labelTrainIds.png``.

    python scripts/prepare_coco_stuff.py --root data/coco_stuff164k

Input layout (train2017.zip / val2017.zip and stuffthingmaps_trainval2017.zip extracted):
``<root>/images/{train2017,val2017}/*.jpg`` and ``<root>/annotations/{train2017,val2017}/*.png``
(values 0..181 = COCO ids - 1, 255 = unlabeled). Output, beside each map:
``<stem>_labelTrainIds.png`` with MMSegmentation's ``coco_stuff164k.py`` mapping: the 11 COCO
ids without a class are dropped, so the 182 ids become 171 classes (0..170); anything else is
255. Existing outputs are skipped; rerun to resume.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _prepare import UserError, convert_all, require, run, save_label
from PIL import Image

#: The 0-based stuffthingmap values that name no class (COCO's unused thing ids).
UNUSED_IDS = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
SUFFIX = "_labelTrainIds.png"
FIX = "download COCO 2017 images and stuffthingmaps_trainval2017.zip and extract them under --root"


def train_id_lut() -> np.ndarray:
    """``(256,)`` uint8: stuffthingmap value -> train id (0..170), 255 for the rest."""
    lut = np.full(256, 255, dtype=np.uint8)
    used = [i for i in range(182) if i not in UNUSED_IDS]
    lut[used] = np.arange(len(used), dtype=np.uint8)
    return lut


def convert_map(path: Path) -> None:
    """One stuffthingmap PNG -> ``<stem>_labelTrainIds.png`` beside it (skip if there)."""
    out = path.with_name(path.stem + SUFFIX)
    if out.exists():
        return
    try:
        with Image.open(path) as im:
            values = np.asarray(im)
    except OSError as err:
        raise UserError(f"cannot read the stuff map {path}: {err}", FIX) from None
    if values.ndim != 2:
        raise UserError(f"{path} is not a single-channel stuff map (shape {values.shape})", FIX)
    save_label(out, train_id_lut()[values.astype(np.uint8)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, required=True, help="coco_stuff164k folder")
    parser.add_argument("--workers", type=int, default=4, help="processes converting maps")
    args = parser.parse_args(argv)

    for split in ("train2017", "val2017"):
        folder = require(args.root / "annotations" / split, f"COCO-Stuff {split} maps", FIX)
        require(args.root / "images" / split, f"COCO {split} images", FIX)
        maps = sorted(p for p in folder.glob("*.png") if not p.stem.endswith("TrainIds"))
        if not maps:
            raise UserError(f"no stuff maps (*.png) in {folder}", FIX)
        todo = [p for p in maps if not p.with_name(p.stem + SUFFIX).exists()]
        print(f"{split}: {len(maps)} maps, {len(maps) - len(todo)} already converted")
        convert_all(convert_map, todo, workers=args.workers, desc=f"{split} -> trainIds")
    return 0


if __name__ == "__main__":
    run(main)
