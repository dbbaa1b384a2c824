"""A whole link without processes or sockets: a minimal station, two `Node`s and the
`_Orchestrator`, fed each other's frames through a discrete-event network on a virtual
clock, so delays, reorderings, drops, backlogs and restarts are chosen, not suffered.

The production state machines run unchanged: only the module-level ``time`` they read is
replaced by the virtual clock (`VirtualClock`), and their sockets by recorders. Each
channel (station PUB -> node, node <-> station requests, node <-> orchestrator) is FIFO,
as a TCP connection is, with a random delay per frame; the PUB may also drop frames (its
high-water mark). A node or the orchestrator that is "busy" takes what queued meanwhile in
one batch, as the node agent's drain does. A node restart drops everything in flight to and
from the dead incarnation and starts a fresh `Node` on the same pair log.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from qnetlab.network import node_state as node_state_module
from qnetlab.network import orchestrator as orchestrator_module
from qnetlab.network.messages import (
    STATION_SENDER_ID,
    AttemptStats,
    Heartbeat,
    Heralds,
    ResendRequest,
    decode,
    encode_heralds,
    incarnation_seq,
    make_heralds,
)
from qnetlab.network.network_config import OK_INTERVAL_S
from qnetlab.network.node_state import PAIR_LOG_DTYPE, Node, NodeSettings, PairEvent
from qnetlab.network.orchestrator import OrchestratorSettings, _Orchestrator
from qnetlab.network.tracker import HeraldHistory

LINK = 0
NODES = ("node_a", "node_b")
EPOCH_NS = 10**12
"""Virtual monotonic ns at station time 0."""


class VirtualClock:
    """What the state machines read of ``time``: monotonic and wall clocks that move only
    when the simulation says so."""

    def __init__(self) -> None:
        self.ns = EPOCH_NS
        self.wall_offset_ns = 1_700_000_000 * 10**9

    def monotonic_ns(self) -> int:
        return self.ns

    def monotonic(self) -> float:
        return self.ns * 1e-9

    def time_ns(self) -> int:
        return self.ns + self.wall_offset_ns

    def time(self) -> float:
        return self.time_ns() * 1e-9

    def now_ps(self) -> int:
        """Station time (ps)."""
        return (self.ns - EPOCH_NS) * 1000


class _Recorder:
    """Stands in for a DEALER or PUB: what is sent goes to `deliver(frame)`."""

    def __init__(self, deliver: Callable[[bytes], None]) -> None:
        self.deliver = deliver

    def send(self, frame: bytes, *args: Any, **kwargs: Any) -> None:
        self.deliver(bytes(frame))


class _Router:
    """Stands in for the orchestrator's ROUTER: `deliver(route, frame)`."""

    def __init__(self, deliver: Callable[[bytes, bytes], None]) -> None:
        self.deliver = deliver

    def send_multipart(self, frames: list[bytes], *args: Any, **kwargs: Any) -> None:
        route, frame = frames
        self.deliver(bytes(route), bytes(frame))


@dataclass
class Faults:
    """What the network and the processes do to the link (all off by default)."""

    delay_s: float = 0.0002
    """Mean of each frame's exponential delay on every channel (s)."""
    slow_node: dict[str, float] = field(default_factory=dict)
    """node -> the largest lag (s) of the PUB frames it receives: a node that falls behind
    and catches up, its lag ``max * (1 - cos(2 pi t / slow_period_s)) / 2`` (`lag_s`)."""
    slow_period_s: float = 0.1
    reorder_s: float = 0.0
    """Mean of an extra exponential delay per herald frame, outside the FIFO: frames
    overtake each other (a node sees gaps and asks for resends)."""
    burst_every_s: float = 0.0
    """Every so often a node stalls for `burst_s` (a loaded host): what queued comes at once."""
    burst_s: float = 0.0
    pub_drop: float = 0.0
    """Probability a PUB frame is dropped (resends then fill the gap, or it is lost)."""
    restarts: tuple[tuple[float, str], ...] = ()
    """(station time s, node): the node agent is killed and started afresh."""
    orchestrator_stall: tuple[float, float] = (0.0, 0.0)
    """(start s, length s): the orchestrator takes nothing for a while."""


