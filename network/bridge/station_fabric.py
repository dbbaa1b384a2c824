"""A bridge fabric whose pairs are heralded by heralding-station processes reading their
time taggers: `StationFabric`.

Each station of the bridge is a `network.heralding_station` process (its lab's SNSPDs and
time tagger, the herald engine on the tag stream) publishing HERALDS frames on its
``herald_address`` (PUB, CURVE server), exactly as for the single link. The fabric subscribes
to every station (a SUB per station, a CURVE client with the orchestrator's key trusting only
that station's key: the node agents' wire, network/messages.py) and reports each herald as a
`fabric.Herald` for the request the scheduler last assigned to that station, if the herald
came after the assignment was ready:

- a herald's time is its station timestamp (the attempt's decision, station ps) carried
  onto the bridge clock by its age on arrival: ``bridge_now - (station_now - timestamp)``;
  `time_scale` must be 1. Station now is read one of two ways (`StationLink.epoch_ns`):
  on one host (`qnetlab bridge --stations`) from the station's epoch on this host's
  monotonic clock; across hosts (``--role``: no shared clock) from the station's own clock
  as its frames show it, ``station_now = local_now - offset`` where the offset is the
  smallest ``local arrival - station time`` of any frame so far (its heartbeats, attempt
  windows and heralds). That takes the fastest frame's one-way delay as zero: every herald
  is dated that much late (tens of us on a LAN), and a station clock that drifts slow
  against this host's is followed, one that runs fast dates heralds early by the drift
  since the fastest frame (20 ppm: 1.2 ms a minute; the heartbeats keep renewing it), both
  far below the guard and the memory cutoff;
- a station's heralds count for a request from its ASSIGN's ready time (switch settled and
  confirmed, stale paths re-checked) plus `StationFabricSettings.guard_s` when its arms may
  have changed (another pair than its last, or one of its QNUs assigned elsewhere since: the
  simulated world follows the switch up to that late); heralds before that, or while nothing
  is assigned, are counted and dropped;
- with a station's ``request_address`` each assignment first sets its arms up
  (`arm_setup`: a stale path re-checked by its tagger, its windows moved to the paths' arm
  delays) and its heralds count only from the first seq decided with those windows; the
  set-up's outcome (measurements, or why it failed) goes to the orchestrator's engine
  through `take_setups`;
- with node agents (`StationFabricSettings.node_agents`), a herald that counts is a pair
  only once both QNUs' nodes at the station said OK to it (`qnu_nodes.QnuNodes`: a CREATE
  to both at each assignment, the verdicts at the request's end);
- the pair's fidelity is the path's link model (`topology.PathLink`), as in the simulated
  fabric: nothing measures it.

Every frame off the wire is hostile until checked: `decode` (each field's legal range), then
what only this receiver can judge (`check_heralds`): one frame per message, a HERALDS or the
station's Heartbeat / AttemptStats and nothing else, the station's own link id, seqs that go
forward (a replayed or repeated seq is refused), no timestamp from the future. A refused frame
is counted under the field it got wrong and logged (the first `LOGGED_REFUSED`); the fabric
keeps serving. Gaps in the seqs (a PUB drops under load) are counted, not fetched again.
Design: docs/bridge.md#stations-on-taggers-behind-the-switch.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from qnetlab.instruments.errors import ConfigError

from ..keys import make_curve_client
from ..messages import (
    MAX_SEQ,
    AttemptStats,
    Heartbeat,
    Heralds,
    MalformedMessage,
    decode,
    limit_frame_size,
)
from .arm_setup import ArmSetup, SetupResult
from .fabric import Herald, PathSetup
from .qnu_nodes import QnuNodes
from .topology import BridgeTopology, PathLink

LOGGED_REFUSED = 100
"""Refused frames logged one by one; beyond, only counted."""
FUTURE_TOLERANCE_PS = 10**9
"""A herald may be timestamped at most this far (1 ms) after the station's now as this host
reads it (the station's clock is this host's: only rounding separates them)."""
MAX_STATION_PS = 2**62
"""Station now before a station's first frame across hosts: no frame is from its future."""
NOT_SET_UP = MAX_SEQ + 1
"""`_StationState.first_seq` while a set-up is under way: no herald counts."""
LATENCIES_KEPT = 100_000
"""Herald latencies kept for the summary (station decision -> the fabric has it)."""


