"""The sim profile's station twins in a process of their own (`qnetlab.station_twin`): the
station lab's simulated instruments served on free loopback ports, and the lab opened on the
real profile against them, through the same drivers as on hardware."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from qnetlab.instruments.errors import ConfigError
from qnetlab.instruments.lab_config import load_config
from qnetlab.instruments.station import load_station
from qnetlab.network import ProcessGroup, load_network_config
from qnetlab.station_twin import private_station_lab, start_station_twin

LAB = Path(__file__).resolve().parents[1] / "lab_configs" / "heralding_station.yaml"
LINK = load_network_config(LAB.parent / "two_node_link.yaml").link_simulation()


def _real_addresses(config) -> dict[str, str]:
    return {name: inst.addresses["real"] for name, inst in config.instruments.items()
            if "real" in inst.addresses}


def _listens(address: str) -> bool:
    port = int(address.rsplit(":", 1)[-1].split("::")[0]) if address.startswith("tcp") else (
        int(address.split("::")[2]))
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_the_private_lab_moves_every_real_address_to_loopback_ports_of_its_own() -> None:
    written = load_config(LAB)
    private = private_station_lab(LAB, LINK)
    moved = _real_addresses(private)
    assert set(moved) == set(_real_addresses(written))
    for name, address in moved.items():
        assert "127.0.0.1" in address and address != _real_addresses(written)[name]
    assert private.instruments["tagger"].init["data_address"].startswith("tcp://127.0.0.1:")
    assert private.simulation["link"]["scheme"] == LINK["scheme"]
    # A lab whose instruments sit on other hosts is served on loopback all the same.
    elsewhere = written.with_ports(50000, host="10.1.2.3")
    assert all("10.1.2.3" in a for a in _real_addresses(elsewhere).values())
    assert all("127.0.0.1" in a
               for a in _real_addresses(private_station_lab(elsewhere, None)).values())


def test_the_station_opens_its_lab_on_the_real_profile_against_the_twins_process(
        tmp_path: Path) -> None:
    with ProcessGroup() as group:
        lab = start_station_twin(group, private_station_lab(LAB, LINK), tmp_path, "twins")
        ready = json.loads((tmp_path / "twins_ready.json").read_text())
        assert ready["pid"] == group.pid("twins")
        with load_station(lab, "real") as station:
            assert station.profile == "real"
            assert "ID1000" in station.instrument("tagger").IDN()["model"]
            assert station.instrument("snspd").IDN()["vendor"]
        addresses = list(_real_addresses(lab).values())
        assert all(_listens(a) for a in addresses)
    # Stopped with the group: nothing listens any more.
    assert not any(_listens(a) for a in addresses)


def test_a_port_taken_before_the_twins_bind_moves_them_to_other_ports(tmp_path: Path) -> None:
    lab = private_station_lab(LAB, LINK)
    first = _real_addresses(lab)["snspd"]
    with socket.socket() as squatter, ProcessGroup() as group:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", int(first.split("::")[2])))
        squatter.listen(1)
        served = start_station_twin(group, lab, tmp_path, "twins")
        assert _real_addresses(served)["snspd"] != first
        with load_station(served, "real") as station:
            assert station.instrument("snspd").IDN()["vendor"]


def test_a_taken_data_link_port_moves_the_twins_too(tmp_path: Path) -> None:
    """The tagger's ZeroMQ ports fail to bind otherwise than the VISA ones: also retried."""
    lab = private_station_lab(LAB, LINK)
    data = lab.instruments["tagger"].init["data_address"]
    with socket.socket() as squatter, ProcessGroup() as group:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", int(data.rsplit(":", 1)[1])))
        squatter.listen(1)
        served = start_station_twin(group, lab, tmp_path, "twins")
        assert served.instruments["tagger"].init["data_address"] != data
        with load_station(served, "real") as station:
            assert "ID1000" in station.instrument("tagger").IDN()["model"]


def test_twins_that_cannot_start_are_a_config_error_naming_the_lab(tmp_path: Path) -> None:
    broken = private_station_lab(LAB, {**LINK, "scheme": "three_click"})
    with ProcessGroup() as group, pytest.raises(ConfigError) as caught:
        start_station_twin(group, broken, tmp_path, "twins")
    assert "heralding_station.yaml" in str(caught.value)
    assert "stopped before they listened" in str(caught.value)
    assert "three_click" in str(caught.value)
    assert str(caught.value).count("Fix:") == 1  # the twin's own fix, not a second one
