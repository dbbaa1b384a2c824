"""Role: an optical switch (a fibre cross-connect) that connects ingress to egress ports.

Ports are numbered as the switch numbers them: on a Polatis N x M switch the ingress ports
are 1..N and the egress ports N+1..N+M. A path joins one ingress to one egress port; each
port is on at most one path. The role checks every request against the switch's size and
its connection map as read from the instrument, so a bad one raises `SwitchPortError`
(naming the port and the fix) before anything is sent.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from .errors import InstrumentRefusedError
from .role import Role, RoleParameter


class SwitchPortError(InstrumentRefusedError, ValueError):
    """A path the switch cannot make or break as asked: a port outside the switch, an
    ingress port already connected, an egress port already taken, a path that is not there.
    Nothing was sent to the switch."""


class NoLightError(InstrumentRefusedError):
    """A path's loss was asked of power monitors that see no light on it: the loss of a path
    is measured with light going through it."""


def _check_settle_time(switch: Any) -> str | None:
    value = switch.settle_time()
    if not isinstance(value, float) or not math.isfinite(value) or value < 0:
        return f"settle_time() returned {value!r}, not a finite time >= 0 s"
    return None


def _connects_and_disconnects(switch: Any) -> str | None:
    """Make a path between a free ingress and a free egress port, read it back, break it
    and find the map as it was. Skipped (None) when every port is in use."""
    before = switch.connection_map()
    free_in = [p for p in switch.ingress_ports if p not in before]
    taken = set(before.values())
    free_out = [p for p in switch.egress_ports if p not in taken]
    if not free_in or not free_out:
        return None
    ingress, egress = free_in[0], free_out[0]
    switch.connect(ingress, egress)
    try:
        made = switch.connection_map()
        if made != {**before, ingress: egress}:
            return f"connect({ingress}, {egress}): the map then read {made}"
        if switch.connected_to(ingress) != egress or switch.connected_to(egress) != ingress:
            return f"connected_to() does not name both ends of {ingress}-{egress}"
    finally:
        switch.disconnect(ingress, egress)
    after = switch.connection_map()
    return None if after == before else f"disconnect({ingress}, {egress}) left {after}"


def _refuses_bad_ports(switch: Any) -> str | None:
    beyond = max(switch.egress_ports) + 1
    for ingress, egress in ((beyond, min(switch.egress_ports)),
                            (min(switch.ingress_ports), beyond),
                            (min(switch.egress_ports), min(switch.ingress_ports))):
        try:
            switch.connect(ingress, egress)
        except SwitchPortError:
            continue
        return f"connect({ingress}, {egress}) was not refused with a SwitchPortError"
    return None


class OpticalSwitch(Role):
    """An optical switch.

    Parameters: ``settle_time`` (s, read-only: from a connect command to a path that carries
    light), ``connections`` (read-only: the connection map, ingress port -> egress port).
    Actions: `connect`, `disconnect`, `disconnect_all`, `connection_map`, `connected_to`,
    `insertion_loss` (dB, per connected path). A driver declares the parameters and
    implements the underscore hooks (`_make_path`, `_break_path`, `_break_all`,
    `_path_loss_db`) and the port ranges `ingress_ports`, `egress_ports`; the checks here
    run before any of them.
    """

    role_parameters: ClassVar[tuple[RoleParameter, ...]] = (
        RoleParameter("settle_time", "s", "Switching (settle) time", settable=False),
        RoleParameter("connections", "", "Connection map (ingress -> egress)", settable=False),
    )
    role_checks = (_check_settle_time, _connects_and_disconnects, _refuses_bad_ports)

    # -- what a driver provides ----------------------------------------------------------------
    @property
    def ingress_ports(self) -> range:
        raise NotImplementedError

    @property
    def egress_ports(self) -> range:
        raise NotImplementedError

    def _make_path(self, ingress: int, egress: int) -> None:
        """Make the path and return once it has settled."""
        raise NotImplementedError

    def _break_path(self, ingress: int, egress: int) -> None:
        raise NotImplementedError

    def _break_all(self) -> None:
        raise NotImplementedError

    def _path_loss_db(self, ingress: int, egress: int) -> float:
        raise NotImplementedError

    # -- the role's actions ----------------------------------------------------------------------
    def connection_map(self) -> dict[int, int]:
        """The paths made now, ingress port -> egress port (read from the switch)."""
        return dict(self.parameters["connections"].get())

    def connected_to(self, port: int) -> int | None:
        """The port `port` is connected to (either end of a path), or None."""
        self._check_port(port, self._all_ports(), "port")
        made = self.connection_map()
        if port in made:
            return made[port]
        return next((i for i, e in made.items() if e == port), None)

    def connect(self, ingress: int, egress: int) -> None:
        """Connect `ingress` to `egress`; returns once the path has settled (`settle_time`).
        `SwitchPortError` if a port is outside the switch, `ingress` is already connected or
        `egress` already taken; nothing is sent then."""
        self._check_port(ingress, self.ingress_ports, "ingress port")
        self._check_port(egress, self.egress_ports, "egress port")
        made = self.connection_map()
        if made.get(ingress) == egress:
            return  # already there: nothing to switch
        if ingress in made:
            raise SwitchPortError(
                f"{self.name}: ingress port {ingress} is already connected to egress port "
                f"{made[ingress]}. Fix: disconnect({ingress}, {made[ingress]}) first, or "
                "use a free ingress port")
        owner = next((i for i, e in made.items() if e == egress), None)
        if owner is not None:
            raise SwitchPortError(
                f"{self.name}: egress port {egress} is already taken by ingress port {owner}. "
                f"Fix: disconnect({owner}, {egress}) first, or use a free egress port")
        self._make_path(ingress, egress)

    def disconnect(self, ingress: int, egress: int | None = None) -> None:
        """Break the path from `ingress` (to `egress`, if given, which must be its end).
        `SwitchPortError` if there is no such path; nothing is sent then."""
        self._check_port(ingress, self.ingress_ports, "ingress port")
        made = self.connection_map()
        if ingress not in made or (egress is not None and made[ingress] != egress):
            to = f" to egress port {egress}" if egress is not None else ""
            found = (f"it is connected to {made[ingress]}" if ingress in made
                     else "it is not connected")
            raise SwitchPortError(
                f"{self.name}: no path from ingress port {ingress}{to} to break ({found}). "
                "Fix: read connection_map() and disconnect a path it lists")
        self._break_path(ingress, made[ingress])

    def disconnect_all(self) -> None:
        """Break every path."""
        self._break_all()

    def insertion_loss(self, ingress: int, egress: int) -> float:
        """Insertion loss of the connected path `ingress`-`egress`, dB (as the driver gets it:
        see its docstring). `SwitchPortError` if that path is not made."""
        if self.connected_to(ingress) != egress:
            raise SwitchPortError(
                f"{self.name}: ingress port {ingress} is not connected to egress port "
                f"{egress}, so that path has no loss to read. Fix: connect({ingress}, "
                f"{egress}) first")
        return self._path_loss_db(ingress, egress)

    # -- checks ----------------------------------------------------------------------------------
    def _all_ports(self) -> range:
        return range(min(self.ingress_ports), max(self.egress_ports) + 1)

    def _check_port(self, port: int, allowed: range, what: str) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or port not in allowed:
            raise SwitchPortError(
                f"{self.name}: {what} {port!r} is not on this switch. Fix: use one of "
                f"{allowed.start}..{allowed.stop - 1} (ingress ports "
                f"{self.ingress_ports.start}..{self.ingress_ports.stop - 1}, egress ports "
                f"{self.egress_ports.start}..{self.egress_ports.stop - 1})")
