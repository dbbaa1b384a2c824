"""One link's processes planned from a `NetworkConfig`, started, and their files read back.

`require_keys` and `check_ports` refuse a lab that cannot start (a key that does not match
its secret, two processes with one key, an address in use) before anything starts;
`plan_lab` turns the config into the settings each process gets; `start_lab` starts the
station, the node agents and the orchestrator in a `ProcessGroup` (their pids in
``<run_dir>/processes.json``); `supervise` waits for the run, stopping at the first fault a
process reports (`network._faults`) with a `ConfigError` naming the process, the peer and the
key file or address, and names every process that stopped early; `read_report` gathers what
they wrote in the run directory into a `LinkReport` (delivered pairs, rates, latency, every
error counted: what a real bench knows, nothing true), from the nodes' own pair logs when the
orchestrator left no result.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qnetlab.instruments.errors import ConfigError

from ._faults import describe_exit, read_faults
from ._proc import ProcessGroup
from .heralding_station import (
    SEND_DTYPE,
    HeraldSourceFactory,
    StationFaults,
    StationSettings,
    TaggerSource,
    run_station,
)
from .keys import CONFIG, LabKeyError, check_lab_keys, load_public_key
from .messages import HERALD_DTYPE
from .network_config import NetworkConfig
from .node_agent import LATENCY_DTYPE, PAIR_LOG_DTYPE, NodeSettings, run_node_agent
from .orchestrator import OrchestratorSettings, run_orchestrator

if TYPE_CHECKING:
    from .herald_engine import HeraldWindows


@dataclass(frozen=True)
class LabPlan:
    station: StationSettings
    nodes: dict[str, NodeSettings]
    orchestrator: OrchestratorSettings

    @property
    def run_dir(self) -> Path:
        return self.station.run_dir


def require_keys(config: NetworkConfig) -> None:
    """Raise `LabKeyError` (a `ConfigError`, naming the file and the fix with the config's
    path) unless every process's keys are in the config's key directory, each public key
    file holds the public half of its owner's secret, and no two hold the same key."""
    try:
        check_lab_keys(config.key_dir, config.key_names())
    except LabKeyError as exc:
        raise exc.for_config(config.path) from None


def role_names(config: NetworkConfig) -> list[str]:
    """The link's processes by the names the config gives them, each a ``--role`` of
    ``qnetlab link``: the station, the link's nodes, the orchestrator."""
    return [config.station.name, *config.link.nodes, config.orchestrator.name]


def require_role_keys(config: NetworkConfig, role: str) -> None:
    """`require_keys` for one process on its own host: its own key pair (its secret key is
    only on its host), and every process's public key (each host holds them all)."""
    try:
        check_lab_keys(config.key_dir, [role])
        for name in config.key_names():
            load_public_key(config.key_dir, name)
    except LabKeyError as exc:
        raise exc.for_config(config.path) from None


def bound_addresses(config: NetworkConfig, role: str | None = None) -> dict[str, str]:
    """Config entry -> tcp address of every socket the link's processes bind; with `role`
    (a name of `role_names`), only that process's, its telemetry PUB included (the one
    address that tells a node agent started on the wrong host)."""
    if role is None:
        return {"station.herald_address": config.station.herald_address,
                "station.request_address": config.station.request_address,
                "orchestrator.address": config.orchestrator.address}
    if role not in role_names(config):
        raise config.error("", f"no process '{role}' in this link",
                           f"name one of: {', '.join(role_names(config))}")
    if role == config.station.name:
        found = {"station.herald_address": config.station.herald_address,
                 "station.request_address": config.station.request_address,
                 "station.telemetry_address": config.station.telemetry_address}
    elif role == config.orchestrator.name:
        found = {"orchestrator.address": config.orchestrator.address,
                 "orchestrator.telemetry_address": config.orchestrator.telemetry_address}
    else:
        found = {f"nodes.{role}.telemetry_address": config.nodes[role].telemetry_address}
    return {entry: address for entry, address in found.items() if address is not None}


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    return host.strip("[]"), int(port)


