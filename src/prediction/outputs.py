"""The files prediction writes: ``<stem>_mask.png`` (palette PNG of class indices),
``<stem>_overlay.jpg`` (image, colour mask, legend), ``<stem>_conf_<class>.png`` and
``<stem>_logits.npy`` (float32 K x H x W), each written atomically, with distinct stems and
file-name-safe class names.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from src.pictures.overlay import overlay_with_legend
from src.pictures.palette import VOID_COLOR, mask_image
from src.utils.io import atomic_save_image, atomic_save_npy

if TYPE_CHECKING:
    from src.prediction.decode import Decoded
    from src.prediction.predictor import Settings


def output_stems(paths: Sequence[Path]) -> list[str]:
    """One distinct file stem per input (``a.jpg`` and ``a.png`` -> ``a_jpg``, ``a_png``)."""
    counts = Counter(p.stem for p in paths)
    stems, used = [], set()
    for p in paths:
        stem = p.stem if counts[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}"
        base, n = stem, 2
        while stem in used:
            stem, n = f"{base}_{n}", n + 1
        used.add(stem)
        stems.append(stem)
    return stems


def class_slugs(class_names: Sequence[str]) -> list[str]:
    """File-name-safe, distinct names for the confidence maps (``red car`` -> ``red_car``)."""
    out: list[str] = []
    for i, name in enumerate(class_names):
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.") or f"class{i}"
        while slug in out:
            slug = f"{slug}_{i}"
        out.append(slug)
    return out


def write_outputs(
    out_dir: Path,
    stem: str,
    image: np.ndarray,
    decoded: Decoded,
    class_names: Sequence[str],
    palette: np.ndarray,
    settings: Settings,
) -> dict[str, Any]:
    """Write one image's mask, overlay (and confidence maps); return its legend record."""
    mask = decoded.mask.cpu().numpy()
    record: dict[str, Any] = {
        "height": int(mask.shape[0]),
        "width": int(mask.shape[1]),
        "mask": f"{stem}_mask.png",
        "overlay": f"{stem}_overlay.jpg",
        "pixels": dict(zip(class_names, decoded.pixels_per_class, strict=True)),
        "pixels_no_class": int(mask.size - sum(decoded.pixels_per_class)),
    }
    atomic_save_image(out_dir / record["mask"], mask_image(mask, palette))
    overlay = overlay_with_legend(
        image,
        mask,
        class_names,
        palette,
        decoded.pixels_per_class,
        alpha=settings.overlay_alpha,
        max_entries=settings.legend_max_entries,
    )
    atomic_save_image(out_dir / record["overlay"], overlay, quality=90)
    if decoded.confidence is not None:
        conf = decoded.confidence.cpu().numpy()
        record["confidence_maps"] = {}
        for k, slug in enumerate(class_slugs(class_names)):
            name = f"{stem}_conf_{slug}.png"
            atomic_save_image(out_dir / name, Image.fromarray(conf[k], mode="L"))
            record["confidence_maps"][class_names[k]] = name
    if decoded.logits is not None:
        record["logits"] = f"{stem}_logits.npy"
        logits = decoded.logits.cpu().numpy().astype(np.float32, copy=False)
        atomic_save_npy(out_dir / record["logits"], logits)
    return record


def legend_document(
    class_names: Sequence[str],
    palette: np.ndarray,
    *,
    model: dict[str, Any],
    settings: dict[str, Any],
    images: list[dict[str, Any]],
) -> dict[str, Any]:
    """The content of ``legend.json``: classes, their colours, the model, the settings used
    and one :func:`write_outputs` record per image."""
    return {
        "classes": list(class_names),
        "colors": [[int(v) for v in palette[i]] for i in range(len(class_names))],
        "no_class": {"value": 255, "color": list(VOID_COLOR)},
        "model": model,
        "settings": settings,
        "images": images,
    }
