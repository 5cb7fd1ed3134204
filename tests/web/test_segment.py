"""The web page's back end in process: the same files and masks as ``python -m src.predict``,
models loaded once, and every bad input as a message (never a stack trace)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image

from src.app import make_loader, page_settings
from src.data.shapes import ShapesConfig, render_scene
from src.errors import UserError
from src.predict import predict
from src.prediction.models import ModelCache
from src.web.page import handle, model_request, parse_options
from src.web.segment import ModelRequest, Segmenter, parse_classes
from tests.student.fakes import save_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[2]
SHAPES = "circle, square, triangle"


def config(tmp_path: Path, name: str, *overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(
            name,
            overrides=[f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path}/{name}",
                       f"paths.cache_dir={tmp_path}/cache", *overrides],
        )  # fmt: skip


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    Image.fromarray(render_scene(ShapesConfig(), 3, "val").image).save(path)
    return path


@pytest.fixture()
def segmenter(tmp_path: Path) -> Segmenter:
    import torch

    cfg = config(tmp_path, "app")
    return Segmenter(loader=make_loader(cfg, torch.device("cpu")), settings=page_settings(cfg),
                     device=torch.device("cpu"), out_dir=tmp_path / "requests",
                     cache=ModelCache(2))  # fmt: skip


def test_a_request_writes_what_predict_writes_with_the_same_mask(
    tmp_path: Path, segmenter: Segmenter, scene_file: Path
) -> None:
    result = segmenter.segment(scene_file, SHAPES, ModelRequest("tiny_shapes"), threshold=0.6)
    predict(config(tmp_path, "predict", f"input={scene_file}", "classes=[circle,square,triangle]",
                   "threshold=0.6", "confidence_maps=true", f"output_dir={tmp_path}/p",
                   "progress=false"))  # fmt: skip
    ours = sorted(p.name for p in result.folder.iterdir())
    theirs = sorted(p.name for p in (tmp_path / "p").iterdir())
    assert ours == theirs == sorted(
        ["legend.json", "scene_mask.png", "scene_overlay.jpg", "scene_conf_circle.png",
         "scene_conf_square.png", "scene_conf_triangle.png"]
    )  # fmt: skip
    for name in ["scene_mask.png", "scene_conf_square.png"]:
        a = np.asarray(Image.open(result.folder / name))
        assert np.array_equal(a, np.asarray(Image.open(tmp_path / "p" / name))), name
    mine, reference = (json.loads((f / "legend.json").read_text()) for f in (result.folder, tmp_path / "p"))  # fmt: skip
    for key in ("classes", "colors", "no_class", "settings"):
        assert mine[key] == reference[key], key
    assert mine["images"][0]["pixels"] == reference["images"][0]["pixels"]
    # the request's folder records the teacher in full, as predict's legend does
    assert mine["model"]["teacher_config"] == reference["model"]["teacher_config"]
    assert mine["model"]["teacher_config"]["head"] == "maskclip"
    assert mine["model"]["teacher_config"]["head_options"] == {}
    # the page's pictures are the files' contents
    mask = np.asarray(Image.open(result.folder / "scene_mask.png").convert("RGB"))
    assert np.array_equal(result.mask, mask)
    assert [c for _, c in result.confidence] == ["circle", "square", "triangle"]
    assert result.confidence[0][0].shape == (128, 128, 3)
    shares = {row["name"]: row["share"] for row in result.legend}
    counts, void = mine["images"][0]["pixels"], mine["images"][0]["pixels_no_class"]
    assert void > 0  # the threshold left some pixels without a class
    # as the overlay's legend: shares of the classified pixels, "(no class)" of all pixels
    expected = {k: v / sum(counts.values()) for k, v in counts.items() if v}
    assert shares == pytest.approx(expected | {"(no class)": void / (128 * 128)})
    with zipfile.ZipFile(result.files) as archive:
        assert sorted(Path(n).name for n in archive.namelist()) == ours


def test_models_load_once_and_new_classes_reuse_them(
    tmp_path: Path, segmenter: Segmenter, scene_file: Path
) -> None:
    first = segmenter.segment(scene_file, SHAPES, ModelRequest("tiny_shapes"))
    again = segmenter.segment(scene_file, "circle, square", ModelRequest("tiny_shapes"))
    third = segmenter.segment(scene_file, SHAPES, ModelRequest("tiny_shapes"))
    assert segmenter.cache.loads == 1 and not first.cached and again.cached and third.cached
    assert again.class_names == ["circle", "square"]
    assert np.array_equal(first.mask, third.mask)  # back to the first vocabulary, same answer
    assert len({first.folder, again.folder, third.folder}) == 3  # requests never share a folder
    segmenter.segment(scene_file, SHAPES, ModelRequest("tiny_shapes", ("key_smoothing=true",)))
    assert segmenter.cache.loads == 2


def test_a_student_checkpoint_with_its_own_or_new_classes(
    tmp_path: Path, segmenter: Segmenter, scene_file: Path
) -> None:
    ckpt = str(save_tiny_checkpoint(tmp_path / "student.ckpt"))
    own = segmenter.segment(scene_file, "", ModelRequest("tiny_shapes", ckpt_path=ckpt))
    assert own.class_names == ["background", "circle", "square", "triangle"]
    new = segmenter.segment(scene_file, "cat, dog", ModelRequest("tiny_shapes", ckpt_path=ckpt))
    assert new.class_names == ["background", "cat", "dog"] and new.cached
    legend = json.loads((new.folder / "legend.json").read_text())
    assert legend["model"]["model"] == "student" and legend["model"]["ckpt_path"] == ckpt
    assert legend["settings"]["logit_scale"] == 1.0


def _garbage(tmp_path: Path) -> str:
    (tmp_path / "bad.ckpt").write_bytes(b"garbage")
    return str(tmp_path / "bad.ckpt")


@pytest.mark.parametrize(
    ("image", "classes", "fields", "expected"),
    [
        (None, SHAPES, ("tiny_shapes", None, "", ""), "no image given"),
        ("scene", "  ", ("tiny_shapes", None, "", ""), "no classes given"),
        ("scene", ", ,", ("tiny_shapes", None, "", ""), "no class names"),
        ("scene", "circle, Circle", ("tiny_shapes", None, "", ""), "duplicate class names"),
        ("scene", SHAPES, ("tiny_shapes", None, "", "missing.ckpt"), "checkpoint not found"),
        ("scene", SHAPES, ("tiny_shapes", None, "", "garbage"), "is a text file, not a checkpoint"),
        ("scene", SHAPES, ("rn50", None, "", ""), "the 'openai' weights of RN50 are not on this machine"),
        ("scene", SHAPES, ("tiny_shapes", None, "pretrained=/no/such.pt", ""), "neither a known tag"),
        ("scene", SHAPES, ("tiny_shapes", None, "colour=red", ""), "does not take an option"),
        ("scene", SHAPES, ("tiny_shapes", None, "key_smoothing", ""), "is not key=value"),
        ("scene", SHAPES, ("tiny_shapes", None, "templates=[1,2", ""), "do not apply"),
        ("notes", SHAPES, ("tiny_shapes", None, "", ""), "notes.txt"),
    ],
)  # fmt: skip
def test_every_bad_input_is_a_message_on_the_page(
    tmp_path: Path, segmenter: Segmenter, scene_file: Path, image, classes, fields, expected
) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    image = {"scene": str(scene_file), "notes": str(tmp_path / "notes.txt"), None: None}[image]
    teacher, head, options, ckpt = fields
    ckpt = _garbage(tmp_path) if ckpt == "garbage" else ckpt
    status, overlay, legend, mask, gallery, timing, files = handle(
        segmenter, image, classes, teacher, head, options, ckpt, 0.0, False
    )
    assert expected in status and 'class="error"' in status, status
    assert "Traceback" not in status and "fix:" in status
    assert overlay is None and mask is None and files is None and gallery == []


def test_a_working_request_through_the_page_handler(segmenter: Segmenter, scene_file) -> None:
    status, overlay, legend, mask, gallery, timing, files = handle(
        segmenter, str(scene_file), SHAPES, "tiny_shapes", None, "", "", 0.0, True
    )
    assert "Done" in status and Image.open(overlay).size[1] == 128
    assert np.asarray(Image.open(mask)).shape == (128, 128, 3)
    assert [c for _, c in gallery] == ["circle", "square", "triangle"]
    assert all(f'class="name">{n}<' in legend for n in ["circle", "square", "triangle"])
    assert "into 3 classes" in timing and Path(files).suffix == ".zip"
    # the pictures are files of this request's own, apart from its folder and zip
    page = Path(overlay).parent
    request = Path(files).with_suffix("")
    assert page == Path(f"{request.parent}_page") / request.name
    assert {Path(mask).parent, *(Path(p).parent for p, _ in gallery)} == {page}
    a_second = handle(segmenter, str(scene_file), SHAPES, "tiny_shapes", None, "", "", 0.0, True)
    assert Path(a_second[1]).parent != page  # the same picture again: another request's file
    assert np.array_equal(np.asarray(Image.open(a_second[3])), np.asarray(Image.open(mask)))
    with zipfile.ZipFile(files) as archive:
        assert not {Path(n).name for n in archive.namelist()} & {"overlay.png", "mask.png"}


def test_parsing_of_classes_and_options() -> None:
    assert parse_classes("circle, square ,triangle,") == ["circle", "square", "triangle"]
    assert parse_classes("person, person in shirt\ncar") == ["person, person in shirt", "car"]
    assert parse_classes("a;b") == ["a", "b"]
    assert parse_options("head=naclip teacher.key_smoothing=true +x='a b'") == (
        "head=naclip", "key_smoothing=true", "x=a b")  # fmt: skip
    assert model_request("tiny_shapes", "sclip", "", "").options == ("head=sclip",)
    assert model_request("rn50", None, "", " 'x.ckpt' ").ckpt_path == "x.ckpt"
    with pytest.raises(UserError):
        model_request(None, None, "", "")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [(["port=70000"], "is not a port number"), (["teachers=[nope]"], "unknown teachers")],
)
def test_bad_app_settings_are_user_errors(tmp_path: Path, overrides, expected) -> None:
    from src.app import serve

    with pytest.raises(UserError) as info:
        serve(config(tmp_path, "app", *overrides))
    assert expected in str(info.value) and info.value.fix


def test_teacher_heads_are_read_at_run_time() -> None:
    from src.prediction import models
    from src.teacher.heads import HeadSpec, register_head, registered_heads, unregister_head

    assert models.teacher_heads() == registered_heads() and "maskclip" in models.teacher_heads()
    register_head(HeadSpec(name="pagetest", features=lambda *a, **k: None, logit_scale=1.0))
    try:
        assert models.teacher_heads()[-1] == "pagetest"
    finally:
        unregister_head("pagetest")


def test_a_large_upload_and_a_non_image_are_messages_on_the_page(
    tmp_path: Path, segmenter: Segmenter, scene_file: Path
) -> None:
    """Above ``max_upload_mb`` the page refuses before any model runs; a file that is not an
    image reaches the handler as its path (``image_input``) and is named there."""
    big = tmp_path / "big.png"
    big.write_bytes(scene_file.read_bytes() + b"\0" * (2**20 + 1))
    status, overlay, *_ = handle(segmenter, str(big), SHAPES, "tiny_shapes", None, "", "", 0.0,
                                 False, max_upload_mb=1)  # fmt: skip
    assert "the uploaded file is 1.0 MB, above the page's limit of 1 MB" in status
    assert overlay is None and not (tmp_path / "requests").exists()
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    from src.web.page import image_input

    class Upload:
        path = str(notes)

    assert image_input(type="filepath").preprocess(Upload()) == str(notes)
    status, *_ = handle(segmenter, str(notes), SHAPES, "tiny_shapes", None, "", "", 0.0, False,
                        max_upload_mb=1)  # fmt: skip
    assert "cannot read the image" in status and 'class="error"' in status


def test_the_error_text_keeps_its_beginning() -> None:
    """The page cut messages with a fixed slice from the end: the first letters were lost."""
    from src.errors import shorten
    from src.web.page import error_html

    text = "Problem at the start " + "word " * 200
    shown = shorten(text, 60)
    assert shown.startswith("Problem at the start") and shown.endswith(" …") and len(shown) <= 62
    assert "Unexpected error: ValueError: Problem at the start" in error_html(ValueError(text))


def test_a_full_disk_leaves_no_half_request_folder(
    tmp_path: Path, segmenter: Segmenter, scene_file: Path, monkeypatch
) -> None:
    from src.web import segment as segment_module

    def full(path, obj):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(segment_module, "atomic_save_json", full)  # the legend, after the masks
    with pytest.raises(UserError, match="No space left on device"):
        segmenter.segment(scene_file, SHAPES, ModelRequest("tiny_shapes"))
    assert list((tmp_path / "requests").iterdir()) == []  # no masks without their legend
