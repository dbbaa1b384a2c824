"""Time-tag processing: coincidences and g2 against brute force, block boundaries, bad input."""

from __future__ import annotations

import itertools
from typing import Literal

import numpy as np
import pytest

from qnetlab.instruments.errors import QnetlabError
from qnetlab.sequences.timetags import (
    CoincidenceCounter,
    Correlator,
    TagBlock,
    TagBlockError,
    correlate,
    count_coincidences,
    normalise_g2,
)

A, B, OTHER = 1, 2, 5
Kernel = Literal["auto", "interleaved", "split"]


def small_stream(seed: int, n: int = 60, span_ps: int = 20_000) -> TagBlock:
    """Three channels of uniform tags in a short span, with forced ties between A and B.

    Dense enough (about one tag per 100 ps) that windows of a few hundred ps hold several
    tags, and integer times on a short span so equal timestamps occur.
    """
    rng = np.random.default_rng(seed)
    a = np.sort(rng.integers(0, span_ps, n))
    b = np.sort(np.concatenate((rng.integers(0, span_ps, n), a[::7])))  # ties with A
    other = np.sort(rng.integers(0, span_ps, n // 2))
    return TagBlock.from_channels({B: b, OTHER: other, A: a})


def split_times(block: TagBlock, channel: int) -> np.ndarray:
    return block.timestamps[block.channels == channel]


def brute_coincidences(a: np.ndarray, b: np.ndarray, window: int) -> int:
    return int((np.abs(b[None, :] - a[:, None]) <= window).sum())


def brute_histogram(a: np.ndarray, b: np.ndarray, half_range: int, width: int) -> np.ndarray:
    tau = (b[None, :] - a[:, None]).ravel()
    tau = tau[(tau >= -half_range) & (tau < half_range)]
    return np.bincount((tau + half_range) // width, minlength=2 * half_range // width)


def pieces(block: TagBlock, cuts: list[int]) -> list[TagBlock]:
    bounds = [0, *cuts, len(block)]
    return [TagBlock(block.timestamps[lo:hi], block.channels[lo:hi], index=i)
            for i, (lo, hi) in enumerate(itertools.pairwise(bounds))]


# --- against brute force ----------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("window", [0, 1, 137, 1000, 50_000])
def test_coincidences_match_brute_force(seed: int, window: int) -> None:
    block = small_stream(seed)
    expected = brute_coincidences(split_times(block, A), split_times(block, B), window)
    assert count_coincidences(block, A, B, window) == expected
    assert count_coincidences(block, B, A, window) == expected  # symmetric


KERNELS: tuple[Kernel, ...] = ("interleaved", "split")


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("half_range", "width"), [(1000, 100), (3000, 1), (2500, 500),
                                                   (100_000, 100)])
def test_correlation_matches_brute_force(seed: int, half_range: int, width: int,
                                         kernel: Kernel) -> None:
    block = small_stream(seed)
    a, b = split_times(block, A), split_times(block, B)
    result = correlate(block, A, B, range_ps=half_range, bin_width_ps=width, kernel=kernel)
    np.testing.assert_array_equal(result.counts, brute_histogram(a, b, half_range, width))
    np.testing.assert_array_equal(result.edges_ps,
                                  np.arange(-half_range, half_range + 1, width))
    assert (result.tags_a, result.tags_b) == (a.size, b.size)
    # Swapping the channels mirrors the delays: tau -> -tau, with [lo, hi) bins that is
    # not a plain reversal, so compare with brute force again.
    swapped = correlate(block, B, A, range_ps=half_range, bin_width_ps=width, kernel=kernel)
    np.testing.assert_array_equal(swapped.counts, brute_histogram(b, a, half_range, width))


@pytest.mark.parametrize("dtype", [np.int8, np.uint16])
def test_other_channel_dtypes_and_negative_channels(dtype: type) -> None:
    """Small channel dtypes work as given; signed ones may carry falling edges (< 0)."""
    block = small_stream(9)
    low = -3 if np.issubdtype(dtype, np.signedinteger) else 3
    channels: np.ndarray = np.where(block.channels == A, low, block.channels).astype(dtype)
    small = TagBlock(block.timestamps, channels)
    a, b = split_times(block, A), split_times(block, B)
    assert count_coincidences(pieces(small, [30, 31]), low, B, 400) == brute_coincidences(
        a, b, 400)
    np.testing.assert_array_equal(correlate(small, low, B, range_ps=2000).counts,
                                  brute_histogram(a, b, 2000, 100))


# --- block boundaries ---------------------------------------------------------------------------

def test_split_at_every_position_changes_nothing() -> None:
    block = small_stream(11, n=50)
    whole_count = count_coincidences(block, A, B, 300)
    whole_hist = correlate(block, A, B, range_ps=2000, bin_width_ps=100).counts
    assert whole_count > 0 and whole_hist.sum() > 0
    for cut in range(len(block) + 1):
        two = pieces(block, [cut])
        assert count_coincidences(two, A, B, 300) == whole_count, cut
        for kernel in KERNELS:
            hist = correlate(two, A, B, range_ps=2000, bin_width_ps=100, kernel=kernel).counts
            np.testing.assert_array_equal(hist, whole_hist, err_msg=f"{kernel}, cut at {cut}")


@pytest.mark.parametrize("seed", range(4))
def test_many_random_blocks_change_nothing(seed: int) -> None:
    """Many cuts, empty blocks, and blocks shorter than the window (the carry spans several)."""
    rng = np.random.default_rng(100 + seed)
    block = small_stream(seed, n=200, span_ps=40_000)
    cuts = sorted(rng.integers(0, len(block) + 1, 60).tolist())  # repeats make empty blocks
    blocks = pieces(block, cuts)
    assert any(len(p) == 0 for p in blocks)
    for window in (0, 250, 5000):
        assert count_coincidences(blocks, A, B, window) == count_coincidences(block, A, B,
                                                                               window)
    for (half_range, width), kernel in itertools.product(((1000, 50), (100_000, 100)),
                                                         KERNELS):
        whole = correlate(block, A, B, range_ps=half_range, bin_width_ps=width)
        streamed = correlate(blocks, A, B, range_ps=half_range, bin_width_ps=width,
                             kernel=kernel)
        np.testing.assert_array_equal(streamed.counts, whole.counts)
        assert (streamed.tags_a, streamed.tags_b, streamed.span_ps) == (
            whole.tags_a, whole.tags_b, whole.span_ps)


def test_pair_split_across_blocks_counts_once() -> None:
    first = TagBlock(np.array([100, 1000], np.int64), np.array([OTHER, A]), index=0)
    tie = TagBlock(np.array([1000, 1400], np.int64), np.array([B, B]), index=1)
    # A at 1000 pairs with B at 1000 (tau 0) and B at 1400 (tau 400), each once.
    assert count_coincidences([first, tie], A, B, 500) == 2
    assert count_coincidences([first, tie], A, B, 399) == 1
    result = correlate([first, tie], A, B, range_ps=1000, bin_width_ps=100)
    assert result.counts.sum() == 2
    assert result.counts[10] == 1 and result.counts[14] == 1  # bins [0, 100) and [400, 500)


# --- statistics ---------------------------------------------------------------------------------

def test_g2_of_independent_poisson_streams_is_flat_at_one() -> None:
    """Uncorrelated streams give g2 = 1 in every bin within Poisson errors.

    N_A = N_B = 5e5 tags uniform over T = 50 ms (10 MHz each), default 100 ps bins over
    +-100 ns. The count in a bin sums N_A N_B indicators of probability
    p = dtau (T - |tau|) / T**2 (about 2e-9); pairs sharing a tag are independent given that
    tag for uniform streams, so the covariances vanish and the count is Poisson-like with mean
    and variance mu = N_A N_B p (about 500). Hence g2 = C / mu has standard error 1/sqrt(mu)
    per bin (about 0.045). With fixed seeds the test is deterministic; the bounds are wide
    enough that an honest run fails with small probability: 5 sigma per bin (two-sided
    p = 5.7e-7, times 2000 bins: 1.1e-3), the mean over all bins within 5/sqrt(sum mu), and
    the chi-square over 2000 bins within 5 of its standard deviation sqrt(2 * 2000).
    """
    rng = np.random.default_rng(7)
    n, duration = 500_000, 50_000_000_000
    block = TagBlock.from_channels({A: np.sort(rng.integers(0, duration, n)),
                                    B: np.sort(rng.integers(0, duration, n))})
    blocks = pieces(block, sorted(rng.integers(0, len(block), 9).tolist()))
    result = correlate(blocks, A, B)
    g2 = normalise_g2(result, duration_ps=duration)
    mu = n * n * 100 * (duration - np.abs(result.delays_ps)) / duration**2
    assert g2.shape == (2000,) and 490 < mu.min() <= mu.max() < 510
    assert np.all(np.abs(g2 - 1) < 5 / np.sqrt(mu))
    assert abs(result.counts.sum() / mu.sum() - 1) < 5 / np.sqrt(mu.sum())
    chi2 = (((result.counts - mu) ** 2) / mu).sum()
    assert abs(chi2 - 2000) < 5 * np.sqrt(2 * 2000)
    # The default duration (first to last tag) gives the same within 1e-5 here.
    np.testing.assert_allclose(result.g2(), g2, rtol=1e-5)


@pytest.mark.parametrize(("first", "second", "sign"), [(A, B, 1), (B, A, -1)])
def test_correlated_pairs_peak_at_their_delay(first: int, second: int, sign: int) -> None:
    """Half of A's photons reach B 12345 ps later with 30 ps RMS jitter, on a flat background."""
    rng = np.random.default_rng(3)
    n, duration, delay, jitter = 100_000, 10_000_000_000, 12_345, 30.0
    a = np.sort(rng.integers(0, duration, n))
    partners = a[rng.random(n) < 0.5]
    twins = partners + delay + np.rint(rng.normal(0.0, jitter, partners.size)).astype(np.int64)
    b = np.sort(np.concatenate((twins, rng.integers(0, duration, n))))
    blocks = pieces(TagBlock.from_channels({A: a, B: b}), [50_000, 150_000, 200_001])
    result = correlate(blocks, first, second)
    g2 = result.g2(duration_ps=duration)
    peak = int(np.argmax(result.counts))
    assert result.edges_ps[peak] <= sign * delay < result.edges_ps[peak + 1]
    # Centroid of the background-subtracted peak (+-5 bins): the jitter averages out to
    # 30 ps / sqrt(5e4), the 100 ps bins add a bias of a few ps at most.
    near = slice(peak - 5, peak + 6)
    background = np.median(result.counts)
    signal = result.counts[near] - background
    centroid = (signal * result.delays_ps[near]).sum() / signal.sum()
    assert abs(centroid - sign * delay) < 5
    assert signal.sum() == pytest.approx(partners.size, rel=0.02)
    assert g2[peak] > 100
    far = np.abs(result.delays_ps - sign * delay) > 1000
    assert abs(g2[far].mean() - 1) < 0.05


# --- bad input ----------------------------------------------------------------------------------

def block_of(times: list[int], channels: list[int] | None = None, **kw: object) -> TagBlock:
    channels = channels if channels is not None else [A, B] * (len(times) // 2) + [A] * (
        len(times) % 2)
    return TagBlock(np.array(times, np.int64), np.array(channels, np.int32), **kw)  # type: ignore[arg-type]


def test_unsorted_block_is_refused_with_position() -> None:
    bad = block_of([10, 20, 15, 30], index=3)
    with pytest.raises(TagBlockError, match=r"tag block 3, position 2: .*not sorted.*Fix:") as e:
        CoincidenceCounter(A, B, 100).feed(bad)
    assert e.value.block == 3 and e.value.position == 2
    assert isinstance(e.value, QnetlabError)
    with pytest.raises(TagBlockError, match="position 2"):
        bad.validate()
    for kernel in KERNELS:
        with pytest.raises(TagBlockError, match="position 2"):
            correlate(bad, A, B, kernel=kernel)


def test_unsorted_inside_the_carried_head_is_refused() -> None:
    counter = CoincidenceCounter(A, B, 1000)
    counter.feed(block_of([0, 500]))
    with pytest.raises(TagBlockError, match=r"tag block 1, position 1: .*700 ps follows 900"):
        counter.feed(block_of([900, 700, 5000, 6000]))
    for kernel in KERNELS:
        correlator = Correlator(A, B, kernel=kernel)
        correlator.feed(block_of([0, 500]))
        with pytest.raises(TagBlockError, match="position 3"):
            correlator.feed(block_of([900, 1000, 500_000, 400_000]))


def test_negative_time_is_refused() -> None:
    with pytest.raises(TagBlockError, match=r"position 0: timestamp -5 ps is negative"):
        count_coincidences(block_of([-5, 10]), A, B, 100)
    with pytest.raises(TagBlockError, match=r"position 1: timestamp -5 ps is negative"):
        count_coincidences(block_of([3, -5, 10]), A, B, 100)
    with pytest.raises(TagBlockError, match="negative"):
        block_of([-5, 10]).validate()


def test_block_starting_before_the_previous_end_is_refused() -> None:
    counter = CoincidenceCounter(A, B, 100)
    counter.feed(block_of([100, 200]))
    with pytest.raises(TagBlockError, match=r"tag block 1, position 0: the block starts at "
                                            r"150 ps, before the previous block ended at 200"):
        counter.feed(block_of([150, 300]))


@pytest.mark.parametrize(("times", "channels", "match"), [
    (np.array([1.0, 2.0]), np.array([A, B]), "dtype float64, expected int64"),
    (np.array([1, 2], np.int32), np.array([A, B]), "dtype int32, expected int64"),
    (np.array([1, 2]), np.array([1.0, 2.0]), "channels have dtype float64"),
    (np.array([1, 2]), np.array([True, False]), "channels have dtype bool"),
    (np.array([1, 2, 3]), np.array([A, B]), "3 timestamps but 2 channels"),
    (np.array([[1, 2]]), np.array([[A, B]]), "must be 1-D"),
])
def test_malformed_blocks_are_refused(times: np.ndarray, channels: np.ndarray,
                                      match: str) -> None:
    with pytest.raises(TagBlockError, match=rf"tag block 4: .*{match}.*Fix: "):
        TagBlock(times, channels, index=4)


def test_overflowed_block_is_refused_unless_accepted() -> None:
    lossy = block_of([100, 150, 900, 1000], overflow=True, lost_tags=42)
    with pytest.raises(TagBlockError, match=r"tag block 0: .*overflow: 42 tags .*accept_overflow"):
        count_coincidences(lossy, A, B, 100)
    with pytest.raises(TagBlockError, match="overflow"):
        correlate(lossy, A, B)
    with pytest.raises(TagBlockError, match="overflow"):
        lossy.validate()
    lossy.validate(accept_overflow=True)
    counter = CoincidenceCounter(A, B, 100, accept_overflow=True)
    counter.feed_all([lossy, block_of([2000, 2050], overflow=True), block_of([3000, 3050])])
    assert counter.count == 4
    assert (counter.overflowed_blocks, counter.lost_tags, counter.blocks) == (2, 42, 3)
    with pytest.raises(TagBlockError, match="lost_tags=3 but overflow is False"):
        block_of([1, 2], lost_tags=3)


def test_refused_block_leaves_the_counters_unchanged() -> None:
    stream = small_stream(5, n=80)
    blocks = pieces(stream, [40, 90, 150])
    counter = CoincidenceCounter(A, B, 400)
    correlator = Correlator(A, B, range_ps=3000, bin_width_ps=100)
    split = Correlator(A, B, range_ps=3000, bin_width_ps=100, kernel="split")
    for consumer in (counter, correlator, split):
        consumer.feed_all(blocks[:2])
        # Out of order deep inside the next block, after many pairs were already counted.
        ts = blocks[2].timestamps.copy()
        ts[-3:] = ts[-3:][::-1]
        assert ts[-3] != ts[-1]
        with pytest.raises(TagBlockError):
            consumer.feed(TagBlock(ts, blocks[2].channels, index=2))
        consumer.feed_all(blocks[2:])
    assert counter.count == count_coincidences(stream, A, B, 400)
    expected = correlate(stream, A, B, range_ps=3000, bin_width_ps=100).counts
    np.testing.assert_array_equal(correlator.counts, expected)
    np.testing.assert_array_equal(split.counts, expected)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="both 1"):
        CoincidenceCounter(1, 1, 100)
    with pytest.raises(ValueError, match=">= 0 ps"):
        CoincidenceCounter(A, B, -1)
    with pytest.raises(TypeError, match="integer number of picoseconds"):
        CoincidenceCounter(A, B, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a multiple"):
        Correlator(A, B, range_ps=1000, bin_width_ps=300)
    with pytest.raises(ValueError, match="cannot normalise"):
        Correlator(A, B).result().g2()
    with pytest.raises(TypeError, match="takes a TagBlock"):
        CoincidenceCounter(A, B, 100).feed((np.array([1]), np.array([1])))  # type: ignore[arg-type]
