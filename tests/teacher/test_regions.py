"""CorrCLIP's map update (src.teacher.regions) and the pieces of its head that act on region
maps alone (merging, the scoped attention); the head against the authors' code is in
test_heads_parity.py."""

from __future__ import annotations

import pytest
import torch

from src.errors import UserError
from src.teacher.heads import head_spec, resolve_head_options
from src.teacher.heads.corrclip import (
    MERGED_BASE,
    merge_regions,
    scoped_attention,
    spatial_blocks,
)
from src.teacher.regions import region_vote, vote_labels


def authors_correction(labels: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """CorrCLIP's ``postprocess_result`` map correction, as written there."""
    seg_pred = labels[None].clone()
    mask_values = torch.unique(regions)[1:]
    masks = mask_values[:, None, None] == regions[None].expand(len(mask_values), -1, -1)
    for mask in masks[:, None]:
        seg_pred[mask] = torch.mode(seg_pred[mask])[0]
    return seg_pred[0]


def seeded(shape, high, seed):
    return torch.randint(0, high, shape, generator=torch.Generator().manual_seed(seed))


def test_the_vote_is_the_authors_correction() -> None:
    for seed in range(6):
        labels = seeded((37, 45), 5, seed)
        regions = seeded((5, 6), 6, 100 + seed).repeat_interleave(8, 0).repeat_interleave(8, 1)
        regions = regions[:37, :45].to(torch.int32)
        if seed % 2:  # no pixel in "no region": the minimum id (here 2 or more) is left alone
            regions = regions + 2
        want = authors_correction(labels, regions)
        assert torch.equal(vote_labels(labels, regions), want)
        scores = seeded((2, 5, 37, 45), 64, 200 + seed).float() * 2.0**-4
        scores += torch.arange(5.0).view(1, 5, 1, 1) * 2.0**-8  # no exact ties
        both = torch.stack([regions, regions.flip(0)])
        voted = region_vote(scores, both)
        assert torch.equal(voted.argmax(1)[0], authors_correction(scores.argmax(1)[0], regions))
        assert torch.equal(voted.argmax(1)[1], authors_correction(scores.argmax(1)[1], both[1]))
        # the values are kept: each pixel's scores are a permutation of what they were
        assert torch.equal(voted.sort(1).values, scores.sort(1).values)


def test_the_vote_by_hand() -> None:
    labels = torch.tensor([[0, 1, 1, 2], [3, 3, 3, 2]])
    regions = torch.tensor([[0, 5, 5, 5], [7, 7, 0, 5]], dtype=torch.int32)
    # region 5: labels 1, 1, 2, 2 -> torch.mode's pick of the tie; region 7: 3, 3; 0 untouched
    tie = int(torch.mode(torch.tensor([1, 1, 2, 2]))[0])
    want = torch.tensor([[0, tie, tie, tie], [3, 3, 3, tie]])
    assert torch.equal(vote_labels(labels, regions), want)
    # all in no region: nothing changes, and the same tensor comes back
    scores = seeded((1, 4, 2, 4), 16, 0).float()
    assert region_vote(scores, torch.zeros(1, 2, 4, dtype=torch.int32)) is scores


def test_the_vote_breaks_exact_ties_towards_the_new_label() -> None:
    scores = torch.zeros(1, 3, 1, 4)
    scores[0, 1, 0, 1:3] = 1.0  # pixels 1, 2: class 1 (pixel 0: class 0)
    scores[0, :, 0, 3] = torch.tensor([0.5, 0.5, 0.0])  # pixel 3: a tie, argmax 0
    regions = torch.tensor([[[0, 1, 1, 1]]], dtype=torch.int32)  # 0 is "no region"
    assert vote_labels(scores.argmax(1)[0], regions[0]).tolist() == [[0, 1, 1, 1]]
    assert region_vote(scores, regions).argmax(1).tolist() == [[[0, 1, 1, 1]]]


def test_region_vote_checks_its_shapes() -> None:
    with pytest.raises(ValueError, match="regions \\(B, H, W\\) of their size"):
        region_vote(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 5, dtype=torch.int32))


