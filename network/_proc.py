"""The lab's processes: each its own OS process, all stopped together, none left behind.

`ProcessGroup` starts each process with the multiprocessing *spawn* method (a fresh
interpreter, nothing inherited but the pickled arguments) and stops them all on exit, on
Ctrl-C and on SIGTERM. A child stops by itself when its parent dies (Linux parent-death
signal, and a parent-pid check for the window before it was set), so even a SIGKILLed
launcher leaves no orphans. Inside a child, `StopFlag` turns SIGTERM/SIGINT into a flag the
process's loop checks between blocking receives, so it closes its sockets and writes its files.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

_PR_SET_PDEATHSIG = 1
_PR_SET_TIMERSLACK = 29


STOP_TIMEOUT_S = 20.0
"""How long `ProcessGroup.stop_all` lets a child finish its files after SIGTERM before it
SIGKILLs it: longer than the station gives its tagger reader to close its source (15 s,
`herald_publisher.BlockReader.stop_timeout_s`: the simulated link's twin writes the last of
its ground truth then), so a loaded machine never costs a run its files. A child that is
done exits at once; only a stuck one costs the wait."""


class StopFlag:
    """Set by SIGTERM, SIGINT or SIGHUP, or when the parent process is gone."""

    def __init__(self, parent_pid: int | None = None) -> None:
        self._set = False
        self.reason = ""
        self._parent_pid = parent_pid

    def set(self, reason: str = "asked") -> None:
        if not self._set:
            self._set, self.reason = True, reason

    def __bool__(self) -> bool:
        if not self._set and self._parent_pid is not None and os.getppid() != self._parent_pid:
            self.set("parent gone")
        return self._set

    def install(self) -> None:
        """Route SIGTERM, SIGINT and SIGHUP to this flag (main thread only): a closed
        terminal hangs up the whole process group, and each child must still write its
        files."""
        def handler(signum: int, frame: FrameType | None) -> None:
            self.set(signal.Signals(signum).name)

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, handler)


def _prctl(option: int, value: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def precise_timers() -> None:
    """Lower this thread's timer slack to 1 us (Linux default 50 us), so a sleep until the
    next herald's decision time wakes within microseconds. Threads started later inherit it."""
    _prctl(_PR_SET_TIMERSLACK, 1000)


EXIT_FAULT = 2
"""A child's exit code after a fault it reported to the launcher (see `network._faults`)."""


def _child(target: Callable[..., None], args: tuple[Any, ...], parent_pid: int,
           report_to: Path | None = None, name: str = "") -> None:
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    stop = StopFlag(parent_pid)
    stop.install()
    precise_timers()
    if os.getppid() != parent_pid:  # died before the death signal was armed
        return
    if report_to is None:
        target(*args, stop)
        return
    try:
        target(*args, stop)
    except Exception as exc:
        from ._faults import report_exception

        if report_exception(report_to, name, exc):
            # The launcher names the cause (an address in use, a bad key): no traceback.
            raise SystemExit(EXIT_FAULT) from None
        raise  # a bug: its traceback is wanted


class ProcessGroup:
    """Named child processes; `stop_all` (also on leaving a ``with`` block) ends them all.

    Each target is called in its child as ``target(*args, stop)`` with a `StopFlag`; it
    must return soon after the flag is set (it is checked between bounded waits).
    """

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._procs: dict[str, BaseProcess] = {}

    def start(self, name: str, target: Callable[..., None], *args: Any,
              report_to: Path | None = None) -> None:
        """Start `target` as process `name`. With `report_to` (the run directory), what
        stops it with an exception is reported there for the launcher
        (`network._faults.read_faults`), and a known fault (an address in use, a bad key)
        ends it with exit code `EXIT_FAULT` and no traceback."""
        old = self._procs.get(name)
        if old is not None and old.is_alive():
            raise RuntimeError(f"process {name!r} is already running (pid {old.pid})")
        proc = self._context.Process(
            target=_child, args=(target, args, os.getpid(), report_to, name), name=name,
            daemon=True)
        proc.start()
        self._procs[name] = proc

    @property
    def names(self) -> list[str]:
        """Every process started, in start order."""
        return list(self._procs)

    def pid(self, name: str) -> int | None:
        return self._procs[name].pid

    def is_alive(self, name: str) -> bool:
        return self._procs[name].is_alive()

    def exitcode(self, name: str) -> int | None:
        return self._procs[name].exitcode

    def join(self, name: str, timeout: float | None = None) -> int | None:
        """Wait up to `timeout` s for `name` to end; its exit code, None if still running."""
        proc = self._procs[name]
        proc.join(timeout)
        return proc.exitcode

    def kill(self, name: str) -> None:
        """SIGKILL `name` (a crash, for fault tests): it writes nothing on the way out."""
        proc = self._procs[name]
        if proc.is_alive():
            proc.kill()
        proc.join(5.0)

    def terminate(self, name: str, timeout: float = 5.0) -> int | None:
        """SIGTERM `name` and wait for it to finish its files; SIGKILL after `timeout` s."""
        proc = self._procs[name]
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout)
            if proc.is_alive():
                proc.kill()
                proc.join(5.0)
        return proc.exitcode

    def stop_all(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM every running child (latest started first), then wait for all of them
        together, SIGKILLing any still running after `timeout` s."""
        running = [p for p in reversed(self._procs.values()) if p.is_alive()]
        for proc in running:
            with contextlib.suppress(OSError):
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in running:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in running:
            if proc.is_alive():
                proc.kill()
                proc.join(5.0)

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """In a launcher: treat SIGTERM like Ctrl-C, so ``with ProcessGroup()`` stops the
    children on either. A handler already installed (the `qnetlab` command line's, which
    names the signal) is left in place."""
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    if callable(signal.getsignal(signal.SIGTERM)):
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
