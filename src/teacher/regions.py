"""Class-agnostic region maps and the map update CorrCLIP makes with them.

A region map is a ``torch.int32`` tensor (B, H, W): 0 where a pixel is in no region, other
values are region ids (CorrCLIP's format: ``<mask_dir>/<stem>.npz``, key ``instance_mask``,
the minimum id being the union of the pixels in no region). The maps are produced and carried
to the heads by the teacher's mask generators (``teacher.masks``); this module holds what is
done with them after the classes are scored.
"""

from __future__ import annotations

import torch


def vote_labels(labels: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """(H, W) labels with every region's pixels set to the region's most frequent label
    (``torch.mode`` of its labels in row-major order, so ties resolve as in the authors'
    code). Every id but the map's minimum is a region: the minimum is the "no region" part
    (0 whenever a pixel is in no region), as CorrCLIP's ``postprocess_result`` treats it."""
    if labels.shape != regions.shape:
        raise ValueError(f"labels {tuple(labels.shape)} and regions {tuple(regions.shape)} differ")
    out = labels.clone()
    for region in torch.unique(regions)[1:]:
        inside = regions == region
        out[inside] = torch.mode(labels[inside])[0]
    return out


def region_vote(scores: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """CorrCLIP's map update as scores: (B, C, H, W) class scores and a (B, H, W) region map
    at their size -> scores of the same shape whose per-pixel argmax is the authors' corrected
    label (:func:`vote_labels` of the argmax). Where a pixel's label changes, its scores of the
    old and the new label are swapped (the new label is nudged above an exact tie), so the
    scores keep their values and only the ranking of those two changes; other pixels are
    returned as they are."""
    if scores.dim() != 4 or regions.shape != (scores.shape[0], *scores.shape[-2:]):
        raise ValueError(
            f"region_vote needs scores (B, C, H, W) and regions (B, H, W) of their size, got "
            f"{tuple(scores.shape)} and {tuple(regions.shape)}"
        )
    labels = scores.argmax(1)
    voted = torch.stack([vote_labels(lab, reg) for lab, reg in zip(labels, regions, strict=True)])
    changed = voted != labels
    if not bool(changed.any()):
        return scores
    out = scores.clone()
    old, new = labels[:, None], voted[:, None]
    s_old, s_new = out.gather(1, old), out.gather(1, new)
    out.scatter_(1, new, torch.where(changed[:, None], s_old, s_new))
    out.scatter_(1, old, torch.where(changed[:, None], s_new, s_old))
    tied = out.argmax(1) != voted  # the new label equalled the maximum before the swap
    if bool(tied.any()):
        top = out.amax(1, keepdim=True)
        bumped = torch.nextafter(top, torch.full_like(top, float("inf")))
        out.scatter_(1, new, torch.where(tied[:, None], bumped, out.gather(1, new)))
    return out
