"""Detector clicks of a heralded two-node link at the station, per attempt, with ground truth.

`LinkClicks` draws every attempt of a `LinkPhysics` world: both nodes' emissions through the
outcome tree of `network.link_model` (`node_outcomes`: bright state, double excitation,
photons reaching the station), the beam splitter (fair ports; a photon from each node in the
same round bunches with probability (1 + V) / 2), each SNSPD's efficiency, the transducers'
noise photons, and dark counts uniform in time. What comes out is what the station's cables
carry, in recording time (ps from the start of the recording, before the tagger's delays):

* one sync edge per round at the round's emission time (`sync_times`);
* each detector's clicks (`detector_clicks`): photons arrive at emission + the TRUE light time
  of their node's fibre + the photon's exponential shape (time constant 1 / (2 pi B) of its
  transducer's conversion bandwidth B) + a Gaussian spread; a detector clicks once per round
  at its earliest detected photon (SNSPDs do not resolve photon number); transducer noise
  photons come as a steady flux uniform in time (one click with the round's photons when they
  fall in one of its windows), and dark counts on top;
* the ground truth (`truth`, `TWIN_TRUTH_DTYPE`): per attempt with a click inside a true
  arrival window (centre = emission + light time, width ``detection_window_ps``), the Bell
  state a correct herald engine announces (255: no herald), its fidelity and whether it is
  genuine, from the world's knowledge of who emitted
  (docs/link.md#3-imperfections-and-the-outcome-tree). A genuine herald's fidelity carries
  the single-click interferometer's phase error of that attempt (drawn from the drift and
  stabilisation model) and both memories' dephasing until both nodes know of the herald.

Seeding: attempts come in blocks of `BLOCK_ATTEMPTS`, each drawn with the dark counts of its
time span from its own generator seeded by (seed, stream, block); only attempts in which a
photon reaches the station are drawn in detail (where, then how many), and the draws the
truth needs for the others (bright state, double excitation, Barrett-Kok round) are a hash
of (stream, attempt). So clicks and truth do not depend on how callers split the time axis
(chunk length) or the attempts. Everything is numpy per block: no Python loop per attempt.

A click is judged in every window it falls in, as at a real station: if the arms' light
times differ by a whole number of rounds (to within a window), one node's photons also fall
in the other arm's window of a later round, which the analytic model does not count.

Not modelled (rates below 1e-7 per attempt at 10 Hz dark counts and ns windows): the SNSPD
dead time between a dark count and a photon on the same detector in one window (both click
here), and the tagger's dead time in the truth (the truth counts clicks before the tagger).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy.special import ndtri

from qnetlab.network.link_model import (
    node_outcomes,
    require,
)

from ._link_draws import BoolArray, IntArray
from ._link_draws import Tree as _Tree
from ._link_draws import contains as _contains
from ._link_draws import event_positions as _event_positions
from ._link_draws import unique as _unique
from ._link_draws import unique_inverse as _unique_inverse
from .gating import uniform_in_windows
from .link_physics import DetectorState, LinkPhysics

TWIN_TRUTH_DTYPE = np.dtype(
    [
        ("attempt_id", "<u8"),
        ("sync_ps", "<i8"),
        ("bell_state", "u1"),
        ("fidelity", "<f4"),
        ("genuine", "?"),
    ]
)
"""Ground truth per attempt with a click in a true window. ``sync_ps``: recording time (ps)
of the attempt's first sync tag; ``bell_state`` 0 = psi+, 1 = psi-, 255 = no herald;
``fidelity`` of the heralded state with that Bell state (nan without a herald)."""

NO_HERALD = 255

BLOCK_ATTEMPTS = 16384
"""Attempts per independently seeded block (16 ms at 1 MHz, ~1.3 ms of CPU to draw): large
enough that numpy's per-call overhead is a small part of the cost (4096: 1.6x the CPU per
attempt), small enough that a recording's first block comes quickly."""

