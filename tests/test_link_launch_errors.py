"""`qnetlab link` when the lab cannot start or a process dies: the cause, named, at once.

Real processes throughout: `qnetlab link` (in this process through `qnetlab.cli.main`, which
spawns the station, node agents and orchestrator, or as a subprocess where a test must kill
one of them), or the lab's processes started by `network.lab.start_lab` and watched by
`network.lab.supervise`, as `qnetlab link` does. The shipped two_node_link.yaml is copied
into a temp folder with its tcp ports moved to free ones, so keys and runs land there.

Time bounds come from the link's own timeout: it is set to `TIMEOUT` (60 s), and a fault must
be reported in less than half of it (in practice well under a second after the processes
have started), so a loaded machine cannot fail a test that waits correctly.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qnetlab.cli import main
from qnetlab.instruments.errors import ConfigError
from qnetlab.link import _format
from qnetlab.network import PeriodicHeralds, ProcessGroup
from qnetlab.network.keys import check_lab_keys, generate_lab_keys
from qnetlab.network.lab import LabPlan, plan_lab, read_pairs, read_report, start_lab, supervise
from qnetlab.network.network_config import NetworkConfig, load_network_config
from qnetlab.network.node_agent import PairEvent

from conftest import network_lab_on_free_ports, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.processes]

TIMEOUT = 60.0
"""s: the link's timeout in these tests; every fault must be named well before it."""


def write_lab(folder: Path) -> Path:
    """two_node_link.yaml and the node labs it names in `folder`/lab_configs, with every
    port moved to a free one; keys, runs and databases go to `folder`/lab_data (the
    configs' relative paths)."""
    return network_lab_on_free_ports(folder)


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    """A network config with its keys (`qnetlab keys`)."""
    path = write_lab(tmp_path)
    assert main(["keys", str(path)]) == 0
    return path


def stranger_key(folder: Path, name: str) -> bytes:
    """A public key file's bytes for a keypair of nobody in the lab."""
    generate_lab_keys(folder, [name])
    return (folder / "public" / f"{name}.key").read_bytes()


def run_link(config: Path, capsys: pytest.CaptureFixture[str], pairs: int = 20
             ) -> tuple[int, str, str, float]:
    started = time.monotonic()
    code = main(["link", str(config), "--pairs", str(pairs), "--timeout", str(TIMEOUT)])
    out, err = capsys.readouterr()
    return code, out, err, time.monotonic() - started


# -- item 12: a public key that does not match its secret ---------------------------------

