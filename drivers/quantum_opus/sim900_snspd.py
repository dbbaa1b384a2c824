"""Quantum Opus SNSPD bias/amplifier modules ("amp-sim") in an SRS SIM900 mainframe.

The host talks to the SIM900 mainframe (Stanford Research Systems SIM900 manual, remote
operation) and the mainframe relays text to the module in a port: ``SNDT p,"msg"`` sends
``msg`` and a terminator to port ``p``; ``NINP? p`` gives the number of bytes the module has
sent back; ``GETN? p,n`` returns up to ``n`` of them as ``#3nnn<bytes>``; ``FLSH`` empties
the port buffers; ``CTCR?`` has a bit per occupied port. These are the forms the public QuTech
QMI ``sim900.py`` and QCoDeS contrib ``SIM928.py`` drivers send. QMI waits a fixed 0.5 s
after each module query; this driver polls ``NINP?`` until the module's reply (ending in a
line feed) is complete, so a query costs only the round trips it needs.

The module commands (Quantum Opus amp-sim command set, as in QMI ``amp_sim_module.py``):
``+B?`` / ``+Bd;`` bias in DAC units, 0-65535 = 0-25 uA, 0 = off; ``+C?`` device voltage in
ADC units, ``+C0;`` / ``+C1;`` high / low ADC gain; ``+Dd;`` reset-event duration in 10 ms
units (0-255); ``+E0;`` / ``+E1;`` auto-reset; ``+F;`` reset event; ``+G;`` auto-bias;
``+A?`` module ID. The ADC gain cannot be read back, so the driver sets high gain (``+C0;``,
1.1 V full scale) on each module at connection: it only scales the voltage readout, and
``latched`` needs to know the scale.

Channels are keyed by SIM900 port (``slots``), as ``ch<slot>`` (``ch1`` ...), each with
``bias_current`` (A), ``enabled``, ``count_rate`` (Hz), ``latched``, ``device_voltage`` (V),
``auto_reset`` and ``reset_duration`` (s). The module has no switch besides its bias:
``enabled(False)`` sets the bias to 0 (remembering it), ``enabled(True)`` restores the last
non-zero bias; a non-zero ``bias_current`` enables the channel.

Counts. The amp-sim module amplifies the detector's pulses to an SMA output; it has no
counter and no count-rate query. ``count_rate`` therefore comes from a ``counter`` callable
given to the driver (slot -> clicks per second, Hz), for instance a time tagger's per-input
count rate; without one it raises `CounterNotConnectedError` naming that fix.

Post-write check. The SIM900 has no ``SYST:ERR?`` queue; it has the IEEE 488.2 standard
event status register. After every write the driver reads ``*ESR?`` (which clears it) and
raises `InstrumentReportedError` if an error bit is set: 5 CME (bad command or syntax), 4 EXE
(a port or count out of range), 3 DDE, 2 QYE, 1 INP (input buffer overflow, the SRS bit
meaning). It is read at connection and after every reconnect to drop stale bits; the port
buffers are flushed, the modules' presence checked and their ADC gain set then too
(`connect_setup`). The mainframe cannot report the
*module's* view of a message (the amp-sim module has no error report that is publicly
documented), so the driver validates every module setting before sending it, and a module
query that gets no answer raises `InstrumentTimeoutError` naming the slot and the command.

Not confirmed from a manual (the Quantum Opus manual is not public): the ``+A?`` reply format,
the latched device voltage (``latched`` is ``device_voltage > LATCH_THRESHOLD``), the module
letters' case (sent in upper case, as QMI does). Not driven: the ``+H`` non-volatile bias.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pyvisa
from qcodes import validators as vals
from qcodes.instrument import InstrumentChannel
from qcodes.parameters import Parameter

from qnetlab.instruments.errors import (
    InstrumentRefusedError,
    InstrumentReplyError,
    InstrumentTimeoutError,
)
from qnetlab.instruments.single_photon_detector import (
    CounterNotConnectedError,
    SinglePhotonDetector,
)

from .._replies import parse_reply
from ..visa import STANDARD_ESR_ERRORS, QnetVisaInstrument

N_PORTS = 8
DAC_FULL_SCALE = 65535
BIAS_FULL_SCALE = 25e-6
"""A at DAC 65535: 2.5 V across the module's 100 kohm bias resistor."""
ADC_FULL_SCALE = 65535
ADC_HIGH_GAIN_VOLTS = 1.1
"""V at ADC 65535 in high-gain mode (``+C0;``)."""
LATCH_THRESHOLD = 0.02
"""V: a superconducting wire shows ~0 V; a latched one carries the bias through a resistive
hotspot (tens of mV and more). Illustrative; the module's own threshold is not readable."""
RESET_DURATION_STEP = 0.01
"""s per unit of ``+D``."""
MAX_GETN = 999
"""GETN? counts in three digits."""

