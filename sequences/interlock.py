"""Interlocks during a run: pause the pump while the fridge is warm, resume or stop cleanly.

The station's interlocks (``qnetlab.interlocks`` of the lab config) refuse to switch the pump
on while their sensor reads above its maximum. A sequence needs more than a refusal: when the
mixing chamber warms up during a sweep, the pump must go off *now*, the run must wait for the
fridge to recover, and then carry on where it was, or, if the fridge does not recover in time,
stop cleanly with everything measured so far. `PumpGuard` does that between steps:

* before each step it reads every interlock sensor that guards the pump;
* above the maximum it switches the pump off, then polls the sensor (on the station's lab
  clock, `LabStation.clock`: instant on the simulated bench) until it reads below
  ``resume_fraction`` x maximum (hysteresis, so the pump does not chatter at the
  threshold), for at most ``timeout`` s;
* recovered: the pump is switched back on if it was on, and the step runs; not recovered: the
  run stops with `InterlockTimeoutError` (an instrument error, so the framework keeps the data
  and marks the run interrupted, saying where and why).

Both outcomes are recorded as events in the run's metadata (``qnetlab_interlock_events``).
A step that itself hits the interlock (`InterlockError` from a pump setting) is paused the
same way and retried once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from qcodes.parameters import Parameter

from qnetlab.instruments.errors import InstrumentRefusedError
from qnetlab.instruments.station import LabStation


class InterlockTimeoutError(InstrumentRefusedError, TimeoutError):
    """The interlock sensor did not recover within the guard's timeout."""


@dataclass(frozen=True)
class InterlockEvent:
    """One pause of the pump by an interlock during a run."""

    interlock: str
    step: int
    label: str
    reading: float
    """Sensor reading that tripped the pause (sensor unit, K for the mixing chamber)."""
    maximum: float
    waited: float
    """Lab time spent waiting for recovery, s."""
    outcome: str
    """'resumed' or 'stopped'."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Watch:
    name: str
    sensor: Parameter
    maximum: float


class PumpGuard:
    """Pauses the pump while an interlock sensor is above its maximum (module docstring)."""

    def __init__(self, station: LabStation, *, timeout: float = 1800.0,
                 poll_period: float = 10.0, resume_fraction: float = 0.9) -> None:
        """`timeout` and `poll_period` in s of lab time; `resume_fraction` of the maximum is
        where the pump may come back on."""
        if not (timeout >= 0 and poll_period > 0 and 0 < resume_fraction <= 1):
            raise ValueError("need timeout >= 0 s, poll_period > 0 s and 0 < resume_fraction "
                             f"<= 1; got {timeout}, {poll_period}, {resume_fraction}")
        self.station = station
        self.timeout, self.poll_period, self.resume_fraction = (timeout, poll_period,
                                                                resume_fraction)
        self.events: list[InterlockEvent] = []
        self.on_note: Callable[[str], None] | None = None
        """Told when the guard pauses and resumes a run (the progress bar's `note`): a run
        that waits for the fridge says why, instead of freezing its bar."""
        self.on_state: Callable[[str, str], None] | None = None
        """Told ("paused" | "resumed" | "stopped", the message) instead of `on_note` when
        set (`Progress.interlock`: the line, and the run's reporters told the state)."""
        self._watches = _pump_watches(station)

    @property
    def active(self) -> bool:
        """False when the station has a pump but no interlock guards it (nothing to do)."""
        return bool(self._watches)

    def check(self, step: int, label: str) -> None:
        """Before a step: pause and wait while any pump interlock reads high."""
        for watch in self._watches:
            reading = float(watch.sensor.get())
            if reading > watch.maximum:
                self._pause(watch, reading, step, label)

    def _pause(self, watch: _Watch, reading: float, step: int, label: str) -> None:
        setup = self.station.setup
        assert setup is not None  # _pump_watches is empty without a setup
        pump_was_on = bool(setup.pump_on.get())
        setup.pump_on.set(False)  # always allowed: switching off is the safe direction
        unit = watch.sensor.unit
        self._state("paused", f"PAUSED before {label}: interlock '{watch.name}': "
                    f"{watch.sensor.full_name} {reading:g} {unit} > {watch.maximum:g} {unit}; "
                    f"pump off, waiting up to {self.timeout:g} s for "
                    f"{self.resume_fraction * watch.maximum:g} {unit}")
        waited, value = 0.0, reading
        while value > self.resume_fraction * watch.maximum and waited < self.timeout:
            step_s = min(self.poll_period, self.timeout - waited)
            self.station.clock.sleep(step_s)
            waited += step_s
            value = float(watch.sensor.get())
        recovered = value <= self.resume_fraction * watch.maximum
        self.events.append(InterlockEvent(watch.name, step, label, reading, watch.maximum,
                                          waited, "resumed" if recovered else "stopped"))
        if recovered:
            self._state("resumed", f"RESUMED after {waited:g} s: {watch.sensor.full_name} "
                        f"{value:g} {unit}" + ("; pump on again" if pump_was_on else ""))
        else:
            self._state("stopped", f"STOPPED: {watch.sensor.full_name} still {value:g} {unit} "
                        f"after {waited:g} s")
            raise InterlockTimeoutError(
                f"interlock '{watch.name}': {watch.sensor.full_name} read {reading:g} "
                f"{watch.sensor.unit} (maximum {watch.maximum:g}) and was still {value:g} after "
                f"waiting {waited:g} s with the pump off; stopped the run. Let the fridge "
                f"recover, lower the pump power, or raise the guard's timeout")
        if pump_was_on:
            setup.pump_on.set(True)

    def _state(self, state: str, message: str) -> None:
        if self.on_state is not None:
            self.on_state(state, message)
        else:
            self._note(message)

    def _note(self, message: str) -> None:
        if self.on_note is not None:
            self.on_note(message)


def _pump_watches(station: LabStation) -> list[_Watch]:
    """The interlocks of the station's config that guard its transducer setup's pump."""
    setup = station.setup
    config = getattr(station, "lab_config", None)
    if setup is None or config is None:
        return []
    pump = setup.pump_laser.name
    watches = []
    for lock in config.interlocks:
        if any(ref.split(".")[0] == pump for ref in lock.guards):
            inst, _, pname = lock.sensor.partition(".")
            sensor = station.instrument(inst).parameters[pname]
            watches.append(_Watch(lock.name, sensor, lock.maximum))
    return watches
