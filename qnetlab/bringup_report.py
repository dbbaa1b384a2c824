"""The bring-up report (`qnetlab bringup`) and the calibration graph's picture.

The terminal prints the maintenance log line by line (`_calibrate.describe`); the report tells
the same story in sentences (`story`), shows the graph as SVG with each node's state in words
(`node_states`: "never calibrated", "stale", "calibrated", ... never a bare "fail" for a node
that simply was never calibrated), every calibrated value now with its error, age and timeout,
the link's section (`link_report.link_block`) and the provenance.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ._format import format_fit, format_value

_BECAUSE: dict[str, str] = {
    "never calibrated": "it was never calibrated",
    "out of spec": "its check found it out of spec",
    "bad data": "its check gave data it could not judge",
    "requested": "it was asked for",
    "maintaining the graph": "the whole graph was being maintained",
    "after the diagnosis": "the diagnosis asked for it",
    "asked to diagnose": "a diagnosis was asked for",
}

_NEEDS: dict[str, str] = {
    "stale": "was past its timeout",
    "last attempt failed": "failed its last attempt",
    "dependency changed": "had a dependency recalibrated since its own calibration",
    "dependency not fresh": "had a dependency that was not fresh",
}


def _because(reason: str) -> str:
    if reason in _BECAUSE:
        return _BECAUSE[reason]
    if reason.startswith("dependency of "):
        return f"{reason.removeprefix('dependency of ')} depends on it"
    return reason


def _sentence(action: Any) -> str | None:
    """One action of the maintenance log as a sentence (None: said by another)."""
    run = f" (run {action.run_id})" if action.run_id is not None else ""
    detail = action.detail.rstrip(".")
    if action.operation == "check_state":
        if action.outcome in ("pass", "never calibrated"):
            return None  # the fresh are listed once; a calibration says "never calibrated"
        needs = _NEEDS.get(action.outcome, f"was {action.outcome}")
        return f"{action.node} {needs}" + (f": {detail}." if detail else ".")
    if action.operation == "check_data":
        return (f"{action.node} was measured{run} because {_because(action.reason)}, and "
                f"found {action.outcome}" + (f": {detail}." if detail else "."))
    if action.operation == "calibrate":
        done = "was calibrated" if action.outcome == "good" else "could not be calibrated"
        return (f"{action.node} {done}{run} because {_because(action.reason)}"
                + (f": {detail}." if detail else "."))
    if action.operation == "skip":
        return f"{action.node} was not calibrated: {action.reason}."
    return f"{action.node}: {action.operation} {action.outcome} ({action.reason})."


def story(maintainer: Any) -> list[str]:
    """What the session did, in the order it happened, as sentences."""
    out = [s for s in (_sentence(a) for a in maintainer.log) if s]
    fresh = [a.node for a in maintainer.log if a.operation == "check_state"
             and a.outcome == "pass"]
    if fresh:
        out.append(f"{len(fresh)} calibration{'s were' if len(fresh) > 1 else ' was'} fresh "
                   f"(within {'their' if len(fresh) > 1 else 'its'} timeout), so nothing was "
                   f"measured for {'them' if len(fresh) > 1 else 'it'}: {', '.join(fresh)}.")
    return out


def node_states(maintainer: Any) -> tuple[dict[str, str], dict[str, str]]:
    """(state, detail) per node of the graph in words: what this session left it as
    ('calibrated', 'in spec', 'failed', 'skipped', ...; 'fresh' for one that passed its
    state check), and for a node the session did not touch its stored state ('fresh',
    'stale', 'never calibrated'). The detail is its last calibration's age."""
    from ._calibrate import _age

    states, details = {}, {}
    ctx, graph = maintainer.ctx, maintainer.graph
    for name in graph.order:
        state = maintainer.states.get(name)
        last = ctx.store(graph[name].scope).last_calibration(name)
        if state is None:
            ok, why = maintainer.check_state(name)
            state = ("fresh" if ok else "never calibrated" if last is None
                     else "stale" if why.startswith("stale") else "not checked")
        elif state == "good":
            state = "fresh"
        if state == "skipped" and last is None:
            details[name] = "never calibrated"
        elif last is not None:
            details[name] = f"calibrated {_age(ctx.now() - last.time)} ago"
        states[name] = state
    return states, details


def graph_figure(session: Any, maintainer: Any) -> Path:
    """The calibration graph as SVG next to the first lab's database; its path."""
    from qnetlab.sequences.calibration.graph_svg import graph_svg

    folder = session.ctx.db_path(next(iter(session.ctx.scopes))).parent
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"calibration_graph_{time.strftime('%Y%m%d-%H%M%S')}.svg"
    states, details = node_states(maintainer)
    path.write_text(graph_svg(session.graph, states, details), encoding="utf-8")
    return path