# IEEE 488.2 standard event status register bits that mean a command failed (bit 1 is the
# SRS "INP" input-buffer overflow).
_ESR_ERRORS = (*STANDARD_ESR_ERRORS, (1 << 1, "input buffer overflow (INP)"))


class SlotError(InstrumentRefusedError, ValueError):
    """A slot given to the driver is not a SIM900 port or holds no module."""


def bias_to_dac(bias: float) -> int:
    """DAC units (0-65535) nearest to a bias current in A (resolution 25 uA / 65535 = 0.38 nA)."""
    return min(DAC_FULL_SCALE, max(0, round(bias / BIAS_FULL_SCALE * DAC_FULL_SCALE)))


def dac_to_bias(dac: int) -> float:
    """Bias current, A, of DAC units."""
    return dac * BIAS_FULL_SCALE / DAC_FULL_SCALE


class AmpSimChannel(InstrumentChannel["QuantumOpusSIM900"]):
    """The amp-sim module in one SIM900 port and the detector it biases."""

    def __init__(self, parent: QuantumOpusSIM900, name: str, slot: int) -> None:
        super().__init__(parent, name)
        self.slot = slot
        self._last_bias_dac: int | None = None

        self.bias_dac: Parameter = self.add_parameter(
            "bias_dac", label="Bias (DAC units)", get_cmd=self._get_dac,
            set_cmd=self._set_dac, vals=vals.Ints(0, DAC_FULL_SCALE),
            docstring="Bias in DAC units, 0-65535 = 0-25 uA (+B); 0 is off.",
        )
        self.bias_current: Parameter = self.add_parameter(
            "bias_current", unit="A", label="Bias current",
            get_cmd=lambda: dac_to_bias(self._get_dac()),
            set_cmd=lambda amps: self._set_dac(bias_to_dac(amps)),
            vals=vals.Numbers(0.0, BIAS_FULL_SCALE),
            docstring="Detector bias current, A (0-25 uA in 0.38 nA steps); 0 while disabled.",
        )
        self.enabled: Parameter = self.add_parameter(
            "enabled", label="Enabled", get_cmd=lambda: self._get_dac() != 0,
            set_cmd=self._set_enabled, vals=vals.Bool(),
            docstring="False sets the bias to 0 A, True restores the last non-zero bias.",
        )
        self.count_rate: Parameter = self.add_parameter(
            "count_rate", unit="Hz", label="Count rate", get_cmd=self._count_rate,
            # A reading needs the counter to integrate (and may have no counter at all): a
            # snapshot of the settings must not start one.
            snapshot_get=False,
            docstring="Clicks per second from the driver's counter (the module has none).",
        )
        self.device_voltage: Parameter = self.add_parameter(
            "device_voltage", unit="V", label="Device voltage",
            get_cmd=lambda: parent.ask_module_parsed(slot, "+C?", int) * ADC_HIGH_GAIN_VOLTS
            / ADC_FULL_SCALE,
            docstring="Voltage across the detector (+C?, high ADC gain), V.",
        )
        self.latched: Parameter = self.add_parameter(
            "latched", label="Latched", get_cmd=lambda: self.device_voltage() > LATCH_THRESHOLD,
            docstring=f"True if the device voltage exceeds {LATCH_THRESHOLD} V.",
        )
        self.auto_reset: Parameter = self.add_parameter(
            "auto_reset", label="Auto-reset",
            get_cmd=lambda: bool(parent.ask_module_parsed(slot, "+E?", int)),
            set_cmd=lambda on: parent.write_module(slot, f"+E{int(on)};"), vals=vals.Bool(),
            docstring="Reset automatically when the module sees a latch (+E).",
        )
        self.reset_duration: Parameter = self.add_parameter(
            "reset_duration", unit="s", label="Reset duration",
            get_cmd=lambda: parent.ask_module_parsed(slot, "+D?", int) * RESET_DURATION_STEP,
            set_cmd=lambda s: parent.write_module(
                slot, f"+D{round(s / RESET_DURATION_STEP)};"),
            vals=vals.Numbers(0.0, 255 * RESET_DURATION_STEP),
            docstring="Time the bias is held at 0 in a reset event, s (10 ms steps, +D).",
        )

    def _get_dac(self) -> int:
        return int(self.parent.ask_module_parsed(self.slot, "+B?", int))

    def _set_dac(self, dac: int) -> None:
        self.parent.write_module(self.slot, f"+B{int(dac)};")
        if dac:
            self._last_bias_dac = int(dac)

    def _set_enabled(self, on: bool) -> None:
        dac = self._get_dac()
        if not on:
            if dac:
                self._last_bias_dac = dac
                self.parent.write_module(self.slot, "+B0;")
            return
        if dac:
            return
        if not self._last_bias_dac:
            raise ValueError(
                f"{self.full_name}: no bias to return to (the module has only its bias as a "
                "switch). Set bias_current to the operating bias instead"
            )
        self.parent.write_module(self.slot, f"+B{self._last_bias_dac};")

    def _count_rate(self) -> float:
        counter = self.parent.counter
        if counter is None:
            raise CounterNotConnectedError(
                f"{self.full_name}: the Quantum Opus amp-sim module has no counter. Give "
                "QuantumOpusSIM900 a counter (counter=<callable slot -> Hz>, e.g. a time "
                "tagger's count rate on the input this detector is cabled to)"
            )
        return float(counter(self.slot))


