"""The bridge orchestrator's timeline as telemetry, for `qnetlab monitor`.

With a ``telemetry_address`` in its settings the orchestrator process publishes, on a CURVE
PUB socket with its own key (`network.telemetry.TelemetryPublisher`, as the link's processes
do), what the timeline figure of `qnetlab bridge` draws, as it happens:

- `SwitchConfiguration`: each station's arms from a time on (RECONFIGURE: the QNU pair, the
  time it carries light after the settle and the stale paths' re-checks; a station that loses
  a QNU to another station's reconfiguration, or whose arms the switch loop cleared after a
  failure, holds nothing from then). The stations' current configurations are republished
  every `REPUBLISH_S` (a monitor that joins late sees them; the monitor merges a span it
  already has).
- `RequestEvent`: each request's life: accepted (ACK), served (ASSIGN: a station heralds for
  it), suspended, delivered (OK), err (ERR and its code), cancelled.

`TimelineTelemetry.observe` reads the orchestrator's decision-log records (the scheduler's
decisions, `records.Decision.as_record`, and the switch loop's ``switch_failed`` events), so
the telemetry says what the log says. Times: ``at`` in s on the bridge clock (the axis of the
timeline), ``time`` UNIX s when published.

Watching never costs a request: a telemetry address that cannot be bound is logged
(``telemetry_off``) and the orchestrator serves without it; a message that cannot be made is
counted in `unpublishable`, never raised.

`bridge_config_endpoints` finds the publisher for the monitor: the config's
``orchestrator.telemetry_address`` (with ``bridge.key_dir``) when it gives one, so the monitor
can start first; else (`bridge_endpoints`) the ``telemetry`` addresses in the ready files
(``<name>_ready.json``) of the config's run folder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from qnetlab.instruments.errors import ConfigError

from ..telemetry import TelemetryEndpoints, TelemetryPublisher
from ..telemetry_messages import (
    REQUEST_STATES,
    RequestEvent,
    SwitchConfiguration,
    TelemetryError,
)

REPUBLISH_S = 1.0
"""Wall-clock s between republications of the stations' current configurations."""
LINGER_S = 1.0
"""How long the last messages (the requests refused at the stop) may take to leave, s."""

_STATE_OF = {"ACK": "accepted", "ASSIGN": "served", "SUSPEND": "suspended", "OK": "delivered",
             "ERR": "err", "CANCEL": "cancelled"}
"""Decision action -> `RequestEvent.state`."""
assert set(_STATE_OF.values()) <= set(REQUEST_STATES)
_CLOSING = ("OK", "ERR", "CANCEL")


class TimelineTelemetry:
    """Turns decision-log records into timeline telemetry on `publisher` (its name is the
    source). `stations`: the bridge's, each connected to nothing at the start. `clock`:
    UNIX s (the messages' ``time``); `monotonic`: for the republication interval."""

    def __init__(self, publisher: TelemetryPublisher, stations: Iterable[str], *,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 republish_s: float = REPUBLISH_S) -> None:
        self.publisher = publisher
        self.source = publisher.name
        self.clock, self.monotonic, self.republish_s = clock, monotonic, republish_s
        self.arms: dict[str, tuple[tuple[str, ...], float, float | None, str]] = {
            s: ((), 0.0, None, "the switch starts with nothing connected") for s in stations}
        """station -> (QNUs, from s, settled s, why): the scheduler's switch as published."""
        self.qnus: dict[str, tuple[str, str]] = {}
        """Open request -> its QNUs (a closing record may not name them)."""
        self.unpublishable = 0
        self.last_error = ""
        self._last_republish = -float("inf")

    @property
    def address(self) -> str:
        return self.publisher.address

    # -- what the log says -------------------------------------------------------------
    def observe(self, record: Mapping[str, Any]) -> None:
        """One decision-log record: publish what it changes on the timeline."""
        try:
            self._observe(record)
        except (TelemetryError, TypeError, ValueError) as exc:  # never the orchestrator's end
            self.unpublishable += 1
            self.last_error = str(exc)

    def _observe(self, record: Mapping[str, Any]) -> None:
        at = float(record.get("time", 0.0) or 0.0)
        if record.get("event") == "switch_failed" and record.get("station") in self.arms:
            self._configure(record["station"], (), at, None,
                            "the switch could not make the path: arms cleared")
            return
        action, station = record.get("action"), record.get("station")
        qnus = tuple(record.get("qnus") or ())
        if action == "RECONFIGURE" and station in self.arms and len(qnus) == 2:
            for other, (held, *_rest) in list(self.arms.items()):
                if other != station and set(held) & set(qnus):
                    # a QNU's port goes to one station arm at a time
                    self._configure(other, (), at, None, f"{'-'.join(qnus)} moved to "
                                    f"{station}")
            self._configure(station, qnus, at, record.get("ready_at"),
                            str(record.get("reason", "")))
        elif action == "RECHECK" and station in self.arms and record.get("ready_at"):
            held, since, _, why = self.arms[station]
            if held:  # the path carries light once its re-check is done
                self._configure(station, held, since, record["ready_at"], why)
        request = record.get("request")
        if action in _STATE_OF and isinstance(request, str):
            self._request(request, str(action), qnus, station, record, at)

    def _request(self, request: str, action: str, qnus: tuple[str, ...], station: Any,
                 record: Mapping[str, Any], at: float) -> None:
        if len(qnus) == 2:
            self.qnus.setdefault(request, (qnus[0], qnus[1]))
        pair = self.qnus.get(request)
        if action in _CLOSING:
            self.qnus.pop(request, None)
        if pair is None:
            return  # never heard of: nothing to draw it between
        self._publish(RequestEvent(self.source, request, pair, _STATE_OF[action],
                                   station if isinstance(station, str) else "",
                                   str(record.get("code") or ""), at, self.clock()))

    def _configure(self, station: str, qnus: tuple[str, ...], at: float,
                   settled: float | None, why: str) -> None:
        self.arms[station] = (qnus, at, settled if qnus else None, why[:1000])
        self._publish_station(station)

    def _publish_station(self, station: str) -> None:
        qnus, at, settled, why = self.arms[station]
        self._publish(SwitchConfiguration(self.source, station, qnus, at, settled, why,
                                          self.clock()))

    def _publish(self, message: SwitchConfiguration | RequestEvent) -> None:
        self.publisher.publish(message)

    # -- each turn -----------------------------------------------------------------------
    def tick(self) -> None:
        """Republish every station's configuration when `republish_s` have passed."""
        now = self.monotonic()
        if now - self._last_republish < self.republish_s:
            return
        self._last_republish = now
        for station in self.arms:
            try:
                self._publish_station(station)
            except TelemetryError as exc:
                self.unpublishable += 1
                self.last_error = str(exc)

    def close(self) -> None:
        self.publisher.close(LINGER_S)


