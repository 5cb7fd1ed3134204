"""GPU readiness, checked on a CPU: every registered head at reduced precision (bf16 / fp16
weights, ``teacher.precision``, and fp32 weights under an outer ``torch.autocast``) against
fp32; the float32 parts (:mod:`src.teacher.precision`); no read of a tensor's value on the
host in the forward (run on the ``meta`` device, where ``.item()``, ``bool(tensor)`` and
``nonzero`` raise: on a GPU each would wait for the device); and ``teacher.compile``
(torch.compile of the head's forward, slow: inductor compiles C++ on a CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from src.errors import UserError
from src.scoring import Windows
from src.teacher.heads import head_spec, registered_heads
from src.teacher.model import DenseClipTeacher
from src.teacher.precision import full_precision, softmax32, softmax32_

SHAPES = ["circle", "square", "triangle"]
#: argmax agreement with fp32 on the shipped tiny ViT CLIP, 2 x 96 x 128 integer-drawn pixels
#: (measured 2026-12-07: bf16 weights 0.995-0.999, bf16 autocast 0.994-0.999, fp16 weights
#: 0.9993-0.9998 over the seven heads; bounds a little below the lowest)
AGREE = {"bf16": 0.985, "autocast": 0.985, "fp16": 0.997}
#: largest score difference from fp32 (measured: bf16 up to 0.039 (ProxyCLIP, its random
#: fp16 proxy), fp16 up to 8.7e-4)
DIFF = {"bf16": 0.06, "autocast": 0.06, "fp16": 3e-3}


@pytest.fixture(scope="module")
def teachers() -> dict[str, DenseClipTeacher]:
    return {
        p: DenseClipTeacher(
            clip_model="tiny_shapes_vit_plain", pretrained="shapes", class_names=SHAPES, precision=p
        )
        for p in ("fp32", "bf16", "fp16")
    }


def use(teacher: DenseClipTeacher, head: str, proxy: Path) -> DenseClipTeacher:
    spec = head_spec(head)
    masks = "superpixels" if spec.needs_regions or spec.region_vote is not None else None
    if spec.needs_weights:  # a proxy ViT (ProxyCLIP's, CorrCLIP's DINO)
        teacher.set_head(head, proxy="tiny_test", proxy_weights=str(proxy), masks=masks)
    else:
        teacher.set_head(head, masks=masks)
    return teacher


def pixels(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Normalised-image-like inputs from integers (bit-identical on every CPU)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-512, 513, (n, 3, h, w), generator=g).float() * 2.0**-8


@pytest.mark.parametrize("head", registered_heads())
def test_every_head_at_reduced_precision_agrees_with_fp32(teachers, proxies, head) -> None:
    x = pixels(2, 96, 128, seed=5)
    try:
        reference = use(teachers["fp32"], head, proxies)(x)
        outputs = {p: use(teachers[p], head, proxies)(x) for p in ("bf16", "fp16")}
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs["autocast"] = use(teachers["fp32"], head, proxies)(x)
            cos = teachers["fp32"].dense_scores(x)
        if head_spec(head).needs_weights:  # the proxy at the precision chosen
            for p in ("bf16", "fp16"):
                proxy = teachers[p].dense_head.proxy
                assert proxy.model.patch_embed.proj.weight.dtype == getattr(torch, {
                    "bf16": "bfloat16", "fp16": "float16"}[p])  # fmt: skip
    finally:
        for t in teachers.values():
            t.set_head("maskclip", masks=None)
    assert cos.dtype == torch.float32  # the cosines in float32 under autocast
    for mode, out in outputs.items():
        assert out.dtype == torch.float32 and out.shape == reference.shape, mode
        assert torch.isfinite(out).all(), mode
        agree = (out.argmax(1) == reference.argmax(1)).float().mean().item()
        assert agree >= AGREE[mode], (mode, agree)
        assert (out - reference).abs().max().item() <= DIFF[mode], mode
        assert not torch.equal(out, reference), mode  # it did run at the lower precision


def test_pamr_and_the_class_scores_stay_float32_under_autocast(teachers) -> None:
    t = teachers["fp32"]
    x = pixels(1, 64, 96, seed=6)
    t.set_head("naclip")
    t.refine = "pamr"
    try:
        plain = t(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            scores = t.dense_scores(x)
            refined = t.refine_logits(x, scores)
            mixed = t(x)
        assert refined.dtype == torch.float32
        assert torch.equal(refined, t.refine_logits(x, scores))  # PAMR itself unchanged
        assert (mixed.argmax(1) == plain.argmax(1)).float().mean() > 0.98
    finally:
        t.refine = None
        t.set_head("maskclip")


def test_softmax32_and_full_precision() -> None:
    logits = (torch.randint(-64, 65, (4, 9)).float() * 2.0**-3).bfloat16()
    out = softmax32(logits)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, torch.softmax(logits.float(), -1).bfloat16())
    a = torch.randint(-64, 65, (8, 8)).float() * 2.0**-6
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
        with full_precision(a.device):
            assert torch.equal(a @ a, a.double().matmul(a.double()).float())
    with full_precision("cpu"):  # no autocast: nothing to switch off
        assert (a @ a).dtype == torch.float32


def test_softmax32_in_place_gives_the_same_bits_in_the_logits_memory() -> None:
    """The heads' attention softmax over logits they drop: written over float32 CPU logits,
    bit-equal to ``torch.softmax``; bf16 or non-contiguous logits are left as they were."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randint(-(2**12), 2**12, (2, 3, 37, 37), generator=g).float() * 2.0**-8
    for dim in (-1, 1):
        work = logits.clone()
        out = softmax32_(work, dim)
        assert out.data_ptr() == work.data_ptr() and torch.equal(out, torch.softmax(logits, dim))
    low = logits.bfloat16()
    kept = low.clone()
    out = softmax32_(low)
    assert out.dtype == torch.bfloat16 and torch.equal(out, softmax32(kept))
    assert torch.equal(low, kept)
    strided = logits.transpose(-2, -1)
    out = softmax32_(strided)
    assert torch.equal(out, torch.softmax(strided, -1)) and torch.equal(
        strided.transpose(-2, -1), logits
    )


