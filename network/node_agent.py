"""A node agent process: receives its link's heralds and answers the link layer's CREATEs.

Sockets (all CURVE clients that trust only the configured server keys): SUB to the station's
heralds (heralds, heartbeats, AttemptStats); DEALER to the station's requests (ResendRequest,
ClockRequest); DEALER to the orchestrator (Heartbeat, ACK, OK, ERR out; CREATE and verdicts
in). What the node does with them is `network.node_state.Node`. A herald's receipt is stamped right
after the recv that took it; the receive loop is arranged so that stamp is as early as it can
be (docs/link.md#the-node-agent). `run_node_agents` runs several nodes in one process, one
per heralding station a bridge's switch can join its QNU to (docs/bridge.md#node-agents-per-qnu).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import zmq

from ._faults import HandshakeWatch, watch_node_handshakes
from .keys import make_curve_client
from .link_telemetry import NodeTelemetry, link_name, open_publisher
from .messages import Heralds, limit_frame_size
from .node_state import LATENCY_DTYPE, PAIR_LOG_DTYPE, Node, NodeSettings, PairEvent

__all__ = ["LATENCY_DTYPE", "PAIR_LOG_DTYPE", "NodeSettings", "PairEvent", "run_node_agent",
           "run_node_agents"]


def _drain(socket: zmq.Socket, handle: Any) -> None:
    while True:
        try:
            frame = socket.recv(zmq.NOBLOCK)
        except zmq.Again:
            return
        handle(frame, time.monotonic_ns())


_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)
"""As plain ints: pyzmq's enum flags cost ~2.5 us per test, paid several times a herald."""


def _readable(socket: zmq.Socket) -> bool:
    """Whether a message waits on `socket` (zmq.EVENTS: no poll, no wait)."""
    return bool(int(socket.getsockopt(_EVENTS)) & _POLLIN)


_DRAIN_FRAMES = 4096
"""Herald frames taken off the SUB socket before they are handled as one batch."""


def _drain_heralds(node: Node, socket: zmq.Socket, other: Any,
                   first: tuple[bytes, int] | None = None) -> None:
    """Everything queued on the herald socket (after `first`, a frame and its receipt time
    already taken), in the order it came: consecutive herald frames are handled together, in
    one vectorised pass, so a backlog is cleared at full speed (the latency of each is still
    its own); any other message (AttemptStats, Heartbeat) only after the heralds before it,
    since it speaks of them (a count of decided heralds, a station restart)."""
    batch: list[np.ndarray] = []
    received: list[int] = []
    for _ in range(_DRAIN_FRAMES):
        if first is not None:
            (frame, received_ns), first = first, None
        elif not _readable(socket):  # cheaper than a recv raising zmq.Again
            break
        else:
            try:
                frame = socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            received_ns = time.monotonic_ns()
        message = node.decoder.decode(frame)
        if isinstance(message, Heralds):
            batch.append(message.records)
            received.append(received_ns)
        else:
            _handle_heralds(node, batch, received)
            batch, received = [], []
            other(message)
    _handle_heralds(node, batch, received)


def _handle_heralds(node: Node, batch: list[np.ndarray], received: list[int]) -> None:
    if len(batch) == 1 and len(batch[0]) == 1:
        node.on_herald(batch[0], received[0])
    elif len(batch) == 1:
        node.on_heralds(batch[0], received[0], fresh=True)
    elif batch:
        times = np.repeat(np.array(received, np.int64), [len(b) for b in batch])
        node.on_heralds(np.concatenate(batch), times, fresh=True)


