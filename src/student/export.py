"""A trained DenseCLIP+ student as one file that runs without this project: ONNX or TorchScript.

The exported network takes ``(B, 3, H, W)`` float32 RGB images in ``[0, 1]`` of any size and
returns ``(B, K, H, W)`` float32 class scores at the input's size: the teacher CLIP's
normalisation, the student net (its EMA weights when it kept them) and the bilinear upsampling
are all inside, so ``scores.argmax(1)`` is the mask ``src.predict`` draws (without its resizing
and sliding windows). The class names (and the normalisation, for reference) are stored in the
file: ONNX ``metadata_props``, TorchScript extra files.

Adaptive average pooling to more than one bin (PSPNet's pyramid) has no ONNX operator for
inputs of unknown size; the exported copy computes it as two averaging matrices built from
the input's size at run time (the same bins as PyTorch's), so every head exports with
dynamic height and width. :func:`check_parity` runs the file against the student in PyTorch.
"""

from __future__ import annotations

import copy
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.errors import UserError
from src.utils.io import atomic_write_bytes
from src.utils.records import teacher_record

if TYPE_CHECKING:
    from src.student.model import DenseClipPlus

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
INPUT_NAME = "image"
OUTPUT_NAME = "scores"
DEFAULT_OPSET = 17
#: the metadata keys :func:`export_metadata` writes
METADATA_KEYS = ("class_names", "input", "output", "normalization_mean", "normalization_std",
                 "clip_model", "student_head", "background_class", "producer",
                 "source_checkpoint", "teacher_config", "image_size")  # fmt: skip


def _bins(length: Tensor, bins: int) -> Tensor:
    """(bins, length) averaging matrix of adaptive average pooling along one axis: bin ``i``
    covers ``[floor(i L / n), ceil((i + 1) L / n))``, as PyTorch's ``adaptive_avg_pool``."""
    idx = torch.arange(bins, device=length.device)
    start = torch.div(idx * length, bins, rounding_mode="floor")
    end = torch.div((idx + 1) * length + bins - 1, bins, rounding_mode="floor")
    pos = torch.arange(length, device=length.device)  # type: ignore[call-overload]
    inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])
    return inside.float() / (end - start)[:, None].float()


class AdaptiveAvgPool2dExportable(nn.Module):
    """``nn.AdaptiveAvgPool2d`` as matrix products, exportable with dynamic input sizes."""

    def __init__(self, output_size: int | tuple[int, int]) -> None:
        super().__init__()
        size = (output_size, output_size) if isinstance(output_size, int) else output_size
        if any(s is None for s in size):
            raise ValueError("AdaptiveAvgPool2dExportable needs explicit output sizes")
        self.output_size = (int(size[0]), int(size[1]))

    def forward(self, x: Tensor) -> Tensor:
        if self.output_size == (1, 1):
            return x.mean(dim=(-2, -1), keepdim=True)
        # while tracing, the sizes are 0-d tensors recorded in the graph: they stay dynamic
        h, w = (s if isinstance(s, Tensor) else torch.tensor(s) for s in x.shape[-2:])
        rows = _bins(h, self.output_size[0]).to(x.dtype)  # (n, H)
        cols = _bins(w, self.output_size[1]).to(x.dtype)  # (m, W)
        return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))


def exportable_copy(net: nn.Module) -> nn.Module:
    """A deep copy of ``net`` in eval mode with every ``nn.AdaptiveAvgPool2d`` replaced by
    :class:`AdaptiveAvgPool2dExportable` (the same numbers, up to float rounding)."""
    out = copy.deepcopy(net).eval()
    for module in list(out.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.AdaptiveAvgPool2d):
                setattr(module, child_name, AdaptiveAvgPool2dExportable(child.output_size))
    return out


class DeployableStudent(nn.Module):
    """(B, 3, H, W) RGB in [0, 1] -> (B, K, H, W) class scores at the input's size."""

    def __init__(self, student: DenseClipPlus) -> None:
        super().__init__()
        self.net = exportable_copy(student._eval_net())
        self.register_buffer(
            "mean", torch.tensor(student.mean, dtype=torch.float32).view(1, 3, 1, 1)
        )
        self.register_buffer("std", torch.tensor(student.std, dtype=torch.float32).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, image: Tensor) -> Tensor:
        scores = self.net((image - self.mean) / self.std)
        return F.interpolate(scores, size=image.shape[-2:], mode="bilinear", align_corners=False)


