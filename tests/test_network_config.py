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


@pytest.mark.parametrize(("old", "new", "entry", "words"), [
    ("  heartbeat_period:", "  heartbeat_perod:", "network.heartbeat_perod",
     "did you mean 'heartbeat_period'"),
    ("tcp://127.0.0.1:29101", "ipc:///tmp/heralds", "station.herald_address", "tcp://HOST:PORT"),
    ("tcp://127.0.0.1:29101", "tcp://*:29101", "station.herald_address", "binding every"),
    ("tcp://127.0.0.1:29103", "tcp://127.0.0.1:29102", "station/orchestrator", "own ports"),
    ("memory_cutoff: 0.010 ", "memory_cutoff: 0.001 ", "nodes.node_a.memory_cutoff",
     "resend_timeout"),
    ("nodes: [node_a, node_b]", "nodes: [node_a, node_c]", "link.nodes", "node_c"),
    ("detector_efficiency: 0.9", "detector_efficiency: 90", "link.detector_efficiency",
     "0.9 not 90"),
    ("scheme: two_click ", "scheme: three_click ", "link.scheme", "single_click"),
    ("fibre_length_km: 2.0", "fibre_length_km: -2.0", "nodes.node_a.fibre_length_km", ">= 0"),
    ("  name: station", "  name: node_a", "", "used by two processes"),
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
