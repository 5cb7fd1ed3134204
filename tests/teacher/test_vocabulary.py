"""Several names per class and the background: what the training-free papers compute."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from src.errors import UserError
from src.teacher.model import DenseClipTeacher
from src.teacher.vocabulary import build_vocabulary, class_scores

ENTRIES = ["cat", "person, person in shirt, body", "tv monitor, screen"]
WORDS = "sky, wall, bed"


def authors_prediction(cos: torch.Tensor, query_idx: list[int], scale: float, thd: float):
    """SCLIP's / NACLIP's ``postprocess_result`` for one image, written from their code:
    softmax over all queries, max over each class's queries, argmax, ``pred[max < thd] = 0``."""
    probs = torch.softmax(scale * cos, dim=0)  # (Q, H, W)
    num_cls = max(query_idx) + 1
    idx = torch.tensor(query_idx)
    cls_index = F.one_hot(idx).T.view(num_cls, len(query_idx), 1, 1)
    probs = (probs.unsqueeze(0) * cls_index).max(1)[0]  # (C, H, W)
    pred = probs.argmax(0)
    pred[probs.max(0)[0] < thd] = 0
    return pred


def test_vocabulary_lists_every_name_and_the_span_of_each_class() -> None:
    vocab = build_vocabulary(ENTRIES, WORDS)
    assert vocab.names[:3] == ("sky", "wall", "bed")
    assert vocab.names[3:] == ("cat", "person", "person in shirt", "body", "tv monitor", "screen")
    assert vocab.spans == ((0, 3), (3, 4), (4, 7), (7, 9))
    assert vocab.display == ("cat", "person", "tv monitor")
    assert vocab.entries == ("cat", "person, person in shirt, body", "tv monitor, screen")
    assert vocab.background_words and not vocab.single_names
    assert build_vocabulary(["a", "b"]).single_names
    # the same name in the background and in a class is allowed (the authors' COCO-Object)
    assert build_vocabulary(["bed", "cat"], "sky, bed").spans == ((0, 2), (2, 3), (3, 4))


@pytest.mark.parametrize(
    ("entries", "background", "message"),
    [
        ([], None, "class list is empty"),
        (["cat", " , "], None, "empty name"),
        (["cat", "Cat, kitten"], None, "duplicate class names"),
        (["cat"], " , ", "names no word"),
    ],
)
def test_bad_vocabularies_are_one_clear_error(entries, background, message) -> None:
    with pytest.raises(UserError, match=message):
        build_vocabulary(entries, background)


def test_class_scores_reproduce_the_authors_prediction_exactly() -> None:
    gen = torch.Generator().manual_seed(3)
    vocab = build_vocabulary(ENTRIES, WORDS)
    query_idx = [c for c, (a, b) in enumerate(vocab.spans) for _ in range(a, b)]
    cos = 0.2 * torch.randn(1, len(vocab.names), 40, 50, generator=gen)
    for scale, thd in ((40.0, 0.1), (40.0, 0.4), (100.0, 0.7), (20.0, 0.5), (50.0, 0.0)):
        ours = class_scores(cos, vocab, logit_scale=scale, threshold=thd or None).argmax(1)[0]
        theirs = authors_prediction(cos[0], query_idx, scale, thd)
        assert torch.equal(ours, theirs)
        if thd >= 0.5:  # the threshold decides a real share of the pixels
            below = authors_prediction(cos[0], query_idx, scale, 0.0) != theirs
            assert below.float().mean() > 0.05


def test_class_scores_without_background_are_the_best_name_and_keep_single_names() -> None:
    vocab = build_vocabulary(ENTRIES)
    cos = torch.randn(2, 6, 3, 4)
    scores = class_scores(cos, vocab, logit_scale=100.0, threshold=None)
    assert scores.shape == (2, 3, 3, 4)
    torch.testing.assert_close(scores[:, 1], cos[:, 1:4].amax(1), rtol=0, atol=0)
    torch.testing.assert_close(scores[:, 2], cos[:, 4:6].amax(1), rtol=0, atol=0)
    single = torch.randn(1, 2, 5, 5)
    assert (
        class_scores(single, build_vocabulary(["a", "b"]), logit_scale=1, threshold=None) is single
    )


