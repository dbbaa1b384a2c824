"""Where the graph's nodes run: one station and one parameter store per scope (a lab).

A network node's calibrations run on its own lab (its station config and database); the link's
calibrations between two nodes have a database of their own and no station. Stations are
opened when a node first needs one and kept open; opening another scope's station closes the
open one first (two labs' configs may use the same instrument names, which QCoDeS allows only
once per process). On the simulated bench each scope keeps one simulated world for the whole
session (`sim_session`), so closing and reopening a station does not reset its physics.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qnetlab.instruments.station import LabStation

from .store import ParameterStore


@dataclass(frozen=True)
class Scope:
    name: str
    db_path: Path
    """The lab database: datasets and the parameter store."""
    config: Path | None = None
    """The lab's station config; None for a scope without instruments (the link)."""
    profile: str = "sim"


@dataclass
class LabContext:
    """The `CalibrationContext` of a session over several labs (module docstring)."""

    scopes: dict[str, Scope]
    quiet: bool = True
    clock: Callable[[], float] = time.time
    opener: Callable[[Scope, ParameterStore, str], LabStation] | None = None
    """Opens a scope's station with its stored values applied (default:
    `sequences.calibration.startup.open_calibrated_station`)."""
    sim_sessions: dict[str, str] = field(default_factory=dict)
    _stores: dict[str, ParameterStore] = field(default_factory=dict)
    _open: tuple[str, LabStation] | None = None

    def now(self) -> float:
        return self.clock()

    def _scope(self, scope: str) -> Scope:
        try:
            return self.scopes[scope]
        except KeyError:
            raise KeyError(f"no lab {scope!r} in this calibration session (known: "
                           f"{', '.join(self.scopes)})") from None

    def db_path(self, scope: str) -> Path:
        return self._scope(scope).db_path

    def store(self, scope: str) -> ParameterStore:
        if scope not in self._stores:
            self._stores[scope] = ParameterStore(self._scope(scope).db_path, now=self.now)
        return self._stores[scope]

    def station(self, scope: str) -> LabStation:
        if self._open is not None and self._open[0] == scope:
            return self._open[1]
        spec = self._scope(scope)
        if spec.config is None:
            raise ValueError(f"lab {scope!r} has no station config: its calibrations cannot "
                             "use instruments")
        self.close()
        session = self.sim_sessions.setdefault(scope, uuid.uuid4().hex)
        station = self._opener()(spec, self.store(scope), session)
        self._open = (scope, station)
        return station

    def _opener(self) -> Callable[[Scope, ParameterStore, str], LabStation]:
        if self.opener is not None:
            return self.opener
        from .startup import open_calibrated_station

        def default(spec: Scope, store: ParameterStore, session: str) -> LabStation:
            assert spec.config is not None  # checked by `station`
            return open_calibrated_station(spec.config, spec.profile, store,
                                           sim_session=session)
        return default

    def close(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None

    def __enter__(self) -> LabContext:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
