"""The bridge's timeline live on `qnetlab monitor` (issue 15, item 4: "a timeline figure
(switch configurations and requests over time) ... on the live monitor").

The orchestrator publishes each station's switch configurations and each request's life as
telemetry (`SwitchConfiguration`, `RequestEvent`: network/bridge/bridge_telemetry.py); the
monitor folds them into a lane per station and a line per request (qnetlab/monitor/
timeline.py) and draws them. Here: the messages on the wire and hostile frames (no
processes), the timeline the telemetry makes from a scheduler's decisions against the one
`qnetlab bridge`'s report reads from them, the page's sources, the command line with a bridge
config, and one orchestrator process (sim profile: the Polatis twin in the loop, seed 1) fed
through `BridgeClient` whose timeline the monitor's model shows as its decision log has it.
"""

from __future__ import annotations

import json
import math
import re
import threading
from pathlib import Path
from typing import Any

import pytest
import zmq

from qnetlab.bridge_report import read_timeline
from qnetlab.cli import main
from qnetlab.instruments.errors import ConfigError
from qnetlab.monitor import MonitorServer, MonitorState, panels
from qnetlab.monitor.timeline import MAX_REQUESTS, request_columns, switch_columns
from qnetlab.network import ProcessGroup
from qnetlab.network.bridge import Decision, Scheduler, load_bridge_config, simulate
from qnetlab.network.bridge.bridge_telemetry import TimelineTelemetry, bridge_endpoints
from qnetlab.network.bridge.client import BridgeClient, BridgeRefusedError
from qnetlab.network.bridge.service import BridgeServiceSettings, run_bridge_orchestrator
from qnetlab.network.bridge.topology import bridge_topology
from qnetlab.network.bridge.wire import Cancelled, Delivered, Transferred
from qnetlab.network.bridge.workload_generators import shipped_workloads
from qnetlab.network.keys import generate_lab_keys
from qnetlab.network.telemetry import TelemetryError, TelemetryPublisher, decode, encode
from qnetlab.network.telemetry_messages import RequestEvent, SwitchConfiguration

from conftest import REPO, wait_until

BRIDGE = REPO / "lab_configs" / "bridge_8.yaml"
T0 = 1_800_000_000.0
SOURCE = "bridge_orchestrator"


def config(station: str = "s0", qnus: tuple[str, ...] = ("qnu0", "qnu1"), at: float = 1.0,
           settled: float | None = 1.025) -> SwitchConfiguration:
    return SwitchConfiguration(SOURCE, station, qnus, at, settled if qnus else None,
                               "why", T0)


def event(request: str, state: str, at: float, station: str = "", code: str = "",
          qnus: tuple[str, ...] = ("qnu0", "qnu1")) -> RequestEvent:
    return RequestEvent(SOURCE, request, qnus, state, station, code, at, T0)


# --- the messages ------------------------------------------------------------------------

def test_timeline_messages_cross_the_wire_unchanged() -> None:
    for message in (config(), config(qnus=()), event("app/r1", "accepted", 0.5),
                    event("app/r1", "err", 2.0, "s1", "TIMEOUT")):
        frames = encode(message)
        kind = "switch" if isinstance(message, SwitchConfiguration) else "request"
        assert frames[0] == f"{SOURCE}/{kind}".encode()
        assert decode(frames) == message


def _payload(message: Any, **changes: Any) -> list[bytes]:
    topic, payload = encode(message)
    data = json.loads(payload[1:])
    for key, value in changes.items():
        if value is KeyError:
            del data[key]
        else:
            data[key] = value
    return [topic, payload[:1] + json.dumps(data).encode()]


