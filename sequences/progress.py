"""A plain-text progress bar (no dependency): ``label [#####.....] 5/10 detail``."""

from __future__ import annotations

import sys
from typing import TextIO


class Progress:
    """Progress over `total` steps, redrawn in place on `stream` (default: stderr, so that
    a script's stdout stays clean). ``quiet=True`` draws nothing at all."""

    WIDTH = 30

    def __init__(self, total: int, label: str, *, quiet: bool = False,
                 stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.label = label
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._drawn = False

    def update(self, done: int, detail: str = "") -> None:
        self.done = done
        if self.quiet:
            return
        filled = round(self.WIDTH * done / self.total)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        # '\r' redraws the line; the trailing spaces wipe a longer previous detail.
        self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total} {detail:<40}")
        self.stream.flush()
        self._drawn = True

    def close(self, message: str = "") -> None:
        """End the bar's line, with `message` (e.g. where an interrupted run stopped)."""
        if self.quiet or not (self._drawn or message):
            return
        self.stream.write(f"  {message}\n" if message else "\n")
        self.stream.flush()
