"""Every message handler of the station, the node agent and the orchestrator treats every frame
as hostile (issue 11, items 9-11): fed arbitrary bytes, and well-formed frames whose field
values are anything their layout can carry, a handler never raises and keeps serving (a
legitimate message afterwards is still handled correctly). The handlers are driven without
processes, through the same methods the process loops call (`HeraldPublisher.answer`, the
node's `_drain_heralds` / `Node.on_station_reply` / `Node.on_orchestrator_frame`,
`_Orchestrator.receive`). Hypothesis runs derandomized, so every run feeds the same frames.

The last test is the process-level one: frames beyond `SOCKET_MAXMSGSIZE` sent to the real
station's and orchestrator's ROUTERs are refused inside libzmq (the sender is disconnected,
the processes never see them) and the link delivers every pair it is asked for.
"""

from __future__ import annotations

import functools
import itertools
import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_network_runtime import lab_config, plan, wait_for_heralds_at_both_nodes

from qnetlab.network import ProcessGroup
from qnetlab.network.herald_publisher import HeraldPublisher
from qnetlab.network.heralding_station import StationSettings, incarnation_seq
from qnetlab.network.keys import make_curve_client
from qnetlab.network.lab import read_pairs, start_lab
from qnetlab.network.messages import (
    _FIXED,
    MAX_HERALDS_PER_FRAME,
    MAX_SEQ,
    MAX_STATION_TIME_PS,
    NO_SEQ,
    SOCKET_MAXMSGSIZE,
    VERSION,
    Ack,
    AttemptStats,
    ClockReply,
    ClockRequest,
    Create,
    Decoder,
    Err,
    ErrCode,
    Heartbeat,
    Heralds,
    MsgType,
    Ok,
    OkBatch,
    ResendRequest,
    decode,
    encode_herald,
)
from qnetlab.network.node_agent import PairEvent, _drain_heralds
from qnetlab.network.node_state import Node, NodeSettings
from qnetlab.network.orchestrator import OrchestratorSettings, _Orchestrator, run_orchestrator
from qnetlab.network.test_signals import PeriodicHeralds

pytestmark = [pytest.mark.slow, pytest.mark.processes]

LINK = 3
NODE_IDS = {"node_a": 1, "node_b": 2}
INCARNATION = 5
LEGIT_SEQ = 2**40 + 7
"""The pair of the orchestrator's check: left out of the hostile seqs (`_FIELD["Q"]`)."""

HYPOTHESIS = settings(derandomize=True, max_examples=300, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow,
                                             HealthCheck.function_scoped_fixture])

# -- strategies ------------------------------------------------------------------------------
# A frame is arbitrary bytes, or a well-formed encoding of a message whose field values are
# anything the layout can carry: either every field drawn at will, or a message a receiver
# would take (our link, our ids, seqs near the stream's, "now") with one or two fields
# replaced by an edge value (the layout's extremes, the legal limits and one past them) or
# any value. The second kind reaches deep into the handlers.


def _ints(lo: int, hi: int, *edges: int) -> st.SearchStrategy[int]:
    values = sorted({v for v in (lo, hi, 0, 1, *edges) if lo <= v <= hi})
    return st.one_of(st.sampled_from(values), st.integers(lo, hi))


_FIELD = {
    "B": _ints(0, 2**8 - 1, 2, 5, 6),
    "H": _ints(0, 2**16 - 1, LINK, 2),
    "I": _ints(0, 2**32 - 1, 2, 99, INCARNATION, 2**31),
    "Q": st.one_of(_ints(0, 2**64 - 1, 300, 2**32 + 300, incarnation_seq(0, INCARNATION + 1)),
                   st.sampled_from([MAX_SEQ + 1, 2**63, NO_SEQ]),  # where int64 wraps
                   st.sampled_from([MAX_SEQ, NO_SEQ])).filter(lambda v: v != LEGIT_SEQ),
    "q": _ints(-(2**63), 2**63 - 1, 10**12, 3 * 10**12, MAX_STATION_TIME_PS,
               MAX_STATION_TIME_PS + 1, -MAX_STATION_TIME_PS - 1),
    "d": st.sampled_from([0.0, 0.9, 1.0, float("nan"), float("inf"), -1.0, 1.0000001]),
}

_NOW_PS = 10**12
"""Station time of the node rigs below (they start 1 s into the station's run)."""

Template = tuple[type, tuple[int | float, ...]]
"""A message class and the field values of a message its receiver would take."""

