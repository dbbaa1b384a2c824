"""What the delivery protocol guarantees, whatever the load: the two nodes never disagree,
nothing wrong is delivered, and every loss is counted and explained.

The guarantees are tested without processes (`virtual_link.VirtualLink`: the production
`Node` and `_Orchestrator` state machines on a virtual clock, fed each other's frames
with chosen delays, reorderings, drops, backlogs and restarts), so the machine's load cannot
fail them, and each scenario is the same on every run (fixed seeds). Rates and cutoffs come
from the lab config (`lab_configs/two_node_link.yaml`): the memory cutoff, the reconcile
timeout; a rate bound is derived from them, never a wall-clock figure.

One process-level smoke test runs the real processes (station with a test-signal source,
both node agents, the orchestrator, CURVE on) and asserts the same guarantees on their
files: no rate, latency or expiry bound that a busy machine could break.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from virtual_link import NODES, Faults, VirtualLink, events_of

from qnetlab.network.messages import MAX_SEQS_PER_BATCH
from qnetlab.network.network_config import OK_INTERVAL_S, load_network_config
from qnetlab.network.node_state import PairEvent

from conftest import REPO

CONFIG = load_network_config(REPO / "lab_configs" / "two_node_link.yaml")
CUTOFF_S = CONFIG.nodes["node_a"].memory_cutoff
RECONCILE_S = CONFIG.orchestrator.reconcile_timeout


def run_link(tmp_path: Path, monkeypatch: Any, *, rate_hz: float, seconds: float,
             faults: Faults, seed: int = 20261206, pairs: int = 10**7,
             ok_interval: float = OK_INTERVAL_S) -> VirtualLink:
    """A link run for `seconds` of heralds, then long enough with none for every verdict
    to settle (reconcile timeout, resends given up)."""
    link = VirtualLink(tmp_path, monkeypatch, rate_hz=rate_hz, pairs=pairs, faults=faults,
                       seed=seed, memory_cutoff=CUTOFF_S, reconcile_timeout=RECONCILE_S,
                       ok_interval=ok_interval)
    link.run(seconds)
    link.run(4 * RECONCILE_S + 0.2, heralds=False)
    return link


@dataclasses.dataclass
class Outcome:
    delivered: set[int]
    logs: dict[str, np.ndarray]
    unresolved: dict[str, set[int]]
    """Pairs a node OK'd whose verdict never reached it (only a killed incarnation)."""


