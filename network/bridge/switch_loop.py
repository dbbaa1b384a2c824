"""The bridge's optical switch in the loop: a fabric that sets each assigned path up through
the `OpticalSwitch` role before its station heralds on it.

`SwitchedFabric` wraps a herald model (`fabric.SimulatedLinkFabric`: the link physics stays
SIMULATED) and the switch instrument the bridge config names (`switch.lab`,
`switch.instrument`: the Polatis Series 6000 driver; in the ``sim`` profile its twin over the
VISA transport, chosen by the lab's profile as for any instrument). For every ASSIGN it

1. reads the connection map from the switch (``:OXC:SWITch:CONNect:STATe?``): the bridge
   never trusts its own idea of the switch;
2. if the station's arms already carry the pair (either way round), switches nothing;
   otherwise breaks the bridge's own paths in the way (the station's old pair; a QNU
   connected to another station: a QNU's port goes to one arm at a time) and connects each
   QNU to its arm, each `connect` returning once the switch reports the path settled
   (``*OPC?``: no fixed sleep);
3. reads the map back and checks both paths are there before the station heralds.

A path in the way that is not the bridge's (a port no QNU or station arm of the config owns:
a bench source, a loss measurement) is never broken: the assignment is refused naming it.
Any failure (the switch refuses, does not answer, answers garbage, or the map read back lacks
a path) raises `SwitchPathError` after the station's arms are cleared (every path on its two
egress ports broken, read back), so the bench holds no half-made connection; the engine turns
it into an ERR for the request with the reason. Details: docs/bridge.md#the-switch-in-the-loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from qnetlab.instruments.errors import (
    ConfigError,
    InstrumentRefusedError,
    InstrumentTimeoutError,
)

from .fabric import (
    Herald,
    PairFabric,
    PathSetup,
    PathSetupError,
    SimulatedLinkFabric,
)
from .topology import BridgeTopology

if TYPE_CHECKING:  # QCoDeS: only the process that opens a switch imports it
    from qnetlab.instruments.optical_switch import OpticalSwitch
    from qnetlab.instruments.station import LabStation

    from .service import BridgeServiceSettings

ARMS = ("a", "b")


class SwitchPathError(PathSetupError):
    """The switch could not set a station's path up (refused, did not answer, or the map read
    back lacks it). `code` is the ERR code the request gets; the message names the ports,
    what the switch said, and whether the station's arms were cleared."""


