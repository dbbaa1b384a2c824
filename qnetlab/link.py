"""`qnetlab link CONFIG --pairs N [--profile sim|real]`: deliver N pairs over the network, report.

Everything comes from the network config and the lab's calibrations, nothing from simulator
presets: the heralding windows from the calibrated arm delays (`herald_windows`), the expected
pair rate and fidelity from the calibrated parts (`expected_link`). The heralding station is a
lab (``station.lab``): its process loads it with the profile given and decides heralds from its
time tagger's stream.

Profile ``sim``: the station lab's twins run inside the station process, with the network's link
simulation (`NetworkConfig.link_simulation`) behind the tagger twin, which writes its ground
truth to ``<run dir>/twin_truth.npy``. After the run that truth is joined to the delivered pairs
by attempt id and printed, labelled as simulation ground truth (`join_truth`). Profile ``real``:
the real addresses (hardware, or ``qnetlab sim serve NETWORK``); a real bench knows no truth,
so none is printed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._format import format_value

TRUTH_FILE = "twin_truth.npy"
"""Where, in a sim run's folder, the tagger twin writes its ground truth."""


def add_parser(verbs: Any) -> None:
    parser = verbs.add_parser(
        "link", help="bring up heralding station, node agents and orchestrator; deliver pairs",
        description="Start the heralding station (its time tagger and detectors, as its lab "
                    "config says), both node agents and the orchestrator as separate "
                    "processes on the config's addresses, request --pairs entangled pairs, "
                    "and print the delivered rate beside the expectation from the lab's "
                    "calibrations, the herald latency and every error counted (with --profile "
                    "sim, also the delivered pairs' fidelity as the simulation's ground truth "
                    "knows it). The link must be calibrated first (`qnetlab calibrate` or "
                    "`qnetlab bringup`). All processes stop on exit, Ctrl-C or SIGTERM.")
    parser.add_argument("config", help="network YAML, e.g. lab_configs/two_node_link.yaml")
    parser.add_argument("--pairs", type=int, default=100, help="pairs to deliver (default 100)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="s to wait for the pairs (default: the config's "
                             "orchestrator.max_time + 10)")
    parser.add_argument("--profile", choices=("sim", "real"), default="sim",
                        help="sim: the station's twins and the simulated link in the station "
                             "process (default); real: the station lab's real addresses (point "
                             "them at `qnetlab sim serve NETWORK` for a rehearsal)")
    from .link_role import add_role_arguments

    add_role_arguments(parser)
    parser.set_defaults(handler=run)


# -- what the calibrations say ----------------------------------------------------------------

@dataclass(frozen=True)
class CalibratedLink:
    """What the station and the nodes are set up with, from the lab's calibrations."""

    windows: Any
    """network.herald_engine.HeraldWindows from the calibrated arm delays."""
    rate: float
    """Expected heralds (= pairs, none expiring) per second from the calibrated parts, /s."""
    rate_error: float
    fidelity: float
    """Expected mean fidelity of a heralded pair."""
    fidelity_error: float


def link_database(config: Any) -> Path:
    """The link's calibration database, as the calibration session opens it."""
    return Path(config.database or config.run_dir / "link.db")


def _lab_database(lab: Any, path: Path) -> Path:
    return Path(lab.database or path.with_suffix(".db"))


def calibrated_link(config: Any) -> CalibratedLink:
    """Windows and expectation from the lab's calibrations (the link's arm delays, the
    station's detectors, both nodes' transducers at their operating points), read from their
    databases on this host. `MissingCalibration` (a ConfigError naming the value and
    `qnetlab calibrate`) when one was never calibrated."""
    from qnetlab.instruments.lab_config import load_config
    from qnetlab.sequences.calibration.link_values import (
        MissingCalibration,
        calibrated_parts,
        expected_link,
        herald_windows,
    )
    from qnetlab.sequences.calibration.store import ParameterStore

    fix = (f"calibrate the lab first: qnetlab calibrate {config.path} (or qnetlab bringup "
           f"{config.path}, which calibrates and then delivers)")
    stores: dict[str, Path] = {"link": link_database(config)}
    station_lab = load_config(config.station.lab)
    stores["station"] = _lab_database(station_lab, config.station.lab)
    for name in config.link.nodes:
        node = config.nodes[name]
        if node.station is None:
            raise config.error(f"nodes.{name}.station", f"node {name} names no lab of its "
                               "own, so nothing calibrated its transducer",
                               "add 'station: <its lab config>.yaml'")
        stores[name] = _lab_database(load_config(node.station), node.station)
    for scope, db in stores.items():
        # Opening a missing database would create an empty one: say what is missing instead.
        if not db.is_file():
            raise MissingCalibration(str(db), scope, f"no calibration database for {scope}",
                                     fix)
    link_store = ParameterStore(stores["link"])
    windows = herald_windows(config, link_store)
    nodes = {name: {k: v.value for k, v in ParameterStore(stores[name]).current_values().items()}
             for name in config.link.nodes}
    parts = calibrated_parts(config, station_lab, ParameterStore(stores["station"]), link_store,
                             nodes)
    expected = expected_link(config, parts)
    return CalibratedLink(windows, expected.rate.value, expected.rate.error,
                          expected.fidelity.value, expected.fidelity.error)


# -- the run ------------------------------------------------------------------------------------

@dataclass
class SimulationTruth:
    """The delivered pairs as the simulated world saw them (sim profile only)."""

    delivered: int
    """Delivered pairs (both nodes' logs hold them as delivered)."""
    with_truth: int
    """Of those, pairs whose attempt has a truth row (a detector clicked in a true arrival
    window)."""
    genuine: int
    """Of those, pairs the twin marks genuine (both nodes' photons behind the herald)."""
    fidelity_mean: float
    """Mean fidelity of the delivered pairs with a truth row; NaN without any."""
    fidelity_stderr: float
    truth_file: Path
    bell_checked: int = 0
    """Delivered pairs whose herald (as the station logged it) could be held against the
    Bell state the world says a correct engine heralds (a truth row with a herald)."""
    bell_agree: int = 0
    """Of those, pairs whose heralded Bell state is the world's."""

    @property
    def genuine_fraction(self) -> float:
        """Genuine pairs over all delivered (a pair without a truth row is not genuine: no
        photon of either node arrived in its windows, dark counts heralded it)."""
        return self.genuine / self.delivered if self.delivered else float("nan")


NO_HERALD = 255
"""The truth's bell_state of an attempt a correct engine would not herald."""


def join_truth(truth: np.ndarray, delivered_attempts: np.ndarray, truth_file: Path,
               heralds: np.ndarray | None = None, *, ages_s: np.ndarray | None = None,
               dephasing_rate: float = 0.0) -> SimulationTruth:
    """Join the twin's truth rows (``TWIN_TRUTH_DTYPE``: attempt_id, bell_state, fidelity,
    genuine, ...) to the attempt ids of the delivered pairs; with the delivered pairs'
    `heralds` (rows with attempt_id and bell_state), also check each heralded Bell state.

    The truth's fidelity is the pair's when both nodes knew of its herald; with `ages_s` (per
    delivered attempt, in its order: s from then to its delivery) and `dephasing_rate` (1/s,
    the sum of the nodes' 1 / T2), a genuine pair's coherence decays by exp(-rate x age)
    until delivery (docs/link.md#2-schemes); the others hold none to lose."""
    delivered = np.asarray(delivered_attempts, dtype=np.uint64)
    attempts = np.unique(delivered)
    # A row per attempt; should the twin have written one twice (a periodic save and the
    # final one), the first is as good as any.
    ids, first = np.unique(truth["attempt_id"], return_index=True)
    rows = truth[first]
    found = rows[np.isin(ids, attempts)]
    fidelity = found["fidelity"].astype(float)
    if ages_s is not None and dephasing_rate > 0.0 and len(found):
        order = np.argsort(delivered, kind="stable")
        at = np.searchsorted(delivered[order], found["attempt_id"])
        age = np.asarray(ages_s, dtype=float)[order][at]
        decay = np.exp(-dephasing_rate * np.maximum(age, 0.0))
        fidelity = np.where(found["genuine"], 0.5 + (fidelity - 0.5) * decay, fidelity)
    # A pair the station heralded whose truth row says no herald (nan): a click within the
    # windows' calibration error of an edge (a long photon's tail, a noise photon), judged
    # at the true arrival windows by the twin and at the calibrated ones by the station. The
    # truth has no state for it: the mean is over the pairs it judged.
    fidelity = fidelity[np.isfinite(fidelity)]
    checked = agree = 0
    if heralds is not None and len(found):
        heralded = heralds[np.isin(heralds["attempt_id"], found["attempt_id"])]
        at = np.searchsorted(found["attempt_id"], heralded["attempt_id"])
        world = found["bell_state"][at]
        judged = world != NO_HERALD
        checked = int(np.count_nonzero(judged))
        agree = int(np.count_nonzero(judged & (world == heralded["bell_state"])))
    return SimulationTruth(
        delivered=len(attempts), with_truth=len(found),
        genuine=int(np.count_nonzero(found["genuine"])),
        fidelity_mean=float(fidelity.mean()) if len(fidelity) else float("nan"),
        fidelity_stderr=(float(fidelity.std(ddof=1) / math.sqrt(len(fidelity)))
                         if len(fidelity) > 1 else float("nan")),
        truth_file=truth_file, bell_checked=checked, bell_agree=agree)


def delivered_attempts(run_dir: Path, nodes: list[str], link_id: int) -> np.ndarray:
    """Attempt ids of the pairs every node's own log holds as delivered (the orchestrator
    confirmed them to each)."""
    from qnetlab.network.lab import read_pairs
    from qnetlab.network.node_state import PairEvent

    sets = []
    for node in nodes:
        log = read_pairs(run_dir, node)
        done = log[(log["event"] == PairEvent.DELIVERED) & (log["link"] == link_id)]
        sets.append(set(done["attempt_id"].tolist()))
    both = set.intersection(*sets) if sets else set()
    return np.array(sorted(both), dtype=np.uint64)


def delivered_ages(run_dir: Path, nodes: list[str], link_id: int,
                   attempts: np.ndarray) -> np.ndarray:
    """s from each delivered attempt's herald to its delivery on the later of the nodes'
    logs (station time): the age at which the pair is handed on."""
    from qnetlab.network.lab import read_pairs
    from qnetlab.network.node_state import PairEvent

    ages = np.zeros(len(attempts))
    for node in nodes:
        log = read_pairs(run_dir, node)
        done = log[(log["event"] == PairEvent.DELIVERED) & (log["link"] == link_id)]
        age = dict(zip(done["attempt_id"].tolist(),
                       ((done["event_ps"] - done["herald_ps"]) * 1e-12).tolist(), strict=True))
        ages = np.maximum(ages, [age.get(a, 0.0) for a in np.asarray(attempts).tolist()])
    return ages


def read_simulation_truth(run_dir: Path, nodes: list[str], link_id: int,
                          heralds: np.ndarray | None = None,
                          dephasing_rate: float = 0.0) -> SimulationTruth | None:
    """The twin's truth joined to the delivered pairs (and their `heralds`, if given), or
    None when the twin wrote none; with `dephasing_rate` (1/s, the simulated nodes' summed
    1 / T2) each pair's fidelity at its delivery."""
    from qnetlab.sim_instruments.link_events import read_twin_truth

    path = run_dir / TRUTH_FILE
    if not path.exists():
        return None
    attempts = delivered_attempts(run_dir, nodes, link_id)
    ages = (delivered_ages(run_dir, nodes, link_id, attempts) if dephasing_rate > 0.0
            else None)
    return join_truth(read_twin_truth(path), attempts, path, heralds, ages_s=ages,
                      dephasing_rate=dephasing_rate)


@dataclass
class Delivery:
    """What one `qnetlab link` session delivered."""

    report: Any
    """network.lab.LinkReport"""
    expected_rate: float
    expected_fidelity: float
    trouble: str
    text: str
    """The printed summary."""
    profile: str = "sim"
    truth: SimulationTruth | None = None
    """Sim profile: the delivered pairs' ground truth (None on the real profile, or when the
    twin wrote none)."""
    expected_rate_error: float = math.nan
    """One-sigma error of `expected_rate` from the calibrations' errors, /s."""
    expected_fidelity_error: float = math.nan
    run_id: int | None = None
    """The run's dataset in the link's database."""

    @property
    def ok(self) -> bool:
        r = self.report
        return (not self.trouble and not r.failed and r.delivered == r.requested and r.agree
                and r.nodes_logged)


def deliver(config: Any, pairs: int, timeout: float | None = None, *,
            profile: str = "sim") -> Delivery:
    """Start the station (its lab on `profile`), both node agents and the orchestrator,
    deliver `pairs`, stop them all (also on Ctrl-C or SIGTERM) and read their report."""
    from qnetlab.network import ProcessGroup, sigterm_as_interrupt
    from qnetlab.network.lab import (
        check_ports,
        plan_lab,
        read_report,
        require_keys,
        start_lab,
        supervise,
    )

    if profile not in ("sim", "real"):
        raise ValueError(f"profile must be 'sim' or 'real', not {profile!r}")
    # What would only show as processes waiting for each other is refused before any starts.
    require_keys(config)
    check_ports(config)
    run_dir = config.run_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    simulation = None
    if profile == "sim":  # the world behind the station's twins, its truth in the run folder
        simulation = {**config.link_simulation(), "truth_file": str(run_dir / TRUTH_FILE)}
    expected = calibrated_link(config)
    if simulation is not None:  # the twin's truth judges heralds where the station looks
        simulation["herald_windows_ps"] = [list(row) for row in expected.windows.offsets_ps]
    timeout = timeout if timeout is not None else config.orchestrator.max_time + 10
    plan: Any = None  # the LabPlan, once made
    try:
        # Entered first, so stopped last: the station closes its tagger before the twins go.
        with sigterm_as_interrupt(), ProcessGroup() as twins, ProcessGroup() as group:
            plan = plan_lab(config, pairs=pairs, run_dir=run_dir,
                            epoch_ns=time.monotonic_ns(), goodness=expected.fidelity,
                            expected_pair_rate=expected.rate, max_seconds=timeout + 5,
                            profile=profile, simulation=simulation, windows=expected.windows)
            if simulation is not None:  # the station's twins in a process of their own
                from .station_twin import with_station_twins

                plan = with_station_twins(plan, twins, f"{config.station.name}_twins")
            start_lab(group, plan)
            # Raises ConfigError (after stopping them all) when a process reports a key or
            # address fault: the run never started, so there is no summary to print.
            outcome = supervise(group, plan, config, timeout)
            time.sleep(0.1)  # the orchestrator's last verdicts reach the nodes
    except KeyboardInterrupt as exc:
        # The processes have stopped and written their files: say what the run kept.
        if plan is not None:
            exc.add_note(_interrupted_note(plan, pairs))
        raise
    report = read_report(plan)
    truth = (read_simulation_truth(plan.run_dir, list(plan.nodes), config.link.id,
                                   report.delivered_heralds,
                                   sum(1.0 / n["memory_t2"]
                                       for n in config.simulation["nodes"].values()
                                       if n.get("memory_t2")))
             if profile == "sim" else None)
    text = _format(config, plan, report, expected.rate, expected.fidelity, truth=truth,
                   profile=profile, rate_error=expected.rate_error,
                   fidelity_error=expected.fidelity_error)
    from qnetlab.network import write_link_dataset

    db = link_database(config)
    run_id = write_link_dataset(db, report, config.path, expected_rate=expected.rate,
                                expected_fidelity=expected.fidelity, profile=profile)
    text += f"\ndataset: run {run_id} of {db} (`qnetlab runs --db {db}`)"
    return Delivery(report, expected.rate, expected.fidelity, outcome.trouble, text,
                    profile, truth, expected.rate_error, expected.fidelity_error, run_id)


def _interrupted_note(plan: Any, pairs: int) -> str:
    from qnetlab.network.lab import read_report

    try:
        report = read_report(plan)
    except Exception as exc:  # a note must never hide the interrupt
        return f"link: run folder {plan.run_dir} (its files could not be read: {exc})"
    return (f"link: {report.delivered} of {pairs} pairs delivered before the stop "
            f"(counted from the {report.delivered_from}); run folder {plan.run_dir}")


def run(args: argparse.Namespace) -> int:
    from qnetlab.network.network_config import load_network_config

    from .cli import EXIT_CHECK_FAILED, EXIT_CONFIG, EXIT_OK

    if args.pairs < 1:
        print("qnetlab: --pairs must be at least 1", file=sys.stderr)
        return EXIT_CONFIG
    config = load_network_config(args.config)
    if args.timeout is not None and args.role is not None:
        print("qnetlab: --timeout bounds the whole link; with --role use --max-seconds",
              file=sys.stderr)
        return EXIT_CONFIG
    if args.role is not None:  # one process, on this host (docs/link.md#8-across-hosts)
        from .link_role import run_role

        return run_role(args, config)
    if args.run_dir is not None or args.max_seconds is not None:
        print("qnetlab: --run-dir and --max-seconds go with --role (one process of the link)",
              file=sys.stderr)
        return EXIT_CONFIG
    # A key, address or calibration fault raises ConfigError (`qnetlab.cli` exits 2), the
    # config's path already in its fix.
    delivery = deliver(config, args.pairs, args.timeout, profile=args.profile)
    print(delivery.text)
    from .link_report import link_report

    page, _ = link_report(config, delivery, link_database(config)).write()
    print(f"report: {page}")
    if delivery.trouble or delivery.report.failed:
        print(f"qnetlab: {delivery.trouble or delivery.report.failed}", file=sys.stderr)
    return EXIT_OK if delivery.ok else EXIT_CHECK_FAILED


# -- the summary --------------------------------------------------------------------------------

def _us(seconds: float) -> str:
    """A latency or clock figure with an SI prefix: '180 µs', '2.5 ms'."""
    return format_value(float(f"{seconds:.3g}"), "s")


def _pm(value: float, error: float, digits: int) -> str:
    return f"{value:.{digits}f}" + (f" ± {error:.{digits}f}" if math.isfinite(error) else "")


def _format(config: Any, plan: Any, report: Any, rate: float, fidelity: float, *,
            truth: SimulationTruth | None = None, profile: str = "sim",
            rate_error: float = math.nan, fidelity_error: float = math.nan) -> str:
    a, b = config.link.nodes
    lengths = f"{config.nodes[a].fibre_length_km:g} + {config.nodes[b].fibre_length_km:g} km"
    counted = ("" if report.delivered_from == "orchestrator" else
               f" (counted from the {report.delivered_from}: the orchestrator left no result)")
    agree = report.agreement
    lines = [f"link {config.link.id} ({config.link.scheme}, {a} - {b}, {lengths} nominal, "
             f"profile {profile}): {report.delivered} of {report.requested} pairs "
             f"delivered{counted}; both nodes agree: {agree}"]
    rate_err = report.rate_hz / math.sqrt(report.delivered) if report.delivered else math.nan
    lines.append(f"  {'':<10}{'delivered':<26}expected (from the calibrations)")
    lines.append(f"  {'rate':<10}{f'{report.rate_hz:.1f} ± {rate_err:.1f} pairs/s':<26}"
                 f"{_pm(rate, rate_error, 1)} pairs/s   (heralds over the same span: "
                 f"{report.herald_rate_hz:.1f} /s)")
    if truth is not None:
        shown = (f"{truth.fidelity_mean:.3f} ± {truth.fidelity_stderr:.3f}"
                 if truth.with_truth else "n/a")
        lines.append(f"  {'fidelity':<10}{shown:<26}{_pm(fidelity, fidelity_error, 3)}   "
                     f"(simulation ground "
                     f"truth of {truth.with_truth} delivered pairs; genuine "
                     f"{truth.genuine} of {truth.delivered} = {truth.genuine_fraction:.3f})")
        if truth.bell_checked:
            lines.append(f"  {'':<10}Bell state heralded as the simulated world says: "
                         f"{truth.bell_agree} of {truth.bell_checked} delivered pairs "
                         "(simulation ground truth)")
    else:
        lines.append(f"  {'fidelity':<10}{'not measured':<26}"
                     f"{_pm(fidelity, fidelity_error, 3)}   (a real "
                     "link's fidelity takes state tomography, not a herald count)")
    for label, name in (("tag block at the station", "block_latency_s"),
                        ("station hand-off", "handoff_latency_s"),
                        ("herald timestamp", "latency_s")):
        lat = np.asarray(getattr(report, name, np.zeros(0)))
        if len(lat):
            median, p99 = np.percentile(lat, [50, 99])
            lines.append(f"  herald latency, {label} -> later of the two node agents "
                         f"(same-host monotonic clock): median {_us(median)}, p99 "
                         f"{_us(p99)}, max {_us(lat.max())} over {len(lat)} heralds")
    for name, clock in report.clock.items():
        error = clock.get("error_s")
        lines.append(f"  clock sync {name}: offset residual {_us(clock['residual_rms_s'])}, "
                     f"one-way delay {_us(clock['delay_s'])}"
                     + (f", error vs true offset {_us(error)}" if error is not None else ""))
    lines.append("  errors: " + ", ".join(f"{k} {v}" for k, v in report.errors.items()))
    lines.append(f"  run files: {plan.run_dir}")
    return "\n".join(lines)
