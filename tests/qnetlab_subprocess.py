"""`python -m qnetlab ...` as a subprocess whose output a test can wait on (shared by the tests
that signal the command line's processes: tests/test_signals.py, tests/test_network_bringup.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO

DEADLINE_S = 120.0
"""Generous: a noisy 2-core CI box, and the run's own settle times."""


class Output:
    """A subprocess's stdout and stderr, read on threads, so a test can wait for a pattern
    (the progress bar redraws with '\\r', so lines never end while a run measures)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.text = {"out": "", "err": ""}
        self._changed = threading.Condition()
        self._threads = [threading.Thread(target=self._pump, args=(key, stream), daemon=True)
                         for key, stream in (("out", proc.stdout), ("err", proc.stderr))]
        for thread in self._threads:
            thread.start()

    def _pump(self, key: str, stream: object) -> None:
        fd = stream.fileno()  # type: ignore[attr-defined]
        while chunk := os.read(fd, 4096):
            with self._changed:
                self.text[key] += chunk.decode(errors="replace")
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, key: str = "err") -> re.Match[str]:
        deadline = time.monotonic() + DEADLINE_S
        with self._changed:
            while (match := re.search(pattern, self.text[key])) is None:
                if self.proc.poll() is not None and not any(t.is_alive()
                                                            for t in self._threads):
                    pytest.fail(f"process ended ({self.proc.returncode}) before "
                                f"{pattern!r}:\n{self.text}")
                if time.monotonic() > deadline:
                    pytest.fail(f"no {pattern!r} within {DEADLINE_S} s:\n{self.text}")
                self._changed.wait(0.5)
        return match

    def finish(self) -> int:
        try:
            code = self.proc.wait(DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"still running {DEADLINE_S} s after the signal:\n{self.text}")
        for thread in self._threads:
            thread.join(10)
        return code


def run_qnetlab(*args: str) -> Output:
    """`python -m qnetlab ARGS` started from the repository, its output read as it comes."""
    # Unbuffered: "Connected to: ..." must reach the pipe when it is printed.
    proc = subprocess.Popen([sys.executable, "-m", "qnetlab", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return Output(proc)
