"""PEARL (Pei et al., CVPR 2026), its Procrustes-alignment step: in the last block, each head's
keys are rotated towards its queries by the orthogonal factor of ``K_c^T Q_c`` (the centred,
query-norm-weighted keys and queries; the CLS token gets no weight), found by a Newton-Schulz
polar iteration; the attention is ``softmax(q (k R)^T s + alpha k_c k_c^T s)`` on the values,
no residual, no FFN (the authors' ``reduced`` block). Softmax scale 40. Its second step, the
text-aware Laplacian propagation, is a refinement (``teacher.refine=tlp``,
:mod:`src.teacher.tlp`), as the authors pair it.
"""

from __future__ import annotations

from typing import Any

import torch
from open_clip.transformer import VisionTransformer

from src.teacher.heads.registry import (
    Features,
    HeadSpec,
    Option,
    Published,
    choice,
    number,
    register_head,
)
from src.teacher.heads.vit import merge_heads, patch_keys, split_qkv, tokens_to_features, vit_trunk
from src.teacher.precision import full_precision


def polar_newton_schulz(m: torch.Tensor, iters: int = 5, eps: float = 1e-6) -> torch.Tensor:
    """The orthogonal polar factor ``M (M^T M)^-1/2`` of (..., d, d) matrices, the inverse
    square root by ``iters`` coupled Newton-Schulz steps on ``M^T M`` scaled by its Frobenius
    norm (plus ``eps I``), as PEARL computes it."""
    d = m.shape[-1]
    eye = torch.eye(d, device=m.device, dtype=m.dtype).expand_as(m)
    a = m.transpose(-2, -1) @ m
    norm = a.flatten(-2).norm(dim=-1).clamp_min(eps)[..., None, None]
    y = a / norm + eps * eye
    z = eye.clone()
    for _ in range(iters):
        t = 0.5 * (3.0 * eye - z @ y)
        y = y @ t
        z = t @ z
    return m @ (z / norm.sqrt())


def procrustes_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    use_kk: bool = True,
    alpha_kk: float = 0.08,
    align_solver: str = "polar",
    polar_iters: int = 5,
) -> torch.Tensor:
    """PEARL's attention weights (B, heads, N, N) from queries and keys (B, heads, N, hd),
    computed in float32 (token 0 is the CLS token, left out of the centring weights)."""
    with full_precision(q.device):  # the solve in float32 under autocast too
        return _procrustes_attention(q.float(), k.float(), use_kk, alpha_kk, align_solver,
                                     polar_iters)  # fmt: skip


def _procrustes_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    use_kk: bool,
    alpha_kk: float,
    align_solver: str,
    polar_iters: int,
) -> torch.Tensor:
    d = q.shape[-1]
    scale = d**-0.5
    w = q.norm(dim=-1, keepdim=True)
    w[..., 0:1, :] = 0.0
    w = w / (w.sum(dim=-2, keepdim=True) + 1e-6)
    q_c = q - (w * q).sum(dim=-2, keepdim=True)
    k_c = k - (w * k).sum(dim=-2, keepdim=True)
    m = k_c.transpose(-2, -1) @ q_c  # (B, heads, d, d)
    if align_solver == "polar":
        r = polar_newton_schulz(m, iters=polar_iters, eps=1e-6)
    else:  # "svd": the exact orthogonal factor; the identity where the SVD fails (theirs)
        try:
            u, _, vh = torch.linalg.svd(m, full_matrices=False)
            r = u @ vh
        except torch.linalg.LinAlgError:
            r = torch.eye(d, device=m.device, dtype=m.dtype).expand_as(m).clone()
    logits = (q * scale) @ (k @ r).transpose(-2, -1)
    if use_kk:
        logits = logits + alpha_kk * ((k_c @ k_c.transpose(-2, -1)) * scale)
    return logits.softmax(dim=-1)


def pearl_features(
    visual: VisionTransformer,
    images: torch.Tensor,
    *,
    with_keys: bool,
    alpha_kk: float = 0.08,
    use_kk: bool = True,
    align_solver: str = "polar",
    polar_iters: int = 5,
) -> Features:
    """PEARL: Procrustes-aligned attention in the last block, no residual, no FFN."""
    x, grid, _ = vit_trunk(visual, images)
    block = visual.transformer.resblocks[-1]
    q, k, v = split_qkv(block, x)
    attn = procrustes_attention(
        q, k, use_kk=use_kk, alpha_kk=alpha_kk, align_solver=align_solver, polar_iters=polar_iters
    )
    with full_precision(v.device):
        out = (attn @ v.float()).to(v.dtype)
    tokens = merge_heads(block, out)
    return tokens_to_features(visual, tokens[:, 1:], grid), patch_keys(
        k, grid
    ) if with_keys else None


def _flag(default: bool) -> Option:
    def parse(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError("not a boolean")
        return value

    return Option(default, "true or false", parse)


def _count(default: int, low: int, high: int) -> Option:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError("not an integer in range")
        return int(value)

    return Option(default, f"an integer in [{low}, {high}]", parse)


register_head(
    HeadSpec(
        name="pearl",
        features=pearl_features,
        logit_scale=40.0,
        options={
            # PEARL's defaults (pearl_ovss.py); its ADE20K and Cityscapes configs set alpha_kk 0.3
            "alpha_kk": number(0.08, low=0.0),
            "use_kk": _flag(True),
            "align_solver": choice("polar", ("polar", "svd")),
            "polar_iters": _count(5, 1, 50),
        },
        summary="PEARL: keys rotated onto the queries (Procrustes) in the last block, "
        "no residual, no FFN",
        authors_refine="tlp",  # PEARL's headline: Procrustes alignment + TLP
        order=60,
        published=(
            Published(
                "PEARL with TLP, paper",
                "PEARL README @ c26062b (assets/results.png; the paper's Table 1, arXiv 2603.21528)",
                (64.1, 35.1, 37.3, 86.9, 38.6, 26.3, 37.6, 19.4),
            ),
        ),
    )
)