def check_guarantees(link: VirtualLink, *, restarts: bool = False) -> Outcome:
    """The design's guarantees, asserted on the run's own records."""
    delivered = {d["seq"] for d in link.orchestrator.delivered}
    truth = link.truth.all()
    by_seq = {int(r["seq"]): r for r in truth}
    logs = {name: link.pair_log(name) for name in NODES}
    events = {name: {event: events_of(logs[name], event) for event in PairEvent}
              for name in NODES}
    unresolved = {}
    for name in NODES:
        mine = events[name]
        # 1. A node logs DELIVERED only what the orchestrator delivered, each pair once.
        log = logs[name]
        done = log["seq"][log["event"] == PairEvent.DELIVERED]
        assert len(done) == len(set(done.tolist())), f"{name} delivered a pair twice"
        assert mine[PairEvent.DELIVERED] <= delivered, name
        # 2. Every delivered pair was held by this node: OK'd (logged before the OK left)
        #    for the true attempt, within the memory cutoff of the station's decision, and
        #    never expired or given up for lost.
        assert delivered <= mine[PairEvent.OK_SENT], name
        assert not delivered & (mine[PairEvent.EXPIRED] | mine[PairEvent.LOST]), name
        oks = log[log["event"] == PairEvent.OK_SENT]
        for row in oks[np.isin(oks["seq"], list(delivered))]:
            true = by_seq[int(row["seq"])]
            assert int(row["attempt_id"]) == int(true["attempt_id"])
            assert int(row["herald_ps"]) == int(true["timestamp_ps"])
            assert 0 <= int(row["event_ps"]) - int(row["herald_ps"]) <= CUTOFF_S * 1e12
        # 3. Every OK is settled: delivered or released (a live node holds nothing once the
        #    link is quiet); only a killed incarnation's verdicts can be missing.
        settled = mine[PairEvent.DELIVERED] | mine[PairEvent.RELEASED]
        unresolved[name] = mine[PairEvent.OK_SENT] - settled
        assert len(link.nodes[name].held) == 0, name
        if not restarts:
            assert not unresolved[name], (name, sorted(unresolved[name])[:10])
            assert mine[PairEvent.DELIVERED] == delivered, name
        counters = link.nodes[name].counters
        # 4. Counted: the node's counters are its log, and its tracker balances.
        if not restarts:
            assert counters["ok_sent"] == len(mine[PairEvent.OK_SENT])
            assert counters["delivered"] == len(mine[PairEvent.DELIVERED])
            released = sum(v for k, v in counters.items() if k.startswith("released_"))
            assert released == len(mine[PairEvent.RELEASED])
        tracker = link.nodes[name].tracker
        still = sum(b - a + 1 for a, b in tracker.missing())
        assert tracker.counters["gaps_detected"] == (tracker.counters["recovered"]
                                                     + tracker.counters["lost"] + still)
    a, b = NODES
    # 5. The nodes never disagree: no pair delivered at one node is released, expired or
    #    lost at the other.
    for x, y in ((a, b), (b, a)):
        dropped = (events[y][PairEvent.RELEASED] | events[y][PairEvent.EXPIRED]
                   | events[y][PairEvent.LOST])
        assert not events[x][PairEvent.DELIVERED] & dropped, (x, y)
    # 6. Explained: a pair a node released was not held by the other in the same request
    #    (never OK'd there, expired or lost there) or both held it beyond the request.
    if not restarts:
        counters = link.orchestrator.counters
        for x, y in ((a, b), (b, a)):
            for seq in events[x][PairEvent.RELEASED]:
                assert (seq not in events[y][PairEvent.OK_SENT]
                        or seq in events[y][PairEvent.RELEASED]), (x, seq)
        released = events[a][PairEvent.RELEASED] | events[b][PairEvent.RELEASED]
        assert len(released) == (counters["disagreements"] + counters["boundary"]
                                 + counters["beyond_request"] + counters["stale"])
    # 7. A bound from the physics, not the machine: never more pairs than heralds.
    assert len(delivered) <= len(truth)
    return Outcome(delivered, logs, unresolved)


def heralds_after_start(link: VirtualLink) -> int:
    """Heralds the station decided from the first request on (the nodes' share)."""
    start = max(node.create_start_ps for node in link.nodes.values())
    return int((link.truth.all()["timestamp_ps"] >= start).sum())


def test_a_calm_link_delivers_every_herald_of_the_request(tmp_path, monkeypatch) -> None:
    """Delays far below the memory cutoff: every herald from the request's start on is
    delivered, to both nodes, in batches (far fewer frames to the orchestrator than pairs)."""
    link = run_link(tmp_path, monkeypatch, rate_hz=16_000, seconds=1.0, faults=Faults())
    outcome = check_guarantees(link)
    assert len(outcome.delivered) == heralds_after_start(link) > 14_000
    for name in NODES:
        assert link.nodes[name].counters["expired"] == 0
    orchestrator = link.orchestrator
    assert not orchestrator.counters["disagreements"]
    assert orchestrator.decoder.decoded < len(outcome.delivered) / 4


@pytest.mark.parametrize("rate_hz", [1_000, 64_000])
def test_a_node_behind_by_more_than_the_cutoff_expires_and_the_other_releases(
        tmp_path, monkeypatch, rate_hz: float) -> None:
    """node_b falls behind and catches up, again and again (its heralds' lag swings from 0
    to twice the memory cutoff): it expires exactly those that reach it later than the
    cutoff, node_a is told to release those, and the rest are delivered to both."""
    faults = Faults(delay_s=1e-5, slow_node={"node_b": 2 * CUTOFF_S})
    link = run_link(tmp_path, monkeypatch, rate_hz=rate_hz, seconds=0.5, faults=faults,
                    seed=3)
    outcome = check_guarantees(link)
    start = max(node.create_start_ps for node in link.nodes.values())
    truth = link.truth.all()
    truth = truth[truth["timestamp_ps"] >= start]
    lag = link.lag_s("node_b", truth["timestamp_ps"] * 1e-12)
    # A herald reaches node_b its lag after publication, which is 0..1 ms after its decision
    # (its place in the block; the lag moves by < 0.35 ms meanwhile) plus < 0.2 ms of steps
    # and base delay: 1.6 ms of margin decides every herald outside it.
    expired = events_of(outcome.logs["node_b"], PairEvent.EXPIRED)
    assert set(truth["seq"][lag > CUTOFF_S].tolist()) <= expired
    assert expired <= set(truth["seq"][lag > CUTOFF_S - 0.0016].tolist())
    assert events_of(outcome.logs["node_a"], PairEvent.RELEASED) == expired
    assert len(outcome.delivered) + len(expired) == len(truth)


