"""DenseCLIP: a frozen CLIP turned into a per-pixel labeller for any vocabulary.

The teacher never trains: its parameters have ``requires_grad=False``, it stays in eval mode
even inside a training model, and its forward runs under ``torch.no_grad()``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import open_clip
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from src.teacher import refine
from src.teacher.features import dense_extractor, output_stride, pad_to_multiple
from src.teacher.loading import create_clip, warn_unknown_words
from src.teacher.text import (
    cache_key,
    encode_class_names,
    fast_text_encoder,
    load_or_build,
    long_phrases,
    resolve_templates,
    validate_class_names,
)

log = logging.getLogger(__name__)


class DenseClipTeacher(pl.LightningModule):
    """Training-free DenseCLIP segmenter (ResNet or ViT open_clip models).

    Args:
        clip_model: open_clip model name (``RN50``, ``ViT-B-16``, ``tiny_shapes``, ...).
        pretrained: open_clip tag (``openai``), a local checkpoint path, or ``None`` (random
            weights, for tests).
        class_names: the vocabulary: any phrases (``"red car"``, ``"Batman"``).
        templates: prompt templates: a set name (``imagenet85``, the paper's 85) or a list.
        key_smoothing: MaskCLIP's key smoothing (off by default, as in the paper).
        prompt_denoising: MaskCLIP's prompt denoising (off by default).
        ks_threshold: key smoothing applies where the best class probability is below this.
        pd_threshold: prompt denoising drops classes whose peak probability is below this.
        cache_dir: folder for the text-embedding cache (``None``: no cache).
        precision: open_clip precision of the weights (``fp32``, ``fp16``, ``bf16``).
        quick_gelu: text/ViT activation; ``None`` follows the weights (QuickGELU for OpenAI's).
    """

    def __init__(
        self,
        *,
        clip_model: str,
        pretrained: str | None,
        class_names: Sequence[str],
        templates: str | Sequence[str] = "imagenet85",
        key_smoothing: bool = False,
        prompt_denoising: bool = False,
        ks_threshold: float = 1.0,
        pd_threshold: float = 0.5,
        cache_dir: str | os.PathLike | None = None,
        precision: str = "fp32",
        quick_gelu: bool | None = None,
    ) -> None:
        super().__init__()
        # the keyword arguments that rebuild this teacher (the student stores them)
        self.save_hyperparameters(logger=False)
        self.clip_model = clip_model
        self.pretrained = pretrained
        self.templates = resolve_templates(templates)
        self.key_smoothing = key_smoothing
        self.prompt_denoising = prompt_denoising
        self.ks_threshold = float(ks_threshold)
        self.pd_threshold = float(pd_threshold)
        self.cache_dir = None if cache_dir is None else str(cache_dir)

        self.clip = create_clip(clip_model, pretrained, precision=precision, quick_gelu=quick_gelu)
        self.clip.requires_grad_(False)
        self.clip.eval()
        self._extract = dense_extractor(self.clip.visual)
        self.stride = output_stride(self.clip.visual)
        self.tokenizer = open_clip.get_tokenizer(clip_model.replace("/", "-"))

        pre = open_clip.get_model_preprocess_cfg(self.clip)
        self.mean: tuple[float, float, float] = tuple(float(v) for v in pre["mean"])
        self.std: tuple[float, float, float] = tuple(float(v) for v in pre["std"])
        size = pre["size"]
        self.image_size: int = int(size if isinstance(size, int) else size[0])

        self.class_names: list[str] = []
        self.register_buffer("text_embeddings", torch.empty(0), persistent=False)
        self.set_class_names(class_names)
        self.eval()

    # ------------------------------------------------------------------ frozen for good
    def train(self, mode: bool = True) -> DenseClipTeacher:
        """Always eval mode: ``model.train()`` on a parent does not wake the teacher."""
        return super().train(False)

    # ------------------------------------------------------------------ vocabulary
    def _weights_id(self) -> dict | None:
        """What identifies the weights for the text cache (``None``: random, do not cache)."""
        if self.pretrained in (None, "", "none", "None"):
            return None
        path = Path(os.path.expanduser(str(self.pretrained)))
        if path.is_file():
            st = path.stat()
            return {"file": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        return {"tag": str(self.pretrained)}

    def set_class_names(self, class_names: Sequence[str]) -> None:
        """Set the vocabulary and compute (or load from cache) its text embeddings."""
        names = validate_class_names(class_names)
        warn_unknown_words(self.clip_model, names)  # a tiny shapes CLIP asked for "cat"
        for name, tokens, context in long_phrases(self.tokenizer, names, self.templates):
            log.warning(
                "class phrase %r is %d tokens in its longest prompt, more than the %d-token text "
                "context of %s: only the first %d tokens are read (shorten the phrase)",
                name, tokens, context, self.clip_model, context,
            )  # fmt: skip
        weights_id = self._weights_id()

        def build() -> torch.Tensor:
            log.info("encoding %d classes x %d templates", len(names), len(self.templates))
            device = self.clip.logit_scale.device
            return encode_class_names(
                fast_text_encoder(self.clip), self.tokenizer, names, self.templates, device=device
            )

        cache_dir = self.cache_dir if weights_id is not None else None
        key = cache_key({"model": self.clip_model, "weights": weights_id}, names, self.templates)
        emb = load_or_build(key, cache_dir, build, num_classes=len(names))
        self.class_names = names
        self.hparams["class_names"] = list(names)
        self.text_embeddings = emb.to(self.clip.logit_scale.device)

    def config(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this teacher, its current vocabulary included
        (plain Python values: lists, not config containers)."""
        return {
            key: list(value)
            if isinstance(value, Sequence) and not isinstance(value, str)
            else value
            for key, value in self.hparams.items()
        }

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def dense_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) per-location CLIP embeddings, before normalisation."""
        return self._extract(self.clip.visual, images, with_keys=False)[0].float()

    @torch.no_grad()
    def dense_scores(self, images: torch.Tensor) -> torch.Tensor:
        """(B, K, h, w) cosine scores at feature resolution (refinements applied if on)."""
        feats, keys = self._extract(self.clip.visual, images, with_keys=self.key_smoothing)
        feats = F.normalize(feats.float(), dim=1)
        text = self.text_embeddings.to(feats)
        cos = torch.einsum("bdhw,kd->bkhw", feats, text)
        if self.prompt_denoising:
            cos = refine.prompt_denoise(cos, self.pd_threshold)
        if self.key_smoothing:
            cos = refine.key_smooth(cos, keys, self.ks_threshold)
        return cos

    @torch.no_grad()
    def predict_logits(
        self, images: torch.Tensor, size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """(B, K, H, W) scores upsampled bilinearly to ``size`` (default: the input's size)."""
        h, w = images.shape[-2:]
        # ViT input is padded to the patch size; a ResNet needs at least 32 px per side
        padded = self.stride != 32 or min(h, w) < self.stride
        if padded:
            images = pad_to_multiple(images, self.stride)
        scores = self.dense_scores(images)
        if padded:  # upsample to the padded size, then crop the padding away
            ph, pw = images.shape[-2:]
            scores = F.interpolate(scores, size=(ph, pw), mode="bilinear", align_corners=False)
            scores = scores[..., :h, :w]
        out = size if size is not None else (h, w)
        if tuple(scores.shape[-2:]) != tuple(out):
            scores = F.interpolate(scores, size=tuple(out), mode="bilinear", align_corners=False)
        return scores

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W) cosine logits at the input's size."""
        return self.predict_logits(images)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W) class indices."""
        return self.predict_logits(images).argmax(dim=1)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise (B, 3, H, W) images in [0, 1] with this CLIP's mean/std."""
        mean = torch.tensor(self.mean, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, 3, 1, 1)
        return (images - mean) / std
