"""``teacher.masks=sam2``: the ``sam2`` package's automatic mask generator with CorrCLIP's
settings (``CorrCLIPv1/corrclip_segmentor.py``, ``set_mask_generator`` / ``generate_mask``):
``build_sam2("sam2_hiera_l.yaml", ckpt, apply_postprocessing=False)`` in half precision (on
CUDA), ``SAM2AutomaticMaskGenerator(points_per_side=8, pred_iou_thresh=0.4,
stability_score_thresh=0.4, multimask_output=False)``; the masks sorted by area ascending and
painted in that order with ids 1.. (a later, larger mask overwrites). Weights from a local
file only (``checkpoint``), never downloaded.

The model is built from the package's config file without Hydra's global state (``build_sam2``
composes through it, which an entry point's own Hydra app holds)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from src.errors import UserError
from src.teacher.masks.registry import (
    Generator,
    MaskSpec,
    flag,
    integer,
    path,
    real,
    register_generator,
    require_file,
    require_package,
)

EXTRA = "sam2 (and its Hiera weights, e.g. sam2_hiera_large.pt)"


def import_sam2() -> Any:
    """The ``sam2`` package's modules, imported without leaving Hydra initialised (the package
    initialises Hydra's global config module at import when nothing else has)."""
    from hydra.core.global_hydra import GlobalHydra

    was = GlobalHydra.instance().is_initialized()
    import sam2
    import sam2.automatic_mask_generator
    import sam2.build_sam

    if not was:
        GlobalHydra.instance().clear()
    return sam2


def config_file(name: str) -> Path:
    """A SAM2 config: a file path, or a name in the ``sam2`` package (``sam2_hiera_l.yaml``,
    ``configs/sam2.1/sam2.1_hiera_l.yaml``)."""
    if os.path.isfile(name):
        return Path(name)
    package = Path(import_sam2().__file__).parent
    for folder in (package, package / "configs" / "sam2", package / "configs" / "sam2.1"):
        if (folder / name).is_file():
            return folder / name
    raise UserError(
        f"teacher.masks_options.config={name} is neither a file nor a config of the sam2 package",
        "use sam2_hiera_l.yaml (CorrCLIP's) or a path to a SAM2 model config",
    )


def build_model(config: str, checkpoint: str) -> Any:
    """The SAM2 model of ``config`` with ``checkpoint``'s weights (``{"model": state_dict}``,
    the released files' layout), in eval mode on the CPU (``apply_postprocessing=False``)."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    import_sam2()
    cfg = OmegaConf.load(config_file(config))
    OmegaConf.resolve(cfg)
    model = instantiate(cfg.model, _recursive_=True)
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
        model.load_state_dict(state)
    except (KeyError, RuntimeError, OSError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"teacher.masks_options.checkpoint={checkpoint} is not a SAM2 checkpoint of "
            f"{Path(config).name}: {first[:200]}",
            "give the released weights that match teacher.masks_options.config "
            "(sam2_hiera_large.pt with sam2_hiera_l.yaml)",
        ) from None
    return model.eval()


def paint(masks: list[dict[str, Any]], shape: tuple[int, int]) -> np.ndarray:
    """CorrCLIP's region map of SAM2's masks: sorted by area ascending, painted in that order
    with ids 1.. (later, larger masks overwrite); 0 where no mask."""
    out = np.zeros(shape, dtype=np.int32)
    for i, ann in enumerate(sorted(masks, key=lambda m: m["area"]), start=1):
        out[np.asarray(ann["segmentation"], dtype=bool)] = i
    return out


def build(options: Mapping[str, Any]) -> Generator:
    """SAM2's automatic mask generator with ``options`` (the authors' settings by default)."""
    checkpoint = require_file(options["checkpoint"], "checkpoint", "sam2", "SAM2 weights "
                              "(sam2_hiera_large.pt)", folder=False)  # fmt: skip
    require_package("sam2", "sam2", EXTRA)
    import torch

    sam2 = import_sam2()
    model = build_model(options["config"], checkpoint)
    state: dict[str, Any] = {"device": None, "generator": None}

    def generate(image: np.ndarray | None, stem: str | None, device: Any = None) -> np.ndarray:
        if image is None:
            raise UserError("teacher.masks=sam2 needs the image's pixels")
        device = torch.device(device or "cpu")
        if state["device"] != device:
            half = options["half"] and device.type == "cuda"  # the authors' .half(), on CUDA
            net = model.to(device).half() if half else model.to(device).float()
            state["generator"] = sam2.automatic_mask_generator.SAM2AutomaticMaskGenerator(
                model=net,
                points_per_side=options["points_per_side"],
                pred_iou_thresh=options["pred_iou_thresh"],
                stability_score_thresh=options["stability_score_thresh"],
                multimask_output=False,
            )
            state["device"] = device
        with (
            torch.inference_mode(),
            torch.autocast(
                "cuda", dtype=torch.float16, enabled=device.type == "cuda" and options["half"]
            ),
        ):
            masks = state["generator"].generate(np.ascontiguousarray(image))
        return paint(masks, image.shape[:2])

    return generate


SPEC = register_generator(
    MaskSpec(
        name="sam2",
        build=build,
        options={
            "checkpoint": path(None, "a local SAM2 weights file (sam2_hiera_large.pt)"),
            "config": path("sam2_hiera_l.yaml", "a sam2 config name or file"),
            "points_per_side": integer(8),
            "pred_iou_thresh": real(0.4),
            "stability_score_thresh": real(0.4),
            "half": flag(True),  # on CUDA, as the authors run it
        },
        summary="SAM2's automatic mask generator, CorrCLIP's settings (local weights)",
    )
)
