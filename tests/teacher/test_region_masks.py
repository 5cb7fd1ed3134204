"""Region masks as a teacher component (issue 21): ``teacher.masks=`` generators, their
per-image cache, and the region maps carried through the one scoring path (windows crop them,
the head's vote follows the classes) identically in eval, predict and the web page; each bad
input is one line. The heads that read regions are toy heads registered here."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from src.batch import IMAGE, NAME, TARGET
from src.errors import UserError
from src.evaluation.module import EvaluationModule
from src.prediction.models import LoadedModel, ModelCache
from src.prediction.predictor import Settings, predict_image, predictor_from_teacher
from src.scoring import Windows, resize_regions, score_images, window_starts
from src.teacher.heads import HeadSpec, register_head, unregister_head
from src.teacher.heads.vit import tokens_to_features, vit_trunk
from src.teacher.masks import PAD_REGION, RegionMasks, image_hash
from src.teacher.model import DenseClipTeacher
from src.teacher.regions import region_vote
from src.web.segment import ModelRequest, Segmenter

CPU = torch.device("cpu")
WINDOW = Windows(window=32, stride=16, batch=3)
SETTINGS = Settings(
    max_size=None, min_size=None, sliding_window=False, window=WINDOW.window,
    stride=WINDOW.stride, window_batch=WINDOW.batch, threshold=None, logit_scale=None,
    confidence_maps=False, overlay_alpha=0.5, legend_max_entries=10, save_logits=True,
)  # fmt: skip


def mode_vote(scores: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """A test vote: in each region (id != 0) every pixel gets the region's mean scores."""
    assert scores.shape[0] == regions.shape[0] and scores.shape[-2:] == regions.shape[-2:]
    out = scores.clone()
    for b in range(scores.shape[0]):
        for rid in regions[b].unique().tolist():
            if rid == 0:
                continue
            inside = regions[b] == rid
            out[b][:, inside] = scores[b][:, inside].mean(dim=1, keepdim=True)
    return out


SEEN: list[torch.Tensor] = []  #: the region maps the toy head got, in order


def region_features(visual, images, *, with_keys: bool, regions: torch.Tensor, weight: float):
    """The tokens entering the last block plus ``weight`` x the region id at each patch's
    top-left pixel (so the scores depend on the regions the head gets)."""
    SEEN.append(regions.clone())
    assert regions.dtype == torch.int32 and regions.shape == (images.shape[0], *images.shape[-2:])
    x, grid, _ = vit_trunk(visual, images)
    feats = tokens_to_features(visual, x[:, 1:], grid)
    patch = visual.patch_size[0]
    ids = regions[:, ::patch, ::patch].float() % 7  # the padding id 10000 stays small
    return feats + weight * ids[:, None], None


READER = HeadSpec(name="toyregions", features=region_features, logit_scale=10.0,
                  options={}, needs_regions=True, region_vote=mode_vote)  # fmt: skip
PLAIN = HeadSpec(name="toyplain", features=lambda v, i, *, with_keys: (vit_trunk(v, i)[0], None),
                 logit_scale=10.0)  # fmt: skip


@pytest.fixture()
def heads():
    register_head(replace(READER, features=lambda *a, **k: region_features(*a, **k, weight=0.5)))
    register_head(PLAIN)
    SEEN.clear()
    yield
    unregister_head(READER.name)
    unregister_head(PLAIN.name)


def _image(h: int = 45, w: int = 62) -> np.ndarray:
    g = np.random.default_rng(0)
    small = g.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.kron(small, np.ones((10, 10, 1), dtype=np.uint8))[:h, :w])


