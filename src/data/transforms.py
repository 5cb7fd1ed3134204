"""Albumentations pipelines as MMSegmentation's (REFERENCE section 5).

Training: random rescale (ratio 0.5-2.0 of a base scale, aspect kept) -> random crop with at
most ``cat_max_ratio`` of the crop one class -> horizontal flip -> photometric distortion ->
normalise -> pad to the crop size (image 0, label 255). Evaluation: rescale keeping the aspect
ratio (mmcv ``imrescale``: the largest size fitting ``(long, short)``) -> normalise. Geometric
steps move image and ``mask`` together; labels are resized with pixel-centre nearest neighbour
(``cv2.INTER_NEAREST_EXACT``), so their values (including 254 and 255) never mix and they
stay aligned with the bilinearly resized image (mmcv's ``INTER_NEAREST`` is off by up to half
a source pixel when shrinking).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np

from src.batch import IGNORE_INDEX, UNLABELLED


def rescale_size(
    height: int, width: int, scale: tuple[float, float] | Sequence[float]
) -> tuple[int, int]:
    """mmcv ``imrescale`` size: the largest ``(h, w)`` with the long side <= ``max(scale)``
    and the short side <= ``min(scale)``, aspect ratio kept."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def _resize_pair(img: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    if img.shape[:2] == size:
        return img
    interp = cv2.INTER_NEAREST_EXACT if nearest else cv2.INTER_LINEAR
    return cv2.resize(img, (size[1], size[0]), interpolation=interp)


class Rescale(A.DualTransform):
    """Resize keeping the aspect ratio to fit ``scale * ratio``, ratio uniform in ``ratio_range``.

    ``ratio_range=(1, 1)`` is a plain keep-ratio resize (the evaluation transform).
    """

    def __init__(
        self,
        scale: tuple[int, int] = (2048, 512),
        ratio_range: tuple[float, float] = (0.5, 2.0),
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.scale = tuple(scale)
        self.ratio_range = tuple(ratio_range)

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        low, high = self.ratio_range
        ratio = low + (high - low) * self.py_random.random() if high > low else low
        scale = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))
        height, width = params["shape"][:2]
        return {"size": rescale_size(height, width, scale)}

    def apply(self, img: np.ndarray, size: tuple[int, int] = (0, 0), **params: Any) -> np.ndarray:
        return _resize_pair(img, size, nearest=False)

    def apply_to_mask(
        self, mask: np.ndarray, size: tuple[int, int] = (0, 0), **params: Any
    ) -> np.ndarray:
        return _resize_pair(mask, size, nearest=True)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("scale", "ratio_range")


