"""ImageNet-C corruptions: shapes, determinism, severity ordering, published parameters."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf
from PIL import Image
from scipy.stats import poisson

from src.data import corruptions as C
from src.data.base import DATASETS, RawSample
from src.data.datamodule import SegmentationDataModule
from src.errors import UserError

CONF = Path(__file__).resolve().parents[2] / "conf" / "corruption"

#: Hendrycks & Dietterich, make_imagenet_c.py (ImageNet-C), severity 1..5.
PUBLISHED = {
    "gaussian_noise": [0.08, 0.12, 0.18, 0.26, 0.38],
    "shot_noise": [60, 25, 12, 5, 3],
    "impulse_noise": [0.03, 0.06, 0.09, 0.17, 0.27],
    "speckle_noise": [0.15, 0.2, 0.35, 0.45, 0.6],
    "gaussian_blur": [1, 2, 3, 4, 6],
    "defocus_blur": [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)],
    "spatter": [
        (0.65, 0.3, 4, 0.69, 0.6, 0),
        (0.65, 0.3, 3, 0.68, 0.6, 0),
        (0.65, 0.3, 2, 0.68, 0.5, 0),
        (0.65, 0.3, 1, 0.65, 1.5, 1),
        (0.67, 0.4, 1, 0.65, 1.5, 1),
    ],
    "jpeg": [25, 18, 15, 10, 7],
}
NOISE = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "spatter")


def scene(h: int, w: int) -> np.ndarray:
    """A natural-ish image: smooth colour gradients with a red box and a blue disc."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx / w * 200 + 20, yy / h * 180 + 30, (xx + yy) / (h + w) * 150 + 50], -1)
    img[h // 4 : h // 2, w // 4 : w // 2] = [230, 40, 40]
    img[(yy - 2 * h // 3) ** 2 + (xx - 3 * w // 4) ** 2 < (min(h, w) // 6) ** 2] = [30, 60, 220]
    return img.astype(np.uint8)


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def test_registry_and_parameters_are_the_published_imagenet_c_tables() -> None:
    assert C.CORRUPTIONS == tuple(PUBLISHED)
    for name, table in PUBLISHED.items():
        assert list(C.PARAMS[name]) == table, name
        for s in range(1, 6):
            assert C.Corruption(name, s).params == table[s - 1]
    assert C.Corruption("jpeg_compression", 2).name == "jpeg"  # the ImageNet-C spelling


@pytest.mark.parametrize("name", C.CORRUPTIONS)
@pytest.mark.parametrize("shape", [(37, 53, 3), (300, 200, 3), (37, 53), (40, 31, 1)])
def test_size_and_dtype_are_kept(name: str, shape: tuple[int, ...]) -> None:
    img = scene(*shape[:2])
    img = img if len(shape) == 3 and shape[2] == 3 else img[..., :1].reshape(shape)
    out = C.corrupt(img, name, 5, seed=1, index=2)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.array_equal(out, img)


@pytest.mark.parametrize("name", C.CORRUPTIONS)
def test_grey_rgb_input_works_and_stays_grey_for_channel_free_corruptions(name: str) -> None:
    grey = np.repeat(scene(48, 64)[..., 1:2], 3, axis=2)
    out = C.corrupt(grey, name, 3)
    assert out.shape == grey.shape and out.dtype == np.uint8
    if name in ("gaussian_blur", "defocus_blur"):
        assert np.array_equal(out[..., 0], out[..., 2])


@pytest.mark.parametrize("name", C.CORRUPTIONS)
def test_deterministic_per_seed_and_index(name: str) -> None:
    img = scene(64, 80)
    state = np.random.get_state()
    first = C.Corruption(name, 4, seed=7)(img, 3)
    assert np.array_equal(first, C.Corruption(name, 4, seed=7)(img, 3))
    assert np.array_equal(first, pickle.loads(pickle.dumps(C.Corruption(name, 4, seed=7)))(img, 3))
    assert np.array_equal(img, scene(64, 80))  # the input is not modified
    after = np.random.get_state()
    assert state[0] == after[0] and np.array_equal(state[1], after[1])  # no global RNG used
    other_seed = C.Corruption(name, 4, seed=8)(img, 3)
    other_index = C.Corruption(name, 4, seed=7)(img, 4)
    if name in NOISE:
        assert not np.array_equal(first, other_seed)
        assert not np.array_equal(first, other_index)
    else:  # blur and JPEG draw no random numbers
        assert np.array_equal(first, other_seed) and np.array_equal(first, other_index)


@pytest.mark.parametrize("name", C.CORRUPTIONS)
def test_psnr_to_the_clean_image_strictly_decreases_with_severity(name: str) -> None:
    img = scene(96, 128)
    errors = [
        np.mean([mse(img, C.corrupt(img, name, s, index=i)) for i in range(3)])
        for s in C.SEVERITIES
    ]  # mean over three images (indices)
    psnr = [10 * np.log10(255**2 / e) for e in errors]
    assert all(a > b for a, b in zip(psnr, psnr[1:], strict=False)), psnr


def clipped_normal_std(mean: float, std: float) -> float:
    """Std of ``clip(mean + std * Z, 0, 1)`` by quadrature."""
    z = np.linspace(-8, 8, 40001)
    w = np.exp(-(z**2) / 2)
    v = np.clip(mean + std * z, 0, 1)
    m = (w * v).sum() / w.sum()
    return float(np.sqrt((w * (v - m) ** 2).sum() / w.sum()))


def test_noise_strengths_follow_the_parameters() -> None:
    grey = np.full((200, 200, 3), 128, dtype=np.uint8)
    x = 128 / 255
    for s in (1, 3, 5):
        c = C.PARAMS["gaussian_noise"][s - 1]
        out = C.corrupt(grey, "gaussian_noise", s) / 255
        assert abs(out.std() / clipped_normal_std(x, c) - 1) < 0.02
        c = C.PARAMS["speckle_noise"][s - 1]
        out = C.corrupt(grey, "speckle_noise", s) / 255
        assert abs(out.std() / clipped_normal_std(x, x * c) - 1) < 0.02
        c = C.PARAMS["shot_noise"][s - 1]
        out = C.corrupt(grey, "shot_noise", s) / 255
        k = np.arange(200)
        pmf = poisson.pmf(k, x * c)  # photon counts; the image is min(k / c, 1)
        v = np.clip(k / c, 0, 1)
        assert abs(out.var() / ((pmf * v**2).sum() - (pmf * v).sum() ** 2) - 1) < 0.05
        c = C.PARAMS["impulse_noise"][s - 1]
        out = C.corrupt(grey, "impulse_noise", s)
        assert abs(np.mean(out != 128) / c - 1) < 0.05
        assert abs(np.mean(out == 255) / np.mean(out == 0) - 1) < 0.1


def test_blurs_have_the_published_kernel_sizes() -> None:
    dot = np.zeros((81, 81, 3), dtype=np.uint8)
    dot[40, 40] = 255
    for s, sigma in enumerate(C.PARAMS["gaussian_blur"], start=1):
        big = np.zeros((81, 81, 3), dtype=np.float64)
        big[40, 40] = 1.0
        response = C._gaussian_blur(big, sigma, np.random.default_rng(0))[..., 0]
        yy, xx = np.mgrid[0:81, 0:81]
        var = (response * ((yy - 40) ** 2)).sum() / response.sum()
        assert abs(var - sigma**2) < 0.02 * sigma**2 + 0.01
        assert C.corrupt(dot, "gaussian_blur", s).max() < 255
    moments = []
    for radius, alias_blur in C.PARAMS["defocus_blur"]:
        kernel = C.disk_kernel(radius, alias_blur)  # a disk of this radius, lightly smoothed
        n = kernel.shape[0] // 2
        yy, xx = np.mgrid[-n : n + 1, -n : n + 1]
        r2 = xx**2 + yy**2
        assert abs(kernel.sum() - 1) < 0.02 and kernel[r2 <= (radius + 1) ** 2].sum() > 0.99
        moments.append((kernel * r2).sum())  # a uniform disk has E[r^2] = radius^2 / 2
        assert abs(moments[-1] - radius**2 / 2) < 0.05 * radius**2 + 0.5
    assert moments == sorted(moments)


def test_jpeg_is_pil_at_the_published_quality() -> None:
    img = scene(57, 91)
    for s, quality in enumerate(C.PARAMS["jpeg"], start=1):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        assert np.array_equal(C.corrupt(img, "jpeg", s), np.asarray(Image.open(buf)))


def test_bad_names_severities_and_images_are_user_errors() -> None:
    with pytest.raises(UserError, match="gaussian_noise.*jpeg"):
        C.Corruption("fog", 1)
    with pytest.raises(UserError, match="1, 2, 3, 4, 5"):
        C.Corruption("jpeg", 6)
    with pytest.raises(UserError, match="1, 2, 3, 4, 5"):
        C.corrupt(scene(8, 8), "shot_noise", 0)
    with pytest.raises(UserError, match="1, 2, 3, 4, 5"):
        C.build_corruption(name="spatter", severity="high")
    with pytest.raises(UserError, match="uint8"):
        C.corrupt(scene(8, 8).astype(np.float32), "spatter", 1)
    with pytest.raises(UserError, match="name, severity and seed"):
        C.corruption_from_options({"name": "jpeg", "level": 2})


def test_none_and_metrics_record() -> None:
    assert C.build_corruption(name="none", severity=0) is None
    assert C.corruption_from_options(None) is None
    assert C.corruption_record(None) == {"corruption/name": "none", "corruption/severity": 0}
    c = C.corruption_from_options({"name": "jpeg_compression", "severity": 2, "seed": 0})
    assert C.corruption_record(c) == {"corruption/name": "jpeg", "corruption/severity": 2}


def test_config_files_build_their_corruption() -> None:
    names = {p.stem for p in CONF.glob("*.yaml")}
    assert names == {"none", *C.CORRUPTIONS}
    for name in names:
        options = yaml.safe_load((CONF / f"{name}.yaml").read_text())
        assert set(options) == {"name", "severity", "seed"} and options["name"] == name
        built = C.corruption_from_options(options)
        assert (built is None) == (name == "none")


class _Probe:
    """Two tiny labelled scenes for the data-module hook."""

    def __init__(self, **_: object) -> None:
        self.images = [scene(40, 56), scene(40, 56)[::-1].copy()]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> RawSample:
        label = np.zeros(self.images[index].shape[:2], dtype=np.uint8)
        return RawSample(self.images[index], label, f"probe_{index}")


def test_data_module_corrupts_evaluation_images_before_normalisation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(DATASETS, "_corruption_probe", _Probe)
    kw = dict(dataset="_corruption_probe", root=".", class_names=["thing"], eval_scale=None)
    corruption = C.Corruption("gaussian_noise", 5, seed=3)
    clean = SegmentationDataModule(**kw).val_dataset()
    noisy = SegmentationDataModule(**kw, corruption=corruption).val_dataset()
    mean = torch.tensor(clean.transform.transforms[-1].mean).view(3, 1, 1)
    std = torch.tensor(clean.transform.transforms[-1].std).view(3, 1, 1)
    for index in range(2):
        got = noisy[index]["image"]
        expected = corruption(clean.raw[index].image, index)
        want = (torch.from_numpy(expected).permute(2, 0, 1) / 255.0 - mean) / std
        assert torch.allclose(got, want.float(), atol=1e-5)
        assert not torch.allclose(got, clean[index]["image"])
        assert torch.equal(noisy[index]["target"], clean[index]["target"])


def test_hydra_instantiate_passes_a_corruption_through() -> None:
    cfg = OmegaConf.create({"_target_": "builtins.dict", "_convert_": "all", "a": 1})
    corruption = C.Corruption("spatter", 2)
    assert hydra.utils.instantiate(cfg, corruption=corruption)["corruption"] is corruption


def test_eval_records_the_corruption_in_its_metrics(tmp_path: Path) -> None:
    overrides = [
        "data=shapes", "teacher=tiny_rn_test", "corruption=jpeg", "corruption.severity=4",
        "data.dataset_options.val_length=2", "trainer.enable_progress_bar=false", "report.figure=false",
        f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path}/run",
    ]  # fmt: skip
    with hydra.initialize_config_dir(str(CONF.parent), version_base="1.3"):
        cfg = hydra.compose("eval", overrides=overrides)
    from src.eval import evaluate

    metrics = evaluate(cfg)
    assert metrics["corruption/name"] == "jpeg" and metrics["corruption/severity"] == 4
    assert 0.0 <= metrics["val/miou"] <= 1.0
    assert "jpeg severity 4" in (tmp_path / "run" / "per_class.md").read_text()