def check_ports(config: NetworkConfig, role: str | None = None) -> None:
    """Raise `ConfigError` naming the entry and the address unless every address the link
    (with `role`, that one process) binds can be bound on this host now: a test bind, with
    SO_REUSEADDR as libzmq binds (so a port left in TIME_WAIT by the last run is not taken
    for one in use)."""
    for entry, address in bound_addresses(config, role).items():
        host, port = _split(address)
        try:
            family, kind, proto, _, sockaddr = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM)[0]
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(sockaddr)
        except socket.gaierror as exc:
            raise config.error(entry, f"cannot resolve the host of {address} ({exc})",
                               "write an IP address of this host, e.g. 127.0.0.1") from None
        except OSError as exc:
            raise _bind_error(config, entry, address, exc.errno) from None


def _bind_error(config: NetworkConfig, entry: str, address: str,
                code: int | None) -> ConfigError:
    port = _split(address)[1]
    if code == errno.EADDRNOTAVAIL:
        return config.error(entry, f"{address} is not an address of this host",
                            "`qnetlab link` runs every process on this host: write 127.0.0.1 "
                            "or one of this host's addresses; across hosts, start each "
                            "process on the host that owns its addresses (`qnetlab link "
                            "CONFIG --role NAME`)")
    return config.error(entry, f"{address} is in use by another process",
                        f"stop what listens there (`ss -ltnp 'sport = :{port}'` shows it), or "
                        f"give {entry} a free port")


def plan_lab(config: NetworkConfig, *, pairs: int, run_dir: Path, epoch_ns: int,
             goodness: float, expected_pair_rate: float, curve: bool = True,
             faults: StationFaults | None = None, max_seconds: float | None = None,
             same_host: bool = True, windows: HeraldWindows | None = None,
             profile: str = "sim", simulation: Mapping[str, Any] | None = None,
             station_settings: Mapping[str, float] | None = None) -> LabPlan:
    """Settings of every process. `curve=False` only for the benchmark's comparison;
    `same_host=False` makes the nodes read station time from their clock exchanges alone.

    With `windows` (the herald engine's, from the link calibrations: `herald_windows`) the
    station's herald source is its lab's tagger (`TaggerSource`): the lab
    ``config.station.lab`` loaded for `profile`, with `simulation` (the
    ``qnetlab.simulation.link`` mapping, sim profile) if given, its calibrated values applied
    and then `station_settings` (``instrument[.channel].parameter`` -> value, e.g. the SNSPD
    biases of a benchmark that runs no calibration). Without `windows`, `start_lab` must be
    given a source (the tests' and benchmarks' test signals)."""
    key_dir = config.key_dir if curve else None
    link = config.link
    source = None
    if windows is not None:
        source = TaggerSource(
            lab=config.station.lab, windows=windows, attempt_period_s=link.attempt_period,
            profile=profile, tagger=config.station.tagger,
            simulation=dict(simulation) if simulation is not None else None,
            settings=dict(station_settings) if station_settings is not None else None,
            recording_s=min(max_seconds + 60.0, 1000.0) if max_seconds is not None
            else 1000.0)
    station = StationSettings(
        name=config.station.name, link_id=link.id,
        herald_address=config.station.herald_address,
        request_address=config.station.request_address, key_dir=key_dir, run_dir=run_dir,
        epoch_ns=epoch_ns, heartbeat_period=config.heartbeat_period,
        stats_period=config.stats_period, history=config.station.history,
        faults=faults or StationFaults(), max_seconds=max_seconds, source=source,
        telemetry_address=config.station.telemetry_address)
    node_ids = {name: i + 1 for i, name in enumerate(config.nodes)}
    nodes = {
        name: NodeSettings(
            name=name, node_id=node_ids[name], link_id=link.id,
            station_name=config.station.name,
            herald_address=config.station.herald_address,
            request_address=config.station.request_address,
            orchestrator_name=config.orchestrator.name,
            orchestrator_address=config.orchestrator.address, key_dir=key_dir,
            run_dir=run_dir, memory_cutoff=config.nodes[name].memory_cutoff,
            goodness=goodness, expected_pair_rate=expected_pair_rate,
            epoch_ns=epoch_ns if same_host else None,
            heartbeat_period=config.heartbeat_period,
            heartbeat_misses=config.heartbeat_misses, clock_period=config.clock_period,
            resend_timeout=config.resend_timeout, resend_attempts=config.resend_attempts,
            max_seconds=max_seconds, telemetry_address=config.nodes[name].telemetry_address,
            link_nodes=link.nodes)
        for name in link.nodes
    }
    orchestrator = OrchestratorSettings(
        name=config.orchestrator.name, address=config.orchestrator.address, key_dir=key_dir,
        run_dir=run_dir, link_id=link.id, nodes=link.nodes,
        node_ids=(node_ids[link.nodes[0]], node_ids[link.nodes[1]]), pairs=pairs,
        epoch_ns=epoch_ns, max_time=config.orchestrator.max_time,
        reconcile_timeout=config.orchestrator.reconcile_timeout,
        heartbeat_period=config.heartbeat_period, heartbeat_misses=config.heartbeat_misses,
        max_seconds=max_seconds, telemetry_address=config.orchestrator.telemetry_address)
    return LabPlan(station, nodes, orchestrator)


