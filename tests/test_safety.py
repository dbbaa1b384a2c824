"""Soft limits and ramp rates from the lab config, enforced where parameters are set."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from qnetlab.instruments.errors import InterlockError, SafetyLimitError
from qnetlab.instruments.safety import RAMP_TICK
from qnetlab.instruments.station import load_station
from qnetlab.sim_instruments.visa_backend import bench_of

CONFIG = """
qnetlab:
  simulation: {seed: 1, ideal: true}   # the clean lab: the world gets exactly the setting
instruments:
  mw_source:
    type: qnetlab.drivers.keysight.KeysightN5183B
    address: {sim: keysight_n5183b}
    parameters:
      power: {limits: [-20, 10], ramp_rate: 5}
      frequency: {limits: [1.0e9, 12.0e9], initial_value: 8.0e9}
"""


@pytest.fixture
def mw_source(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text(textwrap.dedent(CONFIG))
    with load_station(path) as station:
        yield station.instrument("mw_source")


def test_initial_value_applied(mw_source):
    assert bench_of(mw_source).world.mw_drive.frequency == 8.0e9


def test_soft_limit_refuses_and_names_everything(mw_source):
    with pytest.raises(SafetyLimitError) as info:
        mw_source.frequency(15e9)  # inside the N5183B's 20 GHz, outside the lab's 12 GHz
    message = str(info.value)
    for part in ("mw_source_frequency", "1.5e+10 Hz", "above the soft limit 1.2e+10 Hz",
                 "lab.yaml", "instruments.mw_source.parameters.frequency"):
        assert part in message
    assert bench_of(mw_source).world.mw_drive.frequency == 8.0e9  # untouched


def test_hardware_validator_still_applies(mw_source):
    with pytest.raises(ValueError, match="19"):
        mw_source.power(25)


def test_ramp_moves_in_steps_on_virtual_time(mw_source, monkeypatch):
    world = bench_of(mw_source).world
    mw_source.power(-20)
    seen: list[float] = []
    set_drive = world.set_mw_drive

    def record(**kwargs):
        set_drive(**kwargs)
        seen.append(world.mw_drive.power_dbm)

    monkeypatch.setattr(world, "set_mw_drive", record)
    start = world.now()
    mw_source.power(10)
    steps = [b - a for a, b in zip([-20.0, *seen], seen, strict=False)]
    assert seen[-1] == 10
    assert min(steps) > 0 and max(steps) <= 5 * RAMP_TICK + 1e-9
    # 30 dB at 5 dB/s: 60 steps, 59 waits of one tick, on the bench's virtual clock
    assert len(seen) == 60
    assert world.now() - start == pytest.approx(30 / 5 - RAMP_TICK, abs=1e-9)


def test_ramp_refuses_out_of_limit_target_before_moving(mw_source):
    mw_source.power(0)
    with pytest.raises(SafetyLimitError):
        mw_source.power(12)
    assert mw_source.power() == 0


def test_value_found_outside_limits_is_reported_not_moved(tmp_path, capsys):
    # the N5183B powers up at 20 GHz; a lab limit of 12 GHz without an initial_value
    path = tmp_path / "lab.yaml"
    path.write_text(textwrap.dedent(CONFIG).replace(", initial_value: 8.0e9", ""))
    with load_station(path) as station:
        mw = station.instrument("mw_source")
        assert bench_of(mw).world.mw_drive.frequency == 20e9  # left as found
        (problem,) = station.outside_limits
        assert "mw_source_frequency is 2e+10 Hz, outside its soft limits" in problem
    from qnetlab.cli import main

    assert main(["check", str(path)]) == 1
    assert "outside its soft limits" in capsys.readouterr().out


INTERLOCKED = """
qnetlab:
  simulation: {seed: 1, ideal: true}   # the clean lab: the world gets exactly the setting
  interlocks:
    - name: no_pump_on_warm_fridge
      guards: [pump_laser.power, pump_laser.output]
      sensor: fridge.temperature
      max: 0.050
instruments:
  pump_laser:
    type: qnetlab.drivers.santec.SantecTSL570
    address: {sim: santec_tsl570}
    parameters:
      power: {limits: [0.04e-3, 0.010], ramp_rate: 1.0e-4}
  fridge:
    type: qnetlab.drivers.lakeshore.LakeshoreModel372
    address: {sim: lakeshore_372}
"""


def test_interlock_is_checked_at_every_ramp_step(tmp_path):
    # 0.1 mW -> 5 mW at 0.1 mW/s: a 49 s ramp of 490 steps on the bench's virtual clock. A
    # 1 mW heat load warms the mixing chamber past 50 mK about 19 s into it (60 s time
    # constant, equilibrium 0.16 K): the ramp must stop there, not at its target.
    from qnetlab.sim_instruments.faults_world import heat_mixing_chamber

    path = tmp_path / "lab.yaml"
    path.write_text(textwrap.dedent(INTERLOCKED))
    with load_station(path) as station:
        laser = station.instrument("pump_laser")
        fridge = station.instrument("fridge")
        world = bench_of(laser).world
        laser.power(0.1e-3)
        assert fridge.temperature() < 0.050
        assert heat_mixing_chamber(station, 1e-3) > 0.050
        start = world.now()
        with pytest.raises(InterlockError) as info:
            laser.power(5e-3)
        for part in ("no_pump_on_warm_fridge", "pump_laser_power", "fridge_temperature",
                     "above its maximum 0.05 K", "a ramp stays at its last step"):
            assert part in str(info.value)
        reached = world.pump.power
        steps = np.linspace(0.1e-3, 5e-3, 491)[1:]
        assert 0.1e-3 < reached < 1e-3 * 2.5  # stopped early, well short of the target
        assert np.isclose(steps, reached, rtol=0, atol=1e-8).any()  # at a step it took
        assert laser.power() == pytest.approx(reached, abs=1e-8)
        assert 10 < world.now() - start < 30  # stopped near the 19 s crossing, not at 49 s
        assert fridge.temperature() > 0.050
        laser.power(0.1e-3)  # down is always allowed, warm or not
        assert world.pump.power == pytest.approx(0.1e-3)
