"""Prediction helpers: distinct output names, class lists, one image end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from src.errors import UserError
from src.prediction.outputs import class_slugs, output_stems
from src.prediction.predictor import Predictor, Settings, class_list, predict_image


def test_output_stems_are_distinct() -> None:
    paths = [Path("a/x.jpg"), Path("a/x.png"), Path("b/x.png"), Path("a/y.png")]
    assert output_stems(paths) == ["x_jpg", "x_png", "x_png_2", "y"]


def test_class_slugs_are_file_safe_and_distinct() -> None:
    assert class_slugs(["red car", "red_car", "a/b", "???"]) == [
        "red_car",
        "red_car_1",
        "a_b",
        "class3",
    ]


def test_class_list_from_the_command_line_or_a_form() -> None:
    assert class_list("cat,dog,red car") == ["cat", "dog", "red car"]
    assert class_list(["cat", "red car"]) == ["cat", "red car"]
    assert class_list("  ") == [] and class_list(None) is None
    with pytest.raises(UserError, match="list of names"):
        class_list(3)


def _settings(**kw) -> Settings:
    base = dict(max_size=32, min_size="auto", sliding_window=False, window=16, stride=12,
                window_batch=2, threshold=None, logit_scale=None, confidence_maps=False,
                overlay_alpha=0.5, legend_max_entries=5)  # fmt: skip
    return Settings(**(base | kw))


def test_predict_image_resizes_for_the_model_and_decodes_at_full_size() -> None:
    seen = []
    weight = torch.randn(4, 3, 1, 1)

    def scorer(x: torch.Tensor) -> torch.Tensor:
        seen.append((x.shape[0], *x.shape[-2:]))
        return F.conv2d(x, weight)

    predictor = Predictor(scorer=scorer, normalize=lambda x: x - 0.5, class_names=list("abcd"),
                          logit_scale=1.0, native_size=24)  # fmt: skip
    image = np.random.default_rng(0).integers(0, 256, (50, 80, 3), dtype=np.uint8)
    out = predict_image(predictor, image, _settings(), torch.device("cpu"))
    assert seen == [(1, 32, 51)]  # short side shrunk to max_size
    assert out.mask.shape == (50, 80) and int(out.mask.max()) < 4
    small = image[:10, :15]
    out = predict_image(predictor, small, _settings(sliding_window=True), torch.device("cpu"))
    # enlarged to the model's 24 px (24 x 36); windows at rows 0, 8 x columns 0, 12, 20
    assert seen[1:] == [(2, 16, 16)] * 3
    assert out.mask.shape == (10, 15)


def test_class_list_keeps_list_entries_with_several_names_whole() -> None:
    assert class_list(["cat", "person, person in shirt"]) == ["cat", "person, person in shirt"]
    assert class_list("cat,person") == ["cat", "person"]  # a plain string: one name per class


def test_refine_runs_once_on_the_stitched_logits_and_logits_are_kept() -> None:
    """A model's refinement (PAMR) sees the whole stitched score map, not each window; the
    kept logits are the full-size scores the mask was taken from."""
    weight = torch.randn(4, 3, 1, 1, generator=torch.Generator().manual_seed(1))
    refined = []

    def refine(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        refined.append((tuple(x.shape), tuple(logits.shape)))
        return logits.flip(1)  # a visible change: classes reversed

    predictor = Predictor(scorer=lambda x: F.conv2d(x, weight), normalize=lambda x: x - 0.5,
                          class_names=list("abcd"), logit_scale=1.0, native_size=24,
                          refine=refine)  # fmt: skip
    image = np.random.default_rng(1).integers(0, 256, (30, 45, 3), dtype=np.uint8)
    settings = _settings(sliding_window=True, save_logits=True)
    out = predict_image(predictor, image, settings, torch.device("cpu"))
    assert refined == [((1, 3, 30, 45), (1, 4, 30, 45))]  # once, on the whole image
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255 - 0.5
    from src.prediction.windows import sliding_window_logits

    stitched = sliding_window_logits(lambda c: F.conv2d(c, weight), x, window=16, stride=12)
    assert out.logits is not None and out.logits.shape == (4, 30, 45)
    assert torch.allclose(out.logits, stitched[0].flip(0), atol=1e-6)
    assert torch.equal(out.mask.long(), out.logits.argmax(0))
    plain = predict_image(predictor, image, _settings(sliding_window=True), torch.device("cpu"))
    assert plain.logits is None and torch.equal(plain.mask, out.mask)
