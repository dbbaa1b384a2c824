"""The pump-heating, added-noise and fridge-load analyses on the realistic lab
(``qnetlab.simulation.ideal: false``, issue 13 item 6).

There the pump power reaching the device drifts (fibre coupling, ~1 % over an hour), the
detection path's efficiency wanders (fibre polarization, ~3 % over 20 min), the optical line
moves under the pump and every instrument carries its data-sheet errors: counting statistics
alone no longer describe the data. Each scan must still recover the device within its stated
(combined) errors, and say so honestly when a preset is at the edge of what it resolves.

Statistics. |pull| < 4 fails by chance with probability 6.3e-5 per Gaussian value; this file
compares ~30 values, so a false failure has probability ~2e-3; fixed seeds make every run
deterministic. The pure-function tests use seeded synthetic data with bounds from their own
statistics (stated next to each).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qnetlab.instruments.station import LabStation, load_station
from qnetlab.sequences.analysis import Reason
from qnetlab.sequences.transducer.added_noise import AddedNoiseScan
from qnetlab.sequences.transducer.fridge_load import FridgeLoadScan
from qnetlab.sequences.transducer.heating import (
    FIT_P_MIN,
    PumpHeatingScan,
    fit_heating,
    heating_model,
)
from qnetlab.sequences.transducer.heating_references import (
    gain_at,
    normalise_to_references,
    reference_drift_rate,
)
from qnetlab.sim_instruments.visa_backend import bench_of

from conftest import bench_config

Z_MAX = 4.0
SEED = 4242
"""A seed no other test or exploration used."""
RESOLVED = ("bulk_eo_cw", "bulk_eo_pulsed", "piezo_om_integrated", "silicon_cw")
"""Presets whose pump heating the default scan (2 mW) resolves."""
EDGE = ("membrane_eom", "piezo_om")
"""Heating at the edge of what the scan resolves: piezo_om's < 2 photons on N_add ~ 100
(Jiang 2023), membrane_eom's ~0.5 photons on 2.9 behind a 3 MHz optical line (Brubaker 2022)."""


@contextlib.contextmanager
def realistic(folder: Path, preset: str, seed: int = SEED) -> Iterator[LabStation]:
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):  # the drivers' "Connected to" lines
        station = load_station(bench_config(folder, preset, {"ideal": False, "seed": seed}))
    try:
        yield station
    finally:
        station.close()


def world(station: LabStation) -> Any:
    return bench_of(station.instrument("vna")).world


def pull(value: Any, true: float) -> float:
    return (value.value - true) / value.stderr


# -- pump heating ---------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("preset", RESOLVED)
def test_heating_times_on_the_realistic_lab(tmp_path: Path, preset: str) -> None:
    with realistic(tmp_path, preset) as station:
        assert world(station).ideal is False
        m = world(station).transducer
        result = PumpHeatingScan().run(station, tmp_path / "lab.db", quiet=True)
    a = result.analysis
    assert a is not None and a.verdict.good, a and a.verdict
    for name in ("tau_fast", "tau_slow"):
        value = a.values[f"heating_{name}"]
        assert abs(pull(value, getattr(m, f"heating_{name}"))) < Z_MAX, (name, value)
    # The references saw the lab drift (the gain moved between cycles) and took it out.
    assert a.details["reference_drift_rate"] > 0
    assert a.details["reference_gain_spread"] > 0.01
    table = a.tables["heating"]
    assert {"reference rate (Hz)", "background (Hz)", "relative gain"} <= set(table)


