"""The control plane's wire format: compact little-endian binary frames.

Every frame starts with the protocol version byte (`VERSION`) and a `MsgType` byte, then one
fixed `struct` layout; a HERALDS frame batches 27-byte `HERALD_DTYPE` records that a receiver
reads with `np.frombuffer`. Decoding never trusts the frame: lengths and every field's legal
range (defined once here) are checked, and a bad frame raises `MalformedMessage`, which
`Decoder` counts and drops, so a process fed garbage keeps running.

Layouts, ranges and the link-layer messages (after Dahlberg et al. 2019):
docs/link.md#messages-and-wire-format. What every frame shares (version, type, the
fixed-layout base) is in `network._wire`; a bridge orchestrator's requests to a station's
arms in `network.arm_messages`; `decode` reads them all.
"""

from __future__ import annotations

import collections
import math
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, TypeAlias

import numpy as np
import zmq

from ._wire import MAX_SEQ, VERSION, MalformedMessage, MsgType, _Fixed
from .arm_messages import (
    ArmDelaysSet,
    ArrivalsMeasured,
    MeasureArrivals,
    SetArmDelays,
)

NO_SEQ = 2**64 - 1
"""The seq of an ERR that concerns a whole request rather than one pair (e.g. TIMEOUT)."""

MAX_STATION_TIME_PS = 2**62
"""Station times (ps, herald timestamps and a clock reply's times) lie within +-this (53 days
from the station's epoch), so the difference of two of them fits int64."""

MAX_HERALDS_PER_FRAME = 4096
"""Records one HERALDS frame may carry (110 kB); a station splits a longer batch."""

MAX_RESEND_RANGE = MAX_HERALDS_PER_FRAME
"""Seqs one ResendRequest may ask for (its answer is one HERALDS frame)."""

MAX_PAIRS_PER_CREATE = 1_000_000
"""Pairs one CREATE may ask for; a larger request is made of several CREATEs."""

MAX_SEQS_PER_BATCH = 8192
"""Seqs one OK_BATCH or ERR_BATCH may carry (64 kB); a longer batch is split."""

MAX_INCARNATION = 2**31 - 1
"""Incarnations are wall-clock ms at start, 31 bits
(`network.heralding_station.new_incarnation`)."""



class ErrCode(IntEnum):
    """Why a link-layer request or pair failed (after Dahlberg et al. 2019)."""

    EXPIRED = 1
    """The herald was older than the node's memory cutoff: never delivered."""
    UNSUPPORTED = 2
    TIMEOUT = 3
    NO_RESOURCES = 4
    DISAGREED = 5
    """The two nodes of the link did not both hold the pair."""
    LOST = 6
    """The herald never reached the node (not even by a resend)."""


HERALD_DTYPE = np.dtype([("link", "<u2"), ("seq", "<u8"), ("attempt_id", "<u8"),
                         ("bell_state", "u1"), ("timestamp_ps", "<i8")])
"""One herald: link id, per-link sequence number (from 0, +1 per herald), attempt id, Bell
state (0 = Psi+, 1 = Psi-) and the station's decision time in ps. Packed: 27 bytes."""

_HEADER = struct.Struct("<BB")
_HERALDS_HEADER = struct.Struct("<BBI")
_HERALD_ONE = struct.Struct("<BBIHQQBq")
assert HERALD_DTYPE.itemsize == 27 and _HERALD_ONE.size == _HERALDS_HEADER.size + 27


def make_heralds(link: int | np.ndarray, seq: np.ndarray | int, attempt_id: np.ndarray | int,
                 bell_state: np.ndarray | int, timestamp_ps: np.ndarray | int) -> np.ndarray:
    """Build a `HERALD_DTYPE` array from columns (scalars broadcast)."""
    columns = np.broadcast_arrays(np.asarray(link), np.asarray(seq), np.asarray(attempt_id),
                                  np.asarray(bell_state), np.asarray(timestamp_ps))
    records = np.empty(np.shape(columns[0]), dtype=HERALD_DTYPE)
    for name, column in zip(HERALD_DTYPE.names or (), columns, strict=True):
        records[name] = column
    return np.atleast_1d(records)


