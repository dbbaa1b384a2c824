"""The conversion bandwidth scan's error model (issue 13, honest error bars).

On the realistic lab the conversion bandwidth and centre held the truth within one stated
sigma on 26 of 28 benches (the binomial's 99 % range is 13-25): their errors counted things
twice. The up-and-down scan's mean cancels a drift linear over the scan, yet half the
passes' difference (one pass's error) was added to it; the power meter's range steps were
stated as 0.25 % of every width (also a line read on one current range, where a range's gain
is a common scale) and counted again as correlated scatter. These tests run the analysis on
stored runs whose truth is known (synthetic power-meter readings, meter noise only, fixed
seeds) and the scan itself through the drivers on the realistic simulated bench.

Then (session 24) the coverage study found the centre optimistic on bulk_eo_pulsed (6 of 21
benches within one sigma, pulls up to 4) and over-conservative on piezo_om_integrated (20 of
21): the band's height drifts during the scan not linearly in time (the pump's detuning from
the drifting optical resonance), which the passes' mean does not cancel, and the meter's
range steps were counted as scatter at every point. The fit now models the height's drift in
time and fits the range gains (`_drifting_line`); the coverage test below checks the pulls
over seeded synthetic scans.

Tolerances: values within Z = 4 stated errors of the truth (fixed seeds: a failure is a
change, never a flake); the error sizes are checked against what the data sheets imply with
factors of 2 of room where the fit's own numbers enter.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from qnetlab.instruments.station import load_station
from qnetlab.sequences.data import StoredRun
from qnetlab.sequences.transducer.bandwidth import (
    MW_SOURCE_FREQUENCY_ACCURACY,
    ConversionBandwidthAnalysis,
    ConversionBandwidthOptions,
    ConversionBandwidthScan,
)
from qnetlab.sequences.transducer.bench import OFF, ON, SETUP
from qnetlab.sequences.transducer.efficiency_fits import (
    DATA_SHEET_COVERAGE,
    Calibration,
    full_conversion_power,
)
from qnetlab.sequences.transducer.meter_shape import METER_CURRENT_RANGES, SENSOR_RESPONSIVITY
from qnetlab.sequences.transducer.optical_resonance import OpticalResonanceScan
from qnetlab.sim_instruments.visa_backend import bench_of

from conftest import bench_config

Z = 4.0
F0 = 8.0e9
WIDTH = 10e6
CAL = Calibration(mw_line_attenuation=60.0, optical_output_loss=3.0)
MW_DBM = 10.0
WAVELENGTH = 1550e-9
METER_NOISE = 20e-12
"""W rms per reading: the meter's floor (50 pW per sample, 10 samples averaged) rounded."""


def stored_scan(data: dict) -> StoredRun:
    """A stored bandwidth scan of `data`, its snapshot holding `CAL`'s constants."""
    parameters = {"mw_line_attenuation": {"value": CAL.mw_line_attenuation},
                  "optical_output_loss": {"value": CAL.optical_output_loss}}
    snapshot = {"station": {"instruments": {SETUP: {"parameters": parameters}}}}
    return StoredRun(1, Path("lab.db"), "guid", "conversion_bandwidth_scan", data, {},
                     {"status": "completed"}, snapshot)


def bandwidth_run(peak_power: float, *, drift: float = 0.0, range_gain: float = 0.0,
                  seed: int = 1) -> StoredRun:
    """A stored bandwidth scan (the options' interleaved grid around `F0`) of a Lorentzian
    band `WIDTH` wide whose converted light peaks at `peak_power` W at the meter: the up pass
    sees the band at ``F0 + drift``, the down pass at ``F0 - drift`` (a drift linear over the
    scan); `range_gain` is the relative gain error of the readings above the 50 nA range."""
    options = ConversionBandwidthOptions(center=F0, span=6 * WIDTH)
    f = options.acquisition_order()
    up = np.arange(f.size) < (f.size + 1) // 2
    centre = np.where(up, F0 + drift, F0 - drift)
    mw, wavelength = np.full(f.size, MW_DBM), np.full(f.size, WAVELENGTH)
    full = full_conversion_power(mw, f, wavelength, CAL)
    eta = peak_power / float(np.max(full)) / (1 + (2 * (f - centre) / WIDTH) ** 2)
    rng = np.random.default_rng(seed)
    on = eta * full + rng.normal(0.0, METER_NOISE, f.size)
    off = rng.normal(0.0, METER_NOISE, f.size)
    above = on * SENSOR_RESPONSIVITY > METER_CURRENT_RANGES[0]
    on = np.where(above, on * (1 + range_gain), on)
    return stored_scan({"mw_frequency": f, "mw_power": mw, "pump_wavelength": wavelength,
                        ON: on, OFF: off})