_HASH_SALT = 0x6C696E6B
"""Keys the per-attempt hash apart from the blocks' generators."""
_OUTCOME, _SLOT = 0, 1
"""Purposes of the per-attempt uniforms."""
_PHASE_SALT = 0x7068617365
"""Keys the per-attempt phase errors apart from the outcome draws (a hash of its own, so
adding them changed no other draw)."""
_TAIL_DURATIONS = 40.0
"""An exponential photon beyond 40 time constants has probability ~4e-18: the blocks' margin."""

_SPREAD_MARGIN_SIGMAS = 12.0
"""A Gaussian arrival beyond 12 sigma has probability ~4e-33: the blocks' time margin."""


GateWindows = tuple[tuple[int, int] | None, tuple[int, int] | None]
"""Per detector: a gate's window (a, b) in ps after each round's emission, or None."""


@dataclass
class _Clicks:
    """One detector's clicks: sorted times (ps), round of origin (-1: dark), signal photon."""

    times: IntArray
    rounds: IntArray
    signal: BoolArray

    @staticmethod
    def empty() -> _Clicks:
        return _Clicks(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, bool))

    def between(self, lo: int, hi: int) -> _Clicks:
        i, j = np.searchsorted(self.times, (lo, hi), side="left")
        return _Clicks(self.times[i:j], self.rounds[i:j], self.signal[i:j])


@dataclass
class _AttemptBlock:
    clicks: tuple[_Clicks, _Clicks]
    """Photon clicks of the block's attempts (they may fall in later blocks' time)."""
    dark: tuple[IntArray, IntArray]
    """Dark counts in the block's time span, per detector, sorted."""
    arrived: tuple[IntArray, IntArray]
    """Per node: the attempts (ids, sorted) in which some of its photons reached the station."""
    genuine_fidelity: float


