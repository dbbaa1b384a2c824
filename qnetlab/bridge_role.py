"""`qnetlab bridge CONFIG --stations --role world|STATION|QNU|orchestrator`: one process of the
station-backed bridge, on its own host (docs/bridge.md#across-hosts).

`qnetlab bridge --stations` starts every process on one host. Across hosts each is started on
its own with the same bridge config everywhere; its addresses (``world.address``, each
station's ``herald_address`` / ``request_address``, ``orchestrator.address``) say which host
is which, and ``bridge.key_dir`` holds the keys (`qnetlab keys CONFIG`):

- ``--role world``: the simulated world (the switch's twin, every station's twins behind it,
  `bridge_stations.serve_bridge_world`) on the world's host, its twins from
  ``world.address``'s port up (`sim_instruments.bridge_world.plan_bridge_world`);
- ``--role STATION``: that heralding station, its lab opened against the world's twins;
- ``--role QNU``: that QNU's node agent (a node per station, `network.node_agent`), reaching
  the stations' addresses and the orchestrator's; it binds nothing;
- ``--role orchestrator``: the bridge orchestrator (the switch's twin in its loop, the
  stations' heralds through `network.bridge.station_fabric.StationFabric`, the QNUs' nodes
  on its address) and the workload's application (``--workload``), once every QNU's node
  agent is heard; it writes the run's summary and ends with the workload (exit 0 every
  operation done, 1 not).

Each binds only its own addresses (a host without them: exit 2 naming the entry, before
anything starts) and needs its own secret key and every public key (the world: none). The
world and the stations serve until stopped (Ctrl-C, SIGTERM: exit 0) or ``--max-seconds``;
the stations and the orchestrator wait for what they reach (the world's twins, the
stations' streams) so the order of starting does not matter. No shared clock: station time
reaches the orchestrator from the stations' own frames (`StationLink.epoch_ns` None).
"""

from __future__ import annotations

import argparse
import errno
import socket
import sys
import time
from pathlib import Path
from typing import Any

WORLD = "world"
ORCHESTRATOR_ROLE = "orchestrator"
REACH_TIMEOUT_S = 120.0
"""s a station or the orchestrator waits for the world's twins to listen (the world builds
its benches first: seconds, several times that on a loaded host)."""


def add_role_arguments(parser: argparse.ArgumentParser) -> None:
    """``--role``, ``--run-dir`` and ``--max-seconds`` of `qnetlab bridge --stations`."""
    parser.add_argument(
        "--role", default=None, metavar="NAME",
        help="with --stations: run only this process of the bridge (world, a station's name, "
             "or orchestrator, which runs --workload) on this host, for a bridge across hosts; "
             "start each on the host that owns its addresses in CONFIG")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="with --role: the folder for this process's files (default "
                             "<bridge.run_dir>/<time>-<role>)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="with --role: stop by itself after this many seconds (default: "
                             "the world and stations serve until stopped, the orchestrator "
                             "for --timeout + 30 s)")


def role_names(config: Any) -> list[str]:
    return [WORLD, *config.stations, *config.qnus, ORCHESTRATOR_ROLE]


def config_links(config: Any) -> list[Any]:
    """The stations as the config places them (`StationLink`: no shared clock)."""
    from qnetlab.network.bridge.station_fabric import StationLink

    return [StationLink(s, c.herald_address, i + 1, None, c.request_address)
            for i, (s, c) in enumerate(config.stations.items())]


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    return host, int(port)


def bound_addresses(config: Any, plan: Any, role: str) -> dict[str, str]:
    """Config entry -> ``tcp://HOST:PORT`` of every socket `role` binds on its host."""
    if role == WORLD:
        host, ports = plan.relay
        return {f"world.address (port {p})": f"tcp://{host}:{p}" for p in ports}
    if role == ORCHESTRATOR_ROLE:
        found = {"orchestrator.address": config.orchestrator_address,
                 "orchestrator.telemetry_address": config.orchestrator_telemetry_address}
    elif role in config.qnus:
        found = {}
    else:
        station = config.stations[role]
        found = {f"stations.{role}.herald_address": station.herald_address,
                 f"stations.{role}.request_address": station.request_address}
    return {entry: address for entry, address in found.items() if address is not None}


def check_ports(config: Any, addresses: dict[str, str], role: str) -> None:
    """ConfigError naming the entry unless each address can be bound on this host now (a
    test bind with SO_REUSEADDR, as libzmq binds)."""
    from qnetlab.instruments.errors import ConfigError

    for entry, address in addresses.items():
        host, port = _split(address)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
                raise ConfigError(str(config.path), entry, f"{address} is not an address of "
                                  "this host", f"start --role {role} on the host that owns "
                                  "it, or write this host's address there") from None
            raise ConfigError(str(config.path), entry, f"{address} is in use by another "
                              "process", f"stop what listens there (`ss -ltnp 'sport = "
                              f":{port}'` shows it), or change the port") from None


