"""Training settings: what a training sample's ``target`` may show (REFERENCE section 6).

- ``supervised``: the full ground truth.
- ``zero_shot`` (transductive): pixels of unseen classes become :data:`UNLABELLED` (their
  location is known, their class is not); ``candidates`` are the unseen classes.
- ``annotation_free``: every non-void pixel becomes :data:`UNLABELLED`; ``candidates`` are all
  named classes (never background).

Evaluation always uses the full ground truth. Labels go through two lookup tables: the
dataset's raw values -> evaluation class indices (the background protocol), then evaluation
indices -> training target (the setting).
"""

from __future__ import annotations

import numpy as np

from src.batch import BACKGROUND, IGNORE_INDEX, UNLABELLED
from src.data.classnames import match_class_names
from src.errors import UserError

SETTINGS = ("supervised", "zero_shot", "annotation_free")

#: Unseen classes of the zero-shot benchmarks (ZS3Net / SPNet splits), in our class names.
UNSEEN: dict[str, tuple[str, ...]] = {
    "voc_zs5": ("potted plant", "sheep", "sofa", "train", "tv monitor"),
    "context_zs10": (
        "cow",
        "motorbike",
        "sofa",
        "cat",
        "boat",
        "fence",
        "bird",
        "tv monitor",
        "keyboard",
        "airplane",
    ),  # fmt: skip
    "cocostuff_zs15": (
        "frisbee",
        "skateboard",
        "cardboard",
        "carrot",
        "scissors",
        "suitcase",
        "giraffe",
        "cow",
        "road",
        "concrete wall",
        "tree",
        "grass",
        "river",
        "clouds",
        "playingfield",
    ),  # fmt: skip
}


def check_setting(setting: str) -> str:
    """Return ``setting`` or raise a :class:`UserError` listing the valid ones."""
    if setting not in SETTINGS:
        raise UserError(
            f"unknown training setting {setting!r}",
            f"use one of {', '.join(SETTINGS)} (data.setting, usually set by split=...)",
        )
    return setting


def eval_label_lut(*, has_background: bool, count_background: bool) -> np.ndarray:
    """``(256,)`` uint8 table from raw label values to evaluation class indices.

    With a background class in the data that the protocol does not count (VOC-20,
    Context-59), background becomes void and the other classes shift down by one
    (MMSegmentation's ``reduce_zero_label``). Void stays void.
    """
    lut = np.arange(256, dtype=np.uint8)
    if has_background and not count_background:
        lut = np.concatenate([[IGNORE_INDEX], np.arange(255, dtype=np.int64)]).astype(np.uint8)
        lut[IGNORE_INDEX] = IGNORE_INDEX
    return lut


def unseen_indices(
    unseen_classes: list[str] | tuple[str, ...], class_names: list[str]
) -> list[int]:
    """Evaluation indices of ``unseen_classes`` (matched loosely: case, spaces, aliases)."""
    try:
        indices = match_class_names(list(unseen_classes), class_names)
    except KeyError as err:
        raise UserError(
            f"unseen class {err.args[0]!r} is not one of the dataset's classes",
            f"choose among: {', '.join(class_names)}",
        ) from None
    if class_names and class_names[0] == BACKGROUND and 0 in indices:
        raise UserError("background cannot be an unseen class", "remove it from unseen_classes")
    if len(set(indices)) != len(indices):
        raise UserError(f"unseen_classes lists a class twice: {list(unseen_classes)}")
    return sorted(indices)


def target_lut(*, setting: str, num_classes: int, unseen: list[int]) -> np.ndarray:
    """``(256,)`` uint8 table from evaluation indices to the training target of ``setting``."""
    lut = np.arange(256, dtype=np.uint8)
    if check_setting(setting) == "zero_shot":
        lut[np.asarray(unseen, dtype=np.int64)] = UNLABELLED
    elif setting == "annotation_free":
        lut[:num_classes] = UNLABELLED
    return lut


def candidate_mask(
    *, setting: str, num_classes: int, unseen: list[int], class_offset: int
) -> np.ndarray:
    """``(K,)`` bool: the classes a pseudo label may take on UNLABELLED pixels."""
    mask = np.zeros(num_classes, dtype=bool)
    if check_setting(setting) == "zero_shot":
        mask[np.asarray(unseen, dtype=np.int64)] = True
    elif setting == "annotation_free":
        mask[class_offset:] = True
    return mask


def validate_setting(
    *, setting: str, unseen: list[int], count_background: bool, has_labels: bool
) -> None:
    """Reject combinations that cannot be trained (each with its fix)."""
    check_setting(setting)
    if setting == "zero_shot" and not unseen:
        raise UserError(
            "the zero_shot setting needs unseen classes",
            "pick a split with them (split=voc_zs5, context_zs10, cocostuff_zs15) or set "
            "data.unseen_classes=[...]",
        )
    if setting == "annotation_free" and count_background:
        raise UserError(
            "annotation_free training cannot count background: the teacher has no background "
            "class to pseudo-label it with",
            "set data.count_background=false (VOC-20 / Context-59), e.g. with "
            "split=annotation_free",
        )
    if setting != "annotation_free" and not has_labels:
        raise UserError(
            f"the {setting} setting needs labels, but this dataset has none",
            "use split=annotation_free for a folder of images",
        )
