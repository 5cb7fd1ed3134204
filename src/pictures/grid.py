"""Qualitative grids (the paper's Figures 1, 5, 6) drawn: image | DenseCLIP | DenseCLIP+ |
confidence. :class:`Grid` holds what a figure shows (images, masks in one legend, confidence
maps); :func:`grid_figure` draws it, one row per image, with a shared colour legend of the
classes and a colour bar for the confidences. The masks are made by
:func:`src.prediction.grid.build_grid` (pictures draw, prediction predicts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from src.pictures.overlay import blend
from src.pictures.palette import NO_CLASS, VOID_COLOR

if TYPE_CHECKING:
    from matplotlib.figure import Figure


IMAGE_COLUMN = "image"


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
