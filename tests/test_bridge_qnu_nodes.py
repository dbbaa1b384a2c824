"""The orchestrator's side of the QNUs' node agents (`network.bridge.qnu_nodes.QnuNodes`,
issue 15: "keeps each pair's two QNUs in agreement as on the single link"): a herald is a
pair only once the station's SUB showed it counts and both QNUs' nodes said OK to it; at the
request's end both get the same verdicts; a restarted node's pairs are void; hostile frames
are refused. No sockets: frames in as the ROUTER gives them, frames out as it would send
them, on a clock the test moves. The process-level run is in tests/test_bridge_truth.py and
tests/test_netns_bridge.py."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import zmq

from qnetlab.instruments.errors import ConfigError
from qnetlab.network.bridge import Scheduler, load_bridge_config
from qnetlab.network.bridge.engine import BridgeEngine
from qnetlab.network.bridge.fabric import Herald, SimulatedLinkFabric
from qnetlab.network.bridge.qnu_nodes import MAX_AHEAD, MAX_NODE_ID, QnuNodes, node_ids
from qnetlab.network.bridge.wire import Delivered, RequestPairs
from qnetlab.network.messages import (
    NO_SEQ,
    Ack,
    Create,
    Err,
    ErrBatch,
    ErrCode,
    Heartbeat,
    OkBatch,
    decode,
    encode_ok_batch,
)

from conftest import REPO

QNUS = ["qnu0", "qnu1", "qnu2"]
LINKS = {"st0": 1, "st1": 2}
TIMEOUT = 0.1


class _Bench:
    """A `QnuNodes` with the frames it sends, the pairs it hands on and a movable clock."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sent: list[tuple[bytes, object]] = []
        self.pairs: list[tuple[str, int, float, int]] = []
        self.log: list[dict[str, Any]] = []
        self.nodes = QnuNodes(QNUS, LINKS, lambda: 5.0, self.log.append,
                              lambda *pair: self.pairs.append(pair), TIMEOUT,
                              monotonic=lambda: self.now)
        self.nodes.send = lambda route, frame: self.sent.append((route, decode(frame)))

    def route(self, qnu: str, station: str) -> bytes:
        return f"{qnu}@{station}".encode()

    def frame(self, qnu: str, station: str, payload: bytes, owner: str | None = None) -> None:
        self.nodes.receive(owner or qnu, [zmq.Frame(self.route(qnu, station)),
                                          zmq.Frame(payload)])

    def heartbeat(self, qnu: str, station: str, incarnation: int = 1) -> None:
        node_id = self.nodes.ids[(qnu, station)]
        self.frame(qnu, station, Heartbeat(node_id, (incarnation << 32) + 1, 0).encode())

    def ok(self, qnu: str, station: str, create_id: int, *seqs: int) -> None:
        self.frame(qnu, station, encode_ok_batch(create_id, LINKS[station], 0.6, 0,
                                                 np.array(seqs, np.uint64)))

    def to(self, qnu: str, station: str, kind: type) -> list[Any]:
        return [m for route, m in self.sent
                if route == self.route(qnu, station) and isinstance(m, kind)]

    def released(self, qnu: str, station: str = "st0") -> list[int]:
        return sorted(s for m in self.to(qnu, station, ErrBatch) for s in m.seqs.tolist())

    def delivered(self, qnu: str, station: str = "st0") -> list[int]:
        return sorted(s for m in self.to(qnu, station, OkBatch) for s in m.seqs.tolist())


@pytest.fixture
def bench() -> _Bench:
    b = _Bench()
    for qnu in QNUS:
        for station in LINKS:
            b.heartbeat(qnu, station)
    return b


def _create_id(bench: _Bench, qnu: str = "qnu0", station: str = "st0") -> int:
    (create,) = [c for c in bench.to(qnu, station, Create) if c.number > 0][-1:]
    return int(create.create_id)


