"""Polatis Series 6000 optical circuit switch (and the other Polatis switches that speak SCPI).

No QCoDeS or qcodes_contrib_drivers driver exists for any Polatis switch, so this one is
written from the Polatis "SCPI Programming Manual" for the Series 6000/7000 optical
switches (Polatis document PROD-B-100-03-0, as the public drivers cite it; the command
spellings were checked against the open libraries that drive these switches, such as
hpn-bristol/devicecontrol-polatis, not against a stored copy of the manual):

==========================================  ==================================================
``:OXC:SWITch:SIZE?``                       ``N,M``: N ingress ports (1..N), M egress (N+1..)
``:OXC:SWITch:CONNect:ADD (@i),(@e)``        make the path i-e besides the others
``:OXC:SWITch:CONNect:SUBtract (@i),(@e)``   break it
``:OXC:SWITch:DISConnect:ALL``               break every path
``:OXC:SWITch:CONNect:STATe?``               ``(@i1,i2,..),(@e1,e2,..)``: every path
``:PMONitor:POWer? (@p1,p2,..)``             power monitor readings, dBm
``*OPC?``                                   ``1`` once the switching is done
``:SYSTem:ERRor?``                          error queue, ``0,"No error"`` when empty
==========================================  ==================================================

Ports are the manual's numbers (ingress 1..N, egress N+1..N+M on an N x M switch); the role
(`OpticalSwitch`) checks every request against them and the connection map before sending.
``settle_time`` is the data sheet's switching time (25 ms, Series 6000 data sheet; a driver
argument for other models): the switch reports no figure. `connect` waits for ``*OPC?``,
which the switch answers once the path has settled. `insertion_loss` is measured: the power
monitors' reading at the ingress port minus that at the egress port, so it needs light on
the path (`NoLightError` otherwise) and a switch with power monitors on both sides.
"""

from __future__ import annotations

import re
from typing import Any

from qcodes.parameters import Parameter

from qnetlab.instruments.optical_switch import NoLightError, OpticalSwitch

from ..visa import QnetVisaInstrument

SWITCHING_TIME = 0.025
"""s, the Series 6000 data sheet's switching time (maximum), the default ``settle_time``."""
MONITOR_MIN_DBM = -50.0
"""dBm; a power monitor reading at or below this is taken as no light (below the monitors'
measuring range)."""

_CHANNEL_LIST = re.compile(r"\(@([0-9,\s]*)\)")


def parse_connections(reply: str) -> dict[int, int]:
    """The map of ``:OXC:SWITch:CONNect:STATe?`` (``(@1,2),(@17,18)`` -> {1: 17, 2: 18}).
    ValueError for anything else (the reply is checked, not trusted)."""
    text = reply.strip()
    lists = _CHANNEL_LIST.findall(text)
    if len(lists) != 2 or _CHANNEL_LIST.sub("", text).strip() != ",":
        raise ValueError("expected two channel lists (@...),(@...)")
    ingress, egress = ([int(p) for p in body.split(",") if p.strip()] for body in lists)
    if len(ingress) != len(egress):
        raise ValueError(f"{len(ingress)} ingress but {len(egress)} egress ports")
    if len(set(ingress)) != len(ingress) or len(set(egress)) != len(egress):
        raise ValueError("a port is listed on two paths")
    return dict(zip(ingress, egress, strict=True))


