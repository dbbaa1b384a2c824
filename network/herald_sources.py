"""Where the heralding station's heralds come from: blocks of heralds decided from tags.

A herald source has ``blocks() -> Iterator[HeraldBlock]``: each `HeraldBlock` holds the
heralds decided from one block of the tag stream, the attempts decided with them, and when
that tag block reached the station. The station (`network.herald_publisher`) runs
``blocks()`` in a reader thread of its own and publishes each block's heralds as soon as the
block is handed over. A source writes the heralds as they go on the wire (the station's link
id, seqs from 0 up): the station sends a block's rows as they are, since every numpy call
between a tag block's arrival and the send adds to the heralds' latency
(docs/link.md#the-stations-schedule).

`TaggerHeralds` is the production source: the station's own lab (its SNSPDs and its time
tagger, loaded with `load_station` for a profile, exactly as any lab), the tagger's tag
blocks fed to `HeraldEngine` as they arrive. Station time of a herald = the station time of
its attempt's first sync tag + the latest end of the attempt's windows (the moment its
outcome was fixed), with tagger time mapped to station time through
`TimeTagger.recording_started` (monotonic s at REC:PLAY) and the station's epoch.

Gating: while it publishes, the station gates each detector input of a tagger that can
(`TimeTagger.supports_gating`) to its herald windows (`herald_gates`: every arm's window on
that detector, widened by `TaggerSource.gate_margin_s` each side), so clicks outside them
(dark counts, transducer noise between attempts: all but window / period of them) never
load the tagger's data link or the engine; the gates are lifted when it stops,
however it stops. The engine's decisions are unchanged: it only looks inside the windows.

`network.test_signals.PeriodicHeralds` is the test signal (tests, benchmarks).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from qnetlab.instruments.errors import ConfigError, InstrumentError

from .messages import HERALD_DTYPE
from .station_arms import StationArms

if TYPE_CHECKING:
    from qnetlab.instruments.lab_config import LabConfig
    from qnetlab.instruments.station import LabStation

    from .herald_engine import HeraldWindows

SOURCE_HERALD_DTYPE = HERALD_DTYPE
"""A herald as a source hands it over: `messages.HERALD_DTYPE`, the station's link id, seqs
numbered from 0 up over the source's blocks (one per herald, in order, none skipped),
`timestamp_ps` in station time."""

_NO_HERALDS = np.zeros(0, SOURCE_HERALD_DTYPE)


@dataclass
class HeraldBlock:
    """The heralds decided from one block of the tag stream."""

    heralds: np.ndarray
    """`SOURCE_HERALD_DTYPE` rows, in attempt order, numbered on from the block before; the
    station's once handed over (it sends and keeps them as they are)."""
    attempts: int
    """Attempts decided with this block (heralded or not)."""
    arrived_ns: int
    """monotonic ns when the tag block reached the station (the latency's origin)."""
    replies: list[tuple[bytes, bytes]] | None = None
    """Answers to arm requests carried out before this block (`station_arms`): (ROUTER
    identity, frame), sent before the block's heralds."""


class HeraldSource(Protocol):
    """What the station runs (in its reader thread): herald blocks as they are decided. A
    source whose arms a bridge's orchestrator may set (`TaggerHeralds`) also has
    ``arm_requests`` (a `station_arms.ArmRequests`)."""

    def blocks(self) -> Iterator[HeraldBlock]: ...


class HeraldSourceFactory(Protocol):
    """Builds a source when the station starts (a picklable callable: the station is a
    process of its own), given the station's epoch (monotonic ns at station time 0) and its
    link id (the heralds' ``link``)."""

    def __call__(self, *, epoch_ns: int, link_id: int) -> HeraldSource: ...


def station_now_ps(epoch_ns: int) -> int:
    """Station time now, ps: (monotonic ns - epoch) x 1000."""
    return (time.monotonic_ns() - epoch_ns) * 1000


