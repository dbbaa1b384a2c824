"""A node agent's state machine (`network.node_state.Node`) fed messages directly, without the
process around it: what the station's AttemptStats and heartbeats do to its sequence state,
and the batches it sends the orchestrator and takes back (OK_BATCH, ERR_BATCH)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq

from qnetlab.network.heralding_station import incarnation_seq
from qnetlab.network.messages import (
    MAX_SEQS_PER_BATCH,
    Ack,
    AttemptStats,
    Create,
    ErrBatch,
    ErrCode,
    Heartbeat,
    OkBatch,
    decode,
    encode_heralds,
    make_heralds,
)
from qnetlab.network.node_state import PAIR_LOG_DTYPE, Node, NodeSettings, PairEvent

from conftest import free_port_run

LINK = 3


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    context = zmq.Context()
    port = free_port_run(3)
    address = [f"tcp://127.0.0.1:{port + i}" for i in range(3)]  # nobody listens
    settings = NodeSettings(
        name="node_a", node_id=1, link_id=LINK, station_name="station",
        herald_address=address[0], request_address=address[1], orchestrator_name="orch",
        orchestrator_address=address[2], key_dir=None, run_dir=tmp_path, memory_cutoff=1.0,
        goodness=0.9, expected_pair_rate=1000.0, epoch_ns=time.monotonic_ns(),
        ok_interval=0.0)  # each batch answered at once: a test sees what leaves as it leaves
    sockets = [context.socket(kind) for kind in (zmq.SUB, zmq.DEALER, zmq.DEALER)]
    for socket, where in zip(sockets, address, strict=True):
        socket.linger = 0
        socket.connect(where)  # a connecting DEALER queues what it sends: nothing blocks
    with open(tmp_path / "pairs.bin", "ab") as pairs, open(tmp_path / "events.jsonl", "a") as ev:
        yield Node(settings, *sockets, pairs, ev)
    for socket in sockets:
        socket.close()
    context.term()


def heralds(first: int, last: int):
    seqs = list(range(first, last + 1))
    return make_heralds(LINK, seqs, seqs, 0, [s * 1000 for s in seqs])


def stats(decided: int, incarnation: int) -> AttemptStats:
    return AttemptStats(LINK, 0, 10, 1, 0, decided, incarnation)


def test_attempt_stats_reveal_a_lost_tail_of_this_station_only(node: Node) -> None:
    node.on_station_heartbeat(Heartbeat(0, incarnation_seq(0, 77), 0))
    node.on_heralds(heralds(0, 9), time.monotonic_ns(), fresh=True)
    node.on_attempt_stats(stats(12, 77))
    assert node.counters["tail_gaps"] == 2 and node.tracker.missing() == [(10, 11)]
    # A count from another incarnation (a restarted station whose heartbeat has not come
    # yet) is not in this numbering: ignored.
    node.on_attempt_stats(stats(500, 78))
    assert node.counters["stats_other_incarnation"] == 1
    assert node.tracker.missing() == [(10, 11)]
    # Its heartbeat comes: the node starts afresh, and the next count resynchronises it.
    node.on_station_heartbeat(Heartbeat(0, incarnation_seq(0, 78), 0))
    assert node.base is None and node.counters["station_restarts"] == 1
    node.on_attempt_stats(stats(5, 78))
    assert (node.first_seen, node.base) == (5, 0)
    assert node.tracker.missing() == [(0, 4)] and node.counters["resync_heralds"] == 5
    assert node.counters["resend_requests"] >= 1  # asked for at once


def test_count_of_heralds_already_seen_changes_nothing(node: Node) -> None:
    node.on_station_heartbeat(Heartbeat(0, incarnation_seq(0, 5), 0))
    node.on_heralds(heralds(300, 309), time.monotonic_ns(), fresh=True)
    gaps = node.tracker.missing()  # the resync below the first herald seen
    node.on_attempt_stats(stats(310, 5))
    node.on_attempt_stats(stats(0, 5))  # nothing decided: says nothing
    assert node.tracker.missing() == gaps and node.counters["tail_gaps"] == 0


# -- batches: what a node sends the orchestrator and how it takes its verdicts ----------------


class Recorder:
    """Stands in for the orchestrator DEALER: keeps what the node sends."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.frames.append(bytes(frame))

    def messages(self) -> list[object]:
        return [decode(frame) for frame in self.frames]


def requested(node: Node, number: int = 10**6) -> Recorder:
    """`node` with a live request and a recorder for what it sends the orchestrator."""
    recorder = Recorder()
    node.orchestrator = recorder  # type: ignore[assignment]
    node.on_station_heartbeat(Heartbeat(0, incarnation_seq(0, 5), 0))
    node.on_create(Create(7, 2, 0.0, 0.0, 0, number, 0, True))
    assert isinstance(recorder.messages()[-1], Ack)
    recorder.frames.clear()
    node.create_start_ps -= 10**13  # as if asked 10 s ago: older heralds are in it too
    return recorder


