"""Text embeddings: templates, per-class averaging, the on-disk cache."""

from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F

from src.errors import UserError
from src.prompts import IMAGENET_TEMPLATES, TEMPLATES
from src.teacher import model as teacher_model
from src.teacher import text
from src.teacher.model import DenseClipTeacher


@pytest.fixture
def encoded(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the prompts the teacher pushes through its text encoder."""
    count = {"prompts": 0}
    real = teacher_model.encode_class_names

    def counting(encode, tokenizer, names, templates, **kwargs):
        count["prompts"] += len(names) * len(templates)
        return real(encode, tokenizer, names, templates, **kwargs)

    monkeypatch.setattr(teacher_model, "encode_class_names", counting)
    return count


def test_the_85_templates() -> None:
    assert len(TEMPLATES) == 85
    assert len(set(TEMPLATES)) == 85
    assert TEMPLATES[:80] == IMAGENET_TEMPLATES
    assert "there is a {} in the scene." in TEMPLATES
    assert all("{}" in t for t in TEMPLATES)
    with pytest.raises(UserError):
        text.resolve_templates("no-such-set")
    with pytest.raises(UserError):
        text.resolve_templates(["no placeholder"])


def test_class_embedding_is_renormalised_mean_of_normalised_prompts() -> None:
    model = open_clip.create_model("dc-test-rn")
    tok = open_clip.get_tokenizer("dc-test-rn")
    templates = ["a photo of a {}.", "there is a {} in the scene.", "{}"]
    names = ["red car", "Batman"]
    emb = text.encode_class_names(model.encode_text, tok, names, templates, batch_size=2)
    assert emb.shape == (2, 32)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-6)
    with torch.no_grad():
        for i, name in enumerate(names):
            per = F.normalize(model.encode_text(tok([t.format(name) for t in templates])), dim=-1)
            assert torch.allclose(emb[i], F.normalize(per.mean(0), dim=0), atol=1e-6)


def test_cache_second_run_encodes_nothing_and_corruption_is_rebuilt(tmp_path, encoded) -> None:
    ckpt = tmp_path / "clip.pt"
    torch.save(open_clip.create_model("dc-test-rn").state_dict(), ckpt)
    kwargs = dict(clip_model="dc-test-rn", pretrained=str(ckpt), cache_dir=tmp_path / "cache")
    names = ["cat", "dog", "red car"]

    before = encoded["prompts"]
    first = DenseClipTeacher(class_names=names, **kwargs)
    assert encoded["prompts"] - before == 3 * 85
    files = list((tmp_path / "cache" / "text_embeddings").glob("*.pt"))
    assert len(files) == 1

    before = encoded["prompts"]
    second = DenseClipTeacher(class_names=names, **kwargs)
    assert encoded["prompts"] == before  # nothing encoded
    assert torch.equal(first.text_embeddings, second.text_embeddings)

    # other class names or templates: another cache entry
    DenseClipTeacher(class_names=names[:2], **kwargs)
    DenseClipTeacher(class_names=names, templates="photo", **kwargs)
    assert len(list((tmp_path / "cache" / "text_embeddings").glob("*.pt"))) == 3

    files[0].write_bytes(files[0].read_bytes()[:50])  # truncate: corrupt
    before = encoded["prompts"]
    third = DenseClipTeacher(class_names=names, **kwargs)
    assert encoded["prompts"] - before == 3 * 85  # rebuilt
    assert torch.allclose(third.text_embeddings, first.text_embeddings)
    assert torch.load(files[0], weights_only=True)["embeddings"].shape == (3, 32)


def test_random_weights_are_never_cached(tmp_path) -> None:
    DenseClipTeacher(
        clip_model="dc-test-rn", pretrained=None, class_names=["a"], cache_dir=tmp_path
    )
    assert not list(tmp_path.rglob("*.pt"))


def test_fast_text_encoder_equals_encode_text() -> None:
    model = open_clip.create_model("dc-test-rn").eval()
    tok = open_clip.get_tokenizer("dc-test-rn")
    tokens = tok(["a photo of a red car.", "Batman", "there is the tv monitor in the scene."])
    with torch.no_grad():
        fast = text.fast_text_encoder(model)(tokens)
        assert torch.allclose(fast, model.encode_text(tokens), atol=1e-5)
