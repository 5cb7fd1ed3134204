"""The one exception type for user errors.

Everything a user can get wrong (a missing file, a bad option, an empty class list) raises
:class:`UserError` with the thing at fault and the fix. The entry points catch it once and
print it without a traceback (``HYDRA_FULL_ERROR=1`` shows the trace).
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input: says what is wrong and how to fix it."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem}\n  fix: {fix}")


def shorten(text: str, limit: int = 300) -> str:
    """``text`` on one line, cut at a word boundary after at most ``limit`` characters (with
    ``…``): a message keeps its beginning, which names the problem."""
    flat = " ".join(str(text).split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0] if " " in flat[:limit] else flat[:limit]
    return cut.rstrip(" ,;:") + " …"
