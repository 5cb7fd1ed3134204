"""Qualitative grids (the paper's Figures 1, 5, 6): image | DenseCLIP | DenseCLIP+ | confidence.

Plain typed code behind ``scripts/qualitative_grid.py``. Models come in as
:class:`~src.prediction.predictor.Predictor` objects (the teacher, and a trained student if there is one)
and every image is predicted through :func:`src.prediction.predictor.predict_image`, exactly as
``python -m src.predict`` does (same sizing, decoding and confidences). :func:`build_grid`
returns the masks and confidence maps (:class:`Grid`); :func:`grid_figure` draws them, one row
per image, with a shared colour legend of the classes and a colour bar for the confidences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from src.errors import UserError
from src.pictures.overlay import blend
from src.pictures.palette import VOID_COLOR, prediction_palette
from src.prediction.decode import NO_CLASS
from src.prediction.predictor import Predictor, Settings, predict_image

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure


IMAGE_COLUMN = "image"


@dataclass
class GridModel:
    """A model shown in the grid: its column title and how it predicts."""

    title: str  #: e.g. ``"DenseCLIP"``, ``"DenseCLIP+"``
    predictor: Predictor


@dataclass
class GridRow:
    """One image and what every model made of it."""

    name: str
    image: np.ndarray  #: (H, W, 3) uint8
    masks: dict[str, np.ndarray] = field(default_factory=dict)  #: title -> (H, W) legend index
    confidence: dict[str, np.ndarray] = field(default_factory=dict)  #: title -> (H, W) in [0, 1]


@dataclass
class Grid:
    """Everything a qualitative figure shows."""

    class_names: list[str]  #: the legend: mask value ``i`` is ``class_names[i]``, 255 no class
    palette: np.ndarray  #: (256, 3) uint8 colours by mask value
    phrase: str  #: the class whose confidence maps are shown
    models: list[str]  #: model titles, in column order
    rows: list[GridRow]

    @property
    def columns(self) -> list[str]:
        """Column titles: the image, each model's labels, each model's confidence map."""
        conf = [f"{title}: p({self.phrase})" for title in self.models]
        return [IMAGE_COLUMN, *self.models, *conf]


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
                decoded = predict_image(model.predictor, image, settings, device)
                assert decoded.confidence is not None
                row.masks[model.title] = luts[model.title][decoded.mask.cpu().numpy()]
                conf = decoded.confidence[phrase_index[model.title]].cpu().numpy()
                row.confidence[model.title] = conf.astype(np.float32) / 255.0
            rows.append(row)
    return Grid(class_names=names, palette=palette, phrase=phrase, models=titles, rows=rows)


def grid_figure(
    grid: Grid,
    *,
    alpha: float = 0.6,
    cell_inches: float = 2.4,
    cmap: str = "inferno",
    title: str | None = None,
) -> Figure:
    """The grid as a matplotlib figure (Agg canvas, no pyplot): one row per image, the legend
    of the classes present and a colour bar of the confidence at the bottom."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    columns = grid.columns
    n_rows, n_cols = len(grid.rows), len(columns)
    legend_rows = 1 + len(grid.class_names) // 6
    fig = Figure(
        figsize=(cell_inches * n_cols, cell_inches * n_rows + 0.6 + 0.3 * legend_rows),
        layout="constrained",
    )
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    norm = Normalize(vmin=0.0, vmax=1.0)
    present: set[int] = set()
    for r, row in enumerate(grid.rows):
        cells = [row.image]
        for model in grid.models:
            mask = row.masks[model]
            present |= set(np.unique(mask).tolist())
            cells.append(blend(row.image, mask, grid.palette, alpha))
        for c, picture in enumerate(cells):
            axes[r, c].imshow(picture, interpolation="nearest")
        for c, model in enumerate(grid.models, start=len(cells)):
            axes[r, c].imshow(row.confidence[model], cmap=cmap, norm=norm, interpolation="nearest")
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize=9)
        axes[r, 0].set_ylabel(row.name, fontsize=8)
    handles = [
        Patch(facecolor=np.asarray(grid.palette[i]) / 255, edgecolor="black", label=name)
        for i, name in enumerate(grid.class_names)
        if i in present
    ]
    if NO_CLASS in present:
        handles.append(Patch(facecolor=np.asarray(VOID_COLOR) / 255, label="(no class)"))
    if handles:
        fig.legend(
            handles=handles, loc="outside lower left", ncols=min(6, len(handles)), fontsize=8
        )
    fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap),
        ax=axes[:, len(grid.models) + 1 :].ravel().tolist(),
        location="bottom",
        shrink=0.9,
        label=f"p({grid.phrase})",
    )
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