def encode_heralds(records: np.ndarray, *, check: bool = True) -> bytes:
    """One HERALDS frame holding every row of `records` (a 1-d `HERALD_DTYPE` array, >= 1 row).
    ``check=False`` skips the checks of `records` (a structured dtype's comparison is a few us
    on the heralds' latency): only for rows checked after the send (the station's)."""
    if not check:
        return (_HERALDS_HEADER.pack(VERSION, MsgType.HERALDS, len(records))
                + records.tobytes())
    if records.dtype != HERALD_DTYPE:
        raise ValueError(f"herald records have dtype {records.dtype}; build them with "
                         "network.messages.make_heralds or np.zeros(n, HERALD_DTYPE)")
    if records.ndim != 1 or len(records) == 0:
        raise ValueError(f"a HERALDS frame needs a 1-d array of at least one record, "
                         f"got shape {records.shape}")
    return (_HERALDS_HEADER.pack(VERSION, MsgType.HERALDS, len(records))
            + np.ascontiguousarray(records).tobytes())


def encode_herald(link: int, seq: int, attempt_id: int, bell_state: int,
                  timestamp_ps: int) -> bytes:
    """One herald in one frame: byte-identical to `encode_heralds` of a single row, faster."""
    try:
        return _HERALD_ONE.pack(VERSION, MsgType.HERALDS, 1, link, seq, attempt_id, bell_state,
                                timestamp_ps)
    except struct.error as err:
        raise ValueError(f"herald field out of range (link u16, seq/attempt_id u64, "
                         f"bell_state u8, timestamp_ps i64): {err}") from None


@dataclass(frozen=True, eq=False)
class Heralds:
    """A decoded HERALDS frame. `records` is a read-only `HERALD_DTYPE` view of the frame."""

    records: np.ndarray
    TYPE: ClassVar[MsgType] = MsgType.HERALDS

    def __len__(self) -> int:
        return len(self.records)

    def encode(self) -> bytes:
        return encode_heralds(self.records)


def _fidelity_ok(value: float) -> bool:
    return 0.0 <= value <= 1.0  # NaN fails both comparisons


@dataclass(frozen=True)
class AttemptStats(_Fixed):
    """Attempts made on a link in a window, how many were heralded, and how many heralds
    have been decided so far."""

    link: int
    first_attempt_id: int
    attempts: int
    heralds: int
    window_end_ps: int
    """Station time (ps) at the end of the window."""
    heralds_decided: int
    """Heralds of the link decided (due, and so published) so far: one past the highest seq.
    A node that has not seen a seq below it asks for it, so the lost tail of a stream (no
    later herald to reveal the gap) is found too."""
    incarnation: int
    """The sending station's incarnation (as in its heartbeats' high 32 bits): seqs count
    from 0 again in a new one, so a count from another incarnation says nothing."""
    TYPE: ClassVar[MsgType] = MsgType.ATTEMPT_STATS
    _STRUCT: ClassVar[struct.Struct] = struct.Struct("<BBHQQQqQI")

    def _check(self) -> str:
        if self.heralds > self.attempts:
            return "more heralds than attempts"
        if self.heralds_decided > MAX_SEQ + 1:
            return f"heralds_decided beyond MAX_SEQ + 1 ({MAX_SEQ + 1})"
        if self.incarnation > MAX_INCARNATION:
            return "incarnation beyond 31 bits"
        return ""


