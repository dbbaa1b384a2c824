"""The command line's exit codes and messages for a wrong config and for instruments that
answer wrongly or not at all (README: 2 usage or config error, 3 instrument unreachable or
not answering). In-process through `qnetlab.cli.main`; the instruments are real drivers over
pyvisa-py TCP sockets to small servers here, or the simulated twins.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qnetlab.cli import StopSignal, interrupted_message, main
from qnetlab.instruments.errors import InstrumentConnectionError, InstrumentUnreachableError
from qnetlab.instruments.station import load_station

from conftest import BENCH_CONFIG, REPO


class _FakeInstrument:
    """A TCP server on a free loopback port that accepts connections and answers every
    received line with ``reply(line)`` (None: no answer at all), like a wrong or hung
    instrument behind the address."""

    def __init__(self, reply: Callable[[bytes], bytes | None]) -> None:
        self.reply = reply
        self.received: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        buffer = b""
        with conn:
            while not self._stop.is_set():
                try:
                    data = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    self.received.append(line)
                    answer = self.reply(line)
                    if answer is not None:
                        conn.sendall(answer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()


@pytest.fixture
def fake_instrument() -> Iterator[Callable[..., _FakeInstrument]]:
    started: list[_FakeInstrument] = []

    def start(reply: Callable[[bytes], bytes | None]) -> _FakeInstrument:
        started.append(_FakeInstrument(reply))
        return started[-1]

    yield start
    for fake in started:
        fake.close()


def _one_instrument(tmp_path: Path, driver: str, address: str, timeout_s: float = 1) -> Path:
    config = tmp_path / "lab.yaml"
    config.write_text(
        "qnetlab:\n  simulation: {seed: 1}\ninstruments:\n  inst:\n"
        f"    type: {driver}\n    address: {{sim: keysight_n5183b, real: '{address}'}}\n"
        f"    init: {{timeout: {timeout_s}}}\n")
    return config


DRIVERS = ["qnetlab.drivers.keysight.KeysightN5183B", "qnetlab.drivers.keysight.KeysightP9374A"]


# -- 16: an instrument that does not answer, or answers nonsense, is an instrument problem ---------


@pytest.mark.parametrize("driver", DRIVERS)
def test_instrument_that_never_answers_exits_3_naming_address_and_command(
        tmp_path, capsys, fake_instrument, driver):
    fake = fake_instrument(lambda line: None)
    address = f"TCPIP0::127.0.0.1::{fake.port}::SOCKET"
    assert main(["check", str(_one_instrument(tmp_path, driver, address)), "--profile",
                 "real"]) == 3
    err = capsys.readouterr().err
    assert address in err and "accepted the connection but did not answer" in err
    sent = fake.received[0].decode().strip()
    assert f"did not answer {sent!r}" in err  # what was sent
    assert "init arguments" not in err


@pytest.mark.parametrize("driver", DRIVERS)
def test_garbage_reply_at_connect_exits_3_naming_address(tmp_path, capsys, fake_instrument,
                                                         driver):
    fake = fake_instrument(lambda line: b"RV&Bb_TG^Nk<\n" if b"?" in line else None)
    address = f"TCPIP0::127.0.0.1::{fake.port}::SOCKET"
    config = _one_instrument(tmp_path, driver, address)
    with pytest.raises(InstrumentUnreachableError) as info:
        load_station(config, "real").close()
    assert info.value.entry == "instruments.inst.address.real"
    assert main(["check", str(config), "--profile", "real"]) == 3
    err = capsys.readouterr().err
    assert address in err and "init arguments" not in err
    assert "the model the driver expects" in err


def test_refused_init_argument_is_still_a_config_error(tmp_path, capsys):
    config = tmp_path / "lab.yaml"
    config.write_text(BENCH_CONFIG.read_text().replace("sensor_channel: 6",
                                                       "sensor_channel: 17"))
    assert main(["check", str(config)]) == 2
    err = capsys.readouterr().err
    assert "instruments.fridge.init" in err and "refused the init arguments" in err


def test_unreachable_is_a_connection_error_not_a_config_error(tmp_path):
    from conftest import free_port

    config = _one_instrument(tmp_path, DRIVERS[0], f"TCPIP0::127.0.0.1::{free_port()}::SOCKET")
    with pytest.raises(InstrumentConnectionError) as info:
        load_station(config, "real").close()
    assert isinstance(info.value, InstrumentUnreachableError)
    assert "could not connect" in info.value.problem


# -- 17: a directory for a config, a malformed VISA address -----------------------------------


def test_config_path_that_is_a_directory_exits_2(tmp_path, capsys):
    assert main(["check", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "is a directory" in err and "Fix:" in err
    assert "Traceback" not in err


def test_malformed_visa_address_exits_2_naming_entry_and_fix(tmp_path, capsys):
    config = tmp_path / "lab.yaml"
    text = BENCH_CONFIG.read_text()
    assert "TCPIP0::127.0.0.1::50102::SOCKET" in text
    # A deliberately malformed address: text, since the config API refuses to build one.
    config.write_text(text.replace("TCPIP0::127.0.0.1::50102::SOCKET",
                                   "TCPIP0::127.0.0.1:21101:SOCKET"))
    # Refused at load, in either profile: nothing is connected.
    for profile in ("real", "sim"):
        assert main(["check", str(config), "--profile", profile]) == 2
        err = capsys.readouterr().err
        assert "instruments.pump_laser.address.real" in err
        assert "write 'TCPIP0::127.0.0.1::21101::SOCKET'" in err
        assert len(err.strip().splitlines()) == 1


# -- 19: the simulated lab's config is checked before anything connects -----------------------


SIM_CONFIG_ERRORS = [
    ("sim: keysight_n5183b", "sim: keysight_n9999", "instruments.mw_source.address.sim"),
    ("transducer: bulk_eo_pulsed", "transducer: bulk_typo", "qnetlab.simulation.transducer"),
    ("seed: 20261126", "seed: abc", "qnetlab.simulation.seed"),
]


@pytest.mark.parametrize(("old", "new", "entry"), SIM_CONFIG_ERRORS)
def test_simulated_lab_config_error_connects_nothing_and_logs_no_traceback(
        tmp_path, capsys, caplog, old, new, entry):
    config = tmp_path / "lab.yaml"
    config.write_text(BENCH_CONFIG.read_text().replace(old, new, 1))
    with caplog.at_level(logging.DEBUG, logger="qcodes"):
        assert main(["check", str(config)]) == 2
    err = capsys.readouterr()
    assert entry in err.err and "Fix:" in err.err
    assert "Connected to" not in err.out  # refused before the first instrument connected
    assert not [r for r in caplog.records if r.exc_info], "QCoDeS logged a traceback"


@pytest.mark.processes
def test_simulated_lab_config_error_prints_one_line(tmp_path):
    # As a user sees it: the real stderr of the command, with its own logging set-up.
    config = tmp_path / "lab.yaml"
    config.write_text(BENCH_CONFIG.read_text().replace("sim: keysight_n5183b",
                                                       "sim: keysight_n9999", 1))
    done = subprocess.run([sys.executable, "-m", "qnetlab", "check", str(config)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert "instruments.mw_source.address.sim" in done.stderr


def test_recovered_idn_fault_logs_one_line_without_traceback(caplog):
    from qnetlab.instruments.station import _qcodes_connect_log_quieted
    from qnetlab.sim_instruments.visa_backend import bench_of

    # QCoDeS's connect message asks *IDN? and survives a failure, logging a traceback; while
    # a station connects, that is one line with the cause.
    with load_station(BENCH_CONFIG) as station:
        fridge = station.instrument("fridge")
        bench_of(fridge).faults("fridge").inject("no_reply", count=1)
        with caplog.at_level(logging.WARNING), _qcodes_connect_log_quieted():
            fridge.connect_message()
    idn = [r for r in caplog.records if "*IDN?" in r.getMessage()]
    assert idn and not any(r.exc_info for r in idn)
    assert "did not answer '*IDN?'" in idn[0].getMessage()


# -- 20: what an interrupted command prints ------------------------------------------------------


def test_interrupted_message_names_the_signal_and_every_note():
    exc = StopSignal("SIGTERM")
    exc.add_note("efficiency_map: run 3 of lab.db kept 125 points (stopped at pump 7 mW)")
    exc.add_note("report: lab_data/report.html")
    lines = interrupted_message(exc).splitlines()
    assert lines[0] == "qnetlab: stopped by SIGTERM"
    assert "run 3 of lab.db kept 125 points" in lines[1]
    assert lines[2].strip() == "report: lab_data/report.html"
    assert interrupted_message(KeyboardInterrupt()) == "qnetlab: interrupted"


# -- link: refused before any process starts -----------------------------------------------------


@pytest.fixture
def network_with_keys(tmp_path):
    """The shipped network on free ports in `tmp_path`, its CURVE keys generated, nothing
    calibrated."""
    from conftest import network_lab_on_free_ports

    config = network_lab_on_free_ports(tmp_path)
    assert main(["keys", str(config)]) == 0
    return config


@pytest.mark.parametrize("profile", ["sim", "real"])
def test_link_on_a_never_calibrated_lab_exits_2_saying_to_calibrate(network_with_keys, capsys,
                                                                    profile):
    """`link` takes its heralding windows and expectation from the calibrations alone: with
    none, it says which database is missing and how to fill it, and starts nothing."""
    capsys.readouterr()
    assert main(["link", str(network_with_keys), "--pairs", "5", "--profile", profile]) == 2
    err = capsys.readouterr().err
    assert "no calibration database" in err
    assert f"qnetlab calibrate {network_with_keys}" in err
    runs = network_with_keys.parent.parent / "lab_data" / "runs"
    assert not list(runs.glob("*/*/processes.json"))  # no process was started


def test_link_sim_profile_without_a_simulation_section_exits_2_naming_it(network_with_keys,
                                                                        capsys):
    text = network_with_keys.read_text()
    network_with_keys.write_text(text[:text.index("simulation:")])
    capsys.readouterr()
    assert main(["link", str(network_with_keys), "--pairs", "5"]) == 2
    err = capsys.readouterr().err
    assert "simulation" in err and "--profile real" in err


def test_link_profile_is_sim_or_real(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["link", "lab_configs/two_node_link.yaml", "--profile", "hardware"])
    assert stop.value.code == 2
    assert "invalid choice: 'hardware'" in capsys.readouterr().err


def test_calibrate_of_a_config_of_neither_kind_exits_2_naming_both_kinds(tmp_path, capsys):
    path = tmp_path / "odd.yaml"
    path.write_text("stations: {}\n")
    assert main(["calibrate", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "neither a lab config nor a network config" in err


@pytest.mark.parametrize("verb", [["calibrate"], ["sim", "serve"]])
def test_a_bridge_config_given_to_a_lab_verb_says_which_verb_reads_it(verb, capsys):
    # (`qnetlab keys` reads a bridge config: tests/test_bridge_config_hosts.py)
    assert main([*verb, "lab_configs/bridge_8.yaml"]) == 2
    err = capsys.readouterr().err
    assert "is a bridge config" in err and "qnetlab bridge lab_configs/bridge_8.yaml" in err
