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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from .keys import key_owner, make_curve_server, start_authenticator
from .link_telemetry import OrchestratorTelemetry, link_name, open_publisher
from .messages import (
    MAX_INCARNATION,
    MAX_PAIRS_PER_CREATE,
    NO_SEQ,
    Ack,
    Create,
    Decoder,
    Err,
    ErrBatch,
    ErrCode,
    Heartbeat,
    Ok,
    OkBatch,
    encode_ok_batch,
    limit_frame_size,
    split_seqs,
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
    gather: float = 0.0
    """s the orchestrator waits after a message wakes it before it takes what has come (the
    other node's batch for the same heralds would come meanwhile, and the turn fall after
    both nodes have taken the heralds). 0: at once; 0.3 ms made no difference we could
    resolve on the shared 2-core host (benchmarks/bench_delivery.py --gather)."""
    telemetry_address: str | None = None
    """PUB for ``qnetlab monitor``: the link's statistics about once a second
    (network.link_telemetry); None: none published."""
    batch_interval: float = 0.002
    """s: after a turn that took messages, the orchestrator waits this long (less the turn's
    own time) before taking more, so that under load each turn settles many nodes' batches
    at once and its CPU per pair falls as the rate rises. Adds up to this much to a pair's
    verdict (not to the heralds' latency); far below any memory cutoff."""


class _Pending:
    """One node's verdicts (OK or ERR) of the current request that the other node has not
    matched yet, in arrival order (so `heard[0]` is the oldest): arrays, so a batch is
    matched, added and timed out without a Python step per pair."""

    def __init__(self) -> None:
        self.seq = np.zeros(0, np.int64)
        self.ok = np.zeros(0, bool)
        self.goodness = np.zeros(0, np.float64)
        self.heard = np.zeros(0, np.float64)
        """monotonic s each verdict came."""

    def __len__(self) -> int:
        return len(self.seq)

    def add(self, seq: np.ndarray, ok: bool, goodness: float, heard: float) -> None:
        n = len(seq)
        self.seq = np.concatenate([self.seq, seq])
        self.ok = np.concatenate([self.ok, np.full(n, ok)])
        self.goodness = np.concatenate([self.goodness, np.full(n, goodness)])
        self.heard = np.concatenate([self.heard, np.full(n, heard)])

    def remove(self, index: np.ndarray | slice) -> None:
        """Drop the entries at `index` (positions)."""
        keep = np.ones(len(self.seq), bool)
        keep[index] = False
        self.seq, self.ok = self.seq[keep], self.ok[keep]
        self.goodness, self.heard = self.goodness[keep], self.heard[keep]


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
        self.pending = {n: _Pending() for n in s.nodes}
        """Each node's verdicts of the current request the other has not matched yet."""
        self.delivered_count = 0
        self._delivered: list[tuple[np.ndarray, np.ndarray, int]] = []
        """Per settlement: the seqs delivered, their goodness, station time (ps)."""
        self.delivered_seqs: set[int] = set()
        """Seqs delivered in the current request: a verdict repeated for one of them cannot
        deliver it twice (a set: membership of a whole batch is one C-level pass). Kept per
        request (at most `MAX_PAIRS_PER_CREATE`): a verdict of an earlier request is stale
        anyway, and answered with a release the node ignores."""
        self.outbox: dict[tuple[str, int, bool], list[np.ndarray]] = {}
        """(node, create_id, delivered?) -> seqs of verdicts to send at the next `flush`: what
        one loop turn decides goes out as one batch per node (delivered, or released)."""
        self.outbox_goodness: dict[tuple[str, int], float] = {}
        """Lowest goodness of the pairs delivered in the outbox, per (node, create_id)."""
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

    def send(self, node: str, message: Create | Err | OkBatch | ErrBatch) -> None:
        self.send_frame(node, message.encode())

    def send_frame(self, node: str, frame: bytes) -> None:
        route = self.route.get(node)
        if route is None:  # never heard (CURVE on): nowhere to send it
            self.counters["unroutable"] += 1
            return
        self.router.send_multipart([route, frame])

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """Every pair delivered, in order: link, seq, goodness, decided_ps."""
        link = self.settings.link_id
        return [{"link": link, "seq": seq, "goodness": goodness, "decided_ps": decided_ps}
                for seqs, goodness_of, decided_ps in self._delivered
                for seq, goodness in zip(seqs.tolist(), goodness_of.tolist(), strict=True)]

    def verdict(self, node: str, create_id: int, seqs: np.ndarray, delivered: bool,
                goodness: float = 1.0) -> None:
        """Queue the verdict on `seqs` for `node` (sent by `flush`)."""
        if not len(seqs):
            return
        self.outbox.setdefault((node, create_id, delivered), []).append(seqs)
        if delivered:
            key = (node, create_id)
            self.outbox_goodness[key] = min(self.outbox_goodness.get(key, 1.0), goodness)

    def flush(self) -> None:
        """Send the queued verdicts: per node and request, one OK_BATCH of the pairs
        delivered and one ERR_BATCH (DISAGREED) of those released (split at the batch
        limit)."""
        if not self.outbox:
            return
        now_ps = self.now_ps()
        link = self.settings.link_id
        for (node, create_id, delivered), parts in self.outbox.items():
            seqs = np.unique(np.concatenate(parts)).astype(np.uint64)
            for part in split_seqs(seqs):
                if delivered:
                    goodness = self.outbox_goodness.get((node, create_id), 1.0)
                    self.send_frame(node, encode_ok_batch(create_id, link, goodness, now_ps,
                                                          part))
                else:
                    self.send(node, ErrBatch(create_id, link, ErrCode.DISAGREED, part))
        self.outbox.clear()
        self.outbox_goodness.clear()

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
        for node in self.settings.nodes:  # nothing of the last request can be matched now
            self.release_alone(node, np.arange(len(self.pending[node])), boundary=None)
        self.create_id += 1
        self.delivered_seqs.clear()
        # A request beyond one CREATE's bound is topped up by the next (see `tick`).
        self.number = min(self.settings.pairs - self.delivered_count, MAX_PAIRS_PER_CREATE)
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
        self.flush()  # verdicts first: the nodes free what they hold before a new request
        if self.active:
            for node in self.settings.nodes:
                self.send(node, Create(self.create_id, 0, 0.0, 0.0, 0, 0, 0, True))
        self.active = False

    def done(self) -> bool:
        return self.delivered_count >= self.settings.pairs or bool(self.failed)

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
        elif isinstance(message, Ok | Err | OkBatch | ErrBatch):
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
        # What only one node has reported can no longer be matched: released first (the
        # cancel below flushes the verdicts), counted as disagreements.
        for node in self.settings.nodes:
            self.release_alone(node, np.arange(len(self.pending[node])), boundary=None)
        self.cancel()
        self.restart_pending = True

    def on_verdict(self, node: str, message: Ok | Err | OkBatch | ErrBatch) -> None:
        """A node's verdicts on pairs (one, or a batch), or its refusal of the request."""
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
        if isinstance(message, OkBatch | ErrBatch):
            seqs = message.seqs.astype(np.int64)  # <= MAX_SEQ (decoded): no wrap
        else:
            seqs = np.array([message.seq], np.int64)
        ok = isinstance(message, Ok | OkBatch)
        goodness = message.goodness if isinstance(message, Ok | OkBatch) else 0.0
        code = "" if ok else message.code.name.lower()  # type: ignore[union-attr]
        self.on_batch(node, message.create_id, seqs, ok, goodness, code)

    def on_batch(self, node: str, create_id: int, seqs: np.ndarray, ok: bool,
                 goodness: float, code: str) -> None:
        """`node` holds (`ok`) or failed (ERR `code`) the pairs `seqs` (sorted unique int64)
        of request `create_id`. A pair is delivered when both nodes said OK in the current
        request; when one said ERR, whoever said OK is told to release it."""
        if self.delivered_seqs.intersection(seqs.tolist()):
            again = np.isin(seqs, list(self.delivered_seqs.intersection(seqs.tolist())))
            self.decoder.reject("verdict for a pair already delivered", int(again.sum()))
            seqs = seqs[~again]
        if not len(seqs):
            return
        if create_id != self.create_id or not self.active:
            # Pairs OK'd under a cancelled request: nobody will pair them, free them.
            if ok:
                self.verdict(node, create_id, seqs, delivered=False)
                self.counters["stale"] += len(seqs)
            return
        mine, other_node = self.pending[node], self.other(node)
        if len(mine):
            again = np.isin(seqs, mine.seq)
            if again.any():  # this node already spoke of them: its first word stands
                self.decoder.reject("verdict repeated", int(again.sum()))
                seqs = seqs[~again]
                if not len(seqs):
                    return
        if ok:
            self.ok_count[node] += len(seqs)
        else:
            self.counters[f"err_{code}"] += len(seqs)
        self.first_seq[node] = min(self.first_seq.get(node, int(seqs[0])), int(seqs[0]))
        self.last_seq[node] = max(self.last_seq.get(node, int(seqs[-1])), int(seqs[-1]))
        other = self.pending[other_node]
        _, here, there = np.intersect1d(seqs, other.seq, assume_unique=True,
                                        return_indices=True)
        if len(here):
            self.settle(node, seqs[here], ok, goodness, other_node, other.ok[there],
                        other.goodness[there])
            other.remove(there)
            unmatched = np.ones(len(seqs), bool)
            unmatched[here] = False
            seqs = seqs[unmatched]
        if len(seqs):
            mine.add(seqs, ok, goodness, time.monotonic())

    def settle(self, node: str, seqs: np.ndarray, ok: bool, goodness: float, other: str,
               other_ok: np.ndarray, other_goodness: np.ndarray) -> None:
        """Both nodes have spoken of `seqs`: `node` said `ok` for all of them, `other` said
        `other_ok` for each. Both OK: delivered (up to the request's pairs; any beyond are
        released). Otherwise whoever said OK releases it."""
        both = other_ok & ok
        deliver = seqs[both]
        room = max(0, self.settings.pairs - self.delivered_count)
        extra = deliver[room:]
        deliver = deliver[:room]
        if len(deliver):
            pair_goodness = np.minimum(goodness, other_goodness[both][:room])
            self._delivered.append((deliver, pair_goodness, self.now_ps()))
            self.delivered_count += len(deliver)
            self.delivered_seqs.update(deliver.tolist())
            worst = float(pair_goodness.min())
            for who in (node, other):
                self.verdict(who, self.create_id, deliver, delivered=True, goodness=worst)
        # Released: the OK side of a disagreement, and both sides of pairs beyond the quota.
        release_other = other_ok & ~both
        if ok:
            self.verdict(node, self.create_id, seqs[~both], delivered=False)
        self.verdict(other, self.create_id, seqs[release_other], delivered=False)
        if len(extra):  # both held them, but the request was already complete
            for who in (node, other):
                self.verdict(who, self.create_id, extra, delivered=False)
            self.counters["beyond_request"] += len(extra)
        disagreed = int((~both & (other_ok | ok)).sum())
        if disagreed:
            self.counters["disagreements"] += disagreed
        if self.done():
            self.cancel()

    def release_alone(self, node: str, index: np.ndarray, boundary: bool | np.ndarray | None
                      ) -> None:
        """Settle `node`'s pending verdicts at `index` that the other node never matched:
        an OK'd pair is released. Counted ``boundary`` where `boundary` says it lay outside
        the other node's share of the request, else ``disagreements``."""
        pending = self.pending[node]
        if not len(index):
            return
        ok = pending.ok[index]
        self.verdict(node, self.create_id, pending.seq[index][ok], delivered=False)
        outside = (np.zeros(len(index), bool) if boundary is None
                   else np.broadcast_to(np.asarray(boundary, bool), len(index)))
        for key, count in (("boundary", int((ok & outside).sum())),
                           ("disagreements", int((ok & ~outside).sum()))):
            if count:
                self.counters[key] += count
        pending.remove(index)

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
        for node, pending in self.pending.items():
            if not len(pending) or now - pending.heard[0] <= self.settings.reconcile_timeout:
                continue
            overdue = np.flatnonzero(now - pending.heard > self.settings.reconcile_timeout)
            other = self.other(node)
            seqs = pending.seq[overdue]
            # Outside the other node's share of the request: before its first report, or
            # after its last once it has sent all its OKs. Not a disagreement.
            if other not in self.first_seq:
                outside = np.ones(len(seqs), bool)
            else:
                after = (seqs > self.last_seq.get(other, -1)) & (
                    self.ok_count.get(other, 0) >= self.number)
                outside = (seqs < self.first_seq[other]) | after
            self.release_alone(node, overdue, outside)
        self.flush()
        if self.done():
            return
        if self.started is not None and now - self.started > self.settings.max_time:
            for node in self.settings.nodes:
                self.send(node, Err(self.create_id, self.settings.link_id, NO_SEQ, ErrCode.TIMEOUT))
            self.failed = f"TIMEOUT: {len(self.delivered)} of {self.settings.pairs} pairs delivered"
            return
        both_here = all(n in self.heard and n not in self.lost for n in self.settings.nodes)
        quota_met = self.active and all(c >= self.number for c in self.ok_count.values())
        unmatched = any(len(p) for p in self.pending.values())
        if both_here and (not self.started or self.restart_pending
                          or (quota_met and not unmatched)):
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
        for pending in self.pending.values():  # in arrival order: the first is the oldest
            if len(pending):
                due.append(float(pending.heard[0]) + self.settings.reconcile_timeout)
        if self.started is not None:
            due.append(self.started + self.settings.max_time)
        wait = min(due, default=now + 1.0) - now
        return min(20, max(1, math.ceil(wait * 1e3)))

    def result(self) -> dict[str, Any]:
        last_ps = self._delivered[-1][2] if self._delivered else self.now_ps()
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
    telemetry = OrchestratorTelemetry(
        open_publisher(settings.telemetry_address, settings.key_dir, settings.name),
        settings.name, link_name(settings.nodes))
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
            telemetry.tick(orchestrator)
            if settings.max_seconds is not None and time.monotonic() - begun > settings.max_seconds:
                orchestrator.failed = orchestrator.failed or "stopped at max_seconds"
                break
            if poller.poll(orchestrator.wait_ms()):
                turn = time.monotonic()
                if settings.gather > 0:
                    time.sleep(settings.gather)
                while True:
                    try:
                        frames = router.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    orchestrator.receive(frames)
                orchestrator.flush()  # what this turn decided: one batch per node
                orchestrator.tick()
                # Let the next messages queue up: one turn for many of them.
                pause = turn + settings.batch_interval - time.monotonic()
                if pause > 0 and not orchestrator.done():
                    time.sleep(pause)
                continue
            orchestrator.tick()
    finally:
        telemetry.tick(orchestrator, final=True)
        telemetry.close()
        router.close()
        if authenticator is not None:
            authenticator.stop()
        context.term()
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        # No indent: only then is json's C encoder used (a result of 10^5 pairs takes
        # 0.1 s instead of 2 s, and the process may be stopped soon after).
        (settings.run_dir / f"{settings.name}_result.json").write_text(
            json.dumps(orchestrator.result()))