def test_threshold_only_background_is_channel_zero_and_ties_keep_the_class() -> None:
    vocab = build_vocabulary(["a", "b"])
    # probabilities (0.8, 0.2) and (0.5, 0.5): with scale 1, cos = log p
    cos = torch.log(torch.tensor([[0.8, 0.5], [0.2, 0.5]])).view(1, 2, 1, 2)
    scores = class_scores(cos, vocab, logit_scale=1.0, threshold=0.6)
    assert scores.shape == (1, 3, 1, 2)
    assert scores.argmax(1).tolist() == [[[1, 0]]]  # a wins; the 0.5 / 0.5 pixel is background
    tie = class_scores(cos, vocab, logit_scale=1.0, threshold=0.5)
    assert tie.argmax(1).tolist() == [[[1, 1]]]  # p == threshold keeps the class (not "<")
    # softmax(scale * scores) over the classes = the probabilities renormalised (NACLIP)
    torch.testing.assert_close(torch.softmax(scores[0, 1:, 0, 0], 0), torch.tensor([0.8, 0.2]))
    assert math.isclose(float(scores[0, 0, 0, 0]), math.log(0.6), rel_tol=1e-6)


@pytest.fixture(scope="module")
def teachers() -> dict[str, DenseClipTeacher]:
    kwargs = {"clip_model": "dc-test-vit", "pretrained": None, "templates": "photo"}
    torch.manual_seed(0)
    names = DenseClipTeacher(class_names=["cat", "person", "person in shirt", "screen"], **kwargs)
    grouped = DenseClipTeacher(class_names=["cat", "person, person in shirt", "screen"], **kwargs)
    grouped.load_state_dict(names.state_dict())
    grouped.set_class_names(["cat", "person, person in shirt", "screen"])
    background = DenseClipTeacher(
        class_names=["cat", "person, person in shirt"],
        background="sky, wall",
        background_threshold=0.4,
        logit_scale=40,
        **kwargs,
    )
    background.load_state_dict(names.state_dict())
    background.set_class_names(["cat", "person, person in shirt"])
    return {"names": names, "grouped": grouped, "background": background}


def test_teacher_scores_a_class_by_its_best_name(teachers) -> None:
    names, grouped = teachers["names"], teachers["grouped"]
    x = torch.randn(2, 3, 48, 64)
    every = names.predict_logits(x)  # (2, 4, 48, 64): cat, person, person in shirt, screen
    scores = grouped.predict_logits(x)
    assert scores.shape == (2, 3, 48, 64)
    torch.testing.assert_close(scores[:, 0], every[:, 0])
    torch.testing.assert_close(scores[:, 1], every[:, 1:3].amax(1))
    torch.testing.assert_close(scores[:, 2], every[:, 3])
    assert grouped.class_names == ["cat", "person", "screen"]  # shown by the first name
    assert grouped.config()["class_names"] == ["cat", "person, person in shirt", "screen"]
    assert grouped.name_embeddings.shape[0] == 4 and grouped.text_embeddings.shape[0] == 3
    mean = F.normalize(names.text_embeddings[1:3].mean(0), dim=-1)
    torch.testing.assert_close(grouped.text_embeddings[1], mean)
    torch.testing.assert_close(grouped.text_embeddings[0], names.text_embeddings[0])
    rebuilt = DenseClipTeacher(**grouped.config())
    assert rebuilt.class_names == grouped.class_names and not rebuilt.has_background


def test_teacher_background_words_and_threshold(teachers) -> None:
    bg = teachers["background"]
    assert bg.has_background and bg.num_classes == 2 and bg.class_names == ["cat", "person"]
    x = torch.randn(1, 3, 32, 48)
    scores = bg.predict_logits(x)
    assert scores.shape == (1, 3, 32, 48)
    cos = bg.name_logits(x)[0]  # (5, H, W): sky, wall, cat, person, person in shirt
    expected = authors_prediction(cos, [0, 0, 1, 2, 2], 40.0, 0.4)
    assert torch.equal(scores.argmax(1)[0], expected)
    assert bg.predict(x).max() <= 2
    config = bg.config()
    assert config["background"] == "sky, wall" and config["background_threshold"] == 0.4
    assert config["logit_scale"] == 40.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"background_threshold": 1.5}, "not a probability"),
        ({"background_threshold": 0.0}, "not a probability"),
        ({"logit_scale": 0}, "must be positive"),
    ],
)
def test_bad_background_options_are_one_clear_error(kwargs, message) -> None:
    with pytest.raises(UserError, match=message):
        DenseClipTeacher(clip_model="dc-test-vit", pretrained=None, class_names=["a"], **kwargs)
