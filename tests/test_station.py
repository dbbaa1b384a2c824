"""Station loading behaviours a notebook user relies on."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pyvisa.highlevel import open_visa_library
from qcodes.instrument import Instrument

import pyvisa_qnetlab
from qnetlab.instruments.lab_clock import RealTimeClock
from qnetlab.instruments.lab_config import load_config
from qnetlab.instruments.station import load_station
from qnetlab.sim_instruments.visa_backend import bench_of, registered_world

from conftest import BENCH_CONFIG


def test_reloading_a_station_replaces_the_old_instruments():
    # re-running a notebook cell must not fail with "another instrument has the name"
    first = load_station(BENCH_CONFIG)
    second = load_station(BENCH_CONFIG)
    try:
        assert second.instrument("mw_source").frequency() == 8e9
        assert not Instrument.is_valid(first.instrument("mw_source"))  # closed, replaced
    finally:
        second.close()


def test_a_handle_kept_from_a_reloaded_station_says_what_happened_and_what_to_use():
    from qnetlab.instruments import InstrumentClosedError

    first = load_station(BENCH_CONFIG)
    power_meter, setup = first.instrument("power_meter"), first.setup
    second = load_station(BENCH_CONFIG)  # the notebook cell run again
    try:
        for use in (lambda: power_meter.power(), lambda: setup.pump_power()):
            with pytest.raises(InstrumentClosedError, match="loaded again"):
                use()
        with pytest.raises(InstrumentClosedError, match=r"station\.instrument\('power_meter'\)"):
            power_meter.power()
        assert not hasattr(power_meter, "power")  # still an AttributeError for hasattr
        assert second.instrument("power_meter").power() > 0  # the new handle works
        power_meter.close()  # closing it again is harmless
    finally:
        second.close()


def test_each_load_gets_a_fresh_simulated_world():
    with load_station(BENCH_CONFIG) as a:
        a.instrument("mw_source").power(5.0)
        world_a = bench_of(a.instrument("mw_source")).world
    with load_station(BENCH_CONFIG) as b:
        world_b = bench_of(b.instrument("mw_source")).world
        assert world_b is not world_a
        # the config's initial value, not 5 dBm: the source's setting, and the level reaching
        # the world within the N5183B's +-0.9 dB accuracy (the realistic lab, the default)
        assert b.instrument("mw_source").power() == -20.0
        assert world_b.mw_drive.power_dbm == pytest.approx(-20.0, abs=0.9 * 2)


def test_all_instruments_of_a_station_share_one_world():
    with load_station(BENCH_CONFIG) as station:
        worlds = {id(bench_of(inst).world) for inst in station.instruments().values()
                  if hasattr(inst, "visa_handle")}
        assert len(worlds) == 1


def test_the_sim_world_is_registered_once_from_the_parsed_config(monkeypatch):
    # The backend looks the world up by token: the YAML is not parsed a second time.
    import qnetlab.sim_instruments.bench as bench_module

    def no_second_parse(path: object) -> None:
        raise AssertionError(f"the simulated bench parsed {path} again")

    monkeypatch.setattr(bench_module, "load_config", no_second_parse)
    with load_station(load_config(BENCH_CONFIG)) as station:
        assert station.world is not None
        for inst in station.instruments().values():
            if hasattr(inst, "visa_handle"):
                assert inst.visa_handle.visalib.library_path == station.world.token
                assert bench_of(inst) is registered_world(station.world.token).bench


def test_the_sim_station_sleeps_on_its_world_clock():
    with load_station(BENCH_CONFIG) as station:
        world = bench_of(station.instrument("fridge")).world
        start, world_start = station.clock.now(), world.now()
        station.sleep(3600.0)  # an hour of virtual time: returns at once
        assert station.clock.now() - start == pytest.approx(3600.0)
        assert world.now() - world_start == pytest.approx(3600.0)


def test_a_real_time_clock_follows_monotonic_time():
    clock = RealTimeClock()
    first = clock.now()
    clock.sleep(0.0)
    assert clock.now() >= first


def test_an_unregistered_token_is_refused_naming_the_fix():
    with pytest.raises(ValueError, match="register_world"):
        open_visa_library(f"never-registered-{uuid.uuid4().hex}@qnetlab")


def test_a_session_is_shared_per_config_file(tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(Path(BENCH_CONFIG).read_text())
    config, copy = load_config(BENCH_CONFIG), load_config(other)
    session = f"test-{uuid.uuid4().hex}"
    first = pyvisa_qnetlab.register_world(config, session)
    assert pyvisa_qnetlab.register_world(config, session).bench is first.bench
    assert pyvisa_qnetlab.register_world(copy, session).bench is not first.bench
    assert pyvisa_qnetlab.register_world(config).bench is not first.bench  # no session: fresh
