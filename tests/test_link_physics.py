"""The simulated link (`physics.link_clicks.LinkClicks`, the world behind the station's tagger
twin) against the formulas of `network.link_model` (docs/link.md).

Statistical checks use fixed seeds and a tolerance of Z = 4.5 standard errors, each derived
from the statistic it bounds (stated at the check). A correct model fails one such check with
probability 6.8e-6, so the ~20 checks here together with ~1e-4; the model errors they guard
against (a missing noise term, a wrong loss exponent, a wrong fidelity label) are tens to
hundreds of standard errors wide, which `test_statistics_resolve_the_background` shows for
the smallest of them.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest

from qnetlab.network.link_model import (
    FIBRE_DELAY_S_PER_KM,
    LinkModel,
    NodeOptics,
    Scheme,
    expected_fidelity,
    expected_pair_rate,
    expected_success_probability,
)
from qnetlab.sim_instruments.physics.link import node_optics_from_preset
from qnetlab.sim_instruments.physics.link_clicks import NO_HERALD, TWIN_TRUTH_DTYPE, LinkClicks
from qnetlab.sim_instruments.physics.link_physics import DetectorState, LinkPhysics
from qnetlab.sim_instruments.physics.presets import PRESETS

Z = 4.5
SCHEMES: tuple[Scheme, ...] = ("single_click", "two_click")
LENGTHS_KM = (0.0, 10.0, 25.0, 50.0)
HERALDS_WANTED = 40_000
"""Heralds per statistical run: the fidelity's standard error is then ~0.002."""


def good_node(length_km: float, noise: float = 0.01) -> NodeOptics:
    """A better-than-today node, so that 50 km two-click still heralds ~1e-3 per attempt.

    With the presets (eta_t <= 0.47 with N_add >= 0.16) p at 50 km falls to ~1e-4 and the
    fidelities are noise-dominated; this node keeps every term of the model visible.
    """
    return NodeOptics(length_km, transducer_efficiency=0.5, transducer_added_noise=noise,
                      collection_efficiency=0.9)


def link(scheme: Scheme, length_km: float, **changes: float) -> LinkModel:
    # dark counts raised 1000x above an SNSPD's so that they matter at this sample size
    fields: dict[str, float] = {"dark_count_rate": 1e4, "double_excitation_probability": 0.02}
    fields.update(changes)
    node = good_node(length_km)
    return LinkModel(scheme, node, node, **fields)


def quiet(model: LinkModel) -> LinkModel:
    """The same link without dark counts or transducer noise."""
    silent_a = dataclasses.replace(model.node_a, transducer_added_noise=0.0)
    silent_b = dataclasses.replace(model.node_b, transducer_added_noise=0.0)
    return dataclasses.replace(model, node_a=silent_a, node_b=silent_b, dark_count_rate=0.0)


def world(model: LinkModel, seed: int) -> tuple[LinkPhysics, DetectorState]:
    """The simulated world of `model`: its nodes, settings and (both) detectors."""
    assert model.window_offset_a == model.window_offset_b == 0.0  # windows at true arrivals
    physics = LinkPhysics(
        scheme=model.scheme, attempt_period_ps=round(model.attempt_period * 1e12),
        nodes=(model.node_a, model.node_b),
        bright_state_population=model.bright_state_population,
        hom_visibility=model.hom_visibility,
        double_excitation_probability=model.double_excitation_probability,
        arrival_time_spread_ps=model.arrival_time_spread * 1e12,
        detection_window_ps=round(model.detection_window * 1e12), seed=seed)
    detector = (model.detector_efficiency, model.dark_count_rate)
    return physics, (detector, detector)


