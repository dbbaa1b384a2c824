"""Progress of a run: a tqdm bar on a terminal or in a notebook, plain lines in a log.

On a terminal (or a Jupyter kernel, through ``tqdm.auto``'s widget) the bar shows the steps
done, the elapsed time, the rate and the time left, with the current step's label or a live
value beside it. When the output is not a terminal (a redirected log, a pipe, a CI job) a bar
redrawn with ``\\r`` would fill the file with frames, so each step done gets one plain line
instead, with the same numbers. `note` writes a line of its own without breaking the bar: an
interlock pausing or resuming the run says so there.

Beside the terminal, a run can be reported to a `RunReporter` (the CLI's telemetry for
``qnetlab monitor``): `reporting_to` registers one for a block of code, and every `Progress`
made inside it tells it each step (``running``), an interlock's ``paused`` / ``resumed``
(`interlock`) and how the run ended (``finished`` or ``stopped``, with the reason); a
calibration session tells it its graph's node states (`report_calibration`). The protocol is
defined here so that sequences never import the network that carries it. A reporter that
fails is logged and dropped, never allowed to stop a measurement.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, TextIO

log = logging.getLogger(__name__)

RUN_STATES = ("running", "paused", "resumed", "finished", "stopped")
"""What `RunReporter.sequence_progress` is told a run is doing."""

NodeState = tuple[str, str, float | None, float | None]
"""A calibration node as reported: (name, state in the graph's words, age in s of its last
good calibration or None, its timeout in s or None)."""


class RunReporter(Protocol):
    """Told what runs and calibrations do (e.g. the network's telemetry publisher)."""

    def sequence_progress(self, sequence: str, done: int, total: int, label: str,
                          state: str, reason: str) -> None:
        """`done` of `total` steps of `sequence`; `state` one of `RUN_STATES`; `reason`
        why it paused or stopped ("" otherwise)."""

    def calibration_states(self, nodes: Sequence[NodeState]) -> None:
        """Every node of the calibration graph being maintained, after one changed."""


_reporters: list[RunReporter] = []


@contextlib.contextmanager
def reporting_to(reporter: RunReporter) -> Iterator[RunReporter]:
    """Report every run and calibration inside the block to `reporter` as well."""
    _reporters.append(reporter)
    try:
        yield reporter
    finally:
        with contextlib.suppress(ValueError):  # already dropped if it failed
            _reporters.remove(reporter)


def _tell(reporters: list[RunReporter], method: str, *args: Any) -> None:
    """Call `method` of each reporter; one that fails is removed from `reporters` and from
    the registered ones."""
    for reporter in list(reporters):
        try:
            getattr(reporter, method)(*args)
        except Exception as exc:  # an observer must never stop a measurement
            log.warning("progress reporter %r failed (%r); it is not told more", reporter, exc)
            reporters.remove(reporter)
            with contextlib.suppress(ValueError):
                _reporters.remove(reporter)


def reporting() -> bool:
    """Whether any reporter is registered (`reporting_to`)."""
    return bool(_reporters)


def report_calibration(nodes: Sequence[NodeState]) -> None:
    """Tell the registered reporters a calibration graph's node states."""
    if _reporters:
        _tell(list(_reporters), "calibration_states", list(nodes))


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


LIVE_PERIOD_S = 0.5
"""Live values inside a step are shown (and published) at most this often, s."""


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
        self._reporters = list(_reporters)
        self._detail = ""
        self._live_at = -float("inf")
        self._tell("running", "")
        if not quiet and _interactive(self.stream):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=label, unit="step", file=self.stream,
                             dynamic_ncols=True, leave=True)

    def update(self, done: int, detail: str = "") -> None:
        """`done` steps finished; `detail`: the step under way, or a live value."""
        self.done = done
        self._detail = detail
        self._tell("running", "")
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

    def wants_live(self) -> bool:
        """Whether a live value given now would be shown (`live`'s rate limit)."""
        return time.monotonic() - self._live_at >= LIVE_PERIOD_S

    def live(self, detail: str) -> None:
        """A live value inside the step under way (e.g. the latest reading): on the bar
        and to the reporters, at most every `LIVE_PERIOD_S`; a log gets no line (its lines
        are per step)."""
        if not self.wants_live():
            return
        self._live_at = time.monotonic()
        self._detail = detail
        self._tell("running", "")
        if self._bar is not None:
            self._bar.set_postfix_str(detail, refresh=True)

    def note(self, message: str) -> None:
        """A line of its own (the bar, if any, redrawn below it)."""
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.write(f"{self.label}: {message}", file=self.stream)
            return
        self.stream.write(f"{self.label}: {message}\n")
        self.stream.flush()

    def interlock(self, state: str, message: str) -> None:
        """An interlock `state` ("paused", "resumed" or "stopped") with its `message`: a
        line of its own (`note`), and the reporters told the state and why."""
        self._tell(state, message)
        self.note(message)

    def close(self, message: str = "") -> None:
        """End the bar, with `message` on a line of its own (e.g. where a run stopped):
        the reporters are told the run finished, or stopped with `message` as the reason."""
        self._tell("stopped" if message else "finished", message)
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if message:
            self.stream.write(f"{self.label}: {message}\n")
            self.stream.flush()

    def _tell(self, state: str, reason: str) -> None:
        if self._reporters:
            _tell(self._reporters, "sequence_progress", self.label, self.done, self.total,
                  self._detail, state, reason)

    def _line(self, text: str) -> None:
        elapsed = time.monotonic() - self._started
        times = f"{_clock(elapsed)} elapsed"
        if 0 < self.done < self.total:
            times += f", ~{_clock(elapsed / self.done * (self.total - self.done))} left"
        self.stream.write(f"{self.label}: {text} [{times}]\n")
        self.stream.flush()
