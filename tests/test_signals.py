"""SIGTERM and SIGHUP stop a verb that drives instruments exactly as Ctrl-C does: the bench is
put back, an interrupted run keeps its points and says where it stopped, exit code 130.

Real processes throughout: `qnetlab sim serve` (the `served_bench` fixture, or one started
here) and `python -m qnetlab ...` as a subprocess, signalled with `os.kill`. Each test waits
for what it needs (a progress line, a control-port answer), never for a fixed time.
`qnetlab link` stopped by a signal: tests/test_network_bringup.py (it needs a calibrated network,
which that file's bring-up already made).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from qnetlab_subprocess import DEADLINE_S, Output, run_qnetlab

from qnetlab.instruments.lab_config import load_config

from conftest import BENCH_CONFIG, REPO, bench_on_free_ports

pytestmark = [pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
              pytest.mark.slow, pytest.mark.processes]


def _pump_state(config: Path) -> tuple[bool, float]:
    """(LD on, output power in W) of the pump laser, read with its own driver over TCP."""
    from qnetlab.drivers.santec import SantecTSL570
    from qnetlab.instruments.lab_config import load_config

    address = load_config(config).instruments["pump_laser"].addresses["real"]
    laser = SantecTSL570("pump_after_signal", address=address, visalib="@py")
    try:
        return bool(laser.output()), float(laser.power())
    finally:
        laser.close()


# -- run ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_signal_mid_run_turns_pump_off_and_keeps_the_points(served_bench, tmp_path, signame):
    from qnetlab.sequences.data import load_run

    config, client = served_bench
    client.request(op="clear")
    db = tmp_path / "lab.db"
    run = run_qnetlab("run", "efficiency_map", str(config), "--profile", "real",
                      "--db", str(db), "--set", "powers=8", "--set", "settle_time=1.0")
    # Measuring, with at least one step (its points) done: the pump is on.
    run.wait_for(r"efficiency_map: [1-7]/8")
    os.kill(run.proc.pid, getattr(signal, signame))
    assert run.finish() == 130, run.text

    assert _pump_state(config)[0] is False, "the pump was left on"
    stored = load_run(1, db)
    assert stored.status == "interrupted"
    stopped = stored.metadata["stopped_at"]
    assert stopped["points_saved"] > 0 and 0 < stopped["steps_done"] < 8
    assert stored.data and all(len(v) for v in stored.data.values())
    how = "interrupted by the user (Ctrl-C)" if signame == "SIGINT" else f"stopped by {signame}"
    assert stopped["cause"] == how
    # What the command says: the signal, the run, the points kept, where it stopped.
    err = run.text["err"]
    assert "Traceback" not in err
    assert f"run 1 of {db}" in err and f"kept {stopped['points_saved']} points" in err
    assert f"stopped at {stopped['label']}" in err


def test_sigterm_mid_characterization_writes_the_report_and_says_where(tmp_path):
    db = tmp_path / "lab.db"
    characterize = run_qnetlab("characterize", str(BENCH_CONFIG), "--db", str(db))
    # The in-process simulated lab; the signal comes with steps still to run.
    characterize.wait_for(r"efficiency_map: ")
    os.kill(characterize.proc.pid, signal.SIGTERM)
    assert characterize.finish() == 130, characterize.text
    err = characterize.text["err"]
    assert "qnetlab: stopped by SIGTERM" in err and "Traceback" not in err
    report = re.search(r"report: (\S+\.html)", err)
    assert report is not None, err
    assert Path(report.group(1)).is_file()
    assert re.search(r"run \d+ of .* kept \d+ points", err)


# -- check ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_signal_during_check_closes_the_station_and_exits_130(served_bench, signame):
    config, client = served_bench
    client.request(op="clear")
    # The power meter (third to connect) answers its first query DEADLINE_S late, so the
    # signal surely arrives while `check` is connecting; its session is dropped on close.
    client.inject("power_meter", "latency", count=1, seconds=DEADLINE_S)
    try:
        check = run_qnetlab("check", str(config), "--profile", "real")
        check.wait_for(r"Connected to: SANTEC", key="out")
        os.kill(check.proc.pid, getattr(signal, signame))
        assert check.finish() == 130, check.text
    finally:
        client.request(op="clear")
    assert "Traceback" not in check.text["err"]
    assert f"qnetlab: stopped by {signame}" in check.text["err"]


# -- sim serve ------------------------------------------------------------------------------------


def _served_config(folder: Path) -> tuple[Path, list[int]]:
    """The transducer bench on free loopback ports: its config and every port `sim serve`
    takes (the SCPI sockets, the ID1000's SCPI and data ports, the control port last)."""
    path, control_port = bench_on_free_ports(folder, "served.yaml")
    first = control_port - load_config(path).port_count
    return path, list(range(first, control_port + 1))


def _port_is_free(port: int) -> bool:
    """Whether a server restarted now could listen on `port`: bound as servers bind (with
    SO_REUSEADDR, so a connection of the last run still in TIME_WAIT does not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_sim_serve_stops_cleanly_on_signal_and_frees_its_ports(tmp_path, signame):
    from qnetlab.sim_instruments.server import ControlClient

    config, ports = _served_config(tmp_path)
    control_port = ports[-1]
    serve = run_qnetlab("sim", "serve", str(config), "--control-port", str(control_port),
                        "--max-seconds", "600")
    serve.wait_for(r"serving; Ctrl-C to stop", key="out")
    client = ControlClient(control_port)
    try:
        assert client.request(op="ping")["ok"]
    finally:
        client.close()
    os.kill(serve.proc.pid, getattr(signal, signame))
    assert serve.finish() == 0, serve.text
    assert "Traceback" not in serve.text["err"]
    assert f"stopped ({signame})" in serve.text["err"]
    taken = [port for port in ports if not _port_is_free(port)]
    assert not taken, f"ports still taken after sim serve stopped: {taken}"



def test_sim_serve_under_nohup_ignores_sighup(tmp_path):
    from qnetlab.sim_instruments.server import ControlClient

    config, ports = _served_config(tmp_path)
    control_port = ports[-1]
    # As `nohup` starts it: SIGHUP ignored from the start, which the server must respect.
    proc = subprocess.Popen(
        [sys.executable, "-m", "qnetlab", "sim", "serve", str(config), "--control-port",
         str(control_port), "--max-seconds", "600"], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    serve = Output(proc)
    serve.wait_for(r"serving; Ctrl-C to stop", key="out")
    os.kill(proc.pid, signal.SIGHUP)
    client = ControlClient(control_port)  # still serving: a request needs the loop to run
    try:
        assert client.request(op="ping")["ok"]
        assert client.request(op="ping")["ok"]
    finally:
        client.close()
    assert proc.poll() is None
    os.kill(proc.pid, signal.SIGTERM)
    assert serve.finish() == 0, serve.text


def test_free_ports_come_from_the_configured_range_and_a_bad_range_is_named(monkeypatch):
    from qnetlab.sim_instruments.ports import PORT_RANGE_ENV, free_port_run

    monkeypatch.setenv(PORT_RANGE_ENV, "23000-23100")
    base = free_port_run(4)
    assert base >= 23000 and base + 4 < 23100
    monkeypatch.setenv(PORT_RANGE_ENV, "23100-23000")
    with pytest.raises(ValueError, match=f"{PORT_RANGE_ENV}='23100-23000': expected low-high"):
        free_port_run(4)