TO_STATION: list[Template] = [(ClockRequest, (1, 3, 12345)), (ResendRequest, (LINK, 5, 7))]
TO_NODE_PUB: list[Template] = [
    (Heartbeat, (0, incarnation_seq(3, INCARNATION), _NOW_PS)),
    (AttemptStats, (LINK, 0, 10, 1, _NOW_PS, 310, INCARNATION))]
TO_NODE_FROM_STATION: list[Template] = [(ClockReply, (1, 0, 0, 10**9, 10**9 + 1000))]
TO_NODE_FROM_ORCHESTRATOR: list[Template] = [
    (Create, (1, 2, 0.5, 0.0, 0, 10, 0, 1)), (Ok, (1, LINK, 300, 0.9, _NOW_PS)),
    (Err, (1, LINK, 300, 5)), (Err, (1, LINK, NO_SEQ, 3))]
TO_ORCHESTRATOR: list[Template] = [
    (Heartbeat, (1, incarnation_seq(3, INCARNATION), 0)), (Ack, (1, 0.01)),
    (Ok, (1, LINK, 300, 0.9, _NOW_PS)), (Ok, (1, LINK, 301, 1.0, 0)), (Err, (1, LINK, 300, 6)),
    (Err, (1, LINK, NO_SEQ, 2))]


def _mutated(draw: st.DrawFn, codes: str, values: tuple[int | float, ...],
             fewest: int = 1) -> list[int | float]:
    """`values` with `fewest`..2 of its fields (layout `codes`) drawn from `_FIELD`."""
    fields = list(values)
    for index in draw(st.sets(st.sampled_from(range(len(codes))), min_size=fewest,
                              max_size=2)):
        fields[index] = draw(_FIELD[codes[index]])
    return fields


@st.composite
def fixed_frame(draw: st.DrawFn) -> bytes:
    """A fixed-layout message with every field drawn at will."""
    cls = draw(st.sampled_from(sorted(_FIXED.values(), key=lambda c: c.TYPE)))
    fields = [draw(_FIELD[code]) for code in cls._STRUCT.format[3:]]
    return cls._STRUCT.pack(VERSION, cls.TYPE, *fields)


@st.composite
def near_legal_frame(draw: st.DrawFn, templates: list[Template]) -> bytes:
    """A message its receiver would take (one of `templates`), one or two fields replaced."""
    cls, values = draw(st.sampled_from(templates))
    layout = cls._STRUCT  # type: ignore[attr-defined]
    return layout.pack(VERSION, cls.TYPE, *_mutated(draw, layout.format[3:], values))


@st.composite
def herald_frame(draw: st.DrawFn) -> bytes:
    """A HERALDS frame of 1-4 records (count consistent), each a herald of our stream with
    up to two fields replaced."""
    first = draw(st.integers(290, 330))
    records = [_mutated(draw, "HQQBq", (LINK, first + i, first + i, i % 2, _NOW_PS), 0)
               for i in range(draw(st.integers(1, 4)))]
    body = b"".join(struct.pack("<HQQBq", *r) for r in records)
    return struct.pack("<BBI", VERSION, MsgType.HERALDS, len(records)) + body


@st.composite
def batch_frame(draw: st.DrawFn) -> bytes:
    """An OK_BATCH or ERR_BATCH of 1-5 seqs near the stream's (count consistent, seqs in
    order unless drawn otherwise), its header fields near legal with up to two replaced."""
    first = draw(st.sampled_from([290, 300, 320, LEGIT_SEQ - 3]))
    seqs = sorted({first + draw(st.integers(0, 20)) for _ in range(draw(st.integers(1, 5)))})
    if draw(st.booleans()):  # one seq anything at all (order, duplicates, MAX_SEQ, wrap)
        seqs[draw(st.integers(0, len(seqs) - 1))] = draw(_FIELD["Q"])
    if draw(st.booleans()):
        head = _mutated(draw, "IHdq", (1, LINK, 0.9, _NOW_PS), 0)
        header = struct.pack("<BBIHdqI", VERSION, MsgType.OK_BATCH, *head, len(seqs))
    else:
        head = _mutated(draw, "IHB", (1, LINK, int(ErrCode.DISAGREED)), 0)
        header = struct.pack("<BBIHBI", VERSION, MsgType.ERR_BATCH, *head, len(seqs))
    return header + struct.pack(f"<{len(seqs)}Q", *seqs)