HOSTILE = [
    (config(), {"qnus": ["qnu0", "qnu1", "qnu2"]}, "qnus"),
    (config(), {"qnus": "qnu0-qnu1"}, "qnus"),
    (config(), {"qnus": ["qnu0", "qnu0"]}, "twice"),
    (config(), {"qnus": ["qnu0", "a/b"]}, "qnus"),
    (config(), {"qnus": ["qnu0", 7]}, "qnus"),
    (config(), {"station": ""}, "station"),
    (config(), {"at": -1.0}, "at"),
    (config(), {"at": "soon"}, "at"),
    (config(), {"at": 10**400}, "at"),
    (config(), {"at": float("nan")}, "payload"),
    (config(), {"settled_at": [1]}, "settled_at"),
    (config(), {"reason": "x" * 5000}, "reason"),
    (config(), {"extra": 1}, "unknown"),
    (config(), {"reason": KeyError}, "missing"),
    (event("app/r1", "served", 1.0, "s0"), {"state": "exploded"}, "state"),
    (event("app/r1", "served", 1.0, "s0"), {"qnus": ["qnu0"]}, "qnus"),
    (event("app/r1", "served", 1.0, "s0"), {"request": "app/\x00r1"}, "request"),
    (event("app/r1", "served", 1.0, "s0"), {"request": ""}, "request"),
    (event("app/r1", "served", 1.0, "s0"), {"station": "s/0"}, "station"),
    (event("app/r1", "served", 1.0, "s0"), {"code": 3}, "code"),
    (event("app/r1", "served", 1.0, "s0"), {"source": "someone_else"}, "topic"),
]


@pytest.mark.parametrize(("message", "changes", "field"), HOSTILE,
                         ids=[f"{i}-{f}" for i, (_, _, f) in enumerate(HOSTILE)])
def test_a_malformed_timeline_message_is_refused_naming_the_field(message: Any,
                                                                  changes: Any,
                                                                  field: str) -> None:
    with pytest.raises(TelemetryError, match=field):
        decode(_payload(message, **changes))


def test_the_monitor_counts_and_drops_hostile_timeline_frames() -> None:
    """Over a real socket: garbage on the timeline's topics is counted and dropped, the
    good message after it is folded; the monitor keeps serving."""
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    pub.linger = 0
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    hostile = [_payload(config(), **changes) for message, changes, _ in HOSTILE
               if isinstance(message, SwitchConfiguration)]
    hostile += [[b"bridge_orchestrator/switch", b"\x01{not json"],
                [b"bridge_orchestrator/request", b"\x02{}"],
                [b"bridge_orchestrator/switch"]]
    try:
        with MonitorServer({SOURCE: f"tcp://127.0.0.1:{port}"}, None, title="t",
                           port=0) as server:
            def heard() -> bool:
                for frames in hostile:
                    pub.send_multipart(frames)
                pub.send_multipart(encode(config()))
                return SOURCE in server.state.timelines
            wait_until(heard, 30.0, "the good timeline message at the monitor")
            assert server.malformed >= len(hostile)
            lane = server.state.timelines[SOURCE].lanes["s0"]
            assert [(s.qnus, s.start) for s in lane] == [(("qnu0", "qnu1"), 1.0)]
    finally:
        pub.close()
        context.term()


# --- the monitor's model -----------------------------------------------------------------