def test_a_herald_is_a_pair_only_once_it_counts_and_both_nodes_hold_it(bench: _Bench):
    """Both nodes get a CREATE naming each other; a herald counts (the SUB) and one node's
    OK is not a pair; the second OK makes it one, whichever came first; at the request's
    end both get OK for the pair delivered and the same release for the one not used."""
    bench.nodes.open("st0", "app/r1", "qnu0", "qnu1")
    ids = bench.nodes.ids
    (c0,), (c1,) = bench.to("qnu0", "st0", Create), bench.to("qnu1", "st0", Create)
    assert c0.create_id == c1.create_id and c0.number > 0
    assert (c0.remote_node, c1.remote_node) == (ids[("qnu1", "st0")], ids[("qnu0", "st0")])
    cid = c0.create_id
    bench.nodes.judged("st0", 7, 1.25, 3)
    bench.ok("qnu0", "st0", cid, 7)
    assert bench.pairs == []
    bench.ok("qnu1", "st0", cid, 7)
    assert bench.pairs == [("st0", 7, 1.25, 3)]
    bench.ok("qnu0", "st0", cid, 9)  # the OKs before the SUB's word
    bench.ok("qnu1", "st0", cid, 9)
    assert len(bench.pairs) == 1
    bench.nodes.judged("st0", 9, 1.5, 3)
    assert bench.pairs[-1] == ("st0", 9, 1.5, 3)
    bench.nodes.settle("app/r1", [("st0", 9)])
    for qnu in ("qnu0", "qnu1"):
        assert bench.delivered(qnu) == [9] and bench.released(qnu) == [7]
        assert [c.number for c in bench.to(qnu, "st0", Create)] == [c0.number, 0]
    assert bench.nodes.counters["pairs_delivered"] == 1
    assert bench.to("qnu2", "st0", Create) == []


def test_what_one_node_alone_holds_is_released_and_what_neither_holds_is_given_up(
        bench: _Bench):
    """An OK the other node never matches is released past the reconcile timeout; one for
    a herald the SUB judged not to count is released at once; a counted herald neither
    node holds is given up; a node's ERR for a herald releases the other's OK."""
    bench.nodes.open("st0", "app/r1", "qnu0", "qnu1")
    cid = _create_id(bench)
    bench.nodes.judged("st0", 3, None, 1)  # before the windows moved, say
    bench.ok("qnu0", "st0", cid, 3)
    assert bench.released("qnu0") == [3]
    bench.nodes.judged("st0", 4, 2.0, 1)
    bench.nodes.judged("st0", 5, 2.1, 1)
    bench.ok("qnu1", "st0", cid, 4)
    bench.ok("qnu0", "st0", cid, 5)
    bench.frame("qnu1", "st0", ErrBatch(cid, 1, ErrCode.EXPIRED,
                                        np.array([5], np.uint64)).encode())
    assert bench.released("qnu0") == [3, 5] and bench.nodes.counters["node_expired"] == 1
    bench.now += TIMEOUT / 2
    bench.nodes.tick()
    assert bench.released("qnu1") == []  # not yet
    bench.now += TIMEOUT
    bench.nodes.tick()
    assert bench.released("qnu1") == [4] and bench.pairs == []
    assert bench.nodes.counters["disagreements"] == 1
    bench.nodes.judged("st0", 6, 2.2, 1)
    bench.now += 2 * TIMEOUT
    bench.nodes.tick()
    assert bench.nodes.counters["heralds_not_held"] == 1


def test_an_ok_after_the_request_moved_on_is_released(bench: _Bench):
    """The station was given to another pair, or the request ended: an OK that comes late
    is answered with a release (the node would hold the pair forever)."""
    bench.nodes.open("st0", "app/r1", "qnu0", "qnu1")
    first = _create_id(bench)
    bench.nodes.open("st0", "app/r2", "qnu0", "qnu2")
    bench.ok("qnu1", "st0", first, 11)
    assert bench.released("qnu1") == [11] and bench.nodes.counters["stale_oks"] == 1
    bench.nodes.settle("app/r1", [])
    bench.nodes.settle("app/r2", [])
    bench.ok("qnu2", "st0", _create_id(bench, "qnu2"), 12)
    assert bench.released("qnu2") == [12]


