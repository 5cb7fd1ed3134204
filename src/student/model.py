"""DenseCLIP+: a segmentation student trained on the frozen teacher's pseudo labels.

:class:`DenseClipPlus` holds a :class:`~src.teacher.model.DenseClipTeacher` as a submodule
that never trains (no gradients, eval mode, out of the optimizer and out of checkpoint files;
it is rebuilt from the hyper-parameters on load). Per batch it builds the targets
(:func:`build_targets`): ground truth where labelled, the teacher's argmax over the candidate
classes where the target is ``UNLABELLED``, void stays void. Once ``self_training`` is set (by
:class:`~src.student.switch.PseudoLabelSwitch`), the student's own detached argmax replaces the
teacher's. The classifier is the teacher's frozen text embeddings (plus a learnable background
embedding as class 0 when ``background``); the student's features are not normalised.
"""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.batch import BACKGROUND, CANDIDATES, IGNORE_INDEX, IMAGE, NAME, TARGET, UNLABELLED
from src.errors import UserError
from src.scoring import Windows, score_images
from src.student.backbones import build_backbone, build_clip_backbone
from src.student.decoders import build_head
from src.student.schedule import LabelSchedule
from src.student.targets import build_targets, ignore_unlabelled, random_crops
from src.student.validation import StudentValidation
from src.teacher.model import DenseClipTeacher

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("poly", "constant")
UNLABELLED_MODES = ("teacher", "ignore")


class StudentNet(nn.Module):
    """Backbone + head + the text classifier (frozen text embeddings, learnable background).

    The backbone is a torchvision ResNet (``depth``, ``weights``), or, given ``visual``, CLIP's
    own image encoder (a trainable copy: :class:`~src.student.backbones.ClipResNetBackbone` for
    a ResNet CLIP, :class:`~src.student.backbones.ClipViTBackbone` for a ViT).
    """

    def __init__(
        self,
        *,
        text_embeddings: Tensor,
        background: bool,
        depth: int,
        weights: str | None,
        output_stride: int,
        num_stages: int = 4,
        head: str,
        head_channels: int,
        head_dilations: Sequence[int] | None = None,
        visual: nn.Module | None = None,
    ) -> None:
        super().__init__()
        dim = int(text_embeddings.shape[1])
        self.backbone: nn.Module
        if visual is not None:  # CLIP's own image encoder, fine-tuned (Figure 2's baseline)
            self.backbone = build_clip_backbone(visual, output_stride=output_stride)
        else:
            self.backbone = build_backbone(
                depth=depth, weights=weights, output_stride=output_stride, num_stages=num_stages
            )
        self.head = build_head(
            name=head,
            in_channels=self.backbone.out_channels,
            low_level_channels=self.backbone.low_level_channels,
            embed_dim=dim,
            channels=head_channels,
            dilations=head_dilations,
        )
        self.register_buffer("text_embeddings", text_embeddings.detach().clone().float())
        self.background = nn.Parameter(torch.randn(1, dim)) if background else None

    def classifier(self) -> Tensor:
        """(K, D) class embeddings: [normalised background,] frozen text embeddings."""
        if self.background is None:
            return self.text_embeddings
        return torch.cat([F.normalize(self.background, dim=1), self.text_embeddings], dim=0)

    def forward(self, images: Tensor) -> Tensor:
        """(B, K, h, w) logits at the head's resolution."""
        feats = self.head(self.backbone(images))
        weight = self.classifier().to(feats.dtype)
        return F.conv2d(feats, weight[:, :, None, None])


