"""The orchestrator process: requests pairs from both nodes of a link and reconciles them.

It binds a ROUTER (CURVE server) for the node agents, sends each node a CREATE once both are
alive, and delivers a pair (link, seq) only when both nodes said OK (both get OK back);
otherwise both get ERR DISAGREED and the holder frees it. A node restart ends the current
CREATE and a new one asks for the rest; a CREATE with ``number == 0`` cancels. A node is the
owner of the key that authenticated its connection (`network.keys.key_owner`), never what it
calls itself; whatever fails these checks is counted and dropped. The outcome goes to
``<run_dir>/<name>_result.json``.

Protocol and identity rules: docs/link.md#the-orchestrator.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from .keys import key_owner, make_curve_server, start_authenticator
from .messages import (
    MAX_INCARNATION,
    MAX_PAIRS_PER_CREATE,
    NO_SEQ,
    Ack,
    Create,
    Decoder,
    Err,
    ErrCode,
    Heartbeat,
    Ok,
    limit_frame_size,
)


@dataclass(frozen=True)
class OrchestratorSettings:
    name: str
    address: str
    key_dir: Path | None
    run_dir: Path
    link_id: int
    nodes: tuple[str, str]
    node_ids: tuple[int, int]
    pairs: int
    """Pairs to deliver."""
    epoch_ns: int
    min_fidelity: float = 0.0
    max_time: float = 30.0
    """s from the first CREATE until the request is given up (TIMEOUT)."""
    reconcile_timeout: float = 0.05
    heartbeat_period: float = 0.05
    heartbeat_misses: int = 4
    max_seconds: float | None = None
    """Stop by itself after this long (s), done or not."""


@dataclass
class _Report:
    first_heard: float
    """monotonic s of the first node's report."""
    verdicts: dict[str, Ok | Err] = field(default_factory=dict)


