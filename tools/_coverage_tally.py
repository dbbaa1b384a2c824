"""The coverage study's counting and printing (`tools/coverage_study.py`): the binomial's
accepted range, a quantity's and an upper limit's coverage over many benches, and the tables
and report that show them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

if TYPE_CHECKING:
    from coverage_study import BenchResult

ONE_SIGMA = math.erf(1 / math.sqrt(2))  # 0.6827
TWO_SIGMA = math.erf(2 / math.sqrt(2))  # 0.9545
TAIL = 0.005
"""Each side: the accepted count is the central 99 % of Binomial(n, p)."""
MIN_SAMPLES = 20
"""Fewer pulls than this say too little about coverage to be checked (the binomial's 99 %
range at n = 20 already spans 9..18 of 20 for 68.3 %)."""


def accepted(n: int, p: float, tail: float = TAIL) -> tuple[int, int]:
    """The central (1 - 2 tail) range of Binomial(n, p): counts outside it reject p."""
    return int(stats.binom.ppf(tail, n, p)), int(stats.binom.isf(tail, n, p))


def accepted_each(p: Sequence[float], tail: float = TAIL) -> tuple[int, int]:
    """The central (1 - 2 tail) range of a count of independent trials with their own
    probabilities `p` (the Poisson binomial, exactly by convolution): `accepted` where the
    benches' errors are not all Gaussian."""
    dist = np.ones(1)
    for q in p:
        dist = np.convolve(dist, [1 - q, q])
    cdf = np.cumsum(dist)
    return int(np.searchsorted(cdf, tail)), int(np.searchsorted(cdf, 1 - tail))


def within_probability(stderr: float, rectangular: float, k: float) -> float:
    """P(|pull| < k) for an error whose `stderr` has a rectangular part of standard
    uncertainty `rectangular` (GUM 4.3.7: uniform on +-sqrt(3) of it) and a Gaussian rest:
    the Gaussian's probability averaged over the rectangle."""
    if not rectangular > 0:
        return math.erf(k / math.sqrt(2))
    half = math.sqrt(3) * rectangular / stderr
    sigma = math.sqrt(max(1 - (rectangular / stderr) ** 2, 0.0))
    x = np.linspace(-half, half, 401)
    if sigma == 0:
        return float(np.mean(np.abs(x) < k))
    inside = stats.norm.cdf((k - x) / sigma) - stats.norm.cdf((-k - x) / sigma)
    return float(np.mean(inside))


@dataclass
class Coverage:
    """One quantity over every bench that reported it with a finite error."""

    name: str
    n: int
    within1: int
    within2: int
    bounds1: tuple[int, int]
    bounds2: tuple[int, int]
    checked: bool
    """n >= the study's minimum sample count: the bounds are a test."""
    ok1: bool
    ok2: bool
    median_rel_error: float
    median_rel_stderr: float
    """Median of stderr / |truth| (how precise the values claim to be)."""
    median_abs_pull: float
    max_abs_pull: float
    not_finite: int = 0
    """Reported values without a usable error (not counted in n)."""
    expected1: float = ONE_SIGMA
    expected2: float = TWO_SIGMA
    """The fractions within 1 and 2 sigma that the stated errors imply: 68.3 % and 95.4 %
    for Gaussian errors, other for an error with a rectangular part (`within_probability`)."""

    @property
    def frac1(self) -> float:
        return self.within1 / self.n if self.n else math.nan

    @property
    def frac2(self) -> float:
        return self.within2 / self.n if self.n else math.nan

    @property
    def ok(self) -> bool:
        return not self.checked or (self.ok1 and self.ok2)


@dataclass
class LimitCoverage:
    """One upper limit over every bench that reported it: the truth must lie below it in at
    least its confidence of them (over-coverage is a conservative limit, not an error)."""

    name: str
    n: int
    covered: int
    confidence: float
    lowest: int
    """The lowest count of covered benches inside the binomial's range (its `tail`
    quantile); fewer rejects the stated confidence."""
    checked: bool
    median_ratio: float
    """Median of limit / truth (how conservative)."""

    @property
    def ok(self) -> bool:
        return not self.checked or self.covered >= self.lowest


