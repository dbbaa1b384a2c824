"""Every driver over both transports, the main job, and recovery from injected faults."""

from __future__ import annotations

import time

import pytest

from qnetlab.cli import main
from qnetlab.instruments.conformance import assert_conforms
from qnetlab.instruments.errors import (
    InstrumentConnectionError,
    InstrumentReplyError,
    InstrumentReportedError,
    InstrumentTimeoutError,
)
from qnetlab.instruments.station import load_station
from qnetlab.sim_instruments.visa_backend import bench_of

from conftest import BENCH_CONFIG, bench_on_free_ports

pytestmark = [pytest.mark.slow, pytest.mark.processes]

INSTRUMENTS = ("mw_source", "pump_laser", "power_meter", "vna", "fridge", "snspd", "tagger")


@pytest.fixture(params=["sim", "real"])
def station(request, served_bench):
    config = BENCH_CONFIG if request.param == "sim" else served_bench[0]
    with load_station(config, request.param) as st:
        yield st


@pytest.mark.parametrize("name", INSTRUMENTS)
def test_every_driver_conforms_on_both_transports(station, name):
    assert_conforms(station.instrument(name))


def test_main_job_prints_every_instrument(capsys):
    assert main(["check", str(BENCH_CONFIG)]) == 0
    out = capsys.readouterr().out
    for name, model in [("mw_source", "N5183B"), ("pump_laser", "TSL-570"),
                        ("power_meter", "PM100D"), ("vna", "P937"), ("fridge", "372"),
                        ("snspd", "SIM900"), ("tagger", "ID1000")]:
        assert name in out and model in out
    for unit in (" GHz", " dBm", " µm", " mK"):
        assert unit in out


def test_main_job_over_tcp_rehearsal(served_bench, capsys):
    assert main(["check", str(served_bench[0]), "--profile", "real", "--conformance"]) == 0
    out = capsys.readouterr().out
    assert out.count("conforms") == len(INSTRUMENTS)


def test_unreachable_instrument_exit_code(tmp_path, capsys):
    # the bench's real addresses moved to free ports with nothing serving them
    config, _ = bench_on_free_ports(tmp_path, "bench.yaml")
    assert main(["check", str(config), "--profile", "real"]) == 3
    err = capsys.readouterr().err
    assert "could not connect" in err and "qnetlab sim serve" in err


# -- faults ----------------------------------------------------------------------------------


@pytest.fixture(params=["sim", "real"])
def faulty(request, served_bench):
    """(station, inject) on either transport, for the microwave source."""
    if request.param == "sim":
        st = load_station(BENCH_CONFIG, "sim")
        bench = bench_of(st.instrument("mw_source"))

        def inject(fault: str, instrument: str = "mw_source", **kw) -> None:
            bench.faults(instrument).inject(fault, **kw)
    else:
        st = load_station(served_bench[0], "real")
        client = served_bench[1]

        def inject(fault: str, instrument: str = "mw_source", **kw) -> None:
            client.inject(instrument, fault, **kw)
    st.instrument("mw_source").timeout(0.5)
    st.instrument("fridge").timeout(0.5)
    yield st, inject
    if request.param == "real":
        served_bench[1].request(op="clear")
    st.close()


def _recovers(mw) -> None:
    mw.frequency(7.25e9)
    assert mw.frequency() == 7.25e9


def test_no_reply_is_a_named_timeout_then_recovers(faulty):
    station, inject = faulty
    mw = station.instrument("mw_source")
    inject("no_reply")
    with pytest.raises(InstrumentTimeoutError, match=r"mw_source at TCPIP0::.*did not answer"):
        mw.frequency()
    _recovers(mw)


def test_dropped_connection_is_reported_then_reconnects(faulty):
    station, inject = faulty
    mw = station.instrument("mw_source")
    inject("drop_connection")
    # pyvisa-py sees a closed socket as a read that never completes; in-process it is a lost
    # connection. Either way the error names the instrument and its address.
    with pytest.raises((InstrumentConnectionError, InstrumentTimeoutError), match="mw_source at"):
        mw.frequency()
    _recovers(mw)


def test_garbage_reply_is_refused_then_recovers(faulty):
    station, inject = faulty
    mw = station.instrument("mw_source")
    inject("garbage_reply")
    with pytest.raises(InstrumentReplyError, match=r"mw_source at .*could not parse the reply"):
        mw.frequency()
    _recovers(mw)


def test_instrument_error_is_raised_from_the_error_queue(faulty):
    station, inject = faulty
    mw = station.instrument("mw_source")
    mw.frequency(6e9)
    inject("instrument_error")
    with pytest.raises(InstrumentReportedError, match=r"mw_source at .* reported -240"):
        mw.frequency(6.5e9)
    assert mw.frequency() == 6e9  # the failed command changed nothing
    _recovers(mw)


