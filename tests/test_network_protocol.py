"""Protocol pieces: CURVE keys over real TCP sockets, herald sequence tracking and history, memory
expiry, and clock offset/drift estimation from synthetic NTP-style exchanges."""

from __future__ import annotations

import math
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from qnetlab.network.clock import ClockSync
from qnetlab.network.keys import (
    LabKeyError,
    generate_lab_keys,
    load_keypair,
    load_public_key,
    make_curve_client,
    make_curve_server,
    start_authenticator,
)
from qnetlab.network.messages import HERALD_DTYPE, make_heralds
from qnetlab.network.tracker import Arrival, HeraldHistory, SequenceTracker, expired

# --------------------------------------------------------------------------- keys


def test_generated_keys_have_the_zmq_layout_and_private_permissions(tmp_path: Path) -> None:
    written = generate_lab_keys(tmp_path, ["station", "node_a"])
    assert set(written) == {tmp_path / "public/station.key", tmp_path / "public/node_a.key",
                            tmp_path / "private/station.key_secret",
                            tmp_path / "private/node_a.key_secret"}
    for path in written:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o600 if path.suffix == ".key_secret" else 0o644), path
    assert stat.S_IMODE((tmp_path / "private").stat().st_mode) == 0o700
    public, secret = load_keypair(tmp_path, "station")
    assert len(public) == 40 and len(secret) == 40 and public != secret
    assert load_public_key(tmp_path, "station") == public
    assert zmq.curve_public(secret) == public


def test_generating_again_keeps_existing_keys_unless_overwrite(tmp_path: Path) -> None:
    generate_lab_keys(tmp_path, ["station"])
    before = load_keypair(tmp_path, "station")
    assert generate_lab_keys(tmp_path, ["station", "node_b"]) == [
        tmp_path / "public/node_b.key", tmp_path / "private/node_b.key_secret"]
    assert load_keypair(tmp_path, "station") == before
    generate_lab_keys(tmp_path, ["station"], overwrite=True)
    assert load_keypair(tmp_path, "station") != before


def test_missing_or_bad_keys_name_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(LabKeyError, match=r"private.*directory not found.*qnetlab keys CONFIG"):
        load_keypair(tmp_path, "station")
    with pytest.raises(LabKeyError, match=r"public.*qnetlab keys CONFIG"):
        start_authenticator(zmq.Context.instance(), tmp_path)
    generate_lab_keys(tmp_path, ["station"])
    with pytest.raises(LabKeyError, match=r"public/node_a\.key: key file not found.*qnetlab keys"):
        load_public_key(tmp_path, "node_a")
    (tmp_path / "public/junk.key").write_text("not a certificate\n")
    with pytest.raises(LabKeyError, match=r"junk\.key: not a readable CURVE certificate"):
        load_public_key(tmp_path, "junk")
    # Half a keypair is refused rather than silently replaced.
    (tmp_path / "private/station.key_secret").unlink()
    with pytest.raises(LabKeyError, match=r"station\.key_secret: missing, but station\.key"):
        generate_lab_keys(tmp_path, ["station"])
    with pytest.raises(ValueError, match="file name"):
        generate_lab_keys(tmp_path, ["../evil"])


_AUTH_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class _Lab:
    """A CURVE server in its own context, and clients each in their own context (as if in
    other processes). Everything has linger 0 and short timeouts."""

    def __init__(self, lab_keys: Path) -> None:
        self.keys = lab_keys
        self.server_context = zmq.Context()
        self.authenticator = start_authenticator(self.server_context, lab_keys)
        self.contexts: list[zmq.Context] = []
        self.sockets: list[zmq.Socket] = []

    def server(self, kind: int) -> tuple[zmq.Socket, str, zmq.Socket]:
        socket = self._own(self.server_context.socket(kind))
        make_curve_server(socket, self.keys, "station")
        port = socket.bind_to_random_port("tcp://127.0.0.1")
        monitor = self._own(socket.get_monitor_socket(_AUTH_EVENTS))
        monitor.rcvtimeo = 2000
        return socket, f"tcp://127.0.0.1:{port}", monitor

    def client(self, kind: int, key_dir: Path | None, address: str) -> zmq.Socket:
        context = zmq.Context()
        self.contexts.append(context)
        socket = self._own(context.socket(kind))
        if key_dir is not None:
            make_curve_client(socket, key_dir, "node_a", server="station")
        if kind == zmq.SUB:
            socket.subscribe(b"")
        socket.connect(address)
        return socket

    def _own(self, socket: zmq.Socket) -> zmq.Socket:
        socket.linger = 0
        socket.rcvtimeo = 300
        self.sockets.append(socket)
        return socket

    def close(self) -> None:
        for socket in self.sockets:
            socket.close(linger=0)
        self.authenticator.stop()
        self.server_context.term()
        for context in self.contexts:
            context.term()


