"""The monitor's page: one Bokeh document per browser session, fed from the server's one
`MonitorState`.

Each session keeps, per series, a ColumnDataSource named ``series:<source>/<name>`` and
streams only the points it has not seen, with ``rollover`` at the state's history length, so
a page left open for hours holds at most that many points per series (in the server's copy of
the document and in the browser alike). A plot, the calibration graph and the links appear
with their first message (a lab's page has no links, a network's may have no fridge).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bokeh.core.validation import silence
from bokeh.core.validation.warnings import MISSING_RENDERERS
from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, CustomJSTickFormatter, Div, FactorRange
from bokeh.palettes import Category10_10, Category20_20
from bokeh.plotting import figure

from . import panels
from .state import MonitorState
from .timeline import TimelineSnapshot, lane_name, request_columns, switch_columns

# A panel is drawn before its first series arrives (and a lab's page never gets the network's
# series): an empty plot is expected here, not a mistake worth a warning per page.
silence(MISSING_RENDERERS, True)

REFRESH_MS = 500
"""How often a page asks the state for what is new."""

PLOTS: tuple[tuple[str, str, str], ...] = (
    ("mxc_temperature", "Mixing-chamber temperature (dashed: interlock ceiling)", "K"),
    ("pump_power", "Pump power", "W"),
    ("pump_on", "Pump on (1) / off (0)", ""),
    ("mw_power", "Microwave drive", "dBm"),
    ("count_rate", "Detector count rates", "Hz"),
    ("herald_rate", "Herald rate per link", "Hz"),
    ("delivered", "Delivered pairs per link", "pairs"),
)
"""(series kind, panel title, axis unit). The interlock ceiling (kind ``mxc_ceiling``) is
drawn in the temperature panel; values of other kinds are in the value table only."""

_PANEL_OF = {"mxc_ceiling": "mxc_temperature", **{kind: kind for kind, _, _ in PLOTS}}

_SI_TICKS = """
const digits = (x) => {
  let text = x.toPrecision(4);
  if (text.includes(".") && !text.includes("e")) {
    text = text.replace(/0+$/, "").replace(/\\.$/, "");
  }
  return text;
};
const scales = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"], [1, ""], [1e-3, "m"],
                [1e-6, "\\u00b5"], [1e-9, "n"], [1e-12, "p"], [1e-15, "f"]];
if (tick !== 0 && prefixed) {
  for (const [scale, prefix] of scales) {
    if (Math.abs(tick) >= scale * 0.9995) { return `${digits(tick / scale)} ${prefix}${unit}`; }
  }
}
return `${digits(tick)} ${unit}`.trim();
"""
"""The y ticks with SI prefixes and µ, as `qnetlab.sequences.si.format_value` writes values
(the browser draws ticks, so this is its JavaScript twin: the same prefixes, 4 digits)."""
_PREFIXED_UNITS = ("K", "W", "Hz", "s")

CEILING_RED = "#f2495c"
_COLOURS = tuple(c for c in Category10_10 if c != "#d62728")  # red is the ceiling's
_SET_POINTS = ("pump_power", "pump_on", "mw_power")
"""Settings hold until changed: drawn as steps, not as ramps between two samples."""

DARK = {"background": "#181b1f", "panel": "#22252b", "grid": "#2c3037", "text": "#d8d9da"}


@dataclass
class MonitorSettings:
    """What every page shows: `title`, `silent_after_s` (a publisher quiet for longer gets a
    banner)."""

    title: str
    silent_after_s: float = 5.0


def _figure(title: str, unit: str | None, **options: Any) -> Any:
    """A dark panel; `unit` for SI ticks on y (None: the y axis is categorical)."""
    settings: dict[str, Any] = {"x_axis_type": "datetime", "height": 230, **options}
    plot = figure(title=title, sizing_mode="stretch_width",
                  tools="pan,xwheel_zoom,box_zoom,reset,save", toolbar_location="above",
                  background_fill_color=DARK["panel"], border_fill_color=DARK["panel"],
                  outline_line_color=DARK["grid"], **settings)
    if unit is not None:
        plot.yaxis.formatter = CustomJSTickFormatter(
            args={"unit": unit, "prefixed": unit in _PREFIXED_UNITS}, code=_SI_TICKS)
    plot.title.text_color = DARK["text"]
    for axis in (plot.xaxis, plot.yaxis):
        axis.axis_label_text_color = DARK["text"]
        axis.major_label_text_color = DARK["text"]
        axis.axis_line_color = DARK["grid"]
    plot.grid.grid_line_color = DARK["grid"]
    return plot


def _div(name: str) -> Div:
    return Div(text=panels.STYLE, name=name, sizing_mode="stretch_width",
               styles={"background": DARK["panel"], "padding": "8px 12px",
                       "border-radius": "4px"})


OUTCOME_COLOURS = {"open": "#5794f2", "delivered": "#73bf69", "err": CEILING_RED,
                   "cancelled": "#ff9830"}
"""A request's served part by outcome (blue while a station still heralds for it)."""
WAITING_COLOUR = "#5a5e66"


