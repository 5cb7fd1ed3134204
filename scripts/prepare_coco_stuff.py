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

from functools import partial
from pathlib import Path

import numpy as np
from _prepare import UserError, convert_all, remap_label, require, root_parser, run

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


def convert_map(path: Path, *, lut: np.ndarray | None = None, suffix: str = SUFFIX) -> None:
    """One stuffthingmap PNG -> ``<stem><suffix>`` beside it through ``lut`` (default: the
    171-class train ids); skipped if there."""
    lut = train_id_lut() if lut is None else lut
    out = path.with_name(path.stem + suffix)
    remap_label(path, out, lut, what="stuff map", fix=FIX)


def convert_root(root: Path, *, lut: np.ndarray, suffix: str, desc: str, workers: int) -> None:
    """Convert every stuffthingmap of ``root``'s train2017 and val2017 splits (resumable)."""
    for split in ("train2017", "val2017"):
        folder = require(root / "annotations" / split, f"COCO-Stuff {split} maps", FIX)
        require(root / "images" / split, f"COCO {split} images", FIX)
        maps = sorted(p for p in folder.glob("*.png") if not p.stem.endswith("TrainIds"))
        if not maps:
            raise UserError(f"no stuff maps (*.png) in {folder}", FIX)
        todo = [p for p in maps if not p.with_name(p.stem + suffix).exists()]
        print(f"{split}: {len(maps)} maps, {len(maps) - len(todo)} already converted")
        convert = partial(convert_map, lut=lut, suffix=suffix)
        convert_all(convert, todo, workers=workers, desc=f"{split} -> {desc}")


def main(argv: list[str] | None = None) -> int:
    args = root_parser(__doc__, "coco_stuff164k folder", "processes converting maps").parse_args(
        argv
    )
    convert_root(
        args.root, lut=train_id_lut(), suffix=SUFFIX, desc="trainIds", workers=args.workers
    )
    return 0


if __name__ == "__main__":
    run(main)
