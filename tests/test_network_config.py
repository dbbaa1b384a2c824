"""The network lab config is strict, and the CLI verbs refuse what they cannot run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from qnetlab.instruments.errors import ConfigError
from qnetlab.network.network_config import load_network_config

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "lab_configs" / "two_node_link.yaml"


def variant(tmp_path: Path, old: str, new: str) -> Path:
    text = CONFIG.read_text()
    assert old in text, old
    path = tmp_path / "lab.yaml"
    path.write_text(text.replace(old, new, 1))
    station = CONFIG.parent / "heralding_station.yaml"  # station.lab is relative
    (tmp_path / station.name).write_text(station.read_text())
    return path


def refused(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_network_config(path)
    assert str(path) in str(info.value)
    return info.value


def test_shipped_config_loads():
    config = load_network_config(CONFIG)
    assert config.link.nodes == ("node_a", "node_b")
    assert config.key_names() == ["station", "orchestrator", "node_a", "node_b"]
    assert config.station.herald_address.startswith("tcp://127.0.0.1:")
    assert config.key_dir.is_absolute()
    assert config.nodes["node_a"].memory_cutoff == 0.010
    assert config.station.lab == REPO / "lab_configs" / "heralding_station.yaml"
    assert (config.station.sync_input, config.station.detector_inputs) == (3, (1, 2))


def test_link_simulation_builds_the_station_labs_link_section():
    config = load_network_config(CONFIG)
    sim = config.link_simulation()
    assert sim["scheme"] == config.link.scheme
    assert sim["attempt_period"] == config.link.attempt_period
    assert (sim["sync_input"], sim["detector_inputs"]) == (3, [1, 2])
    assert list(sim["nodes"]) == list(config.link.nodes)  # the emission order
    assert sim["nodes"]["node_a"]["transducer"] == "bulk_eo_pulsed"
    assert sim["seed"] == 20261201


def test_link_simulation_without_a_simulation_section_names_the_fix(tmp_path):
    text = CONFIG.read_text()
    path = tmp_path / "lab.yaml"
    path.write_text(text[:text.index("\nsimulation:")] + "\n")
    (tmp_path / "heralding_station.yaml").write_text(
        (CONFIG.parent / "heralding_station.yaml").read_text())
    config = load_network_config(path)
    assert config.simulation == {}
    with pytest.raises(ConfigError) as info:
        config.link_simulation()
    assert info.value.entry == "simulation" and "--profile real" in info.value.fix


@pytest.mark.parametrize(("old", "new", "entry", "words"), [
    ("  heartbeat_period:", "  heartbeat_perod:", "network.heartbeat_perod",
     "did you mean 'heartbeat_period'"),
    ("tcp://127.0.0.1:29101", "ipc:///tmp/heralds", "station.herald_address", "tcp://HOST:PORT"),
    ("tcp://127.0.0.1:29101", "tcp://*:29101", "station.herald_address", "binding every"),
    ("tcp://127.0.0.1:29103", "tcp://127.0.0.1:29102", "station/orchestrator", "own ports"),
    ("memory_cutoff: 0.010 ", "memory_cutoff: 0.001 ", "nodes.node_a.memory_cutoff",
     "resend_timeout"),
    ("nodes: [node_a, node_b]", "nodes: [node_a, node_c]", "link.nodes", "node_c"),
    ("hom_visibility: 0.95 ", "hom_visibility: 95 ", "link.hom_visibility", "0.9 not 90"),
    ("  nodes: [node_a, node_b]", "  nodes: [node_a, node_b]\n  detector_efficiency: 0.9",
     "link.detector_efficiency", "calibration of its lab"),
    ("    fibre_length_km: 2.0 ", "    transducer: bulk_eo_pulsed\n    fibre_length_km: 2.0 ",
     "nodes.node_a.transducer", "simulation:"),
    ("lab: heralding_station.yaml", "lab: nowhere.yaml", "station.lab", "heralding_station"),
    ("sync_input: 3", "sync_input: 2", "station.detector_inputs", "own tagger input"),
    ("detection_window: 4.0e-8", "detection_window: 12.0e-6", "link.detection_window",
     "inside one round"),
    ("node_b: {transducer", "node_c: {transducer", "simulation.nodes.node_c", "node_a"),
    ("scheme: two_click ", "scheme: three_click ", "link.scheme", "single_click"),
    ("fibre_length_km: 2.0", "fibre_length_km: -2.0", "nodes.node_a.fibre_length_km", ">= 0"),
    ("  name: station", "  name: node_a", "", "used by two processes"),
    ("reconcile_timeout: 0.05 ", "reconcile_timeout: 0.005 ", "orchestrator.reconcile_timeout",
     "gathers them"),
])
def test_bad_entries_are_refused_with_the_fix(tmp_path, old, new, entry, words):
    error = refused(variant(tmp_path, old, new))
    assert error.entry == entry
    assert words in str(error)


def test_missing_file_names_the_shipped_config(tmp_path):
    error = refused(tmp_path / "nope.yaml")
    assert "two_node_link.yaml" in error.fix


def _qnetlab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qnetlab", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=60)


@pytest.mark.processes
def test_keys_then_link_refuses_missing_keys(tmp_path):
    path = variant(tmp_path, "../lab_data/keys/two_node_link", str(tmp_path / "keys"))
    result = _qnetlab("link", str(path), "--pairs", "5")
    assert result.returncode == 2
    assert "qnetlab keys" in result.stderr and str(tmp_path / "keys") in result.stderr

    result = _qnetlab("keys", str(path))
    assert result.returncode == 0, result.stderr
    for name in ("station", "orchestrator", "node_a", "node_b"):
        assert (tmp_path / "keys" / "public" / f"{name}.key").is_file()
        secret = tmp_path / "keys" / "private" / f"{name}.key_secret"
        assert secret.stat().st_mode & 0o077 == 0
    again = _qnetlab("keys", str(path))
    assert again.returncode == 0 and "kept" in again.stdout
