"""TLP, PEARL's text-aware Laplacian propagation (Pei et al., CVPR 2026), a refinement of any
head's scores (``teacher.refine=tlp``), as the authors apply it after their head.

On a grid of about ``grid`` x ``grid`` cells (the scores and the image average-pooled by
``round(H / grid)`` x ``round(W / grid)``), the scores ``L`` are replaced by the solution ``F``
of ``(C + Lap) F = C L`` (25 conjugate-gradient steps from ``L``), then upsampled back:

- ``C`` (per cell) trusts confident cells: ``max(p, 0.05)^2 (1 + a)``, ``p`` the best name's
  softmax probability of the scores, ``a`` the text agreement of the cell's probabilities;
- ``Lap`` is the 4-neighbour graph Laplacian, edge weights ``exp(-5 |dI| / mean |dI|)`` of the
  grey image (0.299 R + 0.587 G + 0.114 B of the normalised image) times ``1 + g``, ``g`` the
  text agreement of the two cells, clipped to 1.

The text enters through ``S``, the names' cosine similarities softmaxed at temperature 0.5 with
10 added to the diagonal, rows renormalised. The authors' agreement, written
``einsum('cc,bcij->bcij', S, p)``, reads only ``S``'s diagonal (a repeated einsum index takes
the diagonal): ``a = sum_c S_cc p_c^2`` and ``g = sum_c S_cc p_c p'_c``; kept as they run it.
Their gradient mean is taken over the whole batch (they run one image at a time); here it is
per image, so a batch gives each image's own result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: PEARL's constants (the authors' ``prop.py``: ``TLP.__init__`` and ``forward``)
TLP_GRID = 80
TAU_TEXT = 0.5
DIAG_BOOST = 10.0
EDGE_GAIN = 5.0
CG_ITERS = 25
EPS = 1e-6


def text_affinity(text: torch.Tensor) -> torch.Tensor:
    """(Q, Q) ``S`` of the names' embeddings (Q, D): softmax of their cosines / 0.5 over each
    row, plus 10 on the diagonal, rows renormalised."""
    t = F.normalize(text.float(), dim=-1)
    s = torch.softmax((t @ t.t()) / max(TAU_TEXT, EPS), dim=1)
    s = s + DIAG_BOOST * torch.eye(s.shape[0], device=s.device, dtype=s.dtype)
    return s / (s.sum(dim=1, keepdim=True) + EPS)


def _edge_weights(
    gray: torch.Tensor, probs: torch.Tensor, diag: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical edge weights (B, 1, H, W), each padded with a leading 1."""
    gx = (gray[..., :, 1:] - gray[..., :, :-1]).abs()
    gy = (gray[..., 1:, :] - gray[..., :-1, :]).abs()
    gx = gx / (gx.mean(dim=(1, 2, 3), keepdim=True) + EPS)
    gy = gy / (gy.mean(dim=(1, 2, 3), keepdim=True) + EPS)
    g_h = (probs[..., :, 1:] * diag * probs[..., :, :-1]).sum(dim=1, keepdim=True)
    g_v = (probs[..., 1:, :] * diag * probs[..., :-1, :]).sum(dim=1, keepdim=True)
    w_h = (torch.exp(-EDGE_GAIN * gx) * (1.0 + g_h.clamp(0.0, 1.0))).clamp(0.0, 1.0)
    w_v = (torch.exp(-EDGE_GAIN * gy) * (1.0 + g_v.clamp(0.0, 1.0))).clamp(0.0, 1.0)
    w_h = torch.cat([torch.ones_like(w_h[..., :, :1]), w_h], dim=3)
    w_v = torch.cat([torch.ones_like(w_v[..., :1, :]), w_v], dim=2)
    return w_h, w_v


def _laplacian(x: torch.Tensor, w_h: torch.Tensor, w_v: torch.Tensor) -> torch.Tensor:
    """The weighted 4-neighbour Laplacian applied to (B, Q, H, W) maps (the authors' signs)."""
    out = torch.zeros_like(x)
    d = w_h[..., :, 1:] * (x[..., :, 1:] - x[..., :, :-1])
    out[..., :, 1:] += d
    out[..., :, :-1] -= d
    d = w_v[..., 1:, :] * (x[..., 1:, :] - x[..., :-1, :])
    out[..., 1:, :] += d
    out[..., :-1, :] -= d
    return out


def _conjugate_gradient(apply, b: torch.Tensor, x0: torch.Tensor, iters: int) -> torch.Tensor:
    """``iters`` conjugate-gradient steps for ``apply(x) = b`` from ``x0`` (per image)."""
    x = x0.clone()
    r = b - apply(x)
    p = r.clone()
    rs_old = (r * r).sum(dim=(1, 2, 3), keepdim=True)
    for _ in range(iters):
        ap = apply(p)
        alpha = rs_old / ((p * ap).sum(dim=(1, 2, 3), keepdim=True) + 1e-12)
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = (r * r).sum(dim=(1, 2, 3), keepdim=True)
        p = r + (rs_new / (rs_old + 1e-12)) * p
        rs_old = rs_new
    return x


@torch.no_grad()
def tlp(
    images: torch.Tensor, scores: torch.Tensor, text: torch.Tensor, *, grid: int = TLP_GRID
) -> torch.Tensor:
    """TLP of (B, Q, H, W) ``scores`` (cosines) with the (B, 3, H, W) normalised ``images`` and
    the names' (Q, D) ``text`` embeddings; ``grid``: the solve's target cells per side (80;
    PEARL's Cityscapes config 224). Returns (B, Q, H, W) in the scores' dtype."""
    b, q, h, w = scores.shape
    if text.shape[0] != q:
        raise ValueError(f"TLP needs one text embedding per score channel: {text.shape[0]} != {q}")
    diag = torch.diagonal(text_affinity(text)).to(scores.device, scores.dtype).view(1, q, 1, 1)
    sh, sw = int(max(1, round(h / float(grid)))), int(max(1, round(w / float(grid))))
    img, log = images.float(), scores.float()
    pooled = sh > 1 or sw > 1
    if pooled:
        img = F.avg_pool2d(img, (sh, sw), stride=(sh, sw), count_include_pad=False)
        log = F.avg_pool2d(log, (sh, sw), stride=(sh, sw), count_include_pad=False)
    probs = torch.softmax(log, dim=1)
    agree = (probs * diag.float() * probs).sum(dim=1, keepdim=True).clamp(0.0, 1.0)
    trust = probs.amax(dim=1, keepdim=True).clamp_min(0.05) ** 2 * (1.0 + agree)
    gray = 0.299 * img[:, 0:1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3]
    w_h, w_v = _edge_weights(gray, probs, diag.float())

    def apply(x: torch.Tensor) -> torch.Tensor:
        return trust * x + _laplacian(x, w_h, w_v)

    out = _conjugate_gradient(apply, trust * log, log, CG_ITERS)
    if pooled:
        out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
    return out.to(scores.dtype)
