"""The switch as a scheduler keeps it: which QNUs each station's arms are connected to, which
paths were re-checked during the run, and what a new connection costs.

A QNU's switch port goes to one station arm at a time (a cross-connect), so connecting it
elsewhere breaks its old connection. Reconfiguring a station costs the switch's settle time
plus a re-check of each path (QNU, station) whose calibration is older than the bridge's
calibration lifetime. State grows with the paths re-checked (at most one entry per
reconfiguration), never with QNUs x stations: the initial calibration times are the
topology's.
"""

from __future__ import annotations

from .records import Decision
from .topology import BridgeTopology


class SwitchState:
    """Connections and path checks of one bridge's switch."""

    def __init__(self, topology: BridgeTopology) -> None:
        self.topology = topology
        self.arms: dict[str, tuple[str, str]] = {}
        """station -> the two QNUs connected to its arms (only stations fully connected)."""
        self.qnu_station: dict[str, str] = {}
        """QNU -> the station its port is connected to."""
        self.checked: dict[tuple[str, str], float] = {}
        """(QNU, station) -> s when this run re-checked the path."""

    def connected(self, station: str, a: str, b: str) -> bool:
        arms = self.arms.get(station)
        return arms is not None and set(arms) == {a, b}

    def stale(self, qnu: str, station: str, now: float) -> bool:
        """Is the path's calibration older than the lifetime at `now`?"""
        at = self.checked.get((qnu, station))
        if at is None:
            at = self.topology.calibrated_at(qnu, station)
        return now - at > self.topology.calibration_lifetime

    def setup_cost(self, station: str, a: str, b: str, now: float) -> float:
        """s before `station` can herald A-B: 0 if connected, else settle plus a re-check per
        stale path."""
        if self.connected(station, a, b):
            return 0.0
        t = self.topology
        cost = t.settle_time
        for q in (a, b):
            if self.stale(q, station, now + cost):
                cost += t.recheck_time
        return cost

    def connect(self, station: str, a: str, b: str, now: float, why: str,
                request: str | None = None) -> tuple[float, list[Decision]]:
        """Connect A and B to `station` (breaking their and the station's old connections);
        (ready time, the RECONFIGURE and RECHECK decisions). No decision if already
        connected."""
        if self.connected(station, a, b):
            return now, []
        t = self.topology
        old = self.arms.pop(station, None)
        for q in old or ():
            self.qnu_station.pop(q, None)
        for q in (a, b):
            previous = self.qnu_station.get(q)
            if previous is not None:
                # that station loses an arm: no longer a path, and its other QNU is free
                for other in self.arms.pop(previous, ()):
                    self.qnu_station.pop(other, None)
        self.arms[station] = (a, b)
        self.qnu_station[a] = self.qnu_station[b] = station
        ready = now + t.settle_time
        was = "-".join(old) if old else "nothing"
        decisions = [Decision(now, "RECONFIGURE", f"{why}; station was connected to {was}",
                              request, station, (a, b), ready_at=ready,
                              values={"settle_time": t.settle_time})]
        for q in (a, b):
            if self.stale(q, station, ready):
                age = ready - self.checked.get((q, station), t.calibrated_at(q, station))
                decisions.append(Decision(
                    now, "RECHECK", f"path {q}-{station} calibrated {age:.0f} s ago, beyond "
                    f"the {t.calibration_lifetime:.0f} s lifetime: re-check its arm delay "
                    "before use", request, station, (q,), ready_at=ready + t.recheck_time,
                    values={"age": age, "recheck_time": t.recheck_time}))
                ready += t.recheck_time
                self.checked[(q, station)] = ready
        return ready, decisions
