"""The detection chain's physics against its own formulas (docs/detectors.md, docs/timing.md).

Statistical checks use fixed seeds and a tolerance of 5 standard errors, each derived from
the statistic it bounds (stated at the check): a correct model fails one with probability
~6e-7, while the model errors these tests guard against are many standard errors wide.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import integrate

from qnetlab.sim_instruments.physics.awg import AwgModel, SequenceStep, Waveform
from qnetlab.sim_instruments.physics.fridge import FridgeModel
from qnetlab.sim_instruments.physics.photons import (
    DetectionPath,
    incident_photon_rates,
    noise_bandwidth,
)
from qnetlab.sim_instruments.physics.presets import get_preset
from qnetlab.sim_instruments.physics.snspd import SnspdChannel, SnspdModel
from qnetlab.sim_instruments.physics.time_tagger import (
    CHANNEL_DTYPE,
    TaggerChannel,
    TaggerStream,
    TimeTaggerModel,
    apply_dead_time,
)
from qnetlab.sim_instruments.physics.transducer import PLANCK, SPEED_OF_LIGHT
from qnetlab.sim_instruments.physics.world import LabWorld

Z = 5.0  # standard errors allowed in every statistical check

SNSPD = SnspdModel()
I_OP = SNSPD.operating_current


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# -- SNSPD: steady state ----------------------------------------------------------------------
def test_efficiency_is_a_sigmoid_with_a_plateau_then_latches():
    m = SNSPD
    for i in np.linspace(0.3, 0.999, 15) * m.switching_current:
        expected = m.max_efficiency / (1 + math.exp(-(i - m.midpoint_current) / m.sigmoid_width))
        assert m.detection_efficiency(i) == pytest.approx(expected, rel=1e-12)
        assert m.detection_efficiency(-i) == m.detection_efficiency(i)  # either polarity
    assert m.detection_efficiency(m.midpoint_current) == pytest.approx(m.max_efficiency / 2)
    # the plateau: within 1 % of eta_max from the operating point up to the switching current
    plateau = [m.detection_efficiency(i) for i in np.linspace(I_OP, 0.999 * m.switching_current, 9)]
    assert min(plateau) > 0.99 * m.max_efficiency
    assert np.all(np.diff(plateau) > 0)
    # the roll-off below it
    assert m.detection_efficiency(m.midpoint_current - 3 * m.sigmoid_width) < 0.05
    # latched at and above the switching current: nothing detected, nothing dark
    for i in (m.switching_current, 1.2 * m.switching_current):
        assert m.is_latched(i)
        assert m.detection_efficiency(i) == 0.0
        assert m.dark_count_rate(i) == 0.0
        assert m.clicks(np.arange(0, 10**9, 10**6), 0, 10**9, i, rng(0)).size == 0


def test_dark_counts_rise_exponentially_with_bias():
    m = SNSPD
    assert m.dark_count_rate(I_OP) == pytest.approx(10.0)  # docs/detectors.md: 10 Hz typical
    currents = np.linspace(0.6, 0.99, 12) * m.switching_current
    log_dcr = np.log([m.dark_count_rate(i) for i in currents])
    slope = np.polyfit(currents, log_dcr, 1)[0]
    assert slope == pytest.approx(1 / m.dark_count_current_scale, rel=1e-9)
    assert m.dark_count_rate(0.999 * m.switching_current) < 130.0  # top of the quoted range


# -- SNSPD: click generator ---------------------------------------------------------------------
def grid_run(seed: int = 3, n: int = 20_000, spacing_ps: int = 1_000_000):
    """Photons on a grid far beyond the recovery horizon, no dark counts."""
    photons = np.arange(n, dtype=np.int64) * spacing_ps + spacing_ps // 2
    clicks = SNSPD.clicks(photons, 0, n * spacing_ps, I_OP, rng(seed), dark_count_rate_hz=0.0)
    return photons, clicks, spacing_ps


def test_isolated_photons_click_with_the_detection_efficiency():
    photons, clicks, _ = grid_run()
    n, eta = photons.size, SNSPD.detection_efficiency(I_OP)
    # binomial: SE of the fraction = sqrt(eta (1 - eta) / n) ~ 2.2e-3
    se = math.sqrt(eta * (1 - eta) / n)
    assert clicks.size / n == pytest.approx(eta, abs=Z * se)


def test_timing_jitter_rms_is_recovered():
    _, clicks, spacing = grid_run()
    residual = (clicks - spacing // 2) - np.rint((clicks - spacing // 2) / spacing) * spacing
    sigma, n = SNSPD.jitter_rms_ps, clicks.size
    # Gaussian: SE of the sample std ~ sigma / sqrt(2 (n - 1)) ~ 0.16 ps; SE of the mean
    # sigma / sqrt(n). Rounding to whole ps adds 1/12 ps^2 of variance: 1e-3 ps, negligible.
    assert residual.std(ddof=1) == pytest.approx(sigma, abs=Z * sigma / math.sqrt(2 * (n - 1)))
    assert abs(residual.mean()) < Z * sigma / math.sqrt(n)


def test_no_two_clicks_closer_than_the_dead_time():
    r = rng(4)
    span = 20_000_000  # 20 us at 1 GHz of photons and 10 MHz of dark counts
    photons = np.sort(r.integers(0, span, 20_000))
    clicks = SNSPD.clicks(photons, 0, span, I_OP, r, dark_count_rate_hz=1e7)
    assert clicks.size > 100
    assert np.diff(clicks).min() >= SNSPD.dead_time_ps
    assert clicks.min() >= 0 and clicks.max() < span


def test_efficiency_recovers_gradually_after_the_dead_time():
    m = SNSPD
    eta = m.detection_efficiency(I_OP)
    n, spacing = 20_000, 1_000_000
    for delta in (m.dead_time_ps // 2, int(m.dead_time_ps + m.recovery_tau_ps),
                  int(m.dead_time_ps + 4 * m.recovery_tau_ps)):
        base = spacing // 2
        first = np.arange(n, dtype=np.int64) * spacing + base
        photons = np.sort(np.concatenate([first, first + delta]))
        clicks = m.clicks(photons, 0, n * spacing, I_OP, rng(5), dark_count_rate_hz=0.0)
        pair = (clicks - base + spacing // 4) // spacing  # robust to jitter either side
        is_first = clicks - base - pair * spacing < delta // 2
        first_clicked = set(pair[is_first].tolist())
        second = set(pair[~is_first].tolist())
        k = len(first_clicked)
        p = eta * float(m.recovery(delta))  # P(second clicks | first clicked)
        got = len(second & first_clicked) / k
        # binomial over the k pairs whose first photon clicked; jitter (42 ps on delta)
        # shifts p only at second order
        assert got == pytest.approx(p, abs=Z * math.sqrt(max(p * (1 - p), 1e-12) / k) + 1e-12)


def test_click_rate_formula_matches_its_integral_and_its_limits():
    m = SNSPD
    eta, dcr = m.detection_efficiency(I_OP), m.dark_count_rate(I_OP)
    t_d, tau = m.dead_time_ps * 1e-12, m.recovery_tau_ps * 1e-12
    for phi in (0.0, 1e3, 1e6, 1e7, 1e8, 1e10):
        r_in = eta * phi + dcr

        def survival(u: float, r_in: float = r_in) -> float:
            return math.exp(-r_in * u + r_in * tau * (1 - math.exp(-u / tau)))

        mean_wait = sum(
            integrate.quad(survival, a, b, limit=200)[0]
            # split where the survival changes scale: sqrt(2 tau / R), tau, 1 / R
            for a, b in ((0, tau), (tau, 20 * tau), (20 * tau, 20 * tau + 60 / r_in))
        )
        assert m.click_rate(phi, I_OP) == pytest.approx(1 / (t_d + mean_wait), rel=1e-6)
    # tau -> 0: the non-paralysable dead-time formula
    sharp = SnspdModel(recovery_tau_ps=1e-3)
    for phi in (1e5, 1e7, 1e9):
        r_in = eta * phi + dcr
        assert sharp.click_rate(phi, I_OP) == pytest.approx(r_in / (1 + r_in * t_d), rel=1e-6)
    assert m.click_rate(1e14, I_OP) < 1 / t_d


def test_click_generator_saturates_as_the_formula_says():
    m, r = SNSPD, rng(6)
    phi, span = 2e7, 10_000_000_000  # 10 ms at 20 MHz: deep in saturation
    photons = np.sort(r.integers(0, span, int(phi * span * 1e-12)))
    clicks = m.clicks(photons, 0, span, I_OP, r)
    expected = m.click_rate(phi, I_OP) * span * 1e-12
    # a dead-time renewal process is sub-Poissonian, so sqrt(N) bounds the SE from above
    assert clicks.size == pytest.approx(expected, abs=Z * math.sqrt(expected))
    # and the plain non-paralysable formula (no gradual recovery) is clearly excluded
    r_in = m.detection_efficiency(I_OP) * phi
    naive = r_in / (1 + r_in * m.dead_time_ps * 1e-12) * span * 1e-12
    assert abs(clicks.size - naive) > 20 * math.sqrt(expected)


def test_channel_carries_its_recovery_across_intervals():
    ch = SnspdChannel(SNSPD, rng(7))
    assert ch.bias == I_OP
    span = 1_000_000
    photons = np.sort(rng(8).integers(0, 10 * span, 10_000))
    out = [ch.clicks(photons[(photons >= k * span) & (photons < (k + 1) * span)],
                     k * span, (k + 1) * span) for k in range(10)]
    clicks = np.concatenate(out)
    assert np.diff(clicks).min() >= SNSPD.dead_time_ps


def test_counts_are_poisson_with_the_saturated_mean():
    n = 20_000
    for phi in (1e4, 1e7):
        ch = SnspdChannel(SNSPD, rng(9))
        lam = SNSPD.click_rate(phi, I_OP) * 1.0
        x = np.array([ch.counts(1.0, phi) for _ in range(n)], dtype=float)
        # Poisson: SE(mean) = sqrt(lam / n); Var(s^2) = (mu4 - sigma^4 (n-3)/(n-1)) / n
        # with mu4 = lam + 3 lam^2, i.e. ~ (lam + 2 lam^2) / n
        assert x.mean() == pytest.approx(lam, abs=Z * math.sqrt(lam / n))
        assert x.var(ddof=1) == pytest.approx(lam, abs=Z * math.sqrt((lam + 2 * lam**2) / n))
    assert SNSPD.counts(0.0, 1e6, I_OP, rng(0)) == 0
    with pytest.raises(ValueError):
        SNSPD.counts(-1.0, 1e6, I_OP, rng(0))


# -- time tagger -------------------------------------------------------------------------------
def test_tagger_applies_channel_delays_and_jitter():
    chans = (TaggerChannel(delay_ps=0, jitter_rms_ps=9.0),
             TaggerChannel(delay_ps=1234, jitter_rms_ps=20.0))
    tagger = TimeTaggerModel(channels=chans)
    n, spacing = 10_000, 100_000
    t = np.arange(n, dtype=np.int64) * spacing
    ts, cs = tagger.tag({0: t, 1: t}, rng(10), user_delays_ps={1: -200})
    d = ts[cs == 1] - ts[cs == 0]
    s = math.hypot(9.0, 20.0)
    # SE(mean) = s / sqrt(n) ~ 0.2 ps; SE(std) ~ s / sqrt(2 (n - 1))
    assert d.mean() == pytest.approx(1234 - 200, abs=Z * s / math.sqrt(n))
    assert d.std(ddof=1) == pytest.approx(s, abs=Z * s / math.sqrt(2 * (n - 1)))
    assert ts.dtype == np.int64 and cs.dtype == CHANNEL_DTYPE
    assert np.all(np.diff(ts) >= 0)


def test_tagger_merge_is_sorted_with_ties_by_channel():
    no_jitter = TaggerChannel(jitter_rms_ps=0.0, dead_time_ps=0)
    tagger = TimeTaggerModel(channels=(no_jitter,) * 3)
    ts, cs = tagger.tag({2: np.array([5, 100]), 0: np.array([100, 7]), 1: np.array([100])},
                        rng(0))
    assert ts.tolist() == [5, 7, 100, 100, 100]
    assert cs.tolist() == [2, 0, 0, 1, 2]
    with pytest.raises(ValueError):
        tagger.tag({3: np.array([1])}, rng(0))


def test_tagger_dead_time_per_channel():
    dead = 2_000
    tagger = TimeTaggerModel(channels=(TaggerChannel(dead_time_ps=dead),) * 2)
    r = rng(11)
    events = np.sort(r.integers(0, 10_000_000, 20_000))  # 2 GHz: mean spacing 500 ps
    ts, cs = tagger.tag({0: events, 1: events[::50]}, r)
    for ch in (0, 1):
        assert np.diff(ts[cs == ch]).min() >= dead
    assert (cs == 1).sum() == events[::50].size  # 25 ns apart: nothing lost
    # the vectorised dead time equals the plain sequential rule
    keep = apply_dead_time(events, dead)
    last, expected = -math.inf, []
    for t in events.tolist():
        expected.append(t - last >= dead)
        if expected[-1]:
            last = t
    assert keep.tolist() == expected


def test_a_count_is_the_tags_the_stream_would_give():
    """`TimeTaggerModel.count` (the twin's counter) draws no stream, yet counts what `tag`
    keeps: without jitter the same number exactly, whatever the order the events come in;
    the dead time is what it counts against."""
    dead = 2_000
    tagger = TimeTaggerModel(channels=(TaggerChannel(dead_time_ps=dead, jitter_rms_ps=0.0),))
    r = rng(5)
    events = r.integers(0, 10_000_000, 20_000)  # unsorted, 2 GHz: the dead time bites
    ts, _ = tagger.tag({0: events}, rng(6))
    assert tagger.count(0, events) == ts.size < events.size
    assert tagger.count(0, np.sort(events)) == ts.size
    assert tagger.count(0, np.empty(0, np.int64)) == 0
    with pytest.raises(ValueError, match="no channel 3"):
        tagger.count(3, events)


def test_tagger_flags_overflow_above_the_rate_cap():
    tagger = TimeTaggerModel()  # 80 Mtags/s
    start, stop = 0, 1_000_000  # 1 us: room for 80 tags
    assert tagger.capacity(start, stop) == 80
    # events 1 ns clear of the window's edges, so jitter (9 ps) moves none out
    below = tagger.acquire({0: np.arange(1_000, 1_000_000, 20_000)}, start, stop, rng(12))
    assert len(below) == 50 and not below.overflowed and below.dropped == 0
    events = {0: np.arange(1_000, 1_000_000, 10_000), 1: np.arange(6_000, 1_000_000, 10_000)}
    block = tagger.acquire(events, start, stop, rng(12))
    assert block.overflowed and len(block) == 80 and block.dropped == 120
    # the earliest tags are the ones kept
    assert block.timestamps.max() < 410_000
    assert np.all(np.diff(block.timestamps) >= 0)


def test_tagger_stream_is_globally_sorted_and_loses_nothing_at_boundaries():
    chans = (TaggerChannel(delay_ps=3_000), TaggerChannel(delay_ps=0))
    stream = TaggerStream(TimeTaggerModel(channels=chans), rng(13), user_delays_ps={1: -5_000})
    r = rng(14)
    block_ps, n_blocks = 1_000_000, 20
    # 50 tags per 1 us block, under the cap of 80
    ev = {ch: np.sort(r.choice(n_blocks * block_ps, 500, replace=False)).astype(np.int64)
          for ch in (0, 1)}
    blocks = []
    for k in range(n_blocks):
        a, b = k * block_ps, (k + 1) * block_ps
        blocks.append(stream.block({ch: t[(t >= a) & (t < b)] for ch, t in ev.items()}, a, b))
    ts = np.concatenate([b.timestamps for b in blocks])
    assert np.all(np.diff(ts) >= 0)
    for prev, nxt in itertools.pairwise(blocks):
        assert prev.stop_ps == nxt.start_ps
    for b in blocks:
        assert np.all((b.timestamps >= b.start_ps) & (b.timestamps < b.stop_ps))
    # everything tagged was either emitted or is still pending at the end
    cs = np.concatenate([b.channels for b in blocks] + [stream._pending_c])
    for ch in (0, 1):
        kept = apply_dead_time(np.sort(ev[ch]), chans[ch].dead_time_ps).sum()
        assert abs(int((cs == ch).sum()) - int(kept)) <= 2  # jitter may reorder a near pair
    assert not any(b.overflowed for b in blocks)


# -- AWG ----------------------------------------------------------------------------------------
def pulse_step(n: int, span: tuple[int, int], channels=(0, 1), repeat: int = 1) -> SequenceStep:
    w = Waveform.from_marker_pulses(n, {0: [span]})
    return SequenceStep({ch: w for ch in channels}, repeat)


def test_awg_marker_edges_carry_the_channel_skew():
    awg = AwgModel(skews_ps=(0.0, 37.0, -52.0, 0, 0, 0, 0, 0))
    period = awg.sample_period_ps
    assert period == 400.0  # 2.5 GS/s
    seq = [pulse_step(1000, (100, 110), channels=(0, 1, 2))]
    edges = awg.marker_edges(seq, 10e-6, start_ps=1_000, user_skews_ps={2: 12.0})
    base = 1_000 + (100 + 1000 * np.arange(25)) * 400
    assert edges[(0, 0)].tolist() == base.tolist()  # 10 us = 25 passes of 400 ns
    assert edges[(1, 0)].tolist() == (base + 37).tolist()
    assert edges[(2, 0)].tolist() == (base - 52 + 12).tolist()
    assert edges[(0, 1)].size == 0  # marker 1 never rises
    assert edges[(0, 0)].dtype == np.int64


def test_awg_edges_at_sample_zero_repeats_and_steps():
    awg = AwgModel()
    n = 100
    # high at sample 0, low at the end: an edge every repetition and every pass
    seq = [pulse_step(n, (0, 10), channels=(0,), repeat=3),
           SequenceStep({1: Waveform.from_marker_pulses(n, {})})]
    e = awg.marker_edges(seq, 800 * 400e-12)  # two passes of 400 samples
    assert (e[(0, 0)] // 400).tolist() == [0, 100, 200, 400, 500, 600]
    assert e[(1, 0)].size == 0
    # high at both ends: one edge when the run starts, none at the wrap
    high = Waveform.from_marker_pulses(n, {0: [(0, 10), (90, 100)]})
    e = awg.marker_edges([SequenceStep({0: high})], 3 * n * 400e-12)
    assert (e[(0, 0)] // 400).tolist() == [0, 90, 190, 290]
    # the run ends where it ends: an edge on its last sample counts, one after does not
    e = awg.marker_edges([pulse_step(n, (50, 60), channels=(0,))], 150 * 400e-12)
    assert (e[(0, 0)] // 400).tolist() == [50]


def test_awg_refuses_what_it_cannot_play():
    awg = AwgModel(memory_samples=1000)
    with pytest.raises(ValueError, match="memory"):
        awg.validate([pulse_step(600, (0, 1)), pulse_step(600, (0, 1))])
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        awg.validate([SequenceStep({0: Waveform(np.full(10, 1.5), np.zeros((4, 10), bool))})])
    with pytest.raises(ValueError, match="markers of shape"):
        awg.validate([SequenceStep({0: Waveform(np.zeros(10), np.zeros((2, 10), bool))})])
    with pytest.raises(ValueError, match="channel 8"):
        awg.validate([pulse_step(10, (0, 1), channels=(8,))])
    with pytest.raises(ValueError, match="different lengths"):
        awg.validate([SequenceStep({0: Waveform.from_marker_pulses(10, {}),
                                    1: Waveform.from_marker_pulses(11, {})})])


# -- photons from the transducer bench -----------------------------------------------------
def bench(pump_power: float, mw_dbm: float | None) -> LabWorld:
    # The clean lab: the photon rate against its formula exactly (no drift of the pump or the
    # detection path; those are test_drift.py's).
    world = LabWorld(get_preset("bulk_eo_pulsed").model, FridgeModel(), seed=1, ideal=True)
    if pump_power > 0:
        world.set_pump(power=pump_power, on=True)
    if mw_dbm is not None:
        world.set_mw_drive(power_dbm=mw_dbm, on=True)
    return world


def test_photon_rate_follows_its_formula():
    path = DetectionPath(collection_efficiency=0.4, extra_pump_suppression_db=10.0)
    world = bench(5e-3, -70.0)
    world.advance(10.0)
    m = world.transducer
    rates = incident_photon_rates(world, path)
    mw_flux = 1e-3 * 10 ** ((-70 - world.settings.mw_line_attenuation_db) / 10) / (
        PLANCK * m.mw_resonance_frequency)
    assert rates.signal == pytest.approx(0.4 * world.efficiency() * mw_flux)
    assert noise_bandwidth(m) == pytest.approx(math.pi / 2 * m.mw_linewidth)
    assert rates.noise == pytest.approx(
        0.4 * world.added_noise() * world.efficiency() * math.pi / 2 * m.mw_linewidth)
    leak = 5e-3 * 10 ** (-(world.settings.pump_filter_suppression_db + 10) / 10)
    assert rates.pump_leak == pytest.approx(0.4 * leak / (PLANCK * SPEED_OF_LIGHT
                                                          / world.pump.wavelength))
    assert world.detector_photon_rate(path) == pytest.approx(rates.total)


def test_photon_rate_follows_the_pump_and_the_microwave_drive():
    dark = incident_photon_rates(bench(0.0, -70.0))
    assert dark.total == 0.0  # no pump: no conversion, no output noise, no leak
    off = incident_photon_rates(bench(5e-3, None))
    assert off.signal == 0.0 and off.noise > 0 and off.pump_leak > 0
    on = incident_photon_rates(bench(5e-3, -90.0))
    assert on.noise == pytest.approx(off.noise) and on.pump_leak == pytest.approx(off.pump_leak)
    louder = incident_photon_rates(bench(5e-3, -80.0))
    assert louder.signal == pytest.approx(10 * on.signal)  # linear in microwave power
    # signal follows eta = eta_e eta_o 4C/(1+C)^2 in the pump power, C = P / P(C=1)
    half = incident_photon_rates(bench(2.5e-3, -90.0))
    p1 = get_preset("bulk_eo_pulsed").model.pump_power_at_unit_cooperativity
    c_half, c_on = 2.5e-3 / p1, 5e-3 / p1
    assert half.signal / on.signal == pytest.approx(
        (4 * c_half / (1 + c_half) ** 2) / (4 * c_on / (1 + c_on) ** 2))


def test_detector_counts_depend_on_the_pump_and_the_drive():
    det = SnspdChannel(SNSPD, rng(15))
    counts, rates = {}, {}
    for label, pump, mw in (("pump off", 0.0, -90.0), ("drive off", 5e-3, None),
                            ("both on", 5e-3, -90.0)):
        world = bench(pump, mw)
        world.advance(10.0)
        rates[label] = world.detector_photon_rate()
        counts[label] = det.counts(1.0, rates[label])
    # pump off leaves only dark counts (~10 Hz, Poisson: < 10 + 5 sqrt(10) ~ 26)
    assert rates["pump off"] == 0.0 and counts["pump off"] < 26
    # pump on: added noise and leakage; the drive adds the converted signal
    assert counts["drive off"] > 1000 * (counts["pump off"] + 1)
    gain = SNSPD.click_rate(rates["both on"], I_OP) - SNSPD.click_rate(rates["drive off"], I_OP)
    # difference of two independent Poisson counts: SE = sqrt(mean_on + mean_off)
    se = math.sqrt(counts["both on"] + counts["drive off"])
    assert gain > 10 * se
    assert counts["both on"] - counts["drive off"] == pytest.approx(gain, abs=Z * se)
