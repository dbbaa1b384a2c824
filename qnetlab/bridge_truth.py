"""The simulation's ground truth of a `qnetlab bridge --stations` run (sim profile only): the
delivered pairs joined to what the bridge world's station twins knew.

The files, all in the run folder:

- ``<station>_truth.npy`` and ``<station>_joins.jsonl`` (`sim_instruments.bridge_world`): per
  attempt with a click in a true window, whether the herald is genuine and its fidelity;
  per change of the station's arms, from which attempt on the switch joined which QNUs;
- ``<station>_heralds.npy`` (the heralding-station process, `messages.HERALD_DTYPE`): every
  herald it decided, its seq and attempt id;
- ``bridge_orchestrator_decisions.jsonl``: each herald the orchestrator took for a request
  (``herald_taken``: station, seq) and each request's OK.

A delivered request's pairs are the last ``pairs`` heralds taken for it before its OK (its
held pairs: a pair that expired while it waited was taken earlier; a few heralds taken
after the OK, before the station was released, belong to no request). Each is joined to
its station's truth by attempt id. A pair is genuine when the truth row says so AND the
switch had joined the request's two QNUs to that station at that attempt; a pair with no
truth row (dark counts heralded it, or its attempt straddled a switch change) or heralded
while the arms held other QNUs is not. The mean true fidelity is over the pairs the truth
judged between the request's QNUs (at herald time: the memories' wait until delivery is not
applied).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ORCHESTRATOR = "bridge_orchestrator"


@dataclass
class PairTruth:
    """One QNU pair's delivered pairs as the simulated world saw them."""

    delivered: int = 0
    with_truth: int = 0
    """Pairs whose attempt has a truth row with the request's QNUs joined."""
    genuine: int = 0
    other_qnus: int = 0
    """Pairs heralded while the switch joined other QNUs (or none) to the station."""
    fidelities: list[float] = field(default_factory=list)

    @property
    def genuine_fraction(self) -> float:
        return self.genuine / self.delivered if self.delivered else math.nan

    @property
    def not_genuine(self) -> int:
        return self.delivered - self.genuine

    @property
    def fidelity_mean(self) -> float:
        return float(np.mean(self.fidelities)) if self.fidelities else math.nan


@dataclass
class BridgeTruth:
    """Per QNU pair ("qnuA-qnuB", sorted), the delivered pairs' ground truth."""

    pairs: dict[str, PairTruth]
    unjoined: int = 0
    """Delivered pairs whose herald the orchestrator's log or the station's file lacks."""

    @property
    def total(self) -> PairTruth:
        out = PairTruth()
        for p in self.pairs.values():
            out.delivered += p.delivered
            out.with_truth += p.with_truth
            out.genuine += p.genuine
            out.other_qnus += p.other_qnus
            out.fidelities += p.fidelities
        return out


def pair_label(qnus: Iterable[str]) -> str:
    return "-".join(sorted(qnus))


def delivered_heralds(records: Iterable[Mapping[str, Any]],
                      delivered: Mapping[str, int]) -> dict[str, list[tuple[str, int]]]:
    """Request -> its delivered pairs' (station, seq), from the orchestrator's decision-log
    records in order; `delivered`: request -> pairs it was delivered."""
    taken: dict[str, list[tuple[str, int]]] = {}
    out: dict[str, list[tuple[str, int]]] = {}
    for r in records:
        request = r.get("request")
        if not isinstance(request, str) or request not in delivered or request in out:
            continue
        if r.get("event") == "herald_taken" and isinstance(r.get("seq"), int) \
                and isinstance(r.get("station"), str):
            taken.setdefault(request, []).append((r["station"], r["seq"]))
        elif r.get("action") == "OK":
            n = delivered[request]
            out[request] = taken.get(request, [])[-n:] if n > 0 else []
    return out


def delivered_from_log(records: Iterable[Mapping[str, Any]]
                       ) -> dict[str, tuple[tuple[str, str], int]]:
    """Request -> (its QNUs, pairs delivered), from the OK decisions of the orchestrator's
    decision log: what the application got, when the application's own record is on
    another host (across hosts). An OK without the pair count (an older log) counts 1."""
    out: dict[str, tuple[tuple[str, str], int]] = {}
    for r in records:
        qnus = r.get("qnus")
        if r.get("action") != "OK" or not isinstance(r.get("request"), str) \
                or not isinstance(qnus, list) or len(qnus) != 2:
            continue
        values = r.get("values")
        pairs = values.get("pairs", 1) if isinstance(values, dict) else 1
        out[r["request"]] = ((str(qnus[0]), str(qnus[1])), int(pairs))
    return out


def join_gathered(run_dir: Path, stations: Iterable[str]) -> BridgeTruth:
    """The ground truth of an across-hosts run (``--role``) whose hosts' run folders were
    gathered into `run_dir`: the world's ``<station>_truth.npy`` and ``_joins.jsonl``, each
    station's ``<station>_heralds.npy`` and the orchestrator's decision log, all side by
    side. FileNotFoundError naming the first file missing and the host that writes it."""
    stations = list(stations)
    wanted = [(f"{ORCHESTRATOR}_decisions.jsonl", "the orchestrator's")]
    for s in stations:
        wanted += [(f"{s}_truth.npy", "the world's"), (f"{s}_joins.jsonl", "the world's"),
                   (f"{s}_heralds.npy", f"station {s}'s")]
    for name, host in wanted:
        if not (run_dir / name).exists():
            raise FileNotFoundError(f"{run_dir / name} is missing: copy it from {host} host's "
                                    "run folder (--run-dir) into this one")
    delivered = delivered_from_log(_read_log(run_dir / f"{ORCHESTRATOR}_decisions.jsonl"))
    truth = join_bridge_truth(run_dir, stations, delivered)
    assert truth is not None  # every truth file is there
    return truth


