"""ImageNet-C corruptions (Hendrycks & Dietterich, ICLR 2019) for images of any size.

The eight corruptions of the paper's robustness tables (Tables 4-5), each at severity 1-5,
with the parameters of the published ImageNet-C code (``make_imagenet_c.py``; the
``imagecorruptions`` package holds the same tables). Parameters are in pixels, as in the
original: they are not rescaled with the image size (the paper corrupts PASCAL VOC images at
their own size, before the evaluation resize).

Each corruption takes a uint8 ``(H, W, 3)`` image (also ``(H, W)`` or ``(H, W, 1)``) and
returns the same shape and dtype. The random ones draw from a ``numpy.random.Generator``
seeded from ``(seed, index)``, so image ``index`` of a dataset is corrupted the same way in
every run, DataLoader worker and process, and no global random state is touched. Floats go
back to uint8 by truncation (``np.uint8``), as in the published code.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import Any

import cv2
import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from src.errors import UserError

#: The corruptions, in the order of the paper's Tables 4-5.
CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "gaussian_blur",
    "defocus_blur",
    "spatter",
    "jpeg",
)
#: Other accepted spellings (the ImageNet-C function names).
ALIASES: dict[str, str] = {"jpeg_compression": "jpeg"}
#: The clean setting's name (no corruption).
NONE = "none"
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

#: ImageNet-C's parameters, one entry per severity 1-5 (``make_imagenet_c.py``).
PARAMS: dict[str, tuple[Any, ...]] = {
    # std of additive Gaussian noise on [0, 1] intensities
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    # photons per unit intensity of Poisson noise (fewer photons: more noise)
    "shot_noise": (60, 25, 12, 5, 3),
    # fraction of values set to 0 or 1 (salt and pepper, half each)
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    # std of multiplicative Gaussian noise: x + x * n
    "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),
    # Gaussian sigma in pixels
    "gaussian_blur": (1, 2, 3, 4, 6),
    # (disk radius in pixels, Gaussian anti-aliasing sigma of the disk)
    "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
    # (liquid mean, liquid std, liquid blur sigma, threshold, intensity / mud blur sigma, mud)
    "spatter": (
        (0.65, 0.3, 4, 0.69, 0.6, 0),
        (0.65, 0.3, 3, 0.68, 0.6, 0),
        (0.65, 0.3, 2, 0.68, 0.5, 0),
        (0.65, 0.3, 1, 0.65, 1.5, 1),
        (0.67, 0.4, 1, 0.65, 1.5, 1),
    ),
    # JPEG quality
    "jpeg": (25, 18, 15, 10, 7),
}

_WATER = np.array([175, 238, 238], dtype=np.float32) / 255.0  # pale turquoise (RGB)
_MUD = np.array([63, 42, 20], dtype=np.float64) / 255.0  # mud brown (RGB)
_LUMA = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)  # grey of a colour (1-channel)

# -- the corruptions: float image in [0, 1] (H, W, C), parameter, generator -> [0, 1] or uint8 --


def _gaussian_noise(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1)


def _shot_noise(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.poisson(x * c) / float(c), 0, 1)


def _impulse_noise(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    # every value (each channel on its own) is hit with probability c; half salt, half pepper
    hit = rng.random(x.shape) < c
    salt = rng.random(x.shape) < 0.5
    out = x.copy()
    out[hit & salt] = 1.0
    out[hit & ~salt] = 0.0
    return out


def _speckle_noise(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(x + x * rng.normal(size=x.shape, scale=c), 0, 1)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """skimage ``filters.gaussian`` per channel: scipy, edge mode 'nearest', truncate 4."""
    return gaussian_filter(x, sigma=(sigma, sigma, 0), mode="nearest", truncate=4.0)


def _gaussian_blur(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(_blur(x, c), 0, 1)


def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """ImageNet-C's defocus kernel: a normalised disk, anti-aliased by a Gaussian."""
    if radius <= 8:
        coords, ksize = np.arange(-8, 8 + 1), (3, 3)
    else:
        coords, ksize = np.arange(-radius, radius + 1), (5, 5)
    xx, yy = np.meshgrid(coords, coords)
    disk = np.array(xx**2 + yy**2 <= radius**2, dtype=np.float32)
    disk /= disk.sum()
    return cv2.GaussianBlur(disk, ksize=ksize, sigmaX=alias_blur)


