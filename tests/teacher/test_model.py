"""DenseClipTeacher: dense features equal CLIP's value path computed by hand, frozen for good."""

from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F

from src.errors import UserError
from src.teacher import loading
from src.teacher.features import resize_vit_pos_embed
from src.teacher.model import DenseClipTeacher

CLASSES = ["cat", "dog", "red car", "Batman"]


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def rn50() -> DenseClipTeacher:
    return DenseClipTeacher(
        clip_model="RN50", pretrained=None, class_names=CLASSES, templates="photo"
    )


@pytest.fixture(scope="module")
def vit_b16() -> DenseClipTeacher:
    return DenseClipTeacher(
        clip_model="ViT-B-16", pretrained=None, class_names=CLASSES, templates="photo"
    )


def test_rn50_dense_features_equal_value_path_by_hand(rn50: DenseClipTeacher) -> None:
    visual = rn50.clip.visual
    x = torch.randn(1, 3, 224, 224)
    trunk = visual.forward_intermediates(x, indices=[4], intermediates_only=True)
    trunk = trunk["image_intermediates"][0]  # (1, 2048, 7, 7)
    pool = visual.attnpool
    v = F.conv2d(trunk, pool.v_proj.weight[:, :, None, None], pool.v_proj.bias)
    expected = F.conv2d(v, pool.c_proj.weight[:, :, None, None], pool.c_proj.bias)
    got = rn50.dense_features(x)
    assert got.shape == (1, 1024, 7, 7)
    assert _rel_err(got, expected) < 1e-4

    # logits: cosine with normalised text embeddings, argmax equal to the hand computation
    cos = torch.einsum(
        "bdhw,kd->bkhw", F.normalize(expected, dim=1), F.normalize(rn50.text_embeddings, dim=1)
    )
    hand = F.interpolate(cos, size=(224, 224), mode="bilinear", align_corners=False)
    logits = rn50(x)
    assert logits.shape == (1, len(CLASSES), 224, 224)
    assert torch.equal(logits.argmax(1), hand.argmax(1))
    assert logits.abs().max() <= 1.0 + 1e-5  # cosine scores