def start_lab(group: ProcessGroup, plan: LabPlan,
              source_factory: HeraldSourceFactory | None = None, *,
              orchestrator: bool = True) -> None:
    """Start the station (with `source_factory`'s heralds, else its tagger's: the plan's
    `TaggerSource`), the node agents and (unless told not to) the orchestrator, each as its
    own process, named as in the config."""
    run_dir = plan.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    group.start(plan.station.name, run_station, plan.station, source_factory,
                report_to=run_dir)
    for name, settings in plan.nodes.items():
        group.start(name, run_node_agent, settings, report_to=run_dir)
    if orchestrator:
        group.start(plan.orchestrator.name, run_orchestrator, plan.orchestrator,
                    report_to=run_dir)
    # Which pid is which process (for a person, and for the fault tests that kill one).
    (run_dir / "processes.json").write_text(json.dumps(
        {name: group.pid(name) for name in group.names}, indent=1))


def start_role(group: ProcessGroup, plan: LabPlan, role: str,
               source_factory: HeraldSourceFactory | None = None) -> None:
    """Start the one process `role` (a name of `role_names`) of `plan` in `group`, as
    `start_lab` starts it, for a launcher that runs each process on its own host (``qnetlab
    link CONFIG --role NAME``). Which pid it is (and its launcher's), and its clock's zero
    on this host's monotonic clock (ns; none for a node agent: it reads station time from
    its clock exchanges), in ``<run_dir>/<role>_process.json``: several roles may share a
    folder."""
    run_dir = plan.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    epoch_ns: int | None = None
    if role == plan.station.name:
        group.start(role, run_station, plan.station, source_factory, report_to=run_dir)
        epoch_ns = plan.station.epoch_ns
    elif role == plan.orchestrator.name:
        group.start(role, run_orchestrator, plan.orchestrator, report_to=run_dir)
        epoch_ns = plan.orchestrator.epoch_ns
    elif role in plan.nodes:
        group.start(role, run_node_agent, plan.nodes[role], report_to=run_dir)
    else:
        raise ValueError(f"no process {role!r} in the plan")
    (run_dir / f"{role}_process.json").write_text(json.dumps(
        {"process": role, "pid": group.pid(role), "launcher_pid": os.getpid(),
         "host": socket.gethostname(), "epoch_ns": epoch_ns}, indent=1))


def supervise_role(group: ProcessGroup, plan: LabPlan, config: NetworkConfig,
                   role: str) -> int:
    """Wait for `role`'s process (started by `start_role`) to end, checking every 0.1 s for
    a fault it reported; one that no waiting can cure raises `ConfigError` as in
    `supervise` (faults of other processes sharing the run folder are theirs to report).
    Its exit code."""
    while True:
        code = group.join(role, 0.1)
        _raise_fatal([f for f in read_faults(plan.run_dir) if f["process"] == role], config)
        if code is not None:
            return code


@dataclass
class Supervision:
    """How a run's processes ended, as its launcher saw them."""

    trouble: str
    """Why the wait ended early ("" when the orchestrator finished)."""
    stopped_early: dict[str, str] = field(default_factory=dict)
    """Process -> how it ended (`describe_exit`, with its reported fault if any), for every
    process that stopped before the launcher stopped it (the orchestrator: with an exit code
    other than 0)."""


_FATAL = ("auth", "bind", "config")
"""Fault kinds that end the run at once: nothing will work until the config is fixed."""


