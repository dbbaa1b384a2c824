"""Emulator of a Polatis Series 6000 optical circuit switch (16x16), on the shared world.

Commands from the Polatis "SCPI Programming Manual" for the Series 6000/7000 switches (the
manual the public drivers cite as PROD-B-100-03-0; command spellings checked against
hpn-bristol/devicecontrol-polatis and the other open drivers, not against a stored copy of
the manual):

* ``:OXC:SWITch:SIZE?`` -> ``<ingress>,<egress>`` (``16,16``).
* ``:OXC:SWITch:CONNect:ADD (@i1,i2,..),(@e1,e2,..)``: make the paths i1-e1, i2-e2, ...
  besides those already made; ``:CONNect:SUBtract`` breaks them (an empty egress list
  ``(@)`` breaks whatever the ingress ports are connected to); ``:CONNect:ONLY`` makes them
  and breaks every other; ``:OXC:SWITch:DISConnect:ALL`` breaks every path.
* ``:OXC:SWITch:CONNect:STATe?`` -> ``(@1,2),(@17,18)``, ``(@),(@)`` with none.
* ``:OXC:SWITch:CONNect:PORT? <port>`` -> the port `port` is connected to (``0`` when none,
  the emulator's choice: the public drivers show only the connected reply).
* ``:PMONitor:POWer? (@p1,p2,..)`` -> the power monitors' readings, dBm, comma separated.
* ``:SYSTem:ERRor[:NEXT]?`` and the IEEE 488.2 common commands. ``*RST`` breaks every path
  (as the open drivers describe it); a power cycle keeps them (the switch's boot mode
  RESTore: its beam-steering ports hold their connections).

Port numbering (the manual's): on an N x M switch the ingress ports are 1..N and the egress
ports N+1..N+M; the first channel list of a connect command holds ingress ports, the second
egress ports. Making a path from an ingress port already connected, or to an egress port
already taken, is refused (-221 Settings conflict, naming the port and its path); a port
outside the switch is -222 Data out of range. A refused command changes nothing.

Physics (`physics.optical_switch`): each path has its own insertion loss, drawn per seed about
the data sheet's typical value (`TYPICAL_LOSS_DB`) with the maximum (`MAX_LOSS_DB`) as its
3-sigma bound (the ideal lab: every path at the typical loss), and carries light only once
the switching time (`SWITCHING_TIME`, lab time on the world's clock) has passed; light on an
unconnected ingress port goes nowhere. ``*OPC?`` answers once every path made has settled:
the emulator lets that much lab time pass, as the VNA twin does for a sweep. The link physics
reads a path through `LabWorld.switch_transmission`; a source in front of the switch puts
its light into ``world.optical_switches[<name>].light_in[<ingress>]`` (W).

Deliberately left out: the port enable/disable and shutter commands, the variable optical
attenuators and power-monitor settings (wavelength, averaging, alarm thresholds), the boot
mode commands, protection switching (APS) and the TL1 and NETCONF interfaces. The power
monitors read exactly (no data-sheet accuracy), and with no light at a port read the
emulator's floor `MONITOR_FLOOR_DBM`.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import numpy as np

from ..physics.optical_switch import SwitchPaths, draw_path_losses
from .scpi import (
    DATA_OUT_OF_RANGE,
    ILLEGAL_PARAMETER_VALUE,
    SETTINGS_CONFLICT,
    SYNTAX_ERROR,
    Args,
    ScpiDevice,
    ScpiError,
    command,
    no_argument,
)

if TYPE_CHECKING:
    from ..physics.world import LabWorld

# Polatis Series 6000 data sheet (optical performance); the values below were not checked
# against a stored copy, so treat them as the data sheet's order of magnitude.
TYPICAL_LOSS_DB = 1.0
"""dB, typical insertion loss of a path (connectorised)."""
MAX_LOSS_DB = 1.5
"""dB, maximum insertion loss of a path."""
SWITCHING_TIME = 0.025
"""s, switching time (from the command to a settled path), the data sheet's maximum."""
MONITOR_FLOOR_DBM = -60.0
"""What a power monitor reads with no light (the emulator's choice; below the monitors'
range)."""

_CHANNEL_LIST = re.compile(r"\(@([^()]*)\)")


def parse_channel_list(text: str) -> list[int]:
    """The ports of one SCPI channel list body (``1,2,5:7`` -> [1, 2, 5, 6, 7])."""
    ports: list[int] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        low, _, high = item.partition(":")
        if not low.isdigit() or (high and not high.isdigit()):
            raise ScpiError(SYNTAX_ERROR, f"channel list entry {item!r}")
        ports.extend(range(int(low), int(high or low) + 1))
    return ports


def _channel_lists(args: Args, count: int) -> list[list[int]]:
    """`count` channel lists ``(@..)`` from a command's parameters."""
    text = ",".join(args.params)
    lists = _CHANNEL_LIST.findall(text)
    if len(lists) != count or _CHANNEL_LIST.sub("", text).strip(" ,"):
        raise ScpiError(SYNTAX_ERROR, f"expected {count} channel list(s) (@...), got {text!r}")
    return [parse_channel_list(body) for body in lists]