def test_rn50_attention_pool_is_per_head_weighted_value_average(rn50: DenseClipTeacher) -> None:
    """REFERENCE section 1: global embedding = c_proj(per-head attention-weighted values)."""
    visual = rn50.clip.visual
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        trunk = visual.forward_intermediates(x, indices=[4], intermediates_only=True)
        trunk = trunk["image_intermediates"][0]
        pool = visual.attnpool
        tokens = trunk.flatten(2).permute(0, 2, 1)  # (B, HW, C)
        tokens = (
            torch.cat([tokens.mean(1, keepdim=True), tokens], dim=1) + pool.positional_embedding
        )
        heads = pool.num_heads
        b, n, c = tokens.shape
        q = pool.q_proj(tokens[:, :1]).view(b, 1, heads, c // heads).transpose(1, 2)
        k = pool.k_proj(tokens).view(b, n, heads, c // heads).transpose(1, 2)
        v = pool.v_proj(tokens).view(b, n, heads, c // heads).transpose(1, 2)
        attn = torch.softmax(q @ k.transpose(-1, -2) / (c // heads) ** 0.5, dim=-1)  # (B,h,1,n)
        assert torch.allclose(attn.sum(-1), torch.ones(b, heads, 1), atol=1e-5)
        pooled = (attn @ v).transpose(1, 2).reshape(b, c)
        by_hand = pool.c_proj(pooled)
        assert _rel_err(by_hand, visual(x)) < 1e-4


def test_vit_b16_dense_features_equal_value_path_by_hand(vit_b16: DenseClipTeacher) -> None:
    visual = vit_b16.clip.visual
    x = torch.randn(1, 3, 224, 224)
    captured = {}
    last = visual.transformer.resblocks[-1]
    handle = last.register_forward_pre_hook(lambda m, args: captured.setdefault("x", args[0]))
    with torch.no_grad():
        visual(x)
    handle.remove()
    tokens = captured["x"]  # (1, 197, 768): open_clip's own embedding + first 11 blocks
    n = tokens.shape[1]
    # attention restricted to itself = the value path (out_proj(v)) through the real block code
    self_only = torch.full((n, n), float("-inf")).fill_diagonal_(0.0)
    with torch.no_grad():
        y = last(tokens, attn_mask=self_only)
        y = visual.ln_post(y) @ visual.proj
    expected = y[:, 1:].transpose(1, 2).reshape(1, 512, 14, 14)
    got = vit_b16.dense_features(x)
    assert got.shape == (1, 512, 14, 14)
    assert _rel_err(got, expected) < 1e-4
    cos = torch.einsum("bdhw,kd->bkhw", F.normalize(expected, dim=1), vit_b16.text_embeddings)
    hand = F.interpolate(cos, size=(224, 224), mode="bilinear", align_corners=False)
    assert torch.equal(vit_b16(x).argmax(1), hand.argmax(1))


def test_vit_any_input_size_is_padded_and_pos_embed_resized(vit_b16: DenseClipTeacher) -> None:
    x = torch.randn(1, 3, 200, 250)  # not multiples of 16
    assert vit_b16.dense_features(x).shape == (1, 512, 13, 16)
    assert vit_b16(x).shape == (1, len(CLASSES), 200, 250)
    pos = vit_b16.clip.visual.positional_embedding
    assert torch.equal(resize_vit_pos_embed(pos, (14, 14), (14, 14)), pos)
    resized = resize_vit_pos_embed(pos, (14, 14), (13, 16))
    assert resized.shape == (1 + 13 * 16, 768)
    assert torch.equal(resized[0], pos[0])  # CLS position kept


def test_teacher_is_frozen_for_good() -> None:
    t = DenseClipTeacher(clip_model="dc-test-rn", pretrained=None, class_names=CLASSES)
    assert not t.training and not t.clip.training
    assert all(not p.requires_grad for p in t.parameters())
    t.train()
    assert not t.training and not any(m.training for m in t.modules())
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    out = t(x)
    assert not out.requires_grad
    assert out.shape == (1, len(CLASSES), 64, 64)


def test_preprocessing_travels_with_the_model() -> None:
    t = DenseClipTeacher(clip_model="dc-test-rn", pretrained=None, class_names=["a"])
    assert t.mean == pytest.approx(open_clip.OPENAI_DATASET_MEAN)
    assert t.std == pytest.approx(open_clip.OPENAI_DATASET_STD)
    assert t.image_size == 64
    img = torch.rand(1, 3, 8, 8)
    norm = t.normalize(img)
    assert torch.allclose(norm[0, 0], (img[0, 0] - t.mean[0]) / t.std[0])


def test_checkpoint_written_by_test_loads_by_path(tmp_path) -> None:
    src = open_clip.create_model("dc-test-vit")
    path = tmp_path / "tiny.pt"
    torch.save(src.state_dict(), path)
    t = DenseClipTeacher(clip_model="dc-test-vit", pretrained=str(path), class_names=["cat"])
    for (name, a), b in zip(src.state_dict().items(), t.clip.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_wrong_file_and_unknown_names_are_clear_errors(tmp_path) -> None:
    bad = tmp_path / "not_a_checkpoint.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(UserError, match="not a valid open_clip checkpoint"):
        DenseClipTeacher(clip_model="dc-test-rn", pretrained=str(bad), class_names=["cat"])
    with pytest.raises(UserError, match="unknown CLIP model 'RN51'") as err:
        DenseClipTeacher(clip_model="RN51", pretrained=None, class_names=["cat"])
    assert "RN50" in str(err.value) and "ViT-B-16" in str(err.value)  # lists valid names
    with pytest.raises(UserError, match="neither a known tag nor an existing file"):
        DenseClipTeacher(clip_model="RN50", pretrained="no-such-tag", class_names=["cat"])
    mismatched = tmp_path / "vit.pt"
    torch.save(open_clip.create_model("dc-test-vit").state_dict(), mismatched)
    with pytest.raises(UserError, match="not a valid open_clip checkpoint for dc-test-rn"):
        DenseClipTeacher(clip_model="dc-test-rn", pretrained=str(mismatched), class_names=["a"])


@pytest.mark.parametrize("names", [[], ["cat", "dog", "cat"], ["cat", " "]])
def test_bad_class_lists(names) -> None:
    with pytest.raises(UserError):
        DenseClipTeacher(clip_model="dc-test-rn", pretrained=None, class_names=names)


def test_set_class_names_changes_the_vocabulary() -> None:
    t = DenseClipTeacher(clip_model="dc-test-rn", pretrained=None, class_names=["cat"])
    t.set_class_names(["yellow car", "blurry car"])
    assert t.class_names == ["yellow car", "blurry car"]
    assert t(torch.randn(1, 3, 64, 64)).shape == (1, 2, 64, 64)


def _trace(model: torch.nn.Module, path) -> None:
    img = torch.randn(1, 3, 64, 64)
    tok = open_clip.get_tokenizer("dc-test-rn")(["a cat"])
    torch.jit.trace(model.eval(), (img, tok), strict=False).save(str(path))


def test_openai_torchscript_archive_loads_with_quick_gelu(tmp_path) -> None:
    from open_clip.transformer import QuickGELU

    src = open_clip.create_model("dc-test-rn")
    path = tmp_path / "openai_format.pt"
    _trace(src, path)
    t = DenseClipTeacher(clip_model="dc-test-rn", pretrained=str(path), class_names=["cat"])
    for name, value in src.state_dict().items():
        assert torch.equal(value, t.clip.state_dict()[name]), name
    assert any(isinstance(m, QuickGELU) for m in t.clip.transformer.modules())


def test_tag_weights_found_in_clip_cache_or_clear_offline_error(tmp_path, monkeypatch) -> None:
    from open_clip import factory
    from open_clip import pretrained as oc_pretrained

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setitem(
        oc_pretrained._PRETRAINED,
        "dc-test-rn",
        {"fake": {"url": "https://example.invalid/clip/dc-test-rn.pt", "quick_gelu": True}},
    )

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(factory, "download_pretrained", offline)
    # known to be offline: fails before open_clip tries (and retries) a download; or the
    # download itself fails
    for reason in ("example.invalid cannot be reached", None):
        monkeypatch.setattr(loading, "_offline_reason", lambda cfg, r=reason: r)
        with pytest.raises(UserError) as err:
            DenseClipTeacher(clip_model="dc-test-rn", pretrained="fake", class_names=["cat"])
        assert str(tmp_path / ".cache" / "clip" / "dc-test-rn.pt") in str(err.value)
        assert "teacher.pretrained=/path/to/dc-test-rn.pt" in str(err.value)
        assert (reason or "network is unreachable") in str(err.value)

    cached = tmp_path / ".cache" / "clip" / "dc-test-rn.pt"
    cached.parent.mkdir(parents=True)
    src = open_clip.create_model("dc-test-rn")
    _trace(src, cached)
    t = DenseClipTeacher(clip_model="dc-test-rn", pretrained="fake", class_names=["cat"])
    assert torch.equal(t.clip.visual.conv1.weight, src.visual.conv1.weight)


@pytest.mark.parametrize("model", ["dc-test-rn", "dc-test-vit"])
def test_tiny_images_are_padded_not_crashing(model: str) -> None:
    t = DenseClipTeacher(clip_model=model, pretrained=None, class_names=["a", "b"])
    assert t(torch.randn(1, 3, 20, 45)).shape == (1, 2, 20, 45)


def test_the_teachers_quick_gelu_is_open_clips_with_fewer_temporaries() -> None:
    from open_clip.transformer import QuickGELU

    g = torch.Generator().manual_seed(0)
    x = torch.randint(-2048, 2048, (2, 9, 64), generator=g).float() / 256
    fast = loading.QuickGELUInPlace()
    assert torch.equal(fast(x), QuickGELU()(x))  # bitwise: the same products
    assert torch.equal(x, torch.randint(-2048, 2048, (2, 9, 64), generator=g.manual_seed(0)) / 256)
    leaf = x.clone().requires_grad_(True)  # with a gradient: the plain formula, differentiable
    fast(leaf).sum().backward()
    reference = x.clone().requires_grad_(True)
    QuickGELU()(reference).sum().backward()
    assert torch.equal(leaf.grad, reference.grad)
    teacher = DenseClipTeacher(clip_model="dc-test-vit", pretrained=None, class_names=["cat"],
                               quick_gelu=True)  # fmt: skip
    kinds = {type(m) for m in teacher.clip.modules()}
    assert loading.QuickGELUInPlace in kinds and QuickGELU not in kinds
