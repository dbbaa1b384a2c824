"""Progress of a run: a tqdm bar on a terminal or in a notebook, plain lines in a log.

On a terminal (or a Jupyter kernel, through ``tqdm.auto``'s widget) the bar shows the steps
done, the elapsed time, the rate and the time left, with the current step's label or a live
value beside it. When the output is not a terminal (a redirected log, a pipe, a CI job) a bar
redrawn with ``\\r`` would fill the file with frames, so each step done gets one plain line
instead, with the same numbers. `note` writes a line of its own without breaking the bar: an
interlock pausing or resuming the run says so there.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def _interactive(stream: TextIO) -> bool:
    """A terminal, or a running Jupyter kernel's output (where tqdm.auto draws a widget)."""
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return True
    return stream in (sys.stdout, sys.stderr) and _in_jupyter_kernel()


def _in_jupyter_kernel() -> bool:
    """Inside a Jupyter kernel's shell (not merely with ipykernel imported)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def _clock(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}" if hours else f"{m}:{s:02d}"


class Progress:
    """Progress over `total` steps on `stream` (default: stderr, so that a script's stdout
    stays clean). ``quiet=True`` writes nothing at all."""

    def __init__(self, total: int, label: str, *, quiet: bool = False,
                 stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.label = label
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._started = time.monotonic()
        self._bar: Any = None
        self._printed = 0
        if not quiet and _interactive(self.stream):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=label, unit="step", file=self.stream,
                             dynamic_ncols=True, leave=True)

    def update(self, done: int, detail: str = "") -> None:
        """`done` steps finished; `detail`: the step under way, or a live value."""
        self.done = done
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.n = done
            self._bar.set_postfix_str(detail, refresh=False)
            self._bar.refresh()
            return
        if done > self._printed:  # a line per step done, not per label change
            self._printed = done
            self._line(f"{done}/{self.total} {detail}".rstrip())

    def note(self, message: str) -> None:
        """A line of its own (the bar, if any, redrawn below it)."""
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.write(f"{self.label}: {message}", file=self.stream)
            return
        self.stream.write(f"{self.label}: {message}\n")
        self.stream.flush()

    def close(self, message: str = "") -> None:
        """End the bar, with `message` on a line of its own (e.g. where a run stopped)."""
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if message:
            self.stream.write(f"{self.label}: {message}\n")
            self.stream.flush()

    def _line(self, text: str) -> None:
        elapsed = time.monotonic() - self._started
        times = f"{_clock(elapsed)} elapsed"
        if 0 < self.done < self.total:
            times += f", ~{_clock(elapsed / self.done * (self.total - self.done))} left"
        self.stream.write(f"{self.label}: {text} [{times}]\n")
        self.stream.flush()
