"""`qnetlab bridge CONFIG --workload FILE --stations`: the workload through heralding-station
processes reading their time taggers behind the optical switch (phase 1 of the process-level
bridge), in real time.

`run_with_stations` starts, each its own process (`network.ProcessGroup`):

1. the bridge world (`serve_bridge_world`): the switch lab's Polatis twin and every station
   lab's twins (SNSPDs, ID1000) on free loopback ports, each station's tagger streaming the
   link of whatever the switch connects to its arms (`sim_instruments.bridge_world`);
2. one heralding station per station of the bridge (`network.heralding_station`), its lab
   opened with the real profile's drivers against the world's ports (as the single link's
   station reads its twins' process), its windows at the paths' arm delays;
3. the bridge orchestrator (`network.bridge.run_bridge_orchestrator`) with the switch in the
   loop (the Polatis driver against the world's twin) in front of a
   `network.bridge.station_fabric.StationFabric` subscribed to every station;
4. one node agent per QNU (`network.node_agent.run_node_agents`): a single-link node per
   station, following its heralds and holding the pairs' halves, agreed on with the
   orchestrator as on the single link (`network.bridge.qnu_nodes`);

then runs the workload's DAG as an application would (`run_workload`: each remote operation
a `BridgeClient` request once its predecessors are done), and stops every process it started
(also on Ctrl-C, SIGTERM or an error). Keys are made for the run in its folder, unless the
config gives ``orchestrator.telemetry_address``: then the orchestrator publishes its timeline
there and every process takes its keys from ``bridge.key_dir`` (`qnetlab keys CONFIG`), so
`qnetlab monitor CONFIG` can watch the run, started before it or after. The config's other
addresses are for `--role` (across hosts) and are not used here. The summary says which
fabric ran (``"simulated": false``) and what the stations heralded. The world's station twins
write their ground truth in the run folder, and the delivered pairs are joined to it after
the run (`bridge_truth`: per QNU pair the genuine fraction and the mean true fidelity, shown
as the simulation's ground truth and written to ``ground_truth.json``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WORLD_READY_TIMEOUT_S = 120.0
"""s for the world's twins to listen (building benches compiles the simulator: seconds on
an idle host, several times that on a loaded one)."""
WORLD_BIND_ATTEMPTS = 3
"""Starts of the world on fresh ports when a port was taken between the choice and the
bind (another run on this host)."""
STATIONS_READY_TIMEOUT_S = 120.0
"""s for every station to open its lab and stream (a lab opens in seconds)."""
SNSPD_BIAS_A = 10e-6
"""A: the station SNSPDs' bias (no station calibration runs here; on the efficiency plateau
of the twins' detectors, as tests/test_station_process.py sets them)."""
ORCHESTRATOR = "bridge_orchestrator"
"""The orchestrator's process and key name (`bridge_config.ORCHESTRATOR_KEY`)."""
APPLICATION = "app"
"""The workload application's key name (`bridge_config.APPLICATION_KEY`)."""


def serve_bridge_world(plan: Any, ready_file: Path, stop: Any) -> None:
    """Serve the bridge world's benches on their ports until `stop` (a `ProcessGroup`
    target); ``ready_file`` is written once every port listens."""
    from qnetlab.sim_instruments.bridge_world import build_bridge_world
    from qnetlab.sim_instruments.server import BenchServer

    from ._serve import serve_zmq_twins

    world = build_bridge_world(plan)
    servers: list[Any] = []
    twins: dict[str, Any] = {}
    threads: list[threading.Thread] = []
    relay: Any = None
    try:
        for name, bench in world.benches().items():
            server = BenchServer(bench)
            servers.append(server)
            twins.update({f"{name}.{k}": v for k, v in serve_zmq_twins(bench, None).items()})
            thread = threading.Thread(target=server.serve_forever, name=f"{name}-scpi",
                                      daemon=True)
            thread.start()
            threads.append(thread)
        if plan.relay is not None and not plan.relay[0].startswith("127."):
            # across hosts: the twins on the world host's address (on loopback they are)
            from qnetlab.sim_instruments.tcp_relay import TcpRelay

            relay = TcpRelay(*plan.relay)
            relay.start()
        partial = ready_file.with_suffix(".partial")
        partial.write_text(json.dumps({"pid": os.getpid()}))
        partial.replace(ready_file)
        while not stop and all(t.is_alive() for t in threads):
            threads[0].join(0.2)  # the flag is set by a signal: nothing to wait on but time
    finally:
        if relay is not None:
            relay.close()
        for server in servers:
            server.stop()
        for thread in threads:
            thread.join(5.0)
        for twin in twins.values():
            twin.close()
        for server in servers:
            server.close()