def _regions(h: int, w: int) -> np.ndarray:
    """An (h, w) region map of 6 blocks (ids 3..8) with a strip of no region (0)."""
    ys, xs = np.mgrid[0:h, 0:w]
    out = (3 + (ys * 2 // h) * 3 + xs * 3 // w).astype(np.int32)
    out[:, : w // 8] = 0
    return out


def _teacher(masks: str | None = "precomputed", options=None, **kw) -> DenseClipTeacher:
    return DenseClipTeacher(clip_model="dc-test-vit", pretrained=None, templates="photo",
                            class_names=["cat", "dog", "sky"], head="toyregions", masks=masks,
                            masks_options=options, **kw)  # fmt: skip


# ------------------------------------------------------------------ the scoring path
def test_windows_crop_the_region_map_and_the_vote_gets_it_at_the_output_size() -> None:
    regions = torch.from_numpy(_regions(30, 41))[None]  # another size than the input's
    images = torch.randint(0, 8, (1, 3, 45, 62)).float() / 8
    got: list[torch.Tensor] = []

    def scorer(x: torch.Tensor, *, regions: torch.Tensor) -> torch.Tensor:
        got.append(regions)
        return torch.stack([regions.float(), -regions.float()], dim=1)  # scores = the ids

    votes: list[torch.Tensor] = []

    def vote(scores: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        votes.append(maps)
        return scores + 1

    out = score_images(scorer, images, size=(90, 124), windows=WINDOW, regions=regions,
                       vote=vote)  # fmt: skip
    at_input = F.interpolate(regions[:, None].float(), size=(45, 62), mode="nearest").int()[:, 0]
    boxes = [(y, x) for y in window_starts(45, 32, 16) for x in window_starts(62, 32, 16)]
    crops = torch.cat(got)
    assert crops.shape == (len(boxes), 32, 32) and crops.dtype == torch.int32
    for crop, (y, x) in zip(crops, boxes, strict=True):
        assert torch.equal(crop, at_input[0, y : y + 32, x : x + 32])
    (voted,) = votes
    assert torch.equal(voted, resize_regions(regions, (90, 124)))
    # the scores are the ids (every window agrees where they overlap), upsampled, then + 1
    expected = F.interpolate(at_input[:, None].float(), size=(90, 124), mode="bilinear")[:, 0] + 1
    torch.testing.assert_close(out[:, 0], expected, rtol=0, atol=1e-5)


def test_a_scorer_without_regions_is_called_as_before() -> None:
    images = torch.randint(0, 8, (2, 3, 20, 24)).float() / 8
    out = score_images(lambda x: x[:, :2] * 2, images, windows=Windows(16, 8))
    assert out.shape == (2, 2, 20, 24)


# ------------------------------------------------------------------ the teacher
def test_the_head_gets_the_padded_map_and_eval_predict_and_the_page_agree(
    heads, tmp_path: Path
) -> None:
    image = _image()
    masks = tmp_path / "masks"
    masks.mkdir()
    np.savez(masks / "scene.npz", instance_mask=_regions(45, 62) + 2)  # minimum 2: no region
    teacher = _teacher(options={"dir": str(masks)})
    assert teacher.needs_image_names and teacher.region_vote is mode_vote
    x = teacher.normalize(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
    # whole image: the map at the input size, padded to whole patches with CorrCLIP's id
    with torch.no_grad():
        teacher.predict_logits(x, size=(45, 62), names=["scene"])
    (seen,) = SEEN
    assert seen.shape == (1, 48, 64)
    assert torch.equal(seen[0, :45, :62], torch.from_numpy(_regions(45, 62)))  # shifted to 0
    assert bool((seen[0, 45:] == PAD_REGION).all()) and bool((seen[0, :, 62:] == PAD_REGION).all())
    for windowed in (False, True):
        windows = WINDOW if windowed else None
        module = EvaluationModule(teacher, num_classes=3, windows=windows)
        target = torch.zeros(1, 45, 62, dtype=torch.long)
        with torch.no_grad():
            evaluated = module.model_scores(x, (45, 62), names=["scene"])[0]
            module._step({IMAGE: x, TARGET: target, NAME: ["scene"]})  # names from the batch
        assert torch.equal(module.metric.confmat.sum(0), torch.bincount(
            evaluated.argmax(0).flatten(), minlength=3).to(module.metric.confmat))  # fmt: skip
        module.metric.reset()
        settings = replace(SETTINGS, sliding_window=windowed)
        with torch.inference_mode():
            predicted = predict_image(predictor_from_teacher(teacher), image, settings, CPU,
                                      name="scene")  # fmt: skip
        path = tmp_path / "scene.png"
        Image.fromarray(image).save(path)
        loaded = LoadedModel(teacher, "teacher", {}, list(teacher.class_names))
        page = Segmenter(loader=lambda request, classes, m=loaded: m, settings=settings, device=CPU,
                         out_dir=tmp_path / f"requests{windowed}", cache=ModelCache(1))  # fmt: skip
        result = page.segment(path, "cat, dog, sky", ModelRequest("any"), sliding_window=windowed)
        paged = torch.from_numpy(np.load(result.folder / "scene_logits.npy"))
        torch.testing.assert_close(predicted.logits, evaluated, rtol=0, atol=1e-6)
        assert torch.equal(paged, predicted.logits)
        # the vote was applied: every region holds one label
        labels = evaluated.argmax(0)
        regions = torch.from_numpy(_regions(45, 62))
        for rid in range(3, 9):
            assert labels[regions == rid].unique().numel() == 1
    # and without the vote the labels differ inside a region (the vote did something)
    with torch.no_grad():
        raw = teacher.name_logits(x, size=(45, 62), names=["scene"])
    raw_labels = teacher.classify(raw).argmax(1)[0]
    assert any(raw_labels[regions == r].unique().numel() > 1 for r in range(3, 9))


def test_generated_masks_are_cached_once_per_image_and_reused(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    images = torch.randint(0, 4, (2, 3, 5, 7)).repeat_interleave(8, 2).repeat_interleave(8, 3)
    images = images.float() / 4
    masks = RegionMasks("superpixels", {"segments": 16}, cache)
    first = masks.maps(images, mean=(0, 0, 0), std=(1, 1, 1))
    assert first.shape == (2, 40, 56) and first.dtype == torch.int32 and masks.computed == 2
    assert int(first.min()) >= 1  # every pixel in a superpixel
    files = sorted((cache / "region_masks").rglob("*.npz"))
    assert len(files) == 2 and not list(cache.rglob("*.tmp"))
    pixels = (images[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    assert (files[0].parent / f"{image_hash(pixels)}.npz").is_file()
    again = RegionMasks("superpixels", {"segments": 16}, cache)  # a later run, another head
    assert torch.equal(again.maps(images, mean=(0, 0, 0), std=(1, 1, 1)), first)
    assert again.computed == 0
    other = RegionMasks("superpixels", {"segments": 4}, cache)  # other settings: other maps
    other.maps(images[:1], mean=(0, 0, 0), std=(1, 1, 1))
    assert other.computed == 1 and len(list((cache / "region_masks").iterdir())) == 2
    files[0].write_bytes(b"broken")  # a damaged entry is computed again
    assert torch.equal(again.maps(images, mean=(0, 0, 0), std=(1, 1, 1)), first)
    assert again.computed == 1


def test_a_teacher_with_superpixels_runs_without_names(heads, tmp_path: Path) -> None:
    teacher = _teacher("superpixels", {"segments": 12}, cache_dir=str(tmp_path))
    assert not teacher.needs_image_names
    x = teacher.normalize(torch.from_numpy(_image()).permute(2, 0, 1)[None].float() / 255)
    out = teacher.predict_logits(x, size=(90, 124), windows=WINDOW)
    assert out.shape == (1, 3, 90, 124)
    assert teacher.region_masks.computed == 1
    teacher.predict_logits(x)
    assert teacher.region_masks.computed == 1  # the same image: from the cache
    assert teacher.config()["masks"] == "superpixels"
    assert teacher.config()["masks_options"] == {"segments": 12}


# ------------------------------------------------------------------ bad input: one line
def _one_line(err: pytest.ExceptionInfo) -> str:
    assert "\n" not in err.value.problem and (err.value.fix or "").count("\n") == 0
    return str(err.value)


def test_bad_mask_input_is_one_line(heads, tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        _teacher("superpixel")
    assert "did you mean teacher.masks=superpixels" in _one_line(err)
    with pytest.raises(UserError) as err:
        _teacher(options={"dir": str(tmp_path / "nowhere")})
    assert "teacher.masks_options.dir" in _one_line(err) and "is not a folder" in str(err.value)
    with pytest.raises(UserError) as err:
        _teacher("superpixels", {"segmnts": 3})
    assert "not options of teacher.masks=superpixels" in _one_line(err)
    with pytest.raises(UserError) as err:
        _teacher(None)
    assert "teacher.head=toyregions reads region masks" in _one_line(err)
    assert "teacher.masks=" in err.value.fix
    with pytest.raises(UserError) as err:
        DenseClipTeacher(clip_model="dc-test-vit", pretrained=None, class_names=["a"],
                         head="toyplain", masks="superpixels")  # fmt: skip
    assert "toyplain reads no region masks" in _one_line(err) and "toyregions" in err.value.fix
    with pytest.raises(UserError) as err:
        _teacher(None, {"dir": "x"})
    assert "teacher.masks is off" in _one_line(err)

    masks = tmp_path / "masks"
    masks.mkdir()
    np.savez(masks / "small.npz", instance_mask=np.zeros((20, 30), dtype=np.int32))
    teacher = _teacher(options={"dir": str(masks)})
    x = torch.zeros(1, 3, 45, 62)
    with pytest.raises(UserError) as err:  # a mask folder that lacks the image
        teacher.predict_logits(x, size=(45, 62), names=["scene"])
    assert "no mask for image 'scene'" in _one_line(err) and "scene.npz" in err.value.fix
    with pytest.raises(UserError) as err:  # a mask of another size than the image
        teacher.predict_logits(x, size=(45, 62), names=["small"])
    assert "the mask of image 'small' is 20x30 but the image is 45x62" in _one_line(err)
    with pytest.raises(UserError) as err:  # no name: a training crop
        teacher.predict_logits(x)
    assert "needs each image's file name" in _one_line(err)
    np.savez(masks / "wrongkey.npz", masks=np.zeros((45, 62), dtype=np.int32))
    with pytest.raises(UserError) as err:
        teacher.predict_logits(x, size=(45, 62), names=["wrongkey"])
    assert "has no 'instance_mask' array" in _one_line(err)
    # the image file's own stem where the sample id drops a suffix (Cityscapes)
    np.savez(masks / "berlin_000_leftImg8bit.npz", instance_mask=np.zeros((45, 62), np.int32))
    assert teacher.region_maps(x, (45, 62), ["berlin_000"]).shape == (1, 45, 62)
    np.savez(masks / "berlin_000_other.npz", instance_mask=np.zeros((45, 62), np.int32))
    fresh = _teacher(options={"dir": str(masks)})  # two such files: neither is taken
    with pytest.raises(UserError, match="no mask for image 'berlin_000'"):
        fresh.region_maps(x, (45, 62), ["berlin_000"])
    np.savez(masks / "floats.npz", instance_mask=np.zeros((45, 62), dtype=np.float32))
    with pytest.raises(UserError) as err:
        teacher.predict_logits(x, size=(45, 62), names=["floats"])
    assert "not an (H, W) integer region map" in _one_line(err)


def test_vote_refines_any_head_over_the_masks(tmp_path: Path) -> None:
    """``teacher.vote=true``: a head that neither reads nor votes (NACLIP) gets the
    majority vote over the masks after its classes: exactly ``region_vote`` of its own scores,
    one class per region, the pixels in no region (id 0) as they were."""
    masks = tmp_path / "masks"
    masks.mkdir()
    regions = _regions(45, 62)
    np.savez(masks / "scene.npz", instance_mask=regions)
    kw = {"clip_model": "dc-test-vit", "pretrained": None, "templates": "photo",
          "class_names": ["cat", "dog", "sky"], "head": "naclip"}  # fmt: skip
    torch.manual_seed(0)
    plain = DenseClipTeacher(**kw)
    torch.manual_seed(0)  # the same random CLIP
    voting = DenseClipTeacher(**kw, masks="precomputed", masks_options={"dir": str(masks)},
                              vote=True)  # fmt: skip
    x = torch.from_numpy(_image()).permute(2, 0, 1)[None].float() / 64 - 2
    before = plain.predict_logits(x)
    after = voting.predict_logits(x, size=(45, 62), names=["scene"])
    region_map = torch.from_numpy(regions)[None]
    assert torch.equal(after, region_vote(before, region_map))
    labels = after.argmax(1)[0]
    for rid in range(3, 9):
        inside = region_map[0] == rid
        assert labels[inside].unique().numel() == 1
        assert labels[inside][0] == torch.mode(before.argmax(1)[0][inside])[0]
    none = region_map[0] == 0
    assert torch.equal(after[0][:, none], before[0][:, none])
    assert not torch.equal(after, before)  # the case bites: some pixels were outvoted
    assert plain.region_vote is None and voting.region_vote is region_vote
    with pytest.raises(UserError) as err:
        DenseClipTeacher(**kw, vote=True)
    assert "teacher.vote=true votes over region masks" in _one_line(err)
    assert "teacher.masks=superpixels" in err.value.fix
    with pytest.raises(UserError) as err:
        DenseClipTeacher(**kw, masks="superpixels", vote="yes")
    assert "teacher.vote='yes' is not true or false" in _one_line(err)
    with pytest.raises(UserError) as err:
        DenseClipTeacher(**kw, masks="superpixels")
    assert "teacher.vote=true" in err.value.fix


@pytest.mark.parametrize(("name", "option"), [("sam2", "checkpoint"), ("mask2former", "weights")])
def test_learned_generators_without_weights_are_one_line(heads, tmp_path: Path, name, option):
    with pytest.raises(UserError) as err:
        _teacher(name)
    text = _one_line(err)
    assert (
        f"teacher.masks={name} needs" in text
        and f"teacher.masks_options.{option} is not set" in text
    )
    assert "never downloaded" in err.value.fix
    with pytest.raises(UserError) as err:
        _teacher(name, {option: str(tmp_path / "missing")})
    assert f"teacher.masks_options.{option}={tmp_path / 'missing'} is not a" in _one_line(err)


def test_a_missing_package_is_one_line_naming_the_extra(heads, monkeypatch, tmp_path) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda mod, *a: None if mod in ("sam2", "transformers") else real(mod, *a))  # fmt: skip
    for name, extra in (("sam2", "pip install sam2"), ("mask2former", "pip install transformers")):
        with pytest.raises(UserError) as err:
            (tmp_path / "sam2.pt").write_bytes(b"")  # the weights are there, the package not
            given = (
                {"checkpoint": str(tmp_path / "sam2.pt")}
                if name == "sam2"
                else {"weights": str(tmp_path)}
            )
            _teacher(name, given)
        assert f"needs the '{extra.split()[-1]}' package" in _one_line(err)
        assert extra in err.value.fix