def hostile_frame(templates: list[Template], heralds: bool = False,
                  batches: bool = False) -> st.SearchStrategy[bytes]:
    """Any frame, mostly near-legal for a receiver of `templates` (and of heralds, and of
    batches of OK/ERR)."""
    near = ([near_legal_frame(templates)] * 3 + [herald_frame()] * (3 if heralds else 0)
            + [batch_frame()] * (3 if batches else 0))
    return st.one_of(
        st.binary(max_size=64),
        st.builds(lambda kind, body: bytes([VERSION, kind]) + body, st.integers(0, 14),
                  st.binary(max_size=80)),
        fixed_frame(), *near)


# -- the station ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def context() -> Iterator[zmq.Context]:
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture(scope="module")
def station(context: zmq.Context, tmp_path_factory: pytest.TempPathFactory
            ) -> HeraldPublisher:
    """A station 1 s into its run with a 1 kHz test signal: ~1000 heralds decided and kept.
    Its sockets are bound nowhere: what it publishes is dropped."""
    epoch_ns = time.monotonic_ns() - 10**9
    settings_ = StationSettings(
        name="station", link_id=LINK, herald_address="", request_address="", key_dir=None,
        run_dir=tmp_path_factory.mktemp("station"), epoch_ns=epoch_ns, history=4096)
    pub, router = context.socket(zmq.PUB), context.socket(zmq.ROUTER)
    for socket in (pub, router):
        socket.linger = 0
    station = HeraldPublisher(settings_, pub, router)
    signal = PeriodicHeralds(10**9, epoch_ns=epoch_ns, link_id=LINK, start_ps=0)
    station.publish(signal.until((time.monotonic_ns() - epoch_ns) * 1000))
    assert station.decided_seq >= 500
    return station


def _station_serves(station: HeraldPublisher) -> None:
    """A clock request is answered, and a resend of held heralds returns them."""
    t2_ns = time.monotonic_ns() - station.settings.epoch_ns
    reply = decode(station.answer(ClockRequest(9, 77, 123).encode(), t2_ns) or b"")
    assert isinstance(reply, ClockReply)
    assert (reply.sender_id, reply.seq, reply.t1_ns, reply.t2_ns) == (9, 77, 123, t2_ns)
    resent = decode(station.answer(ResendRequest(LINK, 5, 7).encode(), t2_ns) or b"")
    assert isinstance(resent, Heralds) and resent.records["seq"].tolist() == [5, 6, 7]


_HUGE_COUNT = struct.pack("<BBI", VERSION, MsgType.HERALDS, 2**32 - 1) + bytes(27)
"""A HERALDS header claiming 2^32 - 1 records (a frame of 116 GB)."""


@HYPOTHESIS
@given(frames=st.lists(hostile_frame(TO_STATION), min_size=2, max_size=10))
@example(frames=[_HUGE_COUNT, ResendRequest._STRUCT.pack(VERSION, MsgType.RESEND_REQUEST, LINK,
                                                         0, 2**64 - 1)])
def test_station_answers_every_frame_without_raising_and_keeps_serving(
        station: HeraldPublisher, frames: list[bytes]) -> None:
    decoder = station.decoder
    before = decoder.decoded + sum(decoder.errors.values())
    for frame in frames:
        reply = station.answer(frame, time.monotonic_ns() - station.settings.epoch_ns)
        if reply is not None:  # whatever it sends is itself a legal message
            assert isinstance(decode(reply), ClockReply | Heralds)
            assert len(reply) <= SOCKET_MAXMSGSIZE
    # Every frame was decoded, or counted as malformed.
    assert decoder.decoded + sum(decoder.errors.values()) >= before + len(frames)
    _station_serves(station)


def test_station_drops_resends_it_cannot_answer(station: HeraldPublisher) -> None:
    t2_ns = 0
    errors = station.decoder.errors
    assert station.answer(ResendRequest(LINK + 1, 5, 7).encode(), t2_ns) is None
    assert errors["resend of another link"] >= 1
    beyond = ResendRequest(LINK, station.decided_seq, station.decided_seq + 5)
    assert station.answer(beyond.encode(), t2_ns) is None
    assert errors["resend beyond the heralds decided"] >= 1
    # A range wider than one frame, or seqs beyond MAX_SEQ, never reach the handler.
    bad_values = errors["bad value"]
    wide = struct.pack("<BBHQQ", VERSION, MsgType.RESEND_REQUEST, LINK, 0, MAX_HERALDS_PER_FRAME)
    assert station.answer(wide, t2_ns) is None
    far = struct.pack("<BBHQQ", VERSION, MsgType.RESEND_REQUEST, LINK, MAX_SEQ + 1, MAX_SEQ + 1)
    assert station.answer(far, t2_ns) is None
    assert errors["bad value"] == bad_values + 2
    _station_serves(station)