def _next_handshake(monitor: zmq.Socket) -> int:
    return int(recv_monitor_message(monitor)["event"])


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[_Lab, Path]]:
    """The lab's keys (station, node_a) and an intruder's key dir: its own node_a keypair,
    never registered with the lab, plus a copy of the station's public key (public anyway)."""
    lab_keys, intruder_keys = tmp_path / "lab", tmp_path / "intruder"
    generate_lab_keys(lab_keys, ["station", "node_a"])
    generate_lab_keys(intruder_keys, ["node_a"])
    (intruder_keys / "public/station.key").write_bytes(
        (lab_keys / "public/station.key").read_bytes())
    setup = _Lab(lab_keys)
    yield setup, intruder_keys
    setup.close()


def test_curve_pub_sub_only_lab_keys_receive_heralds(lab: tuple[_Lab, Path]) -> None:
    setup, intruder_keys = lab
    pub, address, monitor = setup.server(zmq.PUB)
    member = setup.client(zmq.SUB, setup.keys, address)
    assert _next_handshake(monitor) == zmq.EVENT_HANDSHAKE_SUCCEEDED
    intruder = setup.client(zmq.SUB, intruder_keys, address)
    assert _next_handshake(monitor) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    plain = setup.client(zmq.SUB, None, address)  # no CURVE at all
    assert _next_handshake(monitor) in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                                        zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
    # The subscription travels after the handshake: publish until the member hears one.
    received = None
    for attempt in range(50):
        pub.send(b"herald %d" % attempt)
        try:
            received = member.recv()
            break
        except zmq.Again:
            continue
    assert received is not None and received.startswith(b"herald")
    for _ in range(5):
        pub.send(b"herald after")
    assert member.recv() == b"herald after"
    for outsider in (intruder, plain):
        with pytest.raises(zmq.Again):
            outsider.recv()


def test_curve_router_dealer_only_lab_keys_can_send(lab: tuple[_Lab, Path]) -> None:
    setup, intruder_keys = lab
    router, address, monitor = setup.server(zmq.ROUTER)
    member = setup.client(zmq.DEALER, setup.keys, address)
    assert _next_handshake(monitor) == zmq.EVENT_HANDSHAKE_SUCCEEDED
    member.send(b"resend 4..9")
    identity, request = router.recv_multipart()
    assert request == b"resend 4..9"
    router.send_multipart([identity, b"ok"])
    assert member.recv() == b"ok"

    intruder = setup.client(zmq.DEALER, intruder_keys, address)
    intruder.send(b"forged herald")  # queued; the handshake never completes
    assert _next_handshake(monitor) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    with pytest.raises(zmq.Again):
        router.recv_multipart()
    # The member's connection is unaffected.
    member.send(b"still here")
    assert router.recv_multipart()[1] == b"still here"


# --------------------------------------------------------------------------- tracker


def test_tracker_classifies_gaps_duplicates_and_reordering() -> None:
    tracker = SequenceTracker()
    assert [tracker.observe(s) for s in (0, 1, 4)] == [Arrival.NEW] * 3
    assert tracker.missing() == [(2, 3)]
    assert tracker.observe(3) is Arrival.FILLED_GAP
    assert tracker.observe(3) is Arrival.DUPLICATE
    assert tracker.missing() == [(2, 2)]
    assert tracker.observe(9) is Arrival.NEW
    assert tracker.missing() == [(2, 2), (5, 8)]
    assert tracker.observe(6) is Arrival.FILLED_GAP
    assert tracker.missing() == [(2, 2), (5, 5), (7, 8)]
    assert tracker.observe(0) is Arrival.DUPLICATE
    assert tracker.counters == {"received": 8, "duplicates": 2, "reordered": 2,
                                "gaps_detected": 6, "recovered": 2, "lost": 0, "late": 0}


def test_give_up_counts_losses_and_a_late_arrival_is_not_used() -> None:
    tracker = SequenceTracker()
    tracker.observe(0)
    tracker.observe(6)
    tracker.give_up(2, 3)
    assert tracker.missing() == [(1, 1), (4, 5)]
    assert tracker.observe(2) is Arrival.LATE
    assert tracker.observe(2) is Arrival.DUPLICATE
    # Giving up past the highest seq seen (heralds the station counted but never arrived).
    tracker.give_up(5, 8)
    assert tracker.missing() == [(1, 1), (4, 4)]
    assert tracker.next_seq == 9
    assert tracker.observe(7) is Arrival.LATE
    assert tracker.observe(9) is Arrival.NEW
    c = tracker.counters
    assert (c["lost"], c["late"], c["gaps_detected"]) == (2 + 3, 2, 5 + 2)
    assert c["gaps_detected"] == c["recovered"] + c["lost"] + 2  # 2 still missing
    with pytest.raises(ValueError, match="first <= last"):
        tracker.give_up(5, 4)


