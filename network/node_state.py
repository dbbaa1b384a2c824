"""What a node agent knows and decides: its link's herald sequence, its clock to the
station, the pairs it holds, and its side of the link layer (`Node`; the process around it is
`network.node_agent`).

Gaps in the herald sequence are asked for again and then given up (LOST); heralds older than
the memory cutoff are expired (ERR EXPIRED); a station restart (a new incarnation in its
heartbeat) makes the node resynchronise from the station's history. Nothing received is
trusted: out-of-range or implausible messages are counted as malformed and dropped.
Files in ``run_dir``: ``<name>_pairs.bin`` (`PAIR_LOG_DTYPE`, flushed per event),
``<name>_events.jsonl``, and at exit ``<name>_summary.json`` and ``<name>_latency.npy``
(`LATENCY_DTYPE`).

Protocol: docs/link.md#sequence-numbers.
"""

from __future__ import annotations

import json
import struct
import time
from collections import Counter
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import zmq

from .clock import ClockSync
from .held_pairs import HeldPairs
from .latency_samples import LATENCY_DTYPE, LatencySamples
from .messages import (
    MAX_INCARNATION,
    MAX_RESEND_RANGE,
    MAX_SEQS_PER_BATCH,
    MAX_STATION_TIME_PS,
    NO_SEQ,
    STATION_SENDER_ID,
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
    Ok,
    OkBatch,
    ResendRequest,
    encode_ok_batch,
    incarnation_seq,
    new_incarnation,
    split_seqs,
)
from .network_config import OK_INTERVAL_S
from .tracker import Arrival, SequenceTracker, expired

PAIR_LOG_DTYPE = np.dtype([("link", "<u2"), ("seq", "<u8"), ("attempt_id", "<u8"),
                           ("herald_ps", "<i8"), ("event_ps", "<i8"), ("create_id", "<u4"),
                           ("event", "u1")])
"""One pair event of a node: herald and event times in station ps."""

_PAIR_LOG_ROW = struct.Struct("<HQQqqIB")
"""One `PAIR_LOG_DTYPE` row, packed without numpy (the one-herald path)."""
assert _PAIR_LOG_ROW.size == PAIR_LOG_DTYPE.itemsize


_FUTURE_TOLERANCE_PS = 10**12
"""ps a herald's decision time may lie ahead of this node's reading of station time (1 s:
far beyond any clock error) before the herald is taken as hostile: a real station publishes
a herald only once its time has come."""

_MAX_CLOCK_STEP_NS = 10**9
"""ns a clock exchange's offset may differ from the current estimate (1 s, far beyond any
real drift between exchanges); a station restart resets the estimate."""

_CLOCK_REQUESTS_KEPT = 64
"""Clock requests remembered (seq -> t1) to match their replies against."""


def _one_seq(seq: int) -> np.ndarray:
    return np.array([seq], np.uint64)


def _station_time_ok(time_ps: int) -> bool:
    """A reading of station time within `MAX_STATION_TIME_PS` (strictly), so its difference
    with any legal herald timestamp fits int64."""
    return -MAX_STATION_TIME_PS < time_ps < MAX_STATION_TIME_PS


class PairEvent(IntEnum):
    OK_SENT = 1
    """The node held a fresh pair and reported it to the orchestrator."""
    DELIVERED = 2
    """The orchestrator confirmed it: both nodes hold it."""
    RELEASED = 3
    """The orchestrator released it (ERR: the other node did not hold it, or outside the
    request); the memory is freed."""
    EXPIRED = 4
    """Older than the memory cutoff at arrival: ERR EXPIRED sent, never delivered."""
    LOST = 5
    """Never arrived, not even by resend: ERR LOST sent."""