@dataclass(frozen=True)
class Create(_Fixed):
    """Link-layer request for `number` entangled pairs with `remote_node`."""

    create_id: int
    remote_node: int
    min_fidelity: float
    max_time_s: float
    """s; 0 means no limit."""
    purpose_id: int
    number: int
    priority: int
    keep: bool
    """True: keep the pairs in memory (K type); False: measure directly (M type)."""
    TYPE: ClassVar[MsgType] = MsgType.CREATE
    _STRUCT: ClassVar[struct.Struct] = struct.Struct("<BBIHddHIBB")

    def _fields(self) -> tuple[int | float, ...]:
        return (self.create_id, self.remote_node, self.min_fidelity, self.max_time_s,
                self.purpose_id, self.number, self.priority, int(self.keep))

    def _check(self) -> str:
        if not _fidelity_ok(self.min_fidelity):
            return "min_fidelity outside [0, 1]"
        if not (math.isfinite(self.max_time_s) and self.max_time_s >= 0.0):
            return "max_time_s negative or not finite"
        if self.number > MAX_PAIRS_PER_CREATE:
            return f"number beyond MAX_PAIRS_PER_CREATE ({MAX_PAIRS_PER_CREATE})"
        return ""


@dataclass(frozen=True)
class Ack(_Fixed):
    """A CREATE was accepted; pairs are expected within `expected_time_s` (s)."""

    create_id: int
    expected_time_s: float
    TYPE: ClassVar[MsgType] = MsgType.ACK
    _STRUCT: ClassVar[struct.Struct] = struct.Struct("<BBId")

    def _check(self) -> str:
        ok = math.isfinite(self.expected_time_s) and self.expected_time_s >= 0.0
        return "" if ok else "expected_time_s negative or not finite"


@dataclass(frozen=True)
class Ok(_Fixed):
    """One pair delivered: herald `seq` on `link`, fidelity estimate `goodness` at
    `goodness_time_ps` (station time, ps)."""

    create_id: int
    link: int
    seq: int
    goodness: float
    goodness_time_ps: int
    TYPE: ClassVar[MsgType] = MsgType.OK
    _STRUCT: ClassVar[struct.Struct] = struct.Struct("<BBIHQdq")

    def _check(self) -> str:
        if self.seq > MAX_SEQ:  # NO_SEQ included: only an ERR may speak of a whole request
            return f"seq beyond MAX_SEQ ({MAX_SEQ})"
        return "" if _fidelity_ok(self.goodness) else "goodness outside [0, 1]"


@dataclass(frozen=True)
class Err(_Fixed):
    """A pair (`seq`, or `NO_SEQ` for the whole request) failed, with the reason `code`."""

    create_id: int
    link: int
    seq: int
    code: ErrCode
    TYPE: ClassVar[MsgType] = MsgType.ERR
    _STRUCT: ClassVar[struct.Struct] = struct.Struct("<BBIHQB")

    def _check(self) -> str:
        if self.seq == NO_SEQ:
            ok = self.code in REQUEST_ERR_CODES
            return "" if ok else f"{self.code.name} for a whole request (NO_SEQ)"
        if self.seq > MAX_SEQ:
            return f"seq beyond MAX_SEQ ({MAX_SEQ})"
        return "" if self.code not in REQUEST_ERR_CODES else f"{self.code.name} for one pair"


@dataclass(frozen=True)
class Heartbeat(_Fixed):
    """Liveness: the `seq`-th heartbeat of `sender_id`, sent at its `time_ps` (ps)."""

    sender_id: int
    seq: int
    time_ps: int
    TYPE: ClassVar[MsgType] = MsgType.HEARTBEAT
    _STRUCT: ClassVar[struct.Struct] = struct.Struct("<BBHQq")


@dataclass(frozen=True)
class ClockRequest(_Fixed):
    """A node's clock probe, sent at its local `t1_ns` (ns)."""

    sender_id: int
    seq: int
    t1_ns: int
    TYPE: ClassVar[MsgType] = MsgType.CLOCK_REQUEST
    _STRUCT: ClassVar[struct.Struct] = struct.Struct("<BBHQq")


