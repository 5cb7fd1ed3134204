"""A qualitative grid for any images and phrases: image | DenseCLIP | DenseCLIP+ | confidence.

    python scripts/qualitative_grid.py photos/ --classes cat dog "red car" --phrase "red car" \
        --teacher rn50 --out grid.png
    python scripts/qualitative_grid.py 'scenes/*.png' --classes circle square triangle \
        --ckpt logs/train/runs/<run>/checkpoints/last.ckpt --phrase circle

Rows are the images (a file, a folder or a glob). Columns: the image, the teacher's labels
(DenseCLIP), the student's labels (DenseCLIP+, only with ``--ckpt``), and the confidence of
``--phrase`` for the teacher (and the student). Colours are shared by all columns; the legend
lists the classes present. The teacher is a ``conf/teacher/<name>.yaml`` (default
``tiny_shapes``, shipped with the repository); with ``--ckpt`` and no ``--teacher`` it is the
student's own teacher. Prediction is that of ``python -m src.predict`` (same sizing and
confidences). The picture is written atomically; bad input is one ``error:`` line, exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.errors import UserError  # noqa: E402

DEFAULT_TEACHER = "tiny_shapes"


def parse_classes(values: Sequence[str] | None) -> list[str] | None:
    """``--classes cat dog "red car"`` or ``--classes cat,dog,red car`` -> the phrase list."""
    if values is None:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def teacher_options(name: str) -> dict[str, Any]:
    """The keyword arguments of the teacher config ``name`` (``conf/teacher/<name>.yaml``),
    composed by Hydra as the entry points compose it."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from src.utils.task import CONF_DIR, check_group_choices

    check_group_choices([f"teacher={name}"])  # an unknown name is one clear line
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="predict", overrides=[f"teacher={name}"])
    options = OmegaConf.to_container(cfg.teacher, resolve=True)
    assert isinstance(options, dict)
    options.pop("_target_", None)
    return options


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", help="an image file, a folder of images or a glob ('a/*.jpg')")
    parser.add_argument(
        "--classes",
        nargs="+",
        help="the vocabulary: phrases, space- or comma-separated (default with --ckpt: the "
        "checkpoint's classes)",
    )
    parser.add_argument("--phrase", help="class whose confidence is shown (default: the first)")
    parser.add_argument(
        "--teacher",
        help=f"conf/teacher/<name>.yaml (default: {DEFAULT_TEACHER}, or the student's teacher)",
    )
    parser.add_argument("--pretrained", help="override the teacher's weights (tag or file)")
    parser.add_argument("--ckpt", help="a DenseCLIP+ checkpoint: adds the student's columns")
    parser.add_argument("--out", default="qualitative_grid.png", help="the picture (.png/.pdf)")
    parser.add_argument("--max-images", type=int, help="use only the first N images")
    parser.add_argument("--max-size", type=int, default=512, help="short side at most (px)")
    parser.add_argument("--threshold", type=float, help="below this confidence: no class")
    parser.add_argument("--alpha", type=float, default=0.6, help="opacity of the label colours")
    parser.add_argument("--cell", type=float, default=2.4, help="size of one cell (inches)")
    parser.add_argument("--dpi", type=int, default=100)
    parser.add_argument("--title", help="a title over the grid")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:<n>")
    parser.add_argument(
        "--cache-dir",
        default=os.environ.get("DENSECLIP_CACHE_DIR", str(ROOT / ".cache")),
        help="text-embedding cache (default: $DENSECLIP_CACHE_DIR or .cache)",
    )
    return parser.parse_args(argv)


def check_numbers(args: argparse.Namespace) -> None:
    """Bad numeric options are user errors naming the option."""
    checks = [
        ("--max-images", args.max_images, args.max_images is None or args.max_images >= 1),
        ("--max-size", args.max_size, args.max_size >= 1),
        ("--threshold", args.threshold, args.threshold is None or 0 < args.threshold <= 1),
        ("--alpha", args.alpha, 0 <= args.alpha <= 1),
        ("--cell", args.cell, args.cell > 0),
        ("--dpi", args.dpi, args.dpi >= 10),
    ]
    for option, value, ok in checks:
        if not ok:
            raise UserError(f"{option} {value} is out of range", f"see --help for {option}")
    if Path(args.out).suffix.lower() not in (".png", ".pdf", ".svg", ".jpg"):
        raise UserError(f"--out {args.out}: unknown picture type", "end it in .png, .pdf or .svg")


def make_grid(args: argparse.Namespace) -> Path:
    """Validate everything cheap first, then load the models, predict and draw."""
    import numpy as np

    from src.teacher.text import validate_class_names
    from src.utils.images import check_readable, find_images, load_rgb

    check_numbers(args)
    paths = find_images(args.input)
    paths = paths[: args.max_images] if args.max_images else paths
    for path in paths:
        check_readable(path)
    classes = parse_classes(args.classes)
    if classes is None and not args.ckpt:
        raise UserError("no classes given", 'name the phrases, e.g. --classes cat dog "red car"')
    if classes is not None:
        validate_class_names(classes)
        if args.phrase is not None and args.phrase not in classes:
            raise UserError(
                f"--phrase {args.phrase!r} is not one of the classes {classes}",
                "choose the phrase among --classes, or add it to them",
            )
    options = teacher_options(args.teacher or DEFAULT_TEACHER)  # an unknown name fails here
    if args.ckpt and not Path(args.ckpt).expanduser().is_file():
        raise UserError(f"checkpoint not found: {args.ckpt}", "pass --ckpt <path to a .ckpt>")

    from src.pictures.confusion import save_figure
    from src.pictures.grid import grid_figure
    from src.prediction.grid import GridModel, build_grid, grid_settings
    from src.prediction.predictor import choose_device, predictor_from_teacher, student_predictor
    from src.teacher.model import DenseClipTeacher

    device = choose_device(args.device)
    models = []
    student = None
    if args.ckpt:
        student = student_predictor(args.ckpt, classes, device)
        if classes is None:  # the checkpoint's vocabulary, without its learned background
            classes = [n for n in student.class_names if n != "background"]
    if args.pretrained:
        options["pretrained"] = args.pretrained
    # With a student and no other teacher asked for: its own teacher (already on the
    # vocabulary); otherwise the configured one.
    teacher = student.model.teacher if student is not None else None
    if teacher is None or args.teacher or args.pretrained:
        teacher = DenseClipTeacher(**options, class_names=classes, cache_dir=args.cache_dir)
    models.append(GridModel("DenseCLIP", predictor_from_teacher(teacher.to(device))))
    if student is not None:
        models.append(GridModel("DenseCLIP+", student))

    assert classes is not None
    phrase = args.phrase if args.phrase is not None else classes[0]
    settings = grid_settings(max_size=args.max_size, threshold=args.threshold)
    images = [(path.name, np.asarray(load_rgb(path))) for path in paths]
    grid = build_grid(images, models, phrase=phrase, settings=settings, device=device)
    fig = grid_figure(grid, alpha=args.alpha, cell_inches=args.cell, title=args.title)
    out = Path(args.out).expanduser()
    save_figure(fig, out, dpi=args.dpi)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; returns the exit status (2 on a user error, printed without traceback)."""
    args = parse_args(argv)
    try:
        out = make_grid(args)
    except UserError as err:
        if os.environ.get("HYDRA_FULL_ERROR", "0") == "1":
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
