"""Keysight N5183B: the reused QCoDeS driver against its emulator."""

from __future__ import annotations

import pytest

from qnetlab.drivers.keysight import KeysightN5183B
from qnetlab.instruments.conformance import assert_conforms
from qnetlab.instruments.errors import InstrumentReportedError
from qnetlab.sim_instruments.visa_backend import bench_of


def test_conforms_to_microwave_source(sim_instrument):
    assert_conforms(sim_instrument(KeysightN5183B, "keysight_n5183b"))


def test_settings_drive_the_world(sim_instrument):
    mw = sim_instrument(KeysightN5183B, "keysight_n5183b", ideal=True)
    mw.frequency(7.5e9)
    mw.power(-3.0)
    mw.rf_output(True)
    drive = bench_of(mw).world.mw_drive
    assert (drive.frequency, drive.power_dbm, drive.on) == (7.5e9, -3.0, True)


def test_short_and_long_forms_case_insensitive(sim_instrument):
    mw = sim_instrument(KeysightN5183B, "keysight_n5183b")
    mw.write(":source:frequency:cw 6.25 GHZ")
    assert float(mw.ask("FREQ?")) == 6.25e9
    assert float(mw.ask("sour:freq:cw?")) == 6.25e9


def test_out_of_range_is_reported_from_the_error_queue(sim_instrument):
    mw = sim_instrument(KeysightN5183B, "keysight_n5183b")
    mw.frequency(6e9)
    with pytest.raises(InstrumentReportedError, match=r"-222.*Data out of range"):
        mw.write("SOUR:FREQ 45 GHz")
    assert mw.frequency() == 6e9


def test_unknown_command_is_undefined_header(sim_instrument):
    mw = sim_instrument(KeysightN5183B, "keysight_n5183b")
    with pytest.raises(InstrumentReportedError, match="-113"):
        mw.write("SOUR:FREQUENCE 5e9")
