"""``experiment=distill_folder``: a folder of unlabelled images -> a student, judged without
labels against its teacher on a seeded hold-out, exported to ONNX, run by ``src.predict`` on
onnxruntime alone. The images are drawn here with PIL and numpy (not the project's renderers)."""

from __future__ import annotations

import json
import logging
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from src.data.datasets import FolderDataset, holdout_indices
from src.errors import UserError
from src.student.checkpoint import read_checkpoint
from src.student.distill import NO_CLASS, AgreementMeter
from tests.test_readme import environment

ROOT = Path(__file__).resolve().parents[1]
#: the README command (section "Distil a segmenter for your own images"), as written
README_COMMAND = next(
    line
    for line in (ROOT / "README.md").read_text().splitlines()
    if line.startswith("python -m src.train experiment=distill_folder data.root=photos")
)
LIMITS = ["trainer.max_steps=2", "trainer.limit_val_batches=1"]  # step and batch limits only
#: modules of the training stack an exported student must run without
TRAINING_STACK = ("pytorch_lightning", "lightning", "lightning_fabric", "open_clip", "timm")


def draw_photos(folder: Path, count: int, size: tuple[int, int] = (96, 72)) -> list[Path]:
    """``count`` PNG and JPEG pictures of coloured discs and boxes, drawn with PIL."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out = []
    for i in range(count):
        im = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(im)
        x, y = (int(v) for v in rng.integers(0, 40, 2))
        draw.ellipse((x, y, x + 30, y + 30), fill=(220, 40, 40))
        draw.rectangle((50, 20, 85, 60), fill=(40, 40, 220))
        path = folder / f"photo{i}.{'png' if i % 2 else 'jpg'}"
        im.save(path)
        out.append(path)
    return out


def env() -> dict[str, str]:
    """The project's environment as after ``source .venv/bin/activate`` (``make test`` runs
    the venv's python without activating it), with the one-line errors users see."""
    return environment() | {"HYDRA_FULL_ERROR": "0"}