class PolatisSeries6000(QnetVisaInstrument, OpticalSwitch):
    """Polatis Series 6000 switch, as a qnetlab `OpticalSwitch`.

    Parameters: ``settle_time`` (s, read-only), ``connections`` (read-only map ingress ->
    egress), ``ingress_count`` and ``egress_count`` (the size, read at connect).
    """

    default_terminator = "\n"
    default_timeout = 5.0
    error_query = ":SYST:ERR?"

    def __init__(self, name: str, address: str, settle_time: float = SWITCHING_TIME,
                 **kwargs: Any) -> None:
        super().__init__(name, address, **kwargs)
        size = self.ask_parsed(":OXC:SWIT:SIZE?", self._parse_size,
                               "the switch size, <ingress>,<egress>")
        self._ingress, self._egress = size
        self._settle_time = float(settle_time)

        self.settle_time: Parameter = self.add_parameter(
            "settle_time",
            label="Switching (settle) time",
            unit="s",
            get_cmd=lambda: self._settle_time,
            set_cmd=False,
        )
        self.connections: Parameter = self.add_parameter(
            "connections",
            label="Connection map (ingress -> egress)",
            get_cmd=":OXC:SWIT:CONN:STAT?",
            get_parser=self._checked_connections,
            set_cmd=False,
        )
        self.connect_message()

    # -- size and ports --------------------------------------------------------------------------
    @staticmethod
    def _parse_size(reply: str) -> tuple[int, int]:
        ingress, egress = (int(part) for part in reply.strip().split(","))
        if not (0 < ingress <= 1024 and 0 < egress <= 1024):
            raise ValueError(f"a {ingress}x{egress} switch")
        return ingress, egress

    @property
    def ingress_ports(self) -> range:
        return range(1, self._ingress + 1)

    @property
    def egress_ports(self) -> range:
        return range(self._ingress + 1, self._ingress + self._egress + 1)

    def _checked_connections(self, reply: str) -> dict[int, int]:
        made = parse_connections(reply)
        for ingress, egress in made.items():
            if ingress not in self.ingress_ports or egress not in self.egress_ports:
                raise ValueError(f"path {ingress}-{egress} is not between an ingress "
                                 f"(1..{self._ingress}) and an egress port")
        return made

    # -- the role's hooks ------------------------------------------------------------------------
    def _make_path(self, ingress: int, egress: int) -> None:
        self.write(f":OXC:SWIT:CONN:ADD (@{ingress}),(@{egress})")
        self._wait_settled()

    def _break_path(self, ingress: int, egress: int) -> None:
        self.write(f":OXC:SWIT:CONN:SUB (@{ingress}),(@{egress})")

    def _break_all(self) -> None:
        self.write(":OXC:SWIT:DISC:ALL")

    def _wait_settled(self) -> None:
        """``*OPC?``: the switch answers once the switching is done."""
        self.ask_parsed("*OPC?", self._parse_opc, "operation complete, 1")

    @staticmethod
    def _parse_opc(reply: str) -> int:
        if reply.strip() != "1":
            raise ValueError("not 1")
        return 1

    def port_power(self, *ports: int) -> list[float]:
        """The power monitors' readings at `ports`, dBm (``:PMONitor:POWer?``)."""
        if not ports:
            raise ValueError("port_power() needs at least one port number")
        for port in ports:
            self._check_port(port, self._all_ports(), "port")
        command = f":PMON:POW? (@{','.join(map(str, ports))})"
        values: list[float] = self.ask_parsed(command, self._parse_powers(len(ports)),
                                              f"{len(ports)} powers, dBm")
        return values

    @staticmethod
    def _parse_powers(count: int) -> Any:
        def parse(reply: str) -> list[float]:
            values = [float(v) for v in reply.strip().strip("()").split(",")]
            if len(values) != count:
                raise ValueError(f"{len(values)} values for {count} ports")
            return values
        return parse

    def _path_loss_db(self, ingress: int, egress: int) -> float:
        """dB: the ingress monitor's reading minus the egress monitor's."""
        at_ingress, at_egress = self.port_power(ingress, egress)
        if at_ingress <= MONITOR_MIN_DBM:
            raise NoLightError(
                f"{self.name} at {self.address}: no light on ingress port {ingress} "
                f"({at_ingress:g} dBm), so the loss of path {ingress}-{egress} cannot be "
                "measured. Fix: launch light into that port, then ask again")
        return at_ingress - at_egress
