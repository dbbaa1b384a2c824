"""A lab process's telemetry: its monitored parameters, its runs' progress, its calibrations.

`start_lab_telemetry(station)` binds the lab's ``qnetlab.telemetry`` publisher and returns a
`LabTelemetry`: it publishes `ValueReading`s of the monitored parameters, found by role (the
fridge's mixing-chamber temperature and each interlock's ceiling, the pump laser's power and
output, the microwave source's power, every detector channel's count rate), and is a
`sequences.progress.RunReporter`, so that ``with reporting_to(telemetry):`` publishes every
run's `SequenceProgress` (running / paused / resumed / finished / stopped) and every
calibration session's `CalibrationStates`.

Thread safety, the choice made: QCoDeS instruments and their pyvisa sessions are not
thread-safe, and a sequence uses them from the thread that owns the station. So nothing
here reads an instrument from another thread. A background thread publishes, once a
`period_s`, each monitored parameter's *cache* (``cache.get(get_if_invalid=False)``, the
value the lab last read or set, with the cache's timestamp as the reading's time); the
running sequence keeps the caches fresh (the interlock guard reads the fridge before every
step, a set pump power or output updates its cache, a measured count rate its). Fresh reads
happen only in `sample(fresh=True)`, which the caller invokes from the owning thread at a
point where no sequence uses the instruments; telemetry never does it on its own, so
watching a lab cannot change what it measures (a simulated twin's noise draws included).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qnetlab.instruments.laser import Laser
from qnetlab.instruments.microwave_source import MicrowaveSource
from qnetlab.instruments.single_photon_detector import SinglePhotonDetector
from qnetlab.instruments.temperature_controller import TemperatureController
from qnetlab.sequences.progress import NodeState

from .telemetry import (
    CalibrationStates,
    NodeStatus,
    SequenceProgress,
    TelemetryError,
    TelemetryPublisher,
    ValueReading,
)

if TYPE_CHECKING:
    from qcodes.parameters import Parameter

    from qnetlab.instruments.lab_config import LabConfig
    from qnetlab.instruments.station import LabStation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Monitored:
    """A parameter the lab publishes: its name in the lab (``instrument.parameter``), the
    QCoDeS parameter, and the monitor's `kind` for it (`telemetry.VALUE_KINDS`)."""

    name: str
    parameter: Parameter
    kind: str


def monitored_parameters(station: LabStation) -> list[Monitored]:
    """The station's monitored parameters, found by role: the lab config's transducer setup
    says which fridge, pump laser and microwave source are the transducer's (a lab without a
    setup: the interlocks' sensors and guards, then every one of the role)."""
    config = station.lab_config
    setup = config.transducer_setup or {}
    sensors = {lock.sensor.split(".")[0] for lock in config.interlocks}
    guarded = {ref.split(".")[0] for lock in config.interlocks for ref in lock.guards}
    out: list[Monitored] = []
    for name, inst in station.instruments().items():
        if isinstance(inst, TemperatureController):
            mxc = name == setup.get("fridge") or name in sensors
            out.append(Monitored(f"{name}.temperature", inst.temperature,
                                 "mxc_temperature" if mxc else ""))
        elif isinstance(inst, Laser):
            pump = name == setup.get("pump_laser") or (not setup and name in guarded)
            out += [Monitored(f"{name}.power", inst.power, "pump_power" if pump else ""),
                    Monitored(f"{name}.output", inst.output, "pump_on" if pump else "")]
        elif isinstance(inst, MicrowaveSource):
            out.append(Monitored(f"{name}.power", inst.power, "mw_power"))
        elif isinstance(inst, SinglePhotonDetector):
            out += [Monitored(f"{name}.ch{number}.count_rate", channel.count_rate, "count_rate")
                    for number, channel in sorted(inst.detector_channels.items())]
    return out