def simulate(model: LinkModel, seed: int, heralds: int = HERALDS_WANTED) -> tuple[int, np.ndarray]:
    """(attempts, the truth rows of the heralded ones) for about `heralds` heralds."""
    attempts = math.ceil(heralds / expected_success_probability(model))
    physics, state = world(model, seed)
    # large blocks: numpy's per-call cost is then negligible over tens of millions of attempts
    clicks = LinkClicks(physics, (0,), lambda: state, block_attempts=1 << 18)
    parts = []
    step = 1_000_000  # attempts per truth call: bounded memory, same rows (block seeding)
    for first in range(0, attempts, step):
        truth = clicks.truth(first, min(first + step, attempts))
        parts.append(truth[truth["bell_state"] != NO_HERALD])
        clicks.forget_before((first + step) * physics.attempt_period_ps)
    return attempts, np.concatenate(parts)


# -- success probability and fidelity against the formulas ------------------------------------
@pytest.mark.parametrize("length_km", LENGTHS_KM)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_success_and_fidelity_match_the_formulas(scheme: Scheme, length_km: float) -> None:
    model = link(scheme, length_km)
    attempts, heralds = simulate(model, seed=int(length_km) + 7)
    p = expected_success_probability(model)
    # heralds per attempt: binomial, standard error sqrt(p (1 - p) / attempts)
    p_err = math.sqrt(p * (1 - p) / attempts)
    assert abs(heralds.size / attempts - p) < Z * p_err
    # mean ground-truth fidelity: standard error of the mean of the heralds' fidelities
    fidelity = heralds["fidelity"].astype(float)
    f_err = fidelity.std(ddof=1) / math.sqrt(fidelity.size)
    assert abs(fidelity.mean() - expected_fidelity(model)) < Z * f_err


@pytest.mark.parametrize("scheme", SCHEMES)
def test_formulas_hold_far_from_the_ideal(scheme: Scheme) -> None:
    """Unequal arms, bright alpha, poor visibility, frequent double excitation, loud detectors.

    Here the second-order terms the textbook forms drop (HOM bunching of a both-bright pair,
    double excitation at either node, the weighting of unequal arms) move p and F by many
    standard errors, so they are checked too. Same error bounds as above.
    """
    model = LinkModel(
        scheme, good_node(3.0, noise=0.3), good_node(20.0, noise=0.1),
        detector_efficiency=0.95, dark_count_rate=3e5, bright_state_population=0.3,
        hom_visibility=0.7, double_excitation_probability=0.2,
    )
    attempts, heralds = simulate(model, seed=99, heralds=100_000)
    p = expected_success_probability(model)
    assert abs(heralds.size / attempts - p) < Z * math.sqrt(p * (1 - p) / attempts)
    fidelity = heralds["fidelity"].astype(float)
    f_err = fidelity.std(ddof=1) / math.sqrt(fidelity.size)
    assert abs(fidelity.mean() - expected_fidelity(model)) < Z * f_err


def test_background_clicks_come_from_dark_counts_and_transducer_noise() -> None:
    """Without emission a herald is one background click: p = 2 q (1 - q).

    Each transducer puts N_add * eta_t noise photons per mode into its arm; collection and
    fibre attenuate them like the signal, the beam splitter halves each node's share per
    detector, and the detector counts a fraction eta_d, so one detector sees a Poisson mean
    of eta_d * (mu_a + mu_b) / 2 plus DCR * window, with mu the photons reaching the station.
    """
    # 10.1 km: node b's light time is not a whole number of attempt periods more than node
    # a's, so its photons never fall in arm a's window of a later attempt (as they would at
    # a real station; the formulas assume they do not)
    a, b = good_node(0.0, noise=0.5), good_node(10.1, noise=0.2)
    model = LinkModel("single_click", a, b, bright_state_population=0.0, dark_count_rate=2e6)
    mu_a = 0.5 * 0.5 * 0.9
    mu_b = 0.2 * 0.5 * 0.9 * 10 ** (-0.2 * 10.1 / 10)
    # dark counts are uniform in time: the arms' windows lie apart, so a round's two windows
    # (2 x 2 ns) collect them
    q = 1 - math.exp(-(0.9 * (mu_a + mu_b) / 2 + 2e6 * 2 * 2e-9))
    assert expected_success_probability(model) == pytest.approx(2 * q * (1 - q), rel=1e-12)
    attempts, heralds = simulate(model, seed=4)
    p = 2 * q * (1 - q)
    assert abs(heralds.size / attempts - p) < Z * math.sqrt(p * (1 - p) / attempts)
    assert not heralds["genuine"].any() and not heralds["fidelity"].any()  # |00>: worth 0


