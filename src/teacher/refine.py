"""MaskCLIP's test-time refinements (REFERENCE section 3): prompt denoising and key smoothing.

Both work on one image's cosine scores at feature resolution and are off by default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Temperature CLIP uses to turn cosine similarities into class probabilities.
CLIP_LOGIT_SCALE = 100.0
_SUPPRESSED = -100.0


def prompt_denoise(cos: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Suppress classes whose best pixel probability in the image is below ``threshold``.

    ``cos``: (B, K, h, w) cosine scores. A suppressed class gets a very low score everywhere.
    The best class of each image is never suppressed.
    """
    prob = F.softmax(CLIP_LOGIT_SCALE * cos, dim=1)
    peak = prob.flatten(2).amax(dim=2)  # (B, K)
    drop = peak < threshold
    drop &= ~F.one_hot(peak.argmax(dim=1), cos.shape[1]).bool()
    return cos.masked_fill(drop[:, :, None, None], _SUPPRESSED)


def key_smooth(cos: torch.Tensor, keys: torch.Tensor, threshold: float = 1.0) -> torch.Tensor:
    """Smooth class probabilities with key affinities: ``P <- W P`` where ``max P < threshold``.

    ``cos``: (B, K, h, w) scores; ``keys``: (B, C, h, w). ``W = K_n K_n^T`` with keys
    L2-normalised over channels (the paper's description; the original code normalised over
    the spatial axis). Returns probabilities (B, K, h, w), whose argmax is the prediction.
    """
    b, k, h, w = cos.shape
    prob = F.softmax(CLIP_LOGIT_SCALE * cos, dim=1).flatten(2)  # (B, K, hw)
    keys_n = F.normalize(keys.flatten(2).float(), dim=1)  # (B, C, hw)
    affinity = keys_n.transpose(1, 2) @ keys_n  # (B, hw, hw)
    smoothed = prob @ affinity.transpose(1, 2)  # (B, K, hw): sum_j W_ij P_j
    weak = prob.amax(dim=1, keepdim=True) < threshold
    out = torch.where(weak, smoothed, prob)
    return out.view(b, k, h, w)
