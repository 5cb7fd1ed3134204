"""The teacher's vocabulary: classes of several names, an optional background class, and the
reduction of per-name scores to per-class scores (the training-free papers' protocol).

A class entry may hold several comma-separated names (``"person, person in shirt"``); every
name gets its own text embedding, and a class scores the best of its names. Where the teacher
has a *background* (background words such as ``"sky, wall, tree"``, or a probability
threshold), its class scores gain a channel 0 for it: pixels whose best class probability
``softmax(logit_scale * cos)`` (over all names) is below the threshold, or whose best class is
the background words, go to channel 0. SCLIP / NACLIP / ClearCLIP compute exactly this:
softmax over all names, max over each class's names, ``pred[max_prob < prob_thd] = 0``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from src.errors import UserError
from src.prompts import entry_names


@dataclass(frozen=True)
class Vocabulary:
    """Names and classes of a teacher.

    ``names`` are every text query (background words first, then each class's names, in
    order); ``spans[c]`` is the ``[start, stop)`` range of class ``c``'s names among them,
    where class 0 is the background words when ``background_words``.
    """

    entries: tuple[str, ...]  #: the class entries as given (names joined by ", ")
    display: tuple[str, ...]  #: each class's first name (shown to users)
    names: tuple[str, ...]  #: every name, in order
    spans: tuple[tuple[int, int], ...]  #: per scored class (background words first)
    background_words: bool  #: spans[0] is the background class

    @property
    def single_names(self) -> bool:
        """True when every class has exactly one name and there are no background words."""
        return not self.background_words and len(self.names) == len(self.entries)


def build_vocabulary(
    class_names: Sequence[str], background: str | Sequence[str] | None = None
) -> Vocabulary:
    """The vocabulary of ``class_names`` (entries, each one or more comma-separated names) and
    optional ``background`` words (one entry, or a list of words).

    Raises :class:`UserError` for an empty list, an entry without a name, or two classes with
    the same first name (the name shown for them). The same name in two classes is allowed (the
    authors' COCO-Object lists ``bed`` among the background words and as a class).
    """
    items = list(class_names or [])
    if not items:
        raise UserError(
            "the class list is empty", "give at least one class, e.g. 'classes=[cat,dog]'"
        )
    per_class = [entry_names(str(entry)) for entry in items]
    if any(not names for names in per_class):
        raise UserError(f"the class list {items} has an empty name", "remove it")
    display = [names[0] for names in per_class]
    seen: set[str] = set()
    dups = sorted({n for n in display if n.lower() in seen or seen.add(n.lower())})
    if dups:
        raise UserError(f"duplicate class names: {dups}", "give each class once")
    groups = list(per_class)
    words: list[str] = []
    if background is not None:
        raw = [background] if isinstance(background, str) else list(background)
        words = [name for entry in raw for name in entry_names(str(entry))]
        if not words:
            raise UserError(
                f"teacher.background={background!r} names no word",
                "give background words ('teacher.background=[sky, wall]') or null",
            )
        groups = [words, *groups]
    spans, start = [], 0
    for names in groups:
        spans.append((start, start + len(names)))
        start += len(names)
    return Vocabulary(
        entries=tuple(", ".join(names) for names in per_class),
        display=tuple(display),
        names=tuple(name for names in groups for name in names),
        spans=tuple(spans),
        background_words=bool(words),
    )


def class_maxima(scores: torch.Tensor, spans: Sequence[tuple[int, int]]) -> torch.Tensor:
    """(B, Q, ...) per-name scores -> (B, C, ...) per-class maxima over each span of names."""
    if all(stop - start == 1 for start, stop in spans) and len(spans) == scores.shape[1]:
        return scores
    return torch.stack([scores[:, a:b].amax(dim=1) for a, b in spans], dim=1)


def class_scores(
    name_logits: torch.Tensor,
    vocab: Vocabulary,
    *,
    logit_scale: float,
    threshold: float | None,
) -> torch.Tensor:
    """(B, Q, H, W) cosine scores of every name -> (B, C, H, W) scores of the classes.

    Without background (no words, no ``threshold``): the best cosine of each class's names
    (C = number of classes; a vocabulary of single names is returned as it is). With a
    background: ``log(p_c) / logit_scale`` where ``p_c`` is the best of class ``c``'s
    probabilities ``softmax(logit_scale * cos)`` over all names, channel 0 first for the
    background: the background words' ``log p`` (``-inf`` without words), raised to
    ``log(threshold)`` where ``threshold`` is set, so that it wins exactly where every class's
    probability is below the threshold (or the background words are best). The argmax never
    changes with the representation, and ``softmax(logit_scale * scores)`` over the classes is
    each class's probability renormalised over the classes (NACLIP's stored probabilities).
    """
    with_background = vocab.background_words or threshold is not None
    if not with_background:
        return class_maxima(name_logits, vocab.spans)
    scale = float(logit_scale)
    logp = class_maxima(F.log_softmax(scale * name_logits.float(), dim=1), vocab.spans)
    if not vocab.background_words:
        logp = F.pad(logp, (0, 0, 0, 0, 1, 0), value=float("-inf"))
    if threshold is not None:
        # just below log(threshold): a class whose probability equals it keeps the pixel,
        # as in the authors' ``pred[max_prob < prob_thd] = 0``
        log_thd = torch.tensor(math.log(float(threshold)), dtype=logp.dtype)
        floor = torch.nextafter(log_thd, log_thd.new_tensor(-math.inf))
        logp[:, 0] = logp[:, 0].clamp(min=float(floor))
    return logp / scale


def check_background_options(threshold: float | None, logit_scale: float) -> None:
    """Reject a threshold outside (0, 1] or a non-positive logit scale (one line each)."""
    if threshold is not None and not 0.0 < float(threshold) <= 1.0:
        raise UserError(
            f"teacher.background_threshold={threshold} is not a probability in (0, 1]",
            "give e.g. 0.1 (the training-free protocol's), or null for no threshold",
        )
    if not float(logit_scale) > 0.0:
        raise UserError(
            f"teacher.logit_scale={logit_scale} must be positive",
            "use 100 (CLIP's), 40 or 50 (the training-free heads')",
        )
