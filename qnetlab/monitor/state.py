"""The monitor's picture of the lab: every telemetry message folded into bounded state.

Pure Python (no Bokeh, no sockets), so it is tested without a browser. One `MonitorState`
per monitor server: its subscriber thread folds what arrives (`fold_all`), every browser
session reads what is new for it (`view`). Everything is bounded however long the page stays
open and whatever comes off the wire: `history` points per series (a ring), at most
`MAX_SERIES` series, `MAX_LINKS` links and `MAX_SOURCES` sources; what would exceed a bound
is dropped and counted in `dropped`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import islice

from qnetlab.network.telemetry import (
    CalibrationStates,
    LinkStatistics,
    SequenceProgress,
    TelemetryMessage,
    ValueReading,
)
from qnetlab.network.telemetry_messages import RequestEvent, SwitchConfiguration

from .timeline import BridgeTimeline, TimelineSnapshot

HISTORY_POINTS = 3600
"""Points kept per series: an hour of trend at one sample a second; older points roll off."""
MAX_SERIES = 256
"""Most series (source/parameter) the monitor keeps: a hostile or buggy publisher inventing
names cannot grow the monitor without bound."""
MAX_LINKS = 64
MAX_SOURCES = 64
MAX_SEQUENCES = 32
"""Sequences kept (the newest; a day in the lab runs many): the oldest is forgotten first."""


@dataclass
class Series:
    """One plotted quantity: `key` ``"<source>/<name>"``, its `kind` (which panel shows it),
    `unit`, and its last `history` points ``(time UNIX s, value)``; `count` is how many were
    ever appended, so a reader asks for the points after the `count` it saw last."""

    key: str
    source: str
    name: str
    kind: str
    unit: str
    points: deque[tuple[float, float]]
    count: int = 0

    def append(self, t: float, value: float) -> None:
        self.points.append((t, value))
        self.count += 1

    def since(self, count: int) -> list[tuple[float, float]]:
        """The points appended after the reader's `count` (all still kept if it fell
        behind by more than the ring holds)."""
        new = self.count - count
        if new <= 0:
            return []
        if new >= len(self.points):
            return list(self.points)
        return list(islice(reversed(self.points), new))[::-1]  # no copy of the whole ring


@dataclass(frozen=True)
class Latest:
    """A series' newest value, for the value table."""

    key: str
    source: str
    name: str
    kind: str
    unit: str
    time: float
    value: float


@dataclass(frozen=True)
class View:
    """What one browser session needs at one refresh, copied out under the lock:
    `new_points` per series key (only those it had not seen), the newest value of every
    series, and the latest progress, calibration and link statistics."""

    series: dict[str, tuple[str, str, str]]  # key -> (kind, unit, label)
    new_points: dict[str, list[tuple[float, float]]]
    counts: dict[str, int]
    latest: list[Latest]
    sequences: list[SequenceProgress]
    calibrations: list[CalibrationStates]
    links: list[LinkStatistics]
    silent: list[tuple[str, float]]
    received: int
    dropped: int
    version: int


