"""The network's hardware-in-the-loop rehearsal: `qnetlab sim serve NETWORK` serves every lab of
a network config (both node labs and the heralding station's lab, its tagger twin streaming
the simulated link) on their real addresses in one process, and `qnetlab bringup NETWORK
--profile real` brings the network up against it over real transports.

The fast tests here: how `sim serve` tells a network config from a lab config, and the sim
profile's ground-truth join (`qnetlab.link.join_truth`), on hand-made arrays. The rehearsal
itself is one process test (marked slow).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from qnetlab.cli import main
from qnetlab.link import _format, delivered_attempts, join_truth
from qnetlab.network.lab import LinkReport
from qnetlab.sim_instruments.ports import free_port_run
from qnetlab.sim_instruments.server import ControlClient

from conftest import REPO, network_lab_on_free_ports

TWIN_TRUTH = np.dtype([("attempt_id", "<u8"), ("sync_ps", "<i8"), ("bell_state", "u1"),
                       ("fidelity", "<f4"), ("genuine", "?")])
"""The tagger twin's truth rows (sim_instruments.link_events.TWIN_TRUTH_DTYPE), written out so
these tests hold the join to the layout the brief fixes."""


# -- sim serve: which kind of config -------------------------------------------------------------

@pytest.mark.parametrize(("text", "problem"), [
    ("instruments: {}\nnetwork: {}\n", "has both 'instruments:' and 'network:'"),
    ("stations: {}\nlinks: {}\n", "neither a lab config nor a network config (top-level "
                                  "keys: links, stations)"),
    ("- a list\n", "neither a lab config nor a network config (top-level keys: none)"),
    ("key: [unclosed\n", "not valid YAML"),
])
def test_sim_serve_of_neither_kind_exits_2_naming_the_file_and_both_kinds(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, problem: str) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    assert main(["sim", "serve", str(path), "--max-seconds", "1"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and problem in err
    if "YAML" not in problem:
        assert "two_node_link.yaml" in err and "node_a_lab.yaml" in err  # the fix: examples


def test_sim_serve_of_a_missing_file_exits_2(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "serve", str(tmp_path / "nothing.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_sim_serve_of_a_network_whose_node_names_no_lab_exits_2_naming_the_entry(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ruamel.yaml import YAML

    config = network_lab_on_free_ports(tmp_path)
    yaml = YAML(typ="safe")
    document = yaml.load(config.read_text())
    del document["nodes"]["node_b"]["station"]
    with config.open("w") as out:
        yaml.dump(document, out)
    assert main(["sim", "serve", str(config), "--max-seconds", "1"]) == 2
    err = capsys.readouterr().err
    assert "nodes.node_b.station: node node_b names no lab of its own" in err
    assert "add 'station: <its lab config>.yaml'" in err


# -- the sim profile's ground truth, joined to the delivered pairs --------------------------------

def _truth(rows: list[tuple[int, float, bool]]) -> np.ndarray:
    truth = np.zeros(len(rows), TWIN_TRUTH)
    for i, (attempt, fidelity, genuine) in enumerate(rows):
        truth[i] = (attempt, attempt * 1_000_000, 0, fidelity, genuine)
    return truth


def test_join_truth_keeps_the_delivered_attempts_only() -> None:
    truth = _truth([(3, 0.9, True), (5, 0.7, True), (8, 0.25, False), (9, 0.95, True)])
    joined = join_truth(truth, np.array([3, 8, 9], np.uint64), Path("t.npy"))
    assert (joined.delivered, joined.with_truth, joined.genuine) == (3, 3, 2)
    assert joined.fidelity_mean == pytest.approx((0.9 + 0.25 + 0.95) / 3, rel=1e-6)
    fids = np.array([0.9, 0.25, 0.95])
    assert joined.fidelity_stderr == pytest.approx(fids.std(ddof=1) / np.sqrt(3), rel=1e-6)
    assert joined.genuine_fraction == pytest.approx(2 / 3)


def test_a_delivered_pair_without_a_truth_row_counts_as_not_genuine() -> None:
    """No detector clicked in a true arrival window of its attempt: dark counts heralded it."""
    truth = _truth([(1, 0.9, True)])
    joined = join_truth(truth, np.array([1, 2, 2], np.uint64), Path("t.npy"))
    assert (joined.delivered, joined.with_truth, joined.genuine) == (2, 1, 1)
    assert joined.genuine_fraction == 0.5
    assert joined.fidelity_mean == pytest.approx(0.9)


def test_a_truth_row_saved_twice_is_counted_once() -> None:
    """The twin saves its truth periodically and at the end: a row may appear twice."""
    truth = _truth([(4, 0.8, True), (4, 0.8, True), (6, 0.6, True)])
    joined = join_truth(truth, np.array([4, 6], np.uint64), Path("t.npy"))
    assert (joined.delivered, joined.with_truth, joined.genuine) == (2, 2, 2)
    assert joined.fidelity_mean == pytest.approx(0.7, rel=1e-6)


def test_each_heralded_bell_state_is_held_against_the_world_s() -> None:
    truth = _truth([(1, 0.9, True), (2, 0.8, True), (3, 0.3, False), (4, 0.7, True)])
    truth["bell_state"] = [0, 1, 255, 1]  # attempt 3: the world would herald nothing
    heralds = np.zeros(4, [("attempt_id", "<u8"), ("bell_state", "u1")])
    heralds["attempt_id"] = [1, 2, 3, 4]
    heralds["bell_state"] = [0, 0, 1, 1]  # attempt 2 heralded as the wrong state
    joined = join_truth(truth, np.array([1, 2, 3, 4], np.uint64), Path("t.npy"), heralds)
    assert (joined.bell_checked, joined.bell_agree) == (3, 2)
    assert join_truth(truth, np.array([1], np.uint64), Path("t.npy")).bell_checked == 0


def test_nothing_delivered_joins_to_nothing() -> None:
    joined = join_truth(_truth([(1, 0.9, True)]), np.zeros(0, np.uint64), Path("t.npy"))
    assert (joined.delivered, joined.with_truth) == (0, 0)
    assert np.isnan(joined.fidelity_mean) and np.isnan(joined.genuine_fraction)


def test_delivered_attempts_are_those_both_node_logs_hold_as_delivered(tmp_path: Path) -> None:
    from qnetlab.network.node_state import PAIR_LOG_DTYPE, PairEvent

    def log(node: str, rows: list[tuple[int, int, int, PairEvent]]) -> None:
        out = np.zeros(len(rows), PAIR_LOG_DTYPE)
        for i, (link, seq, attempt, event) in enumerate(rows):
            out[i] = (link, seq, attempt, 0, 0, 1, int(event))
        out.tofile(tmp_path / f"{node}_pairs.bin")

    log("node_a", [(0, 0, 10, PairEvent.OK_SENT), (0, 0, 10, PairEvent.DELIVERED),
                   (0, 1, 12, PairEvent.DELIVERED), (0, 2, 15, PairEvent.RELEASED),
                   (1, 0, 99, PairEvent.DELIVERED)])  # another link's pair
    log("node_b", [(0, 0, 10, PairEvent.DELIVERED), (0, 1, 12, PairEvent.DELIVERED),
                   (0, 2, 15, PairEvent.OK_SENT)])
    assert delivered_attempts(tmp_path, ["node_a", "node_b"], 0).tolist() == [10, 12]
    assert delivered_attempts(tmp_path, ["node_a", "node_b", "node_c"], 0).tolist() == []


def _report(delivered: int) -> LinkReport:
    return LinkReport(
        delivered=delivered, requested=delivered, delivered_from="orchestrator", agree=True,
        nodes_logged=True, rate_hz=50.0, herald_rate_hz=55.0, latency_s=np.zeros(0),
        handoff_latency_s=np.full(4, 2e-4), clock={}, errors={"lost": 0}, failed="")


def test_the_summary_labels_ground_truth_as_the_simulation_s_and_the_real_profile_has_none(
        ) -> None:
    node = SimpleNamespace(fibre_length_km=2.0)
    config = SimpleNamespace(link=SimpleNamespace(id=0, scheme="two_click",
                                                  nodes=("node_a", "node_b")),
                             nodes={"node_a": node, "node_b": node})
    plan = SimpleNamespace(run_dir=Path("/runs/x"))
    truth = join_truth(_truth([(1, 0.9, True), (2, 0.8, False)]),
                       np.array([1, 2], np.uint64), Path("t.npy"))
    sim = _format(config, plan, _report(2), 50.0, 0.6, truth=truth, profile="sim")
    assert re.search(r"fidelity\s+0\.850 ± 0\.050\s+0\.600\s+\(simulation ground truth of 2 "
                     r"delivered pairs; genuine 1 of 2 = 0\.500\)", sim), sim
    assert "profile sim" in sim and "station hand-off" in sim
    assert "Bell state heralded" not in sim  # no heralds given: nothing checked
    real = _format(config, plan, _report(2), 50.0, 0.6, truth=None, profile="real")
    assert "profile real" in real and "ground truth" not in real and "genuine" not in real
    assert re.search(r"fidelity\s+not measured\s+0\.600", real), real


# -- the rehearsal ---------------------------------------------------------------------------------

DEADLINE_S = 600.0
"""Generous: a cold bring-up over TCP on a loaded 2-core machine."""


class _Served:
    """`qnetlab sim serve` in its own process; its output read on a thread, so the test can
    wait for the line that says it is serving (never a fixed time)."""

    def __init__(self, config: Path, control_port: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qnetlab", "sim", "serve", str(config), "--max-seconds",
             str(DEADLINE_S + 60), "--control-port", str(control_port)],
            cwd=REPO, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.text = ""
        self.serving = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.text += line
            if line.startswith("serving;"):
                self.serving.set()
        self.serving.set()  # ended: the waiter checks whether it still runs

    def wait_serving(self) -> None:
        assert self.serving.wait(120), f"sim serve did not come up:\n{self.text}"
        assert self.proc.poll() is None, f"sim serve ended:\n{self.text}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self._thread.join(10)
        return code


def _qnetlab(*args: str, timeout: float = DEADLINE_S) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "qnetlab", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done


@pytest.mark.slow
@pytest.mark.processes
@pytest.mark.timeout(300)  # two node calibrations and a real-profile bring-up: ~90 s when busy
def test_bringup_on_the_real_profile_against_sim_serve_of_the_network_delivers_pairs(
        tmp_path: Path) -> None:
    """The station's calibrations, the link's and the delivery run over real transports
    against the served twins. The node labs are calibrated beforehand on the sim profile:
    their transducer characterization waits for the fridge in real time over TCP (the
    served world is paced), which takes tens of minutes, not a test's time; their fresh
    values are then only checked by the bring-up, as on a lab whose nodes are up."""
    config = network_lab_on_free_ports(tmp_path)
    _qnetlab("keys", str(config))
    for lab in ("node_a_lab.yaml", "node_b_lab.yaml"):
        _qnetlab("calibrate", str(config.parent / lab), "--quiet")
    control = free_port_run(3)
    served = _Served(config, control)
    try:
        served.wait_serving()
        # Every lab of the network is served: both nodes' instruments and the station's,
        # each lab with its own control port, in the printed order.
        for i, (lab, instrument) in enumerate((("node_a", "mw_source"), ("node_b", "vna"),
                                               ("station", "snspd"))):
            assert re.search(rf"^{lab}\s+{instrument}\s", served.text, re.MULTILINE), \
                served.text
            assert f"control port ({lab}): 127.0.0.1:{control + i}" in served.text
            client = ControlClient(control + i)
            try:
                assert instrument in client.request(op="ping")["ports"]
            finally:
                client.close()
        started = time.monotonic()
        bringup = _qnetlab("bringup", str(config), "--profile", "real", "--pairs", "20",
                           "--quiet")
        took = time.monotonic() - started
    finally:
        code = served.stop()
    assert code == 0, served.text
    # Measured over the served twins: the station's detectors, both arms, the heralding.
    for node in ("station.detector_efficiency_ch1", "station.dark_counts",
                 "link.arm_delay_node_a", "link.arm_delay_node_b", "link.heralding"):
        assert re.search(rf"^CALIBRATED {re.escape(node)}: good", bringup.stdout,
                         re.MULTILINE), bringup.stdout
    assert "fresh, nothing measured: node_a.dark_counts" in bringup.stdout
    (report,) = (tmp_path / "lab_data").glob("bringup_*.json")
    summary = json.loads(report.read_text())["summary"]
    assert str(summary["pairs delivered"]).startswith("20 of 20, both nodes agree: yes")
    # A real bench knows no ground truth: nothing of the simulation's shows.
    assert "ground truth" not in bringup.stdout and "genuine" not in bringup.stdout
    assert "profile real" in bringup.stdout
    print(f"rehearsal bring-up took {took:.0f} s")