# -- the node agent ------------------------------------------------------------------------

_rigs = itertools.count()


class NodeRig:
    """A `Node` whose three sockets reach test sockets over inproc: the station's PUB and
    ROUTER, and the orchestrator's ROUTER, so what the node sends can be read."""

    def __init__(self, context: zmq.Context, run_dir: Path, *, cross_host: bool) -> None:
        n = next(_rigs)
        self.pub, self.station, self.orchestrator = (
            context.socket(kind) for kind in (zmq.PUB, zmq.ROUTER, zmq.ROUTER))
        node_sockets = [context.socket(kind) for kind in (zmq.SUB, zmq.DEALER, zmq.DEALER)]
        self.sockets = [self.pub, self.station, self.orchestrator, *node_sockets]
        for socket in self.sockets:
            socket.linger = 0
            socket.sndhwm = socket.rcvhwm = 0  # never block the handler under test
        addresses = [f"inproc://{role}-{n}" for role in ("pub", "station", "orch")]
        for server, client, address in zip(self.sockets[:3], node_sockets, addresses,
                                           strict=True):
            server.bind(address)
            client.connect(address)
        self.epoch_ns = time.monotonic_ns() - 10**9  # station time: 1 s in
        self.settings = NodeSettings(
            name=f"node_a{n}", node_id=NODE_IDS["node_a"], link_id=LINK, station_name="station",
            herald_address=addresses[0], request_address=addresses[1],
            orchestrator_name="orchestrator", orchestrator_address=addresses[2], key_dir=None,
            run_dir=run_dir, memory_cutoff=1.0, goodness=0.9, expected_pair_rate=1000.0,
            epoch_ns=None if cross_host else self.epoch_ns,
            ok_interval=0.0)  # each batch answered at once: the frame that leaves is checked
        self.pairs = open(run_dir / f"{n}_pairs.bin", "wb")  # noqa: SIM115 (closed in close)
        self.events = open(run_dir / f"{n}_events.jsonl", "w")  # noqa: SIM115
        self.node = Node(self.settings, *node_sockets, self.pairs, self.events)

    def close(self) -> None:
        for socket in self.sockets:
            socket.close(linger=0)
        self.pairs.close()
        self.events.close()

    def from_pub(self, frame: bytes) -> None:
        """As the node agent's loop takes a frame off its SUB socket."""
        _drain_heralds(self.node, self.node.sub, self.node.on_station_pub,
                       (frame, time.monotonic_ns()))

    def received(self, socket: zmq.Socket, until: type, predicate: object = None,
                 timeout: float = 5.0) -> list[object]:
        """Messages the node sent to `socket` until one of type `until` (that `predicate`
        holds for) came; fails after `timeout` s."""
        seen: list[object] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not socket.poll(100):
                continue
            message = decode(socket.recv_multipart()[-1])
            seen.append(message)
            if isinstance(message, until) and (predicate is None or predicate(message)):  # type: ignore[operator]
                return seen
        raise AssertionError(f"the node sent no {until.__name__}; it sent {seen[-5:]}")

    def sync_clock(self) -> tuple[int, int]:
        """One genuine clock exchange (station time ~1 s); the request's (seq, t1)."""
        self.node.send_clock_request()
        request = self.received(self.station, ClockRequest)[-1]
        assert isinstance(request, ClockRequest)
        t2_ns = time.monotonic_ns() - self.epoch_ns
        reply = ClockReply(request.sender_id, request.seq, request.t1_ns, t2_ns, t2_ns + 1000)
        self.node.on_station_reply(reply.encode(), time.monotonic_ns())
        assert self.node.clock.ready
        self.node.send_clock_request()  # outstanding: hostile replies may answer this one
        pending = self.received(self.station, ClockRequest)[-1]
        assert isinstance(pending, ClockRequest)
        return pending.seq, pending.t1_ns


