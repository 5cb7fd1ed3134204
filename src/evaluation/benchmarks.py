"""The training-free benchmark: its 8 datasets in the field's column order, and the published
mIoU of each head (CLIP ViT-B/16), for ``scripts/collect_results.py``'s table.

Numbers are percentages as published; each row names its source. The protocol that produced
them is ``protocol=training_free`` (docs/FIDELITY.md).
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class PublishedRow:
    """One published row: a head's mIoU (percent) on the 8 benchmarks, in column order."""

    head: str  #: the head's name (``teacher.head``), e.g. ``naclip``
    label: str  #: what the row is (paper, repository README, post-processing)
    source: str  #: where the numbers are printed
    miou: tuple[float, float, float, float, float, float, float, float]


_RESCLIP = "ResCLIP README figures"  # yvhangyang/ResCLIP figs/main_results_w(o).png
#: PEARL's README table (PGSmall/PEARL @ c26062b, ``assets/results.png``; the paper's Table 1,
#: arXiv 2603.21528): PEARL with TLP, mean 43.2
_PEARL = "PEARL README @ c26062b (assets/results.png)"

#: Published results of the training-free heads (CLIP ViT-B/16, the protocol's settings).
PUBLISHED: tuple[PublishedRow, ...] = (
    PublishedRow("maskclip", "MaskCLIP", _RESCLIP, (38.8, 23.6, 20.6, 74.9, 26.4, 16.4, 12.6, 9.8)),
    PublishedRow(
        "sclip", "SCLIP, paper", _RESCLIP, (59.1, 30.4, 30.5, 80.4, 34.2, 22.4, 32.2, 16.1)
    ),
    PublishedRow(
        "sclip",
        "SCLIP, repository",
        "SCLIP README @ b56bd30",
        (59.63, 31.74, 33.52, 81.54, 34.46, 22.77, 32.34, 16.45),
    ),
    PublishedRow(
        "clearclip", "ClearCLIP, paper", _RESCLIP, (51.8, 32.6, 33.0, 80.9, 35.9, 23.9, 30.0, 16.7)
    ),
    PublishedRow(
        "naclip",
        "NACLIP, no post-processing",
        _RESCLIP,
        (58.9, 32.2, 33.2, 79.7, 35.2, 23.3, 35.5, 17.4),
    ),
    PublishedRow(
        "naclip",
        "NACLIP with PAMR, repository",
        "NACLIP README @ 0cac3a6",
        (64.07, 34.99, 36.19, 83.03, 38.35, 25.69, 38.27, 19.05),
    ),
    PublishedRow(
        "resclip",
        "ResCLIP on NACLIP, paper",
        _RESCLIP,
        (61.1, 33.5, 35.0, 86.0, 36.8, 24.7, 35.9, 18.0),
    ),
    PublishedRow(
        "pearl", "PEARL with TLP, paper", _PEARL, (64.1, 35.1, 37.3, 86.9, 38.6, 26.3, 37.6, 19.4)
    ),
)