def supervise(group: ProcessGroup, plan: LabPlan, config: NetworkConfig,
              timeout: float) -> Supervision:
    """Wait (at most `timeout` s) for the orchestrator to finish, checking every 0.1 s for a
    process that stopped or reported a fault. A fault that no waiting can cure (a failed
    handshake, an address that cannot be bound, a key refused) raises `ConfigError` naming the
    process, its peer and the key file or address, within ~0.1 s of the report."""
    deadline = time.monotonic() + timeout
    orchestrator, others = plan.orchestrator.name, [plan.station.name, *plan.nodes]
    trouble = ""
    while True:
        finished = group.join(orchestrator, 0.1) is not None
        dead = [n for n in others if not group.is_alive(n)]
        # Read after the exit checks: a child writes its fault before it exits.
        _raise_fatal(read_faults(plan.run_dir), config)
        if finished or dead:
            break
        if time.monotonic() > deadline:
            trouble = f"no result within {timeout:g} s"
            break
    faults = {f["process"]: f for f in read_faults(plan.run_dir)}
    stopped = {}
    for name in group.names:
        code = group.exitcode(name)
        if code is None or (name == orchestrator and code == 0):
            continue
        cause = faults.get(name, {}).get("message")
        stopped[name] = describe_exit(code) + (f": {cause}" if cause else "")
    if stopped:
        listed = "; ".join(f"{n} ({how})" for n, how in stopped.items())
        trouble = f"stopped early: {listed}; see {plan.run_dir}" + (
            f" ({trouble})" if trouble else "")
    return Supervision(trouble, stopped)


def _raise_fatal(faults: list[dict[str, Any]], config: NetworkConfig) -> None:
    fatal = [f for f in faults if f.get("kind") in _FATAL]
    if not fatal:
        return
    fault = fatal[0]
    process, message = str(fault["process"]), str(fault.get("message", ""))
    if fault["kind"] == "bind":
        address = str(fault.get("address", ""))
        bound = {entry: a for name in role_names(config)
                 for entry, a in bound_addresses(config, name).items()}
        entries = [e for e, a in bound.items() if a == address]
        error = _bind_error(config, entries[0] if entries else process, address,
                            fault.get("errno"))
        raise ConfigError(error.file, error.entry, f"{process} could not bind: "
                          f"{error.problem}", error.fix)
    fix = str(fault.get("fix", "")).replace(CONFIG, str(config.path))
    raise config.error(process, message, fix)


def read_pairs(run_dir: Path, node: str) -> np.ndarray:
    """Every pair event a node logged (`PAIR_LOG_DTYPE`), across its restarts."""
    path = run_dir / f"{node}_pairs.bin"
    return np.fromfile(path, PAIR_LOG_DTYPE) if path.exists() else np.zeros(0, PAIR_LOG_DTYPE)


def read_events(run_dir: Path, name: str) -> list[dict[str, Any]]:
    path = run_dir / f"{name}_events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


@dataclass
class LinkReport:
    """What a run's processes wrote, as a real bench knows it: no ground truth (the sim
    profile's truth is joined by `qnetlab link` from the tagger twin's own file)."""

    requested: int
    delivered: int
    rate_hz: float
    """Delivered pairs per second of link time, from the first delivered herald to the last
    (reconciling a pair the nodes disagreed on delays the ones after it: that is in here)."""
    latency_s: np.ndarray
    """Per herald heard by every node from the PUB: the later node's receipt - the herald's
    timestamp (the station time its attempt's windows closed), s."""
    errors: dict[str, int]
    clock: dict[str, dict[str, float]]
    failed: str
    agree: bool
    """Both nodes logged exactly the same delivered (link, seq) set."""
    nodes_logged: bool = True
    """Every node agent left its pair log: without, `agree` says nothing (no node ran)."""
    one_sided: int = 0
    """Pairs only some of the nodes hold as delivered (what `agree` False is about): e.g. an
    orchestrator that died between the OKs it sends each node of a pair."""
    delivered_from: str = "orchestrator"
    """Where `delivered` was counted: the orchestrator's result, or, when it left none (it
    died), the pairs both nodes' own logs hold as delivered (``node pair logs``)."""
    herald_rate_hz: float = float("nan")
    """Heralds per second the station decided over the same span (delivered or not): the
    link's physics, to hold against the expected pair rate."""
    delivered_heralds: np.ndarray = field(default_factory=lambda: np.zeros(0, HERALD_DTYPE))
    """The delivered pairs' heralds as the station logged them (`HERALD_DTYPE`, seq order;
    their attempt ids join them to anything else known per attempt)."""
    handoff_latency_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Per herald heard by every node from the PUB: the later node's receipt - the
    station's hand-off of its frame (taken right before encoding and sending), s."""
    block_latency_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Per herald heard by every node from the PUB: the later node's receipt - the arrival
    at the station of the tag block it was decided from, s: the control plane's whole share
    (engine, publish, network, node)."""
    decided_at_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Station time (s) of each herald's timestamp, aligned with `latency_s`."""
    handoff_at_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Station time (s) of each herald's hand-off, aligned with `handoff_latency_s`."""
    block_at_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Station time (s) of each herald's tag block arrival, aligned with `block_latency_s`."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def agreement(self) -> str:
        """Whether the nodes hold the same delivered pairs, in words (agreement on nothing
        is no agreement: a run that delivered nothing says so)."""
        if not self.nodes_logged:
            return "unknown (no node logged anything)"
        if not self.agree:
            return f"NO ({self.one_sided} pair(s) held by one node only)"
        return "nothing to agree on (no pair delivered)" if not self.delivered else "yes"