def test_reordered_heralds_are_filled_by_resends_in_time(tmp_path, monkeypatch) -> None:
    """Herald frames overtake each other (an extra delay of mean half the cutoff, outside
    the FIFO): each gap is asked for and resent, so late frames only bring duplicates."""
    faults = Faults(reorder_s=CUTOFF_S / 2)
    link = run_link(tmp_path, monkeypatch, rate_hz=8_000, seconds=0.5, faults=faults, seed=9)
    outcome = check_guarantees(link)
    for name in NODES:
        tracker = link.nodes[name].tracker.counters
        assert tracker["gaps_detected"] > 0 and tracker["duplicates"] > 0
    assert len(outcome.delivered) > 0.9 * heralds_after_start(link)


def test_stalls_reorder_and_batch_but_never_split_the_nodes(tmp_path, monkeypatch) -> None:
    """Each node stalls now and then for 3x the memory cutoff (a loaded host): what queued
    comes at once, in one batch; heralds older than the cutoff are expired; the orchestrator
    also stalls for longer than its reconcile timeout once."""
    faults = Faults(burst_every_s=0.1, burst_s=3 * CUTOFF_S,
                    orchestrator_stall=(0.25, 2 * RECONCILE_S))
    link = run_link(tmp_path, monkeypatch, rate_hz=20_000, seconds=0.8, faults=faults,
                    seed=11)
    outcome = check_guarantees(link)
    expired = sum(len(events_of(log, PairEvent.EXPIRED)) for log in outcome.logs.values())
    assert expired > 0 and len(outcome.delivered) > 0  # the scenario did bite


def test_dropped_heralds_are_resent_or_reported_lost(tmp_path, monkeypatch) -> None:
    """5 % of the station's herald frames are dropped (a PUB's high-water mark): resends
    fill the gaps; nothing is lost for good while the history holds them."""
    link = run_link(tmp_path, monkeypatch, rate_hz=8_000, seconds=0.8,
                    faults=Faults(pub_drop=0.05), seed=5)
    outcome = check_guarantees(link)
    for name in NODES:
        tracker = link.nodes[name].tracker.counters
        assert tracker["gaps_detected"] > 0 and tracker["recovered"] > 0
        assert tracker["lost"] == 0
    assert len(outcome.delivered) > 0.9 * heralds_after_start(link)


def test_node_restarts_leave_no_contradiction(tmp_path, monkeypatch) -> None:
    """Each node agent is killed once (what it held and what was in flight to or from it is
    gone) and started afresh: the orchestrator ends the request and starts a new one. A
    pair can be missing a verdict only at a killed incarnation, never delivered at one node
    and released at the other."""
    faults = Faults(restarts=((0.3, "node_a"), (0.55, "node_b")))
    link = run_link(tmp_path, monkeypatch, rate_hz=10_000, seconds=0.9, faults=faults,
                    seed=7)
    outcome = check_guarantees(link, restarts=True)
    assert link.orchestrator.counters["node_restarts"] == 2
    assert link.orchestrator.counters["creates"] >= 3
    # What only a killed incarnation missed: at most what was in flight at its death.
    in_flight = 10_000 * (RECONCILE_S + 0.01)
    for name in NODES:
        assert len(outcome.unresolved[name]) < in_flight, name
    # After the last restart, both nodes' fresh incarnations agree exactly.
    late = {s for s in outcome.delivered if s > max(max(outcome.unresolved[n], default=0)
                                                    for n in NODES)}
    assert late and all(late <= events_of(outcome.logs[n], PairEvent.DELIVERED) for n in NODES)


