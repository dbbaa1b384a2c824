"""Telemetry's messages and their wire format (`encode`, `decode`): see `network.telemetry`.

Two frames per message, ``[topic, payload]``: the topic ``"<source>/<kind>"`` (UTF-8), the
payload one version byte (`VERSION`) and compact JSON. Every field is checked when a message
is made and when it is decoded (type, finite numbers, bounded lengths, known kind and
version); what is wrong raises `TelemetryError` naming the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from qnetlab.instruments.errors import QnetlabError

VERSION = 1
"""The payload's first byte; a payload of another version is refused."""

VALUE_KINDS = ("mxc_temperature", "mxc_ceiling", "pump_power", "pump_on", "mw_power",
               "count_rate", "")
"""What the monitor shows a `ValueReading` as ("" = another value)."""
PROGRESS_STATES = ("running", "paused", "resumed", "finished", "stopped")
"""`SequenceProgress.state`."""

MAX_FRAME_BYTES = 65536
"""Largest payload accepted (a calibration graph of a few hundred nodes fits)."""
MAX_NAME = 200
"""Largest source, name, sequence, link, node or error-counter name (characters)."""
MAX_TEXT = 1000
"""Largest free text: a progress label or reason, a node's state, a unit."""
MAX_ITEMS = 512
"""Most nodes in a `CalibrationStates`, or error counters in a `LinkStatistics`."""
MAX_COUNT = 2**53
"""Largest count (steps, pairs, errors): exact in a float and in JavaScript."""


class TelemetryError(QnetlabError):
    """A telemetry message is malformed (names the field and what is wrong with it), or a
    value cannot be published as telemetry."""


# --- messages -----------------------------------------------------------------------------

def _fail(what: str, problem: str) -> TelemetryError:
    return TelemetryError(f"telemetry {what}: {problem}")


def _text(what: str, value: Any, limit: int, *, empty_ok: bool = True) -> str:
    if not isinstance(value, str):
        raise _fail(what, f"expected text, got {type(value).__name__}")
    if len(value) > limit:
        raise _fail(what, f"{len(value)} characters, more than {limit}")
    if not empty_ok and not value:
        raise _fail(what, "empty")
    return value


def _name(what: str, value: Any) -> str:
    text = _text(what, value, MAX_NAME, empty_ok=False)
    if "/" in text or not text.isprintable():
        raise _fail(what, f"{text!r} holds '/' or a control character")
    return text