def _pm(value: float, error: float, unit: str = "") -> str:
    """'33.1 ± 4.2', or the value alone when its error is unknown."""
    if error > 0 and error == error and abs(error) != float("inf"):
        return format_fit(value, error, unit)
    return format_value(value, unit)


def _seed(config: Any, profile: str) -> int | None:
    """The simulated world's seed (sim profile only: a real bench has none)."""
    if profile != "sim":
        return None
    seed = (getattr(config, "simulation", None) or {}).get("seed")
    return None if seed is None else int(seed)


def bringup_report(config: Any, db: Path, maintainer: Any, graph: Path, delivery: Any,
                   calibrated: float, total: float, *, profile: str, session: Any) -> Any:
    """The bring-up's `Report` (module docstring)."""
    from qnetlab.sequences.analysis import FitValue
    from qnetlab.sequences.report import Report, ReportFigure, ReportSection
    from qnetlab.sequences.report_provenance import collect_provenance

    from ._calibrate import calibrated_values, stored_error
    from .link_report import arm_histograms, link_block

    bad = [n for n, s in maintainer.states.items() if s in ("failed", "skipped")]
    summary: dict[str, FitValue | float | str] = {
        "calibrations": f"{len(maintainer.recalibrated)} recalibrated, "
                        f"{len(maintainer.measured)} measurements, "
                        f"{format_value(round(calibrated, 1), 's')}"}
    for lab in config.link.nodes:
        values = maintainer.ctx.store(lab).current_values()
        for name in ("transducer_efficiency", "transducer_added_noise"):
            if name in values:
                value, error = values[name], stored_error(values, name)
                summary[f"{lab} {name}"] = (FitValue(value.value, error, value.unit) if error
                                            else format_value(value.value, value.unit))
    stem = f"bringup_{time.strftime('%Y%m%d-%H%M%S')}"
    blocks = []
    if delivery is not None:
        r = delivery.report
        summary["pairs delivered"] = (f"{r.delivered} of {r.requested}, both nodes agree: "
                                      f"{r.agreement}")
        rate_err = r.rate_hz / r.delivered ** 0.5 if r.delivered else float("nan")
        summary["pair rate"] = (f"{_pm(r.rate_hz, rate_err)} /s (expected "
                                f"{_pm(delivery.expected_rate, delivery.expected_rate_error)} /s)")
        truth = delivery.truth
        expected = _pm(delivery.expected_fidelity, delivery.expected_fidelity_error)
        summary["mean fidelity"] = (
            f"{_pm(truth.fidelity_mean, truth.fidelity_stderr)} (simulation ground "
            f"truth; genuine {truth.genuine_fraction:.3f}; expected {expected})"
            if truth is not None else
            f"not measured on the {delivery.profile} profile (expected {expected})")
        blocks.append(link_block(config, delivery, db.parent, stem,
                                 arm_histograms(session.graph, db.parent), delivery.run_id))
    good = not bad and delivery is not None and delivery.ok
    if bad:
        verdict = f"not brought up: {', '.join(bad)} not good (see what was done)"
    elif delivery is None or not delivery.ok:
        verdict = "calibrated, but the link did not deliver: " + (
            "no delivery" if delivery is None else delivery.trouble or "see the link results")
    else:
        verdict = (f"brought up in {format_value(round(total), 's')}: both nodes and the link "
                   f"calibrated, {delivery.report.delivered} pairs delivered")
    operation = {"calibrate": "calibration", "check_data": "check"}
    sections = [ReportSection(f"{a.node}: {operation.get(a.operation, a.operation)}, run "
                              f"{a.run_id}", a.run, _sentence(a) or a.detail,
                              maintainer.graph[a.node].scope)
                for a in maintainer.log if a.run is not None]
    states, _ = node_states(maintainer)
    figure = ReportFigure(graph, "The calibration graph: each calibration with its "
                                 "dependencies to its left, coloured by its state after this "
                                 "session (legend), with the age of its last calibration.")
    return Report(title=f"Network bring-up: {Path(config.path).name}", db_path=db, good=good,
                  verdict=verdict, summary=summary, sections=sections, figures=[figure],
                  notes=story(maintainer), blocks=blocks,
                  extra={"states": maintainer.states, "node_states": states},
                  tables={"Calibrated values now": calibrated_values(maintainer)},
                  provenance=collect_provenance(config.path, seed=_seed(config, profile),
                                                profile=profile),
                  name=stem)
