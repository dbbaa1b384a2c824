"""The efficiency-side analyses on the realistic lab (`qnetlab.simulation.ideal: false`).

On a bench with data-sheet instrument errors (a VNA with cable ripple and residual
directivity, a laser off its setting, a power meter with range steps and sensor error, a
source off its level) and drifting resonances, the microwave resonance scan, the optical
resonance scan, the efficiency map and the conversion bandwidth scan must still give good
verdicts, values within their stated (combined) errors of the truth the bench had while it
measured, and errors of a real lab's size (efficiency to ~10 %, not 1e-7); a model that
cannot describe the data (the VNA's background left out) must give a poor verdict. The
analyses read only the runs; the tests read the simulator's truth.

Tolerance: |value - truth| < Z combined standard errors with Z = 3.5. The file checks
about 30 values; for Gaussian errors the chance that any exceeds 3.5 sigma is
30 x 4.7e-4 = 1.4 %, and the seeds are fixed, so a failure is a change, never a flake.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qnetlab.instruments.station import LabStation, load_station
from qnetlab.sequences.analysis import FitValue, Reason
from qnetlab.sequences.data import load_run
from qnetlab.sequences.resonance import (
    AUTO_ORDER,
    MicrowaveResonanceAnalysis,
    MicrowaveResonanceScan,
)
from qnetlab.sequences.transducer.bandwidth import ConversionBandwidthScan
from qnetlab.sequences.transducer.bench import SPEED_OF_LIGHT
from qnetlab.sequences.transducer.efficiency import EfficiencyMap
from qnetlab.sequences.transducer.efficiency_fits import (
    fit_lorentzian_with_scatter,
    interleaved,
    passes,
)
from qnetlab.sequences.transducer.optical_resonance import OpticalResonanceScan
from qnetlab.sim_instruments.devices import santec_tsl570 as tsl570
from qnetlab.sim_instruments.visa_backend import bench_of

from conftest import bench_config

Z = 3.5


def realistic_bench(folder: Path, preset: str, seed: int) -> Path:
    return bench_config(folder, preset, simulation={"ideal": False, "seed": seed})


@pytest.fixture
def station(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LabStation]:
    preset, seed = request.param
    with load_station(realistic_bench(tmp_path, preset, seed)) as opened:
        yield opened


def world_of(station: LabStation) -> Any:
    return bench_of(station.instrument("vna")).world


def assert_within(value: FitValue, truth: float, what: str, extra: float = 0.0) -> None:
    """|value - truth| < Z sigma, sigma the stated combined error (and `extra`, the truth's
    own motion during the scan, in quadrature)."""
    sigma = math.hypot(value.stderr, extra)
    assert value.stderr > 0 and math.isfinite(value.stderr), (what, value)
    assert abs(value.value - truth) < Z * sigma, \
        f"{what}: {value} vs truth {truth:.9g} ({(value.value - truth) / sigma:+.2f} sigma)"


# -- the pump laser: repeatability only on coarse moves -----------------------------------------
def test_laser_fine_steps_keep_the_landing_of_the_coarse_move(tmp_path: Path) -> None:
    """Steps within the fine-tuning range share the repeatability error of the coarse move
    before them (the emitted wavelength is the setting plus one fixed offset); a move beyond
    that range lands afresh. Before the fix every setting drew a fresh ~0.25 pm error, which
    scrambled a 0.1 pm-step scan."""
    with load_station(realistic_bench(tmp_path, "bulk_eo_pulsed", 3)) as station:
        laser = station.instrument("pump_laser")
        world = world_of(station)
        laser.wavelength(1550.2e-9)
        laser.output(True)
        offsets = []
        for k in range(40):  # 0.1 pm steps over 4 pm, well inside the fine-tuning range
            setpoint = 1550.2e-9 + k * 0.1e-12
            laser.wavelength(setpoint)
            offsets.append(world.pump.wavelength - setpoint)
        assert np.ptp(offsets) < 1e-17, np.ptp(offsets)  # one offset (float rounding only)
        far = []
        step = 2 * tsl570.FINE_TUNING_RANGE_PM * 1e-12
        for k in range(40):  # coarse moves back and forth: each lands afresh
            setpoint = 1550.2e-9 + (k % 2) * step
            laser.wavelength(setpoint)
            far.append(world.pump.wavelength - setpoint)
        sigma = tsl570.WAVELENGTH_REPEATABILITY_PM * 1e-12 / 2
        # 40 draws of the repeatability: their spread is within a factor ~1.5 of sigma.
        assert 0.5 * sigma < float(np.std(far)) < 1.6 * sigma


# -- the four scans on the realistic bench -------------------------------------------------------
CASES = [("piezo_om_integrated", 1), ("bulk_eo_pulsed", 2), ("silicon_cw", 3)]


@pytest.mark.slow
@pytest.mark.parametrize("station", CASES, indirect=True, ids=[f"{p}-{s}" for p, s in CASES])
def test_efficiency_side_recovers_the_truth_on_the_realistic_lab(station: LabStation,
                                                                 tmp_path: Path) -> None:
    world, db = world_of(station), tmp_path / "lab.db"
    model, setup = world.transducer, station.setup
    assert setup is not None and not world.ideal

    # 1. Microwave resonance: 20 linewidths, the VNA background chosen by the data.
    before = world.mw_resonance_frequency()
    mw = MicrowaveResonanceScan(center=model.mw_resonance_frequency,
                                span=20 * model.mw_linewidth, points=401,
                                segments=4).run(station, db, quiet=True).analysis
    after = world.mw_resonance_frequency()
    assert mw is not None and mw.verdict.good, mw
    f0, kappa = mw.values["resonance_frequency"], mw.values["linewidth"]
    assert_within(f0, (before + after) / 2, "mw resonance", abs(after - before) / 2)
    assert_within(kappa, model.mw_linewidth, "mw linewidth")
    assert mw.details["background_order"] >= 1  # the cable ripple is there and modelled

    # 2. Optical resonance (scanned up and down).
    setup.mw_frequency(f0.value)
    before = world.optical_resonance_frequency()
    optical = OpticalResonanceScan(mw_frequency=f0.value).run(station, db, quiet=True).analysis
    after = world.optical_resonance_frequency()
    assert optical is not None and optical.verdict.good, optical
    wavelength = optical.values["optical_resonance_wavelength"]
    # The laser's absolute accuracy is the wavelength's systematic error (~0.8 pm).
    assert wavelength.sys > 0.5e-12
    assert_within(wavelength, SPEED_OF_LIGHT / ((before + after) / 2), "optical resonance")
    width = optical.values["optical_linewidth"]
    assert_within(width, model.optical_linewidth, "optical linewidth")
    setup.optical_resonance_wavelength(optical.proposed["optical_resonance_wavelength"])

    # 3. Efficiency map: eta_max and P(C=1) carry the instruments' scale errors.
    om = model.kind == "optomechanical"
    c_em = model.em_cooperativity
    truth_eta = model.external_efficiency * (c_em / (1 + c_em) if om else 1.0)
    truth_p1 = model.pump_power_at_unit_cooperativity * (1 + c_em if om else 1)
    emap = EfficiencyMap(mw_frequency=f0.value, mw_frequency_stderr=f0.stderr,
                         mw_linewidth=kappa.value, optical_linewidth=width.value).run(
        station, db, quiet=True).analysis
    assert emap is not None and emap.verdict.good, emap
    eta_max = emap.values["eta_max"]
    p1 = emap.values["pump_power_at_unit_cooperativity"]
    assert_within(eta_max, truth_eta, "eta_max")
    assert_within(p1, truth_p1, "P(C=1)")
    # A real lab's sizes: the source's level accuracy (+-0.9 dB) alone is ~10 % on eta.
    assert 0.05 < eta_max.stderr / eta_max.value < 0.3, eta_max
    assert 0.02 < p1.stderr / p1.value < 0.3, p1

    # 4. Conversion bandwidth (scanned up and down).
    band = ConversionBandwidthScan(center=f0.value, span=6 * kappa.value).run(
        station, db, quiet=True).analysis
    assert band is not None and band.verdict.good, band
    bandwidth = band.values["conversion_bandwidth"]
    assert_within(bandwidth, model.mw_linewidth, "conversion bandwidth")
    # The meter's range steps are fitted (test_conversion_error_model.py): what bounds the
    # width's error from below is the sensor's linearity (+-0.5 % over six decades, k = 2:
    # ~1e-4 of the width for a band spanning a decade or two) and the band's drift.
    assert 1e-4 < bandwidth.stderr / bandwidth.value < 0.05, bandwidth
    assert band.values["peak_efficiency"].stderr / band.values["peak_efficiency"].value > 0.05


# -- a model that cannot describe the data is a poor fit ---------------------------------------
@pytest.mark.parametrize("station", [("bulk_eo_pulsed", 1)], indirect=True,
                         ids=["bulk_eo_pulsed-1"])
def test_a_vna_trace_fitted_without_its_background_is_a_poor_fit(station: LabStation,
                                                                 tmp_path: Path) -> None:
    """The realistic VNA's cable ripple over a 100 MHz window: with the background held
    constant (`background_order=0`, the old model) the residuals are structured and the
    verdict is a poor fit; the same trace with the background chosen by the data is good."""
    model = world_of(station).transducer
    scan = MicrowaveResonanceScan(center=model.mw_resonance_frequency, span=100e6,
                                  points=2001, segments=2, background_order=0)
    run = scan.run(station, tmp_path / "lab.db", quiet=True)
    assert run.analysis is not None
    assert not run.analysis.verdict.good
    assert run.analysis.verdict.reason == Reason.POOR_FIT, run.analysis.verdict
    assert "structured" in run.analysis.verdict.detail
    stored = load_run(run.run_id, tmp_path / "lab.db")
    stored.metadata["options"] = {**stored.options, "background_order": AUTO_ORDER}
    again = MicrowaveResonanceAnalysis().analyze(stored)
    assert again.verdict.good, again.verdict
    assert again.details["background_order"] >= 4  # ripple over the window needs terms


def test_two_lines_are_a_poor_fit_not_a_wide_scatter() -> None:
    """Two Lorentzians half a width apart fitted as one: the scatter it needs is far beyond
    what the bench's instruments and drifts leave, so the fit says so."""
    x = np.linspace(-5e8, 5e8, 201)
    line = 1e-6 / (1 + (2 * (x + 4e7) / 5e7) ** 2) + 0.8e-6 / (1 + (2 * (x - 4e7) / 5e7) ** 2)
    rng = np.random.default_rng(7)
    y = line + rng.normal(0, 2e-11, x.size)
    fit, _, scatter = fit_lorentzian_with_scatter(x, y, 2e-11, bound=1.5)
    assert fit is not None and scatter.too_large, scatter


def test_an_interleaved_scan_is_recognised_and_an_old_one_is_not() -> None:
    grid = np.arange(11.0)
    order = interleaved(grid)
    assert sorted(order) == list(grid) and order[0] == 0 and order[5] == 10
    up = passes(order)
    assert up is not None and up.sum() == 6 and np.all(np.diff(order[up]) > 0)
    assert passes(grid) is None  # a one-way scan: no passes to compare
