"""The efficiency map far below C = 1 with a drift between its rows (issue 13, the
bulk_eo_cw regression): the map runs its powers upwards, so a drift over the rows looks like
the bend that c measures. Its c must keep its stated error (or the map must say c is poorly
constrained); without a drift the analysis must stay as sharp as before.

Stored runs are made here (the analysis' own input: meter readings on and off, the read-back
columns), so the truth is known exactly and many seeds are cheap. The tolerance is the central
99.8 % of chi^2 with one degree of freedom per seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import chi2

from qnetlab.sequences.data import StoredRun
from qnetlab.sequences.transducer.bench import OFF, ON, SETUP
from qnetlab.sequences.transducer.efficiency import (
    EfficiencyMapAnalysis,
    EfficiencyMapOptions,
)
from qnetlab.sequences.transducer.efficiency_fits import Calibration, full_conversion_power

S, C = 0.23, 1.136
"""Low-power slope and cooperativity slope, 1/W: bulk_eo_cw's (C = 0.011 at 10 mW)."""
WIDTH = 25e6
"""Hz, the optical line (bulk_eo_cw's)."""
CAL = Calibration(mw_line_attenuation=60.0, optical_output_loss=3.0)
MW_DBM = 10.0
WAVELENGTH = 1550e-9
METER_NOISE = 20e-12
"""W rms per reading (the meter's floor, 50 pW per sample, a few samples averaged)."""
WHITE = 0.002
"""Relative scatter of each point (the laser's per-setting power stability)."""
SEEDS = 40
CHI2_RANGE = (float(chi2.ppf(0.001, SEEDS)), float(chi2.ppf(0.999, SEEDS)))


def map_run(row_step: float, seed: int, row_error: float = 0.0) -> StoredRun:
    """A stored efficiency map on the default grid (8 powers upwards, the serpentine
    detunings) of the line `S`, `C`, `WIDTH`, each row's height scaled by a relative random
    walk of step `row_step` from row to row and by its own relative error `row_error`."""
    options = EfficiencyMapOptions(optical_linewidth=WIDTH)
    rng = np.random.default_rng(seed)
    powers, detunings = options.pump_powers(), options.detunings()
    walk = np.cumsum(rng.normal(0.0, row_step, powers.size))
    walk += rng.normal(0.0, row_error, powers.size)
    p, d, scale = [], [], []
    for k, power in enumerate(powers):
        row = detunings[::-1] if k % 2 else detunings
        p += [power] * row.size
        d += list(row)
        scale += [1 + walk[k]] * row.size
    pa, da = np.array(p), np.array(d)
    eta = S * pa / (1 + C * pa) ** 2 / (1 + (2 * da / WIDTH) ** 2) * np.array(scale)
    eta *= 1 + rng.normal(0.0, WHITE, pa.size)
    mw, wavelength = np.full(pa.size, MW_DBM), np.full(pa.size, WAVELENGTH)
    f_mw = np.full(pa.size, options.mw_frequency)
    full = full_conversion_power(mw, f_mw, wavelength, CAL)
    leak = 1e-9  # the pump's leakage into the meter, the same on and off
    on = eta * full + leak + rng.normal(0.0, METER_NOISE, pa.size)
    off = leak + rng.normal(0.0, METER_NOISE, pa.size)
    parameters = {"mw_line_attenuation": {"value": CAL.mw_line_attenuation},
                  "optical_output_loss": {"value": CAL.optical_output_loss}}
    snapshot = {"station": {"instruments": {SETUP: {"parameters": parameters}}}}
    data = {"pump_power": pa, "pump_detuning": da, "pump_wavelength": wavelength,
            "mw_frequency": f_mw, "mw_power": mw, ON: on, OFF: off}
    return StoredRun(1, Path("lab.db"), "guid", "efficiency_map", data, {},
                     {"status": "completed", "options": {"optical_linewidth": WIDTH}},
                     snapshot)


def c_pulls(row_step: float, row_error: float = 0.0) -> tuple[np.ndarray, int]:
    """Pulls of c (its statistical error: the pump axis's scale is not drawn here) over
    `SEEDS` maps, and how many maps the analysis called good."""
    pulls, good = [], 0
    for seed in range(SEEDS):
        result = EfficiencyMapAnalysis().analyze(map_run(row_step, seed, row_error))
        c = result.values["cooperativity_slope"]
        pulls.append((c.value - C) / c.stat)
        good += bool(result.verdict.good)
    return np.array(pulls), good


def test_a_drift_between_the_rows_is_in_the_cooperativitys_error() -> None:
    """A 0.7 % random walk from row to row (about what the realistic lab's pump delivery,
    line and meter ranges do over a bulk_eo_cw map): c's pulls are chi^2-distributed, and
    the map is rarely good (its c is rarely 5 sigma: only the walk's lucky draws). Before the
    rows were refitted, chi^2 of these pulls was 1222 and 18 of the 40 maps were good."""
    pulls, good = c_pulls(0.007)
    total = float(np.sum(pulls**2))
    assert CHI2_RANGE[0] < total < CHI2_RANGE[1], (total, np.round(pulls, 2))
    assert good <= SEEDS // 4, good


def test_without_a_drift_the_map_stays_as_sharp() -> None:
    """No drift between rows: the refit finds none, c keeps the joint fit's error (pulls
    chi^2-distributed) and is resolved well beyond 5 sigma on every map."""
    pulls, good = c_pulls(0.0)
    total = float(np.sum(pulls**2))
    assert CHI2_RANGE[0] < total < CHI2_RANGE[1], (total, np.round(pulls, 2))
    assert good == SEEDS


def test_rows_set_each_with_its_own_error_are_not_understated() -> None:
    """Each row off by its own 0.5 % (the laser's power setting, nothing carried from row to
    row). Eight rows cannot tell that from a walk, and mistaking a walk for it would
    understate c's error, so the larger reading, the walk's, is stated: c's error is
    conservative here (chi^2 ~6 of 40 seeds, errors ~2.5x), never too small. The joint fit
    alone gave chi^2 145 and called 28 of the 40 maps good."""
    pulls, _ = c_pulls(0.0, 0.005)
    total = float(np.sum(pulls**2))
    assert total < CHI2_RANGE[1], (total, np.round(pulls, 2))
