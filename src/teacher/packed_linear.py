"""The frozen towers' linear layers on a CPU through oneDNN with weights packed once
(``teacher.packed_weights``, on by default).

On a CPU, ``F.linear`` in float32 runs MKL's GEMM on the plain weight; oneDNN with the weight
reordered once into its blocked layout computes the same products 1.14-1.30x faster at a
ViT-B/16's shapes (197 x 768 by 768 x 2304 / 3072, one thread, AMD EPYC with AVX-512; MKL
1.8e-6, oneDNN 3.6e-6 from a float64 reference), 1.14-1.16x on a whole ViT-B/16 NACLIP
forward (docs/TEACHERS.md). The price is a second copy of the packed weights (ViT-B/16's image
tower: +344 MB). ViT towers and proxies gain; a ResNet tower's convolutions are untouched.

Only weights registered by :func:`pack_linear_weights` are packed, and only where nothing is
recorded for autograd, no autocast is on, the input and weight are float32 on a CPU (and not
inference tensors, which keep no version counter), the product has at least
:data:`MIN_MULTIPLY_ADDS` multiply-adds and no tracer, compiler or ONNX export is running
(those see ``F.linear``); anywhere else, and if this PyTorch build has no oneDNN linear,
:func:`linear` is ``F.linear``. A weight changed in place by a tracked operation
(``load_state_dict``, ``copy_``) or moved is packed again on its next use; a write through
``.data`` is not seen (it leaves the version counter alone). Used off the CPU (or in another
dtype), a weight's packed copy is released.
"""

from __future__ import annotations

import threading
import weakref

import torch
import torch.nn.functional as F
from torch import nn

#: id(registered weight) -> [weak reference to it, ((data pointer, version), packed weight) or
#: None until first use]; the pair is replaced whole, so a reader never sees a key with another
#: key's packed weight (keyed by id: a tensor's ``==`` is elementwise, so tensors cannot be weak
#: dictionary keys)
_PACKED: dict[int, list] = {}
_LOCK = threading.Lock()
#: smaller products (multiply-adds) stay on ``F.linear``, where oneDNN's per-call cost eats
#: its faster kernel (65 x 128 by 128 x 128, 1M: 0.77x; 65 x 128 by 128 x 512, 4M: 1.02x;
#: 197 x 256 by 256 x 768, 39M: 1.11x)
MIN_MULTIPLY_ADDS = 1 << 23
_STATE = {"usable": None}  # None: not probed yet; False: this build has no oneDNN linear


def _ops_available() -> bool:
    if _STATE["usable"] is None:
        ok = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
        if ok:
            try:  # a build may list the op and still refuse it
                w = torch.ones(2, 2)
                out = torch.ops.mkldnn._linear_pointwise(
                    torch.ones(1, 2), torch.ops.mkldnn._reorder_linear_weight(w), None,
                    "none", [], "",
                )  # fmt: skip
                ok = bool(torch.equal(out, torch.full((1, 2), 2.0)))
            except (RuntimeError, NotImplementedError):
                ok = False
        _STATE["usable"] = ok
    return bool(_STATE["usable"])


def _plain_eager() -> bool:
    return not (
        torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.compiler.is_compiling()
        or torch.onnx.is_in_onnx_export()
    )


def _entry(weight: torch.Tensor) -> list | None:
    entry = _PACKED.get(id(weight))
    return entry if entry is not None and entry[0]() is weight else None


def _register(weight: torch.Tensor) -> None:
    if _entry(weight) is None:
        i = id(weight)
        _PACKED[i] = [weakref.ref(weight, lambda _, i=i: _PACKED.pop(i, None)), None]


def _packed(entry: list, weight: torch.Tensor) -> torch.Tensor:
    key = (weight.data_ptr(), weight._version)
    state = entry[1]
    if state is not None and state[0] == key:
        return state[1]
    with _LOCK:  # first use, or changed in place / moved since: packed once
        state = entry[1]
        if state is None or state[0] != key:
            state = (key, torch.ops.mkldnn._reorder_linear_weight(weight.detach()))
            entry[1] = state
        return state[1]


def registered(weight: torch.Tensor) -> bool:
    """Whether ``weight`` is registered for packing (:func:`pack_linear_weights`)."""
    return _entry(weight) is not None


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``; through oneDNN with ``weight`` packed when it is
    registered and the call qualifies (see the module's docstring)."""
    if (
        _plain_eager()  # first: a compiler or tracer sees F.linear alone
        and x.numel() * weight.shape[0] >= MIN_MULTIPLY_ADDS
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.device.type == "cpu"
        and weight.device.type == "cpu"
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and not torch.is_autocast_enabled("cpu")
        and not weight.is_inference()
        and (entry := _entry(weight)) is not None
        and _ops_available()
    ):
        return torch.ops.mkldnn._linear_pointwise(x, _packed(entry, weight), bias, "none", [], "")
    if weight.device.type != "cpu" or weight.dtype != torch.float32:
        _release(weight)
    return F.linear(x, weight, bias)


def _release(weight: torch.Tensor) -> None:
    """Drop ``weight``'s packed copy (moved off the CPU or cast: it would never be used)."""
    entry = _PACKED.get(id(weight))
    if entry is not None and entry[1] is not None and entry[0]() is weight:
        entry[1] = None


class PackedLinear(nn.Linear):
    """An ``nn.Linear`` whose forward is :func:`linear` (the same parameters, the same
    ``state_dict``); a copy of it holds new, unregistered parameters and runs ``F.linear``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def _swapped(child: nn.Linear, cls: type[nn.Linear]) -> nn.Linear:
    """A ``cls`` holding ``child``'s parameters (not copies)."""
    new = cls.__new__(cls)
    nn.Module.__init__(new)
    new.in_features, new.out_features = child.in_features, child.out_features
    new.register_parameter("weight", child.weight)
    new.register_parameter("bias", child.bias)
    new.train(child.training)
    return new


def pack_linear_weights(module: nn.Module) -> int:
    """Register every linear weight of ``module`` (its ``nn.Linear`` layers, swapped for
    :class:`PackedLinear`, and ``nn.MultiheadAttention``'s input projections) for packing;
    the number registered. Nothing is packed until a qualifying call."""
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear) and not isinstance(child, PackedLinear):
                setattr(parent, name, _swapped(child, PackedLinear))
        if isinstance(parent, nn.MultiheadAttention) and parent.in_proj_weight is not None:
            _register(parent.in_proj_weight)
            count += 1
    for sub in module.modules():
        if isinstance(sub, PackedLinear):
            _register(sub.weight)
            count += 1
    return count


def plain_linear_layers(module: nn.Module) -> int:
    """Swap every :class:`PackedLinear` in ``module`` back for an ``nn.Linear`` holding the same
    parameters (a trainable copy of a tower: the student's trunk); the number swapped."""
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, PackedLinear):
                setattr(parent, name, _swapped(child, nn.Linear))
                count += 1
    return count
