"""The dense heads as a teacher option: any ViT size and input, fp32 and bf16, batched,
combined with key smoothing / prompt denoising, PAMR, rebuilt from ``config()``, and one
clear error for every bad choice. (Equality with the authors' code: test_heads_parity.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from src.errors import UserError
from src.teacher import heads as heads_module
from src.teacher.features import vit_dense
from src.teacher.heads import resclip as resclip_module
from src.teacher.heads import vit as vit_module
from src.teacher.model import DenseClipTeacher
from src.teacher.pamr import pamr

SHAPES = ["circle", "square", "triangle"]
VIT_HEADS = ["sclip", "clearclip", "naclip", "resclip", "proxyclip"]


@pytest.fixture(scope="module")
def plain() -> DenseClipTeacher:
    """The shipped class-token tiny ViT CLIP (4 blocks, 96 px, patch 16)."""
    return DenseClipTeacher(
        clip_model="tiny_shapes_vit_plain", pretrained="shapes", class_names=SHAPES
    )


def use(teacher: DenseClipTeacher, head: str, proxy_file: Path | None = None, **options):
    if head == "proxyclip":
        teacher.set_head(head, options, proxy="tiny_test", proxy_weights=str(proxy_file))
    else:
        teacher.set_head(head, options)
    return teacher


def images(n: int = 3, h: int = 80, w: int = 112, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_maskclip_stays_the_default_value_path(plain: DenseClipTeacher) -> None:
    plain.set_head("maskclip")
    assert plain.head == "maskclip" and plain.logit_scale == 100.0 and plain.refine is None
    x = images(2, 96, 96)
    assert torch.equal(plain.dense_features(x), vit_dense(plain.clip.visual, x)[0].float())


@pytest.mark.parametrize("head", VIT_HEADS)
def test_every_head_is_batched_and_differs_from_maskclip(plain, proxies, head: str) -> None:
    x = images(3, 80, 112)  # not multiples of the patch: padded like the default head
    maskclip = use(plain, "maskclip")(x)
    try:
        out = use(plain, head, proxies)(x)
        assert out.shape == (3, 3, 80, 112) and torch.isfinite(out).all()
        assert (out - maskclip).abs().max() > 1e-2  # a different head, not the value path
        one_by_one = torch.cat([plain(x[i : i + 1]) for i in range(3)])
        assert torch.allclose(out, one_by_one, atol=1e-5), (out - one_by_one).abs().max()
        assert plain.logit_scale == heads_module.head_spec(head).logit_scale
    finally:
        plain.set_head("maskclip")


@pytest.mark.parametrize("head", VIT_HEADS)
def test_every_head_runs_in_bf16_close_to_fp32(plain, proxies, head: str) -> None:
    half = DenseClipTeacher(
        clip_model="tiny_shapes_vit_plain",
        pretrained="shapes",
        class_names=SHAPES,
        precision="bf16",
    )
    x = images(2, 96, 128, seed=1)
    try:
        full = use(plain, head, proxies)(x)
        low = use(half, head, proxies)(x)
    finally:
        plain.set_head("maskclip")
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    assert (low - full).abs().max() < 0.1  # bf16 keeps 8 bits of mantissa
    assert (low.argmax(1) == full.argmax(1)).float().mean() > 0.8


def test_heads_take_any_input_size_and_vit_size(proxies) -> None:
    """dc-test-vit: 2 blocks, 64 px, 4 x 4 grid; square, wide and tiny inputs."""
    t = DenseClipTeacher(clip_model="dc-test-vit", pretrained=None, class_names=["a", "b"])
    for head in VIT_HEADS:
        use(t, head, proxies)
        for h, w in [(64, 64), (48, 160), (16, 16), (100, 37)]:
            assert t(torch.randn(1, 3, h, w)).shape == (1, 2, h, w), (head, h, w)


def test_authors_positional_embedding_rule() -> None:
    pos = torch.randn(1 + 14 * 14, 8)
    same = heads_module.authors_pos_embed(pos, (14, 14), (7, 28))  # 196 patches: kept as is
    assert same is pos
    resized = heads_module.authors_pos_embed(pos, (14, 14), (14, 21))
    assert resized.shape == (1 + 14 * 21, 8) and torch.equal(resized[0], pos[0])
    table = pos[1:].reshape(1, 14, 14, 8).permute(0, 3, 1, 2)
    by_factor = F.interpolate(
        table, scale_factor=(14.1 / 14, 21.1 / 14), mode="bicubic", align_corners=False
    )
    assert torch.allclose(resized[1:], by_factor.permute(0, 2, 3, 1).reshape(-1, 8))
    by_size = F.interpolate(table, size=(14, 21), mode="bicubic", align_corners=False)
    assert not torch.allclose(resized[1:], by_size.permute(0, 2, 3, 1).reshape(-1, 8))


def test_the_traced_positional_embedding_follows_the_same_rule() -> None:
    """What an exported ViT student records (any input size): the table as is for the
    pretrained patch count, whatever the grid's shape, else the authors' bicubic resize."""
    pos = torch.randint(-64, 64, (1 + 6 * 6, 8)).float() / 64
    for grid in [(6, 6), (4, 9), (3, 12), (4, 4), (8, 8), (7, 5), (2, 13), (12, 12)]:
        expected = heads_module.authors_pos_embed(pos, (6, 6), grid)
        traced = vit_module._traced_pos_embed(pos, (6, 6), grid)
        assert traced.shape == expected.shape == (1 + grid[0] * grid[1], 8)
        if grid[0] * grid[1] == 36:
            assert torch.equal(traced, expected), grid
        else:
            assert torch.allclose(traced, expected, atol=1e-5, rtol=0), grid


@pytest.mark.parametrize("head", ["naclip", "resclip", "proxyclip"])
def test_key_smoothing_and_prompt_denoising_combine_with_heads(plain, proxies, head) -> None:
    x = images(2, 96, 96, seed=2)
    use(plain, head, proxies)
    base = plain(x)
    try:
        plain.key_smoothing = plain.prompt_denoising = True
        refined = plain(x)
    finally:
        plain.key_smoothing = plain.prompt_denoising = False
        plain.set_head("maskclip")
    assert refined.shape == base.shape and torch.isfinite(refined).all()
    assert not torch.allclose(refined, base)


def test_pamr_refines_at_the_output_size_batched(plain: DenseClipTeacher) -> None:
    x = images(2, 64, 96, seed=4)
    raw = plain.predict_logits(x, size=(70, 100), refine=False)
    plain.refine = "pamr"
    try:
        refined = plain.predict_logits(x, size=(70, 100))
        assert torch.equal(plain.refine_logits(x, raw), refined)
    finally:
        plain.refine = None
    resized = F.interpolate(x, size=(70, 100), mode="bilinear", align_corners=False)
    assert torch.allclose(refined, pamr(resized, raw), atol=1e-6)
    assert not torch.allclose(refined, raw)
    alone = pamr(resized[1:], raw[1:])
    assert torch.allclose(refined[1:], alone, atol=1e-6)


def test_resclip_line_of_sight_and_feedback_matrix() -> None:
    labels = torch.tensor([[1, 0, 1], [1, 1, 1], [2, 2, 2]])
    valid, steps, big = resclip_module.line_of_sight(labels)
    assert big == 2 and steps[0, 8] == 2 and steps[0, 1] == 1
    assert valid[0, 3] and valid[0, 4]  # same label all the way
    assert not valid[0, 2]  # same label, but the walk crosses the 0 at (0, 1)
    assert not valid[0, 6]  # the walk ends on another label
    sfr = resclip_module.sfr_matrix(labels, std=5.0)
    assert sfr.shape == (10, 10) and torch.all(sfr[0] == 0) and torch.all(sfr[:, 0] == 0)
    assert torch.allclose(sfr[1:, 1:].sum(1), torch.ones(9), atol=1e-5)
    # the decay of the broken pair, before the blur: exp(-steps / M) = exp(-1)
    no_blur = resclip_module.sfr_matrix(labels, std=0.1)
    assert no_blur[1, 3] / no_blur[1, 4] == pytest.approx(float(torch.exp(torch.tensor(-1.0))))


def test_the_head_travels_in_the_teacher_config(plain, proxies) -> None:
    use(plain, "naclip", gaussian_std=3.0)
    plain.refine = "pamr"
    try:
        cfg = plain.config()
        assert cfg["head"] == "naclip" and cfg["head_options"] == {"gaussian_std": 3.0}
        assert cfg["proxy"] == "dino_vitb8" and cfg["refine"] is None  # refine: set below
        x = images(1, 96, 96, seed=5)
        rebuilt = DenseClipTeacher(**(cfg | {"refine": "pamr"}))
        assert torch.allclose(rebuilt(x), plain(x), atol=1e-6)
        assert rebuilt.head == "naclip" and rebuilt.dense_head.options["gaussian_std"] == 3.0
    finally:
        plain.refine = None
        plain.set_head("maskclip")


# ------------------------------------------------------------------ one clear error each
def _make(**kw) -> DenseClipTeacher:
    base = dict(clip_model="dc-test-vit", pretrained=None, class_names=["a", "b"])
    return DenseClipTeacher(**(base | kw))


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"clip_model": "dc-test-rn", "head": "naclip"}, ["teacher.head=naclip needs a ViT CLIP",
                                                          "dc-test-rn", "teacher.head=maskclip"]),
        ({"head": "segclip"}, ["unknown teacher.head 'segclip'", "naclip"]),
        ({"head": "naclip", "head_options": {"std": 2}}, ["['std']", "gaussian_std"]),
        ({"head": "clearclip", "head_options": {"attention": "kk"}}, ["attention='kk'"]),
        ({"refine": "crf"}, ["unknown teacher.refine 'crf'", "pamr"]),
        ({"head": "proxyclip", "proxy": "sam_vitb"}, ["unknown teacher.proxy 'sam_vitb'"]),
        ({"head": "proxyclip", "proxy_weights": "/no/such/file.pth"},
         ["/no/such/file.pth is not a file", "dino_vitbase8_pretrain.pth"]),
    ],
)  # fmt: skip
def test_bad_head_choices_are_one_clear_error(kwargs, expected) -> None:
    with pytest.raises(UserError) as info:
        _make(**kwargs)
    for text in expected:
        assert text in str(info.value), (text, str(info.value))
    assert info.value.fix


def test_proxyclip_without_local_weights_names_the_file(monkeypatch, tmp_path) -> None:
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    with pytest.raises(UserError) as info:
        _make(head="proxyclip", proxy="dino_vitb16")
    message = str(info.value)
    assert "timm/vit_base_patch16_224.dino is not in the cache" in message
    assert "teacher.proxy_weights=/path/to/dino_vitbase16_pretrain.pth" in message
    assert "timm.create_model('vit_base_patch16_224.dino', pretrained=True)" in message


def test_a_foreign_proxy_file_is_a_clear_error(proxies, tmp_path) -> None:
    bad = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(2)}, bad)
    with pytest.raises(UserError, match="cannot load .*other.pth as a test ViT-Ti/16"):
        _make(head="proxyclip", proxy="tiny_test", proxy_weights=str(bad))