def test_merging_joins_regions_with_close_features() -> None:
    # 4 regions on a 4 x 4 grid besides 0; regions 1 and 2 share a feature, 3 and 4 differ
    regions = torch.tensor([[0, 1, 1, 2], [0, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]).int()
    basis = torch.eye(4)
    table = {0: basis[3], 1: basis[0], 2: basis[0], 3: basis[1], 4: basis[2]}
    feats = torch.stack([table[int(i)] for i in regions.flatten()]).reshape(4, 4, 4)
    merged = merge_regions(regions, feats, eps=0.2)
    assert torch.equal(merged == 0, regions == 0)
    assert merged[0, 1] == merged[0, 3] == MERGED_BASE  # 1 and 2 are one region now
    assert len({int(merged[2, 0]), int(merged[2, 2]), MERGED_BASE}) == 3
    # two ids or fewer: unchanged
    two = (regions > 2).int()
    assert merge_regions(two, feats, eps=0.2) is two


def test_the_scope_keeps_regions_and_the_rest_above_the_mean() -> None:
    sim = torch.tensor([[1.0, 0.9, 0.1], [0.9, 1.0, 0.0], [0.1, 0.0, 1.0]])
    attn = scoped_attention(sim, torch.tensor([0, 5, 5]), tau=4.0)
    # patch 0 (no region): itself and patch 1 (0.9 > mean 0.533); patch 2 (0.1) is cut
    # patch 1 (region 5): patch 2 (same region) and patch 0 (in no region, above the mean)
    assert (attn > 0).tolist() == [[True, True, False], [True, True, True], [False, True, True]]
    assert torch.allclose(attn.sum(-1), torch.ones(3))


def test_the_spec_and_its_options() -> None:
    spec = head_spec("corrclip")
    assert spec.needs_regions and spec.region_vote is region_vote and spec.logit_scale == 40
    assert resolve_head_options("corrclip", None) == {
        "branch_weights": (1.0, 0.5),
        "tau": 4.0,
        "merge_eps": 0.2,
    }
    assert [spatial_blocks(n) for n in (12, 24, 32, 6, 4, 3)] == [5, 12, 28, 2, 1, 1]
    with pytest.raises(UserError, match="branch_weights"):
        resolve_head_options("corrclip", {"branch_weights": [1.0]})
    rows = spec.published
    assert len(rows) == 10 and rows[0].miou == (74.8, 44.2, 43.7, 88.8, 48.8, 31.6, 49.4, 26.9)
    assert abs(sum(rows[0].miou) / 8 - 51.0) < 0.05  # the README's average
    assert all("CorrCLIP" in r.label and "103bc18" in r.source for r in rows)
    assert [r.clip for r in rows] == ["MetaCLIP ViT-B/16"] * 5 + ["MetaCLIP ViT-L/14"] * 5


def test_corrclip_without_dino_is_one_line(tmp_path) -> None:
    from src.teacher.model import DenseClipTeacher

    base = dict(clip_model="dc-test-vit", pretrained=None, class_names=["a", "b"])
    with pytest.raises(UserError) as info:
        DenseClipTeacher(**base, head="corrclip", proxy=None)
    assert "teacher.head=corrclip needs a DINO proxy ViT" in info.value.problem
    assert "teacher.proxy=dino_vitb8" in info.value.fix
    with pytest.raises(UserError) as info:
        DenseClipTeacher(**base, head="corrclip", proxy_weights=str(tmp_path / "no.pth"))
    assert "teacher.head=corrclip reads a DINO proxy" in info.value.problem
    assert "no.pth is not a file" in info.value.problem and "\n" not in info.value.problem


def test_corrclip_runs_batched_on_a_small_vit(monkeypatch, tmp_path) -> None:
    """On the shipped 4-block tiny ViT CLIP with a small proxy (patch 16): a batch of two images
    with their own region maps gives each image's features alone; the output is on the proxy's
    grid; no map is an all-"no region" map."""
    import timm

    from src.teacher import proxy as proxy_module
    from src.teacher.model import DenseClipTeacher

    torch.manual_seed(3)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    path = tmp_path / "tiny_proxy.pth"
    torch.save(model.state_dict(), path)
    spec = proxy_module.ProxySpec("vit_tiny_patch16_224", "a test ViT-Ti/16", "tiny.pth")
    monkeypatch.setitem(proxy_module.PROXIES, "tiny_test", spec)
    teacher = DenseClipTeacher(
        clip_model="tiny_shapes_vit_plain",
        pretrained="shapes",
        class_names=["circle", "square", "triangle"],
        head="corrclip",
        proxy="tiny_test",
        proxy_weights=str(path),
        masks="superpixels",  # required with a region head; the test gives its own maps
    )
    head = teacher.dense_head
    kwargs = {**head.options, **head.plain_extras, "proxy": head.proxy, "merge_eps": 0.02}
    images = seeded((2, 3, 96, 128), 256, 7).float() / 64 - 2
    regions = torch.stack(
        [
            seeded((4, 5), 5, 8).repeat_interleave(24, 0).repeat_interleave(26, 1)[:96, :128],
            seeded((3, 4), 4, 9).repeat_interleave(32, 0).repeat_interleave(32, 1),
        ]
    ).int()

    def run(x, r):
        with torch.no_grad():
            return head.spec.features(teacher.clip.visual, x, with_keys=False, regions=r, **kwargs)[
                0
            ]

    both = run(images, regions)
    assert both.shape == (2, teacher.clip.visual.proj.shape[1], 6, 8)
    assert torch.isfinite(both).all()
    for i in range(2):
        alone = run(images[i : i + 1], regions[i : i + 1])
        assert torch.allclose(both[i : i + 1], alone, atol=1e-5)
    zero = torch.zeros(1, 96, 128, dtype=torch.int32)
    assert torch.equal(run(images[:1], None), run(images[:1], zero))
    assert not torch.allclose(run(images[:1], regions[:1]), run(images[:1], zero), atol=1e-3)
