"""The station-backed bridge across hosts: the world, each station, each QNU's node agent and
the orchestrator each in a Linux network namespace of its own (tests/netns.py: a hub bridge,
a veth per host).

A copy of the shipped bridge config differs from it only in its addresses (each process's
sockets on its host's address; the world's twins from ``world.address`` up on the world's)
and its folders; `qnetlab keys` makes its keys. Each process is started in its host with
``ip netns exec NS python -m qnetlab bridge CONFIG --stations --role NAME``, as a lab starts
them on their own machines: no process reaches another but over the veths, through the
config's addresses (the stations reach the world's twins through its relay, the
orchestrator the switch's twin and the stations' HERALDS PUBs, the QNUs the stations and the
orchestrator), and nothing shares a station epoch (the orchestrator reads station time off
the stations' frames, the QNUs' nodes fit it from clock exchanges).

The namespaces are deleted and every process stopped whatever the outcome, and every process
also stops by itself (``--max-seconds``) should this test die. Without root it skips saying
why; under ``CI=true`` it fails instead.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from qnetlab.bridge_agreement import wait_for_verdicts
from qnetlab.cli import main
from qnetlab.network.bridge import load_bridge_config
from qnetlab.network.bridge.bridge_config import BridgeConfig

from conftest import REPO
from netns import STOP_S, launch_in, namespaces, stop_all

LAB_CONFIGS = REPO / "lab_configs"
BRIDGE_8 = LAB_CONFIGS / "bridge_8.yaml"
SHIPPED = load_bridge_config(BRIDGE_8)
QNUS = ("qnu0", "qnu1", "qnu2", "qnu3")
"""The workload's QNUs: only their node agents run (each on its host), as a bridge serves
the QNUs that are up."""
ROLES = ("world", *SHIPPED.stations, *QNUS, "orchestrator")
HOST = {role: f"10.202.0.{i}" for i, role in enumerate(ROLES, start=1)}
STARTUP_S = 90.0
"""s for the world to build its benches and serve, and each station to open its lab and
stream, on a loaded 2-core box (seconds when idle): generous, only a broken run waits."""
WORKLOAD: dict[str, Any] = {
    "name": "across_hosts", "qnus": ["qnu0", "qnu1", "qnu2", "qnu3"], "operations": [
    {"id": "a", "kind": "pairs", "qnus": ["qnu0", "qnu1"], "pairs": 1, "min_fidelity": 0.55},
    {"id": "b", "kind": "pairs", "qnus": ["qnu2", "qnu3"], "pairs": 1, "min_fidelity": 0.55},
    {"id": "c", "kind": "pairs", "qnus": ["qnu0", "qnu2"], "pairs": 1, "min_fidelity": 0.55,
     "after": ["a", "b"]}]}


def workload_timeout(config: BridgeConfig) -> float:
    """s the workload may take: 100 times its pairs at the slowest of its paths' model
    rates, plus every path's settle and re-check, plus 30 s for a loaded machine."""
    topology = config.topology()
    pairs = [tuple(op["qnus"]) for op in WORKLOAD["operations"]]
    rate = min(topology.path_link(a, b, s).rate for a, b in pairs for s in topology.stations)
    return 100 * len(pairs) / rate + 2 * len(pairs) * (
        topology.settle_time + topology.recheck_time) + 30.0


TIMEOUT_S = workload_timeout(SHIPPED)
ORCHESTRATOR_S = STARTUP_S + TIMEOUT_S + 30.0
"""--max-seconds of the orchestrator: it stops by itself even if nothing else does."""
SERVER_S = ORCHESTRATOR_S + 20.0
"""--max-seconds of the world and the stations: they outlive the orchestrator."""

_runs = itertools.count()