def _number(what: str, value: Any, *, minimum: float | None = None,
            maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(what, f"expected a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:  # a JSON integer of hundreds of digits
        raise _fail(what, "not finite (too large for a float)") from None
    if not math.isfinite(number):
        raise _fail(what, f"{value!r} is not finite")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise _fail(what, f"{number!r} outside [{minimum}, {maximum}]")
    return number


def _optional(what: str, value: Any, **bounds: float) -> float | None:
    return None if value is None else _number(what, value, **bounds)


def _count(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(what, f"expected a whole number, got {type(value).__name__}")
    if not 0 <= value <= MAX_COUNT:
        raise _fail(what, f"{value} outside [0, {MAX_COUNT}]")
    return value


def _choice(what: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _fail(what, f"{value!r} is not one of {', '.join(map(repr, choices))}")
    return value


def check_name(what: str, value: Any) -> str:
    """`value` if it is a usable source or parameter name (bounded, printable, no '/': the
    topic's separator); else `TelemetryError` naming `what`."""
    return _name(what, value)


def _time(value: Any) -> float:
    return _number("time", value, minimum=0.0)


@dataclass(frozen=True)
class ValueReading:
    """One parameter's value: `name` is ``"<instrument>.<parameter>"`` as in the lab
    (``"fridge.mxc_temperature"``), `unit` as QCoDeS has it, `time` when it was measured
    (UNIX s). Booleans (the pump on or off) travel as 1.0 / 0.0. `kind`: what the monitor
    shows it as (`VALUE_KINDS`)."""

    source: str
    name: str
    value: float
    unit: str
    time: float
    kind: str = ""

    def __post_init__(self) -> None:
        _name("source", self.source)
        _name("name", self.name)
        object.__setattr__(self, "value", _number("value", self.value))
        _text("unit", self.unit, MAX_NAME)
        object.__setattr__(self, "time", _time(self.time))
        _choice("kind", self.kind, VALUE_KINDS)


@dataclass(frozen=True)
class SequenceProgress:
    """A sequence's progress: `done` of `total` steps, the step's `label` (or a live value),
    `state` one of `PROGRESS_STATES`, `reason` why it paused or stopped ("" otherwise)."""

    source: str
    sequence: str
    done: int
    total: int
    label: str
    state: str
    reason: str
    time: float

    def __post_init__(self) -> None:
        _name("source", self.source)
        _name("sequence", self.sequence)
        _count("done", self.done)
        _count("total", self.total)
        _text("label", self.label, MAX_TEXT)
        _choice("state", self.state, PROGRESS_STATES)
        _text("reason", self.reason, MAX_TEXT)
        object.__setattr__(self, "time", _time(self.time))


@dataclass(frozen=True)
class NodeStatus:
    """One calibration node: its `state` in the graph's own words ("in spec", "never
    calibrated", ...), the `age_s` of its last calibration and its `timeout_s` (None when
    never calibrated / no timeout)."""

    name: str
    state: str
    age_s: float | None
    timeout_s: float | None

    def __post_init__(self) -> None:
        _name("node name", self.name)
        _text(f"node {self.name} state", self.state, MAX_TEXT)
        # An age may be slightly negative when a clock stepped back; it is shown, not used.
        object.__setattr__(self, "age_s", _optional(f"node {self.name} age_s", self.age_s))
        object.__setattr__(self, "timeout_s", _optional(f"node {self.name} timeout_s",
                                                        self.timeout_s, minimum=0.0))


@dataclass(frozen=True)
class CalibrationStates:
    """Every node of a calibration graph, after a node was checked or calibrated."""

    source: str
    nodes: tuple[NodeStatus, ...]
    time: float

    def __post_init__(self) -> None:
        _name("source", self.source)
        if not isinstance(self.nodes, tuple) or not all(
                isinstance(node, NodeStatus) for node in self.nodes):
            raise _fail("nodes", "expected a tuple of NodeStatus")
        if len(self.nodes) > MAX_ITEMS:
            raise _fail("nodes", f"{len(self.nodes)} nodes, more than {MAX_ITEMS}")
        object.__setattr__(self, "time", _time(self.time))


@dataclass(frozen=True)
class LinkStatistics:
    """A link's running statistics: herald rate (Hz), pairs delivered, fidelity (0..1) and
    latency percentiles (s) when known, and every error counter (name -> count)."""

    source: str
    link: str
    herald_rate_hz: float
    delivered: int
    fidelity: float | None
    latency_p50_s: float | None
    latency_p99_s: float | None
    errors: dict[str, int]
    time: float

    def __post_init__(self) -> None:
        _name("source", self.source)
        _name("link", self.link)
        object.__setattr__(self, "herald_rate_hz",
                           _number("herald_rate_hz", self.herald_rate_hz, minimum=0.0))
        _count("delivered", self.delivered)
        object.__setattr__(self, "fidelity",
                           _optional("fidelity", self.fidelity, minimum=0.0, maximum=1.0))
        for field in ("latency_p50_s", "latency_p99_s"):
            object.__setattr__(self, field, _optional(field, getattr(self, field),
                                                      minimum=0.0))
        if not isinstance(self.errors, dict):
            raise _fail("errors", f"expected a mapping, got {type(self.errors).__name__}")
        if len(self.errors) > MAX_ITEMS:
            raise _fail("errors", f"{len(self.errors)} counters, more than {MAX_ITEMS}")
        for key, value in self.errors.items():
            _name("error counter name", key)
            _count(f"errors.{key}", value)
        object.__setattr__(self, "time", _time(self.time))


def _label(what: str, value: Any) -> str:
    """A bounded printable name that may hold '/' (a bridge request is ``client/id``)."""
    text = _text(what, value, MAX_NAME, empty_ok=False)
    if not text.isprintable():
        raise _fail(what, f"{text!r} holds a control character")
    return text


def _qnus(what: str, value: Any, sizes: tuple[int, ...]) -> tuple[str, ...]:
    if not isinstance(value, tuple) or len(value) not in sizes:
        raise _fail(what, f"expected a tuple of {' or '.join(map(str, sizes))} QNU names")
    names = tuple(_name(f"{what}[{i}]", q) for i, q in enumerate(value))
    if len(set(names)) != len(names):
        raise _fail(what, f"{names!r} names a QNU twice")
    return names


@dataclass(frozen=True)
class SwitchConfiguration:
    """A bridge station's switch configuration (docs/bridge.md#the-orchestrator-process):
    from `at` (s on the bridge clock) `station`'s two arms hold `qnus` (() = connected to
    nothing: broken for another path, or cleared after a switch failure); it carries light
    from `settled_at` (after the settle and any re-checks; None when nothing is connected).
    `reason` says why. An orchestrator republishes its stations' current configurations
    now and then (a monitor that joins late sees them; the same `at` is the same span)."""

    source: str
    station: str
    qnus: tuple[str, ...]
    at: float
    settled_at: float | None
    reason: str
    time: float

    def __post_init__(self) -> None:
        _name("source", self.source)
        _name("station", self.station)
        _qnus("qnus", self.qnus, (0, 2))
        object.__setattr__(self, "at", _number("at", self.at, minimum=0.0))
        object.__setattr__(self, "settled_at",
                           _optional("settled_at", self.settled_at, minimum=0.0))
        _text("reason", self.reason, MAX_TEXT)
        object.__setattr__(self, "time", _time(self.time))


REQUEST_STATES = ("accepted", "served", "suspended", "delivered", "err", "cancelled")
"""`RequestEvent.state`: ACK, a station heralds for it (ASSIGN), its station taken away
(round-robin's SUSPEND), OK, ERR (with its code), cancelled by the application."""


@dataclass(frozen=True)
class RequestEvent:
    """A step in the life of a bridge request (`request`: the scheduler's ``client/id``)
    between `qnus` at `at` (s on the bridge clock): `state` one of `REQUEST_STATES`,
    `station` the one serving it ("" when none), `code` an ERR's code ("" otherwise)."""

    source: str
    request: str
    qnus: tuple[str, ...]
    state: str
    station: str
    code: str
    at: float
    time: float

    def __post_init__(self) -> None:
        _name("source", self.source)
        _label("request", self.request)
        _qnus("qnus", self.qnus, (2,))
        _choice("state", self.state, REQUEST_STATES)
        if self.station:
            _name("station", self.station)
        _text("code", self.code, MAX_NAME)
        object.__setattr__(self, "at", _number("at", self.at, minimum=0.0))
        object.__setattr__(self, "time", _time(self.time))


TelemetryMessage = (ValueReading | SequenceProgress | CalibrationStates | LinkStatistics
                    | SwitchConfiguration | RequestEvent)

_KIND_OF: dict[type[TelemetryMessage], str] = {
    ValueReading: "value", SequenceProgress: "progress", CalibrationStates: "calibration",
    LinkStatistics: "link", SwitchConfiguration: "switch", RequestEvent: "request"}
KINDS = tuple(_KIND_OF.values())
"""The topics' kinds: ``"<source>/<kind>"``."""
_TYPE_OF = {kind: cls for cls, kind in _KIND_OF.items()}


def _fields(message: TelemetryMessage) -> dict[str, Any]:
    if isinstance(message, CalibrationStates):
        return {"source": message.source, "time": message.time,
                "nodes": [[n.name, n.state, n.age_s, n.timeout_s] for n in message.nodes]}
    return dict(vars(message))


def encode(message: TelemetryMessage) -> list[bytes]:
    """The two frames of `message`: ``[b"<source>/<kind>", version byte + JSON]``."""
    kind = _KIND_OF.get(type(message))
    if kind is None:
        raise TelemetryError(f"telemetry: cannot publish a {type(message).__name__}; "
                             f"publish one of {', '.join(c.__name__ for c in _KIND_OF)}")
    payload = json.dumps(_fields(message), separators=(",", ":"), allow_nan=False,
                         ensure_ascii=False).encode()
    if len(payload) + 1 > MAX_FRAME_BYTES:
        raise _fail(kind, f"{len(payload) + 1} bytes, more than {MAX_FRAME_BYTES}")
    return [f"{message.source}/{kind}".encode(), bytes([VERSION]) + payload]


def _refuse_constant(name: str) -> None:
    raise _fail("payload", f"{name} is not a number JSON may carry")


def _parse(kind: str, data: dict[str, Any]) -> TelemetryMessage:
    cls = _TYPE_OF[kind]
    expected = {f.name for f in dataclasses.fields(cls)}
    if set(data) != expected:
        missing, extra = sorted(expected - set(data)), sorted(set(data) - expected)
        raise _fail(kind, f"fields missing {missing}, unknown {extra}")
    if cls is CalibrationStates:
        nodes = data["nodes"]
        if not isinstance(nodes, list) or len(nodes) > MAX_ITEMS:
            raise _fail("nodes", f"expected a list of at most {MAX_ITEMS} nodes")
        if not all(isinstance(node, list) and len(node) == 4 for node in nodes):
            raise _fail("nodes", "each node must be [name, state, age_s, timeout_s]")
        return CalibrationStates(data["source"], tuple(NodeStatus(*node) for node in nodes),
                                 data["time"])
    if cls in (SwitchConfiguration, RequestEvent):
        if not isinstance(data["qnus"], list):
            raise _fail("qnus", f"expected a list, got {type(data['qnus']).__name__}")
        data = {**data, "qnus": tuple(data["qnus"])}  # JSON has no tuples
    try:
        message: TelemetryMessage = cls(**data)
    except TypeError as exc:  # cannot happen with the field check; kept hostile-proof
        raise _fail(kind, str(exc)) from None
    return message


def decode(frames: Sequence[bytes]) -> TelemetryMessage:
    """The message in `frames` (as `encode` made them), every field checked; raises
    `TelemetryError` naming what is wrong."""
    if len(frames) != 2:
        raise _fail("message", f"{len(frames)} frames, expected 2 (topic, payload)")
    topic_raw, payload = (bytes(frame) for frame in frames)
    if len(topic_raw) > 2 * MAX_NAME:
        raise _fail("topic", f"{len(topic_raw)} bytes, more than {2 * MAX_NAME}")
    try:
        topic = topic_raw.decode()
    except UnicodeDecodeError:
        raise _fail("topic", "not UTF-8") from None
    source, slash, kind = topic.rpartition("/")
    if not slash or kind not in _TYPE_OF:
        raise _fail("topic", f"{topic!r} is not '<source>/<kind>' with a kind of "
                    f"{', '.join(KINDS)}")
    if len(payload) > MAX_FRAME_BYTES:
        raise _fail("payload", f"{len(payload)} bytes, more than {MAX_FRAME_BYTES}")
    if payload[:1] != bytes([VERSION]):
        raise _fail("payload", f"version {payload[:1]!r}, expected {VERSION}")
    try:
        data = json.loads(payload[1:].decode(), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _fail("payload", f"not JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise _fail("payload", f"expected a JSON object, got {type(data).__name__}")
    message = _parse(kind, data)
    if message.source != source:
        raise _fail("topic", f"names source {source!r} but the message is from "
                    f"{message.source!r}")
    return message