@dataclass
class MonitorState:
    """Bounded state folded from telemetry. `sources` are the publishers the config names
    (each is reported silent until it is heard); `clock` gives the monitor's own time (UNIX
    s), by which silence is judged: a remote host's clock may be off, its messages' times
    are only plotted."""

    sources: Iterable[str] = ()
    history: int = HISTORY_POINTS
    clock: Callable[[], float] = time.time
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.history < 1:
            raise ValueError(f"history must hold at least one point, not {self.history}")
        self.expected = tuple(self.sources)
        self.started = self.clock()
        self.last_heard: dict[str, float] = {}
        self.series: dict[str, Series] = {}
        self.sequences: dict[tuple[str, str], SequenceProgress] = {}
        self.calibrations: dict[str, CalibrationStates] = {}
        self.links: dict[tuple[str, str], LinkStatistics] = {}
        self.received = 0
        self.dropped = 0
        self.version = 0
        self.timelines: dict[str, BridgeTimeline] = {}
        """Bridge orchestrator (source) -> its timeline (`timeline.BridgeTimeline`)."""
        self.timeline_version = 0

    # --- folding (the subscriber thread) ------------------------------------------------

    def fold_all(self, messages: Iterable[TelemetryMessage]) -> None:
        """Fold every message, under the lock."""
        with self.lock:
            for message in messages:
                self._fold(message)

    def _fold(self, message: TelemetryMessage) -> None:
        source = message.source
        if source not in self.last_heard and len(self.last_heard) >= MAX_SOURCES:
            self.dropped += 1
            return
        self.last_heard[source] = self.clock()
        self.received += 1
        self.version += 1
        if isinstance(message, ValueReading):
            self._add_point(f"{source}/{message.name}", source, message.name, message.kind,
                            message.unit, message.time, message.value)
        elif isinstance(message, SequenceProgress):
            key = (source, message.sequence)
            if key not in self.sequences and len(self.sequences) >= MAX_SEQUENCES:
                oldest = min(self.sequences, key=lambda k: self.sequences[k].time)
                del self.sequences[oldest]
            self.sequences[key] = message
        elif isinstance(message, CalibrationStates):
            self.calibrations[source] = message  # sources are bounded above
        elif isinstance(message, LinkStatistics):
            self._fold_link(message)
        elif isinstance(message, SwitchConfiguration | RequestEvent):
            timeline = self.timelines.setdefault(source, BridgeTimeline(source))
            if not timeline.fold(message):  # sources are bounded above
                self.dropped += 1
            self.timeline_version += 1

    def _fold_link(self, message: LinkStatistics) -> None:
        source = message.source
        if not self._keep(self.links, (source, message.link), message, MAX_LINKS):
            return
        prefix = f"{source}/link {message.link}"
        self._add_point(f"{prefix}.herald_rate", source, f"{message.link} herald rate",
                        "herald_rate", "Hz", message.time, message.herald_rate_hz)
        self._add_point(f"{prefix}.delivered", source, f"{message.link} delivered",
                        "delivered", "", message.time, float(message.delivered))

    def _keep(self, table: dict, key: tuple[str, str], message: TelemetryMessage,
              bound: int) -> bool:
        if key not in table and len(table) >= bound:
            self.dropped += 1
            return False
        table[key] = message
        return True

    def _add_point(self, key: str, source: str, name: str, kind: str, unit: str,
                   t: float, value: float) -> None:
        series = self.series.get(key)
        if series is None:
            if len(self.series) >= MAX_SERIES:
                self.dropped += 1
                return
            series = Series(key, source, name, kind, unit, deque(maxlen=self.history))
            self.series[key] = series
        series.kind, series.unit = kind, unit
        # A sampler republishes a parameter's cache until the lab reads it again: the same
        # measurement (same time, same value) is one point, not a flat run filling the ring.
        if not series.points or series.points[-1] != (t, value):
            series.append(t, value)

    # --- reading (each browser session) -------------------------------------------------

    def silent(self, after_s: float) -> list[tuple[str, float]]:
        """``(source, seconds)`` for every source heard nothing from for more than
        `after_s` seconds (an expected source never heard counts from the monitor's start).
        Call under the lock."""
        now = self.clock()
        quiet = []
        for source in dict.fromkeys([*self.expected, *self.last_heard]):
            since = now - self.last_heard.get(source, self.started)
            if since > after_s:
                quiet.append((source, since))
        return quiet

    def view(self, seen: Mapping[str, int], silent_after_s: float) -> View:
        """What a session that has seen `seen` (series key -> count) needs now."""
        with self.lock:
            return View(
                series={k: (s.kind, s.unit, f"{s.source} {s.name}")
                        for k, s in self.series.items()},
                new_points={k: s.since(seen.get(k, 0)) for k, s in self.series.items()
                            if s.count > seen.get(k, 0)},
                counts={k: s.count for k, s in self.series.items()},
                latest=[Latest(k, s.source, s.name, s.kind, s.unit, *s.points[-1])
                        for k, s in sorted(self.series.items()) if s.points],
                sequences=sorted(self.sequences.values(), key=lambda p: -p.time),
                calibrations=[self.calibrations[k] for k in sorted(self.calibrations)],
                links=[self.links[k] for k in sorted(self.links)],
                silent=self.silent(silent_after_s),
                received=self.received, dropped=self.dropped, version=self.version,
            )

    def timeline_view(self, seen_version: int) -> tuple[int, list[TimelineSnapshot]] | None:
        """The bridge timelines (one per orchestrator, by name) if they changed since
        `seen_version`, with the version to pass next time; None when unchanged."""
        with self.lock:
            if self.timeline_version == seen_version:
                return None
            return self.timeline_version, [self.timelines[k].snapshot()
                                           for k in sorted(self.timelines)]
