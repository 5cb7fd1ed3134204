"""The confusion-matrix figure (eval reports, training reports) and atomic figure saving.

Plain numpy in, numpy or a matplotlib ``Figure`` out (object API with the Agg canvas: no
pyplot state, no display needed); :func:`save_figure` writes atomically.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from src.utils.io import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def confusion_matrix_figure(
    confmat: np.ndarray,
    class_names: Sequence[str],
    *,
    pairs: Sequence[tuple[str, str, float, int]] = (),
    title: str = "Confusion matrix (rows: ground truth, normalised per row)",
) -> Figure:
    """A row-normalised confusion matrix with class names on both axes and, at its right,
    the ``pairs`` (true, predicted, fraction, pixels) listed as the most confused."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cm = np.asarray(confmat, dtype=np.float64)
    k = cm.shape[0]
    rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    side = float(np.clip(0.16 * k + 3.0, 6.0, 30.0))
    font = float(np.clip(300.0 / k, 3.0, 9.0))
    fig = Figure(figsize=(side + 4.5, side), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, 2, width_ratios=[side, 4.5])
    ax = fig.add_subplot(grid[0, 0])
    im = ax.imshow(rows, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(k), labels=list(class_names), rotation=90, fontsize=font)
    ax.set_yticks(range(k), labels=list(class_names), fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    fig.suptitle(title, fontsize=11)
    if k <= 25:
        for i in range(k):
            for j in range(k):
                if rows[i, j] >= 0.01:
                    colour = "black" if rows[i, j] > 0.6 else "white"
                    ax.text(j, i, f"{100 * rows[i, j]:.0f}", ha="center", va="center",
                            fontsize=font * 0.8, color=colour)  # fmt: skip
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.01, shrink=0.8, label="fraction of the true class")
    text_ax = fig.add_subplot(grid[0, 1])
    text_ax.axis("off")
    lines = ["Most confused (true -> predicted):", ""]
    lines += [f"{t} -> {p}: {100 * f:.1f}% ({n} px)" for t, p, f, n in pairs] or ["(none)"]
    text_ax.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", fontsize=9, family="monospace")
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 100) -> None:
    """Render ``fig`` to PNG (or the suffix's format) and write it atomically."""
    buf = io.BytesIO()
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    fig.savefig(buf, format=fmt, dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())
