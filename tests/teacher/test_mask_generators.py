"""The learned mask generators' real loading paths (issue 21), on tiny random models this test
writes: ``teacher.masks=mask2former`` (a tiny ``Mask2FormerConfig`` saved with
``save_pretrained``) and ``teacher.masks=sam2`` (a tiny Hiera config and its checkpoint in the
released ``{"model": state_dict}`` layout). Each map equals the authors' calls made directly
(CorrCLIP's ``generate_mask``), and the superpixels' settings reach scikit-image."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from src.teacher.masks import RegionMasks


def _blocks(h: int = 64, w: int = 64) -> np.ndarray:
    g = np.random.default_rng(0)
    small = g.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.kron(small, np.ones((16, 16, 1), dtype=np.uint8))[:h, :w])


def test_superpixels_follow_the_blocks_and_their_settings() -> None:
    image = _blocks()
    slic = RegionMasks("superpixels", {"segments": 16}).one(image, None)
    assert slic.shape == (64, 64) and slic.dtype == np.int32 and slic.min() == 1
    for y in range(0, 64, 16):  # 16 flat blocks, 16 superpixels: each block one region
        for x in range(0, 64, 16):
            assert len(np.unique(slic[y + 2 : y + 14, x + 2 : x + 14])) == 1
    from skimage.segmentation import felzenszwalb

    graph = RegionMasks("superpixels", {"method": "felzenszwalb", "scale": 50.0}).one(image, None)
    expected = felzenszwalb(image, scale=50.0, sigma=0.8, min_size=50) + 1
    assert np.array_equal(graph, expected)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="no transformers")
def test_mask2former_loads_local_weights_and_gives_the_authors_map(tmp_path: Path) -> None:
    from PIL import Image
    from transformers import (
        AutoImageProcessor,
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessor,
        SwinConfig,
    )

    torch.manual_seed(3)  # a seed whose random queries leave segments and unassigned pixels
    backbone = SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                          window_size=2, image_size=64,
                          out_features=["stage1", "stage2", "stage3", "stage4"])  # fmt: skip
    config = Mask2FormerConfig(backbone_config=backbone, hidden_dim=32, feature_size=32,
                               mask_feature_size=32, num_queries=6, encoder_layers=1,
                               decoder_layers=2, dim_feedforward=32, num_attention_heads=2,
                               encoder_feedforward_dim=32, num_labels=3, common_stride=4,
                               use_pretrained_backbone=False)  # fmt: skip
    model = Mask2FormerForUniversalSegmentation(config).eval()
    with torch.no_grad():  # confident queries, so that the panoptic map has segments
        model.class_predictor.bias[0] = 8.0
    folder = tmp_path / "m2f"
    model.save_pretrained(folder)
    Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}).save_pretrained(
        folder
    )
    image = _blocks(40, 52)
    ours = RegionMasks("mask2former", {"weights": str(folder)}).one(image, None)
    # CorrCLIP's generate_mask, on the saved folder
    processor = AutoImageProcessor.from_pretrained(folder)
    net = Mask2FormerForUniversalSegmentation.from_pretrained(folder).eval()
    pil = Image.fromarray(image)
    with torch.inference_mode():
        outputs = net(**processor(pil, return_tensors="pt"))
    ref = processor.post_process_panoptic_segmentation(outputs, target_sizes=[pil.size[::-1]])
    ref = ref[0]["segmentation"].numpy()
    assert ours.shape == (40, 52) and ours.dtype == np.int32
    assert len(np.unique(ref)) > 2  # segments, not an empty map
    assert np.array_equal(ours, ref - ref.min())  # the minimum (unassigned) is 0 here


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("sam2") is None, reason="no sam2")
def test_sam2_loads_a_local_checkpoint_and_paints_as_the_authors(tmp_path: Path) -> None:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from src.teacher.masks.sam2_generator import config_file, import_sam2

    cfg = OmegaConf.load(config_file("sam2_hiera_t.yaml"))  # Hiera-T, made tinier
    trunk = cfg.model.image_encoder.trunk
    trunk.embed_dim, trunk.num_heads, trunk.stages = 16, 1, [1, 1, 2, 1]
    trunk.global_att_blocks, trunk.window_spec = [3], [4, 4, 4, 4]
    trunk.window_pos_embed_bkg_spatial_size = [4, 4]
    cfg.model.image_encoder.neck.backbone_channel_list = [128, 64, 32, 16]
    OmegaConf.save(cfg, tmp_path / "tiny.yaml")
    import_sam2()
    torch.manual_seed(0)
    model = instantiate(cfg.model, _recursive_=True).eval()
    torch.save({"model": model.state_dict()}, tmp_path / "tiny.pt")
    settings = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    masks = RegionMasks("sam2", {"checkpoint": str(tmp_path / "tiny.pt"),
                                 "config": str(tmp_path / "tiny.yaml"), **settings})  # fmt: skip
    image = _blocks()
    ours = masks.one(image, None)
    # the authors' generator and painting (generate_mask), on the same weights
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    generator = SAM2AutomaticMaskGenerator(model=model, multimask_output=False, **settings)
    with torch.inference_mode():
        anns = generator.generate(image)
    ref = np.zeros(image.shape[:2], dtype=int)
    for i, ann in enumerate(sorted(anns, key=lambda x: x["area"]), start=1):
        ref[ann["segmentation"]] = i
    assert len(anns) > 0 and ours.shape == (64, 64)
    assert np.array_equal(ours, ref)
    # a checkpoint of another model is one line
    torch.save({"model": {"nothing": torch.zeros(1)}}, tmp_path / "other.pt")
    from src.errors import UserError

    with pytest.raises(UserError, match="is not a SAM2 checkpoint of tiny.yaml"):
        RegionMasks("sam2", {"checkpoint": str(tmp_path / "other.pt"),
                             "config": str(tmp_path / "tiny.yaml")})  # fmt: skip
