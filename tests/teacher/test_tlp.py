"""``teacher.refine=tlp`` (PEARL's text-aware Laplacian propagation) on any head, and its bad
input (the parity with the authors' TLP is in test_heads_parity.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from src.errors import UserError
from src.teacher.model import DenseClipTeacher
from src.teacher.tlp import text_affinity, tlp


@pytest.fixture(scope="module")
def plain() -> DenseClipTeacher:
    torch.manual_seed(0)
    return DenseClipTeacher(
        clip_model="dc-test-vit", pretrained=None, class_names=["cat", "dog, puppy", "sky"],
        templates=["a photo of a {}."], head="pearl",
    )  # fmt: skip


def test_tlp_refines_the_names_scores_at_the_output_size_batched(plain) -> None:
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    raw = plain.name_logits(x, size=(170, 250), refine=False)
    plain.refine, plain.refine_options = "tlp", {"grid": 80}
    try:
        refined = plain.name_logits(x, size=(170, 250))
        classes = plain.predict_logits(x, size=(170, 250))
    finally:
        plain.refine, plain.refine_options = None, {}
    resized = F.interpolate(x, size=(170, 250), mode="bilinear", align_corners=False)
    text = plain.name_embeddings  # four names: "dog, puppy" is one class of two names
    assert raw.shape == (2, 4, 170, 250) and classes.shape == (2, 3, 170, 250)
    assert torch.allclose(refined, tlp(resized, raw, text), atol=1e-6)
    assert not torch.allclose(refined, raw, atol=1e-4)
    assert torch.allclose(refined[1:], tlp(resized[1:], raw[1:], text), atol=1e-6)


def test_tlp_keeps_constant_scores_and_reads_the_text() -> None:
    """A constant map is a fixed point (the Laplacian of a constant is 0); the affinity's rows
    sum to one with the diagonal boosted."""
    image = torch.randn(1, 3, 40, 50, generator=torch.Generator().manual_seed(1))
    scores = torch.full((1, 3, 40, 50), 0.2)
    text = torch.randn(3, 8, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(tlp(image, scores, text, grid=10), scores, atol=1e-6)
    s = text_affinity(text)
    assert torch.allclose(s.sum(dim=1), torch.ones(3), atol=1e-5)
    assert bool((torch.diagonal(s) > 0.9).all())
    with pytest.raises(ValueError, match="one text embedding per score channel"):
        tlp(image, scores, text[:2])


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"refine": "tlp", "refine_options": {"grid": 0}}, "refine_options.grid=0"),
        ({"refine": "tlp", "refine_options": {"size": 3}}, "not options of teacher.refine=tlp"),
        ({"refine": "pamr", "refine_options": {"grid": 80}}, "its options are: none"),
        ({"head": "pearl", "clip_model": "dc-test-rn"}, "needs a ViT CLIP"),
        ({"head": "pearl", "head_options": {"polar_iters": 0}}, "polar_iters"),
    ],
)
def test_bad_pearl_and_tlp_input_is_one_line(kwargs: dict, expected: str) -> None:
    args = dict(clip_model="dc-test-vit", pretrained=None, class_names=["a", "b"],
                templates=["{}"]) | kwargs  # fmt: skip
    with pytest.raises(UserError) as err:
        DenseClipTeacher(**args)
    assert expected in str(err.value)
    assert "Traceback" not in str(err.value)


def test_a_student_checkpoint_keeps_pearl_tlp_and_its_grid(tmp_path) -> None:
    """Training with ``teacher.head=pearl teacher.refine=tlp`` and a TLP grid: the checkpoint
    rebuilds the same teacher (head, refinement and its options)."""
    from src.student.checkpoint import load_student
    from src.train import train
    from tests.test_train import compose_train

    out = tmp_path / "run"
    cfg = compose_train(out, "teacher=tiny_shapes_vit_plain", "teacher.head=pearl",
                        "teacher.refine=tlp", "teacher.refine_options={grid:40}",
                        "trainer.max_steps=1", "trainer.val_check_interval=1")  # fmt: skip
    assert train(cfg)["train/global_step"] == 1
    teacher = load_student(out / "checkpoints" / "last.ckpt").teacher
    assert (teacher.head, teacher.refine, teacher.refine_options) == ("pearl", "tlp", {"grid": 40})
