"""The one path from normalised images to class scores, for every model and every caller.

    images -> scores (whole image, or sliding windows) -> upsample to the output size
           -> refine (PAMR, with the images resized to that size) -> classes (and background)

:func:`score_images` is that composition. A model gives it three parts and a caller chooses
only the settings (output size, windows):

- a *scorer*: ``(B, 3, h, w)`` normalised images -> ``(B, Q, h', w')`` scores at any
  resolution covering the input (the teacher's names' cosines, the student's logits);
- a *refiner* (``None``: off): ``(images at H x W, scores at H x W)`` -> refined scores;
- a *reducer* (``None``: the scores are the classes'): ``(B, Q, H, W)`` -> ``(B, C, H, W)``
  (the teacher's names -> classes and its background channel).

With region masks (``teacher.masks``) a caller also gives ``regions``, a (B, H0, W0) int32
region map (0: no region) at any size, and a ``vote``: the map is resized nearest (CorrCLIP's
``F.interpolate(..., mode="nearest")``) to the scorer's input size and cropped with each
window, and the scorer is called as ``scorer(images, regions=crop_map)``; after the classes,
``vote(class scores, map resized nearest to the output size)`` (CorrCLIP's map update).

The order is the training-free authors' (NACLIP's ``predict``: slide, resize the logits to the
image, then PAMR on the image resized to it, then softmax / best name / threshold). Used by
the teacher's ``predict_logits`` (evaluation and the student's teacher labels), the student's,
windowed evaluation and ``src.prediction.predictor.predict_image`` (``src.predict``, the web
page). Nothing here knows which model it runs; it imports only torch. Gradients are the
caller's choice (the teacher's methods run under ``torch.no_grad``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Scorer = Callable[..., torch.Tensor]  #: ``scorer(images)``, or ``scorer(images, regions=map)``
Refiner = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Reducer = Callable[[torch.Tensor], torch.Tensor]
Vote = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  #: (scores, regions) -> scores

#: the region id a window's region map is padded with where the window is padded (CorrCLIP's
#: ``forward_slide`` pads its crops' masks with 10000; also the id the teacher pads to its patch)
PAD_REGION = 10000


@dataclass(frozen=True)
class Windows:
    """Sliding windows: ``window`` x ``window`` crops every ``stride`` pixels, ``batch`` crops
    per forward (MMSegmentation's ``slide`` mode). ``pad``: each crop is padded *in the middle*
    to a multiple of ``pad`` before the scorer (image 0, region map :data:`PAD_REGION`) and its
    scores, upsampled to the padded crop, are cut back (CorrCLIP's ``forward_slide``: 56);
    0: no padding here (the scorer pads to its patch, bottom and right)."""

    window: int
    stride: int
    batch: int = 4
    pad: int = 0

    def __post_init__(self) -> None:
        if self.window <= 0 or self.stride <= 0 or self.stride > self.window:
            raise ValueError(
                f"need 0 < stride <= window, got window={self.window}, stride={self.stride}"
            )
        if self.pad < 0:
            raise ValueError(f"need pad >= 0 (0: none), got pad={self.pad}")


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of the crops along one axis (the last one ends at the border)."""
    if length <= window:
        return [0]
    count = (length - window + stride - 1) // stride + 1
    return sorted({min(i * stride, length - window) for i in range(count)})


def upsample(scores: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(B, Q, h, w) scores resized bilinearly (``align_corners=False``) to ``size``; as they
    are when already that size."""
    size = (int(size[0]), int(size[1]))
    if tuple(scores.shape[-2:]) == size:
        return scores
    return F.interpolate(scores, size=size, mode="bilinear", align_corners=False)


def resize_regions(regions: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(B, H0, W0) int32 region map resized nearest to ``size`` (as CorrCLIP:
    ``F.interpolate(m[:, None].float(), size, mode="nearest").int()``); as it is when already
    that size."""
    size = (int(size[0]), int(size[1]))
    if tuple(regions.shape[-2:]) == size:
        return regions.int()
    return F.interpolate(regions[:, None].float(), size=size, mode="nearest")[:, 0].int()


def _score(scorer: Scorer, images: torch.Tensor, regions: torch.Tensor | None) -> torch.Tensor:
    return scorer(images) if regions is None else scorer(images, regions=regions)


Box = tuple[int, int, int, int]


def window_boxes(h: int, w: int, window: int, stride: int) -> list[Box]:
    """The crops ``(y0, x0, y1, x1)`` of an ``h`` x ``w`` image, row by row; all of one size
    (``min(window, h)`` x ``min(window, w)``: the last crop of an axis ends at its border)."""
    return [
        (y, x, min(y + window, h), min(x + window, w))
        for y in window_starts(h, window, stride)
        for x in window_starts(w, window, stride)
    ]


def centre_padding(h: int, w: int, multiple: int) -> tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` padding that brings an ``h`` x ``w`` crop to a multiple
    of ``multiple`` with the crop in the middle (CorrCLIP's ``forward_slide``: the odd pixel
    right and bottom); no padding for ``multiple`` 0."""
    if multiple <= 0:
        return (0, 0, 0, 0)
    ph, pw = (-h) % multiple, (-w) % multiple
    return (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)


def crop_windows(tensor: torch.Tensor, crops: Sequence[tuple[int, Box]]) -> torch.Tensor:
    """The ``(image, box)`` crops of a (B, ..., H, W) tensor (images, or any per-pixel map)
    stacked into (len(crops), ..., h, w)."""
    return torch.stack([tensor[i, ..., y0:y1, x0:x1] for i, (y0, x0, y1, x1) in crops])


@torch.no_grad()
def sliding_window_logits(
    scorer: Scorer,
    images: torch.Tensor,
    *,
    window: int,
    stride: int,
    batch_size: int = 4,
    regions: torch.Tensor | None = None,
    pad: int = 0,
) -> torch.Tensor:
    """(B, 3, H, W) -> (B, Q, H, W) scores averaged over overlapping crops (each crop's scores
    brought to the crop's size first); an image smaller than the window is one crop. The
    crops of all images go through the scorer ``batch_size`` at a time (image by image, each
    image's crops row by row); each image's average is the one it has scored alone.
    ``regions``: the images' (B, H, W) region map, cropped with each window and given to the
    scorer (``scorer(crops, regions=crop_maps)``). ``pad``: each crop padded in the middle to
    a multiple of it (:class:`Windows`), its scores brought to the padded size and cut back."""
    Windows(window, stride, batch_size, pad)  # validates
    b, _, h, w = images.shape
    boxes = window_boxes(h, w, window, stride)
    y0, x0, y1, x1 = boxes[0]  # every crop has this size
    left, right, top, bottom = centre_padding(y1 - y0, x1 - x0, pad)
    ch, cw = y1 - y0, x1 - x0
    crops = [(i, box) for i in range(b) for box in boxes]
    count = torch.zeros(1, 1, h, w, device=images.device)
    for y0, x0, y1, x1 in boxes:
        count[..., y0:y1, x0:x1] += 1
    total: torch.Tensor | None = None
    step = max(1, batch_size)
    for start in range(0, len(crops), step):
        group = crops[start : start + step]
        batch = crop_windows(images, group)
        maps = None if regions is None else crop_windows(regions, group)
        if left + right + top + bottom:
            batch = F.pad(batch, (left, right, top, bottom))
            if maps is not None:
                maps = F.pad(maps, (left, right, top, bottom), value=PAD_REGION)
        logits = upsample(_score(scorer, batch, maps).float(), batch.shape[-2:])
        logits = logits[..., top : top + ch, left : left + cw]
        if total is None:
            total = logits.new_zeros(b, logits.shape[1], h, w)
        for (i, (y0, x0, y1, x1)), crop_logits in zip(group, logits, strict=True):
            total[i, :, y0:y1, x0:x1] += crop_logits
    assert total is not None
    return total / count


def dense_scores(
    scorer: Scorer,
    images: torch.Tensor,
    *,
    size: Sequence[int] | None = None,
    windows: Windows | None = None,
    refine: Refiner | None = None,
    regions: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, 3, h, w) normalised images -> (B, Q, H, W) scores at ``size`` (default: the
    input's): the scorer on the whole image or over ``windows`` (the crops of all images
    batched), upsampled, then refined with the images resized to ``size`` (``refine``;
    ``None``: off). ``regions``: a (B, H0, W0) region map, resized nearest to (h, w) and
    cropped with the windows for the scorer."""
    out = tuple(images.shape[-2:]) if size is None else (int(size[0]), int(size[1]))
    if regions is not None:
        regions = resize_regions(regions, images.shape[-2:])
    if windows is None:
        scores = _score(scorer, images, regions)
    else:
        scores = sliding_window_logits(
            scorer,
            images,
            window=windows.window,
            stride=windows.stride,
            batch_size=windows.batch,
            regions=regions,
            pad=windows.pad,
        )
    scores = upsample(scores, out)
    if refine is not None:
        scores = refine(upsample(images.float(), out), scores)
    return scores


def score_images(
    scorer: Scorer,
    images: torch.Tensor,
    *,
    size: Sequence[int] | None = None,
    windows: Windows | None = None,
    refine: Refiner | None = None,
    reduce: Reducer | None = None,
    regions: torch.Tensor | None = None,
    vote: Vote | None = None,
) -> torch.Tensor:
    """(B, 3, h, w) normalised images -> (B, C, H, W) class scores at ``size``: the whole
    composition (:func:`dense_scores`, then ``reduce``, then ``vote`` with ``regions``
    resized nearest to ``size``, when both are given)."""
    scores = dense_scores(
        scorer, images, size=size, windows=windows, refine=refine, regions=regions
    )
    scores = scores if reduce is None else reduce(scores)
    if vote is not None and regions is not None:
        scores = vote(scores, resize_regions(regions, scores.shape[-2:]))
    return scores