def _node_serves(rig: NodeRig) -> None:
    """A new CREATE is acknowledged, and the next herald of the stream is OK'd for it."""
    node = rig.node
    while rig.orchestrator.poll(0):  # what the hostile frames made it send
        rig.orchestrator.recv_multipart()
    if not node.clock.ready and node.settings.epoch_ns is None:  # a station restart reset it
        rig.sync_clock()
    node.on_orchestrator_frame(Create(99, 2, 0.0, 0.0, 0, 5, 0, True).encode(), 0)
    rig.received(rig.orchestrator, Ack, lambda m: m.create_id == 99)
    seq = (node.base + node.tracker.next_seq) if node.base is not None else 1000
    if seq > MAX_SEQ:  # hostile heralds took the stream to its end: no next herald exists
        return
    now_ps = node.station_ps(time.monotonic_ns())
    assert now_ps is not None
    rig.from_pub(encode_herald(LINK, seq, 1, 0, now_ps))
    rig.received(rig.orchestrator, OkBatch, lambda m: (m.create_id, m.seqs.tolist()) == (99, [seq]))
    assert seq in node.held
    # The orchestrator's verdict (a batch) frees it, logged as delivered.
    node.on_orchestrator_frame(OkBatch(99, LINK, 0.9, now_ps, [seq]).encode(), 0)
    assert seq not in node.held


def _channel_frames() -> st.SearchStrategy[list[tuple[str, bytes]]]:
    """Frames on each of a node's three sockets, each mostly near what comes there."""
    return st.lists(st.one_of(
        st.tuples(st.just("pub"), hostile_frame(TO_NODE_PUB, heralds=True)),
        st.tuples(st.just("station"), hostile_frame(TO_NODE_FROM_STATION, heralds=True)),
        st.tuples(st.just("orchestrator"), hostile_frame(TO_NODE_FROM_ORCHESTRATOR,
                                                         batches=True))),
        min_size=4, max_size=12)


_STATS_2_64 = AttemptStats._STRUCT.pack(VERSION, MsgType.ATTEMPT_STATS, LINK, 0, 10, 1, 0,
                                       2**64 - 1, INCARNATION)


@HYPOTHESIS
@given(frames=_channel_frames(), cross_host=st.booleans(),
       clock_replies=st.lists(st.tuples(_FIELD["q"], _FIELD["q"], _FIELD["q"]), max_size=3))
@example(frames=[("pub", _STATS_2_64), ("pub", encode_herald(LINK, 301, 1, 0, _NOW_PS))],
         cross_host=False, clock_replies=[])  # item 10: OverflowError
@example(frames=[("pub", encode_herald(LINK, 300, 1, 0, _NOW_PS)), ("pub", _STATS_2_64),
                 ("pub", encode_herald(LINK, 301, 1, 0, _NOW_PS))],
         cross_host=False, clock_replies=[])
@example(frames=[("pub", encode_herald(LINK, 300, 1, 0, _NOW_PS)),
                 ("pub", encode_herald(LINK, 2**63 + 5, 1, 0, _NOW_PS)), ("pub", _HUGE_COUNT)],
         cross_host=False, clock_replies=[])  # item 10: a seq wrapping through int64
def test_node_handles_every_frame_without_raising_and_keeps_serving(
        context: zmq.Context, tmp_path: Path, frames: list[tuple[str, bytes]],
        cross_host: bool, clock_replies: list[tuple[int, int, int]]) -> None:
    rig = NodeRig(context, tmp_path, cross_host=cross_host)
    try:
        node = rig.node
        rig.from_pub(Heartbeat(0, incarnation_seq(0, INCARNATION), 0).encode())
        if cross_host:  # the clock from exchanges: hostile replies to a real request too
            seq, t1_ns = rig.sync_clock()
            for t2_ns, t3_ns, delay_ns in clock_replies:
                frame = ClockReply._STRUCT.pack(VERSION, MsgType.CLOCK_REPLY,
                                                node.settings.node_id, seq, t1_ns, t2_ns, t3_ns)
                node.on_station_reply(frame, t1_ns + abs(delay_ns) % 10**10)
        node.on_orchestrator_frame(Create(1, 2, 0.0, 0.0, 0, 1000, 0, True).encode(), 0)
        for channel, frame in frames:
            received_ns = time.monotonic_ns()
            if channel == "pub":
                rig.from_pub(frame)
            elif channel == "station":
                node.on_station_reply(frame, received_ns)
            else:
                node.on_orchestrator_frame(frame, received_ns)
            # The loop's timers run between messages.
            node.request_gaps()
            node.check_station()
            node.heartbeat()
        _node_serves(rig)
        node.summary()
    finally:
        rig.close()


