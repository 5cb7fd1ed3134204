"""A qualitative grid of the teacher heads on shapes-world scenes (docs/TEACHERS.md):
one row per validation scene, one column per head (labels, then the confidence of a phrase),
every head on the same CLIP, predicted exactly as ``python -m src.predict`` does.

    python scripts/heads_grid.py --out docs/figures/heads_shapes.png
    python scripts/heads_grid.py --teacher tiny_shapes_vit --heads <head> <head> --scenes 3 7

The heads are the registered ones (:func:`src.teacher.heads.registered_heads`), by default all
that need no weights beyond the CLIP's.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CLASSES = ["circle", "square", "triangle"]


def default_heads() -> list[str]:
    """The registered heads that need no weights beyond the CLIP's."""
    from src.teacher.heads import head_spec, registered_heads

    return [h for h in registered_heads() if not head_spec(h).needs_weights]


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="tiny_shapes_vit_plain", help="a shipped tiny CLIP")
    parser.add_argument("--heads", nargs="+", default=default_heads())
    parser.add_argument("--pamr", action="store_true",
                        help="also each head its authors pair with PAMR, refined")  # fmt: skip
    parser.add_argument("--scenes", nargs="+", type=int, default=[0, 1, 2, 3])
    parser.add_argument("--phrase", default="square")
    parser.add_argument("--out", type=Path, default=Path("heads_shapes.png"))
    args = parser.parse_args(argv)

    from src.data.shapes import ShapesConfig, render_scene
    from src.pictures.grid import grid_figure
    from src.prediction.grid import GridModel, build_grid, grid_settings
    from src.prediction.predictor import predictor_from_teacher
    from src.teacher.heads import head_spec
    from src.teacher.model import DenseClipTeacher
    from src.utils.io import atomic_write_bytes

    models = []
    variants = [(h, None) for h in args.heads]
    if args.pamr:
        variants += [(h, head_spec(h).authors_refine) for h in args.heads
                     if head_spec(h).authors_refine]  # fmt: skip
    for head, refine in variants:
        masks = "superpixels" if head_spec(head).needs_regions else None  # weights-free
        teacher = DenseClipTeacher(clip_model=args.teacher, pretrained="shapes",
                                   class_names=CLASSES, head=head, refine=refine,
                                   masks=masks)  # fmt: skip
        title = head + (f" + {refine.upper()}" if refine else "")
        models.append(GridModel(title=title, predictor=predictor_from_teacher(teacher)))
    images = [(f"val {i}", render_scene(ShapesConfig(), i, "val").image) for i in args.scenes]
    grid = build_grid(images, models, phrase=args.phrase, settings=grid_settings())
    figure = grid_figure(grid, cell_inches=1.5, title=f"{args.teacher}: teacher heads")
    import io

    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=80)
    atomic_write_bytes(args.out, buf.getvalue())
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
