"""A wrong lab config is refused with an error naming the file, the entry and the fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from qnetlab.instruments.errors import ConfigError, InstrumentUnreachableError
from qnetlab.instruments.lab_config import load_config
from qnetlab.instruments.station import load_station

GOOD = """
qnetlab:
  simulation: {seed: 1, transducer: bulk_eo_cw}
instruments:
  mw_source:
    type: qnetlab.drivers.keysight.KeysightN5183B
    address: {sim: keysight_n5183b, real: "TCPIP0::127.0.0.1::1::SOCKET"}
    parameters:
      power: {limits: [-20, 10]}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lab.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def refused(tmp_path: Path, text: str, profile: str = "sim") -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_station(path, profile).close()
    assert str(path) in str(info.value)
    return info.value


def test_good_config_loads(tmp_path):
    with load_station(write(tmp_path, GOOD)) as station:
        assert station.instrument("mw_source").power.vals.high == 10


def test_typo_in_key_names_entry_and_suggests(tmp_path):
    err = refused(tmp_path, GOOD.replace("address:", "adress:"))
    assert err.entry == "instruments.mw_source.adress"
    assert "did you mean 'address'" in str(err)


def test_typo_in_parameter_option(tmp_path):
    err = refused(tmp_path, GOOD.replace("limits:", "limit:"))
    assert err.entry == "instruments.mw_source.parameters.power.limit"
    assert "did you mean 'limits'" in str(err)


def test_unknown_parameter_lists_the_real_ones(tmp_path):
    err = refused(tmp_path, GOOD.replace("power: {", "pwr: {"))
    assert err.entry == "instruments.mw_source.parameters.pwr"
    assert "power" in err.fix


def test_wrong_driver_type(tmp_path):
    err = refused(tmp_path, GOOD.replace("KeysightN5183B", "KeysightN5183X"))
    assert err.entry == "instruments.mw_source.type"
    assert "KeysightN5183B" in err.fix


def test_unimportable_driver_module(tmp_path):
    err = refused(tmp_path, GOOD.replace("qnetlab.drivers.keysight.", "qnetlab.drivers.keysigth."))
    assert "cannot import" in err.problem


def test_unknown_simulated_twin(tmp_path):
    err = refused(tmp_path, GOOD.replace("sim: keysight_n5183b", "sim: keysight_n9999"))
    assert err.entry == "instruments.mw_source.address.sim"
    assert "keysight_n5183b" in err.fix


def test_unknown_transducer_preset(tmp_path):
    err = refused(tmp_path, GOOD.replace("bulk_eo_cw", "bulk_eo_typo"))
    assert err.entry == "qnetlab.simulation.transducer"
    assert "membrane_eom" in err.fix


def test_limits_outside_hardware_range_refused(tmp_path):
    # QCoDeS's own `limits` would silently widen the driver's validator; we refuse.
    err = refused(tmp_path, GOOD.replace("[-20, 10]", "[-20, 30]"))
    assert err.entry == "instruments.mw_source.parameters.power.limits"
    assert "30" in err.problem


def test_wrong_value_type(tmp_path):
    err = refused(tmp_path, GOOD.replace("[-20, 10]", "[-20, ten]"))
    assert "expected a number" in err.problem


def test_missing_instruments_section(tmp_path):
    err = refused(tmp_path, "qnetlab: {}\n")
    assert "instruments" in err.problem


def test_missing_address_for_profile(tmp_path):
    err = refused(tmp_path, GOOD.replace(', real: "TCPIP0::127.0.0.1::1::SOCKET"', ""),
                  profile="real")
    assert err.entry == "instruments.mw_source.address"
    assert "no 'real' address" in err.problem


def test_unreachable_real_address(tmp_path):
    # Not a config error: the instrument is unreachable (CLI exit code 3, not 2).
    path = write(tmp_path, GOOD)
    with pytest.raises(InstrumentUnreachableError) as info:
        load_station(path, "real").close()
    err = info.value
    assert not isinstance(err, ConfigError) and str(path) in str(err)
    assert err.entry == "instruments.mw_source.address.real"
    assert "could not connect" in err.problem and "qnetlab sim serve" in err.fix


@pytest.mark.parametrize("address", ["TCPIP0::127.0.0.1:21101:SOCKET",
                                     "TCPIP0:127.0.0.1::21101::SOCKET"])
