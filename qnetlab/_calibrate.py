"""`qnetlab calibrate CONFIG [NODE]` and `qnetlab bringup CONFIG`: the calibration graph.

``calibrate`` maintains the graph of a network lab (two_node_link.yaml: both nodes' labs and
the link) or of one lab (a station config with ``qnetlab.calibration``): everything, or one
node and its dependencies, printing what it checked, what it measured, what it recalibrated
and why. ``bringup`` is the whole story: the lab's keys if missing, the calibration of both
nodes, the heralding station and the link (from cold on a new lab), then heralded pairs
delivered over the control plane, and one report of it all.

Both take ``--profile``: ``sim`` runs every lab's twins in this process (the station lab with
the network's simulated link behind its tagger twin); ``real`` reaches every lab on its real
addresses: hardware, or ``qnetlab sim serve NETWORK`` for the network's rehearsal. The profile
goes to every calibration session and to the station process of the delivery.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ._format import format_fit, format_value
from ._runs import quiet_output
from ._telemetry import session_telemetry

EXIT_OK, EXIT_BAD = 0, 1


def add_parser(verbs: Any) -> None:
    calibrate = verbs.add_parser(
        "calibrate", help="maintain the calibration graph (check, measure, recalibrate)",
        description="Maintain the calibration graph of a network lab (e.g. "
                    "lab_configs/two_node_link.yaml) or of one lab's station config: check "
                    "each calibration's state, measure quickly where it is stale, "
                    "recalibrate what is out of spec, and print what was done and why. "
                    "Exit code 0 when the requested calibrations end good.")
    calibrate.add_argument("config", help="network or station YAML with a calibration graph")
    calibrate.add_argument("node", nargs="?", default=None,
                           help="one calibration (e.g. node_a.optical_resonance) and its "
                                "dependencies; default: the whole graph")
    calibrate.add_argument("--diagnose", action="store_true",
                           help="with NODE: walk back from it through its dependencies "
                                "while the data are out of spec, then recalibrate forward")
    _common(calibrate)
    calibrate.set_defaults(handler=_calibrate)

    bringup = verbs.add_parser(
        "bringup", help="calibrate both nodes and the link, then deliver pairs; one report",
        description="Bring a two-node lab up: generate its CURVE keys if missing, maintain "
                    "the whole calibration graph (from cold on a new lab, including each "
                    "node's transducer characterization), deliver --pairs heralded pairs, "
                    "and write one HTML + JSON report next to the link's database.")
    bringup.add_argument("config", help="network YAML, e.g. lab_configs/two_node_link.yaml")
    bringup.add_argument("--pairs", type=int, default=100, help="pairs to deliver (100)")
    _common(bringup)
    bringup.set_defaults(handler=_bringup)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=("sim", "real"), default="sim",
                        help="sim: simulated twins in this process (default; a network's "
                             "station lab gets the simulated link behind its tagger twin); "
                             "real: every lab's real addresses (hardware, or `qnetlab sim "
                             "serve CONFIG` for a rehearsal)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _session(config: str, profile: str, quiet: bool) -> Any:
    """A calibration session over a network config or a single station config."""
    from qnetlab.instruments.lab_config import load_config
    from qnetlab.network.network_config import config_kind
    from qnetlab.sequences.calibration import LabContext, Scope
    from qnetlab.sequences.calibration.graph_config import parse_calibration
    from qnetlab.sequences.calibration.network_lab import NetworkCalibration, network_calibration
    from qnetlab.sequences.calibration.nodes import lab_graph

    # A network config or one lab's, told by its top-level keys as `sim serve` tells them.
    if config_kind(config) == "network":
        from qnetlab.network.lab import require_keys
        from qnetlab.network.network_config import load_network_config

        # The link's calibrations read the other node's values over CURVE: without the
        # lab's keys nothing can start (a ConfigError naming the file and this config).
        require_keys(load_network_config(config))
        return network_calibration(config, profile=profile, quiet=quiet)
    lab_config = load_config(config)
    lab = parse_calibration(lab_config).lab
    db = Path(lab_config.database or Path(config).with_suffix(".db"))
    ctx = LabContext({lab: Scope(lab, db, Path(config), profile)}, quiet=quiet)
    return NetworkCalibration(None, lab_graph(lab_config), ctx)


def _resolve(graph: Any, name: str) -> str:
    if name in graph.nodes:
        return name
    matches = [n for n in graph.nodes if n.endswith(f".{name}")]
    if len(matches) == 1:
        return matches[0]
    raise KeyError(f"no calibration {name!r}; known: {', '.join(graph.order)}")


def maintain(session: Any, node: str | None = None, diagnose: bool = False) -> Any:
    """Run one maintenance (or diagnosis) over the session's graph; the `Maintainer`."""
    from qnetlab.sequences.calibration import Maintainer

    maintainer = Maintainer(session.graph, session.ctx)
    if node is None:
        maintainer.maintain_all()
    elif diagnose:
        maintainer.diagnose(node, "asked to diagnose")
        maintainer.maintain(node, "after the diagnosis")
    else:
        maintainer.maintain(node, "requested")
    return maintainer


