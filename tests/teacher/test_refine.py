"""Prompt denoising and key smoothing (MaskCLIP refinements)."""

from __future__ import annotations

import torch

from src.teacher import refine
from src.teacher.model import DenseClipTeacher


def test_prompt_denoising_drops_classes_that_never_win_clearly() -> None:
    cos = torch.zeros(1, 3, 2, 2)
    cos[0, 0] = 0.30  # class 0 clearly best everywhere
    cos[0, 1] = 0.25
    cos[0, 2, 0, 0] = 0.40  # class 2 clearly best at one pixel
    out = refine.prompt_denoise(cos, threshold=0.5)
    assert (out[0, 1] == -100.0).all()  # peak prob of class 1 is low: removed
    assert torch.equal(out[0, 0], cos[0, 0]) and torch.equal(out[0, 2], cos[0, 2])


def test_key_smoothing_averages_over_similar_keys() -> None:
    cos = torch.tensor([[[[0.3, 0.2]], [[0.2, 0.3]]]])  # (1, 2 classes, 1, 2 pixels)
    same = torch.ones(1, 4, 1, 2)  # identical keys: both pixels get the summed probabilities
    out = refine.key_smooth(cos, same, threshold=1.0)
    prob = torch.softmax(100 * cos, dim=1)
    assert torch.allclose(out[..., 0], prob.sum(-1)) and torch.allclose(out[..., 1], prob.sum(-1))
    orth = torch.zeros(1, 4, 1, 2)
    orth[0, 0, 0, 0] = 1.0
    orth[0, 1, 0, 1] = 1.0  # orthogonal keys: W = I, nothing changes
    assert torch.allclose(refine.key_smooth(cos, orth, threshold=1.0), prob)
    assert torch.allclose(refine.key_smooth(cos, same, threshold=0.0), prob)  # no weak pixel


def test_refinements_are_options_of_the_teacher() -> None:
    kw = dict(clip_model="dc-test-vit", pretrained=None, class_names=["a", "b", "c"])
    plain = DenseClipTeacher(**kw)
    refined = DenseClipTeacher(**kw, key_smoothing=True, prompt_denoising=True)
    refined.load_state_dict(plain.state_dict())
    refined.text_embeddings = plain.text_embeddings
    x = torch.randn(1, 3, 64, 80)
    assert refined(x).shape == plain(x).shape == (1, 3, 64, 80)
    assert not torch.allclose(refined(x), plain(x))
