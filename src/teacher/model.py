"""DenseCLIP: a frozen CLIP turned into a per-pixel labeller for any vocabulary.

The teacher never trains: its parameters have ``requires_grad=False``, it stays in eval mode
even inside a training model, and its forward runs under ``torch.no_grad()``.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import open_clip
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from src.errors import UserError
from src.scoring import Refiner, Windows, dense_scores, score_images
from src.teacher import refine as maskclip_refine
from src.teacher.features import output_stride, pad_to_multiple
from src.teacher.heads import (
    DenseHead,
    HeadSetup,
    check_head_fits,
    default_head,
    head_spec,
    plain_config,
    registered_heads,
    resolve_head_options,
)
from src.teacher.loading import create_clip, inplace_quick_gelu, warn_unknown_words
from src.teacher.masks import (
    PAD_REGION,
    RegionMasks,
    registered_generators,
    resolve_generator_options,
)
from src.teacher.packed_linear import pack_linear_weights, plain_linear_layers
from src.teacher.pamr import pamr
from src.teacher.precision import full_precision
from src.teacher.refine import CLIP_LOGIT_SCALE
from src.teacher.regions import region_vote as majority_vote
from src.teacher.text import (
    cache_key,
    encode_class_names,
    fast_text_encoder,
    load_or_build,
    long_phrases,
    resolve_templates,
)
from src.teacher.tlp import TLP_GRID, tlp
from src.teacher.vocabulary import build_vocabulary, check_background_options, class_scores

log = logging.getLogger(__name__)


_KEEP = object()  # set_head: keep the current region masks


class DenseClipTeacher(pl.LightningModule):
    """Training-free DenseCLIP segmenter (ResNet or ViT open_clip models).

    Args:
        clip_model: open_clip model name (``RN50``, ``ViT-B-16``, ``tiny_shapes``, ...).
        pretrained: open_clip tag (``openai``), a local checkpoint path, or ``None`` (random
            weights, for tests).
        class_names: the vocabulary: any phrases (``"red car"``, ``"Batman"``); an entry may
            hold several comma-separated names (``"person, person in shirt"``): the class
            scores the best of them and is shown by the first.
        templates: prompt templates: a set name (``imagenet85``, the paper's 85) or a list.
        key_smoothing: MaskCLIP's key smoothing (off by default, as in the paper).
        prompt_denoising: MaskCLIP's prompt denoising (off by default).
        ks_threshold: key smoothing applies where the best class probability is below this.
        pd_threshold: prompt denoising drops classes whose peak probability is below this.
        cache_dir: folder for the text-embedding cache (``None``: no cache).
        precision: open_clip precision of the weights (``fp32``, ``fp16``, ``bf16``); the
            proxy follows it; the attention softmaxes, the scores' normalisation and cosines,
            PAMR, TLP and the class scores run in float32 (:mod:`src.teacher.precision`), also
            under an outer ``torch.autocast``.
        packed_weights: on a CPU in float32, the image tower's (and proxy's) linear layers
            through oneDNN with their weights packed once (:mod:`src.teacher.packed_linear`:
            the same products to rounding, 1.14-1.16x images/s for a ViT-B/16; one more copy of
            those weights in memory); ``False``: ``F.linear`` (MKL) everywhere.
        compile: ``torch.compile`` the dense head's forward (the CLIP tower and the head; opt-in,
            for GPUs: ``make bench-gpu`` measures it; the first batch of each new input shape
            compiles).
        quick_gelu: text/ViT activation; ``None`` follows the weights (QuickGELU for OpenAI's).
        head: the dense head, one of :func:`~src.teacher.heads.registered_heads` (``None``:
            the first, DenseCLIP's value path; the training-free heads need ViT CLIPs).
        head_options: the head's settings beyond its authors' defaults (its spec's options).
        proxy: a proxy ViT (``dino_vitb8``, ``dino_vitb16``, ``dinov2_vitb14``, the shipped
            ``tiny_shapes_dino``) for the heads
            that build one (their spec's ``extras``).
        proxy_weights: a local file with the proxy's weights (``None``: the shipped file or
            timm's cache).
        refine: ``pamr`` refines the scores with the image (PAMR), ``tlp`` with the image and
            the names' text (PEARL's text-aware Laplacian propagation), or ``None``.
        refine_options: the refinement's settings beyond its authors' defaults (``tlp``:
            ``grid``, 80; PEARL's Cityscapes config 224); ``None``: the defaults.
        background: words of a background class (``"sky, wall, tree"`` or a list), scored like
            a class; ``None``: no background words (the default).
        background_threshold: pixels whose best class probability ``softmax(logit_scale *
            cos)`` is below it become background; ``None``: off (the default, the paper's).
        logit_scale: the temperature of those probabilities (and of prediction's confidences);
            ``None``: the head's own (its authors' softmax scale: 100 for DenseCLIP, CLIP's
            and MaskCLIP's; the training-free heads use 40 or 50).
        masks: the region-mask generator (:mod:`src.teacher.masks`: ``precomputed``,
            ``superpixels``, ``sam2``, ``mask2former``) for heads that read regions (their
            spec's ``needs_regions``, ``region_vote``); ``None``: no masks (the default).
        masks_options: the generator's settings beyond its defaults (``precomputed``: ``dir``;
            ``sam2``: ``checkpoint``; ``mask2former``: ``weights``); its maps are cached per
            image under ``cache_dir``.
        vote: ``True``: every region's pixels take the region's most frequent class
            (:func:`src.teacher.regions.region_vote`, CorrCLIP's map update) after any head,
            as a refinement of its labels (needs ``masks``; ours, opt-in, measured in
            docs/STUDENT.md); ``False`` (the default): only heads whose spec has a vote
            (CorrCLIP) vote.

    With background words or a threshold the teacher has a background: its class scores gain a
    channel 0 for it (``has_background``), the data's background where it is counted.
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
        compile: bool = False,
        packed_weights: bool = True,
        quick_gelu: bool | None = None,
        head: str | None = None,
        head_options: Mapping[str, Any] | None = None,
        proxy: str | None = "dino_vitb8",
        proxy_weights: str | None = None,
        refine: str | None = None,
        refine_options: Mapping[str, Any] | None = None,
        background: str | Sequence[str] | None = None,
        background_threshold: float | None = None,
        logit_scale: float | None = None,
        masks: str | None = None,
        masks_options: Mapping[str, Any] | None = None,
        vote: bool = False,
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
        if not isinstance(compile, bool):
            raise UserError(f"teacher.compile={compile!r} is not true or false",
                            "give teacher.compile=true or teacher.compile=false")  # fmt: skip
        self.compile_head = compile
        if not isinstance(packed_weights, bool):
            raise UserError(f"teacher.packed_weights={packed_weights!r} is not true or false",
                            "give teacher.packed_weights=true or teacher.packed_weights=false")  # fmt: skip
        self.packed_weights = packed_weights
        # a bad head, option, refinement or proxy fails before the CLIP loads
        head = default_head() if head is None else str(head)
        resolve_head_options(head, head_options)
        self.refine = _refine_choice(refine)
        self.refine_options = _refine_options(self.refine, refine_options)
        spec = head_spec(head)
        if spec.precheck is not None:
            spec.precheck(HeadSetup(None, clip_model, proxy=proxy, proxy_weights=proxy_weights))
        #: the region masks (``teacher.masks``; ``None``: off), built before the CLIP loads
        masks = _masks_choice(masks, masks_options)
        if not isinstance(vote, bool):
            raise UserError(f"teacher.vote={vote!r} is not true or false",
                            "give teacher.vote=true (with teacher.masks) or teacher.vote=false")  # fmt: skip
        self.vote = vote
        _check_regions(head, masks, vote)  # before the generator loads its weights
        self.region_masks = (
            None if masks is None else RegionMasks(masks, masks_options, self.cache_dir)
        )
        #: ``teacher.logit_scale`` as given (``None``: each head's own, set by :meth:`set_head`)
        self.logit_scale_override = None if logit_scale is None else float(logit_scale)
        check_background_options(
            background_threshold,
            CLIP_LOGIT_SCALE if logit_scale is None else float(logit_scale),
        )
        self.background = (
            background if background is None or isinstance(background, str) else list(background)
        )
        self.background_threshold = (
            None if background_threshold is None else float(background_threshold)
        )

        self.clip = create_clip(clip_model, pretrained, precision=precision, quick_gelu=quick_gelu)
        self.clip.requires_grad_(False)
        self.clip.eval()
        inplace_quick_gelu(self.clip)  # the same numbers with fewer temporaries
        if packed_weights:
            pack_linear_weights(self.clip.visual)
        self.stride = output_stride(self.clip.visual)
        self.tokenizer = open_clip.get_tokenizer(clip_model.replace("/", "-"))

        pre = open_clip.get_model_preprocess_cfg(self.clip)
        self.mean: tuple[float, float, float] = tuple(float(v) for v in pre["mean"])
        self.std: tuple[float, float, float] = tuple(float(v) for v in pre["std"])
        self.set_head(head, head_options, proxy=proxy, proxy_weights=proxy_weights)
        size = pre["size"]
        self.image_size: int = int(size if isinstance(size, int) else size[0])

        self.class_names: list[str] = []
        self.register_buffer("text_embeddings", torch.empty(0), persistent=False)
        self.register_buffer("name_embeddings", torch.empty(0), persistent=False)
        self.set_class_names(class_names)
        self.eval()

    def set_head(
        self,
        head: str,
        head_options: Mapping[str, Any] | None = None,
        *,
        proxy: str | None = "dino_vitb8",
        proxy_weights: str | None = None,
        masks: str | None | object = _KEEP,
        masks_options: Mapping[str, Any] | None = None,
    ) -> None:
        """Use dense head ``head`` from now on (the CLIP and the vocabulary stay); ``masks``
        (with ``masks_options``): the region masks to use with it (``None``: none; left out:
        the current ones), checked with the head before anything changes."""
        head = str(head)
        spec = head_spec(head)
        options = resolve_head_options(head, head_options)
        if masks is _KEEP:
            current = getattr(self, "region_masks", None)
            _check_regions(head, None if current is None else current.name, self.vote)
        else:
            chosen = _masks_choice(masks, masks_options)
            _check_regions(head, chosen, self.vote)
            self.region_masks = (
                None if chosen is None else RegionMasks(chosen, masks_options, self.cache_dir)
            )
        check_head_fits(head, self.clip.visual, self.clip_model)
        setup = HeadSetup(
            self.clip.visual,
            self.clip_model,
            mean=self.mean,
            std=self.std,
            proxy=proxy,
            proxy_weights=proxy_weights,
        )
        extras = spec.extras(setup) if spec.extras is not None else {}
        self.head = head
        self.dense_head = DenseHead(head, options, extras)
        if getattr(self, "packed_weights", False):
            pack_linear_weights(self.dense_head)  # a proxy tower's
        self.__dict__["_compiled_head"] = None  # compiled again for the new head
        self.__dict__["_scores_checked"] = False
        #: softmax temperature of the cosine scores: ``teacher.logit_scale``, else the head's
        #: own (its authors' softmax scale; CLIP's 100 for DenseCLIP's value path)
        override = getattr(self, "logit_scale_override", None)
        self.logit_scale = spec.logit_scale if override is None else override
        self.hparams.update(
            head=head,
            head_options=plain_config(head_options or {}),
            proxy=proxy,
            proxy_weights=proxy_weights,
        )

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
        """Set the vocabulary and compute (or load from cache) its text embeddings: one per
        name (``name_embeddings``) and one per class, the renormalised mean of its names'
        (``text_embeddings``, the student's classifier; a class's own for a single name)."""
        vocab = build_vocabulary(class_names, self.background)
        names = list(vocab.names)
        warn_unknown_words(self.clip_model, names)  # a tiny shapes CLIP asked for "cat"
        for name, tokens, context in long_phrases(self.tokenizer, names, self.templates):
            log.warning(
                "class phrase %r is %d tokens in its longest prompt, more than the %d-token text "
                "context of %s: only the first %d tokens are read (shorten the phrase)",
                name, tokens, context, self.clip_model, context,
            )  # fmt: skip
        weights_id = self._weights_id()

        def build() -> torch.Tensor:
            log.info("encoding %d names x %d templates", len(names), len(self.templates))
            device = self.clip.logit_scale.device
            return encode_class_names(
                fast_text_encoder(self.clip), self.tokenizer, names, self.templates, device=device
            )

        cache_dir = self.cache_dir if weights_id is not None else None
        key = cache_key({"model": self.clip_model, "weights": weights_id}, names, self.templates)
        emb = load_or_build(key, cache_dir, build, num_classes=len(names)).to(
            self.clip.logit_scale.device
        )
        self.vocabulary = vocab
        self.class_names = list(vocab.display)
        self.hparams["class_names"] = list(vocab.entries)
        self.name_embeddings = emb
        spans = vocab.spans[1:] if vocab.background_words else vocab.spans
        self.text_embeddings = (
            emb
            if vocab.single_names
            else F.normalize(torch.stack([emb[a:b].mean(dim=0) for a, b in spans]), dim=-1)
        )

    def trainable_visual(self) -> torch.nn.Module:
        """A trainable fp32 copy of CLIP's image encoder (Figure 2's fine-tuning baseline
        starts from it); the teacher's own encoder stays frozen."""
        visual = copy.deepcopy(self.clip.visual).float()
        plain_linear_layers(visual)
        visual.requires_grad_(True)
        return visual.train()

    def config(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this teacher, its current vocabulary included
        (plain Python values: lists, not config containers)."""
        return {
            key: list(value)
            if isinstance(value, Sequence) and not isinstance(value, str)
            else value
            for key, value in self.hparams.items()
        } | {
            "head_options": plain_config(self.hparams.get("head_options") or {}),
            "refine_options": plain_config(self.hparams.get("refine_options") or {}),
            "masks_options": plain_config(self.hparams.get("masks_options") or {}),
        }

    @property
    def num_classes(self) -> int:
        """The named classes (the background channel, where there is one, not counted)."""
        return len(self.class_names)

    @property
    def has_background(self) -> bool:
        """Whether the class scores carry a background channel 0 (background words or a
        probability threshold)."""
        return self.vocabulary.background_words or self.background_threshold is not None

    # ------------------------------------------------------------------ region masks
    @property
    def needs_image_names(self) -> bool:
        """Whether the region maps are read by the images' file stems (``predict_logits``'s
        ``names``): ``teacher.masks=precomputed``."""
        return self.region_masks is not None and not self.region_masks.reads_pixels

    @property
    def region_vote(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
        """The vote on the class scores with the region map: the head's own, else the
        majority vote with ``teacher.vote`` (``None``: no masks, or neither)."""
        if self.region_masks is None:
            return None
        own = self.dense_head.spec.region_vote
        return own if own is not None or not self.vote else majority_vote

    @torch.no_grad()
    def region_maps(
        self,
        images: torch.Tensor,
        size: Sequence[int] | None = None,
        names: Sequence[str | None] | None = None,
    ) -> torch.Tensor | None:
        """(B, H, W) int32 region maps of (B, 3, h, w) normalised ``images`` (``None`` when
        ``teacher.masks`` is off): from their pixels at their size, or read by file stem
        (``names``) at the original size ``size`` (:meth:`RegionMasks.maps`)."""
        if self.region_masks is None:
            return None
        return self.region_masks.maps(images, mean=self.mean, std=self.std, size=size, names=names)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def dense_features(
        self, images: torch.Tensor, regions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, D, h, w) per-location CLIP embeddings, before normalisation (``regions``: the
        images' region map, for heads that read one)."""
        return self._features(images, with_keys=False, regions=regions)[0].float()

    def _features(
        self, images: torch.Tensor, *, with_keys: bool, regions: torch.Tensor | None = None
    ):
        text = self.name_embeddings  # heads that label a first pass (ResCLIP) use the names
        if regions is None and self.dense_head.spec.needs_regions:
            regions = self.region_maps(images)  # a caller that gave none: from the pixels
        head = self.dense_head
        if getattr(self, "compile_head", False):
            if self.__dict__.get("_compiled_head") is None:  # kept out of the module tree
                self.__dict__["_compiled_head"] = torch.compile(self.dense_head)
            head = self.__dict__["_compiled_head"]
        return head(self.clip.visual, images, text=text, with_keys=with_keys, regions=regions)

    @torch.no_grad()
    def dense_scores(
        self, images: torch.Tensor, regions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, Q, h, w) cosine scores of every name at feature resolution (refinements applied
        if on); Q = K for single-name classes without background words. ``regions``: the
        images' (B, H, W) region map, for heads that read one."""
        feats, keys = self._features(images, with_keys=self.key_smoothing, regions=regions)
        with full_precision(feats.device):  # float32 cosines, also under autocast
            feats = F.normalize(feats.float(), dim=1)
            text = self.name_embeddings.to(feats)
            cos = torch.einsum("bdhw,kd->bkhw", feats, text)
            self._check_finite(cos)
            if self.prompt_denoising:
                cos = maskclip_refine.prompt_denoise(cos, self.pd_threshold)
            if self.key_smoothing:
                cos = maskclip_refine.key_smooth(cos, keys.float(), self.ks_threshold)
        return cos

    def _check_finite(self, cos: torch.Tensor) -> None:
        """A head option gone wrong (non-finite scores) is one line: every batch on a CPU; on
        an accelerator the first batch after :meth:`set_head` only, since reading the answer
        waits for the device (no host-device synchronisation in the loop that follows)."""
        if cos.device.type != "cpu" and self.__dict__.get("_scores_checked", False):
            return
        self.__dict__["_scores_checked"] = True
        if not bool(torch.isfinite(cos).all()):
            raise UserError(
                f"teacher.head={self.head} with head_options {self.dense_head.options} gave "
                "non-finite scores",
                "use the head's default options (teacher.head_options=null) or values nearer "
                "them; with fp16/bf16 weights try teacher.precision=fp32",
            )

    @torch.no_grad()
    def predict_logits(
        self,
        images: torch.Tensor,
        size: tuple[int, int] | None = None,
        *,
        refine: bool = True,
        windows: Windows | None = None,
        names: Sequence[str | None] | None = None,
    ) -> torch.Tensor:
        """(B, C, H, W) class scores at ``size`` (default: the input's), through the one
        scoring path (:func:`src.scoring.score_images`): the names' scores on the whole image
        or over sliding ``windows``, upsampled to ``size``, refined there (``refine=pamr``,
        unless ``refine=False``), then reduced to classes (:meth:`classify`); C = K, plus the
        background channel 0 when :attr:`has_background`. With ``teacher.masks`` the images'
        region maps (:meth:`region_maps`; ``names``: their file stems, which precomputed
        masks need, ``size`` their original size) go with them and the head's vote follows."""
        regions = self.region_maps(images, size, names)
        return score_images(
            self.input_scores,
            images,
            size=size,
            windows=windows,
            refine=self.refiner if refine else None,
            reduce=self.classify,
            regions=regions,
            vote=self.region_vote,
        )

    def classify(self, name_logits: torch.Tensor) -> torch.Tensor:
        """(B, Q, H, W) name scores -> (B, C, H, W) class scores: each class's best name, and
        the background channel first where there is one
        (:func:`~src.teacher.vocabulary.class_scores`). Sliding windows, resizing and PAMR
        act on the name scores before it, as in the training-free papers."""
        with full_precision(name_logits.device):
            return class_scores(
                name_logits,
                self.vocabulary,
                logit_scale=self.logit_scale,
                threshold=self.background_threshold,
            )

    @torch.no_grad()
    def name_logits(
        self,
        images: torch.Tensor,
        size: tuple[int, int] | None = None,
        *,
        refine: bool = True,
        windows: Windows | None = None,
        names: Sequence[str | None] | None = None,
    ) -> torch.Tensor:
        """(B, Q, H, W) cosine scores of every name at ``size`` (:func:`src.scoring.dense_scores`:
        whole image or ``windows``, upsampled bilinearly, refined unless ``refine=False``;
        with the region maps as in :meth:`predict_logits`, no vote: that acts on classes)."""
        return dense_scores(
            self.input_scores,
            images,
            size=size,
            windows=windows,
            refine=self.refiner if refine else None,
            regions=self.region_maps(images, size, names),
        )

    @torch.no_grad()
    def input_scores(
        self, images: torch.Tensor, regions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The teacher's scorer: (B, 3, h, w) normalised images -> (B, Q, h', w') cosine scores
        of every name, unrefined, on the feature grid (or at the input's size where the input
        was padded to whole patches: upsampled to the padded size and cropped). ``regions``:
        the images' (B, h, w) region map (padded as the images, with id
        :data:`~src.teacher.masks.PAD_REGION` as CorrCLIP pads it; ``None`` with masks on:
        taken from the pixels)."""
        h, w = images.shape[-2:]
        if regions is None and self.region_masks is not None:
            regions = self.region_maps(images)
        # ViT input is padded to the patch size; a ResNet needs at least 32 px per side
        padded = self.stride != 32 or min(h, w) < self.stride
        if padded:
            images = pad_to_multiple(images, self.stride)
            if regions is not None:
                ph, pw = images.shape[-2] - h, images.shape[-1] - w
                regions = F.pad(regions, (0, pw, 0, ph), value=PAD_REGION)
        scores = self.dense_scores(images, regions)
        if padded:  # upsample to the padded size, then crop the padding away
            ph, pw = images.shape[-2:]
            scores = F.interpolate(scores, size=(ph, pw), mode="bilinear", align_corners=False)
            scores = scores[..., :h, :w]
        return scores

    @property
    def refiner(self) -> Refiner | None:
        """``teacher.refine`` as the scoring path's refiner (``None`` when off)."""
        return None if self.refine is None else self.refine_logits

    @torch.no_grad()
    def refine_logits(self, images: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """``teacher.refine`` on (B, K, H, W) scores, with the (B, 3, h, w) normalised images
        resized bilinearly to H x W (identity when refine is off)."""
        if self.refine is None:
            return scores
        size = tuple(scores.shape[-2:])
        with full_precision(scores.device):  # PAMR and TLP in float32, also under autocast
            if tuple(images.shape[-2:]) != size:
                images = F.interpolate(
                    images.float(), size=size, mode="bilinear", align_corners=False
                )
            if self.refine == "tlp":
                text = self.name_embeddings.to(scores.device)
                return tlp(images, scores, text, **getattr(self, "refine_options", {}))
            return pamr(images, scores)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) class scores at the input's size."""
        return self.predict_logits(images)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W) class indices (with a background, 0 is background and class ``i`` is
        ``i + 1``)."""
        return self.predict_logits(images).argmax(dim=1)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise (B, 3, H, W) images in [0, 1] with this CLIP's mean/std."""
        mean = torch.tensor(self.mean, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, 3, 1, 1)
        return (images - mean) / std


REFINEMENTS = ("pamr", "tlp")
#: each refinement's options and their defaults (``teacher.refine_options``)
REFINE_OPTIONS: dict[str, dict[str, Any]] = {"pamr": {}, "tlp": {"grid": TLP_GRID}}


def _masks_choice(masks: str | None, options: Mapping[str, Any] | None) -> str | None:
    """``teacher.masks`` checked (``None``, ``none``, ``null``: off): a registered generator
    and its options (an unknown one, or options without a generator: one line)."""
    if masks in (None, False, "", "none", "None", "null"):
        if plain_config(options or {}):
            raise UserError(
                f"teacher.masks_options={plain_config(options)} are given but teacher.masks is off",
                f"name a generator: teacher.masks={' | '.join(registered_generators())}",
            )
        return None
    resolve_generator_options(str(masks), options)
    return str(masks)


def _check_regions(head: str, masks: str | None, vote: bool = False) -> None:
    """A head that reads regions needs ``teacher.masks``; masks need a head that reads or
    votes with them, or ``teacher.vote``; the vote needs masks (one line each)."""
    spec = head_spec(head)
    readers = [
        name
        for name in registered_heads()
        if head_spec(name).needs_regions or head_spec(name).region_vote is not None
    ]
    if spec.needs_regions and masks is None:
        raise UserError(
            f"teacher.head={head} reads region masks, but teacher.masks is off",
            f"give teacher.masks={' | '.join(registered_generators())} (e.g. "
            "teacher.masks=superpixels: no weights; teacher.masks=precomputed "
            "'teacher.masks_options={dir: /path/to/masks}')",
        )
    if vote and masks is None:
        raise UserError(
            "teacher.vote=true votes over region masks, but teacher.masks is off",
            "give teacher.masks=superpixels (no weights) or another generator: "
            + " | ".join(registered_generators()),
        )
    if masks is not None and not vote and not spec.needs_regions and spec.region_vote is None:
        raise UserError(
            f"teacher.masks={masks} is set but teacher.head={head} reads no region masks",
            "set teacher.masks=null, add teacher.vote=true (each region takes its most "
            "frequent class), or use a head that reads them"
            + (f": {', '.join(readers)}" if readers else ""),
        )


def _refine_choice(refine: str | None) -> str | None:
    """``teacher.refine``: ``pamr`` or off (``None``, ``none``, ``false``)."""
    if refine in (None, False, "", "none", "None", "null", "false"):
        return None
    if refine not in REFINEMENTS:
        raise UserError(
            f"unknown teacher.refine '{refine}'", f"use one of: {', '.join(REFINEMENTS)} or null"
        )
    return str(refine)


def _refine_options(refine: str | None, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``teacher.refine_options`` checked against ``refine``'s (``tlp``: ``grid``, a positive
    integer); an unknown option or a bad value is one line."""
    given = plain_config(options or {})
    known = REFINE_OPTIONS.get(refine or "", {})
    if not isinstance(given, Mapping) or set(given) - set(known):
        listed = ", ".join(f"{k} (default {v})" for k, v in known.items()) or "none"
        raise UserError(
            f"teacher.refine_options={given!r} are not options of teacher.refine={refine}",
            f"its options are: {listed}",
        )
    out = dict(known)
    for key, value in given.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(
                f"teacher.refine_options.{key}={value!r} is not valid for teacher.refine={refine}",
                f"give a positive integer (default {known[key]})",
            )
        out[key] = int(value)
    return out