def _rng_states() -> dict[str, Any]:
    """Python, numpy and torch (CPU, CUDA) random states."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {  # plain types and tensors: loadable with weights_only=True
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: Mapping[str, Any]) -> None:
    random.setstate(tuple(states["python"]))
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _settle_cut_step(checkpoint: dict[str, Any]) -> None:
    """A checkpoint written while a training step was cut short (Ctrl-C in the forward pass:
    the batch fetched, not trained) resumes as one written just before that batch.

    Lightning counts that batch as ``ready`` but not ``processed`` and, on restart, advances
    its logging step as if the batch had been trained: the resumed run's logged steps (and so
    its learning rate per logged step) ran one ahead of the uninterrupted run's.
    """
    loops = checkpoint.get("loops", {}).get("fit_loop", {})
    progress = loops.get("epoch_loop.batch_progress")
    if not isinstance(progress, dict):
        return
    for part in ("total", "current"):
        counts = progress.get(part)
        if isinstance(counts, dict) and counts.get("processed") == counts.get("completed"):
            counts["ready"] = counts["started"] = counts["completed"]


class EmaUpdate:
    """``torch.optim.swa_utils.get_ema_multi_avg_fn`` as a picklable object (``ddp_spawn``
    pickles the module; the torch function returns a closure): ``ema <- decay * ema +
    (1 - decay) * current``, in place."""

    def __init__(self, decay: float) -> None:
        self.decay = decay

    @torch.no_grad()
    def __call__(self, ema: list[Tensor], current: list[Tensor], _num_averaged: Any) -> None:
        if torch.is_floating_point(ema[0]) or torch.is_complex(ema[0]):
            torch._foreach_lerp_(ema, current, 1 - self.decay)
        else:
            for p_ema, p_model in zip(ema, current, strict=True):
                p_ema.copy_(p_ema * self.decay + p_model * (1 - self.decay))


class DenseClipPlus(pl.LightningModule):
    """DenseCLIP+ student (DeepLabv2 / DeepLabv3+ / PSPNet on a dilated ResNet).

    Args:
        teacher: a built :class:`DenseClipTeacher`, or the keyword arguments that build one.
        class_names: the data module's classes (``"background"`` first when counted); default:
            the teacher's names, with ``"background"`` prepended when ``background``.
        background: whether the protocol counts background (learnable class 0).
        unseen_indices: the unseen classes (indices into ``class_names``) for the metrics.
        backbone: ResNet depth (18, 34, 50, 101), or ``"clip"``: a trainable copy of the
            teacher CLIP's own image encoder, ResNet or ViT (Figure 2's fine-tuning baseline;
            ``backbone_weights`` and ``backbone_stages`` do not apply, nor ``output_stride``
            to a ViT: its stride is the patch size); ``backbone_weights``: imagenet/none/path.
        backbone_stages: ResNet stages kept (4: the whole trunk, the paper's; 2 or 3: a
            shallow, cheap trunk for CPU runs).
        head: ``deeplabv2`` | ``deeplabv3plus`` | ``pspnet``; ``head_channels`` for the latter.
        head_dilations: DeepLabv2's ASPP rates (``None``: 6/12/18/24, the paper's).
        optimizer: ``sgd`` (the paper's) or ``adamw``; ``lr``, ``momentum``, ``weight_decay``.
        schedule: ``poly`` (``poly_power``, down to ``min_lr``) or ``constant``.
        ema_decay: keep an exponential moving average of the student's weights, used for
            validation and prediction (``None``: off, as in the paper).
        ema_self_labels: after the switch, take the self labels from the EMA weights.
        freeze_bn: keep the student's BatchNorm statistics fixed (eval mode) while training,
            as the original DeepLabv2 did; the paper's setting trains them (SyncBN).
        train_crop: train the student on a random ``train_crop`` square of each image while
            the teacher labels the whole image (cheaper steps, teacher labels with full
            context); ``None``: the student sees the whole image, as in the paper.
        unlabelled: what the ``UNLABELLED`` pixels are trained on before the switch:
            ``teacher`` (the paper's DenseCLIP guidance) or ``ignore`` (void: seen-only
            training, Table 2a's first row). After the switch both take the self labels.
        class_balance: weight the cross-entropy of class ``c`` by ``(mean share / share of c)
            ** class_balance``, the shares counted over every training label so far (kept in
            the checkpoint); ``0``: off (the paper's plain cross-entropy), ``1``: inverse
            frequency. For teachers that give one class most pixels of a folder (its
            background, unnamed), which a student from scratch collapses onto.
    """

    def __init__(
        self,
        *,
        teacher: DenseClipTeacher | Mapping[str, Any],
        class_names: Sequence[str] | None = None,
        background: bool = False,
        unseen_indices: Sequence[int] = (),
        backbone: int | str = 101,
        backbone_weights: str | None = "imagenet",
        output_stride: int = 8,
        backbone_stages: int = 4,
        head: str = "deeplabv2",
        head_channels: int = 512,
        head_dilations: Sequence[int] | None = None,
        optimizer: str = "sgd",
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        schedule: str = "poly",
        poly_power: float = 0.9,
        min_lr: float = 1e-4,
        ema_decay: float | None = None,
        ema_self_labels: bool = False,
        freeze_bn: bool = False,
        train_crop: int | None = None,
        unlabelled: str = "teacher",
        class_balance: float = 0.0,
    ) -> None:
        super().__init__()
        if isinstance(teacher, Mapping):
            teacher = DenseClipTeacher(**dict(teacher))
        if not isinstance(teacher, DenseClipTeacher):
            raise UserError(
                f"the student's teacher must be a DenseClipTeacher, got {type(teacher).__name__}"
            )
        if optimizer not in OPTIMIZERS:
            raise UserError(f"unknown optimizer {optimizer!r}", f"choose from {list(OPTIMIZERS)}")
        if schedule not in SCHEDULES:
            raise UserError(f"unknown lr schedule {schedule!r}", f"choose from {list(SCHEDULES)}")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise UserError(f"ema_decay must be in (0, 1) or null, got {ema_decay}")
        if isinstance(backbone, str) and backbone != "clip":
            raise UserError(
                f"student.backbone must be a ResNet depth or clip, got {backbone!r}",
                "use 18, 34, 50, 101 or clip (the teacher CLIP's image encoder, fine-tuned)",
            )
        if unlabelled not in UNLABELLED_MODES:
            raise UserError(
                f"student.unlabelled must be one of {list(UNLABELLED_MODES)}, got {unlabelled!r}",
                "use teacher (the paper) or ignore (seen-only training)",
            )
        if isinstance(class_balance, bool) or not 0.0 <= float(class_balance) <= 1.0:
            raise UserError(
                f"student.class_balance={class_balance!r} is not a number in [0, 1]",
                "use 0 (off, the paper's loss), 1 (inverse class frequency) or between",
            )
        if train_crop is not None and int(train_crop) < 8:
            raise UserError(f"train_crop must be at least 8 pixels or null, got {train_crop}")
        offset = 1 if background else 0
        names = list(class_names) if class_names is not None else None
        if names is None:
            names = ([BACKGROUND] if background else []) + list(teacher.class_names)
        if len(names) != teacher.num_classes + offset:
            raise UserError(
                f"the student has {len(names)} classes but the teacher has "
                f"{teacher.num_classes} (+{offset} background)",
                "build the teacher with the data module's teacher_class_names",
            )
        bad = [i for i in unseen_indices if not 0 <= int(i) < len(names)]
        if bad:
            raise UserError(f"unseen class indices {bad} are outside 0..{len(names) - 1}")

        self.save_hyperparameters(ignore=["teacher"])
        self.hparams["teacher"] = teacher.config()
        self.hparams["class_names"] = names
        self.class_names = names
        self.class_offset = offset
        self.teacher = teacher
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.net = StudentNet(
            text_embeddings=teacher.text_embeddings,
            background=background,
            depth=0 if backbone == "clip" else int(backbone),
            weights=backbone_weights,
            output_stride=output_stride,
            num_stages=backbone_stages,
            head=head,
            head_channels=head_channels,
            head_dilations=None if head_dilations is None else list(head_dilations),
            visual=teacher.trainable_visual() if backbone == "clip" else None,
        )
        if class_balance:  # pixels of each class among the training labels so far
            self.register_buffer("label_counts", torch.zeros(len(names), dtype=torch.float64))
        self.ema: torch.optim.swa_utils.AveragedModel | None = None
        if ema_decay is not None:
            self.ema = torch.optim.swa_utils.AveragedModel(
                copy.deepcopy(self.net),
                multi_avg_fn=EmaUpdate(float(ema_decay)),
                use_buffers=True,
            )
            self.ema.requires_grad_(False)
            self.ema.eval()
        #: where the training labels come from (teacher -> self labels, holds, fallbacks);
        #: the student owns it, the switch and the drift guard move it
        self.label_schedule = LabelSchedule()
        self.validation = StudentValidation(
            class_names=names, unseen_indices=[int(i) for i in unseen_indices]
        )

    # ------------------------------------------------------------------ frozen parts
    def train(self, mode: bool = True) -> DenseClipPlus:
        """Train the student; the teacher (and the EMA copy) stay in eval mode."""
        super().train(mode)
        self.teacher.eval()
        if self.ema is not None:
            self.ema.eval()
        if self.hparams.get("freeze_bn"):
            for module in self.net.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # the random states before this step draws: what a checkpoint written while the step
        # is cut short (Ctrl-C, a crash) must hold, so the resumed run redoes it identically
        self._rng_at_step_start = _rng_states()
        if self.hparams.get("freeze_bn"):
            self.train(True)  # whatever mode the loops restored, keep the statistics fixed

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Leave the frozen teacher out of checkpoint files (it is rebuilt from hparams)."""
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith("teacher.")]:
            del state[key]
        hparams = checkpoint.get("hyper_parameters")
        if isinstance(hparams, dict) and "backbone_weights" in hparams:
            # the file holds the trained backbone: loading it needs no ImageNet weights file
            hparams["backbone_weights"] = "none"
        # a resumed run draws what this one would: mid-step (the step's draws made, its
        # update not), the states from before the step, which the resumed run redoes
        pending = getattr(self, "_rng_at_step_start", None)
        checkpoint["rng_states"] = pending if pending is not None else _rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Put the rebuilt teacher's weights back so strict loading finds every key; keep the
        random states for a resumed run (restored when training starts)."""
        state = checkpoint.setdefault("state_dict", {})
        for key, value in self.teacher.state_dict(prefix="teacher.").items():
            state.setdefault(key, value)
        self._rng_to_restore = checkpoint.get("rng_states")
        _settle_cut_step(checkpoint)

    def on_train_start(self) -> None:
        """A resumed run continues the saved random streams (dropout, crops): the same steps
        as the uninterrupted run (on one process; see docs/RELIABILITY.md). A zero-shot run
        that no callback switches to self-training says so (one line)."""
        states, self._rng_to_restore = getattr(self, "_rng_to_restore", None), None
        if states is not None:
            _set_rng_states(states)
        callbacks = getattr(self.trainer, "callbacks", None) or []
        movers = [cb for cb in callbacks if getattr(cb, "moves_label_schedule", False)]
        teacher_labels = self.hparams.get("unlabelled", "teacher") == "teacher"
        if self.hparams.get("unseen_indices") and teacher_labels and not movers:
            log.warning(
                "no pseudo-label switch callback: the student trains on the teacher's labels "
                "throughout and never self-trains (keep callbacks.pseudo_label_switch, or "
                "set its enabled=false to mean it, as ablation=teacher_guidance does)"
            )

    # ------------------------------------------------------------------ the label schedule
    @property
    def self_training(self) -> bool:
        """Whether the switch to self-training happened (:attr:`label_schedule`)."""
        return self.label_schedule.switched

    @self_training.setter
    def self_training(self, value: bool) -> None:
        self.label_schedule.switch(value)

    @property
    def self_training_held(self) -> bool:
        """Whether the drift guard holds the switch (teacher labels although switched)."""
        return self.label_schedule.held

    @self_training_held.setter
    def self_training_held(self, value: bool) -> None:
        self.label_schedule.hold(value)

    @property
    def teacher_classes(self) -> list[int]:
        """Classes whose unlabelled pixels keep the teacher's label during self-training."""
        return self.label_schedule.fallback_classes

    @teacher_classes.setter
    def teacher_classes(self, value) -> None:
        self.label_schedule.fall_back(value)

    # ------------------------------------------------------------------ what callers need
    @property
    def mean(self) -> tuple[float, float, float]:
        """Input normalisation mean (the teacher's CLIP's)."""
        return self.teacher.mean

    @property
    def std(self) -> tuple[float, float, float]:
        """Input normalisation std (the teacher's CLIP's)."""
        return self.teacher.std

    @property
    def clip_model(self) -> str:
        """The teacher's open_clip model name."""
        return self.teacher.clip_model

    @property
    def image_size(self) -> int:
        """The teacher CLIP's input size (prediction enlarges smaller images to it)."""
        return self.teacher.image_size

    def normalize(self, images: Tensor) -> Tensor:
        """Normalise (B, 3, H, W) images in [0, 1] as the teacher (and so the student) expects."""
        return self.teacher.normalize(images)

    # ------------------------------------------------------------------ prediction
    def _eval_net(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.net

    def forward(self, images: Tensor) -> Tensor:
        """(B, K, h, w) logits of the trained net at feature resolution."""
        return self.net(images)

    def predict_logits(
        self, images: Tensor, size: Sequence[int] | None = None, *, windows: Windows | None = None
    ) -> Tensor:
        """(B, K, H, W) logits at ``size`` (default: the input's) through the one scoring path
        (:func:`src.scoring.score_images`: the whole image or sliding ``windows``, upsampled);
        EMA if kept."""
        return score_images(self._eval_net(), images, size=size, windows=windows)

    @torch.no_grad()
    def teacher_logits(
        self,
        images: Tensor,
        size: Sequence[int] | None = None,
        names: Sequence[str] | None = None,
    ) -> Tensor:
        """The teacher's (B, K, H, W) scores in the student's class space.

        A teacher without background scores the counted background as the lowest value. A
        teacher with one (background words, a threshold: ``teacher.has_background``) gives
        it as channel 0; where the student has no background class, the pixels the teacher
        gives to background get ``-inf`` on every class, which leaves them out of its pseudo
        labels (:func:`~src.student.targets.build_targets`).
        """
        extra = {} if names is None else {"names": list(names)}  # precomputed region masks
        scores = self.teacher.predict_logits(
            images, size=None if size is None else tuple(size), **extra
        )
        if getattr(self.teacher, "has_background", False):
            if self.class_offset:
                return scores
            background = scores.argmax(dim=1, keepdim=True) == 0
            return scores[:, 1:].masked_fill(background, float("-inf"))
        if self.class_offset:
            b, _, h, w = scores.shape
            low = torch.finfo(scores.dtype).min
            pad = scores.new_full((b, self.class_offset, h, w), low)
            scores = torch.cat([pad, scores], dim=1)
        return scores

    def set_class_names(self, teacher_class_names: Sequence[str]) -> None:
        """Open vocabulary: re-encode a new class list (background kept when counted)."""
        self.teacher.set_class_names(teacher_class_names)
        for net in (self.net, None if self.ema is None else self.ema.module):
            if net is not None:
                net.text_embeddings = self.teacher.text_embeddings.detach().clone().float()
        self.class_names = ([BACKGROUND] if self.class_offset else []) + list(
            self.teacher.class_names
        )

    # ------------------------------------------------------------------ training
    @property
    def uses_self_labels(self) -> bool:
        """Whether training targets come from the student: switched and not held."""
        return self.label_schedule.self_labels

    def pseudo_targets(self, batch: Mapping[str, Any], logits: Tensor | None = None) -> Tensor:
        """The batch's training targets (teacher or self labels on UNLABELLED pixels).

        ``logits``: the student's (B, K, H, W) training logits, needed after the switch.
        """
        target = batch[TARGET]
        if not bool((target == UNLABELLED).any()):
            return target
        if not self.uses_self_labels:
            if self.hparams.get("unlabelled", "teacher") == "ignore":
                return ignore_unlabelled(target)
            scores = self.teacher_logits(batch[IMAGE], size=target.shape[-2:])
        elif self.ema is not None and self.hparams.ema_self_labels:
            with torch.no_grad():
                scores = self.predict_logits(batch[IMAGE], size=target.shape[-2:])
        elif logits is None:
            raise ValueError("self-training labels need the student's logits")
        else:
            scores = logits.detach()
        labels = build_targets(target, batch[CANDIDATES], scores)
        if self.uses_self_labels and self.teacher_classes:  # the drift guard's fallback
            teacher = build_targets(
                target,
                batch[CANDIDATES],
                self.teacher_logits(batch[IMAGE], size=target.shape[-2:]),
            )
            keep = torch.zeros_like(teacher, dtype=torch.bool)
            for c in self.teacher_classes:
                keep |= teacher == c
            labels = torch.where(keep & (target == UNLABELLED), teacher, labels)
        return labels

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        images, target = batch[IMAGE], batch[TARGET]
        crop = self.hparams.get("train_crop")
        if crop:  # the teacher labels the whole image, the student learns on a crop of it
            if not self.uses_self_labels:
                target = self.pseudo_targets(batch)
            images, target = random_crops(images, target, int(crop))
            batch = {**batch, IMAGE: images, TARGET: target}
        logits = F.interpolate(
            self.net(images), size=target.shape[-2:], mode="bilinear", align_corners=False
        )
        target = self.pseudo_targets(batch, logits)
        if bool((target != IGNORE_INDEX).any()):
            loss = F.cross_entropy(
                logits.float(), target, weight=self.class_weights(target), ignore_index=IGNORE_INDEX
            )
        else:  # nothing to learn from in this batch
            loss = logits.sum() * 0.0
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def class_weights(self, target: Tensor) -> Tensor | None:
        """The cross-entropy's class weights after counting ``target``'s labels
        (``class_balance``; ``None`` when off): ``(mean share / share) ** class_balance``,
        classes not seen yet weighted as the rarest seen."""
        power = float(self.hparams.get("class_balance") or 0.0)
        if not power:
            return None
        labels = target[target != IGNORE_INDEX]
        self.label_counts += torch.bincount(labels, minlength=len(self.label_counts)).to(
            self.label_counts
        )
        counts, seen = self.label_counts, self.label_counts > 0
        weight = (counts.mean() / torch.where(seen, counts, counts[seen].min())) ** power
        return weight.float().to(target.device)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The optimizer step, then the EMA's update: both before any callback's
        ``on_train_batch_end``, so a checkpoint saved there holds an EMA of the same step."""
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update_parameters(self.net)
        self._rng_at_step_start = None  # the step is done: a checkpoint now holds its draws

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        params = [p for p in self.net.parameters() if p.requires_grad]
        if hp.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
            )
        else:
            opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        total = max(1, int(min(self.trainer.estimated_stepping_batches, 2**62)))
        floor = min(1.0, hp.min_lr / hp.lr) if hp.lr > 0 else 0.0

        def poly(step: int) -> float:
            if hp.schedule == "constant":
                return 1.0
            progress = min(step, total) / total
            return (1.0 - floor) * (1.0 - progress) ** hp.poly_power + floor

        sched = torch.optim.lr_scheduler.LambdaLR(opt, poly)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self.validation.reset(with_teacher=not self.trainer.sanity_checking)

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        images, target = batch[IMAGE], batch[TARGET]
        size = target.shape[-2:]
        self.validation.update_student(self.predict_logits(images, size).argmax(1), target)
        if self.validation.wants_teacher:
            names = batch.get(NAME) if getattr(self.teacher, "needs_image_names", False) else None
            scores = self.teacher_logits(images, size, names=names)
            self.validation.update_teacher(scores.argmax(1), target)

    def on_validation_epoch_end(self) -> None:
        metrics = self.validation.compute(sanity=self.trainer.sanity_checking)
        metrics["val/step"] = float(self.trainer.global_step)  # which step these scores are of
        self.log_dict(metrics, sync_dist=True)  # equal on every process (summed confmats)
