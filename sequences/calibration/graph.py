"""The calibration graph: nodes, what their operations return, validation, the figure.

After Kelly et al. 2018, "Physical qubit calibration on a directed acyclic graph": each node is
a calibration with a timeout after which its values are stale, and two ways to look at it:
`check_data`, a quick measurement that says whether the node is in spec, out of spec, or gave
bad data; and `calibrate`, the full sequence, whose values are committed to the parameter store
only when its verdict is good. `check_state` (no measurement) and `diagnose` / `maintain` are
in `sequences.calibration.maintain`.

A node belongs to a `scope`: the lab whose station and database it uses ("node_a", "node_b",
or "link" for the calibrations between them). Node names are unique in a graph.

Semantics of the operations and the config: docs/calibration_graph.md.
"""

from __future__ import annotations

import enum
import graphlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from matplotlib.figure import Figure

from qnetlab.instruments.errors import ConfigError

if TYPE_CHECKING:
    from qnetlab.instruments.station import LabStation

    from ..framework import RunResult
    from .store import ParameterStore


class DataResult(enum.StrEnum):
    IN_SPEC = "in spec"
    OUT_OF_SPEC = "out of spec"
    BAD_DATA = "bad data"


@dataclass(frozen=True)
class CheckOutcome:
    """What `check_data` found."""

    result: DataResult
    detail: str
    run: RunResult | None = None


@dataclass(frozen=True)
class CalibrationOutcome:
    """What `calibrate` found; `values` (name -> (value, unit), SI) are committed only if
    `good`."""

    good: bool
    detail: str
    values: dict[str, tuple[float, str]] = field(default_factory=dict)
    run: RunResult | None = None
    errors: dict[str, float] = field(default_factory=dict)
    """One-sigma error of each value (statistical and systematic combined), where known:
    stored beside it, so a report can show the value as measured."""


class CalibrationContext(Protocol):
    """What a node works with: stations and stores by scope, and the clock."""

    quiet: bool

    def station(self, scope: str) -> LabStation: ...

    def store(self, scope: str) -> ParameterStore: ...

    def db_path(self, scope: str) -> Path: ...

    def now(self) -> float: ...


class CalibrationNode(ABC):
    """One calibration of the graph."""

    def __init__(self, name: str, *, scope: str, depends_on: Iterable[str] = (),
                 timeout: float = 24 * 3600.0, description: str = "") -> None:
        if timeout <= 0:
            raise ValueError(f"calibration node {name!r}: timeout must be > 0 s, got {timeout}")
        self.name = name
        self.scope = scope
        self.depends_on = tuple(depends_on)
        self.timeout = float(timeout)
        """s after a good calibration when its values are stale."""
        self.description = description

    @abstractmethod
    def check_data(self, ctx: CalibrationContext) -> CheckOutcome:
        """A quick measurement against the stored values."""

    @abstractmethod
    def calibrate(self, ctx: CalibrationContext) -> CalibrationOutcome:
        """The full calibration."""

    def apply(self, ctx: CalibrationContext, values: Mapping[str, float]) -> None:  # noqa: B027
        """Put committed values into the station (default: nothing to set)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.scope})>"


class GraphError(ConfigError):
    """The graph is not a valid calibration graph (unknown dependency, cycle, duplicate).
    A `ConfigError`: the graph comes from a lab config's ``qnetlab.calibration``."""

    def __init__(self, message: str) -> None:
        where, _, problem = message.partition(": ")  # "calibration graph (<source>): ..."
        super().__init__(where, "", problem)


