"""Progress bars that are live in a terminal and stay readable in CI logs (a line every 15 s
instead of a carriage-return storm)."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress(total: int, desc: str, unit: str = "step"):
    interactive = sys.stderr.isatty()
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        dynamic_ncols=interactive,
        ncols=None if interactive else 100,
        mininterval=0.2 if interactive else 15.0,
        ascii=not interactive,
        leave=True,
    )