@pytest.mark.parametrize(
    # heads that read region maps decide on the regions' ids (their authors' per-image merge
    # and vote), so they read values by design: docs/TEACHERS.md, "GPU readiness"
    "head",
    [h for h in registered_heads() if not head_spec(h).needs_regions],
)
def test_the_forward_never_reads_a_tensor_value_on_the_host(proxies, head: str) -> None:
    """The whole scoring path (whole image and sliding windows; no refinement, PAMR, TLP) on
    ``meta`` tensors: shapes only, so any host read of a value (a host-device
    synchronisation on a GPU) raises. The non-finite check reads once per head (done here on
    the CPU first, as on a GPU its first batch does)."""
    t = DenseClipTeacher(clip_model="dc-test-vit", pretrained=None, class_names=["a", "b", "c"])
    use(t, head, proxies)
    t(pixels(1, 16, 16, seed=8))  # the first batch: the one non-finite check
    t.to("meta")
    x = torch.empty(2, 3, 64, 96, device="meta")
    for refine in (None, "pamr", "tlp"):
        t.refine = refine
        assert t(x).shape == (2, 3, 64, 96), refine
        windows = Windows(window=64, stride=32, batch=2)
        assert t.predict_logits(x, windows=windows).shape == (2, 3, 64, 96), refine
    with pytest.raises(RuntimeError, match="meta"):  # what the test relies on
        bool(torch.isfinite(t.dense_scores(x)).all())


def test_compile_is_opt_in_and_checked() -> None:
    t = DenseClipTeacher(clip_model="dc-test-vit", pretrained=None, class_names=["a", "b"])
    assert t.compile_head is False and t.config()["compile"] is False
    with pytest.raises(UserError, match="teacher.compile='yes'"):
        DenseClipTeacher(clip_model="dc-test-vit", pretrained=None, class_names=["a"],
                         compile="yes")  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("head", ["maskclip", "naclip"])
def test_compiled_teacher_equals_eager(head: str) -> None:
    """torch.compile (inductor, C++ on a CPU: about a minute) gives the eager scores; the
    compiled module stays out of the state dict."""
    kwargs = dict(clip_model="dc-test-vit", pretrained=None, class_names=["a", "b", "c"], head=head)
    eager = DenseClipTeacher(**kwargs)
    compiled = DenseClipTeacher(**kwargs, compile=True)
    compiled.load_state_dict(eager.state_dict())
    compiled.name_embeddings = eager.name_embeddings
    x = pixels(2, 64, 96, seed=7)
    want = eager(x)
    got = compiled(x)
    assert compiled.__dict__["_compiled_head"] is not None
    assert list(compiled.state_dict()) == list(eager.state_dict())
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