def _read_log(path: Path) -> list[dict[str, Any]]:
    records = []
    with path.open() as lines:
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut by a stop: the rest still joins
            if isinstance(record, dict):
                records.append(record)
    return records


def _joins(path: Path) -> tuple[np.ndarray, list[frozenset[str]]]:
    """(first attempt of each stretch, the QNUs joined in it) from a joins file."""
    firsts, joined = [], []
    for record in _read_log(path):
        firsts.append(int(record["first_attempt"]))
        joined.append(frozenset(q for q in record["qnus"] if q is not None))
    return np.asarray(firsts, dtype=np.int64), joined


def join_bridge_truth(run_dir: Path, stations: Iterable[str],
                      delivered: Mapping[str, tuple[tuple[str, str], int]]) -> BridgeTruth | None:
    """The delivered pairs of `delivered` (request -> (its QNUs, pairs delivered)) joined
    to the station twins' truth in `run_dir`; None when the world wrote no truth there."""
    from qnetlab.sim_instruments.link_events import read_twin_truth

    stations = list(stations)
    if not all((run_dir / f"{s}_truth.npy").exists() for s in stations):
        return None
    truth, joins, attempt_of = {}, {}, {}
    for s in stations:
        rows = read_twin_truth(run_dir / f"{s}_truth.npy")
        ids, first = np.unique(rows["attempt_id"], return_index=True)
        truth[s] = (ids, rows[first])
        joins[s] = _joins(run_dir / f"{s}_joins.jsonl")
        heralds_file = run_dir / f"{s}_heralds.npy"
        heralds = np.load(heralds_file) if heralds_file.exists() else None
        attempt_of[s] = {} if heralds is None else dict(zip(
            heralds["seq"].tolist(), heralds["attempt_id"].tolist(), strict=True))
    log = run_dir / f"{ORCHESTRATOR}_decisions.jsonl"
    records = _read_log(log) if log.exists() else []
    used = delivered_heralds(records, {r: n for r, (_, n) in delivered.items()})
    out = BridgeTruth({})
    for request, (qnus, n) in delivered.items():
        entry = out.pairs.setdefault(pair_label(qnus), PairTruth())
        entry.delivered += n
        found = used.get(request, [])
        out.unjoined += n - len(found)
        for station, seq in found:
            attempt = attempt_of[station].get(seq)
            if attempt is None:
                out.unjoined += 1
                continue
            firsts, joined = joins[station]
            stretch = int(np.searchsorted(firsts, attempt, side="right")) - 1
            if stretch < 0 or joined[stretch] != frozenset(qnus):
                entry.other_qnus += 1
                continue
            ids, rows = truth[station]
            at = int(np.searchsorted(ids, attempt))
            if at == len(ids) or int(ids[at]) != attempt:
                continue  # no click in a true window: dark counts heralded it
            row = rows[at]
            entry.with_truth += 1
            entry.genuine += bool(row["genuine"])
            if math.isfinite(float(row["fidelity"])):
                entry.fidelities.append(float(row["fidelity"]))
    return out


TRUTH_SUMMARY = "ground_truth.json"
"""The join's numbers, in the run folder."""


def write_truth(truth: BridgeTruth, run_dir: Path) -> Path:
    """``<run_dir>/ground_truth.json``: per QNU pair (and ``all``) delivered, with_truth,
    genuine, other_qnus, genuine_fraction, fidelity_mean (null: none judged)."""
    def numbers(p: PairTruth) -> dict[str, Any]:
        mean = p.fidelity_mean
        return {"delivered": p.delivered, "with_truth": p.with_truth, "genuine": p.genuine,
                "other_qnus": p.other_qnus,
                "genuine_fraction": p.genuine_fraction if p.delivered else None,
                "fidelity_mean": mean if math.isfinite(mean) else None,
                "fidelities": len(p.fidelities)}

    path = run_dir / TRUTH_SUMMARY
    path.write_text(json.dumps({
        "what": "simulation ground truth of the delivered pairs (sim profile only)",
        "pairs": {k: numbers(v) for k, v in sorted(truth.pairs.items())},
        "all": numbers(truth.total), "unjoined": truth.unjoined}, indent=1))
    return path


def truth_lines(truth: BridgeTruth) -> list[str]:
    """What the terminal shows of it, labelled as the simulation's ground truth."""
    lines = ["  simulation ground truth (the bridge world's station twins; sim only):"]
    for label, p in sorted(truth.pairs.items()):
        lines.append(_line(label, p))
    if len(truth.pairs) > 1:
        lines.append(_line("all", truth.total))
    if truth.unjoined:
        lines.append(f"    {truth.unjoined} delivered pair(s) not joined (no herald_taken "
                     "in the orchestrator's log, or not in the station's heralds file)")
    return lines


def _line(label: str, p: PairTruth) -> str:
    fidelity = f"{p.fidelity_mean:.3f}" if p.fidelities else "n/a"
    other = f", {p.other_qnus} while the switch joined other QNUs" if p.other_qnus else ""
    return (f"    {label}: genuine {p.genuine} of {p.delivered} delivered = "
            f"{p.genuine_fraction:.3f} (not genuine {p.not_genuine}{other}); mean true "
            f"fidelity {fidelity} over {len(p.fidelities)}")


__all__ = ["BridgeTruth", "PairTruth", "delivered_from_log", "delivered_heralds",
           "join_bridge_truth", "join_gathered", "truth_lines", "write_truth"]
