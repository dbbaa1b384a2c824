"""`qnetlab monitor BRIDGE_CONFIG` from the config's own telemetry address (issue 15, the
bridge's timeline on the live monitor, across hosts).

A bridge config may give ``orchestrator.telemetry_address`` (with ``bridge.key_dir``,
network/bridge/bridge_config.py): then the monitor subscribes there with the config's keys,
as for a network config, and needs no ready file, so it may start before the orchestrator;
without it the run folder's ready files say where the orchestrator publishes (as before,
tests/test_bridge_timeline_monitor.py). The one-host `--stations` launcher publishes at the
config's address with the config's keys, and refuses to start, naming the key and the fix,
when they are missing. One process-level check: the monitor first, then the orchestrator
process (sim profile: the Polatis twin in its loop) bound at the config's address.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from qnetlab.cli import EXIT_CONFIG, EXIT_OK, main
from qnetlab.instruments.errors import ConfigError
from qnetlab.monitor import MonitorServer
from qnetlab.network import ProcessGroup
from qnetlab.network.bridge import load_bridge_config
from qnetlab.network.bridge.bridge_telemetry import bridge_config_endpoints
from qnetlab.network.bridge.service import BridgeServiceSettings, run_bridge_orchestrator
from qnetlab.network.keys import generate_lab_keys
from qnetlab.sim_instruments.ports import free_port_run

from conftest import REPO, wait_until

LAB_CONFIGS = REPO / "lab_configs"
BRIDGE_8 = LAB_CONFIGS / "bridge_8.yaml"
SOURCE = "bridge_orchestrator"


def bridge_config(folder: Path, telemetry: str | None) -> Path:
    """bridge_8.yaml with absolute lab paths, its run folder and key directory in `folder`,
    and ``orchestrator.telemetry_address`` = `telemetry` (None: left out, as shipped)."""
    data: dict[str, Any] = YAML(typ="safe").load(BRIDGE_8.read_text())
    data["switch"]["lab"] = str(LAB_CONFIGS / data["switch"]["lab"])
    for section in ("qnus", "stations"):
        for spec in data[section].values():
            spec["lab"] = str(LAB_CONFIGS / spec["lab"])
    data["bridge"]["run_dir"] = str(folder / "run")
    data["bridge"]["key_dir"] = str(folder / "keys")
    if telemetry is not None:
        data["orchestrator"]["telemetry_address"] = telemetry
    path = folder / "bridge.yaml"
    with path.open("w") as out:
        YAML(typ="safe").dump(data, out)
    return path


def test_the_monitor_subscribes_where_the_config_says_before_anything_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    address = f"tcp://127.0.0.1:{free_port_run(1)}"
    path = bridge_config(tmp_path, address)
    config = load_bridge_config(path)
    generate_lab_keys(config.key_dir, config.key_names())  # `qnetlab keys CONFIG`
    found = bridge_config_endpoints(path)
    assert found.endpoints == {SOURCE: address} and found.key_dir == tmp_path / "keys"
    assert not config.run_dir.exists()  # no orchestrator, no ready file: not needed
    assert main(["monitor", str(path), "--port", "0", "--max-seconds", "0.2"]) == EXIT_OK
    assert f"telemetry from {SOURCE}: {address}" in capsys.readouterr().out
    # Without the address the ready files still say where (none yet: the fix names it).
    with pytest.raises(ConfigError, match="no bridge orchestrator publishing telemetry"):
        bridge_config_endpoints(bridge_config(tmp_path, None))


def test_a_one_host_run_that_publishes_needs_the_configs_keys(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = bridge_config(tmp_path, f"tcp://127.0.0.1:{free_port_run(1)}")
    workload = LAB_CONFIGS / "workloads" / "distributed_ghz_8.yaml"
    code = main(["bridge", str(path), "--workload", str(workload), "--stations"])
    err = capsys.readouterr().err
    assert code == EXIT_CONFIG, err
    assert str(tmp_path / "keys") in err and f"qnetlab keys {path}" in err
    assert not (tmp_path / "run").exists()  # refused before any process or file


@pytest.mark.processes
@pytest.mark.slow
def test_a_monitor_started_first_shows_the_orchestrator_at_the_configs_address(
        tmp_path: Path) -> None:
    """The monitor from the config's endpoints, then the orchestrator process (sim
    profile, the Polatis twin in its loop) publishing at the config's telemetry address
    with the config's keys: the monitor shows its stations, all connected to nothing."""
    address = f"tcp://127.0.0.1:{free_port_run(1)}"
    config = load_bridge_config(bridge_config(tmp_path, address))
    assert config.key_dir is not None
    generate_lab_keys(config.key_dir, config.key_names())
    found = bridge_config_endpoints(config.path)
    settings = BridgeServiceSettings.from_config(
        config, config.key_dir, time_scale=10.0, seed=1, max_seconds=120.0, clients=("app",),
        calibration_db=tmp_path / "calibration.db",
        telemetry_address=config.orchestrator_telemetry_address)
    with MonitorServer(found.endpoints, found.key_dir, title="bridge", port=0) as monitor, \
            ProcessGroup() as group:
        group.start(settings.name, run_bridge_orchestrator, settings)
        # the stations' configurations are republished every second
        wait_until(lambda: SOURCE in monitor.state.timelines
                   and set(monitor.state.timelines[SOURCE].snapshot().lanes)
                   == set(config.stations), 90.0, "the orchestrator's stations at the monitor")
        ready = json.loads((config.run_dir / f"{SOURCE}_ready.json").read_text())
        assert ready["telemetry"] == address
        assert monitor.malformed == 0