@dataclass(frozen=True)
class TaggerSource:
    """The production source's settings (and its factory: calling it opens the lab).

    The station's lab config names the tagger and its detectors; `windows` (from the link
    calibrations: the arms' delays) say which inputs carry the attempt clock and the
    detectors."""

    lab: Path | LabConfig
    """The station's lab config (its instruments, wiring, calibration graph): its file, or
    the config itself (the sim profile's launcher gives the lab as its twins' process serves
    it, on its own ports: `qnetlab.station_twin`)."""
    windows: HeraldWindows
    attempt_period_s: float
    """s between attempts (two-click: two rounds, one sync tag each, per attempt)."""
    profile: str = "sim"
    tagger: str = "tagger"
    """The `TimeTagger` instrument of the lab."""
    simulation: Mapping[str, Any] | None = None
    """The ``qnetlab.simulation.link`` mapping given to the lab (sim profile: the link the
    tagger's twin simulates), or None to load the lab as written."""
    trigger_level: float | None = None
    """V, set on the sync and detector inputs; None: the lab's values."""
    settings: Mapping[str, float] | None = None
    """``instrument[.channel].parameter`` -> value, set after loading (after the lab's
    calibrated values): what a run fixes by hand."""
    recording_s: float = 1000.0
    """Length of each of the tagger's recordings (s; the ID1000 takes at most 1000 s): one
    follows the other for as long as the station runs."""
    gate_margin_s: float | None = 2e-9
    """s added before and after the herald windows on each detector input's gate: room for
    the tagger's jitter (tens of ps rms) and for the arrivals' drift from the calibrated arm
    delays until the next calibration (fibre and tagger delays: tens of ps); a click the
    engine would judge is never cut. None: never gate."""

    def __call__(self, *, epoch_ns: int, link_id: int) -> TaggerHeralds:
        return TaggerHeralds(self, epoch_ns=epoch_ns, link_id=link_id)


