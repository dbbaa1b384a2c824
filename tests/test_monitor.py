"""`qnetlab monitor` without a browser: the state's bounds, the panels' text (units through
the SI formatter, hostile names escaped), one Bokeh document per session streaming with a
bounded history, the server over a real telemetry socket, and the command line.

The browser itself: tests/test_monitor_browser.py.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from qnetlab.cli import main
from qnetlab.instruments.errors import ConfigError
from qnetlab.monitor import DEFAULT_PORT, MonitorServer, MonitorState, panels
from qnetlab.monitor.state import MAX_SEQUENCES, MAX_SERIES
from qnetlab.network.keys import generate_lab_keys
from qnetlab.network.telemetry import (
    CalibrationStates,
    LinkStatistics,
    NodeStatus,
    SequenceProgress,
    TelemetryPublisher,
    ValueReading,
)
from qnetlab.network.telemetry_config import telemetry_key_names

from conftest import bench_on_free_ports, wait_until

REPO = Path(__file__).resolve().parents[1]
T0 = 1_800_000_000.0


class Clock:
    """The monitor's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def reading(name: str, value: float, unit: str, kind: str = "", t: float = T0,
            source: str = "bench") -> ValueReading:
    return ValueReading(source, name, value, unit, t, kind)


# --- the state ---------------------------------------------------------------------------

def test_history_per_series_stays_bounded_after_many_messages() -> None:
    state = MonitorState(["bench"], history=100)
    for i in range(20_000):
        state.fold_all([reading("fridge.mxc_temperature", 0.01 + i * 1e-9, "K",
                                "mxc_temperature", T0 + i)])
    series = state.series["bench/fridge.mxc_temperature"]
    assert len(series.points) == 100
    assert series.count == 20_000
    assert series.points[-1] == (T0 + 19_999, pytest.approx(0.01 + 19_999e-9))
    # A reader that saw 19_990 points gets the 10 new ones; one that fell behind gets the
    # ring, never more.
    assert len(series.since(19_990)) == 10
    assert len(series.since(0)) == 100


def test_a_republished_cache_is_one_point() -> None:
    state = MonitorState(["bench"], history=10)
    for _ in range(50):
        state.fold_all([reading("fridge.temperature", 0.01, "K", "mxc_temperature", T0)])
    state.fold_all([reading("fridge.temperature", 0.02, "K", "mxc_temperature", T0 + 1)])
    assert list(state.series["bench/fridge.temperature"].points) == [(T0, 0.01), (T0 + 1, 0.02)]
    assert state.received == 51


def test_invented_names_cannot_grow_the_monitor() -> None:
    state = MonitorState(["bench"], history=10)
    state.fold_all(reading(f"x.p{i}", 1.0, "V") for i in range(MAX_SERIES + 25))
    assert len(state.series) == MAX_SERIES
    assert state.dropped == 25


def test_many_sequences_keep_the_newest_first() -> None:
    state = MonitorState(["bench"])
    state.fold_all(SequenceProgress("bench", f"seq{i}", 1, 1, "", "finished", "", T0 + i)
                   for i in range(MAX_SEQUENCES + 10))
    shown = [p.sequence for p in state.view({}, 5.0).sequences]
    assert len(shown) == MAX_SEQUENCES
    assert shown[0] == f"seq{MAX_SEQUENCES + 9}" and "seq9" not in shown


def test_silent_publishers_are_named_with_their_silence() -> None:
    clock = Clock()
    state = MonitorState(["bench", "station"], clock=clock)
    clock.now += 3
    state.fold_all([reading("fridge.mxc_temperature", 0.01, "K", "mxc_temperature")])
    clock.now += 4
    with state.lock:
        assert state.silent(5.0) == [("station", pytest.approx(7.0))]
    clock.now += 10
    with state.lock:
        assert dict(state.silent(5.0)) == {"station": pytest.approx(17.0),
                                           "bench": pytest.approx(14.0)}


def test_a_view_hands_each_session_only_its_new_points() -> None:
    state = MonitorState(["bench"])
    state.fold_all(reading("setup.pump_power", p, "W", "pump_power", T0 + i)
                   for i, p in enumerate([1e-3, 2e-3, 3e-3]))
    first = state.view({}, 5.0)
    assert first.new_points["bench/setup.pump_power"] == [(T0, 1e-3), (T0 + 1, 2e-3),
                                                          (T0 + 2, 3e-3)]
    state.fold_all([reading("setup.pump_power", 4e-3, "W", "pump_power", T0 + 3)])
    second = state.view(first.counts, 5.0)
    assert second.new_points == {"bench/setup.pump_power": [(T0 + 3, 4e-3)]}


# --- the panels --------------------------------------------------------------------------