def test_a_public_key_not_matching_its_secret_is_named_at_once_and_repaired_by_keys(
        lab: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_dir = load_network_config(lab).key_dir
    station_key = key_dir / "public" / "station.key"
    station_key.write_bytes(stranger_key(tmp_path / "other", "someone"))
    capsys.readouterr()
    code, out, err, elapsed = run_link(lab, capsys)
    assert code == 2, err
    assert elapsed < TIMEOUT / 2
    assert f"{station_key}: does not hold station's public key" in err
    assert f"qnetlab keys {lab}" in err and "qnetlab keys CONFIG" not in err
    assert "agree" not in out  # the run never started: no summary
    # `qnetlab keys` rewrites the public key from the secret; then the lab is whole again.
    assert main(["keys", str(lab)]) == 0
    assert re.search(r"station\s+repaired", capsys.readouterr().out)
    check_lab_keys(key_dir, load_network_config(lab).key_names())


def lab_plan(config: NetworkConfig, pairs: int = 20) -> LabPlan:
    return plan_lab(config, pairs=pairs, run_dir=config.run_dir / "run",
                    epoch_ns=time.monotonic_ns(), goodness=0.9, expected_pair_rate=1000.0,
                    max_seconds=TIMEOUT + 5)


def supervised_error(config: NetworkConfig, plan: LabPlan) -> tuple[ConfigError, float]:
    """Start the lab's processes as `qnetlab link` does and wait for the ConfigError that
    `supervise` raises; with the seconds it took from the start. Every process must then
    stop on its own when told (none SIGKILLed: a node agent refused by its peers once hung
    in a send until the group's stop timeout killed it)."""
    with ProcessGroup() as group:
        started = time.monotonic()
        # The test signal: these faults are the control plane's, whatever feeds the station.
        start_lab(group, plan, functools.partial(PeriodicHeralds, 10**9))
        with pytest.raises(ConfigError) as caught:
            supervise(group, plan, config, TIMEOUT)
        took = time.monotonic() - started
    killed = [name for name in group.names if group.exitcode(name) == -signal.SIGKILL]
    assert not killed, f"{killed} did not stop when told and were SIGKILLed"
    return caught.value, took


def with_key_dir(plan: LabPlan, key_dir: Path, *, node: str | None = None) -> LabPlan:
    """`plan` with `node` (or the station and the orchestrator, the servers) reading its
    keys from `key_dir`: as if that host held other copies of the public keys."""
    if node is not None:
        nodes = {**plan.nodes, node: dataclasses.replace(plan.nodes[node], key_dir=key_dir)}
        return dataclasses.replace(plan, nodes=nodes)
    return dataclasses.replace(
        plan, station=dataclasses.replace(plan.station, key_dir=key_dir),
        orchestrator=dataclasses.replace(plan.orchestrator, key_dir=key_dir))


def copy_keys(source: Path, target: Path) -> Path:
    for sub in ("public", "private"):
        (target / sub).mkdir(parents=True)
        for path in (source / sub).iterdir():
            (target / sub / path.name).write_bytes(path.read_bytes())
    return target


@pytest.mark.parametrize("wrong", ["node's copy of the station key",
                                   "station's copy of the node key"])
def test_a_failing_handshake_is_reported_by_the_process_within_a_second(
        lab: Path, tmp_path: Path, wrong: str) -> None:
    """Across hosts each host has its own copy of the public keys, so only the handshake
    shows a wrong one: the node agent's handshake watch reports it to the launcher, which
    stops the run naming the process, its peer and the key file."""
    config = load_network_config(lab)
    other = copy_keys(config.key_dir, tmp_path / "other_host_keys")
    if wrong.startswith("node's"):
        (other / "public" / "station.key").write_bytes(stranger_key(tmp_path / "x", "s"))
        plan = with_key_dir(lab_plan(config), other, node="node_a")
        named = [re.escape(text) for text in (
            "node_a: the CURVE handshake with station at tcp://127.0.0.1:",
            f"{other}/public/station.key is not station's public key",
            "copy public/station.key from the host that runs station")]
    else:
        (other / "public" / "node_a.key").write_bytes(stranger_key(tmp_path / "x", "n"))
        plan = with_key_dir(lab_plan(config), other)
        # Both servers refuse it; whichever handshake came first is named.
        named = [r"node_a: (station|orchestrator) at tcp://127\.0\.0\.1:\d+ refused node_a's "
                 r"key", re.escape(f"{config.key_dir}/public/node_a.key"),
                 re.escape(f"qnetlab keys {lab}")]
    error, elapsed = supervised_error(config, plan)
    assert elapsed < TIMEOUT / 2
    for text in named:
        assert re.search(text, str(error)), (text, str(error))
    fault = json.loads((plan.run_dir / "node_a_fault.json").read_text())
    assert fault["kind"] == "auth" and fault["process"] == "node_a"


# -- item 13: ports taken, a public key copied --------------------------------------------

@pytest.fixture
def taken(lab: Path) -> Iterator[Callable[[str], str]]:
    """Takes the port of a config address (listening, as another program would)."""
    held: list[socket.socket] = []

    def take(address: str) -> str:
        host, port = address.removeprefix("tcp://").rsplit(":", 1)
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, int(port)))
        listener.listen()
        held.append(listener)
        return address

    yield take
    for listener in held:
        listener.close()


def test_a_port_in_use_is_a_config_error_naming_the_entry_and_address(
        lab: Path, taken: Callable[[str], str], capsys: pytest.CaptureFixture[str]) -> None:
    address = taken(load_network_config(lab).station.request_address)
    code, out, err, elapsed = run_link(lab, capsys)
    assert code == 2, err
    assert elapsed < TIMEOUT / 2
    assert f"station.request_address: {address} is in use by another process" in err
    assert "Traceback" not in err and "agree" not in out


def test_a_process_that_cannot_bind_reports_the_address_instead_of_a_traceback(
        lab: Path, taken: Callable[[str], str], capfd: pytest.CaptureFixture[str]) -> None:
    """The port taken after the launcher's check (a race): the orchestrator's bind fails in
    its own process, which reports the address to the launcher and exits 2, quietly."""
    config = load_network_config(lab)
    address = taken(config.orchestrator.address)
    error, elapsed = supervised_error(config, lab_plan(config))
    assert elapsed < TIMEOUT / 2
    assert (f"orchestrator.address: orchestrator could not bind: {address} is in use by "
            "another process") in str(error)
    assert "Traceback" not in capfd.readouterr().err


