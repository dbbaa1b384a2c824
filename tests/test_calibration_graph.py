"""The calibration graph's logic (Kelly et al. 2018) on a small lab of stand-in calibrations.

Each stand-in node measures one number of a toy world (a dict): `calibrate` commits the
world's value, `check_data` compares the world with the stored value. Faults are changes of
the world. The real nodes (sequences on the simulated bench) are tested in
tests/test_calibration_nodes.py and tests/test_calibration_lab.py; here every rule of the graph
is checked exactly and fast: order, cost, diagnosis, failures, provenance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qnetlab.sequences.calibration import (
    CalibrationGraph,
    CalibrationNode,
    CalibrationOutcome,
    CheckOutcome,
    DataResult,
    GraphError,
    LabContext,
    Maintainer,
    Scope,
)


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


class ToyNode(CalibrationNode):
    """Calibrates `world[name]`; in spec while the world is within 5 % of the stored value."""

    def __init__(self, name: str, world: dict[str, Any], depends_on: tuple[str, ...] = (),
                 timeout: float = 3600.0, scope: str = "lab") -> None:
        super().__init__(name, scope=scope, depends_on=depends_on, timeout=timeout)
        self.world = world
        self.calls: list[str] = world.setdefault("calls", [])

    def check_data(self, ctx: Any) -> CheckOutcome:
        self.calls.append(f"check {self.name}")
        if self.world.get(f"{self.name}.noisy"):
            return CheckOutcome(DataResult.BAD_DATA, "no fit")
        stored = ctx.store(self.scope).current(self.name)
        assert stored is not None
        true = self.world[self.name]
        result = DataResult.IN_SPEC if abs(true - stored.value) <= 0.05 * abs(stored.value) \
            else DataResult.OUT_OF_SPEC
        return CheckOutcome(result, f"{true} vs stored {stored.value}")

    def calibrate(self, ctx: Any) -> CalibrationOutcome:
        self.calls.append(f"calibrate {self.name}")
        if self.world.get(f"{self.name}.broken"):
            return CalibrationOutcome(False, "fit failed")
        return CalibrationOutcome(True, "ok", {self.name: (self.world[self.name], "Hz")})


# dark -> eff ----------------\
# delay -> skew               > noise -> link
# mw -> optical -> efficiency /
EDGES = {"dark": (), "eff": ("dark",), "delay": (), "skew": ("delay",), "mw": (),
         "optical": ("mw",), "efficiency": ("optical",), "noise": ("efficiency", "eff"),
         "link": ("noise", "skew")}


@pytest.fixture
def lab(tmp_path: Path) -> tuple[CalibrationGraph, dict[str, Any], LabContext, Clock]:
    world: dict[str, Any] = {name: 10.0 + i for i, name in enumerate(EDGES)}
    graph = CalibrationGraph(ToyNode(n, world, deps) for n, deps in EDGES.items())
    clock = Clock()
    ctx = LabContext({"lab": Scope("lab", tmp_path / "lab.db")}, clock=clock)
    return graph, world, ctx, clock


def test_from_cold_every_node_is_calibrated_once_in_dependency_order(lab: Any) -> None:
    graph, world, ctx, _ = lab
    session = Maintainer(graph, ctx)
    assert session.maintain_all()
    calibrated = [c.split()[1] for c in world["calls"]]
    assert world["calls"] == [f"calibrate {n}" for n in calibrated]  # no checks: nothing stored
    assert sorted(calibrated) == sorted(EDGES)  # each once
    for name, deps in EDGES.items():
        assert all(calibrated.index(d) < calibrated.index(name) for d in deps), name
    store = ctx.store("lab")
    assert {k: v.value for k, v in store.current_values().items()} == {
        n: world[n] for n in EDGES}


def test_with_everything_fresh_maintain_measures_nothing(lab: Any) -> None:
    graph, world, ctx, clock = lab
    Maintainer(graph, ctx).maintain_all()
    world["calls"].clear()
    clock.t += 600.0  # within every 3600 s timeout
    session = Maintainer(graph, ctx)
    assert session.maintain("link")
    assert world["calls"] == [] and session.measured == []
    assert {a.operation for a in session.log} == {"check_state"}


def test_a_stale_node_in_spec_is_only_checked(lab: Any) -> None:
    graph, world, ctx, clock = lab
    Maintainer(graph, ctx).maintain_all()
    world["calls"].clear()
    clock.t += 4000.0  # every node stale
    session = Maintainer(graph, ctx)
    assert session.maintain("link")
    assert all(c.startswith("check ") for c in world["calls"]) and len(world["calls"]) == 9
    assert any("stale" in a.detail for a in session.log if a.operation == "check_state")


@pytest.mark.parametrize(("fault", "responsible"), [("eff", "eff"), ("optical", "optical"),
                                                    ("delay", "delay")])
def test_diagnose_finds_the_fault_and_recalibrates_it_and_below_only(
        lab: Any, fault: str, responsible: str) -> None:
    graph, world, ctx, _ = lab
    Maintainer(graph, ctx).maintain_all()
    world["calls"].clear()
    # The fault shifts the node's quantity and, through it, everything that depends on it.
    for name in [fault, *graph.descendants(fault)]:
        world[name] *= 1.5
    session = Maintainer(graph, ctx)
    assert session.diagnose("link")
    below = {responsible, *graph.descendants(responsible)}
    upstream = set(graph.ancestors("link"))
    assert set(session.recalibrated) == below & upstream
    # The responsible node was calibrated before anything below it.
    order = session.recalibrated
    assert order.index(responsible) == 0
    # Unrelated nodes: at most checked (cheaply), never recalibrated.
    unrelated = set(EDGES) - below
    assert not unrelated & set(session.recalibrated)
    for name in below & upstream:
        assert ctx.store("lab").current(name).value == world[name]


def test_a_failed_calibration_keeps_the_good_values_and_blocks_what_depends_on_it(
        lab: Any) -> None:
    graph, world, ctx, clock = lab
    Maintainer(graph, ctx).maintain_all()
    store = ctx.store("lab")
    before = store.current("optical")
    world["optical"] *= 2
    world["optical.broken"] = True
    world["calls"].clear()
    clock.t += 4000.0
    session = Maintainer(graph, ctx)
    assert not session.maintain("link")
    assert store.current("optical") == before  # previous good value still current
    assert session.states["optical"] == "failed"
    for name in ("efficiency", "noise", "link"):  # downstream: not run on a bad value
        assert session.states[name] == "skipped"
        assert f"calibrate {name}" not in world["calls"]
        assert f"check {name}" not in world["calls"]
    assert session.states["skew"] in ("in spec", "good")  # unrelated branch carried on
    # The failure is remembered: the next session does not trust the node's old state.
    ok, why = Maintainer(graph, ctx).check_state("optical")
    assert not ok and "bad" in why


def test_check_state_rules(lab: Any) -> None:
    graph, world, ctx, clock = lab
    session = Maintainer(graph, ctx)
    assert session.check_state("dark") == (False, "never calibrated")
    session.maintain_all()
    assert Maintainer(graph, ctx).check_state("link")[0]
    # A dependency recalibrated since: the dependent's state no longer passes.
    world["dark"] *= 3
    fresh = Maintainer(graph, ctx)
    fresh.calibrate("dark", "test")
    ok, why = fresh.check_state("eff")
    assert not ok and "dark was recalibrated since" in why
    ok, why = fresh.check_state("noise")  # two levels up
    assert not ok and "dependency eff" in why
    clock.t += 3601
    ok, why = Maintainer(graph, ctx).check_state("mw")
    assert not ok and why.startswith("stale")



def test_a_session_logs_each_state_in_words_not_a_bare_fail(lab: Any) -> None:
    graph, _world, ctx, clock = lab
    cold = Maintainer(graph, ctx)
    cold.maintain_all()
    states = {a.node: a.outcome for a in cold.log if a.operation == "check_state"}
    assert states and set(states.values()) == {"never calibrated"}
    clock.t += 3601  # past mw's timeout only
    warm = Maintainer(graph, ctx)
    warm.maintain_all()
    states = {a.node: a.outcome for a in warm.log if a.operation == "check_state"}
    assert states["mw"] == "stale" and "fail" not in states.values()


def test_bad_data_walks_back_through_the_dependencies(lab: Any) -> None:
    graph, world, ctx, clock = lab
    Maintainer(graph, ctx).maintain_all()
    world["noise.noisy"] = True  # the quick check cannot fit at all
    world["dark"] *= 2  # ...because a dependency two levels down moved
    world["calls"].clear()
    clock.t += 4000.0
    session = Maintainer(graph, ctx)
    session.maintain("noise")
    assert "dark" in session.recalibrated and "noise" in session.recalibrated
    assert "mw" not in session.recalibrated


def test_the_graph_is_validated() -> None:
    world: dict[str, Any] = {}
    with pytest.raises(GraphError, match="'b', which is not a node"):
        CalibrationGraph([ToyNode("a", world, ("b",))])
    with pytest.raises(GraphError, match="cycle"):
        CalibrationGraph([ToyNode("a", world, ("c",)), ToyNode("b", world, ("a",)),
                          ToyNode("c", world, ("b",))])
    with pytest.raises(GraphError, match="two nodes are called 'a'"):
        CalibrationGraph([ToyNode("a", world), ToyNode("a", world)])


def test_values_carry_their_provenance(lab: Any) -> None:
    graph, world, ctx, clock = lab
    Maintainer(graph, ctx).maintain_all()
    clock.t += 10
    world["dark"] = 42.0
    Maintainer(graph, ctx).calibrate("dark", "test")
    store = ctx.store("lab")
    history = store.history("dark")
    assert [v.value for v in history] == [10.0, 42.0] and history[1].time == clock.t
    assert store.current("dark").node == "dark" and store.current("dark").unit == "Hz"
    events = store.events("dark")
    assert [e.operation for e in events] == ["calibrate", "calibrate"]
    store.invalidate("dark")
    assert store.current("dark") is None and len(store.history("dark")) == 2


def test_the_figure_shows_every_node_with_its_state(lab: Any) -> None:
    graph, _, ctx, _ = lab
    session = Maintainer(graph, ctx)
    session.maintain_all()
    fig = graph.figure(session.states)
    texts = [t.get_text() for t in fig.axes[0].texts if t.get_text()]
    assert all(any(t.startswith(f"{n}\n") for t in texts) for n in EDGES)
    assert all(t.endswith("calibrated") for t in texts)
