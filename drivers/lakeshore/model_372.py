"""Lake Shore Model 372 AC resistance bridge and temperature controller.

Reuses QCoDeS's `LakeshoreModel372` driver (its commands follow the Lake Shore Model 372
user's manual, chapter 6, remote operation) and adds the qnetlab VISA base and the
`TemperatureController` role. QCoDeS's Lake Shore base uses CR LF (``default_terminator =
"\\r\\n"``) for both directions, as the instrument does; the real instrument's Ethernet port
is TCP 7777 (``TCPIP::<ip>::7777::SOCKET``).

Post-write check. The 372 has no SCPI error queue (no ``SYST:ERR?``), so ``error_query`` is
None. What it has is the IEEE 488.2 standard event status register (manual chapter 6, status
system): a command it does not recognise or cannot parse sets bit 5 (CME, command error), a
parameter out of range sets bit 4 (EXE, execution error), and ``*ESR?`` returns the register
and clears it. So after every write this driver reads ``*ESR?`` and raises
`InstrumentReportedError` if an error bit (2 QYE, 3 DDE, 4 EXE, 5 CME) is set. That costs one
query per write, and it reports the kind of error only (the register holds bits, not
messages). The register is read at connection and after every reconnect to drop stale bits
(for example PON from power-up, or errors left by another program). An unknown *query* gets
no reply at all from the 372, so its read times out; the VISA base then reads ``*ESR?`` (after
reopening the session) and, if the 372 flagged the query, raises `InstrumentReportedError` for
it, chained to the timeout. Without that, the flag would stay set and the next write would be
blamed for it.

Known limitation of the reused driver: its heater-setup group (``output_type``,
``output_heater_resistance``, ... sent as ``HTRSET <output>,<type>,<resistance>,...``) has the
Model 335 layout; the 372's HTRSET is ``<output>,<resistance>,<max current>,<max user
current>,<current/power>``. Do not use those parameters with a 372; write HTRSET directly.
Fixed here: each input's ``sensor_name`` (INNAME) accepts names of at most 15 characters
(QCoDeS's validator demanded at least 15).
"""

from __future__ import annotations

from typing import Any

from qcodes import validators as vals
from qcodes.instrument_drivers.Lakeshore import LakeshoreModel372 as QcodesLakeshoreModel372
from qcodes.parameters import DelegateParameter

from qnetlab.instruments.temperature_controller import TemperatureController

from ..visa import QnetVisaInstrument

N_CHANNELS = 16
MIXING_CHAMBER_CHANNEL = 6
"""The mixing-chamber thermometer on a typical Bluefors wiring (the Bluefors software names
the 372's channels 1 "50K", 2 "4K", 3 "Magnet", 5 "Still", 6 "MXC", 7 and 8 user)."""



_MODEL_335_HTRSET_GROUP = ("output_type", "output_heater_resistance", "output_max_current",
                           "output_max_user_current", "output_display")


class LakeshoreModel372(QcodesLakeshoreModel372, QnetVisaInstrument, TemperatureController):
    """Lake Shore Model 372, as a qnetlab `TemperatureController`.

    ``temperature`` (K, read-only) is the kelvin reading (KRDG?) of input ``sensor_channel``
    (1-16; default 6, the mixing chamber on a typical Bluefors wiring). Every input stays
    available as ``ch01`` ... ``ch16``.
    """

    error_query = None
    status_query = "*ESR?"

    def __init__(
        self, name: str, address: str, sensor_channel: int = MIXING_CHAMBER_CHANNEL,
        **kwargs: Any,
    ) -> None:
        if isinstance(sensor_channel, bool) or not isinstance(sensor_channel, int) or not (
            1 <= sensor_channel <= N_CHANNELS
        ):
            raise ValueError(
                f"sensor_channel must be a measurement input 1-{N_CHANNELS}, got "
                f"{sensor_channel!r}"
            )
        self._sensor_channel = sensor_channel
        super().__init__(name, address, **kwargs)
        for channel in self.channels:
            # QCoDeS declares vals.Strings(15), a *minimum* length; the 372 takes at most 15.
            channel.sensor_name.vals = vals.Strings(max_length=15)
        for output in self.submodules.values():
            for pname in _MODEL_335_HTRSET_GROUP:
                param = getattr(output, "parameters", {}).get(pname)
                if param is not None:
                    # Their HTRSET layout is the 335's; the 372 leaves a query for the analog
                    # output unanswered, so a snapshot would wait out a timeout per parameter.
                    param.snapshot_exclude = True
        source = getattr(self, f"ch{sensor_channel:02d}").temperature
        self.temperature: DelegateParameter = self.add_parameter(
            "temperature",
            parameter_class=DelegateParameter,
            source=source,
            unit="K",
            label="Temperature",
            docstring=f"Kelvin reading of input {sensor_channel} (the role's sensor), K.",
        )
        """Kelvin reading of the role's sensor (input ``sensor_channel``), K."""

    @property
    def sensor_channel(self) -> int:
        """The input (1-16) whose reading is ``temperature``."""
        return self._sensor_channel