class _Orchestrator:
    def __init__(self, s: OrchestratorSettings, router: zmq.Socket) -> None:
        self.settings = s
        self.router = router
        self.decoder = Decoder()
        self.counters: Counter[str] = Counter()
        self.heartbeat: dict[str, int] = {}
        self.heard: dict[str, float] = {}
        self.lost: set[str] = set()
        self.create_id = 0
        self.number = 0
        self.active = False
        self.ok_count: dict[str, int] = {}
        self.first_seq: dict[str, int] = {}
        self.last_seq: dict[str, int] = {}
        """First and last seq each node reported for the current CREATE."""
        self.reports: dict[int, _Report] = {}
        self.delivered: list[dict[str, Any]] = []
        self.delivered_seqs: set[int] = set()
        """Seqs delivered: a verdict repeated for one of them cannot deliver it twice."""
        self.node_ids = dict(zip(s.nodes, s.node_ids, strict=True))
        self.known = {n.encode(): n for n in s.nodes}
        """Without CURVE: the routing identities the node agents set themselves."""
        self.started: float | None = None
        self.start_ps = 0
        self.restart_pending = False
        self.events: list[dict[str, Any]] = []
        self.route = {} if s.key_dir is not None else {n: n.encode() for n in s.nodes}
        """Routing identity of each node's connection (with CURVE, the one it was heard on;
        without, the node's name, which it sets itself)."""
        self.strangers: set[str | None] = set()
        """Key owners already recorded as a ``not_a_node`` event."""
        self.duplicated: set[str] = set()
        """Nodes already recorded as a ``duplicate_connection`` event."""
        self.failed = ""

    def now_ps(self) -> int:
        return (time.monotonic_ns() - self.settings.epoch_ns) * 1000

    def send(self, node: str, message: Create | Ok | Err) -> None:
        route = self.route.get(node)
        if route is None:  # never heard (CURVE on): nowhere to send it
            self.counters["unroutable"] += 1
            return
        self.router.send_multipart([route, message.encode()])

    def take_route(self, node: str, routing_id: bytes) -> bool:
        """Whether a message from `node`'s key on connection `routing_id` is taken. A second
        connection with the same key is ignored while the first one's node is alive (heard
        within the silence limit): two live processes holding one key would otherwise take
        turns being the node, each turn looking like a restart. A restarted node's new
        connection is taken once the old one has fallen silent."""
        current = self.route.get(node)
        if current is not None and current != routing_id:
            heard = self.heard.get(node)
            silent = self.settings.heartbeat_misses * self.settings.heartbeat_period
            if node not in self.lost and heard is not None and time.monotonic() - heard <= silent:
                self.counters["duplicate_connection"] += 1
                if node not in self.duplicated:
                    self.duplicated.add(node)
                    self.events.append({"event": "duplicate_connection", "node": node,
                                        "t_ns": time.monotonic_ns()})
                return False
        self.route[node] = routing_id
        return True

    def other(self, node: str) -> str:
        a, b = self.settings.nodes
        return b if node == a else a

    # -- requests -------------------------------------------------------------------------
    def new_create(self) -> None:
        self.create_id += 1
        # A request beyond one CREATE's bound is topped up by the next (see `tick`).
        self.number = min(self.settings.pairs - len(self.delivered), MAX_PAIRS_PER_CREATE)
        self.active = True
        self.ok_count = dict.fromkeys(self.settings.nodes, 0)
        self.first_seq, self.last_seq = {}, {}
        if self.started is None:
            self.started, self.start_ps = time.monotonic(), self.now_ps()
        for node, node_id in zip(self.settings.nodes, self.settings.node_ids, strict=True):
            remote = self.settings.node_ids[1 - self.settings.node_ids.index(node_id)]
            self.send(node, Create(self.create_id, remote, self.settings.min_fidelity,
                                   self.settings.max_time, 0, self.number, 0, True))
        self.counters["creates"] += 1

    def cancel(self) -> None:
        if self.active:
            for node in self.settings.nodes:
                self.send(node, Create(self.create_id, 0, 0.0, 0.0, 0, 0, 0, True))
        self.active = False

    def done(self) -> bool:
        return len(self.delivered) >= self.settings.pairs or bool(self.failed)

    def receive(self, frames: Sequence[zmq.Frame]) -> None:
        """One multipart message off the ROUTER (routing id, then the frame): who sent it,
        then what it says. Nothing in it is trusted before it is checked."""
        if self.settings.key_dir is not None:  # who holds the key, whatever the peer calls itself
            node = key_owner(frames[-1])
            if node is None or node not in self.settings.nodes:
                self.on_stranger(node)
                return
            if not self.take_route(node, frames[0].bytes):
                return
        else:
            known = self.known.get(frames[0].bytes)
            if known is None:
                self.counters["unknown_sender"] += 1
                return
            node = known
        if len(frames) != 2:
            self.counters["unknown_sender"] += 1
            return
        self.on_message(node, self.decoder.decode(frames[1].buffer))

    def on_message(self, node: str, message: object) -> None:
        if isinstance(message, Heartbeat):
            self.on_heartbeat(node, message)
        elif isinstance(message, Ack):
            self.counters["acks"] += 1
        elif isinstance(message, Ok | Err):
            self.on_verdict(node, message)
        elif message is not None:
            self.counters["unexpected"] += 1

    def on_stranger(self, owner: str | None) -> None:
        """A message over a connection whose key is no node of this link (None: no key
        owner on it): dropped. One event per owner keeps a flood from growing the result
        file; the counter has them all."""
        self.counters["not_a_node"] += 1
        if owner not in self.strangers:
            self.strangers.add(owner)
            self.events.append({"event": "not_a_node", "key_owner": owner,
                                "t_ns": time.monotonic_ns()})

    def on_heartbeat(self, node: str, beat: Heartbeat) -> None:
        if beat.sender_id != self.node_ids[node] or beat.seq >> 32 > MAX_INCARNATION:
            self.decoder.reject("heartbeat not of its node")
            return
        last = self.heartbeat.get(node)
        if last is not None and beat.seq >> 32 != last >> 32:  # a new incarnation
            self.events.append({"event": "node_restarted", "node": node,
                                "t_ns": time.monotonic_ns()})
            self.counters["node_restarts"] += 1
            self.end_create_after_restart()
        if node in self.lost:
            self.lost.discard(node)
            self.events.append({"event": "node_back", "node": node,
                                "t_ns": time.monotonic_ns()})
        self.heartbeat[node] = beat.seq
        self.heard[node] = time.monotonic()

    def end_create_after_restart(self) -> None:
        self.cancel()
        for seq in sorted(self.reports):
            self.settle(seq, boundary=False)
        self.restart_pending = True

    def on_verdict(self, node: str, message: Ok | Err) -> None:
        if message.link != self.settings.link_id:
            self.decoder.reject("verdict for another link")
            return
        if isinstance(message, Err) and message.seq == NO_SEQ:  # (the decoder allows no OK)
            if message.create_id != self.create_id:
                self.decoder.reject("refusal of another request")
                return
            self.counters[f"request_{message.code.name.lower()}"] += 1
            self.failed = f"{node} refused the request: {message.code.name}"
            return
        if message.seq in self.delivered_seqs:
            self.decoder.reject("verdict for a pair already delivered")
            return
        if message.create_id != self.create_id or not self.active:
            # A pair OK'd under a cancelled request: nobody will pair it, free it.
            if isinstance(message, Ok):
                self.send(node, Err(message.create_id, message.link, message.seq,
                                    ErrCode.DISAGREED))
                self.counters["stale"] += 1
            return
        if isinstance(message, Ok):
            self.ok_count[node] += 1
        else:
            self.counters[f"err_{message.code.name.lower()}"] += 1
        self.first_seq[node] = min(self.first_seq.get(node, message.seq), message.seq)
        self.last_seq[node] = max(self.last_seq.get(node, message.seq), message.seq)
        report = self.reports.setdefault(message.seq, _Report(time.monotonic()))
        report.verdicts[node] = message
        if len(report.verdicts) == 2:
            self.settle(message.seq, boundary=False)

    def settle(self, seq: int, *, boundary: bool) -> None:
        report = self.reports.pop(seq)
        oks = {n: v for n, v in report.verdicts.items() if isinstance(v, Ok)}
        if len(oks) == 2 and not self.done():
            first = next(iter(oks.values()))
            self.delivered.append({"link": self.settings.link_id, "seq": seq,
                                   "goodness": first.goodness, "decided_ps": self.now_ps()})
            self.delivered_seqs.add(seq)
            for node, ok in oks.items():
                self.send(node, ok)
            if self.done():
                self.cancel()
            return
        for node, ok in oks.items():
            self.send(node, Err(ok.create_id, ok.link, seq, ErrCode.DISAGREED))
        if oks:
            self.counters["boundary" if boundary else "disagreements"] += 1

    def tick(self) -> None:
        now = time.monotonic()
        for node in self.settings.nodes:
            heard = self.heard.get(node)
            silent = self.settings.heartbeat_misses * self.settings.heartbeat_period
            if heard is not None and node not in self.lost and now - heard > silent:
                self.lost.add(node)
                self.counters["node_lost"] += 1
                self.events.append({"event": "node_lost", "node": node,
                                    "t_ns": time.monotonic_ns()})
        for seq in [s for s, r in self.reports.items()
                    if now - r.first_heard > self.settings.reconcile_timeout]:
            other = self.other(next(iter(self.reports[seq].verdicts)))
            # Outside the other node's share of the request: before its first report, or
            # after its last once it has sent all its OKs. Not a disagreement.
            before = other not in self.first_seq or seq < self.first_seq[other]
            after = (self.ok_count.get(other, 0) >= self.number
                     and seq > self.last_seq.get(other, -1))
            self.settle(seq, boundary=before or after)
        if self.done():
            return
        if self.started is not None and now - self.started > self.settings.max_time:
            for node in self.settings.nodes:
                self.send(node, Err(self.create_id, self.settings.link_id, NO_SEQ, ErrCode.TIMEOUT))
            self.failed = f"TIMEOUT: {len(self.delivered)} of {self.settings.pairs} pairs delivered"
            return
        both_here = all(n in self.heard and n not in self.lost for n in self.settings.nodes)
        quota_met = self.active and all(c >= self.number for c in self.ok_count.values())
        if both_here and (not self.started or self.restart_pending
                          or (quota_met and not self.reports)):
            self.restart_pending = False
            self.cancel()
            self.new_create()

    def wait_ms(self) -> int:
        """ms until `tick` has something to do (a node falling silent, a report's reconcile
        timeout, the request's max_time), 1..20: waking every few ms regardless would take
        CPU from the node agents' receives on a small host."""
        now = time.monotonic()
        silent = self.settings.heartbeat_misses * self.settings.heartbeat_period
        due = [heard + silent for node, heard in self.heard.items() if node not in self.lost]
        if self.reports:  # in arrival order: the first is the oldest
            due.append(next(iter(self.reports.values())).first_heard
                       + self.settings.reconcile_timeout)
        if self.started is not None:
            due.append(self.started + self.settings.max_time)
        wait = min(due, default=now + 1.0) - now
        return min(20, max(1, math.ceil(wait * 1e3)))

    def result(self) -> dict[str, Any]:
        last_ps = max((d["decided_ps"] for d in self.delivered), default=self.now_ps())
        return {"name": self.settings.name, "pairs_requested": self.settings.pairs,
                "delivered": self.delivered, "counters": dict(self.counters),
                "malformed": dict(self.decoder.errors), "events": self.events,
                "start_ps": self.start_ps, "last_delivery_ps": last_ps,
                "failed": self.failed}


def run_orchestrator(settings: OrchestratorSettings, stop: Any) -> None:
    """Deliver `settings.pairs` pairs, write the result file, and return (or on `stop`)."""
    context = zmq.Context()
    authenticator = None
    router = context.socket(zmq.ROUTER)
    orchestrator = _Orchestrator(settings, router)
    try:
        if settings.key_dir is not None:
            authenticator = start_authenticator(context, settings.key_dir)
            make_curve_server(router, settings.key_dir, settings.name)
        router.linger = 1000  # the last verdicts must reach the nodes
        limit_frame_size(router)
        router.router_mandatory = False
        router.bind(settings.address)
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        begun = time.monotonic()
        while not stop and not orchestrator.done():
            if settings.max_seconds is not None and time.monotonic() - begun > settings.max_seconds:
                orchestrator.failed = orchestrator.failed or "stopped at max_seconds"
                break
            if poller.poll(orchestrator.wait_ms()):
                while True:
                    try:
                        frames = router.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    orchestrator.receive(frames)
            orchestrator.tick()
    finally:
        router.close()
        if authenticator is not None:
            authenticator.stop()
        context.term()
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        (settings.run_dir / f"{settings.name}_result.json").write_text(
            json.dumps(orchestrator.result(), indent=1))