# -- the workload as an application runs it -------------------------------------------------

@dataclass
class WorkloadOutcome:
    """What the workload got from the orchestrator (wall s from its start)."""

    makespan: float = math.nan
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """Operation -> the ERR (code: reason) or why it never ran."""
    latencies: list[float] = field(default_factory=list)
    """s from each remote operation's request to its outcome."""
    fidelities: list[float] = field(default_factory=list)
    """Delivered pairs' fidelities (the path's link model at delivery)."""
    stations: dict[str, int] = field(default_factory=dict)
    """Remote operations served per station."""
    delivered: dict[str, tuple[tuple[str, str], int]] = field(default_factory=dict)
    """The orchestrator's request id (``client/id``) -> (its QNUs, pairs delivered: one
    for a state transfer), for each delivered request."""
    timed_out: bool = False


def run_workload(client: Any, workload: Any, timeout: float) -> WorkloadOutcome:
    """Run `workload`'s DAG through `client` (a `BridgeClient`): each operation once its
    predecessors are done and its release has passed; a remote one as a request (its
    deadline relative to when it is ready), its local duration after the outcome. An ERR
    fails the operation and its successors never run. Stops after `timeout` wall s."""
    from qnetlab.network.bridge.wire import Delivered, Err, Transferred

    out = WorkloadOutcome()
    start = time.monotonic()
    done: set[str] = set()
    finishing: dict[str, float] = {}
    asked: dict[str, tuple[Any, float]] = {}
    started: set[str] = set()
    blocked: set[str] = set()
    ops = {op.id: op for op in workload.operations}
    while len(done) + len(blocked) < len(ops):
        now = time.monotonic() - start
        if now > timeout:
            out.timed_out = True
            break
        for op in workload.operations:
            if op.id in started or op.id in blocked:
                continue
            if any(p in blocked for p in op.after):
                blocked.add(op.id)
                out.failed[op.id] = "never ran: a predecessor failed"
            elif all(p in done for p in op.after) and now >= op.release:
                started.add(op.id)
                if not op.remote:
                    finishing[op.id] = now + op.duration
                elif op.kind == "transfer":
                    asked[op.id] = (client.request_transfer(
                        op.qnus[0], op.qnus[1], "+", op.min_fidelity, op.deadline), now)
                else:
                    asked[op.id] = (client.request_pairs(
                        op.qnus[0], op.qnus[1], op.pairs, op.min_fidelity, op.deadline), now)
        due = min(finishing.values(), default=now + 0.05)
        client.poll(max(0.0, min(0.05, due - now)))
        now = time.monotonic() - start
        for op_id, (handle, since) in list(asked.items()):
            outcome = handle.outcome
            if outcome is None:
                continue
            del asked[op_id]
            out.latencies.append(now - since)
            if isinstance(outcome, Err):
                blocked.add(op_id)
                out.failed[op_id] = f"ERR {outcome.code}: {outcome.reason}"
                continue
            qnus = (ops[op_id].qnus[0], ops[op_id].qnus[1])
            key = f"{getattr(client, 'name', APPLICATION)}/{handle.request_id}"
            if isinstance(outcome, Delivered):
                out.fidelities.extend(outcome.fidelities)
                out.delivered[key] = (qnus, len(outcome.fidelities))
            elif isinstance(outcome, Transferred):
                out.fidelities.append(outcome.pair_fidelity)
                out.delivered[key] = (qnus, 1)
            station = getattr(outcome, "station", "")
            out.stations[station] = out.stations.get(station, 0) + 1
            finishing[op_id] = now + ops[op_id].duration
        for op_id, at in list(finishing.items()):
            if at <= now:
                del finishing[op_id]
                done.add(op_id)
                out.done.append(op_id)
    if not out.timed_out:
        out.makespan = time.monotonic() - start
    return out


