"""Models loaded once and used for many predictions (the web page): a small cache of built
teachers and students, a :class:`~src.prediction.predictor.Predictor` for any vocabulary
from a cached model, and the teacher heads this version offers.

Loading a CLIP or a checkpoint takes seconds; a new vocabulary only re-encodes the class
names (the teacher's text cache makes a repeated one a file read). Plain typed code: the
caller (``src.app``) says how to build a model; nothing here reads a config.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from src.prediction.predictor import (
    Predictor,
    predictor_from_student,
    predictor_from_teacher,
    set_student_classes,
)


def teacher_heads() -> list[str]:
    """The values ``teacher.head`` accepts: the registered heads
    (:func:`src.teacher.heads.registered_heads`), read at run time, so a new head shows up in
    the web page and the GPU benchmark without changes there."""
    from src.teacher.heads import registered_heads

    return registered_heads()


def teacher_has_head_option() -> bool:
    """Whether ``DenseClipTeacher`` takes a ``head`` argument (``teacher.head=...``)."""
    from src.teacher.model import DenseClipTeacher

    return "head" in inspect.signature(DenseClipTeacher.__init__).parameters


@dataclass
class LoadedModel:
    """A built teacher or student and what it was loaded as."""

    model: Any  #: a DenseClipTeacher or a DenseClipPlus, on its device, in eval mode
    kind: str  #: "teacher" or "student"
    info: dict[str, Any] = field(default_factory=dict)  #: for legend.json ("model")
    own_classes: list[str] = field(default_factory=list)  #: the vocabulary it was built with
    load_seconds: float = 0.0


class ModelCache:
    """The ``capacity`` most recently used models, each built once by the caller's function.

    Models are changed by a new vocabulary, so a caller holds :attr:`lock` from
    :meth:`get` until its prediction is done (one prediction at a time).
    """

    def __init__(self, capacity: int = 2) -> None:
        if capacity < 1:
            raise ValueError("the model cache needs room for at least one model")
        self.capacity = capacity
        self.lock = threading.RLock()
        self._models: OrderedDict[Hashable, LoadedModel] = OrderedDict()
        self.loads = 0  #: how many models were built (a cached one is not counted again)

    def get(self, key: Hashable, build: Callable[[], LoadedModel]) -> tuple[LoadedModel, bool]:
        """The model for ``key`` and whether it was cached; ``build`` runs only on a miss
        (an exception in it leaves the cache as it was)."""
        with self.lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key], True
            start = time.perf_counter()
            loaded = build()
            loaded.load_seconds = time.perf_counter() - start
            self.loads += 1
            self._models[key] = loaded
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return loaded, False

    def __len__(self) -> int:
        return len(self._models)


def vocabulary_predictor(loaded: LoadedModel, classes: Sequence[str] | None) -> Predictor:
    """A :class:`Predictor` of the loaded model on ``classes`` (``None``: its own vocabulary);
    the text embeddings are re-encoded only when the vocabulary changes."""
    names = list(loaded.own_classes if classes is None else classes)
    model = loaded.model
    if loaded.kind == "teacher":
        if list(model.class_names) != names:
            model.set_class_names(names)
        predictor = predictor_from_teacher(model)
    else:
        if list(model.teacher.class_names) != names:
            set_student_classes(model, names)
        predictor = predictor_from_student(model)
    predictor.info.update(loaded.info)
    return predictor