class QuantumOpusSIM900(QnetVisaInstrument, SinglePhotonDetector):
    """Quantum Opus amp-sim SNSPD bias modules in an SRS SIM900, as a `SinglePhotonDetector`.

    Args:
        slots: the SIM900 ports (1-8) that hold amp-sim modules; each becomes channel
            ``ch<slot>``, keyed by the slot in `detector_channels`.
        counter: slot -> count rate (Hz) of that detector, from a counter or time tagger;
            None leaves ``count_rate`` raising `CounterNotConnectedError`. A lab config
            cannot hold a callable, so the station may also assign ``inst.counter`` later,
            once the tagger is connected.

    See the module docstring for the protocol and the post-write check.
    """

    error_query = None
    status_query = "*ESR?"
    esr_errors = _ESR_ERRORS
    default_terminator = "\n"

    def __init__(
        self, name: str, address: str, slots: Iterable[int] = (1,),
        counter: Callable[[int], float] | None = None, terminator: str = "\n", **kwargs: Any,
    ) -> None:
        slot_list = list(slots)
        for slot in slot_list:
            if isinstance(slot, bool) or not isinstance(slot, int) or not 1 <= slot <= N_PORTS:
                raise SlotError(f"slots must be SIM900 ports 1-{N_PORTS}, got {slot!r}")
        if not slot_list or len(set(slot_list)) != len(slot_list):
            raise SlotError(f"slots must name each amp-sim port once, got {slot_list!r}")
        self.counter = counter
        self._slots = slot_list
        super().__init__(name, address, terminator=terminator, **kwargs)
        self._channels: dict[int, AmpSimChannel] = {}
        for slot in slot_list:
            channel = AmpSimChannel(self, f"ch{slot}", slot)
            self.add_submodule(f"ch{slot}", channel)
            self._channels[slot] = channel
        self.connect_message()

    def connect_setup(self) -> None:
        """At connect and after every reconnect: flush the port buffers, check that every
        slot holds a module, and set high ADC gain (`latched` needs a known scale)."""
        self.write("FLSH")  # bytes another program (or the last session) left in the ports
        occupied = self.ask_parsed("CTCR?", int, "the occupied ports, a bit mask")
        empty = [slot for slot in self._slots if not occupied >> slot & 1]
        if empty:
            raise SlotError(
                f"{self.name} at {self.address}: SIM900 ports {empty} hold no module (CTCR? = "
                f"{occupied}). Fix: give the ports of the amp-sim modules as slots"
            )
        for slot in self._slots:
            self.write_module(slot, "+C0;")

    # -- role ----------------------------------------------------------------------------------
    @property
    def detector_channels(self) -> Mapping[int, InstrumentChannel[Any]]:
        return dict(self._channels)

    def _reset(self, channel: int) -> None:
        self.write_module(channel, "+F;")

    def auto_bias(self, channel: int) -> None:
        """Run the module's auto-bias (+G): sweep up to the latching current, reset, return to
        ~95 % of it. Block the light first: photons lower the measured latching current."""
        self.write_module(self._channels[channel].slot, "+G;")

    # -- module I/O through the mainframe -----------------------------------------------------
    def write_module(self, slot: int, message: str) -> None:
        """Send `message` to the module in port `slot` (SNDT), then check *ESR?."""
        if '"' in message:
            raise ValueError(f"a module message cannot hold a double quote: {message!r}")
        self.write(f'SNDT {slot},"{message}"')

    def ask_module_parsed(self, slot: int, message: str, parser: Callable[[str], Any]) -> Any:
        """`parser` of the module's reply to `message`; InstrumentReplyError if it cannot."""
        return parse_reply(self, f'SNDT {slot},"{message}"', self.ask_module(slot, message),
                           parser, f"the module in SIM900 port {slot}")

    def ask_module(self, slot: int, message: str) -> str:
        """Send a query to the module in port `slot` and return its reply (without the line
        feed). Polls NINP? and reads with GETN? until the reply line is complete; raises
        InstrumentTimeoutError if it is not within the VISA timeout."""
        self.write_module(slot, message)
        timeout = float(self.timeout.cache.get() or 5.0)
        deadline = time.monotonic() + timeout
        data = bytearray()
        while not data.endswith(b"\n"):
            waiting = self.ask_parsed(f"NINP? {slot}", int, "a byte count")
            if waiting:
                data += self._get_bytes(slot, min(waiting, MAX_GETN))
            elif time.monotonic() > deadline:
                # A late reply must not be read as the answer to the next query.
                self.write(f"FLSH {slot}")
                raise InstrumentTimeoutError(
                    f"{self.name} at {self.address}: the module in SIM900 port {slot} did not "
                    f"answer {message!r} within {timeout} s"
                    + (f" (partial reply {bytes(data)!r})" if data else "")
                    + ". Check that an amp-sim module sits in that port and the command is one "
                    "it knows"
                )
        return data[:-1].decode("ascii", errors="replace").strip()

    def _get_bytes(self, slot: int, count: int) -> bytes:
        """GETN? slot,count: the '#3nnn' header, nnn bytes, then the mainframe's terminator.
        Read by length, not to the terminator: the module's own line feed is in the block."""
        cmd = f"GETN? {slot},{count}"
        if self._needs_reconnect:
            self.reconnect()
        handle = self.visa_handle
        try:
            handle.write(cmd)
            head = handle.read_bytes(5)
            if head[:2] != b"#3" or not head[2:].isdigit():
                # out of step: reply_error has the session reopened before the next command
                raise self.reply_error(bytes(head), "not a '#3nnn' block header", cmd)
            n = int(head[2:])
            data = handle.read_bytes(n) if n else b""
            handle.read()  # the mainframe's terminator after the block
        except (pyvisa.errors.VisaIOError, OSError) as exc:
            raise self._failed(exc, cmd) from exc
        except InstrumentReplyError:
            raise
        except BaseException:
            self._needs_reconnect = True
            raise
        return bytes(data)

    # -- post-write check ---------------------------------------------------------------------