def layout(folder: Path) -> Path:
    """``folder`` with ``src`` and ``conf`` linked in: commands run there as in a checkout."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("src", "conf"):
        (folder / name).symlink_to(ROOT / name)
    return folder


def shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env(), capture_output=True, text=True, timeout=600
    )


# ---------------------------------------------------------------------- the hold-out
def test_holdout_is_seeded_disjoint_and_at_least_one_image(tmp_path) -> None:
    assert holdout_indices(20, 0.1, 0) == holdout_indices(20, 0.1, 0)
    assert holdout_indices(20, 0.1, 0) != holdout_indices(20, 0.1, 1)
    assert len(holdout_indices(20, 0.1, 0)) == 2 and len(holdout_indices(3, 0.1, 0)) == 1
    assert holdout_indices(5, 0.0, 0) == []
    draw_photos(tmp_path / "p", 10)
    train = FolderDataset(root=tmp_path / "p", split="train", holdout=0.3, holdout_seed=4)
    val = FolderDataset(root=tmp_path / "p", split="val", holdout=0.3, holdout_seed=4)
    train_names, val_names = {n for n, _, _ in train.items}, {n for n, _, _ in val.items}
    assert len(train_names) == 7 and len(val_names) == 3 and not train_names & val_names
    assert sorted(Path(h).stem for h in train.held_out) == sorted(val_names)


@pytest.mark.parametrize("share", [0.5, 0.99])
def test_a_holdout_leaving_nothing_to_train_on_is_one_user_error(tmp_path, share) -> None:
    draw_photos(tmp_path / "p", 1 if share == 0.5 else 3)
    with pytest.raises(UserError, match="leaves nothing to train on") as err:
        FolderDataset(root=tmp_path / "p", split="train", holdout=share)
    assert "holdout" in err.value.fix


def test_unreadable_files_are_skipped_and_counted(tmp_path, caplog) -> None:
    draw_photos(tmp_path / "p", 3)
    (tmp_path / "p" / "broken.png").write_bytes(b"not a picture")
    (tmp_path / "p" / "cut.jpg").write_bytes((tmp_path / "p" / "photo0.jpg").read_bytes()[:0])
    data = FolderDataset(root=tmp_path / "p", split="train")
    assert len(data) == 3 and sorted(data.unreadable) == ["broken.png", "cut.jpg"]
    assert "skipping 2 unreadable image file(s) of 5" in caplog.text


def test_a_folder_of_unreadable_files_or_none_is_one_user_error(tmp_path) -> None:
    (tmp_path / "bad").mkdir()
    for i in range(3):
        (tmp_path / "bad" / f"{i}.png").write_text("text")
    with pytest.raises(UserError, match=r"none of the 3 image file\(s\) .* can be read"):
        FolderDataset(root=tmp_path / "bad")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        FolderDataset(root=tmp_path / "empty")


def test_an_onnx_file_given_to_resume_is_named_as_such(tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    graph = onnx.helper.make_graph([], "g", [], [])
    path = tmp_path / "student.onnx"
    path.write_bytes(onnx.helper.make_model(graph).SerializeToString())
    with pytest.raises(UserError, match="an exported ONNX student, not a training checkpoint"):
        read_checkpoint(path)


# ---------------------------------------------------------------------- judging without labels
def test_agreement_meter_counts_pixels_shares_and_confidence() -> None:
    meter = AgreementMeter(2, bins=4)
    teacher = np.array([[0, 0, 1, NO_CLASS]])
    student = np.array([[0, 1, 1, 1]])
    meter.update(teacher, student, np.array([[0.9, 0.6, 0.3, 0.1]]), np.full((1, 4), 0.8))
    out = meter.result(["cat", "dog"])
    assert out["pixels"] == 4 and out["agreement"] == pytest.approx(2 / 3)
    assert out["teacher_no_class_share"] == 0.25
    assert out["per_class"]["cat"] == {"agreement": 0.5, "iou": 0.5, "teacher_share": 0.5,
                                       "student_share": 0.25}  # fmt: skip
    assert out["per_class"]["dog"] == {"agreement": 1.0, "iou": pytest.approx(1 / 3),
                                       "teacher_share": 0.25, "student_share": 0.75}  # fmt: skip
    # the teacher's no-class pixel has no confidence; bins of 0.25
    assert out["confidence_histogram"]["teacher"] == pytest.approx([0, 1 / 3, 1 / 3, 1 / 3])
    assert out["confidence_histogram"]["student"] == [0, 0, 0, 1.0]


# ---------------------------------------------------------------------- the whole path
def test_readme_command_folder_to_student_to_onnx_to_predict(tmp_path) -> None:
    """The README command on PIL-drawn PNG/JPEG files: checkpoint, ONNX file, class names,
    hold-out list, agreement, pictures; the printed predict command works without the
    training stack."""
    pytest.importorskip("onnxruntime")
    root = layout(tmp_path / "work")
    draw_photos(root / "photos", 6)
    proc = shell(f"{README_COMMAND} {' '.join(LIMITS)}", root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (root / "logs" / "train" / "runs").iterdir()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "student.onnx").stat().st_size > 10_000
    classes = (run / "student_classes.txt").read_text().split("\n")[:-1]
    assert classes == ["cat", "dog", "grass", "sky"]  # multi-name class: its first name
    held = [line for line in (run / "distill" / "holdout.txt").read_text().splitlines()
            if not line.startswith("#")]  # fmt: skip
    assert len(held) == 1 and (root / "photos" / held[0]).is_file()
    agreement = json.loads((run / "distill" / "agreement.json").read_text())
    assert agreement["images"] == 1 and 0.0 <= agreement["agreement"] <= 1.0
    assert set(agreement["per_class"]) == set(classes)
    shares = [c["student_share"] for c in agreement["per_class"].values()]
    assert sum(shares) == pytest.approx(1.0)
    assert sum(agreement["confidence_histogram"]["student"]) == pytest.approx(1.0)
    grid = Image.open(run / "distill" / "grid.png")
    assert grid.width > 3 * 72  # image | teacher | student side by side
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val/teacher_agreement"] == pytest.approx(agreement["agreement"])
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))

    printed = re.search(r"^\s+(python -m src\.predict .*)$", proc.stdout, re.MULTILINE)
    assert printed, proc.stdout[-2000:]
    draw_photos(root / "new", 2, size=(50, 40))
    predict = printed.group(1).replace("<new images>", "new")
    words = shlex.split(predict)[3:]
    probe = (
        "import atexit, runpy, sys\n"
        f"sys.argv = ['src.predict', *{words!r}]\n"
        "atexit.register(lambda: print('LOADED', sorted({m.split('.')[0] for m in sys.modules}"
        f" & set({TRAINING_STACK!r}))))\n"
        "runpy.run_module('src.predict', run_name='__main__')\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=root, env=env(), capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "LOADED []" in out.stdout, out.stdout
    legend = json.loads((run / "predictions" / "legend.json").read_text())
    assert legend["classes"] == classes and legend["complete"] and len(legend["images"]) == 2
    mask = np.asarray(Image.open(run / "predictions" / "photo0_mask.png"))
    assert mask.shape == (40, 50) and mask.max() < len(classes)


def compose_distill(root: Path, *overrides: str):
    """The README command's config, composed in process (a run folder under ``root``)."""
    from hydra import compose, initialize_config_dir

    words = shlex.split(README_COMMAND)[3:]
    paths = [f"paths.root_dir={root}", f"paths.output_dir={root / 'run'}"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3", job_name="t"):
        return compose("train", overrides=[*paths, *words, *LIMITS, *overrides])


@pytest.mark.parametrize(
    ("setup", "words", "message"),
    [
        ("empty", [], "no images"),
        ("one", [], "leaves nothing to train on"),
        ("photos", ["data.class_names=[cat, dog, cat]"], "distinct names"),
        ("photos", ["ckpt_path=photos/x.onnx"], "an exported ONNX student"),
    ],
)
def test_bad_input_is_one_line_and_no_checkpoint(
    tmp_path, monkeypatch, capsys, setup, words, message
) -> None:
    from src.train import train
    from src.utils.task import run_task

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "photos"
    folder.mkdir()
    if setup in ("one", "photos"):
        draw_photos(folder, 1 if setup == "one" else 3)
    if "ckpt_path=photos/x.onnx" in words:
        (folder / "x.onnx").write_bytes(b"\x08\x07\x12\x04onnx")  # a protobuf's first bytes
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    cfg = compose_distill(tmp_path, *words)
    with pytest.raises(SystemExit) as code:
        run_task(train, cfg, output_dir=tmp_path / "run")
    assert code.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("error: ") and message in lines[0], lines
    assert len(lines) == 2 and lines[1].startswith("  fix: ")
    assert not (tmp_path / "run").exists()  # nothing written


def test_a_folder_of_unreadable_files_stops_the_command_with_one_line(tmp_path) -> None:
    root = layout(tmp_path / "work")
    (root / "photos").mkdir()
    for i in range(2):
        (root / "photos" / f"{i}.jpg").write_text("no picture")
    proc = shell(" ".join([README_COMMAND, *LIMITS]), root)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "none of the 2 image file(s)" in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not list(root.glob("logs/train/runs/*/checkpoints/*"))


# ---------------------------------------------------------------------- the teacher-label cache
@pytest.mark.slow  # two short training runs
def test_teacher_label_cache_labels_each_image_once_and_resumes(
    tmp_path, monkeypatch, caplog
) -> None:
    """With the cache on, training steps never run the teacher; each training image is
    labelled once; a later run (another seed) labels only what is missing."""
    from src.student.model import DenseClipPlus
    from src.train import train

    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO, logger="src.data.label_cache")
    draw_photos(tmp_path / "photos", 6)
    calls = {"training": 0}
    original = DenseClipPlus.teacher_logits

    def counted(self, *args, **kwargs):
        calls["training"] += bool(self.training)  # a training step (the fill runs in eval mode)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DenseClipPlus, "teacher_logits", counted)
    cache = tmp_path / "labels"
    words = ["callbacks.teacher_label_cache.enabled=true", f"callbacks.teacher_label_cache.dirpath={cache}",
             "callbacks.distill_report.export=null", "data.num_workers=0"]  # fmt: skip
    train(compose_distill(tmp_path, *words))
    (folder,) = cache.iterdir()
    files = sorted(folder.glob("*.png"))
    assert len(files) == 5  # 6 images, 1 held out
    held = (tmp_path / "run" / "distill" / "holdout.txt").read_text()
    assert not any(f"{f.stem}." in held for f in files)
    for f in files:
        mask = np.asarray(Image.open(f))
        assert mask.shape == (72, 96) and set(np.unique(mask)) <= {0, 1, 2, 3, 255}
    assert calls["training"] == 0 and "0 of 5 image(s) cached" in caplog.text
    files[0].unlink()
    caplog.clear()
    train(compose_distill(tmp_path, *words, "seed=1", f"paths.output_dir={tmp_path / 'run2'}"))
    assert "4 of 5 image(s) cached" in caplog.text and "1 to label" in caplog.text
    assert len(list(folder.glob("*.png"))) == 5 and calls["training"] == 0


