"""ID Quantique ID1000 Time Controller: driver, ZeroMQ base and emulator over real sockets."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import zmq

from qnetlab.drivers.idquantique import IDQuantiqueID1000
from qnetlab.drivers.zmq_instrument import ZmqInstrument
from qnetlab.instruments.conformance import assert_conforms
from qnetlab.instruments.errors import InstrumentReportedError, InstrumentTimeoutError
from qnetlab.sequences.timetags.blocks import TagBlock
from qnetlab.sim_instruments.devices.idq_id1000 import (
    CoincidentPulses,
    IDQuantiqueID1000Emulator,
    PoissonClicks,
)
from qnetlab.sim_instruments.physics.presets import get_preset
from qnetlab.sim_instruments.physics.world import LabWorld
from qnetlab.sim_instruments.zmq_server import ID1000Server

from conftest import free_port_run


@pytest.fixture
def tagger() -> Iterator[Callable[..., tuple[IDQuantiqueID1000, ID1000Server]]]:
    """An emulated ID1000 served on 127.0.0.1 (free ports) and its driver; both closed after."""
    opened: list[tuple[IDQuantiqueID1000, ID1000Server]] = []

    def make(source: Any = None, send_timeout_s: float = 2.0,
             **emulator: Any) -> tuple[IDQuantiqueID1000, ID1000Server]:
        world = LabWorld(get_preset("bulk_eo_cw").model, seed=7)
        device = IDQuantiqueID1000Emulator(world, "id1000", source=source, **emulator)
        server = ID1000Server(device, scpi_port=0, data_port=0, max_lifetime_s=60,
                              send_timeout_s=send_timeout_s).start()
        base = free_port_run(8)  # the driver adds the channel number to the base
        driver = IDQuantiqueID1000(f"id1000_{uuid.uuid4().hex[:8]}", server.scpi_address,
                                   server.data_address, timeout=2.0, stream_port_base=base)
        opened.append((driver, server))
        return driver, server

    yield make
    for driver, server in opened:
        driver.close()
        server.close()
        assert server.host == "127.0.0.1"
        assert not any(t.is_alive() for t in server._threads)


def test_conforms_to_time_tagger(tagger):
    driver, _ = tagger()
    report = assert_conforms(driver)
    assert "TimeTagger.channel_parameters" in report.checked


def test_command_dialogue(tagger):
    driver, server = tagger()
    dev = server.device
    assert driver.get_idn()["model"] == "ID1000"
    driver.input2.trigger_level(0.75)
    assert dev.threshold_v[2] == pytest.approx(0.75)
    assert driver.ask("INPUt2:THREshold?") == "0.7500V"
    driver.input3.delay(1.234e-9)
    assert dev.delay_ps[3] == 1234  # the role's seconds go out as integer ps
    assert driver.input3.delay() == pytest.approx(1.234e-9)
    driver.input1.enabled(True)
    assert driver.ask("INPUt1:ENABle?") == "ON"
    assert driver.ask("DELAy4:INPOrt:LINK?") == "INPU4"
    assert driver.ask("INPUt1:COUNter:RESEt") == "Counter value set to 0"
    assert driver.input1.counts() > 0  # 10 kHz default clicks over 1 s of virtual time


def test_reply_errors_raise(tagger):
    driver, _ = tagger()
    with pytest.raises(InstrumentReportedError, match=r"BOGUS:CMD.*SCPI_ERR_INVALID_CMD"):
        driver.write("BOGUS:CMD 1")
    with pytest.raises(InstrumentReportedError, match="SCPI_ERR_PARAM_TYPE"):
        driver.write("INPUt1:THREshold 7V")
    with pytest.raises(InstrumentReportedError, match=r"data-link service.*unknown command"):
        driver.data_service("frobnicate")
    assert driver.ask("INPUt1:THREshold?") == "0.5000V"  # still talking after the errors


def test_timeout_names_instrument_and_recovers():
    """A REP peer that answers the first request late: the REQ socket is recreated, so the
    late answer is never read as the reply to the next query."""
    ctx = zmq.Context.instance()
    rep = ctx.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    port = rep.bind_to_random_port("tcp://127.0.0.1")

    timed_out, late_sent = threading.Event(), threading.Event()

    def serve() -> None:
        rep.recv()
        timed_out.wait(10)  # answer only once the client has given up: late by construction
        rep.send_string("late")
        late_sent.set()
        rep.recv()
        rep.send_string("ID Quantique,ID1000,0,0")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    inst = ZmqInstrument(f"slow_{uuid.uuid4().hex[:8]}", f"tcp://127.0.0.1:{port}",
                         timeout=0.1)
    try:
        with pytest.raises(InstrumentTimeoutError,
                           match=rf"{inst.name} at tcp://127.0.0.1:{port} did not answer"):
            inst.ask("*IDN?")
        timed_out.set()
        assert late_sent.wait(10), "the peer never sent its late answer"
        inst.timeout(2.0)
        assert inst.ask("*IDN?") == "ID Quantique,ID1000,0,0"
    finally:
        inst.close()
        thread.join(2)
        rep.close(0)


def test_acquire_shows_delays(tagger):
    rate, duration = 20e3, 0.2
    driver, server = tagger(CoincidentPulses(rate, (1, 2)))
    for n in (1, 2):
        driver.tagger_channels[n].enabled(True)
    user_delay_ps = 5_000
    driver.input2.delay(user_delay_ps * 1e-12)
    block = driver.acquire(duration)
    assert isinstance(block, TagBlock) and block.timestamps.dtype == np.int64
    block.validate()  # sorted, non-negative, no overflow
    assert set(np.unique(block.channels).tolist()) == {1, 2}
    assert block.timestamps[-1] < duration * 1e12
    t1 = block.timestamps[block.channels == 1]
    t2 = block.timestamps[block.channels == 2]
    # Pulses ~50 us apart, delays a few ns: a ch1 tag pairs with the next ch2 tag, unless
    # another pulse came within a few ns (p ~ rate * 6 ns per pulse): keep isolated pulses.
    gaps = np.diff(t1)
    isolated = np.r_[True, gaps > 20_000] & np.r_[gaps > 20_000, True]
    t1 = t1[isolated]
    k = np.searchsorted(t2, t1)
    ok = k < t2.size
    diff = t2[k[ok]] - t1[ok]
    model = server.device.model
    expected = model.channels[1].delay_ps - model.channels[0].delay_ps + user_delay_ps
    sigma = math.hypot(model.channels[0].jitter_rms_ps, model.channels[1].jitter_rms_ps)
    n = diff.size
    assert n > 0.8 * rate * duration
    # The mean of n differences has standard error sigma/sqrt(n); 5 of those, +1 ps rounding.
    assert abs(diff.mean() - expected) < 5 * sigma / math.sqrt(n) + 1
    assert diff.std() == pytest.approx(sigma, rel=0.2)


def test_stream_delivers_blocks(tagger):
    driver, _ = tagger(PoissonClicks({1: 5e3, 3: 5e3}))
    driver.input1.enabled(True)
    driver.input3.enabled(True)
    got: list[TagBlock] = []
    summary = driver.stream(got.append, 0.3)
    assert summary.blocks == len(got) >= 3  # handed over while the recording ran
    assert summary.overflowed_blocks == 0
    previous = -1
    for block in got:
        block.validate(previous=previous)  # each sorted and after the one before
        previous = int(block.timestamps[-1]) if len(block) else previous
    total = sum(len(b) for b in got)
    assert abs(total - 2 * 5e3 * 0.3) < 5 * math.sqrt(2 * 5e3 * 0.3)


def test_stream_overflows_above_the_rate_cap(tagger):
    from dataclasses import replace

    from qnetlab.sim_instruments.devices.idq_id1000 import default_model

    model = replace(default_model(), max_stream_rate=50e3)
    driver, server = tagger(PoissonClicks({1: 200e3}), model=model)
    driver.input1.enabled(True)
    got: list[TagBlock] = []
    summary = driver.stream(got.append, 0.2)
    assert summary.overflowed_blocks > 0
    assert server.device.raw_errors[1] > 0
    assert summary.tags <= 50e3 * 0.2 + 1
    with pytest.raises(Exception, match="overflow"):
        next(b for b in got if b.overflow).validate()


def test_closing_the_tagger_twice_is_harmless(tagger):
    driver, _ = tagger()
    driver.close()
    driver.close()  # QCoDeS stripped its attributes at the first close (the fixture: a third)


def test_closing_the_server_while_a_stopped_stream_still_sends_ends_that_stream_cleanly(
        tagger, monkeypatch):
    """A stream stopped while its thread still waits in a send (nobody reads its port) is no
    longer the server's, yet owns a socket: closing the server must end that send, not close
    the socket under it (which aborts the process inside libzmq, or raises in the thread)."""
    thread_errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: thread_errors.append(args.exc_value))
    driver, server = tagger(PoissonClicks({1: 200e3}), send_timeout_s=30.0)
    port = free_port_run(1)
    stream_id = driver.data_service(
        f"start-stream --channel 1 --address 127.0.0.1 --stream-port {port}")["id"]
    driver.write("REC:TRIG:ARM:MODE MANUal")
    driver.write("REC:ENABle ON")
    driver.write("REC:NUM 1")
    driver.input1.enabled(True)
    driver.write("RAW1:SEND ON")
    driver.write("REC:DURation 200000000000")  # 0.2 s
    driver.write("REC:PLAY")
    # The recording hands its tags to the stream; with no reader its send waits (30 s).
    stream_threads = [t for t in threading.enumerate() if t.name == f"id1000-stream-{stream_id}"]
    assert len(stream_threads) == 1
    # The whole recording handed to the stream thread (its end counted), none of it sent.
    deadline = time.monotonic() + 20.0
    while (status := driver.data_service(f"status --id {stream_id}"))["acquisitions_count"] < 1:
        assert time.monotonic() < deadline, "the 0.2 s recording did not end within 20 s"
        time.sleep(0.01)
    assert status["timestamps_count"] == 0
    driver.data_service(f"stop --id {stream_id}")
    server.close()
    stream_threads[0].join(5.0)
    assert not stream_threads[0].is_alive(), "the stopped stream's send was not ended"
    assert thread_errors == []


def test_a_stopped_streams_port_is_free_when_stop_answers(tagger, monkeypatch):
    """The data-link service answers ``stop`` only once the stream's socket is closed, so a
    recording started at once (a station's next recording, a calibration's next acquisition)
    can open a stream on the same port again (found as "cannot open stream port ...: Address
    already in use" on a loaded machine, where the stream's thread closed its socket late:
    made late here on purpose)."""
    close = zmq.Socket.close

    def late_close(sock: zmq.Socket, *args: Any, **kwargs: Any) -> None:
        if threading.current_thread().name.startswith("id1000-stream-"):
            time.sleep(0.1)  # a starved thread
        close(sock, *args, **kwargs)

    monkeypatch.setattr(zmq.Socket, "close", late_close)
    driver, _ = tagger()
    port = free_port_run(1)
    for _ in range(3):
        stream_id = driver.data_service(
            f"start-stream --channel 1 --address 127.0.0.1 --stream-port {port}")["id"]
        driver.data_service(f"stop --id {stream_id}")
