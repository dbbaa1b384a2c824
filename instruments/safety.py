"""Safety on the declaration: soft limits, ramp rates and interlocks from the lab config.

They are installed on the parameters themselves, so every path that sets a parameter (a
sequence, `dond`, a notebook cell, a `DelegateParameter` of the transducer setup) is held
to them. A refused setting raises before anything is sent: the instrument is unchanged.

QCoDeS's own station ``limits`` replace a driver's validator and can widen a hardware-safe
range; ours are checked in addition to the driver's validator, and a config whose limits
reach outside the hardware range is refused at load.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from qcodes.parameters import Parameter
from qcodes.validators import Validator

from .errors import InterlockError, SafetyLimitError

RAMP_TICK = 0.1
"""Seconds between ramp steps."""


class SoftLimits(Validator[float]):
    """A parameter's hardware validator plus the lab's soft limits."""

    def __init__(self, hardware: Validator[Any] | None, low: float, high: float,
                 parameter: str, unit: str, source: str) -> None:
        self.hardware = hardware
        self.low, self.high = low, high
        self.parameter, self.unit, self.source = parameter, unit, source
        self._valid_values = (low, high)
        self.is_numeric = True

    def validate(self, value: float, context: str = "") -> None:
        if self.hardware is not None:
            self.hardware.validate(value, context)
        if not self.low <= value <= self.high:
            unit = f" {self.unit}" if self.unit else ""
            side = "above" if value > self.high else "below"
            limit = self.high if value > self.high else self.low
            raise SafetyLimitError(
                f"{self.parameter}: {value:g}{unit} is {side} the soft limit {limit:g}{unit} "
                f"(limits [{self.low:g}, {self.high:g}]{unit} from {self.source}); the "
                "instrument was not changed. Choose a value inside the limits, or change them "
                "in the lab config"
            )

    def __repr__(self) -> str:
        return f"<SoftLimits {self.low:g}<=v<={self.high:g} and {self.hardware!r}>"


def install_soft_limits(param: Parameter, low: float, high: float, source: str) -> None:
    """Add soft limits to `param`; ValueError if they reach outside the hardware range."""
    hardware = param.vals
    if hardware is not None:
        for end in (low, high):
            try:
                hardware.validate(end)
            except (ValueError, TypeError) as exc:
                raise ValueError(
                    f"limit {end:g} is outside what {param.full_name} accepts ({hardware!r})"
                ) from exc
    param.vals = SoftLimits(hardware, low, high, param.full_name, param.unit, source)


def install_ramp(param: Parameter, rate: float, sleep: Callable[[float], None]) -> None:
    """Make `param` move at most `rate` (its unit per second) towards any new value.

    The target is validated before the first step, so a refused value moves nothing. Each
    step goes through QCoDeS's set, which validates it first, so interlocks (`Interlock`)
    are checked at every step. `sleep` is the lab clock's: virtual on the simulated bench,
    real on hardware.
    """
    step_set = param.set

    def ramped_set(value: Any) -> None:
        param.validate(value)
        current = param.cache.get(get_if_invalid=True)
        if current is None or not isinstance(value, int | float):
            step_set(value)
            return
        n = max(1, math.ceil(abs(value - current) / (rate * RAMP_TICK)))
        for i, v in enumerate(np.linspace(current, value, n + 1)[1:]):
            if i:
                sleep(RAMP_TICK)
            step_set(float(v))

    param.set = ramped_set


class Interlock(Validator[Any]):
    """Refuses a value of `param` that is not safer while `sensor` reads above `maximum`:
    switching off, zero, or a value at or below the present one are always allowed.

    A validator, so QCoDeS checks it before every value it sends, and a ramp (`install_ramp`)
    sends each of its steps through QCoDeS's set: the sensor is read at every step, and a
    long ramp stops at the last step taken while the sensor was below its maximum.
    """

    def __init__(self, param: Parameter, sensor: Parameter, maximum: float, name: str,
                 source: str) -> None:
        self.param, self.sensor, self.maximum = param, sensor, maximum
        self.name, self.source = name, source
        self._valid_values = ()
        self.is_numeric = False

    def _safer(self, value: Any) -> bool:
        if not value:
            return True
        # After a reconnect the cache is invalid: the instrument's state is unknown.
        cache = self.param.cache
        current = cache.get(get_if_invalid=False) if cache.valid else None
        return (isinstance(value, int | float) and not isinstance(value, bool)
                and isinstance(current, int | float) and value <= current)

    def validate(self, value: Any, context: str = "") -> None:
        # The parameter's own limits first: a value they refuse needs no sensor reading.
        for other in reversed(self.param.validators):
            if not isinstance(other, Interlock):
                other.validate(value, context)
        if self._safer(value):
            return
        reading = self.sensor.get()
        if reading > self.maximum:
            unit = f" {self.sensor.unit}" if self.sensor.unit else ""
            raise InterlockError(
                f"interlock '{self.name}' ({self.source}): refusing to set "
                f"{self.param.full_name} to {value!r} while {self.sensor.full_name} reads "
                f"{reading:g}{unit}, above its maximum {self.maximum:g}{unit}; that value was "
                "not sent (a ramp stays at its last step). Wait for "
                f"{self.sensor.full_name} to recover"
            )

    def __repr__(self) -> str:
        return f"<Interlock {self.name}: {self.sensor.full_name} <= {self.maximum:g}>"


def install_interlock(param: Parameter, sensor: Parameter, maximum: float, name: str,
                      source: str) -> None:
    """While `sensor` reads above `maximum`, refuse any setting of `param` that is not safer
    (see `Interlock`), at every value QCoDeS sends: each step of a ramp included."""
    param.add_validator(Interlock(param, sensor, maximum, name, source))