def test_expected_tail_becomes_a_gap_to_ask_for() -> None:
    tracker = SequenceTracker()
    for seq in (0, 1, 2, 4):
        tracker.observe(seq)
    assert tracker.expect_through(2) == 0  # already seen: nothing new
    assert tracker.expect_through(7) == 3  # 5, 6, 7 were decided but never came
    assert tracker.missing() == [(3, 3), (5, 7)]
    assert tracker.observe(6) is Arrival.FILLED_GAP
    assert tracker.observe(8) is Arrival.NEW
    c = tracker.counters
    assert (c["gaps_detected"], c["recovered"]) == (4, 1)
    assert c["gaps_detected"] == c["recovered"] + c["lost"] + 3  # 3, 5, 7 still missing


def _lossy_stream(rng: np.random.Generator, n: int) -> np.ndarray:
    """0..n-1 with drops (5 %), local reordering (within 3 places) and duplicates (5 %) that
    arrive up to 200 places after their original."""
    kept = np.flatnonzero(rng.random(n) > 0.05)
    copies = rng.choice(len(kept), len(kept) // 20)
    seqs = np.concatenate([kept, kept[copies]])
    position = np.concatenate([np.arange(len(kept)), copies + rng.uniform(0, 200, len(copies))])
    order = np.argsort(position + rng.uniform(0, 3, len(seqs)), kind="stable")
    return seqs[order]


def test_observe_many_matches_observe_one_by_one() -> None:
    """Same masks, counters and gaps as the scalar path: on stream batches of every size, with
    give-ups between them, and on resend batches that also repeat given-up seqs (LATE)."""
    rng = np.random.default_rng(11)
    stream = _lossy_stream(rng, 5000)
    one, many = SequenceTracker(), SequenceTracker()
    position, fed = 0, 0

    def feed(batch: np.ndarray) -> None:
        nonlocal fed
        fed += len(batch)
        expected = [one.observe(int(s)) in (Arrival.NEW, Arrival.FILLED_GAP) for s in batch]
        np.testing.assert_array_equal(many.observe_many(batch), expected)
        assert many.missing() == one.missing()

    given_up: list[int] = []
    while position < len(stream):
        batch = stream[position:position + int(rng.integers(1, 100))]
        position += len(batch)
        feed(batch.astype(np.uint64))
        if rng.random() < 0.3 and one.missing():
            first, last = one.missing()[int(rng.choice([0, -1]))]
            last += int(rng.integers(0, 3))  # at times past the highest seen
            for tracker in (one, many):
                tracker.give_up(first, last)
            given_up = list(range(first, last + 1))
        if rng.random() < 0.3 and one.missing():
            # A resend: every missing seq (many below the highest: the array path), the last
            # range given up, some seen already; shuffled.
            resent = np.concatenate([np.arange(a, b + 1) for a, b in one.missing()]
                                    + [given_up, rng.integers(0, one.next_seq, 20)])
            given_up = []
            feed(rng.permutation(resent).astype(np.int64))
            assert one.missing() == []
    assert many.counters == one.counters
    c = many.counters
    assert c["duplicates"] > 100 and c["reordered"] > 100 and c["late"] > 10
    still_missing = sum(b - a + 1 for a, b in many.missing())
    assert c["gaps_detected"] == c["recovered"] + c["lost"] + still_missing
    assert c["received"] == fed
    assert c["received"] == c["duplicates"] + c["reordered"] + (many.next_seq - c["gaps_detected"])


def test_observe_many_in_order_batches_and_bad_input() -> None:
    tracker = SequenceTracker()
    assert tracker.observe_many(np.arange(64, dtype=np.uint64)).all()
    assert tracker.observe_many(np.arange(64, 128)).all()
    assert tracker.next_seq == 128 and tracker.missing() == []
    assert not tracker.observe_many(np.arange(0, 10)).any()
    assert tracker.counters["duplicates"] == 10
    with pytest.raises(ValueError, match="negative"):
        tracker.observe_many(np.array([3, -1]))
    with pytest.raises(ValueError, match="integers"):
        tracker.observe_many(np.array([1.0]))
    tracker.reset()
    assert tracker.observe(0) is Arrival.NEW


def test_herald_history_returns_what_it_still_holds() -> None:
    history = HeraldHistory(capacity=100)
    assert len(history.get(0, 10)) == 0
    seq = 0
    for size in (30, 1, 69, 45, 130, 7):  # wraps several times, one batch over capacity
        history.append(make_heralds(3, np.arange(seq, seq + size), np.arange(seq, seq + size) * 7,
                                    0, np.arange(seq, seq + size) * 1000))
        seq += size
    assert len(history) == 100
    held = history.get(0, seq + 10)
    assert held.dtype == HERALD_DTYPE
    np.testing.assert_array_equal(held["seq"], np.arange(seq - 100, seq))
    np.testing.assert_array_equal(held["attempt_id"], held["seq"] * 7)
    part = history.get(seq - 120, seq - 90)  # straddles what was overwritten
    np.testing.assert_array_equal(part["seq"], np.arange(seq - 100, seq - 89))
    assert len(history.get(0, seq - 101)) == 0
    part["seq"] = 0  # a copy: the history is unaffected
    assert history.get(seq - 1, seq - 1)["seq"].tolist() == [seq - 1]
    with pytest.raises(ValueError, match="increase"):
        history.append(make_heralds(3, np.array([seq - 1]), 0, 0, 0))


def test_expiry_by_memory_cutoff() -> None:
    now_ps = 10**15
    cutoff_s = 13e-3  # QNodeOS memory time (docs/link.md#5-published-reference-points)
    ages_ps = np.array([0, 13 * 10**9, 13 * 10**9 + 1, 10**12])
    assert expired(now_ps - ages_ps, now_ps, cutoff_s).tolist() == [False, False, True, True]
    assert expired(now_ps - 13 * 10**9 - 1, now_ps, cutoff_s) is True
    assert expired(now_ps, now_ps, cutoff_s) is False


# --------------------------------------------------------------------------- clock

TAU_NS = 30e3  # mean random (exponential) part of each one-way delay
BASE_UP_NS, BASE_DOWN_NS = 42e3, 38e3  # fixed, asymmetric: unobservable, biases by 2 us
OUTLIERS = 0.1  # share of exchanges queued 0.5-2 ms on the way up only


def _exchanges(rng: np.random.Generator, n: int, span_ns: float, node_origin_ns: int,
               station_origin_ns: int, offset_ns: float, drift: float) -> tuple[np.ndarray, ...]:
    """Exchanges where station = station_origin + (node - node_origin) * (1 + drift) + offset,
    i.e. station - node = (station_origin - node_origin) + offset + drift * (node - origin)."""
    node_send = np.sort(rng.uniform(0, span_ns, n))
    up = BASE_UP_NS + rng.exponential(TAU_NS, n)
    up += np.where(rng.random(n) < OUTLIERS, rng.uniform(0.5e6, 2e6, n), 0.0)
    down = BASE_DOWN_NS + rng.exponential(TAU_NS, n)
    hold = rng.uniform(5e3, 20e3, n)
    t2 = node_send * (1 + drift) + offset_ns + up
    t3 = t2 + hold
    t4 = (t3 + down - offset_ns) / (1 + drift)
    rows = [np.round(node_send).astype(np.int64) + node_origin_ns,
            np.round(t2).astype(np.int64) + station_origin_ns,
            np.round(t3).astype(np.int64) + station_origin_ns,
            np.round(t4).astype(np.int64) + node_origin_ns]
    return (*rows, up - BASE_UP_NS + down - BASE_DOWN_NS)


def _tolerances(excess_round_trip: np.ndarray, node_send: np.ndarray,
                keep_fraction: float) -> tuple[float, float, float]:
    """(offset tolerance at the latest exchange, ns; drift tolerance; noise bound, ns).

    An exchange's offset error is asymmetry/2 + (e_up - e_down)/2 with e the random excess
    delays. The filter keeps exchanges with e_up + e_down <= r (r: the keep_fraction quantile
    of the excess round trip); given their sum s, e_up is uniform on [0, s] (exponentials),
    so (e_up - e_down)/2 is uniform on [-s/2, s/2]: std <= r / sqrt(12) =: sigma. The used
    exchanges are spread over the span independently of their delay, so a least-squares line
    through n of them has slope std sigma / sqrt(Sxx) and value std at time x0
    sigma * sqrt(1/n + (x0 - mean)^2 / Sxx). Tolerance: 5 standard deviations, plus the fixed
    asymmetry's bias (BASE_UP - BASE_DOWN)/2 for the offset."""
    sigma = float(np.quantile(excess_round_trip, keep_fraction)) / math.sqrt(12)
    x = node_send.astype(np.float64)
    n_used = math.ceil(keep_fraction * len(x))
    sxx = n_used * float(np.var(x))
    offset_std = sigma * math.sqrt(1 / n_used + (x[-1] - x.mean()) ** 2 / sxx)
    bias = abs(BASE_UP_NS - BASE_DOWN_NS) / 2
    return bias + 5 * offset_std, 5 * sigma / math.sqrt(sxx), sigma


def test_clock_recovers_offset_and_drift_within_the_jitter_tolerance() -> None:
    rng = np.random.default_rng(2024)
    offset_ns, drift = 3.2e6, 20e-6
    t1, t2, t3, t4, excess = _exchanges(rng, 1000, 10e9, 0, 0, offset_ns, drift)
    sync = ClockSync(window=1000, keep_fraction=0.25)
    for exchange in zip(t1.tolist(), t2.tolist(), t3.tolist(), t4.tolist(), strict=True):
        sync.add(*exchange)
    estimate = sync.estimate()
    offset_tol_ns, drift_tol, sigma_ns = _tolerances(excess, t1, 0.25)
    true_offset_ns = offset_ns + drift * estimate.reference_ns
    assert abs(estimate.offset_s * 1e9 - true_offset_ns) <= offset_tol_ns
    assert abs(estimate.drift - drift) <= drift_tol
    assert offset_tol_ns < 10e3 and drift_tol < 2e-6  # the tolerances are not vacuous
    assert 0 < estimate.residual_rms_s * 1e9 <= sigma_ns
    assert (estimate.samples, estimate.used) == (1000, 250)
    # The round trip is timed on the node's clock (off by drift x ~0.1 ms) from 4 stamps
    # rounded to the ns.
    assert estimate.delay_s * 2 * 1e9 == pytest.approx(
        BASE_UP_NS + BASE_DOWN_NS + excess.min(), abs=2 + drift * 200e3)

    # Without the delay filter the queued exchanges drag the offset far outside tolerance.
    unfiltered = ClockSync(window=1000, keep_fraction=1.0)
    for exchange in zip(t1.tolist(), t2.tolist(), t3.tolist(), t4.tolist(), strict=True):
        unfiltered.add(*exchange)
    assert abs(unfiltered.estimate().offset_s * 1e9 - true_offset_ns) > 5 * offset_tol_ns


def test_clock_conversion_holds_with_epoch_sized_clocks() -> None:
    """Node on a wall clock (~1.7e18 ns), station counting from its own start: the fit must not
    lose precision to float64 (which has ~256 ns steps at 1.7e18)."""
    rng = np.random.default_rng(7)
    node_origin, station_origin, offset_ns, drift = 1_700_000_000_123_456_789, 5 * 10**9, 3.2e6, \
        -20e-6
    t1, t2, t3, t4, excess = _exchanges(rng, 400, 4e9, node_origin, station_origin, offset_ns,
                                        drift)
    sync = ClockSync(window=400)
    for exchange in zip(t1.tolist(), t2.tolist(), t3.tolist(), t4.tolist(), strict=True):
        sync.add(*exchange)
    offset_tol_ns, drift_tol, _ = _tolerances(excess, t1 - node_origin, 0.25)
    for since_origin_ns in (0, 2 * 10**9, 4 * 10**9):
        local = node_origin + since_origin_ns
        truth = station_origin + since_origin_ns * (1 + drift) + offset_ns
        # Away from the latest exchange, a drift error adds drift_tol x distance.
        tolerance = offset_tol_ns + drift_tol * abs(4e9 - since_origin_ns)
        assert abs(sync.to_station_ns(local) - truth) <= tolerance
        assert abs(sync.to_node_ns(sync.to_station_ns(local)) - local) <= 1


def test_clock_with_few_or_bad_exchanges() -> None:
    sync = ClockSync()
    assert not sync.ready
    with pytest.raises(RuntimeError, match="no exchange yet"):
        sync.estimate()
    sync.add(1000, 5000, 5100, 1300)  # offset ((4000) + (3800)) / 2 = 3900, round trip 200
    estimate = sync.estimate()
    assert (estimate.offset_s, estimate.drift, estimate.residual_rms_s) == (3900e-9, 0.0, 0.0)
    assert estimate.delay_s == pytest.approx(100e-9)
    assert sync.to_station_ns(2000) == 5900
    with pytest.raises(ValueError, match="t1 <= t4"):
        sync.add(1000, 5000, 5100, 900)
    sync.reset()
    assert not sync.ready
