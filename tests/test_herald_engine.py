"""The herald engine against hand-made streams: every click pattern, both schemes, arm delays
spanning many attempt periods, windows before the sync, and block boundaries anywhere.

Streams are written out tag by tag (sync input 3, detectors 1 and 2) so each test reads as the
situation it checks; a brute-force reference (every click against every round) checks random
streams, including ones that make the engine's buffers grow.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from qnetlab.instruments.errors import ConfigError
from qnetlab.instruments.tag_blocks import TagBlock, TagBlockError
from qnetlab.network import ENGINE_HERALD_DTYPE, HeraldEngine, HeraldWindows, herald_engine

SYNC, D0, D1 = 3, 1, 2
PERIOD = 1_000_000     # ps between rounds (1 MHz)
W = 1_000              # window (ps)
DELAY = 10_200_000     # a 2 km arm: ~10 periods


def windows(scheme: str = "single_click", offsets: Any = ((DELAY, DELAY + 300_000),) * 2,
            window: int = W) -> HeraldWindows:
    return HeraldWindows(scheme, SYNC, (D0, D1), offsets, window)


def stream(rounds: int, clicks: list[tuple[int, int, int]], *, tail: int = 20,
           period: int = PERIOD) -> tuple[np.ndarray, np.ndarray]:
    """`rounds` sync tags every `period` from 0 (plus `tail` more, so every round gets
    decided), and clicks given as (round, offset after that round's sync in ps, channel)."""
    syncs = np.arange(rounds + tail, dtype=np.int64) * period
    ts = np.concatenate((syncs, [r * period + dt for r, dt, _ in clicks])).astype(np.int64)
    ch = np.concatenate((np.full(syncs.size, SYNC), [c for _, _, c in clicks])).astype(np.int32)
    order = np.argsort(ts, kind="stable")
    return ts[order], ch[order]


def run(w: HeraldWindows, ts: np.ndarray, ch: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    engine = HeraldEngine(w)
    heralds = engine.feed(ts, ch)
    return heralds, engine.counters


def triples(heralds: np.ndarray) -> list[tuple[int, int, int]]:
    return [(int(h["attempt_id"]), int(h["sync_ps"]), int(h["bell_state"])) for h in heralds]


def reference(w: HeraldWindows, ts: np.ndarray, ch: np.ndarray) -> list[tuple[int, int, int]]:
    """Brute force over the whole stream: every click against every round's windows."""
    bounds = w.bounds_ps()
    syncs = ts[ch == w.sync_channel]
    # decided: a tag at or after the round's last window end has been seen
    decided = int(np.sum(syncs + w.last_end_ps <= (ts[-1] if ts.size else -1)))
    results = []
    for r in range(decided):
        dets = []
        for d, c in enumerate(w.detector_channels):
            dt = ts[ch == c] - syncs[r]
            inside = np.zeros(dt.size, bool)
            for lo, hi in bounds[d]:
                inside |= (dt >= lo) & (dt < hi)
            dets += [d] * int(inside.sum())
        results.append(dets)
    heralds = []
    if w.scheme == "single_click":
        for r, dets in enumerate(results):
            if len(dets) == 1:
                heralds.append((r, int(syncs[r]), dets[0]))
    else:
        for a in range(decided // 2):
            first, second = results[2 * a], results[2 * a + 1]
            if len(first) == 1 and len(second) == 1:
                heralds.append((a, int(syncs[2 * a]), int(first[0] != second[0])))
    return heralds


def unassigned(w: HeraldWindows, ts: np.ndarray, ch: np.ndarray) -> int:
    """Brute force: detector tags in no window of any sync tag of the stream."""
    bounds = w.bounds_ps()
    syncs = ts[ch == w.sync_channel]
    count = 0
    for d, c in enumerate(w.detector_channels):
        for t in ts[ch == c]:
            dt = t - syncs
            if not any(((dt >= lo) & (dt < hi)).any() for lo, hi in bounds[d]):
                count += 1
    return count


def random_stream(rng: np.random.Generator, rounds: int, w: HeraldWindows, p_click: float,
                  dark: int, period: int) -> tuple[np.ndarray, np.ndarray]:
    """Syncs, clicks near the window centres (some just outside), and uniform dark counts."""
    offsets = np.array(w.offsets_ps)
    hits = rng.random((rounds, 2, offsets.shape[1])) < p_click
    r, d, a = np.nonzero(hits)
    jitter = rng.integers(-w.window_ps, w.window_ps, r.size)
    t_click = r * period + offsets[d, a] + jitter
    span = (rounds + 30) * period
    t_dark = rng.integers(0, span, dark)
    ts = np.concatenate((np.arange(rounds + 30) * period, t_click, t_dark)).astype(np.int64)
    ch = np.concatenate((np.full(rounds + 30, SYNC), np.where(d == 0, D0, D1),
                         rng.choice([D0, D1, 7], dark))).astype(np.int16)
    keep = ts >= 0
    order = np.argsort(ts[keep], kind="stable")
    return ts[keep][order], ch[keep][order]


# --- single-click ---------------------------------------------------------------------------

@pytest.mark.parametrize(("channel", "bell"), [(D0, 0), (D1, 1)])
def test_one_click_heralds_the_detector_as_bell_state(channel: int, bell: int) -> None:
    heralds, counters = run(windows(), *stream(5, [(2, DELAY, channel)]))
    assert heralds.dtype == ENGINE_HERALD_DTYPE
    assert triples(heralds) == [(2, 2 * PERIOD, bell)]
    # decided: the rounds r whose last window (ends 10.5005 periods after r's sync) closed
    # before the last sync tag (round 24): r <= 13
    assert counters["attempts"] == 14
    assert counters["no_click"] == counters["attempts"] - 1
    assert counters["psi_minus"] == bell and counters["psi_plus"] == 1 - bell


def test_no_click_is_no_herald() -> None:
    heralds, counters = run(windows(), *stream(5, []))
    assert heralds.size == 0
    assert counters["heralds"] == 0 and counters["no_click"] == counters["attempts"] > 0


@pytest.mark.parametrize("second", [D0, D1])
def test_two_clicks_in_a_round_are_no_herald(second: int) -> None:
    clicks = [(2, DELAY, D0), (2, DELAY + 300_000 + 100, second)]
    heralds, counters = run(windows(), *stream(5, clicks))
    assert heralds.size == 0
    assert counters["multi_click"] == 1 and counters["unassigned_clicks"] == 0


@pytest.mark.parametrize("scheme", ["single_click", "two_click"])
def test_multi_click_counts_an_attempt_once_it_is_decided(scheme: str) -> None:
    # fed tag by tag: the attempt with two clicks in a round counts as multi-click from the
    # tag that decides it on, never before (its clicks are seen ~10 rounds earlier)
    w = windows(scheme)
    clicks = [(2, DELAY, D0), (2, DELAY + 300_000 + 100, D1), (3, DELAY, D1)]
    ts, ch = stream(6, clicks)
    last_round = 2 if scheme == "single_click" else 3  # of the attempt (two-click: rounds 2, 3)
    decides = int(np.searchsorted(ts, last_round * PERIOD + w.last_end_ps))
    engine = HeraldEngine(w)
    for k in range(ts.size):
        engine.feed(ts[k:k + 1], ch[k:k + 1])
        c = engine.counters
        assert c["multi_click"] == (k >= decides), f"after tag {k}"
        assert c["attempts"] == c["heralds"] + c["no_click"] + c["multi_click"]
        assert c["no_click"] >= 0


def test_a_click_outside_every_window_is_unassigned() -> None:
    # between the arms' windows, before the first, at the exclusive end of the last
    clicks = [(1, DELAY + 100_000, D0), (2, DELAY - W, D1), (3, DELAY + 300_000 + W // 2, D0)]
    heralds, counters = run(windows(), *stream(5, clicks))
    assert heralds.size == 0
    assert counters["unassigned_clicks"] == 3 and counters["multi_click"] == 0


def test_window_edges_follow_the_half_open_rule_with_an_odd_width() -> None:
    # centre 10_000, width 1001: centre - 500.5 <= dt < centre + 500.5 -> dt in [9500, 10500]
    w = windows(offsets=((10_000,), (10_000,)), window=1_001)
    inside = [(0, 9_500, D0), (2, 10_500, D1)]
    outside = [(4, 9_499, D0), (6, 10_501, D1)]
    heralds, counters = run(w, *stream(8, inside + outside))
    assert triples(heralds) == [(0, 0, 0), (2, 2 * PERIOD, 1)]
    assert counters["unassigned_clicks"] == 2


def test_a_click_in_two_arms_windows_of_one_round_counts_once() -> None:
    # equal arms: both nodes' windows are the same place; overlapping windows likewise
    for offsets in (((DELAY, DELAY),) * 2, ((DELAY, DELAY + W // 2),) * 2):
        heralds, counters = run(windows(offsets=offsets),
                                *stream(5, [(3, DELAY + W // 2 - 10, D1)]))
        assert triples(heralds) == [(3, 3 * PERIOD, 1)]
        assert counters["multi_click"] == 0


def test_a_click_in_windows_of_two_rounds_counts_in_both() -> None:
    # arm 1 is one period longer than arm 0: its window of round r is arm 0's of round r + 1
    w = windows(offsets=((DELAY, DELAY + PERIOD),) * 2)
    heralds, _ = run(w, *stream(6, [(2, DELAY + PERIOD, D0)]))
    assert triples(heralds) == [(2, 2 * PERIOD, 0), (3, 3 * PERIOD, 0)]


def test_dark_counts_outside_windows_do_not_spoil_a_herald_but_inside_they_do() -> None:
    darks = [(2, 5_000, D1), (2, 500_000, D0), (4, DELAY + 300_000 + 2 * W, D1)]
    heralds, counters = run(windows(), *stream(8, [(2, DELAY, D0), *darks]))
    assert triples(heralds) == [(2, 2 * PERIOD, 0)]
    assert counters["unassigned_clicks"] == 3
    # a dark count inside the other arm's window of the same round: two clicks, no herald
    heralds, counters = run(windows(), *stream(8, [(2, DELAY, D0), (2, DELAY + 300_000, D1)]))
    assert heralds.size == 0 and counters["multi_click"] == 1


def test_tags_on_other_inputs_are_ignored() -> None:
    ts, ch = stream(5, [(1, DELAY, D0), (1, DELAY + 1, 7), (1, DELAY + 2, 0)])
    heralds, counters = run(windows(), ts, ch)
    assert triples(heralds) == [(1, PERIOD, 0)]
    assert counters["other_tags"] == 2 and counters["clicks"] == 1


# --- two-click (Barrett-Kok) ----------------------------------------------------------------

@pytest.mark.parametrize(("first", "second", "bell"),
                         [(D0, D0, 0), (D1, D1, 0), (D0, D1, 1), (D1, D0, 1)])
def test_two_click_same_detector_is_psi_plus_different_is_psi_minus(
        first: int, second: int, bell: int) -> None:
    # attempt 3 = rounds 6 and 7; its sync_ps is round 6's sync
    clicks = [(6, DELAY, first), (7, DELAY + 300_000, second)]
    heralds, counters = run(windows("two_click"), *stream(10, clicks))
    assert triples(heralds) == [(3, 6 * PERIOD, bell)]
    assert counters["attempts"] == 9  # rounds 0..18 decided (last tag: round 29's sync)


def test_two_click_needs_exactly_one_click_in_each_round() -> None:
    w = windows("two_click")
    cases = {
        "first round empty": ([(3, DELAY, D0)], "no_click"),
        "second round empty": ([(2, DELAY, D0)], "no_click"),
        "two in the first": ([(2, DELAY, D0), (2, DELAY + 300_000, D1), (3, DELAY, D0)],
                             "multi_click"),
        "two in the second": ([(2, DELAY, D0), (3, DELAY, D0), (3, DELAY + 1, D0)],
                              "multi_click"),
        "straddling two attempts": ([(1, DELAY, D0), (2, DELAY, D1)], "no_click"),
    }
    for name, (clicks, why) in cases.items():
        heralds, counters = run(w, *stream(8, clicks))
        assert heralds.size == 0, name
        failed = counters["attempts"] - counters["heralds"]
        assert counters[why] >= 1 and counters["no_click"] + counters["multi_click"] == failed


def without_syncs(ts: np.ndarray, ch: np.ndarray, lost: set[int]) -> tuple[np.ndarray,
                                                                         np.ndarray]:
    """The stream with the sync tags of rounds `lost` gone (lost on the data link)."""
    keep = ~((ch == SYNC) & np.isin(ts, [r * PERIOD for r in lost]))
    return ts[keep], ch[keep]


@pytest.mark.parametrize("scheme", ["single_click", "two_click"])
def test_a_lost_sync_tag_costs_its_round_and_renumbers_nothing(scheme: str) -> None:
    # a herald in attempt 6 (rounds 12, 13 for two-click) after the sync tags of rounds 3
    # and 7..8 were lost: counted by tags it would be attempt 3 or 4, a wrong pair
    two = scheme == "two_click"
    clicks = [(12, DELAY, D0), (13, DELAY, D1)] if two else [(6, DELAY, D0)]
    ts, ch = without_syncs(*stream(14, clicks), {3, 7, 8})
    w = dataclasses.replace(windows(scheme), round_period_ps=PERIOD)
    heralds, counters = run(w, ts, ch)
    expected = (6, 12 * PERIOD, 1) if two else (6, 6 * PERIOD, 0)
    assert triples(heralds) == [expected]
    assert counters["missed_syncs"] == 3
    assert counters["rounds"] == 14 + 20 - 3
    # rounds 0..22 decided (the last tag, round 33's sync, closes round 22's windows), the
    # lost ones included
    assert counters["attempts"] == (23 // 2 if two else 23)
    # without the period the rounds are counted, and the herald lands on the wrong attempt
    heralds, _ = run(windows(scheme), ts, ch)
    assert triples(heralds) != [expected]


def test_a_two_click_attempt_without_its_first_sync_tag_is_no_herald() -> None:
    # attempt 2 = rounds 4, 5 with a click in each; round 4's sync tag lost: round 5 must not
    # pair with round 3
    clicks = [(3, DELAY, D0), (4, DELAY, D0), (5, DELAY, D0)]
    ts, ch = without_syncs(*stream(8, clicks), {4})
    w = dataclasses.replace(windows("two_click"), round_period_ps=PERIOD)
    heralds, counters = run(w, ts, ch)
    assert heralds.size == 0 and counters["missed_syncs"] == 1


@pytest.mark.parametrize("period", [0, -5, 2.5])
def test_round_period_is_checked(period: Any) -> None:
    with pytest.raises(ConfigError, match="round_period_ps"):
        dataclasses.replace(windows(), round_period_ps=period)


# --- delays, decision time, blocks ----------------------------------------------------------

def test_arm_delays_spanning_many_periods_find_their_own_round() -> None:
    # arms of 25.3 and 7.6 periods, a click for each arm of rounds 0..9 in turn
    offsets = ((25_300_000, 7_600_000),) * 2
    clicks = [(r, offsets[0][r % 2], D0 if r % 3 else D1) for r in range(10)]
    heralds, _ = run(windows(offsets=offsets), *stream(10, clicks, tail=40))
    assert triples(heralds) == [(r, r * PERIOD, 0 if r % 3 else 1) for r in range(10)]


def test_windows_before_the_sync_wait_for_it() -> None:
    # the sync tag arrives 3 us after the photons (a longer cable on the sync input)
    w = windows(offsets=((-3_300_000, -2_000_000),) * 2)
    clicks = [(5, -3_300_000, D1), (7, -2_000_000 + 400, D0)]
    ts, ch = stream(10, clicks)
    heralds, _ = run(w, ts, ch)
    assert triples(heralds) == [(5, 5 * PERIOD, 1), (7, 7 * PERIOD, 0)]
    assert triples(heralds) == reference(w, ts, ch)


def test_a_round_is_decided_once_the_stream_reaches_its_last_window_end() -> None:
    engine = HeraldEngine(windows(offsets=((10_000, 20_000),) * 2))
    assert engine.feed(np.array([0, 10_000]), np.array([SYNC, D0])).size == 0
    assert engine.feed(np.array([20_499]), np.array([7])).size == 0  # last window still open
    assert engine.counters["pending_rounds"] == 1
    assert triples(engine.feed(np.array([20_500]), np.array([7]))) == [(0, 0, 0)]
    assert engine.counters["pending_rounds"] == 0


@pytest.mark.parametrize("scheme", ["single_click", "two_click"])
def test_a_split_at_any_position_gives_the_same_heralds(scheme: str) -> None:
    w = windows(scheme, offsets=((DELAY, 3_400_000), (DELAY + 100, 3_400_000)))
    clicks = [(r, DELAY if r % 2 else 3_400_000, D0 if r % 3 else D1) for r in range(0, 16)]
    clicks += [(4, DELAY + 100, D1), (9, 3_400_000 + 30, D0), (11, 700_000, D1)]
    ts, ch = stream(16, clicks)
    whole, counters = run(w, ts, ch)
    assert triples(whole) == reference(w, ts, ch) and whole.size > 2
    for cut in range(ts.size + 1):
        engine = HeraldEngine(w)
        parts = [engine.feed(ts[:cut], ch[:cut]), engine.feed(ts[cut:], ch[cut:])]
        assert triples(np.concatenate(parts)) == triples(whole), f"cut at {cut}"
        assert engine.counters | {"blocks": 1} == counters
    engine = HeraldEngine(w)  # one tag per block, with empty blocks between
    parts = []
    for k in range(ts.size):
        parts.append(engine.feed(ts[k:k + 1], ch[k:k + 1]))
        parts.append(engine.feed(ts[:0], ch[:0]))
    assert triples(np.concatenate(parts)) == triples(whole)


def test_heralds_in_one_block_come_out_in_attempt_order() -> None:
    # a long arm's herald is decided after a short arm's in the stream, never out of order
    w = windows(offsets=((DELAY, 500_000),) * 2)
    ts, ch = stream(12, [(2, DELAY, D0), (3, 500_000, D1), (8, 500_000, D0)])
    heralds, _ = run(w, ts, ch)
    assert list(heralds["attempt_id"]) == [2, 3, 8]


def test_empty_blocks_change_nothing() -> None:
    engine = HeraldEngine(windows())
    empty = engine.feed(np.empty(0, np.int64), np.empty(0, np.int32))
    assert empty.dtype == ENGINE_HERALD_DTYPE and empty.size == 0
    ts, ch = stream(5, [(1, DELAY, D1)])
    engine.feed(ts[:7], ch[:7])
    before = engine.counters
    assert engine.feed(ts[:0], ch[:0]).size == 0
    assert engine.counters == before | {"blocks": before["blocks"] + 1}
    assert triples(engine.feed(ts[7:], ch[7:])) == [(1, PERIOD, 1)]


def test_reset_starts_a_new_stream() -> None:
    engine = HeraldEngine(windows())
    ts, ch = stream(5, [(1, DELAY, D1)])
    first = triples(engine.feed(ts[:-3], ch[:-3]))  # leaves rounds pending
    assert engine.counters["pending_rounds"] > 0
    engine.reset()
    assert engine.counters["rounds"] == 0 and engine.counters["pending_rounds"] == 0
    assert triples(engine.feed(ts, ch)) == first  # the clock restarted: same ids again


@pytest.mark.parametrize("scheme", ["single_click", "two_click"])
def test_an_unsorted_block_is_refused_and_changes_nothing(scheme: str) -> None:
    engine = HeraldEngine(windows(scheme))
    ts, ch = stream(5, [(1, DELAY, D1)])
    engine.feed(ts[:10], ch[:10])
    before = engine.counters
    bad = ts[10:].copy()
    bad[[3, 4]] = bad[[4, 3]]
    with pytest.raises(TagBlockError, match="not sorted"):
        engine.feed(bad, ch[10:])
    with pytest.raises(TagBlockError, match="before the previous block ended"):
        engine.feed(ts[5:], ch[5:])
    assert engine.counters == before
    # the block fed right: single-click heralds round 1; two-click has no attempt with a
    # click in both rounds
    assert len(engine.feed(ts[10:], ch[10:])) == (scheme == "single_click")


def test_heralds_stay_valid_when_the_output_buffer_is_replaced(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # a tiny output buffer: most blocks fill it and the engine moves on to a new one
    monkeypatch.setattr(herald_engine, "_ARENA", 4)
    clicks = [(r, DELAY, D0 if r % 3 else D1) for r in range(0, 40)]
    ts, ch = stream(40, clicks)
    whole, _ = run(windows(), ts, ch)
    assert whole.size == 40
    engine = HeraldEngine(windows())
    parts = [engine.feed(ts[a:a + 7], ch[a:a + 7]) for a in range(0, ts.size, 7)]
    assert triples(np.concatenate(parts)) == triples(whole)  # earlier parts not overwritten
    assert engine.counters["heralds"] == 40


def test_other_array_types_are_converted_or_refused() -> None:
    ts, ch = stream(5, [(1, DELAY, D1)])
    expected = triples(run(windows(), ts, ch)[0])
    for t, c in ((list(ts), list(ch)), (ts.astype(np.uint64), ch.astype(np.uint64)),
                 (ts, ch.astype(">i4"))):
        assert triples(HeraldEngine(windows()).feed(t, c)) == expected
    engine = HeraldEngine(windows())
    with pytest.raises(ValueError, match="integer ps"):
        engine.feed(ts.astype(float), ch)
    with pytest.raises(ValueError, match="one channel per timestamp"):
        engine.feed(ts, ch[:-1])
    with pytest.raises(ValueError, match="1-D"):
        engine.feed(ts.reshape(-1, 1), ch)
    assert engine.counters["tags"] == 0


@pytest.mark.parametrize("scheme", ["single_click", "two_click"])
def test_a_block_starting_before_the_last_tag_is_refused_after_any_block(scheme: str) -> None:
    # the last block is two tags that decide a round late in the ring
    ts, ch = stream(30, [(r, DELAY, D0) for r in range(30)])
    engine = HeraldEngine(windows(scheme))
    engine.feed(ts[:-2], ch[:-2])
    engine.feed(ts[-2:], ch[-2:])
    with pytest.raises(TagBlockError, match="before the previous block ended"):
        engine.feed(ts[-1:] - 1, ch[-1:])


@pytest.mark.parametrize("scheme", ["single_click", "two_click"])
@pytest.mark.parametrize("arms", ["after_the_sync", "before_the_sync"])
def test_a_block_unsorted_anywhere_is_undone_whole(scheme: str, arms: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # A refused block changes nothing. With windows after the sync the order is checked as the
    # block is decided, and what it changed before its bad tag is undone (the ring of rounds,
    # the counters, where the heralds go in a replaced output buffer); before the sync, the
    # block is checked first.
    # ~500 rounds pending make a bad block that starts early grow the ring before its bad tag;
    # a tiny output buffer makes one that starts after heralds replace the buffer.
    monkeypatch.setattr(herald_engine, "_ARENA", 8)
    w = windows(scheme, offsets=LONG_ARMS if arms == "after_the_sync" else EARLY_ARMS)
    ts, ch = random_stream(np.random.default_rng(12), 700, w, 0.4, 1_000, 20_000)
    whole, counters = run(w, ts, ch)
    assert len(triples(whole)) > 20
    cases = [(split, bad) for split in (40, ts.size // 2)
             for bad in [*range(0, ts.size - split, 61), ts.size - split - 1]]
    for split, bad in cases:
        bad_block = ts[split:]
        engine = HeraldEngine(w)
        first = triples(engine.feed(ts[:split], ch[:split]))
        before = engine.counters
        bad_ts = bad_block.copy()
        bad_ts[bad] = (bad_ts[bad - 1] if bad else ts[split - 1]) - 1
        with pytest.raises(TagBlockError, match=f"tag block 1, position {bad}:"):
            engine.feed(bad_ts, ch[split:])
        assert engine.counters == before, f"block from {split}, bad tag at {bad}"
        rest = triples(engine.feed(bad_block, ch[split:]))
        assert first + rest == triples(whole), f"block from {split}, bad tag at {bad}"
        assert engine.counters == counters | {"blocks": 2}


@pytest.mark.parametrize("scheme", ["single_click", "two_click"])
def test_clicks_before_the_first_sync_tag_can_fill_the_click_ring(scheme: str) -> None:
    # 100 dark counts a later sync may still claim (its windows start 2.1 us before it) fill
    # the engine's first click ring before any sync tag: the rings grow, numbering unchanged
    w = windows(scheme, offsets=EARLY_ARMS)
    dark = np.arange(100, dtype=np.int64)
    syncs = 1_000 + np.arange(30, dtype=np.int64) * PERIOD
    clicks = syncs[[2, 3]] + 300  # detector 0's window of arm 1: rounds 2 and 3 (attempt 1)
    ts = np.concatenate((dark, syncs, clicks))
    ch = np.concatenate((np.full(100, D1), np.full(30, SYNC), [D0, D0]))
    order = np.argsort(ts, kind="stable")
    ts, ch = ts[order], ch[order]
    expected = reference(w, ts, ch)
    assert expected == ([(2, 2 * PERIOD + 1_000, 0), (3, 3 * PERIOD + 1_000, 0)]
                        if scheme == "single_click" else [(1, 2 * PERIOD + 1_000, 0)])
    engine = HeraldEngine(w)
    assert triples(np.concatenate([engine.feed(ts[:101], ch[:101]),
                                   engine.feed(ts[101:], ch[101:])])) == expected
    assert engine.counters["clicks"] == 102


def test_tag_blocks_and_their_overflow_flag() -> None:
    ts, ch = stream(5, [(1, DELAY, D1)])
    engine = HeraldEngine(windows())
    with pytest.raises(TagBlockError, match="overflow"):
        engine.feed_block(TagBlock(ts, ch, overflow=True, lost_tags=3))
    assert engine.counters["tags"] == 0
    tolerant = HeraldEngine(windows(), accept_overflow=True)
    assert triples(tolerant.feed_block(TagBlock(ts, ch, overflow=True, lost_tags=3))) == [
        (1, PERIOD, 1)]
    assert tolerant.counters["overflowed_blocks"] == 1 and tolerant.counters["lost_tags"] == 3


LONG_ARMS = ((DELAY, 7_100_000), (DELAY + 200, 7_100_000 - 300))
EARLY_ARMS = ((-2_100_000, 300), (-2_100_000 + 200, 0))  # windows before and at the sync


@pytest.mark.parametrize(("scheme", "period", "p_click", "dark", "offsets"), [
    ("single_click", PERIOD, 0.05, 300, LONG_ARMS),
    ("two_click", PERIOD, 0.3, 300, LONG_ARMS),
    ("single_click", 20_000, 0.4, 5_000, LONG_ARMS),  # ~500 rounds pending: buffers grow
    ("two_click", 20_000, 0.5, 5_000, LONG_ARMS),
    ("single_click", PERIOD, 0.2, 3_000, EARLY_ARMS),
    ("two_click", 20_000, 0.5, 20_000, EARLY_ARMS),  # many clicks wait for their syncs
])
def test_random_streams_match_brute_force_in_random_blocks(
        scheme: str, period: int, p_click: float, dark: int, offsets: Any) -> None:
    rng = np.random.default_rng(20261206)
    w = windows(scheme, offsets=offsets)
    ts, ch = random_stream(rng, 3_000, w, p_click, dark, period)
    expected = reference(w, ts, ch)
    assert len(expected) > 50
    engine = HeraldEngine(w)
    cuts = np.sort(rng.integers(0, ts.size, 40))
    parts = [engine.feed(ts[a:b], ch[a:b]) for a, b in zip([0, *cuts], [*cuts, ts.size],
                                                           strict=True)]
    assert triples(np.concatenate(parts)) == expected
    c = engine.counters
    assert c["attempts"] == engine.attempts == c["heralds"] + c["no_click"] + c["multi_click"]
    assert c["unassigned_clicks"] == unassigned(w, ts, ch)
    assert c["heralds"] == c["psi_plus"] + c["psi_minus"] == len(expected)
    assert c["tags"] == ts.size == c["rounds"] + c["clicks"] + c["other_tags"]


# --- windows --------------------------------------------------------------------------------

@pytest.mark.parametrize(("change", "field", "fix"), [
    ({"window_ps": 0}, "window_ps", "full width"),
    ({"window_ps": 1.5}, "window_ps", "integer ps"),
    ({"scheme": "three_click"}, "scheme", "single_click, two_click"),
    ({"detector_channels": (1,)}, "detector_channels", "both detectors"),
    ({"detector_channels": (1, 1)}, "detector_channels", "its own input"),
    ({"sync_channel": 2}, "sync_channel", "its own input"),
    ({"offsets_ps": ((1, 2),)}, "offsets_ps", "one tuple per detector"),
    ({"offsets_ps": ((1, 2), (3,))}, "offsets_ps", "one tuple per detector"),
    ({"offsets_ps": ((), ())}, "offsets_ps", "one tuple per detector"),
    ({"offsets_ps": 5}, "offsets_ps", "one tuple per detector"),
    ({"offsets_ps": ((1.5, 2), (3, 4))}, "offsets_ps", "one tuple per detector"),
])
def test_windows_are_checked_with_the_field_and_the_fix(change: dict[str, Any], field: str,
                                                        fix: str) -> None:
    fields = {"scheme": "single_click", "sync_channel": SYNC, "detector_channels": (D0, D1),
              "offsets_ps": ((1, 2), (3, 4)), "window_ps": W} | change
    with pytest.raises(ConfigError, match=field) as caught:
        HeraldWindows(**fields)
    assert fix in caught.value.fix


def test_windows_accept_numpy_integers_and_lists() -> None:
    w = HeraldWindows("two_click", np.int64(SYNC), [D0, D1],
                      [np.array([5, 6]), [7, 8]], np.int32(W))
    assert w.offsets_ps == ((5, 6), (7, 8)) and w.detector_channels == (D0, D1)
    assert type(w.window_ps) is int and w.arms == 2


@pytest.mark.parametrize("scheme", ["single_click", "two_click"])
def test_sync_tags_lost_before_the_first_one_heard_renumber_nothing(scheme: str) -> None:
    # A data link slow to start loses the recording's first sync tags (rounds 0..4): with the
    # period known, rounds still count from tag time 0, so the herald stays on its attempt
    # and, for two-click, round 6 still pairs with round 7 (not with round 6's predecessor).
    two = scheme == "two_click"
    clicks = [(6, DELAY, D0), (7, DELAY, D1)] if two else [(6, DELAY, D0)]
    ts, ch = without_syncs(*stream(10, clicks), {0, 1, 2, 3, 4})
    w = dataclasses.replace(windows(scheme), round_period_ps=PERIOD)
    heralds, counters = run(w, ts, ch)
    expected = (3, 6 * PERIOD, 1) if two else (6, 6 * PERIOD, 0)
    assert triples(heralds) == [expected]
    assert counters["missed_syncs"] == 5
    # the clock's phase within half a period of tag time 0 is no lost round
    heralds, counters = run(w, ts + PERIOD // 3, ch)
    assert triples(heralds) == [(expected[0], expected[1] + PERIOD // 3, expected[2])]
    assert counters["missed_syncs"] == 5


# --- windows moved on a running engine (a bridge station's arms switched to another path) ---

@pytest.mark.parametrize("scheme", ["single_click", "two_click"])
def test_moved_windows_decide_every_round_after_the_move_as_a_new_engine_would(
        scheme: str) -> None:
    old = windows(scheme, offsets=((DELAY, DELAY + 300_000),) * 2)
    new = windows(scheme, offsets=((DELAY + 40_000, DELAY + 250_000),) * 2)
    # clicks at both the old and the new centres in every round: each set heralds only
    # under its own windows
    clicks = [(r, (DELAY if r < 20 else DELAY + 40_000) + (r % 3) * 100, D0 if r % 2 else D1)
              for r in range(40)]
    clicks += [(r, DELAY + 250_000, D1) for r in range(25, 40, 4)]
    ts, ch = stream(40, clicks)
    cut = int(np.searchsorted(ts, 20 * PERIOD))
    engine = HeraldEngine(old)
    before = engine.feed(ts[:cut], ch[:cut])
    engine.set_windows(new)
    after = engine.feed(ts[cut:], ch[cut:])
    # a round is open from its sync to its last window's end: those whose sync came after
    # the move minus that reach are decided with the new windows alone
    settled = 20 * PERIOD - new.last_end_ps
    expected = [t for t in reference(new, ts, ch) if t[1] >= settled]
    assert [t for t in triples(after) if t[1] >= settled] == expected and expected
    assert triples(before) == reference(old, ts[:cut], ch[:cut]) and before.size
    assert engine.windows is new


def test_windows_that_change_more_than_their_centres_are_refused() -> None:
    engine = HeraldEngine(windows())
    with pytest.raises(ConfigError, match="only the windows' centres"):
        engine.set_windows(windows("two_click"))
    with pytest.raises(ConfigError, match="other side of the sync"):
        engine.set_windows(windows(offsets=((-5_000, 200),) * 2))
    assert engine.windows == windows()  # unchanged after a refusal
