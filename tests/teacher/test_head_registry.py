"""The registry of heads (issue 20) and validated head options (issue 23 item 2): a head is one
module that registers a spec; everything else reads the list; a bad option is one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from src.errors import UserError
from src.teacher.heads import (
    HeadSpec,
    head_spec,
    number,
    register_head,
    registered_heads,
    resolve_head_options,
    unregister_head,
)
from src.teacher.heads.vit import tokens_to_features, vit_trunk
from src.teacher.model import DenseClipTeacher
from tests.script_module import load_script

ROOT = Path(__file__).resolve().parents[2]


def toy_features(visual, images, *, with_keys: bool, shift: float = 0.0):
    """The tokens entering the last block, projected: no last block at all (plus ``shift``)."""
    x, grid, _ = vit_trunk(visual, images)
    return tokens_to_features(visual, x[:, 1:], grid) + shift, None


TOY = HeadSpec(
    name="toyhead",
    features=toy_features,
    logit_scale=7.0,
    options={"shift": number(0.0)},
    summary="a test head: the last block skipped",
)


@pytest.fixture()
def toy():
    register_head(TOY)
    yield TOY
    unregister_head(TOY.name)


def _script(name: str):
    return load_script(name, register=True)


def test_a_head_registered_from_a_test_module_is_offered_everywhere(toy) -> None:
    from src.prediction.models import teacher_heads

    assert registered_heads()[-1] == "toyhead" and registered_heads()[0] != "toyhead"
    assert "toyhead" in teacher_heads()  # the web page's choices
    with pytest.raises(UserError) as info:  # the command line's choices
        resolve_head_options("nohead", None)
    assert info.value.fix.endswith(", toyhead") and "\n" not in info.value.problem
    bench = _script("bench_heads")
    assert "toyhead" in bench.head_choices()
    grid = _script("heads_grid")
    assert grid.default_heads()[-1] == "toyhead"
    # and it runs as a teacher, with its own softmax scale and validated option
    teacher = DenseClipTeacher(clip_model="dc-test-vit", pretrained=None, class_names=["a", "b"],
                               head="toyhead", head_options={"shift": 0.5})  # fmt: skip
    assert teacher.logit_scale == 7.0 and teacher.dense_head.options == {"shift": 0.5}
    assert teacher.predict_logits(torch.randn(2, 3, 32, 48)).shape == (2, 2, 32, 48)
    assert teacher.config()["head"] == "toyhead"
    with pytest.raises(ValueError, match="registered already"):
        register_head(HeadSpec(name="toyhead", features=toy_features, logit_scale=1.0))


def test_the_teacher_checks_its_scores_are_finite_and_names_the_head(toy) -> None:
    teacher = DenseClipTeacher(clip_model="dc-test-vit", pretrained=None, class_names=["a", "b"],
                               head="toyhead")  # fmt: skip
    teacher.dense_head.options["shift"] = float("nan")  # past validation: a head gone wrong
    with pytest.raises(UserError) as info:
        teacher.predict_logits(torch.randn(1, 3, 32, 32))
    assert "teacher.head=toyhead" in info.value.problem and "'shift': nan" in info.value.problem
    assert "non-finite" in info.value.problem and info.value.fix


@pytest.mark.parametrize(
    ("head", "options", "expected"),
    [
        ("naclip", {"gaussian_std": 0}, ["gaussian_std=0", "naclip", "a number > 0", "default 5.0"]),
        ("naclip", {"gaussian_std": -1}, ["gaussian_std=-1", "a number > 0"]),
        ("naclip", {"gaussian_std": "abc"}, ["gaussian_std='abc'", "a number > 0"]),
        ("naclip", {"gaussian_std": True}, ["gaussian_std=True", "a number > 0"]),
        ("resclip", {"rcs_weights": 5}, ["rcs_weights=5", "resclip", "a pair [tau, lambda]"]),
        ("resclip", {"rcs_weights": [2, 1.5]}, ["rcs_weights=[2, 1.5]", "lambda: a number in"]),
        ("resclip", {"temp_thd": 2}, ["temp_thd=2", "a number in [0, 1]"]),
        ("naclip", {"std": 2}, ["['std']", "naclip", "gaussian_std: a number > 0"]),
        ("clearclip", {"attention": "kk"}, ["attention='kk'", "one of qq | qk"]),
    ],
)  # fmt: skip
def test_a_bad_head_option_is_one_line_naming_head_option_range_and_fix(
    head, options, expected
) -> None:
    with pytest.raises(UserError) as info:
        DenseClipTeacher(clip_model="dc-test-vit", pretrained=None, class_names=["a"],
                         head=head, head_options=options)  # fmt: skip
    err = info.value
    assert "\n" not in err.problem and "\n" not in err.fix
    text = f"{err.problem} {err.fix}"
    for part in expected:
        assert part in text, (part, text)
    assert f"teacher.head={head}" in err.problem


@pytest.mark.parametrize(
    "option",
    ["'teacher.head_options={rcs_weights:5}'", "'teacher.head_options={gaussian_std:abc}'"],
)
def test_command_line_head_options_fail_as_one_line(tmp_path: Path, option: str) -> None:
    from src.eval import evaluate

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("eval", overrides=[
            f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path}/out", "data=shapes",
            "teacher=tiny_shapes_vit_plain", "teacher.head=resclip", option.strip("'")])  # fmt: skip
    with pytest.raises(UserError, match=r"teacher.head_options\.\w+=.* is not valid"):
        evaluate(cfg)


def test_valid_options_are_kept_and_defaults_filled() -> None:
    got = resolve_head_options("resclip", {"rcs_weights": [3, 0.25], "gaussian_std": 2})
    assert got["rcs_weights"] == (3.0, 0.25) and got["gaussian_std"] == 2.0
    assert got["sfr_weights"] == head_spec("resclip").options["sfr_weights"].default


def test_a_head_is_named_only_in_its_own_module() -> None:
    """No if/elif over head names: outside ``src/teacher/heads/<name>.py`` no source file in
    src/ or scripts/ spells a head's name (each head's published rows live in its module; the
    fixture maker and the benchmark against the authors run each author's own code; the
    distillation benchmark and its offline proof select the teachers the issue
    compares, as a config would)."""
    allowed = {"scripts/make_head_fixtures.py",
               "scripts/bench_vs_authors.py", "scripts/bench_distill.py",
               "scripts/distill_offline.py"}  # fmt: skip
    found = []
    for path in sorted([*ROOT.glob("src/**/*.py"), *ROOT.glob("scripts/**/*.py")]):
        rel = str(path.relative_to(ROOT))
        if rel in allowed:
            continue
        text = path.read_text()
        for name in registered_heads():
            if rel == f"src/teacher/heads/{name}.py":
                continue
            # the name as a value ("naclip", head == naclip, ``naclip``), not a file citation
            if re.search(rf"(?<![\w./]){name}(?![\w.])", text):
                found.append(f"{rel}: {name}")
    assert found == []