def require_keys(config: Any, role: str) -> None:
    """The role's own keypair (the world has none) and every public key of the bridge."""
    from qnetlab.network.bridge.bridge_config import APPLICATION_KEY, ORCHESTRATOR_KEY
    from qnetlab.network.keys import LabKeyError, check_lab_keys, load_public_key

    # The orchestrator's host runs the workload's application too.
    own = {WORLD: [], ORCHESTRATOR_ROLE: [ORCHESTRATOR_KEY, APPLICATION_KEY]}.get(role, [role])
    try:
        check_lab_keys(config.key_dir, own)
        for name in config.key_names():
            load_public_key(config.key_dir, name)
    except LabKeyError as exc:
        raise exc.for_config(config.path) from None


def wait_listening(config: Any, entry: str, addresses: list[tuple[str, int]],
                   timeout: float) -> None:
    """Wait until a TCP connection to each address is accepted; ConfigError naming `entry`
    after `timeout` s (the world not started, or on another address)."""
    from qnetlab.instruments.errors import ConfigError

    deadline = time.monotonic() + timeout
    waiting = list(addresses)
    while waiting:
        try:
            socket.create_connection(waiting[0], timeout=1.0).close()
            waiting.pop(0)
            continue
        except OSError:
            pass
        if time.monotonic() > deadline:
            host, port = waiting[0]
            raise ConfigError(str(config.path), entry, f"nothing listens on {host}:{port} "
                              f"after {timeout:g} s", "start `--role world` on the world's "
                              "host (its address in world.address)")
        time.sleep(0.2)  # polling a remote port: nothing to wait on but time


class Budget:
    """What is left of ``--max-seconds`` (None: no limit): every wait of a role is bounded
    by it, so a role stops by itself even if what it waits for never comes."""

    def __init__(self, max_seconds: float | None) -> None:
        self.end = None if max_seconds is None else time.monotonic() + max_seconds

    def left(self, timeout: float) -> float:
        """`timeout`, or less when the budget ends sooner (at least a moment)."""
        if self.end is None:
            return timeout
        return max(0.1, min(timeout, self.end - time.monotonic()))


def _lab_ports(lab: Any) -> list[tuple[str, int]]:
    """(host, port) of the instruments' SCPI / ZeroMQ control sockets of a lab (the twins
    that listen from the start; the tagger's stream ports open on request)."""
    found = []
    for instrument in lab.instruments.values():
        real = str(instrument.addresses.get("real", ""))
        if real.startswith("TCPIP0::"):
            _, host, port, _ = real.split("::")
            found.append((host, int(port)))
        elif real.startswith("tcp://"):
            found.append(_split(real))
    return found


