"""Emulator of an SRS SIM900 mainframe holding Quantum Opus amp-sim SNSPD bias modules.

Mainframe (Stanford Research Systems SIM900 manual, remote operation; the forms used here are
the ones the public QCoDeS contrib ``SIM928`` and QuTech QMI ``sim900`` drivers send): IEEE
488.2 common commands (*IDN? *ESR? *CLS *RST ...), and

* ``SNDT p,"msg"``: send ``msg`` plus the terminator to the module in port ``p`` (1-8);
* ``NINP? p``: number of bytes the module in port ``p`` has sent and the host not yet read;
* ``GETN? p,n``: up to ``n`` (0-999) of those bytes as ``#3nnn<bytes>`` (``nnn`` the count
  actually returned; the module's own line feed is part of the bytes);
* ``FLSH [p]``: discard the bytes waiting from port ``p`` (all ports without ``p``);
* ``CTCR?``: a bit per port that holds a module (bit ``p`` for port ``p``).

Mainframe headers match in either case. A bad port or count sets the execution-error bit
(EXE, bit 4) of *ESR?, an unknown command the command-error bit (CME, bit 5). Not emulated:
``RAWN?`` (its reply carries no terminator, which this bench's transport always adds),
``SRST``, ``TERM``, ``CONN``/escape mode, and the status registers beyond *ESR?. The engine
also answers ``SYST:ERR?``, which the real SIM900 does not; the driver never sends it.

Module (Quantum Opus amp-sim command set, as in QMI ``amp_sim_module.py``): one letter after
``+``, a query with ``?``, a setting terminated by ``;``:

* ``+A?`` module ID; ``+B?`` / ``+Bd;`` bias in DAC units, 0-65535 = 0-25 uA (0 is off);
* ``+C?`` device voltage in ADC units (x 1.1 V / 65535 in high gain, x 5.0 V / 65535 in low
  gain); ``+C0;`` / ``+C1;`` high / low ADC gain;
* ``+Dd;`` / ``+D?`` reset-event duration, 0-255 in units of 10 ms;
* ``+E0;`` / ``+E1;`` / ``+E?`` auto-reset; ``+F;`` reset event; ``+G;`` auto-bias.

Replies are the value and a line feed. Not confirmed from a manual (the Quantum Opus manual
is not public): the module letters' case (accepted in either case here), the format of the
``+A?`` ID, the power-up reset duration and auto-reset state, and what the module does with
a command it does not understand; here it ignores it silently (no reply, no error flag), the
usual behaviour of such simple serial modules, so the driver validates before sending. The
``+H`` non-volatile bias commands are not emulated.

Physics: each module biases one `SnspdModel` on the shared world, behind its own
`DetectionPath` (default collection efficiency). A bias at or above the switching current
latches the wire: ``+C?`` reads high (device voltage = bias x `LATCHED_RESISTANCE`, an
illustrative hotspot-plus-load resistance) and there are no clicks, until the bias is set to
0 or a reset event (``+F;``, or the auto-reset when enabled) finds the restored bias below the
switching current. Auto-bias sets 95 % of the switching current (light-free latching point).
The module has no counter: the clicks a counter or time tagger would see come from
`click_rate(slot)` and `counts(slot, duration_s)`, for those emulators to call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from ..physics.photons import DetectionPath
from ..physics.snspd import SnspdModel
from .scpi import MISSING_PARAMETER, Args, ScpiDevice, ScpiError, command, no_argument

if TYPE_CHECKING:
    import numpy as np

    from ..physics.world import LabWorld

N_PORTS = 8
DAC_FULL_SCALE = 65535
BIAS_FULL_SCALE = 25e-6
"""A at DAC 65535 (2.5 V across the module's 100 kohm bias resistor)."""
ADC_FULL_SCALE = 65535
ADC_VOLTS = {False: 1.1, True: 5.0}
"""Device-voltage full scale, V, in high gain (False) and low gain (True)."""
LATCHED_RESISTANCE = 10e3
"""ohm: device voltage / bias of a latched wire (illustrative)."""
AUTO_BIAS_FRACTION = 0.95
MAX_GETN = 999
"""GETN? prints its count in three digits."""
MODULE_ID = "Quantum Opus amp-sim"
"""Illustrative ``+A?`` reply (the real format is not public)."""


def dac_of(bias: float) -> int:
    """DAC units for a bias current (A), rounded, clipped to 0-65535."""
    return min(DAC_FULL_SCALE, max(0, round(bias / BIAS_FULL_SCALE * DAC_FULL_SCALE)))


def bias_of(dac: int) -> float:
    """Bias current (A) of DAC units."""
    return dac * BIAS_FULL_SCALE / DAC_FULL_SCALE


@dataclass
class AmpSimModule:
    """One Quantum Opus amp-sim module and the detector it biases."""

    model: SnspdModel
    rng: np.random.Generator
    path: DetectionPath = field(default_factory=DetectionPath)
    dac: int = 0
    """Power-up bias is 0 (QMI: "the bias current defaults to zero upon power-up")."""
    low_gain: bool = False
    reset_duration: int = 10
    """units of 10 ms"""
    auto_reset: bool = False
    latched: bool = False
    reply: bytearray = field(default_factory=bytearray)
    """Bytes the module sent that the host has not read (the mainframe's port buffer)."""

    @property
    def bias(self) -> float:
        """A"""
        return bias_of(self.dac)

    def settle(self) -> None:
        # The auto-reset fires as soon as the module sees a latch; the restored bias latches
        # again at once if it is still above the switching current.
        if self.latched and self.auto_reset:
            self.latched = self.model.is_latched(self.bias)

    def device_voltage(self) -> float:
        """V across the detector: 0 superconducting, bias x LATCHED_RESISTANCE latched."""
        self.settle()
        return self.bias * LATCHED_RESISTANCE if self.latched else 0.0

    def set_dac(self, dac: int) -> None:
        self.dac = dac
        if dac == 0:
            self.latched = False  # no current: the wire cools back to superconducting
        elif self.model.is_latched(self.bias):
            self.latched = True

    def reset_event(self) -> None:
        # Bias to 0 for the reset duration (instant on virtual time), then restored.
        self.latched = self.model.is_latched(self.bias)

    def auto_bias(self) -> None:
        # Sweep up to the latching current, reset, return to 95 % of it.
        self.dac = dac_of(AUTO_BIAS_FRACTION * self.model.switching_current)
        self.latched = False

    def handle(self, message: str) -> None:
        """One message from the mainframe (SNDT): commands separated by ';'."""
        for part in message.split(";"):
            token = part.strip()
            if len(token) < 2 or token[0] != "+":
                continue  # not understood: ignored (see the module docstring)
            letter, rest = token[1].upper(), token[2:].strip()
            if rest != "?":
                self._set(letter, rest)
                continue
            answer = self._query(letter)
            if answer is not None:
                self.reply.extend(answer.encode("ascii") + b"\n")

    def _query(self, letter: str) -> str | None:
        if letter == "A":
            return MODULE_ID
        if letter == "B":
            return str(self.dac)
        if letter == "C":
            volts = self.device_voltage()
            return str(min(ADC_FULL_SCALE, round(volts / ADC_VOLTS[self.low_gain]
                                                 * ADC_FULL_SCALE)))
        if letter == "D":
            return str(self.reset_duration)
        if letter == "E":
            self.settle()
            return str(int(self.auto_reset))
        return None

    def _set(self, letter: str, rest: str) -> None:
        if letter == "F" and not rest:
            self.reset_event()
            return
        if letter == "G" and not rest:
            self.auto_bias()
            return
        if not rest.isdigit():
            return
        value = int(rest)
        if letter == "B" and value <= DAC_FULL_SCALE:
            self.set_dac(value)
        elif letter == "C" and value in (0, 1):
            self.low_gain = bool(value)
        elif letter == "D" and value <= 255:
            self.reset_duration = value
        elif letter == "E" and value in (0, 1):
            self.auto_reset = bool(value)
            self.settle()


class SIM900QuantumOpusEmulator(ScpiDevice):
    """SIM900 mainframe with amp-sim modules in `MODULE_SLOTS`. See the module docstring."""

    identity = ("Stanford_Research_Systems", "SIM900", "s/n152200", "ver3.6")
    terminator = "\n"
    MODULE_SLOTS: ClassVar[tuple[int, ...]] = (1, 2, 3, 4)

    def __init__(self, world: LabWorld, name: str) -> None:
        # The modules keep their state across a mainframe *RST (it resets the mainframe's
        # interface, not the modules' bias).
        self.modules: dict[int, AmpSimModule] = {
            slot: AmpSimModule(SnspdModel(), world.rng(f"{name}/slot{slot}"))
            for slot in self.MODULE_SLOTS
        }
        super().__init__(world, name)

    # -- the detector behind each module (for counters and time taggers) -----------------
    def module(self, slot: int) -> AmpSimModule:
        """The amp-sim module in `slot`; KeyError if the slot is empty."""
        return self.modules[slot]

    def photon_rate(self, slot: int) -> float:
        """Photons/s arriving at the detector of `slot` from the world."""
        return self.world.detector_photon_rate(self.modules[slot].path,
                                               channel=f"{self.name}/slot{slot}")

    def click_rate(self, slot: int) -> float:
        """Mean click rate (Hz) of the detector in `slot` now: the model's rate at the
        world's photon flux and the module's bias, 0 while latched."""
        module = self.modules[slot]
        module.settle()
        if module.latched:
            return 0.0
        return module.model.click_rate(self.photon_rate(slot), module.bias)

    def counts(self, slot: int, duration_s: float) -> int:
        """Clicks in an integration of `duration_s` (s) of virtual time, returned at once
        (Poisson, `SnspdModel.counts`); 0 while latched."""
        module = self.modules[slot]
        module.settle()
        if module.latched:
            if duration_s < 0:
                raise ValueError(f"integration time must be >= 0 s, got {duration_s}")
            return 0
        return module.model.counts(duration_s, self.photon_rate(slot), module.bias,
                                   module.rng)

    # -- mainframe -------------------------------------------------------------------------
    def _port(self, args: Args) -> int:
        return args.integer(0, low=1, high=N_PORTS)

    @command("SNDT")
    def _send_terminated(self, args: Args) -> None:
        port = self._port(args)
        if len(args) < 2:
            raise ScpiError(MISSING_PARAMETER, "SNDT needs a port and a quoted message")
        module = self.modules.get(port)
        if module is not None:  # an empty slot: the bytes go nowhere
            module.handle(args.text(1))

    @command("NINP", query=True)
    def _bytes_waiting(self, args: Args) -> str:
        module = self.modules.get(self._port(args))
        return str(len(module.reply) if module else 0)

    @command("GETN", query=True)
    def _get_bytes(self, args: Args) -> str:
        port = self._port(args)
        count = args.integer(1, low=0, high=MAX_GETN)
        module = self.modules.get(port)
        data = b""
        if module is not None:
            data = bytes(module.reply[:count])
            del module.reply[:count]
        return f"#3{len(data):03d}" + data.decode("ascii")

    @command("FLSH")
    @no_argument
    def _flush(self, args: Args) -> None:
        ports = [self._port(args)] if len(args) else list(self.modules)
        for port in ports:
            if port in self.modules:
                self.modules[port].reply.clear()

    @command("CTCR", query=True)
    def _connected(self, args: Args) -> str:
        return str(sum(1 << slot for slot in self.modules))
