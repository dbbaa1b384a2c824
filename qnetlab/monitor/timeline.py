"""The bridge's timeline as the monitor keeps it: per orchestrator (telemetry source), a lane
of switch configurations per station and the life of every request, folded from
`SwitchConfiguration` and `RequestEvent` telemetry (network/bridge/bridge_telemetry.py).

Pure Python (no Bokeh), so it is tested without a browser; `switch_columns` and
`request_columns` are what the page's timeline figures draw. Times are s on the bridge's
clock (the orchestrator's, as in `qnetlab bridge`'s timeline figure), never the monitor's.
Bounded whatever comes off the wire: `MAX_STATIONS` lanes of `LANE_SPANS` spans per source,
`MAX_REQUESTS` requests per source (the oldest forgotten first); what does not fit is counted
by the caller as dropped.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from qnetlab.network.telemetry_messages import RequestEvent, SwitchConfiguration

MAX_STATIONS = 64
"""Stations (lanes) kept per orchestrator."""
LANE_SPANS = 500
"""Configurations kept per station (the oldest roll off)."""
MAX_REQUESTS = 1000
"""Requests kept per orchestrator (the oldest forgotten first)."""
REQUEST_ROWS = 200
"""Requests drawn (the newest)."""
OUTCOMES = ("open", "delivered", "err", "cancelled")


@dataclass
class ConfigSpan:
    """`qnus` on a station's arms from `start` (carrying light from `settled`) to `end`
    (None: still connected), s on the bridge clock; () is nothing connected."""

    qnus: tuple[str, ...]
    start: float
    settled: float | None
    end: float | None
    reason: str


@dataclass
class RequestLife:
    """A request from when it was first heard of (`first`): accepted, first served (a
    station heralding for it), closed (`end`) with its `outcome` (`OUTCOMES`) and an ERR's
    `code`; s on the bridge clock."""

    request: str
    qnus: tuple[str, ...]
    first: float
    accepted: float | None = None
    served: float | None = None
    station: str = ""
    end: float | None = None
    outcome: str = "open"
    code: str = ""


@dataclass(frozen=True)
class TimelineSnapshot:
    """One orchestrator's timeline copied out for a page: lanes per station, requests in
    the order first heard, and `now`, the latest bridge time heard (where open spans end)."""

    source: str
    lanes: dict[str, list[ConfigSpan]]
    requests: list[RequestLife]
    now: float


class BridgeTimeline:
    """One orchestrator's timeline, folded message by message (`fold`: False when a bound
    made it drop the message)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lanes: dict[str, deque[ConfigSpan]] = {}
        self.requests: OrderedDict[str, RequestLife] = OrderedDict()
        self.now = 0.0

    def fold(self, message: SwitchConfiguration | RequestEvent) -> bool:
        self.now = max(self.now, message.at)
        if isinstance(message, SwitchConfiguration):
            return self._configure(message)
        return self._request(message)

    def _configure(self, m: SwitchConfiguration) -> bool:
        lane = self.lanes.get(m.station)
        if lane is None:
            if len(self.lanes) >= MAX_STATIONS:
                return False
            lane = self.lanes[m.station] = deque(maxlen=LANE_SPANS)
        if lane:
            current = lane[-1]
            if current.start == m.at and current.qnus == m.qnus:
                current.settled = m.settled_at  # republished, or its re-checks done
                return True
            if m.at < current.start:
                return True  # older than what is drawn: a republication overtaken
            current.end = m.at
        lane.append(ConfigSpan(m.qnus, m.at, m.settled_at, None, m.reason))
        return True

    def _request(self, m: RequestEvent) -> bool:
        life = self.requests.get(m.request)
        kept = True
        if life is None or (life.end is not None and m.state == "accepted"):
            if life is None and len(self.requests) >= MAX_REQUESTS:
                self.requests.popitem(last=False)
                kept = False  # the oldest is forgotten: counted as dropped
            self.requests.pop(m.request, None)  # a closed id reused: a new life
            life = self.requests[m.request] = RequestLife(m.request, m.qnus, m.at)
        if m.state == "accepted":
            life.accepted = m.at
        elif m.state == "served":
            life.served = m.at if life.served is None else life.served
            life.station = m.station
        elif m.state in OUTCOMES:
            life.end, life.outcome, life.code = m.at, m.state, m.code
            life.station = m.station or life.station
        return kept

    def snapshot(self) -> TimelineSnapshot:
        return TimelineSnapshot(
            self.source, {s: [replace(span) for span in lane] for s, lane in self.lanes.items()},
            [replace(life) for life in self.requests.values()], self.now)


def _pair_label(qnus: tuple[str, ...]) -> str:
    return "-".join(qnus) if qnus else "nothing"


def lane_name(source: str, station: str, several: bool) -> str:
    """A station's lane: its name, with its orchestrator's when several are watched."""
    return f"{source} {station}" if several else station


def switch_columns(snapshots: Iterable[TimelineSnapshot]) -> dict[str, list]:
    """Bars of the stations' lanes: one per configuration that connects a pair (`lane`,
    `start`, `settled`, `end` s, `pair` label, `colour_index` per pair in order of first
    appearance)."""
    snapshots = list(snapshots)
    several = len(snapshots) > 1
    columns: dict[str, list] = {k: [] for k in ("lane", "start", "settled", "end", "mid",
                                                "pair", "colour_index")}
    pairs: dict[tuple[str, ...], int] = {}
    for snap in snapshots:
        for station, lane in sorted(snap.lanes.items()):
            for span in lane:
                if not span.qnus:
                    continue
                end = span.end if span.end is not None else max(snap.now, span.start)
                settled = min(max(span.settled or span.start, span.start), end)
                key = tuple(sorted(span.qnus))
                columns["lane"].append(lane_name(snap.source, station, several))
                columns["start"].append(span.start)
                columns["settled"].append(settled)
                columns["end"].append(end)
                columns["mid"].append((span.start + end) / 2)
                columns["pair"].append(_pair_label(span.qnus))
                columns["colour_index"].append(pairs.setdefault(key, len(pairs)))
    return columns


def request_columns(snapshots: Iterable[TimelineSnapshot],
                    rows: int = REQUEST_ROWS) -> dict[str, list]:
    """Lines of the newest `rows` requests (`row` 0 the oldest shown): from first heard to
    closed (or now), the served part from its first station on, `outcome`."""
    lives = [(snap, life) for snap in snapshots for life in snap.requests]
    lives.sort(key=lambda item: (item[1].first, item[1].request))
    columns: dict[str, list] = {k: [] for k in ("row", "request", "start", "served", "end",
                                                "outcome", "station", "label")}
    for row, (snap, life) in enumerate(lives[-rows:]):
        end = life.end if life.end is not None else max(snap.now, life.first)
        columns["row"].append(row)
        columns["request"].append(life.request)
        columns["start"].append(life.first)
        columns["served"].append(end if life.served is None else min(life.served, end))
        columns["end"].append(end)
        columns["outcome"].append(life.outcome)
        columns["station"].append(life.station)
        code = f" {life.code}" if life.code else ""
        columns["label"].append(f"{life.request} {_pair_label(life.qnus)} "
                                f"{life.outcome}{code}")
    return columns


def outcome_counts(snapshots: Iterable[TimelineSnapshot]) -> Mapping[str, int]:
    """Requests kept by outcome."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for snap in snapshots:
        for life in snap.requests:
            counts[life.outcome] = counts.get(life.outcome, 0) + 1
    return counts