@dataclass(frozen=True)
class NodeSettings:
    name: str
    node_id: int
    """sender_id of this node's heartbeats and clock requests."""
    link_id: int
    station_name: str
    herald_address: str
    request_address: str
    orchestrator_name: str
    orchestrator_address: str
    key_dir: Path | None
    run_dir: Path
    memory_cutoff: float
    """s"""
    goodness: float
    """Fidelity estimate reported with each OK (the link's expected fidelity)."""
    expected_pair_rate: float
    """Heralds/s, for the ACK's expected time."""
    epoch_ns: int | None = None
    """The station's epoch on this host's monotonic clock, when it runs on this host: station
    time is then read exactly. None across hosts: the clock exchanges' estimate is used."""
    heartbeat_period: float = 0.05
    heartbeat_misses: int = 4
    clock_period: float = 0.05
    resend_timeout: float = 0.005
    """s a node waits for its first resend request to be answered; each later wait is
    twice the one before."""
    resend_attempts: int = 4
    resync_depth: int = 256
    """Heralds before the first one seen that a (re)started node asks the history for."""
    max_seq_jump: int = 2**32
    """Seqs a herald (or the AttemptStats' count) may lie beyond the highest one known
    before it is not believed (counted malformed, dropped): a corrupted seq would otherwise
    open a gap that, given up, makes every later herald LATE. 2^32 is an hour of heralds at
    1 MHz; a (re)started node takes its first seq as it comes."""
    max_seconds: float | None = None
    telemetry_address: str | None = None
    """PUB for ``qnetlab monitor``: this node's link statistics about once a second
    (network.link_telemetry); None: none published."""
    link_nodes: tuple[str, ...] = ()
    """The link's two nodes, in the link's order (its name in telemetry)."""
    receive: Literal["blocking", "poller"] = "blocking"
    """How heralds are waited for: a blocking recv on the herald socket (see the module
    docstring), or one zmq.Poller over all three sockets (kept for comparison)."""
    idle_check: float = 0.01
    """s: the longest a blocking herald recv waits before the other sockets are looked at
    (only matters while no heralds come: after each herald they are looked at anyway). Each
    idle wake costs the machine a few us of CPU, so not much below the heartbeat period."""
    yield_after_receipt: bool = True
    """Give up the CPU once (sched_yield) between stamping a herald's receipt and handling
    it, so a receive that is runnable on the same core (the other node's, on one host) goes
    first; costs ~1 us when nothing else is waiting. False only for comparison."""
    ok_interval: float = OK_INTERVAL_S
    """s a node gathers the OKs of the heralds it takes before it sends them to the
    orchestrator as one OK_BATCH (0: each batch of heralds it takes is answered at once). On
    a shared host every OK frame costs a wake-up of the node's ZeroMQ I/O thread and of the
    orchestrator, CPU the other node's next herald receipt may be waiting for; gathering
    them for a few ms makes those wake-ups rarer (docs/link.md#delivery-measured). It delays
    only the verdict (the orchestrator's reconcile_timeout must be longer), never a herald's
    receipt or its expiry."""
    handling_delay: float = 0.0
    """s a received herald (its receipt already stamped) waits before it is handled, with
    whatever arrives meanwhile (stamped when taken). Only for measuring, on one host, how
    much a node's handling delays the other node's receipt: 0 in real use."""


