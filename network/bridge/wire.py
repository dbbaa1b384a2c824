"""The bridge orchestrator's client protocol: messages and their wire format.

One frame per message, over a CURVE DEALER (client) -> ROUTER (orchestrator) connection: one
version byte (`VERSION`) and a compact JSON object whose ``"type"`` names the message.

    client -> orchestrator   REQUEST_PAIRS, REQUEST_TRANSFER, CANCEL
    orchestrator -> client   ACCEPTED, DELIVERED, TRANSFERRED, CANCELLED, ERR, DECISION

Times on the wire are s on the bridge's clock (the orchestrator's run clock; with a
`time_scale` of 1 these are wall-clock seconds). Every field is checked when a message is
made and when it is decoded (type, finite numbers, ranges, bounded lengths, the exact set of
keys, the version); what is wrong raises `BridgeWireError` naming the field, which the
orchestrator answers with an ERR (code ``MALFORMED``) naming it. Design: docs/bridge.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

from qnetlab.instruments.errors import QnetlabError

from ..messages import ErrCode

VERSION = 1
"""The frame's first byte; a frame of another version is refused."""
MAX_FRAME_BYTES = 65536
"""Largest frame (a DELIVERED of `MAX_PAIRS` fidelities is about 20 kB)."""
SOCKET_MAXMSGSIZE = MAX_FRAME_BYTES + 1024
"""`zmq.MAXMSGSIZE` of both ends: libzmq refuses a longer frame (CURVE adds its box and its
handshake carries a few hundred bytes of metadata)."""
MAX_PAIRS = 1000
"""Most pairs one request may ask for."""
MAX_NAME = 200
"""Longest QNU or station name (characters)."""
MAX_TEXT = 2000
"""Longest reason."""
MAX_VALUES = 32
"""Most numbers one DECISION carries."""
REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
"""A request id: chosen by the client, unique among its open requests."""

NAMED_STATES: dict[str, tuple[float, float, float]] = {
    "0": (0.0, 0.0, 1.0), "1": (0.0, 0.0, -1.0), "+": (1.0, 0.0, 0.0),
    "-": (-1.0, 0.0, 0.0), "+i": (0.0, 1.0, 0.0), "-i": (0.0, -1.0, 0.0),
}
"""States a transfer may name, as their Bloch vectors (x, y, z)."""

ERR_CODES = (*(code.name for code in ErrCode), "MALFORMED", "UNKNOWN_REQUEST")
"""An ERR's code: a link-layer `ErrCode` name (the scheduler's refusals: UNSUPPORTED,
TIMEOUT, NO_RESOURCES), MALFORMED (a frame that failed its checks: `field` names what), or
UNKNOWN_REQUEST (a CANCEL of a request that is not open)."""

ACTIONS = ("ACK", "ERR", "WAIT", "RECONFIGURE", "RECHECK", "ASSIGN", "SUSPEND", "RELEASE",
           "HOLD", "OK", "CANCEL")
"""A DECISION's action (`records.Action`)."""


class BridgeWireError(QnetlabError, ValueError):
    """A bridge message is malformed: `field` names the part that is wrong (``frame``,
    ``version``, ``payload``, ``type`` or a message field), `problem` says how.
    `request_id` is the message's request id when it could be read (so the answer reaches
    the right request)."""

    def __init__(self, field: str, problem: str, request_id: str | None = None) -> None:
        self.field, self.problem, self.request_id = field, problem, request_id
        super().__init__(f"bridge message field {field!r}: {problem}")


# --- field checks -------------------------------------------------------------------------

def show(value: Any, limit: int = 60) -> str:
    """`value` for an error message: its repr, clipped (a hostile value may be 64 kB)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def safe_field(name: str) -> str:
    """A field name fit to be named in an ERR (a hostile key may be anything)."""
    return name if name.isprintable() and 0 < len(name) <= 64 else "payload"


def clip(text: str) -> str:
    """`text` fit for an ERR's reason: printable, at most `MAX_TEXT` characters."""
    text = "".join(c if c.isprintable() else "?" for c in text) or "?"
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 3] + "..."


def _text(field: str, value: Any, limit: int) -> str:
    if not isinstance(value, str):
        raise BridgeWireError(field, f"expected text, got {type(value).__name__}")
    if not value or len(value) > limit:
        raise BridgeWireError(field, f"{len(value)} characters (1..{limit})")
    if not value.isprintable():
        raise BridgeWireError(field, "holds a control character")
    return value


def _request_id(field: str, value: Any) -> str:
    if not isinstance(value, str) or not REQUEST_ID.fullmatch(value):
        raise BridgeWireError(field, f"{show(value)} is not a request id (1-64 of letters, "
                              "digits, '_', '.', ':', '-')")
    return value