def test_attempt_stats_count_beyond_belief_then_a_herald(context: zmq.Context,
                                                         tmp_path: Path) -> None:
    """Item 10: AttemptStats with heralds_decided = 2^64 - 1, then any herald, raised
    OverflowError; herald seqs >= 2^63 wrapped through astype(int64)."""
    rig = NodeRig(context, tmp_path, cross_host=False)
    try:
        node = rig.node
        rig.from_pub(Heartbeat(0, incarnation_seq(0, INCARNATION), 0).encode())
        now_ps = node.station_ps(time.monotonic_ns())
        assert now_ps is not None
        rig.from_pub(encode_herald(LINK, 300, 1, 0, now_ps))
        raw = AttemptStats._STRUCT.pack(VERSION, MsgType.ATTEMPT_STATS, LINK, 0, 10, 1, 0,
                                        2**64 - 1, INCARNATION)
        rig.from_pub(raw)
        rig.from_pub(encode_herald(LINK, 2**63 + 301, 1, 0, now_ps))
        assert node.decoder.errors["bad value"] == 2
        # Legal values the node cannot believe: counted too, and dropped.
        rig.from_pub(AttemptStats(LINK, 0, 10, 1, 0, MAX_SEQ + 1, INCARNATION).encode())
        rig.from_pub(encode_herald(LINK, MAX_SEQ, 1, 0, now_ps))
        rig.from_pub(encode_herald(LINK, 302, 1, 0, now_ps + 10 * 10**12))
        assert node.decoder.errors["heralds_decided beyond belief"] == 1
        assert node.decoder.errors["herald seq beyond belief"] == 1
        assert node.decoder.errors["herald from the future"] == 1
        assert node.tracker.next_seq + node.base == 301  # nothing above moved the stream
        _node_serves(rig)
    finally:
        rig.close()


def test_node_refuses_clock_replies_it_never_asked_for(context: zmq.Context,
                                                       tmp_path: Path) -> None:
    """Across hosts the node's station time comes from its clock exchanges: a reply that
    answers none of its requests, or that cannot be a true answer, leaves the clock alone."""
    rig = NodeRig(context, tmp_path, cross_host=True)
    try:
        node = rig.node
        seq, t1_ns = rig.sync_clock()
        offset_s = node.clock.estimate().offset_s
        now = time.monotonic_ns()
        for reply in (ClockReply(1, seq + 5, t1_ns, 10**9, 10**9),  # no such request
                      ClockReply(1, seq, t1_ns + 1, 10**9, 10**9),  # not its t1
                      ClockReply(1, seq, t1_ns, 0, 10**15),  # held longer than the round trip
                      ClockReply(1, seq, t1_ns, 10**15, 10**15)):  # far from the estimate
            node.on_station_reply(reply.encode(), now)
        assert node.counters["clock_reply_rejected"] == 4
        assert node.clock.estimate().offset_s == offset_s
        _node_serves(rig)
    finally:
        rig.close()


# -- the orchestrator ------------------------------------------------------------------------


def _orchestrator(router: zmq.Socket, run_dir: Path) -> _Orchestrator:
    """Without CURVE (the routing identity names the node), pairs without end."""
    settings_ = OrchestratorSettings(
        name="orchestrator", address="", key_dir=None, run_dir=run_dir, link_id=LINK,
        nodes=("node_a", "node_b"), node_ids=(1, 2), pairs=10**7, epoch_ns=time.monotonic_ns(),
        max_time=1e6)
    return _Orchestrator(settings_, router)


def _from(orchestrator: _Orchestrator, node: str, frame: bytes) -> None:
    orchestrator.receive([zmq.Frame(node.encode()), zmq.Frame(frame)])


def _orchestrator_serves(orchestrator: _Orchestrator) -> None:
    """Both nodes beat (in the incarnation it last saw), and a pair both OK is delivered;
    or the request was refused by a legal refusal of the current request."""
    for node, node_id in NODE_IDS.items():
        incarnation = orchestrator.heartbeat.get(node, incarnation_seq(0, INCARNATION)) >> 32
        _from(orchestrator, node, Heartbeat(node_id, incarnation_seq(999, incarnation),
                                            0).encode())
    orchestrator.tick()
    if orchestrator.failed:
        assert "refused the request" in orchestrator.failed
        return
    assert orchestrator.active
    delivered = orchestrator.delivered_count
    for node in NODE_IDS:
        _from(orchestrator, node, OkBatch(orchestrator.create_id, LINK, 0.9, 0,
                                          [LEGIT_SEQ]).encode())
    assert orchestrator.delivered_count == delivered + 1
    assert orchestrator.delivered[-1]["seq"] == LEGIT_SEQ


@pytest.fixture(scope="module")
def unbound_router(context: zmq.Context) -> Iterator[zmq.Socket]:
    router = context.socket(zmq.ROUTER)  # bound nowhere: what is sent to it is dropped
    router.linger = 0
    yield router
    router.close()


