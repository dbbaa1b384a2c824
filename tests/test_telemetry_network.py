"""The network publishes its link statistics (network.link_telemetry): the node agents and the
orchestrator, started as their own processes from the shipped network config (free ports, keys
as ``qnetlab keys`` makes them, the test signal's heralds), heard by the monitor's subscriber
while pairs are delivered."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from qnetlab.network import ProcessGroup
from qnetlab.network.keys import generate_lab_keys
from qnetlab.network.lab import plan_lab, read_report, start_lab
from qnetlab.network.network_config import load_network_config
from qnetlab.network.telemetry import (
    LinkStatistics,
    TelemetrySubscriber,
    ValueReading,
    telemetry_endpoints,
)
from qnetlab.network.telemetry_config import MONITOR, network_key_names
from qnetlab.network.test_signals import PeriodicHeralds

from conftest import REPO, free_port_run

pytestmark = [pytest.mark.slow, pytest.mark.processes]

CONFIG = REPO / "lab_configs" / "two_node_link.yaml"
LIMIT = 60.0
"""s after which every process stops by itself."""
PERIOD_PS = 750_000_000
"""The test signal's herald period: 1.33 k heralds/s."""


def test_the_shipped_network_names_every_publisher_and_the_monitors_key() -> None:
    where = telemetry_endpoints(CONFIG)
    assert set(where.endpoints) == {"station", "orchestrator", "node_a", "node_b",
                                    "heralding_station", "node_a_lab", "node_b_lab"}
    config = load_network_config(CONFIG)
    assert where.key_dir == config.key_dir
    assert network_key_names(config) == [*config.key_names(), "heralding_station",
                                         "node_a_lab", "node_b_lab", MONITOR]
    moved = config.with_ports(40000)
    assert moved.port_count == 3 + 4
    assert sorted(moved.telemetry_addresses().values()) == [
        f"tcp://127.0.0.1:{port}" for port in range(40003, 40007)]


def test_node_agents_and_orchestrator_publish_link_statistics_while_delivering(
        tmp_path: Path) -> None:
    config = load_network_config(CONFIG)
    config = config.with_ports(free_port_run(config.port_count))
    config = dataclasses.replace(config, key_dir=tmp_path / "keys", run_dir=tmp_path / "runs")
    generate_lab_keys(config.key_dir, [*config.key_names(), MONITOR])
    pairs = 300
    plan = plan_lab(config, pairs=pairs, run_dir=config.run_dir,
                    epoch_ns=time.monotonic_ns(), goodness=0.9,
                    expected_pair_rate=1e12 / PERIOD_PS, max_seconds=LIMIT)
    with TelemetrySubscriber(config.telemetry_addresses(), key_dir=config.key_dir) as monitor, \
            ProcessGroup() as group:
        start_lab(group, plan, functools.partial(PeriodicHeralds, PERIOD_PS))
        heard: list[LinkStatistics] = []
        station: list[ValueReading] = []

        def seen(source: str, test: Callable[[LinkStatistics], bool]) -> bool:
            return any(m.source == source and test(m) for m in heard)

        deadline = time.monotonic() + LIMIT
        while not (seen("node_a", lambda m: m.delivered > 0 and m.latency_p50_s is not None)
                   and seen("node_b", lambda m: m.delivered > 0)
                   and seen("orchestrator", lambda m: m.delivered == pairs)
                   and any(v.name == "herald_publisher.herald_rate" and v.value > 0
                           for v in station)
                   # a tick's readings are separate messages: one receive may end between them
                   and any(v.name == "herald_publisher.heralds_published" for v in station)):
            assert time.monotonic() < deadline, f"not all statistics heard: {heard}"
            messages = monitor.receive(1.0)
            heard += [m for m in messages if isinstance(m, LinkStatistics)]
            station += [m for m in messages if isinstance(m, ValueReading)]
        assert group.join(plan.orchestrator.name, LIMIT) == 0
        group.stop_all()
    node = next(m for m in heard if m.source == "node_a" and m.latency_p50_s is not None)
    assert node.link == "node_a-node_b" and node.herald_rate_hz > 0
    assert node.latency_p50_s is not None and node.latency_p99_s is not None
    assert 0 <= node.latency_p50_s <= node.latency_p99_s < 1.0
    assert "received" in node.errors and node.fidelity is None
    final = next(m for m in heard if m.source == "orchestrator" and m.delivered == pairs)
    assert final.link == "node_a-node_b"
    assert final.fidelity == pytest.approx(0.9)  # the nodes' goodness: the expectation
    assert final.latency_p50_s is None  # the nodes measure latency, not the orchestrator
    rate = next(v for v in station if v.name == "herald_publisher.herald_rate" and v.value)
    assert rate.source == "station" and rate.unit == "Hz"
    assert rate.value == pytest.approx(1e12 / PERIOD_PS, rel=0.5)  # the test signal's rate
    published = next(v for v in station if v.name == "herald_publisher.heralds_published")
    assert published.source == "station" and published.value > 0
    report = read_report(plan)
    assert report.delivered == pairs
    assert monitor.malformed == 0