def reference_scores(student: DenseClipPlus, images: Tensor) -> Tensor:
    """The student's own (B, K, H, W) scores in PyTorch for [0, 1] images: what the exported
    file must reproduce (``predict_logits`` on normalised images, as ``src.predict`` runs it)."""
    with torch.inference_mode():
        return student.predict_logits(student.normalize(images)).float()


def export_metadata(student: DenseClipPlus, *, source: str | None = None) -> dict[str, str]:
    """What a user of the file needs to read its output (string values, JSON where lists)."""
    meta = {
        "class_names": json.dumps(list(student.class_names)),
        "input": f"{INPUT_NAME}: float32 (batch, 3, height, width), RGB in [0, 1], any size",
        "output": f"{OUTPUT_NAME}: float32 (batch, classes, height, width), class scores "
        "(logits) at the input's size; argmax over classes is the mask",
        "normalization_mean": json.dumps(list(student.mean)),
        "normalization_std": json.dumps(list(student.std)),
        "clip_model": str(student.clip_model),
        "student_head": str(student.hparams.get("head")),
        "background_class": json.dumps(bool(student.class_offset)),
        "producer": "denseclip-lightning src.export",
        "teacher_config": json.dumps(teacher_record(student.teacher), sort_keys=True),
        "image_size": str(int(student.image_size)),  # prediction enlarges smaller images to it
    }
    if source:
        meta["source_checkpoint"] = source
    return meta


def _onnx_bytes(model: nn.Module, sample: Tensor, opset: int) -> bytes:
    buffer = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.export(
        model,
        (sample,),
        buffer,
        dynamo=False,  # the TorchScript-based exporter: dynamic sizes without onnxscript
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
        opset_version=opset,
        do_constant_folding=True,
    )
    return buffer.getvalue()


def export_student(
    student: DenseClipPlus,
    path: str | os.PathLike,
    *,
    fmt: str,
    opset: int = DEFAULT_OPSET,
    sample_size: Sequence[int] = (64, 64),
    source: str | None = None,
) -> Path:
    """Write ``student`` to ``path`` (atomically) as ``fmt`` (``onnx`` | ``torchscript``)."""
    if fmt not in FORMATS:
        raise UserError(
            f"unknown export format {fmt!r}", f"use format={' or format='.join(FORMATS)}"
        )
    model = DeployableStudent(student).cpu()
    sample = torch.rand(1, 3, int(sample_size[0]), int(sample_size[1]))
    meta = export_metadata(student, source=source)
    if fmt == "onnx":
        try:
            import onnx
        except ImportError:
            raise UserError(
                "ONNX export needs the onnx package", "pip install -e '.[export]'"
            ) from None
        proto = onnx.load_from_string(_onnx_bytes(model, sample, opset))
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.producer_name = "denseclip-lightning"
        onnx.checker.check_model(proto)
        data = proto.SerializeToString()
    else:
        with torch.no_grad():
            traced = torch.jit.trace(model, (sample,), check_trace=False)
        buffer = io.BytesIO()
        files = {f"{key}.txt": value for key, value in meta.items()}
        torch.jit.save(traced, buffer, _extra_files=files)
        data = buffer.getvalue()
    return atomic_write_bytes(path, data)


def read_metadata(path: str | os.PathLike, *, fmt: str) -> dict[str, str]:
    """The metadata :func:`export_student` stored in an exported file."""
    if fmt == "onnx":
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        return {p.key: p.value for p in proto.metadata_props}
    files = {f"{name}.txt": "" for name in METADATA_KEYS}
    torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    text = {name: files[f"{name}.txt"] for name in METADATA_KEYS}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in text.items() if v}


