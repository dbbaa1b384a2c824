"""What a database holds and what a sequence takes, at the command line: `qnetlab runs`,
`qnetlab run list` and `qnetlab run SEQUENCE --help`."""

from __future__ import annotations

from pathlib import Path

import pytest

from qnetlab.cli import main
from qnetlab.sequences.catalogue import option_rows
from qnetlab.sequences.resonance import ResonanceScanOptions

BENCH = Path(__file__).resolve().parents[1] / "lab_configs" / "transducer_bench.yaml"


def test_run_list_gives_each_sequence_a_one_line_description(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "list"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("microwave_resonance_scan "))
    assert "VNA scan of the transducer's microwave mode" in line
    assert len([x for x in out.splitlines() if x.strip()]) == 2 + 11  # header, rule, each


def test_run_sequence_help_lists_its_options_with_units_and_defaults(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["run", "microwave_resonance_scan", "--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert "usage: qnetlab run microwave_resonance_scan CONFIG" in out
    assert "  center (float, default 8000000000.0)" in out
    assert "Centre of the scan window, Hz." in out
    assert "  points (int, default 401)" in out


def test_run_help_without_a_sequence_is_the_verbs_help(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "usage: qnetlab run" in capsys.readouterr().out


def test_help_of_an_unknown_sequence_names_the_known_ones(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["run", "microwave_resonance_sacn", "--help"])
    assert stopped.value.code == 2
    assert "did you mean 'microwave_resonance_scan'" in capsys.readouterr().err


def test_option_rows_read_each_fields_docstring() -> None:
    rows = {row[0]: row for row in option_rows(ResonanceScanOptions)}
    assert rows["if_bandwidth"][1:3] == ["float", "1000.0"]
    assert rows["if_bandwidth"][3].startswith("VNA IF bandwidth, Hz")


def test_runs_lists_a_databases_runs_with_their_verdicts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "lab.db"
    assert main(["runs", "--db", str(db)]) == 2  # not created by asking
    assert "no database at" in capsys.readouterr().err and not db.exists()
    for _ in range(2):
        assert main(["run", "microwave_resonance_scan", str(BENCH), "--db", str(db), "--quiet",
                     "--set", "points=101", "--set", "segments=2"]) == 0
    capsys.readouterr()
    assert main(["runs", "--db", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{db}: 2 run(s)"
    assert lines[1].split() == ["id", "sequence", "started", "status", "verdict"]
    for run_id, line in zip((1, 2), lines[3:], strict=True):
        fields = line.split()
        assert fields[0] == str(run_id) and fields[1] == "microwave_resonance_scan"
        assert fields[-2:] == ["completed", "good"]