@contextlib.contextmanager
def _opened(settings: NodeSettings, context: zmq.Context) -> Iterator[tuple[Node, NodeTelemetry]]:
    """A node with its three sockets connected and its files open; on the way out its OKs
    flushed, its sockets closed and its record written (the context is the caller's)."""
    sub = context.socket(zmq.SUB)
    station = context.socket(zmq.DEALER)
    orchestrator = context.socket(zmq.DEALER)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    run_dir, name = settings.run_dir, settings.name
    node: Node | None = None
    watch: HandshakeWatch | None = None
    telemetry: NodeTelemetry | None = None
    try:
        if settings.key_dir is not None:
            make_curve_client(sub, settings.key_dir, name, settings.station_name)
            make_curve_client(station, settings.key_dir, name, settings.station_name)
            make_curve_client(orchestrator, settings.key_dir, name,
                              settings.orchestrator_name)
            # A wrong key is reported to the launcher at once (before connecting).
            watch = watch_node_handshakes(settings, sub, station, orchestrator)
        for socket in (sub, station, orchestrator):
            socket.linger = 0
        # A full send queue means a peer that takes nothing: the frame is dropped and
        # counted (`Node._send`), never waited for.
        station.sndtimeo = orchestrator.sndtimeo = 0
        limit_frame_size(sub, station, orchestrator)
        sub.rcvhwm = 1_000_000
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        if settings.key_dir is None:  # no keys to tell who is who: say it (benchmark only)
            station.identity = orchestrator.identity = name.encode()
        sub.connect(settings.herald_address)
        station.connect(settings.request_address)
        orchestrator.connect(settings.orchestrator_address)
        pairs = open(run_dir / f"{name}_pairs.bin", "ab")  # noqa: SIM115 (closed below)
        events = open(run_dir / f"{name}_events.jsonl", "a")  # noqa: SIM115
        node = Node(settings, sub, station, orchestrator, pairs, events)
        node.event("started", pid=os.getpid())
        telemetry = NodeTelemetry(
            open_publisher(settings.telemetry_address, settings.key_dir, name), name,
            link_name(settings.link_nodes or (name,)))
        yield node, telemetry
    finally:
        if node is not None:
            with contextlib.suppress(zmq.ZMQError):  # OKs logged here are due to the orchestrator
                node.flush_oks(force=True)
        if telemetry is not None:
            if node is not None:
                telemetry.tick(node, final=True)
            telemetry.close()
        if watch is not None:
            watch.stop()
        for socket in (sub, station, orchestrator):
            socket.close()
        # The node's record first: terminating the context waits for every socket of it, so
        # one left open somewhere must not cost the run its files.
        if node is not None:
            node.pairs_file.close()
            node.events_file.close()
            (run_dir / f"{name}_summary.json").write_text(json.dumps(node.summary(), indent=1))
            np.save(run_dir / f"{name}_latency.npy", node.latency.everything())


def run_node_agent(settings: NodeSettings, stop: Any) -> None:
    """The node agent's loop until `stop` (a StopFlag) or `max_seconds`."""
    context = zmq.Context()
    try:
        with _opened(settings, context) as (node, telemetry):
            _loop(node, settings, stop, telemetry)
    finally:
        context.term()


def run_node_agents(nodes: tuple[NodeSettings, ...], stop: Any) -> None:
    """Several nodes in one process until `stop` or the first one's `max_seconds`: a
    bridge's QNU, one node per heralding station its switch can join it to (each its own
    link, sockets and files). One poller over all their sockets, so a herald at any
    station wakes it; the single link's blocking receive is for one node only."""
    if not nodes:
        raise ValueError("run_node_agents needs at least one node's settings")
    context = zmq.Context()
    try:
        with contextlib.ExitStack() as stack:
            opened = [stack.enter_context(_opened(s, context)) for s in nodes]
            poller = zmq.Poller()
            handlers: dict[zmq.Socket, Callable[[], None]] = {}
            for node, _ in opened:
                poller.register(node.sub, zmq.POLLIN)
                poller.register(node.station, zmq.POLLIN)
                poller.register(node.orchestrator, zmq.POLLIN)
                handlers[node.sub] = functools.partial(
                    _drain_heralds, node, node.sub, node.on_station_pub)
                handlers[node.station] = functools.partial(
                    _drain, node.station, node.on_station_reply)
                handlers[node.orchestrator] = functools.partial(
                    _drain, node.orchestrator, node.on_orchestrator_frame)
            chores = [_Chores(node, telemetry) for node, telemetry in opened]
            started, limit = time.monotonic(), nodes[0].max_seconds
            while not stop and (limit is None or time.monotonic() - started <= limit):
                timeout_ms = min(chore.run() for chore in chores)
                woke = time.monotonic()
                for socket, _ in poller.poll(math.ceil(min(timeout_ms, 100.0))):
                    handlers[socket]()
                # What comes meanwhile is taken in the next turn, with one wake-up for all.
                time.sleep(max(0.0, woke + _GATHER_S - time.monotonic()))
    finally:
        context.term()