@dataclass
class StationRecord:
    """What the station decided (the truth the test checks deliveries against)."""

    seqs: list[np.ndarray] = field(default_factory=list)
    records: list[np.ndarray] = field(default_factory=list)

    def all(self) -> np.ndarray:
        from qnetlab.network.messages import HERALD_DTYPE

        return np.concatenate(self.records) if self.records else np.zeros(0, HERALD_DTYPE)


class VirtualLink:
    """Station, two nodes and the orchestrator on a virtual clock."""

    def __init__(self, tmp_path: Path, monkeypatch: Any, *, rate_hz: float, pairs: int,
                 faults: Faults, seed: int, memory_cutoff: float = 0.01,
                 block_s: float = 0.001, reconcile_timeout: float = 0.05,
                 ok_interval: float = OK_INTERVAL_S) -> None:
        self.clock = VirtualClock()
        monkeypatch.setattr(node_state_module, "time", self.clock)
        monkeypatch.setattr(orchestrator_module, "time", self.clock)
        incarnations = itertools.count(1000)
        monkeypatch.setattr(node_state_module, "new_incarnation", lambda: next(incarnations))
        self.rng = np.random.default_rng(seed)
        self.faults = faults
        self.restarts = sorted(faults.restarts)
        """(station time s, node) restarts still to come."""
        self.tmp_path = tmp_path
        self.rate_hz, self.block_s, self.memory_cutoff = rate_hz, block_s, memory_cutoff
        self.ok_interval = ok_interval
        self.queue: list[tuple[int, int, str, str, bytes]] = []
        self.order = itertools.count()
        self.channel_free: dict[tuple[str, str], int] = {}
        """Each channel's last delivery time: FIFO."""
        # -- station
        self.history = HeraldHistory(1 << 20)
        self.next_seq = 0
        self.next_attempt = 0
        self.station_incarnation = 77
        self.heartbeat_seq = 0
        self.truth = StationRecord()
        # -- nodes and orchestrator
        self.node_files: dict[str, tuple[Any, Any]] = {}
        self.nodes: dict[str, Node] = {}
        self.generation: dict[str, int] = dict.fromkeys(NODES, 0)
        self.busy_until: dict[str, int] = {}
        for node_id, name in enumerate(NODES, start=1):
            self._start_node(name, node_id)
        settings = OrchestratorSettings(
            name="orchestrator", address="", key_dir=None, run_dir=tmp_path, link_id=LINK,
            nodes=NODES, node_ids=(1, 2), pairs=pairs, epoch_ns=EPOCH_NS, max_time=1e6,
            reconcile_timeout=reconcile_timeout)
        self.orchestrator = _Orchestrator(settings, _Router(self._from_orchestrator))  # type: ignore[arg-type]
        self.log: list[str] = []

    # -- plumbing --------------------------------------------------------------------------
    def _post(self, source: str, target: str, frame: bytes, extra_s: float = 0.0,
              overtake_s: float = 0.0) -> None:
        """Deliver `frame` after a random delay (+ `extra_s`), FIFO on its channel, then
        `overtake_s` more outside the FIFO (later frames may overtake it)."""
        delay_ns = round((self.rng.exponential(self.faults.delay_s) + extra_s) * 1e9)
        channel = (source, target)
        at = max(self.clock.ns + delay_ns, self.channel_free.get(channel, 0))
        self.channel_free[channel] = at
        at += round(overtake_s * 1e9)
        heapq.heappush(self.queue, (at, next(self.order), source, target, frame))

    def _from_node(self, name: str, generation: int, to: str) -> Callable[[bytes], None]:
        def deliver(frame: bytes) -> None:
            if self.generation[name] == generation:  # a dead incarnation says nothing
                self._post(f"{name}#{generation}", to, frame)
        return deliver

    def _from_orchestrator(self, route: bytes, frame: bytes) -> None:
        # Without CURVE a node's route is its name: to its live incarnation.
        self._post("orchestrator", self._node_address(route.decode()), frame)

    def _start_node(self, name: str, node_id: int) -> None:
        generation = self.generation[name] = self.generation.get(name, 0) + 1
        settings = NodeSettings(
            name=name, node_id=node_id, link_id=LINK, station_name="station",
            herald_address="", request_address="", orchestrator_name="orchestrator",
            orchestrator_address="", key_dir=None, run_dir=self.tmp_path,
            memory_cutoff=self.memory_cutoff, goodness=0.9, expected_pair_rate=self.rate_hz,
            epoch_ns=EPOCH_NS, resend_timeout=0.004, resend_attempts=4,
            ok_interval=self.ok_interval)
        if name in self.node_files:
            for handle in self.node_files[name]:
                handle.close()
        pairs = open(self.tmp_path / f"{name}_pairs.bin", "ab")  # noqa: SIM115
        events = open(self.tmp_path / f"{name}_events.jsonl", "a")  # noqa: SIM115
        self.node_files[name] = (pairs, events)
        sub = _Recorder(lambda frame: None)
        station = _Recorder(self._from_node(name, generation, "station"))
        orchestrator = _Recorder(self._from_node(name, generation, "orchestrator"))
        self.nodes[name] = Node(settings, sub, station, orchestrator, pairs, events)  # type: ignore[arg-type]

    def restart(self, name: str) -> None:
        """Kill `name` (what it holds and what is in flight to or from it is gone) and start
        a fresh node agent on the same pair log."""
        node_id = NODES.index(name) + 1
        old = self.generation[name]
        self.queue = [item for item in self.queue
                      if item[3] != f"{name}#{old}" and item[2] != f"{name}#{old}"]
        heapq.heapify(self.queue)
        self._start_node(name, node_id)
        self.log.append(f"restart {name} at {self.clock.now_ps() * 1e-12:.3f} s")

    # -- the station -----------------------------------------------------------------------
    def station_block(self, until_ps: int) -> None:
        """Every attempt up to `until_ps` heralded at `rate_hz` (a Poisson stream), published
        as one frame (as the station publishes a tag block's heralds)."""
        start_ps = self.next_attempt
        if until_ps <= start_ps:
            return
        n = self.rng.poisson(self.rate_hz * (until_ps - start_ps) * 1e-12)
        times = np.sort(self.rng.integers(start_ps, until_ps, n))
        self.next_attempt = until_ps
        if not n:
            return
        seqs = np.arange(self.next_seq, self.next_seq + n)
        self.next_seq += n
        records = make_heralds(LINK, seqs, times // 1000, times % 2, times)
        self.history.append(records)
        self.truth.records.append(records)
        for name in NODES:
            for frame_records in np.array_split(records, max(1, -(-n // 4096))):
                if self.rng.random() < self.faults.pub_drop:
                    continue
                self._post("station", self._node_address(name), encode_heralds(frame_records),
                           self.lag_s(name, self.clock.now_ps() * 1e-12),
                           self.rng.exponential(self.faults.reorder_s))

    def lag_s(self, name: str, t_s: float) -> float:
        """The extra lag (s) of `name`'s herald frames published at station time `t_s`."""
        largest = self.faults.slow_node.get(name, 0.0)
        return largest * (1 - np.cos(2 * np.pi * t_s / self.faults.slow_period_s)) / 2

    def station_chores(self, heartbeat: bool, stats: bool) -> None:
        now_ps = self.clock.now_ps()
        frames = []
        if heartbeat:
            seq = incarnation_seq(self.heartbeat_seq, self.station_incarnation)
            frames.append(Heartbeat(STATION_SENDER_ID, seq, now_ps).encode())
            self.heartbeat_seq += 1
        if stats:
            frames.append(AttemptStats(LINK, 0, max(1, self.next_seq), self.next_seq, now_ps,
                                       self.next_seq, self.station_incarnation).encode())
        for name in NODES:
            for frame in frames:
                self._post("station", self._node_address(name), frame)

    def _node_address(self, name: str) -> str:
        return f"{name}#{self.generation[name]}"

    def _station_request(self, source: str, frame: bytes) -> None:
        message = decode(frame)
        if isinstance(message, ResendRequest):
            rows = self.history.get(message.first_seq, message.last_seq)
            if len(rows):
                self._post("station-reply", source, encode_heralds(rows))
        # Clock requests need no answer: the nodes read station time from the epoch.

    # -- running ---------------------------------------------------------------------------
    def _deliver_to_node(self, target: str, batch: list[tuple[str, bytes]]) -> None:
        name, _, generation = target.partition("#")
        if int(generation) != self.generation[name]:
            return  # to a dead incarnation: lost
        node = self.nodes[name]
        now_ns = self.clock.ns
        heralds: list[np.ndarray] = []

        def handle_heralds() -> None:
            if heralds:
                node.on_heralds(np.concatenate(heralds), now_ns, fresh=True)
                heralds.clear()

        for source, frame in batch:
            if source == "orchestrator":
                handle_heralds()
                node.on_orchestrator_frame(frame, now_ns)
                continue
            message = node.decoder.decode(frame)
            if isinstance(message, Heralds) and source == "station-reply":
                handle_heralds()
                node.on_station_reply(frame, now_ns)
            elif isinstance(message, Heralds):
                heralds.append(message.records)
            else:
                handle_heralds()
                node.on_station_pub(message)
        handle_heralds()

    def _orchestrator_receive(self, source: str, frame: bytes) -> None:
        name = source.partition("#")[0]
        self.orchestrator.receive([zmq.Frame(name.encode()), zmq.Frame(frame)])

    def run(self, seconds: float, *, heralds: bool = True, step_s: float = 0.0001) -> None:
        """Advance the virtual clock by `seconds`: station blocks (if `heralds`), timers, and
        every frame delivered when due (to a busy receiver: when it is free, in one batch)."""
        end_ns = self.clock.ns + round(seconds * 1e9)
        step_ns = round(step_s * 1e9)
        block_ns = round(self.block_s * 1e9)
        restarts = self.restarts
        while self.clock.ns < end_ns:
            self.clock.ns += step_ns
            now = self.clock.ns
            t_s = self.clock.now_ps() * 1e-12
            while restarts and restarts[0][0] <= t_s:
                self.restart(restarts.pop(0)[1])
            if heralds and now % block_ns < step_ns:
                self.station_block(self.clock.now_ps())
            self.station_chores(heartbeat=now % 50_000_000 < step_ns,
                                stats=now % 100_000_000 < step_ns)
            self._bursts(now, step_ns)
            self._deliver_due(now)
            for node in self.nodes.values():
                if now % 10_000_000 < step_ns:
                    node.heartbeat()
                    node.check_station()
                if node.requested:
                    node.request_gaps()
                node.flush_oks()
            stall_start, stall_length = self.faults.orchestrator_stall
            if not stall_start <= t_s < stall_start + stall_length:
                self.orchestrator.tick()

    def _bursts(self, now: int, step_ns: int) -> None:
        every = round(self.faults.burst_every_s * 1e9)
        if every and now % every < step_ns:
            for name in NODES:
                if self.rng.random() < 0.5:
                    self.busy_until[name] = now + round(self.faults.burst_s * 1e9)

    def _deliver_due(self, now: int) -> None:
        due: dict[str, list[tuple[str, bytes]]] = {}
        held: list[tuple[int, int, str, str, bytes]] = []
        t_s = self.clock.now_ps() * 1e-12
        stall_start, stall_length = self.faults.orchestrator_stall
        while self.queue and self.queue[0][0] <= now:
            item = heapq.heappop(self.queue)
            _, _, source, target, frame = item
            name = target.partition("#")[0]
            busy = self.busy_until.get(name, 0) > now or (
                target == "orchestrator" and stall_start <= t_s < stall_start + stall_length)
            if busy:
                held.append(item)
                continue
            if target == "station":
                self._station_request(source, frame)
                continue
            due.setdefault(target, []).append((source, frame))
        for item in held:  # as they were: first once the receiver is free (FIFO kept)
            heapq.heappush(self.queue, item)
        for target, batch in due.items():
            if target == "orchestrator":
                for source, frame in batch:
                    self._orchestrator_receive(source, frame)
                self.orchestrator.flush()  # as the loop does after a drain
            else:
                self._deliver_to_node(target, batch)

    # -- reading the outcome ---------------------------------------------------------------
    def close(self) -> None:
        for handles in self.node_files.values():
            for handle in handles:
                handle.close()

    def pair_log(self, name: str) -> np.ndarray:
        for handle in self.node_files[name]:
            handle.flush()
        return np.fromfile(self.tmp_path / f"{name}_pairs.bin", PAIR_LOG_DTYPE)


def events_of(log: np.ndarray, event: PairEvent) -> set[int]:
    return set(log["seq"][log["event"] == event].tolist())
