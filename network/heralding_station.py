"""The heralding station process: runs the herald source in real time and publishes heralds.

Station time is ``(monotonic_ns - epoch_ns)`` in ps (`epoch_ns` from the launcher). The herald
source is computed ahead of that clock and each herald is published when the clock reaches its
decision time; bookkeeping waits for a quiet time so it never delays a herald. Sockets: PUB
(``herald_address``: HERALDS, Heartbeat, AttemptStats) and ROUTER (``request_address``:
ResendRequest, ClockRequest), all CURVE servers admitting only the lab's keys. Injected faults
(`StationFaults`) skip, delay or corrupt publications for the fault tests. At exit: ground
truth ``<run_dir>/<name>_truth.npy`` (`TRUTH_DTYPE`), send times ``<name>_sends.npy``
(`SEND_DTYPE`), counters ``<name>_summary.json``.

Scheduling and protocol: docs/link.md#the-stations-schedule.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import zmq

from .keys import make_curve_server, start_authenticator
from .messages import (
    HERALD_DTYPE,
    MAX_HERALDS_PER_FRAME,
    AttemptStats,
    ClockReply,
    ClockRequest,
    Decoder,
    Heartbeat,
    ResendRequest,
    encode_heralds,
    limit_frame_size,
)
from .tracker import HeraldHistory

STATION_SENDER_ID = 0
"""sender_id of the station's heartbeats."""


def incarnation_seq(count: int, incarnation: int) -> int:
    """A heartbeat seq: the sender's incarnation (wall-clock ms at its start, 31 bits) in the
    high 32 bits, its heartbeat count in the low 32. A receiver that sees the high half
    change knows the sender restarted, even if it missed the new incarnation's first beats."""
    return (incarnation << 32) | (count & 0xFFFFFFFF)


