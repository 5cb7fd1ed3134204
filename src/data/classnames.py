"""Class names as natural phrases, exactly as MaskCLIP's ``prompt_engineering.py`` spells them.

The order is the datasets' label order (MMSegmentation's ``CLASSES`` without background), so
label ``i`` (after dropping background) is ``NAMES[i]``. The teacher's text embeddings are
computed from these phrases, so they are part of the result: ``"potted plant"`` is not
``"pottedplant"``. Quirks of the original are kept on purpose (COCO-Stuff's
``"playingfield"``); the YAML configs in ``conf/data/`` carry the same lists and may be edited.
"""

from __future__ import annotations

import re

# fmt: off
VOC20: tuple[str, ...] = (
    "airplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "dining table", "dog", "horse", "motorbike", "person", "potted plant", "sheep", "sofa",
    "train", "tv monitor",
)

CONTEXT59: tuple[str, ...] = (
    "airplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book",
    "bottle", "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth",
    "computer", "cow", "cup", "curtain", "dog", "door", "fence", "floor", "flower", "food",
    "grass", "ground", "horse", "keyboard", "light", "motorbike", "mountain", "mouse", "person",
    "plate", "platform", "potted plant", "road", "rock", "sheep", "shelves", "sidewalk", "sign",
    "sky", "snow", "sofa", "table", "track", "train", "tree", "truck", "tv monitor", "wall",
    "water", "window", "wood",
)

COCOSTUFF171: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush", "banner", "blanket",
    "branch", "bridge", "building", "bush", "cabinet", "cage", "cardboard", "carpet", "ceiling",
    "tile ceiling", "cloth", "clothes", "clouds", "counter", "cupboard", "curtain", "desk",
    "dirt", "door", "fence", "marble floor", "floor", "stone floor", "tile floor", "wood floor",
    "flower", "fog", "food", "fruit", "furniture", "grass", "gravel", "ground", "hill", "house",
    "leaves", "light", "mat", "metal", "mirror", "moss", "mountain", "mud", "napkin", "net",
    "paper", "pavement", "pillow", "plant", "plastic", "platform", "playingfield", "railing",
    "railroad", "river", "road", "rock", "roof", "rug", "salad", "sand", "sea", "shelf", "sky",
    "skyscraper", "snow", "solid", "stairs", "stone", "straw", "structural", "table", "tent",
    "textile", "towel", "tree", "vegetable", "brick wall", "concrete wall", "wall",
    "panel wall", "stone wall", "tile wall", "wood wall", "water", "waterdrops", "blind window",
    "window", "wood",
)
# fmt: on

#: Other spellings of the same classes (MMSegmentation, the papers) -> our phrase. Spaces,
#: hyphens and case never matter (``"pottedplant"`` matches ``"potted plant"``).
ALIASES: dict[str, str] = {
    "aeroplane": "airplane",
    "wallconcrete": "concrete wall",
}


def normalise_name(name: str) -> str:
    """Lower-case ``name`` and drop everything but letters and digits (for matching)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def match_class_names(names: list[str] | tuple[str, ...], vocabulary: list[str]) -> list[int]:
    """Indices into ``vocabulary`` of ``names``, matched loosely (case, spaces, aliases).

    Raises ``KeyError`` with the first name that matches nothing.
    """
    index = {normalise_name(v): i for i, v in enumerate(vocabulary)}
    out = []
    for name in names:
        key = normalise_name(name)
        if key not in index:
            alias = ALIASES.get(key)
            key = normalise_name(alias) if alias is not None else key
        if key not in index:
            raise KeyError(name)
        out.append(index[key])
    return out