def read_report(plan: LabPlan, *, warmup_s: float = 0.0) -> LinkReport:
    """What the run's processes wrote. Latencies leave out heralds decided within
    `warmup_s` s of the first one a node received (processes still starting up)."""
    run_dir = plan.run_dir
    result_path = run_dir / f"{plan.orchestrator.name}_result.json"
    result = _json(result_path)
    station = _json(run_dir / f"{plan.station.name}_summary.json")
    heralds = _load(run_dir / f"{plan.station.name}_heralds.npy", HERALD_DTYPE)
    sets = [_delivered_set(run_dir, name) for name in plan.nodes]
    if result_path.exists():
        delivered = np.array([d["seq"] for d in result.get("delivered", [])], dtype=np.uint64)
        delivered_from = "orchestrator"
    else:  # the orchestrator died: what both nodes hold as delivered is what was delivered
        both = set.intersection(*sets) if sets else set()
        delivered = np.array(sorted(seq for link, seq in both if link == plan.station.link_id),
                             dtype=np.uint64)
        delivered_from = "node pair logs"
    delivered_heralds = heralds[np.isin(heralds["seq"], delivered)]
    # The link's pair rate: (N - 1) over the time from the first delivered herald to the last
    # (an unbiased Poisson rate estimate, relative error 1/sqrt(N)); the request's start-up
    # (CREATE, the nodes' first clock exchanges) is not the link's rate.
    times = np.sort(delivered_heralds["timestamp_ps"].astype(np.int64))
    span_s = (times[-1] - times[0]) * 1e-12 if len(times) > 1 else float("nan")
    errors: dict[str, int] = {}

    def add(key: str, value: int) -> None:
        errors[key] = errors.get(key, 0) + int(value)

    latencies = []
    clock = {}
    for name in plan.nodes:
        summary = _json(run_dir / f"{name}_summary.json")
        tracker = summary.get("tracker", {})
        counters = summary.get("counters", {})
        resync = counters.get("resync_heralds", 0)
        # The history fetched at a (re)start shows up in the tracker as one gap: not a loss.
        add("gaps", tracker.get("gaps_detected", 0) - resync)
        add("recovered", tracker.get("recovered", 0) - min(resync, tracker.get("recovered", 0)))
        for key in ("duplicates", "lost", "late"):
            add(key, tracker.get(key, 0))
        for key in ("resend_requests", "heralds_resent", "expired", "station_lost",
                    "station_restarts", "resync_heralds", "resync_expired", "tail_gaps"):
            add(key, counters.get(key, 0))
        add("malformed", sum(summary.get("malformed", {}).values()))
        if "clock" in summary:
            clock[name] = summary["clock"]
        path = run_dir / f"{name}_latency.npy"
        latencies.append(_load(path, LATENCY_DTYPE))
    if warmup_s > 0 and any(len(x) for x in latencies):
        decided = [x["received_ps"] - x["latency_ps"] for x in latencies]
        start_ps = min(int(d.min()) for d in decided if len(d)) + round(warmup_s * 1e12)
        latencies = [x[d >= start_ps] for x, d in zip(latencies, decided, strict=True)]
    from_decision = _later_arrival(latencies)
    sends = _load(run_dir / f"{plan.station.name}_sends.npy", SEND_DTYPE)
    from_handoff = _later_arrival([_since_send_log(x, sends, "send_ps") for x in latencies])
    from_block = _later_arrival([_since_send_log(x, sends, "block_ps") for x in latencies])
    add("malformed", sum(station.get("malformed", {}).values()))
    add("malformed", sum(result.get("malformed", {}).values()))
    counters = result.get("counters", {})
    for key in ("disagreements", "boundary", "stale", "err_expired", "err_lost",
                "node_restarts", "node_lost"):
        add(key, counters.get(key, 0))
    return LinkReport(
        requested=int(result.get("pairs_requested", plan.orchestrator.pairs)),
        delivered=len(delivered),
        rate_hz=(len(times) - 1) / span_s if span_s > 0 else float("nan"),
        herald_rate_hz=_herald_rate(heralds["timestamp_ps"], times),
        delivered_heralds=delivered_heralds,
        latency_s=from_decision[0], decided_at_s=from_decision[1],
        handoff_latency_s=from_handoff[0], handoff_at_s=from_handoff[1],
        block_latency_s=from_block[0], block_at_s=from_block[1],
        errors=errors, clock=clock,
        failed=str(result.get("failed", f"{plan.orchestrator.name} wrote no result file")),
        agree=all(s == sets[0] for s in sets),
        one_sided=len(set[tuple[int, int]]().union(*sets)
                      - (sets[0].intersection(*sets[1:]) if sets else set())),
        nodes_logged=all((run_dir / f"{name}_pairs.bin").exists() for name in plan.nodes),
        delivered_from=delivered_from,
        extra={"station": station.get("counters", {}), "source": station.get("source", {}),
               "station_heralds": len(heralds),
               "block_to_send_s": station.get("block_to_send_s", {})},
    )


