"""The bridge config's hosts: ``bridge.key_dir``, ``orchestrator:``, ``world:`` and each
station's addresses (network/bridge/bridge_config.py), and `qnetlab keys` for a bridge."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from qnetlab.cli import main
from qnetlab.instruments.errors import ConfigError
from qnetlab.network.bridge import load_bridge_config
from qnetlab.sim_instruments.bridge_world import plan_bridge_world

from bridge_lab import BRIDGE_8, LAB_CONFIGS, bridge_data, write_yaml
from conftest import REPO


def _edit(*keys: str, value: Any = None, delete: bool = False
          ) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        for key in keys[:-1]:
            data = data[key]
        if delete:
            del data[keys[-1]]
        else:
            data[keys[-1]] = value
    return edit


@pytest.mark.parametrize(("edit", "entry", "fragment"), [
    (_edit("orchestrator", "adress", value="tcp://127.0.0.1:1"), "orchestrator.adress",
     "did you mean 'address'"),
    (_edit("world", "address", value="ipc:///tmp/w"), "world.address", "not a tcp address"),
    (_edit("orchestrator", "address", value="tcp://*:29401"), "orchestrator.address",
     "binding every interface is refused"),
    (_edit("stations", "st1", "herald_address", value="tcp://127.0.0.1:29402"),
     "stations.st1.herald_address", "is also stations.st0.herald_address"),
    (_edit("stations", "st1", "request_address", delete=True),
     "stations.st1.request_address", "missing: a bridge across hosts"),
    (_edit("world", delete=True), "world.address", "missing: a bridge across hosts"),
    (_edit("bridge", "key_dir", delete=True), "bridge.key_dir", "missing"),
    (_edit("stations", "world", value={"lab": str(LAB_CONFIGS / "heralding_station.yaml"),
                                       "arms": {"a": {"port": 21, "fibre_length_km": 0.01},
                                                "b": {"port": 22, "fibre_length_km": 0.01}}}),
     "stations.world", "taken by a process of the bridge"),
])
def test_an_address_error_names_the_entry(tmp_path: Path,
                                          edit: Callable[[dict[str, Any]], None], entry: str,
                                          fragment: str) -> None:
    data = bridge_data()
    edit(data)
    with pytest.raises(ConfigError) as refused:
        load_bridge_config(write_yaml(data, tmp_path / "bridge.yaml"))
    assert refused.value.entry == entry, str(refused.value)
    assert fragment in str(refused.value)


def test_the_shipped_config_places_every_process_and_its_keys(tmp_path: Path) -> None:
    config = load_bridge_config(BRIDGE_8)
    assert config.hosts and config.key_dir == (REPO / "lab_data" / "keys" / "bridge_8")
    assert config.world_address == "tcp://127.0.0.1:29410"
    assert set(config.bound_addresses()) == {
        "orchestrator.address", *(f"stations.{s}.{k}" for s in ("st0", "st1")
                                  for k in ("herald_address", "request_address"))}
    # A relative key_dir is relative to the file, wherever it is read from.
    data = bridge_data()
    (tmp_path / "sub").mkdir()
    data["bridge"]["key_dir"] = "../keys"
    assert load_bridge_config(write_yaml(data, tmp_path / "sub" / "b.yaml")).key_dir == \
        tmp_path / "keys"


def test_the_worlds_ports_must_not_hold_another_process(tmp_path: Path) -> None:
    """The world's twins take ports from world.address up; a station's socket among them
    on the same host is refused naming world.address."""
    data = bridge_data()
    data["world"]["address"] = "tcp://127.0.0.1:29400"  # its run reaches 29401..29405
    config = load_bridge_config(write_yaml(data, tmp_path / "bridge.yaml"))
    with pytest.raises(ConfigError) as refused:
        plan_bridge_world(config, tmp_path / "world", on_hosts=True)
    assert refused.value.entry == "world.address" and "orchestrator.address" in \
        str(refused.value)
    # The same ports on another host are no clash.
    data["world"]["address"] = "tcp://10.0.0.9:29400"
    config = load_bridge_config(write_yaml(data, tmp_path / "bridge.yaml"))
    plan = plan_bridge_world(config, tmp_path / "world", on_hosts=True)
    assert plan.relay is not None and plan.relay[0] == "10.0.0.9"


def test_keys_for_a_bridge_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`qnetlab keys CONFIG` makes the orchestrator's, each station's, each QNU's node
    agent's, the workload application's and the monitor's keypairs in bridge.key_dir; a
    second run keeps them."""
    data = bridge_data()
    data["bridge"]["key_dir"] = str(tmp_path / "keys")
    path = write_yaml(data, tmp_path / "bridge.yaml")
    assert main(["keys", str(path)]) == 0
    out = capsys.readouterr().out
    names = ("bridge_orchestrator", "st0", "st1", *(f"qnu{i}" for i in range(8)), "app",
             "monitor")
    for name in names:
        assert (tmp_path / "keys" / "private" / f"{name}.key_secret").is_file()
        assert (tmp_path / "keys" / "public" / f"{name}.key").is_file()
        assert f"{name}" in out
    assert main(["keys", str(path)]) == 0
    assert capsys.readouterr().out.count("kept (exists)") == len(names)
