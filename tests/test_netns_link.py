"""The two-node link across hosts: each process in a Linux network namespace of its own.

A hub namespace holds a bridge; a veth pair joins it to each of four "hosts" (namespaces
with their own ``eth0`` at 10.201.0.N/24 and their own loopback): the heralding station,
node_a, node_b and the orchestrator. A copy of the shipped network config differs from it
only in its addresses (each process's sockets on its host's address), and each process is
started in its host with ``ip netns exec NS python -m qnetlab link CONFIG --role NAME``, as
a lab starts them on their own machines. No process can reach another but over the
veths, through the addresses of the config; nothing shares a station epoch (each node agent
reads station time from its clock exchanges with the station).

The link's calibrations are committed by hand at the values `qnetlab calibrate` finds on
this simulated lab (tests/test_network_bringup.py calibrates it for real, which takes
longer than this whole test); the station's lab runs in its process with the link's world
behind the tagger twin (sim profile), whose ground truth judges the delivered pairs.

Namespaces need root (``ip netns add``): without, the test skips and says why; in CI
(``CI=true``, where the tests run as root) it fails instead, so it cannot silently stop
running. Names carry this process's pid (and a counter), so parallel workers never collide;
the namespaces are deleted and every process stopped whatever the outcome, and every process
also stops by itself (``--max-seconds``) should this test die.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ruamel.yaml import YAML

from qnetlab.cli import main
from qnetlab.instruments.lab_config import load_config
from qnetlab.link import read_simulation_truth
from qnetlab.network import PairEvent
from qnetlab.network.lab import bound_addresses, plan_lab, read_pairs, read_report, role_names
from qnetlab.network.link_model import FIBRE_DELAY_S_PER_KM
from qnetlab.network.network_config import NetworkConfig, load_network_config
from qnetlab.sequences.calibration import CalibrationOutcome
from qnetlab.sequences.calibration.store import ParameterStore

from conftest import REPO, network_lab_on_free_ports, wait_until
from netns import namespaces, stop_all

SHIPPED = load_network_config(REPO / "lab_configs" / "two_node_link.yaml")
ROLES = tuple(role_names(SHIPPED))  # station, node_a, node_b, orchestrator
SUBNET = "10.201.0"
HOST = {role: f"{SUBNET}.{i}" for i, role in enumerate(ROLES, start=1)}
PAIRS = 30
STARTUP_S = 45.0
"""s for the four processes to start and the station to open its lab on a loaded 2-core
box (a few s when idle): generous, only a broken run waits for it."""
REQUEST_S = SHIPPED.orchestrator.max_time
"""s the orchestrator's request may take (the config's ``orchestrator.max_time``)."""
ORCHESTRATOR_S = STARTUP_S + REQUEST_S
"""--max-seconds of the orchestrator: it stops by itself even if nothing else does."""
SERVER_S = ORCHESTRATOR_S + 20.0
"""--max-seconds of the station and the node agents: they outlive the orchestrator."""
STOP_S = 30.0
"""s a launcher may take to stop after SIGTERM (its process gets 20 s to write its files,
`network.ProcessGroup`)."""

_runs = itertools.count()


def across_hosts(test: Callable[..., None]) -> Callable[..., None]:
    """The marks of a test that runs processes in namespaces."""
    for mark in (pytest.mark.netns, pytest.mark.processes, pytest.mark.slow,
                 pytest.mark.timeout(ORCHESTRATOR_S + SERVER_S + 2 * STOP_S)):
        test = mark(test)
    return test


# -- the hosts ------------------------------------------------------------------------------------
@pytest.fixture
def hosts() -> Iterator[dict[str, str]]:
    """Role -> the network namespace that is its host (see the module docstring): the hub's
    bridge, and per role a veth from it to the role's namespace (eth0 there, with the role's
    address; loopback up: the station's twins listen on 127.0.0.1)."""
    prefix = f"qnl{os.getpid()}-{next(_runs)}-"
    hosts = {role: prefix + role for role in ROLES}
    with namespaces(prefix + "hub", {ns: HOST[role] for role, ns in hosts.items()},
                    "tests/test_netns_link.py"):
        yield hosts