class TimelinePlots:
    """The bridge's live timeline: per station a lane of switch configurations (the pair
    connected, hatched while it settles and its stale paths are re-checked), and below every
    request from when it was heard of (grey while it waits) to its outcome (coloured from
    its first station on). x: s on the bridge clock. Data sources ``timeline:switch`` and
    ``timeline:requests``, replaced whole when the timeline changed (bounded by the
    state's)."""

    def __init__(self) -> None:
        self.switch = ColumnDataSource({k: [] for k in (*switch_columns([]), "colour")},
                                       name="timeline:switch")
        self.requests = ColumnDataSource({k: [] for k in (*request_columns([]), "colour")},
                                         name="timeline:requests")
        self.stations = _figure("Bridge: switch configuration per station (hatched: settle "
                                "and re-checks)", None, x_axis_type="linear", height=200,
                                y_range=FactorRange())
        self.stations.hbar(y="lane", left="start", right="settled", height=0.7,
                           source=self.switch, fill_color="colour", fill_alpha=0.35,
                           line_color="colour", hatch_pattern="/", hatch_color="colour")
        self.stations.hbar(y="lane", left="settled", right="end", height=0.7,
                           source=self.switch, fill_color="colour", line_color=DARK["panel"])
        self.stations.text(x="mid", y="lane", text="pair", source=self.switch,
                           text_align="center", text_baseline="middle",
                           text_font_size="10px", text_color="#111217")
        self.stations.xaxis.axis_label = "bridge time (s)"
        self.request_plot = _figure("Bridge: requests (grey: waiting; then blue while "
                                    "served, green delivered, red ERR, orange cancelled)",
                                    None, x_axis_type="linear", height=260,
                                    x_range=self.stations.x_range)
        self.request_plot.hbar(y="row", left="start", right="served", height=0.6,
                               source=self.requests, fill_color=WAITING_COLOUR,
                               line_color=None)
        self.request_plot.hbar(y="row", left="served", right="end", height=0.6,
                               source=self.requests, fill_color="colour", line_color=None)
        self.request_plot.yaxis.visible = False
        self.request_plot.xaxis.axis_label = "bridge time (s)"
        self.layout = column(self.stations, self.request_plot, sizing_mode="stretch_width")
        self.layout.visible = False  # until an orchestrator's first timeline message

    def update(self, snapshots: list[TimelineSnapshot]) -> None:
        switch = switch_columns(snapshots)
        switch["colour"] = [Category20_20[i % 20] for i in switch["colour_index"]]
        requests = request_columns(snapshots)
        requests["colour"] = [OUTCOME_COLOURS.get(o, WAITING_COLOUR)
                              for o in requests["outcome"]]
        lanes = sorted({lane_name(snap.source, station, len(snapshots) > 1)
                        for snap in snapshots for station in snap.lanes},
                       reverse=True)  # the first station on top
        self.stations.y_range.factors = lanes
        self.switch.data = switch
        self.requests.data = requests
        self.layout.visible = bool(snapshots)


