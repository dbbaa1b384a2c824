"""Data-sheet errors of the emulated instruments (the realistic lab, `LabWorld.ideal` False).

A data sheet states an accuracy as a bound, "+-a": the instrument's error is unknown but
fixed (until it is recalibrated), and the maker guarantees it lies within +-a. The emulators
draw that error once per instrument instance from a normal distribution whose standard
deviation is a / `COVERAGE_FACTOR`: a bound read as an expanded uncertainty with coverage
factor k = 2 (about 95 %), as calibration certificates state it (JCGM 100:2008, the GUM,
section 6.2). A "repeatability" bound is read the same way but drawn anew at every setting.

Each kind of error has its own generator, ``world.rng(f"{instrument}/{what}")``, so the
draws are fixed for a bench (its seed), differ across seeds, and take no numbers from the
generators the clean lab uses: with ``ideal`` True every emulator behaves exactly as before.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .world import LabWorld

COVERAGE_FACTOR = 2.0
"""A data sheet's +-bound is taken as 2 standard deviations (k = 2, about 95 %)."""


def sigma_of_bound(bound: float) -> float:
    """The standard deviation behind a data sheet's +-`bound` (same unit)."""
    return bound / COVERAGE_FACTOR


def db_bound_to_relative(bound_db: float) -> float:
    """A +-dB bound as a relative (linear power) bound: +-0.1 dB -> about +-0.023."""
    return 10 ** (bound_db / 10) - 1.0


def error_rng(world: LabWorld, instrument: str, what: str) -> np.random.Generator:
    """The generator for one kind of error of one instrument instance."""
    return world.rng(f"{instrument}/{what}")


def fixed_error(world: LabWorld, instrument: str, what: str, bound: float) -> float:
    """An instrument instance's unknown, fixed error within a data sheet's +-`bound`.

    The same (world seed, instrument, what) gives the same error every time it is asked for,
    so an emulator may call this lazily (or again after a power cycle) without changing it.
    """
    return float(error_rng(world, instrument, what).normal(0.0, sigma_of_bound(bound)))


def fixed_phase(world: LabWorld, instrument: str, what: str) -> float:
    """An unknown, fixed phase (rad, uniform in [0, 2 pi)) of one instrument instance."""
    return float(error_rng(world, instrument, what).uniform(0.0, 2 * math.pi))


def relative_noise(rng: np.random.Generator, sigma: float) -> float:
    """A multiplicative noise factor 1 + N(0, sigma) (sigma relative, rms)."""
    return 1.0 + float(rng.normal(0.0, sigma))