def test_a_restarted_node_voids_the_pairs_it_held_and_gets_its_create_again(bench: _Bench):
    """qnu1's node comes back with a new incarnation: the pair both held is void for its
    request (the engine drops it), qnu0's half released, and qnu1 asked again."""
    bench.nodes.open("st0", "app/r1", "qnu0", "qnu1")
    cid = _create_id(bench)
    bench.nodes.judged("st0", 20, 3.0, 1)
    bench.ok("qnu0", "st0", cid, 20)
    bench.ok("qnu1", "st0", cid, 20)
    assert len(bench.pairs) == 1
    bench.heartbeat("qnu1", "st0", incarnation=2)
    assert bench.nodes.take_voided() == [("app/r1", "st0", 20)]
    assert bench.released("qnu0") == [20]
    assert len([c for c in bench.to("qnu1", "st0", Create) if c.number]) == 2
    (event,) = [r for r in bench.log if r.get("event") == "node_restarted"]
    assert event["qnu"] == "qnu1" and event["pairs_voided"] == 1
    bench.nodes.settle("app/r1", [])
    assert bench.delivered("qnu0") == bench.delivered("qnu1") == []


def test_a_node_that_refuses_fails_the_request_naming_it(bench: _Bench):
    """ERR NO_RESOURCES for the request (the node has no station clock yet): a set-up
    failure the engine turns into the request's ERR, naming the QNU and the station."""
    bench.nodes.open("st1", "app/r1", "qnu2", "qnu0")
    cid = _create_id(bench, "qnu2", "st1")
    bench.frame("qnu2", "st1", Err(cid, 2, NO_SEQ, ErrCode.NO_RESOURCES).encode())
    (refused,) = bench.nodes.refusals
    assert refused.station == "st1" and refused.request == "app/r1" and refused.current
    assert "qnu2's node agent at st1 refused" in str(refused.error)
    assert "no station clock" in str(refused.error)


def test_a_create_waits_for_a_node_not_heard_yet():
    """A node not heard yet has no route: its CREATE goes when its first heartbeat comes."""
    bench = _Bench()
    bench.heartbeat("qnu0", "st0")
    bench.nodes.open("st0", "app/r1", "qnu0", "qnu1")
    assert len(bench.to("qnu0", "st0", Create)) == 1 and bench.nodes.qnus_heard() == []
    bench.heartbeat("qnu1", "st0")
    assert len(bench.to("qnu1", "st0", Create)) == 1
    bench.heartbeat("qnu0", "st1")
    assert bench.nodes.qnus_heard() == ["qnu0"]  # its nodes at both stations


def test_hostile_frames_are_refused_and_counted(bench: _Bench):
    """Another QNU's sender id, an earlier incarnation's heartbeat, another QNU's OK, an
    unknown link's verdict, a verdict for another station's request, a repeated OK, an OK
    far beyond what the station published, a refusal replayed, an ACK of another's request,
    garbage, a message no node sends: each refused under its reason, nothing handed on."""
    bench.nodes.open("st0", "app/r1", "qnu0", "qnu1")
    cid = _create_id(bench)
    bench.nodes.judged("st0", 30, 4.0, 1)
    owner_of_qnu1 = bench.nodes.ids[("qnu1", "st0")]
    bench.frame("qnu0", "st0", Heartbeat(owner_of_qnu1, 1 << 32, 0).encode())
    bench.heartbeat("qnu0", "st0", incarnation=0)
    bench.ok("qnu2", "st0", cid, 30)
    bench.frame("qnu0", "st0", encode_ok_batch(cid, 9, 0.6, 0, np.array([30], np.uint64)))
    bench.ok("qnu0", "st1", cid, 30)
    bench.ok("qnu0", "st0", cid, 30)
    bench.ok("qnu0", "st0", cid, 30)
    bench.ok("qnu0", "st0", cid, 30 + MAX_AHEAD + 1)
    assert bench.released("qnu0") == [30 + MAX_AHEAD + 1]  # the node frees it all the same
    for _ in range(3):
        bench.frame("qnu1", "st0", Err(cid, 1, NO_SEQ, ErrCode.NO_RESOURCES).encode())
    assert len(bench.nodes.refusals) == 1
    bench.frame("qnu2", "st0", Ack(cid, 0.1).encode())
    bench.frame("qnu0", "st0", b"\x01\xff garbage")
    bench.frame("qnu0", "st0", Create(1, 1, 0.0, 0.0, 0, 1, 0, True).encode())
    errors = bench.nodes.decoder.errors
    for reason in ("heartbeat not of this QNU's nodes", "heartbeat of an earlier incarnation",
                   "verdict for another link", "verdict for a request not of this node",
                   "verdict repeated", "OK for a herald the station never published",
                   "refusal of a request ended or refused already",
                   "ack of a request not of this node", "not a node's message"):
        assert errors[reason] >= 1, (reason, errors)
    assert sum(errors.values()) >= 12 and bench.pairs == []


