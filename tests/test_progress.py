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
