"""`qnetlab monitor` in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, driven by selenium) opens the page of a monitor subscribed to the
simulated transducer bench's telemetry, published by the lab's own sampler from the real
drivers over the simulated VISA transport.

It checks that the values appear with their units, that the plotted pump power and
mixing-chamber temperature change when the pump is set and heat is injected, that a run
paused by the interlock shows PAUSED with its reason, that several tabs are served from one
subscriber, that the browser's plot data stay bounded, and that a silent publisher is named.

Without Chromium the test skips and says how to get it; in CI (``CI=true``) it fails
instead, so the browser test cannot silently stop running.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from qnetlab.instruments.station import load_station
from qnetlab.monitor import MonitorServer
from qnetlab.network.keys import generate_lab_keys
from qnetlab.network.lab_telemetry import start_lab_telemetry
from qnetlab.network.telemetry import telemetry_endpoints
from qnetlab.network.telemetry_config import telemetry_key_names
from qnetlab.sequences.progress import Progress, reporting_to
from qnetlab.sim_instruments.visa_backend import bench_of

from conftest import bench_on_free_ports, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.processes, pytest.mark.slow]

DEADLINE = 60.0  # s; every wait ends at its event, this only bounds a broken run
HISTORY = 20  # points per series: small, so the test sees the browser's data roll over
SOURCE = "transducer_bench"

# Text of the whole page, through the shadow roots Bokeh renders its panels in.
_DEEP_TEXT = """
const deep = (node) => {
  let text = "";
  if (node.shadowRoot) { text += deep(node.shadowRoot); }
  for (const child of node.childNodes) {
    if (child.nodeType === Node.TEXT_NODE) { text += child.textContent + " "; }
    else if (!["STYLE", "SCRIPT"].includes(child.nodeName)) { text += deep(child); }
  }
  return text;
};
return deep(document.body);
"""
# The text of the value-table cell of one series (data-key), or null.
_CELL = """
const find = (root, selector) => {
  const hit = root.querySelector(selector);
  if (hit) { return hit; }
  for (const el of root.querySelectorAll("*")) {
    if (el.shadowRoot) { const inner = find(el.shadowRoot, selector); if (inner) return inner; }
  }
  return null;
};
const cell = find(document, `td[data-key="${arguments[0]}"]`);
return cell ? cell.textContent : null;
"""
# The values plotted for one series, from the browser's copy of the Bokeh document.
_PLOTTED = """
const doc = (window.Bokeh && Bokeh.documents.length) ? Bokeh.documents[0] : null;
const source = doc ? doc.get_model_by_name(`series:${arguments[0]}`) : null;
return source ? Array.from(source.data.v) : null;
"""


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Path, Any, Any]]:
    """The simulated bench on free ports with its keys, loaded, publishing telemetry."""
    (tmp_path / "configs").mkdir()
    path, _ = bench_on_free_ports(tmp_path / "configs")
    key_dir, names = telemetry_key_names(path)
    generate_lab_keys(key_dir, names)
    station = load_station(path)
    telemetry = start_lab_telemetry(station, period_s=0.1)
    try:
        yield path, station, telemetry
    finally:
        telemetry.close()
        station.close()


def _until(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, DEADLINE, poll_frequency=0.1).until(condition)
    except TimeoutException:
        text = driver.execute_script(_DEEP_TEXT)
        pytest.fail(f"the page did not show {what} within {DEADLINE} s; it shows: "
                    f"{text[:2000]}")


def _cell(key: str) -> Callable[[Any], str | None]:
    return lambda driver: driver.execute_script(_CELL, f"{SOURCE}/{key}")


def _plotted(driver: Any, key: str) -> list[float]:
    return driver.execute_script(_PLOTTED, f"{SOURCE}/{key}") or []


def test_the_page_shows_the_lab_live_with_units(browser: Any, lab: Any) -> None:
    path, station, telemetry = lab
    where = telemetry_endpoints(path)
    with MonitorServer(where.endpoints, where.key_dir, title=str(path), port=0,
                       history=HISTORY, silent_after_s=2.0) as monitor:
        # The lab reads every monitored parameter once, at a safe point, from the thread
        # that owns the station (as a run's own reads do); the sampler publishes from then on.
        station.instrument("tagger").input1.enabled(True)  # counts the SNSPD's clicks
        telemetry.sample(fresh=True)
        browser.get(monitor.url)
        # Values appear, each with its unit through the SI formatter.
        temperature = _until(browser, lambda d: re.fullmatch(r"[\d.]+ mK",
                                                             _cell("fridge.temperature")(d)
                                                             or ""), "the MXC temperature")
        cold = float(temperature.group(0).split()[0]) * 1e-3
        assert re.fullmatch(r"-?[\d.]+ dBm", _until(browser, _cell("mw_source.power"),
                                                    "the microwave drive"))
        assert _until(browser, _cell("pump_laser.output"), "the pump state") == "off"
        assert re.fullmatch(r"[\d.]+ [kMG]?Hz", _until(browser, _cell("snspd.ch1.count_rate"),
                                                       "a count rate"))
        assert _until(browser, _cell("interlocks.no_pump_on_warm_fridge"),
                      "the interlock ceiling") == "50 mK"

        # Set the pump: its plotted power and state follow, and the table says "2 mW".
        station.instrument("pump_laser").power(2.0e-3)
        station.instrument("pump_laser").output(True)
        _until(browser, lambda d: (_plotted(d, "pump_laser.power") or [0])[-1] == 2.0e-3,
               "the plotted pump power at 2 mW")
        _until(browser, lambda d: (_plotted(d, "pump_laser.output") or [0])[-1] == 1.0,
               "the plotted pump state on")
        _until(browser, lambda d: _cell("pump_laser.power")(d) == "2 mW", "2 mW")
        _until(browser, lambda d: _cell("pump_laser.output")(d) == "on", "the pump on")

        # Inject heat into the simulated fridge: the plotted temperature rises.
        world = bench_of(station.instrument("fridge")).world
        world.set_extra_heat_load(20e-6)
        world.advance(600)  # ten time constants of the mixing chamber
        telemetry.sample(fresh=True)  # from the thread that owns the station
        _until(browser, lambda d: (_plotted(d, "fridge.temperature") or [0])[-1] > 2 * cold,
               "the plotted MXC temperature above twice its cold value")
        warm = float(_until(browser, lambda d: re.fullmatch(
            r"[\d.]+ mK", _cell("fridge.temperature")(d) or ""), "the warm MXC").group(
            0).split()[0]) * 1e-3
        assert warm > 2 * cold

        # A run the interlock holds shows PAUSED with the reason.
        with reporting_to(telemetry):
            progress = Progress(4, "efficiency_map", quiet=True)
            progress.update(1, "pump 2 mW")
            progress.interlock("paused", "PAUSED before pump 4 mW: mixing chamber above "
                                         "its 50 mK ceiling")
            _until(browser, lambda d: "PAUSED before pump 4 mW" in d.execute_script(
                _DEEP_TEXT), "the paused run and its reason")
            progress.close("stopped: test over")

        # The browser's plot data stay bounded: a series rolls over at HISTORY points (the
        # interlock's ceiling, stamped at every sample, gains a point every period).
        ceiling = "interlocks.no_pump_on_warm_fridge"
        wait_until(lambda: monitor.state.series[f"{SOURCE}/{ceiling}"].count > 2 * HISTORY,
                   DEADLINE, "more samples than the history holds")
        _until(browser, lambda d: len(_plotted(d, ceiling)) == HISTORY,
               f"{HISTORY} plotted points")
        assert len(_plotted(browser, ceiling)) == HISTORY

        # More browsers: each tab its own session, all fed by the one subscriber thread.
        for _ in range(2):
            browser.switch_to.new_window("tab")
            browser.get(monitor.url)
            _until(browser, lambda d: _cell("pump_laser.power")(d) == "2 mW",
                   "2 mW in another tab")
            assert (_plotted(browser, "pump_laser.power") or [0])[-1] == 2.0e-3
        assert monitor.sessions == 3
        assert [t.name for t in threading.enumerate()].count("monitor-feed") == 1

        # The lab stops publishing: the page names it and for how long.
        telemetry.close()
        _until(browser, lambda d: re.search(rf"no telemetry from {SOURCE} for \d+ s",
                                            d.execute_script(_DEEP_TEXT)),
               "the silent publisher named")
