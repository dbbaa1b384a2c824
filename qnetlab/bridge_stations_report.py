"""The report of a `qnetlab bridge --stations` run: the simulation's page, JSON and timeline
(`bridge_report`), filled from what the processes wrote instead of from a simulation.

The orchestrator's decision log gives the decisions (their times shifted to the workload's
first request), the reconfigurations and re-checks, the pairs each OK delivered and the
ERRs' codes; the timeline read from it (`bridge_report.read_timeline`) gives each station's
time heralding for a request (its utilisation, over the makespan); the application's record
(`bridge_stations.WorkloadOutcome`) gives the makespan, the operations and the request
latencies; the orchestrator's summary the pairs that expired. The lower bound is the
simulation's (`network.bridge.makespan_bound`), for the same workload on the same bridge.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROCESS_MODE = ("real-time run of every process (world, stations, the QNUs' node agents, "
                "orchestrator); simulated link physics behind the taggers and the switch")
"""What a `--stations` run is, in its report."""
DECISIONS = "bridge_orchestrator_decisions.jsonl"


@dataclass(frozen=True)
class LoggedDecision:
    """A decision as the orchestrator's log has it (what the timeline reads)."""

    time: float
    """s since the workload's first request."""
    action: str
    request: str | None
    station: str | None
    qnus: tuple[str, ...]
    ready_at: float | None
    code: str | None


def decision_records(run_dir: Path) -> list[dict[str, Any]]:
    """The orchestrator's decisions in `run_dir` as logged, from its first ACK on."""
    records = [json.loads(line) for line in
               (run_dir / DECISIONS).read_text(encoding="utf-8").splitlines() if line.strip()]
    decided = [r for r in records if "action" in r]
    start = min((r["time"] for r in decided if r["action"] == "ACK"), default=0.0)
    return [r for r in decided if r["time"] >= start]


def logged_decisions(records: list[dict[str, Any]]) -> list[LoggedDecision]:
    """`decision_records` as the timeline reads them, time 0 at the first."""
    start = records[0]["time"] if records else 0.0
    return [LoggedDecision(r["time"] - start, r["action"], r.get("request"), r.get("station"),
                           tuple(r.get("qnus", ())),
                           None if r.get("ready_at") is None else r["ready_at"] - start,
                           r.get("code"))
            for r in records]


def stations_result(run: Any, workload: Any, stations: list[str], seed: int) -> Any:
    """A `network.bridge.BridgeResult` of the `--stations` run `run` (a
    `bridge_stations.StationsRun`) of `workload`."""
    from qnetlab.network.bridge import BridgeResult

    from .bridge_report import read_timeline

    records = decision_records(run.run_dir)
    decisions = logged_decisions(records)
    outcome, counters = run.outcome, run.summary.get("counters", {})
    makespan = outcome.makespan if math.isfinite(outcome.makespan) else max(
        (d.time for d in decisions), default=0.0)
    timeline = read_timeline(decisions, stations, makespan)
    pairs = sum(int((r.get("values") or {}).get("pairs", 1)) for r in records
                if r["action"] == "OK")
    errors = Counter(d.code or "?" for d in decisions if d.action == "ERR")
    failed = [why for why in outcome.failed.values() if why.startswith("ERR")]
    done = len(outcome.done)
    return BridgeResult(
        workload.name, "orchestrator", seed, makespan=makespan, operations_done=done,
        operations_failed=len(failed), operations_total=len(workload.operations),
        pairs_delivered=pairs,
        pairs_wasted=counters.get("pairs_expired", 0) + counters.get("pairs_wasted", 0),
        reconfigurations=counters.get("decision_reconfigure", 0),
        rechecks=counters.get("decision_recheck", 0),
        station_busy={s: sum(span.end - span.start for span in timeline.heralding[s])
                      for s in stations},
        latencies=list(outcome.latencies), errors=dict(errors),
        decision_count=len(decisions), decisions=decisions,  # type: ignore[arg-type]
        complete=done == len(workload.operations) and not outcome.timed_out,
        hit_max_time=outcome.timed_out)


def write_stations_report(config: Any, workload: Any, workload_path: Path, run: Any,
                          seed: int) -> tuple[Path, list[str]]:
    """``bridge_<workload>.html`` and ``.json`` and ``timeline_orchestrator.png`` in the run
    folder, with the lower bound: (the page, the terminal's lines on it)."""
    from qnetlab.network.bridge import makespan_bound

    from ._format import seconds_text
    from .bridge_cmd import BridgeRun
    from .bridge_report import bridge_report

    topology = config.topology()
    result = stations_result(run, workload, list(topology.stations), seed)
    bridge = BridgeRun(config, topology, workload, Path(workload_path), seed,
                       makespan_bound(workload, topology), {"orchestrator": result})
    agreement = "" if run.agreement is None else run.agreement.line().strip() + "."
    about = (f"This run is a {PROCESS_MODE}: the orchestrator process scheduled the "
             "workload's requests as an application sent them, set every path up through "
             "the Polatis twin, and took the pairs the heralding-station processes decided "
             "from their taggers' tags, each held by both QNUs' node agents. "
             f"{agreement} Times are wall-clock seconds from the workload's first request.")
    html, _ = bridge_report(bridge, run.run_dir, mode=PROCESS_MODE, about=about,
                            decision_log=DECISIONS)
    latency = result.latency_summary()
    return html, [
        "  utilisation (heralding for a request, over the makespan): " + ", ".join(
            f"{s} {100 * u:.1f} %" for s, u in result.utilisation.items()),
        "  request latency: " + ", ".join(f"{q} {seconds_text(latency[q])}" for q in latency)
        + f"; makespan / lower bound {result.makespan / bridge.bound.expected:.2f}"
        f" (bound {seconds_text(bridge.bound.expected)})",
        f"  report: {html}"]


__all__ = ["PROCESS_MODE", "LoggedDecision", "decision_records", "logged_decisions",
           "stations_result", "write_stations_report"]