def analyzed(run: StoredRun) -> dict:
    result = ConversionBandwidthAnalysis().analyze(run)
    assert result.verdict.good, result.verdict
    return result.values


def test_the_passes_mean_is_not_charged_the_drift_it_cancels() -> None:
    """A band that moves linearly during the scan (the passes 40 kHz apart, ~30 times the
    centre's statistical error): the mean of the passes is the band's mean position, so its
    error stays the statistical one. Before, half the passes' difference (20 kHz) was added
    and the centre's stated error was ~15 times its actual error."""
    drift = 20e3
    values = analyzed(bandwidth_run(30e-9, drift=drift))
    centre = values["conversion_center_frequency"]
    assert abs(centre.value - F0) < Z * centre.stderr, centre
    assert centre.stat < drift / 5, centre
    width = values["conversion_bandwidth"]
    assert abs(width.value - WIDTH) < Z * width.stderr, width


def test_the_centre_carries_the_sources_timebase_as_the_data_sheet_implies() -> None:
    """The scan's axis is the N5183B's setting: the centre's systematic error is the
    timebase accuracy read as k = 2 (+-1e-7 -> 5e-8 x 8 GHz = 400 Hz); the meter's shape,
    symmetric about the centre, adds little to it (the linearity's bend, even in
    frequency, reaches the centre only through the height's drift in time, which the scan's
    two passes see alike: ~100 Hz in quadrature here, under 10 %)."""
    centre = analyzed(bandwidth_run(30e-9))["conversion_center_frequency"]
    expected = MW_SOURCE_FREQUENCY_ACCURACY / DATA_SHEET_COVERAGE * F0
    assert expected <= centre.sys < 1.1 * expected, centre


def test_a_band_read_on_one_current_range_has_no_range_step_error() -> None:
    """Converted light below 50 nW is read on the PM100D's 50 nA range only: that range's
    gain error scales every point and leaves the width alone, and only the sensor's
    linearity (0.5 % over six decades, ~0.1 % across the band's 1.5 decades) can bend it.
    Before, every width carried 0.25 % (the lowest ranges' +-0.5 % as one sigma)."""
    width = analyzed(bandwidth_run(30e-9))["conversion_bandwidth"]
    assert 0 < width.sys < 5e-4 * width.value, width


def test_a_band_across_a_range_boundary_measures_the_range_step() -> None:
    """Converted light peaking at 150 nW: the peak is read on the 500 nA range and the flanks
    on the 50 nA range. The fit measures the gain step between them (a free gain per range
    but the line's own, known to the meter noise): a 2-sigma step (0.5 %, the data sheet's
    +-0.5 % at k = 2, twice) moves the width by a small part of its statistical error, and
    only the linearity is left as the shape's systematic error, the same with or without the
    step. Before, the step was a systematic error of ~0.14 % of the width (+-14 kHz) and the
    fit moved by ~9 kHz with it."""
    clean = analyzed(bandwidth_run(150e-9))["conversion_bandwidth"]
    stepped = analyzed(bandwidth_run(150e-9, range_gain=0.005))["conversion_bandwidth"]
    assert abs(stepped.value - clean.value) < 0.1 * clean.stat, (stepped, clean)
    assert stepped.sys == pytest.approx(clean.sys, rel=0.01), (stepped, clean)
    assert 0 < clean.sys < 5e-4 * clean.value, clean


def drifting_band_run(seed: int, *, height_slope: float, range_step: float,
                      relative_noise: float = 2e-4, peak_power: float = 150e-9) -> StoredRun:
    """`bandwidth_run`'s band (peak read on the 500 nA range, flanks on the 50 nA one, the
    readings above 50 nA `range_step` off) whose height drifts during the scan as the
    realistic lab's does: linear in time with a slope that turns once, at a random time
    (slopes N(0, `height_slope`) per half scan), and each point off by `relative_noise`
    (rms, relative: the pump's power) besides the meter noise."""
    rng = np.random.default_rng(seed)
    options = ConversionBandwidthOptions(center=F0, span=6 * WIDTH)
    f = options.acquisition_order()
    t = np.linspace(-1.0, 1.0, f.size)
    knot = rng.uniform(-1.0, 1.0)
    before, after = rng.normal(0.0, height_slope, 2)
    height = 1 + np.where(t < knot, before, after) * (t - knot)
    mw, wavelength = np.full(f.size, MW_DBM), np.full(f.size, WAVELENGTH)
    full = full_conversion_power(mw, f, wavelength, CAL)
    eta = height * peak_power / float(np.max(full)) / (1 + (2 * (f - F0) / WIDTH) ** 2)
    eta = eta * (1 + relative_noise * rng.normal(size=f.size))
    on = eta * full + rng.normal(0.0, METER_NOISE, f.size)
    off = rng.normal(0.0, METER_NOISE, f.size)
    on = np.where(on * SENSOR_RESPONSIVITY > METER_CURRENT_RANGES[0], on * (1 + range_step), on)
    return stored_scan({"mw_frequency": f, "mw_power": mw, "pump_wavelength": wavelength,
                        ON: on, OFF: off})


