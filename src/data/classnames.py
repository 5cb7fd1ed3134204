"""Class names as natural phrases, exactly as MaskCLIP's ``prompt_engineering.py`` spells them
(ADE20K and Cityscapes: MMSegmentation's names), and the protocol's class-name files.

The order is the datasets' label order (MMSegmentation's ``CLASSES`` without background), so
label ``i`` (after dropping background) is ``NAMES[i]``. The teacher's text embeddings are
computed from these phrases, so they are part of the result: ``"potted plant"`` is not
``"pottedplant"``. Quirks of the original are kept on purpose (COCO-Stuff's
``"playingfield"``); the YAML configs in ``conf/data/`` carry the same lists and may be edited.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from src.errors import UserError
from src.prompts import entry_names

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

#: ADE20K's 150 classes (MMSegmentation's ``ADE20KDataset`` names).
ADE20K: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing",
    "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
    "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)

#: Cityscapes' 19 evaluation classes (train ids 0..18).
CITYSCAPES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)

#: COCO-Object's 80 thing classes (COCO-Stuff's first 80, label values 1..80; 0 = background).
COCO_OBJECT80: tuple[str, ...] = COCOSTUFF171[:80]
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


#: The shipped class-name files: ``names/cls_<name>.txt`` (see ``names/README.md``).
NAMES_DIR = Path(__file__).resolve().parent / "names"


def shipped_names_files() -> list[str]:
    """Names of the shipped class-name files (``voc21``, ``ade20k``, ...)."""
    return sorted(p.stem[len("cls_") :] for p in NAMES_DIR.glob("cls_*.txt"))


def read_names_file(name: str | os.PathLike) -> list[str]:
    """The class entries of a class-name file: a shipped name (``voc21``) or a path.

    One class per non-empty line; the names of one class are separated by commas and come
    back joined by ``", "`` (``"person, person in shirt"``). A missing or empty file, or a line
    without a name, is a :class:`UserError`.
    """
    path = Path(os.path.expanduser(str(name)))
    shipped = NAMES_DIR / f"cls_{name}.txt"
    if not path.is_file() and shipped.is_file():
        path = shipped
    if not path.is_file():
        raise UserError(
            f"class-name file {name!r} not found (neither a file nor one of the shipped lists)",
            f"use one of {', '.join(shipped_names_files())} or a path to a text file",
        )
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        names = entry_names(line)
        if not names:
            raise UserError(f"line {number} of {path} names no class: {line!r}", "remove it")
        entries.append(", ".join(names))
    if not entries:
        raise UserError(f"class-name file {path} is empty", "one class per line")
    return entries