def test_statistics_resolve_the_background() -> None:
    """The checks above can fail: dropping dark counts and noise moves F by > 10 errors."""
    for scheme in SCHEMES:
        model = link(scheme, 50.0)
        _, heralds = simulate(model, seed=3)
        f_err = heralds["fidelity"].astype(float).std(ddof=1) / math.sqrt(heralds.size)
        assert expected_fidelity(quiet(model)) - expected_fidelity(model) > 10 * f_err


def test_formulas_reduce_to_the_textbook_forms() -> None:
    # two-click without background or double excitation: p = eta_a eta_b / 2 and
    # F = (1 + V) / 2 exactly, unequal arms included (both orders of rounds weigh the same)
    a, b = good_node(3.0, noise=0.0), good_node(20.0, noise=0.0)
    bk = LinkModel("two_click", a, b, dark_count_rate=0.0, hom_visibility=0.9)
    eta_a, eta_b = bk.arm_transmission("a"), bk.arm_transmission("b")
    assert expected_success_probability(bk) == pytest.approx(eta_a * eta_b / 2, rel=1e-12)
    assert expected_fidelity(bk) == pytest.approx(0.95, rel=1e-12)
    assert expected_pair_rate(bk) == pytest.approx(
        eta_a * eta_b / 2 / bk.effective_attempt_period, rel=1e-12
    )
    # single-click, small alpha: p = 2 alpha eta (1 + O(alpha)) and F = (1 - alpha) with a
    # correction of order alpha * eta (the both-bright heralds lose one of two photons less
    # often than a single photon is detected); V = 1 and equal arms keep the genuine state pure
    node = good_node(50.0, noise=0.0)
    alpha = 0.01
    sc = LinkModel("single_click", node, node, dark_count_rate=0.0, hom_visibility=1.0,
                   bright_state_population=alpha)
    eta = sc.arm_transmission("a")
    assert expected_success_probability(sc) == pytest.approx(2 * alpha * eta, rel=alpha)
    assert expected_fidelity(sc) == pytest.approx(1 - alpha, abs=alpha * eta)
    # finite visibility: the photons' mode overlap sqrt(V) scales the coherence
    sc_v = dataclasses.replace(sc, hom_visibility=0.81)
    assert expected_fidelity(sc_v) == pytest.approx((1 - alpha) * (1 + 0.9) / 2, abs=alpha * eta)
    # unequal arms: the click comes from node a with weight t_a, from b with t_b, so the
    # state is t_a |10><10| + t_b |01><01| + sqrt(t_a t_b) sqrt(V) (coherences), normalised
    uneven = dataclasses.replace(sc_v, node_b=good_node(10.0, noise=0.0))
    t_a, t_b = uneven.arm_transmission("a"), uneven.arm_transmission("b")
    coherent = 0.5 + 0.9 * math.sqrt(t_a * t_b) / (t_a + t_b)
    assert coherent < 0.9  # the imbalance costs fidelity
    assert expected_fidelity(uneven) == pytest.approx((1 - alpha) * coherent, abs=alpha * t_b)


def test_background_and_double_excitation_lower_the_fidelity() -> None:
    for scheme in SCHEMES:
        base = quiet(link(scheme, 10.0, double_excitation_probability=0.0))
        f0 = expected_fidelity(base)
        assert expected_fidelity(dataclasses.replace(base, dark_count_rate=1e5)) < f0
        noisy = dataclasses.replace(base, node_a=good_node(10.0, noise=0.1))
        assert expected_fidelity(noisy) < f0
        doubled = dataclasses.replace(base, double_excitation_probability=0.1)
        assert expected_fidelity(doubled) < f0


