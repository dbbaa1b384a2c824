"""A heralding station's arms, set by the bridge's orchestrator between tag blocks.

When a bridge's switch joins two QNUs to a station's arms, the orchestrator sends the station
the paths' stored arm delays (`SetArmDelays`: the engine's windows and the tagger's gates
move there) and, for a stale path, first asks it to measure where the photons arrive
(`MeasureArrivals`: the re-check). The station's loop thread takes the request off its
ROUTER and hands it over (`ArmRequests.put`); the reader thread, which alone touches the
engine and the tagger, carries it out between two tag blocks (`StationArms.take`), and the
answer leaves on the ROUTER with the next block published (`HeraldBlock.replies`).

Design and numbers: docs/bridge.md#per-path-calibrations.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from qnetlab.instruments.errors import ConfigError

from .arm_messages import (
    ArmDelaysSet,
    ArmStatus,
    ArrivalsMeasured,
    MeasureArrivals,
    SetArmDelays,
)

if TYPE_CHECKING:
    from qnetlab.instruments.tag_blocks import TagBlock

    from .herald_engine import HeraldEngine, HeraldWindows

Reply = tuple[bytes, bytes]
"""(ROUTER identity of the asker, the answer's frame)."""

MAX_ROUNDS_OPEN = 100
"""Rounds an arm's windows may end after their sync at most (a 2 km arm is ~1 at 100 kHz):
beyond, the engine would hold that many rounds open for every one decided."""

MAX_MEASURED_TAGS = 20_000_000
"""Tags a measurement keeps at most (320 MB): a longer one is fitted on what it has."""


class ArmRequests:
    """Arm requests from the station's loop thread to its reader thread (thread-safe)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[bytes, SetArmDelays | MeasureArrivals]] = \
            queue.SimpleQueue()

    def put(self, identity: bytes, request: SetArmDelays | MeasureArrivals) -> None:
        self._queue.put((identity, request))

    def pending(self) -> bool:
        return not self._queue.empty()

    def get(self) -> tuple[bytes, SetArmDelays | MeasureArrivals] | None:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None


@dataclass
class _Measurement:
    identity: bytes
    request: MeasureArrivals
    start_ps: int | None = None
    """Tagger ps from which tags count (set by its first block)."""
    end_ps: int | None = None
    """Tagger ps at which it ends (set by its first block)."""
    parts: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    tags: int = 0


class StationArms:
    """Carries out arm requests for a station's `TaggerHeralds` (module docstring).

    `gate(windows)` gates the tagger's detector inputs to `windows`, `ungate()` lifts the
    gates (both the source's own); `moved(windows)` tells the source its windows changed (its
    heralds' decision time follows the last window's end). `tagger_now_ps()`: the tagger time
    (ps) of now, from which a measurement's tags count: the blocks still queued from before
    the request were drawn before the switch changed the arms (a station that fell behind
    would histogram another path's light); None: from its first block's first tag."""

    def __init__(self, engine: HeraldEngine, link_id: int, round_ps: int,
                 gate: Callable[[HeraldWindows], None], ungate: Callable[[], None],
                 moved: Callable[[HeraldWindows], None],
                 tagger_now_ps: Callable[[], int] | None = None) -> None:
        self.engine, self.link_id, self.round_ps = engine, link_id, round_ps
        self._gate, self._ungate, self._moved = gate, ungate, moved
        self._tagger_now_ps = tagger_now_ps
        self.requests = ArmRequests()
        self.counters: dict[str, int] = {"arm_delays_set": 0, "arrivals_measured": 0,
                                         "arm_requests_refused": 0,
                                         "measured_blocks_skipped": 0}
        self._measuring: _Measurement | None = None
        # The fit's modules (scipy among them) now, while the station opens its lab: on the
        # first re-check they took ~1 s, which the path's set-up waited for.
        import qnetlab.sequences.calibration.link_nodes  # noqa: F401

    @property
    def busy(self) -> bool:
        """A request waits, or a measurement runs (the source asks before each block)."""
        return self._measuring is not None or self.requests.pending()

    def take(self, block: TagBlock, next_seq: int) -> list[Reply]:
        """Before `block` is fed: carry out the requests waiting, add the block to a running
        measurement; the answers ready (`next_seq`: the seq of the block's first herald)."""
        replies: list[Reply] = []
        while self._measuring is None and (item := self.requests.get()) is not None:
            identity, request = item
            if isinstance(request, SetArmDelays):
                replies.append((identity, self._set(request, next_seq).encode()))
            else:
                self._ungate()  # every click passes while the arrivals are histogrammed
                self._measuring = _Measurement(identity, request)
        if self._measuring is not None and self._record(block):
            replies.append(self._finish())
        return replies

    # -- windows ------------------------------------------------------------------------------
    def _set(self, request: SetArmDelays, next_seq: int) -> ArmDelaysSet:
        windows = self.engine.windows
        a, b = request.arm_a_ps, request.arm_b_ps
        try:
            moved = replace(windows, offsets_ps=((a, b), (a, b)))
            if windows.arms != 2 or moved.last_end_ps >= MAX_ROUNDS_OPEN * self.round_ps:
                raise ConfigError("arm delays", "arm_a_ps/arm_b_ps", "no room")
            self.engine.set_windows(moved)
        except ConfigError:
            self.counters["arm_requests_refused"] += 1
            return ArmDelaysSet(self.link_id, request.seq, ArmStatus.REFUSED, 0)
        self._ungate()
        self._gate(moved)
        self._moved(moved)
        self.counters["arm_delays_set"] += 1
        return ArmDelaysSet(self.link_id, request.seq, ArmStatus.DONE, next_seq)

    # -- arrivals -----------------------------------------------------------------------------
    def recording_ended(self) -> None:
        """The tagger's recording ended (the next one restarts its clock): a measurement
        running starts again with the next one."""
        if self._measuring is not None:
            self._measuring = _Measurement(self._measuring.identity, self._measuring.request)

    def _record(self, block: TagBlock) -> bool:
        """Keep `block`'s sync and detector tags; whether the measurement is complete."""
        m = self._measuring
        assert m is not None
        ts, ch = block.timestamps, block.channels
        if not len(ts):
            return False
        if m.start_ps is None:
            m.start_ps = (int(ts[0]) if self._tagger_now_ps is None
                          else max(int(ts[0]), self._tagger_now_ps()))
            m.end_ps = m.start_ps + m.request.duration_us * 1_000_000
        assert m.end_ps is not None
        if int(ts[-1]) < m.start_ps:
            self.counters["measured_blocks_skipped"] += 1  # queued from before the request
            return False
        w = self.engine.windows
        keep = np.isin(ch, (w.sync_channel, *w.detector_channels)) & (ts >= m.start_ps)
        if m.tags < MAX_MEASURED_TAGS:
            m.parts.append((ts[keep].copy(), ch[keep].copy()))
            m.tags += int(keep.sum())
        return int(ts[-1]) >= m.end_ps or m.tags >= MAX_MEASURED_TAGS

    def _finish(self) -> Reply:
        m = self._measuring
        assert m is not None
        self._measuring = None
        self._gate(self.engine.windows)
        answer = measure_arrivals(m.request, m.parts, self.engine.windows, self.round_ps,
                                  self.link_id)
        self.counters["arrivals_measured"] += 1
        return m.identity, answer.encode()


def measure_arrivals(request: MeasureArrivals, parts: list[tuple[np.ndarray, np.ndarray]],
                     windows: HeraldWindows, round_ps: int, link_id: int) -> ArrivalsMeasured:
    """Each requested arm's arrival (ps after the sync) from the recorded tags: the peak
    nearest its nominal delay of both detectors' clicks (`link_nodes.fit_arrival`, searched
    as the single link's arm-delay calibration searches), its error the larger of the fit's
    and the fit's scatter over bootstrap resamples (`link_nodes.arrival_error`)."""
    from qnetlab.sequences.calibration.link_nodes import arrival_offsets, arrival_search_range

    ts = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    ch = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
    syncs = int(np.count_nonzero(ch == windows.sync_channel))
    clicks = int(ts.size) - syncs
    nominal = {1: request.nominal_a_ps, 2: request.nominal_b_ps}
    result = {1: (0, 0), 2: (0, 0)}

    def answer(status: ArmStatus, arm: int = 0) -> ArrivalsMeasured:
        return ArrivalsMeasured(link_id, request.seq, status, arm, *result[1], *result[2],
                                clicks, syncs)

    if syncs == 0:
        return answer(ArmStatus.NO_SYNC)
    # (nominal, half range) searched -> what was found: equal arms share one search
    found: dict[tuple[int, int], tuple[int, int] | None] = {}
    for arm in (1, 2):
        if not request.arms & arm:
            continue
        half_ps = round(arrival_search_range(
            nominal[arm] * 1e-12, [nominal[3 - arm] * 1e-12], windows.window_ps * 1e-12,
            round_ps * 1e-12) * 1e12)
        search = (nominal[arm], half_ps)
        if search not in found:
            # Both detectors' clicks in one histogram: the bridge keeps one arm delay per
            # path, and a re-check's fraction of a second holds too few clicks at the
            # arrival's edge to fit each detector alone (the fit wants 20 in its nanosecond).
            offsets = np.concatenate([arrival_offsets(ts, ch, windows.sync_channel, detector,
                                                      nominal[arm], half_ps)[0]
                                      for detector in windows.detector_channels])
            found[search] = _arrival(offsets, syncs, clicks, windows, nominal[arm], half_ps,
                                     seed=request.seq)
        arrival = found[search]
        if arrival is None:
            return answer(ArmStatus.NO_PEAK, arm)
        result[arm] = arrival
    return answer(ArmStatus.DONE)


def _arrival(offsets: np.ndarray, syncs: int, clicks: int, windows: HeraldWindows,
             nominal_ps: int, half_ps: int, seed: int) -> tuple[int, int] | None:
    """(arrival ps, its error ps: `link_nodes.arrival_error`) of the peak in `offsets`, or
    None without one."""
    from qnetlab.sequences.analysis import Verdict
    from qnetlab.sequences.calibration.link_nodes import arrival_error, fit_arrival

    inputs = {"sync_input": windows.sync_channel,
              "detector_input": windows.detector_channels[0], "nominal_ps": nominal_ps,
              "half_range_ps": half_ps}
    found = fit_arrival(offsets, syncs, clicks, **inputs)
    if isinstance(found, Verdict):
        return None
    error = arrival_error(found, offsets, syncs, clicks, seed=seed, **inputs)
    return max(round(found.delay_ps), 0), max(round(error), 1)
