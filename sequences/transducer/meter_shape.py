"""The power meter's distortion of a scanned line's shape, as a systematic error.

A line scanned with the power meter (the conversion band) is read through the console's
photocurrent ranges and the sensor's linearity. A gain common to every point scales the line
and leaves its width and centre alone; what moves them is a gain that differs between the
points: auto-ranging reads the peak on one current range and the flanks on another, each with
its own unknown but fixed gain error, and the sensor's linearity error grows with the decades
between the peak and the flanks. So the width's systematic error depends on where the line's
readings fall, and is zero for a line read on one range: this module propagates each data-sheet
accuracy through the line's own fit (refit with that gain changed, the shift per unit gain
times the accuracy's standard deviation), rather than stating one fraction for every line.

Sources: Thorlabs PM100D data sheet / operation manual, "Specifications", photodiode input:
current ranges 50 nA to 5 mA in decades, accuracy +-0.5 % of full scale on the 50 nA and
500 nA ranges and +-0.2 % above (read as a relative gain error of the range); Thorlabs
S-series InGaAs photodiode sensors (S155C / S144C): responsivity about 1.0 A/W at 1550 nm,
linearity within +-0.5 % over the sensor's power range (typical, not a guaranteed data-sheet
figure). Bounds are read as k = 2 (`efficiency_fits.DATA_SHEET_COVERAGE`), as the simulated
lab draws them (`sim_instruments/physics/instrument_errors.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .efficiency_fits import DATA_SHEET_COVERAGE

METER_CURRENT_RANGES = (50e-9, 500e-9, 5e-6, 50e-6, 500e-6, 5e-3)
"""A, full scale of the PM100D's photodiode current ranges (data sheet, "Specifications")."""
METER_RANGE_ACCURACY = (5e-3, 5e-3, 2e-3, 2e-3, 2e-3, 2e-3)
"""+-fraction per range of `METER_CURRENT_RANGES` (PM100D data sheet: +-0.5 % f.s. on the two
lowest ranges, +-0.2 % f.s. above), each range's gain error independent of the others'."""
SENSOR_RESPONSIVITY = 1.0
"""A/W, the InGaAs sensor's responsivity near 1550 nm (S-series spec sheets' curve): turns a
reading (W) into the photocurrent that picks the range."""
SENSOR_LINEARITY = 0.005
"""+-relative deviation from linearity over the sensor's power range (InGaAs, typical)."""
LINEARITY_REFERENCE = 1e-3
"""W, where the sensor is calibrated (its linearity error vanishes there)."""
LINEARITY_DECADES = 6.0
"""Decades of power over which the linearity error reaches `SENSOR_LINEARITY` (the sensor's
range, 20 mW down to 20 nW): the deviation is read as linear in log power."""
GAIN_STEP = 0.01
"""Relative gain change of the refits (small enough that the shift is linear in it)."""


@dataclass(frozen=True)
class MeterReadings:
    """The two readings behind each point's efficiency, in the fit's order: W at the meter,
    and the power eta = 1 would give (W), so that a reading's gain change maps to eta."""

    on: np.ndarray
    off: np.ndarray
    full: np.ndarray


def range_index(power: np.ndarray) -> np.ndarray:
    """Index into `METER_CURRENT_RANGES` of the range auto-ranging reads each power (W) on:
    the smallest whose full scale holds its photocurrent (the top one if none does)."""
    current = np.abs(np.asarray(power, float)) * SENSOR_RESPONSIVITY
    index = np.searchsorted(np.asarray(METER_CURRENT_RANGES), current, side="left")
    return np.minimum(index, len(METER_CURRENT_RANGES) - 1)


def linearity_shape(power: np.ndarray) -> np.ndarray:
    """The linearity error's shape per power (W): its deviation in units of
    `SENSOR_LINEARITY` (linear in decades from `LINEARITY_REFERENCE`, at most 1)."""
    p = np.asarray(power, float)
    decades = np.log10(np.maximum(p, 1e-30) / LINEARITY_REFERENCE) / LINEARITY_DECADES
    return np.where(p > 0, np.clip(decades, -1.0, 1.0), 0.0)


def gain_patterns(readings: MeterReadings) -> list[tuple[np.ndarray, float]]:
    """Each independent gain error of the meter as (the change of every point's eta per unit
    gain, the gain's standard deviation): one per current range the readings used, and the
    sensor's linearity."""
    on, off, full = readings.on, readings.off, readings.full
    r_on, r_off = range_index(on), range_index(off)
    patterns = []
    for k in np.unique(np.concatenate([r_on, r_off])):
        d_eta = (np.where(r_on == k, on, 0.0) - np.where(r_off == k, off, 0.0)) / full
        patterns.append((d_eta, METER_RANGE_ACCURACY[int(k)] / DATA_SHEET_COVERAGE))
    d_eta = (on * linearity_shape(on) - off * linearity_shape(off)) / full
    patterns.append((d_eta, SENSOR_LINEARITY / DATA_SHEET_COVERAGE))
    return patterns


def line_shape_errors(refit: Callable[[np.ndarray], tuple[float, float] | None],
                      y: np.ndarray, readings: MeterReadings, base: tuple[float, float]
                      ) -> tuple[float, float]:
    """(width, centre) systematic errors, in the fit's x unit, of a line fitted to `y` (eta
    per point) whose (width, centre) are `base`, from the meter's range gains and linearity:
    for each gain error, `refit` (the same fit, the same point errors: its (width, centre),
    or None if it fails) of `y` with that gain changed by `GAIN_STEP`, the shift per unit
    gain times the gain's standard deviation, added in quadrature (the gains are
    independent). A refit that fails counts as the width's full `GAIN_STEP`-relative shift
    (conservative)."""
    width_var = centre_var = 0.0
    for d_eta, sigma in gain_patterns(readings):
        if not np.any(d_eta):
            continue
        moved = refit(np.asarray(y, float) + GAIN_STEP * d_eta)
        if moved is None:
            dw, dc = abs(base[0]), 0.0
        else:
            dw, dc = (moved[0] - base[0]) / GAIN_STEP, (moved[1] - base[1]) / GAIN_STEP
        width_var += (dw * sigma) ** 2
        centre_var += (dc * sigma) ** 2
    return math.sqrt(width_var), math.sqrt(centre_var)
