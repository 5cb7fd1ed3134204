"""Qualitative grids predicted: every image through every model with
:func:`~src.prediction.predictor.predict_image`, exactly as ``python -m src.predict`` does (same
sizing, scoring, decoding and confidences), the masks mapped into one legend. Plain typed code
behind ``scripts/qualitative_grid.py`` and ``scripts/heads_grid.py``; the figure is
:func:`src.pictures.grid.grid_figure`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from src.errors import UserError
from src.pictures.grid import Grid, GridRow
from src.pictures.palette import NO_CLASS, prediction_palette
from src.prediction.predictor import Predictor, Settings, predict_image

if TYPE_CHECKING:
    import torch


@dataclass
class GridModel:
    """A model shown in the grid: its column title and how it predicts."""

    title: str  #: e.g. ``"DenseCLIP"``, ``"DenseCLIP+"``
    predictor: Predictor


def grid_settings(
    *,
    max_size: int | None = 512,
    min_size: int | str | None = "auto",
    threshold: float | None = None,
) -> Settings:
    """Prediction settings for grids: ``src.predict``'s defaults, with confidence maps
    (``threshold``: pixels whose best probability is below it get no class)."""
    return Settings(
        max_size=max_size,
        min_size=min_size,
        sliding_window=False,
        window=512,
        stride=384,
        window_batch=4,
        threshold=threshold,
        logit_scale=None,
        confidence_maps=True,
        overlay_alpha=0.5,
        legend_max_entries=24,
    )


def legend_classes(models: Sequence[GridModel]) -> list[str]:
    """Every model's classes, each once, in order of first appearance (the teacher's first)."""
    names: list[str] = []
    for model in models:
        names += [n for n in model.predictor.class_names if n not in names]
    return names


def find_phrase(phrase: str, class_names: Sequence[str], title: str) -> int:
    """Index of ``phrase`` in ``class_names``; a :class:`UserError` when it is not there."""
    names = list(class_names)
    if phrase in names:
        return names.index(phrase)
    raise UserError(
        f"the phrase {phrase!r} is not one of {title}'s classes {names}",
        "choose the phrase among the classes, or add it to the classes",
    )


def build_grid(
    images: Sequence[tuple[str, np.ndarray]],
    models: Sequence[GridModel],
    *,
    phrase: str,
    settings: Settings,
    device: torch.device | str = "cpu",
) -> Grid:
    """Predict every ``(name, (H, W, 3) uint8 image)`` with every model.

    Masks are mapped into one legend (:func:`legend_classes`) so a class has one colour in
    every column; the confidence of ``phrase`` is each model's own softmax probability.
    """
    import torch

    if not images:
        raise UserError("no images for the grid", "give at least one image")
    if not models:
        raise ValueError("build_grid needs at least one model")
    titles = [m.title for m in models]
    if len(set(titles)) != len(titles):
        raise ValueError(f"model titles must differ, got {titles}")
    phrase_index = {m.title: find_phrase(phrase, m.predictor.class_names, m.title) for m in models}
    names = legend_classes(models)
    palette = prediction_palette(names)
    luts = {}
    for model in models:
        lut = np.full(256, NO_CLASS, dtype=np.uint8)
        lut[: len(model.predictor.class_names)] = [
            names.index(n) for n in model.predictor.class_names
        ]
        luts[model.title] = lut
    settings = replace(settings, confidence_maps=True)
    device = torch.device(device)
    rows = []
    with torch.inference_mode():
        for name, image in images:
            image = np.asarray(image, dtype=np.uint8)
            if image.ndim != 3 or image.shape[2] != 3:
                raise UserError(f"image {name!r} is not (H, W, 3) RGB: {image.shape}")
            row = GridRow(name=name, image=image)
            for model in models:
                decoded = predict_image(
                    model.predictor, image, settings, device, name=Path(str(name)).stem
                )
                assert decoded.confidence is not None
                row.masks[model.title] = luts[model.title][decoded.mask.cpu().numpy()]
                conf = decoded.confidence[phrase_index[model.title]].cpu().numpy()
                row.confidence[model.title] = conf.astype(np.float32) / 255.0
            rows.append(row)
    return Grid(class_names=names, palette=palette, phrase=phrase, models=titles, rows=rows)
