"""The rehearsal servers bound what a client can make them hold (issue 11, item 15), and each
instrument of the rehearsal lab can have its own loopback address (item 23).

Bounded input: a program message longer than an instrument's input buffer is discarded as it
arrives and reported as SCPI error -363 "Input buffer overrun"; the connection stays open and
the server keeps serving everyone. The scan for terminators looks at each byte once.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from qnetlab.cli import main
from qnetlab.instruments.errors import ConfigError
from qnetlab.instruments.station import load_station
from qnetlab.sim_instruments.bench import build_bench
from qnetlab.sim_instruments.devices.idq_id1000 import IDQuantiqueID1000Emulator, PoissonClicks
from qnetlab.sim_instruments.faults import MessageScanner, Overrun, split_messages
from qnetlab.sim_instruments.physics.presets import get_preset
from qnetlab.sim_instruments.physics.world import LabWorld
from qnetlab.sim_instruments.ports import free_port_run
from qnetlab.sim_instruments.server import (
    MAX_BLOCK_BYTES,
    MAX_CONTROL_BYTES,
    MAX_INPUT_BYTES,
    BenchServer,
    _Connection,
)
from qnetlab.sim_instruments.zmq_server import MAX_REQUEST_BYTES, ID1000Server

FLOOD_BYTES = 8 * 1024 * 1024
"""What a misbehaving client sends without a terminator: 8x the input buffer."""
CHUNK = 64 * 1024


def _config(folder: Path, mw: str, vna: str) -> Path:
    """A lab of the two Keysight instruments at the given `real` addresses."""
    path = folder / "two_keysights.yaml"
    path.write_text(
        "qnetlab:\n  simulation: {seed: 1}\ninstruments:\n"
        "  mw_source:\n    type: qnetlab.drivers.keysight.KeysightN5183B\n"
        f"    address: {{sim: keysight_n5183b, real: '{mw}'}}\n"
        "  vna:\n    type: qnetlab.drivers.keysight.KeysightP9374A\n"
        f"    address: {{sim: keysight_p9374a, real: '{vna}'}}\n")
    return path


@contextmanager
def _served(config: Path, control: bool = False) -> Iterator[BenchServer]:
    """`config`'s bench served by `BenchServer` (what `qnetlab sim serve` runs) in a thread."""
    control_port = free_port_run(0) if control else None
    server = BenchServer(build_bench(config), control_port=control_port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"max_seconds": 120},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(10)


@pytest.fixture
def two_keysights(tmp_path: Path) -> Iterator[BenchServer]:
    base = free_port_run(1)
    config = _config(tmp_path, f"TCPIP0::127.0.0.1::{base}::SOCKET",
                     f"TCPIP0::127.0.0.1::{base + 1}::SOCKET")
    with _served(config, control=True) as server:
        yield server


def _connections(server: BenchServer) -> list[_Connection]:
    return [key.data[1] for key in list(server.selector.get_map().values())
            if key.data[0] == "conn"]


def _ask(sock: socket.socket, query: bytes) -> bytes:
    """Send one query and read its one-line reply (the socket has a timeout)."""
    sock.sendall(query + b"\n")
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = sock.recv(4096)
        assert chunk, "the server closed the connection"
        reply += chunk
    return reply.strip()


