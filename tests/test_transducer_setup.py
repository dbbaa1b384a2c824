"""The composite TransducerSetup on the simulated bench, and the fridge interlock."""

from __future__ import annotations

import pytest

from qnetlab.instruments.errors import InterlockError, SafetyLimitError
from qnetlab.instruments.lab_config import load_config
from qnetlab.instruments.station import load_station
from qnetlab.sim_instruments.physics.transducer import SPEED_OF_LIGHT
from qnetlab.sim_instruments.visa_backend import bench_of

from conftest import BENCH_CONFIG


@pytest.fixture
def station():
    with load_station(BENCH_CONFIG) as st:
        yield st


def test_setup_speaks_in_lab_terms(tmp_path):
    # The clean lab: the setup's units against the world exactly (in the realistic lab the
    # laser and source are off their settings by their data-sheet accuracies:
    # test_instrument_realism.py).
    config = load_config(BENCH_CONFIG).with_simulation(ideal=True).to_yaml(tmp_path / "b.yaml")
    with load_station(config.path) as station:
        _speaks_in_lab_terms(station)


def _speaks_in_lab_terms(station):
    setup = station.setup
    world = bench_of(station.instrument("mw_source")).world
    setup.pump_power(2e-3)
    setup.pump_on(True)
    setup.mw_frequency(world.transducer.mw_resonance_frequency)
    assert world.pump_power_at_device == pytest.approx(2e-3, rel=1e-6)
    setup.pump_detuning(100e6)
    # the laser's wavelength moved so that the pump sits 100 MHz above the resonance, as the
    # world sees it, within half the TSL-570's 0.1 pm step (12.5 MHz at 1550 nm)
    half_step = SPEED_OF_LIGHT * 0.05e-12 / 1550e-9**2
    assert setup.pump_detuning() == pytest.approx(100e6, abs=half_step)
    assert world.pump_detuning == pytest.approx(setup.pump_detuning(), abs=1e3)
    assert setup.mxc_temperature() == pytest.approx(world.mxc_temperature(), rel=0.05)


def test_pump_soft_limit_applies_through_the_setup(station):
    with pytest.raises(SafetyLimitError, match="pump_laser_power"):
        station.setup.pump_power(0.015)


def test_pump_power_ramps_on_virtual_time(station):
    world = bench_of(station.instrument("mw_source")).world
    station.setup.pump_power(1e-3)
    t0 = world.now()
    station.setup.pump_power(0.009)  # 8 mW at 20 mW/s: 0.4 s of lab time, in 0.1 s ticks
    assert world.now() - t0 == pytest.approx(0.4 - 0.1, abs=1e-9)


def test_interlock_keeps_the_pump_off_while_the_fridge_is_warm(station):
    world = bench_of(station.instrument("fridge")).world
    laser = station.instrument("pump_laser")
    laser.power(1e-3)
    world.set_extra_heat_load(200e-6)  # a heat load the fridge cannot hold at 50 mK
    world.advance(600)
    assert station.setup.mxc_temperature() > 0.050
    before = (world.pump.power, world.pump.on)
    with pytest.raises(InterlockError) as info:
        station.setup.pump_on(True)
    for part in ("no_pump_on_warm_fridge", "pump_laser_output", "fridge_temperature",
                 "above its maximum 0.05 K"):
        assert part in str(info.value)
    with pytest.raises(InterlockError):
        laser.power(2e-3)
    assert (world.pump.power, world.pump.on) == before  # nothing reached the laser
    laser.power(0.5e-3)  # making things safer (less power, or off) is always allowed
    laser.output(False)
    world.set_extra_heat_load(0.0)
    world.advance(1200)
    station.setup.pump_on(True)
    assert world.pump.on


def test_interlock_trips_in_the_tcp_rehearsal_too(served_bench):
    config, control = served_bench
    with load_station(config, "real") as station:
        try:
            control.request(op="heat_load", watts=200e-6)
            control.request(op="advance", seconds=600)
            assert station.setup.mxc_temperature() > 0.050
            with pytest.raises(InterlockError, match="no_pump_on_warm_fridge"):
                station.setup.pump_on(True)
        finally:
            control.request(op="heat_load", watts=0.0)
            control.request(op="advance", seconds=1200)
        station.setup.pump_on(True)
        station.setup.pump_on(False)


def test_rehearsal_lab_time_keeps_pace_with_real_time(served_bench):
    import time

    _, control = served_bench
    t0 = control.request(op="advance", seconds=0)["time"]
    time.sleep(0.3)
    t1 = control.request(op="advance", seconds=0)["time"]
    assert t1 - t0 >= 0.3