@dataclass(frozen=True)
class ClockReply(_Fixed):
    """The station's answer: `t1_ns` echoed, its receive time `t2_ns` and send time `t3_ns`
    (station clock, ns)."""

    sender_id: int
    seq: int
    t1_ns: int
    t2_ns: int
    t3_ns: int
    TYPE: ClassVar[MsgType] = MsgType.CLOCK_REPLY
    _STRUCT: ClassVar[struct.Struct] = struct.Struct("<BBHQqqq")

    def _check(self) -> str:
        if self.t3_ns < self.t2_ns:
            return "t3_ns before t2_ns"
        limit_ns = MAX_STATION_TIME_PS // 1000
        if not -limit_ns <= self.t2_ns <= self.t3_ns <= limit_ns:
            return "station time beyond MAX_STATION_TIME_PS"
        return ""


@dataclass(frozen=True)
class ResendRequest(_Fixed):
    """Ask the station to send heralds `first_seq`..`last_seq` (inclusive) of `link` again."""

    link: int
    first_seq: int
    last_seq: int
    TYPE: ClassVar[MsgType] = MsgType.RESEND_REQUEST
    _STRUCT: ClassVar[struct.Struct] = struct.Struct("<BBHQQ")

    def _check(self) -> str:
        if self.first_seq > self.last_seq:
            return "first_seq after last_seq"
        if self.last_seq > MAX_SEQ:
            return f"last_seq beyond MAX_SEQ ({MAX_SEQ})"
        if self.last_seq - self.first_seq >= MAX_RESEND_RANGE:
            return f"more than MAX_RESEND_RANGE ({MAX_RESEND_RANGE}) seqs"
        return ""

_OK_BATCH_HEADER = struct.Struct("<BBIHdqI")
"""version, type, create_id, link, goodness, goodness_time_ps, count; then count x seq u64."""
_ERR_BATCH_HEADER = struct.Struct("<BBIHBI")
"""version, type, create_id, link, code, count; then count x seq u64."""
_SEQ = np.dtype("<u8")


def _batch_seqs(seqs: np.ndarray | list[int] | tuple[int, ...]) -> np.ndarray:
    """`seqs` as a read-only little-endian u64 array, checked as a batch's seqs must be:
    1..MAX_SEQS_PER_BATCH of them, strictly increasing (so each at most once), none beyond
    MAX_SEQ. Raises ValueError naming the problem (an encoder's caller's bug)."""
    array = np.asarray(seqs)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise ValueError(f"batch seqs must be a 1-d integer array, got {array.dtype} "
                         f"of shape {array.shape}")
    problem = _seqs_problem(array)
    if problem:
        raise ValueError(f"batch seqs: {problem}")
    out = array.astype(_SEQ)
    out.flags.writeable = False
    return out


def _seqs_problem(seqs: np.ndarray) -> str:
    """Why `seqs` (1-d integers) cannot be a batch's seqs, or ""."""
    if not 1 <= len(seqs) <= MAX_SEQS_PER_BATCH:
        return f"{len(seqs)} seqs (1..MAX_SEQS_PER_BATCH = {MAX_SEQS_PER_BATCH})"
    if int(seqs.min()) < 0 or int(seqs.max()) > MAX_SEQ:
        return f"seq outside 0..MAX_SEQ ({MAX_SEQ})"
    if len(seqs) > 1 and bool((seqs[1:] <= seqs[:-1]).any()):
        return "seqs not strictly increasing"
    return ""


