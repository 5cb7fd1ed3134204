"""DenseClipPlus: target building, the frozen teacher, classifier, optimiser, EMA, checkpoints."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
import torchvision
from pytorch_lightning.callbacks import ModelCheckpoint

from src.batch import CANDIDATES, IGNORE_INDEX, IMAGE, TARGET, UNLABELLED
from src.errors import UserError
from src.student.model import DenseClipPlus
from src.student.targets import build_targets, random_crops
from tests.student.fakes import ScenesData, quick_trainer, tiny_student, tiny_teacher

U, V = UNLABELLED, IGNORE_INDEX


@pytest.fixture(scope="module")
def teacher():
    return tiny_teacher()


def test_build_targets_keeps_labels_and_void_and_takes_candidate_argmax() -> None:
    target = torch.tensor([[[0, 1, U, U, V]]])  # (1, 1, 5)
    scores = torch.zeros(1, 4, 1, 5)
    scores[0, 1] = 9.0  # class 1 wins everywhere overall ...
    scores[0, 2, 0, 2] = 2.0  # ... but among the candidates {2, 3}: 2 at x=2,
    scores[0, 3, 0, 3] = 1.0  # 3 at x=3
    cand = torch.tensor([[False, False, True, True]])
    out = build_targets(target, cand, scores)
    assert out.tolist() == [[[0, 1, 2, 3, V]]]
    # an image without any candidate: its unlabelled pixels become void
    assert build_targets(target, torch.zeros(1, 4, dtype=torch.bool), scores).tolist() == [
        [[0, 1, V, V, V]]
    ]


def test_targets_from_a_fixed_teacher_then_from_the_students_own_argmax(teacher, monkeypatch):
    student = tiny_student(teacher)
    target = torch.tensor([[[0, 1, U, U], [U, V, 1, U]]])  # (1, 2, 4)
    images = torch.randn(1, 3, 2, 4)
    fixed = torch.zeros(1, 3, 2, 4)  # teacher space: circle, square, triangle
    fixed[:, 0] = 5.0  # circle (seen) is the teacher's overall favourite everywhere
    fixed[0, 1, :, :2] = 1.0  # square beats triangle in the left half
    fixed[0, 2, :, 2:] = 1.0  # triangle in the right half
    calls = []

    def fake_predict(x, size=None):
        calls.append(tuple(size))
        return fixed.clone()

    monkeypatch.setattr(student.teacher, "predict_logits", fake_predict)
    batch = {IMAGE: images, TARGET: target, CANDIDATES: torch.tensor([[False, False, True, True]])}
    logits = torch.zeros(1, 4, 2, 4)
    logits[:, 0] = 3.0  # the student's favourite: background (not a candidate)
    logits[0, 3] = 1.0  # triangle among the candidates everywhere
    got = student.pseudo_targets(batch, logits)
    # dataset classes: 0 background, 1 circle, 2 square, 3 triangle
    assert got.tolist() == [[[0, 1, 3, 3], [2, V, 1, 3]]]
    assert calls == [(2, 4)]
    student.self_training = True
    got = student.pseudo_targets(batch, logits)
    assert got.tolist() == [[[0, 1, 3, 3], [3, V, 1, 3]]]
    assert len(calls) == 1  # the teacher is not run after the switch


def test_classifier_is_frozen_text_plus_normalised_background(teacher) -> None:
    student = tiny_student(teacher)
    weights = student.net.classifier()
    assert weights.shape == (4, teacher.text_embeddings.shape[1])
    torch.testing.assert_close(weights[1:], teacher.text_embeddings)
    assert math.isclose(weights[0].norm().item(), 1.0, rel_tol=1e-5)
    trainable = {n for n, p in student.named_parameters() if p.requires_grad}
    assert "net.background" in trainable and "net.text_embeddings" not in trainable
    assert not any(n.startswith("teacher.") for n in trainable)
    assert tiny_student(teacher, background=False, unseen_indices=[]).net.background is None
    logits = student.predict_logits(torch.randn(2, 3, 40, 24), size=(20, 12))
    assert logits.shape == (2, 4, 20, 12)


def test_teacher_stays_frozen_in_eval_mode_and_out_of_optimizer_and_checkpoint(teacher, tmp_path):
    init = tmp_path / "r18.pth"  # a local backbone initialisation, not needed to reload
    torch.save(torchvision.models.resnet18().state_dict(), init)
    student = tiny_student(teacher, backbone_weights=str(init))
    before = {k: v.clone() for k, v in student.teacher.state_dict().items()}
    modes = []

    class Spy(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            modes.append((module.training, module.net.training, module.teacher.training,
                          any(m.training for m in module.teacher.modules())))  # fmt: skip

    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = quick_trainer(
        tmp_path, max_steps=3, callbacks=[Spy(), ckpt], enable_checkpointing=True
    )
    trainer.fit(student, datamodule=ScenesData())
    assert modes == [(True, True, False, False)] * 3
    after = student.teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    fresh = tiny_student(teacher).net.state_dict()
    assert any(not torch.equal(fresh[k], v) for k, v in student.net.state_dict().items())
    teacher_ids = {id(p) for p in student.teacher.parameters()}
    groups = trainer.optimizers[0].param_groups
    assert not teacher_ids & {id(p) for g in groups for p in g["params"]}
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(
        p.numel() for p in student.net.parameters()
    )

    path = tmp_path / "ckpt" / "last.ckpt"
    state = torch.load(path, map_location="cpu", weights_only=False)
    assert not [k for k in state["state_dict"] if k.startswith("teacher.")]
    assert any(k.startswith("net.backbone.") for k in state["state_dict"])
    assert state["hyper_parameters"]["backbone_weights"] == "none"  # no ImageNet file needed
    loaded = DenseClipPlus.load_from_checkpoint(path)  # the teacher is rebuilt from hparams
    assert loaded.teacher.clip_model == "dc-test-rn" and not loaded.teacher.training
    assert loaded.class_names == ["background", *teacher.class_names]
    student.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval().predict_logits(x), student.predict_logits(x))


def test_validation_logs_student_and_teacher_metrics(teacher, tmp_path) -> None:
    student = tiny_student(teacher)
    trainer = quick_trainer(tmp_path, max_steps=2, val_check_interval=2)
    trainer.fit(student, datamodule=ScenesData())
    m = trainer.callback_metrics
    for key in ("val/miou", "val/miou_seen", "val/miou_unseen", "val/hiou", "val/pacc",
                "teacher/val/miou", "val/step"):  # fmt: skip
        assert key in m, key
    assert m["val/step"] == 2
    # the teacher, which has no background, never predicts class 0
    assert student.validation.teacher.confmat[:, 0].sum() == 0
    assert student.validation.teacher.confmat.sum() == 4 * 32 * 24  # 4 images, void column


def test_poly_schedule_and_optimizers(teacher) -> None:
    student = tiny_student(teacher, lr=0.01, min_lr=1e-4, poly_power=0.9)
    student._trainer = type("T", (), {"estimated_stepping_batches": 10})()
    conf = student.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    lrs = []
    for _ in range(11):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [(0.01 - 1e-4) * (1 - k / 10) ** 0.9 + 1e-4 for k in range(11)]
    assert lrs == pytest.approx(expected, rel=1e-6)
    adamw = tiny_student(teacher, optimizer="adamw", lr=1e-3, schedule="constant")
    adamw._trainer = student._trainer
    assert isinstance(adamw.configure_optimizers()["optimizer"], torch.optim.AdamW)


def test_ema_tracks_the_weights_and_serves_predictions(teacher, tmp_path) -> None:
    student = tiny_student(teacher, ema_decay=0.5)
    quick_trainer(tmp_path, max_steps=2).fit(student, datamodule=ScenesData())
    ema, net = student.ema.module, student.net
    assert not ema.training and not any(p.requires_grad for p in student.ema.parameters())
    w_ema, w_net = ema.head.branches[0].weight, net.head.branches[0].weight
    assert not torch.equal(w_ema, w_net)
    x = torch.randn(1, 3, 32, 32)
    student.eval()
    with torch.no_grad():
        torch.testing.assert_close(student.predict_logits(x, size=(4, 4)), ema(x))


def test_bad_arguments_raise_user_errors(teacher) -> None:
    with pytest.raises(UserError, match="classes"):
        tiny_student(teacher, class_names=["background", "circle"])
    with pytest.raises(UserError, match="optimizer"):
        tiny_student(teacher, optimizer="lbfgs")
    with pytest.raises(UserError, match="unseen"):
        tiny_student(teacher, unseen_indices=[7])
    with pytest.raises(UserError, match="ema_decay"):
        tiny_student(teacher, ema_decay=1.5)


def test_open_vocabulary_set_class_names(teacher) -> None:
    student = tiny_student(tiny_teacher())
    student.set_class_names(["star", "cross"])
    assert student.class_names == ["background", "star", "cross"]
    assert student.predict_logits(torch.randn(1, 3, 32, 32)).shape[1] == 3


def test_random_crops_cut_image_and_target_alike() -> None:
    target = torch.arange(2 * 10 * 12).view(2, 10, 12)
    images = torch.stack([target.float()] * 3, dim=1)
    crops, cut = random_crops(images, target, 6)
    assert crops.shape == (2, 3, 6, 6) and cut.shape == (2, 6, 6)
    assert torch.equal(crops[:, 0].long(), cut)
    assert all(torch.equal(cut[i, :, 1:] - cut[i, :, :-1], torch.ones(6, 5)) for i in range(2))
    same, whole = random_crops(images, target, 16)
    assert same is images and whole is target


def test_train_crop_the_teacher_labels_the_whole_image(teacher, tmp_path, monkeypatch) -> None:
    student = tiny_student(teacher, train_crop=16)
    seen, original = [], student.teacher.predict_logits

    def spy(x, size=None):
        seen.append(("teacher", tuple(x.shape[-2:]), tuple(size)))
        return original(x, size=size)

    monkeypatch.setattr(student.teacher, "predict_logits", spy)
    student.net.register_forward_pre_hook(lambda m, a: seen.append(("student", a[0].shape[-2:])))
    quick_trainer(tmp_path, max_steps=1).fit(student, datamodule=ScenesData())
    assert seen == [("teacher", (32, 32), (32, 32)), ("student", (16, 16))]


def test_class_balance_weights_the_loss_by_inverse_label_frequency_so_far(teacher) -> None:
    assert tiny_student(teacher).class_weights(torch.zeros(1, 2, 2, dtype=torch.long)) is None
    student = tiny_student(teacher, class_balance=1.0)  # 4 classes: background first
    first = torch.tensor([[[1, 1, 1, 1, 1, 1], [2, 2, V, V, V, V]]])  # 6 x class 1, 2 x class 2
    # mean count 2 (8 pixels / 4 classes); classes 0 and 3 not seen: weighted as the rarest (2)
    assert student.class_weights(first).tolist() == pytest.approx([1.0, 2 / 6, 1.0, 1.0])
    second = torch.tensor([[[3, 3, 3, 3, 2, 2], [2, 2, 2, 2, 0, 0]]])  # counts now 2, 6, 8, 4
    assert student.class_weights(second).tolist() == pytest.approx([2.5, 5 / 6, 5 / 8, 5 / 4])
    assert student.label_counts.tolist() == [2.0, 6.0, 8.0, 4.0]  # kept in the checkpoint
    assert "label_counts" in student.state_dict()
    half = tiny_student(teacher, class_balance=0.5)
    assert half.class_weights(first).tolist() == pytest.approx([1.0, (2 / 6) ** 0.5, 1.0, 1.0])
    for bad in (-0.5, 2, True):
        with pytest.raises(UserError, match="class_balance"):
            tiny_student(teacher, class_balance=bad)


def test_class_balance_counts_the_training_labels_of_each_step(teacher, tmp_path) -> None:
    student = tiny_student(teacher, class_balance=1.0)
    quick_trainer(tmp_path, max_steps=2).fit(student, datamodule=ScenesData())
    counts = student.label_counts
    # two steps of ScenesData's batches: every pixel not void (3/4 of each 32 x 32 scene)
    assert counts.sum().item() == 2 * ScenesData().batch_size * 32 * 24
