"""A distributed computation as the bridge sees it: a DAG of operations on QPUs.

Each operation runs on one QPU (``local``: a duration) or needs the network between two QNUs
(``pairs``: n entangled pairs held at once with at least a minimum fidelity, then the local
gates' duration; ``transfer``: teleport a state A -> B, which consumes one pair and sends A's
two Bell-measurement bits to B, who then applies the correction). An operation is ready when
all of its predecessors (``after``) have finished and its ``release`` time (s from the start)
has come; a ``deadline`` (s after it becomes ready) makes its network request fail early
(ERR) where the link rates cannot meet it.

File format (YAML or JSON, the same keys)::

    name: distributed_ghz_8
    qnus: [qnu0, qnu1, ...]
    operations:
      - {id: h0, kind: local, qnu: qnu0, duration: 1.0e-6}
      - {id: cx01, kind: pairs, qnus: [qnu0, qnu1], pairs: 1, min_fidelity: 0.55,
         duration: 2.0e-6, after: [h0]}
      - {id: tx, kind: transfer, qnus: [qnu3, qnu6], min_fidelity: 0.55, after: [cx01]}

Units: s; fidelities as fractions. Every error names the file, the operation and the fix
(`WorkloadError`, a `ConfigError`). Format: docs/bridge.md#the-workload-format.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from qnetlab.instruments.errors import ConfigError

Kind = Literal["local", "pairs", "transfer"]
KINDS: tuple[str, ...] = get_args(Kind)
MAX_PAIRS_PER_OPERATION = 64
"""A remote operation holds its pairs at once in both QNUs' memories: more is no QPU's."""
CLASSICAL_BITS_PER_TRANSFER = 2

_OP_KEYS = {"id", "kind", "qnu", "qnus", "pairs", "min_fidelity", "duration", "after",
            "release", "deadline"}


class WorkloadError(ConfigError):
    """A workload file (or dict) is wrong: names the file, the operation, the problem and
    the fix."""


@dataclass(frozen=True)
class Operation:
    """One node of the DAG. `qnus` holds one QNU (local) or two (A, B; a transfer goes
    A -> B)."""

    id: str
    kind: Kind
    qnus: tuple[str, ...]
    duration: float = 0.0
    """s of local work (after the pairs arrive, for a remote operation)."""
    pairs: int = 0
    """Entangled pairs held at once (1 for a transfer, 0 for local work)."""
    min_fidelity: float = 0.0
    after: tuple[str, ...] = ()
    release: float = 0.0
    """s from the computation's start before which the operation cannot start."""
    deadline: float | None = None
    """s after the operation is ready by which its pairs must be delivered (None: none)."""

    @property
    def remote(self) -> bool:
        return self.kind != "local"


@dataclass(frozen=True)
class Workload:
    """A validated DAG: `operations` in a topological order (each after its predecessors)."""

    name: str
    qnus: tuple[str, ...]
    operations: tuple[Operation, ...]
    successors: Mapping[str, tuple[str, ...]] = field(repr=False, compare=False)

    def operation(self, op_id: str) -> Operation:
        """The operation called `op_id` (KeyError if none)."""
        for op in self.operations:
            if op.id == op_id:
                return op
        raise KeyError(f"workload {self.name} has no operation {op_id!r}")

    @property
    def pair_demand(self) -> int:
        """Entangled pairs the whole computation consumes."""
        return sum(op.pairs for op in self.operations)

    def to_dict(self) -> dict[str, Any]:
        """The file form (`parse_workload` reads it back)."""
        ops = []
        for op in self.operations:
            entry: dict[str, Any] = {"id": op.id, "kind": op.kind}
            if op.kind == "local":
                entry["qnu"] = op.qnus[0]
            else:
                entry["qnus"] = list(op.qnus)
                if op.kind == "pairs":
                    entry["pairs"] = op.pairs
                entry["min_fidelity"] = op.min_fidelity
            if op.duration:
                entry["duration"] = op.duration
            if op.after:
                entry["after"] = list(op.after)
            if op.release:
                entry["release"] = op.release
            if op.deadline is not None:
                entry["deadline"] = op.deadline
            ops.append(entry)
        return {"name": self.name, "qnus": list(self.qnus), "operations": ops}


