"""``teacher.masks`` through the entry points in-process (issue 21): eval on the shapes world
with precomputed masks (the scenes' own shapes) and with superpixels (computed once, reused by
the next run), training with a region head, and the 8 benchmarks' generated trees in their
real layouts with precomputed masks for every image (the file stems and sizes each layout
gives). The head that reads regions is a toy head registered here; the README's
``protocol=corrclip teacher.head=corrclip teacher.masks=precomputed`` command runs as typed
(slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from src.errors import UserError
from src.eval import evaluate
from src.teacher.heads import HeadSpec, register_head, unregister_head
from src.teacher.heads.vit import tokens_to_features, vit_trunk
from src.train import train
from src.utils.task import instantiate
from tests.teacher.test_region_masks import mode_vote
from tests.test_eval import compose_eval
from tests.test_train import compose_train
from tests.test_training_free_protocol import (
    BENCHMARKS,
    compose_protocol,
    make_benchmarks,
    run_readme_command,
)

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["data=shapes", "teacher=tiny_shapes_vit_plain", "data.dataset_options.val_length=4"]
#: one step labelled by the teacher (no switch to self-training) and a validation
TEACHER_LABELS = ["callbacks.pseudo_label_switch.enabled=false", "trainer.max_steps=1",
                  "trainer.val_check_interval=1"]  # fmt: skip


def vote_features(visual, images, *, with_keys: bool, regions, shift: float = 0.0):
    """The tokens entering the last block, projected; the regions arrive at the images' size."""
    assert regions is not None and regions.shape == (images.shape[0], *images.shape[-2:])
    x, grid, _ = vit_trunk(visual, images)
    return tokens_to_features(visual, x[:, 1:], grid) + shift, None


@pytest.fixture()
def voter():
    from src.teacher.heads import number

    spec = HeadSpec(name="toyvote", features=vote_features, logit_scale=40.0,
                    options={"shift": number(0.0)}, needs_regions=True,
                    region_vote=mode_vote)  # fmt: skip
    register_head(spec)
    yield spec
    unregister_head(spec.name)


def write_masks(cfg, folder: Path, regions=None, split: str | None = None) -> list[str]:
    """``<stem>.npz`` (key instance_mask) for every image of ``cfg.data``'s ``split`` (default:
    the validation split), at the image's size: the scene's own labels + 1 (void 0), or
    ``regions(image)``."""
    dm = instantiate(cfg.data)
    raw = dm.build_raw(split or dm.val_split)
    folder.mkdir(parents=True, exist_ok=True)
    stems = []
    for i in range(len(raw)):
        sample = raw[i]
        h, w = sample.image.shape[:2]
        if regions is not None:
            mask = regions(sample.image)
        elif sample.label is not None:
            mask = np.where(sample.label == 255, 0, sample.label.astype(np.int32) + 1)
        else:
            mask = np.zeros((h, w), dtype=np.int32)
        assert mask.shape == (h, w)
        np.savez(folder / f"{sample.name}.npz", instance_mask=mask)
        stems.append(sample.name)
    return stems


