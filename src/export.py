"""Export a trained DenseCLIP+ student to ONNX or TorchScript and check it against PyTorch.

    python -m src.export ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt format=onnx
    python -m src.export ckpt_path=... format=torchscript output_path=student.pt

Writes one file (normalisation inside, any H x W, class scores at the input's size, the class
names in its metadata), runs it (onnxruntime on the CPU, or ``torch.jit.load``) and the
student in PyTorch on a few images, and prints the largest absolute difference and the file
size. A difference above ``parity_tolerance`` fails the run, unless the file is as close to the
student run in float64 as PyTorch's own fp32 is (rounding the network amplifies). See
docs/EXPORT.md.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from src.errors import UserError
from src.prediction.predictor import class_list, set_student_classes
from src.student.checkpoint import load_student
from src.student.export import (
    DEFAULT_OPSET,
    FORMATS,
    SUFFIXES,
    check_parity,
    export_student,
    parity_images,
    parity_verdict,
    rounding_floor,
)
from src.teacher.text import validate_class_names
from src.utils.task import run_task

log = logging.getLogger(__name__)


def output_file(cfg: DictConfig, fmt: str) -> Path:
    """Where the exported file goes: ``output_path``, else ``<run folder>/<ckpt stem><suffix>``."""
    if cfg.get("output_path"):
        path = Path(str(cfg.output_path)).expanduser()
        if path.is_dir():
            raise UserError(f"output_path={path} is a folder", "give a file name, e.g. model.onnx")
        return path
    return Path(str(cfg.paths.output_dir)) / (Path(str(cfg.ckpt_path)).stem + SUFFIXES[fmt])


def check_opset(value: Any) -> int:
    """The ONNX opset of the config: an integer the exporter knows, else a UserError."""
    from torch.onnx._constants import ONNX_MIN_OPSET, ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET

    low, high = ONNX_MIN_OPSET, ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserError(
            f"opset={value!r} is not an ONNX opset the exporter writes ({low}..{high})",
            f"use the default opset={DEFAULT_OPSET}",
        )
    return value


def check_writable(path: Path) -> None:
    """Fail before any work when ``path``'s folder cannot be made or written to."""
    if path.parent.exists() and not path.parent.is_dir():
        raise UserError(
            f"the folder of output_path={path} is a file",
            "pass output_path=<a file in a folder you can write to>",
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(
            f"cannot create the folder of output_path={path}: {err.strerror or err}",
            "pass output_path=<a file in a folder you can write to>",
        ) from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise UserError(
            f"cannot write to the folder of output_path={path}",
            "pass output_path=<a file in a folder you can write to>",
        )


def parity_sizes(value: Any) -> list[tuple[int, int]]:
    """``[[h, w], ...]`` from the config, checked."""
    try:
        sizes = [(int(h), int(w)) for h, w in value]
    except (TypeError, ValueError):
        sizes = []
    if not sizes or min(min(s) for s in sizes) < 8:
        raise UserError(
            f"parity_sizes={value!r} is not a list of [height, width] pairs of at least 8 px",
            "e.g. 'parity_sizes=[[224,224],[181,263]]'",
        )
    return sizes


def export(cfg: DictConfig) -> dict[str, Any]:
    """Load the checkpoint, write the file, check it; return the parity figures."""
    fmt = str(cfg.format).strip().lower()
    if fmt not in FORMATS:
        raise UserError(f"format={cfg.format!r} is not known", f"use one of: {', '.join(FORMATS)}")
    if not cfg.get("ckpt_path"):
        raise UserError("no checkpoint given", "pass ckpt_path=<a .ckpt written by src.train>")
    sizes = parity_sizes(cfg.parity_sizes)
    tolerance = float(cfg.parity_tolerance)
    classes = class_list(cfg.get("classes"))
    if classes is not None:
        validate_class_names(classes)
    path = output_file(cfg, fmt)
    opset = check_opset(cfg.get("opset"))
    check_writable(path)

    import torch

    student = load_student(str(cfg.ckpt_path))
    if classes is not None:
        set_student_classes(student, classes)
    with warnings.catch_warnings():  # torch.jit's and the TorchScript-based exporter's notices
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            export_student(student, path, fmt=fmt, opset=opset, source=str(cfg.ckpt_path))
        except OSError as err:  # a read-only or full disk, after the checks above
            raise UserError(
                f"cannot write output_path={path}: {err.strerror or err}",
                "pass output_path=<a file in a folder you can write to>",
            ) from None
        except Exception as err:  # the exporter's own failure (e.g. an opset too old)
            first = next((line for line in str(err).splitlines() if line.strip()), "")
            raise UserError(
                f"the {fmt} exporter cannot write this student at opset={opset}: {first[:200]}",
                f"use the default opset={DEFAULT_OPSET}, or format=torchscript",
            ) from None
        parity = check_parity(student, path, fmt=fmt, images=parity_images(sizes))
    mb = parity["file_bytes"] / 2**20
    shown = ", ".join(f"{h}x{w}" for h, w in sizes)
    print(f"wrote {path} ({fmt}, {mb:.1f} MB, {len(student.class_names)} classes)")
    print(
        f"parity with PyTorch on {len(sizes)} images ({shown}): max abs diff "
        f"{parity['max_abs_diff']:.2e} (scores up to {parity['max_abs_score']:.3g}), "
        f"argmax agreement {100 * parity['argmax_agree']:.2f}%"
    )
    floor = None
    if parity["max_abs_diff"] > tolerance:  # is it the network's own fp32 rounding?
        floor = rounding_floor(student, path, fmt=fmt, images=parity_images(sizes))
        print(
            f"the difference is above parity_tolerance={tolerance:g}; against float64 PyTorch: "
            f"PyTorch fp32 {floor['pytorch_vs_fp64']:.2e}, the file {floor['exported_vs_fp64']:.2e}"
        )
    verdict = parity_verdict(parity["max_abs_diff"], tolerance, floor)
    if verdict == "rounding":
        print("the file is as close to exact as PyTorch's own fp32: the network amplifies rounding")
    if verdict == "fail":
        raise UserError(
            f"the exported file differs from PyTorch by {parity['max_abs_diff']:.2e} "
            f"(more than parity_tolerance={tolerance:g})",
            "try another opset=, or format=torchscript; please report the checkpoint's head",
        )
    return {
        "export/max_abs_diff": parity["max_abs_diff"],
        "export/parity": verdict,
        "export/argmax_agree": parity["argmax_agree"],
        "export/file_mb": round(mb, 3),
        "export/path": str(path),
        "export/format": fmt,
    }


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def _hydra_main(cfg: DictConfig) -> dict[str, Any]:
    return run_task(export, cfg, output_dir=cfg.paths.output_dir)


def main() -> None:
    """Entry point: ``python -m src.export``."""
    _hydra_main()


if __name__ == "__main__":
    sys.exit(main())
