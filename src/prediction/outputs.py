"""The files prediction writes: ``<stem>_mask.png`` (palette PNG of class indices),
``<stem>_overlay.jpg`` (image, colour mask, legend), ``<stem>_conf_<class>.png`` and
``<stem>_logits.npy`` (float32 K x H x W), each written atomically, with distinct stems and
file-name-safe class names; and the output folder's ``legend.json``, which always describes
every mask beside it: a folder holding another run's predictions (other classes, model or
settings) is refused, not mixed.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from src.errors import UserError
from src.pictures.overlay import overlay_with_legend
from src.pictures.palette import VOID_COLOR, mask_image
from src.utils.images import OUTPUT_NAME
from src.utils.io import atomic_save_image, atomic_save_json, atomic_save_npy

LEGEND = "legend.json"
#: legend entries that must match for a run to add its masks to a folder (device may differ)
_SAME_RUN = ("classes", "colors", "no_class", "model", "settings")

if TYPE_CHECKING:
    from src.prediction.decode import Decoded
    from src.prediction.predictor import Settings


#: the longest stem (bytes) and class slug of an output file's name: a file system allows 255
#: bytes a name, which ``<stem>_conf_<slug>.png`` must fit
MAX_STEM, MAX_SLUG = 120, 100


def _shorten(name: str, limit: int) -> str:
    """``name`` itself when it fits in ``limit`` UTF-8 bytes, else its start and a short hash
    of the whole (distinct names stay distinct)."""
    if len(name.encode("utf-8")) <= limit:
        return name
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    head = name.encode("utf-8")[: limit - 9].decode("utf-8", errors="ignore")
    return f"{head}~{digest}"


def output_stems(paths: Sequence[Path]) -> list[str]:
    """One distinct file stem per input (``a.jpg`` and ``a.png`` -> ``a_jpg``, ``a_png``);
    a very long name is shortened, with a hash of the whole to stay distinct."""
    counts = Counter(p.stem for p in paths)
    stems, used = [], set()
    for p in paths:
        stem = p.stem if counts[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}"
        stem = _shorten(stem, MAX_STEM)
        base, n = stem, 2
        while stem in used:
            stem, n = f"{base}_{n}", n + 1
        used.add(stem)
        stems.append(stem)
    return stems


def class_slugs(class_names: Sequence[str]) -> list[str]:
    """File-name-safe, distinct names for the confidence maps (``red car`` -> ``red_car``); a
    long name is shortened, with a hash of the whole to stay distinct."""
    out: list[str] = []
    for i, name in enumerate(class_names):
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.") or f"class{i}"
        slug = _shorten(slug, MAX_SLUG)
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
    """Write one image's mask, overlay (and confidence maps); return its legend record.

    All or nothing: when a write fails (a full disk), the files this call wrote are removed
    and the error raised, so no file of the image is left that a legend does not describe.
    """
    written: list[Path] = []
    before = {p.name for p in out_dir.glob(f"{glob.escape(stem)}_*")}  # an earlier run's
    try:
        return _write_outputs(out_dir, stem, image, decoded, class_names, palette, settings,
                              written)  # fmt: skip
    except BaseException:
        for path in written:
            if path.name not in before:
                path.unlink(missing_ok=True)
        raise


def _write_outputs(
    out_dir: Path,
    stem: str,
    image: np.ndarray,
    decoded: Decoded,
    class_names: Sequence[str],
    palette: np.ndarray,
    settings: Settings,
    written: list[Path],
) -> dict[str, Any]:
    mask = decoded.mask.cpu().numpy()
    record: dict[str, Any] = {
        "height": int(mask.shape[0]),
        "width": int(mask.shape[1]),
        "mask": f"{stem}_mask.png",
        "overlay": f"{stem}_overlay.jpg",
        "pixels": dict(zip(class_names, decoded.pixels_per_class, strict=True)),
        "pixels_no_class": int(mask.size - sum(decoded.pixels_per_class)),
    }
    written.append(atomic_save_image(out_dir / record["mask"], mask_image(mask, palette)))
    overlay = overlay_with_legend(
        image,
        mask,
        class_names,
        palette,
        decoded.pixels_per_class,
        alpha=settings.overlay_alpha,
        max_entries=settings.legend_max_entries,
    )
    written.append(atomic_save_image(out_dir / record["overlay"], overlay, quality=90))
    if decoded.confidence is not None:
        conf = decoded.confidence.cpu().numpy()
        record["confidence_maps"] = {}
        for k, slug in enumerate(class_slugs(class_names)):
            name = f"{stem}_conf_{slug}.png"
            written.append(atomic_save_image(out_dir / name, Image.fromarray(conf[k], mode="L")))
            record["confidence_maps"][class_names[k]] = name
    if decoded.logits is not None:
        record["logits"] = f"{stem}_logits.npy"
        logits = decoded.logits.cpu().numpy().astype(np.float32, copy=False)
        written.append(atomic_save_npy(out_dir / record["logits"], logits))
    return record


def legend_document(
    class_names: Sequence[str],
    palette: np.ndarray,
    *,
    model: dict[str, Any],
    settings: dict[str, Any],
    images: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The content of ``legend.json``: classes, their colours, the model, the settings used
    and (``images``) one :func:`write_outputs` record per image."""
    doc = {
        "classes": list(class_names),
        "colors": [[int(v) for v in palette[i]] for i in range(len(class_names))],
        "no_class": {"value": 255, "color": list(VOID_COLOR)},
        "model": model,
        "settings": settings,
    }
    return doc if images is None else doc | {"images": images}


