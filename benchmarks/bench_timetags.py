"""Tag-processing throughput: coincidences and g2 against bare baselines in the same process.

    python benchmarks/bench_timetags.py [--tags 10000000] [--reps 5] [--block 1048576]
                                        [--rate 1e6]

Two channels of `--tags` tags each (`--rate` per channel, default 1 MHz: 10 s; half of
channel 2 are channel-1 photons 3 ns later with 40 ps RMS jitter, half independent),
interleaved in time as a tagger delivers them. The g2 kernel is picked by occupancy
(`Correlator(kernel="auto")`): 1 MHz runs the interleaved pass, 10 MHz the split one.
Ours: `CoincidenceCounter` (window +-1 ns) and `Correlator` (+-100 ns, 100 ps bins) fed the
stream in blocks of `--block` tags, as from a tagger, with all the checks (order, sign,
overflow) and the block-boundary carry; also the one-shot functions on the stream as a
single block. Baselines on the same data, already split into one sorted array per channel
(a split ours pays for and they do not): a plain numpy searchsorted version and a bare numba
merge loop with no framework. Every kernel is compiled (warm-up) before timing; figures are
medians of `--reps` runs on one pinned core, in tags per second counting the tags of both
channels. Prints our two figures first (coincidences, then g2), each as `N Mtags/s` on its own
line, then the table.
"""

from __future__ import annotations

import argparse
import os

