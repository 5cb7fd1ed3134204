"""What the teacher says about class phrases it cannot read: words a shipped tiny CLIP never
saw (once per word), and phrases longer than the text context (cut, never silently)."""

from __future__ import annotations

import logging

import open_clip
import pytest

from src.data.shapes import ShapesConfig
from src.teacher import loading
from src.teacher.loading import register_shipped_models, shipped_vocabulary, unknown_words
from src.teacher.model import DenseClipTeacher
from src.teacher.text import long_phrases


def test_the_tiny_clips_vocabulary_is_the_shapes_worlds() -> None:
    world = ShapesConfig()  # the world scripts/train_tiny_clip.py trained them on
    for name in ("tiny_shapes", "tiny_shapes_vit"):
        assert shipped_vocabulary(name) == {*world.shapes, *world.colours}
    assert shipped_vocabulary("RN50") is None and unknown_words("RN50", ["Batman"]) == []
    assert unknown_words("tiny_shapes", ["red car", "a circle", "Yellow Square"]) == ["car"]


def test_phrases_the_tiny_clip_never_saw_are_warned_about_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setattr(loading, "_warned_words", set())
    options = dict(clip_model="tiny_shapes", pretrained="shapes", templates="photo",
                   cache_dir=tmp_path)  # fmt: skip
    with caplog.at_level(logging.WARNING):
        teacher = DenseClipTeacher(class_names=["cat", "red car", "circle"], **options)
        teacher.set_class_names(["cat", "circle", "dog"])
    warned = [r.getMessage() for r in caplog.records if "never saw" in r.getMessage()]
    assert len(warned) == 2, warned  # 'car', 'cat' once; then only 'dog' is new
    assert "'car', 'cat'" in warned[0] and "teacher=rn50" in warned[0]
    assert "'dog'" in warned[1] and "'cat'" not in warned[1]


def test_a_phrase_longer_than_the_text_context_is_warned_about(
    caplog: pytest.LogCaptureFixture, tmp_path
) -> None:
    register_shipped_models()
    tokenizer = open_clip.get_tokenizer("tiny_shapes")  # a 32-token context
    phrase = "red circle next to a small green square above a blue triangle near " * 2
    found = long_phrases(tokenizer, ["red circle", phrase], ["a photo of a {}."])
    assert [(name, context) for name, _, context in found] == [(phrase, 32)]
    assert found[0][1] == len(tokenizer.encode(f"a photo of a {phrase}.")) + 2 > 32
    with caplog.at_level(logging.WARNING):
        DenseClipTeacher(clip_model="tiny_shapes", pretrained="shapes", templates="photo",
                         class_names=["circle", phrase], cache_dir=tmp_path)  # fmt: skip
    warned = [r.getMessage() for r in caplog.records if "text context" in r.getMessage()]
    assert len(warned) == 1 and "32-token text context of tiny_shapes" in warned[0]
