"""Write a few scenes of the embedded shapes world as PNG files, to try prediction offline.

    python scripts/make_scenes.py scenes/            # 4 scenes: scenes/shapes_0.png, ...
    python scripts/make_scenes.py scenes/ --count 8

The scenes are the web page's examples (``src/web/examples.py``): validation scenes of the
shapes world's two renderers, at the size the shipped tiny CLIPs know; deterministic.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.errors import UserError  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``make_scenes.py FOLDER [--count N]``; exit 2 on a user error."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="where the PNG files go (created if missing)")
    parser.add_argument("--count", type=int, default=4, help="how many scenes (default 4)")
    args = parser.parse_args(argv)
    try:
        if args.count < 1:
            raise UserError(f"--count {args.count} is not a positive number", "give e.g. --count 4")
        folder = Path(args.folder)
        if folder.exists() and not folder.is_dir():
            raise UserError(f"{folder} is a file, not a folder", "pass a folder")
        from src.web.examples import write_examples

        try:
            paths = write_examples(folder, args.count)
        except OSError as err:
            raise UserError(f"cannot write into {folder}: {err.strerror or err}") from None
    except UserError as err:
        if os.environ.get("HYDRA_FULL_ERROR", "0") == "1":
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(paths)} scenes into {folder}: {', '.join(p.name for p in paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
