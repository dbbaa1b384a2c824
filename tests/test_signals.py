"""SIGTERM and SIGHUP stop a verb that drives instruments exactly as Ctrl-C does: the bench is
put back, an interrupted run keeps its points and says where it stopped, exit code 130.

Real processes throughout: `qnetlab sim serve` (the `served_bench` fixture, or one started
here) and `python -m qnetlab ...` as a subprocess, signalled with `os.kill`. Each test waits
for what it needs (a progress line, a control-port answer), never for a fixed time.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from qnetlab.instruments.lab_config import load_config

from conftest import BENCH_CONFIG, REPO, bench_on_free_ports, network_lab_on_free_ports

pytestmark = [pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
              pytest.mark.slow, pytest.mark.processes]

DEADLINE_S = 120.0
"""Generous: a noisy 2-core CI box, and the run's own settle times."""


class _Output:
    """A subprocess's stdout and stderr, read on threads, so a test can wait for a pattern
    (the progress bar redraws with '\\r', so lines never end while a run measures)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.text = {"out": "", "err": ""}
        self._changed = threading.Condition()
        self._threads = [threading.Thread(target=self._pump, args=(key, stream), daemon=True)
                         for key, stream in (("out", proc.stdout), ("err", proc.stderr))]
        for thread in self._threads:
            thread.start()

    def _pump(self, key: str, stream: object) -> None:
        fd = stream.fileno()  # type: ignore[attr-defined]
        while chunk := os.read(fd, 4096):
            with self._changed:
                self.text[key] += chunk.decode(errors="replace")
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, key: str = "err") -> re.Match[str]:
        deadline = time.monotonic() + DEADLINE_S
        with self._changed:
            while (match := re.search(pattern, self.text[key])) is None:
                if self.proc.poll() is not None and not any(t.is_alive()
                                                            for t in self._threads):
                    pytest.fail(f"process ended ({self.proc.returncode}) before "
                                f"{pattern!r}:\n{self.text}")
                if time.monotonic() > deadline:
                    pytest.fail(f"no {pattern!r} within {DEADLINE_S} s:\n{self.text}")
                self._changed.wait(0.5)
        return match

    def finish(self) -> int:
        try:
            code = self.proc.wait(DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"still running {DEADLINE_S} s after the signal:\n{self.text}")
        for thread in self._threads:
            thread.join(10)
        return code


def _qnetlab(*args: str) -> _Output:
    # Unbuffered: "Connected to: ..." must reach the pipe when it is printed.
    proc = subprocess.Popen([sys.executable, "-m", "qnetlab", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return _Output(proc)


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
    run = _qnetlab("run", "efficiency_map", str(config), "--profile", "real", "--db", str(db),
                   "--set", "powers=8", "--set", "settle_time=1.0")
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
    characterize = _qnetlab("characterize", str(BENCH_CONFIG), "--db", str(db))
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
        check = _qnetlab("check", str(config), "--profile", "real")
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
    serve = _qnetlab("sim", "serve", str(config), "--control-port", str(control_port),
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
    serve = _Output(proc)
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


# -- link -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def calibrated_network(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped two-node network (and the labs it names) on free ports, with its CURVE
    keys generated and its calibration graph brought up (`qnetlab link` takes its heralding
    windows and expectation from the calibrations: it refuses an uncalibrated link)."""
    config = network_lab_on_free_ports(tmp_path_factory.mktemp("network"))
    for verb in (["keys", str(config)], ["calibrate", str(config), "--quiet"]):
        done = subprocess.run([sys.executable, "-m", "qnetlab", *verb], cwd=REPO,
                              capture_output=True, text=True, timeout=DEADLINE_S * 5)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return config


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found |= {int(p) for p in task.read_text().split()}
    return found


def _running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_signal_stops_link_and_every_process_it_started(calibrated_network, signame):
    config = calibrated_network
    runs = config.parent.parent / "lab_data" / "runs" / "two_node_link"
    before = set(runs.glob("*"))  # an earlier test's run folders
    link = _qnetlab("link", str(config), "--pairs", "1000000")
    # Serving: both node agents have opened their event logs in this run's folder.
    deadline = time.monotonic() + DEADLINE_S

    def logs() -> int:
        return sum(len(list(run.glob("node_*_events.jsonl")))
                   for run in set(runs.glob("*")) - before)

    while not (logs() == 2 and len(_children(link.proc.pid)) >= 4):
        assert link.proc.poll() is None, link.text
        assert time.monotonic() < deadline, f"the link did not start: {link.text}"
        time.sleep(0.05)
    children = _children(link.proc.pid)
    os.kill(link.proc.pid, getattr(signal, signame))
    assert link.finish() == 130, link.text
    # The link's own SIGTERM handler (network._proc.sigterm_as_interrupt) says "interrupted".
    assert re.search(rf"qnetlab: (stopped by {signame}|interrupted)", link.text["err"])
    assert "Traceback" not in link.text["err"]
    deadline = time.monotonic() + DEADLINE_S
    while left := [pid for pid in children if _running(pid)]:
        assert time.monotonic() < deadline, f"processes left running: {left}"
        time.sleep(0.05)


def test_free_ports_come_from_the_configured_range_and_a_bad_range_is_named(monkeypatch):
    from qnetlab.sim_instruments.ports import PORT_RANGE_ENV, free_port_run

    monkeypatch.setenv(PORT_RANGE_ENV, "23000-23100")
    base = free_port_run(4)
    assert base >= 23000 and base + 4 < 23100
    monkeypatch.setenv(PORT_RANGE_ENV, "23100-23000")
    with pytest.raises(ValueError, match=f"{PORT_RANGE_ENV}='23100-23000': expected low-high"):
        free_port_run(4)
