"""The frozen towers' linear layers through oneDNN with packed weights
(``teacher.packed_weights``): the same numbers as ``F.linear`` to rounding, taken only where it
qualifies, packed again after an in-place change, and gone from a trainable copy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from src.errors import UserError
from src.teacher import packed_linear as pl
from src.teacher.packed_linear import (
    PackedLinear,
    linear,
    pack_linear_weights,
    plain_linear_layers,
    registered,
)

needs_onednn = pytest.mark.skipif(
    not pl._ops_available(),
    reason="this PyTorch build has no oneDNN linear: F.linear is used (test_fallback_...)",
)


def _grid(*shape: int, seed: int) -> torch.Tensor:
    """Values on a fixed grid, no transcendental functions: the same on every machine."""
    n = 1
    for s in shape:
        n *= s
    i = torch.arange(n, dtype=torch.float64)
    return (((i * 7919 + seed * 104729) % 1009) / 1009 - 0.5).float().reshape(shape)


def _layer(k: int = 256, n: int = 512) -> nn.Linear:
    layer = nn.Linear(k, n)
    with torch.no_grad():
        layer.weight.copy_(_grid(n, k, seed=1) * 0.1)
        layer.bias.copy_(_grid(n, seed=2))
    return layer.requires_grad_(False)


def _packed_of(weight: torch.Tensor):
    state = pl._entry(weight)[1]
    return None if state is None else state[1]


@needs_onednn
def test_packed_path_equals_f_linear_and_is_taken():
    model = nn.Sequential(_layer(), nn.ReLU(), _layer(512, 256))
    reference = [F.linear(x, m.weight, m.bias) for x, m in [(_grid(197, 256, seed=3), model[0])]]
    assert pack_linear_weights(model) == 2
    assert isinstance(model[0], PackedLinear) and registered(model[0].weight)
    x = _grid(197, 256, seed=3)
    with torch.no_grad():
        out = model[0](x)
    assert _packed_of(model[0].weight) is not None  # oneDNN was used, the weight packed once
    torch.testing.assert_close(out, reference[0], rtol=1e-5, atol=1e-5)
    # a 3-D, non-contiguous input gives the same rows
    x3 = _grid(2, 197, 256, seed=4).transpose(0, 1)
    with torch.no_grad():
        torch.testing.assert_close(
            model[0](x3), F.linear(x3, model[0].weight, model[0].bias), rtol=1e-5, atol=1e-5
        )


def test_state_dict_and_parameters_unchanged_by_packing():
    model = nn.Sequential(_layer(), _layer(512, 128))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = [id(p) for p in model.parameters()]
    pack_linear_weights(model)
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert [id(p) for p in model.parameters()] == params  # the same Parameter objects


@needs_onednn
def test_packed_copy_released_when_the_weight_leaves_float32():
    model = nn.Sequential(_layer())
    pack_linear_weights(model)
    x = _grid(197, 256, seed=9)
    with torch.no_grad():
        model(x)
        assert _packed_of(model[0].weight) is not None
        model.double()  # as .to("cuda") would: the packed float32 copy can never be used
        out = model(x.double())
    assert _packed_of(model[0].weight) is None
    assert out.dtype == torch.float64


@needs_onednn
def test_weight_changed_in_place_is_packed_again():
    layer = _layer()
    pack_linear_weights(nn.Sequential(layer))
    seq_layer = layer
    x = _grid(197, 256, seed=5)
    with torch.no_grad():
        linear(x, seq_layer.weight, seq_layer.bias)
        seq_layer.weight.mul_(-2.0)  # load_state_dict copies in place like this
        out = linear(x, seq_layer.weight, seq_layer.bias)
    torch.testing.assert_close(
        out, F.linear(x, seq_layer.weight, seq_layer.bias), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    "case", ["grad", "bf16", "small", "unregistered", "trace", "autocast", "inference"]
)
def test_packed_path_not_taken_where_it_does_not_qualify(case):
    layer = _layer()
    if case != "unregistered":
        pack_linear_weights(nn.Sequential(layer))
    x = _grid(197, 256, seed=6)
    if case == "grad":
        layer.weight.requires_grad_(True)
        out = linear(x, layer.weight, layer.bias)
        assert out.requires_grad  # autograd recorded through F.linear
    elif case == "bf16":
        with torch.no_grad():
            out = linear(x.bfloat16(), layer.weight.bfloat16(), layer.bias.bfloat16())
        assert out.dtype == torch.bfloat16
        with pytest.raises(RuntimeError, match="same dtype"):  # a mismatch: F.linear's error
            linear(x.bfloat16(), layer.weight, layer.bias)
    elif case == "small":
        with torch.no_grad():
            out = linear(x[:2], layer.weight, layer.bias)  # 2 x 256 x 512 multiply-adds
        assert torch.equal(out, F.linear(x[:2], layer.weight, layer.bias))
    elif case == "unregistered":
        with torch.no_grad():
            out = linear(x, layer.weight, layer.bias)
        assert torch.equal(out, F.linear(x, layer.weight, layer.bias))
        assert not registered(layer.weight)
        return
    elif case == "autocast":  # an outer autocast lowers the product, as for F.linear
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = linear(x, layer.weight, layer.bias)
            expected = F.linear(x, layer.weight, layer.bias)
        assert out.dtype == torch.bfloat16
        assert torch.equal(out, expected)
    elif case == "inference":  # weights made in inference mode keep no version counter
        with torch.inference_mode():
            frozen = _layer()
        pack_linear_weights(nn.Sequential(frozen))
        with torch.inference_mode():
            out = linear(x, frozen.weight, frozen.bias)
        assert torch.equal(out, F.linear(x, frozen.weight, frozen.bias))
        assert _packed_of(frozen.weight) is None
    elif case == "trace":
        traced = torch.jit.trace(PackedLinearHolder(layer), x)
        assert "mkldnn" not in str(traced.graph)
        with torch.no_grad():
            torch.testing.assert_close(traced(x), F.linear(x, layer.weight, layer.bias))
    if case in ("grad", "bf16", "small", "autocast"):
        assert _packed_of(layer.weight) is None  # never packed


class PackedLinearHolder(nn.Module):
    def __init__(self, layer: nn.Linear) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.layer.weight, self.layer.bias)


def test_plain_linear_layers_restores_nn_linear_with_the_same_parameters():
    model = nn.Sequential(_layer(), _layer(512, 64))
    pack_linear_weights(model)
    weights = [model[0].weight, model[1].weight]
    assert plain_linear_layers(model) == 2
    assert [type(m) for m in model] == [nn.Linear, nn.Linear]
    assert [model[0].weight, model[1].weight] == weights


def _tiny_teacher(packed: bool):
    from src.teacher.model import DenseClipTeacher

    return DenseClipTeacher(
        clip_model="tiny_shapes_vit_plain",
        pretrained="shapes",
        class_names=["circle", "square", "triangle"],
        templates=["a photo of a {}."],
        head="naclip",
        packed_weights=packed,
    )


@needs_onednn
def test_teacher_logits_equal_with_and_without_packed_weights(monkeypatch):
    monkeypatch.setattr(pl, "MIN_MULTIPLY_ADDS", 0)  # the tiny tower's products qualify too
    plain, packed = _tiny_teacher(False), _tiny_teacher(True)
    assert not any(isinstance(m, PackedLinear) for m in plain.modules())
    blocks = packed.clip.visual.transformer.resblocks
    assert isinstance(blocks[0].mlp.c_fc, PackedLinear)
    assert isinstance(blocks[0].attn.out_proj, PackedLinear)
    assert registered(blocks[0].attn.in_proj_weight)
    assert list(plain.state_dict()) == list(packed.state_dict())
    x = _grid(2, 3, 128, 96, seed=7) + 0.5
    with torch.inference_mode():
        a = plain.predict_logits(x, refine=False)
        b = packed.predict_logits(x, refine=False)
    assert _packed_of(blocks[0].attn.in_proj_weight) is not None
    assert _packed_of(blocks[0].mlp.c_proj.weight) is not None
    torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
    # the student's trainable copy of the tower is plain again, its weights not registered
    visual = packed.trainable_visual()
    assert not any(isinstance(m, PackedLinear) for m in visual.modules())
    assert not registered(visual.transformer.resblocks[0].attn.in_proj_weight)


def test_teacher_packed_weights_must_be_a_bool():
    with pytest.raises(UserError, match="teacher.packed_weights='yes' is not true or false"):
        _tiny_teacher("yes")  # type: ignore[arg-type]


def test_fallback_without_onednn_is_f_linear(monkeypatch):
    monkeypatch.setitem(pl._STATE, "usable", False)  # a build without oneDNN's linear
    layer = _layer()
    pack_linear_weights(nn.Sequential(layer))
    x = _grid(197, 256, seed=8)
    with torch.no_grad():
        out = linear(x, layer.weight, layer.bias)
    assert torch.equal(out, F.linear(x, layer.weight, layer.bias))
    assert _packed_of(layer.weight) is None