def describe(maintainer: Any) -> list[str]:
    """What the session did, in the order it happened, as lines for a person."""
    verbs = {"check_state": "state", "check_data": "checked", "calibrate": "CALIBRATED",
             "skip": "skipped"}
    lines = []
    for action in maintainer.log:
        if action.operation == "check_state" and action.outcome == "pass":
            continue  # summarised below: nothing measured
        run = f" [run {action.run_id}]" if action.run_id is not None else ""
        detail = f" -- {action.detail}" if action.detail else ""
        lines.append(f"{verbs.get(action.operation, action.operation):<10} {action.node}: "
                     f"{action.outcome}{run}; why: {action.reason}{detail}")
    fresh = [a.node for a in maintainer.log if a.operation == "check_state"
             and a.outcome == "pass"]
    if fresh:
        lines.append(f"fresh, nothing measured: {', '.join(fresh)}")
    return lines


def _figure(session: Any, maintainer: Any) -> Path:
    """The graph as SVG, nodes coloured by state (`bringup_report.graph_figure`)."""
    from .bringup_report import graph_figure

    return graph_figure(session, maintainer)


def _calibrate(args: argparse.Namespace) -> int:
    with quiet_output(args.quiet), _session(args.config, args.profile, args.quiet) as session:
        try:
            node = None if args.node is None else _resolve(session.graph, args.node)
        except KeyError as exc:
            print(f"qnetlab: {exc.args[0]}", file=sys.stderr)
            return 2
        started = time.perf_counter()
        with session_telemetry(session):  # the labs that name telemetry publish
            maintainer = maintain(session, node, args.diagnose)
        figure = _figure(session, maintainer)
    print("\n".join(describe(maintainer)))
    bad = [n for n, s in maintainer.states.items() if s in ("failed", "skipped")]
    print(f"\n{len(maintainer.measured)} measurements, {len(maintainer.recalibrated)} "
          f"recalibrations in {time.perf_counter() - started:.1f} s; graph: {figure}")
    if bad:
        print(f"not good: {', '.join(bad)}", file=sys.stderr)
    return EXIT_BAD if bad else EXIT_OK


def _bringup(args: argparse.Namespace) -> int:
    from qnetlab.network.keys import LabKeyError, generate_lab_keys
    from qnetlab.network.network_config import load_network_config
    from qnetlab.network.telemetry_config import network_key_names

    from .bringup_report import bringup_report
    from .link import deliver

    config = load_network_config(args.config)
    try:  # keeps existing keys, rewrites a public key that does not match its secret
        generate_lab_keys(config.key_dir, network_key_names(config))  # + monitor, labs
    except LabKeyError as exc:
        raise exc.for_config(config.path) from None
    started = time.perf_counter()
    with quiet_output(args.quiet), _session(args.config, args.profile, args.quiet) as session:
        with session_telemetry(session):  # the labs that name telemetry publish
            maintainer = maintain(session)
        figure = _figure(session, maintainer)
        db = session.ctx.db_path("link")
    calibrated = time.perf_counter() - started
    lines = describe(maintainer)
    print("\n".join(lines))
    bad = [n for n, s in maintainer.states.items() if s in ("failed", "skipped")]
    delivery = None
    if not bad:
        delivery = deliver(config, args.pairs, profile=args.profile)
        print("\n" + delivery.text)
    report = bringup_report(config, db, maintainer, figure, delivery, calibrated,
                            time.perf_counter() - started, profile=args.profile,
                            session=session)
    html, json_path = report.write()
    print(f"\n{report.verdict}\nreport: {html}\nsummary: {json_path}")
    return EXIT_OK if report.good else EXIT_BAD


ERROR_SUFFIXES = ("_error", "_stderr")
"""A stored value named ``<name>_error`` (or ``_stderr``) is the one-sigma error of ``<name>``
(nodes that store the error as a value of its own): shown with it, not as a row."""


def stored_error(values: dict[str, Any], name: str) -> float:
    """The one-sigma error of the stored value `name` among a store's current `values`: its
    own, or its ``<name>_error`` companion's; 0 when neither is known."""
    return float(values[name].stderr or next(
        (values[name + s].value for s in ERROR_SUFFIXES if name + s in values), 0.0))


def calibrated_values(maintainer: Any) -> tuple[list[str], list[list[str]]]:
    """Every current calibrated value of the session's labs: value with its error, the node
    that measured it, its age against the node's timeout, and the node's state now (in
    words: 'fresh', 'calibrated', 'stale', ...)."""
    from .bringup_report import node_states

    ctx, graph = maintainer.ctx, maintainer.graph
    states, _ = node_states(maintainer)
    now = ctx.now()
    rows = []
    for scope in ctx.scopes:
        values = ctx.store(scope).current_values()
        companions = {name for name in values for suffix in ERROR_SUFFIXES
                      if name.endswith(suffix) and name.removesuffix(suffix) in values}
        for name, v in values.items():
            if name in companions:
                continue
            stderr = stored_error(values, name)
            timeout = graph[v.node].timeout if v.node in graph.nodes else None
            shown = (format_fit(v.value, stderr, v.unit) if stderr
                     else format_value(v.value, v.unit))
            rows.append([scope, name, shown, v.node, _age(now - v.time),
                         "" if timeout is None else _age(timeout), states.get(v.node, "")])
    return ["lab", "value", "now", "measured by", "age", "timeout", "state"], rows


def _age(seconds: float) -> str:
    """3 d 4 h, 2 h 5 min, 12 min, 40 s."""
    s = max(0, round(seconds))
    for unit, size, sub, subsize in (("d", 86400, "h", 3600), ("h", 3600, "min", 60)):
        if s >= size:
            rest = (s % size) // subsize
            return f"{s // size} {unit}" + (f" {rest} {sub}" if rest else "")
    return f"{s // 60} min" if s >= 60 else f"{s} s"
