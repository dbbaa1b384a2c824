"""`qnetlab bridge CONFIG --workload FILE [--policy ...] [--seed N] [--report DIR]`: run a
distributed computation's workload on a network bridge and report.

By default the bridge's scheduling core runs in a time-compressed discrete-event
simulation of the link physics (`network.bridge.simulate`), with no instrument processes,
and the output and the report say so. With ``--stations`` the workload runs in real time
through heralding-station processes reading their taggers' twins behind the switch's twin,
and the orchestrator process (`bridge_stations`; node agents per QNU are not processes yet);
with ``--stations --role world|STATION|orchestrator`` one of them on its own host
(`bridge_role`, docs/bridge.md#across-hosts).
(The simulation opens no switch: the orchestrator process drives the config's switch,
`BridgeServiceSettings.from_config`.) The simulation takes
each path's age as the config writes it, not from the calibration store the orchestrator
keeps, so a run is repeatable. The bridge comes from its config
(`network.bridge.bridge_config`, lab_configs/bridge_8.yaml), the workload from its file
(docs/bridge.md#the-workload-format). Reported per policy (the orchestrator, the round-robin
baseline, or both): makespan, pairs delivered and wasted, switch reconfigurations, each
station's utilisation, the request latency's p50 / p90 / p99, against the makespan's lower
bound; the report folder holds the JSON, the HTML page, a timeline figure and a decision log
per policy.

Exit codes: 0 every operation of the workload done under the primary policy (the
orchestrator when it ran); 1 some failed (ERR) or the run hit its time limit; 2 a config,
workload or usage error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._format import seconds_text as _s
from ._format import table

POLICIES = {"orchestrator": ("orchestrator",), "round-robin": ("round_robin",),
            "both": ("orchestrator", "round_robin")}
MAX_SIMULATED_S = 1e5
"""s of simulated time after which a run is stopped (and reported incomplete): far beyond
any shipped workload's makespan (round-robin's longest is under 20 s)."""


def add_parser(verbs: Any) -> None:
    parser = verbs.add_parser(
        "bridge", help="run a workload on a network bridge (time-compressed simulation) and "
                       "report",
        description="Run a distributed computation's workload (a DAG of operations on QPUs, "
                    "lab_configs/workloads/) on the network bridge of CONFIG (QNUs and "
                    "heralding stations on one optical switch, lab_configs/bridge_8.yaml) "
                    "under the orchestrator's scheduling core and/or the round-robin "
                    "baseline, and compare them with the makespan's lower bound. This is a "
                    "time-compressed simulation of the link physics; no instrument processes "
                    "run (unless --stations). Writes a report folder: JSON, HTML, a timeline "
                    "figure and a decision log per policy.")
    parser.add_argument("config", help="bridge YAML, e.g. lab_configs/bridge_8.yaml")
    parser.add_argument("--workload", default=None,
                        help="workload YAML or JSON (required but with --stations --role "
                             "world or a station), e.g. "
                             "lab_configs/workloads/distributed_ghz_8.yaml")
    parser.add_argument("--policy", choices=tuple(POLICIES), default="both",
                        help="scheduling policy: the orchestrator's, the fixed round-robin "
                             "switch schedule, or both (default; compared)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the simulated link successes (default 1)")
    parser.add_argument("--report", type=Path, default=None, metavar="DIR",
                        help="report folder (default: a new folder under the config's "
                             "bridge.run_dir)")
    parser.add_argument("--stations", action="store_true",
                        help="instead of the simulation: run the workload in real time "
                             "through heralding-station processes reading their time "
                             "taggers' twins behind the optical switch's twin, and the "
                             "orchestrator process (keep the workload small: a few pair "
                             "requests take seconds)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="with --stations: wall s the workload may take (default 60)")
    parser.add_argument("--truth", type=Path, default=None, metavar="RUN_DIR",
                        help="instead of a run: join the simulation's ground truth of an "
                             "across-hosts run (--stations --role) whose hosts' run folders "
                             "were gathered into RUN_DIR; prints it and writes "
                             "RUN_DIR/ground_truth.json")
    from .bridge_role import add_role_arguments

    add_role_arguments(parser)
    parser.set_defaults(handler=run)


@dataclass
class BridgeRun:
    """A workload run on a bridge under one or two policies, with its lower bound."""

    config: Any
    """network.bridge.bridge_config.BridgeConfig"""
    topology: Any
    workload: Any
    workload_path: Path
    seed: int
    bound: Any
    """network.bridge.MakespanBound"""
    results: dict[str, Any] = field(default_factory=dict)
    """policy -> network.bridge.BridgeResult, in the order they ran."""

    @property
    def primary(self) -> str:
        """The policy the verdict is on: the orchestrator when it ran."""
        return "orchestrator" if "orchestrator" in self.results else next(iter(self.results))

    def verdict(self) -> tuple[bool, str]:
        """(good, one line): good when the primary policy did every operation in time and no
        faster than every run can be (`MakespanBound.hard`)."""
        r = self.results[self.primary]
        name = "round-robin" if self.primary == "round_robin" else self.primary
        if r.hit_max_time:
            return False, (f"{name}: stopped at {MAX_SIMULATED_S:g} s of simulated time with "
                           f"{r.operations_done} of {r.operations_total} operations done")
        if not r.complete:
            errors = ", ".join(f"{k} {v}" for k, v in sorted(r.errors.items())) or "none"
            return False, (f"{name}: {r.operations_failed} remote operations failed (ERR: "
                           f"{errors}), {r.operations_done} of {r.operations_total} done")
        if r.makespan < self.bound.hard * (1.0 - 1e-9):
            return False, (f"{name}: makespan {r.makespan:.4g} s below the {self.bound.hard:.4g} "
                           "s every run needs: the simulation is wrong")
        extra = ""
        if "round_robin" in self.results and self.primary == "orchestrator":
            baseline = self.results["round_robin"]
            extra = (f" (round-robin {_s(baseline.makespan)}, {baseline.operations_failed} "
                     "operations failed)")
        return True, (f"{name}: all {r.operations_total} operations done, makespan "
                      f"{_s(r.makespan)} against a lower bound of {_s(self.bound.expected)}"
                      + extra)


def run_bridge(config_path: str | Path, workload_path: str | Path,
               policies: tuple[str, ...] = ("orchestrator", "round_robin"),
               seed: int = 1) -> BridgeRun:
    """Load the bridge and the workload (ConfigError naming the entry on a problem), run the
    workload under each policy in the simulation, compute the lower bound."""
    from qnetlab.instruments.errors import ConfigError
    from qnetlab.network.bridge import (
        RoundRobinScheduler,
        Scheduler,
        load_workload,
        makespan_bound,
        simulate,
    )
    from qnetlab.network.bridge.bridge_config import load_bridge_config

    if seed < 0:
        raise ConfigError("--seed", str(seed), "a seed is a whole number >= 0",
                          "pass --seed 0 or larger")
    config = load_bridge_config(config_path)
    workload = load_workload(workload_path)
    topology = config.topology()
    missing = [q for q in workload.qnus if q not in topology.qnus]
    if missing:
        raise ConfigError(str(workload_path), "qnus", f"{', '.join(missing)} not on bridge "
                          f"{config.name} ({config_path})",
                          f"use the bridge's QNUs ({', '.join(topology.qnus)}) or a bridge "
                          "config that has these")
    run = BridgeRun(config, topology, workload, Path(workload_path), seed,
                    makespan_bound(workload, topology))
    cores = {"orchestrator": Scheduler, "round_robin": RoundRobinScheduler}
    for policy in policies:
        run.results[policy] = simulate(workload, topology, cores[policy](topology), seed=seed,
                                       max_time=MAX_SIMULATED_S)
    return run


def report_folder(config: Any, workload: Any, given: Path | None) -> Path:
    """`given`, or a new folder under the config's run_dir named after the workload and the
    time (never an earlier run's)."""
    if given is not None:
        return given
    stem = f"bridge_{workload.name}_{time.strftime('%Y%m%d-%H%M%S')}"
    folder, n = config.run_dir / stem, 2
    while folder.exists():
        folder, n = config.run_dir / f"{stem}-{n}", n + 1
    return Path(folder)


def summary_text(run: BridgeRun) -> str:
    """What the terminal shows: the mode, the bridge and workload, the comparison table."""
    from .bridge_report import MODE, comparison_rows

    config, w = run.config, run.workload
    header, rows = comparison_rows(run)
    return "\n".join([
        f"bridge {config.name} ({config.path}): {len(run.topology.qnus)} QNUs, "
        f"{len(run.topology.stations)} stations; workload {w.name}: {len(w.operations)} "
        f"operations, {w.pair_demand} pairs; seed {run.seed}",
        f"{MODE} (path ages and arm delays from the config: the calibration graph is not "
        "wired yet)",
        "",
        table(rows, header),
    ])


def run_stations(args: argparse.Namespace) -> int:
    """`--stations`: the workload through station processes (`bridge_stations`)."""
    from qnetlab.instruments.errors import ConfigError
    from qnetlab.network.bridge import load_workload
    from qnetlab.network.bridge.bridge_config import load_bridge_config

    from .bridge_stations import run_with_stations, stations_ok, stations_text
    from .cli import EXIT_CHECK_FAILED, EXIT_OK

    if args.policy != "both" or args.report is not None:
        raise ConfigError("--stations", "", "runs the orchestrator only and writes its files "
                          "to the run folder", "leave out --policy and --report")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise ConfigError("--timeout", str(args.timeout), "must be > 0 s", "e.g. --timeout 60")
    config = load_bridge_config(args.config)
    workload = None if args.workload is None else load_workload(args.workload)
    missing = [q for q in workload.qnus if q not in config.qnus] if workload else []
    if missing:
        raise ConfigError(str(args.workload), "qnus", f"{', '.join(missing)} not on bridge "
                          f"{config.name}", f"use the bridge's QNUs ({', '.join(config.qnus)})")
    if args.role is None and (args.run_dir is not None or args.max_seconds is not None):
        raise ConfigError("--run-dir/--max-seconds", "", "go with --role (one process of "
                          "the bridge on its host)", "add --role NAME, or leave them out")
    if args.role is not None:  # one process, on this host (docs/bridge.md#across-hosts)
        from .bridge_role import run_role

        return run_role(args, config, workload)
    if workload is None:
        raise ConfigError("--workload", "", "missing", "give the workload to run, e.g. "
                          "--workload lab_configs/workloads/distributed_ghz_8.yaml")
    from .bridge_stations_report import write_stations_report

    result = run_with_stations(config, workload, seed=args.seed, timeout=args.timeout)
    print(stations_text(config, workload, result))
    _, lines = write_stations_report(config, workload, Path(args.workload), result, args.seed)
    print("\n".join(lines))
    return EXIT_OK if stations_ok(workload, result) else EXIT_CHECK_FAILED


def run_truth(args: argparse.Namespace) -> int:
    """`--truth RUN_DIR`: the ground truth of a gathered across-hosts run."""
    from qnetlab.instruments.errors import ConfigError
    from qnetlab.network.bridge.bridge_config import load_bridge_config

    from .bridge_agreement import NODES_DIR, read_agreement
    from .bridge_truth import join_gathered, truth_lines, write_truth
    from .cli import EXIT_CHECK_FAILED, EXIT_OK

    if args.stations or args.workload is not None or args.role is not None:
        raise ConfigError("--truth", str(args.truth), "joins a finished run's files and "
                          "runs nothing", "leave out --stations, --workload and --role")
    config = load_bridge_config(args.config)
    try:
        truth = join_gathered(Path(args.truth), config.stations)
    except FileNotFoundError as exc:
        raise ConfigError("--truth", str(args.truth), str(exc), "gather every host's run "
                          "folder (the world's, each station's, the orchestrator's) into "
                          "one") from None
    print("\n".join(truth_lines(truth)))
    print(f"written: {write_truth(truth, Path(args.truth))}")
    if not (Path(args.truth) / NODES_DIR).is_dir():
        return EXIT_OK
    # the QNUs' hosts' node logs, gathered too: do both QNUs hold each pair the same way?
    agreement = read_agreement(Path(args.truth), list(config.stations), list(config.qnus))
    print(agreement.line())
    return EXIT_OK if agreement.agree else EXIT_CHECK_FAILED


def run(args: argparse.Namespace) -> int:
    from qnetlab.instruments.errors import ConfigError

    from .bridge_report import bridge_report
    from .cli import EXIT_CHECK_FAILED, EXIT_OK

    if args.truth is not None:
        return run_truth(args)
    if args.stations:
        return run_stations(args)
    if args.role is not None or args.run_dir is not None or args.max_seconds is not None:
        raise ConfigError("--role", "", "--role, --run-dir and --max-seconds go with "
                          "--stations (one process of the bridge on its host)",
                          "add --stations, or leave them out")
    if args.workload is None:
        raise ConfigError("--workload", "", "missing", "give the workload to run, e.g. "
                          "--workload lab_configs/workloads/distributed_ghz_8.yaml")
    result = run_bridge(args.config, args.workload, POLICIES[args.policy], args.seed)
    print(summary_text(result))
    folder = report_folder(result.config, result.workload, args.report)
    try:
        page, data = bridge_report(result, folder)
    except OSError as exc:
        raise ConfigError("--report", str(folder), f"cannot write the report ({exc.strerror})",
                          "name a folder you can write to") from None
    print(f"report: {page}\n        {data}")
    good, verdict = result.verdict()
    if not good:
        print(f"qnetlab: {verdict}", file=sys.stderr)
    return EXIT_OK if good else EXIT_CHECK_FAILED
