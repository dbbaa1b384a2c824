"""The network processes' telemetry: `LinkStatistics` about once a second.

Each process publishes what it knows, as its own source (its name and CURVE key), for the
link named ``"<node>-<node>"`` (`link_name`), so the monitor shows them side by side:

- a node agent: the heralds it received per second, the pairs it delivered, the latency of
  its last heralds (receipt minus the station's decision, p50 / p99) and every counter it
  keeps (its own, its sequence tracker's, the malformed messages it dropped);
- the heralding station: its herald rate and its counters, as values (`StationTelemetry`);
- the orchestrator: the pairs delivered, the herald rate as the nodes' verdicts report it
  (how far their herald sequence numbers advanced per second), the link layer's fidelity
  estimate (the goodness the nodes give a pair: the calibrated expectation, not a
  measurement; a real link's fidelity takes tomography) and every counter it keeps.

Telemetry must never stop a link: a publisher that cannot bind (port in use, missing key)
is logged as a warning and the process runs without it; a publish never blocks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qnetlab.instruments.errors import QnetlabError

from .telemetry import MAX_COUNT, MAX_ITEMS, LinkStatistics, TelemetryPublisher, ValueReading

log = logging.getLogger(__name__)

PERIOD_S = 1.0
"""s between two `LinkStatistics` of a process."""
LATENCY_WINDOW = 2_000
"""Heralds (the most recent) whose latency percentiles are published: 20 beyond the p99, and
read in ~0.1 ms, so the node's next herald is not kept waiting."""


def link_name(nodes: Sequence[str]) -> str:
    """The link as the monitor names it: its two nodes, ``"node_a-node_b"``."""
    return "-".join(nodes)


def open_publisher(address: str | None, key_dir: Path | None, name: str
                   ) -> TelemetryPublisher | None:
    """The process's publisher at `address` (None: it publishes none); None, with a
    warning saying why, when it cannot bind or its keys are missing."""
    if address is None:
        return None
    try:
        return TelemetryPublisher(address, key_dir=key_dir, name=name,
                                  config_entry=f"telemetry_address of {name}")
    except QnetlabError as exc:
        log.warning("%s: no telemetry (%s)", name, exc)
        return None