def run_role(args: argparse.Namespace, config: Any, workload: Any | None) -> int:
    """Run the process ``args.role`` of `config` until it ends; its exit code."""
    from qnetlab.instruments.errors import ConfigError
    from qnetlab.network import ProcessGroup, sigterm_as_interrupt
    from qnetlab.sim_instruments.bridge_world import plan_bridge_world

    from .cli import EXIT_OK

    role = args.role
    if role not in role_names(config):
        raise ConfigError(str(config.path), "", f"--role {role}: no process of that name in "
                          "this bridge", f"name one of: {', '.join(role_names(config))}")
    if not config.hosts:
        raise ConfigError(str(config.path), "world.address", "the config places no process "
                          "on a host", "add the addresses (orchestrator.address, "
                          "world.address, each station's herald_address and request_address) "
                          "and bridge.key_dir, then run `qnetlab keys CONFIG`")
    if (role == ORCHESTRATOR_ROLE) != (workload is not None):
        raise ConfigError("--workload", "", "runs with --role orchestrator only (its "
                          "application runs the workload)", "give --workload FILE to the "
                          "orchestrator, and to no other role")
    max_seconds = args.max_seconds
    if max_seconds is not None and not max_seconds > 0:
        raise ConfigError("--max-seconds", str(max_seconds), "must be > 0 s", "e.g. 60")
    budget = Budget(max_seconds)
    run_dir = Path(args.run_dir).resolve() if args.run_dir is not None else (
        config.run_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{role}")
    # The world is the simulation: its station twins write their truth in its run folder
    # (joined after the run, once the hosts' folders are gathered: `--truth`).
    # (a QNU's node agent reaches no twin: it needs no plan of the world)
    plan = None if role in config.qnus else plan_bridge_world(
        config, run_dir / f"{role}_world", args.seed, on_hosts=True,
        truth_dir=run_dir if role == WORLD else None)
    if role != WORLD:
        require_keys(config, role)
    check_ports(config, bound_addresses(config, plan, role), role)
    try:
        with sigterm_as_interrupt(), ProcessGroup() as group:
            if role == ORCHESTRATOR_ROLE:
                return _orchestrator(args, config, plan, workload, group, run_dir, budget)
            _start_server(config, plan, role, group, run_dir, budget)
            print(f"{role}: started (pid {group.pid(role)}); files in {run_dir}; stop with "
                  "Ctrl-C", flush=True)
            code = group.join(role, None if max_seconds is None else budget.left(max_seconds))
            if code is None:
                print(f"{role}: stopped after {max_seconds:g} s (--max-seconds); files in "
                      f"{run_dir}")
                return EXIT_OK
    except KeyboardInterrupt as exc:
        if role == ORCHESTRATOR_ROLE:
            exc.add_note(f"{role}: stopped before the workload ended; files in {run_dir}")
            raise
        print(f"{role}: stopped ({exc or 'interrupted'}); files in {run_dir}")
        return EXIT_OK
    print(f"qnetlab: {role} stopped with exit code {code}; see {run_dir}", file=sys.stderr)
    return 1


def _start_server(config: Any, plan: Any, role: str, group: Any, run_dir: Path,
                  budget: Budget) -> None:
    """The world, a station or a QNU's node agent, started in `group` (the station once the
    world's twins of its lab listen)."""
    from qnetlab.network.heralding_station import run_station
    from qnetlab.network.node_agent import run_node_agents

    from .bridge_stations import (
        WORLD_READY_TIMEOUT_S,
        _wait_for,
        qnu_node_settings,
        serve_bridge_world,
        station_settings,
    )

    run_dir.mkdir(parents=True, exist_ok=True)
    if role in config.qnus:
        group.start(role, run_node_agents, qnu_node_settings(
            config, role, config_links(config), config.orchestrator_address, config.key_dir,
            run_dir, budget.left(7 * 86400.0)), report_to=run_dir)
        return
    if role == WORLD:
        ready = run_dir / "bridge_world_ready.json"
        group.start(role, serve_bridge_world, plan, ready, report_to=run_dir)
        _wait_for(ready, group, role, budget.left(WORLD_READY_TIMEOUT_S),
                  "the bridge world's twins")
        return
    wait_listening(config, "world.address", _lab_ports(plan.reached(role)),
                   budget.left(REACH_TIMEOUT_S))
    station = config.stations[role]
    settings = station_settings(
        config, plan, role, (station.herald_address, station.request_address), config.key_dir,
        run_dir, time.monotonic_ns(), budget.left(7 * 86400.0))
    group.start(role, run_station, settings, None, report_to=run_dir)


def _orchestrator(args: argparse.Namespace, config: Any, plan: Any, workload: Any,
                  group: Any, run_dir: Path, budget: Budget) -> int:
    """Wait for the switch's twin and every station's stream, run the workload, report."""
    from .bridge_stations import (
        NODES_READY_TIMEOUT_S,
        STATIONS_READY_TIMEOUT_S,
        StationsRun,
        _wait_streaming,
        orchestrate,
        read_summary,
        stations_ok,
        stations_text,
    )
    from .cli import EXIT_CHECK_FAILED, EXIT_OK

    run_dir.mkdir(parents=True, exist_ok=True)
    switch = plan.reached("switch")
    wait_listening(config, "world.address", _lab_ports(switch), budget.left(REACH_TIMEOUT_S))
    switch_lab = switch.to_yaml(run_dir / "switch_lab.yaml").path
    links = config_links(config)
    print(f"{ORCHESTRATOR_ROLE}: waiting for the stations' streams; files in {run_dir}",
          flush=True)
    _wait_streaming(links, config.key_dir, None, budget.left(STATIONS_READY_TIMEOUT_S),
                    run_dir)
    limit = budget.left(args.timeout + 30.0)  # the orchestrator process stops by itself
    outcome, stopped = orchestrate(
        (group,), config, workload, links, config.key_dir, switch_lab, run_dir,
        seed=args.seed, limit=limit, timeout=min(args.timeout, limit),
        address=config.orchestrator_address,
        telemetry_address=config.orchestrator_telemetry_address,
        nodes_timeout=budget.left(NODES_READY_TIMEOUT_S), start_nodes=False)
    run = StationsRun(run_dir, outcome, read_summary(run_dir), stopped)
    print(stations_text(config, workload, run))
    return EXIT_OK if stations_ok(workload, run) else EXIT_CHECK_FAILED
