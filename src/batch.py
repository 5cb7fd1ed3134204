"""The batch contract between ``src/data`` and ``src/models`` (documented once, here).

A sample, and after collation a batch, is a ``dict``:

``"image"``
    float32 ``(3, H, W)`` (batched ``(B, 3, H, W)``), normalised with the teacher CLIP's own
    mean/std. Teacher and student see the same tensor.
``"target"``
    int64 ``(H, W)``. A value in ``[0, K)`` is an index into the data module's
    ``class_names`` (``"background"`` first where the protocol counts it);
    :data:`IGNORE_INDEX` (255) is void; :data:`UNLABELLED` (254) marks pixels whose class the
    setting hides from training (unseen-class pixels in transductive zero-shot, every non-void
    pixel when annotation-free). Evaluation samples carry the full ground truth, never 254,
    at the label's original resolution (the image may be resized).
``"candidates"``
    bool ``(K,)``: the classes a pseudo label may take on UNLABELLED pixels (the unseen
    classes in zero-shot, every named class when annotation-free; never background).
``"name"``
    str: the sample's id (image file stem).

Class indices: with ``K = len(class_names)`` and ``offset = 1`` when background is counted
(else 0), dataset class ``c >= offset`` is the teacher's text class ``c - offset``.
"""

from __future__ import annotations

IGNORE_INDEX = 255  #: void / unlabeled-by-the-dataset pixels, ignored by losses and metrics
UNLABELLED = 254  #: pixels whose class the training setting hides; pseudo-labelled
BACKGROUND = "background"  #: name of the class the student learns an embedding for

IMAGE = "image"
TARGET = "target"
CANDIDATES = "candidates"
NAME = "name"
