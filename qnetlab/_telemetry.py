"""The verbs' telemetry for ``qnetlab monitor``: a lab that names ``qnetlab.telemetry`` in its
config publishes while ``characterize``, ``run``, ``calibrate`` or ``bringup`` use it.

A publisher that cannot start -- its port in use, its keys not generated -- is a warning on
stderr naming the port or key file, the config entry and the fix, and the verb runs without
telemetry. The choice: telemetry observes a measurement; refusing to measure (or stopping a
calibration) because a monitor port is taken or ``qnetlab keys`` was not run yet would cost
lab time for a convenience, and a new user's first ``qnetlab characterize`` would fail. The
network's processes (``link``, ``bringup``'s delivery) decide the same way for theirs.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qnetlab.instruments.lab_config import LabConfig
    from qnetlab.network.lab_telemetry import LabTelemetry
    from qnetlab.network.telemetry import TelemetryPublisher
    from qnetlab.sequences.progress import NodeState


def _warn(exc: Exception) -> None:
    print(f"qnetlab: warning: no telemetry for the monitor: {exc}", file=sys.stderr)


def _publisher(config: LabConfig) -> TelemetryPublisher | None:
    """The lab's publisher, or None (warned) when it cannot start or the lab has none."""
    from qnetlab.instruments.errors import ConfigError
    from qnetlab.network.keys import LabKeyError
    from qnetlab.network.telemetry import TelemetryPublisher

    telemetry = config.telemetry
    if telemetry is None:
        return None
    try:
        return TelemetryPublisher(telemetry.address, key_dir=telemetry.key_dir,
                                  name=telemetry.name, config_file=str(config.path),
                                  config_entry="qnetlab.telemetry.address")
    except LabKeyError as exc:
        _warn(exc.for_config(config.path))
    except ConfigError as exc:
        _warn(exc)
    return None


@contextlib.contextmanager
def lab_telemetry(station: Any) -> Iterator[LabTelemetry | None]:
    """While the block runs, publish `station`'s values and every run's progress (None
    when its lab publishes no telemetry, or cannot: warned)."""
    from qnetlab.network.lab_telemetry import LabTelemetry
    from qnetlab.sequences.progress import reporting_to

    publisher = _publisher(station.lab_config)
    if publisher is None:
        yield None
        return
    with LabTelemetry(station, publisher) as telemetry, reporting_to(telemetry):
        yield telemetry


class SessionTelemetry:
    """A calibration session's telemetry (a `sequences.progress.RunReporter`): each lab
    that publishes gets its publisher for the whole session; the lab whose station is open
    publishes its values and the runs' progress; each lab publishes the states of its own
    calibration nodes, the link's (a scope without a lab that publishes) go with the first
    lab that publishes."""

    def __init__(self, session: Any) -> None:
        from qnetlab.instruments.lab_config import load_config

        self.graph, self.ctx = session.graph, session.ctx
        self.publishers: dict[str, TelemetryPublisher] = {}
        for name, scope in self.ctx.scopes.items():
            if scope.config is not None:
                publisher = _publisher(load_config(scope.config))
                if publisher is not None:
                    self.publishers[name] = publisher
        self.current: LabTelemetry | None = None
        self._open = self.ctx._opener()  # the context's own way to open a lab's station
        if self.publishers:
            self.ctx.opener = self._opener

    def _opener(self, scope: Any, store: Any, session: str) -> Any:
        from qnetlab.network.lab_telemetry import LabTelemetry

        station = self._open(scope, store, session)
        self._stop_sampler()
        publisher = self.publishers.get(scope.name)
        if publisher is not None:
            self.current = LabTelemetry(station, publisher, owns_publisher=False)
        return station

    def _stop_sampler(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None

    def sequence_progress(self, sequence: str, done: int, total: int, label: str,
                          state: str, reason: str) -> None:
        if self.current is not None:
            self.current.sequence_progress(sequence, done, total, label, state, reason)

    def calibration_states(self, nodes: Sequence[NodeState]) -> None:
        from qnetlab.network.telemetry import CalibrationStates, NodeStatus

        if not self.publishers:
            return
        fallback = next(iter(self.publishers))
        by_lab: dict[str, list[NodeStatus]] = {}
        for name, state, age, timeout in nodes:
            scope = self.graph[name].scope
            by_lab.setdefault(scope if scope in self.publishers else fallback, []).append(
                NodeStatus(name, state, age, timeout))
        for lab, statuses in by_lab.items():
            publisher = self.publishers[lab]
            publisher.publish(CalibrationStates(publisher.name, tuple(statuses), time.time()))

    def close(self) -> None:
        self._stop_sampler()
        for publisher in self.publishers.values():
            publisher.close(linger_s=0.5)
        self.publishers.clear()


@contextlib.contextmanager
def session_telemetry(session: Any) -> Iterator[SessionTelemetry]:
    """While the block runs, publish a calibration session's labs (`SessionTelemetry`)."""
    from qnetlab.sequences.progress import reporting_to

    telemetry = SessionTelemetry(session)
    try:
        with reporting_to(telemetry) if telemetry.publishers else contextlib.nullcontext():
            yield telemetry
    finally:
        telemetry.close()