@pytest.mark.slow
@pytest.mark.timeout(600)  # piezo_om counts ~1.5 MHz at every probe: ~1 min on a loaded box
@pytest.mark.parametrize("preset", EDGE)
def test_heating_at_the_edge_says_so_on_the_realistic_lab(tmp_path: Path,
                                                          preset: str) -> None:
    with realistic(tmp_path, preset) as station:
        m = world(station).transducer
        result = PumpHeatingScan().run(station, tmp_path / "lab.db", quiet=True)
    a = result.analysis
    assert result.status == "completed" and a is not None
    if a.verdict.good and "heating_amplitude_upper_limit" in a.details:
        # Not resolved: an upper limit on the heating's share of the noise, no times.
        assert not any(k.startswith("heating_tau") for k in a.values), a.values
        assert a.details["heating_share_upper_limit"] <= 0.1  # what matters (the option)
    elif a.verdict.good:  # resolved after all: then it must be right
        for name in ("tau_fast", "tau_slow"):
            value = a.values[f"heating_{name}"]
            assert abs(pull(value, getattr(m, f"heating_{name}"))) < Z_MAX, (name, value)
    else:
        # Not seen (no heating amplitude, or no converted noise above the leakage at all), or
        # a time the data do not constrain: never "does not describe the relaxation".
        assert a.verdict.reason in (Reason.NO_SIGNAL, Reason.POOR_FIT), a.verdict
        assert a.verdict.reason is Reason.NO_SIGNAL or "not constrained" in a.verdict.detail


def test_without_references_the_drift_is_not_described(tmp_path: Path) -> None:
    """The old scan (no references, no background) on the same drifting bench: counting
    statistics alone do not cover the drift, and the verdict says the model does not
    describe the data (what the issue reported) - the references are what make it honest."""
    with realistic(tmp_path, "piezo_om_integrated") as station:
        result = PumpHeatingScan(reference_windows=0, background_time=0.0).run(
            station, tmp_path / "lab.db", quiet=True)
    a = result.analysis
    assert a is not None and not a.verdict.good
    assert a.verdict.reason is Reason.POOR_FIT, a.verdict
    assert "reference_drift_rate" not in a.details