def load_runner(path: str | os.PathLike, *, fmt: str) -> Any:
    """A callable ``(B, 3, H, W) float32 numpy -> (B, K, H, W) numpy`` running the file
    (onnxruntime on the CPU for ONNX, ``torch.jit.load`` for TorchScript)."""
    import numpy as np

    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError(
                "the ONNX parity check needs onnxruntime", "pip install -e '.[export]'"
            ) from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: np.asarray(x, np.float32)})[0]
    module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x: Any) -> Any:
        with torch.inference_mode():
            return module(torch.as_tensor(np.asarray(x, np.float32))).numpy()

    return run


def check_parity(
    student: DenseClipPlus, path: str | os.PathLike, *, fmt: str, images: Sequence[Tensor]
) -> dict[str, Any]:
    """Run the exported file and the student (PyTorch, CPU, fp32) on each (3, H, W) image in
    [0, 1]; the largest absolute score difference overall and per image, and the share of
    pixels whose argmax class agrees; ``max_abs_score`` is the largest score's size (for a
    relative reading of the difference)."""
    run = load_runner(path, fmt=fmt)
    student = student.cpu().eval()
    per_image = []
    for image in images:
        x = image[None].float()
        ref = reference_scores(student, x)
        out = torch.from_numpy(run(x.numpy()))
        if tuple(out.shape) != tuple(ref.shape):
            raise RuntimeError(f"exported output {tuple(out.shape)} != {tuple(ref.shape)}")
        diff = float((out - ref).abs().max())
        agree = float((out.argmax(1) == ref.argmax(1)).float().mean())
        per_image.append({"size": list(x.shape[-2:]), "max_abs_diff": diff, "argmax_agree": agree,
                          "max_abs_score": float(ref.abs().max())})  # fmt: skip
    return {
        "format": fmt,
        "max_abs_diff": max(p["max_abs_diff"] for p in per_image),
        "max_abs_score": max(p["max_abs_score"] for p in per_image),
        "argmax_agree": min(p["argmax_agree"] for p in per_image),
        "images": per_image,
        "file_bytes": Path(path).stat().st_size,
    }


def rounding_floor(
    student: DenseClipPlus, path: str | os.PathLike, *, fmt: str, images: Sequence[Tensor]
) -> dict[str, float]:
    """How far fp32 is from exact on these images: the largest difference to the student run
    in float64, of PyTorch in fp32 (``pytorch_vs_fp64``) and of the exported file
    (``exported_vs_fp64``). A deep network amplifies rounding; a file as close to float64 as
    PyTorch's own fp32 is exact as fp32 allows, whatever its difference to PyTorch."""
    run = load_runner(path, fmt=fmt)
    exact = copy.deepcopy(student).cpu().double().eval()
    worst = {"pytorch_vs_fp64": 0.0, "exported_vs_fp64": 0.0}
    for image in images:
        x = image[None].float()
        with torch.inference_mode():
            ref64 = exact.predict_logits(exact.normalize(x.double())).float()
        ref32 = reference_scores(student.cpu().eval(), x)
        out = torch.from_numpy(run(x.numpy()))
        worst["pytorch_vs_fp64"] = max(worst["pytorch_vs_fp64"], float((ref32 - ref64).abs().max()))
        worst["exported_vs_fp64"] = max(worst["exported_vs_fp64"], float((out - ref64).abs().max()))
    return worst


def parity_verdict(
    max_abs_diff: float, tolerance: float, floor: dict[str, float] | None = None
) -> str:
    """``ok`` (within ``tolerance`` of PyTorch), ``rounding`` (further, but no further from
    float64 than twice PyTorch's own fp32 error plus ``tolerance``: :func:`rounding_floor`)
    or ``fail``."""
    if max_abs_diff <= tolerance:
        return "ok"
    if floor is not None and floor["exported_vs_fp64"] <= (
        2 * floor["pytorch_vs_fp64"] + tolerance
    ):
        return "rounding"
    return "fail"


def parity_images(sizes: Sequence[Sequence[int]], *, seed: int = 0) -> list[Tensor]:
    """Deterministic (3, H, W) test images in [0, 1]: smooth colour blobs plus fine noise, so
    that the scores vary across the image (a constant image would hide resizing errors)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for h, w in sizes:
        coarse = torch.rand(1, 3, max(2, h // 16), max(2, w // 16), generator=g)
        smooth = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[0]
        out.append((smooth + 0.1 * torch.rand(3, h, w, generator=g)).clamp(0, 1))
    return out