@dataclass
class LinkClicks:
    """The clicks and truth of one stream (a recording) of a `LinkPhysics` world.

    `stream` keys the generators (e.g. (0, recording number)); `detectors` gives the SNSPDs'
    state when a block is drawn; `stop_ps`: no round starts at or after it (None: endless);
    `block_attempts`: attempts per seeded block (results depend on it: keep it per stream;
    long offline runs go faster with larger blocks); `window_centres_ps`: where the truth
    judges each detector's (outer) and arm's (inner) window, ps after the round's emission
    (None: at the arms' true light times). The station's engine looks where its arm-delay
    calibration put them, which a long photon's skewed peak moves by up to a few ns: judged
    there, the truth heralds what the station heralds.
    """

    physics: LinkPhysics
    stream: tuple[int, ...]
    detectors: Callable[[], DetectorState]
    stop_ps: int | None = None
    block_attempts: int = BLOCK_ATTEMPTS
    window_centres_ps: tuple[tuple[int, int], tuple[int, int]] | None = None
    gate_ps: GateWindows | None = None
    """Per detector, the windows ``[a, b)`` ps after each round's emission outside which the
    station's tagger drops its clicks (None: that detector is not gated); dark counts and the
    noise flux are then drawn only there (`physics.gating.uniform_in_windows`): the same
    clicks inside, at a fraction (b - a) / round period of the cost. Signal photons and
    per-mode noise are drawn as ever (a gate that misses them drops them at the tagger)."""
    _attempt_blocks: dict[int, _AttemptBlock] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p = self.physics
        require(self.block_attempts > 0, "LinkClicks.block_attempts must be > 0")
        self._block_ps = self.block_attempts * p.attempt_period_ps
        margin = math.ceil(_SPREAD_MARGIN_SIGMAS * p.arrival_time_spread_ps) + 1
        light = p.light_ps
        tail = math.ceil(_TAIL_DURATIONS * max(p.photon_duration_ps))
        # noise photons (a flux) are drawn per block over [j T, (j + 1) T) + light - P/2
        self._noise_rate = [n.noise_rate_at_station for n in p.nodes]
        noise_reach = (p.round_period_ps // 2 + 1
                       if any(r is not None for r in self._noise_rate) else 0)
        # a click of attempt block j lies in [j T + early, (j + 1) T + late)
        self._early = min(light) - margin - noise_reach
        self._late = max(light) + margin + tail + noise_reach
        width = p.detection_window_ps
        self._half = (width // 2, width - width // 2)  # [c - lo, c + hi): `width` ps
        if self.gate_ps is not None:
            for d, window in enumerate(self.gate_ps):
                require(window is None or 0 < window[1] - window[0] <= p.round_period_ps,
                        f"LinkClicks.gate_ps[{d}] = {window} must open before it closes, "
                        f"within a round ({p.round_period_ps} ps)")
        centres = self.window_centres_ps or (light, light)
        self._centres = ((int(centres[0][0]), int(centres[0][1])),
                         (int(centres[1][0]), int(centres[1][1])))

        self._trees = [_Tree(node_outcomes(self._emit, p.double_excitation_probability,
                                           n.station_transmission)) for n in p.nodes]
        self._noise = [n.noise_photons_at_station for n in p.nodes]
        key = np.random.SeedSequence([p.seed, *self.stream, _HASH_SALT]).generate_state(
            1, np.uint64)[0]
        self._key = np.uint64(key)
        phase_key = np.random.SeedSequence([p.seed, *self.stream, _PHASE_SALT]).generate_state(
            1, np.uint64)[0]
        self._phase_key = np.uint64(phase_key)
        model = p.model(((1.0, 0.0), (1.0, 0.0)))
        self._memory_decay = model.memory_decay()
        """Both memories' dephasing until both nodes know of a herald (deterministic)."""

    @property
    def _emit(self) -> float:
        # Barrett-Kok: each node emits exactly once per attempt, in round 1 or round 2
        p = self.physics
        return p.bright_state_population if p.scheme == "single_click" else 1.0

    # -- what the cables carry ----------------------------------------------------------------
    @property
    def rounds(self) -> int | None:
        """Rounds in the stream (None: endless)."""
        if self.stop_ps is None:
            return None
        return -(-self.stop_ps // self.physics.round_period_ps)

    def sync_times(self, lo: int, hi: int) -> IntArray:
        """Sync edges (round emission times, ps) in [lo, hi)."""
        period = self.physics.round_period_ps
        first = max(0, -(-lo // period))
        stop = -(-hi // period)
        if self.rounds is not None:
            stop = min(stop, self.rounds)
        return np.arange(first, max(first, stop), dtype=np.int64) * period

    def detector_clicks(self, detector: int, lo: int, hi: int) -> IntArray:
        """Detector `detector`'s clicks (ps, sorted) in [lo, hi): photons and dark counts."""
        parts = []
        for block in self._photon_blocks(lo, hi):
            times = block.clicks[detector].times
            i, j = np.searchsorted(times, (lo, hi), side="left")
            parts.append(times[i:j])
        for k in self._dark_indices(lo, hi):
            times = self._attempt_block(k).dark[detector]
            i, j = np.searchsorted(times, (lo, hi), side="left")
            parts.append(times[i:j])
        if len(parts) == 1:
            return parts[0]
        return np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)

    def _photon_blocks(self, lo: int, hi: int) -> list[_AttemptBlock]:
        """The attempt blocks whose clicks can lie in [lo, hi)."""
        first = max(0, (lo - self._late) // self._block_ps)
        last = (hi - self._early) // self._block_ps
        if self.rounds is not None:
            per_block = self.block_attempts * self.physics.rounds_per_attempt
            last = min(last, (self.rounds - 1) // per_block)
        return [self._attempt_block(j) for j in range(first, last + 1)]

    def _dark_indices(self, lo: int, hi: int) -> range:
        stop = hi if self.stop_ps is None else min(hi, self.stop_ps)
        return range(max(0, lo // self._block_ps), -(-stop // self._block_ps))

    def _clicks(self, detector: int, lo: int, hi: int) -> _Clicks:
        """Like `detector_clicks`, with each click's round of origin and signal flag."""
        parts = [block.clicks[detector].between(lo, hi) for block in self._photon_blocks(lo, hi)]
        for k in self._dark_indices(lo, hi):
            times = self._attempt_block(k).dark[detector]
            i, j = np.searchsorted(times, (lo, hi), side="left")
            parts.append(_Clicks(times[i:j], np.full(j - i, -1, np.int64), np.zeros(j - i, bool)))
        if not parts:
            return _Clicks.empty()
        times = np.concatenate([q.times for q in parts])
        order = np.argsort(times, kind="stable")
        return _Clicks(times[order], np.concatenate([q.rounds for q in parts])[order],
                       np.concatenate([q.signal for q in parts])[order])

    def forget_before(self, time_ps: int) -> None:
        """Drop cached blocks that cannot contribute clicks at or after `time_ps`."""
        horizon = time_ps - self._block_ps  # one block of slack
        for j in [j for j in self._attempt_blocks
                  if (j + 1) * self._block_ps + self._late <= horizon]:
            del self._attempt_blocks[j]

    # -- ground truth ---------------------------------------------------------------------------
    def attempts_final_by(self, time_ps: int) -> int:
        """Attempts whose every true window ends at or before `time_ps` (all its clicks are
        known once the stream has reached that time)."""
        p = self.physics
        latest = max(c for row in self._centres for c in row)
        last_round = (time_ps - latest - self._half[1]) // p.round_period_ps
        return max(0, (last_round + 1) // p.rounds_per_attempt)

    def truth(self, first: int, stop: int) -> np.ndarray:
        """Truth rows (`TWIN_TRUTH_DTYPE`) of attempts [first, stop) that had a click in a
        true window, in attempt order; ``sync_ps`` is the attempt's first round's emission
        time (the caller adds the tagger's delay)."""
        p = self.physics
        rpa, period = p.rounds_per_attempt, p.round_period_ps
        if self.rounds is not None:
            stop = min(stop, self.rounds // rpa)
        if stop <= first:
            return np.empty(0, TWIN_TRUTH_DTYPE)
        r0, r1 = first * rpa, stop * rpa
        centres = self._centres
        lo = r0 * period + min(c for row in centres for c in row) - self._half[0]
        hi = (r1 - 1) * period + max(c for row in centres for c in row) + self._half[1]
        hits_round, hits_detector, hits_own = [], [], []
        for d in (0, 1):
            clicks = self._clicks(d, lo, hi)
            hit_rounds = []
            hit_clicks = []
            for arm in (0, 1):
                # the latest round whose window on this arm opens at or before the click
                r = (clicks.times - centres[d][arm] + self._half[0]) // period
                inside = (clicks.times < r * period + centres[d][arm] + self._half[1])
                inside &= (r >= r0) & (r < r1)
                hit_rounds.append(r[inside])
                hit_clicks.append(np.flatnonzero(inside))
            rounds = np.concatenate(hit_rounds)
            which = np.concatenate(hit_clicks)
            # a click in both arms' windows of the same round counts once
            key = _unique((rounds - r0) * (clicks.times.size + 1) + which)
            rounds, which = key // (clicks.times.size + 1) + r0, key % (clicks.times.size + 1)
            hits_round.append(rounds)
            hits_detector.append(np.full(rounds.size, d, np.int64))
            # a signal photon of this very round (not of another, not background)
            hits_own.append(clicks.signal[which] & (clicks.rounds[which] == rounds))
        rounds = np.concatenate(hits_round)
        attempts, at = _unique_inverse(rounds // rpa)
        cell = at * rpa + rounds % rpa  # (attempt with a hit, round of the attempt)
        cells = attempts.size * rpa
        total = np.bincount(cell, minlength=cells).reshape(-1, rpa)
        on_1 = np.bincount(cell, np.concatenate(hits_detector), cells).reshape(-1, rpa) == 1
        own = np.bincount(cell, np.concatenate(hits_own), cells).reshape(-1, rpa) > 0
        # one click in the round('s windows), each round of the attempt; which detector
        h = (total == 1).all(axis=1)
        bell = on_1[:, 0] if rpa == 1 else on_1[:, 0] != on_1[:, 1]
        detected = own.all(axis=1)
        shared, clean, f_genuine = self._attempt_truth(attempts)
        genuine = h & clean & detected
        # the pair's coherence: this attempt's phase error (single-click) and the memories'
        # dephasing over the heralding round trip
        f_genuine = 0.5 + (f_genuine - 0.5) * self._memory_decay * self._phase_cosine(attempts)
        out = np.empty(attempts.size, TWIN_TRUTH_DTYPE)
        out["attempt_id"] = attempts
        out["sync_ps"] = attempts * rpa * period
        out["bell_state"] = np.where(h, bell, NO_HERALD)
        out["fidelity"] = np.where(h, np.where(genuine, f_genuine, np.where(shared, 0.5, 0.0)),
                                   np.nan)
        out["genuine"] = genuine
        return out

    def _attempt_truth(
        self, attempts: IntArray
    ) -> tuple[BoolArray, BoolArray, npt.NDArray[np.float64]]:
        """(shared, clean, genuine fidelity) of `attempts` (sorted ids): exactly one
        excitation shared between the nodes; that and no double excitation."""
        arrived = [np.zeros(attempts.size, bool), np.zeros(attempts.size, bool)]
        f_genuine = np.zeros(attempts.size, np.float64)
        blocks = attempts // self.block_attempts
        for j in _unique(blocks).tolist():
            sel = blocks == j
            block = self._attempt_block(j)
            for node in (0, 1):
                arrived[node][sel] = _contains(block.arrived[node], attempts[sel])
            f_genuine[sel] = block.genuine_fidelity
        # the nodes' latent draws, the same per attempt whoever asks (see `_uniform`)
        bright, double = [], []
        for node in (0, 1):
            b, d, _ = self._trees[node].outcome(self._uniform(attempts, node, _OUTCOME),
                                                arrived[node])
            bright.append(b)
            double.append(d)
        if self.physics.rounds_per_attempt == 1:
            shared = bright[0] != bright[1]
        else:
            shared = self._slot(attempts, 0) != self._slot(attempts, 1)
        clean = shared & ~double[0] & ~double[1]
        return shared, clean, f_genuine

    def _phase_cosine(self, attempts: IntArray) -> npt.NDArray[np.float64]:
        """cos of the single-click interferometer's phase error at each attempt (1 for
        two-click, insensitive to the optical phase).

        The phase is reset to within `phase_residual` (rms) every stabilisation period and
        diffuses at `phase_drift_rate` in between, so an attempt a time t into its cycle sees
        a Gaussian error of variance s_r^2 + D t; without stabilisation (and D > 0) the phase
        has wandered over the whole circle: uniform. Each attempt's error is drawn from that
        distribution on its own (a hash, like the outcome draws); the correlation between
        neighbouring attempts is not modelled (the mean fidelity does not depend on it)."""
        p = self.physics
        if p.rounds_per_attempt == 2 or (p.phase_drift_rate == 0.0 and p.phase_residual == 0.0):
            return np.ones(attempts.size)
        u = self._uniform(attempts, 0, _OUTCOME, key=self._phase_key)
        if p.phase_drift_rate > 0.0 and p.phase_stabilisation_period is None:
            return np.cos(2.0 * np.pi * u)
        variance = np.full(attempts.size, p.phase_residual ** 2)
        if p.phase_drift_rate > 0.0:
            assert p.phase_stabilisation_period is not None
            start_s = attempts.astype(np.float64) * (p.attempt_period_ps * 1e-12)
            variance += p.phase_drift_rate * np.mod(start_s, p.phase_stabilisation_period)
        return np.cos(np.sqrt(variance) * ndtri(u + 2.0**-54))

    def _uniform(self, attempts: IntArray, node: int, purpose: int,
                 key: np.uint64 | None = None) -> npt.NDArray[np.float64]:
        """A uniform [0, 1) per (attempt, node, purpose), a hash of them and the stream's key
        (splitmix64): the same value whichever block, chunk or truth range asks for it."""
        x = attempts.astype(np.uint64) * np.uint64(4) + np.uint64(2 * node + purpose)
        z = x * np.uint64(0x9E3779B97F4A7C15) + (self._key if key is None else key)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
        return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53

    def _slot(self, attempts: IntArray, node: int) -> IntArray:
        """Barrett-Kok: the round (0 or 1) of the attempt in which `node` emits."""
        return (self._uniform(attempts, node, _SLOT) < 0.5).astype(np.int64)

    # -- the blocks -----------------------------------------------------------------------------
    def _rng(self, block: int) -> np.random.Generator:
        return np.random.default_rng([self.physics.seed, *self.stream, block])

    def _attempt_block(self, j: int) -> _AttemptBlock:
        cached = self._attempt_blocks.get(j)
        if cached is None:
            cached = self._draw_block(j)
            if self.rounds is not None:  # no attempt starts after the stream's end
                cached.clicks = tuple(  # type: ignore[assignment]
                    _Clicks(c.times[keep], c.rounds[keep], c.signal[keep])
                    for c in cached.clicks for keep in [c.rounds < self.rounds])
            self._attempt_blocks[j] = cached
        return cached

    def _draw_block(self, j: int) -> _AttemptBlock:
        p = self.physics
        rng = self._rng(j)
        state = self.detectors()
        # dark counts (and stray light) in this block's time span, uniform in time
        t0 = j * self._block_ps
        dark = []
        for d in (0, 1):
            gate = self.gate_ps[d] if self.gate_ps is not None else None
            if gate is not None:  # only where the tagger keeps them
                dark.append(uniform_in_windows(rng, state[d][1], t0, t0 + self._block_ps,
                                               p.round_period_ps, *gate))
                continue
            count = int(rng.poisson(max(state[d][1], 0.0) * self._block_ps * 1e-12))
            # Given their number, Poisson arrivals are uniform order statistics.
            dark.append(np.sort(rng.integers(t0, t0 + self._block_ps, count, dtype=np.int64)))
        efficiency = np.array([max(0.0, min(1.0, state[d][0])) for d in (0, 1)])
        n = self.block_attempts
        rpa, period = p.rounds_per_attempt, p.round_period_ps
        light = np.array(p.light_ps, np.int64)
        spread = p.arrival_time_spread_ps
        duration = np.array(p.photon_duration_ps)
        shaped = bool(duration.any())

        def shape(nodes: IntArray) -> IntArray:
            """Each photon's delay from its start (exponential, its node's time constant)."""
            if not shaped:
                return np.zeros(nodes.shape, np.int64)
            return np.rint(rng.exponential(1.0, nodes.shape) * duration[nodes]).astype(np.int64)
        # Only attempts in which a node's photon reaches the station are drawn in detail:
        # where (sparse), then how many photons given that some did (the latent bright and
        # double-excitation draws of the others are made per attempt by the truth).
        arrived = []
        for tree in self._trees:
            arrived.append(j * n + _event_positions(rng, n, tree.arrival_probability))
        candidates = _unique(np.concatenate(arrived))
        photons = []
        for node, tree in enumerate(self._trees):
            counts = np.zeros(candidates.size, np.int64)
            at = np.searchsorted(candidates, arrived[node])
            u = self._uniform(arrived[node], node, _OUTCOME)
            counts[at] = tree.outcome(u, np.ones(u.size, bool))[2]
            photons.append(counts)
        ka, kb = photons
        if rpa == 1:
            slot_a = slot_b = np.zeros(candidates.size, np.int64)
        else:
            slot_a, slot_b = self._slot(candidates, 0), self._slot(candidates, 1)
        first_round = candidates * rpa
        # signal photons, per round slot of the attempt (a node emits in one slot)
        times: list[IntArray] = []
        dets: list[IntArray] = []
        rounds: list[IntArray] = []
        signal: list[BoolArray] = []
        for slot in range(rpa):
            ka_s = np.where(slot_a == slot, ka, 0)
            kb_s = np.where(slot_b == slot, kb, 0)
            # one photon in the round (by far the most): a fair port, the detector's efficiency
            one = np.flatnonzero(ka_s + kb_s == 1)
            from_b = (kb_s[one] == 1).astype(np.int64)
            port = rng.integers(0, 2, one.size)
            seen = rng.random(one.size) < efficiency[port]
            round_no = first_round[one][seen] + slot
            times.append(round_no * period + light[from_b[seen]] + shape(from_b[seen])
                         + np.rint(rng.standard_normal(round_no.size) * spread).astype(np.int64))
            dets.append(port[seen])
            rounds.append(round_no)
            signal.append(np.ones(round_no.size, bool))
            # several photons: each its port (a pair from both nodes bunches), first click wins
            rows = np.flatnonzero(ka_s + kb_s > 1)
            ka_s, kb_s = ka_s[rows], kb_s[rows]
            m = rows.size
            round_no = first_round[rows] + slot
            ports = (rng.integers(0, 16, m)[:, None] >> np.arange(4)) & 1
            pair = np.flatnonzero((ka_s == 1) & (kb_s == 1))
            bunched = rng.random(pair.size) < (1.0 + p.hom_visibility) / 2.0
            left = (rng.random(pair.size) < 0.5).astype(np.int64)
            ports[pair, 0] = left
            ports[pair, 1] = np.where(bunched, left, 1 - left)
            index = np.arange(4)
            valid = index < (ka_s + kb_s)[:, None]
            of_b = (index >= ka_s[:, None]).astype(np.int64)
            seen = valid & (rng.random((m, 4)) < efficiency[ports])
            arrive = (round_no[:, None] * period + light[of_b] + shape(of_b)
                      + np.rint(rng.standard_normal((m, 4)) * spread).astype(np.int64))
            for d in (0, 1):
                mine = seen & (ports == d)
                clicked = mine.any(axis=1)
                first = np.where(mine, arrive, np.iinfo(np.int64).max).min(axis=1)
                times.append(first[clicked])
                dets.append(np.full(int(clicked.sum()), d, np.int64))
                rounds.append(round_no[clicked])
                signal.append(np.ones(int(clicked.sum()), bool))
        n_rounds = n * rpa
        keys = [np.concatenate(rounds)]  # signal photons merge per round
        for arm, rate in enumerate(self._noise_rate):
            if rate is None or rate <= 0.0:
                continue
            # a steady flux: Poisson in the block's span (shifted by the arm's light time),
            # uniform in time; it merges with a round's photons only inside its windows
            span = n_rounds * period
            start = j * span + int(light[arm]) - period // 2
            if self.gate_ps is None:
                count = int(rng.poisson(rate * span * 1e-12))
                arrive = np.sort(rng.integers(start, start + span, count, dtype=np.int64))
                port = rng.integers(0, 2, count)
            else:
                arrive, port = self._gated_flux(rng, rate, start, start + span)
            seen = rng.random(arrive.size) < efficiency[port]
            arrive, port = arrive[seen], port[seen]
            round_no, inside = self._window_round(arrive, port)
            times.append(arrive)
            dets.append(port.astype(np.int64))
            rounds.append(round_no)
            signal.append(np.zeros(arrive.size, bool))
            # outside every window: a click of its own (a key no round has)
            # (keys need only be unique within the block: it is merged on its own)
            keys.append(np.where(inside, round_no, -1 - np.arange(arrive.size)
                                 - arm * (1 << 40)))
        # transducer noise photons per mode (no conversion bandwidth): Poisson per node and
        # round, in the signal's mode
        for arm, mean in enumerate(self._noise):
            if self._noise_rate[arm] is not None:
                continue
            count = int(rng.poisson(mean * n_rounds)) if mean > 0 else 0
            round_no = j * n_rounds + rng.integers(0, n_rounds, count)
            port = rng.integers(0, 2, count)
            seen = rng.random(count) < efficiency[port]
            arrive = (round_no * period + light[arm]
                      + np.rint(rng.standard_normal(count) * spread).astype(np.int64))
            times.append(arrive[seen])
            dets.append(port[seen].astype(np.int64))
            rounds.append(round_no[seen])
            signal.append(np.zeros(int(seen.sum()), bool))
            keys.append(round_no[seen])
        clicks = _merge_per_round(np.concatenate(times), np.concatenate(dets),
                                  np.concatenate(rounds), np.concatenate(signal),
                                  np.concatenate(keys))
        return _AttemptBlock(clicks, (dark[0], dark[1]), (arrived[0], arrived[1]),
                             _genuine_fidelity(p, state))


    def _gated_flux(self, rng: np.random.Generator, rate: float, lo: int, hi: int,
                    ) -> tuple[IntArray, IntArray]:
        """A photon flux of `rate` (Hz) over [lo, hi) split by the beam splitter's fair ports
        (each port a Poisson flux of half the rate), drawn on a gated port only inside its
        gate: (sorted arrival times, port)."""
        times, ports = [], []
        for d, gate in enumerate(self.gate_ps or (None, None)):
            if gate is None:
                count = int(rng.poisson(rate / 2.0 * (hi - lo) * 1e-12))
                t = rng.integers(lo, hi, count, dtype=np.int64)
            else:
                t = uniform_in_windows(rng, rate / 2.0, lo, hi, self.physics.round_period_ps,
                                       *gate)
            times.append(t)
            ports.append(np.full(t.size, d, np.int64))
        arrive, port = np.concatenate(times), np.concatenate(ports)
        order = np.argsort(arrive, kind="stable")
        return arrive[order], port[order]

    def _window_round(self, times: IntArray, detectors: IntArray) -> tuple[IntArray, BoolArray]:
        """(round, inside) per click time on its detector: the round of an arm window (the
        truth's) it falls in, or (the round whose first arm's window is nearest, False) when
        it falls in none."""
        p = self.physics
        period, lo, hi = p.round_period_ps, self._half[0], self._half[1]
        centres = np.array(self._centres, np.int64)
        found = np.zeros(times.size, bool)
        out = (times - centres[detectors, 0] + period // 2) // period
        for arm in (0, 1):
            c = centres[detectors, arm]
            r = (times - c + lo) // period
            hit = ~found & (times < r * period + c + hi)
            out = np.where(hit, r, out)
            found |= hit
        return out, found


@lru_cache(maxsize=64)
def _genuine_fidelity(physics: LinkPhysics, detectors: DetectorState) -> float:
    return float(physics.model(detectors)._genuine_fidelity)


def _merge_per_round(times: IntArray, dets: IntArray, rounds: IntArray,
                     signal: BoolArray, keys: IntArray) -> tuple[_Clicks, _Clicks]:
    """One click per (merge key, detector), at its earliest photon; signal if any photon
    was. A key is a round (its photons, and noise in its windows) or unique (a noise photon
    outside every window)."""
    out = []
    for d in (0, 1):
        sel = dets == d
        t, r, s, k = times[sel], rounds[sel], signal[sel], keys[sel]
        if t.size:
            order = np.lexsort((t, k))
            t, r, s, k = t[order], r[order], s[order], k[order]
            starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
            t, r, s = t[starts], r[starts], np.logical_or.reduceat(s, starts)
            order = np.argsort(t, kind="stable")
            t, r, s = t[order], r[order], s[order]
        out.append(_Clicks(t, r, s))
    return out[0], out[1]
