"""The verbs publish when the config names telemetry: a `qnetlab run` subprocess on the simulated
bench is heard by the monitor's subscriber; `qnetlab keys` makes the monitor's key; a port in
use or missing keys warn (naming the port, the entry and the fix) and the run goes on."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_telemetry_lab import bench_with_telemetry

from qnetlab.cli import main
from qnetlab.instruments.lab_config import load_config
from qnetlab.network.telemetry import (
    CalibrationStates,
    SequenceProgress,
    TelemetryMessage,
    TelemetryPublisher,
    TelemetrySubscriber,
    ValueReading,
    telemetry_endpoints,
)
from qnetlab.sim_instruments.ports import free_port_run

from conftest import BENCH_CONFIG, REPO

DEADLINE = 100.0  # s (pytest-timeout: 120): a subprocess imports QCoDeS first

RUN = ["run", "microwave_resonance_scan", "--set", "points=101", "--set", "segments=2"]


def test_a_run_subprocess_is_heard_by_the_monitor_from_start_to_finish(tmp_path: Path) -> None:
    config = bench_with_telemetry(tmp_path)
    where = telemetry_endpoints(config)
    # The subscriber connects first; ZeroMQ joins it as soon as the run's publisher binds.
    with TelemetrySubscriber(where.endpoints, key_dir=where.key_dir) as monitor:
        run = subprocess.Popen(
            [sys.executable, "-m", "qnetlab", RUN[0], RUN[1], str(config), *RUN[2:],
             "--db", str(tmp_path / "lab.db")], cwd=REPO, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        try:
            progress: list[SequenceProgress] = []
            values: list[ValueReading] = []
            while not progress or progress[-1].state != "finished":
                message = monitor.wait_for(
                    lambda m: isinstance(m, SequenceProgress | ValueReading), DEADLINE)
                if isinstance(message, SequenceProgress):
                    progress.append(message)
                else:
                    values.append(message)
            # The lab's values: sampled as it starts and once more as the run ends.
            if not any(v.kind == "mxc_ceiling" for v in values):
                values.append(monitor.wait_for(
                    lambda m: isinstance(m, ValueReading) and m.kind == "mxc_ceiling",
                    DEADLINE))
        finally:
            _out, err = run.communicate(timeout=DEADLINE)
    assert run.returncode == 0, err
    assert "warning" not in err
    assert {m.sequence for m in progress} == {"microwave_resonance_scan"}
    assert progress[-1].done == progress[-1].total > 0
    assert {m.source for m in progress} == {"transducer_bench"}
    assert any(v.kind == "mxc_ceiling" for v in values)


def test_keys_for_a_lab_config_make_its_publishers_and_the_monitors_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "configs").mkdir()
    config = load_config(BENCH_CONFIG).to_yaml(tmp_path / "configs" / "bench.yaml")
    assert main(["keys", str(config.path)]) == 0
    out = capsys.readouterr().out
    assert "transducer_bench" in out and "monitor" in out and "generated" in out
    keys = tmp_path / "lab_data" / "keys" / "transducer_bench"
    assert (keys / "private" / "monitor.key_secret").is_file()
    assert (keys / "public" / "transducer_bench.key").is_file()


def test_keys_for_a_lab_without_telemetry_name_the_entry(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text("instruments:\n"
                    "  fridge: {type: qnetlab.drivers.lakeshore.LakeshoreModel372,\n"
                    "           address: {sim: lakeshore_372}}\n")
    assert main(["keys", str(path)]) == 2
    err = capsys.readouterr().err
    assert "qnetlab.telemetry" in err and "add 'telemetry:" in err


def test_a_port_in_use_warns_naming_port_and_entry_and_the_run_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = bench_with_telemetry(tmp_path)
    telemetry = load_config(config).telemetry
    assert telemetry is not None
    port = telemetry.address.rpartition(":")[2]
    with TelemetryPublisher(telemetry.address, key_dir=None, name="squatter"):
        assert main([RUN[0], RUN[1], str(config), *RUN[2:], "--db",
                     str(tmp_path / "lab.db"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "warning: no telemetry" in err
    assert f"port {port}" in err and "qnetlab.telemetry.address" in err


def test_missing_keys_warn_naming_qnetlab_keys_and_the_run_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "configs").mkdir()
    base = load_config(BENCH_CONFIG)
    config = base.with_ports(free_port_run(base.port_count)).to_yaml(
        tmp_path / "configs" / "bench.yaml").path
    assert main([RUN[0], RUN[1], str(config), *RUN[2:], "--db", str(tmp_path / "lab.db"),
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "warning: no telemetry" in err and f"qnetlab keys {config}" in err


def test_calibrate_publishes_the_graphs_states_and_its_runs_progress(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    base = load_config(REPO / "lab_configs" / "node_a_lab.yaml")
    config = base.with_ports(free_port_run(base.port_count)).to_yaml(
        tmp_path / "configs" / "node_a_lab.yaml").path
    assert main(["keys", str(config)]) == 0
    where = telemetry_endpoints(config)
    assert list(where.endpoints) == ["node_a_lab"]
    with TelemetrySubscriber(where.endpoints, key_dir=where.key_dir) as monitor:
        calibrate = subprocess.Popen(
            [sys.executable, "-m", "qnetlab", "calibrate", str(config), "dark_counts",
             "--quiet"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        heard: list[TelemetryMessage] = []

        def calibrated(m: TelemetryMessage) -> bool:
            return isinstance(m, CalibrationStates) and any(
                n.name == "node_a.dark_counts" and n.state == "calibrated" for n in m.nodes)

        def finished(m: TelemetryMessage) -> bool:
            return isinstance(m, SequenceProgress) and m.state == "finished"

        try:
            deadline = time.monotonic() + DEADLINE
            while not (any(map(calibrated, heard)) and any(map(finished, heard))):
                assert time.monotonic() < deadline, f"heard only {heard}"
                heard += monitor.receive(1.0)
        finally:
            _, err = calibrate.communicate(timeout=DEADLINE)
    assert calibrate.returncode == 0, err
    states = next(m for m in heard if calibrated(m))
    assert isinstance(states, CalibrationStates) and states.source == "node_a_lab"
    node = next(n for n in states.nodes if n.name == "node_a.dark_counts")
    assert node.age_s is not None and 0 <= node.age_s < DEADLINE
    assert node.timeout_s == 86400.0
    never = [n for n in states.nodes if n.name == "node_a.mw_resonance"]
    assert never and never[0].age_s is None  # the rest of the graph, as it stands
    run = next(m for m in heard if finished(m))
    assert isinstance(run, SequenceProgress) and run.sequence == "dark_count_scan"
    # Progress comes before the graph's new states: the run ends, then the node is judged.
    assert heard.index(run) < heard.index(states)