class TaggerHeralds:
    """Heralds decided from the station lab's time tagger (see the module docstring).

    The lab is opened (its calibrated values applied, then `TaggerSource.settings`), checked
    and the tagger's inputs configured on construction, in the station's reader thread (a
    lab that cannot be opened stops the station with its error, reported to the launcher);
    `blocks` records and runs the engine there; `close` closes the lab."""

    def __init__(self, settings: TaggerSource, *, epoch_ns: int, link_id: int) -> None:
        from qnetlab.instruments.lab_config import LabConfig, load_config
        from qnetlab.instruments.station import load_station

        from . import _herald_kernel  # compiled (numba), as the engine's pass
        from .herald_engine import HeraldEngine

        self.settings, self.epoch_ns, self.link_id = settings, epoch_ns, link_id
        self.next_seq = 0
        """Seq of the next herald handed over."""
        windows = settings.windows
        # An overflowed block is fed (the carry must go on) and counted; its heralds are
        # dropped in `blocks`.
        self.engine = HeraldEngine(windows, accept_overflow=True)
        self._wire_rows_kernel = _herald_kernel.wire_rows
        # Compile (or load from numba's cache) now, not on the first block: that takes up to
        # a second, which the first heralds would wait for. Channels as the drivers give them.
        self.engine.feed(np.zeros(0, np.int64), np.zeros(0, np.int8))
        self.engine.reset()
        rounds = 2 if windows.scheme == "two_click" else 1
        round_ps = round(settings.attempt_period_s * 1e12) // rounds
        self.round_ps = round_ps
        """ps between sync tags."""
        self._gated: list[int] = []
        """Inputs this source gated (`_gate`)."""
        self.decided_after_ps = 0
        """ps from an attempt's first sync tag to the end of its last window (kept with the
        engine's windows, which an orchestrator may move: `station_arms`)."""
        self._moved(windows)
        self.arms = StationArms(self.engine, link_id, round_ps, self._gate, self._ungate,
                                self._moved, self._tagger_now_ps)
        self.arm_requests = self.arms.requests
        self.counters: Counter[str] = Counter()
        self._offset_ps: int | None = None
        """Station ps of tagger time 0 of the current recording."""
        self._id_offset = 0
        """Attempts started in earlier recordings (attempt ids go on from there)."""
        self._totals: Counter[str] = Counter()
        """The engine's counters of earlier recordings."""
        config = (settings.lab if isinstance(settings.lab, LabConfig)
                  else load_config(settings.lab))
        if settings.simulation is not None:
            config = config.with_simulation(link=dict(settings.simulation))
        # The lab's calibrated values (its SNSPDs' operating bias, ...) applied, as every
        # lab opens for work (`sequences.calibration.startup`); a lab never calibrated as is.
        if config.calibration and config.database is not None and config.database.is_file():
            from qnetlab.sequences.calibration.startup import open_calibrated_station

            self.station: LabStation = open_calibrated_station(config, settings.profile)
        else:
            self.station = load_station(config, settings.profile)
        try:
            _set_parameters(self.station, settings.settings or {})
            self.tagger = _check_lab(self.station, settings)
        except BaseException:
            self.station.close()
            raise

    def blocks(self) -> Iterator[HeraldBlock]:
        """Heralds block by block, recording after recording, until closed; the detector
        inputs gated to the herald windows meanwhile (lifted however it ends)."""
        try:
            self._gate()
            yield from self._recordings()
        finally:
            # Never hides what ended the stream: a gate that would not lift stays listed,
            # and `close` (which the station calls next) tries again and raises.
            with contextlib.suppress(Exception):
                self._ungate()

    def _gate(self, windows: HeraldWindows | None = None) -> None:
        """Gate each detector input whose herald windows (the engine's, or `windows`) leave
        the tagger something to drop (`herald_gates`); counted in ``gated_inputs``."""
        windows = windows or self.engine.windows
        margin = self.settings.gate_margin_s
        if margin is None or not self.tagger.supports_gating:
            return
        gates = herald_gates(windows, self.round_ps, round(margin * 1e12),
                             self.tagger.gate_range_s)
        for n, (open_ps, close_ps) in gates.items():
            self._gated.append(n)  # before: a failure half way still ungates it
            self.tagger.gate(n, sync_channel=windows.sync_channel, open_s=open_ps * 1e-12,
                             close_s=close_ps * 1e-12)
        self.counters["gated_inputs"] = len(gates)

    def _tagger_now_ps(self) -> int:
        """The current recording's tagger time (ps) of now (its start is known once it
        has begun, before any block is fed)."""
        assert self._offset_ps is not None
        return station_now_ps(self.epoch_ns) - self._offset_ps

    def _moved(self, windows: HeraldWindows) -> None:
        """The engine's windows are `windows` now: its heralds are decided at their end."""
        rounds = 2 if windows.scheme == "two_click" else 1
        self.decided_after_ps = (rounds - 1) * self.round_ps + windows.last_end_ps

    def _ungate(self) -> None:
        """Lift the gates `_gate` set (each tried; those that failed stay listed, the first
        failure raised after)."""
        failure: Exception | None = None
        for n in list(self._gated):
            try:
                self.tagger.ungate(n)
            except Exception as exc:  # the others are still lifted
                failure = failure or exc
            else:
                self._gated.remove(n)
        if failure is not None:
            raise failure

    def _recordings(self) -> Iterator[HeraldBlock]:
        while True:
            yield from self._recording()
            # A tagger's recording is finite (the ID1000 takes at most 1000 s): the next
            # starts a new tag clock and sync count. Attempt ids go on from every attempt
            # started so far (the undecided last ones at the seam are skipped, never reused).
            counters = self.engine.counters
            rounds = 2 if self.settings.windows.scheme == "two_click" else 1
            # (rounds are numbered over lost sync tags too: seen + missed)
            self._id_offset += -(-(counters["rounds"] + counters["missed_syncs"]) // rounds)
            self._totals.update({k: v for k, v in counters.items() if k != "pending_rounds"})
            self.counters["recordings"] += 1
            self.arms.recording_ended()
            self.engine.reset()
            self._offset_ps = None

    def _recording(self) -> Iterator[HeraldBlock]:
        engine, counters, arms = self.engine, self.counters, self.arms
        attempts_before = 0
        for block in self.tagger.blocks(self.settings.recording_s):
            arrived_ns = time.monotonic_ns()
            if self._offset_ps is None:  # REC:PLAY has been sent by now
                started_ns = round(self.tagger.recording_started * 1e9)
                self._offset_ps = (started_ns - self.epoch_ns) * 1000
            replies = arms.take(block, self.next_seq) if arms.busy else None
            found = engine.feed_block(block)
            # Each numpy call from here to the send costs the heralds ~3 us on a busy host
            # (bench_delivery): the wire's rows in one compiled call, `attempts` rather than
            # `counters`, nothing for an empty block.
            if block.overflow:
                # Tags were lost inside this block: a lost click can turn a two-click
                # pattern into a false herald, so none decided here is trusted (nor
                # numbered: the nodes see no gap for them).
                counters["heralds_dropped_overflow"] += len(found)
                heralds = _NO_HERALDS
            else:
                heralds = self._wire_rows(found) if len(found) else _NO_HERALDS
            attempts = engine.attempts
            counters["engine_ns"] += time.monotonic_ns() - arrived_ns  # its share of latency
            yield HeraldBlock(heralds, attempts - attempts_before, arrived_ns, replies)
            attempts_before = attempts

    def _wire_rows(self, found: np.ndarray) -> np.ndarray:
        """The engine's heralds as the wire's rows: numbered on, attempt ids counted over the
        recordings, times in station ps at the attempts' decision."""
        assert self._offset_ps is not None  # set before the first block is fed
        rows = self._wire_rows_kernel(found, self._id_offset,
                                      self.decided_after_ps + self._offset_ps, self.link_id,
                                      self.next_seq)
        self.next_seq += len(rows)
        return rows

    def summary(self) -> dict[str, int]:
        """The engine's counters over every recording (tags, rounds, attempts, heralds,
        ...) and the heralds dropped with overflowed blocks, for the station's summary."""
        totals = Counter(self._totals)
        totals.update(self.engine.counters)
        totals.update(self.arms.counters)
        late = getattr(self.tagger, "late_tags", None)  # a driver that counts them
        if late is not None:
            totals["late_tags"] = int(late)
        return {**totals, **self.counters}

    def close(self) -> None:
        try:
            self._ungate()  # blocks() ended without its finally (never started, or left)
        finally:
            self.station.close()


def herald_gates(windows: HeraldWindows, round_ps: int, margin_ps: int,
                 gate_range_s: tuple[float, float] = (0.0, 1.0)) -> dict[int, tuple[int, int]]:
    """Detector input -> its gate (open, close), ps after a sync tag: from the earliest start
    to the latest end of the arms' windows on that detector, `margin_ps` wider each side,
    opened after the sync tag one or more periods earlier so that it opens at 0 to one
    period after that tag (a tagger's window delays are >= 0, and every sync opens one: the
    window after sync k is the one of round k - m). An input whose gate would span a whole
    period (nothing to drop) or not fit the tagger's range is left out."""
    bounds = windows.bounds_ps()
    out = {}
    for d, n in enumerate(windows.detector_channels):
        lo = int(bounds[d, :, 0].min()) - margin_ps
        hi = int(bounds[d, :, 1].max()) + margin_ps
        width = hi - lo
        open_ps = lo % round_ps
        if width >= round_ps or not (gate_range_s[0] <= open_ps * 1e-12
                                     and (open_ps + width) * 1e-12 <= gate_range_s[1]):
            continue
        out[n] = (open_ps, open_ps + width)
    return out


def _set_parameters(station: LabStation, values: Mapping[str, float]) -> None:
    """Set each ``instrument[.channel].parameter`` of `values` on the station."""
    from qnetlab.sequences.calibration.nodes import station_parameter

    config = station.lab_config
    for target, value in values.items():
        try:
            parameter = station_parameter(station, target, str(config.path))
        except KeyError as exc:
            raise ConfigError(str(config.path), target, str(exc.args[0]),
                              "name an instrument[.channel].parameter of the station's lab"
                              ) from None
        parameter.set(value)


def _check_lab(station: LabStation, settings: TaggerSource) -> Any:
    """The lab's tagger, after checking what the station needs of the lab (every instrument
    identifies itself, no parameter outside its limits, a `TimeTagger` with the windows'
    inputs), with the sync and detector inputs enabled and every other input off."""
    from qnetlab.instruments.time_tagger import TimeTagger

    config = station.lab_config
    if station.outside_limits:
        raise config.error("instruments", "parameters outside their limits at load: "
                           + "; ".join(station.outside_limits),
                           "bring them inside their limits (`qnetlab check` lists them)")
    for name, inst in station.instruments().items():
        if inst is station.setup:
            continue
        idn = inst.get_idn()
        if not idn.get("vendor") or not idn.get("model"):
            raise InstrumentError(f"{name} of {config.path} gave no identity to *IDN? "
                                  f"({idn}): check it answers (`qnetlab check {config.path}`)")
    tagger = station.components.get(settings.tagger)
    if not isinstance(tagger, TimeTagger):
        found = "nothing" if tagger is None else type(tagger).__name__
        raise ConfigError(str(config.path), f"instruments.{settings.tagger}",
                          f"the heralding station's tagger is {found}, not a TimeTagger",
                          "name the lab's time tagger in the network config's station.tagger")
    windows = settings.windows
    used = [windows.sync_channel, *windows.detector_channels]
    missing = [n for n in used if n not in tagger.tagger_channels]
    if missing:
        raise ConfigError(str(config.path), f"instruments.{settings.tagger}",
                          f"the tagger has no input(s) {missing} (it has "
                          f"{sorted(tagger.tagger_channels)})",
                          "set station.sync_input / detector_inputs to the tagger's inputs")
    for n, channel in tagger.tagger_channels.items():
        channel.enabled(n in used)  # an unused input only loads the data link
        if n in used and settings.trigger_level is not None:
            channel.trigger_level(settings.trigger_level)
    return tagger
