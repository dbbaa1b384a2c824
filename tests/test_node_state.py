"""A node agent's state machine (`network.node_state.Node`) fed messages directly, without the
process around it: what the station's AttemptStats and heartbeats do to its sequence state."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from qnetlab.network.heralding_station import incarnation_seq
from qnetlab.network.messages import AttemptStats, Heartbeat, make_heralds
from qnetlab.network.node_state import Node, NodeSettings

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
        goodness=0.9, expected_pair_rate=1000.0, epoch_ns=time.monotonic_ns())
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
