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

import numpy as np
from _prepare import root_parser, run
from prepare_coco_stuff import UNUSED_IDS, convert_root, train_id_lut

SUFFIX = "_instanceTrainIds.png"
LAST_THING = 90  #: map values 0..90 are COCO's thing ids (category id - 1), 91..181 stuff


def object_id_lut() -> np.ndarray:
    """``(256,)`` uint8: stuffthingmap value -> COCO-Object label (0 background, 1..80)."""
    lut = np.zeros(256, dtype=np.uint8)  # stuff and unlabeled (255) -> background
    things = np.arange(LAST_THING + 1)
    lut[things] = train_id_lut()[things] + 1
    lut[list(UNUSED_IDS)] = 255
    return lut


def main(argv: list[str] | None = None) -> int:
    args = root_parser(__doc__, "coco_stuff164k folder", "processes converting maps").parse_args(
        argv
    )
    convert_root(
        args.root, lut=object_id_lut(), suffix=SUFFIX, desc="COCO-Object", workers=args.workers
    )
    return 0


if __name__ == "__main__":
    run(main)