class MonitorSession:
    """One browser's document: its figures, its sources and what it has seen."""

    def __init__(self, doc: Document, state: MonitorState, settings: MonitorSettings,
                 malformed: Callable[[], int]) -> None:
        self.doc, self.state, self.settings = doc, state, settings
        self._malformed = malformed  # the subscriber's count of dropped messages
        self.seen: dict[str, int] = {}
        self.sources: dict[str, ColumnDataSource | None] = {}  # None: not plotted
        self._text: dict[str, str] = {}
        self.plots = {kind: _figure(title, unit) for kind, title, unit in PLOTS}
        for plot in self.plots.values():
            plot.visible = False  # until its first series: a network's page has no fridge
        self.divs = {name: _div(name) for name in
                     ("status", "sequences", "values", "calibration", "links")}
        self.divs["calibration"].visible = False
        self.divs["links"].visible = False
        self.timeline = TimelinePlots()
        self.timeline_seen = 0
        self.divs["bridge"] = _div("bridge")
        self.divs["bridge"].visible = False
        header = Div(text=f'<h2 style="font:600 18px system-ui,sans-serif;color:'
                          f'{DARK["text"]};margin:0">qnetlab monitor — '
                          f'{panels.escape(settings.title)}</h2>', name="title",
                     sizing_mode="stretch_width")
        grid = [row(self.plots[a], self.plots[b], sizing_mode="stretch_width")
                for a, b in (("mxc_temperature", "pump_power"), ("pump_on", "mw_power"),
                             ("count_rate", "herald_rate"))]
        doc.add_root(column(header, self.divs["status"], self.divs["sequences"], *grid,
                            self.plots["delivered"],
                            row(self.divs["values"], self.divs["calibration"],
                                sizing_mode="stretch_width"),
                            self.divs["links"], self.divs["bridge"], self.timeline.layout,
                            sizing_mode="stretch_width",
                            styles={"background": DARK["background"], "padding": "10px"}))
        doc.title = f"qnetlab monitor — {settings.title}"
        self.refresh()
        doc.add_periodic_callback(self.refresh, REFRESH_MS)

    def refresh(self) -> None:
        """Stream what is new into the plots, rewrite the panels that changed."""
        view = self.state.view(self.seen, self.settings.silent_after_s)
        for key, points in view.new_points.items():
            if key not in self.sources:
                self.sources[key] = self._add_series(key, *view.series[key])
            source = self.sources[key]
            if source is None or not points:
                continue
            times, values = zip(*points, strict=True)
            data = {"t": [1000.0 * t for t in times], "v": list(values)}
            if view.counts[key] - self.seen.get(key, 0) > len(points):
                source.data = data  # fell behind by more than the ring: its whole content
            else:
                source.stream(data, rollover=self.state.history)
        self.seen = dict(view.counts)
        now = self.state.clock()
        self._set("status", panels.status_html(view, self._malformed()))
        self._set("sequences", panels.sequences_html(view, now))
        self._set("values", panels.values_html(view, now))
        if view.calibrations:
            self.divs["calibration"].visible = True
            self._set("calibration", panels.calibration_html(view, now))
        if view.links:
            self.divs["links"].visible = True
            self._set("links", panels.links_html(view, now))
        changed = self.state.timeline_view(self.timeline_seen)
        if changed is not None:
            self.timeline_seen, snapshots = changed
            self.timeline.update(snapshots)
            self.divs["bridge"].visible = True
            self._set("bridge", panels.bridge_html(snapshots))

    def _set(self, name: str, text: str) -> None:
        # Only a changed panel is sent to the browser.
        if self._text.get(name) != text:
            self._text[name] = text
            self.divs[name].text = text

    def _add_series(self, key: str, kind: str, unit: str, label: str
                    ) -> ColumnDataSource | None:
        panel = _PANEL_OF.get(kind)
        if panel is None:
            return None  # shown in the value table only
        plot = self.plots[panel]
        plot.visible = True
        source = ColumnDataSource({"t": [], "v": []}, name=f"series:{key}")
        colour = _COLOURS[len(plot.renderers) % len(_COLOURS)]
        if kind == "mxc_ceiling":
            plot.step("t", "v", source=source, mode="after", line_color=CEILING_RED,
                      line_dash="dashed", line_width=2, legend_label=label)
        elif kind in _SET_POINTS:
            plot.step("t", "v", source=source, mode="after", line_color=colour,
                      line_width=2, legend_label=label)
        else:
            plot.line("t", "v", source=source, line_color=colour, line_width=2,
                      legend_label=label)
        plot.legend.location = "top_left"
        plot.legend.click_policy = "hide"  # a click on an entry hides its line
        plot.legend.background_fill_color = DARK["background"]
        plot.legend.background_fill_alpha = 0.7
        plot.legend.border_line_color = DARK["grid"]
        plot.legend.label_text_color = DARK["text"]
        plot.legend.label_text_font_size = "11px"
        return source
