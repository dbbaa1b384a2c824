"""The heralding station's loop: publish each block's heralds at once, answer requests.

A herald source (`network.herald_sources`) runs in a reader thread (`BlockReader`) that
publishes each `HeraldBlock`'s heralds the moment the block arrives, numbering them (seq, per
link from 0) and keeping them in the history; the loop (`publish_loop`) does the rest under the
same lock: heartbeats, AttemptStats, ResendRequest and ClockRequest on the ROUTER. Nothing is
scheduled ahead: a herald exists only once the tags that decide it have arrived.

Sockets: PUB (HERALDS, Heartbeat, AttemptStats) and ROUTER (ResendRequest, ClockRequest),
made and bound by `network.heralding_station.run_station`.

Files at exit (`HeraldPublisher.write_files`): ``<name>_sends.npy`` (`SEND_DTYPE`, a row per
herald frame), ``<name>_heralds.npy`` (`messages.HERALD_DTYPE`, every herald decided, the
station's own log of what it heralded) and ``<name>_summary.json`` (counters, the station's
latency from block arrival to hand-off, the source's counters).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from .arm_messages import (
    ArmDelaysSet,
    ArmStatus,
    ArrivalsMeasured,
    MeasureArrivals,
    SetArmDelays,
)
from .herald_sources import HeraldBlock, HeraldSource, HeraldSourceFactory, station_now_ps
from .messages import (
    HERALD_DTYPE,
    MAX_HERALDS_PER_FRAME,
    STATION_SENDER_ID,
    AttemptStats,
    ClockReply,
    ClockRequest,
    Decoder,
    Heartbeat,
    ResendRequest,
    encode_heralds,
    incarnation_seq,
    new_incarnation,
)
from .station_arms import ArmRequests
from .station_faults import DelayedHeralds, StationFaults
from .tracker import HeraldHistory

SEND_DTYPE = np.dtype([("first_seq", "<u8"), ("last_seq", "<u8"), ("send_ps", "<i8"),
                       ("decided_ps", "<i8"), ("block_ps", "<i8")])
"""One published herald frame: its seq range, its hand-off time (station ps, taken right
before encoding and sending), the decision time of its latest herald (station ps) and the
arrival at the station of the tag block its heralds were decided from (station ps: where the
station's share of a herald's latency starts)."""

_MAX_LOG_ROWS = 4_000_000
"""Frames in the send log, and heralds in the herald log, kept at most (~100 MB each)."""

_MAX_WAIT_S = 0.05
"""s the loop waits for a block or a request at most, so a stop is seen promptly."""


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
    faults: StationFaults = field(default_factory=StationFaults)
    max_seconds: float | None = None
    """Stop by itself after this long (s); None: until stopped."""
    telemetry_address: str | None = None
    """PUB for ``qnetlab monitor``: the station's herald rate and counters about once a
    second (network.link_telemetry); None: none published."""
    source: HeraldSourceFactory | None = None
    """The herald source when `run_station` is given none (the production one is a
    `herald_sources.TaggerSource`, built by `network.lab.plan_lab`)."""


class BlockReader:
    """Builds a herald source and runs its ``blocks()`` in a thread of its own, which
    `publish`es each block itself, holding `lock`, which the loop holds for its chores: a
    hand-over to the loop's thread cost every herald a wake-up (about 50 us at median). The
    thread's end (and its error, if any) wakes the loop through `wake` (an inproc PAIR the
    loop polls).

    The source is built in the thread too: opening a lab takes seconds, during which the loop
    keeps heartbeating (the nodes must not take a loading station for a lost one). It is
    closed there as well, after its `summary` (if it has one) is kept in `summary`."""

    _ids = itertools.count()
    stop_timeout_s = 15.0
    """How long `stop` waits for the thread to close its source (s)."""

    def __init__(self, context: zmq.Context, factory: HeraldSourceFactory,
                 epoch_ns: int, publish: Callable[[HeraldBlock], None], link_id: int = 0
                 ) -> None:
        self.factory, self.epoch_ns, self.link_id = factory, epoch_ns, link_id
        self.lock = threading.Lock()
        """Held while this thread publishes a block, and by the loop while it uses the
        publisher: both use its state and its PUB socket (the lock is the memory barrier
        ZeroMQ asks of a socket used from two threads)."""
        self._publish = publish
        self.source: HeraldSource | None = None
        self.summary: dict[str, Any] = {}
        self.error: BaseException | None = None
        """What stopped the source, if it raised."""
        self.finished = False
        address = f"inproc://herald-blocks-{next(self._ids)}"
        self.wake = context.socket(zmq.PAIR)
        self.wake.linger = 0
        self.wake.bind(address)
        self._signal = context.socket(zmq.PAIR)  # used (and closed) only by the reader thread
        self._signal.linger = 0
        self._signal.connect(address)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="herald-blocks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _read(self) -> None:
        blocks: Any = None
        try:
            self.source = self.factory(epoch_ns=self.epoch_ns, link_id=self.link_id)
            if self._stop.is_set():  # stopped while the source was being built
                return
            blocks = self.source.blocks()
            for block in blocks:
                with self.lock:
                    self._publish(block)
                if self._stop.is_set():
                    break
        except BaseException as exc:  # handed to the loop, which raises it in its thread
            self.error = exc
        finally:
            if blocks is not None:
                with contextlib.suppress(Exception):
                    blocks.close()  # a generator: its recording ends here
            try:
                self._close_source()
            finally:
                self.finished = True
                self._poke()
                self._signal.close(0)

    def _close_source(self) -> None:
        source = self.source
        if source is None:
            return
        summary = getattr(source, "summary", None)
        close = getattr(source, "close", None)
        try:
            if summary is not None:
                self.summary = summary()
        finally:
            if close is not None:
                close()

    def _poke(self) -> None:
        # A full pipe already holds a wake-up (the loop drains them all on any).
        with contextlib.suppress(zmq.Again):
            self._signal.send(b"", zmq.NOBLOCK)

    def arm_requests(self) -> ArmRequests | None:
        """The source's `ArmRequests` (None before it is built, or if it has no arms)."""
        return getattr(self.source, "arm_requests", None)

    def drain_wake(self) -> None:
        with contextlib.suppress(zmq.Again):
            while True:
                self.wake.recv(zmq.NOBLOCK)

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the thread to stop after its current block (or once its source is built) and
        wait for it to close the source; whether it did (a source stuck inside a block is
        left behind: the thread is a daemon)."""
        self._stop.set()
        if self._thread.ident is None:  # never started: no thread to close its socket
            self._signal.close(0)
        if self._thread.is_alive():
            self._thread.join(self.stop_timeout_s if timeout is None else timeout)
        stopped = not self._thread.is_alive()
        self.wake.close(0)
        return stopped


class HeraldPublisher:
    """The station's state: numbering, history, logs, and every send on its sockets."""

    def __init__(self, settings: StationSettings, pub: zmq.Socket,
                 router: zmq.Socket) -> None:
        self.settings = settings
        self.pub, self.router = pub, router
        self.history = HeraldHistory(settings.history)
        self.decoder = Decoder()
        self.counters: Counter[str] = Counter()
        self.next_seq = 0
        """Seq of the next herald: every one below has been decided (and published, or
        held back by an injected fault)."""
        self.delayed = DelayedHeralds()
        self.heartbeat_seq = 0
        self.incarnation = new_incarnation()
        self.sends: list[tuple[int, int, int, int, int]] = []
        """Per herald frame, as `SEND_DTYPE`."""
        self.heralds: list[np.ndarray] = []
        self.logged_heralds = 0
        self.attempts_total = 0
        self.stats_first_attempt = 0
        self.stats_attempts = self.stats_heralds = 0
        self.last_block_ps: int | None = None
        self._touch_heralds = settings.faults.touch_heralds
        """Whether injected faults act on the heralds (asked once: on the latency path)."""
        self.source_summary: dict[str, Any] = {}
        self.arm_requests: Callable[[], ArmRequests | None] = lambda: None
        """The source's arm requests, once it is built (`BlockReader.arm_requests`)."""

    @property
    def decided_seq(self) -> int:
        """One past the highest seq decided."""
        return self.next_seq

    # -- heralds --------------------------------------------------------------------------
    def publish(self, block: HeraldBlock) -> None:
        """Publish `block`'s heralds now (injected faults aside): the source numbered them
        (`herald_sources.SOURCE_HERALD_DTYPE`), checked after the send. The send comes
        first: every step before it is the heralds' latency."""
        records = block.heralds
        block_ps = (block.arrived_ns - self.settings.epoch_ns) * 1000
        if block.replies:  # first: they say from which of these heralds the windows hold
            for identity, frame in block.replies:
                self.router.send_multipart([identity, frame])
            self.counters["arm_replies"] += len(block.replies)
        if len(records):
            if not self._touch_heralds:
                self._send(records, block_ps)
                self._check_numbering(records)
                self.history.append(records)
            else:
                self._publish_with_faults(records, block_ps)
            if self.logged_heralds < _MAX_LOG_ROWS:
                self.heralds.append(records)
                self.logged_heralds += len(records)
        self.last_block_ps = block_ps
        self.attempts_total += block.attempts
        self.stats_attempts += block.attempts

    def _publish_with_faults(self, records: np.ndarray, block_ps: int) -> None:
        """`publish` with injected faults on the heralds: some now, some kept only in the
        history, some late (`StationFaults.split`)."""
        faults = self.settings.faults
        self._check_numbering(records)
        publish, keep, late = faults.split(records, self.counters)
        if len(publish):
            self._send(publish, block_ps)
        self.history.append(keep)
        self.delayed.add(late, time.monotonic_ns() + round(faults.delay_s * 1e9))

    def _check_numbering(self, records: np.ndarray) -> None:
        """Count `records` in (`next_seq`); raise `RuntimeError` if the source numbered them
        other than on from the last block, or for another link, or gave them another dtype
        (a source's bug: the nodes would take the wrong heralds for lost ones)."""
        if records.dtype != HERALD_DTYPE or records.ndim != 1:
            raise RuntimeError(f"the herald source gave rows of dtype {records.dtype}, shape "
                               f"{records.shape}; the station sends 1-d HERALD_DTYPE rows (see "
                               "herald_sources.SOURCE_HERALD_DTYPE)")
        n = len(records)
        first, last = int(records["seq"][0]), int(records["seq"][-1])
        links = records["link"]
        if (first != self.next_seq or last != first + n - 1
                or int(links.min()) != self.settings.link_id
                or int(links.max()) != self.settings.link_id):
            raise RuntimeError(
                f"the herald source numbered a block's {n} heralds seq {first}..{last}, "
                f"link(s) {sorted(set(links.tolist()))}; the station expects seq "
                f"{self.next_seq}.. on link {self.settings.link_id} (see "
                "herald_sources.SOURCE_HERALD_DTYPE)")
        self.next_seq += n
        self.stats_heralds += n

    def release_delayed(self) -> None:
        """Publish the heralds an injected delay held back, once their time has come."""
        due = self.delayed.due_ns()
        if due is not None and due <= time.monotonic_ns():
            rows = self.delayed.pop_due(time.monotonic_ns())
            if rows is not None:
                self._send(rows, station_now_ps(self.settings.epoch_ns))

    def _send(self, records: np.ndarray, block_ps: int) -> None:
        """Hand `records` to the PUB (frames of at most MAX_HERALDS_PER_FRAME), then log."""
        epoch_ns = self.settings.epoch_ns
        for start in range(0, len(records), MAX_HERALDS_PER_FRAME):
            frame = (records if len(records) <= MAX_HERALDS_PER_FRAME  # (a slice costs)
                     else records[start:start + MAX_HERALDS_PER_FRAME])
            send_ns = time.monotonic_ns()
            # (unchecked: the source's rows are checked after the send, `_check_numbering`)
            self.pub.send(encode_heralds(frame, check=False))
            # The frame still has to be encrypted and written by ZeroMQ's I/O thread and
            # taken by both nodes; on a host with few cores, the bookkeeping below would
            # hold a core they need (bench_delivery, receive-only at 1 kHz: 1.46-2.05x of
            # the bare pipeline's median without this, 1.04-1.30x with it). ~1 us when
            # nothing else waits for the core.
            os.sched_yield()
            self.counters["herald_frames"] += 1
            self.counters["heralds_published"] += len(frame)
            if len(self.sends) < _MAX_LOG_ROWS:
                self.sends.append((int(frame["seq"][0]), int(frame["seq"][-1]),
                                   (send_ns - epoch_ns) * 1000,
                                   int(frame["timestamp_ps"].max()), block_ps))
            bad = self.settings.faults.malformed_after(self.counters["herald_frames"])
            if bad is not None:
                self.pub.send(bad)
                self.counters["malformed_injected"] += 1

    # -- chores ---------------------------------------------------------------------------
    def heartbeat(self) -> None:
        seq = incarnation_seq(self.heartbeat_seq, self.incarnation)
        now_ps = station_now_ps(self.settings.epoch_ns)
        self.pub.send(Heartbeat(STATION_SENDER_ID, seq, now_ps).encode())
        self.heartbeat_seq += 1

    def stats(self) -> None:
        """AttemptStats of the attempts decided since the last (sent once blocks come, also
        for a window without any: its count of decided heralds reveals a lost tail)."""
        if self.last_block_ps is None:
            return
        self.pub.send(AttemptStats(self.settings.link_id, self.stats_first_attempt,
                                   self.stats_attempts, self.stats_heralds,
                                   self.last_block_ps, self.next_seq,
                                   self.incarnation).encode())
        self.stats_first_attempt = self.attempts_total
        self.stats_attempts = self.stats_heralds = 0

    # -- requests -------------------------------------------------------------------------
    def serve_requests(self) -> None:
        """Answer every request already queued on the ROUTER (never blocks)."""
        while int(self.router.get(zmq.EVENTS)) & zmq.POLLIN:
            try:
                identity, frame = self.router.recv_multipart(zmq.NOBLOCK, copy=True)[:2]
            except zmq.Again:
                return
            except ValueError:  # fewer than two frames: not ours
                self.counters["malformed_requests"] += 1
                continue
            reply = self.answer(frame, time.monotonic_ns() - self.settings.epoch_ns,
                                identity)
            if reply is not None:
                self.router.send_multipart([identity, reply])

    def answer(self, frame: bytes, t2_ns: int, identity: bytes = b"") -> bytes | None:
        """The reply to one request frame received at station time `t2_ns` (ns) from
        `identity`, or None. Every field is checked before use: a frame that is no legal
        request, or a resend of another link or of seqs not yet decided, is counted
        (``malformed``) and dropped. An arm request goes to the source (`arm_requests`),
        which answers after carrying it out; UNSUPPORTED at once if it has no arms."""
        message = self.decoder.decode(frame)
        if isinstance(message, SetArmDelays | MeasureArrivals):
            return self._arm_request(message, identity)
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
            if message.first_seq >= self.next_seq:
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

    def _arm_request(self, message: SetArmDelays | MeasureArrivals, identity: bytes,
                     ) -> bytes | None:
        self.counters["arm_requests"] += 1
        if message.link != self.settings.link_id:
            self.decoder.reject("arm request of another link")
            return None
        requests = self.arm_requests()
        if requests is not None:
            requests.put(identity, message)
            return None
        self.counters["arm_requests_unsupported"] += 1
        if isinstance(message, SetArmDelays):
            return ArmDelaysSet(message.link, message.seq, ArmStatus.UNSUPPORTED, 0).encode()
        return ArrivalsMeasured(message.link, message.seq, ArmStatus.UNSUPPORTED, 0, 0, 0, 0,
                                0, 0, 0).encode()

    # -- files ----------------------------------------------------------------------------
    def send_log(self) -> np.ndarray:
        return np.array(self.sends, SEND_DTYPE) if self.sends else np.zeros(0, SEND_DTYPE)

    def summary(self) -> dict[str, Any]:
        log = self.send_log()
        # The station's own share of a herald's latency: its tag block's arrival -> the
        # frame's hand-off to the PUB (reader thread, wake-up, numbering, encoding).
        lag = (log["send_ps"] - log["block_ps"]) * 1e-12 if len(log) else np.zeros(1)
        return {"name": self.settings.name, "counters": dict(self.counters),
                "attempts": self.attempts_total,
                "block_to_send_s": {"median": float(np.median(lag)),
                                    "p99": float(np.percentile(lag, 99)),
                                    "max": float(lag.max()), "frames": len(log)},
                "malformed": dict(self.decoder.errors), "heralds": self.next_seq,
                "faults": asdict(self.settings.faults), "source": self.source_summary}

    def write_files(self) -> None:
        run_dir, name = self.settings.run_dir, self.settings.name
        run_dir.mkdir(parents=True, exist_ok=True)
        np.save(run_dir / f"{name}_sends.npy", self.send_log())
        heralds = np.concatenate(self.heralds) if self.heralds else np.zeros(0, HERALD_DTYPE)
        np.save(run_dir / f"{name}_heralds.npy", heralds)
        path = run_dir / f"{name}_summary.json"
        path.write_text(json.dumps(self.summary(), indent=1))