def prepare_output_dir(out_dir: str | os.PathLike) -> Path:
    """Create ``out_dir`` (or check it) before anything slow: a :class:`UserError` when it is
    a file, cannot be created or cannot be written to."""
    folder = Path(out_dir).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(
            f"output_dir {folder} is a file, not a folder", "pass output_dir=<a folder>"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(
            f"cannot create output_dir {folder}: {err.strerror or err}",
            "pass output_dir=<a folder you can write to>",
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(
            f"cannot write to output_dir {folder}", "pass output_dir=<a folder you can write to>"
        )
    return folder


def _comparable(legend: dict[str, Any]) -> dict[str, Any]:
    head = {k: legend.get(k) for k in _SAME_RUN}
    head["settings"] = {k: v for k, v in (head["settings"] or {}).items() if k != "device"}
    return json.loads(json.dumps(head))  # tuples -> lists, as read back from the file


def earlier_records(out_dir: Path, head: dict[str, Any]) -> list[dict[str, Any]]:
    """The image records of an earlier run of the same classes, model and settings in
    ``out_dir`` (they stay in the legend). Another run's predictions there, or masks without a
    legend, are a :class:`UserError`: one legend could not describe both."""
    path = out_dir / LEGEND
    if not path.is_file():
        masks = sorted(p.name for p in out_dir.glob("*_mask.png") if OUTPUT_NAME.search(p.name))
        if masks:
            raise UserError(
                f"output_dir {out_dir} holds masks without a {LEGEND} ({masks[0]}, ...): "
                "new masks would sit beside masks of unknown classes",
                "pass another output_dir, or remove the old masks",
            )
        return []
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(
            f"cannot read {path}: {err}", f"pass another output_dir, or remove {path}"
        ) from None
    theirs, ours = _comparable(old), _comparable(head)
    if theirs != ours:
        differ = [k for k in _SAME_RUN if theirs.get(k) != ours.get(k)]
        raise UserError(
            f"output_dir {out_dir} holds predictions of another run (its {LEGEND} differs in "
            f"{', '.join(differ)}: classes {old.get('classes')}); one legend cannot describe both",
            "pass another output_dir (each run gets its own), or remove the old outputs",
        )
    return list(old.get("images", []))


def write_legend(
    out_dir: Path,
    head: dict[str, Any],
    records: Sequence[dict[str, Any]],
    failed: Sequence[dict[str, str]] = (),
    *,
    complete: bool,
) -> Path:
    """Write ``legend.json`` atomically: ``head`` (classes, colours, model, settings), the
    image records (one per mask, the latest for a mask written twice), the inputs that could
    not be read, and whether the run finished (``complete``)."""
    by_mask: dict[str, dict[str, Any]] = {}
    for record in records:
        by_mask[record["mask"]] = record
    legend = {**head, "images": list(by_mask.values()), "failed": list(failed)}
    legend["complete"] = complete
    return atomic_save_json(out_dir / LEGEND, legend)