class CalibrationGraph:
    """A validated DAG of `CalibrationNode`s."""

    def __init__(self, nodes: Iterable[CalibrationNode], *, source: str = "") -> None:
        where = f" ({source})" if source else ""
        self.nodes: dict[str, CalibrationNode] = {}
        for node in nodes:
            if node.name in self.nodes:
                raise GraphError(f"calibration graph{where}: two nodes are called "
                                 f"{node.name!r}; give each a unique name")
            self.nodes[node.name] = node
        for node in self.nodes.values():
            for dep in node.depends_on:
                if dep not in self.nodes:
                    raise GraphError(f"calibration graph{where}: node {node.name!r} depends on "
                                     f"{dep!r}, which is not a node of the graph (known: "
                                     f"{', '.join(sorted(self.nodes))})")
        sorter = graphlib.TopologicalSorter({n.name: n.depends_on for n in self.nodes.values()})
        try:
            self.order: tuple[str, ...] = tuple(sorter.static_order())
        except graphlib.CycleError as exc:
            cycle = " -> ".join(exc.args[1])
            raise GraphError(f"calibration graph{where}: dependency cycle {cycle}; a "
                             "calibration cannot depend on itself, even through others") \
                from None
        """Every node after its dependencies."""

    def __getitem__(self, name: str) -> CalibrationNode:
        try:
            return self.nodes[name]
        except KeyError:
            raise KeyError(f"no calibration node {name!r}; known: "
                           f"{', '.join(sorted(self.nodes))}") from None

    def dependents(self, name: str) -> list[str]:
        """Nodes that depend directly on `name`."""
        return [n.name for n in self.nodes.values() if name in n.depends_on]

    def ancestors(self, name: str) -> list[str]:
        """`name` and everything it depends on, dependencies first."""
        wanted: set[str] = set()
        stack = [name]
        while stack:
            current = stack.pop()
            if current not in wanted:
                wanted.add(current)
                stack.extend(self[current].depends_on)
        return [n for n in self.order if n in wanted]

    def descendants(self, name: str) -> list[str]:
        """Everything that depends on `name`, directly or not, in order."""
        found: set[str] = set()
        stack = [name]
        while stack:
            for child in self.dependents(stack.pop()):
                if child not in found:
                    found.add(child)
                    stack.append(child)
        return [n for n in self.order if n in found]

    def depth(self, name: str) -> int:
        deps = self[name].depends_on
        return 0 if not deps else 1 + max(self.depth(d) for d in deps)

    def figure(self, states: Mapping[str, str] | None = None) -> Figure:
        """The graph drawn in layers (dependencies on the left), each node coloured by its
        state ('good', 'calibrated', 'checked', 'stale', 'failed', 'skipped', ...)."""
        states = states or {}
        layers: dict[int, list[str]] = {}
        for name in self.order:
            layers.setdefault(self.depth(name), []).append(name)
        pos = {name: (d, -i + (len(names) - 1) / 2) for d, names in layers.items()
               for i, name in enumerate(names)}
        height = max(len(v) for v in layers.values()) if layers else 1
        fig = Figure(figsize=(2.6 * (len(layers) + 1), 0.9 * height + 1.5))
        ax = fig.add_subplot()
        for node in self.nodes.values():
            x1, y1 = pos[node.name]
            for dep in node.depends_on:
                x0, y0 = pos[dep]
                ax.annotate("", xy=(x1 - 0.3, y1), xytext=(x0 + 0.3, y0),
                            arrowprops={"arrowstyle": "->", "color": "0.5"})
        for name, (x, y) in pos.items():
            state = states.get(name, "")
            ax.text(x, y, f"{name}\n{state}", ha="center", va="center", fontsize=7,
                    bbox={"boxstyle": "round", "fc": _COLOURS.get(state, "white"), "ec": "0.3"})
        ax.set_xlim(-0.6, len(layers) - 0.4)
        ax.set_ylim(-height / 2 - 0.2, height / 2 + 0.2)
        ax.axis("off")
        fig.tight_layout()
        return fig


_COLOURS: dict[str, Any] = {
    "good": "#bfe8c6", "checked": "#bfe8c6", "in spec": "#bfe8c6", "calibrated": "#8fd19e",
    "stale": "#fff2b3", "out of spec": "#ffd9a8", "bad data": "#ffb3b3", "failed": "#ff8c8c",
    "skipped": "#dddddd",
}