def _delivered_set(run_dir: Path, node: str) -> set[tuple[int, int]]:
    """(link, seq) of every pair `node`'s own log holds as delivered."""
    log = read_pairs(run_dir, node)
    done = log[log["event"] == 2]  # PairEvent.DELIVERED
    return set(zip(done["link"].tolist(), done["seq"].tolist(), strict=True))


def _herald_rate(all_ps: np.ndarray, delivered_ps: np.ndarray) -> float:
    """(heralds decided from the first delivered to the last, minus one) per second."""
    if len(delivered_ps) < 2 or delivered_ps[-1] <= delivered_ps[0]:
        return float("nan")
    inside = np.count_nonzero((all_ps >= delivered_ps[0]) & (all_ps <= delivered_ps[-1]))
    return (inside - 1) / ((delivered_ps[-1] - delivered_ps[0]) * 1e-12)


def _load(path: Path, dtype: np.dtype[Any]) -> np.ndarray:
    return np.load(path) if path.exists() else np.zeros(0, dtype)


def _since_send_log(latency: np.ndarray, sends: np.ndarray, origin: str) -> np.ndarray:
    """`latency` rows (LATENCY_DTYPE) re-timed from their frame's `origin` column of the
    station's send log (``send_ps``: its hand-off; ``block_ps``: its tag block's arrival),
    joined by seq; rows of no logged frame dropped."""
    if not len(sends) or not len(latency):
        return np.zeros(0, LATENCY_DTYPE)
    sends = np.sort(sends, order="first_seq")  # a delayed herald's frame comes later
    frame = np.searchsorted(sends["first_seq"], latency["seq"], side="right") - 1
    ok = frame >= 0
    ok[ok] &= latency["seq"][ok] <= sends["last_seq"][frame[ok]]
    out = latency[ok].copy()
    out["latency_ps"] = out["received_ps"] - sends[origin][frame[ok]]
    return out


def _later_arrival(latencies: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """For each herald every node received from the PUB (in seq order), the later of the
    latencies (s), and the station time (s) they are counted from (receipt - latency: the
    same at every node)."""
    if not latencies or any(len(x) == 0 for x in latencies):
        return np.zeros(0), np.zeros(0)
    common = latencies[0]["seq"]
    for other in latencies[1:]:
        common = np.intersect1d(common, other["seq"])
    rows = []
    for x in latencies:
        _, first = np.unique(x["seq"], return_index=True)
        rows.append(x[first][np.searchsorted(x["seq"][first], common)])
    worst = np.max([r["latency_ps"] for r in rows], axis=0)
    origin = rows[0]["received_ps"] - rows[0]["latency_ps"]
    return worst * 1e-12, origin * 1e-12