class CatRatioCrop(A.DualTransform):
    """Random ``size`` crop (smaller images stay whole) as MMSegmentation's ``RandomCrop``.

    With ``cat_max_ratio < 1``, up to 10 crops are drawn until one has at least two labelled
    classes and none covering ``cat_max_ratio`` or more of its labelled pixels; void and
    unlabelled pixels do not count (so hidden classes leak nothing). The 10th is kept.
    """

    def __init__(self, size: int = 512, cat_max_ratio: float = 0.75, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.size = size
        self.cat_max_ratio = cat_max_ratio

    def _bbox(self, height: int, width: int) -> tuple[int, int, int, int]:
        y = self.py_random.randint(0, max(height - self.size, 0))
        x = self.py_random.randint(0, max(width - self.size, 0))
        return y, min(y + self.size, height), x, min(x + self.size, width)

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        height, width = params["shape"][:2]
        bbox = self._bbox(height, width)
        mask = data.get("mask")
        if self.cat_max_ratio < 1.0 and mask is not None:
            for _ in range(10):
                y0, y1, x0, x1 = bbox
                values = mask[y0:y1, x0:x1].ravel()
                counts = np.bincount(values, minlength=256)[:UNLABELLED]
                counts = counts[counts > 0]
                if len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                    break
                bbox = self._bbox(height, width)
        return {"bbox": bbox}

    def apply(self, img: np.ndarray, bbox: tuple[int, ...] = (0, 0, 0, 0), **p: Any) -> np.ndarray:
        y0, y1, x0, x1 = bbox
        return np.ascontiguousarray(img[y0:y1, x0:x1])

    def apply_to_mask(self, mask: np.ndarray, bbox: tuple[int, ...] = (0, 0, 0, 0), **p: Any):
        return self.apply(mask, bbox)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("size", "cat_max_ratio")


class PhotoMetricDistortion(A.ImageOnlyTransform):
    """MMSegmentation's photometric distortion on a uint8 RGB image, each step with p=0.5:
    brightness (+-32), contrast (0.5-1.5, first or last), saturation (0.5-1.5), hue (+-18)."""

    def __init__(
        self,
        brightness_delta: int = 32,
        contrast_range: tuple[float, float] = (0.5, 1.5),
        saturation_range: tuple[float, float] = (0.5, 1.5),
        hue_delta: int = 18,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.brightness_delta = brightness_delta
        self.contrast_range = tuple(contrast_range)
        self.saturation_range = tuple(saturation_range)
        self.hue_delta = hue_delta

    def get_params(self) -> dict[str, Any]:
        r = self.py_random
        return {
            "beta": r.uniform(-self.brightness_delta, self.brightness_delta) if r.random() < 0.5 else None,
            "contrast_first": r.random() < 0.5,
            "alpha": r.uniform(*self.contrast_range) if r.random() < 0.5 else None,
            "saturation": r.uniform(*self.saturation_range) if r.random() < 0.5 else None,
            "hue": r.randint(-self.hue_delta, self.hue_delta) if r.random() < 0.5 else None,
        }  # fmt: skip

    @staticmethod
    def _convert(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
        return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        if params["beta"] is not None:
            img = self._convert(img, beta=params["beta"])
        if params["contrast_first"] and params["alpha"] is not None:
            img = self._convert(img, alpha=params["alpha"])
        if params["saturation"] is not None or params["hue"] is not None:
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            if params["saturation"] is not None:
                hsv[..., 1] = self._convert(hsv[..., 1], alpha=params["saturation"])
            if params["hue"] is not None:
                hsv[..., 0] = (hsv[..., 0].astype(np.int64) + params["hue"]) % 180
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if not params["contrast_first"] and params["alpha"] is not None:
            img = self._convert(img, alpha=params["alpha"])
        return img

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("brightness_delta", "contrast_range", "saturation_range", "hue_delta")


def _normalize(mean: Sequence[float], std: Sequence[float]) -> A.Normalize:
    """Normalise with a 0-1 mean/std (the CLIP convention) or a 0-255 one (mmseg's)."""
    return A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=_pixel_max(mean))


def _pixel_max(mean: Sequence[float]) -> float:
    return 255.0 if max(mean) <= 1.0 else 1.0


def train_transform(
    *,
    mean: Sequence[float],
    std: Sequence[float],
    crop_size: int = 512,
    scale: tuple[int, int] = (2048, 512),
    ratio_range: tuple[float, float] = (0.5, 2.0),
    cat_max_ratio: float = 0.75,
    flip_prob: float = 0.5,
    photometric: bool = True,
    seed: int | None = None,
) -> A.Compose:
    """The training pipeline: returns ``image`` float32 (H, W, 3) normalised, ``mask`` uint8,
    both ``crop_size`` square (padding: image 0 after normalisation, label 255)."""
    steps: list[A.BasicTransform] = [
        Rescale(scale=tuple(scale), ratio_range=tuple(ratio_range)),
        CatRatioCrop(size=crop_size, cat_max_ratio=cat_max_ratio),
        A.HorizontalFlip(p=flip_prob),
    ]
    if photometric:
        steps.append(PhotoMetricDistortion())
    steps += [
        _normalize(mean, std),
        A.PadIfNeeded(
            min_height=crop_size,
            min_width=crop_size,
            position="top_left",
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=IGNORE_INDEX,
        ),
    ]
    return A.Compose(steps, seed=seed)


def eval_transform(
    *, mean: Sequence[float], std: Sequence[float], scale: Sequence[int] | None = (2048, 512)
) -> A.Compose:
    """The evaluation pipeline: keep-ratio rescale to fit ``scale`` (None: no resize), normalise.

    Only the image is transformed; the caller keeps the label at its original size.
    """
    steps: list[A.BasicTransform] = []
    if scale is not None:
        steps.append(Rescale(scale=tuple(scale), ratio_range=(1.0, 1.0)))
    steps.append(_normalize(mean, std))
    return A.Compose(steps)


def reseed(transform: A.Compose, seed: int) -> None:
    """Give ``transform`` (and its steps) a fresh random stream, e.g. per DataLoader worker."""
    transform.set_random_seed(seed % 2**32)
