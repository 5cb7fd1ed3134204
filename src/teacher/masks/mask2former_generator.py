"""``teacher.masks=mask2former``: transformers' ``Mask2FormerForUniversalSegmentation``
panoptic segments as regions, as CorrCLIP runs it (``generate_mask``): the processor on the
RGB image, the model (fp16 autocast on CUDA), then
``processor.post_process_panoptic_segmentation(outputs, target_sizes=[(H, W)])[0]
["segmentation"]`` is the map. The authors' weights are
``facebook/mask2former-swin-large-coco-panoptic``; here a local folder saved with
``save_pretrained`` (model and processor), never downloaded."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from src.errors import UserError
from src.teacher.masks.registry import (
    Generator,
    MaskSpec,
    flag,
    path,
    register_generator,
    require_file,
    require_package,
)

EXTRA = "transformers (and the model saved locally: facebook/mask2former-swin-large-coco-panoptic)"


def build(options: Mapping[str, Any]) -> Generator:
    """The Mask2Former generator of the local folder ``options['weights']``."""
    folder = require_file(options["weights"], "weights", "mask2former", "a local Mask2Former "
                          "folder (save_pretrained of model and processor)", folder=True)  # fmt: skip
    require_package("transformers", "mask2former", EXTRA)
    import torch
    from transformers import AutoImageProcessor, Mask2FormerForUniversalSegmentation

    for needed in ("config.json", "preprocessor_config.json"):
        if not (Path(folder) / needed).is_file():
            raise UserError(
                f"teacher.masks_options.weights={folder} has no {needed}",
                "save both the model and its processor there with save_pretrained "
                "(facebook/mask2former-swin-large-coco-panoptic for CorrCLIP's masks)",
            )
    try:
        processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        model = Mask2FormerForUniversalSegmentation.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise UserError(
            f"teacher.masks_options.weights={folder} cannot be loaded as Mask2Former: {first}",
            "save a Mask2FormerForUniversalSegmentation and its processor there",
        ) from None
    model.eval()

    def generate(image: np.ndarray | None, stem: str | None, device: Any = None) -> np.ndarray:
        if image is None:
            raise UserError("teacher.masks=mask2former needs the image's pixels")
        device = torch.device(device or "cpu")
        net = model.to(device)
        inputs = processor(np.ascontiguousarray(image), return_tensors="pt").to(device)
        cuda = device.type == "cuda" and options["half"]
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
            outputs = net(**inputs)
        result = processor.post_process_panoptic_segmentation(
            outputs, target_sizes=[tuple(image.shape[:2])]
        )[0]
        segments = result["segmentation"].cpu().numpy().astype(np.int64)
        # the authors' vote skips the map's minimum (unassigned pixels: -1 or 0): it is 0 here
        return (segments - segments.min()).astype(np.int32)

    return generate


SPEC = register_generator(
    MaskSpec(
        name="mask2former",
        build=build,
        options={
            "weights": path(None, "a local folder with a saved Mask2Former and its processor"),
            "half": flag(True),  # fp16 autocast on CUDA, as the authors run it
        },
        summary="Mask2Former panoptic segments (transformers, local weights)",
    )
)