@pytest.fixture
def launch(hosts: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``launch(role, *args)``: ``qnetlab link CONFIG --role ROLE *args`` in the role's
    host, its output in ``tmp_path/<role>.log``; every launcher still running at the end
    is stopped (SIGTERM, then SIGKILL), before the namespaces go."""
    started: list[subprocess.Popen[bytes]] = []

    def start(role: str, config: Path, *args: str, host: str | None = None
              ) -> subprocess.Popen[bytes]:
        with (tmp_path / f"{role}.log").open("ab") as log:
            process = subprocess.Popen(
                ["ip", "netns", "exec", hosts[host or role], sys.executable, "-m", "qnetlab",
                 "link", str(config), "--role", role, *args],
                stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        started.append(process)
        return process

    yield start
    stop_all(started)


# -- the lab ------------------------------------------------------------------------------------
def _move_to_hosts(path: Path) -> None:
    """Rewrite the network config at `path`: each process's addresses (its sockets, its
    telemetry, a node's parameter service) on its host's address, ports as they were."""
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False
    data = yaml.load(path.read_text())

    def move(section: dict[str, Any], role: str) -> None:
        for key, value in section.items():
            if isinstance(value, str) and value.startswith("tcp://"):
                section[key] = f"tcp://{HOST[role]}:{value.rpartition(':')[2]}"

    move(data["station"], SHIPPED.station.name)
    move(data["orchestrator"], SHIPPED.orchestrator.name)
    for name in SHIPPED.link.nodes:
        move(data["nodes"][name], name)
    with path.open("w") as out:
        yaml.dump(data, out)


def _commit_calibrations(config: NetworkConfig) -> None:
    """The link's calibrations, committed by hand at the values `qnetlab calibrate` finds
    on this simulated lab: the station's detectors (bias at the plateau, efficiency, dark
    counts), the arms' delays (the fibre's nominal delay; the tagger's hidden input delays
    of ~2 ns are well inside the 40 ns windows) and each node's transducer at its operating
    point."""
    station_lab = load_config(config.station.lab)
    assert station_lab.database is not None
    station = ParameterStore(station_lab.database)
    for ch in (1, 2):
        station.record_calibration(f"station.detector_efficiency_ch{ch}", CalibrationOutcome(
            True, "by hand", {f"bias_current_ch{ch}": (10.0e-6, "A"),
                              f"detection_efficiency_ch{ch}": (0.84, ""),
                              f"detection_efficiency_ch{ch}_error": (0.009, "")}))
    station.record_calibration("station.dark_counts", CalibrationOutcome(True, "by hand", {
        "dark_count_rate_ch1": (4.5, "Hz"), "dark_count_rate_ch2": (4.5, "Hz")}))
    assert config.database is not None
    link = ParameterStore(config.database)
    for node in config.link.nodes:
        delay = config.nodes[node].fibre_length_km * FIBRE_DELAY_S_PER_KM
        link.record_calibration(f"link.arm_delay_{node}", CalibrationOutcome(True, "by hand", {
            f"arm_delay_{node}_det0": (delay, "s"), f"arm_delay_{node}_det1": (delay, "s"),
            f"arrival_spread_{node}": (1.3e-9, "s")}))
        node_lab = config.nodes[node].station
        assert node_lab is not None
        lab = load_config(node_lab)
        assert lab.database is not None
        ParameterStore(lab.database).record_calibration(
            f"{node}.link_operating_point", CalibrationOutcome(True, "by hand", {
                "transducer_efficiency": (0.09, ""),
                "transducer_added_noise": (0.16, "photons"),
                "conversion_bandwidth": (10e6, "Hz")}))


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    """The shipped network and its labs in `tmp_path`, the network's processes on the
    namespaces' addresses, with its keys (`qnetlab keys`) and calibrations."""
    path = network_lab_on_free_ports(tmp_path)
    _move_to_hosts(path)
    assert main(["keys", str(path)]) == 0
    _commit_calibrations(load_network_config(path))
    return path