def _number(field: str, value: Any, low: float | None = None, high: float | None = None,
            *, open_low: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BridgeWireError(field, f"expected a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:  # a JSON integer of hundreds of digits
        raise BridgeWireError(field, "not finite (too large for a float)") from None
    if not math.isfinite(number):
        raise BridgeWireError(field, f"{show(value)} is not finite")
    below = low is not None and (number <= low if open_low else number < low)
    if below or (high is not None and number > high):
        lower = "(" if open_low else "["
        raise BridgeWireError(field, f"{number!r} outside {lower}{low}, {high}]")
    return number


def _optional(field: str, value: Any, **bounds: Any) -> float | None:
    return None if value is None else _number(field, value, **bounds)


def _whole(field: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BridgeWireError(field, f"expected a whole number, got {type(value).__name__}")
    if not low <= value <= high:
        raise BridgeWireError(field, f"{value} outside [{low}, {high}]")
    return value


def _fidelity(field: str, value: Any) -> float:
    return _number(field, value, 0.0, 1.0)


def _two_qnus(first: str, a: Any, second: str, b: Any) -> None:
    _text(first, a, MAX_NAME)
    _text(second, b, MAX_NAME)
    if a == b:
        raise BridgeWireError(second, f"the same QNU as {first} ({a!r}): a pair needs two")


def bloch_vector(state: str | tuple[float, float, float]) -> tuple[float, float, float]:
    """The Bloch vector (x, y, z) of a transfer's state (a name of `NAMED_STATES`, or a
    vector of length <= 1: a mixed state inside the sphere)."""
    if isinstance(state, str):
        return NAMED_STATES[state]
    return state


def _state(value: Any) -> str | tuple[float, float, float]:
    if isinstance(value, str):
        if value not in NAMED_STATES:
            raise BridgeWireError("state", f"{show(value)} is not one of "
                                  f"{', '.join(map(repr, NAMED_STATES))} or a Bloch vector")
        return value
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise BridgeWireError("state", "expected a state name or a Bloch vector [x, y, z]")
    vector = tuple(_number(f"state[{i}]", v, -1.0, 1.0) for i, v in enumerate(value))
    if math.fsum(v * v for v in vector) > 1.0 + 1e-9:
        raise BridgeWireError("state", f"Bloch vector {list(vector)} is longer than 1 (no "
                              "state lies outside the sphere)")
    return (vector[0], vector[1], vector[2])


# --- messages -----------------------------------------------------------------------------

@dataclass(frozen=True)
class RequestPairs:
    """`pairs` entangled pairs between `qnu_a` and `qnu_b`, each of fidelity >= `min_fidelity`
    when delivered, all held at once, within `deadline_s` s of the request's arrival (None:
    no deadline)."""

    request_id: str
    qnu_a: str
    qnu_b: str
    pairs: int
    min_fidelity: float
    deadline_s: float | None
    TYPE: ClassVar[str] = "REQUEST_PAIRS"

    def __post_init__(self) -> None:
        _request_id("request_id", self.request_id)
        _two_qnus("qnu_a", self.qnu_a, "qnu_b", self.qnu_b)
        _whole("pairs", self.pairs, 1, MAX_PAIRS)
        object.__setattr__(self, "min_fidelity", _fidelity("min_fidelity", self.min_fidelity))
        object.__setattr__(self, "deadline_s", _optional("deadline_s", self.deadline_s,
                                                         low=0.0, open_low=True))


@dataclass(frozen=True)
class RequestTransfer:
    """Teleport `state` from QNU `source` to `target`: one pair (fidelity >= `min_fidelity`)
    is consumed, the source's Bell-measurement outcome goes to the target as two bits and
    the target applies the correction. `state`: a name of `NAMED_STATES` or a Bloch vector
    (x, y, z) of length <= 1."""

    request_id: str
    source: str
    target: str
    state: str | tuple[float, float, float]
    min_fidelity: float
    deadline_s: float | None
    TYPE: ClassVar[str] = "REQUEST_TRANSFER"

    def __post_init__(self) -> None:
        _request_id("request_id", self.request_id)
        _two_qnus("source", self.source, "target", self.target)
        object.__setattr__(self, "state", _state(self.state))
        object.__setattr__(self, "min_fidelity", _fidelity("min_fidelity", self.min_fidelity))
        object.__setattr__(self, "deadline_s", _optional("deadline_s", self.deadline_s,
                                                         low=0.0, open_low=True))


@dataclass(frozen=True)
class Cancel:
    """Withdraw request `request_id` (its held pairs are freed)."""

    request_id: str
    TYPE: ClassVar[str] = "CANCEL"

    def __post_init__(self) -> None:
        _request_id("request_id", self.request_id)


@dataclass(frozen=True)
class Accepted:
    """The request is accepted; expected done `expected_time_s` s after its arrival."""

    request_id: str
    expected_time_s: float
    TYPE: ClassVar[str] = "ACCEPTED"

    def __post_init__(self) -> None:
        _request_id("request_id", self.request_id)
        object.__setattr__(self, "expected_time_s",
                           _number("expected_time_s", self.expected_time_s, 0.0))


@dataclass(frozen=True)
class Delivered:
    """The request's pairs, all held at once at `station`: each pair's fidelity when
    delivered; `latency_s` from the request's arrival."""

    request_id: str
    station: str
    fidelities: tuple[float, ...]
    latency_s: float
    TYPE: ClassVar[str] = "DELIVERED"

    def __post_init__(self) -> None:
        _request_id("request_id", self.request_id)
        _text("station", self.station, MAX_NAME)
        if not isinstance(self.fidelities, list | tuple) or not 1 <= len(self.fidelities) \
                <= MAX_PAIRS:
            raise BridgeWireError("fidelities", f"expected a list of 1..{MAX_PAIRS} numbers")
        object.__setattr__(self, "fidelities", tuple(
            _fidelity(f"fidelities[{i}]", f) for i, f in enumerate(self.fidelities)))
        object.__setattr__(self, "latency_s", _number("latency_s", self.latency_s, 0.0))


@dataclass(frozen=True)
class Transferred:
    """The state arrived: its `fidelity` to the state sent ((2F + 1)/3 for a pure state and
    a Werner pair of fidelity `pair_fidelity` = F), the Bell-measurement `bits` (m1, m2)
    that went to the target (it applied X^m2 then Z^m1), `classical_delay_s` their flight
    time, `latency_s` from the request's arrival to the pair's consumption."""

    request_id: str
    station: str
    fidelity: float
    pair_fidelity: float
    bits: tuple[int, int]
    classical_delay_s: float
    latency_s: float
    TYPE: ClassVar[str] = "TRANSFERRED"

    def __post_init__(self) -> None:
        _request_id("request_id", self.request_id)
        _text("station", self.station, MAX_NAME)
        object.__setattr__(self, "fidelity", _fidelity("fidelity", self.fidelity))
        object.__setattr__(self, "pair_fidelity",
                           _fidelity("pair_fidelity", self.pair_fidelity))
        if not isinstance(self.bits, list | tuple) or len(self.bits) != 2:
            raise BridgeWireError("bits", "expected two bits [m1, m2]")
        object.__setattr__(self, "bits", (_whole("bits[0]", self.bits[0], 0, 1),
                                          _whole("bits[1]", self.bits[1], 0, 1)))
        for name in ("classical_delay_s", "latency_s"):
            object.__setattr__(self, name, _number(name, getattr(self, name), 0.0))


@dataclass(frozen=True)
class Cancelled:
    """The request was withdrawn as asked."""

    request_id: str
    TYPE: ClassVar[str] = "CANCELLED"

    def __post_init__(self) -> None:
        _request_id("request_id", self.request_id)


@dataclass(frozen=True)
class Err:
    """A refusal: `code` of `ERR_CODES`, `reason` in words; `field` names what was wrong
    with a MALFORMED frame; `request_id` None when the frame's id could not be read."""

    request_id: str | None
    code: str
    reason: str
    field: str | None = None
    TYPE: ClassVar[str] = "ERR"

    def __post_init__(self) -> None:
        if self.request_id is not None:
            _request_id("request_id", self.request_id)
        if self.code not in ERR_CODES:
            raise BridgeWireError("code", f"{show(self.code)} is not one of "
                                  f"{', '.join(ERR_CODES)}")
        _text("reason", self.reason, MAX_TEXT)
        if self.field is not None:
            _text("field", self.field, MAX_NAME)


@dataclass(frozen=True)
class DecisionEntry:
    """One scheduler decision about the client's request (`records.Decision`): `time` s on
    the bridge's clock, the `action` and why (`reason`, `values`: the numbers it weighed)."""

    request_id: str
    time: float
    action: str
    reason: str
    station: str | None
    qnus: tuple[str, ...]
    ready_at: float | None
    code: str | None
    values: Mapping[str, float]
    TYPE: ClassVar[str] = "DECISION"

    def __post_init__(self) -> None:
        _request_id("request_id", self.request_id)
        object.__setattr__(self, "time", _number("time", self.time))
        if self.action not in ACTIONS:
            raise BridgeWireError("action", f"{show(self.action)} is not one of "
                                  f"{', '.join(ACTIONS)}")
        _text("reason", self.reason, MAX_TEXT)
        if self.station is not None:
            _text("station", self.station, MAX_NAME)
        if not isinstance(self.qnus, list | tuple) or len(self.qnus) > 2:
            raise BridgeWireError("qnus", "expected a list of at most 2 QNU names")
        object.__setattr__(self, "qnus", tuple(_text(f"qnus[{i}]", q, MAX_NAME)
                                               for i, q in enumerate(self.qnus)))
        object.__setattr__(self, "ready_at", _optional("ready_at", self.ready_at))
        if self.code is not None and self.code not in ERR_CODES:
            raise BridgeWireError("code", f"{show(self.code)} is not one of "
                                  f"{', '.join(ERR_CODES)}")
        if not isinstance(self.values, Mapping) or len(self.values) > MAX_VALUES:
            raise BridgeWireError("values", f"expected a mapping of at most {MAX_VALUES} "
                                  "numbers")
        object.__setattr__(self, "values", {
            _text("values", k, MAX_NAME): _number(f"values.{safe_field(k)}", v)
            for k, v in self.values.items()})


ClientMessage: TypeAlias = RequestPairs | RequestTransfer | Cancel
ServerMessage: TypeAlias = Accepted | Delivered | Transferred | Cancelled | Err | DecisionEntry
BridgeMessage: TypeAlias = ClientMessage | ServerMessage

_CLIENT: dict[str, type[ClientMessage]] = {
    cls.TYPE: cls for cls in (RequestPairs, RequestTransfer, Cancel)}
_SERVER: dict[str, type[ServerMessage]] = {
    cls.TYPE: cls for cls in (Accepted, Delivered, Transferred, Cancelled, Err,
                              DecisionEntry)}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def encode(message: BridgeMessage) -> bytes:
    """The frame of `message`: version byte + compact JSON with its ``"type"``."""
    data = {"type": message.TYPE,
            **{f.name: _plain(getattr(message, f.name)) for f in dataclasses.fields(message)}}
    try:
        payload = json.dumps(data, separators=(",", ":"), allow_nan=False,
                             ensure_ascii=False).encode()
    except ValueError as exc:  # a non-finite number: the fields' checks refuse it first
        raise BridgeWireError("payload", str(exc)) from None
    if len(payload) + 1 > MAX_FRAME_BYTES:
        raise BridgeWireError("payload", f"{len(payload) + 1} bytes, more than "
                              f"{MAX_FRAME_BYTES}")
    return bytes([VERSION]) + payload


def _refuse_constant(name: str) -> None:
    raise BridgeWireError("payload", f"{name} is not a number JSON may carry")


def _decode(frame: bytes | bytearray | memoryview,
            types: Mapping[str, type[BridgeMessage]], side: str) -> BridgeMessage:
    raw = bytes(frame)
    if len(raw) > MAX_FRAME_BYTES:
        raise BridgeWireError("frame", f"{len(raw)} bytes, more than {MAX_FRAME_BYTES}")
    if raw[:1] != bytes([VERSION]):
        raise BridgeWireError("version", f"{raw[:1]!r}, expected {VERSION} (the first byte)")
    try:
        data = json.loads(raw[1:].decode(), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, BridgeWireError):
            raise
        raise BridgeWireError("payload", f"not JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise BridgeWireError("payload", f"expected a JSON object, got {type(data).__name__}")
    request_id = data.get("request_id")
    if not (isinstance(request_id, str) and REQUEST_ID.fullmatch(request_id)):
        request_id = None
    kind = data.pop("type", None)
    cls = types.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise BridgeWireError("type", f"{show(kind)} is not a {side} message "
                              f"({', '.join(types)})", request_id)
    expected = {f.name for f in dataclasses.fields(cls)}
    if set(data) != expected:
        missing, extra = sorted(expected - set(data)), sorted(set(data) - expected)
        raise BridgeWireError(safe_field((missing or extra)[0]), f"{kind}: fields missing "
                              f"{missing}, unknown {show(extra)}", request_id)
    try:
        return cls(**data)
    except BridgeWireError as exc:
        exc.request_id = exc.request_id or request_id
        raise


def decode_request(frame: bytes | bytearray | memoryview) -> ClientMessage:
    """A client's message (REQUEST_PAIRS, REQUEST_TRANSFER, CANCEL), every field checked;
    raises `BridgeWireError` naming the field."""
    return _decode(frame, _CLIENT, "client")  # type: ignore[return-value]


def decode_reply(frame: bytes | bytearray | memoryview) -> ServerMessage:
    """An orchestrator's message, every field checked; raises `BridgeWireError`."""
    return _decode(frame, _SERVER, "orchestrator")  # type: ignore[return-value]