_SENDERS = st.sampled_from([b"node_a", b"node_b"] * 3 + [b"station", b""])
_EXTRA_FRAMES = st.one_of(st.just([]), st.just([]), st.lists(st.binary(max_size=8), min_size=1,
                                                             max_size=2))
"""Mostly none: a message of more than two frames is dropped before it is decoded."""


@HYPOTHESIS
@given(messages=st.lists(st.tuples(_SENDERS, hostile_frame(TO_ORCHESTRATOR, batches=True),
                                   _EXTRA_FRAMES), min_size=4, max_size=12))
@example(messages=[(b"node_a", Ok._STRUCT.pack(VERSION, MsgType.OK, 1, LINK, NO_SEQ, 0.9, 0),
                    [])])  # item 9: AssertionError
def test_orchestrator_handles_every_frame_without_raising_and_keeps_serving(
        unbound_router: zmq.Socket, tmp_path: Path,
        messages: list[tuple[bytes, bytes, list[bytes]]]) -> None:
    orchestrator = _orchestrator(unbound_router, tmp_path)
    for node, node_id in NODE_IDS.items():
        _from(orchestrator, node, Heartbeat(node_id, incarnation_seq(0, INCARNATION),
                                            0).encode())
    orchestrator.tick()
    assert orchestrator.active and orchestrator.create_id == 1
    for sender, frame, extra in messages:
        orchestrator.receive([zmq.Frame(sender), zmq.Frame(frame), *map(zmq.Frame, extra)])
        orchestrator.flush()
        orchestrator.tick()
        orchestrator.wait_ms()
    _orchestrator_serves(orchestrator)
    json.dumps(orchestrator.result())


def test_ok_with_no_seq_does_not_stop_the_orchestrator(unbound_router: zmq.Socket,
                                                       tmp_path: Path) -> None:
    """Item 9: an OK with seq 2^64 - 1 raised AssertionError. Also: a refusal of another
    request, a verdict for another link or for a pair already delivered changes nothing."""
    orchestrator = _orchestrator(unbound_router, tmp_path)
    _orchestrator_serves(orchestrator)
    _from(orchestrator, "node_a", Ok._STRUCT.pack(VERSION, MsgType.OK, 1, LINK, NO_SEQ, 0.9, 0))
    _from(orchestrator, "node_a", Err(7, LINK, NO_SEQ, ErrCode.UNSUPPORTED).encode())
    _from(orchestrator, "node_b", Ok(1, LINK + 1, 12, 0.9, 0).encode())
    for node in NODE_IDS:  # a pair delivered once is never delivered again
        _from(orchestrator, node, Ok(1, LINK, LEGIT_SEQ, 0.9, 0).encode())
    _from(orchestrator, "node_a", Heartbeat(2, incarnation_seq(1, INCARNATION), 0).encode())
    errors = orchestrator.decoder.errors
    assert errors == {"bad value": 1, "refusal of another request": 1,
                      "verdict for another link": 1, "verdict for a pair already delivered": 2,
                      "heartbeat not of its node": 1}
    assert not orchestrator.failed and orchestrator.delivered_count == 1
    assert not any(len(p) for p in orchestrator.pending.values())


def test_handlers_count_what_they_drop_with_the_decoder() -> None:
    decoder = Decoder()
    decoder.reject("a reason")
    assert decoder.errors == {"a reason": 1} and decoder.decoded == 0


# -- processes: frames beyond MAXMSGSIZE ------------------------------------------------------


@pytest.fixture
def group() -> Iterator[ProcessGroup]:
    with ProcessGroup() as processes:
        yield processes


def _flooder(context: zmq.Context, key_dir: Path, key: str, server: str,
             address: str) -> tuple[zmq.Socket, zmq.Socket]:
    """A DEALER holding a lab key (an insider, or a buggy peer) and a monitor of it."""
    dealer = context.socket(zmq.DEALER)
    dealer.linger = 0
    make_curve_client(dealer, key_dir, key, server)
    monitor = dealer.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED)
    dealer.connect(address)
    return dealer, monitor


def _refused(dealer: zmq.Socket, monitor: zmq.Socket, frame: bytes, count: int) -> None:
    """Send `frame` `count` times; each must cost the sender its connection (libzmq refuses
    a frame beyond the peer's MAXMSGSIZE at its size header, and the DEALER reconnects
    with the next frame still queued)."""
    from zmq.utils.monitor import recv_monitor_message

    for _ in range(count):
        dealer.send(frame, copy=False)
    disconnects = 0
    deadline = time.monotonic() + 20
    while disconnects < count and time.monotonic() < deadline:
        if monitor.poll(200):
            disconnects += recv_monitor_message(monitor)["event"] == zmq.EVENT_DISCONNECTED
    assert disconnects == count, "the oversized frames were not refused by libzmq"