def station_pid(run_dir: Path, station: str) -> int:
    return int(json.loads((run_dir / f"{station}_process.json").read_text())["pid"])


def _delivered(run_dir: Path, node: str) -> set[int]:
    """Seqs of the pairs `node`'s own log holds as delivered."""
    log = read_pairs(run_dir, node)
    return set(log["seq"][log["event"] == PairEvent.DELIVERED].tolist())


def _log(tmp_path: Path, role: str) -> str:
    path = tmp_path / f"{role}.log"
    return path.read_text(errors="replace") if path.exists() else ""


# -- the tests ------------------------------------------------------------------------------------
@across_hosts
def test_the_link_runs_with_each_process_on_its_own_host(
        lab: Path, launch: Callable[..., Any], tmp_path: Path) -> None:
    """Station, node_a, node_b and orchestrator each in its own namespace deliver the pairs
    asked for: both nodes hold the same delivered set, none of it expired or lost at either
    node, each pair the station's herald of its attempt with the Bell state the simulated
    world says; each node's clock exchanges put station time where it is."""
    config = load_network_config(lab)
    run_dir = tmp_path / "run"  # one folder for all, as if each host's were gathered
    servers = {role: launch(role, lab, "--run-dir", str(run_dir), "--max-seconds",
                            f"{SERVER_S:g}")
               for role in (config.station.name, *config.link.nodes)}
    orchestrator = launch(config.orchestrator.name, lab, "--pairs", str(PAIRS), "--run-dir",
                          str(run_dir), "--max-seconds", f"{ORCHESTRATOR_S:g}")
    try:
        code = orchestrator.wait(ORCHESTRATOR_S + STOP_S)  # it stops by itself
    except subprocess.TimeoutExpired:
        pytest.fail("the orchestrator outlived its --max-seconds; logs:\n"
                    + "\n".join(_log(tmp_path, r) for r in ROLES))
    out = _log(tmp_path, config.orchestrator.name)
    assert code == 0, "\n".join(f"--- {r}\n{_log(tmp_path, r)}" for r in ROLES)
    assert f"{PAIRS} of {PAIRS} pairs delivered" in out, out
    # Its last verdicts are on their way to the nodes when the orchestrator ends.
    result = json.loads((run_dir / f"{config.orchestrator.name}_result.json").read_text())
    ordered = {int(d["seq"]) for d in result["delivered"]}
    wait_until(lambda: all(ordered <= _delivered(run_dir, node) for node in config.link.nodes),
               STOP_S, "the orchestrator's last verdicts at both nodes")
    # The station and the node agents serve until stopped: SIGTERM, as a person's Ctrl-C.
    for process in servers.values():
        process.send_signal(signal.SIGTERM)
    for role, process in servers.items():
        assert process.wait(STOP_S) == 0, _log(tmp_path, role)
        assert f"{role}: stopped (SIGTERM)" in _log(tmp_path, role)

    plan = plan_lab(config, pairs=PAIRS, run_dir=run_dir, epoch_ns=0, goodness=0.0,
                    expected_pair_rate=0.0, same_host=False)
    report = read_report(plan)
    assert report.delivered == PAIRS and report.delivered_from == "orchestrator"
    assert not report.failed and report.nodes_logged
    assert report.agreement == "yes", report.agreement
    delivered = {int(seq) for seq in report.delivered_heralds["seq"]}
    assert len(delivered) == PAIRS  # every delivered pair is a herald the station decided
    attempt_of = {int(h["seq"]): int(h["attempt_id"]) for h in report.delivered_heralds}
    for node in config.link.nodes:
        log = read_pairs(run_dir, node)
        done = log[log["event"] == PairEvent.DELIVERED]
        assert _delivered(run_dir, node) == delivered == ordered, node
        assert all(attempt_of[int(r["seq"])] == int(r["attempt_id"]) for r in done), node
        dropped = log[np.isin(log["event"], [PairEvent.EXPIRED, PairEvent.LOST])]
        assert not delivered & set(dropped["seq"].tolist()), node
    truth = read_simulation_truth(run_dir, list(config.link.nodes), config.link.id,
                                  report.delivered_heralds)
    assert truth is not None, "the station's twin wrote no ground truth"
    assert truth.delivered == PAIRS
    assert truth.bell_checked > 0 and truth.bell_agree == truth.bell_checked
    # The station read its tagger over real transports from the twins' own process (on
    # loopback in the station's namespace), not from a simulation inside its own process.
    twins = json.loads((run_dir / f"{config.station.name}_twins_ready.json").read_text())
    assert twins["pid"] != station_pid(run_dir, config.station.name)
    assert all("127.0.0.1" in address for address in twins["addresses"].values())

    # Station time at the nodes came from their clock exchanges (no shared epoch: the summary
    # has no error against a known one). All namespaces share one kernel's monotonic clock,
    # so the true offset (station - node) is minus the station's zero on it: each node's
    # estimate is held to a quarter of its memory cutoff (an error near the cutoff would
    # expire good pairs; the fit's own error is the asymmetry of its fastest round trips,
    # tens of us here, so the bound leaves room for a loaded machine).
    station = json.loads((run_dir / f"{config.station.name}_process.json").read_text())
    for node in config.link.nodes:
        clock = json.loads((run_dir / f"{node}_summary.json").read_text())["clock"]
        assert "error_s" not in clock and clock["samples"] > 2, clock
        error_s = clock["offset_s"] + station["epoch_ns"] * 1e-9
        assert abs(error_s) < config.nodes[node].memory_cutoff / 4, (node, clock)