def fresh(first: int, last: int, node: Node, age_s: float = 0.0):
    """Heralds `first`..`last` decided `age_s` ago (station time of the node)."""
    now_ps = node.station_ps(time.monotonic_ns())
    assert now_ps is not None
    seqs = list(range(first, last + 1))
    return make_heralds(LINK, seqs, seqs, 0, now_ps - round(age_s * 1e12))


def test_a_batch_of_heralds_is_one_ok_batch_and_one_err_batch(node: Node) -> None:
    """64 heralds taken at once, 16 of them older than the memory cutoff: one OK_BATCH of
    the 48 fresh ones, one ERR_BATCH (EXPIRED) of the 16 others, both logged first."""
    recorder = requested(node)
    cutoff = node.settings.memory_cutoff
    batch = np.concatenate([fresh(0, 15, node, age_s=2 * cutoff), fresh(16, 63, node)])
    node.on_heralds(batch, time.monotonic_ns(), fresh=True)
    messages = recorder.messages()
    assert [type(m) for m in messages] == [ErrBatch, OkBatch]
    err, ok = messages
    assert isinstance(err, ErrBatch) and isinstance(ok, OkBatch)
    assert err.code == ErrCode.EXPIRED and err.seqs.tolist() == list(range(16))
    assert ok.create_id == 7 and ok.seqs.tolist() == list(range(16, 64))
    assert len(node.held) == 48 and node.counters["ok_sent"] == 48
    node.pairs_file.flush()
    log = np.fromfile(node.pairs_file.name, PAIR_LOG_DTYPE)
    assert (log["event"] == PairEvent.OK_SENT).sum() == 48
    assert (log["event"] == PairEvent.EXPIRED).sum() == 16


def test_gathered_oks_leave_together_when_due_and_before_the_next_answer(node: Node
                                                                          ) -> None:
    """With `ok_interval` (the default in use): the OKs of several batches of heralds leave
    as one OK_BATCH once the interval has passed, not before; a new CREATE sends the last
    request's gathered OKs before its ACK; each was logged when it was decided."""
    node.settings = dataclasses.replace(node.settings, ok_interval=0.005)
    recorder = requested(node)
    node.on_heralds(fresh(0, 3, node), time.monotonic_ns(), fresh=True)
    node.on_herald(fresh(4, 4, node), time.monotonic_ns())  # the one-herald path too
    node.flush_oks()
    assert recorder.frames == []  # not due yet (5 ms after the first)
    node.pairs_file.flush()
    log = np.fromfile(node.pairs_file.name, PAIR_LOG_DTYPE)
    assert (log["event"] == PairEvent.OK_SENT).sum() == 5  # logged before they leave
    deadline = node.oks_due
    assert deadline is not None
    while time.monotonic() < deadline:
        time.sleep(deadline - time.monotonic())
    node.flush_oks()
    (ok,) = recorder.messages()
    assert isinstance(ok, OkBatch) and ok.create_id == 7 and ok.seqs.tolist() == [0, 1, 2, 3, 4]
    recorder.frames.clear()
    node.on_heralds(fresh(5, 6, node), time.monotonic_ns(), fresh=True)
    node.on_create(Create(8, 2, 0.0, 0.0, 0, 10, 0, True))
    ok, ack = recorder.messages()
    assert isinstance(ok, OkBatch) and ok.create_id == 7 and ok.seqs.tolist() == [5, 6]
    assert isinstance(ack, Ack) and node.oks_due is None


def test_a_request_stops_at_its_number_inside_a_batch(node: Node) -> None:
    recorder = requested(node, number=5)
    node.on_heralds(fresh(0, 9, node), time.monotonic_ns(), fresh=True)
    (ok,) = recorder.messages()
    assert isinstance(ok, OkBatch) and ok.seqs.tolist() == [0, 1, 2, 3, 4]
    assert node.create is None  # done: later heralds are not OK'd
    node.on_heralds(fresh(10, 12, node), time.monotonic_ns(), fresh=True)
    assert len(recorder.frames) == 1


def test_verdict_batches_settle_only_pairs_the_node_holds(node: Node) -> None:
    """An OK_BATCH delivers the held pairs it names, an ERR_BATCH releases them; a seq the
    node does not hold (never OK'd, or already settled) changes nothing and is counted."""
    requested(node)
    node.on_heralds(fresh(0, 9, node), time.monotonic_ns(), fresh=True)
    node.on_orchestrator_frame(OkBatch(7, LINK, 0.9, 0, [0, 1, 2, 50]).encode(), 0)
    node.on_orchestrator_frame(ErrBatch(7, LINK, ErrCode.DISAGREED, [2, 3, 4]).encode(), 0)
    node.on_orchestrator_frame(OkBatch(7, LINK + 1, 0.9, 0, [5]).encode(), 0)
    assert node.counters["delivered"] == 3 and node.counters["released_disagreed"] == 2
    assert node.counters["verdict_for_unknown_pair"] == 2  # 50, and 2 a second time
    assert node.decoder.errors["verdict for another link"] == 1
    assert sorted(int(s) for s in node.held.rows["seq"]) == [5, 6, 7, 8, 9]
    node.pairs_file.flush()
    log = np.fromfile(node.pairs_file.name, PAIR_LOG_DTYPE)
    assert log["seq"][log["event"] == PairEvent.DELIVERED].tolist() == [0, 1, 2]
    assert log["seq"][log["event"] == PairEvent.RELEASED].tolist() == [3, 4]