def test_a_public_key_copied_to_another_process_is_a_config_error(
        lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    public = load_network_config(lab).key_dir / "public"
    (public / "node_b.key").write_bytes((public / "node_a.key").read_bytes())
    code, out, err, elapsed = run_link(lab, capsys)
    assert code == 2, err
    assert elapsed < TIMEOUT / 2
    assert f"{public / 'node_b.key'}: same public key as node_a.key" in err
    assert f"qnetlab keys {lab}" in err
    assert "Traceback" not in err and "agree" not in out


def test_the_summary_of_a_run_that_delivered_nothing_claims_no_agreement(lab: Path) -> None:
    """What `qnetlab link` prints when processes stopped before any pair: never "yes"."""
    config = load_network_config(lab)
    plan = lab_plan(config)
    plan.run_dir.mkdir(parents=True)
    text = _format(config, plan, read_report(plan), 1.0, 0.5)
    assert "0 of 20 pairs delivered" in text
    assert "both nodes agree: unknown (no node logged anything)" in text
    for node in plan.nodes:  # the node agents ran, but no pair came
        (plan.run_dir / f"{node}_pairs.bin").touch()
    text = _format(config, plan, read_report(plan), 1.0, 0.5)
    assert "both nodes agree: nothing to agree on (no pair delivered)" in text


# -- item 14: the orchestrator dies mid-run ------------------------------------------------

def delivered_at_both(run_dir: Path) -> set[int]:
    sets = []
    for node in ("node_a", "node_b"):
        log = read_pairs(run_dir, node)
        sets.append(set(log["seq"][log["event"] == PairEvent.DELIVERED].tolist()))
    return sets[0] & sets[1]




def test_after_the_orchestrator_dies_the_summary_counts_the_nodes_pairs_and_names_it(
        lab: Path) -> None:
    """The lab's processes as `qnetlab link` runs them (`start_lab`, `supervise`), the
    orchestrator killed mid-run: the wait ends naming it, and the summary counts what both
    nodes' own logs hold as delivered. (The station reads the test signal: a run of
    `qnetlab link` itself needs the link's calibrations: tests/test_network_bringup.py.)"""
    before = 10
    config = load_network_config(lab)
    plan = lab_plan(config, pairs=100000)
    with ProcessGroup() as group:
        start_lab(group, plan, functools.partial(PeriodicHeralds, 10**9))
        wait_until(lambda: len(delivered_at_both(plan.run_dir)) >= before, TIMEOUT / 2,
                   f"{before} pairs at both nodes")
        group.kill(plan.orchestrator.name)
        outcome = supervise(group, plan, config, TIMEOUT)
    assert "orchestrator (killed by SIGKILL)" in outcome.trouble
    assert set(outcome.stopped_early) == {"orchestrator"}
    held = delivered_at_both(plan.run_dir)
    assert len(held) >= before
    report = read_report(plan)
    assert report.delivered_from == "node pair logs" and report.delivered == len(held)
    text = _format(config, plan, report, 1000.0, 0.9).replace("\n", " ")
    assert (f"{len(held)} of 100000 pairs delivered (counted from the node pair logs: the "
            "orchestrator left no result); both nodes agree: ") in text
    # Killed between the OKs it sends the two nodes of a pair, the orchestrator leaves that
    # pair at one node only: the summary must say so, never "yes".
    logs = [{int(seq) for seq in read_pairs(plan.run_dir, node)["seq"][
        read_pairs(plan.run_dir, node)["event"] == PairEvent.DELIVERED]}
        for node in ("node_a", "node_b")]
    one_sided = len(logs[0] ^ logs[1])
    assert report.one_sided == one_sided
    agree = "yes" if not one_sided else f"NO ({one_sided} pair(s) held by one node only)"
    assert f"both nodes agree: {agree}" in text


# -- item 18: no keys: one exit code, the real config path ---------------------------------

def test_calibrate_link_and_bringup_without_keys_exit_2_naming_the_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_lab(tmp_path)
    for verb in (["calibrate", str(config), "--quiet"],
                 ["link", str(config), "--pairs", "5"]):
        assert main(verb) == 2, verb
        err = capsys.readouterr().err
        assert f"run `qnetlab keys {config}` to generate the lab's keys" in err, verb
    # bringup makes missing keys itself; half a keypair it cannot: the same code and path.
    assert main(["keys", str(config)]) == 0
    (load_network_config(config).key_dir / "private" / "node_a.key_secret").unlink()
    capsys.readouterr()
    assert main(["bringup", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "node_a.key_secret: missing, but node_a.key exists" in err
    assert f"qnetlab keys {config} --overwrite" in err
