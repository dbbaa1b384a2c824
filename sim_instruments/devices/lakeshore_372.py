"""Emulator of the Lake Shore Model 372 AC resistance bridge and temperature controller.

Commands from the Lake Shore Model 372 user's manual, chapter 6 (remote operation): the
IEEE 488.2 common commands and the instrument's own command set, here the part QCoDeS's
``LakeshoreModel372`` driver sends (``Lakeshore_model_372.py``, ``lakeshore_base.py``) plus
SCAN: readings KRDG? SRDG? RDGST? and the 372's own RDGK? RDGR? RDGPWR? (kelvin, ohm and
excitation power, ``+n.nnnnE+nn``), inputs INSET INTYPE INNAME TLIMIT SCAN, and the heater
outputs OUTMODE HTRSET RANGE SETP PID RAMP RAMPST? HTR? (``HTR?`` reads ``+nn.nnn``, the
sample heater in % or W; ``HTRSET?`` reads ``+nnn.nnn,n,+nnn.nnn,n`` for the sample heater
and ``n,n,+nnn.nnn,n`` for the warm-up heater). Lake Shore commands are not SCPI:
one all-caps mnemonic, a space, comma-separated fields; a field left empty keeps its present
value (the Lake Shore convention for skipping parameters). Replies end in CR LF.

The 372 has no ``SYST:ERR?`` queue. A rejected command sets a bit of the IEEE 488.2 standard
event status register, read (and cleared) with ``*ESR?``: bit 5 (CME) for a command it does
not recognise or cannot parse, bit 4 (EXE) for a field out of range. An unrecognised query
gets no reply at all, so the controller's read times out, as on the real instrument.

Wiring (a typical Bluefors system, whose 372 channels the Bluefors software names 1 "50K",
2 "4K", 3 "Magnet", 5 "Still", 6 "MXC", 7 and 8 user channels): channel 6 reads
`LabWorld.mxc_temperature()`, channels 1, 2, 5 the fridge's 50 K, 4 K and still stages, 3 the
magnet (thermally on the 4 K plate), and 7 the cold plate (a site choice; 8 is left free).
Every other input, and the control input A, has no sensor: the current source cannot drive
an open circuit, so RDGST? reports CS OVL and the readings are zero.

Every wired sensor is modelled as one RuOx-like thermometer (illustrative, not a real
calibration), with the variable-range-hopping form RuOx chips follow,
``R(T) = 495 ohm * exp((4.89 K / T) ** 0.25)``: about 0.71 kohm at 300 K, 0.88 kohm at 45 K,
1.4 kohm at 4.2 K, 11 kohm at 50 mK and 55 kohm at 10 mK. The bridge reads the resistance with
a relative noise of 2e-4 rms (seeded per instrument), and the kelvin reading is that noisy
resistance through the inverse curve. Not modelled: the scanner (the real 372 measures one
channel at a time and holds the others' last readings; here every enabled channel reads live),
excitation and range limits, and the heaters' effect on the fridge.

Settling (realistic lab; ideal reads at once, as before): after a channel change (``SCAN``)
or an excitation or range change (``INTYPE``) a channel's readings hold their value at the
change for its pause time (``INSET``), then approach the live reading with the 200 ms time
constant of the digital filter behind the unfiltered readings (manual 4.4.7; 4.4.7.1: "Filter
settling time begins after the pause time finishes on range or channel change"). Nothing
flags this over the interface; no qnetlab driver or sequence changes the scanner or ranges.

The realistic lab (`LabWorld.ideal` False): each wired sensor's calibration curve is off by a
fixed relative temperature error (`CALIBRATION_ACCURACY`), drawn once per instance and channel
(`physics.instrument_errors`): the resistance reading stays true, the kelvin reading carries
the error, as with a real sensor whose calibration is only as good as its certificate.

Deliberately left out (no driver feature touches them): curves (CRVHDR, CRVPT, CRVDEL),
alarms and relays (ALARM, RELAY), the analog and still outputs' AOUT?/ANALOG/STILL, manual
output MOUT, heater status HTRST?, the filter (FILTER), display and front-panel settings
(DISPLAY, DISPFLD, BRIGT, LOCK), the interface and network settings (IEEE, NET, MODE) and
quadrature readings (RDGIQ?). They get the unknown-command treatment above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..physics.instrument_errors import fixed_error
from .scpi import (
    DATA_OUT_OF_RANGE,
    MISSING_PARAMETER,
    PARAMETER_NOT_ALLOWED,
    Args,
    ScpiDevice,
    ScpiError,
    command,
)

if TYPE_CHECKING:
    from ..physics.world import LabWorld

N_CHANNELS = 16
CONTROL_INPUT = "A"

# The RuOx-like calibration curve: R(T) = R_INF * exp((T0 / T) ** 0.25).
R_INF = 495.0
"""ohm"""
T0 = 4.89
"""K"""
RESISTANCE_NOISE = 2e-4
"""Relative rms noise of a resistance reading."""
CALIBRATION_ACCURACY = 0.03
"""+-relative temperature error of a calibrated RuOx sensor's curve at mK temperatures. Lake
Shore, "Model 372 sensor performance" (lakeshore.com, Rox RX-102B-CB with 0.02-40 K
calibration): the overall accuracy is the root sum of squares of measurement resolution,
electronic accuracy, self-heating, calibration accuracy and interpolation error, and the
calibration term dominates at mK temperatures at a few per cent of T (+-3 % is typical, not
checked against that page's table)."""

READING_FILTER_TAU_S = 0.2
"""s, time constant of the digital filter behind the 372's unfiltered readings (manual,
4.4.7 Filter)."""
SETTLED_AFTER_TAUS = 20.0
"""Filter time constants after the pause past which a reading counts as settled (e^-20)."""

# RDGST? bit weights (manual, RDGST? query).
CS_OVL = 1

# Outputs: 0 sample heater, 1 warm-up heater, 2 analog/still heater, with the modes each
# accepts (OUTMODE) and its highest RANGE.
_OUTPUT_MODES = {0: (0, 2, 3, 5), 1: (0, 2, 3, 5, 6), 2: (0, 1, 2, 4)}
_OUTPUT_MAX_RANGE = {0: 8, 1: 1, 2: 1}


def resistance_of(temperature: float) -> float:
    """The RuOx-like sensor's resistance (ohm) at `temperature` (K)."""
    return R_INF * math.exp((T0 / temperature) ** 0.25)


def temperature_of(resistance: float) -> float:
    """Inverse of `resistance_of`: K from ohm (the curve is defined for R > R_INF)."""
    return T0 / math.log(resistance / R_INF) ** 4


@dataclass
class _Input:
    """One measurement input (1-16) or the control input A: INSET, INTYPE, INNAME, TLIMIT."""

    enabled: int = 1
    dwell: int = 10
    """s"""
    pause: int = 3
    """s"""
    curve: int = 0
    tempco: int = 1
    mode: int = 1
    """0 voltage, 1 current excitation"""
    excitation: int = 7
    autorange: int = 1
    range: int = 13
    cs_shunt: int = 0
    units: int = 1
    """1 kelvin, 2 ohms"""
    name: str = ""
    tlimit: float = 0.0
    """K; 0 is off"""


@dataclass
class _Output:
    """One heater output: OUTMODE, HTRSET, RANGE, SETP, PID, RAMP."""

    mode: int = 0
    input: str = "6"
    powerup: int = 0
    polarity: int = 0
    filter: int = 0
    delay: int = 1
    """s"""
    resistance: float = 120
    """ohm for the sample heater; 1 = 25 ohm, 2 = 50 ohm for the warm-up heater"""
    max_current: int = 0
    max_user_current: float = 0.0
    """A"""
    display: int = 1
    range: int = 0
    setpoint: float = 0.0
    p: float = 10.0
    i: float = 20.0
    d: float = 0.0
    ramp_on: int = 0
    ramp_rate: float = 0.0
    """K/min"""


def _keep_or_int(args: Args, i: int, current: int, low: int, high: int) -> int:
    """Field `i` as an integer in [low, high]; an empty or missing field keeps `current`."""
    if i >= len(args) or args.params[i] == "":
        return current
    return args.integer(i, low=low, high=high)


def _keep_or_number(args: Args, i: int, current: float, low: float, high: float) -> float:
    if i >= len(args) or args.params[i] == "":
        return current
    return args.number(i, low=low, high=high)


def _at_most(args: Args, n: int) -> None:
    if len(args) > n:
        raise ScpiError(PARAMETER_NOT_ALLOWED, f"{len(args)} fields, at most {n}")


def _reading(value: float) -> str:
    """The manual's reading format, +n.nnnnE+nn."""
    return f"{value:+.4E}"


def excitation_power(inp: _Input, resistance: float) -> float:
    """W dissipated in a sensor of `resistance` (ohm) by `inp`'s excitation: ranges step by
    sqrt(10), current from 1 pA (range 1) to 31.6 mA (22), voltage from 2 uV (1) to 632 uV
    (12) (manual, INTYPE)."""
    if resistance <= 0:
        return 0.0
    step = 10 ** ((inp.excitation - 1) / 2)
    if inp.mode == 1:
        return (1e-12 * step) ** 2 * resistance
    return (2e-6 * step) ** 2 / resistance


class Lakeshore372Emulator(ScpiDevice):
    identity = ("LSCI", "MODEL372", "LSA2Q4N/LSA2Q4M", "1.4")
    terminator = "\r\n"

    def __init__(self, world: LabWorld, name: str) -> None:
        self._rng = world.rng(name)
        # Input and heater configuration is kept in the instrument's non-volatile memory, so
        # it is set up once here and survives *RST (which restores power-up state only).
        self.inputs: dict[str, _Input] = {str(n): _Input() for n in range(1, N_CHANNELS + 1)}
        self.inputs[CONTROL_INPUT] = _Input(enabled=0)
        for channel, curve in self._wired_curves().items():
            self.inputs[channel].curve = curve
        self.inputs["6"].name = "MXC"
        self.outputs = {n: _Output() for n in _OUTPUT_MODES}
        self.outputs[1].resistance = 1  # the warm-up heater's setting: 1 = 25 ohm, 2 = 50 ohm
        self.scan_channel = "1"
        self.autoscan = 1
        self._settling: dict[str, tuple[float, float]] = {}
        """channel -> (world time of the change, ohm reading held through the pause)"""
        super().__init__(world, name)

    @staticmethod
    def _wired_curves() -> dict[str, int]:
        # User curves 21-59 hold the sensors' calibrations; one per wired channel.
        return {ch: 20 + int(ch) for ch in ("1", "2", "3", "5", "6", "7")}

    def reset(self) -> None:
        # *RST: power-up state. Heater outputs come up off unless their power-up enable is set.
        for out in self.outputs.values():
            if not out.powerup:
                out.range = 0

    # -- the physics behind each input ---------------------------------------------------------
    def stage_temperature(self, channel: str) -> float | None:
        """True temperature (K) at the sensor wired to `channel`, or None if none is."""
        fridge = self.world.fridge
        stages = {
            "1": fridge.plate_50k_temperature,
            "2": fridge.plate_4k_temperature,
            "3": fridge.plate_4k_temperature,
            "5": fridge.still_temperature,
            "7": fridge.cold_plate_temperature,
        }
        if channel == "6":
            return self.world.mxc_temperature()
        return stages.get(channel)

    def _measure(self, channel: str) -> tuple[float, float, int]:
        """One reading of `channel`: (kelvin, ohm, RDGST? status)."""
        inp = self.inputs[channel]
        if not inp.enabled or inp.cs_shunt:
            return 0.0, 0.0, 0
        temperature = self.stage_temperature(channel)
        if temperature is None:
            return 0.0, 0.0, CS_OVL
        resistance = self._settled_resistance(channel, resistance_of(temperature))
        if resistance is None:  # paused: the reading held at the change
            resistance = self._settling[channel][1]
        else:
            resistance *= 1.0 + RESISTANCE_NOISE * float(self._rng.standard_normal())
        # Without a curve (curve 0) the bridge has no kelvin reading.
        kelvin = temperature_of(resistance) if inp.curve else 0.0
        if not self.world.ideal:
            kelvin *= 1 + self.calibration_error(channel)
        return kelvin, resistance, 0

    def _settled_resistance(self, channel: str, live: float) -> float | None:
        """The noise-free reading (ohm) of `channel` whose sensor reads `live` ohm now: None
        through the pause after a change, then `live` reached with the filter's time constant
        (module docstring)."""
        change = self._settling.get(channel)
        if change is None:
            return live
        started, held = change
        since = self.world.now() - started - self.inputs[channel].pause
        if since < 0:
            return None
        if since > SETTLED_AFTER_TAUS * READING_FILTER_TAU_S:
            del self._settling[channel]
            return live
        return live + (held - live) * math.exp(-since / READING_FILTER_TAU_S)

    def _start_settling(self, channel: str) -> None:
        """A channel or range change on `channel`: its reading holds through the pause, then
        settles (realistic lab only)."""
        if self.world.ideal:
            return
        held = self._measure(channel)[1]  # the reading it had at the change
        self._settling[channel] = (self.world.now(), held)

    def calibration_error(self, channel: str) -> float:
        """The fixed relative error of the calibration curve of the sensor on `channel`."""
        return fixed_error(self.world, self.name, f"calibration {channel}", CALIBRATION_ACCURACY)

    # -- field parsing -------------------------------------------------------------------------
    def _input_id(self, args: Args, *, control: bool = True) -> str:
        word = args.text(0).upper()
        if control and word == CONTROL_INPUT:
            return word
        number = args.integer(0, low=1, high=N_CHANNELS)
        return str(number)

    def _output_id(self, args: Args) -> int:
        return args.integer(0, low=0, high=2)

    # -- readings --------------------------------------------------------------------------------
    @command("KRDG", query=True)
    def _kelvin_reading(self, args: Args) -> str:
        return _reading(self._measure(self._input_id(args))[0])

    @command("SRDG", query=True)
    def _sensor_reading(self, args: Args) -> str:
        return _reading(self._measure(self._input_id(args))[1])

    @command("RDGK", query=True)
    def _rdg_kelvin(self, args: Args) -> str:
        return _reading(self._measure(self._input_id(args))[0])

    @command("RDGR", query=True)
    def _rdg_resistance(self, args: Args) -> str:
        return _reading(self._measure(self._input_id(args))[1])

    @command("RDGPWR", query=True)
    def _rdg_power(self, args: Args) -> str:
        channel = self._input_id(args)
        resistance = self._measure(channel)[1]
        return _reading(excitation_power(self.inputs[channel], resistance))

    @command("RDGST", query=True)
    def _reading_status(self, args: Args) -> str:
        return f"{self._measure(self._input_id(args))[2]:03d}"

    # -- inputs ------------------------------------------------------------------------------------
    @command("INSET")
    def _set_input_parameters(self, args: Args) -> None:
        _at_most(args, 6)
        channel = self._input_id(args)
        inp = self.inputs[channel]
        enabled = _keep_or_int(args, 1, inp.enabled, 0, 1)
        dwell = _keep_or_int(args, 2, inp.dwell, 1, 200)
        pause = _keep_or_int(args, 3, inp.pause, 3, 200)
        curve = _keep_or_int(args, 4, inp.curve, 0, 59)
        tempco = _keep_or_int(args, 5, inp.tempco, 1, 2)
        # Validate every field before changing anything, so a rejected command has no effect.
        inp.enabled, inp.dwell, inp.pause, inp.curve, inp.tempco = (
            enabled, dwell, pause, curve, tempco)
        if not any(self.inputs[str(n)].enabled for n in range(1, N_CHANNELS + 1)):
            # Manual: at least one measurement channel stays enabled; channel 1 takes over.
            self.inputs["1"].enabled = 1

    @command("INSET", query=True)
    def _get_input_parameters(self, args: Args) -> str:
        inp = self.inputs[self._input_id(args)]
        return f"{inp.enabled},{inp.dwell:03d},{inp.pause:03d},{inp.curve:02d},{inp.tempco}"

    @command("INTYPE")
    def _set_input_type(self, args: Args) -> None:
        _at_most(args, 7)
        inp = self.inputs[self._input_id(args)]
        mode = _keep_or_int(args, 1, inp.mode, 0, 1)
        # 12 voltage excitation ranges, 22 current ranges (manual, INTYPE).
        excitation = _keep_or_int(args, 2, inp.excitation, 1, 12 if mode == 0 else 22)
        autorange = _keep_or_int(args, 3, inp.autorange, 0, 2)
        rng = _keep_or_int(args, 4, inp.range, 1, 22)
        cs_shunt = _keep_or_int(args, 5, inp.cs_shunt, 0, 1)
        units = _keep_or_int(args, 6, inp.units, 1, 2)
        if (mode, excitation, autorange, rng) != (inp.mode, inp.excitation, inp.autorange,
                                                  inp.range):
            self._start_settling(self._input_id(args))
        inp.mode, inp.excitation, inp.autorange, inp.range, inp.cs_shunt, inp.units = (
            mode, excitation, autorange, rng, cs_shunt, units)

    @command("INTYPE", query=True)
    def _get_input_type(self, args: Args) -> str:
        inp = self.inputs[self._input_id(args)]
        return (f"{inp.mode},{inp.excitation:02d},{inp.autorange},{inp.range:02d},"
                f"{inp.cs_shunt},{inp.units}")

    @command("INNAME")
    def _set_input_name(self, args: Args) -> None:
        _at_most(args, 2)
        inp = self.inputs[self._input_id(args)]
        if len(args) < 2:
            raise ScpiError(MISSING_PARAMETER, "INNAME needs a name")
        # The name field holds 15 characters; the instrument keeps the first 15.
        inp.name = args.text(1)[:15]

    @command("INNAME", query=True)
    def _get_input_name(self, args: Args) -> str:
        return self.inputs[self._input_id(args)].name

    @command("TLIMIT")
    def _set_temperature_limit(self, args: Args) -> None:
        _at_most(args, 2)
        inp = self.inputs[self._input_id(args)]
        inp.tlimit = _keep_or_number(args, 1, inp.tlimit, 0.0, 9999.0)

    @command("TLIMIT", query=True)
    def _get_temperature_limit(self, args: Args) -> str:
        return _reading(self.inputs[self._input_id(args)].tlimit)

    @command("SCAN")
    def _set_scan(self, args: Args) -> None:
        _at_most(args, 2)
        channel = str(args.integer(0, low=1, high=N_CHANNELS))
        self.autoscan = _keep_or_int(args, 1, self.autoscan, 0, 1)
        if channel != self.scan_channel:
            self._start_settling(channel)
        self.scan_channel = channel

    @command("SCAN", query=True)
    def _get_scan(self, args: Args) -> str:
        return f"{int(self.scan_channel):02d},{self.autoscan}"

    # -- heater outputs ---------------------------------------------------------------------------
    @command("OUTMODE")
    def _set_output_mode(self, args: Args) -> None:
        _at_most(args, 7)
        number = self._output_id(args)
        out = self.outputs[number]
        mode = _keep_or_int(args, 1, out.mode, 0, 6)
        if mode not in _OUTPUT_MODES[number]:
            raise ScpiError(DATA_OUT_OF_RANGE, f"mode {mode} not valid for output {number}")
        source = out.input
        if len(args) > 2 and args.params[2] != "":
            source = self._input_id(Args([args.params[2]]))
        powerup = _keep_or_int(args, 3, out.powerup, 0, 1)
        polarity = _keep_or_int(args, 4, out.polarity, 0, 1)
        filt = _keep_or_int(args, 5, out.filter, 0, 1)
        delay = _keep_or_int(args, 6, out.delay, 1, 255)
        out.mode, out.input, out.powerup, out.polarity, out.filter, out.delay = (
            mode, source, powerup, polarity, filt, delay)

    @command("OUTMODE", query=True)
    def _get_output_mode(self, args: Args) -> str:
        out = self.outputs[self._output_id(args)]
        return (f"{out.mode},{out.input},{out.powerup},{out.polarity},{out.filter},"
                f"{out.delay:03d}")

    @command("HTRSET")
    def _set_heater_setup(self, args: Args) -> None:
        # Manual: HTRSET <output>,<resistance>,<max current>,<max user current>,<current/power>
        # for the sample (0) and warm-up (1) heaters. (QCoDeS's base driver sends an extra
        # <output type> field first, the Model 335 layout; the 372 does not know that form.)
        _at_most(args, 5)
        number = args.integer(0, low=0, high=1)
        out = self.outputs[number]
        resistance: float
        if number == 0:  # ohms, n,nnn.nnn
            resistance = _keep_or_number(args, 1, out.resistance, 1.0, 2000.0)
        else:
            resistance = _keep_or_int(args, 1, int(out.resistance), 1, 2)  # 1 = 25, 2 = 50 ohm
        max_current = _keep_or_int(args, 2, out.max_current, 0, 2)
        user = _keep_or_number(args, 3, out.max_user_current, 0.0, 0.63)
        display = _keep_or_int(args, 4, out.display, 1, 2)
        out.resistance, out.max_current, out.max_user_current, out.display = (
            resistance, max_current, user, display)

    @command("HTRSET", query=True)
    def _get_heater_setup(self, args: Args) -> str:
        number = args.integer(0, low=0, high=1)
        out = self.outputs[number]
        user = f"{out.max_user_current:+08.3f}"
        if number == 0:  # the sample heater's resistance is ohms, +nnn.nnn
            return f"{out.resistance:+08.3f},{out.max_current},{user},{out.display}"
        return f"{int(out.resistance)},{out.max_current},{user},{out.display}"

    @command("RANGE")
    def _set_range(self, args: Args) -> None:
        _at_most(args, 2)
        number = self._output_id(args)
        out = self.outputs[number]
        out.range = _keep_or_int(args, 1, out.range, 0, _OUTPUT_MAX_RANGE[number])

    @command("RANGE", query=True)
    def _get_range(self, args: Args) -> str:
        return str(self.outputs[self._output_id(args)].range)

    @command("HTR", query=True)
    def _get_heater_output(self, args: Args) -> str:
        # Output in % of the range. No control loop or manual output (MOUT) is modelled, so
        # every output stays at 0 %.
        # Manual: HTR? takes no field and applies to the sample heater only; QCoDeS sends
        # the output number after it, which is checked and otherwise ignored.
        if len(args):
            self._output_id(args)
        return f"{0.0:+07.3f}"

    @command("SETP")
    def _set_setpoint(self, args: Args) -> None:
        _at_most(args, 2)
        out = self.outputs[self._output_id(args)]
        if len(args) < 2:
            raise ScpiError(MISSING_PARAMETER, "SETP needs a value")
        # In the control input's preferred units: kelvin or ohms, never negative.
        out.setpoint = args.number(1, low=0.0, high=1e6)

    @command("SETP", query=True)
    def _get_setpoint(self, args: Args) -> str:
        return _reading(self.outputs[self._output_id(args)].setpoint)

    @command("PID")
    def _set_pid(self, args: Args) -> None:
        _at_most(args, 4)
        out = self.outputs[self._output_id(args)]
        p = _keep_or_number(args, 1, out.p, 0.0, 1000.0)
        i = _keep_or_number(args, 2, out.i, 0.0, 10000.0)
        d = _keep_or_number(args, 3, out.d, 0.0, 2500.0)
        out.p, out.i, out.d = p, i, d

    @command("PID", query=True)
    def _get_pid(self, args: Args) -> str:
        out = self.outputs[self._output_id(args)]
        return f"{out.p:+09.3f},{out.i:+010.3f},{out.d:+09.3f}"

    @command("RAMP")
    def _set_ramp(self, args: Args) -> None:
        _at_most(args, 3)
        out = self.outputs[self._output_id(args)]
        on = _keep_or_int(args, 1, out.ramp_on, 0, 1)
        rate = _keep_or_number(args, 2, out.ramp_rate, 0.0, 100.0)
        out.ramp_on, out.ramp_rate = on, rate

    @command("RAMP", query=True)
    def _get_ramp(self, args: Args) -> str:
        out = self.outputs[self._output_id(args)]
        return f"{out.ramp_on},{out.ramp_rate:+08.3f}"

    @command("RAMPST", query=True)
    def _get_ramp_status(self, args: Args) -> str:
        # Setpoint ramps complete at once: no control loop runs in the emulator.
        self._output_id(args)
        return "0"


# The 372 has no SCPI error queue: drop the SYSTem:ERRor? query every ScpiDevice inherits, so
# it is an unknown query here too (command error, no reply), as on the real instrument.
Lakeshore372Emulator._table = {
    key: [(nodes, handler) for nodes, handler in entries
          if handler is not ScpiDevice.__dict__["_system_error"]]
    for key, entries in Lakeshore372Emulator._table.items()
}