def _full_state(clock: Clock) -> MonitorState:
    state = MonitorState(["bench"], clock=clock)
    state.fold_all([
        reading("fridge.mxc_temperature", 0.0123, "K", "mxc_temperature"),
        reading("fridge.mxc_ceiling", 0.015, "K", "mxc_ceiling"),
        reading("setup.pump_power", 2.5e-6, "W", "pump_power"),
        reading("setup.pump_on", 1.0, "", "pump_on"),
        reading("mw.power", -10.0, "dBm", "mw_power"),
        reading("snspd.count_rate", 1234.5, "Hz", "count_rate"),
        SequenceProgress("bench", "characterize", 3, 7, "efficiency_map", "paused",
                         "mixing chamber 16 mK above its 15 mK ceiling", T0),
        CalibrationStates("bench", (NodeStatus("dark_counts", "in spec", 120.0, 3600.0),
                                    NodeStatus("efficiency", "never calibrated", None, None)),
                          T0),
        LinkStatistics("orchestrator", "node_a-node_b", 35.2, 100, 0.93, 12e-6, 40e-6,
                       {"expired": 2, "lost": 1, "disagreed": 0}, T0),
    ])
    return state


def test_values_show_with_si_units_and_micro() -> None:
    clock = Clock()
    view = _full_state(clock).view({}, 5.0)
    text = panels.values_html(view, clock.now + 2)
    for shown in ("12.3 mK", "15 mK", "2.5 µW", "on", "-10 dBm", "1.2345 kHz", "2 s"):
        assert shown in text, shown
    assert "uW" not in text


def test_paused_sequence_calibration_and_links_are_shown() -> None:
    clock = Clock()
    view = _full_state(clock).view({}, 5.0)
    sequences = panels.sequences_html(view, clock.now)
    assert "PAUSED" in sequences and "16 mK above its 15 mK ceiling" in sequences
    assert "3/7" in sequences
    calibration = panels.calibration_html(view, clock.now + 60)
    assert "in spec" in calibration and "3 min" in calibration  # 120 s old + 60 s since
    assert "never calibrated" in calibration and "60 min" in calibration
    links = panels.links_html(view, clock.now)
    for shown in ("35.2 Hz", ">100<", "0.93", "12 µs", "40 µs", "expired: 2", "lost: 1",
                  "disagreed: 0"):
        assert shown in links, shown


def test_running_sequences_come_first_and_the_table_stays_short() -> None:
    state = MonitorState(["bench"])
    state.fold_all(SequenceProgress("bench", f"done{i}", 2, 2, "", "finished", "", T0 + i)
                   for i in range(20))
    state.fold_all([SequenceProgress("bench", "efficiency_map", 1, 8, "pump 2 mW", "paused",
                                     "fridge too warm", T0 - 100)])
    text = panels.sequences_html(state.view({}, 5.0), T0 + 30)
    assert text.count("<tr>") == 1 + panels.SEQUENCE_ROWS + 1  # header, rows, "earlier"
    assert text.index("efficiency_map") < text.index("done19") and "done0" not in text
    assert f"and {21 - panels.SEQUENCE_ROWS} earlier" in text


def test_names_off_the_wire_are_escaped() -> None:
    state = MonitorState(["bench"])
    state.fold_all([reading("x.<script>alert(1)<\\script>", 1.0, "V"),
                    SequenceProgress("bench", "seq", 1, 2, "<img src=x>", "stopped",
                                     "<b>why</b>", T0)])
    view = state.view({}, 5.0)
    html = panels.values_html(view, T0) + panels.sequences_html(view, T0)
    assert "<script>" not in html and "<img" not in html and "<b>why" not in html
    assert "&lt;script&gt;" in html


# --- one Bokeh document per session -------------------------------------------------------

def test_each_session_streams_a_bounded_history() -> None:
    from bokeh.document import Document

    from qnetlab.monitor.page import MonitorSession, MonitorSettings

    state = MonitorState(["bench"], history=50)
    settings = MonitorSettings(title="test")
    sessions = [MonitorSession(Document(), state, settings, lambda: 0) for _ in range(2)]
    for block in range(10):
        state.fold_all(reading("fridge.mxc_temperature", 0.01 + i * 1e-6, "K",
                               "mxc_temperature", T0 + i)
                       for i in range(block * 30, block * 30 + 30))
        for session in sessions:
            session.refresh()
    for session in sessions:
        source = session.sources["bench/fridge.mxc_temperature"]
        assert source is not None
        assert len(source.data["v"]) == 50  # rolled over: the newest 50 of 300
        assert source.data["v"][-1] == pytest.approx(0.01 + 299e-6)
        assert source.data["t"][-1] == pytest.approx(1000 * (T0 + 299))
        assert "10.299 mK" in session.divs["values"].text


