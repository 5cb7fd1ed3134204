"""DenseCLIP, the training-free teacher: open_clip loading, dense features, refinements, text
embeddings, and the frozen :class:`DenseClipTeacher` built from them.

Importing this package adds the tiny CLIPs shipped in ``src/teacher/weights`` to open_clip's
model configs, so ``teacher.clip_model=tiny_shapes`` works like any open_clip name.
"""

from src.teacher.loading import register_shipped_models
from src.teacher.model import DenseClipTeacher

register_shipped_models()

__all__ = ["DenseClipTeacher", "register_shipped_models"]
