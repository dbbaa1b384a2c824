"""`AddedNoiseScan` on the simulated transducer bench, and its pure fit and dead-time model.

Statistics. The detector counts are Poisson (the tagger counter's clicks, virtual time), the
power meter's readings Gaussian; the scan's errors come from those (`sequences.transducer.
added_noise`). A true value more than 4 standard errors from the fitted one happens by chance
with probability 6.3e-5; this file compares 3 values x 6 presets, so a false failure has
probability ~1e-3 with the seeds fixed by the lab config (each run is deterministic).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qnetlab.instruments.station import LabStation
from qnetlab.sequences.analysis import Reason, analyze_run
from qnetlab.sequences.transducer.added_noise import (
    AddedNoiseScan,
    added_noise_points,
    detection_walk,
    fit_added_noise,
)
from qnetlab.sequences.transducer.counting import DeadTimeModel
from qnetlab.sim_instruments.physics.presets import PRESETS
from qnetlab.sim_instruments.physics.snspd import SnspdModel
from qnetlab.sim_instruments.visa_backend import bench_of

pytestmark = pytest.mark.slow

Z_MAX = 4.0
MAX_POWER = 10e-3  # W, the bench's soft limit on the pump


def truth(station: LabStation) -> Any:
    return bench_of(station.instrument("pump_laser")).world.transducer


def z(value: Any, true: float) -> float:
    return (value.value - true) / value.stderr


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_scan_recovers_the_added_noise_of_every_preset(open_bench: Any, tmp_path: Path,
                                                       preset: str) -> None:
    station = open_bench(preset)
    m = truth(station)
    setup = station.setup
    assert setup is not None
    bias_before = float(setup.detector.bias_current())
    operating = PRESETS[preset].operating_pump_power
    # Around the paper's operating point, as a lab would choose (inside the soft limits).
    powers = tuple(min(f * operating, MAX_POWER) for f in (0.25, 0.5, 1.0, 1.5, 2.0))
    # The VNA's linewidth with a typical 0.5 % error.
    scan = AddedNoiseScan(pump_powers=powers, mw_linewidth=m.mw_linewidth,
                          mw_linewidth_stderr=0.005 * m.mw_linewidth)
    db = tmp_path / "lab.db"
    result = scan.run(station, db, quiet=True)
    a = result.analysis
    assert result.status == "completed" and a is not None and a.verdict.good, a
    k = (m.heating_noise_fast + m.heating_noise_slow) * m.absorbed_fraction
    v = a.values
    assert abs(z(v["added_noise_intrinsic"], m.intrinsic_added_noise)) < Z_MAX, v
    assert abs(z(v["added_noise_slope"], k)) < Z_MAX, v
    assert abs(z(v["added_noise_at_max_power"],
                 m.intrinsic_added_noise + k * max(powers))) < Z_MAX, v
    # The linewidth's 0.5 % is in every error: none can be smaller than that share.
    assert v["added_noise_slope"].stderr >= 0.005 * abs(v["added_noise_slope"].value)
    table = a.tables["added_noise"]
    assert table["pump_power (W)"] == pytest.approx(list(powers))
    assert len(a.figures) == 1 and Path(a.figures[0]).read_bytes()[:4] == b"\x89PNG"
    # finish: pump and drive off, the detector's bias and the tagger input as they were
    assert setup.pump_on() is False and setup.mw_source.rf_output() is False
    assert float(setup.detector.bias_current()) == pytest.approx(bias_before, abs=1e-9)
    assert station.instrument("tagger").input1.enabled() is False
    station.close()
    again = analyze_run(result.run_id, db)
    assert again.to_json() == a.to_json()


def test_the_default_linewidth_is_flagged_and_widens_the_errors(open_bench: Any,
                                                                tmp_path: Path) -> None:
    station = open_bench("silicon_cw")
    powers = (0.5e-3, 1e-3, 2e-3, 3e-3)
    result = AddedNoiseScan(pump_powers=powers).run(station, tmp_path / "lab.db", quiet=True)
    a = result.analysis
    assert a is not None and a.verdict.good
    assert "DEFAULT mw_linewidth" in a.verdict.detail
    slope = a.values["added_noise_slope"]
    assert slope.stderr >= 0.5 * abs(slope.value)  # the placeholder's 50 % is propagated


def test_dead_detector_channel_is_no_signal_not_zero_noise(open_bench: Any,
                                                           tmp_path: Path) -> None:
    station = open_bench()
    station.instrument("tagger").input1.trigger_level(1.5)  # above the pulses: counts nothing
    result = AddedNoiseScan(pump_powers=(0.5e-3, 1e-3, 2e-3)).run(
        station, tmp_path / "lab.db", quiet=True)
    a = result.analysis
    assert a is not None and not a.verdict.good
    assert a.verdict.reason is Reason.NO_SIGNAL and "dead" in a.verdict.detail
    assert "added_noise_intrinsic" not in a.values and a.proposed == {}


def test_latched_detector_is_no_signal(open_bench: Any, tmp_path: Path) -> None:
    station = open_bench()
    result = AddedNoiseScan(pump_powers=(0.5e-3, 1e-3, 2e-3), detector_bias=12.5e-6).run(
        station, tmp_path / "lab.db", quiet=True)  # above the switching current
    a = result.analysis
    assert a is not None and not a.verdict.good
    assert a.verdict.reason is Reason.NO_SIGNAL and "latched" in a.verdict.detail


def test_pump_off_resonance_is_no_signal(open_bench: Any, tmp_path: Path) -> None:
    station = open_bench()  # bulk_eo_cw: 25 MHz optical linewidth, 2 GHz away sees nothing
    result = AddedNoiseScan(pump_powers=(0.5e-3, 1e-3, 2e-3), pump_detuning=2e9).run(
        station, tmp_path / "lab.db", quiet=True)
    a = result.analysis
    assert a is not None and not a.verdict.good and a.verdict.reason is Reason.NO_SIGNAL


def test_dead_time_model_matches_the_simulated_chain() -> None:
    """The correction's forward model against the simulator's detector and tagger."""
    snspd, model = SnspdModel(), DeadTimeModel()
    bias = snspd.operating_current
    for photons in (1e3, 1e5, 1e6, 5e6):
        incident = snspd.detection_efficiency(bias) * photons + snspd.dark_count_rate(bias)
        clicks = snspd.click_rate(photons, bias)
        counted = clicks / (1 + clicks * 3e-9)  # the ID1000 twin's 3 ns input dead time
        assert model.counted_rate(incident) == pytest.approx(counted, rel=1e-9)
        assert model.incident_rate(counted) == pytest.approx(incident, rel=1e-9)
    assert model.incident_rate(model.max_counted_rate) == math.inf


def test_fit_intervals_hold_the_truth_68_percent_of_the_time() -> None:
    """Coverage of the N_add line's one-sigma intervals under the measurement's noise model
    (Poisson counts on resonance and far detuned, Gaussian eta), bulk_eo_cw-like numbers.

    400 draws: the fraction inside is binomial with sd sqrt(0.683 x 0.317 / 400) = 0.023;
    4 sd either side is [0.59, 0.78]."""
    rng = np.random.default_rng(20261126)
    powers = np.array([0.37e-3, 0.74e-3, 1.48e-3, 2.22e-3, 2.96e-3])
    n0, k = 1.65, 2601.0
    c = powers / 0.211
    eta = 0.0429 * 4 * c / (1 + c) ** 2
    eta_err = 1e-3 * eta
    band, det, t = math.pi / 2 * 12e6, 0.447, 10.0
    leak = 3.5e6 * powers + 10.0
    r_on = det * (n0 + k * powers) * eta * band + leak
    draws, inside = 400, np.zeros(2)
    for _ in range(draws):
        on, far = rng.poisson(r_on * t), rng.poisson(leak * t)
        e = eta + rng.normal(0.0, eta_err)
        n, n_err = added_noise_points(e, eta_err, on / t, np.sqrt(on) / t, far / t,
                                      np.sqrt(far) / t, det, band)
        fit = fit_added_noise(powers, n, n_err)
        inside += [abs(fit.intercept - n0) < fit.intercept_stderr,
                   abs(fit.slope - k) < fit.slope_stderr]
    assert np.all(np.abs(inside / draws - 0.683) < 4 * math.sqrt(0.683 * 0.317 / draws)), \
        inside / draws


def test_a_detection_path_that_wanders_is_in_the_lines_errors() -> None:
    """The detection path's efficiency wanders from step to step (a random walk of 1 % a
    minute, steps 33 s apart: the realistic lab's 3 % with a 20 min correlation time, the
    characterization's step spacing); N_add follows it. With the walk's covariance
    (`detection_walk`) the slope's 1-sigma interval holds the truth 68.3 % of the time
    (400 draws, within 4 binomial sigma). Taken as 2 % independent per point, as before,
    the intervals held it 99 % (intercept) and 82 % (slope) of the time here, and on the
    realistic lab the fit's chi^2 was 0.1-0.2 per degree of freedom; counting errors alone
    hold it 55 % and 32 %."""
    rng = np.random.default_rng(11)
    powers = np.array([0.5e-3, 1e-3, 2e-3, 3e-3, 4e-3, 6e-3])
    n0, k = 98.5, 375.0  # piezo_om: N_add 98.5 + 375 / W P
    elapsed = 33.0 * np.arange(powers.size)
    truth = n0 + k * powers
    count_err = 0.003 * truth
    draws, inside = 400, np.zeros(2)
    for _ in range(draws):
        walk = np.concatenate([[0.0], np.cumsum(rng.normal(0.0, 0.01 * math.sqrt(33 / 60),
                                                           powers.size - 1))])
        n = truth * (1 + walk) + rng.normal(0.0, count_err)
        fit = fit_added_noise(powers, n, count_err, 0.0,
                              detection_walk(n, elapsed, 0.01))
        inside += [abs(fit.intercept - n0) < fit.intercept_stderr,
                   abs(fit.slope - k) < fit.slope_stderr]
    assert np.all(np.abs(inside / draws - 0.683) < 4 * math.sqrt(0.683 * 0.317 / draws)), \
        inside / draws


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="pump_powers"):
        AddedNoiseScan(pump_powers=(1e-3, 2e-3))
    with pytest.raises(ValueError, match="far_detuning"):
        AddedNoiseScan(far_detuning=1e9)
    with pytest.raises(ValueError, match="mw_linewidth"):
        AddedNoiseScan(mw_linewidth=0.0)