def test_resent_heralds_below_the_held_ones_are_held_in_order(node: Node) -> None:
    """A gap filled by a resend after later pairs were OK'd: the held pairs stay sorted, so
    a verdict finds each of them."""
    recorder = requested(node)
    node.on_heralds(fresh(0, 3, node), time.monotonic_ns(), fresh=True)
    node.on_heralds(fresh(6, 9, node), time.monotonic_ns(), fresh=True)  # 4, 5 missing
    node.on_station_reply(encode_heralds(fresh(4, 5, node)), time.monotonic_ns())
    assert node.held.rows["seq"].tolist() == list(range(10))
    oks = [m for m in recorder.messages() if isinstance(m, OkBatch)]
    assert [m.seqs.tolist() for m in oks] == [[0, 1, 2, 3], [6, 7, 8, 9], [4, 5]]
    node.on_orchestrator_frame(OkBatch(7, LINK, 0.9, 0, list(range(10))).encode(), 0)
    assert len(node.held) == 0 and node.counters["delivered"] == 10


def test_a_loss_longer_than_a_batch_is_reported_in_one_batch(node: Node) -> None:
    """A gap given up (LOST): one ERR_BATCH of its seqs (up to a batch's worth)."""
    recorder = requested(node)
    node.on_heralds(fresh(0, 0, node), time.monotonic_ns(), fresh=True)
    node.give_up(1, 2 * MAX_SEQS_PER_BATCH)
    errs = [m for m in recorder.messages() if isinstance(m, ErrBatch)]
    assert len(errs) == 1 and errs[0].code == ErrCode.LOST
    assert errs[0].seqs.tolist() == list(range(1, MAX_SEQS_PER_BATCH + 1))


def test_recent_latencies_are_the_newest_of_both_receipt_paths(node: Node) -> None:
    """Telemetry reads the newest latencies every second; they must be the newest heralds'
    whether a herald came alone (the one-row path) or in a batch, and the count must be
    the run's."""
    received = node.settings.epoch_ns + 10**9  # 1 s of station time: every herald is past
    node.on_heralds(heralds(1, 50), received, fresh=True)  # the batch path
    for seq in range(51, 61):  # the one-row path
        node.on_herald(heralds(seq, seq), received)
    assert len(node.latency.singles) == 10, "the single heralds took the one-row path"
    everything = node.latency.everything()
    assert len(node.latency) == len(everything) == 60
    newest = node.latency.recent_ps(25)
    expected = everything[everything["seq"] > 35]["latency_ps"]
    assert sorted(newest.tolist()) == sorted(expected.tolist())
    assert sorted(node.latency.recent_ps(1000).tolist()) == sorted(
        everything["latency_ps"].tolist())


class FullQueue(Recorder):
    """An orchestrator DEALER whose queue is full (the peer takes nothing, e.g. it refused
    this node's CURVE handshake): a send with the agent's timeout of 0 raises zmq.Again."""

    def send(self, frame: bytes) -> None:
        raise zmq.Again()


def test_an_ok_the_orchestrator_cannot_take_frees_its_pairs_and_never_blocks(
        node: Node) -> None:
    """With the orchestrator's queue full the node does not wait in the send (a refused
    node agent hung there until SIGKILLed): the OK batch is dropped and counted, and its
    pairs, which the orchestrator can now never deliver (it needs both nodes' OKs), are
    released and logged so; the frames to the station are dropped and counted too."""
    requested(node)
    node.orchestrator = FullQueue()  # type: ignore[assignment]
    node.station = FullQueue()  # type: ignore[assignment]
    node.on_heralds(fresh(0, 9, node), time.monotonic_ns(), fresh=True)
    node.send_clock_request()
    assert node.counters["send_dropped_orchestrator"] == 1
    assert node.counters["send_dropped_station"] == 1
    assert node.counters["released_ok_not_sent"] == 10 and len(node.held) == 0
    node.pairs_file.flush()
    log = np.fromfile(node.pairs_file.name, PAIR_LOG_DTYPE)
    assert (log["event"] == PairEvent.OK_SENT).sum() == 10
    assert (log["event"] == PairEvent.RELEASED).sum() == 10
    assert (log["event"] == PairEvent.DELIVERED).sum() == 0
