"""The composite `TransducerSetup`: one cryogenic transducer and the instruments around it.

It ties the pump laser, microwave source, VNA, optical power meter and fridge thermometry
together and speaks of the transducer in the lab's terms: ``pump_power`` (W),
``pump_detuning`` (Hz, pump frequency minus the optical resonance), ``mw_frequency`` (Hz),
``mw_power`` (dBm) and ``mxc_temperature`` (K). Every setting goes through the member
instrument's own parameter, so its soft limits, ramps and interlocks apply.

The bench's calibration constants (line attenuation, output loss, detection efficiency, the
fridge's cooling coefficient) are parameters, each with an ``<name>_error`` parameter holding
its one-sigma uncertainty (0 for a constant the lab config gives as a plain number); both go
into every run's snapshot, from which the analyses take their systematic errors
(docs/fitting.md#systematic-uncertainty).
"""

from __future__ import annotations

from typing import Any

from qcodes.instrument import InstrumentChannel
from qcodes.parameters import DelegateParameter, Parameter
from qcodes.validators import Bool, Numbers

from .calibrated_constant import CalibratedConstant
from .laser import Laser
from .microwave_source import MicrowaveSource
from .optical_power_meter import OpticalPowerMeter
from .role import ClosedHandleGuard
from .temperature_controller import TemperatureController
from .vna import VNA

SPEED_OF_LIGHT = 299_792_458.0  # m/s

DEFAULT_FRIDGE_COOLING_COEFFICIENT = 0.04
"""W/K^2, a in P_cool = a (T^2 - T_base^2) when the lab config states none: 9 uW of cooling
at 15 mK (docs/transducer.md#3-the-fridge; typical, not from a data sheet)."""

Constant = float | CalibratedConstant
"""A calibration constant as the lab config gives it: a plain (exact) number or a value with
its error."""