# -- the lab ------------------------------------------------------------------------------------
def hosts_config(tmp_path: Path, host: Callable[[str], str]) -> Path:
    """bridge_8.yaml in `tmp_path` (labs made absolute, folders in `tmp_path`) with each
    process on `host(role)` (ports as the shipped config has them)."""
    yaml = YAML(typ="safe")
    data: dict[str, Any] = yaml.load(BRIDGE_8.read_text())
    data["switch"]["lab"] = str(LAB_CONFIGS / data["switch"]["lab"])
    for section in ("qnus", "stations"):
        for spec in data[section].values():
            spec["lab"] = str(LAB_CONFIGS / spec["lab"])
    data["bridge"].update(run_dir=str(tmp_path / "runs"), key_dir=str(tmp_path / "keys"))

    def move(section: dict[str, Any], role: str) -> None:
        for key, value in section.items():
            if isinstance(value, str) and value.startswith("tcp://"):
                section[key] = f"tcp://{host(role)}:{value.rpartition(':')[2]}"

    move(data["orchestrator"], "orchestrator")
    move(data["world"], "world")
    for name, spec in data["stations"].items():
        move(spec, name)
    path = tmp_path / "bridge.yaml"
    with path.open("w") as out:
        yaml.dump(data, out)
    return path


@pytest.fixture
def lab(tmp_path: Path) -> tuple[Path, Path]:
    """(the bridge config on the namespaces' addresses, with its keys; the workload)."""
    path = hosts_config(tmp_path, HOST.__getitem__)
    assert main(["keys", str(path)]) == 0
    workload = tmp_path / "workload.yaml"
    with workload.open("w") as out:
        YAML(typ="safe").dump(WORKLOAD, out)
    return path, workload


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``launch(role, config, *args, host=role)``: ``qnetlab bridge CONFIG --stations --role
    ROLE *args`` in `host`'s namespace, its output in ``tmp_path/<role>.log``; every launcher
    still running at the end is stopped, then the namespaces are deleted."""
    prefix = f"qnb{os.getpid()}-{next(_runs)}-"
    names = {role: prefix + role for role in ROLES}
    started: list[subprocess.Popen[bytes]] = []

    def start(role: str, config: Path, *args: str, host: str | None = None
              ) -> subprocess.Popen[bytes]:
        process = launch_in(names[host or role], tmp_path / f"{role}.log",
                            ["bridge", str(config), "--stations", "--role", role, *args],
                            tmp_path)
        started.append(process)
        return process

    with namespaces(prefix + "hub", {names[r]: HOST[r] for r in ROLES},
                    "tests/test_netns_bridge.py"):
        try:
            yield start
        finally:
            stop_all(started)


def _log(tmp_path: Path, role: str) -> str:
    path = tmp_path / f"{role}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def _logs(tmp_path: Path) -> str:
    return "\n".join(f"--- {r}\n{_log(tmp_path, r)}" for r in ROLES)


# -- the tests ------------------------------------------------------------------------------------
@pytest.mark.netns
@pytest.mark.processes
@pytest.mark.slow
@pytest.mark.timeout(ORCHESTRATOR_S + SERVER_S + 3 * STOP_S)
def test_a_workload_runs_with_world_stations_qnus_and_orchestrator_on_their_own_hosts(
        lab: tuple[Path, Path], launch: Callable[..., subprocess.Popen[bytes]],
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every operation of the workload is done through heralds the stations decided on
    their hosts from the world's twins on its host, with the switch's twin in the
    orchestrator's loop across the network; the servers stop on SIGTERM; the gathered
    folders join to the world's ground truth (`--truth`)."""
    path, workload = lab
    config = load_bridge_config(path)
    run_dir = tmp_path / "run"  # one folder for all, as if each host's were gathered
    servers = {role: launch(role, path, "--run-dir", str(run_dir), "--max-seconds",
                            f"{SERVER_S:g}") for role in ("world", *config.stations, *QNUS)}
    orchestrator = launch("orchestrator", path, "--workload", str(workload), "--run-dir",
                          str(run_dir), "--timeout", f"{TIMEOUT_S:.0f}", "--max-seconds",
                          f"{ORCHESTRATOR_S:g}")
    try:
        code = orchestrator.wait(ORCHESTRATOR_S + STOP_S)  # it stops by itself
    except subprocess.TimeoutExpired:
        pytest.fail("the orchestrator outlived its --max-seconds; logs:\n" + _logs(tmp_path))
    out = _log(tmp_path, "orchestrator")
    assert code == 0, _logs(tmp_path)
    n = len(WORKLOAD["operations"])
    assert f"operations done {n} of {n}" in out, out
    summary = json.loads((run_dir / "bridge_orchestrator_summary.json").read_text())
    assert summary["simulated"] is False and summary["counters"]["delivered"] == n
    stations = summary["stations"]
    assert stations["refused"] == {} and stations["counters"]["heralds_reported"] >= n
    # Station time came off the stations' frames (no shared epoch): ages are measured from
    # the fastest frame, so none is negative and the median is well below a second.
    assert 0.0 <= stations["latency_s"]["p50"] < 1.0, stations
    # Both QNUs of every pair hold it as delivered, read from their own hosts' logs.
    agreement = wait_for_verdicts(run_dir, list(config.stations), list(QNUS), 30.0)
    assert agreement.contradictions == 0 and agreement.delivered == n, agreement
    for process in servers.values():
        process.send_signal(signal.SIGTERM)
    for role, process in servers.items():
        assert process.wait(STOP_S) == 0, _log(tmp_path, role)
        assert f"{role}: stopped (SIGTERM)" in _log(tmp_path, role)
    for station in config.stations:
        assert json.loads((run_dir / f"{station}_summary.json").read_text())["heralds"] > 0
    # The simulation's ground truth, joined once the hosts' folders are gathered (here one
    # folder already): every delivered pair found in its station's heralds and the world's
    # truth, each request's pair judged between its own QNUs.
    assert main(["bridge", str(path), "--truth", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "simulation ground truth" in out
    assert f"QNU node agents: {n} pairs delivered at both QNUs, 0 contradictions" in out, out
    truth = json.loads((run_dir / "ground_truth.json").read_text())
    assert truth["unjoined"] == 0 and truth["all"]["delivered"] == n, truth
    assert truth["all"]["with_truth"] + truth["all"]["other_qnus"] <= n


@pytest.mark.netns
@pytest.mark.processes
@pytest.mark.timeout(STARTUP_S + 2 * STOP_S)
def test_a_station_started_on_a_host_without_its_address_is_refused(
        lab: tuple[Path, Path], launch: Callable[..., subprocess.Popen[bytes]],
        tmp_path: Path) -> None:
    """st0 started on the orchestrator's host: exit 2 before anything starts, naming the
    entry, the address and what to do."""
    path, _ = lab
    process = launch("st0", path, "--run-dir", str(tmp_path / "run"), "--max-seconds", "10",
                     host="orchestrator")
    code = process.wait(STARTUP_S)
    out = _log(tmp_path, "st0")
    assert code == 2, out
    assert "stations.st0.herald_address" in out and HOST["st0"] in out, out
    assert "not an address of this host" in out and "--role st0" in out, out
    assert not (tmp_path / "run" / "st0_summary.json").exists()


# -- without namespaces ---------------------------------------------------------------------------
def test_each_role_binds_only_its_own_addresses(tmp_path: Path) -> None:
    """The addresses each role binds: the world every port of its twins on its host, a
    station its herald and request sockets, the orchestrator its own, a QNU none."""
    from qnetlab.bridge_role import bound_addresses
    from qnetlab.sim_instruments.bridge_world import plan_bridge_world

    config = load_bridge_config(hosts_config(tmp_path, HOST.__getitem__))
    plan = plan_bridge_world(config, tmp_path / "world", on_hosts=True)
    world = bound_addresses(config, plan, "world")
    assert next(iter(world)) == "world.address (port 29410)"
    assert all(a.startswith(f"tcp://{HOST['world']}:") for a in world.values())
    assert bound_addresses(config, plan, "st1") == {
        "stations.st1.herald_address": f"tcp://{HOST['st1']}:29404",
        "stations.st1.request_address": f"tcp://{HOST['st1']}:29405"}
    assert bound_addresses(config, plan, "orchestrator") == {
        "orchestrator.address": f"tcp://{HOST['orchestrator']}:29401"}
    assert bound_addresses(config, plan, "qnu0") == {}  # a node agent only connects
    # Every host computes the same plan: the station's lab reaches the world's host.
    again = plan_bridge_world(config, tmp_path / "again", on_hosts=True)
    reached = again.reached("st0")
    assert reached.instruments["tagger"].addresses["real"] == \
        plan.reached("st0").instruments["tagger"].addresses["real"]
    assert HOST["world"] in reached.instruments["tagger"].addresses["real"]


def test_a_role_refuses_what_it_cannot_run(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 2 naming the fix: an unknown role, a workload for a server role, none for the
    orchestrator, missing keys, role options without --stations."""
    path = hosts_config(tmp_path, lambda role: "127.0.0.1")
    workload = tmp_path / "workload.yaml"
    with workload.open("w") as out:
        YAML(typ="safe").dump(WORKLOAD, out)
    base = ["bridge", str(path), "--stations"]
    assert main([*base, "--role", "st9"]) == 2
    assert "world, st0, st1, qnu0, qnu1, qnu2, qnu3, qnu4, qnu5, qnu6, qnu7, orchestrator" \
        in capsys.readouterr().err
    assert main([*base, "--role", "orchestrator"]) == 2
    assert "--workload" in capsys.readouterr().err
    assert main([*base, "--role", "st0", "--workload", str(workload)]) == 2
    assert "--workload" in capsys.readouterr().err
    assert main([*base, "--role", "st0"]) == 2  # no keys yet
    assert "qnetlab keys" in capsys.readouterr().err
    assert main(["bridge", str(path), "--workload", str(workload), "--role", "st0"]) == 2
    assert "--stations" in capsys.readouterr().err
    assert main([*base, "--workload", str(workload), "--max-seconds", "5"]) == 2
    assert "--role" in capsys.readouterr().err
    shipped_without = hosts_config(tmp_path, lambda role: "127.0.0.1")
    data = YAML(typ="safe").load(shipped_without.read_text())
    for key in ("orchestrator", "world"):
        del data[key]
    for spec in data["stations"].values():
        del spec["herald_address"], spec["request_address"]
    with shipped_without.open("w") as out:
        YAML(typ="safe").dump(data, out)
    assert main(["bridge", str(shipped_without), "--stations", "--role", "world"]) == 2
    assert "world.address" in capsys.readouterr().err


def test_a_bridge_config_without_addresses_loads_as_before(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = YAML(typ="safe").load(hosts_config(tmp_path, lambda role: "127.0.0.1").read_text())
    for key in ("orchestrator", "world"):
        del data[key]
    for spec in data["stations"].values():
        del spec["herald_address"], spec["request_address"]
    del data["bridge"]["key_dir"]
    path = tmp_path / "plain.yaml"
    with path.open("w") as out:
        YAML(typ="safe").dump(data, out)
    config = load_bridge_config(path)
    assert not config.hosts and config.key_dir is None and config.bound_addresses() == {}
    assert main(["keys", str(path)]) == 2
    assert "bridge.key_dir" in capsys.readouterr().err


def test_the_relay_forwards_a_hosts_port_to_loopback_both_ways() -> None:
    """`TcpRelay` (the world's twins on another host's address): bytes go through unchanged
    both ways, and closing it closes the connection."""
    import socket

    from qnetlab.sim_instruments.tcp_relay import TcpRelay

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        try:
            relay = TcpRelay("127.0.0.2", [port])  # another address of this host
        except OSError as exc:
            pytest.skip(f"no 127.0.0.2 here: {exc}")
        relay.start()
        try:
            with socket.create_connection(("127.0.0.2", port), timeout=10) as client:
                inner, _ = server.accept()
                with inner:
                    inner.settimeout(10)
                    client.sendall(b"*IDN?\n")
                    assert inner.recv(100) == b"*IDN?\n"
                    inner.sendall(b"POLATIS\n")
                    assert client.recv(100) == b"POLATIS\n"
                    relay.close()
                    assert client.recv(100) == b""  # the relay's end closed
        finally:
            relay.close()