def _defocus_blur(x: np.ndarray, c: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    out = cv2.filter2D(x, -1, disk_kernel(*c))  # per channel, border reflect-101
    return np.clip(out.reshape(x.shape), 0, 1)


def _spatter(x: np.ndarray, c: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    loc, scale, sigma, threshold, amount, mud = c
    liquid = rng.normal(size=x.shape[:2], loc=loc, scale=scale)
    liquid = gaussian_filter(liquid, sigma=sigma, mode="nearest", truncate=4.0)
    liquid[liquid < threshold] = 0
    channels = x.shape[2]
    if mud == 0:  # water drops: bright turquoise stains with soft, wet-looking edges
        liquid8 = np.clip(liquid * 255, 0, 255).astype(np.uint8)
        dist = (255 - cv2.Canny(liquid8, 50, 150)).astype(np.uint8)
        dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
        _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
        dist = cv2.equalizeHist(dist)
        ker = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
        dist = cv2.filter2D(dist, cv2.CV_8U, ker)
        dist = cv2.blur(dist, (3, 3)).astype(np.float32)
        m = liquid8 * dist
        peak = float(m.max())
        m = m / peak * amount if peak > 0 else np.zeros_like(m)
        color = _WATER if channels == 3 else np.array([_WATER @ _LUMA], dtype=np.float32)
        return np.clip(x + m[..., None] * color, 0, 1)
    # mud: dark brown blobs replace the image
    m = gaussian_filter((liquid > threshold).astype(np.float32), sigma=amount, mode="nearest")
    m[m < 0.8] = 0
    color = _MUD if channels == 3 else np.array([_MUD @ _LUMA], dtype=np.float32)
    return np.clip(x * (1 - m[..., None]) + m[..., None] * color, 0, 1)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode with PIL at ``quality`` (uint8 in, uint8 out)."""
    pil = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    out = np.asarray(Image.open(buf).convert(pil.mode))
    return out.reshape(image.shape)


_FUNCTIONS: dict[str, Callable[[np.ndarray, Any, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "speckle_noise": _speckle_noise,
    "gaussian_blur": _gaussian_blur,
    "defocus_blur": _defocus_blur,
    "spatter": _spatter,
}

# -- the public interface -------------------------------------------------------------------


def canonical_name(name: str) -> str:
    """``name`` as registered (aliases resolved) or a :class:`UserError` naming the choices."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in CORRUPTIONS and key != NONE:
        raise UserError(
            f"unknown corruption {name!r}",
            f"use one of {', '.join((NONE, *CORRUPTIONS))} (corruption=...)",
        )
    return key


def check_severity(severity: Any) -> int:
    """``severity`` as an int in 1-5, or a :class:`UserError` naming the valid levels."""
    ok = isinstance(severity, (int, np.integer)) and not isinstance(severity, bool)
    if isinstance(severity, float) and severity.is_integer():
        severity, ok = int(severity), True
    if not ok or int(severity) not in SEVERITIES:
        raise UserError(
            f"corruption severity must be one of {', '.join(map(str, SEVERITIES))}, "
            f"got {severity!r}",
            "set corruption.severity=1 (mildest) ... 5 (strongest)",
        )
    return int(severity)


def _check_image(image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = getattr(image, "dtype", type(image).__name__)
        raise UserError(f"corruptions take uint8 images, got {kind}", "corrupt before normalising")
    if image.ndim == 2:
        return image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3) or 0 in image.shape:
        raise UserError(
            f"corruptions take (H, W), (H, W, 1) or (H, W, 3) images, got {image.shape}"
        )
    return image


def corrupt(
    image: np.ndarray, name: str, severity: int, *, seed: int = 0, index: int = 0
) -> np.ndarray:
    """Corrupt a uint8 image with ImageNet-C corruption ``name`` at ``severity`` (1-5).

    Randomness comes from a generator seeded with ``(seed, index)`` (both >= 0): the same
    arguments always give the same result. ``name="none"`` returns a copy.
    """
    key, level = canonical_name(name), check_severity(severity)
    img = _check_image(image)
    if key == NONE:
        return image.copy()
    param = PARAMS[key][level - 1]
    if key == "jpeg":
        return _jpeg(img, param).reshape(image.shape)
    if int(seed) < 0 or int(index) < 0:
        raise UserError(f"corruption seed and index must be >= 0, got {seed} and {index}")
    rng = np.random.default_rng([int(seed), int(index)])
    x = img.astype(np.float32) / 255.0 if key == "spatter" else img / 255.0  # as published
    out = _FUNCTIONS[key](x, param, rng)
    return np.uint8(out * 255).reshape(image.shape)


class Corruption:
    """One corruption setting; ``corruption(image, index)`` corrupts image ``index``.

    Picklable (DataLoader workers) and deterministic per ``(seed, index)``. A plain class, not
    a dataclass, so ``hydra.utils.instantiate(cfg.data, corruption=...)`` passes it through
    unchanged (OmegaConf would turn a dataclass into a config node).
    """

    __slots__ = ("name", "severity", "seed")

    def __init__(self, name: str, severity: int, seed: int = 0) -> None:
        key = canonical_name(name)
        if key == NONE:
            raise UserError("Corruption needs a corruption name", "use build_corruption for none")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise UserError(f"corruption seed must be an int >= 0, got {seed!r}")
        self.name: str = key
        self.severity: int = check_severity(severity)
        self.seed: int = int(seed)

    def __repr__(self) -> str:
        return f"Corruption(name={self.name!r}, severity={self.severity}, seed={self.seed})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Corruption):
            return NotImplemented
        return (self.name, self.severity, self.seed) == (other.name, other.severity, other.seed)

    def __hash__(self) -> int:
        return hash((self.name, self.severity, self.seed))

    @property
    def params(self) -> Any:
        """The ImageNet-C parameter of this corruption at this severity."""
        return PARAMS[self.name][self.severity - 1]

    def __call__(self, image: np.ndarray, index: int = 0) -> np.ndarray:
        return corrupt(image, self.name, self.severity, seed=self.seed, index=index)


def build_corruption(*, name: str = NONE, severity: int = 1, seed: int = 0) -> Corruption | None:
    """A :class:`Corruption` from the ``corruption`` config keys; None for ``name="none"``."""
    if canonical_name(name) == NONE:
        return None
    return Corruption(name=name, severity=severity, seed=seed)


def corruption_record(corruption: Corruption | None) -> dict[str, str | int]:
    """The ``corruption/name`` and ``corruption/severity`` entries of ``metrics.json``
    (``none`` and 0 for clean images)."""
    if corruption is None:
        return {"corruption/name": NONE, "corruption/severity": 0}
    return {"corruption/name": corruption.name, "corruption/severity": corruption.severity}


def corruption_from_options(options: Mapping[str, Any] | None) -> Corruption | None:
    """:func:`build_corruption` from a plain mapping (e.g. the ``corruption`` config as a
    dict); None or an empty mapping means no corruption."""
    if not options:
        return None
    unknown = set(options) - {"name", "severity", "seed"}
    if unknown:
        raise UserError(
            f"unknown corruption option(s) {', '.join(sorted(unknown))}",
            "the corruption config takes name, severity and seed",
        )
    return build_corruption(**dict(options))
