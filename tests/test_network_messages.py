"""The wire format: round trips, byte layout, and every way a frame can be bad (with a fuzz loop
that feeds random, truncated and mutated frames and accepts only a message or MalformedMessage).
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from qnetlab.network.arm_messages import (
    MAX_ARM_DELAY_PS,
    MAX_MEASURE_US,
    ArmDelaysSet,
    ArmStatus,
    ArrivalsMeasured,
    MeasureArrivals,
    SetArmDelays,
)
from qnetlab.network.messages import (
    HERALD_DTYPE,
    MAX_HERALDS_PER_FRAME,
    MAX_INCARNATION,
    MAX_PAIRS_PER_CREATE,
    MAX_RESEND_RANGE,
    MAX_SEQ,
    MAX_SEQS_PER_BATCH,
    MAX_STATION_TIME_PS,
    NO_SEQ,
    VERSION,
    Ack,
    AttemptStats,
    ClockReply,
    ClockRequest,
    Create,
    Decoder,
    Err,
    ErrBatch,
    ErrCode,
    Heartbeat,
    Heralds,
    MalformedMessage,
    MsgType,
    Ok,
    OkBatch,
    ResendRequest,
    decode,
    encode_herald,
    encode_heralds,
    make_heralds,
)

U16, U32, U64, I64_MIN, I64_MAX = 2**16 - 1, 2**32 - 1, 2**64 - 1, -(2**63), 2**63 - 1

FIXED_MESSAGES = [
    AttemptStats(link=U16, first_attempt_id=U64, attempts=U64, heralds=7, window_end_ps=I64_MIN,
                 heralds_decided=MAX_SEQ + 1, incarnation=MAX_INCARNATION),
    Create(create_id=U32, remote_node=3, min_fidelity=0.8, max_time_s=2.5, purpose_id=U16,
           number=MAX_PAIRS_PER_CREATE, priority=255, keep=True),
    Create(create_id=0, remote_node=0, min_fidelity=0.0, max_time_s=0.0, purpose_id=0,
           number=1, priority=0, keep=False),
    Ack(create_id=17, expected_time_s=0.125),
    Ok(create_id=17, link=2, seq=MAX_SEQ, goodness=0.93, goodness_time_ps=I64_MAX),
    Err(create_id=17, link=2, seq=MAX_SEQ, code=ErrCode.LOST),
    Err(create_id=17, link=2, seq=NO_SEQ, code=ErrCode.TIMEOUT),
    Heartbeat(sender_id=9, seq=123456789, time_ps=-5),
    ClockRequest(sender_id=1, seq=2, t1_ns=I64_MAX),
    ClockReply(sender_id=1, seq=2, t1_ns=I64_MIN, t2_ns=10, t3_ns=MAX_STATION_TIME_PS // 1000),
    ResendRequest(link=1, first_seq=40, last_seq=40),
    ResendRequest(link=1, first_seq=MAX_SEQ - MAX_RESEND_RANGE + 1, last_seq=MAX_SEQ),
    SetArmDelays(link=U16, seq=U64, arm_a_ps=0, arm_b_ps=MAX_ARM_DELAY_PS),
    ArmDelaysSet(link=1, seq=U64, status=ArmStatus.DONE, first_seq=MAX_SEQ + 1),
    MeasureArrivals(link=1, seq=3, duration_us=MAX_MEASURE_US, arms=3, nominal_a_ps=0,
                    nominal_b_ps=MAX_ARM_DELAY_PS),
    ArrivalsMeasured(link=1, seq=3, status=ArmStatus.NO_PEAK, arm=2, arm_a_ps=548_800,
                     arm_a_error_ps=400, arm_b_ps=0, arm_b_error_ps=0, clicks=U64, syncs=0),
]


def herald_batch(n: int, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return make_heralds(7, np.arange(1000, 1000 + n), np.sort(rng.integers(0, 2**63, n)),
                        rng.integers(0, 2, n), rng.integers(-(2**62), 2**62, n))


def valid_frames() -> list[bytes]:
    return ([m.encode() for m in FIXED_MESSAGES] + [encode_herald(1, 0, 5, 1, 123)]
            + [encode_heralds(herald_batch(n)) for n in (2, 64)]
            + [b.encode() for b in BATCHES])


BATCHES = [
    OkBatch(create_id=U32, link=U16, goodness=1.0, goodness_time_ps=MAX_STATION_TIME_PS,
            seqs=np.array([0, 5, MAX_SEQ], np.uint64)),
    OkBatch(create_id=0, link=0, goodness=0.0, goodness_time_ps=-MAX_STATION_TIME_PS,
            seqs=np.arange(MAX_SEQS_PER_BATCH)),
    ErrBatch(create_id=9, link=3, code=ErrCode.EXPIRED, seqs=[7]),
    ErrBatch(create_id=9, link=3, code=ErrCode.DISAGREED, seqs=np.arange(40, 80, 3)),
]


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"{type(b).__name__}-{len(b)}")
def test_batches_of_seqs_round_trip(batch: OkBatch | ErrBatch) -> None:
    frame = batch.encode()
    assert frame[0] == VERSION and frame[1] == batch.TYPE
    assert len(frame) == (28 if isinstance(batch, OkBatch) else 13) + 8 * len(batch)
    decoded = decode(frame)
    assert type(decoded) is type(batch) and decoded.encode() == frame
    np.testing.assert_array_equal(decoded.seqs, batch.seqs)
    assert decoded.seqs.dtype == np.uint64 and not decoded.seqs.flags.writeable
    for field in ("create_id", "link", "goodness", "goodness_time_ps", "code"):
        assert getattr(decoded, field, None) == getattr(batch, field, None)


def test_batch_constructors_refuse_what_no_receiver_would_take() -> None:
    for seqs in ([], [3, 3], [5, 4], [-1], [MAX_SEQ + 1], np.arange(MAX_SEQS_PER_BATCH + 1),
                 np.zeros((2, 2), np.int64), [0.5]):
        with pytest.raises(ValueError, match="seqs"):
            OkBatch(1, 2, 0.9, 0, np.asarray(seqs))
    for code in (ErrCode.TIMEOUT, ErrCode.UNSUPPORTED, ErrCode.NO_RESOURCES, 99):
        with pytest.raises(ValueError, match="ErrBatch code"):
            ErrBatch(1, 2, code, [1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="OkBatch"):
        OkBatch(2**32, 2, 0.9, 0, [1]).encode()


def _ok_batch(seqs: list[int], goodness: float = 0.9, time_ps: int = 0, count: int | None = None
              ) -> bytes:
    """An OK_BATCH frame packed by hand (so any field can be wrong)."""
    head = struct.pack("<BBIHdqI", VERSION, MsgType.OK_BATCH, 1, 2, goodness, time_ps,
                       len(seqs) if count is None else count)
    return head + np.array(seqs, np.uint64).tobytes()


def _err_batch(seqs: list[int], code: int = ErrCode.EXPIRED, count: int | None = None) -> bytes:
    head = struct.pack("<BBIHBI", VERSION, MsgType.ERR_BATCH, 1, 2, code,
                       len(seqs) if count is None else count)
    return head + np.array(seqs, np.uint64).tobytes()


@pytest.mark.parametrize(("frame", "reason"), [
    (_ok_batch([1])[:-1], "truncated"),
    (_ok_batch([]), "truncated"),
    (_ok_batch([1, 2], count=3), "truncated"),
    (_ok_batch([1, 2], count=1), "bad length"),
    (_ok_batch([1], count=0) + bytes(8), "bad count"),
    (_ok_batch([1], count=MAX_SEQS_PER_BATCH + 1), "bad count"),
    (_ok_batch([1], count=U32), "bad count"),
    (_ok_batch([2, 2]), "bad value"),  # a seq twice
    (_ok_batch([3, 2]), "bad value"),  # not in order
    (_ok_batch([1, MAX_SEQ + 1]), "bad value"),
    (_ok_batch([1, 2**63]), "bad value"),  # would wrap through int64
    (_ok_batch([NO_SEQ]), "bad value"),
    (_ok_batch([1], goodness=math.nan), "bad value"),
    (_ok_batch([1], goodness=1.5), "bad value"),
    (_ok_batch([1], goodness=-0.1), "bad value"),
    (_ok_batch([1], time_ps=MAX_STATION_TIME_PS + 1), "bad value"),
    (_ok_batch([1], time_ps=I64_MIN), "bad value"),
    (_err_batch([1])[:-3], "truncated"),
    (_err_batch([1], count=0) + bytes(8), "bad count"),
    (_err_batch([1, 2]) + b"\x00", "bad length"),
    (_err_batch([5, 1]), "bad value"),
    (_err_batch([U64]), "bad value"),
    (_err_batch([1], code=ErrCode.TIMEOUT), "bad value"),  # a whole request's code
    (_err_batch([1], code=ErrCode.NO_RESOURCES), "bad value"),
    (_err_batch([1], code=0), "bad value"),
    (_err_batch([1], code=99), "bad value"),
])
def test_bad_batches_raise_malformed_message_with_their_reason(frame: bytes, reason: str
                                                               ) -> None:
    with pytest.raises(MalformedMessage) as info:
        decode(frame)
    assert info.value.reason == reason


@pytest.mark.parametrize("message", FIXED_MESSAGES, ids=lambda m: type(m).__name__)
def test_fixed_messages_round_trip_with_extreme_values(message: object) -> None:
    frame = message.encode()  # type: ignore[attr-defined]
    assert frame[0] == VERSION and frame[1] == type(message).TYPE  # type: ignore[attr-defined]
    assert decode(frame) == message


def test_layout_is_little_endian_and_packed() -> None:
    frame = Heartbeat(sender_id=0x0102, seq=0x0304, time_ps=-2).encode()
    assert frame == bytes([VERSION, MsgType.HEARTBEAT, 0x02, 0x01, 0x04, 0x03, 0, 0, 0, 0, 0, 0,
                           0xFE]) + b"\xff" * 7
    assert HERALD_DTYPE.itemsize == 27


def test_single_herald_fast_path_is_byte_identical_to_the_batch_encoder() -> None:
    fields = (65535, MAX_SEQ, 2**63 + 5, 1, -MAX_STATION_TIME_PS)
    frame = encode_herald(*fields)
    assert frame == encode_heralds(make_heralds(*fields))
    assert len(frame) == 2 + 4 + 27
    decoded = decode(frame)
    assert isinstance(decoded, Heralds) and len(decoded) == 1
    assert decoded.records[0].tolist() == fields


def test_herald_batch_round_trips_as_a_view_of_the_frame() -> None:
    records = herald_batch(64)
    frame = encode_heralds(records)
    assert len(frame) == 6 + 64 * 27
    decoded = decode(frame)
    assert isinstance(decoded, Heralds)
    np.testing.assert_array_equal(decoded.records, records)
    # np.frombuffer: the records live in the frame's memory, no per-record copy.
    assert not decoded.records.flags.owndata
    assert decoded.encode() == frame
    # A strided (non-contiguous) selection encodes its own rows only.
    strided = decode(encode_heralds(records[::2]))
    assert isinstance(strided, Heralds)
    assert strided.records.tolist() == records[::2].tolist()


def _frame(*parts: bytes) -> bytes:
    return b"".join(parts)


GOOD_HERALD = encode_herald(1, 2, 3, 0, 4)
TWO_HERALDS = encode_heralds(herald_batch(2))


@pytest.mark.parametrize(("frame", "reason"), [
    (b"", "truncated"),
    (b"\x01", "truncated"),
    (bytes([2]) + GOOD_HERALD[1:], "wrong version"),
    (bytes([0]) + GOOD_HERALD[1:], "wrong version"),
    (bytes([VERSION, 0]), "unknown type"),
    (bytes([VERSION, 17]) + b"\x00" * 30, "unknown type"),
    (bytes([VERSION, MsgType.HERALDS]), "truncated"),
    (GOOD_HERALD[:-1], "truncated"),
    (GOOD_HERALD + b"\x00", "bad length"),
    # Count says 3 records, the frame holds 2; count says 1, the frame holds 2.
    (TWO_HERALDS[:2] + struct.pack("<I", 3) + TWO_HERALDS[6:], "truncated"),
    (TWO_HERALDS[:2] + struct.pack("<I", 1) + TWO_HERALDS[6:], "bad length"),
    (GOOD_HERALD[:2] + struct.pack("<I", 0) + GOOD_HERALD[6:], "bad count"),
    (GOOD_HERALD[:2] + struct.pack("<I", 0), "truncated"),
    (encode_herald(1, 2, 3, 2, 4), "bad value"),
    (encode_heralds(make_heralds(1, np.arange(3), 0, np.array([0, 1, 9]), 0)), "bad value"),
    # Beyond the few checked in plain Python: numpy's checks, the bad one last.
    (encode_heralds(make_heralds(1, np.arange(40), 0, np.r_[np.zeros(39, int), 2], 0)),
     "bad value"),
    (encode_heralds(make_heralds(1, np.r_[np.arange(39), MAX_SEQ + 1].astype(np.uint64), 0,
                                 0, 0)), "bad value"),
    (encode_heralds(make_heralds(1, np.arange(40), 0, 0,
                                 np.r_[np.zeros(39, int), MAX_STATION_TIME_PS + 1])),
     "bad value"),
    (Heartbeat(1, 2, 3).encode()[:-1], "truncated"),
    (Heartbeat(1, 2, 3).encode() + b"\x00", "bad length"),
    (FIXED_MESSAGES[5].encode()[:-1] + b"\x63", "bad value"),  # ERR code 99
    (FIXED_MESSAGES[1].encode()[:-1] + b"\x02", "bad value"),  # CREATE keep byte 2
    (Ok(1, 2, 3, math.nan, 0).encode(), "bad value"),
    (Ok(1, 2, 3, 1.5, 0).encode(), "bad value"),
    (Create(1, 2, -0.1, 1.0, 0, 1, 0, True).encode(), "bad value"),
    (Create(1, 2, 0.5, math.inf, 0, 1, 0, True).encode(), "bad value"),
    (Ack(1, -1.0).encode(), "bad value"),
    (ResendRequest(1, 5, 4).encode(), "bad value"),
    (AttemptStats(1, 0, 3, 4, 0, 0, 0).encode(), "bad value"),
    (ClockReply(1, 2, 3, 10, 9).encode(), "bad value"),
    # a bridge orchestrator's arm requests and a station's answers
    (SetArmDelays(1, 2, -1, 0).encode(), "bad value"),
    (SetArmDelays(1, 2, 0, MAX_ARM_DELAY_PS + 1).encode(), "bad value"),
    (ArmDelaysSet(1, 2, 9, 0).encode(), "bad value"),
    (ArmDelaysSet(1, 2, 0, MAX_SEQ + 2).encode(), "bad value"),
    (MeasureArrivals(1, 2, 0, 3, 5, 5).encode(), "bad value"),
    (MeasureArrivals(1, 2, MAX_MEASURE_US + 1, 3, 5, 5).encode(), "bad value"),
    (MeasureArrivals(1, 2, 10, 4, 5, 5).encode(), "bad value"),
    (MeasureArrivals(1, 2, 10, 0, 5, 5).encode(), "bad value"),
    (ArrivalsMeasured(1, 2, 0, 3, 5, 1, 5, 1, 0, 0).encode(), "bad value"),
    (ArrivalsMeasured(1, 2, 0, 0, 5, -1, 5, 1, 0, 0).encode(), "bad value"),
    (ArrivalsMeasured(1, 2, 0, 0, I64_MIN, 1, 5, 1, 0, 0).encode(), "bad value"),
    (ArrivalsMeasured(1, 2, 7, 0, 5, 1, 5, 1, 0, 0).encode(), "bad value"),
    # Field values the layout can carry but no legal message has (issue 11, items 9-11).
    (Ok(1, 2, NO_SEQ, 0.9, 0).encode(), "bad value"),  # stopped the orchestrator
    (Ok(1, 2, MAX_SEQ + 1, 0.9, 0).encode(), "bad value"),
    (AttemptStats(1, 0, 3, 1, 0, U64, 0).encode(), "bad value"),  # OverflowError in a node
    (AttemptStats(1, 0, 3, 1, 0, 5, MAX_INCARNATION + 1).encode(), "bad value"),
    (encode_herald(1, 2**63, 3, 0, 4), "bad value"),  # wrapped through astype(int64)
    (encode_herald(1, 2, 3, 0, MAX_STATION_TIME_PS + 1), "bad value"),
    (encode_herald(1, 2, 3, 0, -MAX_STATION_TIME_PS - 1), "bad value"),
    (encode_heralds(make_heralds(1, np.array([5, U64], np.uint64), 0, 0, 0)), "bad value"),
    (encode_heralds(make_heralds(1, np.arange(2), 0, 0, np.array([0, I64_MIN]))), "bad value"),
    (encode_heralds(make_heralds(1, np.arange(MAX_HERALDS_PER_FRAME + 1), 0, 0, 0)),
     "bad count"),
    (struct.pack("<BBI", VERSION, MsgType.HERALDS, U32) + bytes(27), "bad count"),
    (ResendRequest(1, 0, MAX_RESEND_RANGE).encode(), "bad value"),
    (ResendRequest(1, 0, U64).encode(), "bad value"),
    (Create(1, 2, 0.5, 1.0, 0, MAX_PAIRS_PER_CREATE + 1, 0, True).encode(), "bad value"),
    (Err(1, 2, NO_SEQ, ErrCode.LOST).encode(), "bad value"),
    (Err(1, 2, 7, ErrCode.TIMEOUT).encode(), "bad value"),
    (Err(1, 2, MAX_SEQ + 1, ErrCode.LOST).encode(), "bad value"),
    (ClockReply(1, 2, 3, 10, MAX_STATION_TIME_PS // 1000 + 1).encode(), "bad value"),
    (ClockReply(1, 2, 3, I64_MIN, 0).encode(), "bad value"),
])
def test_bad_frames_raise_malformed_message_with_their_reason(frame: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessage) as info:
        decode(frame)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)


def test_non_bytes_input_is_malformed_not_a_crash() -> None:
    for junk in ("hello", None, 12, [1, 1], memoryview(np.zeros(4, dtype=np.int32).data)):
        with pytest.raises(MalformedMessage) as info:
            decode(junk)  # type: ignore[arg-type]
        assert info.value.reason == "not bytes"
    # Byte buffers other than bytes are fine.
    assert isinstance(decode(bytearray(GOOD_HERALD)), Heralds)
    assert isinstance(decode(memoryview(GOOD_HERALD)), Heralds)


def test_decoder_counts_each_reason_and_returns_none() -> None:
    decoder = Decoder()
    frames = [GOOD_HERALD, b"", b"\x01", bytes([9, 1]), bytes([VERSION, 99]), GOOD_HERALD[:-3],
              Ack(1, 0.5).encode()]
    results = [decoder.decode(frame) for frame in frames]
    assert [r is None for r in results] == [False, True, True, True, True, True, False]
    assert decoder.errors == {"truncated": 3, "wrong version": 1, "unknown type": 1}
    assert decoder.decoded == 2


def test_fuzz_random_truncated_and_mutated_frames_never_crash() -> None:
    """Anything a socket can deliver decodes to a message or raises MalformedMessage; and what
    decodes re-encodes to the same bytes (so the decoder read every byte, and only those)."""
    rng = np.random.default_rng(20240605)
    frames: list[bytes] = []
    for frame in valid_frames():
        frames += [frame[:cut] for cut in range(len(frame))]  # every truncation
        for _ in range(200):  # single-byte mutations
            mutated = bytearray(frame)
            mutated[rng.integers(len(frame))] = rng.integers(256)
            frames.append(bytes(mutated))
    for _ in range(5000):  # random bodies behind a valid header, with plausible lengths
        kind = int(rng.integers(0, 14))
        frames.append(bytes([VERSION, kind]) + rng.bytes(int(rng.integers(0, 70))))
    for _ in range(3000):  # batches of seqs: a valid header, random seqs (some in order)
        seqs = np.sort(rng.integers(0, 2**64, int(rng.integers(1, 5)), np.uint64))
        frames.append(_ok_batch(seqs.tolist(), goodness=float(rng.choice([0.5, 2.0]))))
        frames.append(_err_batch(seqs.tolist(), code=int(rng.integers(0, 8))))
    for _ in range(2000):  # arbitrary bytes
        frames.append(rng.bytes(int(rng.integers(0, 100))))

    decoder = Decoder()
    outcomes = {"ok": 0, "malformed": 0}
    for frame in frames:
        try:
            message = decode(frame)
        except MalformedMessage as err:
            assert err.reason in {"truncated", "wrong version", "unknown type", "bad length",
                                  "bad count", "bad value"}
            outcomes["malformed"] += 1
        else:
            assert message.encode() == frame
            outcomes["ok"] += 1
        decoder.decode(frame)
    assert decoder.decoded == outcomes["ok"]
    assert sum(decoder.errors.values()) == outcomes["malformed"]
    # The loop exercised both sides (a fuzz that only produced errors would prove little).
    assert outcomes["ok"] > 500 and outcomes["malformed"] > 5000


def test_encoders_refuse_values_that_do_not_fit_the_layout() -> None:
    with pytest.raises(ValueError, match="bell_state"):
        encode_herald(1, 2, 3, 256, 4)
    with pytest.raises(ValueError, match="Heartbeat"):
        Heartbeat(sender_id=-1, seq=0, time_ps=0).encode()
    with pytest.raises(ValueError, match="Err"):
        Err(create_id=2**32, link=0, seq=0, code=ErrCode.LOST).encode()
    with pytest.raises(ValueError, match="HERALD_DTYPE"):
        encode_heralds(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="at least one"):
        encode_heralds(np.zeros(0, dtype=HERALD_DTYPE))


def test_largest_legal_frame_fits_the_socket_limit() -> None:
    """`MAX_FRAME_BYTES` is the largest frame a legal message makes (a full HERALDS frame),
    and the sockets' limit leaves CURVE's framing room on top of it; a full batch of seqs
    is smaller."""
    from qnetlab.network.messages import MAX_FRAME_BYTES, SOCKET_MAXMSGSIZE

    full = encode_heralds(make_heralds(1, np.arange(MAX_HERALDS_PER_FRAME), 0, 0, 0))
    assert len(full) == MAX_FRAME_BYTES
    assert isinstance(decode(full), Heralds)
    assert all(len(m.encode()) < MAX_FRAME_BYTES for m in [*FIXED_MESSAGES, *BATCHES])
    assert MAX_FRAME_BYTES < SOCKET_MAXMSGSIZE <= MAX_FRAME_BYTES + 4096