def test_the_monitor_keeps_a_lane_per_station_and_a_life_per_request() -> None:
    state = MonitorState([SOURCE])
    state.fold_all([
        config("s0", (), 0.0), config("s1", (), 0.0),  # the start: nothing connected
        event("app/r1", "accepted", 1.0), config("s0", ("qnu0", "qnu1"), 1.0, 1.025),
        config("s0", ("qnu0", "qnu1"), 1.0, 1.225),  # its stale path re-checked
        event("app/r1", "served", 1.0, "s0"),
        config("s0", ("qnu0", "qnu1"), 1.0, 1.225),  # republished: the same span
        event("app/r1", "delivered", 1.5, "s0"),
        # qnu1 moves to s1: s0 holds nothing from then
        event("app/r2", "accepted", 2.0, qnus=("qnu1", "qnu2")),
        config("s0", (), 2.0), config("s1", ("qnu1", "qnu2"), 2.0, 2.025),
        event("app/r2", "served", 2.0, "s1", qnus=("qnu1", "qnu2")),
        event("app/r3", "err", 2.1, code="UNSUPPORTED", qnus=("qnu3", "qnu4")),
        event("app/r4", "accepted", 2.2, qnus=("qnu5", "qnu6")),
        event("app/r4", "cancelled", 2.3, qnus=("qnu5", "qnu6")),
    ])
    timeline = state.timelines[SOURCE]
    s0 = [(s.qnus, s.start, s.settled, s.end) for s in timeline.lanes["s0"]]
    assert s0 == [((), 0.0, None, 1.0), (("qnu0", "qnu1"), 1.0, 1.225, 2.0), ((), 2.0, None, None)]
    changed = state.timeline_view(0)
    assert changed is not None
    version, snapshots = changed
    assert state.timeline_view(version) is None  # unchanged: a page redraws nothing
    switch = switch_columns(snapshots)
    assert list(zip(switch["lane"], switch["start"], switch["settled"], switch["end"],
                    switch["pair"], strict=True)) == [
        ("s0", 1.0, 1.225, 2.0, "qnu0-qnu1"), ("s1", 2.0, 2.025, 2.3, "qnu1-qnu2")]
    requests = request_columns(snapshots)
    assert requests["outcome"] == ["delivered", "open", "err", "cancelled"]
    assert requests["served"] == [1.0, 2.0, 2.1, 2.3]  # never served: all waiting
    assert requests["end"] == [1.5, 2.3, 2.1, 2.3]  # open: up to the latest time heard
    html = panels.bridge_html(snapshots)
    assert "qnu1-qnu2" in html and "delivered: 1" in html and "err: 1" in html


def test_the_timeline_stays_bounded_and_escapes_names() -> None:
    state = MonitorState([SOURCE])
    state.fold_all(event(f"app/r{i}", "accepted", float(i)) for i in range(MAX_REQUESTS + 50))
    assert len(state.timelines[SOURCE].requests) == MAX_REQUESTS
    assert state.dropped == 50
    assert "app/r0" not in state.timelines[SOURCE].requests  # the oldest forgotten first
    state.fold_all([config("<script>x", ("qnu0", "<b>q"), 1.0)])
    html = panels.bridge_html(state.timeline_view(0)[1])  # type: ignore[index]
    assert "<script>" not in html and "<b>q" not in html and "&lt;script&gt;" in html


def test_a_page_draws_the_timeline_when_it_comes() -> None:
    from bokeh.document import Document

    from qnetlab.monitor.page import MonitorSession, MonitorSettings

    state = MonitorState([SOURCE])
    session = MonitorSession(Document(), state, MonitorSettings(title="bridge"), lambda: 0)
    assert not session.timeline.layout.visible  # a lab's page has no bridge
    state.fold_all([config("s0", ("qnu0", "qnu1"), 1.0), config("s1", ("qnu2", "qnu3"), 1.5),
                    event("app/r1", "accepted", 1.0), event("app/r1", "served", 1.0, "s0")])
    session.refresh()
    assert session.timeline.layout.visible and session.divs["bridge"].visible
    assert session.timeline.switch.data["pair"] == ["qnu0-qnu1", "qnu2-qnu3"]
    assert list(session.timeline.stations.y_range.factors) == ["s1", "s0"]
    assert session.timeline.requests.data["outcome"] == ["open"]
    assert session.doc.get_model_by_name("timeline:switch") is session.timeline.switch


# --- the orchestrator's side, without processes --------------------------------------------

class _Recorder:
    """A publisher that keeps what it is given, through the wire format."""

    name = SOURCE

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def publish(self, message: Any) -> None:
        self.sent.append(decode(encode(message)))

    def close(self, linger_s: float = 0.0) -> None:
        pass


def _as_monitor_sees(snapshot: Any) -> tuple[dict[str, list[tuple]], list[tuple]]:
    """Connections per station (start, end or inf, pair) and requests (id, first, served,
    end, outcome) of the monitor's model, in read_timeline's terms."""
    lanes = {station: [(s.start, math.inf if s.end is None else s.end, s.qnus)
                       for s in lane if s.qnus] for station, lane in snapshot.lanes.items()}
    outcome = {"delivered": "OK", "err": "ERR", "cancelled": "ERR", "open": "open"}
    requests = [(r.request, r.first, r.served, math.inf if r.end is None else r.end,
                 outcome[r.outcome]) for r in snapshot.requests]
    return lanes, sorted(requests, key=lambda r: (r[1], r[0]))