def _flood(sock: socket.socket, size: int) -> None:
    """`size` bytes of text with no terminator, in `CHUNK`s."""
    chunk = b"x" * CHUNK
    for _ in range(size // CHUNK):
        sock.sendall(chunk)


# -- the scan is incremental ------------------------------------------------------------------


def test_scanning_looks_at_each_byte_once():
    # The old split re-split its whole buffer on every read: 8 MB in 64 kB reads looked at
    # 128 x 4 MB on average. The scanner looks at each byte about once.
    scanner = MessageScanner(b"\r\n")
    piece = b"y" * (CHUNK - 1) + b"\r"  # every read ends in what may be half a terminator
    reads = FLOOD_BYTES // CHUNK
    for _ in range(reads):
        assert scanner.feed(piece) == []
    assert scanner.feed(b"\n") == [(piece * reads)[:-1]]
    assert scanner.examined <= FLOOD_BYTES + 2 * reads + 2


def test_a_block_arriving_in_pieces_is_not_rescanned():
    payload = bytes(range(256)) * (FLOOD_BYTES // 256)  # holds every terminator byte
    header = f'W:DATA "w",#{len(str(len(payload)))}{len(payload)}'.encode()
    scanner = MessageScanner(b"\n")
    assert scanner.feed(header) == []
    for i in range(0, len(payload), CHUNK):
        assert scanner.feed(payload[i:i + CHUNK]) == []
    assert scanner.feed(b"\n*OPC?\n") == [header + payload, b"*OPC?"]
    assert scanner.examined < len(header) + 64  # the block's bytes are skipped by count


_MESSAGES = st.lists(st.one_of(
    st.sampled_from([b"*IDN?", b"SYST:ERR?", b'MMEM:CDIR "\\#1x"', b"A 'it''s' #H1F",
                     b"FREQ 8e9;POW -10", b"#0", b"ab#"]),
    st.binary(max_size=40).map(lambda b: b"W:DATA #2" + f"{len(b):02d}".encode() + b),
), max_size=12)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(messages=_MESSAGES, cuts=st.lists(st.integers(0, 400), max_size=20),
       terminator=st.sampled_from([b"\n", b"\r\n"]))
def test_messages_do_not_depend_on_how_the_bytes_arrive(messages, cuts, terminator):
    stream = b"".join(m + terminator for m in messages) + b"W:DATA #15ab"
    whole, used = split_messages(stream, terminator)
    scanner = MessageScanner(terminator)
    pieces: list[bytes | Overrun] = []
    start = 0
    for cut in sorted({c for c in cuts if c < len(stream)}):
        pieces += scanner.feed(stream[start:cut])
        start = cut
    pieces += scanner.feed(stream[start:])
    assert pieces == whole
    assert scanner.pending == len(stream) - used
    assert stream[used:].endswith(b"W:DATA #15ab")  # its block has not fully arrived


def test_an_overlong_message_is_dropped_and_the_next_one_kept():
    scanner = MessageScanner(b"\n", max_text=1000, max_block=10_000)
    out: list[bytes | Overrun] = []
    for _ in range(100):
        out += scanner.feed(b"x" * 999)
        assert scanner.pending <= 1000  # never more than the bound between feeds
    out += scanner.feed(b"\n*IDN?\n")
    assert [type(m) for m in out] == [Overrun, bytes] and out[1] == b"*IDN?"
    # A block declared longer than the bound: refused from its header, its bytes skipped.
    out = scanner.feed(b"W #6020000" + b"\n" * 20_000 + b"\n*OPC?\n")
    assert [type(m) for m in out] == [Overrun, bytes] and out[1] == b"*OPC?"
    assert scanner.high_water <= 1000 + 10_000 + 20_000 + 20  # one feed's worth at most


# -- the TCP server ------------------------------------------------------------------------------


@pytest.mark.tcp
def test_overrun_is_an_instrument_error_and_the_server_keeps_serving(two_keysights):
    server = two_keysights
    address = ("127.0.0.1", server.ports["mw_source"])
    with socket.create_connection(address, timeout=30) as flood, \
            socket.create_connection(("127.0.0.1", server.ports["vna"]), timeout=30) as other:
        _flood(flood, FLOOD_BYTES // 2)
        assert b"P937" in _ask(other, b"*IDN?")  # served meanwhile
        _flood(flood, FLOOD_BYTES // 2)
        # The connection that overran is kept: it reads the error on it, as on hardware.
        assert b"N5183B" in _ask(flood, b"\n*IDN?")
        assert _ask(flood, b"SYST:ERR?") == b'-363,"Input buffer overrun"'
        assert _ask(flood, b"SYST:ERR?").startswith(b"+0,")  # one error, not one a read
        assert _ask(flood, b"*ESR?") == b"8"  # device-specific error bit (IEEE 488.2)
        high = max(c.scanner.high_water for c in _connections(server))
    assert high <= MAX_INPUT_BYTES  # held between reads: never more than the input buffer


@pytest.mark.tcp
def test_a_block_declared_too_long_is_refused_from_its_header(two_keysights):
    server = two_keysights
    declared = str(MAX_BLOCK_BYTES + 1).encode()
    with socket.create_connection(("127.0.0.1", server.ports["mw_source"]), timeout=30) as bad, \
            socket.create_connection(("127.0.0.1", server.ports["mw_source"]),
                                     timeout=30) as good:
        bad.sendall(b"W:DATA #" + str(len(declared)).encode() + declared + b"abc")
        # The error is queued at once, before the client has sent the 64 MB it announced.
        assert _ask(good, b"SYST:ERR?") == b'-363,"Input buffer overrun"'
        assert b"N5183B" in _ask(good, b"*IDN?")


@pytest.mark.tcp
def test_control_port_bounds_a_request(two_keysights):
    server = two_keysights
    assert server.control_port is not None
    with socket.create_connection(("127.0.0.1", server.control_port), timeout=30) as sock:
        _flood(sock, 16 * MAX_CONTROL_BYTES)
        refused = json.loads(_ask(sock, b""))
        assert refused["ok"] is False and "longer than" in refused["error"]
        assert json.loads(_ask(sock, b'{"op": "ping"}'))["ok"] is True  # still connected
        control = [c for c in _connections(server) if c.endpoint is None]
        assert max(c.scanner.high_water for c in control) <= MAX_CONTROL_BYTES


# -- the ZeroMQ twin -------------------------------------------------------------------------


@pytest.mark.slow
def test_id1000_twin_disconnects_an_oversized_request():
    world = LabWorld(get_preset("bulk_eo_cw").model, seed=1)
    device = IDQuantiqueID1000Emulator(world, "id1000", source=PoissonClicks({1: 1e3}))
    context = zmq.Context()
    with ID1000Server(device, scpi_port=0, data_port=0, max_lifetime_s=60) as server:
        for address in (server.scpi_address, server.data_address):
            big = context.socket(zmq.REQ)
            big.setsockopt(zmq.LINGER, 0)
            big.setsockopt(zmq.RCVTIMEO, 1000)
            big.connect(address)
            big.send(b"*IDN?" + b" " * (MAX_REQUEST_BYTES + 1))
            with pytest.raises(zmq.Again):  # dropped by ZeroMQ: never reaches the server
                big.recv()
            big.close(0)
            good = context.socket(zmq.REQ)
            good.setsockopt(zmq.LINGER, 0)
            good.setsockopt(zmq.RCVTIMEO, 10_000)
            good.connect(address)
            good.send(b"*IDN?" if address == server.scpi_address else b"list")
            assert good.recv()
            good.close(0)
    context.term()


# -- each instrument on its own loopback address (item 23) --------------------------------------


@pytest.mark.tcp
def test_two_instruments_share_a_port_on_their_own_loopback_addresses(tmp_path):
    hosts = ("127.0.0.2", "127.0.0.3")
    port = free_port_run(0, hosts=hosts)  # as both Keysights serve SCPI on 5025
    config = _config(tmp_path, f"TCPIP0::{hosts[0]}::{port}::SOCKET",
                     f"TCPIP0::{hosts[1]}::{port}::SOCKET")
    with _served(config) as server:
        assert server.resource("mw_source") == f"TCPIP0::127.0.0.2::{port}::SOCKET"
        assert server.resource("vna") == f"TCPIP0::127.0.0.3::{port}::SOCKET"
        # The real drivers over pyvisa-py, as on hardware.
        with load_station(config, "real") as station:
            mw, vna = station.instrument("mw_source"), station.instrument("vna")
            assert mw.IDN()["model"] == "N5183B"
            assert vna.IDN()["model"].startswith("P937")
            mw.frequency(7.25e9)
            assert mw.frequency() == 7.25e9
            vna.power(-20.0)
            assert vna.power() == -20.0
        with pytest.raises(OSError):  # nothing listens on 127.0.0.1 for them
            socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_sim_serve_refuses_a_host_off_this_machine(tmp_path, capsys):
    config = _config(tmp_path, "TCPIP0::10.0.0.12::5025::SOCKET",
                     "TCPIP0::127.0.0.3::5025::SOCKET")
    assert main(["sim", "serve", str(config), "--max-seconds", "1"]) == 2
    err = capsys.readouterr().err
    assert "instruments.mw_source.address.real" in err
    assert "10.0.0.12 is not a loopback address" in err and "127.0.0.2" in err


def test_two_instruments_on_one_address_are_a_config_error(tmp_path):
    port = free_port_run(0, hosts=("127.0.0.4",))
    address = f"TCPIP0::127.0.0.4::{port}::SOCKET"
    with pytest.raises(ConfigError, match=r"instruments\.vna\.address\.real.*also mw_source"):
        BenchServer(build_bench(_config(tmp_path, address, address)))
