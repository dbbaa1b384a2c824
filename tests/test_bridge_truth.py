"""The simulation's ground truth of the station-backed bridge (issue 15, `qnetlab bridge
--stations`, sim profile only).

- The bridge world's station twins write their truth in the run folder: per station the
  truth rows of each stretch of arms (`sim_instruments.bridge_world`) and which QNUs the
  switch joined from which attempt on; the station's own herald engine's heralds of a
  joined pair are genuine by that truth.
- The join (`qnetlab.bridge_truth`): a delivered request's pairs are the heralds the
  orchestrator took for it before its OK; a pair whose truth row is not genuine, that has
  no row, or that was heralded while the switch joined other QNUs is counted as not genuine.
- The verb's one process-level run: two pair requests and a state transfer through the
  world, the stations and the orchestrator are delivered, and it prints the genuine fraction
  and mean true fidelity per QNU pair; its config gives the orchestrator's telemetry address
  and key folder, and a monitor started before the run shows the requests delivered.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from qnetlab.bridge_stations import station_windows
from qnetlab.bridge_truth import (
    delivered_from_log,
    join_bridge_truth,
    join_gathered,
    truth_lines,
    write_truth,
)
from qnetlab.cli import EXIT_OK, main
from qnetlab.monitor import MonitorServer
from qnetlab.network.bridge import load_bridge_config
from qnetlab.network.bridge.bridge_telemetry import bridge_config_endpoints
from qnetlab.network.herald_engine import HeraldEngine
from qnetlab.network.keys import generate_lab_keys
from qnetlab.network.messages import HERALD_DTYPE
from qnetlab.sim_instruments.link_events import TWIN_TRUTH_DTYPE, read_twin_truth
from qnetlab.sim_instruments.ports import free_port_run

from bridge_lab import bridge_copy, bridge_data, bridge_world, write_workload
from conftest import wait_until


# -- the world writes it --------------------------------------------------------------------------
def test_the_world_writes_each_stations_truth_and_the_qnus_it_joined(tmp_path: Path) -> None:
    """st1's arms get qnu2 and qnu3 half-way through a 2 s recording (drawn as fast as
    asked, seed 3): its joins file has the empty stretch then the pair, and the heralds its
    own engine decides from the tags are genuine by the truth, all after the change."""
    config, world = bridge_world(tmp_path / "world", ("st1",), truth_dir=tmp_path)
    tagger = world.station_benches["st1"].zmq_devices["tagger"]
    switch = world.switch_bench.device(world.plan.switch_instrument)
    tagger.rec_duration_ps = 2 * 10**12
    engine = HeraldEngine(station_windows(config, "st1"))
    heralds, switched = [], []
    for chunk in tagger.recording():
        if not switched and chunk.start_ps >= 10**12:
            switch.handle(":OXC:SWITch:CONNect:ADD (@3,4),(@19,20)")
            assert switch.handle("*OPC?") == "1"
            switched.append(chunk.start_ps)
        tags = {n: t for n, t in chunk.tags.items() if t.size}
        if tags:
            ts = np.concatenate(list(tags.values()))
            channels = np.concatenate([np.full(t.size, n, np.int8) for n, t in tags.items()])
            order = np.argsort(ts, kind="stable")
            heralds.append(engine.feed(ts[order], channels[order]))
    found = np.concatenate(heralds)
    joins = [json.loads(line) for line in (tmp_path / "st1_joins.jsonl").read_text()
             .splitlines()]
    assert [j["qnus"] for j in joins] == [[None, None], ["qnu2", "qnu3"]]
    period = round(config.link.attempt_period * 1e12)
    assert joins[1]["first_attempt"] * period >= joins[1]["from_ps"] >= switched[0]
    truth = read_twin_truth(tmp_path / "st1_truth.npy")
    assert truth.dtype == TWIN_TRUTH_DTYPE and np.all(np.diff(truth["attempt_id"].astype(
        np.int64)) > 0)
    assert len(found) > 5, "the joined pair heralds"
    assert found["attempt_id"].min() >= joins[1]["first_attempt"]
    rows = truth[np.isin(truth["attempt_id"], found["attempt_id"])]
    assert len(rows) == len(found), "every herald's attempt has a truth row"
    # the path's model (fidelity 0.57 at 8.7 % transducers with 0.16 noise photons) is
    # a mix: genuine pairs near 1, false heralds (noise photons, dark counts) at 0.5 or 0
    genuine = rows["genuine"]
    assert 0.1 < genuine.mean() < 0.9 and np.all(rows["fidelity"][genuine] > 0.9)
    model = config.topology().path_link("qnu2", "qnu3", "st1").fidelity
    assert abs(float(np.nanmean(rows["fidelity"])) - model) < 0.2


# -- the join -------------------------------------------------------------------------------------
def _files(run: Path) -> None:
    """Two stations' truth, joins, heralds and the orchestrator's log, by hand: st0 joins
    qnu0-qnu1 from attempt 100, qnu2-qnu3 from 1000; st1 joins qnu4-qnu5 from 0."""
    truth = np.zeros(5, TWIN_TRUTH_DTYPE)
    truth["attempt_id"] = [150, 160, 170, 1200, 1300]
    truth["genuine"] = [True, False, True, True, True]
    truth["fidelity"] = [0.9, 0.5, 0.8, 0.85, 0.7]
    np.save(run / "st0_truth.npy", truth)
    np.save(run / "st1_truth.npy", np.zeros(0, TWIN_TRUTH_DTYPE))
    (run / "st0_joins.jsonl").write_text(
        '{"first_attempt": 0, "from_ps": 0, "qnus": [null, null]}\n'
        '{"first_attempt": 100, "from_ps": 1, "qnus": ["qnu1", "qnu0"]}\n'
        '{"first_attempt": 1000, "from_ps": 2, "qnus": ["qnu2", "qnu3"]}\n')
    (run / "st1_joins.jsonl").write_text(
        '{"first_attempt": 0, "from_ps": 0, "qnus": ["qnu4", "qnu5"]}\n')
    heralds = np.zeros(6, HERALD_DTYPE)
    heralds["seq"] = [0, 1, 2, 3, 4, 5]
    heralds["attempt_id"] = [150, 160, 170, 180, 1200, 1300]
    np.save(run / "st0_heralds.npy", heralds)
    st1 = np.zeros(1, HERALD_DTYPE)
    st1["attempt_id"] = [40]
    np.save(run / "st1_heralds.npy", st1)
    log = [
        {"action": "ACK", "request": "app/a"},
        # an early herald of a that expired: only the last two are delivered
        {"event": "herald_taken", "station": "st0", "request": "app/a", "seq": 0},
        {"event": "herald_taken", "station": "st0", "request": "app/a", "seq": 1},
        {"event": "herald_taken", "station": "st0", "request": "app/a", "seq": 2},
        {"action": "OK", "request": "app/a", "station": "st0"},
        {"event": "herald_taken", "station": "st0", "request": "app/a", "seq": 3},
        # b asks for qnu0-qnu1 but st0 had qnu2-qnu3 joined at attempt 1200
        {"event": "herald_taken", "station": "st0", "request": "app/b", "seq": 4},
        {"action": "OK", "request": "app/b", "station": "st0"},
        {"event": "herald_taken", "station": "st1", "request": "app/c", "seq": 0},
        "not a record",
        {"action": "OK", "request": "app/c", "station": "st1"},
        {"event": "herald_taken", "station": "st0", "request": "app/d", "seq": 5},
        {"action": "OK", "request": "app/d", "station": "st0"},
    ]
    (run / "bridge_orchestrator_decisions.jsonl").write_text(
        "\n".join(json.dumps(r) for r in log) + "\n{cut")


def test_pairs_that_are_not_genuine_are_counted_per_qnu_pair(tmp_path: Path) -> None:
    _files(tmp_path)
    delivered = {"app/a": (("qnu0", "qnu1"), 2), "app/b": (("qnu1", "qnu0"), 1),
                 "app/c": (("qnu4", "qnu5"), 1), "app/d": (("qnu2", "qnu3"), 1),
                 "app/never": (("qnu6", "qnu7"), 1)}
    truth = join_bridge_truth(tmp_path, ["st0", "st1"], delivered)
    assert truth is not None
    q01 = truth.pairs["qnu0-qnu1"]
    # a: seq 1 (truth not genuine) and 2 (genuine 0.8); b: heralded with qnu2-qnu3 joined
    assert (q01.delivered, q01.with_truth, q01.genuine, q01.other_qnus) == (3, 2, 1, 1)
    assert q01.not_genuine == 2 and q01.genuine_fraction == pytest.approx(1 / 3)
    assert q01.fidelity_mean == pytest.approx((0.5 + 0.8) / 2)
    q45 = truth.pairs["qnu4-qnu5"]  # dark counts heralded it: no truth row
    assert (q45.delivered, q45.with_truth, q45.genuine) == (1, 0, 0)
    assert truth.pairs["qnu2-qnu3"].fidelity_mean == pytest.approx(0.7)
    assert truth.unjoined == 1  # never: no herald taken for it in the log
    assert (truth.total.delivered, truth.total.genuine) == (6, 2)
    text = "\n".join(truth_lines(truth))
    assert "simulation ground truth" in text
    assert "qnu0-qnu1: genuine 1 of 3 delivered = 0.333 (not genuine 2, 1 while the switch " \
        "joined other QNUs); mean true fidelity 0.650 over 2" in text
    assert "all: genuine 2 of 6" in text and "1 delivered pair(s) not joined" in text
    written = json.loads(write_truth(truth, tmp_path).read_text())
    assert written["pairs"]["qnu4-qnu5"] == {
        "delivered": 1, "with_truth": 0, "genuine": 0, "other_qnus": 0,
        "genuine_fraction": 0.0, "fidelity_mean": None, "fidelities": 0}
    assert written["pairs"]["qnu6-qnu7"]["genuine_fraction"] == 0.0 and written["unjoined"] == 1
    # no truth written (across hosts, or a real bench): nothing to join, said by None
    (tmp_path / "st1_truth.npy").unlink()
    assert join_bridge_truth(tmp_path, ["st0", "st1"], delivered) is None


# -- the processes --------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.processes
def test_a_workload_runs_on_station_processes_with_its_timeline_and_ground_truth(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`qnetlab bridge --stations` end to end (the one process-level run of the verb): two
    pair requests and a state transfer after them are delivered through the station
    processes; qnu1's paths, stale and seeded 30 ns early (windows there would close before
    its photons come), are re-checked by the station's tagger and its windows set where they
    were found; the live timeline reaches a monitor started from the config; the delivered
    pairs are joined to the world's truth; every process it started has stopped."""
    paths = bridge_data()["calibration"]["paths"]
    for station in ("st0", "st1"):
        seed = paths[f"qnu1/{station}"]
        seed.update(age=2 * bridge_data()["calibration"]["lifetime"],
                    arm_delay=seed["arm_delay"] - 30e-9)
    config_path = bridge_copy(
        tmp_path, bridge={"key_dir": str(tmp_path / "keys")},
        orchestrator={"telemetry_address": f"tcp://127.0.0.1:{free_port_run(1)}"},
        calibration={"paths": paths})
    workload_path = write_workload(tmp_path, [
        {"id": "a", "kind": "pairs", "qnus": ["qnu0", "qnu1"], "pairs": 2, "min_fidelity": 0.55},
        {"id": "b", "kind": "pairs", "qnus": ["qnu2", "qnu3"], "pairs": 1, "min_fidelity": 0.55},
        {"id": "c", "kind": "transfer", "qnus": ["qnu0", "qnu2"], "min_fidelity": 0.55,
         "after": ["a", "b"]}])
    config = load_bridge_config(config_path)
    topology = config.topology()
    rate = min(topology.path_link(a, b, s).rate
               for a, b in (("qnu0", "qnu1"), ("qnu2", "qnu3"), ("qnu0", "qnu2"))
               for s in topology.stations)
    # Four pairs at the slowest path's model rate take ~0.1 s; 100 times that, and the
    # settle and re-checks of every path, bound a loaded machine.
    timeout = 100 * 4 / rate + 6 * (topology.settle_time + topology.recheck_time) + 30
    generate_lab_keys(tmp_path / "keys", config.key_names())  # `qnetlab keys CONFIG`
    found = bridge_config_endpoints(config_path)
    with MonitorServer(found.endpoints, found.key_dir, title="bridge", port=0) as monitor:
        code = main(["bridge", str(config_path), "--workload", str(workload_path),
                     "--stations", "--timeout", f"{timeout:.0f}"])
        captured = capsys.readouterr()
        out = captured.out
        assert code == EXIT_OK, out + captured.err

        def outcomes() -> list[str]:
            timeline = monitor.state.timelines.get("bridge_orchestrator")
            return [] if timeline is None else \
                sorted(r.outcome for r in timeline.snapshot().requests)
        wait_until(lambda: outcomes() == ["delivered"] * 3, 30.0,
                   "the monitor to show all 3 requests delivered")
        assert monitor.malformed == 0
    assert "operations done 3 of 3" in out
    assert f"timeline for `qnetlab monitor`: {found.endpoints['bridge_orchestrator']}" in out
    (run_dir,) = (tmp_path / "runs").glob("stations-*")
    summary = json.loads((run_dir / "bridge_orchestrator_summary.json").read_text())
    assert summary["simulated"] is False
    assert "heralding-station processes" in summary["fabric"]
    assert summary["counters"]["delivered"] == 3  # requests: 2 + 1 pairs, and the transfer's
    stations = summary["stations"]
    assert stations["refused"] == {}
    assert stations["counters"]["heralds_reported"] >= 4
    # qnu1's path re-checked where a was assigned: measured by that station's tagger near
    # the light time of its fibres (plus the twin's few ns of input and emission delay),
    # committed, and its windows moved there before its heralds counted
    log = [json.loads(line) for line in
           (run_dir / "bridge_orchestrator_decisions.jsonl").read_text().splitlines()]
    (recheck,) = [r for r in log if r.get("event") == "recheck" and r["qnu"] == "qnu1"]
    light = topology.arm_delay("qnu1", recheck["station"])
    assert recheck["measured"] is True and recheck["stored_before"] == pytest.approx(
        light - 30e-9, abs=1e-12)
    assert light - 1e-9 < recheck["arm_delay"] < light + 10e-9, recheck
    assert stations["counters"]["paths_measured"] >= 1
    assert stations["counters"]["windows_moved"] >= 3  # each pair's paths in turn
    # the terminal says so, with what a re-check cost against what was planned
    assert summary["rechecks"]["measured"] >= 1 and summary["rechecks"]["cost_learned_s"] > 0
    assert "measured by the stations' taggers; a re-check cost" in out
    assert "per path (planned at first: 200 ms)" in out
    # Each station process decided heralds from its tagger and wrote its files.
    decided = sum(json.loads((run_dir / f"{s}_summary.json").read_text())["heralds"]
                  for s in topology.stations)
    assert decided >= stations["counters"]["heralds_reported"]
    # The truth: every delivered pair joined to its station's herald and judged by the
    # world. Which pairs are genuine is chance in real time (the model's 0.57 is a mix).
    # Both QNUs' node agents hold every delivered pair as delivered (their own logs): the
    # two pairs of a, b's one and the one c's transfer consumed.
    assert "QNU node agents: 4 pairs delivered at both QNUs (the application got 4), " \
        "0 contradictions" in out, out
    assert "simulation ground truth" in out
    lines = {m[1]: m for m in re.finditer(
        r"(qnu\d-qnu\d): genuine (\d+) of (\d+) delivered = ([\d.]+) \(not genuine (\d+)"
        r".*?mean true fidelity ([\d.]+|n/a)", out)}
    assert {k: int(m[3]) for k, m in lines.items()} == \
        {"qnu0-qnu1": 2, "qnu2-qnu3": 1, "qnu0-qnu2": 1}, out
    for m in lines.values():
        assert int(m[2]) + int(m[5]) == int(m[3])
    for station in topology.stations:
        assert (run_dir / f"{station}_truth.npy").exists()
        assert (run_dir / f"{station}_joins.jsonl").exists()
    written = json.loads((run_dir / "ground_truth.json").read_text())
    assert written["unjoined"] == 0 and written["all"]["delivered"] == 4
    assert written["all"]["genuine"] == sum(int(m[2]) for m in lines.values())
    assert written["all"]["with_truth"] >= 1 and written["all"]["fidelities"] >= 1
    # The report, as the simulation's (issue 15, item 4): the makespan against the lower
    # bound, utilisation per station, the request latencies, the timeline figure.
    assert "utilisation (heralding for a request, over the makespan): st0 " in out
    assert "request latency: p50 " in out and "makespan / lower bound " in out
    (page,) = run_dir.glob("bridge_*.html")
    assert f"report: {page}" in out
    data = json.loads(page.with_suffix(".json").read_text())
    result = data["results"]["orchestrator"]
    assert data["mode"].startswith("real-time run of every process") and data["good"] is True
    assert result["operations"]["done"] == 3 and result["pairs_delivered"] == 4
    assert result["reconfigurations"] == summary["counters"]["decision_reconfigure"]
    assert set(result["utilisation"]) == {"st0", "st1"}
    assert all(u <= 1.0 for u in result["utilisation"].values())
    assert all(u > 0.0 for u in result["utilisation"].values())  # a and b: one each
    assert (run_dir / "timeline_orchestrator.png").stat().st_size > 10_000
    assert data["decision_logs"] == {"orchestrator": "bridge_orchestrator_decisions.jsonl"}
    # Every process it started (the world, both stations, the orchestrator, the QNUs' node
    # agents) has stopped.
    started = json.loads((run_dir / "processes.json").read_text())
    assert set(started) == {"bridge_world", *topology.stations, "bridge_orchestrator",
                            *topology.qnus}
    for pid in started.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_the_delivered_requests_are_read_back_from_the_orchestrators_log(
        tmp_path: Path) -> None:
    """Across hosts the application's record is on the orchestrator's host: the decision
    log's OKs say which requests got how many pairs (a transfer: one; an older OK without
    the count: one); every other record is ignored. A gathered folder missing a file is
    refused naming it and the host that writes it."""
    records = [
        {"action": "ASSIGN", "request": "app/1", "qnus": ["qnu0", "qnu1"]},
        {"action": "OK", "request": "app/1", "qnus": ["qnu0", "qnu1"],
         "values": {"latency": 0.2, "pairs": 3.0}},
        {"action": "OK", "request": "app/2", "qnus": ["qnu2", "qnu3"]},
        {"action": "ERR", "request": "app/3", "qnus": ["qnu4", "qnu5"]},
        {"event": "herald_taken", "request": "app/1", "station": "st0", "seq": 4}]
    assert delivered_from_log(records) == {"app/1": (("qnu0", "qnu1"), 3),
                                           "app/2": (("qnu2", "qnu3"), 1)}
    (tmp_path / "bridge_orchestrator_decisions.jsonl").write_text(
        "\n".join(json.dumps(r) for r in records))
    with pytest.raises(FileNotFoundError, match=r"st0_truth\.npy is missing: copy it from "
                                                r"the world's host"):
        join_gathered(tmp_path, ["st0"])