class Node:
    """One node agent's state and decisions; `network.node_agent` feeds it what its sockets
    receive and calls its timers."""

    def __init__(self, s: NodeSettings, sub: zmq.Socket, station: zmq.Socket,
                 orchestrator: zmq.Socket, pairs: IO[bytes], events: IO[str]) -> None:
        self.settings = s
        self.sub, self.station, self.orchestrator = sub, station, orchestrator
        self.pairs_file, self.events_file = pairs, events
        self.tracker = SequenceTracker()
        self.base: int | None = None
        """Seq the tracker counts from (seq - base); None until the first herald (or the
        first AttemptStats' count) since the (re)start."""
        self.first_seen = 0
        """First seq known since the (re)start: older ones are the resync from history."""
        self.clock = ClockSync()
        self.decoder = Decoder()
        self.counters: Counter[str] = Counter()
        self.latency = LatencySamples()
        self.requested: dict[tuple[int, int], list[float]] = {}
        """Missing range (tracker numbering) -> [requests sent, next deadline (monotonic s)]."""
        self.create: Create | None = None
        self.create_start_ps = 0
        self.remaining = 0
        self.held = HeldPairs()
        """OK'd pairs awaiting the orchestrator's verdict."""
        self.station_heartbeat: int | None = None
        self.station_heard = time.monotonic()
        self.station_lost = False
        self.clock_seq = 0
        self.clock_sent: dict[int, int] = {}
        """The last clock requests' t1 (ns) by seq: a reply must answer one of them."""
        self.clock_awaited_until = 0.0
        """monotonic s until which a clock reply is expected (its t4 is stamped at recv)."""
        self.heartbeat_seq = 0
        self.incarnation = new_incarnation()
        self.unsent_oks: list[tuple[int, np.ndarray]] = []
        """(create id, seqs) OK'd and logged, gathered for `ok_interval` before they go."""
        self.oks_due: float | None = None
        """monotonic s by which the gathered OKs are sent; None: none gathered."""

    # -- time ---------------------------------------------------------------------------
    def station_ps(self, local_ns: int) -> int | None:
        """Station time (ps) of this node's monotonic `local_ns`; None while unknown (or
        outside the legal range of station times)."""
        if self.settings.epoch_ns is not None:
            time_ps = (local_ns - self.settings.epoch_ns) * 1000
        elif self.clock.ready:
            time_ps = self.clock.to_station_ns(local_ns) * 1000
        else:
            return None
        return time_ps if _station_time_ok(time_ps) else None

    def station_ps_many(self, local_ns: np.ndarray) -> np.ndarray | None:
        # Both ends of the batch are in range, so is every time between (and no int64 wraps).
        first, last = self.station_ps(int(local_ns[0])), self.station_ps(int(local_ns[-1]))
        if first is None or last is None:
            return None
        if self.settings.epoch_ns is not None:
            return (local_ns - self.settings.epoch_ns) * 1000
        # One offset for the batch: drift over a batch is negligible.
        return local_ns * 1000 + (last - int(local_ns[-1]) * 1000)

    def event(self, kind: str, **detail: Any) -> None:
        line = {"event": kind, "t_ns": time.monotonic_ns(), **detail}
        self.events_file.write(json.dumps(line) + "\n")
        self.events_file.flush()

    def log_pairs(self, rows: np.ndarray, event: PairEvent, event_ps: int) -> None:
        out = np.empty(len(rows), PAIR_LOG_DTYPE)
        out["link"] = self.settings.link_id
        out["seq"] = rows["seq"]
        out["attempt_id"] = rows["attempt_id"]
        out["herald_ps"] = rows["timestamp_ps"]
        out["event_ps"] = event_ps
        out["create_id"] = self.create.create_id if self.create is not None else 0
        out["event"] = event
        self.pairs_file.write(out.tobytes())
        self.pairs_file.flush()

    def log_pair(self, seq: int, attempt_id: int, herald_ps: int, event: PairEvent,
                 event_ps: int) -> None:
        """`log_pairs` of one row, without numpy."""
        create_id = self.create.create_id if self.create is not None else 0
        self.pairs_file.write(_PAIR_LOG_ROW.pack(self.settings.link_id, seq, attempt_id, herald_ps,
                                                 event_ps, create_id, event))
        self.pairs_file.flush()

    # -- heralds ------------------------------------------------------------------------
    def on_herald(self, record: np.ndarray, received_ns: int) -> None:
        """One fresh herald (a one-row frame): the common case at any moderate rate, done in
        plain Python, since on 2 cores the node's CPU time right after a herald delays the
        other node's receipt. Anything unusual (no seq base yet, another link, out of order,
        no station time) goes to `on_heralds`, whose outcome is the same."""
        link, seq, attempt_id, _, herald_ps = record.item(0)
        base = self.base
        if (base is None or link != self.settings.link_id or seq - base != self.tracker.next_seq):
            self.on_heralds(record, received_ns, fresh=True)
            return
        received_ps = self.station_ps(received_ns)
        if received_ps is None or herald_ps > received_ps + _FUTURE_TOLERANCE_PS:
            self.on_heralds(record, received_ns, fresh=True)
            return
        self.latency.add_one(seq, received_ps - herald_ps, received_ps)
        arrival = self.tracker.observe(seq - base)
        assert arrival is Arrival.NEW
        now_ps = self.station_ps(time.monotonic_ns())
        assert now_ps is not None
        old = expired(herald_ps, now_ps, self.settings.memory_cutoff)
        if old:
            self.counters["expired"] += 1
        create = self.create
        if create is None or herald_ps < self.create_start_ps:
            return
        if old:
            self.send_orchestrator(ErrBatch(create.create_id, self.settings.link_id,
                                            ErrCode.EXPIRED, _one_seq(seq)))
            self.log_pair(seq, attempt_id, herald_ps, PairEvent.EXPIRED, now_ps)
            return
        self.log_pair(seq, attempt_id, herald_ps, PairEvent.OK_SENT, now_ps)  # before the OK
        if self.settings.ok_interval > 0:
            self.gather_oks(create.create_id, _one_seq(seq))
        else:
            self._send_oks(create.create_id, _one_seq(seq), now_ps)
        self.held.add(record)
        self.counters["ok_sent"] += 1
        self.remaining -= 1
        if self.remaining <= 0:
            self.create = None

    def on_heralds(self, records: np.ndarray, received_ns: int | np.ndarray,
                   fresh: bool) -> None:
        if bool((records["link"] != self.settings.link_id).any()):
            self.counters["other_link"] += int((records["link"] != self.settings.link_id).sum())
            records = records[records["link"] == self.settings.link_id]
            if not len(records):
                return
        received_ps = (self.station_ps_many(received_ns) if isinstance(received_ns, np.ndarray)
                       else self.station_ps(received_ns))
        if received_ps is not None:  # a real station publishes a herald once it is due
            records, received_ps = self._drop(
                records, received_ps, "herald from the future",
                records["timestamp_ps"] > received_ps + _FUTURE_TOLERANCE_PS)
        if self.base is not None and len(records):
            records, received_ps = self._drop(
                records, received_ps, "herald seq beyond belief",
                records["seq"].astype(np.int64) - self.base
                > self.tracker.next_seq + self.settings.max_seq_jump)
        if not len(records):
            return
        if fresh and received_ps is not None:
            sample = np.empty(len(records), LATENCY_DTYPE)
            sample["seq"] = records["seq"]
            sample["latency_ps"] = received_ps - records["timestamp_ps"]
            sample["received_ps"] = received_ps
            self.latency.add_batch(sample)
        seqs = records["seq"].astype(np.int64)
        base = self.base if self.base is not None else self.start_resync(int(seqs.min()))
        below = seqs < base
        if below.any():
            self.counters["before_resync"] += int(below.sum())
            records, seqs = records[~below], seqs[~below]
        use = records[self.tracker.observe_many(seqs - base)]
        self.request_gaps()
        if not len(use):
            return
        now_ps = self.station_ps(time.monotonic_ns())
        if now_ps is None:  # no time reference yet: cannot judge age, so cannot use them
            self.counters["no_clock"] += len(use)
            return
        old = np.asarray(expired(use["timestamp_ps"], now_ps, self.settings.memory_cutoff), bool)
        resync = use["seq"].astype(np.int64) < self.first_seen
        self.counters["expired"] += int((old & ~resync).sum())
        self.counters["resync_expired"] += int((old & resync).sum())
        if self.create is None:
            return
        in_request = use["timestamp_ps"] >= self.create_start_ps
        stale = use[old & in_request]
        if len(stale):
            self.log_pairs(stale, PairEvent.EXPIRED, now_ps)
            self.send_err_batch(np.unique(stale["seq"]), ErrCode.EXPIRED)
        good = use[~old & in_request][:self.remaining]
        if len(good):
            # Logged before the OKs leave: a node killed between the two must not leave a
            # delivered pair that its own record says it never held.
            self.log_pairs(good, PairEvent.OK_SENT, now_ps)
            self.held.add(good)
            # One frame for the batch (sorted: a resent herald may fill a gap below).
            # Decoded seqs (<= MAX_SEQ), sorted and unique: a legal batch as they are.
            if self.settings.ok_interval > 0:
                self.gather_oks(self.create.create_id, good["seq"].astype(np.uint64))
            else:
                self._send_oks(self.create.create_id, np.unique(good["seq"]), now_ps)
        if len(good):
            self.counters["ok_sent"] += len(good)
            self.remaining -= len(good)
            if self.remaining <= 0:
                self.create = None

    def _drop(self, records: np.ndarray, received_ps: np.ndarray | int | None, reason: str,
              bad: np.ndarray) -> tuple[np.ndarray, np.ndarray | int | None]:
        """`records` (and their receipt times, when one per record) without the `bad` ones,
        which are counted as malformed under `reason`."""
        if not bad.any():
            return records, received_ps
        self.decoder.reject(reason, int(bad.sum()))
        if isinstance(received_ps, np.ndarray):
            received_ps = received_ps[~bad]
        return records[~bad], received_ps

    def request_gaps(self) -> None:
        assert self.base is not None or not self.tracker.missing()
        now = time.monotonic()
        missing = self.tracker.missing()
        for key in list(self.requested):
            if key not in missing:
                del self.requested[key]
        for first, last in missing:
            state = self.requested.get((first, last))
            if state is not None and now < state[1]:
                continue
            if state is not None and state[0] >= self.settings.resend_attempts:
                self.give_up(first, last)
                del self.requested[(first, last)]
                continue
            base = self.base or 0
            # One request asks for one frame's worth; what is left is asked for next time.
            ask_last = min(last, first + MAX_RESEND_RANGE - 1)
            self._send(self.station, ResendRequest(self.settings.link_id, base + first,
                                                   base + ask_last).encode(), "station")
            self.counters["resend_requests"] += 1
            # Each wait twice the one before: a station or host briefly busy (a start-up, a
            # burst) gets time to answer before the gap is given up for lost.
            if state is None:
                self.requested[(first, last)] = [1, now + self.settings.resend_timeout]
            else:
                state[0] += 1
                state[1] = now + self.settings.resend_timeout * 2 ** (state[0] - 1)

    def give_up(self, first: int, last: int) -> None:
        self.tracker.give_up(first, last)
        if self.create is None:
            return
        base = self.base or 0
        # Reported up to one batch's worth: a longer loss is a broken link, not pairs to free.
        seqs = np.arange(base + first, base + min(last, first + MAX_SEQS_PER_BATCH - 1) + 1,
                         dtype=np.uint64)
        rows = np.zeros(len(seqs), [("seq", "<u8"), ("attempt_id", "<u8"),
                                    ("timestamp_ps", "<i8")])
        rows["seq"] = seqs
        self.log_pairs(rows, PairEvent.LOST, self.station_ps(time.monotonic_ns()) or 0)
        self.send_err_batch(seqs, ErrCode.LOST)

    def start_resync(self, first_seen: int) -> int:
        """Nothing seen since the (re)start, and `first_seen` is the first seq known: the
        tracker's base (returned) goes up to ``resync_depth`` heralds before it, so the gap
        below `first_seen` is asked of the history."""
        self.first_seen = first_seen
        base = self.base = max(0, first_seen - self.settings.resync_depth)
        self.counters["resync_heralds"] += first_seen - base
        self.event("resync", first_seq=first_seen, base=base)
        return base

    def on_attempt_stats(self, stats: AttemptStats) -> None:
        """The station's count of decided heralds: any below it not seen yet is a gap. The
        only way a lost tail of the stream shows (no later herald comes), and how a node
        (re)started while the link is quiet resynchronises."""
        self.counters["attempt_stats"] += 1
        if stats.link != self.settings.link_id:
            self.decoder.reject("attempt stats of another link")
            return
        if stats.heralds_decided <= 0:
            return
        if (self.base is not None and stats.heralds_decided - 1 - self.base
                > self.tracker.next_seq + self.settings.max_seq_jump):
            self.decoder.reject("heralds_decided beyond belief")
            return
        if (self.station_heartbeat is not None
                and stats.incarnation != self.station_heartbeat >> 32):
            # A station restarted and its heartbeat has not come yet (or an old one's
            # stats): its count is not in the numbering the tracker holds.
            self.counters["stats_other_incarnation"] += 1
            return
        if self.base is None:
            base = self.start_resync(stats.heralds_decided)
            self.tracker.expect_through(stats.heralds_decided - 1 - base)
        else:
            unseen = self.tracker.expect_through(stats.heralds_decided - 1 - self.base)
            self.counters["tail_gaps"] += unseen
        self.request_gaps()

    # -- what the sockets bring ------------------------------------------------------------
    def on_station_pub(self, message: object) -> None:
        """A decoded message from the station's PUB other than heralds (None: malformed,
        already counted)."""
        if isinstance(message, Heartbeat):
            self.on_station_heartbeat(message)
        elif isinstance(message, AttemptStats):
            self.on_attempt_stats(message)
        elif message is not None:
            self.counters["unexpected_from_station"] += 1

    def on_station_reply(self, frame: bytes, received_ns: int) -> None:
        """A frame from the station's ROUTER: resent heralds or a clock reply."""
        message = self.decoder.decode(frame)
        if isinstance(message, Heralds):
            self.counters["heralds_resent"] += len(message)
            self.on_heralds(message.records, received_ns, fresh=False)
        elif isinstance(message, ClockReply):
            self.on_clock_reply(message, received_ns)
        elif message is not None:
            self.counters["unexpected_from_station"] += 1

    def on_orchestrator_frame(self, frame: bytes, received_ns: int) -> None:
        self.on_orchestrator(self.decoder.decode(frame))

    # -- station liveness and clock -------------------------------------------------------
    def on_station_heartbeat(self, beat: Heartbeat) -> None:
        if beat.sender_id != STATION_SENDER_ID or beat.seq >> 32 > MAX_INCARNATION:
            self.decoder.reject("heartbeat not from a station")
            return
        if self.station_heartbeat is not None and beat.seq >> 32 != self.station_heartbeat >> 32:
            self.event("station_restarted", heartbeat_seq=beat.seq)
            self.counters["station_restarts"] += 1
            self.tracker.reset()
            self.base = None
            self.requested.clear()
            self.clock.reset()
        if self.station_lost:
            self.event("station_back", heartbeat_seq=beat.seq)
            self.station_lost = False
        self.station_heartbeat = beat.seq
        self.station_heard = time.monotonic()

    def check_station(self) -> None:
        silent = time.monotonic() - self.station_heard
        if self.station_heartbeat is None:  # not heard yet: starting, not lost
            return
        allowed = self.settings.heartbeat_misses * self.settings.heartbeat_period
        if not self.station_lost and silent > allowed:
            self.station_lost = True
            self.counters["station_lost"] += 1
            self.event("station_lost", silent_s=silent)

    def send_clock_request(self) -> None:
        t1_ns = time.monotonic_ns()
        self._send(self.station, ClockRequest(self.settings.node_id, self.clock_seq,
                                              t1_ns).encode(), "station")
        self.clock_sent[self.clock_seq] = t1_ns
        self.clock_sent.pop(self.clock_seq - _CLOCK_REQUESTS_KEPT, None)
        self.clock_seq += 1
        self.clock_awaited_until = time.monotonic() + 0.01

    def awaiting_station(self) -> bool:
        """A reply from the station is due: a clock exchange or a resend in flight."""
        return bool(self.requested) or time.monotonic() < self.clock_awaited_until

    def on_clock_reply(self, reply: ClockReply, received_ns: int) -> None:
        if reply.seq == self.clock_seq - 1:
            self.clock_awaited_until = 0.0
        problem = self._clock_reply_problem(reply, received_ns)
        if problem:
            self.counters["clock_reply_rejected"] += 1
            self.decoder.reject(problem)
            return
        del self.clock_sent[reply.seq]
        self.clock.add(reply.t1_ns, reply.t2_ns, reply.t3_ns, received_ns)

    def _clock_reply_problem(self, reply: ClockReply, received_ns: int) -> str:
        """Why `reply` cannot be a true answer to one of this node's clock requests."""
        if (reply.sender_id != self.settings.node_id
                or self.clock_sent.get(reply.seq) != reply.t1_ns):
            return "clock reply to no request of this node"
        if reply.t1_ns > received_ns or (reply.t3_ns - reply.t2_ns
                                         > received_ns - reply.t1_ns):
            return "clock reply held longer than its round trip"
        if self.clock.ready:
            predicted = self.clock.to_station_ns((reply.t1_ns + received_ns) // 2)
            if abs((reply.t2_ns + reply.t3_ns) // 2 - predicted) > _MAX_CLOCK_STEP_NS:
                return "clock reply far from the clock's estimate"
        return ""

    # -- link layer ----------------------------------------------------------------------
    def _send_oks(self, create_id: int, seqs: np.ndarray, now_ps: int) -> None:
        """OK for sorted unique `seqs`, in as few frames as the batch limit allows."""
        for part in split_seqs(seqs):
            if self._send(self.orchestrator, encode_ok_batch(
                    create_id, self.settings.link_id, self.settings.goodness, now_ps, part),
                    "orchestrator"):
                self.counters["ok_frames"] += 1
            else:
                # The orchestrator delivers a pair only with both nodes' OKs in hand: one it
                # never got can never be delivered, so the memory is freed here.
                self.on_verdicts(part, False, "ok_not_sent")

    def gather_oks(self, create_id: int, seqs: np.ndarray) -> None:
        """Keep OKs (already logged) to send with the others within `ok_interval`."""
        self.unsent_oks.append((create_id, seqs))
        if self.oks_due is None:
            self.oks_due = time.monotonic() + self.settings.ok_interval

    def flush_oks(self, *, force: bool = False) -> None:
        """Send the gathered OKs if they are due (or `force`): one OK_BATCH per request,
        in the order the requests came."""
        if self.oks_due is None or (not force and time.monotonic() < self.oks_due):
            return
        gathered, self.unsent_oks, self.oks_due = self.unsent_oks, [], None
        now_ps = self.station_ps(time.monotonic_ns()) or 0
        for create_id in dict.fromkeys(create for create, _ in gathered):
            seqs = np.concatenate([s for create, s in gathered if create == create_id])
            self._send_oks(create_id, np.unique(seqs), now_ps)

    def send_orchestrator(self, message: OkBatch | ErrBatch | Err | Ack | Heartbeat) -> None:
        self._send(self.orchestrator, message.encode(), "orchestrator")

    def _send(self, socket: zmq.Socket, frame: bytes, peer: str) -> bool:
        """Send `frame` to `peer` ("station" or "orchestrator") if its queue takes it at
        once (the agent sets a send timeout of 0 on both sockets). A queue stays full only
        while the peer takes nothing (it refused this node's CURVE handshake, or has been
        gone for a thousand frames): then the frame is dropped and counted, and the node
        stays responsive to its heralds and to a stop instead of blocking in the send (a
        refused node hung there until SIGKILLed). Each dropped frame is made good: clock
        and resend requests are repeated, an OK batch's pairs are released here
        (`_send_oks`), and the orchestrator's reconcile timeout releases what it never
        heard of at the other node."""
        try:
            socket.send(frame)
        except zmq.Again:
            key = f"send_dropped_{peer}"
            self.counters[key] += 1
            if self.counters[key] == 1:
                self.event("send_dropped", peer=peer)
            return False
        return True

    def send_err_batch(self, seqs: np.ndarray, code: ErrCode) -> None:
        """ERR `code` for sorted unique `seqs` of the current request, in as few frames as
        the batch limit allows."""
        assert self.create is not None
        for part in split_seqs(seqs):
            self.send_orchestrator(ErrBatch(self.create.create_id, self.settings.link_id,
                                            code, part))

    def heartbeat(self) -> None:
        """Liveness to the orchestrator, which takes the first one as "ready": so it starts
        only once the station's heralds reach this node and its clock is known."""
        if self.station_heartbeat is None or self.station_ps(time.monotonic_ns()) is None:
            return
        now_ps = self.station_ps(time.monotonic_ns()) or 0
        seq = incarnation_seq(self.heartbeat_seq, self.incarnation)
        self.send_orchestrator(Heartbeat(self.settings.node_id, seq, now_ps))
        self.heartbeat_seq += 1

    def on_orchestrator(self, message: object) -> None:
        if isinstance(message, Create):
            self.on_create(message)
        elif isinstance(message, Ok | Err | OkBatch | ErrBatch) and (
                message.link != self.settings.link_id):
            self.decoder.reject("verdict for another link")
        elif isinstance(message, Err) and message.seq == NO_SEQ:
            if self.create is not None and self.create.create_id == message.create_id:
                self.create = None
            self.counters[f"request_{message.code.name.lower()}"] += 1
        elif isinstance(message, OkBatch | ErrBatch):
            self.on_verdicts(message.seqs, isinstance(message, OkBatch),
                             message.code.name.lower() if isinstance(message, ErrBatch) else "")
        elif isinstance(message, Ok | Err):  # one pair: the orchestrator sends batches
            self.on_verdicts(np.array([message.seq], np.uint64), isinstance(message, Ok),
                             message.code.name.lower() if isinstance(message, Err) else "")
        elif message is not None:
            self.counters["unexpected_from_orchestrator"] += 1

    def on_verdicts(self, seqs: np.ndarray, delivered: bool, reason: str) -> None:
        """The orchestrator's verdict on `seqs` (sorted unique): delivered (both nodes hold
        them), or released for `reason`. Only pairs this node holds are logged; a verdict for
        any other (never OK'd here, or already judged) changes nothing and is counted."""
        rows = self.held.take(seqs)
        unknown = len(seqs) - len(rows)
        if unknown:
            self.counters["verdict_for_unknown_pair"] += unknown
        if not len(rows):
            return
        now_ps = self.station_ps(time.monotonic_ns()) or 0
        if delivered:
            self.log_pairs(rows, PairEvent.DELIVERED, now_ps)
            self.counters["delivered"] += len(rows)
        else:
            self.log_pairs(rows, PairEvent.RELEASED, now_ps)
            self.counters[f"released_{reason}"] += len(rows)

    def on_create(self, create: Create) -> None:
        self.flush_oks(force=True)  # the last request's OKs before this one's answer
        if create.number == 0:  # a CREATE for no pairs cancels that request
            if self.create is not None and self.create.create_id == create.create_id:
                self.create = None
            return
        if create.min_fidelity > self.settings.goodness:
            self.send_orchestrator(Err(create.create_id, self.settings.link_id, NO_SEQ,
                                       ErrCode.UNSUPPORTED))
            return
        start = self.station_ps(time.monotonic_ns())
        if start is None:
            self.send_orchestrator(Err(create.create_id, self.settings.link_id, NO_SEQ,
                                       ErrCode.NO_RESOURCES))
            return
        self.create, self.create_start_ps, self.remaining = create, start, create.number
        self.send_orchestrator(Ack(create.create_id,
                                   create.number / max(self.settings.expected_pair_rate, 1e-9)))

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.settings.name, "counters": dict(self.counters),
                               "tracker": dict(self.tracker.counters),
                               "malformed": dict(self.decoder.errors)}
        if self.clock.ready:
            estimate = self.clock.estimate()
            out["clock"] = {"offset_s": estimate.offset_s, "drift": estimate.drift,
                            "residual_rms_s": estimate.residual_rms_s,
                            "delay_s": estimate.delay_s, "samples": estimate.samples}
            if self.settings.epoch_ns is not None:
                # Same host: the true offset (station - node) is -epoch exactly.
                out["clock"]["error_s"] = estimate.offset_s + self.settings.epoch_ns * 1e-9
        return out