def _as_report_reads(decisions: list[Decision], stations: tuple[str, ...]
                     ) -> tuple[dict[str, list[tuple]], list[tuple]]:
    """The same, as `qnetlab bridge`'s report reads it from the decisions."""
    tl = read_timeline(decisions, stations, math.inf)
    lanes = {s: [(span.start, span.end, span.pair) for span in spans]
             for s, spans in tl.connections.items()}
    return lanes, [(r, start, served, end, outcome)
                   for r, start, served, end, outcome in tl.requests]


def test_the_telemetry_tells_the_timeline_the_report_draws() -> None:
    """A scheduler's decisions on the random-pairs workload (the discrete-event simulation,
    seed 1), fed to the orchestrator's timeline telemetry and folded by the monitor, give
    the lanes and request lines `qnetlab bridge`'s timeline figure reads from them."""
    topology = bridge_topology(8, seed=1)
    result = simulate(shipped_workloads()["random_pairs_8"], topology, Scheduler(topology),
                      seed=1)
    recorder = _Recorder()
    telemetry = TimelineTelemetry(recorder, topology.stations)  # type: ignore[arg-type]
    telemetry.tick()
    for decision in result.decisions:
        telemetry.observe(decision.as_record())
    assert telemetry.unpublishable == 0
    state = MonitorState([SOURCE])
    state.fold_all(recorder.sent)
    seen = _as_monitor_sees(state.timelines[SOURCE].snapshot())
    lanes, requests = _as_report_reads(result.decisions, topology.stations)
    assert sum(map(len, lanes.values())) > 10 and len(requests) == 60
    assert seen == (lanes, requests)


# --- the command line ----------------------------------------------------------------------

def _bridge_config_in(folder: Path) -> Path:
    """bridge_8.yaml with its run folder in `folder` (its labs where they are)."""
    text = BRIDGE.read_text()
    text = re.sub(r"lab: ([\w.]+\.yaml)", lambda m: f"lab: {REPO / 'lab_configs' / m[1]}", text)
    text = text.replace("run_dir: ../lab_data/runs/bridge_8", f"run_dir: {folder / 'run'}")
    path = folder / "bridge.yaml"
    path.write_text(text)
    return path


def test_monitor_finds_the_orchestrator_of_a_bridge_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _bridge_config_in(tmp_path)
    assert main(["monitor", str(path), "--port", "0", "--max-seconds", "0"]) == 2
    err = capsys.readouterr().err
    assert "no bridge orchestrator publishing telemetry" in err and "telemetry_address" in err
    keys = tmp_path / "keys"
    generate_lab_keys(keys, [SOURCE, "monitor"])
    run = tmp_path / "run"
    run.mkdir()
    with TelemetryPublisher("tcp://127.0.0.1:*", key_dir=keys, name=SOURCE) as publisher:
        (run / f"{SOURCE}_ready.json").write_text(json.dumps(
            {"address": "tcp://127.0.0.1:1", "telemetry": publisher.address,
             "key_dir": str(keys)}))
        found = bridge_endpoints(run)
        assert found.endpoints == {SOURCE: publisher.address} and found.key_dir == keys
        assert main(["monitor", str(path), "--port", "0", "--max-seconds", "0.3"]) == 0
    out = capsys.readouterr().out
    assert f"telemetry from {SOURCE}: {publisher.address}" in out
    (run / "other_ready.json").write_text("{half")
    with pytest.raises(ConfigError, match=r"other_ready\.json"):
        bridge_endpoints(run)
    assert not [t for t in threading.enumerate() if t.name.startswith("monitor-")]


# --- the orchestrator process ----------------------------------------------------------------

