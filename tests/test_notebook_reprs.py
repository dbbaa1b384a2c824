"""Results read well in a notebook (an HTML repr) and everywhere numbers carry SI prefixes
from one formatter."""

from __future__ import annotations

from pathlib import Path

from qnetlab.instruments.station import load_station
from qnetlab.sequences.analysis import FitValue
from qnetlab.sequences.resonance import MicrowaveResonanceScan, ResonanceScanOptions

BENCH = Path(__file__).resolve().parents[1] / "lab_configs" / "transducer_bench.yaml"


def test_a_fit_value_prints_with_an_si_prefix_and_both_errors() -> None:
    assert str(FitValue(8.0e9, 1514.8, "Hz")) == "8.0000000 ± 0.0000015 GHz"
    assert str(FitValue(2.0e-6, 1.0e-7, "W")) == "2.00 ± 0.10 µW"
    both = FitValue.combined(0.087, 0.0021, 0.004)
    assert str(both) == "0.0870 ± 0.0021 (stat) ± 0.0040 (sys)"


def test_a_run_and_its_analysis_show_as_html_in_a_notebook(tmp_path: Path) -> None:
    with load_station(BENCH, "sim") as station:
        run = MicrowaveResonanceScan(ResonanceScanOptions(points=101, segments=2)).run(
            station, tmp_path / "lab.db", quiet=True)
    assert run.analysis is not None
    page = run.analysis._repr_html_()
    assert "class='good'>GOOD</span>" in page and "microwave_resonance_scan" in page
    assert "GHz" in page and "± " in page  # values with units and errors, SI-prefixed
    assert "<img" in page and "data:image/png;base64," in page  # its figure, inline
    assert "<style>" in page  # styles itself: a notebook has no report stylesheet
    outer = run._repr_html_()
    assert f"microwave_resonance_scan {run.run_id} (lab.db)" in outer
    assert "completed" in outer and "GOOD" in outer
