"""The process-level bridge: heralding stations on taggers behind the switch.

- The bridge world (`sim_instruments.bridge_world`): a station's ID1000 twin streams the link
  of whatever the Polatis twin connects to its two arms, from the next block drawn after the
  path settled; with nothing connected, dark counts only (its tags fed to the station's own
  herald engine, as the station process feeds them).
- The station fabric (`network.bridge.station_fabric`): every frame off a station's SUB is
  checked, and a refused one is counted under the field it got wrong; heralds count for the
  request assigned to the station only once its path is ready.
- The verb's options. Its one process-level run (the world, two heralding-station processes
  reading their taggers over the real drivers, the orchestrator with the switch in the loop,
  the QNUs' node agents, a tiny workload DELIVERED and agreed on) is in
  tests/test_bridge_truth.py, with its timeline and truth.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qnetlab.bridge_stations import station_windows
from qnetlab.cli import main
from qnetlab.network.bridge import load_bridge_config
from qnetlab.network.bridge.station_fabric import (
    HeraldFrameError,
    StationFabric,
    StationFabricSettings,
    StationLink,
    check_heralds,
)
from qnetlab.network.herald_engine import HeraldEngine
from qnetlab.network.keys import generate_lab_keys
from qnetlab.network.messages import Create, Heartbeat, encode_heralds, make_heralds
from qnetlab.sim_instruments.bridge_world import (
    DETECTOR_INPUTS,
)

from bridge_lab import BRIDGE_8, LAB_CONFIGS, bridge_world, switch_now
from conftest import wait_until


# -- the world ----------------------------------------------------------------------------------
def _record(config: Any, world: Any, station: str, seconds: float,
            at_chunk: Any = None) -> tuple[np.ndarray, int]:
    """Record `seconds` of `station`'s tagger twin and decide heralds with the station's own
    engine and windows: (the heralds' sync times ps, detector tags). `at_chunk(start_ps)` is
    called before each chunk is taken."""
    tagger = world.station_benches[station].zmq_devices["tagger"]
    tagger.rec_duration_ps = round(seconds * 1e12)
    engine = HeraldEngine(station_windows(config, station))
    found, detector_tags = [], 0
    chunks = tagger.recording()
    for chunk in chunks:
        if at_chunk is not None:
            at_chunk(chunk.start_ps)
        tags = {n: t for n, t in chunk.tags.items() if t.size}
        if not tags:
            continue
        ts = np.concatenate(list(tags.values()))
        channels = np.concatenate([np.full(t.size, n, np.int8) for n, t in tags.items()])
        order = np.argsort(ts, kind="stable")
        detector_tags += sum(t.size for n, t in tags.items() if n in DETECTOR_INPUTS)
        found.append(engine.feed(ts[order], channels[order])["sync_ps"])
    return (np.concatenate(found) if found else np.zeros(0, np.int64)), detector_tags


def test_a_station_heralds_the_qnus_the_switch_connects_to_its_arms(tmp_path: Path) -> None:
    config, world = bridge_world(tmp_path)
    seconds = 2.0
    rate = config.topology().path_link("qnu0", "qnu1", "st0").rate  # the link model's, Hz
    # qnu0 (port 1) and qnu1 (port 2) to st0's arms (17, 18): coincident heralds at st0 ...
    switch_now(world, ":OXC:SWITch:CONNect:ADD (@1,2),(@17,18)")
    heralds, _ = _record(config, world, "st0", seconds)
    assert len(heralds) > rate * seconds / 3, "the connected pair heralds at its rate"
    assert world.links["st0"].arms()[0][0] == "qnu0"
    assert world.links["st0"].arms()[1][0] == "qnu1"
    # ... and none at st1, whose arms carry no light: its detectors see dark counts only
    heralds, dark = _record(config, world, "st1", seconds)
    assert len(heralds) == 0
    assert dark < 1000 * seconds, "dark counts (tens of Hz), no transducer noise photons"
    # Broken again: st0 too sees dark counts only, and heralds nothing.
    switch_now(world, ":OXC:SWITch:CONNect:SUBtract (@1,2),(@17,18)")
    heralds, dark = _record(config, world, "st0", seconds)
    assert len(heralds) == 0 and dark < 1000 * seconds


def test_a_switch_change_reaches_the_stream_at_the_next_block(tmp_path: Path) -> None:
    """Connected in the middle of a recording: no herald from an attempt before the blocks
    drawn after the path settled, heralds after it."""
    config, world = bridge_world(tmp_path)
    switched_at: list[int] = []

    def connect_at_half(start_ps: int) -> None:
        if not switched_at and start_ps >= 1e12:
            switch_now(world, ":OXC:SWITch:CONNect:ADD (@3,4),(@19,20)")
            switched_at.append(start_ps)

    heralds, _ = _record(config, world, "st1", 3.0, connect_at_half)
    assert switched_at, "the recording reached its middle"
    period = round(config.link.attempt_period * 1e12)
    assert len(heralds) > 0
    assert heralds.min() >= switched_at[0] - period, "a herald before the switch settled"
    assert [arms for _, arms in world.links["st1"].changes][-1][0][0] == "qnu2"


# -- the fabric's wire --------------------------------------------------------------------------
LINK = 2
NOW_PS = 10**12


def _frame(seq: int = 5, **fields: Any) -> bytes:
    values = {"link": LINK, "seq": seq, "attempt_id": 7, "bell_state": 0,
              "timestamp_ps": NOW_PS - 10**9, **fields}
    return encode_heralds(make_heralds(**values))


@pytest.mark.parametrize(("frames", "field"), [
    ([b"\x02" + _frame()[1:]], "wrong version"),
    ([_frame()[:-3]], "truncated"),
    ([_frame(bell_state=2)], "bad value"),
    ([_frame(), _frame(seq=6)], "frames"),
    ([_frame(link=LINK + 1)], "link"),
    ([_frame(seq=4)], "seq"),  # the last seq taken is 4: a repeat
    ([_frame(timestamp_ps=NOW_PS + 10**12)], "timestamp_ps"),
    ([Create(1, 1, 0.5, 0.0, 0, 1, 0, False).encode()], "type"),
])
def test_a_hostile_herald_frame_is_refused_naming_its_field(frames: list[bytes],
                                                             field: str) -> None:
    with pytest.raises(HeraldFrameError) as refused:
        check_heralds(frames, LINK, 4, NOW_PS)
    assert refused.value.field == field


def test_the_stations_own_messages_pass_and_heralds_go_forward() -> None:
    assert check_heralds([Heartbeat(0, 1, 0).encode()], LINK, 4, NOW_PS) is None
    records = check_heralds([_frame(seq=5)], LINK, 4, NOW_PS)
    assert records is not None and records["seq"].tolist() == [5]
    many = encode_heralds(make_heralds(LINK, np.array([5, 6]), 7, 0, NOW_PS))
    assert check_heralds([many], LINK, 4, NOW_PS) is not None
    backwards = encode_heralds(make_heralds(LINK, np.array([6, 5]), 7, 0, NOW_PS))
    with pytest.raises(HeraldFrameError, match="seq"):
        check_heralds([backwards], LINK, 4, NOW_PS)


def test_the_fabric_counts_refused_frames_and_reports_heralds_once_ready(
        tmp_path: Path) -> None:
    config = load_bridge_config(BRIDGE_8)
    topology = config.topology()
    key_dir = tmp_path / "keys"
    generate_lab_keys(key_dir, ["bridge_orchestrator", *topology.stations])
    epoch_ns = time.monotonic_ns()
    links = tuple(StationLink(s, f"tcp://127.0.0.1:{1 + i}", i + 1, epoch_ns)
                  for i, s in enumerate(topology.stations))
    bridge_now = [0.0]
    logged: list[dict[str, Any]] = []
    fabric = StationFabric(topology, StationFabricSettings(links, key_dir, guard_s=0.1),
                           lambda: bridge_now[0], logged.append)

    def herald(seq: int, age_s: float, link: int = 1) -> list[bytes]:
        now_ps = (time.monotonic_ns() - epoch_ns) * 1000
        return [encode_heralds(make_heralds(link, seq, seq, 1, now_ps - round(age_s * 1e12)))]

    try:
        bridge_now[0] = 5.0
        fabric.take("st0", herald(0, 0.0))  # nothing assigned: dropped
        fabric.assign("st0", "app/r1", "qnu0", "qnu1", ready_at=5.0)
        fabric.take("st0", herald(1, 0.0))  # a new pair: its guard (0.1 s) has not passed
        bridge_now[0] = 5.3
        fabric.take("st0", herald(2, 0.05))  # heralded at 5.25: counts
        fabric.take("st0", herald(2, 0.0))  # its repeat: refused
        fabric.take("st0", herald(3, 0.0, link=2))  # st1's link id on st0's SUB: refused
        fabric.take("st0", [struct.pack("<BB", 1, 99)])  # no such message type
        popped = fabric.pop(5.3)
        assert popped is not None and popped.request == "app/r1" and popped.station == "st0"
        assert popped.time == pytest.approx(5.25, abs=0.02)
        assert fabric.pop(5.3) is None
        fabric.release("st0")
        fabric.take("st0", herald(4, 0.0))  # released: dropped
        assert fabric.next_time() is None
        # The same pair again: its arms still hold it, no guard ...
        fabric.assign("st0", "app/r2", "qnu0", "qnu1", ready_at=5.25)
        fabric.take("st0", herald(5, 0.0))
        assert fabric.pop(5.3) is not None
        # ... unless one of its QNUs was switched to another station meanwhile.
        fabric.assign("st1", "app/r3", "qnu1", "qnu2", ready_at=5.3)
        fabric.assign("st0", "app/r4", "qnu0", "qnu1", ready_at=5.25)
        fabric.take("st0", herald(6, 0.0))
        assert fabric.next_time() is None
    finally:
        fabric.close()
    assert fabric.refused == {"seq": 1, "link": 1, "unknown type": 1}
    assert {r["field"] for r in logged if r["event"] == "herald_refused"} == set(fabric.refused)
    assert fabric.counters["heralds_unassigned"] == 2
    assert fabric.counters["heralds_before_ready"] == 2
    assert fabric.counters["heralds_reported"] == 2


@pytest.mark.processes
def test_a_world_port_taken_before_the_bind_starts_the_world_on_other_ports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ports are chosen free, then bound by the world's process: another run on the host may
    take one between the two (it did, two tests in parallel). The world starts again on
    fresh ports instead of failing the run."""
    import socket

    from qnetlab.bridge_stations import _start_world
    from qnetlab.network import ProcessGroup
    from qnetlab.sim_instruments import ports

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    held = holder.getsockname()[1]
    real, calls = ports.free_port_run, []

    def first_one_taken(count: int) -> int:
        calls.append(count)
        return held if len(calls) == 1 else real(count)

    monkeypatch.setattr(ports, "free_port_run", first_one_taken)
    config = load_bridge_config(BRIDGE_8)
    try:
        with ProcessGroup() as group:
            plan = _start_world(group, config, tmp_path, seed=1)
            assert held not in plan.first_ports.values()
            assert (tmp_path / "bridge_world_ready.json").exists()
            assert not (tmp_path / "bridge_world_fault.json").exists()
    finally:
        holder.close()


# -- the verb (its process-level run: tests/test_bridge_truth.py) ------------------------------
def test_stations_need_real_time_and_refuse_the_simulations_options(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from qnetlab.cli import EXIT_CONFIG
    from qnetlab.instruments.errors import ConfigError
    from qnetlab.network.bridge import BridgeServiceSettings

    config = load_bridge_config(BRIDGE_8)
    links = (StationLink("st0", "tcp://127.0.0.1:1", 1, 0),
             StationLink("st1", "tcp://127.0.0.1:2", 2, 0))
    stations = StationFabricSettings(links, tmp_path)
    with pytest.raises(ConfigError, match="time_scale"):
        BridgeServiceSettings(tmp_path, tmp_path, config.topology(), time_scale=10.0,
                              stations=stations)
    workload = LAB_CONFIGS / "workloads" / "distributed_ghz_8.yaml"
    for extra in (["--policy", "orchestrator"], ["--timeout", "0"]):
        code = main(["bridge", str(BRIDGE_8), "--workload", str(workload), "--stations",
                     *extra])
        assert code == EXIT_CONFIG
        assert extra[0] in capsys.readouterr().err


def test_an_aged_request_that_takes_a_held_station_leaves_the_follow_up_waiting() -> None:
    """Found by a real-time run of random_pairs_8 through the stations: an aged request took
    the station kept for a pair's follow-up, and the follow-up, in the same pass, took it
    again (the orchestrator process crashed with ValueError)."""
    from qnetlab.network.bridge import Request, Scheduler, bridge_topology

    topology = bridge_topology(8, seed=1)
    topology = dataclasses.replace(topology,  # every path fresh: no re-checks
                                   path_calibrated_at=np.zeros_like(topology.path_calibrated_at))
    core = Scheduler(topology)
    core.submit(Request("r1", "qnu0", "qnu1", 1, 0.5), 0.0)
    core.submit(Request("x", "qnu0", "qnu2", 1, 0.5), 0.0)  # waits for qnu0 until aged
    core.tick(2.5)
    core.submit(Request("r2", "qnu0", "qnu1", 1, 0.5), 2.5)  # r1's follow-up
    decisions = core.pairs_held("r1", 1, 2.5)  # r1 done: its station is kept for qnu0-qnu1
    (held,) = [d.station for d in decisions if d.action == "HOLD"]
    assigned = {d.request: d.station for d in decisions if d.action == "ASSIGN"}
    assert assigned == {"x": held}, "the aged request first, on the held (best) station"


def test_an_orchestrator_that_fails_tells_its_clients_why(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """A bug in the loop (as the one above was) is named in every open request's ERR and in
    the summary, not taken for a stop."""
    import threading

    from qnetlab.network.bridge import (
        BridgeClient,
        BridgeRefusedError,
        BridgeServiceSettings,
        Scheduler,
        bridge_topology,
        run_bridge_orchestrator,
    )

    def broken(self: Any, request: Any, now: float) -> list[Any]:
        raise RuntimeError("a scheduler bug")

    monkeypatch.setattr(Scheduler, "submit", broken)
    generate_lab_keys(tmp_path / "keys", ["bridge_orchestrator", "app"])
    settings = BridgeServiceSettings(tmp_path / "keys", tmp_path / "run", bridge_topology(8),
                                     max_seconds=60.0, clients=("app",))
    failed: list[BaseException] = []

    def orchestrator() -> None:
        try:
            run_bridge_orchestrator(settings, False)
        except RuntimeError as exc:
            failed.append(exc)

    thread = threading.Thread(target=orchestrator, daemon=True)
    thread.start()
    ready = settings.run_dir / "bridge_orchestrator_ready.json"
    wait_until(ready.exists, 30.0, "the orchestrator's ready file")
    with BridgeClient(json.loads(ready.read_text())["address"], tmp_path / "keys",
                      "app") as client:
        first = client.request_pairs("qnu0", "qnu1")
        with pytest.raises(BridgeRefusedError, match="RuntimeError: a scheduler bug"):
            client.wait(first, 30.0)
    thread.join(30.0)
    assert failed and not thread.is_alive()
    summary = json.loads((settings.run_dir / "bridge_orchestrator_summary.json").read_text())
    assert summary["stopped"] == "an error: RuntimeError: a scheduler bug"


def test_across_hosts_the_fabric_reads_station_time_off_the_stations_frames(
        tmp_path: Path) -> None:
    """A station on another host (no shared epoch: `StationLink.epoch_ns` None) whose clock
    reads anything at all: a herald's age is its lateness against the fastest frame so far
    (a heartbeat here), and a frame later than that clock allows is refused."""
    config = load_bridge_config(BRIDGE_8)
    topology = config.topology()
    key_dir = tmp_path / "keys"
    generate_lab_keys(key_dir, ["bridge_orchestrator", *topology.stations])
    links = tuple(StationLink(s, f"tcp://127.0.0.1:{1 + i}", i + 1, None)
                  for i, s in enumerate(topology.stations))
    station_zero_ns = time.monotonic_ns() - 7 * 10**12  # its clock: 2 h ahead of any epoch
    bridge_now = [10.0]
    fabric = StationFabric(topology, StationFabricSettings(links, key_dir),
                           lambda: bridge_now[0])

    def station_ps(ago_s: float = 0.0) -> int:
        return (time.monotonic_ns() - station_zero_ns) * 1000 - round(ago_s * 1e12)

    try:
        fabric.take("st0", [Heartbeat(1, 1, station_ps()).encode()])
        fabric.assign("st0", "app/r1", "qnu0", "qnu1", ready_at=9.0)
        fabric.take("st0", [encode_heralds(make_heralds(1, 0, 0, 1, station_ps(0.5)))])
        popped = fabric.pop(10.0)
        assert popped is not None and popped.time == pytest.approx(9.5, abs=0.05)
        # From the station's future (by more than the tolerance) on the clock it showed.
        fabric.take("st0", [encode_heralds(make_heralds(1, 1, 1, 1, station_ps(-1.0)))])
        assert fabric.refused == {"timestamp_ps": 1}
    finally:
        fabric.close()
    assert fabric.latencies[0] == pytest.approx(0.5, abs=0.05)