@dataclass(frozen=True, eq=False)
class OkBatch:
    """Many pairs held (node -> orchestrator) or delivered (orchestrator -> node) in one
    frame: the OK of each of `seqs` on `link` for request `create_id`, with one fidelity
    estimate `goodness` at `goodness_time_ps` (station time, ps). `seqs` is a read-only u64
    array, strictly increasing, 1..`MAX_SEQS_PER_BATCH` of them, each <= `MAX_SEQ`."""

    create_id: int
    link: int
    goodness: float
    goodness_time_ps: int
    seqs: np.ndarray
    TYPE: ClassVar[MsgType] = MsgType.OK_BATCH

    def __post_init__(self) -> None:
        object.__setattr__(self, "seqs", _batch_seqs(self.seqs))

    def __len__(self) -> int:
        return len(self.seqs)

    def encode(self) -> bytes:
        return encode_ok_batch(self.create_id, self.link, self.goodness,
                               self.goodness_time_ps, self.seqs)


@dataclass(frozen=True, eq=False)
class ErrBatch:
    """Many pairs failed for one reason `code` (a per-pair `ErrCode`: EXPIRED, LOST,
    DISAGREED): node -> orchestrator, or the orchestrator's release of pairs a node held.
    `seqs` as in `OkBatch`."""

    create_id: int
    link: int
    code: ErrCode
    seqs: np.ndarray
    TYPE: ClassVar[MsgType] = MsgType.ERR_BATCH

    def __post_init__(self) -> None:
        if self.code in REQUEST_ERR_CODES or self.code not in _ERR_CODES:
            raise ValueError(f"ErrBatch code {self.code!r}: a batch is about pairs, so one "
                             f"of EXPIRED, LOST, DISAGREED (a whole request: Err with NO_SEQ)")
        object.__setattr__(self, "code", ErrCode(self.code))
        object.__setattr__(self, "seqs", _batch_seqs(self.seqs))

    def __len__(self) -> int:
        return len(self.seqs)

    def encode(self) -> bytes:
        seqs = self.seqs
        return (_ERR_BATCH_HEADER.pack(VERSION, MsgType.ERR_BATCH, self.create_id, self.link,
                                       int(self.code), len(seqs))
                + seqs.tobytes())


def encode_ok_batch(create_id: int, link: int, goodness: float, goodness_time_ps: int,
                    seqs: np.ndarray) -> bytes:
    """An OK_BATCH frame from checked parts (`seqs` as `OkBatch` holds them); raises
    ValueError if a field does not fit its layout."""
    try:
        header = _OK_BATCH_HEADER.pack(VERSION, MsgType.OK_BATCH, create_id, link, goodness,
                                       goodness_time_ps, len(seqs))
    except struct.error as err:
        raise ValueError(f"OkBatch field out of range for its wire layout "
                         f"({_OK_BATCH_HEADER.format}): {err}") from None
    return header + np.ascontiguousarray(seqs, _SEQ).tobytes()


def split_seqs(seqs: np.ndarray) -> list[np.ndarray]:
    """Sorted unique `seqs` in pieces of at most `MAX_SEQS_PER_BATCH` (one batch each)."""
    return [seqs[i:i + MAX_SEQS_PER_BATCH] for i in range(0, len(seqs), MAX_SEQS_PER_BATCH)]


Message: TypeAlias = (Heralds | AttemptStats | Create | Ack | Ok | Err | Heartbeat
                      | ClockRequest | ClockReply | ResendRequest | OkBatch | ErrBatch
                      | SetArmDelays | ArmDelaysSet | MeasureArrivals | ArrivalsMeasured)


_FIXED_TYPES: tuple[type[_Fixed], ...] = (
    AttemptStats, Create, Ack, Ok, Err, Heartbeat, ClockRequest, ClockReply, ResendRequest,
    SetArmDelays, ArmDelaysSet, MeasureArrivals, ArrivalsMeasured)

REQUEST_ERR_CODES = frozenset({ErrCode.UNSUPPORTED, ErrCode.TIMEOUT, ErrCode.NO_RESOURCES})
"""The codes of an ERR about a whole request (seq `NO_SEQ`); every other code is about one
pair (a real seq)."""

