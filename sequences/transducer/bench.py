"""Bench operations shared by the efficiency-side transducer sequences
(`OpticalResonanceScan`, `EfficiencyMap`, `ConversionBandwidthScan`): preparing and restoring
the power meter and the microwave drive, switching the pump, scanning the laser detuning and
reading one mw-on/mw-off pair of optical powers. Their fits are in `efficiency_fits`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import constants

from ..resonance import locate_resonance

PLANCK = constants.h
SPEED_OF_LIGHT = constants.c
LASER_WAVELENGTH_STEP = 0.1e-12
"""m: the pump laser's (Santec TSL-570) wavelength setting resolution."""
NOMINAL_WAVELENGTH = 1550e-9
"""m: the wavelength used to plan detuning grids in laser steps (before any I/O)."""
SETUP = "transducer"
"""The station's name of the `TransducerSetup` (instruments.station)."""

ON, OFF = "optical_power_mw_on", "optical_power_mw_off"
"""Dataset columns of the two power-meter readings of each point, W."""


def constant_error(run: Any, name: str) -> float:
    """The one-sigma error of the setup's calibration constant `name` stored with a run
    (``<name>_error`` in its snapshot; 0 for a run stored before constants had errors)."""
    try:
        return float(run.snapshot_value(SETUP, f"{name}_error"))
    except KeyError:
        return 0.0


DB_TO_LN = math.log(10) / 10
"""d ln(x) per dB of a quantity x proportional to 10^(L / 10): a loss's error of sigma dB is a
relative error of DB_TO_LN * sigma (2.3 % per 0.1 dB)."""


def laser_step_frequency(wavelength: float = NOMINAL_WAVELENGTH) -> float:
    """One laser wavelength step expressed in optical frequency, Hz (12.48 MHz at 1550 nm)."""
    return SPEED_OF_LIGHT * LASER_WAVELENGTH_STEP / wavelength**2


# -- acquisition helpers ---------------------------------------------------------------------


def require_setup(station: Any, sequence: str) -> Any:
    setup = getattr(station, "setup", None)
    if setup is None:
        raise ValueError(f"the station has no transducer_setup: {sequence} needs its pump "
                         "laser, microwave source and power meter (add qnetlab.transducer_setup "
                         "to the lab config)")
    return setup


def upper_limit(parameter: Any) -> float:
    """The highest value `parameter` accepts: its soft limit if the lab set one, else its
    validator's maximum (`instruments.safety.SoftLimits` or a QCoDeS `Numbers`)."""
    vals = parameter.vals
    for attr in ("high", "max_value"):
        high = getattr(vals, attr, None)
        if isinstance(high, int | float) and math.isfinite(high):
            return float(high)
    raise ValueError(f"{parameter.full_name} has no upper limit to take as the default: "
                     "give the value explicitly in the sequence options")


@dataclass
class MeterState:
    """What `prepare` changed on the power meter, so `finish` can put it back."""

    averaging: int | None = None


def prepare_meter(setup: Any, averaging: int, wavelength: float) -> MeterState:
    """Set the power meter's averaging (samples of ~3 ms) and its responsivity correction to
    the pump wavelength (m); returns what to restore."""
    meter = setup.power_meter
    state = MeterState(int(meter.averaging()) if hasattr(meter, "averaging") else None)
    if state.averaging is not None:
        meter.averaging(averaging)
    meter.wavelength(wavelength)
    return state


def restore_meter(setup: Any, state: MeterState | None) -> None:
    if state is not None and state.averaging is not None:
        setup.power_meter.averaging(state.averaging)


def prepare_drive(setup: Any, mw_frequency: float, mw_power: float | None, averaging: int
                  ) -> MeterState:
    """The microwave tone at `mw_frequency` (Hz) and `mw_power` (dBm at the source; None: the
    strongest the soft limits allow, for the most converted light over the meter's noise),
    its output off until a reading; the power meter set up. Returns what to restore."""
    setup.mw_source.rf_output(False)
    setup.mw_frequency(mw_frequency)
    setup.mw_power(upper_limit(setup.mw_power) if mw_power is None else mw_power)
    return prepare_meter(setup, averaging, float(setup.optical_resonance_wavelength()))


def restore_bench(setup: Any, meter: MeterState | None) -> None:
    """Pump off, microwave output off, power meter averaging back: every action is tried,
    and the first failure raised afterwards."""
    errors: list[Exception] = []
    for action in (lambda: setup.pump_on(False),
                   lambda: setup.mw_source.rf_output(False),
                   lambda: restore_meter(setup, meter)):
        try:
            action()
        except Exception as exc:  # the others must still run
            errors.append(exc)
    if errors:
        raise errors[0]


