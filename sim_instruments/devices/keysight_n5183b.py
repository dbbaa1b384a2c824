"""Emulator of the Keysight N5183B MXG microwave analog signal generator.

Commands from the Keysight X-Series Signal Generators SCPI Command Reference
(N5181B/N5182B/N5183B, manual part N5180-90056): FREQuency, POWer, PHASe, OUTPut,
ROSCillator and the pulse modulation subsystem (option UNW). The source drives the world's
microwave tone into the transducer. These answer every query of QCoDeS's `KeysightN51x1`
driver, which the qnetlab driver subclasses.

Deliberately left out (the driver's features touch none of them): AM, FM and phase
modulation, frequency and power sweeps (LIST, SWEep), ALC and power search, the LF output,
user flatness correction, MMEMory and the DIAGnostic subsystem. They queue -113 Undefined
header and, as queries, get no reply.

The realistic lab (`LabWorld.ideal` False): the tone reaching the world is off its setting by
this instance's fixed errors, while the queries read the setting: a fractional frequency
offset of the internal timebase (`FREQUENCY_ACCURACY`: calibration plus a year of aging) and a
level error in dB (`LEVEL_ACCURACY_DB`), each drawn once (`physics.instrument_errors`).
A frequency or level change takes the data sheet's switching time of lab time
(`FREQUENCY_SWITCHING_S`, `LEVEL_SWITCHING_S`) before the tone is at its new value: the
command completes once the output has settled, so the next exchange, a ``*OPC?`` included,
comes after it and a driver needs no wait of its own (that the MXG serves its SCPI commands so,
one at a time, is this emulator's reading; the data sheet times the switch from the command
to the settled output). The ideal lab switches at once, as before.
"""

from __future__ import annotations

import math

from ..physics.instrument_errors import fixed_error
from .scpi import Args, ScpiDevice, command, fmt

# Frequency option -> upper limit (Hz), power limits for the N5183B (data sheet 5991-0038EN).
_MAX_FREQUENCY = {"520": 20e9, "532": 31.8e9, "540": 40e9}

# The realistic lab's errors. Source: Keysight N5183B MXG X-Series Microwave Analog Signal
# Generator data sheet (5991-0038EN), "Frequency" (internal timebase reference: aging rate,
# initial achievable calibration) and "Amplitude" (absolute level accuracy, CW); the values were
# not checked against a stored copy of the data sheet: treat them as its order of magnitude.
FREQUENCY_ACCURACY = 1e-7
"""+-fractional frequency error of the standard timebase a year after calibration."""
LEVEL_ACCURACY_DB = 0.9
"""+-dB, absolute CW level accuracy between 3.2 and 20 GHz at moderate levels."""

# Settling (realistic lab). Source: the same data sheet, "Switching speed" (SCPI mode,
# typical); not checked against a stored copy either.
FREQUENCY_SWITCHING_S = 800e-6
"""s from a CW frequency command to the tone settled at its new frequency."""
LEVEL_SWITCHING_S = 750e-6
"""s from a level (power) command to the output settled at its new level."""


class KeysightN5183BEmulator(ScpiDevice):
    identity = ("Keysight Technologies", "N5183B", "MY57280001", "B.01.86")
    options = "520,1E1,UNW,UNT"
    min_frequency = 9e3
    min_power, max_power = -20.0, 19.0

    @property
    def max_frequency(self) -> float:
        return _MAX_FREQUENCY[self.options.split(",")[0]]

    def reset(self) -> None:
        self.frequency = self.max_frequency
        self.power = -20.0
        self.phase = 0.0
        self.output = False
        self.reference_auto = True
        self.pulse_modulation = False
        self.pulse_source = "INT"
        self._push()

    def _push(self) -> None:
        frequency, power = self.frequency, self.power
        if not self.world.ideal:
            fractional, level_db = self.accuracy_errors()
            frequency, power = frequency * (1 + fractional), power + level_db
        self.world.set_mw_drive(frequency=frequency, power_dbm=power, on=self.output)

    def _settle(self, seconds: float) -> None:
        """The switching: `seconds` of lab time pass before the new value is pushed (realistic
        lab; the ideal lab switches at once)."""
        if not self.world.ideal:
            self.world.advance(seconds)

    def accuracy_errors(self) -> tuple[float, float]:
        """This instance's fixed errors: (fractional frequency offset, level error in dB),
        drawn from `FREQUENCY_ACCURACY` and `LEVEL_ACCURACY_DB` (the same on every call)."""
        return (fixed_error(self.world, self.name, "frequency accuracy", FREQUENCY_ACCURACY),
                fixed_error(self.world, self.name, "level accuracy", LEVEL_ACCURACY_DB))

    @command("[SOURce]:FREQuency[:CW]")
    @command("[SOURce]:FREQuency:FIXed")
    def _set_frequency(self, args: Args) -> None:
        frequency = args.number(low=self.min_frequency, high=self.max_frequency,
                                units=("HZ", "KHZ", "MHZ", "GHZ"))
        if frequency != self.frequency:
            self._settle(FREQUENCY_SWITCHING_S)
        self.frequency = frequency
        self._push()

    @command("[SOURce]:FREQuency[:CW]", query=True)
    @command("[SOURce]:FREQuency:FIXed", query=True)
    def _get_frequency(self, args: Args) -> str:
        return fmt(self.frequency)

    @command("[SOURce]:POWer[:LEVel][:IMMediate][:AMPLitude]")
    def _set_power(self, args: Args) -> None:
        power = args.number(low=self.min_power, high=self.max_power, units=("DBM",))
        if power != self.power:
            self._settle(LEVEL_SWITCHING_S)
        self.power = power
        self._push()

    @command("[SOURce]:POWer[:LEVel][:IMMediate][:AMPLitude]", query=True)
    def _get_power(self, args: Args) -> str:
        return fmt(self.power)

    @command("[SOURce]:PHASe[:ADJust]")
    def _set_phase(self, args: Args) -> None:
        self.phase = args.number(low=-math.pi, high=math.pi, units=("RAD",))

    @command("[SOURce]:PHASe[:ADJust]", query=True)
    def _get_phase(self, args: Args) -> str:
        return fmt(self.phase)

    @command("OUTPut[:STATe]")
    def _set_output(self, args: Args) -> None:
        self.output = args.boolean()
        self._push()

    @command("OUTPut[:STATe]", query=True)
    def _get_output(self, args: Args) -> str:
        return "1" if self.output else "0"

    @command("[SOURce]:ROSCillator:SOURce:AUTO")
    def _set_reference_auto(self, args: Args) -> None:
        self.reference_auto = args.boolean()

    @command("[SOURce]:ROSCillator:SOURce:AUTO", query=True)
    def _get_reference_auto(self, args: Args) -> str:
        return "1" if self.reference_auto else "0"

    @command("[SOURce]:PULM:STATe")
    def _set_pulse(self, args: Args) -> None:
        self.pulse_modulation = args.boolean()

    @command("[SOURce]:PULM:STATe", query=True)
    def _get_pulse(self, args: Args) -> str:
        return "1" if self.pulse_modulation else "0"

    @command("[SOURce]:PULM:SOURce")
    def _set_pulse_source(self, args: Args) -> None:
        self.pulse_source = args.choice(0, {"INT": "INT", "INTERNAL": "INT", "EXT": "EXT",
                                            "EXTERNAL": "EXT"})

    @command("[SOURce]:PULM:SOURce", query=True)
    def _get_pulse_source(self, args: Args) -> str:
        return self.pulse_source