def _decisions(run_dir: Path) -> list[Decision]:
    records = [json.loads(line) for line in
               (run_dir / f"{SOURCE}_decisions.jsonl").read_text().splitlines()]
    return [Decision(r["time"], r["action"], r["reason"], r.get("request"), r.get("station"),
                     tuple(r.get("qnus", ())), r.get("ready_at"), r.get("code"),
                     r.get("values", {})) for r in records if "action" in r]


@pytest.mark.processes
@pytest.mark.slow
def test_the_monitor_shows_the_orchestrator_process_timeline(tmp_path: Path) -> None:
    """The orchestrator process (bridge_8.yaml, sim profile: the Polatis twin in the loop,
    seed 1) with telemetry on, fed a small workload through `BridgeClient`: the monitor,
    finding it by its ready file, shows per station the configurations and per request the
    life its decision log has, and each request's outcome as the client heard it."""
    keys = tmp_path / "keys"
    generate_lab_keys(keys, [SOURCE, "app", "monitor"])
    settings = BridgeServiceSettings.from_config(
        load_bridge_config(BRIDGE), keys, run_dir=tmp_path / "run", time_scale=10.0, seed=1,
        max_seconds=120.0, clients=("app",), calibration_db=tmp_path / "calibration.db",
        telemetry_address="tcp://127.0.0.1:*")
    with ProcessGroup() as group:
        group.start(settings.name, run_bridge_orchestrator, settings)
        ready = settings.run_dir / f"{SOURCE}_ready.json"
        wait_until(ready.exists, 60.0, "the bridge orchestrator's ready file")
        info = json.loads(ready.read_text())
        found = bridge_endpoints(settings.run_dir)
        assert found.endpoints == {SOURCE: info["telemetry"]}
        with MonitorServer(found.endpoints, found.key_dir, title="bridge", port=0) as monitor:
            # the stations' configurations are republished every second: heard = subscribed
            wait_until(lambda: SOURCE in monitor.state.timelines, 60.0,
                       "the orchestrator's timeline at the monitor")
            outcomes = _run_workload(info["address"], keys)
            compared: list[Any] = []

            def shown_as_logged() -> bool:
                expected = _as_report_reads(_decisions(settings.run_dir),
                                            settings.topology.stations)
                shown = _as_monitor_sees(monitor.state.timelines[SOURCE].snapshot())
                compared[:] = [expected, shown]
                return shown == expected
            wait_until(shown_as_logged, 60.0, "the monitor's timeline to equal the decision "
                       "log's", poll=0.2)
            expected = compared[0]
            assert monitor.malformed == 0
            lives = {r.request: r for r in monitor.state.timelines[SOURCE].requests.values()}
    for rid, outcome in outcomes.items():
        life = lives[f"app/{rid}"]
        if isinstance(outcome, BridgeRefusedError):
            assert (life.outcome, life.code) == ("err", outcome.code)
        elif isinstance(outcome, Cancelled):
            assert life.outcome == "cancelled"
        else:
            assert (life.outcome, life.station) == ("delivered", outcome.station)
    assert isinstance(outcomes["r4"], BridgeRefusedError)
    lanes = expected[0]
    assert any(pair in {("qnu0", "qnu1"), ("qnu1", "qnu0")} for spans in lanes.values()
               for _, _, pair in spans)


def _run_workload(address: str, keys: Path) -> dict[str, Any]:
    """Pairs on two QNU pairs, a state transfer, a request no path can serve (ERR
    UNSUPPORTED) and one cancelled at once (or delivered first: either is shown as it was)."""
    outcomes: dict[str, Any] = {}
    with BridgeClient(address, keys, "app") as bridge:
        handles = {
            "r1": bridge.request_pairs("qnu0", "qnu1", 1, 0.55, request_id="r1"),
            "r2": bridge.request_pairs("qnu2", "qnu3", 2, 0.55, request_id="r2"),
            "r3": bridge.request_transfer("qnu0", "qnu2", "+", 0.55, request_id="r3"),
            "r4": bridge.request_pairs("qnu4", "qnu5", 1, 0.99, request_id="r4"),
            "r5": bridge.request_pairs("qnu1", "qnu3", 1, 0.55, request_id="r5"),
        }
        bridge.cancel(handles["r5"])
        for rid, handle in handles.items():
            try:
                outcomes[rid] = bridge.wait(handle, 60.0)
            except BridgeRefusedError as exc:
                outcomes[rid] = exc
    assert all(isinstance(o, Delivered | Transferred | Cancelled | BridgeRefusedError)
               for o in outcomes.values())
    return outcomes