def test_eval_reads_precomputed_masks_and_caches_superpixels_once(voter, tmp_path: Path) -> None:
    cfg = compose_eval(tmp_path / "a", *SMALL, "teacher.head=toyvote",
                       "teacher.masks=precomputed")  # fmt: skip
    stems = write_masks(cfg, tmp_path / "masks")
    assert stems == [f"shapes_val_{i:05d}" for i in range(4)]
    cfg.teacher.masks_options = {"dir": str(tmp_path / "masks")}
    truth = evaluate(cfg)
    record = truth["teacher_config"]
    assert record["masks"] == "precomputed" and record["masks_options"]["dir"].endswith("masks")
    # the vote with the scenes' own shapes as regions: every shape one label, better or equal
    cache = tmp_path / "cache"
    sp = [*SMALL, "teacher.head=toyvote", "teacher.masks=superpixels", f"paths.cache_dir={cache}"]
    first = evaluate(compose_eval(tmp_path / "b", *sp))
    files = sorted((cache / "region_masks").rglob("*.npz"))
    assert len(files) == 4 and 0.0 <= first["val/miou"] <= 1.0
    stamps = [f.stat().st_mtime_ns for f in files]
    # a sweep over the head's settings: the masks are read, not computed again
    second = evaluate(compose_eval(tmp_path / "c", *sp, "teacher.head_options={shift:0.25}"))
    assert sorted((cache / "region_masks").rglob("*.npz")) == files
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert second["teacher_config"]["head_options"] == {"shift": 0.25}
    # a mask folder that lacks an image: one line naming it
    (tmp_path / "masks" / "shapes_val_00002.npz").unlink()
    with pytest.raises(UserError, match="no mask for image 'shapes_val_00002'"):
        evaluate(cfg)


