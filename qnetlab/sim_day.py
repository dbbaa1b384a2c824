"""`qnetlab sim day CONFIG`: a day of lab time on a simulated node lab, maintained every hour.

One simulated bench (one world: its drifts, its instruments) is opened once and kept; lab time
passes on its clock between maintenance sessions (`LabStation.sleep`: instant on the virtual
clock), and each session is the `Maintainer` that ``qnetlab calibrate`` runs
(`_calibrate.maintain`). The calibration store's clock is the lab's (an epoch plus the world's
lab time), so each calibration's ``timeout`` expires with the lab's drift, not with the
seconds the simulation took. The first session calibrates from cold (a new database, so the
lab's own calibrations are untouched); then, every ``--every`` s of lab time for ``--hours``
h, one session brings the graph back in spec, and the day ends with the recalibrations each
node needed. ``--fault KIND=VALUE`` then injects a step change (`sim_instruments.faults_world`)
and ``--diagnose NODE`` walks back from that symptom (`Maintainer.diagnose`).

``--realistic`` runs the drifting lab (``qnetlab.simulation.ideal: false``, also the default)
whatever the config says; without it the config decides.
Semantics: docs/calibration_graph.md#6-a-day-in-the-lab.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ._runs import quiet_output

__all__ = ["DAY_EPOCH", "GOOD_STATES", "LabDay", "Session", "run_day"]

EXIT_OK, EXIT_BAD, EXIT_USAGE = 0, 1, 2

DAY_EPOCH = 2_000_000_000.0
"""Store time (s since the Unix epoch, 2033-05-18) of lab time 0: a fixed origin, so a day's
database reads the same on every run."""

GOOD_STATES = frozenset({"good", "in spec", "calibrated"})
"""`Maintainer.states` a node may end a session in and count as good."""


def _faults() -> dict[str, Callable[[Any, float], float]]:
    """KIND -> fault of `sim_instruments.faults_world` (station, value) -> new true value."""
    from qnetlab.sim_instruments import faults_world as f

    return {"pump_coupling": f.drop_pump_coupling,           # factor, e.g. 0.7
            "optical_resonance": f.drift_optical_resonance,  # shift, Hz
            "mw_resonance": f.shift_mw_resonance,            # shift, Hz
            "detector_efficiency": f.drop_detector_efficiency}  # factor


FAULT_KINDS = ("pump_coupling", "optical_resonance", "mw_resonance", "detector_efficiency")
"""What ``--fault`` injects (the keys of `_faults`): a factor for the first and last, a
frequency shift (Hz) for the resonances."""
FACTOR_KINDS = frozenset({"pump_coupling", "detector_efficiency"})
FAULT_UNITS = {"pump_coupling": "W at the device, 0 while the pump is off",
               "optical_resonance": "m, the resonance wavelength",
               "mw_resonance": "Hz, the resonance frequency",
               "detector_efficiency": "plateau efficiency"}
"""What each fault's returned truth is (`sim_instruments.faults_world`)."""


@dataclass(frozen=True)
class Session:
    """One maintenance (or diagnosis) session of the day."""

    lab_time: float
    """Lab time when it started, s since the bench opened."""
    ended: float
    """Lab time when it ended, s."""
    maintainer: Any
    """The session's `Maintainer` (its log, states, recalibrations)."""

    @property
    def recalibrated(self) -> list[str]:
        return list(self.maintainer.recalibrated)

    @property
    def checked(self) -> list[str]:
        """Nodes the session measured a quick check of."""
        return [a.node for a in self.maintainer.log if a.operation == "check_data"]

    @property
    def not_good(self) -> dict[str, str]:
        """Node -> state of every node the session did not leave good."""
        return {n: s for n, s in self.maintainer.states.items() if s not in GOOD_STATES}