# One core: the numba kernels are serial, and this keeps any threaded library serial too.
os.environ["NUMBA_NUM_THREADS"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qnetlab.sequences.timetags import (  # noqa: E402
    CoincidenceCounter,
    Correlator,
    TagBlock,
    correlate,
    count_coincidences,
)

WINDOW_PS = 1_000
RANGE_PS = 100_000
BIN_PS = 100
N_BINS = 2 * RANGE_PS // BIN_PS
TARGETS = {"coincidences": 150.0, "g2": 120.0}
MAX_RATIO = 1.3


# --- baselines ----------------------------------------------------------------------------------

def numpy_coincidences(a: np.ndarray, b: np.ndarray, window: int) -> int:
    """Plain numpy: two binary searches per A tag."""
    return int((np.searchsorted(b, a + window, "right")
                - np.searchsorted(b, a - window, "left")).sum())


def numpy_histogram(a: np.ndarray, b: np.ndarray, half_range: int, width: int) -> np.ndarray:
    """Plain numpy: binary searches, then every pair expanded and binned."""
    lo = np.searchsorted(b, a - half_range, "left")
    hi = np.searchsorted(b, a + half_range, "left")
    per_a = hi - lo
    total = int(per_a.sum())
    starts = np.cumsum(per_a) - per_a
    j = np.repeat(lo, per_a) + (np.arange(total) - np.repeat(starts, per_a))
    tau = b[j] - np.repeat(a, per_a)
    return np.bincount((tau + half_range) // width, minlength=2 * half_range // width)


@njit(cache=True)
def bare_coincidences(a: Any, b: Any, window: int) -> int:
    """Bare numba merge: two indices bracket each A tag's window in B."""
    nb = b.size
    lo = 0
    hi = 0
    pairs = 0
    for i in range(a.size):
        t = a[i]
        while lo < nb and b[lo] < t - window:
            lo += 1
        while hi < nb and b[hi] <= t + window:
            hi += 1
        pairs += hi - lo
    return pairs


@njit(cache=True)
def bare_histogram(a: Any, b: Any, half_range: int, width: int, n_bins: int) -> Any:
    """Bare numba merge: walk each A tag's window in B and bin the delays.

    Uses the same unsigned division as ours, so the comparison is of the framework only.
    """
    hist = np.zeros(n_bins, np.int64)
    w = np.uint64(width)
    nb = b.size
    lo = 0
    for i in range(a.size):
        t = a[i]
        while lo < nb and b[lo] < t - half_range:
            lo += 1
        j = lo
        while j < nb and b[j] < t + half_range:
            hist[np.uint64(b[j] - t + half_range) // w] += 1
            j += 1
    return hist


# --- harness ------------------------------------------------------------------------------------

def make_streams(n: int, rate_hz: float = 1e6, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    duration = int(n * 1e12 / rate_hz)  # ps
    a = np.sort(rng.integers(0, duration, n))
    twins = a[rng.random(n) < 0.5]
    twins = twins + 3_000 + np.rint(rng.normal(0, 40, twins.size)).astype(np.int64)
    b = np.sort(np.concatenate((twins, rng.integers(0, duration, n - twins.size))))
    return a, b


def median_seconds(run: Callable[[], Any], reps: int) -> tuple[float, Any]:
    result = run()  # warm-up: compiles (or loads the cache) and touches the memory
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=10_000_000, help="tags per channel")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--block", type=int, default=1 << 20, help="tags per streamed block")
    parser.add_argument("--rate", type=float, default=1e6, help="tags per second per channel")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})

    a, b = make_streams(args.tags, args.rate)
    stream = TagBlock.from_channels({1: a, 2: b})
    total = len(stream)
    cuts = range(0, total, args.block)
    blocks = [TagBlock(stream.timestamps[i:i + args.block], stream.channels[i:i + args.block],
                       index=k) for k, i in enumerate(cuts)]

    def streamed_coincidences() -> int:
        counter = CoincidenceCounter(1, 2, WINDOW_PS)
        for block in blocks:
            counter.feed(block)
        return counter.count

    def streamed_histogram() -> np.ndarray:
        correlator = Correlator(1, 2, range_ps=RANGE_PS, bin_width_ps=BIN_PS)
        for block in blocks:
            correlator.feed(block)
        return correlator.counts

    rows: dict[str, dict[str, tuple[float, Any]]] = {"coincidences": {}, "g2": {}}
    slow_reps = max(1, min(args.reps, 3))  # numpy g2 takes about a second a run
    rows["coincidences"]["ours, streamed"] = median_seconds(streamed_coincidences, args.reps)
    rows["coincidences"]["ours, one block"] = median_seconds(
        lambda: count_coincidences(stream, 1, 2, WINDOW_PS), args.reps)
    rows["coincidences"]["numpy searchsorted"] = median_seconds(
        lambda: numpy_coincidences(a, b, WINDOW_PS), slow_reps)
    rows["coincidences"]["bare numba merge"] = median_seconds(
        lambda: bare_coincidences(a, b, WINDOW_PS), args.reps)
    rows["g2"]["ours, streamed"] = median_seconds(streamed_histogram, args.reps)
    rows["g2"]["ours, one block"] = median_seconds(
        lambda: correlate(stream, 1, 2, range_ps=RANGE_PS, bin_width_ps=BIN_PS).counts,
        args.reps)
    rows["g2"]["numpy searchsorted"] = median_seconds(
        lambda: numpy_histogram(a, b, RANGE_PS, BIN_PS), slow_reps)
    rows["g2"]["bare numba merge"] = median_seconds(
        lambda: bare_histogram(a, b, RANGE_PS, BIN_PS, N_BINS), args.reps)

    # Every method must agree, or the figures mean nothing.
    for what, results in rows.items():
        values = [r for _, r in results.values()]
        if not all(np.array_equal(values[0], v) for v in values[1:]):
            raise SystemExit(f"{what}: the methods disagree: {values}")

    def rate(seconds: float) -> float:
        return total / seconds / 1e6

    for what in rows:
        print(f"{rate(rows[what]['ours, streamed'][0]):.0f} Mtags/s")

    pairs = int(np.sum(rows["g2"]["bare numba merge"][1]))
    print(f"\n{args.tags:.0e} tags per channel at {args.rate:.0e} Hz ({total} in all), "
          f"streamed in blocks of "
          f"{args.block}; coincidence window +-{WINDOW_PS} ps "
          f"({rows['coincidences']['bare numba merge'][1]} coincidences), g2 +-{RANGE_PS} ps "
          f"in {BIN_PS} ps bins ({pairs} pairs); medians of {args.reps} runs "
          f"({slow_reps} for numpy), one core")
    print(f"{'task':<13} {'method':<20} {'ms':>8} {'Mtags/s':>8} {'time / bare':>12}")
    for what, results in rows.items():
        bare = results["bare numba merge"][0]
        for method, (seconds, _) in results.items():
            print(f"{what:<13} {method:<20} {seconds * 1e3:8.1f} {rate(seconds):8.0f} "
                  f"{seconds / bare:11.2f}x")
    for what, target in TARGETS.items():
        seconds = rows[what]["ours, streamed"][0]
        ratio = seconds / rows[what]["bare numba merge"][0]
        verdict = "met" if rate(seconds) >= target and ratio <= MAX_RATIO else "NOT met"
        print(f"target {what}: >= {target:.0f} Mtags/s and within {MAX_RATIO}x of bare: "
              f"{verdict} ({rate(seconds):.0f} Mtags/s, {ratio:.2f}x)")


if __name__ == "__main__":
    main()
