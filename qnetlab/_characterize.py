"""`qnetlab characterize CONFIG`: the automated transducer characterization, with its report."""

from __future__ import annotations

import argparse
from typing import Any

from ._format import format_fit, table
from ._runs import add_station_options, database_for, open_lab_station, quiet_output
from ._telemetry import lab_telemetry

EXIT_OK, EXIT_BAD = 0, 1


def add_parser(verbs: Any) -> None:
    parser = verbs.add_parser(
        "characterize", help="characterize a transducer end to end and write its report",
        description="Find the transducer's resonances, map its conversion efficiency, "
                    "bandwidth, added noise and pump heating, recommend an operating point, "
                    "and write an HTML and a JSON report next to the lab database. Exit code "
                    "0 when every step is good and an operating point was found, 1 otherwise "
                    "(the report says why).",
    )
    parser.add_argument("config", help="station YAML, e.g. lab_configs/transducer_bench.yaml")
    add_station_options(parser)
    parser.add_argument("--max-added-noise", type=float, default=1.0,
                        help="N_add threshold of the operating point, photons (default 1)")
    parser.add_argument("--fridge-budget", type=float, default=10e-6,
                        help="largest pump power absorbed at the mixing chamber, W "
                             "(default 10e-6)")
    parser.set_defaults(handler=_characterize)


def _characterize(args: argparse.Namespace) -> int:
    from qnetlab.instruments.lab_config import load_config
    from qnetlab.sequences.transducer.characterization import (
        TransducerCharacterization,
        summary_values,
    )

    config = load_config(args.config)
    db = database_for(config, args.db)
    characterization = TransducerCharacterization(max_added_noise=args.max_added_noise,
                                                  fridge_budget=args.fridge_budget)
    with quiet_output(args.quiet):
        station = open_lab_station(config, args.profile)
    with station, lab_telemetry(station):  # publishes if the config names telemetry
        result = characterization.run(station, db, quiet=args.quiet)
    rows = [[label, format_fit(v.value, v.stderr, v.unit, v.sys)]
            for label, v in summary_values(result).items()]
    if rows:
        print(table(rows, ["quantity", "value ± 1 sigma"]))
    for name, run in result.runs.items():
        if run is None:
            print(f"{name}: {result.notes.get(name, 'skipped')}")
        elif run.analysis is None:
            print(result.notes.get(name) or f"{name} run {run.run_id}: not analyzed "
                  f"({run.status}, {run.points} points)")
        elif not run.analysis.verdict.good:
            print(f"{name} run {run.run_id}: {run.analysis.verdict}")
    print(f"\n{result.verdict}")
    print(f"report: {result.report_html}\nsummary: {result.report_json}\ndatabase: {db}")
    return EXIT_OK if result.good else EXIT_BAD