def test_training_with_a_region_head(voter, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = compose_train(out, "teacher=tiny_shapes_vit_plain", "teacher.head=toyvote",
                        "teacher.masks=superpixels", "teacher.masks_options={segments:16}",
                        *TEACHER_LABELS)  # fmt: skip
    metrics = train(cfg)
    assert metrics["train/global_step"] == 1 and "teacher/val/miou" in metrics
    # the teacher labelled the 2 training images (whole: the crop is the image) and the 4
    # validation images: one cached map each
    assert len(list((tmp_path / "cache" / "region_masks").rglob("*.npz"))) == 6


def test_precomputed_masks_in_training_label_whole_named_images_only(voter, tmp_path) -> None:
    out = tmp_path / "run"
    cfg = compose_train(out, "teacher=tiny_shapes_vit_plain", "teacher.head=toyvote",
                        "teacher.masks=precomputed", f"teacher.masks_options={{dir:{tmp_path}}}",
                        *TEACHER_LABELS)  # fmt: skip
    write_masks(cfg, tmp_path)  # validation scores whole named images: it reads them
    with pytest.raises(UserError, match="needs each image's file name"):
        train(cfg)  # the training crops have no file of their own


def test_precomputed_masks_teach_a_folder_through_the_teacher_label_cache(
    voter, tmp_path: Path, monkeypatch
) -> None:
    """``experiment=distill_folder`` with precomputed masks: the label cache labels each whole
    named photo once, the hold-out's judge reads them too."""
    from tests.test_distill_folder import compose_distill, draw_photos

    monkeypatch.chdir(tmp_path)
    photos = draw_photos(tmp_path / "photos", 6)
    masks = tmp_path / "masks"
    masks.mkdir()
    halves = np.repeat([[1] * 48 + [2] * 48], 72, 0)  # two regions: the left and right half
    halves[:8] = 0  # and, as in CorrCLIP's files, the map's minimum: no region
    for path in photos:
        np.savez(masks / f"{path.stem}.npz", instance_mask=halves)
    words = ["teacher=tiny_shapes_vit_plain", "teacher.head=toyvote", "teacher.masks=precomputed",
             f"teacher.masks_options={{dir:{masks}}}", "callbacks.teacher_label_cache.enabled=true",
             f"callbacks.teacher_label_cache.dirpath={tmp_path}/labels",
             "callbacks.distill_report.export=null", "data.num_workers=0"]  # fmt: skip
    train(compose_distill(tmp_path, *words))
    files = sorted((tmp_path / "labels").rglob("*.png"))
    assert len(files) == 5  # 6 photos, 1 held out
    for f in files:  # the vote: one label per half
        labels = np.asarray(Image.open(f))
        assert len(np.unique(labels[8:, :48])) == 1 and len(np.unique(labels[8:, 48:])) == 1
    agreement = json.loads((tmp_path / "run" / "distill" / "agreement.json").read_text())
    assert agreement["images"] == 1


@pytest.mark.slow
def test_the_8_benchmarks_run_with_precomputed_masks_in_their_real_layouts(
    voter, tmp_path: Path
) -> None:
    make_benchmarks(tmp_path)
    for data in BENCHMARKS:
        over = ["protocol=training_free", f"data={data}", "teacher=tiny_vit_test",
                "teacher.head=toyvote", "teacher.masks=precomputed",
                f"paths.output_dir={tmp_path}/out/{data}", f"paths.cache_dir={tmp_path}/cache",
                "data.num_workers=0", "trainer.enable_progress_bar=false"]  # fmt: skip
        cfg = compose_protocol(tmp_path, *over)
        stems = write_masks(cfg, tmp_path / "masks" / data)
        assert len(stems) == 1, data
        cfg.teacher.masks_options = {"dir": str(tmp_path / "masks" / data)}
        metrics = evaluate(cfg)
        assert 0.0 <= metrics["val/miou"] <= 1.0, data
        assert metrics["teacher_config"]["masks"] == "precomputed"


@pytest.mark.slow
def test_the_corrclip_8_benchmark_command_with_precomputed_masks(tmp_path: Path) -> None:
    """README's ``protocol=corrclip teacher.head=corrclip teacher.masks=precomputed`` command
    on the 8 generated trees in their real layouts, as typed but for the CLIP (the shipped
    4-block tiny ViT for MetaCLIP) and the user's files (a folder of ``<stem>.npz`` masks for
    every image; DINO ViT-B/8 with random weights): every benchmark scored with CorrCLIP's
    settings and masks, its row printed above CorrCLIP's published rows."""
    make_benchmarks(tmp_path / "data")
    folder = tmp_path / "masks"
    for data in BENCHMARKS:  # one folder for all: the stems differ between the trees
        write_masks(
            compose_protocol(tmp_path / "data", "protocol=corrclip", f"data={data}"), folder
        )
    import timm
    import torch

    dino = timm.create_model("vit_base_patch8_224.dino", pretrained=False, num_classes=0)
    weights = tmp_path / "dino_vitbase8_pretrain.pth"
    torch.save({k: v.half() for k, v in dino.state_dict().items()}, weights)
    replace = {
        "teacher=vit_b16_metaclip": "teacher=tiny_shapes_vit_plain",
        "teacher.masks_options={dir: /data/corrclip_sam2_masks}": f"teacher.masks_options={{dir: {folder}}}",
        "teacher.proxy_weights=/weights/dino_vitbase8_pretrain.pth": f"teacher.proxy_weights={weights}",
    }
    sweep, table = run_readme_command("python -m src.eval -m protocol=corrclip", tmp_path, replace)
    runs = [(json.loads(p.read_text()), yaml.safe_load((p.parent / ".hydra" / "config.yaml").read_text()))
            for p in sweep.glob("*/metrics.json")]  # fmt: skip
    assert len(runs) == 8 and all(r["teacher_config"]["masks"] == "precomputed" for r, _ in runs)
    assert {c["protocol"]["dataset"] for _, c in runs} == set(BENCHMARKS)
    assert all(c["protocol"]["window_pad"] == 56 and c["teacher"]["head"] == "corrclip"
               for _, c in runs)  # fmt: skip
    rows = [line for line in table.splitlines() if line.startswith("| measured")]
    assert len(rows) == 1 and "(corrclip, precomputed masks)" in rows[0], rows
    assert "tiny_shapes_vit_plain" in rows[0]
    assert rows[0].rstrip(" |").split("|")[-1].strip() != "-"  # all 8 there: a mean
    published = [line for line in table.splitlines() if "| CorrCLIP, " in line]
    assert len(published) == 10  # the README's 5 mask generators x 2 CLIPs
    sam2 = next(line for line in published if "SAM2 (32 points)" in line and "ViT-B/16" in line)
    assert sam2.rstrip(" |").endswith("| 51.0")