def test_a_pair_a_restarted_node_no_longer_holds_is_not_handed_on(bench: _Bench):
    """Matched (both OKs in), then qnu1's node restarts before the engine took the pair:
    the fabric asks `holds` before it hands a pair on, and the pair is no longer held."""
    bench.nodes.open("st0", "app/r1", "qnu0", "qnu1")
    cid = _create_id(bench)
    bench.nodes.judged("st0", 40, 5.0, 1)
    bench.ok("qnu0", "st0", cid, 40)
    bench.ok("qnu1", "st0", cid, 40)
    assert bench.pairs and bench.nodes.holds("st0", 40)
    bench.heartbeat("qnu1", "st0", incarnation=2)
    assert not bench.nodes.holds("st0", 40)


def test_a_reconnected_nodes_ok_before_its_heartbeat_is_taken_and_answered_there(
        bench: _Bench):
    """A node's connection dropped and came back (a new routing id): its queued OKs come
    before its next heartbeat. They are its key's owner's at the station its link names:
    taken, and the verdicts go to the new connection."""
    bench.nodes.open("st0", "app/r1", "qnu0", "qnu1")
    cid = _create_id(bench)
    bench.nodes.judged("st0", 50, 6.0, 1)
    bench.ok("qnu0", "st0", cid, 50)
    bench.nodes.receive("qnu1", [zmq.Frame(b"qnu1 again"), zmq.Frame(encode_ok_batch(
        cid, LINKS["st0"], 0.6, 0, np.array([50], np.uint64)))])
    assert bench.pairs == [("st0", 50, 6.0, 1)]
    bench.nodes.settle("app/r1", [("st0", 50)])
    (ok,) = [m for route, m in bench.sent if route == b"qnu1 again" and isinstance(m, OkBatch)]
    assert ok.seqs.tolist() == [50]


def test_closing_a_station_releases_the_oks_nothing_can_match_now(bench: _Bench):
    """The station goes to another pair: qnu0's one-sided OK is released at once (not at
    the request's end)."""
    bench.nodes.open("st0", "app/r1", "qnu0", "qnu1")
    cid = _create_id(bench)
    bench.ok("qnu0", "st0", cid, 60)
    bench.nodes.close("st0")
    assert bench.released("qnu0") == [60]