def test_watching_never_costs_the_orchestrator_a_request(tmp_path: Path) -> None:
    """A telemetry port that is taken is logged and the orchestrator runs without it; a
    record that cannot be made into a message is counted, never raised."""
    from qnetlab.network.bridge.bridge_telemetry import open_timeline

    logged: list[dict[str, Any]] = []
    generate_lab_keys(tmp_path, [SOURCE, "monitor"])
    with TelemetryPublisher("tcp://127.0.0.1:*", key_dir=None, name="other") as taken:
        assert open_timeline(taken.address, tmp_path, SOURCE, ["s0"], logged.append) is None
    assert logged[0]["event"] == "telemetry_off" and "in use" in logged[0]["reason"]
    recorder = _Recorder()
    telemetry = TimelineTelemetry(recorder, ["s0"])  # type: ignore[arg-type]
    telemetry.observe({"time": 1.0, "action": "ACK", "request": "app/r1",
                       "qnus": ["qnu0", "q/1"]})
    assert telemetry.unpublishable == 1 and "q/1" in telemetry.last_error
    telemetry.observe({"time": 1.0, "action": "ACK", "request": "app/r2",
                       "qnus": ["qnu0", "qnu1"]})
    assert [m.request for m in recorder.sent] == ["app/r2"]


# --- the page in a browser ------------------------------------------------------------------

_TIMELINE_DATA = """
const doc = (window.Bokeh && Bokeh.documents.length) ? Bokeh.documents[0] : null;
const source = doc ? doc.get_model_by_name(arguments[0]) : null;
return source ? Array.from(source.data[arguments[1]]) : null;
"""


@pytest.mark.browser
@pytest.mark.slow
def test_a_browser_draws_the_bridge_timeline_as_it_comes(browser: Any) -> None:
    import test_monitor_browser as page_tests
    from selenium.webdriver.support.ui import WebDriverWait

    def shown(name: str, column: str) -> Any:
        return lambda d: d.execute_script(_TIMELINE_DATA, name, column)

    with TelemetryPublisher("tcp://127.0.0.1:*", key_dir=None, name=SOURCE) as publisher, \
            MonitorServer({SOURCE: publisher.address}, None, title="bridge", port=0) as monitor:
        first = [config("s0", ("qnu0", "qnu1"), 1.0), event("app/r1", "accepted", 1.0),
                 event("app/r1", "served", 1.0, "s0")]

        def heard() -> bool:
            for message in first:
                publisher.publish(message)
            return SOURCE in monitor.state.timelines
        wait_until(heard, 60.0, "the timeline at the monitor")
        browser.get(monitor.url)
        wait = WebDriverWait(browser, 60.0, poll_frequency=0.1)
        wait.until(lambda d: shown("timeline:switch", "pair")(d) == ["qnu0-qnu1"])
        wait.until(lambda d: shown("timeline:requests", "outcome")(d) == ["open"])
        # live: the request is delivered, qnu1 moves to s1
        for message in (event("app/r1", "delivered", 1.4, "s0"), config("s0", (), 2.0),
                        config("s1", ("qnu1", "qnu2"), 2.0)):
            publisher.publish(message)
        wait.until(lambda d: shown("timeline:switch", "pair")(d) == ["qnu0-qnu1", "qnu1-qnu2"])
        wait.until(lambda d: shown("timeline:requests", "outcome")(d) == ["delivered"])
        assert shown("timeline:switch", "end")(browser)[0] == 2.0
        text = browser.execute_script(page_tests._DEEP_TEXT)
        assert "Bridge switch" in text and "delivered: 1" in text
