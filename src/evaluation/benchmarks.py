"""The training-free benchmark: its 8 datasets in the field's column order, for
``scripts/collect_results.py``'s table. Each head's published mIoU on them (CLIP ViT-B/16, in
this order, with its source) lives in the head's own module (``HeadSpec.published``,
:func:`src.teacher.heads.published_rows`). The protocol that produced them is
``protocol=training_free`` (docs/FIDELITY.md).
"""

from __future__ import annotations

#: ``(data config, column label)`` in the order of the papers' tables: with background
#: (VOC21, Context60, COCO-Object), then without.
TRAINING_FREE_BENCHMARKS: tuple[tuple[str, str], ...] = (
    ("voc21", "VOC21"),
    ("context60", "PC60"),
    ("coco_object", "Object"),
    ("voc20", "VOC20"),
    ("context59", "PC59"),
    ("cocostuff171", "Stuff"),
    ("cityscapes", "City"),
    ("ade20k", "ADE"),
)
