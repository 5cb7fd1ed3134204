"""COCO-Stuff 164k stuffthingmaps -> COCO-Object's 81-class ``*_instanceTrainIds.png``.

    python scripts/prepare_coco_object.py --root data/coco_stuff164k

The training-free papers' COCO-Object (GroupViT's ``convert_dataset/convert_coco_object.py``,
shipped as ``datasets/cvt_coco_object.py`` by SCLIP @ b56bd30 and NACLIP @ 0cac3a6): the 80
COCO thing classes of the COCO-Stuff maps (whose thing pixels come from COCO's instance
annotations) keep their COCO-Stuff train id plus one (1..80), every stuff class and the
unlabeled value 255 become background (0). Input layout as ``prepare_coco_stuff.py``'s:
``<root>/images/{train2017,val2017}/*.jpg`` and ``<root>/annotations/{train2017,val2017}/*.png``
(values 0..181 = COCO ids - 1, 255 = unlabeled). Output, beside each map:
``<stem>_instanceTrainIds.png``. The 11 map values that name no COCO class never occur; they
would become 255 (void). Existing outputs are skipped; rerun to resume.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _prepare import UserError, convert_all, require, run, save_label
from PIL import Image
from prepare_coco_stuff import UNUSED_IDS, train_id_lut

SUFFIX = "_instanceTrainIds.png"
LAST_THING = 90  #: map values 0..90 are COCO's thing ids (category id - 1), 91..181 stuff
FIX = "download COCO 2017 images and stuffthingmaps_trainval2017.zip and extract them under --root"


def object_id_lut() -> np.ndarray:
    """``(256,)`` uint8: stuffthingmap value -> COCO-Object label (0 background, 1..80)."""
    lut = np.zeros(256, dtype=np.uint8)  # stuff and unlabeled (255) -> background
    things = np.arange(LAST_THING + 1)
    lut[things] = train_id_lut()[things] + 1
    lut[list(UNUSED_IDS)] = 255
    return lut


def convert_map(path: Path) -> None:
    """One stuffthingmap PNG -> ``<stem>_instanceTrainIds.png`` beside it (skip if there)."""
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
    save_label(out, object_id_lut()[values.astype(np.uint8)])


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
        convert_all(convert_map, todo, workers=args.workers, desc=f"{split} -> COCO-Object")
    return 0


if __name__ == "__main__":
    run(main)