SEEDS = 20
CHI2_RANGE = (5.92, 45.31)
"""Central 99.8 % of chi^2 with `SEEDS` degrees of freedom (scipy.stats.chi2.ppf(0.001, 20),
.isf(0.001, 20)): the sum of `SEEDS` squared pulls with honest errors lies outside it with
0.2 % probability (fixed seeds: a failure is a change, not a flake)."""


@pytest.mark.parametrize("height_slope, range_step", [(0.01, 0.0025), (0.0, 0.005)],
                         ids=["height-drifting", "range-step"])
def test_drifting_bands_are_covered_by_their_stated_errors(height_slope: float,
                                                           range_step: float) -> None:
    """Over `SEEDS` synthetic scans whose truth is known, the centre's and the width's
    pulls (value - truth) / stat are honest: their squares sum to chi^2(`SEEDS`)
    (`CHI2_RANGE`; the synthetic runs have no timebase or linearity error, so `stat` is
    the whole error). height-drifting: the band's height drifts by ~1 % over the scan with
    one turn of its slope (bulk_eo_pulsed on the realistic lab); the old fit (one height
    and centre per pass) had a centre pull sum of ~119, the drift's even part in time
    shifting both passes' centres alike. range-step: no drift, a 2-sigma range step; the
    old fit counted the step as scatter at every point and its centre pull sum was ~3
    (over-conservative, piezo_om_integrated's 20 of 21 within one sigma)."""
    pulls = {"conversion_center_frequency": [], "conversion_bandwidth": []}
    truth = {"conversion_center_frequency": F0, "conversion_bandwidth": WIDTH}
    for seed in range(SEEDS):
        values = analyzed(drifting_band_run(seed, height_slope=height_slope,
                                            range_step=range_step))
        for name, out in pulls.items():
            out.append((values[name].value - truth[name]) / values[name].stat)
    for name, out in pulls.items():
        chi2 = float(np.sum(np.square(out)))
        assert CHI2_RANGE[0] < chi2 < CHI2_RANGE[1], (name, chi2, np.round(out, 2))


@pytest.mark.slow
def test_the_scan_on_the_realistic_lab_states_what_its_meter_range_implies(
        tmp_path: Path) -> None:
    """Through the drivers on the realistic bench (data-sheet instrument errors, drifting
    resonances): a band whose converted light stays on one current range (the source at
    -10 dBm) is measured within its stated errors, and its width's systematic error is the
    linearity's, not the range accuracy's 0.25 %; the centre carries the timebase."""
    config = bench_config(tmp_path, "bulk_eo_cw", simulation={"ideal": False, "seed": 11})
    with load_station(config) as station:
        world = bench_of(station.instrument("vna")).world
        model, setup, db = world.transducer, station.setup, tmp_path / "lab.db"
        assert setup is not None
        f_mw = world.mw_resonance_frequency()
        optical = OpticalResonanceScan(mw_frequency=f_mw).run(station, db, quiet=True).analysis
        assert optical is not None and optical.verdict.good, optical
        setup.optical_resonance_wavelength(optical.proposed["optical_resonance_wavelength"])
        before = world.mw_resonance_frequency()
        band = ConversionBandwidthScan(center=f_mw, span=6 * model.mw_linewidth,
                                       mw_power=-10.0).run(station, db, quiet=True).analysis
        after = world.mw_resonance_frequency()
        timebase = bench_of(station.instrument("mw_source")).device(
            "mw_source").accuracy_errors()[0]
    assert band is not None and band.verdict.good, band
    width, centre = band.values["conversion_bandwidth"], band.values["conversion_center_frequency"]
    assert band.details["meter_shape_error_fwhm"] == pytest.approx(width.sys)
    assert 0 < width.sys < 5e-4 * width.value, width
    assert abs(width.value - model.mw_linewidth) < Z * width.stderr, width
    # The source sets f, the device sees f (1 + timebase): the centre in setting units.
    truth = (before + after) / 2 / (1 + timebase)
    assert abs(centre.value - truth) < Z * math.hypot(centre.stat, (after - before) / 2), centre
    assert centre.sys >= MW_SOURCE_FREQUENCY_ACCURACY / DATA_SHEET_COVERAGE * f_mw * 0.99