def test_ground_truth_labels_and_bell_states() -> None:
    for scheme in SCHEMES:
        model = link(scheme, 10.0)
        _, heralds = simulate(model, seed=11, heralds=20_000)
        assert heralds.dtype == TWIN_TRUTH_DTYPE
        genuine = heralds["genuine"]
        assert 0 < genuine.sum() < heralds.size  # both kinds occur with this background
        # a genuine herald holds the coherent state; any other holds |01>/|10> or |00>/|11>
        assert np.unique(heralds["fidelity"][genuine]).size == 1
        assert set(np.unique(heralds["fidelity"][~genuine])) <= {0.0, 0.5}
        # the two Bell states are equally likely: binomial(n, 1/2), error sqrt(n) / 2
        n = heralds.size
        assert abs(int(heralds["bell_state"].sum()) - n / 2) < Z * math.sqrt(n) / 2
        assert set(np.unique(heralds["bell_state"])) == {0, 1}


# -- timing --------------------------------------------------------------------------------------
@pytest.mark.parametrize("length_km", LENGTHS_KM)
def test_photons_arrive_at_the_light_time(length_km: float) -> None:
    model = quiet(dataclasses.replace(link("single_click", length_km), node_b=good_node(2.0)))
    longer = max(length_km, 2.0)
    round_trip = 2 * longer * FIBRE_DELAY_S_PER_KM
    assert model.effective_attempt_period == max(model.attempt_period, round_trip)
    assert model.herald_delay("a") == pytest.approx(length_km * 4.9e-6, rel=1e-12)
    assert model.herald_delay("b") == pytest.approx(2.0 * 4.9e-6, rel=1e-12)
    physics, state = world(model, seed=1)
    assert physics.light_ps == (round(length_km * 4.9e6), 9_800_000)
    clicks = LinkClicks(physics, (0,), lambda: state)
    period = physics.attempt_period_ps
    times = np.concatenate([clicks.detector_clicks(d, 0, 20_000 * period) for d in (0, 1)])
    assert times.size > 100
    # without background every click is a photon: emission (a multiple of the period) plus
    # an arm's light time, within 12 sigma of the arrival spread
    offset = [(times - light + period // 2) % period - period // 2 for light in physics.light_ps]
    nearest = np.minimum(np.abs(offset[0]), np.abs(offset[1]))
    assert nearest.max() < 12 * physics.arrival_time_spread_ps
    if physics.light_ps[0] % period != physics.light_ps[1] % period:
        assert np.any(np.abs(offset[0]) < 1000) and np.any(np.abs(offset[1]) < 1000)


def test_reproducible_per_seed_whatever_the_call_pattern() -> None:
    physics, state = world(link("single_click", 0.0), seed=42)

    def truth(seed: int, ranges: list[int]) -> np.ndarray:
        clicks = LinkClicks(dataclasses.replace(physics, seed=seed), (0,), lambda: state)
        return np.concatenate([clicks.truth(a, b) for a, b in itertools.pairwise(ranges)])

    whole = truth(42, [0, 200_000])
    assert np.count_nonzero(whole["bell_state"] != NO_HERALD) > 5_000
    assert truth(42, [0, 200_000]).tobytes() == whole.tobytes()
    other = truth(43, [0, 200_000])
    assert not np.array_equal(whole["attempt_id"], other["attempt_id"][: whole.size])
    # split across block boundaries: the same attempts, the same truth
    assert truth(42, [0, 1, 70_001, 70_001, 130_002, 200_000]).tobytes() == whole.tobytes()


def test_rate_follows_the_fibre_loss() -> None:
    # two-click without background: p = eta_a eta_b / 2 exactly, so p(50 km) / p(0 km) is the
    # loss factor squared, 10^(-0.2 * 50 / 10 * 2) = 0.01. Relative error of a ratio of two
    # independent binomial estimates: sqrt((1 - p0) / n0 + (1 - p50) / n50) for n heralds.
    near = quiet(link("two_click", 0.0, double_excitation_probability=0.0))
    far = quiet(link("two_click", 50.0, double_excitation_probability=0.0))
    ratio, rel_err = _simulated_ratio(near, far)
    assert abs(ratio / 0.01 - 1) < Z * rel_err
    # and the pair rate also pays for the longer period: 1 us -> 490 us round trip
    assert expected_pair_rate(far) / expected_pair_rate(near) == pytest.approx(0.01 * 1 / 490)
    # single-click: linear in the loss to first order; the both-bright heralds add a relative
    # correction below alpha (0.05), which the tolerance adds to the statistical one
    near_sc = quiet(link("single_click", 0.0, double_excitation_probability=0.0))
    far_sc = quiet(link("single_click", 50.0, double_excitation_probability=0.0))
    ratio, rel_err = _simulated_ratio(near_sc, far_sc)
    assert abs(ratio / 0.1 - 1) < Z * rel_err + near_sc.bright_state_population


def _simulated_ratio(near: LinkModel, far: LinkModel) -> tuple[float, float]:
    n_near, h_near = simulate(near, seed=21, heralds=20_000)
    n_far, h_far = simulate(far, seed=22, heralds=20_000)
    p_near, p_far = h_near.size / n_near, h_far.size / n_far
    rel_err = math.sqrt((1 - p_near) / h_near.size + (1 - p_far) / h_far.size)
    return p_far / p_near, rel_err


# -- presets and bad input ----------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_node_optics_from_preset_takes_the_operating_point(name: str) -> None:
    optics = node_optics_from_preset(name, 12.5, collection_efficiency=0.7)
    preset = PRESETS[name]
    assert optics.transducer_efficiency == pytest.approx(preset.quoted_efficiency, rel=1e-9)
    assert optics.transducer_added_noise == pytest.approx(preset.quoted_added_noise, rel=1e-9)
    assert (optics.fibre_length_km, optics.collection_efficiency) == (12.5, 0.7)


def test_bad_parameters_raise_clear_errors() -> None:
    node = good_node(1.0)
    with pytest.raises(ValueError, match=r"fibre_length_km = -1.0 must be a length >= 0 km"):
        NodeOptics(-1.0, 0.5, 0.1)
    with pytest.raises(ValueError, match=r"transducer_efficiency = 1.2 must be a probability"):
        NodeOptics(1.0, 1.2, 0.1)
    with pytest.raises(ValueError, match=r"collection_efficiency"):
        NodeOptics(1.0, 0.5, 0.1, collection_efficiency=float("nan"))
    with pytest.raises(ValueError, match=r"transducer_added_noise = -0.1"):
        NodeOptics(1.0, 0.5, -0.1)
    with pytest.raises(ValueError, match=r"scheme = 'three_click' is unknown.*single_click"):
        LinkModel("three_click", node, node)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"detector_efficiency = 1.5"):
        LinkModel("two_click", node, node, detector_efficiency=1.5)
    with pytest.raises(ValueError, match=r"dark_count_rate = -1.0 must be >= 0 Hz"):
        LinkModel("two_click", node, node, dark_count_rate=-1.0)
    with pytest.raises(ValueError, match=r"detection_window = 0.0 must be a time > 0 s"):
        LinkModel("two_click", node, node, detection_window=0.0)
    with pytest.raises(ValueError, match=r"node_b must be a NodeOptics"):
        LinkModel("two_click", node, 3.0)  # type: ignore[arg-type]
    model = LinkModel("two_click", node, node)
    with pytest.raises(ValueError, match=r"node 'c' is unknown; choose 'a' or 'b'"):
        model.herald_delay("c")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown transducer preset 'nope'"):
        node_optics_from_preset("nope", 1.0)
    physics, _ = world(model, seed=1)
    with pytest.raises(ValueError, match=r"LinkPhysics.seed must be >= 0"):
        dataclasses.replace(physics, seed=-1)
    with pytest.raises(ValueError, match=r"detection_window_ps = 600000 must be > 0 and at most "
                                          r"the round period \(500000 ps\)"):
        dataclasses.replace(physics, detection_window_ps=600_000)
    with pytest.raises(ValueError, match=r"attempt_period_ps = 1000001 must be a positive "
                                          r"multiple of 2 ps"):
        dataclasses.replace(physics, attempt_period_ps=1_000_001)