@dataclass(frozen=True)
class StationLink:
    """One station process as the fabric reaches it."""

    station: str
    """The bridge's name of the station (its key name too)."""
    herald_address: str
    """``tcp://HOST:PORT`` of its HERALDS PUB."""
    link_id: int
    """The link id its heralds carry (its `StationSettings.link_id`)."""
    epoch_ns: int | None
    """time.monotonic_ns() at its station time 0 (its `StationSettings.epoch_ns`) when it
    runs on this host; None across hosts: station time is read off its frames (module
    docstring)."""
    request_address: str | None = None
    """``tcp://HOST:PORT`` of its ROUTER, where its arms are set (`arm_setup`); None: its
    windows stay as it started them, and nothing re-checks a stale path."""


@dataclass(frozen=True)
class StationFabricSettings:
    """Where the stations publish and how the fabric listens (picklable: it goes to the
    orchestrator process inside `service.BridgeServiceSettings`)."""

    stations: tuple[StationLink, ...]
    key_dir: Path
    """The lab's CURVE keys: the orchestrator's keypair, each station's public key."""
    name: str = "bridge_orchestrator"
    """The key the fabric's SUBs authenticate with."""
    guard_s: float = 0.0
    """s after a changed pair's ready time before its station's heralds count: 0 on
    hardware (a settled path carries the new pair's light at once); the simulated world's
    `bridge_world.SWITCH_LAG_S` in the sim profile."""
    node_agents: bool = False
    """The QNUs run node agents (`network.node_agent.run_node_agents`), reached through
    the orchestrator's ROUTER: a herald is a pair only once both QNUs' nodes hold it."""
    reconcile_timeout: float = 0.1
    """s a herald that counts, or one node's OK, waits for the rest of its pair's word
    before it is given up (the nodes gather OKs for a few ms; the SUB may lag)."""

    def __post_init__(self) -> None:
        where = "bridge station fabric settings"
        names = [s.station for s in self.stations]
        if not names or len(set(names)) != len(names):
            raise ConfigError(where, "stations", f"{names} must be one or more distinct "
                              "stations", "give each station of the bridge once")
        if not (math.isfinite(self.guard_s) and self.guard_s >= 0.0):
            raise ConfigError(where, "guard_s", f"{self.guard_s!r} must be >= 0 s")
        if not (math.isfinite(self.reconcile_timeout) and self.reconcile_timeout > 0.0):
            raise ConfigError(where, "reconcile_timeout",
                              f"{self.reconcile_timeout!r} must be > 0 s")


class HeraldFrameError(MalformedMessage):
    """A frame a station's SUB refused (never leaves the fabric, which counts it): `field`
    names what was wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)
        self.field, self.reason = field, reason


@dataclass
class _StationState:
    """What the fabric knows of one station's stream and assignment."""

    link: StationLink
    last_seq: int = -1
    """The highest herald seq taken (-1: none yet)."""
    request: str | None = None
    start: float = math.inf
    """s (bridge clock) from which its heralds count for `request`."""
    path: PathLink | None = None
    pair: frozenset[str] = frozenset()
    """The QNUs of the last assignment (a new pair pays the guard)."""
    epoch: int = 0
    offset_ps: int | None = None
    """Across hosts: the smallest (local ps - station ps) of its frames so far."""
    first_seq: int = 0
    """Its heralds count from this seq: the first decided with the windows it was last
    given (`arm_setup`); `NOT_SET_UP` while a set-up is under way."""
    windows_seq: int = 0
    """The first seq of the windows it last confirmed."""