_GATHER_S = 0.005
"""s a node-agent process hosting several nodes waits after a turn before the next, so
their stations' frames are taken a few at a time: one process per QNU wakes for each of
its stations' heartbeats and AttemptStats otherwise. Delays only the OKs (and the receipt
stamps) by up to this much, against a memory cutoff of 0.1 s."""


class _Chores:
    """A node's timed work between receives: heartbeats, clock exchanges (a quick burst
    first, so station time is known within ~40 ms), the station's liveness, the gathered
    OKs, telemetry, resend requests."""

    def __init__(self, node: Node, telemetry: NodeTelemetry | None) -> None:
        self.node, self.telemetry = node, telemetry
        self.next_heartbeat = self.next_clock = time.monotonic()

    def run(self) -> float:
        """Do what is due; ms until something is due again."""
        node, s = self.node, self.node.settings
        now = time.monotonic()
        if now >= self.next_heartbeat:
            node.heartbeat()
            self.next_heartbeat = now + s.heartbeat_period
        if now >= self.next_clock:
            node.send_clock_request()
            self.next_clock = now + (0.005 if node.clock_seq < _CLOCK_BURST else s.clock_period)
        node.check_station()
        node.flush_oks()
        if self.telemetry is not None:
            self.telemetry.tick(node)  # once a second; nothing but a clock read otherwise
        if node.requested:
            node.request_gaps()
        deadlines = [self.next_heartbeat, self.next_clock, node.station_heard
                     + s.heartbeat_misses * s.heartbeat_period]
        deadlines += [state[1] for state in node.requested.values()]
        if node.oks_due is not None:
            deadlines.append(node.oks_due)
        return max(0.0, min(deadlines) - time.monotonic()) * 1e3


_CLOCK_BURST = 8
"""Clock exchanges sent 5 ms apart at the start, before the configured period."""


def _loop(node: Node, s: NodeSettings, stop: Any, telemetry: NodeTelemetry | None = None
          ) -> None:
    poller = zmq.Poller()
    for socket in (node.sub, node.station, node.orchestrator):
        poller.register(socket, zmq.POLLIN)

    from_station_pub = node.on_station_pub
    from_station_router = node.on_station_reply
    from_orchestrator = node.on_orchestrator_frame
    started = time.monotonic()
    chores = _Chores(node, telemetry)
    sub_timeout_ms = -1
    while not stop:
        now = time.monotonic()
        if s.max_seconds is not None and now - started > s.max_seconds:
            break
        timeout_ms = chores.run()
        if s.receive == "poller" or node.awaiting_station():
            ready = dict(poller.poll(math.ceil(min(timeout_ms, 100.0))))
            if node.sub in ready:
                _drain_heralds(node, node.sub, from_station_pub)
            if node.station in ready:
                _drain(node.station, from_station_router)
            if node.orchestrator in ready:
                _drain(node.orchestrator, from_orchestrator)
            continue
        wait_ms = max(1, math.ceil(min(timeout_ms, s.idle_check * 1e3)))
        if wait_ms != sub_timeout_ms:
            node.sub.rcvtimeo = sub_timeout_ms = wait_ms
        try:
            frame = node.sub.recv()
        except zmq.Again:
            pass
        else:
            received_ns = time.monotonic_ns()
            if s.handling_delay > 0:
                time.sleep(s.handling_delay)
            elif s.yield_after_receipt:
                os.sched_yield()
            _drain_heralds(node, node.sub, from_station_pub, (frame, received_ns))
        if _readable(node.station):
            _drain(node.station, from_station_router)
        if _readable(node.orchestrator):
            _drain(node.orchestrator, from_orchestrator)
