"""The font of labels drawn with PIL (overlay legends, validation panels): DejaVu Sans from
matplotlib (Latin, Greek, Cyrillic, Arabic, Hebrew, ...), or an installed font that has the
glyphs of the text when DejaVu does not (e.g. Noto CJK for Chinese class names), so class
names never render as boxes. :func:`shorten` keeps a long phrase from widening a legend.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import cache, lru_cache
from pathlib import Path

from PIL import ImageFont

log = logging.getLogger(__name__)

MAX_LABEL_CHARS = 40  #: longer class names are shortened with an ellipsis in pictures


def shorten(text: str, limit: int = MAX_LABEL_CHARS) -> str:
    """``text`` cut to ``limit`` characters, ending in ``…`` when cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@cache
def _dejavu() -> str:
    import matplotlib

    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")


@cache
def _codepoints(path: str) -> frozenset[int]:
    """The characters a font file has glyphs for (empty if it cannot be read)."""
    try:
        from fontTools.ttLib import TTFont

        with TTFont(path, lazy=True, fontNumber=0) as font:
            return frozenset(font.getBestCmap() or {})
    except Exception:  # not a font fontTools reads: never chosen
        return frozenset()


def covers(path: str, text: str) -> bool:
    """Whether the font file at ``path`` has a glyph for every visible character of ``text``."""
    points = _codepoints(path)
    return all(ord(c) in points for c in text if not c.isspace())


@cache
def _installed() -> tuple[str, ...]:
    from matplotlib import font_manager

    paths = {f.fname for f in font_manager.fontManager.ttflist}
    fonts = (p for p in paths if p.lower().endswith((".ttf", ".otf", ".ttc")))
    # LastResort maps every character to a placeholder box: it covers all and draws none
    return tuple(sorted(p for p in fonts if "lastresort" not in Path(p).name.lower()))


@lru_cache(maxsize=256)
def font_path_for(text: str) -> str:
    """DejaVu Sans, or the first installed font that covers ``text`` when DejaVu does not."""
    if covers(_dejavu(), text):
        return _dejavu()
    for path in _installed():
        if covers(path, text):
            return path
    log.warning(
        "no installed font has glyphs for %r; it may show as boxes (install e.g. Noto CJK)", text
    )
    return _dejavu()


def label_font(size: int, texts: Iterable[str] = ()) -> ImageFont.FreeTypeFont:
    """A TrueType font of ``size`` pixels that can draw every one of ``texts``."""
    joined = "".join(sorted(set("".join(texts))))
    return ImageFont.truetype(font_path_for(joined), size=max(1, int(size)))