MAX_FRAME_BYTES = max(_HERALDS_HEADER.size + MAX_HERALDS_PER_FRAME * HERALD_DTYPE.itemsize,
                      _OK_BATCH_HEADER.size + MAX_SEQS_PER_BATCH * _SEQ.itemsize,
                      _ERR_BATCH_HEADER.size + MAX_SEQS_PER_BATCH * _SEQ.itemsize,
                      *(cls._STRUCT.size for cls in _FIXED_TYPES))
"""Bytes of the largest legal frame (a full HERALDS frame; a full batch of seqs is 64 kB)."""

SOCKET_MAXMSGSIZE = MAX_FRAME_BYTES + 1024
"""`zmq.MAXMSGSIZE` of every socket of the lab. libzmq holds each wire frame to it, and with
CURVE a wire frame is the message plus its box (33 bytes), and the handshake's commands
(INITIATE carries the socket's metadata: a few hundred bytes) pass the same check; 1 kB
covers both."""


def limit_frame_size(*sockets: zmq.Socket) -> None:
    """Make libzmq refuse (and disconnect the peer of) any frame longer than
    `SOCKET_MAXMSGSIZE`, before reading it. Set before connect/bind."""
    for socket in sockets:
        socket.setsockopt(zmq.MAXMSGSIZE, SOCKET_MAXMSGSIZE)


_FIXED: dict[int, type[_Fixed]] = {cls.TYPE: cls for cls in _FIXED_TYPES}


def _decode_heralds(frame: bytes | bytearray | memoryview) -> Heralds:
    size = len(frame)
    if size < _HERALD_ONE.size:
        raise MalformedMessage("truncated", f"HERALDS frame of {size} bytes")
    (count,) = struct.unpack_from("<I", frame, 2)
    if count == 0:
        raise MalformedMessage("bad count", "HERALDS frame with zero records")
    if count > MAX_HERALDS_PER_FRAME:
        raise MalformedMessage("bad count", f"HERALDS count {count} beyond "
                               f"MAX_HERALDS_PER_FRAME ({MAX_HERALDS_PER_FRAME})")
    expected = _HERALDS_HEADER.size + count * HERALD_DTYPE.itemsize
    if size != expected:
        raise MalformedMessage("truncated" if size < expected else "bad length",
                               f"HERALDS count {count} needs {expected} bytes, got {size}")
    records = np.frombuffer(frame, dtype=HERALD_DTYPE, count=count,
                            offset=_HERALDS_HEADER.size)
    # A frame per tag block (~1 ms) is the latency path: a few heralds are checked without
    # numpy's per-call cost (~1 us each, several times that on a busy host).
    if count <= _FEW_HERALDS:
        rows = ([_HERALD_ROW.unpack_from(frame, _HERALDS_HEADER.size)] if count == 1
                else _HERALD_ROW.iter_unpack(memoryview(frame)[_HERALDS_HEADER.size:]))
        for _, seq, _, bell_state, timestamp_ps in rows:
            if not (seq <= MAX_SEQ and bell_state <= 1
                    and -MAX_STATION_TIME_PS <= timestamp_ps <= MAX_STATION_TIME_PS):
                raise MalformedMessage("bad value", _herald_problem(
                    seq > MAX_SEQ, bell_state > 1, True))
        return Heralds(records)
    else:
        timestamps = records["timestamp_ps"]
        problem = _herald_problem(
            bool((records["seq"] > MAX_SEQ).any()), bool((records["bell_state"] > 1).any()),
            bool(((timestamps < -MAX_STATION_TIME_PS) | (timestamps > MAX_STATION_TIME_PS))
                 .any()))
    if problem:
        raise MalformedMessage("bad value", problem)
    return Heralds(records)


_HERALD_ROW = struct.Struct("<HQQBq")
"""One `HERALD_DTYPE` record (packed: 27 bytes)."""
assert _HERALD_ROW.size == HERALD_DTYPE.itemsize
_FEW_HERALDS = 32
"""Up to this many heralds a frame is checked in plain Python (`_decode_heralds`)."""
"""seq, attempt_id, bell_state, timestamp_ps of a frame's first record."""


