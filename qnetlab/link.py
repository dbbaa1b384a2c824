"""`qnetlab link CONFIG --pairs N`: bring up the simulated link, deliver N pairs, report.

The simulated link (`sim_instruments.physics.link.LinkSimulator`) is built here from the
config and handed to the station process as a picklable factory: the network package never
imports the simulator itself.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np


def add_parser(verbs: Any) -> None:
    parser = verbs.add_parser(
        "link", help="bring up heralding station, node agents and orchestrator; deliver pairs",
        description="Start the heralding station (simulated link), both node agents and the "
                    "orchestrator as separate processes on the config's addresses, request "
                    "--pairs entangled pairs, and print the delivered rate and fidelity "
                    "beside the analytic expectation, the herald latency and every error "
                    "counted. All processes stop on exit, Ctrl-C or SIGTERM.")
    parser.add_argument("config", help="network YAML, e.g. lab_configs/two_node_link.yaml")
    parser.add_argument("--pairs", type=int, default=100, help="pairs to deliver (default 100)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="s to wait for the pairs (default: the config's "
                             "orchestrator.max_time + 10)")
    parser.set_defaults(handler=run)


def build_link_model(config: Any) -> Any:
    """The `LinkModel` of a `NetworkConfig` (transducer presets at their operating point)."""
    from qnetlab.instruments.errors import ConfigError
    from qnetlab.sim_instruments.physics.link import LinkModel, node_optics_from_preset

    optics = []
    for name in config.link.nodes:
        node = config.nodes[name]
        try:
            optics.append(node_optics_from_preset(node.transducer, node.fibre_length_km,
                                                  node.collection_efficiency))
        except ValueError as exc:
            raise ConfigError(str(config.path), f"nodes.{name}.transducer", str(exc),
                              "name a preset of sim_instruments/physics/presets.py") from None
    try:
        return LinkModel(config.link.scheme, optics[0], optics[1], **config.link.physics)
    except ValueError as exc:
        raise ConfigError(str(config.path), "link", str(exc), "fix the link's values") from None


def sim_source_factory(config: Any, model: Any) -> Any:
    from qnetlab.sim_instruments.physics.link import LinkSimulator

    return functools.partial(LinkSimulator, model, config.link.seed)


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

    @property
    def ok(self) -> bool:
        r = self.report
        return (not self.trouble and not r.failed and r.delivered == r.requested and r.agree
                and r.nodes_logged)


def deliver(config: Any, pairs: int, timeout: float | None = None) -> Delivery:
    """Start the station, both node agents and the orchestrator, deliver `pairs`, stop them
    all (also on Ctrl-C or SIGTERM) and read their report."""
    from qnetlab.network import ProcessGroup, sigterm_as_interrupt
    from qnetlab.network.lab import (
        check_ports,
        plan_lab,
        read_report,
        require_keys,
        start_lab,
        supervise,
    )
    from qnetlab.network.link_model import expected_fidelity, expected_pair_rate

    # What would only show as processes waiting for each other is refused before any starts.
    require_keys(config)
    check_ports(config)
    model = build_link_model(config)
    rate, fidelity = expected_pair_rate(model), expected_fidelity(model)
    timeout = timeout if timeout is not None else config.orchestrator.max_time + 10
    run_dir = config.run_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    plan = plan_lab(config, pairs=pairs, run_dir=run_dir, epoch_ns=time.monotonic_ns(),
                    goodness=fidelity, expected_pair_rate=rate, max_seconds=timeout + 5)
    try:
        with sigterm_as_interrupt(), ProcessGroup() as group:
            start_lab(group, plan, sim_source_factory(config, model))
            # Raises ConfigError (after stopping them all) when a process reports a key or
            # address fault: the run never started, so there is no summary to print.
            outcome = supervise(group, plan, config, timeout)
            time.sleep(0.1)  # the orchestrator's last verdicts reach the nodes
    except KeyboardInterrupt as exc:
        # The processes have stopped and written their files: say what the run kept.
        exc.add_note(_interrupted_note(plan, pairs))
        raise
    report = read_report(plan)
    return Delivery(report, rate, fidelity, outcome.trouble,
                    _format(config, plan, report, rate, fidelity))


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
    # A key or address fault raises ConfigError (`qnetlab.cli` exits 2), the config's path
    # already in its fix.
    delivery = deliver(config, args.pairs, args.timeout)
    print(delivery.text)
    if delivery.trouble or delivery.report.failed:
        print(f"qnetlab: {delivery.trouble or delivery.report.failed}", file=sys.stderr)
    return EXIT_OK if delivery.ok else EXIT_CHECK_FAILED


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} us"


def _format(config: Any, plan: Any, report: Any, rate: float, fidelity: float) -> str:
    a, b = config.link.nodes
    lengths = f"{config.nodes[a].fibre_length_km:g} + {config.nodes[b].fibre_length_km:g} km"
    counted = ("" if report.delivered_from == "orchestrator" else
               f" (counted from the {report.delivered_from}: the orchestrator left no result)")
    # Agreement on nothing is no agreement: a run that delivered nothing says so.
    agree = ("unknown (no node logged anything)" if not report.nodes_logged
             else "NO" if not report.agree
             else "nothing to agree on (no pair delivered)" if not report.delivered
             else "yes")
    lines = [f"link {config.link.id} ({config.link.scheme}, {a} - {b}, {lengths}): "
             f"{report.delivered} of {report.requested} pairs delivered{counted}; both nodes "
             f"agree: {agree}"]
    rate_err = report.rate_hz / math.sqrt(report.delivered) if report.delivered else math.nan
    lines.append(f"  {'':<10}{'delivered':<26}expected (analytic)")
    lines.append(f"  {'rate':<10}{f'{report.rate_hz:.1f} +- {rate_err:.1f} pairs/s':<26}"
                 f"{rate:.1f} pairs/s   (heralds over the same span: "
                 f"{report.herald_rate_hz:.1f} /s)")
    lines.append(f"  {'fidelity':<10}"
                 f"{f'{report.fidelity_mean:.3f} +- {report.fidelity_stderr:.3f}':<26}"
                 f"{fidelity:.3f}   (ground truth of the delivered pairs)")
    for label, lat in (("station hand-off", report.handoff_latency_s),
                       ("simulated decision", report.latency_s)):
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