class LabDay:
    """A simulated node lab kept open for a day: `maintain` and `diagnose` sessions with lab
    time passing between them (`wait`). Close it when done (a context manager)."""

    def __init__(self, config: str | Path | Any, db: str | Path, *, realistic: bool = False,
                 quiet: bool = True) -> None:
        from qnetlab.instruments.lab_config import LabConfig, load_config
        from qnetlab.sequences.calibration import LabContext, Scope
        from qnetlab.sequences.calibration.graph_config import parse_calibration
        from qnetlab.sequences.calibration.nodes import lab_graph
        from qnetlab.sequences.calibration.startup import open_calibrated_station

        lab = config if isinstance(config, LabConfig) else load_config(config)
        if realistic:
            lab = lab.with_simulation(ideal=False)
        self.config = lab
        self.lab = parse_calibration(lab).lab
        self.graph = lab_graph(lab)
        self.sessions: list[Session] = []

        def opener(spec: Any, store: Any, session: str) -> Any:
            # The config object itself (maybe made realistic here), not its file.
            return open_calibrated_station(lab, "sim", store, sim_session=session)

        self.ctx = LabContext({self.lab: Scope(self.lab, Path(db), lab.path, "sim")},
                              quiet=quiet, clock=self.now, opener=opener)
        # One sim session for the context: the station reopens on the same world.
        self._clock = self.station.clock

    # -- the lab -------------------------------------------------------------------------------
    @property
    def station(self) -> Any:
        return self.ctx.station(self.lab)

    def lab_time(self) -> float:
        """Lab time now, s since the bench opened (the simulated world's clock)."""
        return float(self._clock.now())

    def now(self) -> float:
        """The store's clock: `DAY_EPOCH` plus lab time."""
        return DAY_EPOCH + self.lab_time()

    def wait(self, seconds: float) -> None:
        """Let `seconds` of lab time pass with the bench idle (instantly: virtual time)."""
        self.station.sleep(seconds)

    def inject(self, kind: str, value: float) -> float:
        """A step change of `FAULT_KINDS` in the lab's physics; the new true value."""
        faults = _faults()
        if kind not in faults:
            raise KeyError(f"no fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
        return faults[kind](self.station, value)

    # -- the sessions --------------------------------------------------------------------------
    def maintain(self) -> Session:
        """One `qnetlab calibrate` session over the whole graph."""
        return self._session(None, diagnose=False)

    def diagnose(self, node: str) -> Session:
        """`qnetlab calibrate CONFIG NODE --diagnose`: walk back from the symptom `node`."""
        return self._session(self.resolve(node), diagnose=True)

    def resolve(self, name: str) -> str:
        from ._calibrate import _resolve

        return _resolve(self.graph, name)

    def _session(self, node: str | None, *, diagnose: bool) -> Session:
        from ._calibrate import maintain

        started = self.lab_time()
        maintainer = maintain(self, node, diagnose)
        session = Session(started, self.lab_time(), maintainer)
        self.sessions.append(session)
        return session

    def recalibrations(self, sessions: list[Session] | None = None) -> Counter[str]:
        """Node -> how many times it was calibrated over `sessions` (default: all)."""
        return Counter(n for s in (self.sessions if sessions is None else sessions)
                       for n in s.recalibrated)

    def close(self) -> None:
        self.ctx.close()

    def __enter__(self) -> LabDay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_day(day: LabDay, hours: float, every: float) -> Iterator[Session]:
    """Maintain now (from cold if the database is new), then at every `every` s of lab time
    after now for `hours` h, as a scheduled job would: each session starts on its slot, or
    at once if the one before overran it. Yields each session as it ends."""
    if every <= 0 or hours <= 0:
        raise ValueError(f"hours and every must be > 0 (got {hours} h every {every} s)")
    start = day.lab_time()
    yield day.maintain()
    for slot in range(1, round(hours * 3600.0 / every) + 1):
        day.wait(max(0.0, start + slot * every - day.lab_time()))
        yield day.maintain()


# -- the command line -------------------------------------------------------------------------
def add_parser(sim_verbs: Any) -> None:
    day = sim_verbs.add_parser(
        "day", help="a day of lab time on a simulated node lab, maintained every hour",
        description="Open a node lab's simulated bench once, calibrate it from cold into a "
                    "new database, then let lab time pass (virtual: instantly) and maintain "
                    "the calibration graph every --every s for --hours h, as `qnetlab "
                    "calibrate` would; print what each session did and the recalibrations "
                    "per node. --fault then injects a step change and --diagnose walks back "
                    "from a symptom. Exit code 0 when every session ended with every "
                    "calibration good.")
    day.add_argument("config", help="a node lab's station YAML with a calibration graph, "
                                    "e.g. lab_configs/node_a_lab.yaml")
    day.add_argument("--hours", type=float, default=24.0, help="lab time to run, h (24)")
    day.add_argument("--every", type=float, default=3600.0,
                     help="lab time between maintenance sessions, s (3600)")
    day.add_argument("--realistic", action="store_true",
                     help="the drifting lab: qnetlab.simulation.ideal false (the default), "
                          "whatever the config says")
    day.add_argument("--fault", default=None, metavar="KIND=VALUE",
                     help="after the day, a step change: " + ", ".join(FAULT_KINDS) +
                          " (factor for pump_coupling and detector_efficiency, shift in Hz "
                          "for the resonances), e.g. pump_coupling=0.7")
    day.add_argument("--diagnose", default=None, metavar="NODE",
                     help="after the day (and the fault), diagnose from this symptom, e.g. "
                          "transducer_efficiency")
    day.add_argument("--db", type=Path, default=None,
                     help="the day's database (default: a new file beside the lab's "
                          "database, <name>_day_<time>.db)")
    day.add_argument("--quiet", action="store_true", help="no progress bars")
    day.set_defaults(handler=_day)


def _parse_fault(text: str | None) -> tuple[str, float] | None:
    if text is None:
        return None
    kind, _, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if kind not in FAULT_KINDS or not number == number:  # nan: not a number
        raise ValueError(f"--fault {text!r}: expected KIND=VALUE with KIND one of "
                         f"{', '.join(FAULT_KINDS)}, e.g. pump_coupling=0.7")
    if kind in FACTOR_KINDS and not number > 0:  # refused now, not after a day's work
        raise ValueError(f"--fault {text!r}: {kind} takes a factor > 0 (0.7: a 30 % drop)")
    return kind, number


def _default_db(config: Any) -> Path:
    base = Path(config.database or Path(config.path).with_suffix(".db"))
    return base.with_name(f"{base.stem}_day_{time.strftime('%Y%m%d-%H%M%S')}.db")


def _print_session(title: str, session: Session, out: TextIO) -> None:
    recal = ", ".join(_short(n) for n in session.recalibrated) or "none"
    checked = len(session.checked)
    bad = "" if not session.not_good else "; NOT GOOD: " + ", ".join(
        f"{_short(n)} ({s})" for n, s in session.not_good.items())
    print(f"{title} (lab time {session.lab_time / 3600.0:5.2f} h): {checked} quick checks, "
          f"recalibrated: {recal}{bad}", file=out, flush=True)
    for action in session.maintainer.log:
        if action.operation == "calibrate" or action.outcome in ("FAILED", "bad data"):
            print(f"    {action}", file=out)


def _short(node: str) -> str:
    return node.split(".", 1)[-1]


def _day(args: argparse.Namespace) -> int:
    from qnetlab.instruments.lab_config import load_config

    try:
        fault = _parse_fault(args.fault)
    except ValueError as exc:
        print(f"qnetlab: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.hours <= 0 or args.every <= 0:
        print(f"qnetlab: --hours and --every must be > 0 (got {args.hours} h, every "
              f"{args.every} s)", file=sys.stderr)
        return EXIT_USAGE
    config = load_config(args.config)
    symptom = None
    if args.diagnose is not None:  # before anything is opened or written
        from qnetlab.sequences.calibration.nodes import lab_graph

        from ._calibrate import _resolve

        try:
            symptom = _resolve(lab_graph(config), args.diagnose)
        except KeyError as exc:
            print(f"qnetlab: {exc.args[0]}", file=sys.stderr)
            return EXIT_USAGE
    db = args.db or _default_db(config)
    db.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    out = sys.stdout  # --quiet swallows what QCoDeS prints, not the day's own lines
    with quiet_output(args.quiet), LabDay(config, db, realistic=args.realistic,
                                          quiet=args.quiet) as day:
        from qnetlab.sim_instruments import IDEAL_DEFAULT

        drifting = "drifting (ideal: false)" if not day.config.simulation.get(
            "ideal", IDEAL_DEFAULT) else "ideal (no drift)"
        print(f"{day.lab} on the simulated bench, {drifting}; database {db}", file=out,
              flush=True)
        sessions = []
        for i, session in enumerate(run_day(day, args.hours, args.every)):
            _print_session("cold start" if i == 0 else f"hour {i * args.every / 3600:g}",
                           session, out)
            sessions.append(session)
        counts = day.recalibrations(sessions[1:])
        print("\nrecalibrations per node over the day (after the cold start):", file=out)
        for name in day.graph.order:
            print(f"  {_short(name):<24} {counts.get(name, 0)}", file=out)
        failed = sum(1 for s in sessions if s.not_good)
        if fault is not None:
            truth = day.inject(*fault)
            print(f"\nstep change: {fault[0]} {fault[1]:g} (the simulator's truth now: "
                  f"{truth:.10g} {FAULT_UNITS[fault[0]]})", file=out)
        if symptom is not None:
            session = day.diagnose(symptom)
            _print_session(f"diagnose {_short(symptom)}", session, out)
            failed += bool(session.not_good)
    print(f"\n{len(sessions)} sessions, {failed} not all good, in "
          f"{time.perf_counter() - started:.0f} s")
    return EXIT_BAD if failed else EXIT_OK