def _herald_problem(bad_seq: bool, bad_bell_state: bool, bad_time: bool) -> str:
    if bad_seq:
        return f"herald seq beyond MAX_SEQ ({MAX_SEQ})"
    if bad_bell_state:
        return "bell_state other than 0 (Psi+) or 1 (Psi-)"
    if bad_time:
        return f"herald timestamp_ps beyond +-MAX_STATION_TIME_PS ({MAX_STATION_TIME_PS})"
    return ""


def _decode_fixed(cls: type[_Fixed], frame: bytes | bytearray | memoryview) -> _Fixed:
    layout = cls._STRUCT
    if len(frame) != layout.size:
        raise MalformedMessage("truncated" if len(frame) < layout.size else "bad length",
                               f"{cls.TYPE.name} is {layout.size} bytes, got {len(frame)}")
    fields = layout.unpack(frame)[2:]
    if cls is Err:
        if fields[3] not in _ERR_CODES:
            raise MalformedMessage("bad value", f"unknown ERR code {fields[3]}")
        fields = (*fields[:3], ErrCode(fields[3]))
    elif cls is Create:
        if fields[7] > 1:
            raise MalformedMessage("bad value", f"CREATE keep byte {fields[7]} (0 or 1)")
        fields = (*fields[:7], bool(fields[7]))
    message = cls(*fields)
    problem = message._check()
    if problem:
        raise MalformedMessage("bad value", f"{cls.TYPE.name}: {problem}")
    return message


_ERR_CODES = frozenset(int(code) for code in ErrCode)
_REQUEST_CODES = frozenset(int(code) for code in (ErrCode.UNSUPPORTED, ErrCode.TIMEOUT,
                                                  ErrCode.NO_RESOURCES))


def _decode_batch(frame: bytes | bytearray | memoryview) -> OkBatch | ErrBatch:
    """An OK_BATCH or ERR_BATCH frame, every field checked (count, exact length, seqs
    strictly increasing within 0..MAX_SEQ, goodness in [0, 1], time within
    +-MAX_STATION_TIME_PS, a per-pair error code)."""
    ok = frame[1] == MsgType.OK_BATCH
    header = _OK_BATCH_HEADER if ok else _ERR_BATCH_HEADER
    name = "OK_BATCH" if ok else "ERR_BATCH"
    size = len(frame)
    if size < header.size + _SEQ.itemsize:
        raise MalformedMessage("truncated", f"{name} frame of {size} bytes")
    fields = header.unpack_from(frame)
    count = fields[-1]
    if count == 0 or count > MAX_SEQS_PER_BATCH:
        raise MalformedMessage("bad count", f"{name} count {count} (1..MAX_SEQS_PER_BATCH = "
                                            f"{MAX_SEQS_PER_BATCH})")
    expected = header.size + count * _SEQ.itemsize
    if size != expected:
        raise MalformedMessage("truncated" if size < expected else "bad length",
                               f"{name} count {count} needs {expected} bytes, got {size}")
    seqs = np.frombuffer(frame, dtype=_SEQ, count=count, offset=header.size)
    seqs.flags.writeable = False  # a bytearray frame gives a writable view
    # Unsigned: compare as u64 (no int64 wrap of a hostile 2^63 + x).
    if int(seqs[-1]) > MAX_SEQ or int(seqs.max()) > MAX_SEQ:
        raise MalformedMessage("bad value", f"{name}: seq beyond MAX_SEQ ({MAX_SEQ})")
    if count > 1 and bool((seqs[1:] <= seqs[:-1]).any()):
        raise MalformedMessage("bad value", f"{name}: seqs not strictly increasing")
    if ok:
        create_id, link, goodness, time_ps = fields[2:6]
        if not _fidelity_ok(goodness):
            raise MalformedMessage("bad value", f"{name}: goodness outside [0, 1]")
        if not -MAX_STATION_TIME_PS <= time_ps <= MAX_STATION_TIME_PS:
            raise MalformedMessage("bad value", f"{name}: goodness_time_ps beyond "
                                                f"+-MAX_STATION_TIME_PS")
        batch: OkBatch | ErrBatch = OkBatch.__new__(OkBatch)
        values: dict[str, Any] = {"create_id": create_id, "link": link, "goodness": goodness,
                                  "goodness_time_ps": time_ps}
    else:
        create_id, link, code = fields[2:5]
        if code not in _ERR_CODES or code in _REQUEST_CODES:
            raise MalformedMessage("bad value", f"{name}: code {code} is no per-pair ErrCode")
        batch = ErrBatch.__new__(ErrBatch)
        values = {"create_id": create_id, "link": link, "code": ErrCode(code)}
    # Built without __post_init__: the checks above are those, and the view stays read-only.
    for key, value in (*values.items(), ("seqs", seqs)):
        object.__setattr__(batch, key, value)
    return batch


