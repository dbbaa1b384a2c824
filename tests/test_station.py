"""Station loading behaviours a notebook user relies on."""

from __future__ import annotations

from qcodes.instrument import Instrument

from qnetlab.instruments.station import load_station
from qnetlab.sim_instruments.visa_backend import bench_of

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


def test_each_load_gets_a_fresh_simulated_world():
    with load_station(BENCH_CONFIG) as a:
        a.instrument("mw_source").power(5.0)
        world_a = bench_of(a.instrument("mw_source")).world
    with load_station(BENCH_CONFIG) as b:
        world_b = bench_of(b.instrument("mw_source")).world
        assert world_b is not world_a
        assert world_b.mw_drive.power_dbm == -20.0  # the config's initial value, not 5 dBm


def test_all_instruments_of_a_station_share_one_world():
    with load_station(BENCH_CONFIG) as station:
        worlds = {id(bench_of(inst).world) for inst in station.instruments().values()
                  if hasattr(inst, "visa_handle")}
        assert len(worlds) == 1
