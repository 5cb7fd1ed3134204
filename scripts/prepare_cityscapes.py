"""Cityscapes ``*_gtFine_labelIds.png`` -> the 19-class ``*_gtFine_labelTrainIds.png``.

    python scripts/prepare_cityscapes.py --root data/cityscapes

Input layout (leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip extracted under
``--root``): ``leftImg8bit/{train,val}/<city>/*_leftImg8bit.png`` and
``gtFine/{train,val}/<city>/*_gtFine_labelIds.png``. Output, beside each label:
``*_gtFine_labelTrainIds.png`` with the benchmark's train ids (cityscapesScripts'
``labels.py``: road 0 ... bicycle 18; every other id, e.g. parking, caravan, ego vehicle, 255).
This is what MMSegmentation's ``cityscapes.py`` writes from the polygons (the same polygons
drawn in the same order). Existing outputs are skipped; rerun to resume.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _prepare import UserError, convert_all, remap_label, require, root_parser, run

#: Cityscapes label id -> train id for the 19 evaluated classes (all other ids: 255).
TRAIN_IDS: dict[int, int] = {
    7: 0,  # road
    8: 1,  # sidewalk
    11: 2,  # building
    12: 3,  # wall
    13: 4,  # fence
    17: 5,  # pole
    19: 6,  # traffic light
    20: 7,  # traffic sign
    21: 8,  # vegetation
    22: 9,  # terrain
    23: 10,  # sky
    24: 11,  # person
    25: 12,  # rider
    26: 13,  # car
    27: 14,  # truck
    28: 15,  # bus
    31: 16,  # train
    32: 17,  # motorcycle
    33: 18,  # bicycle
}
SOURCE, SUFFIX = "_gtFine_labelIds.png", "_gtFine_labelTrainIds.png"
FIX = "download gtFine_trainvaltest.zip from cityscapes-dataset.com and extract it under --root"


def train_id_lut() -> np.ndarray:
    """``(256,)`` uint8: label id -> train id (255 for ids the benchmark does not evaluate)."""
    lut = np.full(256, 255, dtype=np.uint8)
    for label_id, train_id in TRAIN_IDS.items():
        lut[label_id] = train_id
    return lut


def output_path(path: Path) -> Path:
    """``<id>_gtFine_labelIds.png`` -> ``<id>_gtFine_labelTrainIds.png`` (same folder)."""
    return path.with_name(path.name[: -len(SOURCE)] + SUFFIX)


def convert_label(path: Path) -> None:
    """One label-id PNG -> its train-id PNG beside it (skip if there)."""
    remap_label(path, output_path(path), train_id_lut(), what="label-id image", fix=FIX)


def main(argv: list[str] | None = None) -> int:
    parser = root_parser(__doc__, "cityscapes folder", "processes converting labels")
    args = parser.parse_args(argv)

    for split in ("train", "val"):
        folder = require(args.root / "gtFine" / split, f"Cityscapes gtFine/{split}", FIX)
        labels = sorted(folder.rglob(f"*{SOURCE}"))
        if not labels:
            raise UserError(f"no *{SOURCE} files under {folder}", FIX)
        todo = [p for p in labels if not output_path(p).exists()]
        print(f"{split}: {len(labels)} labels, {len(labels) - len(todo)} already converted")
        convert_all(convert_label, todo, workers=args.workers, desc=f"{split} -> trainIds")
    return 0


if __name__ == "__main__":
    run(main)
