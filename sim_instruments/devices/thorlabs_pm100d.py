"""Emulator of the Thorlabs PM100D optical power meter console with an InGaAs photodiode sensor.

Commands from the Thorlabs PM100D operation manual, chapter "Computer interface", SCPI
command reference (shared by the PM100 series): the SENSe subsystem (``CORRection:WAVelength``
in nm, ``AVERage[:COUNt]``, ``CORRection[:LOSS[:INPut[:MAGNitude]]]`` in dB,
``CORRection:BEAMdiameter`` in mm, ``CORRection:COLLect:ZERO:MAGNitude?``,
``POWer[:DC]:RANGe[:UPPer]`` / ``:AUTO``, ``CURRent[:DC]:RANGe[:UPPer]?``), the measurement
commands (``CONFigure:POWer``, ``INITiate``, ``ABORt``, ``FETCh?``, ``READ?``,
``MEASure:POWer?``, ``MEASure:CURRent?``, ``MEASure:FREQuency?``), ``STATus:OPERation``
(``PTRansition``, ``NTRansition``, ``[EVENt]?``, ``CONDition?``) and ``SYSTem:ERRor?``.
``MEASure`` is query-only there, so ``MEAS:POW`` without ``?`` is an undefined header.

Physics: the sensor sees ``world.optical_output_power()`` at the pump wavelength. The console
converts photocurrent to power with the responsivity at the *set* correction wavelength, so a
wrong setting scales the reading by R(true)/R(set). Each sample carries Gaussian noise
(`noise_floor`, W rms), and a reading averages `AVERage:COUNt` samples, so its noise is
noise_floor / sqrt(count). The manual gives one sample as about 3 ms (`sample_time`): a
measurement started by INITiate (or READ?, MEASure?) is done count * sample_time later in world
time, and FETCh? lets the world's clock run until then. A FETCh? with no measurement ever
taken is -230 "Data corrupt or stale". Not modelled: over-range on a fixed range, dark offset.

The realistic lab (`LabWorld.ideal` False) adds what the data sheets state, each error drawn
once per instance (`physics.instrument_errors`): the sensor's calibration error (a fixed gain
within `SENSOR_ACCURACY`), its linearity (a fixed deviation growing with the decades away from
the calibration power, within `SENSOR_LINEARITY`), the console's accuracy on the photocurrent
range in use (a fixed gain per range, within `CONSOLE_ACCURACY_FS` of full scale, so a reading
steps when auto-ranging switches range), the range's resolution (the reading is quantised to
`RESOLUTION_FS` of the range's full scale, 1 pA on the 50 nA range, with one step rms of range
noise) and a relative reading noise (`RELATIVE_NOISE` per sample). Auto-ranging picks the
smallest current range that holds the photocurrent; a fixed power range picks the smallest
that holds its full scale. A range change takes `RANGE_SETTLE_S` of lab time before the
console measures on the new range: a measurement started within it ends that much later, and
one over which auto-ranging switches range ends that much after its last sample (the sample
across the switch is taken again). The console answers FETCh?, READ? and MEASure? only once
the measurement is done, so a driver waits for it without asking. The ideal lab switches at
once, as before.

Deliberately left out (the contrib driver and the `OpticalPowerMeter` role use none of
them): energy and frequency measurements of pyroelectric and thermal sensors, the sensor
information queries (SYSTem:SENSor:IDN?), photodiode responsivity and thermopile settings
(SENSe:CORRection:POWer...), bandwidth and line-frequency settings, the zero adjustment
(SENSe:CORRection:COLLect:ZERO[:INITiate]), the display and the other STATus registers.
They queue -113 Undefined header and, as queries, get no reply.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..physics.instrument_errors import error_rng, fixed_error
from .scpi import Args, ScpiDevice, ScpiError, command, fmt, no_argument

if TYPE_CHECKING:
    from ..physics.world import LabWorld

# Typical InGaAs photodiode responsivity (A/W) against wavelength (nm): a coarse curve of the
# usual shape (rising to a maximum near 1600 nm, cut off by the band gap near 1700 nm). The
# real console reads the calibrated curve from the sensor's EEPROM.
_RESPONSIVITY_NM = np.array([800, 900, 1000, 1100, 1200, 1300, 1400, 1500, 1550, 1600, 1650,
                             1700], dtype=float)
_RESPONSIVITY_A_PER_W = np.array([0.15, 0.55, 0.65, 0.72, 0.80, 0.87, 0.93, 0.98, 1.00, 1.02,
                                  0.95, 0.60])

_DATA_STALE = (-230, "Data corrupt or stale")
_OPERATION_DATA_READY = 1 << 9
"""STATus:OPERation bit 9, set when a new measurement is available."""


CURRENT_RANGES = (50e-9, 500e-9, 5e-6, 50e-6, 500e-6, 5e-3)
"""A, the console's photodiode current ranges (Thorlabs PM100D data sheet / operation
manual, "Specifications": photodiode input, measurement ranges 50 nA to 5 mA in decades)."""
CONSOLE_ACCURACY_FS = (5e-3, 5e-3, 2e-3, 2e-3, 2e-3, 2e-3)
"""+-fraction of full scale, per range in `CURRENT_RANGES` (PM100D specifications, photodiode
input accuracy: +-0.2 % f.s. on 5 uA to 5 mA, +-0.5 % f.s. on the two lowest ranges; value not
checked against a stored copy of the data sheet)."""
RESOLUTION_FS = 2e-5
"""A range's resolution as a fraction of its full scale: the PM100D's 1 pA display resolution
on its 50 nA range, scaled to the others (typical, not from a data sheet for ranges > 50 nA)."""
SENSOR_ACCURACY = 0.05
"""+-relative calibration uncertainty of a Thorlabs S-series InGaAs photodiode sensor at
1550 nm (S155C / S144C spec sheets: measurement uncertainty +-5 %; value not checked against a
stored copy of the spec sheet)."""
SENSOR_LINEARITY = 0.005
"""+-relative deviation from linearity over the sensor's power range (typical of InGaAs
photodiodes, +-0.5 %; typical, not from a data sheet)."""
LINEARITY_REFERENCE = 1e-3
"""W: the power the sensor is calibrated at, where its linearity error vanishes (typical)."""
LINEARITY_DECADES = 6.0
"""Decades of power over which the linearity error grows to its full value (20 mW down to
20 nW, the sensor's range)."""
RELATIVE_NOISE = 5e-4
"""Relative rms noise of one sample (speckle, polarisation and amplifier noise of a fibre
sensor; typical, not from a data sheet)."""
RANGE_SETTLE_S = 3e-3
"""s a range change takes before the console measures on the new range: one sample time,
the sample taken across the switch being dropped (typical, not stated in the PM100D data sheet
or manual)."""


def current_range_index(current: float) -> int:
    """The smallest current range (index into `CURRENT_RANGES`) whose full scale holds
    `current` (A); the top range if none does."""
    for i, full_scale in enumerate(CURRENT_RANGES):
        if abs(current) <= full_scale:
            return i
    return len(CURRENT_RANGES) - 1


def linearity_deviation(power: float, coefficient: float) -> float:
    """Relative deviation from linearity at `power` (W) of a sensor whose linearity error
    reaches `coefficient` `LINEARITY_DECADES` decades from `LINEARITY_REFERENCE`."""
    if power <= 0:
        return 0.0
    decades = math.log10(power / LINEARITY_REFERENCE) / LINEARITY_DECADES
    return coefficient * max(-1.0, min(1.0, decades))


def responsivity(wavelength: float) -> float:
    """Responsivity of the emulated InGaAs sensor at `wavelength` (m), A/W."""
    return float(np.interp(wavelength * 1e9, _RESPONSIVITY_NM, _RESPONSIVITY_A_PER_W))


class ThorlabsPM100DEmulator(ScpiDevice):
    """A PM100D console with a fibre-coupled InGaAs photodiode sensor (800-1700 nm)."""

    identity = ("Thorlabs", "PM100D", "P0012345", "2.8.0")
    sample_time: ClassVar[float] = 3e-3
    """s per sample ("1 sample takes approx. 3 ms", SENSe:AVERage in the PM100D manual)."""
    noise_floor: ClassVar[float] = 50e-12
    """W rms per sample at the sensor (modelling choice of the order of a large-area InGaAs
    photodiode on the console's most sensitive range)."""
    min_wavelength_nm: ClassVar[float] = 800.0
    max_wavelength_nm: ClassVar[float] = 1700.0
    max_power: ClassVar[float] = 20e-3
    """W, the top power range of the sensor."""

    def __init__(self, world: LabWorld, name: str) -> None:
        super().__init__(world, name)
        # One generator for the emulator's life: *RST must not replay the same noise.
        self._rng = self.world.rng(self.name)
        # The realistic lab's draws come from generators of their own (ideal stays as it was).
        self._noise_rng = error_rng(self.world, self.name, "reading noise")
        self._calibration: tuple[float, float, tuple[float, ...]] | None = None

    def reset(self) -> None:
        self.wavelength_nm = 1550.0
        self.average_count = 1
        self.attenuation_db = 0.0
        self.beam_diameter_mm = 5.0
        self.power_range = self.max_power
        self.auto_range = True
        self.configuration = "POW"
        self.ptr = 0xFFFF  # SCPI-1999 vol. 2, 9.3: positive transitions enabled at preset
        self.ntr = 0
        self.operation_event = 0
        self._initiated = False
        self._ready_at = 0.0
        self._last: float | None = None
        self._range_settled_at = -math.inf
        """World time (s) the last range change has settled (realistic lab)."""
        self._range_in_use: int | None = None
        """Index of the current range the last measurement ended on (None: none yet)."""

    # -- measurement model ----------------------------------------------------------------------
    def _sample(self) -> float:
        """One reading (W or A, as configured) averaged over `average_count` samples."""
        count = self.average_count
        light = self.world.optical_output_power()
        true_r = responsivity(self.world.pump.wavelength)
        current = true_r * light + true_r * self._rng.normal(0.0, self.noise_floor / np.sqrt(count))
        if not self.world.ideal:
            current = self._realistic_current(true_r * light, light, current - true_r * light)
        if self.configuration == "CURR":
            return current
        set_r = responsivity(self.wavelength_nm * 1e-9)
        # The user attenuation (CORRection:LOSS) scales the displayed power up by its factor.
        return current / set_r * 10 ** (self.attenuation_db / 10)

    def calibration_errors(self) -> tuple[float, float, tuple[float, ...]]:
        """This instance's fixed errors: (sensor gain error, linearity coefficient, gain error
        of each current range), relative; drawn once from the data-sheet bounds."""
        if self._calibration is None:
            w, n = self.world, self.name
            self._calibration = (
                fixed_error(w, n, "sensor accuracy", SENSOR_ACCURACY),
                fixed_error(w, n, "sensor linearity", SENSOR_LINEARITY),
                tuple(fixed_error(w, n, f"range {i} accuracy", bound)
                      for i, bound in enumerate(CONSOLE_ACCURACY_FS)),
            )
        return self._calibration

    def current_range_in_use(self, current: float) -> int:
        """Index into `CURRENT_RANGES` of the range measuring `current` (A): auto-ranging
        picks the smallest that holds it, a fixed power range the smallest holding its full
        scale at the set wavelength."""
        if self.auto_range:
            return current_range_index(current)
        return current_range_index(self.power_range * responsivity(self.wavelength_nm * 1e-9))

    def _realistic_current(self, true_current: float, light: float, floor_noise: float) -> float:
        """The photocurrent (A) the console reports in the realistic lab: the true current
        through the sensor's and the range's fixed errors, with the floor noise already drawn,
        range and relative noise, quantised to the range's resolution."""
        sensor_gain, linearity, range_gains = self.calibration_errors()
        index = self.current_range_in_use(true_current)
        step = CURRENT_RANGES[index] * RESOLUTION_FS
        gain = (1 + sensor_gain) * (1 + linearity_deviation(light, linearity)) * (
            1 + range_gains[index])
        sigma = math.hypot(step, RELATIVE_NOISE * true_current) / math.sqrt(self.average_count)
        current = true_current * gain + floor_noise + float(self._noise_rng.normal(0.0, sigma))
        # The mean of `count` samples, each quantised to `step`, moves in steps of step / count.
        resolution = step / self.average_count
        return round(current / resolution) * resolution

    def _initiate_measurement(self) -> None:
        self._initiated = True
        start = max(self.world.now(), self._range_settled_at)  # after a range change settles
        self._ready_at = start + self.average_count * self.sample_time

    def _change_range(self) -> None:
        """A range setting changed: the console settles on the new range (realistic lab)."""
        if not self.world.ideal:
            self._range_settled_at = self.world.now() + RANGE_SETTLE_S
            self._range_in_use = None  # the settling is counted here, not again at the end

    def _auto_range_switch(self) -> None:
        """At the end of a measurement: if auto-ranging has to switch range for the light now,
        it does, and the sample across the switch is taken again (`RANGE_SETTLE_S` of lab
        time). Realistic lab only."""
        if self.world.ideal:
            return
        light = self.world.optical_output_power()
        index = self.current_range_in_use(responsivity(self.world.pump.wavelength) * light)
        if self._range_in_use is not None and index != self._range_in_use:
            self.world.advance(RANGE_SETTLE_S)
        self._range_in_use = index

    def _fetch(self) -> str:
        """FETCh?: the result of the last INITiate, waiting (in world time) until it is done."""
        if self._initiated:
            wait = self._ready_at - self.world.now()
            if wait > 0:
                self.world.advance(wait)
            self._auto_range_switch()
            self._last = self._sample()
            self._initiated = False
            self.operation_event |= _OPERATION_DATA_READY & self.ptr
        if self._last is None:
            raise ScpiError(_DATA_STALE)
        return fmt(self._last)

    # -- SENSe: corrections ----------------------------------------------------------------------
    @command("[SENSe]:CORRection:WAVelength")
    def _set_wavelength(self, args: Args) -> None:
        # Plain nm, as the manual states; units=("",) answers a suffix with -131.
        self.wavelength_nm = args.number(low=self.min_wavelength_nm, high=self.max_wavelength_nm,
                                         units=("",))

    @command("[SENSe]:CORRection:WAVelength", query=True)
    def _get_wavelength(self, args: Args) -> str:
        return fmt(self.wavelength_nm)

    @command("[SENSe]:AVERage[:COUNt]")
    def _set_average(self, args: Args) -> None:
        self.average_count = args.integer(low=1, high=10_000)

    @command("[SENSe]:AVERage[:COUNt]", query=True)
    def _get_average(self, args: Args) -> str:
        return str(self.average_count)

    @command("[SENSe]:CORRection[:LOSS][:INPut][:MAGNitude]")
    def _set_attenuation(self, args: Args) -> None:
        self.attenuation_db = args.number(low=-60.0, high=60.0, units=("DB",))

    @command("[SENSe]:CORRection[:LOSS][:INPut][:MAGNitude]", query=True)
    def _get_attenuation(self, args: Args) -> str:
        return fmt(self.attenuation_db)

    @command("[SENSe]:CORRection:BEAMdiameter")
    def _set_beam_diameter(self, args: Args) -> None:
        self.beam_diameter_mm = args.number(low=1e-3, high=1e3, units=("",))  # mm

    @command("[SENSe]:CORRection:BEAMdiameter", query=True)
    def _get_beam_diameter(self, args: Args) -> str:
        return fmt(self.beam_diameter_mm)

    @command("[SENSe]:CORRection:COLLect:ZERO:MAGNitude", query=True)
    def _get_zero(self, args: Args) -> str:
        return fmt(0.0)  # a zeroed sensor: no dark offset

    # -- SENSe: ranges ---------------------------------------------------------------------------
    @command("[SENSe]:POWer[:DC]:RANGe[:UPPer]")
    def _set_power_range(self, args: Args) -> None:
        power_range = args.number(low=0.0, high=self.max_power, units=("W", "MW", "UW", "NW"))
        if power_range != self.power_range or self.auto_range:
            self._change_range()
        self.power_range = power_range
        self.auto_range = False  # SCPI: setting a range switches auto-ranging off

    @command("[SENSe]:POWer[:DC]:RANGe[:UPPer]", query=True)
    def _get_power_range(self, args: Args) -> str:
        return fmt(self.power_range)

    @command("[SENSe]:POWer[:DC]:RANGe:AUTO")
    def _set_auto_range(self, args: Args) -> None:
        auto = args.boolean()
        if auto != self.auto_range:
            self._change_range()
        self.auto_range = auto

    @command("[SENSe]:POWer[:DC]:RANGe:AUTO", query=True)
    def _get_auto_range(self, args: Args) -> str:
        return "1" if self.auto_range else "0"

    @command("[SENSe]:CURRent[:DC]:RANGe[:UPPer]", query=True)
    def _get_current_range(self, args: Args) -> str:
        return fmt(self.power_range * responsivity(self.wavelength_nm * 1e-9))

    # -- measurement commands --------------------------------------------------------------------
    @command("CONFigure[:SCALar]:POWer")
    @no_argument
    def _configure_power(self, args: Args) -> None:
        self.configuration = "POW"

    @command("CONFigure[:SCALar]:CURRent[:DC]")
    @no_argument
    def _configure_current(self, args: Args) -> None:
        self.configuration = "CURR"

    @command("CONFigure", query=True)
    def _get_configuration(self, args: Args) -> str:
        return self.configuration

    @command("INITiate[:IMMediate]")
    @no_argument
    def _initiate(self, args: Args) -> None:
        self._initiate_measurement()

    @command("ABORt")
    @no_argument
    def _abort(self, args: Args) -> None:
        self._initiated = False

    @command("FETCh", query=True)
    def _fetch_query(self, args: Args) -> str:
        return self._fetch()

    def _read_now(self) -> str:
        self._initiate_measurement()  # READ? = ABORt; INITiate; FETCh?
        return self._fetch()

    @command("READ", query=True)
    def _read(self, args: Args) -> str:
        return self._read_now()

    @command("MEASure[:SCALar]:POWer", query=True)
    def _measure_power(self, args: Args) -> str:
        self.configuration = "POW"  # MEASure? = CONFigure + READ?
        return self._read_now()

    @command("MEASure[:SCALar]:CURRent[:DC]", query=True)
    def _measure_current(self, args: Args) -> str:
        self.configuration = "CURR"
        return self._read_now()

    @command("MEASure[:SCALar]:FREQuency", query=True)
    def _measure_frequency(self, args: Args) -> str:
        return fmt(0.0)  # the world's light is CW: no modulation frequency to count

    # -- STATus:OPERation --------------------------------------------------------------------------
    @command("STATus:OPERation:PTRansition")
    def _set_ptr(self, args: Args) -> None:
        self.ptr = args.integer(low=0, high=65535)

    @command("STATus:OPERation:PTRansition", query=True)
    def _get_ptr(self, args: Args) -> str:
        return str(self.ptr)

    @command("STATus:OPERation:NTRansition")
    def _set_ntr(self, args: Args) -> None:
        self.ntr = args.integer(low=0, high=65535)

    @command("STATus:OPERation:NTRansition", query=True)
    def _get_ntr(self, args: Args) -> str:
        return str(self.ntr)

    @command("STATus:OPERation[:EVENt]", query=True)
    def _get_operation_event(self, args: Args) -> str:
        value, self.operation_event = self.operation_event, 0  # reading clears the event register
        return str(value)

    @command("STATus:OPERation:CONDition", query=True)
    def _get_operation_condition(self, args: Args) -> str:
        return str(_OPERATION_DATA_READY if self._last is not None and not self._initiated
                   else 0)