def switch_pump_on(setup: Any, pump_power: float, pump_detuning: float) -> None:
    """Pump at `pump_detuning` (Hz) and `pump_power` (W, ramped by the setup) and on."""
    setup.pump_detuning(pump_detuning)
    setup.pump_power(pump_power)
    setup.pump_on(True)


def release_pump_lock(setup: Any) -> bool:
    """Switch the pump's offset lock off (`TransducerSetup.pump_lock_enabled`), so the laser
    tunes alone; returns whether it was enabled (for `restore_pump_lock`). A scan that looks
    for the absolute resonance must not be locked to it: locked, every detuning is measured
    from wherever the cavity is, and the line would always appear at the setup's guess."""
    enabled = getattr(setup, "pump_lock_enabled", None)
    if enabled is None or not enabled():
        return False
    enabled(False)
    return True


def restore_pump_lock(setup: Any, was_enabled: bool) -> None:
    """Undo `release_pump_lock` (the lock engages at the next pump_detuning setting)."""
    if was_enabled:
        setup.pump_lock_enabled(True)


RECENTRE_SPAN_LINEWIDTHS = 10.0
"""Width of the quick re-centring sweep in microwave linewidths: the drift over one step of
minutes (a few kHz for a TLS-limited resonator) stays well inside it, and 201 points put 20
on a linewidth."""


def recentre_tone(setup: Any, linewidth: float) -> float:
    """Re-find the microwave resonance around the tone with one quick VNA sweep
    (`resonance.locate_resonance`, RECENTRE_SPAN_LINEWIDTHS x `linewidth` Hz wide) and move
    the tone there, as labs do before holding a tone on a narrow mode that drifts (the tone's
    output is off at the call, so the VNA sees the mode alone). Returns the shift, Hz; NaN
    when the sweep finds no good resonance (the tone then stays where it was)."""
    tone = float(setup.mw_frequency())
    found = locate_resonance(setup.vna, tone, RECENTRE_SPAN_LINEWIDTHS * linewidth)
    if found is None:
        return math.nan
    setup.mw_frequency(found[0].value)
    return found[0].value - tone


def drive_readback(setup: Any) -> dict[str, float]:
    """What the bench actually set, in dataset column names (SI; mw_power in dBm)."""
    return {"pump_power": float(setup.pump_power()), "mw_frequency": float(setup.mw_frequency()),
            "mw_power": float(setup.mw_power())}


def scan_detunings(setup: Any, targets: np.ndarray,
                   keep: Callable[[dict[str, float]], None] | None = None
                   ) -> dict[str, np.ndarray]:
    """At each requested pump detuning (Hz): what the laser set (it tunes in 0.1 pm steps, so
    the read-back detuning and wavelength are the setpoints) and the optical power with the
    tone on and off (the meter's correction wavelength following the pump), plus the drive's
    read-back settings; dataset columns. With `keep` (`LabSequence.keep`), each point is handed
    over as soon as it is measured and nothing is returned (an interrupted scan keeps its
    points)."""
    fixed = drive_readback(setup)
    rows: dict[str, list[float]] = {k: [] for k in ("pump_detuning", "pump_wavelength", ON,
                                                    OFF, *fixed)}
    for target in targets:
        setup.pump_detuning(float(target))
        detuning = float(setup.pump_detuning())
        wavelength = float(setup.pump_laser.wavelength())
        # The meter converts photocurrent with the responsivity at its correction wavelength:
        # left at the resonance, it would tilt a GHz-wide line by ~1e-5 across the scan.
        setup.power_meter.wavelength(wavelength)
        on, off = read_on_off(setup)
        point = {"pump_detuning": detuning, "pump_wavelength": wavelength, ON: on, OFF: off,
                 **fixed}
        if keep is not None:
            keep(point)
            continue
        for k, v in point.items():
            rows[k].append(v)
    return {} if keep is not None else {k: np.asarray(v, float) for k, v in rows.items()}


def read_on_off(setup: Any) -> tuple[float, float]:
    """Optical power (W) with the microwave drive on, then off (leaves it off)."""
    rf = setup.mw_source.rf_output
    rf(True)
    on = float(setup.optical_power())
    rf(False)
    off = float(setup.optical_power())
    return on, off


