"""Keeping a calibration graph in spec: check_state, check_data, calibrate, diagnose, maintain.

The operations of Kelly et al. 2018 on the nodes of a `CalibrationGraph`, and ``maintain``
that ties them together, dependencies first. Every operation is logged as an `Action` (what,
on which node, the outcome, and why), which is what ``qnetlab calibrate`` prints.

Semantics of each operation: docs/calibration_graph.md#2-the-operations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..progress import NodeState, report_calibration, reporting
from .graph import CalibrationContext, CalibrationGraph, CheckOutcome, DataResult


@dataclass(frozen=True)
class Action:
    node: str
    operation: str
    """'check_state', 'check_data', 'calibrate' or 'skip'."""
    outcome: str
    reason: str
    """Why this operation happened."""
    detail: str = ""
    run_id: int | None = None
    run: Any = field(default=None, compare=False, repr=False)
    """The `RunResult` the operation measured, if any (for reports)."""

    def __str__(self) -> str:
        run = f" [run {self.run_id}]" if self.run_id is not None else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.node}: {self.operation} -> {self.outcome}{run} ({self.reason}){detail}"


class Maintainer:
    """One maintenance session over a graph (module docstring). Results are remembered for
    the session, so a node shared by several dependents is handled once."""

    def __init__(self, graph: CalibrationGraph, ctx: CalibrationContext) -> None:
        self.graph, self.ctx = graph, ctx
        self.log: list[Action] = []
        self.states: dict[str, str] = {}
        """Node -> what this session left it as: 'good' (state passed), 'in spec',
        'calibrated', 'failed', 'skipped'."""
        self._maintained: dict[str, bool] = {}
        self._diagnosed: dict[str, bool] = {}
        self._checked: dict[str, DataResult] = {}

    # -- the operations -----------------------------------------------------------------------
    def check_state(self, name: str) -> tuple[bool, str]:
        """(passes, why) without measuring anything."""
        ok, _, why = self._state(name)
        return ok, why

    def _state(self, name: str) -> tuple[bool, str, str]:
        """(passes, the state in a word or two, why): 'fresh', 'never calibrated', 'last
        attempt failed', 'stale', 'dependency changed' or 'dependency not fresh'."""
        node = self.graph[name]
        store = self.ctx.store(node.scope)
        last = store.last_calibration(name)
        if last is None:
            return False, "never calibrated", "never calibrated"
        latest = store.last_event(name)
        if latest is not None and latest.id != last.id and latest.failed:
            return (False, "last attempt failed",
                    f"last {latest.operation} was {latest.outcome} ({latest.detail})")
        age = self.ctx.now() - last.time
        if age > node.timeout:
            return (False, "stale",
                    f"stale: calibrated {age:.0f} s ago, timeout {node.timeout:.0f} s")
        for dep in node.depends_on:
            dep_node = self.graph[dep]
            dep_last = self.ctx.store(dep_node.scope).last_calibration(dep)
            if dep_last is not None and _later(dep_last, last, dep_node.scope == node.scope):
                return False, "dependency changed", f"dependency {dep} was recalibrated since"
            ok, why = self.check_state(dep)
            if not ok:
                return False, "dependency not fresh", f"dependency {dep}: {why}"
        return (True, "fresh",
                f"calibrated {age:.0f} s ago, within its {node.timeout:.0f} s timeout")

    def check_data(self, name: str, reason: str) -> DataResult:
        if name in self._checked:
            return self._checked[name]
        node = self.graph[name]
        try:
            outcome = node.check_data(self.ctx)
        except Exception as exc:  # an instrument error is bad data, not a crash of the graph
            outcome = CheckOutcome(DataResult.BAD_DATA, f"{type(exc).__name__}: {exc}")
        self.ctx.store(node.scope).record_check(name, outcome)
        self._checked[name] = outcome.result
        if outcome.result is not DataResult.IN_SPEC:
            self.states[name] = str(outcome.result)
        else:
            self.states.setdefault(name, "in spec")
        self._log(name, "check_data", str(outcome.result), reason, outcome.detail, outcome.run)
        return outcome.result

    def calibrate(self, name: str, reason: str) -> bool:
        """Run the node's full calibration; commit and apply its values if good."""
        node = self.graph[name]
        try:
            outcome = node.calibrate(self.ctx)
        except Exception as exc:
            from .graph import CalibrationOutcome

            outcome = CalibrationOutcome(False, f"{type(exc).__name__}: {exc}")
        self.ctx.store(node.scope).record_calibration(name, outcome)
        if outcome.good:
            node.apply(self.ctx, {k: v for k, (v, _) in outcome.values.items()})
        self._checked.pop(name, None)
        self.states[name] = "calibrated" if outcome.good else "failed"
        self._log(name, "calibrate", "good" if outcome.good else "FAILED", reason,
                  outcome.detail, outcome.run)
        return outcome.good

    def diagnose(self, name: str, reason: str = "requested") -> bool:
        """Walk back while the data are not in spec, then calibrate forward. True if `name`
        was recalibrated (successfully)."""
        if name in self._diagnosed:
            return self._diagnosed[name]
        result = self.check_data(name, reason)
        if result is DataResult.IN_SPEC:
            self._diagnosed[name] = False
            return False
        node = self.graph[name]
        for dep in node.depends_on:
            self.diagnose(dep, f"diagnosing {name} ({result})")
            if self.states.get(dep) == "failed":
                self._skip(name, f"dependency {dep} failed to calibrate")
                self._diagnosed[name] = False
                return False
        done = self.calibrate(name, f"{result} while diagnosing")
        self._diagnosed[name] = done
        return done

    def maintain(self, name: str, reason: str = "requested") -> bool:
        """Bring `name` and its dependencies in spec at the least measurement cost. True when
        `name` ends good (fresh, in spec, or recalibrated)."""
        if name in self._maintained:
            return self._maintained[name]
        node = self.graph[name]
        # Every dependency is maintained, even after one failed: the session reports the
        # whole graph, and an unrelated branch still gets its calibration.
        failed = [dep for dep in node.depends_on
                  if not self.maintain(dep, f"dependency of {name}")]
        if failed:
            self._skip(name, f"dependency {', '.join(failed)} is not good")
            self._maintained[name] = False
            return False
        ok, state, why = self._state(name)
        self._log(name, "check_state", "pass" if ok else state, reason, why)
        if ok:
            self.states.setdefault(name, "good")
            self._maintained[name] = True
            return True
        if self.ctx.store(node.scope).last_calibration(name) is None:
            done = self.calibrate(name, "never calibrated")
        else:
            result = self.check_data(name, why)
            if result is DataResult.IN_SPEC:
                done = True
            elif result is DataResult.OUT_OF_SPEC:
                done = self.calibrate(name, "out of spec")
            else:
                for dep in node.depends_on:
                    self.diagnose(dep, f"{name} gave bad data")
                done = self.calibrate(name, "bad data")
        self._maintained[name] = done
        return done

    def maintain_all(self) -> bool:
        """Maintain every node (roots of the graph pull in the rest)."""
        good = True
        for name in self.graph.order:
            good = self.maintain(name, "maintaining the graph") and good
        return good

    # -- bookkeeping --------------------------------------------------------------------------
    def _skip(self, name: str, why: str) -> None:
        self.states[name] = "skipped"
        self._log(name, "skip", "not run", why)

    def _log(self, name: str, operation: str, outcome: str, reason: str, detail: str = "",
             run: object = None) -> None:
        self.log.append(Action(name, operation, outcome, reason, detail,
                               getattr(run, "run_id", None), run))
        if reporting():  # the states cost store queries: only when someone listens
            report_calibration(self.node_states())

    def node_states(self) -> list[NodeState]:
        """Every node as (name, state, age s, timeout s): what this session left it as, else
        its stored state ('fresh', 'never calibrated', 'stale', ...); the age of its last good
        calibration (None: never). For `sequences.progress.report_calibration`."""
        out: list[NodeState] = []
        now = self.ctx.now()
        for name in self.graph.order:
            node = self.graph[name]
            last = self.ctx.store(node.scope).last_calibration(name)
            state = self.states.get(name) or self._state(name)[1]
            out.append((name, state, None if last is None else now - last.time, node.timeout))
        return out

    @property
    def measured(self) -> list[Action]:
        """The actions that measured something (check_data and calibrate)."""
        return [a for a in self.log if a.operation in ("check_data", "calibrate")]

    @property
    def recalibrated(self) -> list[str]:
        return [a.node for a in self.log if a.operation == "calibrate"]


def _later(a: object, b: object, same_store: bool) -> bool:
    """Whether event `a` happened after event `b`: by row order within one store (exact even
    when the clock did not move), by time across stores."""
    if same_store:
        return bool(a.id > b.id)  # type: ignore[attr-defined]
    return bool(a.time > b.time)  # type: ignore[attr-defined]