def test_latency_delays_replies_but_loses_nothing(faulty):
    station, inject = faulty
    mw = station.instrument("mw_source")
    inject("latency", seconds=0.1)
    t = time.perf_counter()
    assert mw.frequency() > 0
    assert time.perf_counter() - t >= 0.1


def test_latency_beyond_timeout_is_a_timeout_then_recovers(faulty):
    station, inject = faulty
    mw = station.instrument("mw_source")
    inject("latency", seconds=1.0)
    with pytest.raises(InstrumentTimeoutError):
        mw.frequency()
    inject("latency", seconds=0.001)  # replace the slow latency with a negligible one
    # A measured wait, not for an event: the injected 1.0 s latency runs out, so the late
    # reply is due while (or before) the driver recovers; either way it must not be read as
    # the answer to a later query.
    time.sleep(1.0)
    _recovers(mw)


def test_conformance_check_puts_the_settings_back(station):
    laser, mw = station.instrument("pump_laser"), station.instrument("mw_source")
    before = (laser.power(), laser.wavelength(), mw.power(), mw.frequency())
    assert_conforms(laser)
    assert_conforms(mw)
    assert (laser.power(), laser.wavelength(), mw.power(), mw.frequency()) == before


def test_interrupted_query_does_not_shift_later_replies(faulty):
    import signal

    station, inject = faulty
    mw = station.instrument("mw_source")
    mw.power(-10.0)
    inject("latency", seconds=0.3)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    try:
        with pytest.raises(KeyboardInterrupt):
            mw.frequency()
    finally:
        signal.signal(signal.SIGALRM, previous)
    inject("latency", seconds=0.001)
    # A measured wait: the injected 0.3 s latency runs out and the interrupted query's
    # reply becomes due; the driver must not take it for the next query's answer.
    time.sleep(0.3)
    assert mw.power() == -10.0  # not the late frequency reply
    assert mw.frequency() == 8e9


def test_a_client_that_stops_reading_does_not_freeze_the_server(served_bench):
    import socket

    config, _ = served_bench
    with load_station(config, "real") as st:
        port = int(st.instrument("mw_source").address.split("::")[2])
        greedy = socket.create_connection(("127.0.0.1", port))
        try:
            # ~8 MB of replies that this client never reads: more than the socket buffers
            greedy.sendall(b"*IDN?\n" * 150_000)
            # A measured wait: give the server 0.5 s to fill both socket buffers.
            time.sleep(0.5)
            fridge = st.instrument("fridge")
            fridge.timeout(5.0)
            # A frozen server never answers (the query times out); a slow machine only
            # answers late, so no wall-clock bound here.
            assert fridge.temperature() > 0
        finally:
            greedy.close()


@pytest.mark.parametrize("fault", ["no_reply", "drop_connection"])
def test_crlf_instrument_recovers_from_faults(faulty, fault):
    # the Lake Shore terminates with CR LF; recovery must not leave half a terminator behind
    station, inject = faulty
    fridge = station.instrument("fridge")
    inject(fault, instrument="fridge")
    with pytest.raises((InstrumentTimeoutError, InstrumentConnectionError), match="fridge at"):
        fridge.temperature()
    assert fridge.temperature() == pytest.approx(0.010, rel=0.05)
    assert fridge.ch01.temperature() > 40


def test_an_overlong_message_is_an_input_buffer_overrun(served_bench):
    # 8 MB without a terminator to `qnetlab sim serve`: the message is discarded as it arrives
    # and reported as an instrument reports it; the server serves everyone meanwhile.
    import socket

    from qnetlab.sim_instruments.server import MAX_INPUT_BYTES

    config, _ = served_bench
    with load_station(config, "real") as st:
        _, host, port, _ = st.instrument("mw_source").address.split("::")
        with socket.create_connection((host, int(port)), timeout=30) as flood:
            chunk = b"x" * 65536
            for _ in range(8 * MAX_INPUT_BYTES // len(chunk)):
                flood.sendall(chunk)
            assert st.instrument("fridge").temperature() > 0
            flood.sendall(b"\n*IDN?\nSYST:ERR?\nSYST:ERR?\n")
            replies = b""
            while replies.count(b"\n") < 3:
                data = flood.recv(4096)
                assert data, "the server closed the connection that overran"
                replies += data
        idn, error, empty = replies.decode().splitlines()
        assert "N5183B" in idn
        assert error == '-363,"Input buffer overrun"'
        assert empty.startswith("+0,")
        _recovers(st.instrument("mw_source"))
