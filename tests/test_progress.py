"""The run's progress: a tqdm bar on a terminal, plain lines in a log, notes between them."""

from __future__ import annotations

import io

from qnetlab.sequences.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_one_plain_line_per_step_done_with_time_taken_and_left() -> None:
    log = io.StringIO()
    progress = Progress(4, "efficiency_map", stream=log)
    for done in range(4):  # as the framework calls it: before and after each step
        progress.update(done, f"power {done + 1} of 4")
        if done == 2:
            progress.note("PAUSED before power 3 of 4: interlock ...")
        progress.update(done + 1, f"power {done + 1} of 4")
    progress.close("stopped at nothing")
    text = log.getvalue()
    assert "\r" not in text
    assert text.splitlines() == [
        "efficiency_map: 1/4 power 1 of 4 [0:00 elapsed, ~0:00 left]",
        "efficiency_map: 2/4 power 2 of 4 [0:00 elapsed, ~0:00 left]",
        "efficiency_map: PAUSED before power 3 of 4: interlock ...",
        "efficiency_map: 3/4 power 3 of 4 [0:00 elapsed, ~0:00 left]",
        "efficiency_map: 4/4 power 4 of 4 [0:00 elapsed]",
        "efficiency_map: stopped at nothing",
    ]


def test_a_terminal_gets_a_tqdm_bar_with_rate_and_eta() -> None:
    term = _Terminal()
    progress = Progress(10, "optical_resonance_scan", stream=term)
    progress.update(3, "segment 4 of 10")
    progress.note("RESUMED after 60 s")
    progress.close("stopped at segment 4 of 10: interrupted by the user (Ctrl-C)")
    text = term.getvalue()
    assert "\r" in text  # redrawn in place
    assert "optical_resonance_scan:  30%" in text and "3/10" in text
    assert "segment 4 of 10" in text and ("step/s" in text or "s/step" in text)
    assert "optical_resonance_scan: RESUMED after 60 s\n" in text
    assert text.endswith("optical_resonance_scan: stopped at segment 4 of 10: interrupted by "
                         "the user (Ctrl-C)\n")


def test_quiet_writes_nothing() -> None:
    for stream in (io.StringIO(), _Terminal()):
        progress = Progress(3, "x", quiet=True, stream=stream)
        progress.update(1, "a")
        progress.note("PAUSED")
        progress.close("stopped")
        assert stream.getvalue() == ""


def test_a_long_step_shows_its_latest_reading_while_it_runs(tmp_path, monkeypatch) -> None:
    """A step that hands its points over one by one (`keep`) shows the latest one, with its
    unit, beside the step's label, on the bar and to the monitor, before the step ends."""
    from dataclasses import dataclass
    from typing import Any, ClassVar

    from qnetlab.instruments.station import LabStation, load_station
    from qnetlab.sequences import progress as progress_module
    from qnetlab.sequences.analysis import Analysis, AnalysisResult, Verdict
    from qnetlab.sequences.data import StoredRun
    from qnetlab.sequences.framework import DatasetParameter, LabSequence, Step
    from qnetlab.sequences.progress import reporting_to

    from conftest import BENCH_CONFIG

    monkeypatch.setattr(progress_module, "LIVE_PERIOD_S", 0.0)  # every reading, not 2/s
    heard: list[tuple[int, str]] = []

    class Listener:
        def sequence_progress(self, sequence: str, done: int, total: int, detail: str,
                              state: str, reason: str) -> None:
            heard.append((done, detail))

        def calibration_states(self, nodes: object) -> None:
            pass

    @dataclass(frozen=True)
    class Options:
        readings: int = 3

    class Check(Analysis):
        def analyze(self, run: StoredRun) -> AnalysisResult:
            return AnalysisResult(self.name, Verdict.good(), {})

    class ReadTheFridge(LabSequence[Options]):
        name: ClassVar[str] = "read_the_fridge"
        options_class = Options
        analysis_class = Check

        def dataset_parameters(self) -> list[DatasetParameter]:
            return [DatasetParameter("reading", "", "Reading"),
                    DatasetParameter("mxc_temperature", "K", "MXC", setpoints=("reading",))]

        def steps(self) -> list[Step]:
            return [Step(0, "one long step")]

        def measure(self, station: LabStation, step: Step) -> dict[str, Any]:
            assert station.setup is not None
            for i in range(self.options.readings):
                self.keep({"reading": float(i),
                           "mxc_temperature": station.setup.mxc_temperature()})
            return {}

    with load_station(BENCH_CONFIG) as station, reporting_to(Listener()):
        ReadTheFridge().run(station, tmp_path / "lab.db", quiet=True)
    live = [detail for done, detail in heard if done == 0 and "MXC" in detail]
    assert len(live) == 3, heard  # one per reading, all inside the step (0 steps done)
    assert all(d.startswith("one long step: MXC ") and d.endswith("K") for d in live)