def test_a_network_page_shows_its_links_and_no_empty_fridge_panels() -> None:
    from bokeh.document import Document

    from qnetlab.monitor.page import MonitorSession, MonitorSettings

    clock = Clock()
    state = MonitorState(["orchestrator"], clock=clock)
    session = MonitorSession(Document(), state, MonitorSettings(title="net"), lambda: 0)
    assert not any(plot.visible for plot in session.plots.values())
    assert not session.divs["links"].visible
    state.fold_all([LinkStatistics("orchestrator", "node_a-node_b", 35.2, 100, 0.93, 12e-6,
                                   40e-6, {"expired": 2}, T0)])
    session.refresh()
    assert session.divs["links"].visible and "35.2 Hz" in session.divs["links"].text
    assert session.plots["herald_rate"].visible and session.plots["delivered"].visible
    assert not session.plots["mxc_temperature"].visible


def test_a_session_that_fell_behind_the_ring_gets_the_ring_not_a_gap() -> None:
    from bokeh.document import Document

    from qnetlab.monitor.page import MonitorSession, MonitorSettings

    state = MonitorState(["bench"], history=10)
    session = MonitorSession(Document(), state, MonitorSettings(title="t"), lambda: 0)
    state.fold_all(reading("setup.pump_power", i * 1e-3, "W", "pump_power", T0 + i)
                   for i in range(5))
    session.refresh()
    state.fold_all(reading("setup.pump_power", i * 1e-3, "W", "pump_power", T0 + i)
                   for i in range(5, 100))  # 95 new points, the ring holds 10
    session.refresh()
    source = session.sources["bench/setup.pump_power"]
    assert source is not None
    assert source.data["t"] == [1000 * (T0 + i) for i in range(90, 100)]


# --- the server over a real socket --------------------------------------------------------

@pytest.fixture
def publisher():
    with TelemetryPublisher("tcp://127.0.0.1:*", key_dir=None, name="bench") as pub:
        yield pub


def test_server_folds_telemetry_and_serves_bokehjs_from_the_wheel(
        publisher, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOKEH_RESOURCES", "cdn")  # labs are offline: the setting is ignored
    with MonitorServer({"bench": publisher.address}, None, title="t", port=0) as server:
        def arrived() -> bool:
            publisher.publish(reading("fridge.mxc_temperature", 0.012, "K",
                                      "mxc_temperature", time.time()))
            return "bench/fridge.mxc_temperature" in server.state.series
        wait_until(arrived, 30.0, "telemetry at the monitor")
        page = urllib.request.urlopen(server.url, timeout=30).read().decode()
        assert "cdn" not in page.lower()
        assert 'src="/static/js/bokeh.min.js' in page
        js = urllib.request.urlopen(server.url + "static/js/bokeh.min.js", timeout=30)
        assert js.status == 200
        feeds = [t for t in threading.enumerate() if t.name == "monitor-feed"]
        assert len(feeds) == 1
    assert not [t for t in threading.enumerate() if t.name.startswith("monitor-")]


def test_port_in_use_is_a_config_error_naming_the_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = MonitorServer({"bench": "tcp://127.0.0.1:1"}, None, title="t", port=port)
        with pytest.raises(ConfigError, match=rf"port {port}.*--port"):
            server.start()


# --- the command line ----------------------------------------------------------------------

def test_monitor_help_lists_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["monitor", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for option in ("--port", "--host", "--max-seconds", "config"):
        assert option in out
    assert f"default {DEFAULT_PORT}" in out


def test_bad_config_is_a_config_error(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert "nope.yaml" in err and "no such file" in err
    assert main(["monitor", str(REPO / "lab_configs/detection_chain.yaml")]) == 2
    err = capsys.readouterr().err
    assert "qnetlab.telemetry" in err and "publishes no telemetry" in err


def test_monitor_serves_then_stops_by_itself(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "configs").mkdir()
    path, _ = bench_on_free_ports(tmp_path / "configs")
    key_dir, names = telemetry_key_names(path)
    generate_lab_keys(key_dir, names)  # as `qnetlab keys CONFIG` makes them
    assert main(["monitor", str(path), "--port", "0", "--max-seconds", "0.5"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"monitor: http://127\.0\.0\.1:\d+/", out)
    assert "telemetry from transducer_bench: tcp://127.0.0.1:" in out
    assert "monitor: stopped" in out
    assert not [t for t in threading.enumerate() if t.name.startswith("monitor-")]


def test_a_missing_monitor_key_is_a_config_error(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "configs").mkdir()
    path, _ = bench_on_free_ports(tmp_path / "configs")
    assert main(["monitor", str(path), "--port", "0", "--max-seconds", "0"]) == 2
    assert "qnetlab keys" in capsys.readouterr().err
