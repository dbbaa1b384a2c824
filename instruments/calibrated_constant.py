"""`CalibratedConstant`: a calibration constant of the lab with its one-sigma uncertainty.

A lab config states a constant either as a plain number (taken as exact: error 0) or as
``{value: 60, error: 0.5}`` in the constant's unit (dB, W/K^2, ...). The error is the
standard uncertainty of the calibration that gave the value (a line-loss measurement, a
detector calibration, the fridge's cooling-power spec): it is common to every measurement
that uses the constant, so the analyses report it as their systematic error
(docs/fitting.md#systematic-uncertainty).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

CONSTANT_KEYS = ("value", "error")
"""The keys of a constant written as a mapping."""


@dataclass(frozen=True)
class CalibratedConstant:
    """`value` and its one-sigma `error` (>= 0), both in the constant's unit."""

    value: float
    error: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.value) and math.isfinite(self.error) and self.error >= 0):
            raise ValueError(f"a calibrated constant needs a finite value and an error >= 0, "
                             f"got {self.value!r} ± {self.error!r}")

    @property
    def relative_error(self) -> float:
        """error / |value| (inf for a zero value with an error, 0 without one)."""
        if self.error == 0:
            return 0.0
        return self.error / abs(self.value) if self.value else math.inf

    def __float__(self) -> float:
        return self.value

    def __str__(self) -> str:
        return f"{self.value:g} ± {self.error:g}" if self.error else f"{self.value:g}"

    @classmethod
    def of(cls, raw: float | CalibratedConstant) -> CalibratedConstant:
        """A plain number is exact (error 0)."""
        return raw if isinstance(raw, CalibratedConstant) else cls(float(raw), 0.0)


def parse_constant(file: str, entry: str, raw: Any) -> float | CalibratedConstant:
    """A config entry as a plain number (kept as it is) or ``{value, error}``; ConfigError
    naming `entry` and the fix otherwise."""
    fix = "write a plain number, or {value: V, error: E} with E >= 0, in the constant's unit"
    if isinstance(raw, dict):
        unknown = sorted(str(k) for k in raw if k not in CONSTANT_KEYS)
        if unknown:
            raise ConfigError(file, f"{entry}.{unknown[0]}", f"unknown key '{unknown[0]}'",
                              f"a constant takes only 'value' and 'error': {fix}")
        if "value" not in raw:
            raise ConfigError(file, entry, "no 'value' given", fix)
        value = _number(file, f"{entry}.value", raw["value"], fix)
        error = _number(file, f"{entry}.error", raw.get("error", 0.0), fix)
        if error < 0:
            raise ConfigError(file, f"{entry}.error", f"negative error {error:g}",
                              "the error is a one-sigma uncertainty: write {value: V, "
                              "error: E} with E >= 0")
        return CalibratedConstant(value, error)
    return _number(file, entry, raw, fix)


def _number(file: str, entry: str, raw: Any, fix: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise ConfigError(file, entry, f"expected a number, got {raw!r}", fix)
    return float(raw)