@pytest.mark.parametrize("ok_interval", [0.0, OK_INTERVAL_S])
def test_gathered_or_not_oks_keep_every_guarantee(tmp_path, monkeypatch,
                                                  ok_interval: float) -> None:
    """Nodes that answer each batch of heralds at once, and nodes that gather their OKs for
    `ok_interval` (the default) before sending them, under stalls, a stalled orchestrator
    and a node restart: the same guarantees; gathering sends at most one OK frame per node
    per interval (plus the frames around each stall, restart and request), at once about
    one per station block (1 ms)."""
    faults = Faults(burst_every_s=0.2, burst_s=3 * CUTOFF_S,
                    orchestrator_stall=(0.25, 2 * RECONCILE_S),
                    restarts=((0.55, "node_b"),))
    seconds, rate_hz = 0.8, 16_000
    link = run_link(tmp_path, monkeypatch, rate_hz=rate_hz, seconds=seconds, faults=faults,
                    seed=17, ok_interval=ok_interval)
    outcome = check_guarantees(link, restarts=True)
    assert len(outcome.delivered) > 0.5 * rate_hz * seconds
    in_flight = rate_hz * (RECONCILE_S + ok_interval + 0.01)
    for name in NODES:
        assert len(outcome.unresolved[name]) < in_flight, name
        ok_frames = link.nodes[name].counters["ok_frames"]
        if ok_interval:
            assert 0 < ok_frames <= seconds / ok_interval + 20, name
        else:  # node_b's counters start at its restart (0.55 s)
            assert ok_frames > 0.5 * (seconds - 0.55) / 0.001, name


def test_a_request_stops_at_its_pairs(tmp_path, monkeypatch) -> None:
    """A request for fewer pairs than the link heralds: exactly that many are delivered
    (a batch straddling the end is cut, its rest released to both nodes)."""
    link = run_link(tmp_path, monkeypatch, rate_hz=20_000, seconds=0.4, faults=Faults(),
                    pairs=1234)
    outcome = check_guarantees(link)
    assert len(outcome.delivered) == 1234
    assert link.orchestrator.done()


def test_a_backlog_larger_than_a_batch_is_split(tmp_path, monkeypatch) -> None:
    """A node stalled through more heralds than one batch frame holds sends its OKs in
    several frames; nothing is lost by the split."""
    rate_hz = 4 * MAX_SEQS_PER_BATCH / 0.2
    faults = Faults(orchestrator_stall=(0.15, 0.2))
    link = run_link(tmp_path, monkeypatch, rate_hz=rate_hz, seconds=0.4, faults=faults,
                    seed=13)
    outcome = check_guarantees(link)
    assert len(outcome.delivered) > MAX_SEQS_PER_BATCH


# -- processes -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.processes
def test_processes_deliver_with_both_nodes_agreeing(tmp_path: Path) -> None:
    """The real processes (station with a 2 kHz test signal, two node agents, orchestrator,
    CURVE on) deliver what is asked, and their files show the same guarantees: the nodes'
    delivered sets are the orchestrator's, each pair OK'd by both before it was delivered,
    none of them expired or lost."""
    from qnetlab.network import ProcessGroup
    from qnetlab.network.keys import generate_lab_keys
    from qnetlab.network.lab import plan_lab, read_pairs, start_lab, supervise
    from qnetlab.network.test_signals import PeriodicHeralds

    from conftest import free_port_run, wait_until

    config = CONFIG.with_ports(free_port_run(CONFIG.port_count))
    config = dataclasses.replace(config, key_dir=tmp_path / "keys", run_dir=tmp_path / "runs")
    generate_lab_keys(config.key_dir, config.key_names())
    pairs, rate_hz = 400, 2000.0
    epoch_ns = time.monotonic_ns()
    plan = plan_lab(config, pairs=pairs, run_dir=config.run_dir / "smoke", epoch_ns=epoch_ns,
                    goodness=0.9, expected_pair_rate=rate_hz, max_seconds=60)
    source = functools.partial(PeriodicHeralds, round(1e12 / rate_hz))
    with ProcessGroup() as group:
        start_lab(group, plan, source)
        outcome = supervise(group, plan, config, timeout=50)
        assert not outcome.trouble, outcome.trouble
        result = json.loads((plan.run_dir / "orchestrator_result.json").read_text())
        delivered = {d["seq"] for d in result["delivered"]}
        # The orchestrator's last verdicts are on their way to the nodes when it ends.
        wait_until(lambda: all(events_of(read_pairs(plan.run_dir, name), PairEvent.DELIVERED)
                               >= delivered for name in plan.nodes), 30,
                   "the last verdicts at both nodes")
    assert len(delivered) == pairs and not result["failed"]
    for name in plan.nodes:
        log = read_pairs(plan.run_dir, name)
        assert events_of(log, PairEvent.DELIVERED) == delivered, name
        assert delivered <= events_of(log, PairEvent.OK_SENT), name
        assert not delivered & (events_of(log, PairEvent.EXPIRED)
                                | events_of(log, PairEvent.LOST)), name
