"""The teacher's arithmetic at reduced precision (``teacher.precision=bf16|fp16`` weights, or
an outer ``torch.autocast`` such as Lightning's ``trainer.precision=bf16-mixed``): the heavy
matrix products follow the weights / autocast, the parts that decide labels run in float32.

- :func:`softmax32`: a softmax over attention logits computed in float32 and returned in the
  logits' dtype (bf16 keeps 8 mantissa bits: a softmax there flattens near-ties);
  :func:`softmax32_` the same for logits the caller drops, written over them where it can;
- :func:`full_precision`: autocast switched off for a block whose inputs the caller casts to
  float32 (the scores' normalisation and cosines, prompt denoising, key smoothing, PAMR, TLP,
  the class scores, ProxyCLIP's proxy similarities, PEARL's Procrustes solve, ResCLIP's
  first-pass labels), so that a matrix product there is not lowered to bf16 by autocast.

In float32 without autocast both are no-ops: the fp32 numbers do not change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def softmax32(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``softmax(logits, dim)`` computed in float32, returned in ``logits``' dtype."""
    return torch.softmax(logits.float(), dim=dim).to(logits.dtype)


def softmax32_(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """:func:`softmax32` for logits the caller no longer needs: for contiguous float32 logits on
    a CPU the softmax is written over them (the CPU kernel works row by row: the same bits as
    ``torch.softmax``), so a head's (B, heads, N, N) attention needs one buffer, not two (at
    448 px each is 30 MB, and a second one made glibc hand the memory back to the system and
    page it in again at every forward); elsewhere :func:`softmax32`."""
    if logits.dtype == torch.float32 and logits.device.type == "cpu" and logits.is_contiguous():
        return torch.ops.aten._softmax.out(logits, dim, False, out=logits)
    return softmax32(logits, dim)


@contextlib.contextmanager
def full_precision(device: torch.device | str) -> Iterator[None]:
    """A block without autocast on ``device``'s type (nothing to do where autocast is off or
    the device type has none)."""
    kind = torch.device(device).type
    try:
        active = torch.is_autocast_enabled(kind)
    except (RuntimeError, TypeError):  # a device type without autocast
        active = False
    if not active:
        yield
        return
    with torch.autocast(kind, enabled=False):
        yield
