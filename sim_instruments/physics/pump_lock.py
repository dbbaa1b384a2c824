"""The pump laser locked to the device's drifting optical resonance with an RF offset.

A cavity device whose optical line is narrower than the lab's drift cannot be pumped by
setting a laser's wavelength: the membrane electro-optomechanical preset's 3 MHz line moves
~4 MHz rms per minute (`drift.DriftSettings.optical`) and the TSL-570 tunes in 0.1 pm
(12.5 MHz) steps. Labs with such devices lock the laser to the cavity and set the detuning
electronically: offset sideband locking (Thorpe et al., Opt. Express 16, 15397 (2008)) locks
a phase-modulation sideband at the RF frequency ``f_rf`` of a synthesizer to the cavity, so
the laser sits ``f_rf - f_center`` from the pumped mode whatever the cavity does, tunable with
the synthesizer's resolution (sideband locking to a Fabry-Perot cavity with a VCO: Reinhardt et
al., arXiv:1610.01631). The membrane transducers this preset follows run with the laser held
on their Fabry-Perot cavity by such a lock (Higginbotham et al., Nat. Phys. 14, 1038 (2018);
Brubaker et al., PRX 12, 021062 (2022); *(check)*: the lock's details are in their methods).

The model: while the synthesizer's output is on (the lock engaged) the pump's detuning from
the resonance as it has drifted is the offset the synthesizer emits (its timebase error
included) minus ``center`` (the RF frequency at zero detuning), plus the lock's residual
error: a stationary Ornstein-Uhlenbeck process (`drift.OrnsteinUhlenbeck`, seeded like every
drift, zero in the ideal lab), as long as the laser's own frequency is within the servo's
reach (`PumpLockSettings.capture_range`). With the output off, or beyond that reach, the
laser runs free at its own setting. Acquisition within the reach is assumed (the lab's
lock re-acquires after every far excursion of the laser); lock loss within it is not
modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

from .drift import OrnsteinUhlenbeck, OUSpec, RngFactory


@dataclass(frozen=True)
class PumpLockSettings:
    """The lock's truth in the simulated lab (``qnetlab.simulation.pump_lock``)."""

    center: float = 4.0e9
    """RF frequency of zero detuning, Hz: in offset sideband locking, the pumped mode's
    distance from the neighbouring mode the sideband locks to (one free spectral range of a
    ~3.7 cm Fabry-Perot cavity; the lab's ``pump_lock_center`` calibrates it)."""
    residual_rms: float = 30e3
    """Residual lock error, Hz rms: 1 % of the 3 MHz linewidth. A Pound-Drever-Hall lock to
    a cavity holds the laser to a small fraction of the cavity linewidth (Black, Am. J. Phys.
    69, 79 (2001): the error signal's slope is set by the linewidth, and a servo with tens of
    dB of gain at the drift's frequencies leaves a residual of order 1e-2 of it); typical, not
    a figure of the membrane papers."""
    residual_tau: float = 0.1
    """Correlation time of the residual error, s (servo bandwidth ~10 Hz: acoustics and the
    pulse tube are what the loop leaves; typical)."""
    capture_range: float = 10e9
    """Hz: the lock holds only while the laser's own (unservoed) frequency is within this of
    where the lock puts it: the servo's actuator is the laser's fine (piezo) tuning, about
    +-10 GHz on external-cavity lasers (`devices.santec_tsl570.FINE_TUNING_RANGE_PM`;
    typical, not from a data sheet). Acquisition within it is assumed (an automatic
    relock sweeps the piezo)."""

    def __post_init__(self) -> None:
        if not self.center > 0:
            raise ValueError(f"pump_lock center must be > 0 Hz, got {self.center!r}")
        if not self.residual_rms >= 0 or not self.residual_tau > 0 \
                or not self.capture_range > 0:
            raise ValueError("pump_lock residual_rms must be >= 0 Hz, residual_tau > 0 s and "
                             "capture_range > 0 Hz")


class PumpLock:
    """The lock of one world: the synthesizer's emitted offset and the residual error."""

    def __init__(self, settings: PumpLockSettings, rng: RngFactory, *, ideal: bool) -> None:
        self.settings = settings
        self.ideal = ideal
        self.rf_frequency = settings.center
        """Hz, as the synthesizer emits it (its timebase error included)."""
        self.engaged = False
        """True while the synthesizer's output is on."""
        self._residual = OrnsteinUhlenbeck(OUSpec(settings.residual_rms, settings.residual_tau),
                                           rng, "pump_lock/residual")

    def set_offset_source(self, *, frequency: float, on: bool) -> None:
        """What the offset synthesizer emits: frequency (Hz) and output state."""
        self.rf_frequency, self.engaged = frequency, on

    def residual(self, t: float) -> float:
        """The lock's error at lab time `t`, Hz (0 in the ideal lab)."""
        return 0.0 if self.ideal else self._residual.value(t)

    def offset(self) -> float:
        """Where the synthesizer puts the pump: its detuning from the resonance, Hz."""
        return self.rf_frequency - self.settings.center

    def holds(self, free_running_detuning: float) -> bool:
        """Whether the lock holds the pump: engaged, and the laser's own detuning (from its
        setting, Hz) within `PumpLockSettings.capture_range` of the lock's offset."""
        return self.engaged and abs(free_running_detuning - self.offset()) \
            <= self.settings.capture_range

    def detuning(self, t: float) -> float:
        """Pump frequency minus the resonance as it has drifted, Hz, while it holds."""
        return self.offset() + self.residual(t)
