"""What every output records of the model that made it: the teacher's full config.

Predict's ``legend.json``, eval's ``metrics.json``, the web page's request folder and an
exported model's metadata all carry :func:`teacher_record`: every keyword argument that builds
the teacher (CLIP and its weights, templates, head, head options, proxy and its weights,
refinement, background, logit scale), so two outputs made two ways never look alike.
"""

from __future__ import annotations

import json
from typing import Any

#: teacher arguments that are not settings of its scores: the vocabulary (recorded beside
#: it as the classes) and where caches live
_NOT_RECORDED = ("class_names", "cache_dir")


def teacher_record(teacher: Any) -> dict[str, Any]:
    """The teacher's config (``DenseClipTeacher.config()``) as plain JSON values, less the
    vocabulary and cache paths; ``head_options`` always a mapping (``{}``: the authors')."""
    config = {k: v for k, v in teacher.config().items() if k not in _NOT_RECORDED}
    config["head_options"] = dict(config.get("head_options") or {})
    return json.loads(json.dumps(config, sort_keys=True, default=str))
