"""After an instrument restarts, the driver reconnects, redoes its connect-time setup and
holds the instrument to its soft limits again (issue 11, item 3).

The `restart` fault (sim_instruments/faults.py) power-cycles a twin on the next message and
drops the connection, as switching an instrument off and on (or restarting `qnetlab sim
serve`) does; the real drivers then go through their own reconnect path.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from qnetlab.drivers.keysight import KeysightN5183B, KeysightP9374A
from qnetlab.drivers.lakeshore import LakeshoreModel372
from qnetlab.drivers.quantum_opus import QuantumOpusSIM900
from qnetlab.drivers.santec import SantecTSL570
from qnetlab.drivers.tektronix import TektronixAWG5208
from qnetlab.drivers.thorlabs import ThorlabsPM100D
from qnetlab.instruments.conformance import assert_conforms
from qnetlab.instruments.errors import (
    InstrumentConnectionError,
    InstrumentTimeoutError,
    LimitsViolatedAfterReconnect,
    SafetyLimitError,
)
from qnetlab.instruments.station import load_station
from qnetlab.sim_instruments.visa_backend import bench_of

CONFIG = """
qnetlab:
  simulation: {seed: 3}
instruments:
  mw_source:
    type: qnetlab.drivers.keysight.KeysightN5183B
    address: {sim: keysight_n5183b}
    parameters:
      power: {limits: [-20, 10], initial_value: -20}
      frequency: {limits: [1.0e9, 12.0e9], initial_value: 8.0e9}
  pump_laser:
    type: qnetlab.drivers.santec.SantecTSL570
    address: {sim: santec_tsl570}
    parameters:
      power: {limits: [0.04e-3, 0.010], ramp_rate: 0.020}
      wavelength: {limits: [1540.0e-9, 1560.0e-9], initial_value: 1550.0e-9}
"""

LOST = (InstrumentConnectionError, InstrumentTimeoutError)
"""What the command that meets the restart raises: in-process a lost connection, over TCP a
read that never completes (pyvisa-py sees a closed socket so)."""


@pytest.fixture
def station(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text(textwrap.dedent(CONFIG))
    with load_station(path) as st:
        yield st


def _restart(instrument) -> None:
    """Power-cycle the twin behind `instrument`; the next command meets the restart."""
    bench_of(instrument).faults(instrument.name).inject("restart")
    with pytest.raises(LOST, match=f"{instrument.name} at"):
        instrument.ask("*OPC?")


def test_tsl570_power_unit_is_set_again_after_a_restart(station):
    laser = station.instrument("pump_laser")
    device = bench_of(laser).device("pump_laser")
    world = bench_of(laser).world
    laser.power(1e-3)
    _restart(laser)
    assert device.power_unit == 0  # the laser came back in dBm
    # The reconnect re-sends :POW:UNIT 1, so power reads the laser's 1 mW, not 0 dBm as 0 W,
    # and the ramp starts where the laser is.
    assert laser.power() == pytest.approx(1e-3)
    assert device.power_unit == 1
    laser.power(0.1e-3)
    assert device.power_mw == pytest.approx(0.1)  # the setting, in the right unit
    # what reaches the world: within 4 sigma of the laser's +-0.3 dB (k = 2) power accuracy
    assert world.pump.power == pytest.approx(0.1e-3, rel=10 ** (2 * 0.3 / 10) - 1)
    assert laser.power() == pytest.approx(0.1e-3)


def test_n5183b_outside_its_limits_after_a_restart_stops_before_anything_is_set(station):
    mw = station.instrument("mw_source")
    device = bench_of(mw).device("mw_source")
    mw.power(-20)
    _restart(mw)
    assert device.frequency == 20e9  # the power-on frequency, outside the lab's 12 GHz
    with pytest.raises(LimitsViolatedAfterReconnect) as info:
        mw.power(-10)
    assert isinstance(info.value, SafetyLimitError)
    message = str(info.value)
    for part in ("mw_source at TCPIP0::mw_source::keysight_n5183b::INSTR",
                 "mw_source_frequency reads 2e+10 Hz", "[1e+09, 1.2e+10] Hz", "lab.yaml",
                 "instruments.mw_source.parameters.frequency", "Nothing was set"):
        assert part in message
    assert device.power == -20  # the -10 dBm was never sent
    # Raised once: the lab can then put the instrument back inside its limits.
    mw.frequency(8e9)
    mw.power(-10)
    assert (device.frequency, device.power) == (8e9, -10)


def test_a_reconnect_without_a_restart_changes_nothing(station):
    mw = station.instrument("mw_source")
    bench_of(mw).faults("mw_source").inject("drop_connection")
    with pytest.raises(LOST):
        mw.rf_output()
    assert mw.frequency() == 8e9  # reconnected, limits re-checked, nothing to report


def test_restart_over_tcp_rehearsal(served_bench):
    config, control = served_bench
    with load_station(config, "real") as st:
        laser = st.instrument("pump_laser")
        laser.timeout(0.5)
        laser.power(1e-3)
        control.inject("pump_laser", "restart")
        with pytest.raises(LOST, match="pump_laser at"):
            laser.output()
        assert laser.power() == pytest.approx(1e-3)
        laser.power(0.2e-3)
        assert laser.power() == pytest.approx(0.2e-3)


DRIVERS = [
    (KeysightN5183B, "keysight_n5183b", {}),
    (SantecTSL570, "santec_tsl570", {}),
    (ThorlabsPM100D, "thorlabs_pm100d", {}),
    (KeysightP9374A, "keysight_p9374a", {}),
    (LakeshoreModel372, "lakeshore_372", {}),
    (QuantumOpusSIM900, "srs_sim900_quantum_opus", {"slots": [1]}),
    (TektronixAWG5208, "tektronix_awg5208", {}),
]


@pytest.mark.parametrize(("driver", "twin", "init"), DRIVERS, ids=[d[1] for d in DRIVERS])
def test_every_driver_works_after_a_restart(sim_instrument, driver, twin, init):
    inst = sim_instrument(driver, twin, **init)
    _restart(inst)
    assert_conforms(inst)
    if isinstance(inst, KeysightP9374A):
        # FORM REAL,32 is forgotten on a restart; the trace parsing needs it.
        frequencies, s11 = inst.sweep()
        assert len(frequencies) == len(s11) > 1 and np.all(np.isfinite(s11))
