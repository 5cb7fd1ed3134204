"""ResCLIP's feedback matrix and attention without the dense N x N x steps walk (issue 24):
the same values as the code before it (a frozen copy below, ResCLIP's own arithmetic), on
seeded label grids and on the tiny ViT's features. Equality with the authors' code:
test_heads_parity.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from src.teacher.heads import resclip as resclip_module
from src.teacher.heads.vit import (
    gaussian_bias,
    merge_heads,
    patch_keys,
    self_attention,
    split_qkv,
    tokens_to_features,
    vit_trunk,
)
from src.teacher.model import DenseClipTeacher
from src.teacher.pamr import pamr


# ---------------------------------------------------------------- the code before issue 24
def _old_line_of_sight(labels):
    gh, gw = labels.shape
    n = gh * gw
    idx = torch.arange(n)
    r, c = idx // gw, idx % gw
    steps = torch.maximum((r[None] - r[:, None]).abs(), (c[None] - c[:, None]).abs())
    big = int(steps.max())
    flat = labels.reshape(-1)
    own = flat[:, None]
    valid = torch.ones(n, n, dtype=torch.bool)
    t = torch.linspace(0, 1, big + 1)
    ri, rj, ci, cj = r[:, None], r[None, :], c[:, None], c[None, :]
    for s in range(1, big + 1):
        ts = t[s]
        pr = (ri * (1 - ts) + rj * ts).round().long()
        pc = (ci * (1 - ts) + cj * ts).round().long()
        valid &= (steps < s) | (flat[pr * gw + pc] == own)
    return valid, steps, big


def _old_sfr_matrix(labels, std):
    n = labels.numel()
    flat = labels.reshape(-1)
    same = (flat[:, None] == flat[None, :]).float()
    valid, steps, big = _old_line_of_sight(labels)
    if big > 0:
        same = torch.where(valid, same, same * torch.exp(-steps / big))
    size = min(n, int(6 * std + 1))
    size += 1 - size % 2
    u = torch.arange(size) - size // 2
    kernel = torch.exp(-(u**2) / (2 * std**2))
    kernel = (kernel / kernel.sum()).view(1, 1, -1)
    blurred = F.relu(F.conv1d(same.unsqueeze(1), kernel, padding=size // 2).squeeze(1))
    blurred = blurred / (blurred.sum(1, keepdim=True) + 1e-8)
    out = torch.zeros(n + 1, n + 1)
    out[1:, 1:] = blurred
    return out


def _old_attention(q_k, rcs, opts, grid, sfr=None):
    k, v = q_k
    logits = self_attention(k, k)
    if sfr is not None:
        tau, lam = opts["sfr_weights"]
        peak = sfr.flatten(1).amax(1).view(-1, 1, 1, 1)
        sfr16 = (sfr[:, None] / peak).to(torch.float16)
        logits = tau * ((1 - lam) * logits + (lam * sfr16).to(logits.dtype))
    logits = logits + gaussian_bias(grid, opts["gaussian_std"], k.device).to(logits.dtype)
    tau, lam = opts["rcs_weights"]
    attn = tau * ((1 - lam) * logits.softmax(-1) + lam * rcs)
    return attn @ v


def _old_features(visual, images, text, std=5.0, thd=0.11, rcs_w=(2.0, 0.4), sfr_w=(1.8, 0.7)):
    opts = {"gaussian_std": std, "rcs_weights": rcs_w, "sfr_weights": sfr_w}
    blocks = visual.transformer.resblocks
    chosen = resclip_module.rcs_blocks(len(blocks))
    x, grid, maps = vit_trunk(visual, images, attention_of=tuple(chosen))
    rcs = torch.stack([maps[i] for i in chosen]).mean(0)
    block = blocks[-1]
    _, k, v = split_qkv(block, x)
    first = tokens_to_features(
        visual, merge_heads(block, _old_attention((k, v), rcs, opts, grid))[:, 1:], grid
    )
    cos = torch.einsum("bdhw,kd->bkhw", F.normalize(first.float(), dim=1), text.float())
    cos = F.interpolate(cos, size=images.shape[-2:], mode="bilinear", align_corners=False)
    probs = torch.softmax(40.0 * pamr(images.float(), cos), dim=1)
    top, labels = probs.max(dim=1)
    labels = torch.where(top < thd, torch.zeros_like(labels), labels)
    per_patch = resclip_module.patch_labels(labels, grid, int(visual.patch_size[0]))
    sfr = torch.stack([_old_sfr_matrix(lab, std) for lab in per_patch])
    tokens = merge_heads(block, _old_attention((k, v), rcs, opts, grid, sfr))
    return tokens_to_features(visual, tokens[:, 1:], grid), patch_keys(k, grid), per_patch


# ---------------------------------------------------------------- the checks
def _labels(gh: int, gw: int, classes: int, seed: int) -> torch.Tensor:
    """Blocky (gh, gw) labels: regions of 3 x 3 patches, a few single patches off."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, classes, (gh // 3 + 1, gw // 3 + 1), generator=g)
    labels = coarse.repeat_interleave(3, 0).repeat_interleave(3, 1)[:gh, :gw].clone()
    spots = torch.randint(0, gh * gw, (max(1, gh * gw // 10),), generator=g)
    labels.view(-1)[spots] = torch.randint(0, classes, spots.shape, generator=g)
    return labels


@pytest.mark.parametrize(
    ("gh", "gw", "classes"),
    [
        (3, 3, 3),
        (14, 14, 4),
        (9, 17, 3),
        (17, 6, 5),
        (1, 7, 2),
        (6, 1, 2),
        (1, 1, 2),
        (12, 30, 900),
    ],  # fmt: skip
)
def test_line_of_sight_and_feedback_matrix_equal_the_dense_walk(gh, gw, classes) -> None:
    for seed in range(3):
        labels = _labels(gh, gw, classes, seed)
        if classes > 256:  # more distinct labels than a byte holds
            labels = torch.randperm(gh * gw, generator=torch.Generator().manual_seed(seed))
            labels = labels.view(gh, gw) * 3
        valid, steps, big = resclip_module.line_of_sight(labels)
        old_valid, old_steps, old_big = _old_line_of_sight(labels)
        assert big == old_big
        assert torch.equal(steps, old_steps) and torch.equal(valid, old_valid)
        # a walk ends on j's label: two labels break some lines of sight
        assert bool(valid.all()) == (labels.unique().numel() == 1)
        new, old = resclip_module.sfr_matrix(labels, 5.0), _old_sfr_matrix(labels, 5.0)
        assert new.shape == (gh * gw + 1,) * 2
        torch.testing.assert_close(new, old, rtol=0, atol=1e-6)


def test_resclip_features_equal_the_code_before() -> None:
    teacher = DenseClipTeacher(
        clip_model="tiny_shapes_vit_plain", pretrained="shapes",
        class_names=["circle", "square", "triangle"],
    )  # fmt: skip
    g = torch.Generator().manual_seed(4)
    x = torch.randint(-64, 64, (2, 3, 96, 128), generator=g).float() / 32
    text = teacher.name_embeddings
    with torch.no_grad():
        first: dict[str, torch.Tensor] = {}
        feats, keys = resclip_module.resclip_features(
            teacher.clip.visual, x, with_keys=True, text=text, first_pass=first
        )
        old_feats, old_keys, old_labels = _old_features(teacher.clip.visual, x, text)
    assert torch.equal(first["labels"], old_labels)
    assert len(old_labels.unique()) > 1  # a feedback matrix with something to feed back
    torch.testing.assert_close(feats, old_feats, rtol=0, atol=1e-6)
    assert torch.equal(keys, old_keys)