class Polatis6000Emulator(ScpiDevice):
    """A Polatis Series 6000 16x16 switch with power monitors on every port."""

    identity = ("POLATIS", "N-VST-16x16-LU1-DMHNS", "006000", "7.1.1.13")
    terminator = "\n"
    ingress_count = 16
    egress_count = 16

    def __init__(self, world: LabWorld, name: str) -> None:
        n, m = self.ingress_count, self.egress_count
        if world.ideal:
            losses = np.full((n, m), TYPICAL_LOSS_DB)
        else:
            losses = draw_path_losses(world.rng(f"{name}/path loss"), n, m, TYPICAL_LOSS_DB,
                                      MAX_LOSS_DB)
        self.paths = SwitchPaths(n, m, SWITCHING_TIME, losses)
        world.optical_switches[name] = self.paths
        super().__init__(world, name)

    def reset(self) -> None:
        # *RST breaks every path (see the module docstring).
        for ingress in list(self.paths.connections):
            self.paths.disconnect(ingress)

    def power_on(self) -> None:
        # A power cycle keeps the paths (boot mode RESTore): only the status is reset.
        self._errors.clear()
        self._esr = 1 << 7

    def _common(self, header: str, is_query: bool, rest: str) -> str | None:
        if header == "*OPC" and is_query:
            # Answered once every path made has settled: that much lab time passes.
            wait = self.paths.settled_by() - self.world.now()
            if wait > 0:
                self.world.advance(wait)
            return "1"
        return super()._common(header, is_query, rest)

    # -- ports -------------------------------------------------------------------------------
    def _check_ports(self, ports: list[int], allowed: range, kind: str = "") -> None:
        for port in ports:
            if port not in allowed:
                where = f"{kind} port" if kind else "port"
                raise ScpiError(DATA_OUT_OF_RANGE, f"{where} {port} not in "
                                f"{allowed.start}..{allowed.stop - 1}")

    def _pairs(self, args: Args, allow_no_egress: bool = False) -> list[tuple[int, int | None]]:
        ingress, egress = _channel_lists(args, 2)
        self._check_ports(ingress, self.paths.ingress_ports, "ingress")
        self._check_ports(egress, self.paths.egress_ports, "egress")
        if not (allow_no_egress and not egress) and len(ingress) != len(egress):
            raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"{len(ingress)} ingress and "
                            f"{len(egress)} egress ports: the lists pair up one to one")
        for ports in (ingress, egress):
            repeated = sorted({p for p in ports if ports.count(p) > 1})
            if repeated:
                raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"port {repeated[0]} listed twice")
        ends: list[int | None] = list(egress) if egress else [None] * len(ingress)
        return list(zip(ingress, ends, strict=True))

    def _refuse_conflicts(self, pairs: list[tuple[int, int | None]],
                          connections: dict[int, int]) -> None:
        taken = {e: i for i, e in connections.items()}
        for ingress, egress in pairs:
            if ingress in connections:
                raise ScpiError(SETTINGS_CONFLICT, f"ingress port {ingress} is already "
                                f"connected to {connections[ingress]}")
            if egress in taken:
                raise ScpiError(SETTINGS_CONFLICT, f"egress port {egress} is already "
                                f"connected to {taken[egress]}")

    # -- switching ---------------------------------------------------------------------------
    @command(":OXC:SWITch:SIZE", query=True)
    def _get_size(self, args: Args) -> str:
        return f"{self.paths.ingress},{self.paths.egress}"

    @command(":OXC:SWITch:CONNect:ADD")
    def _add(self, args: Args) -> None:
        pairs = self._pairs(args)
        self._refuse_conflicts(pairs, self.paths.connections)
        self._make(pairs)

    @command(":OXC:SWITch:CONNect:ONLY")
    def _only(self, args: Args) -> None:
        pairs = self._pairs(args)
        wanted = dict(pairs)
        for ingress, egress in list(self.paths.connections.items()):
            if wanted.get(ingress) != egress:
                self.paths.disconnect(ingress)
        self._make([(i, e) for i, e in pairs if self.paths.connections.get(i) != e])

    def _make(self, pairs: list[tuple[int, int | None]]) -> None:
        now = self.world.now()
        for ingress, egress in pairs:
            assert egress is not None
            self.paths.connect(ingress, egress, now)

    @command(":OXC:SWITch:CONNect:SUBtract")
    def _subtract(self, args: Args) -> None:
        pairs = self._pairs(args, allow_no_egress=True)
        for ingress, egress in pairs:
            found = self.paths.connections.get(ingress)
            if found is None or (egress is not None and found != egress):
                raise ScpiError(SETTINGS_CONFLICT, f"ingress port {ingress} is not connected"
                                + (f" to {egress}" if egress is not None else ""))
        for ingress, _ in pairs:
            self.paths.disconnect(ingress)

    @command(":OXC:SWITch:DISConnect:ALL")
    @no_argument
    def _disconnect_all(self, args: Args) -> None:
        self.reset()

    @command(":OXC:SWITch:CONNect:STATe", query=True)
    def _get_state(self, args: Args) -> str:
        made = sorted(self.paths.connections.items())
        return (f"(@{','.join(str(i) for i, _ in made)}),"
                f"(@{','.join(str(e) for _, e in made)})")

    @command(":OXC:SWITch:CONNect:PORT", query=True)
    def _get_port(self, args: Args) -> str:
        port = args.integer(low=1, high=self.paths.ingress + self.paths.egress)
        if port in self.paths.ingress_ports:
            return str(self.paths.connections.get(port, 0))
        return str(next((i for i, e in self.paths.connections.items() if e == port), 0))

    # -- power monitors ----------------------------------------------------------------------
    @command(":PMONitor:POWer", query=True)
    def _get_power(self, args: Args) -> str:
        (ports,) = _channel_lists(args, 1)
        self._check_ports(ports, range(1, self.paths.ingress + self.paths.egress + 1))
        now = self.world.now()
        return ",".join(f"{self._dbm(self.paths.power_at(p, now)):.2f}" for p in ports)

    @staticmethod
    def _dbm(watts: float) -> float:
        if watts <= 0:
            return MONITOR_FLOOR_DBM
        return max(10 * math.log10(watts / 1e-3), MONITOR_FLOOR_DBM)