# ---------------------------------------------------------------------- the ONNX predictor
def test_onnx_predictor_gives_the_students_masks_and_keeps_its_classes(tmp_path) -> None:
    """``src.predict``'s ONNX path (onnxruntime) and the student in PyTorch draw the same mask
    with the same sizing; the file's classes cannot be changed; a missing file is one line."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import torch

    from src.prediction.onnx_student import onnx_predictor
    from src.prediction.predictor import Settings, predict_image, predictor_from_student
    from src.student.export import export_student
    from tests.student.fakes import tiny_student

    student = tiny_student().eval()
    path = export_student(student, tmp_path / "student.onnx", fmt="onnx")
    exported = onnx_predictor(path)
    assert exported.class_names == list(student.class_names)
    assert exported.native_size == student.image_size  # stored in the file
    settings = Settings(max_size=96, min_size="auto", sliding_window=False, window=64, stride=48,
                        window_batch=2, threshold=None, logit_scale=None, confidence_maps=True,
                        overlay_alpha=0.5, legend_max_entries=8)  # fmt: skip
    image = (np.random.default_rng(0).random((45, 70, 3)) * 255).astype(np.uint8)
    cpu = torch.device("cpu")
    with torch.inference_mode():
        ours = predict_image(exported, image, settings, cpu)
        theirs = predict_image(predictor_from_student(student), image, settings, cpu)
    assert ours.mask.shape == (45, 70)
    assert (ours.mask == theirs.mask).float().mean() >= 0.999
    assert torch.allclose(ours.confidence.float(), theirs.confidence.float(), atol=2)
    with pytest.raises(UserError, match="its classes cannot be changed"):
        onnx_predictor(path, ["cat", "dog"])
    assert onnx_predictor(path, list(student.class_names)).class_names == student.class_names
    with pytest.raises(UserError, match="ONNX file not found"):
        onnx_predictor(tmp_path / "missing.onnx")


# ---------------------------------------------------------------------- a labelled set (data.val_root)
def voc_tree(root: Path, count: int, *, top: int = 2) -> Path:
    """A VOC-layout labelled set drawn with PIL: JPEG pictures, greyscale label PNGs (0
    background, a disc of class 1, a box of class ``top``, a void border), ``val.txt``."""
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids = []
    for i, photo in enumerate(draw_photos(root / "drawn", count)):
        ids.append(f"img{i}")
        Image.open(photo).convert("RGB").save(root / "JPEGImages" / f"img{i}.jpg")
        label = Image.new("L", (96, 72), 0)
        draw = ImageDraw.Draw(label)
        draw.rectangle((50, 20, 85, 60), fill=top)
        draw.ellipse((10, 10, 40, 40), fill=1)
        draw.rectangle((0, 0, 95, 71), outline=255)
        label.save(root / "SegmentationClass" / f"img{i}.png")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def test_labelled_scores_count_a_teachers_no_class_pixels_as_misses() -> None:
    import torch

    from src.student.distill import labelled_scores

    confmat = torch.tensor([[3, 1, 1], [0, 2, 2], [0, 0, 0]])  # last column: no class
    out = labelled_scores(confmat, ["cat", "dog"])
    assert out["iou"] == {"cat": pytest.approx(3 / 5), "dog": pytest.approx(2 / 5)}
    assert out["miou"] == pytest.approx(0.5) and out["pixels"] == 9


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ("missing", "PASCAL VOC 2012 root not found"),
        ("no_labels", "label missing"),
        ("class_value", "the labels hold class value 7 but data.class_names lists 4 classes"),
    ],
)
def test_a_bad_val_root_is_one_line_before_anything_is_written(
    tmp_path, monkeypatch, capsys, tree, message
) -> None:
    from src.train import train
    from src.utils.task import run_task

    monkeypatch.chdir(tmp_path)
    draw_photos(tmp_path / "photos", 3)
    labelled = tmp_path / "labelled"
    if tree != "missing":
        voc_tree(labelled, 2, top=7 if tree == "class_value" else 2)
    if tree == "no_labels":
        (labelled / "SegmentationClass" / "img1.png").unlink()
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    cfg = compose_distill(tmp_path, f"data.val_root={labelled}")
    with pytest.raises(SystemExit) as code:
        run_task(train, cfg, output_dir=tmp_path / "run")
    assert code.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"error: data.val_root={labelled}") and message in lines[0], lines
    assert len(lines) == 2 and lines[1].startswith("  fix: ")
    assert not (tmp_path / "run").exists()


def test_val_root_scores_the_student_and_the_teacher_on_labelled_images(
    tmp_path, monkeypatch
) -> None:
    """``data.val_root``: the student's and the teacher's mIoU on a VOC-layout tree (its
    background ignored) in ``agreement.json``, ``metrics.json`` and the loggers."""
    from src.train import train
    from src.utils.task import run_task

    monkeypatch.chdir(tmp_path)
    draw_photos(tmp_path / "photos", 4)
    labelled = voc_tree(tmp_path / "labelled", 2)
    words = [f"data.val_root={labelled}", "callbacks.distill_report.export=null",
             "data.num_workers=0", "data.crop_size=64", "data.scale=[256,64]"]  # fmt: skip
    run_task(train, compose_distill(tmp_path, *words), output_dir=tmp_path / "run")
    report = json.loads((tmp_path / "run" / "distill" / "agreement.json").read_text())
    labelled_report = report["labelled"]
    assert labelled_report["images"] == 2 and labelled_report["step"] == 2
    # class pixels of the two labels (background and the void border ignored), at label size
    label = np.asarray(Image.open(labelled / "SegmentationClass" / "img0.png"))
    pixels = 2 * int(((label != 0) & (label != 255)).sum())
    for who in ("student", "teacher"):
        scores = labelled_report[who]
        assert scores["pixels"] == pixels
        assert set(scores["iou"]) == {"cat", "dog", "grass", "sky"}
        assert scores["iou"]["grass"] is None and scores["iou"]["sky"] is None  # not labelled
        assert 0.0 <= scores["miou"] <= 1.0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val/labelled/miou"] == pytest.approx(labelled_report["student"]["miou"])
    assert metrics["teacher/val/labelled/miou"] == pytest.approx(labelled_report["teacher"]["miou"])