def decode(frame: bytes | bytearray | memoryview) -> Message:
    """The message in `frame`; raises `MalformedMessage` (never anything else) if it is not one."""
    if not isinstance(frame, bytes | bytearray) and not (
            isinstance(frame, memoryview) and frame.format == "B" and frame.ndim == 1
            and frame.c_contiguous):
        raise MalformedMessage("not bytes", f"got {type(frame).__name__}")
    if len(frame) < _HEADER.size:
        raise MalformedMessage("truncated", f"{len(frame)} bytes, no header")
    if frame[0] != VERSION:
        raise MalformedMessage("wrong version", f"version {frame[0]}, this code speaks {VERSION}")
    kind = frame[1]
    if kind == MsgType.HERALDS:
        return _decode_heralds(frame)
    if kind == MsgType.OK_BATCH or kind == MsgType.ERR_BATCH:
        return _decode_batch(frame)
    cls = _FIXED.get(kind)
    if cls is None:
        raise MalformedMessage("unknown type", f"message type {kind}")
    return _decode_fixed(cls, frame)  # type: ignore[return-value]


class Decoder:
    """`decode` for a receive loop: a bad frame is counted under its reason and dropped."""

    def __init__(self) -> None:
        self.errors: collections.Counter[str] = collections.Counter()
        self.decoded = 0
        """Frames decoded successfully."""

    def decode(self, frame: bytes | bytearray | memoryview) -> Message | None:
        """The message in `frame`, or None (counted in `errors`) if it is malformed."""
        try:
            message = decode(frame)
        except MalformedMessage as err:
            self.errors[err.reason] += 1
            return None
        self.decoded += 1
        return message

    def reject(self, reason: str, count: int = 1) -> None:
        """Count a decoded message (or `count` herald records) its handler found out of range
        for this receiver (a link not its own, a seq it cannot believe, ...) as malformed
        under `reason`."""
        self.errors[reason] += count


# -- incarnations (moved here from the station module: senders and receivers share them) --
STATION_SENDER_ID = 0
"""sender_id of the heralding station's heartbeats."""


def incarnation_seq(count: int, incarnation: int) -> int:
    """A heartbeat seq: the sender's incarnation (wall-clock ms at its start, 31 bits) in the
    high 32 bits, its heartbeat count in the low 32. A receiver that sees the high half
    change knows the sender restarted, even if it missed the new incarnation's first beats."""
    return (incarnation << 32) | (count & 0xFFFFFFFF)


def new_incarnation() -> int:
    """This sender's incarnation: wall-clock ms now, 31 bits (`MAX_INCARNATION`)."""
    import time  # here, not at the top: appended to this module by the station's split

    return (time.time_ns() // 1_000_000) & MAX_INCARNATION