def check_heralds(frames: Sequence[bytes | memoryview], link_id: int, last_seq: int,
                  now_ps: int) -> np.ndarray | None:
    """The herald records of one message off a station's SUB, checked: None for the
    station's Heartbeat or AttemptStats, the records (seq-ordered, each after `last_seq`)
    for HERALDS. Raises `HeraldFrameError` naming the field: ``frames`` (not one frame),
    the decoder's reason (``truncated``, ``bad value``: seq, bell_state or timestamp out of
    range, ...), ``type`` (a message a station does not publish), ``link`` (not this
    station's link), ``seq`` (not after the last one taken, or not increasing within the
    frame), ``timestamp_ps`` (from the future: after `now_ps` + `FUTURE_TOLERANCE_PS`)."""
    if len(frames) != 1:
        raise HeraldFrameError("frames", f"{len(frames)} frames, expected 1")
    try:
        message = decode(frames[0])
    except MalformedMessage as exc:
        raise HeraldFrameError(exc.reason, str(exc)) from None
    if isinstance(message, Heartbeat | AttemptStats):
        return None
    if not isinstance(message, Heralds):
        raise HeraldFrameError("type", f"{type(message).__name__} is not what a station "
                               "publishes")
    records = message.records
    links = records["link"]
    if bool((links != link_id).any()):
        bad = int(links[links != link_id][0])
        raise HeraldFrameError("link", f"link {bad}: this station's heralds carry link "
                               f"{link_id}")
    seqs = records["seq"].astype(np.int64)  # <= MAX_SEQ (2^62 - 1): decode checked it
    if int(seqs[0]) <= last_seq or (len(seqs) > 1 and bool((np.diff(seqs) <= 0).any())):
        raise HeraldFrameError("seq", f"seqs {int(seqs[0])}..{int(seqs[-1])} do not go "
                               f"forward from {last_seq} (a repeated or replayed frame)")
    assert int(seqs[-1]) <= MAX_SEQ
    latest = int(records["timestamp_ps"].max())
    if latest > now_ps + FUTURE_TOLERANCE_PS:
        raise HeraldFrameError("timestamp_ps", f"{latest} ps is {(latest - now_ps) * 1e-12:.3g}"
                               " s in the station's future")
    return records


def station_time_ps(frame: bytes | memoryview) -> int | None:
    """The station time (ps) a station's Heartbeat or AttemptStats carries (checked by
    `check_heralds` first); None for anything else."""
    message = decode(frame)
    if isinstance(message, Heartbeat):
        return int(message.time_ps)
    if isinstance(message, AttemptStats):
        return int(message.window_end_ps)
    return None


