"""The one teacher factory of the entry points (``src.train``, ``src.eval``, ``src.predict``,
``src.app``): a ``conf/teacher`` node and a vocabulary -> a built
:class:`~src.teacher.model.DenseClipTeacher`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from src.utils.task import instantiate


def build_teacher(
    node: Any,
    class_names: Sequence[str],
    *,
    cache_dir: str | os.PathLike | None,
    background: str | Sequence[str] | None = None,
    device: Any = None,
) -> Any:
    """The teacher of config ``node`` on ``class_names`` (``background``: the data's
    background words, where it scores them; ``device``: where it runs, else where it was
    built), in eval mode. Bad options are the teacher's one-line :class:`UserError`."""
    extra = {} if background is None else {"background": background}
    teacher = instantiate(node, class_names=list(class_names), cache_dir=cache_dir, **extra)
    if device is not None:
        teacher = teacher.to(device)
    return teacher.eval()