def open_timeline(address: str | None, key_dir: Path, name: str, stations: Iterable[str],
                  log: Callable[[dict[str, Any]], None]) -> TimelineTelemetry | None:
    """The orchestrator's timeline publisher bound at `address` as `name` (CURVE with the
    key directory's keys), or None: no address, or it could not be bound (logged as
    ``telemetry_off`` with the reason and the fix; the orchestrator serves without it)."""
    if address is None:
        return None
    try:
        publisher = TelemetryPublisher(address, key_dir=key_dir, name=name,
                                       config_file=f"bridge orchestrator {name!r} settings",
                                       config_entry="telemetry_address")
    except (ConfigError, TelemetryError) as exc:
        log({"event": "telemetry_off", "address": address, "reason": str(exc)})
        return None
    timeline = TimelineTelemetry(publisher, stations)
    log({"event": "telemetry", "address": timeline.address})
    timeline.tick()  # the stations as they start: nothing connected
    return timeline


# -- the monitor's side ------------------------------------------------------------------

def is_bridge_config(path: str | Path) -> bool:
    """Is `path` a readable YAML file with a top-level ``bridge:`` (a bridge config)?"""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        data = YAML(typ="safe").load(Path(path).read_text())
    except (OSError, YAMLError, UnicodeDecodeError):
        return False  # the other loaders say what is wrong with it
    return isinstance(data, dict) and "bridge" in data and "network" not in data \
        and "instruments" not in data


def bridge_endpoints(run_dir: Path, config: str = "bridge config") -> TelemetryEndpoints:
    """The timeline publishers of the orchestrators whose ready files are in `run_dir`
    ({name: telemetry address}, and their key directory). ConfigError naming the fix when
    none publishes, or a ready file is not what an orchestrator writes."""
    endpoints: dict[str, str] = {}
    key_dirs: set[Path] = set()
    for ready in sorted(run_dir.glob("*_ready.json")):
        try:
            info = json.loads(ready.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(str(ready), "", f"unreadable ({exc})",
                              "delete it; the orchestrator writes it when it starts") from None
        if not isinstance(info, dict) or info.get("telemetry") is None:
            continue
        address, keys = info.get("telemetry"), info.get("key_dir")
        if not isinstance(address, str) or not isinstance(keys, str):
            raise ConfigError(str(ready), "telemetry", "is not an orchestrator's ready file "
                              "(telemetry and key_dir must be text)",
                              "delete it; the orchestrator writes it when it starts")
        endpoints[ready.name.removesuffix("_ready.json")] = address
        key_dirs.add(Path(keys))
    if not endpoints:
        raise ConfigError(config, "bridge.run_dir", f"no bridge orchestrator publishing "
                          f"telemetry has started for it (no ready file in {run_dir} names "
                          "a telemetry address)",
                          "start the orchestrator with a telemetry_address in its settings "
                          "(BridgeServiceSettings), then the monitor")
    if len(key_dirs) > 1:
        raise ConfigError(config, "bridge.run_dir", f"the orchestrators in {run_dir} use "
                          f"different key directories ({', '.join(map(str, key_dirs))})",
                          "watch them with one monitor each, or give them one key set")
    return TelemetryEndpoints(endpoints, key_dirs.pop())


def bridge_config_endpoints(path: str | Path) -> TelemetryEndpoints:
    """The orchestrator's timeline publisher of a bridge config: its
    ``orchestrator.telemetry_address`` with the keys of ``bridge.key_dir`` when the config
    gives them (the monitor may then start before the orchestrator: it subscribes and waits),
    else `bridge_endpoints` of its run folder (``bridge.run_dir``: the ready files of the
    orchestrators already started)."""
    from .bridge_config import ORCHESTRATOR_KEY, load_bridge_config

    config = load_bridge_config(path)
    address = config.orchestrator_telemetry_address
    if address is not None and config.key_dir is not None:  # the config places it
        return TelemetryEndpoints({ORCHESTRATOR_KEY: address}, config.key_dir)
    return bridge_endpoints(config.run_dir, str(path))