class TransducerSetup(ClosedHandleGuard):
    """A transducer with its pump laser, microwave source, VNA, power meter and fridge."""

    def __init__(
        self, name: str, *, pump_laser: Laser, mw_source: MicrowaveSource, vna: VNA,
        power_meter: OpticalPowerMeter, fridge: TemperatureController,
        detector: InstrumentChannel[Any] | None = None,
        optical_resonance_wavelength: Constant = 1550.12e-9, mw_line_attenuation: Constant = 60.0,
        optical_output_loss: Constant = 3.0, detection_efficiency: Constant = 0.45,
        fridge_cooling_coefficient: Constant = DEFAULT_FRIDGE_COOLING_COEFFICIENT,
        pump_lock: MicrowaveSource | None = None, pump_lock_center: float = 4.0e9,
        pump_lock_span: float = 1.0e9,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, **kwargs)
        self.pump_laser, self.mw_source, self.vna = pump_laser, mw_source, vna
        self.pump_lock = pump_lock
        """The RF source of the pump's offset lock, or None (the laser tunes alone). With a
        lock (offset sideband locking: a phase-modulation sideband at the source's frequency
        locked to the transducer's cavity), a detuning within `pump_lock_span` of the
        resonance is set as the source's frequency ``pump_lock_center + detuning`` with its
        output on, and holds against the cavity's drift; a farther one switches the lock off
        and leaves the laser at its setting (docs/simulation.md#the-pump-lock)."""
        if not (pump_lock_center > 0 and pump_lock_span > 0):
            raise ValueError(f"pump_lock_center ({pump_lock_center:g} Hz) and pump_lock_span "
                             f"({pump_lock_span:g} Hz) must be > 0")
        self.pump_lock_center = float(pump_lock_center)
        """Hz: the lock source's frequency at zero detuning, from calibration."""
        self.pump_lock_span = float(pump_lock_span)
        """Hz: the largest |detuning| the lock sets (beyond it the laser tunes alone)."""
        self.pump_lock_enabled: Parameter = self.add_parameter(
            "pump_lock_enabled", label="Pump lock enabled", initial_value=pump_lock is not None,
            get_cmd=None, set_cmd=self._set_pump_lock_enabled, vals=Bool(),
            docstring="Whether pump_detuning uses the pump lock (always False without one). "
                      "False switches the lock's source off: the laser tunes alone (the "
                      "optical resonance scan finds the absolute line that way); True engages "
                      "it at the next pump_detuning setting.",
        )
        self.power_meter, self.fridge = power_meter, fridge
        self.detector = detector
        """The photon-counting channel behind the transducer's optical output (a
        `SinglePhotonDetector` channel: bias_current, enabled, count_rate, latched), or None."""

        self.optical_resonance_wavelength: Parameter = self.add_parameter(
            "optical_resonance_wavelength", unit="m", label="Optical resonance (vacuum)",
            initial_value=float(optical_resonance_wavelength), get_cmd=None, set_cmd=None,
            vals=Numbers(400e-9, 2e-6),
            docstring="Wavelength of the transducer's optical (pump) resonance, from "
                      "calibration; pump_detuning is measured from it.",
        )
        self.mw_line_attenuation: Parameter = self.add_parameter(
            "mw_line_attenuation", unit="dB", label="Microwave line attenuation",
            initial_value=float(mw_line_attenuation), get_cmd=None, set_cmd=None,
            vals=Numbers(0.0, 200.0),
            docstring="Attenuation from the microwave source's output to the transducer's "
                      "microwave port (fridge lines, attenuators), from calibration; converts "
                      "mw_power to the photon flux that reaches the device.",
        )
        self.optical_output_loss: Parameter = self.add_parameter(
            "optical_output_loss", unit="dB", label="Optical output loss",
            initial_value=float(optical_output_loss), get_cmd=None, set_cmd=None,
            vals=Numbers(0.0, 60.0),
            docstring="Loss from the transducer's optical port to the power meter (fibre, "
                      "connectors, pump filters' passband), from calibration.",
        )
        self.detection_efficiency: Parameter = self.add_parameter(
            "detection_efficiency", unit="", label="Photon detection efficiency",
            initial_value=float(detection_efficiency), get_cmd=None, set_cmd=None,
            vals=Numbers(1e-6, 1.0),
            docstring="Probability that a photon leaving the transducer's optical port is "
                      "counted by `detector` at its operating bias (collection, filters and the "
                      "detector's system efficiency), from calibration.",
        )
        self.fridge_cooling_coefficient: Parameter = self.add_parameter(
            "fridge_cooling_coefficient", unit="W/K^2", label="Fridge cooling coefficient",
            initial_value=float(fridge_cooling_coefficient), get_cmd=None, set_cmd=None,
            vals=Numbers(1e-6, 1e3),
            docstring="a in the mixing chamber's cooling power P_cool = a (T^2 - T_base^2), "
                      "from the fridge's specification or a heater calibration; turns the "
                      "measured warming into absorbed pump power.",
        )
        self.mw_line_attenuation_error: Parameter = self._error_parameter(
            "mw_line_attenuation", mw_line_attenuation, "dB")
        self.optical_output_loss_error: Parameter = self._error_parameter(
            "optical_output_loss", optical_output_loss, "dB")
        self.detection_efficiency_error: Parameter = self._error_parameter(
            "detection_efficiency", detection_efficiency, "")
        self.fridge_cooling_coefficient_error: Parameter = self._error_parameter(
            "fridge_cooling_coefficient", fridge_cooling_coefficient, "W/K^2")
        self.pump_power: DelegateParameter = self.add_parameter(
            "pump_power", parameter_class=DelegateParameter, source=pump_laser.power,
            label="Pump power",
        )
        self.pump_on: DelegateParameter = self.add_parameter(
            "pump_on", parameter_class=DelegateParameter, source=pump_laser.output,
            label="Pump on",
        )
        self.pump_detuning: Parameter = self.add_parameter(
            "pump_detuning", unit="Hz", label="Pump detuning",
            get_cmd=self._get_pump_detuning, set_cmd=self._set_pump_detuning,
            vals=Numbers(-1e12, 1e12),
            docstring="Pump laser frequency minus the optical resonance frequency; set by "
                      "tuning the pump laser's wavelength, and with a pump_lock within its "
                      "span as the lock's offset.",
        )
        self.mw_frequency: DelegateParameter = self.add_parameter(
            "mw_frequency", parameter_class=DelegateParameter, source=mw_source.frequency,
            label="Microwave frequency",
        )
        self.mw_power: DelegateParameter = self.add_parameter(
            "mw_power", parameter_class=DelegateParameter, source=mw_source.power,
            label="Microwave power",
        )
        self.mxc_temperature: DelegateParameter = self.add_parameter(
            "mxc_temperature", parameter_class=DelegateParameter, source=fridge.temperature,
            label="Mixing-chamber temperature",
        )
        self.optical_power: DelegateParameter = self.add_parameter(
            "optical_power", parameter_class=DelegateParameter, source=power_meter.power,
            label="Optical output power",
        )

    def _error_parameter(self, name: str, constant: Constant, unit: str) -> Parameter:
        """`<name>_error`: the constant's one-sigma uncertainty (0: exact)."""
        return self.add_parameter(
            f"{name}_error", unit=unit, label=f"{name.replace('_', ' ')} uncertainty",
            initial_value=CalibratedConstant.of(constant).error, get_cmd=None, set_cmd=None,
            vals=Numbers(0.0, 1e3),
            docstring=f"One-sigma uncertainty of {name} (its calibration's), propagated into "
                      "the analyses as a systematic error.",
        )

    def constant(self, name: str) -> CalibratedConstant:
        """A calibration constant with its error, e.g. ``constant('mw_line_attenuation')``."""
        return CalibratedConstant(float(self.parameters[name]()),
                                  float(self.parameters[f"{name}_error"]()))

    def _resonance_frequency(self) -> float:
        return SPEED_OF_LIGHT / self.optical_resonance_wavelength()

    def _set_pump_lock_enabled(self, enabled: bool) -> None:
        if enabled and self.pump_lock is None:
            raise ValueError(f"{self.name} has no pump_lock to enable: name the lock's RF "
                             "source as qnetlab.transducer_setup.pump_lock in the lab config")
        if not enabled and self.pump_lock is not None:
            self.pump_lock.rf_output(False)

    @property
    def pump_locked(self) -> bool:
        """True while the pump's offset lock is engaged (its source's output on)."""
        return self.pump_lock is not None and bool(self.pump_lock.rf_output())

    def _get_pump_detuning(self) -> float:
        if self.pump_lock is not None and self.pump_locked:
            return float(self.pump_lock.frequency()) - self.pump_lock_center
        return SPEED_OF_LIGHT / self.pump_laser.wavelength() - self._resonance_frequency()

    def _set_pump_detuning(self, detuning: float) -> None:
        # The laser's own setting follows the detuning also when locked: the lock's servo
        # only trims it, so it stays near where the lock holds it.
        self.pump_laser.wavelength(SPEED_OF_LIGHT / (self._resonance_frequency() + detuning))
        lock = self.pump_lock
        if lock is None or not self.pump_lock_enabled():
            return
        within = abs(detuning) <= self.pump_lock_span
        if within:
            lock.frequency(self.pump_lock_center + detuning)
        lock.rf_output(within)

    def get_idn(self) -> dict[str, str | None]:
        return {"vendor": "qnetlab", "model": "TransducerSetup", "serial": None,
                "firmware": None}
