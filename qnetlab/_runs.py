"""`qnetlab run SEQUENCE CONFIG`, `qnetlab analyze RUN_ID` and `qnetlab runs`: one sequence,
one analysis, and what a database holds."""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._format import format_fit, table

EXIT_OK, EXIT_BAD_VERDICT = 0, 1


def add_parser(verbs: Any) -> None:
    run = verbs.add_parser(
        "run", help="run one sequence on a station and analyze it", add_help=False,
        description="Run one sequence on a station, store its dataset in the lab database, "
                    "analyze it and print the verdict. Exit code 1 if the verdict is bad. "
                    "`qnetlab run SEQUENCE --help` lists the sequence's options.",
    )
    run.add_argument("-h", "--help", action=_SequenceHelp,
                     help="show this help, or with a SEQUENCE its options, and exit")
    run.add_argument("sequence", help="sequence name, e.g. microwave_resonance_scan "
                                      "(`qnetlab run list` lists them)")
    run.add_argument("config", nargs="?", help="station YAML")
    add_station_options(run)
    run.add_argument("--set", dest="options", action="append", default=[],
                     metavar="NAME=VALUE", help="a sequence option, SI units (repeatable)")
    run.set_defaults(handler=_run)

    analyze = verbs.add_parser(
        "analyze", help="re-run a stored run's analysis offline",
        description="Re-run the analysis of a stored run from its dataset alone (no "
                    "instruments), store the new result with the run and print it.",
    )
    analyze.add_argument("run_id", type=int, help="run id in the database")
    where = analyze.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", type=Path, help="the lab database (.db)")
    where.add_argument("--config", help="station YAML whose qnetlab.database to use")
    analyze.set_defaults(handler=_analyze)

    runs = verbs.add_parser(
        "runs", help="list the runs of a lab database",
        description="List every run of a lab database: id, sequence, start, status and the "
                    "stored analysis's verdict (`qnetlab analyze ID --db DB` re-runs one).",
    )
    where = runs.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", type=Path, help="the lab database (.db)")
    where.add_argument("--config", help="station YAML whose qnetlab.database to use")
    runs.set_defaults(handler=_runs)


class _SequenceHelp(argparse.Action):
    """``--help``: the parser's help, or, after a sequence name, that sequence's options."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                         nargs=0, help=kwargs.get("help"))

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        name = getattr(namespace, "sequence", None)
        if name is None or name == "list":
            parser.print_help()
            parser.exit()
        from qnetlab.sequences.catalogue import describe, option_rows
        from qnetlab.sequences.registry import sequence_class

        try:
            cls = sequence_class(name)
        except ValueError as exc:
            parser.exit(2, f"qnetlab: {exc}\n")
        print(f"usage: qnetlab run {name} CONFIG [--set NAME=VALUE ...]\n\n{describe(cls)}\n\n"
              "options (SI units; lists comma-separated):")
        for option, kind, default, meaning in option_rows(cls.options_class):
            print(f"  {option} ({kind}, default {default})")
            print(textwrap.fill(meaning, 92, initial_indent=" " * 6,
                                subsequent_indent=" " * 6))
        parser.exit()


def add_station_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=("sim", "real"), default="sim",
                        help="sim: simulated twins (default); real: the real addresses")
    parser.add_argument("--db", type=Path, default=None,
                        help="lab database (default: the config's qnetlab.database, else "
                             "qnetlab_data/<config name>.db)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars (for scripts); results are still printed")


@contextlib.contextmanager
def quiet_output(quiet: bool) -> Iterator[None]:
    """With --quiet, swallow what QCoDeS prints while connecting ("Connected to: ...")."""
    if not quiet:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def open_lab_station(config: Any, profile: str) -> Any:
    """The station of `config`; a lab with a calibration graph and a database gets its
    current calibrated values applied at start-up (`sequences.calibration.startup`)."""
    from qnetlab.instruments.station import load_station

    if config.calibration and config.database is not None and Path(config.database).is_file():
        from qnetlab.sequences.calibration.startup import open_calibrated_station

        return open_calibrated_station(config, profile)
    return load_station(config, profile)


def database_for(config: Any, db: Path | None) -> Path:
    """The database a command writes to: --db, else the config's, else a default."""
    if db is not None:
        return db
    if config.database is not None:
        return Path(config.database)
    return Path("qnetlab_data") / f"{Path(config.path).stem}.db"


