"""The QNUs' node agents as the bridge orchestrator reaches them: `QnuNodes`.

Each QNU runs a node agent (`network.node_agent.run_node_agents`): one single-link `Node` per
heralding station the switch can join it to, following that station's heralds (sequence,
gaps, resends, the station's clock) and answering the orchestrator's CREATEs with OK batches
for the heralds it holds, as on the single link. When the scheduler assigns QNUs A and B to a
station, both nodes at that station get a CREATE, and a herald becomes a pair of the request
only when the station's SUB showed it counts (`StationFabric`: after the ready time and the
guard, with the new windows) and both nodes said OK to it. At the request's end every pair
either node holds gets a verdict: OK for the pairs the application got, ERR DISAGREED (the
single link's release) for the rest, so both QNUs log the same pairs delivered.

A node is the owner of the key its connection was authenticated with (the QNU's), and its
sender id says which of the QNU's nodes (which station) it is (`node_ids`); every frame is
checked as on the single link (`Decoder`), then against what this orchestrator asked.
Design: docs/bridge.md#node-agents-per-qnu.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from qnetlab.instruments.errors import ConfigError

from ..messages import (
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
    split_seqs,
)
from .arm_setup import SetupResult
from .fabric import PathSetupError

MAX_AHEAD = 100_000
"""Seqs an OK may lie beyond the last herald the station's SUB has judged (the nodes may
hear a herald before the orchestrator does, never this far before): beyond, the OK is for a
herald the station never published, and is released."""
ENDED_KEPT = 4096
"""Ended CREATEs remembered, so that an OK for one that comes late is answered with a
release (the node would hold the pair forever otherwise)."""
MAX_NODE_ID = 2**16 - 1
"""Sender ids are 16 bits on the wire (0 is the station's)."""


def node_ids(qnus: Sequence[str], stations: Sequence[str]) -> dict[tuple[str, str], int]:
    """(QNU, station) -> the sender id of the QNU's node at that station: 1, 2, ... QNU by
    QNU in config order, so the orchestrator and every QNU's host compute the same."""
    ids = {(q, s): i * len(stations) + j + 1
           for i, q in enumerate(qnus) for j, s in enumerate(stations)}
    if ids and max(ids.values()) > MAX_NODE_ID:
        raise ConfigError("bridge node agents", "qnus", f"{len(qnus)} QNUs x {len(stations)} "
                          f"stations need more than {MAX_NODE_ID} node ids",
                          "run node agents on a bridge of fewer paths")
    return ids


@dataclass
class _Create:
    """One CREATE: a station's assignment to a request, at both QNUs' nodes there."""

    create_id: int
    request: str
    station: str
    qnus: tuple[str, str]
    active: bool = True
    sent: set[str] = field(default_factory=set)
    """QNUs whose node has it (one not heard yet gets it when it is)."""
    oks: dict[str, dict[int, float]] = field(default_factory=dict)
    """QNU -> seq -> monotonic s: its OKs the other node (or the SUB) has not matched yet."""
    candidates: dict[int, tuple[float, int, float]] = field(default_factory=dict)
    """seq -> (bridge s, the station's epoch, monotonic s): heralds that count, not yet
    held by both."""
    held: set[int] = field(default_factory=set)
    """Seqs both nodes hold, handed to the engine as pairs."""
    refused: set[str] = field(default_factory=set)
    """QNUs whose node refused it (taken once)."""


class QnuNodes:
    """The orchestrator's side of the QNUs' node agents (module docstring). `on_pair`
    (station, seq, bridge s, epoch) is called for each herald both nodes hold; `send`
    (routing id, frame) must be set before frames come (the service's ROUTER)."""

    def __init__(self, qnus: Sequence[str], links: Mapping[str, int],
                 clock: Callable[[], float], log: Callable[[dict[str, Any]], None],
                 on_pair: Callable[[str, int, float, int], None],
                 reconcile_timeout: float, node_silence: float = 2.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.links = dict(links)
        """station -> its link id."""
        self.station_of = {link: station for station, link in self.links.items()}
        self.ids = node_ids(qnus, list(links))
        self.of_id = {i: path for path, i in self.ids.items()}
        self.qnus = frozenset(qnus)
        self.clock, self.log, self.on_pair = clock, log, on_pair
        self.reconcile_timeout = reconcile_timeout
        self.node_silence = node_silence
        """s without a node's heartbeat before it is taken as lost (its pairs void)."""
        self.silent: set[tuple[str, str]] = set()
        """Nodes taken as lost, until heard again."""
        self.monotonic = monotonic
        """The wall clock the timeouts are kept on (s)."""
        self.send: Callable[[bytes, bytes], None] | None = None
        self.decoder = Decoder()
        self.counters: Counter[str] = Counter()
        self.routes: dict[tuple[str, str], bytes] = {}
        self.incarnations: dict[tuple[str, str], int] = {}
        self.heard: dict[tuple[str, str], float] = {}
        self.current: dict[str, _Create] = {}
        """station -> its current CREATE."""
        self.creates: dict[int, _Create] = {}
        self.of_request: dict[str, list[_Create]] = {}
        self.next_id = 1
        self.ended: deque[int] = deque()
        """Create ids of requests settled, oldest first (kept in `creates`: `ENDED_KEPT`)."""
        self.refusals: list[SetupResult] = []
        """Requests a node refused (`StationFabric.take_refusals` hands them on)."""
        self.voided: list[tuple[str, str, int]] = []
        """(request, station, seq) of pairs handed on that a restarted node no longer holds."""
        self.seen: dict[str, int] = {}
        """station -> the highest herald seq its SUB has judged (-1: none)."""
        self.holding: set[tuple[str, int]] = set()
        """(station, seq) of every pair both nodes hold, until its verdict."""
        self.last_tick = 0.0

    def holds(self, station: str, seq: int) -> bool:
        """Whether both nodes still hold the pair of `station`'s herald `seq` (a pair handed
        on is void once one of them restarted)."""
        return (station, seq) in self.holding

    def qnus_heard(self) -> list[str]:
        """The QNUs whose nodes at every station have said they are alive (their pairs can
        be served wherever the scheduler puts them)."""
        stations = len(self.links)
        heard = Counter(qnu for qnu, _ in self.heard)
        return sorted(q for q in self.qnus if heard[q] == stations)

    # -- the orchestrator's side ------------------------------------------------------------
    def open(self, station: str, request: str, a: str, b: str) -> None:
        """Both QNUs' nodes at `station` take heralds for `request` from now (the last
        CREATE there ends)."""
        self.close(station)
        create = _Create(self.next_id, request, station, (a, b), oks={a: {}, b: {}})
        self.next_id = self.next_id % (2**32 - 1) + 1
        self.current[station] = self.creates[create.create_id] = create
        self.of_request.setdefault(request, []).append(create)
        for qnu in create.qnus:
            self._send_create(create, qnu)

    def close(self, station: str) -> None:
        """`station`'s nodes stop taking heralds for its request (a CREATE for no pairs)."""
        create = self.current.pop(station, None)
        if create is None:
            return
        create.active = False
        create.candidates.clear()
        for qnu in create.sent:
            self._frame(qnu, station, Create(create.create_id, 0, 0.0, 0.0, 0, 0, 0, True)
                        .encode())
        for qnu in create.qnus:  # one-sided: nothing can match them now
            self._release(create, qnu, sorted(create.oks[qnu]), "closed")
            create.oks[qnu].clear()

    def judged(self, station: str, seq: int, at: float | None, epoch: int) -> None:
        """The station's SUB judged herald `seq`: it counts for the current request at
        bridge time `at`, or not (None)."""
        self.seen[station] = max(self.seen.get(station, -1), seq)
        create = self.current.get(station)
        if create is None:
            return
        if at is None:
            for qnu in create.qnus:
                if create.oks[qnu].pop(seq, None) is not None:
                    self._release(create, qnu, [seq], "not_counted")
            return
        create.candidates[seq] = (at, epoch, self.monotonic())
        self._match(create, seq)

    def settle(self, request: str, delivered: Iterable[tuple[str, int]]) -> None:
        """`request` ended: both nodes get OK for the pairs `delivered` ((station, seq)), and
        every other pair either holds for it is released."""
        given = set(delivered)
        for create in self.of_request.pop(request, []):
            if self.current.get(create.station) is create:
                self.close(create.station)
            ok = np.array(sorted(s for s in create.held if (create.station, s) in given),
                          np.uint64)
            link = self.links[create.station]
            self.counters["pairs_delivered"] += len(ok)
            for qnu in create.qnus:
                for part in split_seqs(ok):
                    self._frame(qnu, create.station, encode_ok_batch(
                        create.create_id, link, 1.0, 0, part))
                rest = (create.held | set(create.oks[qnu])) - set(ok.tolist())
                self._release(create, qnu, sorted(rest), "not_delivered")
            self.holding.difference_update((create.station, s) for s in create.held)
            create.held.clear()
            create.oks = {q: {} for q in create.qnus}
            self.ended.append(create.create_id)
        while len(self.ended) > ENDED_KEPT:  # a verdict later than this is taken as hostile
            self.creates.pop(self.ended.popleft(), None)

    def discard(self, request: str, pairs: Iterable[tuple[str, int]]) -> None:
        """Pairs of `request` that are of no use to it (expired in the orchestrator's view):
        both nodes free them now (ERR EXPIRED) rather than at the request's end."""
        gone = set(pairs)
        for create in self.of_request.get(request, []):
            seqs = sorted(s for s in create.held if (create.station, s) in gone)
            if not seqs:
                continue
            create.held.difference_update(seqs)
            self.holding.difference_update((create.station, s) for s in seqs)
            self.counters["pairs_expired"] += len(seqs)
            for qnu in create.qnus:
                self._release(create, qnu, seqs, "", ErrCode.EXPIRED)

    def take_voided(self) -> list[tuple[str, str, int]]:
        voided, self.voided = self.voided, []
        return voided

    def tick(self) -> None:
        """One-sided OKs and counted heralds not held by both within the reconcile timeout
        are released (checked at most every 10 ms)."""
        now = self.monotonic()
        if now - self.last_tick < 0.01:
            return
        self.last_tick = now
        for path, heard in self.heard.items():
            if path not in self.silent and now - heard > self.node_silence:
                # A node gone quiet may have died: nothing it held may be delivered.
                self.silent.add(path)
                self.counters["nodes_lost"] += 1
                voided = self._void(*path, release_own=True)
                self.log({"time": self.clock(), "event": "node_lost", "qnu": path[0],
                          "station": path[1], "silent_s": now - heard,
                          "pairs_voided": voided})
        late = now - self.reconcile_timeout
        for create in self.current.values():
            for qnu in create.qnus:
                old = [s for s, heard in create.oks[qnu].items() if heard < late]
                for seq in old:
                    del create.oks[qnu][seq]
                    create.candidates.pop(seq, None)
                if old:
                    self.counters["disagreements"] += len(old)
                    self._release(create, qnu, old, "")
            for seq in [s for s, c in create.candidates.items() if c[2] < late]:
                del create.candidates[seq]
                self.counters["heralds_not_held"] += 1

    # -- what the nodes send ----------------------------------------------------------------
    def receive(self, owner: str, frames: Sequence[zmq.Frame]) -> None:
        """One message from a QNU's key (`owner`) off the orchestrator's ROUTER."""
        if len(frames) != 2:
            self.decoder.reject("frames")
            return
        message = self.decoder.decode(frames[1].buffer)
        if message is None:
            return
        if isinstance(message, Heartbeat):
            path = self.of_id.get(message.sender_id)
            if path is None or path[0] != owner or message.seq >> 32 > MAX_INCARNATION:
                self.decoder.reject("heartbeat not of this QNU's nodes")
                return
            self._heartbeat(path, message.seq >> 32, frames[0].bytes)
        elif isinstance(message, Ack):
            create = self.creates.get(message.create_id)
            if create is None or owner not in create.qnus:
                self.decoder.reject("ack of a request not of this node")
            else:
                self.counters["acks"] += 1
        elif isinstance(message, Ok | OkBatch | Err | ErrBatch):
            # The node is its key's owner at the station whose link it names (a reconnected
            # node's OKs may come before its next heartbeat: taken, and answered there).
            station = self.station_of.get(message.link)
            if station is None:
                self.decoder.reject("verdict for another link")
                return
            self.routes[(owner, station)] = frames[0].bytes
            self._verdict((owner, station), message)
        else:
            self.decoder.reject("not a node's message")

    def _heartbeat(self, path: tuple[str, str], incarnation: int, route: bytes) -> None:
        qnu, station = path
        before = self.incarnations.get(path)
        if before is not None and incarnation < before:  # the old connection's last word
            self.decoder.reject("heartbeat of an earlier incarnation")
            return
        self.routes[path] = route
        self.incarnations[path] = incarnation
        if path not in self.heard:
            self.log({"time": self.clock(), "event": "node_heard", "qnu": qnu,
                      "station": station})
        self.heard[path] = self.monotonic()
        if path in self.silent:
            self.silent.discard(path)
            self.log({"time": self.clock(), "event": "node_back", "qnu": qnu,
                      "station": station})
        if before is not None and before != incarnation:
            self._restarted(qnu, station)
        create = self.current.get(station)
        if create is not None and qnu in create.qnus and qnu not in create.sent:
            self._send_create(create, qnu)

    def _restarted(self, qnu: str, station: str) -> None:
        """A node came back with a new incarnation: it holds nothing it held before. The
        pairs it held are void for their requests, and its CREATE is sent again."""
        self.counters["node_restarts"] += 1
        voided = self._void(qnu, station, release_own=False)
        self.log({"time": self.clock(), "event": "node_restarted", "qnu": qnu,
                  "station": station, "pairs_voided": voided})

    def _void(self, qnu: str, station: str, *, release_own: bool) -> int:
        """Every pair `qnu`'s node at `station` holds is void for its request (the engine
        drops those it was given: `take_voided`): the other QNU's halves are released, and
        the node's own too if it may still hold them (`release_own`); its CREATE is sent
        again when it is next heard. The pairs voided."""
        voided = 0
        for create in self.creates.values():
            if create.station != station or qnu not in create.qnus:
                continue
            self.voided += [(create.request, station, s) for s in sorted(create.held)]
            self.holding.difference_update((station, s) for s in create.held)
            voided += len(create.held)
            for holder in create.qnus:
                if holder != qnu or release_own:
                    self._release(create, holder,
                                  sorted(create.held | set(create.oks[holder])), "")
            create.held.clear()
            create.oks = {q: {} for q in create.qnus}
            create.sent.discard(qnu)
        return voided

    def _verdict(self, path: tuple[str, str], message: Ok | OkBatch | Err | ErrBatch) -> None:
        qnu, station = path
        create = self.creates.get(message.create_id)
        if create is None or create.station != station or qnu not in create.qnus:
            self.decoder.reject("verdict for a request not of this node")
            return
        if isinstance(message, Err) and message.seq == NO_SEQ:
            if not create.active or qnu in create.refused:
                self.decoder.reject("refusal of a request ended or refused already")
            else:
                create.refused.add(qnu)
                self._refused(create, qnu, message.code)
            return
        seqs = (message.seqs.astype(np.int64).tolist() if isinstance(message, OkBatch | ErrBatch)
                else [message.seq])
        if not create.active:  # OK'd after its request moved on: nobody will pair them
            if isinstance(message, Ok | OkBatch):
                self.counters["stale_oks"] += len(seqs)
                self._release(create, qnu, seqs, "")
            return
        other = create.qnus[1] if create.qnus[0] == qnu else create.qnus[0]
        if isinstance(message, Err | ErrBatch):  # it does not hold them: nor can the pair
            self.counters[f"node_{message.code.name.lower()}"] += len(seqs)
            for seq in seqs:
                create.candidates.pop(seq, None)
                if create.oks[other].pop(seq, None) is not None:
                    self._release(create, other, [seq], "")
            return
        now, seen = self.monotonic(), self.seen.get(station, -1)
        for seq in seqs:
            if seq in create.held or seq in create.oks[qnu]:
                self.decoder.reject("verdict repeated")
            elif seq > seen + MAX_AHEAD:
                self.decoder.reject("OK for a herald the station never published")
                self._release(create, qnu, [seq], "")
            elif seq <= seen and seq not in create.candidates:
                self._release(create, qnu, [seq], "not_counted")
            else:
                create.oks[qnu][seq] = now
                self._match(create, seq)

    def _match(self, create: _Create, seq: int) -> None:
        a, b = create.qnus
        if seq in create.candidates and seq in create.oks[a] and seq in create.oks[b]:
            at, epoch, _ = create.candidates.pop(seq)
            del create.oks[a][seq], create.oks[b][seq]
            create.held.add(seq)
            self.holding.add((create.station, seq))
            self.counters["pairs_held"] += 1
            self.on_pair(create.station, seq, at, epoch)

    def _refused(self, create: _Create, qnu: str, code: ErrCode) -> None:
        self.counters[f"node_refused_{code.name.lower()}"] += 1
        why = (f"{qnu}'s node agent at {create.station} refused the request ({code.name}"
               + (": it has no station clock yet" if code is ErrCode.NO_RESOURCES else "")
               + ")")
        self.refusals.append(SetupResult(create.station, create.request,
                                         error=PathSetupError(why),
                                         current=create.active))

    # -- the wire -----------------------------------------------------------------------
    def _send_create(self, create: _Create, qnu: str) -> None:
        route = self.routes.get((qnu, create.station))
        if route is None or self.send is None:
            return  # sent when the node is heard
        other = create.qnus[1] if create.qnus[0] == qnu else create.qnus[0]
        # min fidelity 0: the orchestrator judged the path's fidelity when it assigned it
        self._frame(qnu, create.station, Create(
            create.create_id, self.ids[(other, create.station)], 0.0, 0.0, 0,
            MAX_PAIRS_PER_CREATE, 0, True).encode())
        create.sent.add(qnu)

    def _release(self, create: _Create, qnu: str, seqs: list[int], why: str,
                 code: ErrCode = ErrCode.DISAGREED) -> None:
        if not seqs:
            return
        if why:
            self.counters[f"released_{why}"] += len(seqs)
        link = self.links[create.station]
        for part in split_seqs(np.array(sorted(seqs), np.uint64)):
            self._frame(qnu, create.station, ErrBatch(create.create_id, link, code,
                                                      part).encode())

    def _frame(self, qnu: str, station: str, frame: bytes) -> None:
        route = self.routes.get((qnu, station))
        if route is None or self.send is None:
            self.counters["unroutable"] += 1
            return
        self.send(route, frame)

    def summary(self) -> dict[str, Any]:
        return {"counters": dict(self.counters), "malformed": dict(self.decoder.errors),
                "nodes_heard": len(self.heard), "nodes": len(self.ids)}
