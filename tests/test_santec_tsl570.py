"""Santec TSL-570: the qnetlab driver against its emulator."""

from __future__ import annotations

import pytest

from qnetlab.drivers.santec import SantecTSL570
from qnetlab.instruments.conformance import assert_conforms
from qnetlab.instruments.errors import InstrumentReportedError
from qnetlab.sim_instruments.visa_backend import bench_of


def test_conforms_to_laser(sim_instrument):
    assert_conforms(sim_instrument(SantecTSL570, "santec_tsl570"))


def test_settings_drive_the_pump(sim_instrument):
    laser = sim_instrument(SantecTSL570, "santec_tsl570", ideal=True)
    pump = bench_of(laser).world.pump
    laser.wavelength(1550.1234e-9)
    laser.power(3.5e-3)
    assert not pump.on
    laser.output(True)
    assert pump.on
    assert pump.wavelength == pytest.approx(1550.1234e-9, rel=1e-12)
    assert pump.power == pytest.approx(3.5e-3, rel=1e-9)
    assert bench_of(laser).world.pump_power_at_device == pytest.approx(3.5e-3)
    laser.output(False)
    assert bench_of(laser).world.pump_power_at_device == 0.0


def test_power_is_converted_from_the_instrument_unit(sim_instrument):
    laser = sim_instrument(SantecTSL570, "santec_tsl570", ideal=True)
    laser.power(10e-3)
    laser.write(":POW:UNIT 0")  # dBm on the instrument
    assert float(laser.ask(":POW?")) == pytest.approx(10.0, abs=1e-3)
    laser.write(":POW 3")  # 3 dBm
    assert bench_of(laser).world.pump.power == pytest.approx(10 ** 0.3 * 1e-3)
    laser.set_power_unit_mw()
    assert laser.power() == pytest.approx(10 ** 0.3 * 1e-3, rel=1e-4)


def test_frequency_and_wavelength_are_one_setting(sim_instrument):
    laser = sim_instrument(SantecTSL570, "santec_tsl570")
    laser.frequency(193.4e12)
    assert laser.wavelength() == pytest.approx(299_792_458.0 / 193.4e12, rel=1e-7)


def test_short_and_long_forms_case_insensitive(sim_instrument):
    laser = sim_instrument(SantecTSL570, "santec_tsl570")
    laser.write(":wavelength 1551.5")
    assert float(laser.ask(":WAV?")) == 1551.5
    laser.write(":Power:Level 2.5")
    assert float(laser.ask(":pow?")) == 2.5
    laser.write(":POWER:STATE ON")
    assert laser.ask(":pow:stat?") == "1"
    assert laser.output() is True
    assert laser.ask("*idn?").startswith("SANTEC,TSL-570,")


def test_out_of_range_is_reported_from_the_error_queue(sim_instrument):
    laser = sim_instrument(SantecTSL570, "santec_tsl570")
    laser.wavelength(1550e-9)
    with pytest.raises(InstrumentReportedError, match=r"-222.*Data out of range"):
        laser.write(":WAV 1700")
    assert laser.wavelength() == pytest.approx(1550e-9)
    with pytest.raises(InstrumentReportedError, match="-222"):
        laser.write(":POW 25")  # mW
    with pytest.raises(InstrumentReportedError, match="-222"):
        laser.write(":POW:UNIT 2")
    assert laser.ask(":SYST:ERR?") == '0,"No error"'


def test_driver_validators_stop_out_of_range_values_before_the_wire(sim_instrument):
    laser = sim_instrument(SantecTSL570, "santec_tsl570")
    with pytest.raises(ValueError):
        laser.wavelength(1300e-9)  # outside this type's 1480-1640 nm
    with pytest.raises(ValueError):
        laser.power(30e-3)


def test_unknown_command_and_bad_data(sim_instrument):
    laser = sim_instrument(SantecTSL570, "santec_tsl570")
    with pytest.raises(InstrumentReportedError, match="-113"):
        laser.write(":WAVELENGHT 1550")
    with pytest.raises(InstrumentReportedError, match="-148"):
        laser.write(":POW:STAT MAYBE")
    with pytest.raises(InstrumentReportedError, match="-131"):
        laser.write(":WAV 1550NM")


def test_rst_keeps_settings_and_clears_errors(sim_instrument):
    laser = sim_instrument(SantecTSL570, "santec_tsl570")
    laser.wavelength(1560e-9)
    laser.output(True)
    laser.visa_handle.write(":WAV 9999")  # raw write: leave the error in the queue
    laser.write("*RST")  # the driver's error check after it finds the queue cleared
    assert laser.ask(":SYST:ERR?") == '0,"No error"'
    assert laser.wavelength() == pytest.approx(1560e-9)
    assert laser.output() is True


def test_actual_power_and_shutter(sim_instrument):
    """TSL-570 command reference: :POW:ACT? reads the output, :POW:SHUT 1 closes the
    shutter (0 opens it); the pump reaches the transducer only through an open shutter."""
    laser = sim_instrument(SantecTSL570, "santec_tsl570")
    pump = bench_of(laser).world.pump
    laser.power(2e-3)
    laser.output(True)
    assert float(laser.ask(":POW:ACT?")) == pytest.approx(2.0)  # mW, the :POW:UNIT
    laser.write(":SOUR:POW:SHUT 1")  # the [:SOURce] root the public libraries send
    assert laser.ask(":POW:SHUT?") == "1"
    assert not pump.on
    assert float(laser.ask(":POW:ACT?")) == 0.0
    laser.write(":POWer:SHUTter 0")
    assert pump.on
    assert float(laser.ask(":POWer:ACTual?")) == pytest.approx(2.0)


def test_sweep_settings_run_on_the_world_clock(sim_instrument):
    laser = sim_instrument(SantecTSL570, "santec_tsl570")
    bench = bench_of(laser)
    laser.write(":WAV:SWE:STAR 1540;:WAV:SWE:STOP 1560")
    laser.write(":WAV:SWE:MOD 1;:WAV:SWE:SPE 20;:WAV:SWE:CYCL 3")
    laser.write(":TRIG:OUTP 2")
    assert [laser.ask(q) for q in (":WAV:SWE:STAR?", ":WAV:SWE:STOP?", ":WAV:SWE:MOD?",
                                   ":WAV:SWE:SPE?", ":WAV:SWE:CYCL?", ":TRIG:OUTP?")] == [
        "1540.0000", "1560.0000", "1", "20.0", "3", "2"]
    laser.write(":WAV:SWE:STAT 1")
    assert laser.ask(":WAV:SWE:STAT?") == "1"
    bench.world.advance(1.5)  # 20 nm at 20 nm/s: one cycle a second
    assert laser.ask(":WAV:SWE:COUN?") == "1"
    bench.world.advance(2.0)
    assert laser.ask(":WAV:SWE:STAT?") == "0"
    assert laser.ask(":WAV:SWE:COUN?") == "3"
    with pytest.raises(InstrumentReportedError, match="-222"):
        laser.write(":WAV:SWE:SPE 500")  # 0.5-200 nm/s
    with pytest.raises(InstrumentReportedError, match="-222"):
        laser.write(":TRIG:OUTP 7")