class StationFabric:
    """Heralds from station processes (module docstring). `clock`: the bridge's now (s);
    `log`: the orchestrator's decision log."""

    name = "heralding-station processes reading their time taggers"
    simulated = False

    def __init__(self, topology: BridgeTopology, settings: StationFabricSettings,
                 clock: Callable[[], float],
                 log: Callable[[dict[str, Any]], None] | None = None) -> None:
        missing = [s.station for s in settings.stations if s.station not in topology.stations]
        absent = [s for s in topology.stations
                  if s not in {link.station for link in settings.stations}]
        if missing or absent:
            raise ConfigError(f"bridge {topology.name}", "stations",
                              f"the station processes ({[s.station for s in settings.stations]})"
                              f" are not the bridge's stations ({list(topology.stations)})",
                              "start one heralding-station process per station of the bridge")
        self.topology, self.settings, self.clock = topology, settings, clock
        self.log = log or (lambda record: None)
        self.counters: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        """Refused frames by the field they got wrong."""
        self.latencies: list[float] = []
        """s from a herald's decision at its station to the fabric taking it."""
        self.state = {s.station: _StationState(s) for s in settings.stations}
        self.heap: list[tuple[float, int, str, int]] = []
        """(time, seq, station, epoch) of heralds taken, not yet popped."""
        self.context = zmq.Context()
        self.subs: dict[zmq.Socket, str] = {}
        self.arms: dict[str, ArmSetup] = {}
        """Per station with a request address: its arms' set-up."""
        self.setups: list[SetupResult] = []
        """Set-ups ended, not yet taken (`take_setups`)."""
        self.nodes = (QnuNodes(topology.qnus, {s.station: s.link_id for s in settings.stations},
                               clock, self.log, self._held, settings.reconcile_timeout)
                      if settings.node_agents else None)
        """The QNUs' node agents (None: a herald that counts is a pair)."""
        try:
            for link in settings.stations:
                if link.request_address is not None:
                    self.arms[link.station] = ArmSetup(
                        self.context, settings.key_dir, settings.name, link.station,
                        link.request_address, link.link_id)
                sub = self.context.socket(zmq.SUB)
                self.subs[sub] = link.station
                sub.linger = 0
                limit_frame_size(sub)
                sub.rcvhwm = 1_000_000
                make_curve_client(sub, settings.key_dir, settings.name, link.station)
                sub.setsockopt(zmq.SUBSCRIBE, b"")
                sub.connect(link.herald_address)
        except BaseException:
            self.close()
            raise

    # -- the fabric -----------------------------------------------------------------------
    @property
    def measures(self) -> bool:
        """Whether it re-checks stale paths (some station takes arm requests): the results
        come through `take_setups`."""
        return bool(self.arms)

    def assign(self, station: str, request: str, a: str, b: str, ready_at: float,
               setup: PathSetup | None = None) -> None:
        """As `PairFabric.assign`; with a `setup` and the station's request address, the
        station's windows are moved to the paths' arm delays, stale paths re-checked by it
        first (`arm_setup`, without waiting: `take_setups` has the outcome), and its heralds
        count from the first decided with those windows."""
        state = self.state[station]
        arms = self.arms.get(station)
        pair = frozenset((a, b))
        for other in self.state.values():
            if other is not state and other.pair & pair:
                other.pair = frozenset()  # a QNU of its pair moves here: its arms change
        state.epoch += 1
        state.request, state.path = request, self.topology.path_link(a, b, station)
        state.start = ready_at + (self.settings.guard_s if pair != state.pair else 0.0)
        state.pair = pair
        if self.nodes is not None:
            self.nodes.open(station, request, a, b)
        if setup is not None and arms is not None:
            state.first_seq = NOT_SET_UP
            arms.start(request, a, b, setup, self.settings.guard_s)
            self._ended(arms)

    def take_setups(self) -> list[SetupResult]:
        """The set-ups ended since the last call (measured paths, or why one failed)."""
        self.receive()
        done, self.setups = self.setups, []
        return done

    def take_refusals(self) -> list[SetupResult]:
        """Requests a QNU's node refused since the last call (the station stops heralding
        for one it still serves)."""
        if self.nodes is None:
            return []
        refused, self.nodes.refusals = self.nodes.refusals, []
        for result in refused:
            if result.current and self.state[result.station].request == result.request:
                self.release(result.station)
        return refused

    def settle(self, request: str, delivered: list[tuple[str, int]]) -> None:
        """`request` ended with the pairs `delivered` ((station, seq)): the QNUs' nodes get
        their verdicts (nothing to do without node agents)."""
        if self.nodes is not None:
            self.nodes.settle(request, delivered)

    def discard(self, request: str, pairs: list[tuple[str, int]]) -> None:
        """`pairs` ((station, seq)) of `request` are of no use (expired): the QNUs' nodes
        free them (nothing to do without node agents)."""
        if self.nodes is not None:
            self.nodes.discard(request, pairs)

    def take_voided(self) -> list[tuple[str, str, int]]:
        """(request, station, seq) of pairs handed on that a node no longer holds (it
        restarted)."""
        return self.nodes.take_voided() if self.nodes is not None else []

    def _ended(self, arms: ArmSetup) -> None:
        """Each of the station's set-ups that ended: its heralds count from its windows'
        first seq, or, if it failed, the station stops heralding for the request (only if
        it still serves that request)."""
        while arms.ended:
            result = arms.ended.pop(0)
            state = self.state[result.station]
            result.current = state.request == result.request
            self.counters["paths_measured"] += len(result.measured)
            if result.first_seq is not None:
                state.windows_seq = result.first_seq
                self.counters["windows_moved"] += 1
            if result.error is not None:
                self.counters["setups_failed"] += 1
                if result.current:
                    self.release(result.station)
            elif result.current:
                state.first_seq = state.windows_seq
            self.setups.append(result)

    def release(self, station: str) -> None:
        state = self.state[station]
        if self.nodes is not None:
            self.nodes.close(station)
        state.epoch += 1
        state.request, state.path, state.start = None, None, math.inf

    def next_time(self) -> float | None:
        self.receive()
        while self.heap:
            _, seq, station, epoch = self.heap[0]
            if self.state[station].epoch == epoch and (
                    self.nodes is None or self.nodes.holds(station, seq)):
                return self.heap[0][0]
            heapq.heappop(self.heap)
            # released before the engine took it, or a node no longer holds it (restarted)
            self.counters["heralds_void"] += 1
        return None

    def pop(self, now: float) -> Herald | None:
        at = self.next_time()
        if at is None or at > now:
            return None
        _, seq, station, _ = heapq.heappop(self.heap)
        state = self.state[station]
        assert state.request is not None and state.path is not None
        self.counters["heralds_reported"] += 1
        # which station herald became the request's pair (its truth joins on it in sim)
        self.log({"time": at, "event": "herald_taken", "station": station,
                  "request": state.request, "seq": seq})
        return Herald(at, station, state.request, state.path, seq)

    # -- the wire -------------------------------------------------------------------------
    def sockets(self) -> list[zmq.Socket]:
        """The SUBs and the arm requests' DEALERs, for the orchestrator's poller (a herald or
        a station's answer wakes it)."""
        return [*self.subs, *(arms.socket for arms in self.arms.values())]

    def receive(self) -> None:
        """Take the stations' answers to arm requests (first: a set-up's end decides which
        heralds count), then every message waiting on their SUBs."""
        for arms in self.arms.values():
            arms.take()  # always: a late answer left unread would wake the poll loop forever
            arms.expired()
            self._ended(arms)
        for sub, station in self.subs.items():
            for _ in range(10_000):  # bounded: a flood must not starve the clients
                try:
                    frames = sub.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self.take(station, [f.buffer for f in frames])
        if self.nodes is not None:
            self.nodes.tick()

    def take(self, station: str, frames: Sequence[bytes | memoryview]) -> None:
        """One message from `station`'s SUB: checked, then its heralds taken."""
        state = self.state[station]
        link = state.link
        local_ps = time.monotonic_ns() * 1000
        if link.epoch_ns is not None:
            now_ps = local_ps - link.epoch_ns * 1000
        elif state.offset_ps is not None:
            now_ps = local_ps - state.offset_ps
        else:  # its first frame: nothing yet to say what its future is
            now_ps = MAX_STATION_PS
        try:
            records = check_heralds(frames, link.link_id, state.last_seq, now_ps)
            if link.epoch_ns is None:
                stamp = station_time_ps(frames[0]) if records is None else \
                    int(records["timestamp_ps"].max())
                if stamp is not None and (state.offset_ps is None
                                          or local_ps - stamp < state.offset_ps):
                    state.offset_ps = local_ps - stamp
                now_ps = local_ps - (state.offset_ps if state.offset_ps is not None else 0)
        except HeraldFrameError as exc:
            self.refused[exc.field] += 1
            if sum(self.refused.values()) <= LOGGED_REFUSED:
                self.log({"time": self.clock(), "event": "herald_refused", "station": station,
                          "field": exc.field, "reason": exc.reason[:300]})
            return
        if records is None:
            return
        now = self.clock()
        seqs = records["seq"].astype(np.int64)
        self.counters["heralds_missed"] += int(seqs[0]) - state.last_seq - 1 \
            if state.last_seq >= 0 else 0
        self.counters["heralds_missed"] += int(seqs[-1] - seqs[0]) + 1 - len(seqs)
        state.last_seq = int(seqs[-1])
        ages = (now_ps - records["timestamp_ps"].astype(np.int64)) * 1e-12
        self.counters["heralds_received"] += len(records)
        for seq, age in zip(seqs.tolist(), ages.tolist(), strict=True):
            if len(self.latencies) < LATENCIES_KEPT:
                self.latencies.append(age)
            at = now - max(age, 0.0)
            if state.request is None:
                ignored = "heralds_unassigned"
            elif at < state.start:
                ignored = "heralds_before_ready"
            elif seq < state.first_seq:
                ignored = "heralds_before_windows"
            else:
                ignored = ""
            if ignored:
                self.counters[ignored] += 1
            if self.nodes is not None:  # a pair once both QNUs' nodes hold it too (`_held`)
                self.nodes.judged(station, seq, None if ignored else at, state.epoch)
            elif not ignored:
                heapq.heappush(self.heap, (at, seq, station, state.epoch))

    def _held(self, station: str, seq: int, at: float, epoch: int) -> None:
        """Both QNUs' nodes hold herald `seq` of `station`: a pair for its request."""
        heapq.heappush(self.heap, (at, seq, station, epoch))

    # -- the end --------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Counters, refused frames by field, herald latency (station -> fabric) p50/max."""
        latency = np.asarray(self.latencies)
        return {"counters": dict(self.counters), "refused": dict(self.refused),
                "arm_answers_refused": sum(a.refused_answers for a in self.arms.values()),
                "latency_s": ({"p50": float(np.median(latency)),
                               "p99": float(np.percentile(latency, 99)),
                               "max": float(latency.max()), "count": int(latency.size)}
                              if latency.size else None),
                "guard_s": self.settings.guard_s,
                "node_agents": self.nodes.summary() if self.nodes is not None else None}

    def close(self) -> None:
        for sub in self.subs:
            sub.close(0)
        for arms in self.arms.values():
            arms.close()
        self.context.term()
