"""`qnetlab link CONFIG --role NAME`: one of the link's processes, on its own host.

`qnetlab link` starts the heralding station, both node agents and the orchestrator on one
host. Across hosts each is started on its own, with the same network config everywhere (only
its addresses say which host is which): ``--role station`` on the station's host, ``--role
node_a`` on node A's, and so on (the names are the config's process names, `role_names`).
A process binds only the addresses the config gives it and reaches the others only through
theirs; a role started on a host that does not own its addresses is refused (exit 2, naming
the entry) before anything starts.

What each role needs on its host: its own secret key and every public key (``key_dir``);
the station its lab's calibration database and the link's (its heralding windows come from
the link's arm delays, measured at the station); a node agent the calibration databases that
`qnetlab.link.calibrated_link` reads (its expected fidelity and pair rate); the orchestrator
no calibration. Clocks: every process keeps time on its own host's monotonic clock; station
time is the station's (zero when it starts), and each node agent reads it from its clock
exchanges with the station (`network.clock.ClockSync`), never from a shared epoch.

The station and the node agents serve until stopped (Ctrl-C, SIGTERM: they write their
files and exit 0) or ``--max-seconds``; the orchestrator ends when its ``--pairs`` are
delivered, its request times out (``orchestrator.max_time``) or ``--max-seconds`` pass, and
prints what it delivered. Each writes its files to ``--run-dir`` (default
``<network.run_dir>/<time>-<role>``); several roles may share one folder (the files are
named by process), where ``network.lab.read_report`` reads the whole run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from .link import TRUTH_FILE, calibrated_link, link_database


def add_role_arguments(parser: argparse.ArgumentParser) -> None:
    """``--role``, ``--run-dir`` and ``--max-seconds`` of `qnetlab link`."""
    parser.add_argument(
        "--role", default=None, metavar="NAME",
        help="run only this process of the config (its name there: station, node_a, node_b, "
             "orchestrator), on this host, for a link across hosts; start each on the host "
             "that owns its addresses")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="with --role: the folder for this process's files (default "
                             "<network.run_dir>/<time>-<role>)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="with --role: stop by itself after this many seconds (default: "
                             "the station and nodes serve until stopped)")


def calibrated_windows(config: Any) -> Any:
    """The station engine's windows (`network.herald_engine.HeraldWindows`) from the link's
    calibrated arm delays in its database on this host; `MissingCalibration` (a ConfigError
    naming the value and the fix) when there is none."""
    from qnetlab.sequences.calibration.link_values import MissingCalibration, herald_windows
    from qnetlab.sequences.calibration.store import ParameterStore

    db = link_database(config)
    if not db.is_file():  # opening it would create an empty one: say what is missing
        raise MissingCalibration(str(db), "link", "no calibration database for the link on "
                                 "this host", f"calibrate the lab first (qnetlab calibrate "
                                 f"{config.path}), or copy {db.name} from the host that did")
    return herald_windows(config, ParameterStore(db))


def role_plan(config: Any, role: str, *, pairs: int, run_dir: Path, profile: str,
              max_seconds: float | None) -> Any:
    """The settings of every process (`network.lab.LabPlan`) as this host knows them; only
    `role`'s are used. Station time starts now on this host; node agents read it from their
    clock exchanges (``same_host=False``)."""
    from qnetlab.network.lab import plan_lab

    goodness = rate = 0.0  # used by the node agents alone
    windows = simulation = None
    if role == config.station.name:
        windows = calibrated_windows(config)
        if profile == "sim":  # the world behind the twins; its truth in this run folder
            simulation = {**config.link_simulation(), "truth_file": str(run_dir / TRUTH_FILE),
                          "herald_windows_ps": [list(row) for row in windows.offsets_ps]}
    elif role in config.link.nodes:
        expected = calibrated_link(config)
        goodness, rate = expected.fidelity, expected.rate
    return plan_lab(config, pairs=pairs, run_dir=run_dir, epoch_ns=time.monotonic_ns(),
                    goodness=goodness, expected_pair_rate=rate, max_seconds=max_seconds,
                    same_host=False, windows=windows, profile=profile, simulation=simulation)


def run_role(args: argparse.Namespace, config: Any) -> int:
    """Run the process ``args.role`` of `config` until it ends; its exit code for the
    command line (0 done or stopped as a server is; 1 the orchestrator did not deliver, or
    the process failed; 2 a key, address or calibration fault, raised as ConfigError)."""
    from qnetlab.network import ProcessGroup, sigterm_as_interrupt
    from qnetlab.network.lab import (
        check_ports,
        require_role_keys,
        role_names,
        start_role,
        supervise_role,
    )

    from .cli import EXIT_CHECK_FAILED, EXIT_CONFIG, EXIT_OK

    role = args.role
    if role not in role_names(config):
        raise config.error("", f"--role {role}: no process of that name in this link",
                           f"name one of: {', '.join(role_names(config))}")
    if args.max_seconds is not None and not args.max_seconds > 0:
        print("qnetlab: --max-seconds must be positive", file=sys.stderr)
        return EXIT_CONFIG
    # What would only show as processes waiting for each other is refused before it starts.
    require_role_keys(config, role)
    check_ports(config, role)
    # Absolute: the station's twin resolves a relative path against its lab config's folder.
    run_dir = Path(args.run_dir).resolve() if args.run_dir is not None else (
        config.run_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{role}")
    plan = role_plan(config, role, pairs=args.pairs, run_dir=run_dir, profile=args.profile,
                     max_seconds=args.max_seconds)
    orchestrator = role == config.orchestrator.name
    try:
        # Entered first, so stopped last: the station closes its tagger before the twins go.
        with sigterm_as_interrupt(), ProcessGroup() as twins, ProcessGroup() as group:
            source = plan.station.source
            if role == config.station.name and source.simulation is not None:
                from .station_twin import with_station_twins

                plan = with_station_twins(plan, twins, f"{role}_twins")
            start_role(group, plan, role)
            print(f"{role}: started (pid {group.pid(role)}); files in {run_dir}"
                  + ("" if orchestrator else "; stop with Ctrl-C"), flush=True)
            code = supervise_role(group, plan, config, role)
    except KeyboardInterrupt as exc:
        if orchestrator:  # the request was cut short: say what it kept
            exc.add_note(f"{role}: stopped before its request ended; files in {run_dir}")
            raise
        print(f"{role}: stopped ({exc or 'interrupted'}); files in {run_dir}")
        return EXIT_OK
    if code != 0:
        print(f"qnetlab: {role} stopped with exit code {code}; see {run_dir}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    if not orchestrator:
        why = (f"after {args.max_seconds:g} s (--max-seconds)" if args.max_seconds is not None
               else "by itself")
        print(f"{role}: stopped {why}; files in {run_dir}")
        return EXIT_OK
    return _orchestrator_summary(run_dir / f"{role}_result.json", args.pairs)


def _orchestrator_summary(path: Path, pairs: int) -> int:
    """Print what the orchestrator delivered (its result file); 0 when every pair was."""
    from .cli import EXIT_CHECK_FAILED, EXIT_OK

    try:
        result = json.loads(path.read_text())
        delivered, failed = len(result["delivered"]), str(result.get("failed", ""))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"qnetlab: the orchestrator left no readable result ({path}: {exc})",
              file=sys.stderr)
        return EXIT_CHECK_FAILED
    print(f"orchestrator: {delivered} of {pairs} pairs delivered"
          + (f"; {failed}" if failed else "") + f" (result: {path})")
    return EXIT_OK if delivered >= pairs and not failed else EXIT_CHECK_FAILED
