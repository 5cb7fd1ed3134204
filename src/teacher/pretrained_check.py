"""A cheap check of a teacher's ``pretrained`` before anything is built (the web page checks
its default teacher before it serves): a tag open_clip or the shipped tiny CLIPs know, or an
existing file."""

from __future__ import annotations

import os
from pathlib import Path

from src.errors import UserError


def check_pretrained(clip_model: str, pretrained: str | None) -> None:
    """Raise a :class:`UserError` when ``pretrained`` is neither a known tag of
    ``clip_model`` nor an existing file (``None``: random weights, accepted). Whether a
    tag's weights are on this machine is left to the loader (it knows the download rules)."""
    if pretrained in (None, "", "none", "None"):
        return
    from open_clip import pretrained as oc_pretrained

    from src.teacher.loading import known_tags, register_shipped_models, shipped_weights

    register_shipped_models()
    lookup = clip_model.replace("/", "-")
    if shipped_weights(lookup, pretrained) is not None:
        return
    if oc_pretrained.is_pretrained_cfg(lookup, pretrained):
        return
    if Path(os.path.expanduser(str(pretrained))).is_file():
        return
    tags = known_tags(lookup)
    raise UserError(
        f"teacher.pretrained={pretrained} is neither an existing file nor a tag of {clip_model}",
        "pass the path of the weights file (teacher.pretrained=/path/to/weights.pt)"
        + (f", or one of the tags {', '.join(tags)}" if tags else ""),
    )