def publish_loop(publisher: HeraldPublisher, reader: BlockReader, stop: Any,
                 telemetry: Any = None) -> None:
    """Until `stop` (a StopFlag), `max_seconds`, or the source's end: publish each block as
    it is handed over, then the chores (`telemetry`'s tick among them, if given: a
    `network.link_telemetry.StationTelemetry`). Raises what stopped the source, if it
    raised."""
    settings = publisher.settings
    poller = zmq.Poller()
    poller.register(publisher.router, zmq.POLLIN)
    poller.register(reader.wake, zmq.POLLIN)
    started = time.monotonic()
    end = started + settings.max_seconds if settings.max_seconds is not None else float("inf")
    next_heartbeat = started + settings.heartbeat_period  # beat 0 went out before the reader
    next_stats = started + settings.stats_period
    while not stop:
        with reader.lock:
            publisher.release_delayed()
            now = time.monotonic()
            if now >= end:
                break
            if now >= next_heartbeat:
                publisher.heartbeat()
                next_heartbeat = max(next_heartbeat + settings.heartbeat_period, now)
            if now >= next_stats:
                publisher.stats()
                next_stats = max(next_stats + settings.stats_period, now)
            if telemetry is not None:
                telemetry.tick(publisher)  # about once a second, for the monitor
            publisher.serve_requests()
        if reader.finished:
            if reader.error is not None:
                raise reader.error
            break  # the recording ended
        wake = min(next_heartbeat, next_stats, end, now + _MAX_WAIT_S)
        delayed_ns = publisher.delayed.due_ns()
        if delayed_ns is not None:
            wake = min(wake, delayed_ns * 1e-9)
        timeout_ms = max(0, int(np.ceil((wake - time.monotonic()) * 1e3)))
        if reader.wake in dict(poller.poll(timeout_ms)):
            reader.drain_wake()