@across_hosts
def test_a_process_started_on_a_host_without_its_address_is_refused(
        lab: Path, launch: Callable[..., Any], tmp_path: Path) -> None:
    """The station started in node_a's namespace: exit 2 before anything starts, naming
    the config entry, the address and what to do."""
    process = launch("station", lab, "--run-dir", str(tmp_path / "run"), "--max-seconds",
                     "10", host="node_a")
    code = process.wait(STARTUP_S)
    out = _log(tmp_path, "station")
    assert code == 2, out
    assert "station.herald_address" in out and f"{HOST['station']}" in out, out
    assert "not an address of this host" in out and "--role" in out, out
    assert not (tmp_path / "run" / "station_process.json").exists()


# -- without namespaces ---------------------------------------------------------------------------
def test_each_role_binds_only_its_own_addresses_from_the_config() -> None:
    """What `check_ports` tries for one role: that process's sockets, telemetry included,
    every address from the config (nothing bound on a wildcard or loopback of its own)."""
    config = SHIPPED
    assert bound_addresses(config, "station") == {
        "station.herald_address": config.station.herald_address,
        "station.request_address": config.station.request_address,
        "station.telemetry_address": config.station.telemetry_address}
    assert bound_addresses(config, "orchestrator") == {
        "orchestrator.address": config.orchestrator.address,
        "orchestrator.telemetry_address": config.orchestrator.telemetry_address}
    assert bound_addresses(config, "node_b") == {
        "nodes.node_b.telemetry_address": config.nodes["node_b"].telemetry_address}


def test_an_unknown_role_and_role_options_without_a_role_are_usage_errors(
        capsys: pytest.CaptureFixture[str]) -> None:
    config = str(REPO / "lab_configs" / "two_node_link.yaml")
    assert main(["link", config, "--role", "node_c"]) == 2
    err = capsys.readouterr().err
    assert "node_c" in err and "station, node_a, node_b, orchestrator" in err, err
    assert main(["link", config, "--max-seconds", "5"]) == 2
    assert "--role" in capsys.readouterr().err
    assert main(["link", config, "--role", "station", "--timeout", "5"]) == 2
    assert "--max-seconds" in capsys.readouterr().err
    with contextlib.suppress(SystemExit):
        main(["link", config, "--help"])
    assert "--role NAME" in capsys.readouterr().out