def fmt(x: float, digits: int = 4) -> str:
    return "-" if isinstance(x, float) and math.isnan(x) else f"{x:.{digits}g}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def bench_table(bench: BenchResult) -> str:
    """Table (1): one bench's quantities against its world's truth."""
    rows = [[r.name, r.unit or "-", fmt(r.truth, 10), fmt(r.fitted, 10), fmt(r.stat, 2),
             fmt(r.sys, 2), fmt(r.stderr, 2), fmt(r.pull, 3), fmt(r.rel_error, 2),
             fmt(r.drift, 2) if r.drift else ""] for r in bench.rows]
    return markdown_table(["quantity", "unit", "truth", "fitted", "stat", "sys", "combined", "pull",
                          "rel. error", "truth drifted by"], rows)


def coverage_table(cover: Sequence[Coverage]) -> str:
    """Table (2): coverage per quantity over every bench."""
    def check(ok: bool, checked: bool) -> str:
        return ("ok" if ok else "**OUT**") if checked else "(n small)"

    def implied(fraction: float, gaussian: float) -> str:
        return "" if abs(fraction - gaussian) < 5e-4 else f" (for {fraction:.1%})"

    rows = [[c.name, str(c.n), f"{c.within1} ({c.frac1:.1%})",
             f"{c.bounds1[0]}-{c.bounds1[1]}{implied(c.expected1, ONE_SIGMA)}",
             check(c.ok1, c.checked), f"{c.within2} ({c.frac2:.1%})",
             f"{c.bounds2[0]}-{c.bounds2[1]}{implied(c.expected2, TWO_SIGMA)}",
             check(c.ok2, c.checked),
             fmt(c.median_rel_error, 2), fmt(c.median_rel_stderr, 2), fmt(c.median_abs_pull, 3),
             fmt(c.max_abs_pull, 3)] for c in cover]
    return markdown_table(
        ["quantity", "n", "within 1 sigma", "99 % range", "68.3 %", "within 2 sigma",
         "99 % range", "95.4 %", "median rel. error", "median rel. stated error",
         "median abs pull", "max abs pull"], rows)


def limit_table(cover: Sequence[LimitCoverage]) -> str:
    """Table (3): each upper limit's coverage over every bench."""
    rows = [[c.name, str(c.n), f"{c.covered} ({c.covered / c.n:.1%})", f"{c.confidence:.0%}",
             f">= {c.lowest}", ("ok" if c.ok else "**OUT**") if c.checked else "(n small)",
             fmt(c.median_ratio, 3)] for c in cover]
    return markdown_table(["limit", "n", "truth below the limit", "confidence", "99 % range",
                          "check", "median limit / truth"], rows)


def report_text(result: dict[str, Any], command: str) -> str:
    example = result["example"]
    benches = result["benches"]
    errors = [b for b in benches if b["error"]]
    minutes = sum(b["seconds"] for b in benches) / 60
    parts = [f"# Coverage study\n\n`{command}`\n\n{len(benches)} benches "
             f"({minutes:.1f} bench-minutes), presets "
             f"{', '.join(sorted({b['preset'] for b in benches}))}; "
             f"{'ideal' if benches and benches[0]['ideal'] else 'realistic'} lab."]
    if example is not None:
        parts.append(f"## (1) One bench: {example['preset']}, seed {example['seed']}\n\n"
                     f"Verdict: {example['verdict'][:300]}\n\n{example['markdown']}")
    parts.append("## (2) Coverage over every bench\n\nCounts within 1 and 2 combined sigma "
                 "against the central 99 % of Binomial(n, 0.683) / (n, 0.954); checked where "
                 "n >= the minimum sample count. A quantity whose stated error has a "
                 "rectangular part (a bounded error, GUM 4.3.7) is held to the fractions that "
                 "error implies, bench by bench (shown as 'for x %')."
                 f"\n\n{result['coverage']['markdown']}")
    if result["limits"]["rows"]:
        parts.append("## (3) Upper limits over every bench\n\nA quantity a bench did not "
                     "resolve is reported as an upper limit; the truth must lie below it in "
                     "at least the limit's confidence of the benches (the count's lowest "
                     "value in the central 99 % of Binomial(n, confidence)).\n\n"
                     f"{result['limits']['markdown']}")
    parts.append(f"## Step verdicts\n\n{result['verdicts']['markdown']}")
    if errors:
        parts.append("## Benches that raised\n\n" + "\n".join(
            f"- {b['preset']} seed {b['seed']}: {b['error']}" for b in errors))
    if not result["checked"]:
        parts.append("No quantity has enough pulls to be checked: not a pass.")
    parts.append(f"Every checked quantity inside its bounds: {result['ok']}")
    return "\n\n".join(parts) + "\n"