def print_result(result: Any) -> None:
    """An AnalysisResult as the command line shows it."""
    print(f"{result.sequence} run {result.run_id}: {result.verdict}")
    rows = [[k, format_fit(v.value, v.stderr, v.unit, v.sys)]
            for k, v in result.values.items()]
    if rows:
        print(table(rows, ["value", "fit ± 1 sigma"]))
    if result.proposed:
        print("proposed: " + ", ".join(f"{k} = {v:.6g}" for k, v in result.proposed.items()))
    for path in result.figures:
        print(f"figure: {path}")


def _run(args: argparse.Namespace) -> int:
    from qnetlab.instruments.lab_config import load_config
    from qnetlab.sequences.registry import parse_options, sequence_class, sequence_names

    from ._telemetry import lab_telemetry

    if args.sequence == "list":
        from qnetlab.sequences.catalogue import describe

        print(table([[name, describe(sequence_class(name))] for name in sequence_names()],
                    ["sequence", "what it does"]))
        return EXIT_OK
    try:
        cls = sequence_class(args.sequence)
        options = parse_options(cls, args.options)
        if args.config is None:
            raise ValueError(f"which station? write: qnetlab run {args.sequence} CONFIG")
    except ValueError as exc:
        print(f"qnetlab: {exc}", file=sys.stderr)
        return 2
    config = load_config(args.config)
    db = database_for(config, args.db)
    with quiet_output(args.quiet):
        station = open_lab_station(config, args.profile)
    with station, lab_telemetry(station):  # publishes if the config names telemetry
        result = cls(options).run(station, db, quiet=args.quiet)
    print(f"database: {db}")
    if result.stopped_at:
        unfinished = result.stopped_at.get("points_of_unfinished_step", 0)
        of_step = f", {unfinished} of them from the unfinished step" if unfinished else ""
        print(f"stopped at {result.stopped_at['label']}: {result.stopped_at['cause']} "
              f"({result.points} points kept{of_step})")
    if result.analysis is None:
        print(f"{cls.name} run {result.run_id}: no points measured, nothing to analyze")
        return EXIT_BAD_VERDICT
    print_result(result.analysis)
    return EXIT_OK if result.analysis.verdict.good else EXIT_BAD_VERDICT


def _runs(args: argparse.Namespace) -> int:
    from qnetlab.instruments.lab_config import load_config
    from qnetlab.sequences.catalogue import run_rows

    db = args.db if args.db is not None else database_for(load_config(args.config), None)
    try:
        rows = run_rows(db)
    except FileNotFoundError as exc:
        print(f"qnetlab: {exc}; give the lab database with --db (or its config with --config)",
              file=sys.stderr)
        return 2
    print(f"{db}: {len(rows)} run(s)")
    if rows:
        print(table(rows, ["id", "sequence", "started", "status", "verdict"]))
    return EXIT_OK


def _analyze(args: argparse.Namespace) -> int:
    """Exit 2 when the run cannot be found (no database, no such run, no qnetlab analysis
    named with it); an analysis that cannot proceed is a bad verdict with its reason, exit 1
    (`sequences.analysis.Analysis.run`)."""
    from qnetlab.instruments.lab_config import load_config
    from qnetlab.sequences.analysis import analyze_run

    db = args.db if args.db is not None else database_for(load_config(args.config), None)
    try:
        result = analyze_run(args.run_id, db)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        print(f"qnetlab: {exc}", file=sys.stderr)
        return 2
    print_result(result)
    return EXIT_OK if result.verdict.good else EXIT_BAD_VERDICT