# -- reading ------------------------------------------------------------------------------------
def load_workload(path: str | Path) -> Workload:
    """Read and validate a workload file (``.yaml``/``.yml`` or ``.json``)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise WorkloadError(str(file), "", f"cannot read the workload ({exc.strerror})",
                            "give the path of a workload file") from None
    try:
        if file.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            from ruamel.yaml import YAML
            from ruamel.yaml.error import YAMLError
            try:
                data = YAML(typ="safe").load(text)
            except YAMLError as exc:
                raise ValueError(str(exc)) from None
    except ValueError as exc:
        raise WorkloadError(str(file), "", f"is not valid {file.suffix or 'YAML'} ({exc})",
                            "fix the syntax") from None
    return parse_workload(data, str(file))


def write_workload(workload: Workload, path: str | Path) -> None:
    """Write `workload` as JSON (``.json``) or YAML (any other suffix)."""
    file = Path(path)
    data = workload.to_dict()
    if file.suffix.lower() == ".json":
        file.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        return
    # one operation a line, in JSON's flow syntax (which YAML reads as it is)
    lines = [f"# Workload {workload.name}: {len(workload.operations)} operations on "
             f"{len(workload.qnus)} QPUs, {workload.pair_demand} pairs (format: "
             "docs/bridge.md#the-workload-format)",
             f"name: {json.dumps(data['name'])}", f"qnus: {json.dumps(data['qnus'])}",
             "operations:"]
    lines += [f"  - {json.dumps(op)}" for op in data["operations"]]
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")


def parse_workload(data: Any, source: str = "<workload>") -> Workload:
    """Validate `data` (the file's mapping) strictly: unknown keys, unknown or duplicate QNUs
    and ids, bad numbers, unknown predecessors and cycles are refused by name."""
    if not isinstance(data, Mapping):
        raise WorkloadError(source, "", "is not a mapping",
                            "write name:, qnus: and operations: at the top level")
    unknown = set(data) - {"name", "qnus", "operations"}
    if unknown:
        raise WorkloadError(source, sorted(unknown)[0], "is not a workload key",
                            "use name, qnus and operations")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise WorkloadError(source, "name", f"{name!r} is not a name", "give the workload a name")
    qnus = _qnu_list(source, data.get("qnus"))
    raw_ops = data.get("operations")
    if not isinstance(raw_ops, list) or not raw_ops:
        raise WorkloadError(source, "operations", "must be a non-empty list",
                            "list the computation's operations")
    ops = [_operation(source, i, raw, set(qnus)) for i, raw in enumerate(raw_ops)]
    ordered, successors = _topological(source, ops)
    return Workload(name, tuple(qnus), tuple(ordered), successors)


def _qnu_list(source: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise WorkloadError(source, "qnus", "must be a non-empty list of QNU names",
                            "list the QPUs' QNUs the computation runs on")
    for i, q in enumerate(value):
        if not isinstance(q, str) or not q:
            raise WorkloadError(source, f"qnus[{i}]", f"{q!r} is not a QNU name",
                                "write each QNU as a name")
    if len(set(value)) != len(value):
        dup = next(q for q in value if value.count(q) > 1)
        raise WorkloadError(source, "qnus", f"{dup!r} is listed twice", "list each QNU once")
    return list(value)


def _number(source: str, entry: str, value: Any, low: float, unit: str,
            high: float = math.inf) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not low <= value <= high:
        span = f">= {low:g}" if high == math.inf else f"between {low:g} and {high:g}"
        raise WorkloadError(source, entry, f"{value!r} is not a number {span}{unit}",
                            f"give a finite number {span}{unit}")
    return float(value)


def _operation(source: str, index: int, raw: Any, qnus: set[str]) -> Operation:
    where = f"operations[{index}]"
    if not isinstance(raw, Mapping):
        raise WorkloadError(source, where, "is not a mapping", "write each operation as id:, "
                            "kind:, ...")
    op_id = raw.get("id")
    if not isinstance(op_id, str) or not op_id:
        raise WorkloadError(source, f"{where}.id", f"{op_id!r} is not an id",
                            "give every operation a unique string id")
    where = f"operations[{op_id}]"
    unknown = set(raw) - _OP_KEYS
    if unknown:
        raise WorkloadError(source, f"{where}.{sorted(unknown)[0]}", "is not an operation key",
                            f"use {', '.join(sorted(_OP_KEYS))}")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise WorkloadError(source, f"{where}.kind", f"{kind!r} is unknown",
                            f"choose one of {', '.join(KINDS)}")
    members = _members(source, where, kind, raw, qnus)
    duration = _number(source, f"{where}.duration", raw.get("duration", 0.0), 0.0, " s")
    release = _number(source, f"{where}.release", raw.get("release", 0.0), 0.0, " s")
    deadline = raw.get("deadline")
    if deadline is not None:
        deadline = _number(source, f"{where}.deadline", deadline, 0.0, " s")
        if deadline == 0.0:
            raise WorkloadError(source, f"{where}.deadline", "is 0 s: no pair can be that fast",
                                "give a deadline > 0 s or leave it out")
    after = raw.get("after", [])
    if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
        raise WorkloadError(source, f"{where}.after", f"{after!r} is not a list of ids",
                            "list the ids of the operations this one waits for")
    if op_id in after:
        raise WorkloadError(source, f"{where}.after", "names the operation itself (a cycle)",
                            "remove it")
    pairs, fidelity = _remote_needs(source, where, kind, raw)
    return Operation(op_id, kind, members, duration, pairs, fidelity, tuple(after), release,
                     deadline)


def _members(source: str, where: str, kind: str, raw: Mapping[str, Any],
             qnus: set[str]) -> tuple[str, ...]:
    if kind == "local":
        if "qnus" in raw:
            raise WorkloadError(source, f"{where}.qnus", "is for remote operations",
                                "name the one QPU of local work as qnu:")
        members: Any = [raw.get("qnu")]
        entry = f"{where}.qnu"
    else:
        if "qnu" in raw:
            raise WorkloadError(source, f"{where}.qnu", f"a {kind} operation joins two QNUs",
                                "write qnus: [A, B]")
        members = raw.get("qnus")
        entry = f"{where}.qnus"
        if not isinstance(members, list) or len(members) != 2:
            raise WorkloadError(source, entry, f"{members!r} is not two QNUs",
                                "write qnus: [A, B] (a transfer goes from A to B)")
        if members[0] == members[1]:
            raise WorkloadError(source, entry, f"names {members[0]!r} twice",
                                "a remote operation joins two different QNUs")
    for q in members:
        if q not in qnus:
            raise WorkloadError(source, entry, f"QNU {q!r} is unknown",
                                f"use one of the workload's qnus ({', '.join(sorted(qnus))}) "
                                "or add it there")
    return tuple(members)


def _remote_needs(source: str, where: str, kind: str,
                  raw: Mapping[str, Any]) -> tuple[int, float]:
    if kind == "local":
        for key in ("pairs", "min_fidelity", "deadline"):
            if key in raw:
                raise WorkloadError(source, f"{where}.{key}", "is for remote operations",
                                    "remove it from local work")
        return 0, 0.0
    fidelity = _number(source, f"{where}.min_fidelity", raw.get("min_fidelity", 0.5), 0.0,
                       "", 1.0)
    if kind == "transfer":
        if "pairs" in raw and raw["pairs"] != 1:
            raise WorkloadError(source, f"{where}.pairs", "a transfer consumes one pair",
                                "leave pairs out of a transfer")
        return 1, fidelity
    pairs = raw.get("pairs", 1)
    if (not isinstance(pairs, int) or isinstance(pairs, bool)
            or not 1 <= pairs <= MAX_PAIRS_PER_OPERATION):
        raise WorkloadError(source, f"{where}.pairs", f"{pairs!r} is not a whole number of "
                            f"pairs 1..{MAX_PAIRS_PER_OPERATION}", "give pairs: 1 or more")
    return pairs, fidelity


def _topological(source: str, ops: Sequence[Operation],
                 ) -> tuple[list[Operation], dict[str, tuple[str, ...]]]:
    """Kahn's algorithm, stable in file order; refuses duplicates, unknown ids and cycles."""
    by_id: dict[str, Operation] = {}
    for op in ops:
        if op.id in by_id:
            raise WorkloadError(source, f"operations[{op.id}]", "the id is used twice",
                                "give every operation a unique id")
        by_id[op.id] = op
    succ: dict[str, list[str]] = {op.id: [] for op in ops}
    waiting = {op.id: len(set(op.after)) for op in ops}
    for op in ops:
        for pred in set(op.after):
            if pred not in by_id:
                raise WorkloadError(source, f"operations[{op.id}].after",
                                    f"{pred!r} is not an operation", "name existing ids only")
            succ[pred].append(op.id)
    ready = [op.id for op in ops if waiting[op.id] == 0]
    order: list[Operation] = []
    while ready:
        op_id = ready.pop(0)
        order.append(by_id[op_id])
        for nxt in succ[op_id]:
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                ready.append(nxt)
    if len(order) != len(ops):
        stuck = sorted(k for k, v in waiting.items() if v > 0)
        raise WorkloadError(source, "operations", f"have a cycle through {', '.join(stuck[:5])}",
                            "an operation cannot wait for itself: remove one 'after' of the "
                            "cycle")
    return order, {k: tuple(v) for k, v in succ.items()}


def check_qnus_known(workload: Workload, known: Iterable[str], topology_name: str) -> None:
    """Refuse a workload naming a QNU the bridge does not have."""
    have = set(known)
    missing = [q for q in workload.qnus if q not in have]
    if missing:
        raise WorkloadError(workload.name, "qnus", f"{', '.join(missing[:5])} not in the "
                            f"bridge {topology_name}", "run it on a bridge with these QNUs")