def test_node_ids_are_the_same_everywhere_and_bounded():
    """QNU by QNU in config order from 1 (0 is the station's); a bridge too big for 16-bit
    sender ids is refused naming the fix."""
    assert node_ids(["a", "b"], ["s", "t"]) == {("a", "s"): 1, ("a", "t"): 2,
                                                ("b", "s"): 3, ("b", "t"): 4}
    with pytest.raises(ConfigError, match="fewer paths"):
        node_ids([f"q{i}" for i in range(MAX_NODE_ID // 2 + 1)], ["s", "t"])


class _NumberedFabric(SimulatedLinkFabric):
    """The link model's heralds, numbered as a station numbers them; the pairs it settles,
    and pairs it says a node no longer holds, as the test sets them."""

    def __init__(self, topology: Any) -> None:
        super().__init__(topology, 1)
        self.seq = 0
        self.settled: list[tuple[str, list[tuple[str, int]]]] = []
        self.void: list[tuple[str, str, int]] = []
        self.discarded: list[tuple[str, int]] = []

    def pop(self, now: float) -> Herald | None:
        herald = super().pop(now)
        if herald is None:
            return None
        self.seq += 1
        return replace(herald, seq=self.seq)

    def settle(self, request: str, delivered: list[tuple[str, int]]) -> None:
        self.settled.append((request, list(delivered)))

    def take_voided(self) -> list[tuple[str, str, int]]:
        void, self.void = self.void, []
        return void

    def discard(self, request: str, pairs: list[tuple[str, int]]) -> None:
        self.discarded += pairs


def test_the_engine_drops_a_voided_pair_and_settles_what_it_delivered():
    """A pair a node no longer holds (it restarted) is no longer held for its request: the
    request waits for another, and the fabric is told which pairs were delivered."""
    topology = load_bridge_config(REPO / "lab_configs" / "bridge_8.yaml").topology()
    fabric = _NumberedFabric(topology)
    engine = BridgeEngine(topology, Scheduler(topology), fabric, 1)
    engine.handle("app", RequestPairs("r1", "qnu0", "qnu1", 2, 0.55, None), 0.0)
    now = 0.0
    while not engine.open["app/r1"].held:
        now += 0.001
        engine.advance(now)
    ((_, _, _, first),) = engine.open["app/r1"].held
    fabric.void.append(("app/r1", *first))
    engine.advance(now)
    assert engine.open["app/r1"].held == [] and engine.counters["pairs_voided"] == 1
    engine.advance(now + 20.0)
    (delivered,) = [m for _, m in engine.outbox if isinstance(m, Delivered)]
    assert len(delivered.fidelities) == 2
    ((request, pairs),) = fabric.settled
    assert request == "app/r1" and len(pairs) == 2 and first not in pairs


def test_a_node_gone_quiet_is_taken_as_lost_and_its_pairs_void(bench: _Bench):
    """qnu1's node at st0 sends no heartbeat for longer than `node_silence` (2 s): it may
    have died, so the pair both held is void (both halves released) and the engine is told;
    heard again, it gets its CREATE again."""
    bench.nodes.open("st0", "app/r1", "qnu0", "qnu1")
    cid = _create_id(bench)
    bench.nodes.judged("st0", 70, 7.0, 1)
    bench.ok("qnu0", "st0", cid, 70)
    bench.ok("qnu1", "st0", cid, 70)
    bench.now += 1.9
    others = [p for p in bench.nodes.ids if p != ("qnu1", "st0")]
    for path in others:  # every node but qnu1's at st0 keeps heartbeating
        bench.heartbeat(*path)
    bench.nodes.tick()
    assert bench.nodes.holds("st0", 70)  # 1.9 s: not yet
    bench.now += 0.2
    bench.nodes.tick()
    assert not bench.nodes.holds("st0", 70)
    assert bench.nodes.take_voided() == [("app/r1", "st0", 70)]
    assert bench.released("qnu0") == [70] and bench.released("qnu1") == [70]
    assert bench.nodes.counters["nodes_lost"] == 1
    bench.heartbeat("qnu1", "st0")
    assert len([c for c in bench.to("qnu1", "st0", Create) if c.number]) == 2
    assert [r["event"] for r in bench.log if r.get("qnu") == "qnu1"][-2:] == \
        ["node_lost", "node_back"]


def test_a_pair_of_no_use_is_freed_at_both_nodes_at_once(bench: _Bench):
    """The engine found a held pair expired (older than its request can use): both nodes
    free it now (ERR EXPIRED), and it is neither held nor released again at the end."""
    bench.nodes.open("st0", "app/r1", "qnu0", "qnu1")
    cid = _create_id(bench)
    bench.nodes.judged("st0", 80, 8.0, 1)
    bench.ok("qnu0", "st0", cid, 80)
    bench.ok("qnu1", "st0", cid, 80)
    bench.nodes.discard("app/r1", [("st0", 80)])
    for qnu in ("qnu0", "qnu1"):
        (freed,) = bench.to(qnu, "st0", ErrBatch)
        assert freed.code == ErrCode.EXPIRED and freed.seqs.tolist() == [80]
    assert not bench.nodes.holds("st0", 80)
    bench.nodes.settle("app/r1", [])
    assert bench.released("qnu0") == bench.released("qnu1") == [80]  # once, not twice


def test_the_engine_tells_the_fabric_which_pairs_expired():
    """Pairs a request held past their usable age are passed to the fabric's `discard`,
    as many as the engine counts expired."""
    topology = load_bridge_config(REPO / "lab_configs" / "bridge_8.yaml").topology()
    fabric = _NumberedFabric(topology)
    engine = BridgeEngine(topology, Scheduler(topology), fabric, 1)
    engine.handle("app", RequestPairs("r1", "qnu0", "qnu1", 3, 0.55, None), 0.0)
    engine.advance(60.0)
    # (seed 1: three pairs at once, at ~27 Hz with 52 ms usable, take many expiries)
    assert engine.counters["pairs_expired"] > 0
    assert len(fabric.discarded) == engine.counters["pairs_expired"]
    ((_, delivered),) = fabric.settled
    assert not set(delivered) & set(fabric.discarded)
