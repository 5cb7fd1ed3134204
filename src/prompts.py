"""Prompt templates, shared by the teacher's text embeddings and the shapes world's captions.

A contract like :mod:`src.batch`: plain constants, no model or data code. The 80 ImageNet
templates are open_clip's own (``open_clip.zero_shot_metadata``); MaskCLIP adds five scene
templates (REFERENCE section 4).
"""

from __future__ import annotations

from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

#: The 80 prompt templates of CLIP's ImageNet zero-shot classifier (open_clip's list).
IMAGENET_TEMPLATES: tuple[str, ...] = tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)

#: The five scene templates MaskCLIP adds to the ImageNet ones.
SCENE_TEMPLATES: tuple[str, ...] = (
    "there is a {} in the scene.",
    "there is the {} in the scene.",
    "this is a {} in the scene.",
    "this is the {} in the scene.",
    "this is one {} in the scene.",
)

#: The paper's 85 templates (80 ImageNet + 5 scene), the default.
TEMPLATES: tuple[str, ...] = IMAGENET_TEMPLATES + SCENE_TEMPLATES

#: Template sets by name (``teacher.templates=<name>``).
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "imagenet85": TEMPLATES,
    "imagenet80": IMAGENET_TEMPLATES,
    "scene5": SCENE_TEMPLATES,
    "plain": ("{}",),
    "photo": ("a photo of a {}.",),
}


#: Separates the names of one class entry: ``"person, person in shirt"`` is one class.
NAME_SEPARATOR = ","


def entry_names(entry: str) -> list[str]:
    """The names of one class entry (``"person, person in shirt"`` -> two names), stripped.

    A class scores the best of its names (the training-free papers' class-name files); its
    first name is the one shown to users. An entry without any name gives an empty list.
    """
    return [name.strip() for name in str(entry).split(NAME_SEPARATOR) if name.strip()]