def _number(value: Any) -> float | None:
    """A cached value as a float (booleans 1.0 / 0.0); None when it is not a finite number
    (never read, or not numeric)."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class LabTelemetry:
    """Publishes one lab's telemetry as `source` (module docstring); a
    `sequences.progress.RunReporter`. `close` stops the sampler and unbinds."""

    def __init__(self, station: LabStation, publisher: TelemetryPublisher, *,
                 period_s: float = 1.0, owns_publisher: bool = True) -> None:
        """`owns_publisher`: `close` closes `publisher` too (False: a session that
        publishes several stations in turn on it keeps it)."""
        if not period_s > 0:
            raise ValueError(f"period_s must be > 0 s, got {period_s!r}")
        self.station, self.publisher, self.period_s = station, publisher, period_s
        self.source = publisher.name
        self.owns_publisher = owns_publisher
        self.monitored = monitored_parameters(station)
        self._ceilings = [(f"interlocks.{lock.name}", lock.maximum, lock.sensor)
                          for lock in station.lab_config.interlocks]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"telemetry-{self.source}",
                                        daemon=True)
        self._thread.start()

    # -- values ------------------------------------------------------------------------------
    def sample(self, *, fresh: bool = False) -> list[ValueReading]:
        """Publish every monitored parameter's value and each interlock's ceiling; the
        readings published. `fresh` reads each parameter now (instrument I/O) instead of
        its cache: call it so only from the thread that owns the station, while no
        sequence uses it (module docstring); a parameter that fails to read is skipped."""
        readings: list[ValueReading] = []
        for item in self.monitored:
            reading = self._reading(item, fresh)
            if reading is not None:
                readings.append(reading)
        now = time.time()
        units = {m.name: m.parameter.unit for m in self.monitored}
        kinds = {m.name: m.kind for m in self.monitored}
        for name, maximum, sensor in self._ceilings:
            kind = "mxc_ceiling" if kinds.get(sensor) == "mxc_temperature" else ""
            readings.append(ValueReading(self.source, name, maximum, units.get(sensor, ""),
                                         now, kind))
        for reading in readings:
            self.publisher.publish(reading)
        return readings

    def _reading(self, item: Monitored, fresh: bool) -> ValueReading | None:
        parameter = item.parameter
        try:
            value = parameter.get() if fresh else parameter.cache.get(get_if_invalid=False)
            stamp = parameter.cache.timestamp
        except Exception as exc:  # an unreadable value is not published, nor fatal
            log.debug("telemetry: %s not read: %r", item.name, exc)
            return None
        number = _number(value)
        if number is None:
            return None
        when = stamp.timestamp() if stamp is not None else time.time()
        try:
            return ValueReading(self.source, item.name, number, str(parameter.unit or ""),
                                when, item.kind)
        except TelemetryError as exc:  # e.g. a unit longer than telemetry carries
            log.debug("telemetry: %s not published: %s", item.name, exc)
            return None

    def _run(self) -> None:
        while True:  # a first sample at once: the monitor sees the lab as it starts
            try:
                self.sample()
            except Exception as exc:  # the sampler must outlive a bad value
                log.warning("telemetry sampler of %s: %r", self.source, exc)
            if self._stop.wait(self.period_s):
                return

    # -- RunReporter ---------------------------------------------------------------------------
    def sequence_progress(self, sequence: str, done: int, total: int, label: str,
                          state: str, reason: str) -> None:
        self.publisher.publish(SequenceProgress(
            self.source, sequence, max(done, 0), max(total, 0), label[:1000], state,
            reason[:1000], time.time()))

    def calibration_states(self, nodes: Sequence[NodeState]) -> None:
        self.publisher.publish(CalibrationStates(
            self.source, tuple(NodeStatus(name, state, age, timeout)
                               for name, state, age, timeout in nodes), time.time()))

    # -- lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the sampler (one last sample of the caches first) and unbind if it owns the
        publisher; idempotent."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(10.0)
            try:
                self.sample()
            except Exception as exc:
                log.debug("telemetry: last sample failed: %r", exc)
        if self.owns_publisher:
            self.publisher.close(linger_s=0.5)  # the run's last word reaches the monitor

    def __enter__(self) -> LabTelemetry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_lab_telemetry(station: LabStation, config: LabConfig | None = None, *,
                        period_s: float = 1.0) -> LabTelemetry:
    """Bind the lab's telemetry publisher (``qnetlab.telemetry`` of `config`, default the
    station's) and start publishing. ConfigError when the config names no telemetry, its
    keys are missing (naming ``qnetlab keys CONFIG``), or the port is in use (naming the
    port and the entry)."""
    from .keys import LabKeyError

    config = config if config is not None else station.lab_config
    if config.telemetry is None:
        raise config.error("qnetlab.telemetry", "this lab publishes no telemetry",
                           "add 'telemetry: {address: tcp://127.0.0.1:PORT, key_dir: "
                           "../lab_data/keys/LAB, name: LAB}' under 'qnetlab:'")
    telemetry = config.telemetry
    try:
        publisher = TelemetryPublisher(telemetry.address, key_dir=telemetry.key_dir,
                                       name=telemetry.name, config_file=str(config.path),
                                       config_entry="qnetlab.telemetry.address")
    except LabKeyError as exc:
        raise exc.for_config(config.path) from None
    return LabTelemetry(station, publisher, period_s=period_s)