# -- the processes ---------------------------------------------------------------------------

def station_windows(config: Any, station: str) -> Any:
    """The station engine's windows at its start: every arm at the mean of its paths' arm
    delays (the config's seeds). The orchestrator moves them to the stored arm delays of the
    paths each assignment switches in before a herald counts (`network.bridge.arm_setup`)."""
    from qnetlab.network.herald_engine import HeraldWindows
    from qnetlab.sim_instruments.bridge_world import DETECTOR_INPUTS, SYNC_INPUT

    p = config.link
    delays = {q: config.arm_delay(q, station) for q in config.qnus}
    centre = round(sum(delays.values()) / len(delays) * 1e12)
    rounds = 2 if p.scheme == "two_click" else 1
    return HeraldWindows(p.scheme, SYNC_INPUT, DETECTOR_INPUTS, ((centre, centre),
                         (centre, centre)), round(p.detection_window * 1e12),
                         round(p.attempt_period * 1e12) // rounds)


def _wait_for(path: Path, group: Any, name: str, timeout: float, what: str) -> None:
    """Wait until `path` exists; ConfigError naming the process if it stops or times out."""
    from qnetlab.instruments.errors import ConfigError
    from qnetlab.network import read_faults

    deadline = time.monotonic() + timeout
    while not path.exists():
        code = group.join(name, 0.05)
        if code is not None:
            faults = [f for f in read_faults(path.parent) if f.get("process") == name]
            why = faults[0].get("message", "") if faults else f"exit code {code}"
            raise ConfigError(name, "", f"{what} stopped before it was ready: {why}",
                              f"see {path.parent}")
        if time.monotonic() > deadline:
            raise ConfigError(name, "", f"{what} not ready within {timeout:g} s",
                              "the host may be overloaded: retry, or stop other work")


def _wait_streaming(links: list[Any], key_dir: Path, group: Any, timeout: float,
                    run_dir: Path) -> None:
    """Wait until every station's tagger streams (an AttemptStats with attempts on its PUB),
    checked like any frame off the wire; `group` runs the stations (None: they run on other
    hosts, and only the deadline ends the wait)."""
    import zmq

    from qnetlab.instruments.errors import ConfigError
    from qnetlab.network.keys import make_curve_client
    from qnetlab.network.messages import AttemptStats, Decoder, limit_frame_size

    context = zmq.Context()
    decoder = Decoder()
    waiting: dict[Any, str] = {}
    try:
        for link in links:
            sub = context.socket(zmq.SUB)
            sub.linger = 0
            limit_frame_size(sub)
            make_curve_client(sub, key_dir, APPLICATION, link.station)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(link.herald_address)
            waiting[sub] = link.station
        deadline = time.monotonic() + timeout
        while waiting:
            for sub, station in list(waiting.items()):
                if group is not None and group.exitcode(station) is not None:
                    fault = run_dir / f"{station}_fault.json"
                    raise ConfigError(station, "", "the heralding station stopped before its "
                                      "tagger streamed", f"see {fault}")
                while sub.poll(20):
                    message = decoder.decode(sub.recv())
                    if isinstance(message, AttemptStats) and message.attempts > 0:
                        del waiting[sub]
                        break
            if waiting and time.monotonic() > deadline:
                raise ConfigError(", ".join(waiting.values()), "", "no tags from these "
                                  f"stations' taggers within {timeout:g} s",
                                  "the host may be overloaded: retry")
    finally:
        for sub in list(waiting):
            sub.close(0)
        context.destroy(0)


def start_stations(group: Any, config: Any, plan: Any, run_dir: Path, key_dir: Path,
                   epoch_ns: int, max_seconds: float) -> list[Any]:
    """One heralding-station process per station (its lab on the world's ports, real
    profile); their `StationLink`s."""
    from qnetlab.network.bridge.station_fabric import StationLink
    from qnetlab.network.heralding_station import run_station
    from qnetlab.sim_instruments.ports import free_port_run

    links = []
    for station in config.stations:
        port = free_port_run(2)
        settings = station_settings(config, plan, station, (f"tcp://127.0.0.1:{port}",
                                    f"tcp://127.0.0.1:{port + 1}"), key_dir, run_dir,
                                    epoch_ns, max_seconds)
        group.start(station, run_station, settings, None, report_to=run_dir)
        links.append(StationLink(station, settings.herald_address, settings.link_id,
                                 epoch_ns, settings.request_address))
    return links


NODES_READY_TIMEOUT_S = 60.0
"""s for every QNU's node agent to hear its stations and the orchestrator to hear it."""
VERDICTS_TIMEOUT_S = 30.0
"""s the nodes are given, after the workload, to log the verdicts on the pairs they hold."""
NODE_HEARTBEAT_S = 0.25
NODE_CLOCK_S = 0.5
"""s between a bridge node's heartbeats and its clock exchanges: 8 QNUs' agents share the
host's 2 cores with the world and the stations, and a pair waits for the orchestrator's
verdict anyway (the single link's nodes use 0.05 s for both, to resynchronise quickly)."""


def qnu_node_settings(config: Any, qnu: str, links: list[Any], orchestrator_address: str,
                      key_dir: Path, run_dir: Path, max_seconds: float) -> tuple[Any, ...]:
    """`network.node_state.NodeSettings` of `qnu`'s nodes, one per station (`links`): its
    files in ``run_dir/nodes/<station>``, its sender id the path's (`qnu_nodes.node_ids`),
    its goodness and pair rate the best the station's link model gives it; station time
    read from the station's epoch where it runs on this host (`StationLink.epoch_ns`), else
    from clock exchanges."""
    from qnetlab.network.bridge.qnu_nodes import node_ids
    from qnetlab.network.node_state import NodeSettings

    from .bridge_agreement import NODES_DIR

    topology = config.topology()
    ids = node_ids(list(config.qnus), [link.station for link in links])
    out = []
    for link in links:
        paths = [topology.path_link(qnu, other, link.station) for other in config.qnus
                 if other != qnu]
        out.append(NodeSettings(
            name=qnu, node_id=ids[(qnu, link.station)], link_id=link.link_id,
            station_name=link.station, herald_address=link.herald_address,
            request_address=link.request_address, orchestrator_name=ORCHESTRATOR,
            orchestrator_address=orchestrator_address, key_dir=key_dir,
            run_dir=run_dir / NODES_DIR / link.station, memory_cutoff=config.memory_cutoff,
            goodness=max(p.fidelity for p in paths), expected_pair_rate=max(p.rate for p in paths),
            epoch_ns=link.epoch_ns, max_seconds=max_seconds, receive="poller",
            heartbeat_period=NODE_HEARTBEAT_S, clock_period=NODE_CLOCK_S))
    return tuple(out)


def _wait_for_qnus(run_dir: Path, qnus: tuple[str, ...], group: Any, timeout: float) -> None:
    """Wait until the orchestrator has heard every node of `qnus` (its ``_nodes.json``);
    ConfigError naming the QNUs not heard (or the orchestrator, if it stopped)."""
    from qnetlab.instruments.errors import ConfigError

    heard_file = run_dir / f"{ORCHESTRATOR}_nodes.json"
    deadline = time.monotonic() + timeout
    while True:
        heard: set[str] = set()
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            heard = set(json.loads(heard_file.read_text())["qnus_heard"])
        missing = [q for q in qnus if q not in heard]
        if not missing:
            return
        if group.join(ORCHESTRATOR, 0.05) is not None:
            raise ConfigError(ORCHESTRATOR, "", "the orchestrator stopped before it heard "
                              "the QNUs' node agents", f"see {run_dir}")
        if time.monotonic() > deadline:
            from qnetlab.network import read_faults

            from .bridge_agreement import NODES_DIR

            faults = [f.get("message", "") for folder in sorted((run_dir / NODES_DIR).glob("*"))
                      for f in read_faults(folder) if f.get("process") in missing]
            raise ConfigError(", ".join(missing), "", "the orchestrator has not heard these "
                              f"QNUs' node agents within {timeout:g} s"
                              + (f": {faults[0]}" if faults else ""), "start `--role QNU`"
                              " for each (across hosts), check its log and keys; or the host "
                              "is overloaded: retry")


def start_qnu_agents(group: Any, config: Any, links: list[Any], orchestrator_address: str,
                     key_dir: Path, run_dir: Path, max_seconds: float) -> None:
    """One node agent process per QNU of the bridge (named after it)."""
    from qnetlab.network.node_agent import run_node_agents

    for qnu in config.qnus:
        group.start(qnu, run_node_agents, qnu_node_settings(
            config, qnu, links, orchestrator_address, key_dir, run_dir, max_seconds),
            report_to=run_dir)


def station_settings(config: Any, plan: Any, station: str, addresses: tuple[str, str],
                     key_dir: Path, run_dir: Path, epoch_ns: int, max_seconds: float) -> Any:
    """`network.heralding_station.StationSettings` of `station`: its lab as the world
    serves it to this host (`BridgeWorldPlan.reached`, real profile), its (herald, request)
    addresses, link id its place in the config (from 1)."""
    from qnetlab.network.heralding_station import StationSettings, TaggerSource
    from qnetlab.sim_instruments.bridge_world import TAGGER

    bias = {f"snspd.ch{n}.bias_current": SNSPD_BIAS_A for n in (1, 2)}
    source = TaggerSource(lab=plan.reached(station), windows=station_windows(config, station),
                          attempt_period_s=config.link.attempt_period, profile="real",
                          tagger=TAGGER, settings=bias,
                          recording_s=min(max_seconds + 60.0, 1000.0))
    return StationSettings(
        name=station, link_id=list(config.stations).index(station) + 1,
        herald_address=addresses[0], request_address=addresses[1], key_dir=key_dir,
        run_dir=run_dir, epoch_ns=epoch_ns, max_seconds=max_seconds, source=source)


@dataclass
class StationsRun:
    """One `qnetlab bridge --stations` run."""

    run_dir: Path
    outcome: WorkloadOutcome
    summary: dict[str, Any]
    """The orchestrator's summary file (fabric, counters, the stations' heralds)."""
    stopped_early: dict[str, str] = field(default_factory=dict)
    """Process -> how it ended, for each that stopped before the workload was over (its
    fault file in the run folder says why)."""
    truth: Any = None
    """The delivered pairs' simulation ground truth (`bridge_truth.BridgeTruth`), or None
    (across hosts: joined after the run by ``qnetlab bridge CONFIG --truth RUN_DIR``)."""
    agreement: Any = None
    """What the QNUs' node agents logged of the pairs (`bridge_agreement.NodeAgreement`),
    or None (across hosts: each QNU's host keeps its own logs)."""


def run_with_stations(config: Any, workload: Any, *, seed: int = 1, timeout: float = 60.0,
                      run_dir: Path | None = None) -> StationsRun:
    """Start the world, the stations and the orchestrator, run `workload` (at most
    `timeout` wall s), stop them all (also on Ctrl-C, SIGTERM or an error)."""
    from qnetlab.network import ProcessGroup, sigterm_as_interrupt
    from qnetlab.network.keys import generate_lab_keys

    from .bridge_agreement import wait_for_verdicts

    run_dir = run_dir or config.run_dir / f"stations-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    telemetry = config.orchestrator_telemetry_address
    # With a telemetry address the monitor subscribes with the config's keys: check them
    # before the run folder is made.
    key_dir = config_keys(config) if telemetry is not None else run_dir / "keys"
    run_dir.mkdir(parents=True, exist_ok=True)
    if telemetry is None:
        generate_lab_keys(key_dir, [ORCHESTRATOR, APPLICATION, *config.stations, *config.qnus])
    limit = timeout + 30.0  # every process stops by itself after this
    try:
        with sigterm_as_interrupt(), ProcessGroup() as world, ProcessGroup() as group:
            plan = _start_world(world, config, run_dir, seed)
            switch_lab = plan.switch_lab.to_yaml(run_dir / "switch_lab.yaml").path
            epoch_ns = time.monotonic_ns()
            links = start_stations(group, config, plan, run_dir, key_dir, epoch_ns, limit)
            _wait_streaming(links, key_dir, group, STATIONS_READY_TIMEOUT_S, run_dir)
            agreed: list[Any] = []
            # The nodes log the last verdicts while the orchestrator still answers an OK
            # that came after its request ended.
            outcome, stopped = orchestrate(
                (world, group), config, workload, links, key_dir, switch_lab, run_dir,
                seed=seed, limit=limit, timeout=timeout, telemetry_address=telemetry,
                before_stop=lambda: agreed.append(wait_for_verdicts(
                    run_dir, list(config.stations), list(config.qnus), VERDICTS_TIMEOUT_S)))
            agreement = agreed[0] if agreed else None
    except KeyboardInterrupt as exc:  # every process has stopped: say where the files are
        exc.add_note(f"bridge: every process stopped; run folder {run_dir}")
        raise
    from .bridge_truth import join_bridge_truth, write_truth

    truth = join_bridge_truth(run_dir, config.stations, outcome.delivered)
    if truth is not None:
        write_truth(truth, run_dir)
    return StationsRun(run_dir, outcome, read_summary(run_dir), stopped, truth, agreement)


def _start_world(group: Any, config: Any, run_dir: Path, seed: int) -> Any:
    """Start the bridge world (the simulation: its station twins write their truth in the
    run folder) as process ``bridge_world`` of `group`, on free loopback ports, and return
    its plan once it serves; on other ports if one was taken between the choice and the
    bind (another run on this host)."""
    from qnetlab.instruments.errors import ConfigError
    from qnetlab.sim_instruments.bridge_world import plan_bridge_world

    ready = run_dir / "bridge_world_ready.json"
    for attempt in range(WORLD_BIND_ATTEMPTS):
        plan = plan_bridge_world(config, run_dir / "world", seed, truth_dir=run_dir)
        group.start("bridge_world", serve_bridge_world, plan, ready, report_to=run_dir)
        try:
            _wait_for(ready, group, "bridge_world", WORLD_READY_TIMEOUT_S,
                      "the bridge world's twins")
        except ConfigError as exc:
            if "cannot listen" not in str(exc) or attempt + 1 == WORLD_BIND_ATTEMPTS:
                raise
            with contextlib.suppress(FileNotFoundError):
                (run_dir / "bridge_world_fault.json").unlink()
            continue
        return plan
    raise AssertionError("unreachable")


def config_keys(config: Any) -> Path:
    """``bridge.key_dir`` of a config that gives the orchestrator's telemetry address: every
    process of a one-host run takes its keys from there (`qnetlab keys CONFIG`), so that
    `qnetlab monitor CONFIG` (the key ``monitor``) can watch it. LabKeyError naming the file
    and the fix when a key is missing."""
    from qnetlab.network.keys import LabKeyError, check_lab_keys, load_public_key

    try:
        check_lab_keys(config.key_dir, [ORCHESTRATOR, APPLICATION, *config.stations,
                                        *config.qnus])
        load_public_key(config.key_dir, "monitor")
    except LabKeyError as exc:
        raise exc.for_config(config.path) from None
    return Path(config.key_dir)


def read_summary(run_dir: Path) -> dict[str, Any]:
    """The orchestrator's summary file ({} when it wrote none)."""
    summary: dict[str, Any] = {}
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        summary = json.loads((run_dir / f"{ORCHESTRATOR}_summary.json").read_text())
    return summary


def orchestrate(groups: tuple[Any, ...], config: Any, workload: Any, links: list[Any],
                key_dir: Path, switch_lab: Path, run_dir: Path, *, seed: int, limit: float,
                timeout: float, address: str | None = None,
                telemetry_address: str | None = None, start_nodes: bool = True,
                nodes_timeout: float = NODES_READY_TIMEOUT_S,
                before_stop: Callable[[], object] | None = None
                ) -> tuple[WorkloadOutcome, dict[str, str]]:
    """Start the orchestrator in the last of `groups` (the switch of `switch_lab` in its
    loop, the heralds of the stations `links` name) and, with `start_nodes`, every QNU's
    node agent (else they run on their own hosts); once it has heard the nodes of the
    workload's QNUs (at most `nodes_timeout` s), run `workload` through it as the
    application (at most `timeout` wall s), call `before_stop`, stop it (it writes its
    summary). (The outcome, process -> how it ended for each of `groups`' processes that
    stopped early.)"""
    from qnetlab.network.bridge import BridgeClient, BridgeServiceSettings, run_bridge_orchestrator
    from qnetlab.network.bridge.station_fabric import StationFabricSettings
    from qnetlab.sim_instruments.bridge_world import SWITCH_LAG_S

    group = groups[-1]
    settings = BridgeServiceSettings.from_config(
        config, key_dir, profile="real", switch_lab=switch_lab, run_dir=run_dir, seed=seed,
        max_seconds=limit, clients=(APPLICATION,), telemetry_address=telemetry_address,
        stations=StationFabricSettings(tuple(links), key_dir, ORCHESTRATOR,
                                       guard_s=SWITCH_LAG_S, node_agents=True),
        **({"address": address} if address is not None else {}))
    group.start(ORCHESTRATOR, run_bridge_orchestrator, settings, report_to=run_dir)
    # Which pid is which process (for a person, and for the test that all are stopped).
    (run_dir / "processes.json").write_text(json.dumps(
        {name: g.pid(name) for g in groups for name in g.names}, indent=1))
    ready = run_dir / f"{ORCHESTRATOR}_ready.json"
    _wait_for(ready, group, ORCHESTRATOR, WORLD_READY_TIMEOUT_S, "the orchestrator")
    bound = json.loads(ready.read_text())["address"]
    if start_nodes:
        start_qnu_agents(group, config, links, bound, key_dir, run_dir, limit)
        (run_dir / "processes.json").write_text(json.dumps(
            {name: g.pid(name) for g in groups for name in g.names}, indent=1))
    _wait_for_qnus(run_dir, workload.qnus, group, nodes_timeout)
    with BridgeClient(bound, key_dir, APPLICATION, ORCHESTRATOR) as client:
        outcome = run_workload(client, workload, timeout)
    stopped = {name: f"exit code {g.exitcode(name)}" for g in groups
               for name in g.names if g.exitcode(name) is not None}
    if before_stop is not None:
        before_stop()
    group.terminate(ORCHESTRATOR)  # writes its summary on the way out
    return outcome, stopped


def stations_text(config: Any, workload: Any, run: StationsRun) -> str:
    """What the terminal shows of a `--stations` run."""
    from ._format import format_value

    o, s = run.outcome, run.summary
    counters = s.get("counters", {})
    heralds = (s.get("stations") or {}).get("counters", {})
    latency = (s.get("stations") or {}).get("latency_s") or {}
    lines = [
        f"bridge {config.name}: workload {workload.name} through heralding-station processes "
        f"reading their time taggers behind the switch (fabric: {s.get('fabric', '?')}; "
        f"simulated: {s.get('simulated')}; real time)",
        f"  operations done {len(o.done)} of {len(workload.operations)}"
        + (f", failed {len(o.failed)}" if o.failed else "")
        + (" (timed out)" if o.timed_out else "")
        + (f"; makespan {format_value(float(f'{o.makespan:.3g}'), 's')}"
           if math.isfinite(o.makespan) else ""),
        f"  requests delivered {counters.get('delivered', 0)}; heralds taken "
        f"{counters.get('heralds', 0)}, expired {counters.get('pairs_expired', 0)}; "
        f"switch reconfigurations via the Polatis twin: {counters.get('decision_reconfigure', 0)}",
        "  station heralds: " + ", ".join(f"{k} {v}" for k, v in sorted(heralds.items())),
    ]
    if latency:
        median, worst = (format_value(float(f"{latency[k]:.3g}"), "s") for k in ("p50", "max"))
        lines.append(f"  herald latency station -> orchestrator: median {median}, max {worst}")
    rechecks = s.get("rechecks") or {}
    if rechecks.get("done"):
        learned = rechecks.get("cost_learned_s")
        lines.append(
            f"  stale paths re-checked: {rechecks['done']}, {rechecks.get('measured', 0)} "
            "measured by the stations' taggers"
            + (f"; a re-check cost {format_value(float(f'{learned:.3g}'), 's')} per path "
               f"(planned at first: {format_value(rechecks.get('cost_configured_s'), 's')})"
               if learned is not None else ""))
    watched = config.orchestrator_telemetry_address
    if watched is not None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            bound = json.loads((run.run_dir / f"{ORCHESTRATOR}_ready.json").read_text()
                               ).get("telemetry")
            lines.append(f"  timeline for `qnetlab monitor`: {bound}" if bound else
                         f"  timeline for `qnetlab monitor`: off ({watched} could not be "
                         f"bound here: see {ORCHESTRATOR}_decisions.jsonl)")
    if run.agreement is not None:
        lines.append(run.agreement.line(_pairs_given(run.outcome)))
    if run.truth is not None:
        from .bridge_truth import truth_lines

        lines += truth_lines(run.truth)
    for op_id, why in o.failed.items():
        lines.append(f"  {op_id}: {why}")
    for name, how in run.stopped_early.items():
        lines.append(f"  process {name} stopped early ({how}): see {name}_fault.json")
    lines.append(f"  run files: {run.run_dir}")
    return "\n".join(lines)


def _pairs_given(outcome: WorkloadOutcome) -> int:
    """The pairs the application was given (a state transfer's: one)."""
    return sum(pairs for _, pairs in outcome.delivered.values())


def stations_ok(workload: Any, run: StationsRun) -> bool:
    """Every operation done in time, every process still running at the end, and (where
    their logs are here) both QNUs holding as delivered every pair the orchestrator
    delivered, and no other."""
    agreed = run.agreement is None or (
        run.agreement.agree and run.agreement.delivered == _pairs_given(run.outcome))
    return (not run.outcome.timed_out and not run.outcome.failed and not run.stopped_early
            and len(run.outcome.done) == len(workload.operations) and agreed)


__all__ = ["StationsRun", "WorkloadOutcome", "run_with_stations", "run_workload",
           "serve_bridge_world", "stations_ok", "stations_text"]
