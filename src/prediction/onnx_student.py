"""An exported DenseCLIP+ student (``src.export`` / the ``distill_folder`` run's ONNX file) as
a :class:`~src.prediction.predictor.Predictor`, run by onnxruntime.

Only onnxruntime, numpy and torch (for the shared resizing and decoding) are imported: neither
Lightning nor open_clip, so ``python -m src.predict ckpt_path=student.onnx input=...`` runs
where only the deployment packages are installed. The file holds its class names and its
normalisation (:mod:`src.student.export`); its class scores come at the input's size.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from src.errors import UserError
from src.prediction.predictor import Predictor

#: what the exported file calls its input and output (:mod:`src.student.export`)
INPUT_NAME, OUTPUT_NAME = "image", "scores"
#: the input size assumed for files written before ``image_size`` was stored in them
DEFAULT_NATIVE_SIZE = 224


def is_onnx_file(path: Any) -> bool:
    """Whether ``path`` names an ONNX file (by its suffix)."""
    return bool(path) and str(path).strip().lower().endswith(".onnx")


def onnx_session(path: str | os.PathLike, threads: int | None = None) -> Any:
    """An onnxruntime CPU session of ``path`` (``threads``: intra-op threads; None: the
    ``OMP_NUM_THREADS`` of the environment, else onnxruntime's own choice)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(
            f"ONNX file not found: {file}",
            "pass ckpt_path=<the student.onnx a distill_folder run wrote, or src.export's file>",
        )
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError(
            "running an ONNX student needs onnxruntime", "pip install -e '.[export]'"
        ) from None
    options = ort.SessionOptions()
    if threads is None:
        threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    options.intra_op_num_threads = max(0, int(threads))
    try:
        return ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for bad files
        raise UserError(
            f"onnxruntime cannot load {file}: {' '.join(str(err).split())[:200]}",
            "pass an ONNX file written by python -m src.export or a distill_folder run",
        ) from None


def onnx_predictor(path: str | os.PathLike, classes: Sequence[str] | None = None) -> Predictor:
    """The exported student in ``path`` as a :class:`Predictor` (softmax scale 1, its own
    normalisation inside, class names from its metadata). ``classes`` must be left out or be
    the file's own: an exported student's vocabulary is baked in."""
    session = onnx_session(path)
    meta = dict(session.get_modelmeta().custom_metadata_map)
    if "class_names" not in meta:
        raise UserError(
            f"{path} holds no class names: it was not written by this project's export",
            "export the student with python -m src.export format=onnx",
        )
    names = [str(n) for n in json.loads(meta["class_names"])]
    if classes is not None and list(classes) != names:
        raise UserError(
            f"the ONNX student {path} segments {names}; its classes cannot be changed",
            "leave classes= out, or export the checkpoint again with "
            "python -m src.export ckpt_path=<.ckpt> 'classes=[...]'",
        )

    import torch

    def scorer(x: torch.Tensor) -> torch.Tensor:
        array = x.detach().float().cpu().numpy()
        return torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: array})[0]).to(x.device)

    return Predictor(
        scorer=scorer,
        normalize=lambda x: x,  # the file normalises its [0, 1] input itself
        class_names=names,
        logit_scale=1.0,
        native_size=int(meta.get("image_size", DEFAULT_NATIVE_SIZE)),
        info={
            "model": "student",
            "format": "onnx",
            "clip_model": meta.get("clip_model"),
            "ckpt_path": str(Path(path).expanduser()),
        },
    )


def run_onnx(path: str | os.PathLike, images: np.ndarray, threads: int | None = None) -> np.ndarray:
    """(B, 3, H, W) float32 images in [0, 1] -> (B, K, H, W) class scores of the file."""
    session = onnx_session(path, threads)
    return session.run([OUTPUT_NAME], {INPUT_NAME: np.asarray(images, np.float32)})[0]