# -- the references, pure -------------------------------------------------------------------
def drifting_references(seed: int, drift_rate: float, counts: float = 1e6, n: int = 24
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reference times (s, cycles 60-120 s apart), their Poisson rates over 1 s with a
    random-walk log gain of `drift_rate` (1/s), and that true log gain."""
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.uniform(60.0, 120.0, n))
    steps = rng.normal(0.0, np.sqrt(drift_rate * np.diff(times, prepend=0.0)))
    log_gain = np.cumsum(steps)
    rate = rng.poisson(counts * np.exp(log_gain)).astype(float)
    return times, rate, np.sqrt(rate), log_gain


def test_the_drift_rate_is_measured_from_the_references() -> None:
    """Over 200 synthetic runs of 24 references the estimate's mean is the true rate within
    4 standard errors of that mean (the per-run scatter / sqrt(200))."""
    true = 2e-6  # 1/s: ~1.1 % rms per 60 s, well above the references' 0.1 % counting error
    estimates = np.array([reference_drift_rate(r, e, t)[0] for t, r, e, _ in
                          (drifting_references(s, true) for s in range(200))])
    assert abs(estimates.mean() - true) < 4 * estimates.std(ddof=1) / math.sqrt(200)
    t, r, e, _ = drifting_references(0, 0.0)
    rate, stderr = reference_drift_rate(r, e, t)
    assert rate < 3 * stderr  # no drift: nothing above counting


def test_the_gain_at_a_probe_follows_the_drift_within_its_stated_error() -> None:
    """The smoothed log gain at each reference time is the true one within its stated
    error: over 50 runs x 24 points the fraction within 1 sigma is 68 % +- 3 sigma of a
    binomial (n = 1200, sd 1.3 %; the points of one run are correlated, so 5 % is allowed)."""
    within = []
    for seed in range(50):
        t, r, e, true = drifting_references(seed, 2e-6)
        drift, _ = reference_drift_rate(r, e, t)
        log_gain, var = gain_at(t, np.log(r), (e / r) ** 2, drift, t)
        # The level is free (gains are relative): compare after removing the mean offset.
        offset = float(np.mean(log_gain - true))
        within.extend(np.abs(log_gain - true - offset) < np.sqrt(var))
    assert abs(np.mean(within) - 0.683) < 0.05, np.mean(within)


def test_normalising_takes_out_the_gain_but_not_the_background() -> None:
    """Probe = gain x signal + background: dividing the net rates by the references' gain
    gives the signal at the (geometric) mean gain, plus the background put back. (Probes at
    the references' times: between them the gain is interpolated, as a random walk.)"""
    times = np.arange(8) * 100.0
    gain = np.array([1.2, 1.1, 1.0, 0.9, 0.8, 0.9, 1.0, 1.1])
    background, signal, steady = 500.0, 1e4, 2e4
    norm = normalise_to_references(gain * signal + background, np.full(8, 10.0),
                                   gain * steady + background, np.full(8, 1.0), times,
                                   times, background, 0.0)
    # The gains are relative to their geometric mean (the mean log gain).
    scale = float(np.exp(np.mean(np.log(gain))))
    assert norm.rate == pytest.approx(signal * scale + background, rel=1e-3)
    assert norm.gain == pytest.approx(gain / scale, rel=1e-3)


def test_a_third_heating_channel_is_still_a_poor_fit_with_the_drift_weights() -> None:
    """The extra variance comes from the references, not from the fit's residuals: a
    relaxation with three channels still fails the two-exponential model."""
    delays = np.geomspace(1e-4, 60.0, 24)
    rng = np.random.default_rng(3)
    true = heating_model(delays, 3e4, 2e4, 1e-3, 1e4, 2.0) + 2e4 * np.exp(-delays / 0.03)
    counts = rng.poisson(true).astype(float)
    rel_var = np.full(delays.size, 1e-6) + 1e-6 * delays  # the drift over each lag
    fit = fit_heating(delays, counts, np.sqrt(counts), np.ones_like(delays), rel_var)
    assert fit is not None and fit.fit_p < FIT_P_MIN, fit


# -- added noise ----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("preset", (*RESOLVED, *EDGE))
def test_added_noise_on_the_realistic_lab(tmp_path: Path, preset: str) -> None:
    """membrane_eom's 3 MHz optical line is narrower than where the pump laser's own
    accuracy and the line's drift put the pump here (no optical scan first): no converted
    noise, and the verdict must say so rather than give a number."""
    with realistic(tmp_path, preset) as station:
        m = world(station).transducer
        # The microwave mode as the VNA finds it (tested with the VNA's analysis).
        result = AddedNoiseScan(mw_frequency=m.mw_resonance_frequency,
                                mw_linewidth=m.mw_linewidth,
                                mw_linewidth_stderr=0.01 * m.mw_linewidth).run(
            station, tmp_path / "lab.db", quiet=True)
    a = result.analysis
    assert a is not None
    if preset == "membrane_eom" and not a.verdict.good:
        assert a.verdict.reason is Reason.NO_SIGNAL, a.verdict
        assert "added_noise_intrinsic" not in a.values
        return
    assert a.verdict.good, a.verdict
    truth = {"added_noise_intrinsic": m.intrinsic_added_noise,
             "added_noise_slope": (m.heating_noise_fast + m.heating_noise_slow)
             * m.absorbed_fraction}
    for name, true in truth.items():
        value = a.values[name]
        assert value.sys > 0 and abs(pull(value, true)) < Z_MAX, (name, value, true)


# -- fridge load ----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("seed", (SEED, SEED + 1, SEED + 2))
def test_fridge_load_on_the_realistic_lab(tmp_path: Path, seed: int) -> None:
    """The fridge does not depend on the preset: three seeds (thermometer calibration, pump
    drift and the drawn cooling coefficient differ) instead."""
    with realistic(tmp_path, "silicon_cw", seed) as station:
        w = world(station)
        result = FridgeLoadScan().run(station, tmp_path / "lab.db", quiet=True)
    a = result.analysis
    assert result.status == "completed" and a is not None and a.verdict.good, a and a.verdict
    v = a.values
    assert abs(pull(v["fridge_time_constant"], w.fridge.time_constant)) < Z_MAX, v
    assert abs(pull(v["base_temperature"], w.fridge.base_temperature)) < Z_MAX, v
    assert abs(pull(v["absorbed_fraction"], w.transducer.absorbed_fraction)) < Z_MAX, v
    # The thermometer's calibration is a systematic of T_base (it was 150 sigma without it).
    assert v["base_temperature"].sys > 10 * v["base_temperature"].stat