class SwitchedFabric:
    """The switch in the loop before a herald model (module docstring)."""

    simulated = True
    """As its herald model's (`links.simulated`): the link model's by default."""

    def __init__(self, topology: BridgeTopology, switch: OpticalSwitch,
                 links: PairFabric | None = None, seed: int = 0,
                 log: Callable[[dict[str, Any]], None] | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        """`clock`: the bridge's now (s), read once a path is confirmed, so heralds never
        start before the switch said it had settled (None: the scheduler's ready time)."""
        self.topology, self.switch = topology, switch
        self.links: PairFabric = links or SimulatedLinkFabric(topology, seed)
        self.simulated = self.links.simulated
        self.log = log or (lambda record: None)
        self.clock = clock
        self.name = (f"optical switch {switch.name} in the loop; {self.links.name}")
        self.switched = 0
        """Paths made through the switch."""
        self._last_map: dict[int, int] = {}
        """The connection map last read back."""
        self._check_ports()

    # -- ports --------------------------------------------------------------------------------
    def _check_ports(self) -> None:
        """Every port the bridge names must be on the switch, on its side (ConfigError)."""
        t, sw = self.topology, self.switch
        for q in t.qnus:
            self._on_switch(q, t.switch_ports[q], sw.ingress_ports, "ingress")
        for s in t.stations:
            for arm in ARMS:
                self._on_switch(f"{s}/{arm}", t.switch_ports[f"{s}/{arm}"], sw.egress_ports,
                                "egress")

    def _on_switch(self, what: str, port: int, allowed: range, side: str) -> None:
        if port not in allowed:
            raise ConfigError(
                f"bridge {self.topology.name}", what, f"port {port} is not an {side} port of "
                f"switch {self.switch.name} ({allowed.start}..{allowed.stop - 1}, as the "
                "switch reports its size)", f"give {what} an {side} port of this switch in "
                "the bridge config, or name the bridge's switch in switch.lab")

    def wanted(self, station: str, a: str, b: str) -> dict[int, int]:
        """The paths A-B at `station` needs: QNU ingress port -> its arm's egress port."""
        p = self.topology.switch_ports
        return {p[a]: p[f"{station}/a"], p[b]: p[f"{station}/b"]}

    def _owned(self) -> set[int]:
        return set(self.topology.switch_ports.values())

    # -- the fabric ---------------------------------------------------------------------------
    @property
    def measures(self) -> bool:
        """Whether the fabric behind the switch re-checks paths (`take_setups`)."""
        return bool(getattr(self.links, "measures", False))

    def _behind(self, name: str, *args: Any) -> Any:
        """The fabric behind the switch's method `name` called with `args` (None when that
        fabric has no such method: the simulated link model keeps no set-ups or pairs)."""
        method = getattr(self.links, name, None)
        return None if method is None else method(*args)

    def take_setups(self) -> list[Any]:
        """The fabric behind the switch's ended set-ups (none if it keeps none)."""
        return list(self._behind("take_setups") or ())

    def settle(self, request: str, delivered: list[tuple[str, int]]) -> None:
        """The fabric behind the switch settles an ended request's pairs (if it keeps any)."""
        self._behind("settle", request, delivered)

    def discard(self, request: str, pairs: list[tuple[str, int]]) -> None:
        """The fabric behind the switch frees pairs of no use (if it keeps any)."""
        self._behind("discard", request, pairs)

    def take_refusals(self) -> list[Any]:
        """Requests a QNU's node behind the switch refused (none if no nodes run)."""
        return list(self._behind("take_refusals") or ())

    def take_voided(self) -> list[tuple[str, str, int]]:
        """Pairs the fabric behind the switch no longer holds (none if it keeps none)."""
        return list(self._behind("take_voided") or ())

    def assign(self, station: str, request: str, a: str, b: str, ready_at: float,
               setup: PathSetup | None = None) -> None:
        """Set A-B up at `station` through the switch, then herald there from `ready_at` (or
        from when the switch confirmed the paths, if later), with the QNUs in the order of
        the arms they hold (a pair already connected the other way round stays so).
        `SwitchPathError` if the switch could not: nothing heralds, the station's arms are
        cleared."""
        self.links.release(station)  # its old heralds are void whatever happens
        made = self._switch_in(station, request, a, b)
        confirmed = self.clock() if self.clock is not None else ready_at
        self.log({"time": confirmed, "event": "switch", "for_request": request,
                  "station": station, "qnus": [a, b], "made": _pairs(made),
                  "connections": _pairs(self._last_map), "instrument": self.switch.name})
        if self._last_map.get(self.topology.switch_ports[b]) == \
                self.topology.switch_ports[f"{station}/a"]:
            a, b = b, a
        self.links.assign(station, request, a, b, max(ready_at, confirmed), setup)

    def release(self, station: str) -> None:
        """Stop heralding; the connection stays for reuse (the scheduler's policy)."""
        self.links.release(station)

    def next_time(self) -> float | None:
        return self.links.next_time()

    def pop(self, now: float) -> Herald | None:
        return self.links.pop(now)

    # -- switching ----------------------------------------------------------------------------
    def _switch_in(self, station: str, request: str, a: str, b: str) -> dict[int, int]:
        """Make the paths; the ones made now (empty when the arms already held the pair)."""
        wanted = self.wanted(station, a, b)
        egress = set(wanted.values())
        current = self._read_map(station, f"before connecting {a}-{b}")
        if _holds(current, wanted):
            self._last_map = current
            return {}
        in_the_way = {i: e for i, e in current.items()
                      if (i in wanted or e in egress) and wanted.get(i) != e}
        self._refuse_foreign(station, a, b, in_the_way)
        made: dict[int, int] = {}
        try:
            for ingress, egress_port in in_the_way.items():
                self.switch.disconnect(ingress, egress_port)
            for ingress, egress_port in wanted.items():
                if current.get(ingress) != egress_port:
                    # connect() returns once the switch reports the path settled (*OPC?)
                    self.switch.connect(ingress, egress_port)
                    made[ingress] = egress_port
                    self.switched += 1
            back = self.switch.connection_map()
        except Exception as exc:  # whatever went wrong, the arms are cleared first
            raise self._failed(station, a, b, f"the switch {_said(exc)}") from exc
        missing = {i: e for i, e in wanted.items() if back.get(i) != e}
        if missing:
            raise self._failed(station, a, b, "the connection map read back lacks "
                               f"{_pairs(missing)} (it holds {_pairs(back)})")
        self._last_map = back
        return made

    def _read_map(self, station: str, when: str) -> dict[int, int]:
        try:
            return self.switch.connection_map()
        except Exception as exc:
            raise self._failed(station, "", "", f"reading its connection map {when}: the "
                               f"switch {_said(exc)}") from exc

    def _refuse_foreign(self, station: str, a: str, b: str, in_the_way: dict[int, int]) -> None:
        """A path in the way that is not the bridge's is not the bridge's to break."""
        owned = self._owned()
        for ingress, egress in in_the_way.items():
            if ingress not in owned or egress not in owned:
                raise SwitchPathError(
                    f"switch {self.switch.name}: connecting {a}-{b} to {station} needs ports "
                    f"in use by path {ingress}-{egress}, which is not the bridge's (port "
                    f"{ingress if ingress not in owned else egress} is no QNU or station arm "
                    f"of bridge {self.topology.name}); nothing was switched. Fix: free it "
                    f"(disconnect({ingress}, {egress}) on the switch) once whoever made it is "
                    "done")

    def _failed(self, station: str, a: str, b: str, what: str) -> SwitchPathError:
        """Clear the station's arms (no half-made connection) and say what happened."""
        pair = f"{a}-{b} to {station}" if a else station
        cleared = self._clear(station)
        return SwitchPathError(f"switch {self.switch.name}: could not connect {pair}: {what}; "
                               f"{cleared}")

    def _clear(self, station: str) -> str:
        """Break every path on `station`'s two egress ports; what came of it, in words."""
        p = self.topology.switch_ports
        arms = {p[f"{station}/{arm}"] for arm in ARMS}
        try:
            for ingress, egress in self.switch.connection_map().items():
                if egress in arms:
                    self.switch.disconnect(ingress, egress)
            left = {i: e for i, e in self.switch.connection_map().items() if e in arms}
        except Exception as exc:
            return (f"its arms (ports {sorted(arms)}) could NOT be cleared ({_said(exc)}): "
                    "read the switch's connection map before using the station")
        if left:
            return f"its arms still hold {_pairs(left)}: check the switch"
        self.log({"event": "switch_cleared", "station": station, "ports": sorted(arms)})
        return f"the station's arms (ports {sorted(arms)}) were cleared"


# -- the orchestrator process's switch -------------------------------------------------------------

def open_switch(settings: BridgeServiceSettings) -> tuple[LabStation, OpticalSwitch]:
    """The bridge's switch: `settings.switch_instrument` of the switch lab, loaded for
    `settings.profile` as any lab is (`load_station`). ConfigError if it is no
    OpticalSwitch; the instrument errors of `load_station` if it cannot be reached."""
    from qnetlab.instruments.optical_switch import OpticalSwitch
    from qnetlab.instruments.station import load_station

    assert settings.switch_lab is not None
    station = load_station(settings.switch_lab, settings.profile)
    switch = station.components.get(settings.switch_instrument)
    if not isinstance(switch, OpticalSwitch):
        station.close()
        raise ConfigError(str(settings.switch_lab), f"instruments.{settings.switch_instrument}",
                          f"is not an OpticalSwitch (found {type(switch).__name__})",
                          "name the lab's optical switch in the bridge config's "
                          "switch.instrument")
    return station, switch


def orchestrator_fabric(settings: BridgeServiceSettings, log: Callable[[dict[str, Any]], None],
                        clock: Callable[[], float],
                        links_for: Callable[[BridgeTopology], PairFabric] | None = None,
                        ) -> tuple[BridgeTopology, PairFabric, LabStation | None]:
    """The fabric the settings ask for, the topology the scheduler sees (the switch's own
    settle time when there is a switch) and the switch's station (to close at the end).
    `links_for(topology)`: the herald model behind the switch (None: the simulated link
    model's, `SimulatedLinkFabric`)."""
    topology = settings.topology
    if links_for is None:
        def links_for(topology: BridgeTopology) -> PairFabric:
            return SimulatedLinkFabric(topology, settings.seed)
    if settings.switch_lab is None:
        return topology, links_for(topology), None
    station, switch = open_switch(settings)
    try:
        settle = float(switch.settle_time())
        log({"event": "switch_opened", "instrument": switch.name, "profile": settings.profile,
             "lab": str(settings.switch_lab), "settle_time": settle,
             "config_settle_time": topology.settle_time,
             "connections": [[i, e] for i, e in sorted(switch.connection_map().items())]})
        # The scheduler weighs a reconfiguration at the settle time the switch reports.
        topology = replace(topology, settle_time=settle)
        links = links_for(topology)
        return topology, SwitchedFabric(topology, switch, links, log=log, clock=clock), station
    except BaseException:
        station.close()
        raise


def _holds(current: dict[int, int], wanted: dict[int, int]) -> bool:
    """Does the map join the wanted QNU ports to the wanted arms, either way round?"""
    (qa, ea), (qb, eb) = wanted.items()
    return (current.get(qa), current.get(qb)) in ((ea, eb), (eb, ea))


def _pairs(paths: dict[int, int]) -> list[list[int]]:
    return [[i, e] for i, e in sorted(paths.items())]


def _said(exc: Exception) -> str:
    """What an instrument error says, as a clause ("refused ...", "did not answer ...")."""
    what = f"({type(exc).__name__}: {exc})"
    if isinstance(exc, InstrumentTimeoutError):
        return f"did not answer {what}"
    if isinstance(exc, InstrumentRefusedError):
        return f"refused {what}"
    return f"failed {what}"
