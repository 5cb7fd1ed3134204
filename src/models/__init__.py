"""Models: the DenseCLIP teacher, text embeddings, the DenseCLIP+ student.

Importing this package registers the CLIP configs shipped in ``src/models/weights`` with
open_clip, so those models work like any built-in CLIP.
"""

from src.models.clip_registry import register_shipped_models

register_shipped_models()