def _errors(*counters: Mapping[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for mapping in counters:
        for key, value in mapping.items():
            name = str(key).replace("/", "_")[:200] or "unnamed"
            if len(out) < MAX_ITEMS:
                out[name] = min(max(int(value), 0), MAX_COUNT)
    return out


class _Periodic:
    """Publishes a process's statistics once a `period_s` from its own loop (`tick`)."""

    def __init__(self, publisher: TelemetryPublisher | None, link: str, period_s: float
                 ) -> None:
        self.publisher, self.link, self.period_s = publisher, link, period_s
        self.started = self._last = time.monotonic()
        self._next = self.started  # the first at once: the monitor sees the link come up

    def due(self) -> float | None:
        """The s since the last statistics, when new ones are due; else None."""
        now = time.monotonic()
        if self.publisher is None or now < self._next:
            return None
        elapsed, self._last = now - self._last, now
        self._next = now + self.period_s
        return elapsed

    def publish(self, statistics: LinkStatistics) -> None:
        if self.publisher is not None:
            self.publisher.publish(statistics)

    def close(self) -> None:
        if self.publisher is not None:
            self.publisher.close(linger_s=0.5)  # the last statistics reach the monitor
            self.publisher = None


class NodeTelemetry(_Periodic):
    """A node agent's statistics (module docstring); `tick(node)` from its loop."""

    def __init__(self, publisher: TelemetryPublisher | None, source: str, link: str,
                 period_s: float = PERIOD_S) -> None:
        super().__init__(publisher, link, period_s)
        self.source = source
        self._heralds = 0

    def tick(self, node: Any, *, final: bool = False) -> None:
        """Publish `node`'s (a `network.node_state.Node`) statistics if due (or `final`)."""
        elapsed = self.due() if not final else max(time.monotonic() - self._last, 1e-9)
        if elapsed is None:
            return
        try:
            statistics = self.statistics(node, elapsed)
        except Exception as exc:  # telemetry must never stop the node
            log.warning("%s: telemetry not published: %r", self.source, exc)
            return
        self.publish(statistics)

    def statistics(self, node: Any, elapsed: float) -> LinkStatistics:
        heralds = len(node.latency)
        rate = max(heralds - self._heralds, 0) / elapsed if elapsed > 0 else 0.0
        self._heralds = heralds
        recent = node.latency.recent_ps(LATENCY_WINDOW) * 1e-12
        recent = recent[recent >= 0]
        p50, p99 = ((float(np.percentile(recent, 50)), float(np.percentile(recent, 99)))
                    if len(recent) else (None, None))
        return LinkStatistics(
            self.source, self.link, rate, int(node.counters.get("delivered", 0)), None, p50,
            p99, _errors(node.counters, node.tracker.counters,
                         {f"malformed_{k}": v for k, v in node.decoder.errors.items()}),
            time.time())


class OrchestratorTelemetry(_Periodic):
    """The orchestrator's statistics (module docstring); `tick(orchestrator)` from its
    loop."""

    def __init__(self, publisher: TelemetryPublisher | None, source: str, link: str,
                 period_s: float = PERIOD_S) -> None:
        super().__init__(publisher, link, period_s)
        self.source = source
        self._seq: int | None = None
        self._fidelity_sum, self._fidelity_count, self._settled = 0.0, 0, 0

    def tick(self, orchestrator: Any, *, final: bool = False) -> None:
        elapsed = self.due() if not final else max(time.monotonic() - self._last, 1e-9)
        if elapsed is None:
            return
        try:
            statistics = self.statistics(orchestrator, elapsed)
        except Exception as exc:  # telemetry must never stop the link layer
            log.warning("%s: telemetry not published: %r", self.source, exc)
            return
        self.publish(statistics)

    def statistics(self, orchestrator: Any, elapsed: float) -> LinkStatistics:
        seq = max(orchestrator.last_seq.values(), default=None)
        rate = 0.0
        if seq is not None and self._seq is not None and elapsed > 0:
            rate = max(seq - self._seq, 0) / elapsed
        if seq is not None:
            self._seq = max(seq, self._seq or 0)
        settled = orchestrator._delivered  # per settlement: (seqs, goodness, decided_ps)
        for _, goodness, _ in settled[self._settled:]:
            self._fidelity_sum += float(np.sum(goodness))
            self._fidelity_count += len(goodness)
        self._settled = len(settled)
        fidelity = (min(max(self._fidelity_sum / self._fidelity_count, 0.0), 1.0)
                    if self._fidelity_count else None)
        return LinkStatistics(
            self.source, self.link, rate, int(orchestrator.delivered_count), fidelity, None,
            None, _errors(orchestrator.counters,
                          {f"malformed_{k}": v for k, v in orchestrator.decoder.errors.items()}),
            time.time())


class StationTelemetry(_Periodic):
    """The heralding station's values: its herald rate (Hz, heralds published per second)
    and every counter it keeps, as `ValueReading`s named ``herald_publisher.<counter>``
    (the station decides heralds; pairs, fidelity and latency are the nodes' and the
    orchestrator's to say). `tick(publisher)` from its loop."""

    def __init__(self, publisher: TelemetryPublisher | None, source: str, link: str,
                 period_s: float = PERIOD_S) -> None:
        super().__init__(publisher, link, period_s)
        self.source = source
        self._published = 0

    def tick(self, herald_publisher: Any, *, final: bool = False) -> None:
        elapsed = self.due() if not final else max(time.monotonic() - self._last, 1e-9)
        if elapsed is None or self.publisher is None:
            return
        try:
            counters = dict(herald_publisher.counters)
            published = int(counters.get("heralds_published", 0))
            rate = max(published - self._published, 0) / elapsed
            self._published = published
            now = time.time()
            readings = [ValueReading(self.source, "herald_publisher.herald_rate", rate, "Hz",
                                     now)]
            readings += [ValueReading(self.source, f"herald_publisher.{name}",
                                      float(value), "", now)
                         for name, value in _errors(counters).items()]
        except Exception as exc:  # telemetry must never stop the station
            log.warning("%s: telemetry not published: %r", self.source, exc)
            return
        for reading in readings:
            self.publisher.publish(reading)
