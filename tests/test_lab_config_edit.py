"""Changing a loaded lab config without touching its YAML text: `LabConfig.with_ports`,
`with_simulation`, `with_transducer_setup` and `to_yaml` (what the tests' fixtures and a
rehearsal on free ports use). Every changed config is validated like a loaded one."""

from __future__ import annotations

from pathlib import Path

import pytest

from qnetlab.instruments.errors import ConfigError
from qnetlab.instruments.lab_config import load_config, parse_config

from conftest import BENCH_CONFIG, REPO, bench_config


def test_with_ports_moves_every_real_address_in_file_order_keeping_hosts() -> None:
    config = load_config(BENCH_CONFIG)
    moved = config.with_ports(21000)
    # Seven instruments' real addresses, the ID1000's data link (init.data_address) and,
    # last, the lab's telemetry (qnetlab.telemetry.address).
    assert config.port_count == moved.port_count == 9
    assert [inst.addresses["real"] for inst in moved.instruments.values()] == [
        *(f"TCPIP0::127.0.0.1::{21000 + i}::SOCKET" for i in range(6)),
        "tcp://127.0.0.1:21006"]
    assert moved.instruments["tagger"].init["data_address"] == "tcp://127.0.0.1:21007"
    assert moved.telemetry is not None and moved.telemetry.address == "tcp://127.0.0.1:21008"
    # Everything else is the same lab.
    assert {n: i.addresses["sim"] for n, i in moved.instruments.items()} == \
        {n: i.addresses["sim"] for n, i in config.instruments.items()}
    assert moved.simulation == config.simulation and moved.interlocks == config.interlocks
    assert config.instruments["mw_source"].addresses["real"].endswith("::50101::SOCKET")


def test_with_ports_leaves_addresses_without_a_port_alone(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text("instruments:\n"
                    "  a: {type: qnetlab.drivers.keysight.KeysightN5183B,\n"
                    "      address: {sim: keysight_n5183b, real: 'TCPIP0::10.0.0.5::INSTR'}}\n"
                    "  b: {type: qnetlab.drivers.santec.SantecTSL570,\n"
                    "      address: 'TCPIP0::10.0.0.6::5025::SOCKET'}\n")
    config = load_config(path)
    assert config.port_count == 1
    moved = config.with_ports(23000)
    assert moved.instruments["a"].addresses["real"] == "TCPIP0::10.0.0.5::INSTR"
    assert moved.instruments["b"].addresses["real"] == "TCPIP0::10.0.0.6::23000::SOCKET"


def test_with_simulation_and_setup_change_values_and_validate() -> None:
    config = load_config(BENCH_CONFIG)
    changed = config.with_simulation(transducer="silicon_cw",
                                     fridge={"cooling_coefficient": 0.004})
    assert changed.simulation == {**config.simulation, "transducer": "silicon_cw",
                                  "fridge": {"cooling_coefficient": 0.004}}
    setup = changed.with_transducer_setup(optical_resonance_wavelength=1550.6e-9)
    assert setup.transducer_setup is not None
    assert setup.transducer_setup["optical_resonance_wavelength"] == 1550.6e-9
    with pytest.raises(ConfigError, match=r"transducer_setup\.mw_line_attenuation"):
        config.with_transducer_setup(mw_line_attenuation="sixty")
    with pytest.raises(ConfigError, match="unknown key 'detection_eficiency'"):
        config.with_transducer_setup(detection_eficiency=0.5)
    # The original is untouched.
    assert config.simulation["transducer"] == "bulk_eo_pulsed"


def test_to_yaml_round_trips(tmp_path: Path) -> None:
    config = load_config(BENCH_CONFIG).with_ports(24000).with_simulation(seed=7)
    written = config.to_yaml(tmp_path / "bench.yaml")
    assert written.path == tmp_path / "bench.yaml"
    assert load_config(written.path).document == config.document
    assert written.instruments == config.instruments and written.wiring == config.wiring
    assert written.simulation["seed"] == 7
    # Relative paths resolve from the new file's folder.
    assert written.database == (tmp_path.parent / "lab_data" / "transducer_bench.db")


def test_bench_config_fixture_helper_takes_yaml_text_or_values(tmp_path: Path) -> None:
    path = bench_config(tmp_path, "silicon_cw", "fridge: {cooling_coefficient: 0.004}",
                        {"optical_resonance_wavelength": "1550.60e-9"})
    config = load_config(path)
    assert config.simulation["transducer"] == "silicon_cw"
    assert config.simulation["fridge"] == {"cooling_coefficient": 0.004}
    assert config.transducer_setup is not None
    assert config.transducer_setup["optical_resonance_wavelength"] == 1550.60e-9
    with pytest.raises(AssertionError, match="no_such_constant"):
        bench_config(tmp_path, setup={"no_such_constant": 1})


def test_a_config_without_a_transducer_setup_says_so() -> None:
    config = load_config(REPO / "lab_configs" / "transducer_bench.yaml")
    bare = config.document | {"qnetlab": {"simulation": {"seed": 1}}}
    without = parse_config(config.path, bare)
    with pytest.raises(ConfigError, match="no transducer setup"):
        without.with_transducer_setup(detection_efficiency=0.5)