def test_frames_beyond_maxmsgsize_are_refused_and_heralds_keep_coming(tmp_path, group):
    """Item 11: three frames far beyond the largest legal message, to the station's ROUTER
    (before any pair is asked for) and to the orchestrator's. libzmq refuses each at its
    size header (the sender is disconnected: seen on its monitor), the processes never see
    them, and the link then delivers every pair it is asked for, the same set at both nodes,
    none of them expired or lost."""
    config = lab_config(tmp_path)
    pairs = 600
    lab = plan(config, pairs=pairs)
    start_lab(group, lab, functools.partial(PeriodicHeralds, 10**9),  # 1 kHz test signal
              orchestrator=False)
    wait_for_heralds_at_both_nodes(lab)
    huge = bytes([VERSION, MsgType.RESEND_REQUEST]) + bytes(20 * 2**20)  # 20 MB
    context = zmq.Context()
    flooders = [_flooder(context, config.key_dir, "orchestrator", "station",
                         lab.station.request_address),
                _flooder(context, config.key_dir, "station", "orchestrator",
                         lab.orchestrator.address)]
    try:
        _refused(*flooders[0], huge, 3)
        group.start(lab.orchestrator.name, run_orchestrator, lab.orchestrator)
        _refused(*flooders[1], huge, 3)
    finally:
        for dealer, monitor in flooders:
            dealer.disable_monitor()
            monitor.close(0)
            dealer.close(0)
        context.term()
    assert group.join(lab.orchestrator.name, 30) == 0, "orchestrator did not finish"
    group.stop_all()
    result = json.loads((lab.run_dir / "orchestrator_result.json").read_text())
    assert len(result["delivered"]) == pairs and not result["failed"]
    orchestrator_delivered = {d["seq"] for d in result["delivered"]}
    assert len(orchestrator_delivered) == pairs
    station = json.loads((lab.run_dir / "station_summary.json").read_text())
    # The frames never reached the processes: nothing malformed, nobody unknown.
    assert station["malformed"] == {} and result["malformed"] == {}
    assert "not_a_node" not in result["counters"]
    for node in lab.nodes:
        summary = json.loads((lab.run_dir / f"{node}_summary.json").read_text())
        # Only the history fetched at start-up (heralds before a node's first one) may be
        # answered too late on a loaded machine and counted lost; never one after it.
        assert summary["tracker"]["lost"] <= summary["counters"]["resync_heralds"], node
        log = read_pairs(lab.run_dir, node)
        # Both nodes hold as delivered exactly the orchestrator's pairs, each once. A pair
        # may expire when a loaded machine delays its verdict past the memory cutoff (the
        # flood never reaches the processes, see above), or be given up for lost: it is
        # never delivered.
        delivered = log["seq"][log["event"] == PairEvent.DELIVERED].tolist()
        assert len(delivered) == pairs and set(delivered) == orchestrator_delivered, node
        dropped = log["seq"][(log["event"] == PairEvent.EXPIRED)
                             | (log["event"] == PairEvent.LOST)]
        assert not orchestrator_delivered & set(dropped.tolist()), node


def test_parameter_service_refuses_an_oversized_request_and_keeps_answering(tmp_path):
    """The read-only parameter service's socket holds requests to a few kB too: a 4 MB one
    is refused inside libzmq (no answer), and the next GET is answered."""
    from qnetlab.network.keys import generate_lab_keys
    from qnetlab.network.parameters import (
        GET,
        ParameterServer,
        ParameterServiceError,
        fetch_parameters,
    )
    from qnetlab.network.parameters import VERSION as PARAMETERS_VERSION
    from qnetlab.network.parameters import request as parameter_request

    keys = tmp_path / "keys"
    generate_lab_keys(keys, ["node_a", "node_b"])
    with ParameterServer(lambda: {"eta": 0.5}, "tcp://127.0.0.1:*", keys, "node_b") as server:
        with pytest.raises(ParameterServiceError, match="no answer"):
            parameter_request(server.address, keys, "node_a", "node_b",
                              bytes([PARAMETERS_VERSION]) + GET + bytes(4 * 2**20), 1.0)
        assert fetch_parameters(server.address, keys, "node_a", "node_b", 10.0) == {"eta": 0.5}
        assert server.served == 1 and server.refused == 0