def new_incarnation() -> int:
    return (time.time_ns() // 1_000_000) & 0x7FFFFFFF

TRUTH_DTYPE = np.dtype([("seq", "<u8"), ("attempt_id", "<u8"), ("time_ps", "<i8"),
                        ("bell_state", "u1"), ("fidelity", "<f4"), ("genuine", "?")])
"""Ground truth of one herald, as the simulated world knows it (never sent on the wire)."""

SEND_DTYPE = np.dtype([("first_seq", "<u8"), ("last_seq", "<u8"), ("send_ps", "<i8"),
                       ("decided_ps", "<i8")])
"""One published herald frame: its seq range, its hand-off time (station ps, taken right
before encoding and sending: where a real station's software latency starts) and the
decision time of its latest herald (station ps)."""

_MAX_SEND_LOG = 4_000_000
"""Frames whose hand-off time is kept (~100 MB of Python tuples at most)."""

_FILE_EVERY = 64
"""Frames sent before their filing in the history (and the send log) is a chore of its own;
otherwise it waits for the next timed chore or resend request (a few ms)."""

_MALFORMED = (b"", b"\x01", b"\x02\x01\x00", b"\x01\x63", b"\x01\x01\x02\x00\x00\x00\x00",
              b"\x01\x07\x00")
"""Frames injected by `StationFaults.malformed_every`: empty, truncated header, wrong
version, unknown type, truncated herald batch, truncated heartbeat."""


class AttemptBatchLike(Protocol):
    attempts: int
    first_attempt_id: int
    heralds: np.ndarray
    """Rows with at least attempt_id, time_ps, bell_state (fidelity, genuine: ground truth)."""


class HeraldSource(Protocol):
    """What the station runs: every attempt up to a station time (ps), as one batch."""

    def run_until(self, station_time_ps: int) -> AttemptBatchLike: ...


class HeraldSourceFactory(Protocol):
    """Builds the herald source at the station's start (a picklable callable, e.g.
    ``functools.partial(LinkSimulator, model, seed)``), so its first attempt is "now"."""

    def __call__(self, *, start_ps: int) -> HeraldSource: ...


@dataclass(frozen=True)
class StationFaults:
    """Injected faults, for the fault tests (none by default)."""

    skip_every: int = 0
    """Every n-th herald (seq % n == n - 1) is not published; it stays in the history."""
    skip_history: bool = False
    """Skipped heralds are not kept for resends either, so the nodes must report them lost."""
    delay_every: int = 0
    """Every n-th herald (seq % n == n // 2) is published `delay_s` late."""
    delay_s: float = 0.0
    malformed_every: int = 0
    """A malformed frame is published after every n-th herald frame."""
    drop_tail_from: int | None = None
    """Heralds from this seq on are not published (they stay in the history): a stream's end
    lost, as when a socket closes with frames still queued (libzmq issue 4660). No later
    herald reveals the gap; only the AttemptStats' count of decided heralds does."""


@dataclass(frozen=True)
class StationSettings:
    name: str
    link_id: int
    herald_address: str
    request_address: str
    key_dir: Path | None
    """CURVE keys; None only for the benchmark's without-CURVE comparison."""
    run_dir: Path
    epoch_ns: int
    """time.monotonic_ns() at station time 0 (shared by the launcher)."""
    heartbeat_period: float = 0.05
    stats_period: float = 0.1
    history: int = 65536
    lookahead_s: float = 0.05
    """s the source is computed ahead of the clock (refilled when half is left, at most a
    quarter per quiet time, so no single computation holds the loop for long)."""
    settle_s: float = 0.0003
    """s after a send during which the station only waits: the nodes are receiving."""
    guard_s: float = 0.00015
    """s before the next herald in which no bookkeeping is started."""
    max_defer_s: float = 0.002
    """s bookkeeping may wait for a quiet time before it is done regardless."""
    faults: StationFaults = field(default_factory=StationFaults)
    max_seconds: float | None = None
    """Stop by itself after this long (s); None: until stopped."""


@dataclass
class HeraldBatch:
    """A plain `AttemptBatchLike` (what `PeriodicHeralds` returns)."""

    attempts: int
    first_attempt_id: int
    heralds: np.ndarray


_PERIODIC_DTYPE = np.dtype([("attempt_id", "<u8"), ("time_ps", "<i8"), ("bell_state", "u1")])


@dataclass(frozen=True)
class TimeSlots:
    """Repeating windows of station time: every `cycle_ps`, from `offset_ps` for `length_ps`.
    A benchmark gives each setup on one machine its own slots, so that setups measured in the
    same run alternate every few hundred ms and share whatever the machine is doing."""

    cycle_ps: int
    offset_ps: int
    length_ps: int

    def contains(self, time_ps: np.ndarray | int) -> np.ndarray | bool:
        return (np.asarray(time_ps) - self.offset_ps) % self.cycle_ps < self.length_ps

    def next_on(self, time_ps: int) -> int:
        """The first time (ps) at or after `time_ps` inside a slot (plain ints: cheap)."""
        into = (time_ps - self.offset_ps) % self.cycle_ps
        return time_ps if into < self.length_ps else time_ps + self.cycle_ps - into


class PeriodicHeralds:
    """A test-signal herald source: one herald every `period_ps` (only inside `slots`, if
    given), no ground truth. For the benchmark and the fault tests, which need a known, steady
    herald rate. ``functools.partial(PeriodicHeralds, period_ps)`` is a
    `HeraldSourceFactory`."""

    def __init__(self, period_ps: int, *, start_ps: int, slots: TimeSlots | None = None) -> None:
        self.period_ps, self.start_ps = int(period_ps), int(start_ps)
        self.slots = slots
        self.next_id = 0

    def run_until(self, station_time_ps: int) -> HeraldBatch:
        end = max(self.next_id, (station_time_ps - self.start_ps) // self.period_ps + 1)
        ids = np.arange(self.next_id, end, dtype=np.uint64)
        times = self.start_ps + ids.astype(np.int64) * self.period_ps
        first, self.next_id = self.next_id, int(end)
        if self.slots is not None:
            on = np.asarray(self.slots.contains(times), bool)
            ids, times = ids[on], times[on]
        heralds = np.empty(len(ids), _PERIODIC_DTYPE)
        heralds["attempt_id"] = ids
        heralds["time_ps"] = times
        heralds["bell_state"] = ids % 2
        return HeraldBatch(int(end) - first, first, heralds)


def station_now_ps(epoch_ns: int) -> int:
    return (time.monotonic_ns() - epoch_ns) * 1000


class _Station:
    def __init__(self, settings: StationSettings, source: HeraldSource, pub: zmq.Socket,
                 router: zmq.Socket) -> None:
        self.settings = settings
        self.source = source
        self.pub, self.router = pub, router
        self.history = HeraldHistory(settings.history)
        self.decoder = Decoder()
        self.counters: Counter[str] = Counter()
        self.pending = np.zeros(0, HERALD_DTYPE)
        """Heralds computed ahead, waiting for their decision time (time order)."""
        self.delayed = np.zeros(0, HERALD_DTYPE)
        self.truth: list[np.ndarray] = []
        self.next_seq = 0
        """Seq of the next herald computed."""
        self.decided_seq = 0
        """Seq of the next herald to fall due: every one below it has been published, or
        withheld or held back by an injected fault (a node then fetches a held-back one from
        the history, and its late copy is a duplicate)."""
        self.computed_until_ps = station_now_ps(settings.epoch_ns)
        self.heartbeat_seq = 0
        self.incarnation = new_incarnation()
        self.last_send_ns = 0
        """monotonic ns of the latest herald frame's hand-off."""
        self.sends: list[tuple[int, int, int, int]] = []
        """Per published frame, as `SEND_DTYPE`."""
        self.unlogged: list[tuple[np.ndarray, int]] = []
        """Frames sent (and their hand-off time, ps) not yet in `sends` or the counters."""
        self.unfiled: list[np.ndarray] = []
        """Heralds published (or skipped) but not yet in the history: filed at a quiet time,
        always before a resend request is served."""
        self.stats_first_attempt: int | None = None
        self.stats_attempts = 0
        self.stats_heralds = 0

    # -- the herald source -------------------------------------------------------------
    def compute_ahead(self, now_ps: int) -> None:
        lookahead_ps = round(self.settings.lookahead_s * 1e12)
        if self.computed_until_ps >= now_ps + lookahead_ps // 2:
            return
        until = min(now_ps + lookahead_ps,
                    max(self.computed_until_ps, now_ps) + lookahead_ps // 4)
        batch = self.source.run_until(until)
        self.computed_until_ps = until
        if self.stats_first_attempt is None:
            self.stats_first_attempt = int(batch.first_attempt_id)
        self.stats_attempts += int(batch.attempts)
        rows = batch.heralds
        n = len(rows)
        self.stats_heralds += n
        self.counters["attempts"] += int(batch.attempts)
        if n == 0:
            return
        records = np.empty(n, HERALD_DTYPE)
        records["link"] = self.settings.link_id
        records["seq"] = np.arange(self.next_seq, self.next_seq + n, dtype=np.uint64)
        records["attempt_id"] = rows["attempt_id"]
        records["bell_state"] = rows["bell_state"]
        records["timestamp_ps"] = rows["time_ps"]
        self.next_seq += n
        names = rows.dtype.names or ()
        if "fidelity" in names:
            truth = np.empty(n, TRUTH_DTYPE)
            truth["seq"] = records["seq"]
            for key in ("attempt_id", "time_ps", "bell_state", "fidelity", "genuine"):
                truth[key] = rows[key]
            self.truth.append(truth)
        self.pending = np.concatenate([self.pending, records]) if len(self.pending) else records

    # -- publishing ---------------------------------------------------------------------
    def refill_ps(self) -> int:
        """Station time (ps) at which the source must be computed further ahead."""
        return self.computed_until_ps - round(self.settings.lookahead_s * 0.5e12)

    def next_due_ps(self) -> int | None:
        """Station time (ps) of the next publication (a herald, or a delayed one's release);
        None when nothing computed is waiting."""
        due = int(self.pending["timestamp_ps"][0]) if len(self.pending) else None
        if len(self.delayed):
            release = (int(self.delayed["timestamp_ps"].min())
                       + round(self.settings.faults.delay_s * 1e12))
            due = release if due is None else min(due, release)
        return due

    def publish_due(self, now_ps: int) -> bool:
        """Publish every herald due by `now_ps`; whether anything was sent."""
        sent = False
        if len(self.delayed):
            release = self.delayed["timestamp_ps"] + round(self.settings.faults.delay_s * 1e12)
            ready = release <= now_ps
            if ready.any():
                self._send(self.delayed[ready])
                self.delayed = self.delayed[~ready]
                sent = True
        if not len(self.pending) or self.pending["timestamp_ps"][0] > now_ps:
            return sent
        cut = int(np.searchsorted(self.pending["timestamp_ps"], now_ps, side="right"))
        due, self.pending = self.pending[:cut], self.pending[cut:]
        faults = self.settings.faults
        if not (faults.skip_every or faults.delay_every or faults.drop_tail_from is not None):
            self._send(due, settle=True)
            self.unfiled.append(due)
            self.decided_seq = int(due["seq"][-1]) + 1  # after the send: off the latency path
            return True
        self.decided_seq = int(due["seq"][-1]) + 1
        publish = np.ones(len(due), bool)
        keep = np.ones(len(due), bool)
        seqs = due["seq"].astype(np.int64)
        if faults.skip_every or faults.drop_tail_from is not None:
            skipped = np.zeros(len(due), bool)
            if faults.skip_every:
                skipped |= seqs % faults.skip_every == faults.skip_every - 1
            if faults.drop_tail_from is not None:
                skipped |= seqs >= faults.drop_tail_from
            publish &= ~skipped
            if faults.skip_history:
                keep &= ~skipped
            self.counters["skipped_by_fault"] += int(skipped.sum())
        if faults.delay_every:
            late = (seqs % faults.delay_every == faults.delay_every // 2) & publish
            publish &= ~late
            self.counters["delayed_by_fault"] += int(late.sum())
            self.delayed = np.concatenate([self.delayed, due[late]])
        self.unfiled.append(due[keep])
        if publish.all():
            self._send(due)
        elif publish.any():
            self._send(due[publish])
        return sent or bool(publish.any())

    def _send(self, records: np.ndarray, *, settle: bool = False) -> None:
        """Hand `records` to the PUB. With `settle`, then sleep ``settle_s`` (or until the
        next herald is due) before anything else: on 2 cores any Python work here would hold
        a core that the PUB's I/O thread and both nodes' receives need right now."""
        next_ns = 2**62
        if settle:  # before the hand-off, so that nothing but the send precedes the sleep
            due_ps = self.next_due_ps()
            if due_ps is not None:
                next_ns = self.settings.epoch_ns - (-due_ps // 1000)
        send_ns = time.monotonic_ns()
        if len(records) <= MAX_HERALDS_PER_FRAME:
            self.pub.send(encode_heralds(records))
        else:  # a backlog (the station was held up): no frame beyond the receivers' limit
            for start in range(0, len(records), MAX_HERALDS_PER_FRAME):
                self.pub.send(encode_heralds(records[start:start + MAX_HERALDS_PER_FRAME]))
        if settle:
            _sleep_until(min(send_ns + round(self.settings.settle_s * 1e9), next_ns))
        self.last_send_ns = send_ns
        self.unlogged.append((records, (send_ns - self.settings.epoch_ns) * 1000))  # filed later
        every = self.settings.faults.malformed_every
        if every and (self.counters["herald_frames"] + len(self.unlogged)) % every == 0:
            bad = _MALFORMED[self.counters["malformed_injected"] % len(_MALFORMED)]
            self.pub.send(bad)
            self.counters["malformed_injected"] += 1

    def heartbeat(self, now_ps: int) -> None:
        seq = incarnation_seq(self.heartbeat_seq, self.incarnation)
        self.pub.send(Heartbeat(STATION_SENDER_ID, seq, now_ps).encode())
        self.heartbeat_seq += 1

    def stats(self, now_ps: int) -> None:
        if self.stats_first_attempt is None:
            return
        self.pub.send(AttemptStats(self.settings.link_id, self.stats_first_attempt,
                                   self.stats_attempts, self.stats_heralds,
                                   self.computed_until_ps, self.decided_seq,
                                   self.incarnation).encode())
        self.stats_first_attempt = None
        self.stats_attempts = self.stats_heralds = 0

    def file_history(self) -> None:
        for records, send_ps in self.unlogged:
            self.counters["herald_frames"] += 1
            self.counters["heralds_published"] += len(records)
            if len(self.sends) < _MAX_SEND_LOG:
                seqs = records["seq"]
                self.sends.append((int(seqs[0]), int(seqs[-1]), send_ps,
                                   int(records["timestamp_ps"][-1])))
        self.unlogged.clear()
        if self.unfiled:
            for records in self.unfiled:
                self.history.append(records)
            self.unfiled.clear()

    # -- requests -----------------------------------------------------------------------
    def serve_requests(self) -> None:
        """Answer every request already queued on the ROUTER (never blocks)."""
        while True:
            try:
                identity, frame = self.router.recv_multipart(zmq.NOBLOCK, copy=True)[:2]
            except zmq.Again:
                return
            except ValueError:  # fewer than two frames: not ours
                self.counters["malformed_requests"] += 1
                continue
            reply = self.answer(frame, time.monotonic_ns() - self.settings.epoch_ns)
            if reply is not None:
                self.router.send_multipart([identity, reply])

    def answer(self, frame: bytes, t2_ns: int) -> bytes | None:
        """The reply to one request frame received at station time `t2_ns` (ns), or None.
        Every field is checked before use: a frame that is no legal request, or a resend of
        another link or of seqs not yet decided, is counted (``malformed``) and dropped."""
        message = self.decoder.decode(frame)
        if isinstance(message, ClockRequest):
            self.counters["clock_requests"] += 1
            return ClockReply(message.sender_id, message.seq, message.t1_ns, t2_ns,
                              time.monotonic_ns() - self.settings.epoch_ns).encode()
        if isinstance(message, ResendRequest):
            self.counters["resend_requests"] += 1
            if message.link != self.settings.link_id:
                self.counters["resend_wrong_link"] += 1
                self.decoder.reject("resend of another link")
                return None
            if message.first_seq >= self.decided_seq:
                self.decoder.reject("resend beyond the heralds decided")
                return None
            # The decoder holds a request to MAX_RESEND_RANGE seqs: one reply frame.
            rows = self.history.get(message.first_seq, message.last_seq)
            if not len(rows):
                self.counters["resend_unavailable"] += 1
                return None
            self.counters["heralds_resent"] += len(rows)
            return encode_heralds(rows)
        if message is not None:
            self.counters["unexpected_requests"] += 1
        return None

    def send_log(self) -> np.ndarray:
        return np.array(self.sends, SEND_DTYPE) if self.sends else np.zeros(0, SEND_DTYPE)

    def publish_lag_s(self) -> np.ndarray:
        """Per frame: hand-off time - decision time of its latest herald, s (the station's
        own share of the decision -> receipt latency: its timer's overshoot and loop)."""
        log = self.send_log()
        return (log["send_ps"] - log["decided_ps"]) * 1e-12 if len(log) else np.zeros(1)

    def summary(self) -> dict[str, Any]:
        self.file_history()
        lag = self.publish_lag_s()
        return {"name": self.settings.name, "counters": dict(self.counters),
                "publish_lag_s": {"median": float(np.median(lag)),
                                  "p99": float(np.percentile(lag, 99)),
                                  "max": float(lag.max())},
                "malformed": dict(self.decoder.errors), "heralds": self.next_seq,
                "faults": asdict(self.settings.faults)}


def _sleep_until(deadline_ns: int) -> None:
    left_s = (deadline_ns - time.monotonic_ns()) * 1e-9
    if left_s > 0:
        time.sleep(left_s)


def _wait_until(poller: zmq.Poller | None, deadline_ns: int) -> None:
    """Wake at `deadline_ns` (monotonic), or when a request is queued if a `poller` watches
    the ROUTER. zmq's poll counts whole ms, so the last ms is slept (precise with the
    lowered timer slack), the remaining time recomputed after each step so no lateness adds
    up."""
    left_ms = (deadline_ns - time.monotonic_ns()) * 1e-6
    if poller is not None and left_ms >= 2.0 and poller.poll(int(left_ms) - 1):
        return
    _sleep_until(deadline_ns)


class _Chores:
    """The station's bookkeeping and when it is due (monotonic s)."""

    def __init__(self, settings: StationSettings, station: _Station, now: float) -> None:
        self.settings, self.station = settings, station
        self.next_heartbeat = self.next_stats = now

    def due_ns(self) -> int:
        """When the next chore falls due (monotonic ns)."""
        refill_ns = self.settings.epoch_ns + self.station.refill_ps() // 1000
        return min(refill_ns, round(min(self.next_heartbeat, self.next_stats) * 1e9))

    def do(self) -> None:
        station, now = self.station, time.monotonic()
        now_ps = station_now_ps(self.settings.epoch_ns)
        if now >= self.next_heartbeat:  # first: a restarted station's heartbeat 0 leads
            station.heartbeat(now_ps)
            self.next_heartbeat = max(self.next_heartbeat + self.settings.heartbeat_period, now)
        station.file_history()  # before any resend request is served
        station.compute_ahead(now_ps)
        if now >= self.next_stats:
            station.stats(now_ps)
            self.next_stats = max(self.next_stats + self.settings.stats_period, now)
        station.serve_requests()


def run_station(settings: StationSettings, source_factory: HeraldSourceFactory,
                stop: Any) -> None:
    """The station's main loop until `stop` (a StopFlag) or `max_seconds`."""
    context = zmq.Context()
    authenticator = None
    pub = context.socket(zmq.PUB)
    router = context.socket(zmq.ROUTER)
    station: _Station | None = None
    try:
        if settings.key_dir is not None:
            authenticator = start_authenticator(context, settings.key_dir)
            make_curve_server(pub, settings.key_dir, settings.name)
            make_curve_server(router, settings.key_dir, settings.name)
        limit_frame_size(pub, router)  # a PUB receives too: its subscribers' subscriptions
        pub.sndhwm = 1_000_000
        pub.linger = 500
        router.linger = 0
        pub.bind(settings.herald_address)
        router.bind(settings.request_address)
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        source = source_factory(start_ps=station_now_ps(settings.epoch_ns))
        station = _Station(settings, source, pub, router)
        started = time.monotonic()
        chores = _Chores(settings, station, started)
        settle_ns, guard_ns = round(settings.settle_s * 1e9), round(settings.guard_s * 1e9)
        max_defer_ns = round(settings.max_defer_s * 1e9)
        last_send_ns = 0
        needed_since_ns: int | None = None
        """monotonic ns since when chores have been waiting for a quiet time."""

        def next_herald_ns() -> int:
            due = station.next_due_ps()
            return settings.epoch_ns - (-due // 1000) if due is not None else 2**62

        while not stop:
            if (settings.max_seconds is not None
                    and time.monotonic() - started > settings.max_seconds):
                break
            if station.publish_due(station_now_ps(settings.epoch_ns)):
                # Normally `_send` slept already; not after a fault's extra send.
                last_send_ns = station.last_send_ns
                _wait_until(None, min(last_send_ns + settle_ns, next_herald_ns()))
            now_ns = time.monotonic_ns()
            next_ns = next_herald_ns()
            quiet_from_ns = last_send_ns + settle_ns
            quiet = now_ns >= quiet_from_ns and next_ns - now_ns >= guard_ns
            if needed_since_ns is None and (
                    now_ns >= chores.due_ns() or len(station.unlogged) >= _FILE_EVERY
                    or int(router.get(zmq.EVENTS)) & zmq.POLLIN):
                needed_since_ns = now_ns
            if needed_since_ns is not None and (
                    quiet or now_ns - needed_since_ns >= max_defer_ns):
                chores.do()
                needed_since_ns = None
                next_ns = next_herald_ns()
            if quiet:  # idle until the next herald or chore, or a request
                _wait_until(poller, min(next_ns, chores.due_ns()))
            else:  # the nodes are receiving, or a herald is imminent: only wait
                wake_ns = next_ns if now_ns >= quiet_from_ns else min(next_ns, quiet_from_ns)
                if needed_since_ns is not None:
                    wake_ns = min(wake_ns, needed_since_ns + max_defer_ns)
                _wait_until(None, wake_ns)
    finally:
        pub.close()
        router.close()
        if authenticator is not None:
            authenticator.stop()
        context.term()
        if station is not None:
            _write_files(settings, station)


def _write_files(settings: StationSettings, station: _Station) -> None:
    station.file_history()
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    truth = (np.concatenate(station.truth) if station.truth
             else np.zeros(0, TRUTH_DTYPE))
    # Only heralds whose decision time has come happened; the rest were computed ahead.
    decided = truth[truth["time_ps"] <= station_now_ps(settings.epoch_ns)]
    np.save(settings.run_dir / f"{settings.name}_truth.npy", decided)
    np.save(settings.run_dir / f"{settings.name}_sends.npy", station.send_log())
    path = settings.run_dir / f"{settings.name}_summary.json"
    path.write_text(json.dumps(station.summary(), indent=1))