def test_malformed_visa_address_refused_at_load_with_the_repair(tmp_path, address):
    path = write(tmp_path, GOOD.replace("TCPIP0::127.0.0.1::1::SOCKET", address))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.entry == "instruments.mw_source.address.real"
    assert address in info.value.problem
    assert "TCPIP0::127.0.0.1::21101::SOCKET" in info.value.fix


@pytest.mark.parametrize(("address", "problem"), [
    ("TCPIP0::127.0.0.1::70000::SOCKET", "not a TCP port"),
    ("TCPIP0::127.0.0.1::SOCKET", "not a VISA resource name"),
    ("TCPIP0::host name::5025::SOCKET", "not a host name"),
])
def test_invalid_visa_address_refused_at_load(tmp_path, address, problem):
    path = write(tmp_path, GOOD.replace("TCPIP0::127.0.0.1::1::SOCKET", address))
    with pytest.raises(ConfigError, match=problem) as info:
        load_config(path)
    assert info.value.entry == "instruments.mw_source.address.real"
    assert "'::'" in info.value.fix


@pytest.mark.parametrize("address", ["TCPIP0::lab-n5183b.example::5025::SOCKET",
                                     "TCPIP::10.0.0.12::INSTR", "GPIB0::19::INSTR",
                                     "ASRL/dev/ttyUSB0::INSTR", "tcp://127.0.0.1:5555",
                                     "my_visa_alias"])
def test_valid_addresses_of_every_kind_load(tmp_path, address):
    path = write(tmp_path, GOOD.replace("TCPIP0::127.0.0.1::1::SOCKET", address))
    assert load_config(path).instruments["mw_source"].addresses["real"] == address


def test_config_path_that_is_a_directory(tmp_path):
    with pytest.raises(ConfigError, match="is a directory") as info:
        load_config(tmp_path)
    assert "name the YAML file" in info.value.fix


def test_unknown_profile(tmp_path):
    err = refused(tmp_path, GOOD, profile="lab")
    assert "unknown profile" in err.problem


def test_invalid_yaml(tmp_path):
    err = refused(tmp_path, "instruments: [\n")
    assert "not valid YAML" in err.problem


def test_interlock_naming_unknown_instrument(tmp_path):
    text = GOOD.replace("qnetlab:\n", "qnetlab:\n  interlocks:\n    - {name: x, guards: "
                        "[laser.power], sensor: mw_source.power, max: 1}\n")
    err = refused(tmp_path, text)
    assert "laser.power" in err.problem


def test_missing_file():
    with pytest.raises(ConfigError, match="no such file"):
        load_config("lab_configs/does_not_exist.yaml")


def test_setup_role_naming_the_wrong_kind_of_instrument(tmp_path):
    from conftest import BENCH_CONFIG

    text = BENCH_CONFIG.read_text().replace("    vna: vna\n", "    vna: power_meter\n")
    err = refused(tmp_path, text)
    assert err.entry == "qnetlab.transducer_setup.vna"
    assert "is not a VNA" in err.problem


def test_initial_value_outside_limits(tmp_path):
    err = refused(tmp_path, GOOD.replace("{limits: [-20, 10]}",
                                         "{limits: [-20, 10], initial_value: 15}"))
    assert err.entry == "instruments.mw_source.parameters.power.initial_value"
    assert "soft limit" in err.problem


def test_initial_value_of_wrong_type(tmp_path):
    err = refused(tmp_path, GOOD.replace("{limits: [-20, 10]}",
                                         "{limits: [-20, 10], initial_value: '-10 dBm'}"))
    assert err.entry == "instruments.mw_source.parameters.power.initial_value"


def test_bad_init_value_names_init_not_address(tmp_path):
    from conftest import BENCH_CONFIG

    err = refused(tmp_path, BENCH_CONFIG.read_text().replace("sensor_channel: 6",
                                                             "sensor_channel: 17"))
    assert err.entry == "instruments.fridge.init"
    assert "sensor_channel" in err.problem


def test_setup_entry_must_name_an_instrument(tmp_path):
    from conftest import BENCH_CONFIG

    err = refused(tmp_path, BENCH_CONFIG.read_text().replace("    vna: vna\n", "    vna: [vna]\n"))
    assert err.entry == "qnetlab.transducer_setup.vna"
