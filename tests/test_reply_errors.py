"""Replies that cannot be parsed and errors of failed queries name the instrument, its
address and the command (issue 11, items 4 and 5), through the real drivers on both VISA
transports, and the ZeroMQ base."""

from __future__ import annotations

import textwrap

import pytest

from qnetlab.drivers.quantum_opus import QuantumOpusSIM900
from qnetlab.instruments.errors import (
    InstrumentReplyError,
    InstrumentReportedError,
    InstrumentTimeoutError,
    QnetlabError,
)
from qnetlab.instruments.station import load_station
from qnetlab.sim_instruments.visa_backend import bench_of

pytestmark = pytest.mark.slow

CONFIG = """
qnetlab:
  simulation: {seed: 5}
instruments:
  mw_source:
    type: qnetlab.drivers.keysight.KeysightN5183B
    address: {sim: keysight_n5183b}
    parameters:
      frequency: {limits: [1.0e9, 12.0e9], initial_value: 8.0e9}
"""


@pytest.fixture(params=["sim", "real"])
def mw(request, tmp_path, served_bench):
    """(the N5183B driver, inject(fault), its emulator or None over TCP) on either transport."""
    if request.param == "sim":
        path = tmp_path / "lab.yaml"
        path.write_text(textwrap.dedent(CONFIG))
        station = load_station(path)
        inst = station.instrument("mw_source")
        bench = bench_of(inst)

        def inject(fault: str) -> None:
            bench.faults("mw_source").inject(fault)
        device = bench.device("mw_source")
    else:
        station = load_station(served_bench[0], "real")
        inst = station.instrument("mw_source")

        def inject(fault: str) -> None:
            served_bench[1].inject("mw_source", fault)
        device = None
    inst.timeout(0.5)
    yield inst, inject, device
    if request.param == "real":
        served_bench[1].request(op="clear")
    station.close()


# -- item 4: a reply that cannot be parsed ------------------------------------------------


def test_garbage_reply_is_a_qnetlab_error_naming_command_and_reply(mw):
    inst, inject, _ = mw
    inject("garbage_reply")
    with pytest.raises(InstrumentReplyError) as info:
        inst.frequency()
    assert isinstance(info.value, QnetlabError) and not isinstance(info.value, ValueError)
    message = str(info.value)
    assert message.startswith(f"mw_source at {inst.address}: could not parse the reply '")
    assert "to 'SOUR:FREQ?'" in message and "mw_source_frequency" in message
    inst.frequency(7.25e9)
    assert inst.frequency() == 7.25e9


def test_garbage_reply_on_a_models_own_parsing_is_a_reply_error(sim_instrument):
    # The SIM900 driver parses module replies itself (not through a get_parser); a garbage
    # reply to its post-write *ESR? check is refused the same way.
    inst = sim_instrument(QuantumOpusSIM900, "srs_sim900_quantum_opus", slots=[1])
    bench_of(inst).faults(inst.name).inject("garbage_reply")
    with pytest.raises(InstrumentReplyError, match=rf"{inst.name} at .*'\*ESR\?'"):
        inst.ch1.bias_current(10e-6)
    inst.ch1.bias_current(10e-6)
    assert inst.ch1.bias_current() == pytest.approx(10e-6, abs=1e-9)


def test_garbage_reply_with_a_queued_error_names_both(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text(textwrap.dedent(CONFIG))
    with load_station(path) as station:
        inst = station.instrument("mw_source")
        bench = bench_of(inst)
        bench.device("mw_source").push_error(-410, "Query INTERRUPTED")
        bench.faults("mw_source").inject("garbage_reply")
        with pytest.raises(InstrumentReplyError, match="error queue then held -410"):
            inst.frequency()
        inst.power(-10)  # the queue was read: nothing left to blame the next write for


def test_zmq_reply_that_cannot_be_parsed_names_command_and_reply(monkeypatch):
    import uuid

    from qnetlab.drivers.idquantique import IDQuantiqueID1000
    from qnetlab.sim_instruments.devices.idq_id1000 import IDQuantiqueID1000Emulator
    from qnetlab.sim_instruments.physics.presets import get_preset
    from qnetlab.sim_instruments.physics.world import LabWorld
    from qnetlab.sim_instruments.zmq_server import ID1000Server

    world = LabWorld(get_preset("bulk_eo_cw").model, seed=7)
    server = ID1000Server(IDQuantiqueID1000Emulator(world, "id1000"), scpi_port=0,
                          data_port=0, max_lifetime_s=60).start()
    driver = IDQuantiqueID1000(f"id1000_{uuid.uuid4().hex[:8]}", server.scpi_address,
                               server.data_address, timeout=2.0)
    try:
        request = driver._requester.request
        monkeypatch.setattr(driver._requester, "request", lambda message: "#?x!")
        with pytest.raises(InstrumentReplyError) as info:
            driver.input1.trigger_level()
        message = str(info.value)
        assert f"{driver.name} at {server.scpi_address}" in message
        assert "'#?x!' to 'INPUt1:THREshold?'" in message
        monkeypatch.setattr(driver._requester, "request", request)
        driver.input1.trigger_level(0.25)
        assert driver.input1.trigger_level() == pytest.approx(0.25)
    finally:
        driver.close()
        server.close()


# -- item 5: a query's error is the query's, not the next write's ---------------------------


def test_unknown_query_error_is_named_for_the_query_not_the_next_write(mw):
    inst, _, _ = mw
    with pytest.raises(InstrumentReportedError) as info:
        inst.ask("SOUR:FREQ:NOSUCH?")  # the N5183B queues -113 and sends nothing back
    message = str(info.value)
    assert f"mw_source at {inst.address} reported -113" in message
    assert "for 'SOUR:FREQ:NOSUCH?', which got no reply" in message
    assert isinstance(info.value.__cause__, InstrumentTimeoutError)
    inst.frequency(7e9)  # accepted, and not blamed for the query's error
    assert inst.frequency() == 7e9


def test_instrument_error_on_a_query_is_named_for_the_query(mw):
    inst, inject, _ = mw
    inject("instrument_error")  # the query fails inside the instrument: -240, no reply
    with pytest.raises(InstrumentReportedError, match=r"-240.*for 'SOUR:FREQ\?'"):
        inst.frequency()
    inst.frequency(6e9)
    assert inst.frequency() == 6e9


def test_an_error_found_at_a_write_names_the_queries_since_the_last_check(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text(textwrap.dedent(CONFIG))
    with load_station(path) as station:
        inst = station.instrument("mw_source")
        inst.frequency()
        # An instrument that answered the query and queued an error for it as well.
        bench_of(inst).device("mw_source").push_error(-221, "Settings conflict")
        with pytest.raises(InstrumentReportedError) as info:
            inst.power(-15)
        message = str(info.value)
        assert "reported -221: Settings conflict after 'SOUR:POW" in message
        assert "or from an earlier query" in message and "'SOUR:FREQ?'" in message
