"""The errors qnetlab raises: each names the thing that is wrong and how to fix it.

They form families, so a script or notebook can catch by kind, and the command line maps
each family to its exit code (`qnetlab.cli.EXIT_CODES`, one table)::

    QnetlabError                          (1)  root of every qnetlab error
    ├── ConfigError                       (2)  a lab/network config or argument is wrong
    ├── InstrumentError                   (1)  an instrument (or the lab behind it) failed
    │   ├── InstrumentClosedError         (1)  a handle to a closed instrument was used
    │   ├── InstrumentCommunicationError  (3)  could not be reached, or stopped answering
    │   │     InstrumentTimeoutError, InstrumentConnectionError > InstrumentUnreachableError,
    │   │     InstrumentReplyError, network ParameterServiceError
    │   └── InstrumentRefusedError        (1)  refused or stopped for safety; left safe
    │         SafetyLimitError > LimitsViolatedAfterReconnect, InterlockError,
    │         InstrumentReportedError, awg WaveformRejectedError, sim900 SlotError,
    │         sequences InterlockTimeoutError and FridgeCeilingError
    └── VerdictError                      (1)  a run's verdict is bad (when asked to raise)
    Interrupted (a KeyboardInterrupt)   (130)  Ctrl-C; StopSignal: SIGTERM or SIGHUP

`Interrupted` is deliberately not a `QnetlabError`: it stays a `KeyboardInterrupt`, so that
``except Exception`` (a logging wrapper, a retry loop) never swallows a stop, and
``except KeyboardInterrupt`` catches a polite kill as it catches Ctrl-C.

Also in the tree: `InstrumentError` directly holds the time tagger's `TagBlockError` (its
data make no sense) and the detector's `CounterNotConnectedError`; `ConfigError` holds the
network's `LabKeyError` and the calibration graph's `GraphError`. Internal exceptions that
never leave their module stay outside (the network decoder's `MalformedMessage`, counted
and dropped; the emulators' `ScpiError`, turned into an error-queue entry; the calibration
node's `MissingInputError`, turned into an outcome).
"""

from __future__ import annotations


class QnetlabError(Exception):
    """Base of every qnetlab error."""


class _OwnMessage(Exception):
    """An error whose first argument is the whole message. QCoDeS appends "setting <param>
    to <value>" or "getting <param>" to the args of any error raised in a set or get, which
    would print them as a tuple; the message already names the parameter."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(QnetlabError, ValueError):
    """A lab config is wrong: names the file, the entry, the problem and the fix."""

    def __init__(self, file: str, entry: str, problem: str, fix: str = "") -> None:
        self.file, self.entry, self.problem, self.fix = file, entry, problem, fix
        text = f"{file}: {entry}: {problem}" if entry else f"{file}: {problem}"
        super().__init__(text + (f". Fix: {fix}" if fix else ""))


class InstrumentError(QnetlabError):
    """An instrument, or the lab behind it, failed or refused (family; exit code 1)."""


class InstrumentClosedError(InstrumentError, AttributeError):
    """A handle to an instrument that was closed (its station closed, or the config loaded
    again, which closes the old instruments of the same names) was used. An AttributeError
    too, so `hasattr` on a closed handle still answers False."""


class InstrumentCommunicationError(InstrumentError):
    """An instrument could not be reached, did not answer in time, or answered nonsense
    (family; exit code 3). The drivers reopen the session before the next command."""


class InstrumentRefusedError(InstrumentError):
    """An instrument or a safety guard refused a setting, or stopped a run to keep the lab
    safe (family; exit code 1). What was refused was not sent."""


class VerdictError(QnetlabError):
    """A run's verdict is bad, for a caller that asked for an exception instead of a
    verdict to read (exit code 1). `verdict` is the verdict object, `run_id` the run."""

    def __init__(self, message: str, verdict: object = None, run_id: object = None) -> None:
        super().__init__(message)
        self.verdict, self.run_id = verdict, run_id


class Interrupted(KeyboardInterrupt):
    """A stop from outside: Ctrl-C, or a stop signal (`StopSignal`). A `KeyboardInterrupt`,
    not a `QnetlabError` (see the module docstring); exit code 130."""


class StopSignal(Interrupted):
    """SIGTERM or SIGHUP, raised in the main thread as a KeyboardInterrupt, so everything
    that puts the bench back on Ctrl-C (a sequence's finish and stop record, closing the
    station, stopping the link's processes) does the same on a polite kill. ``str()`` is the
    signal's name. Raised by `qnetlab.cli.stop_signals_as_interrupt`."""


class SafetyLimitError(_OwnMessage, InstrumentRefusedError, ValueError):
    """A value outside a soft limit from the lab config; the instrument was not touched."""


class InterlockError(_OwnMessage, InstrumentRefusedError, RuntimeError):
    """An interlock refused a setting; the instrument was not touched."""


class InstrumentTimeoutError(InstrumentCommunicationError, TimeoutError):
    """An instrument did not answer in time."""


class InstrumentConnectionError(InstrumentCommunicationError, ConnectionError):
    """The connection to an instrument failed or was lost."""


class InstrumentReportedError(InstrumentRefusedError, RuntimeError):
    """The instrument's error queue reported an error after a command."""


class InstrumentUnreachableError(InstrumentConnectionError):
    """An instrument of a station could not be connected: nothing answered at its address,
    it accepted the connection but did not answer, or its replies made no sense to the
    driver. Names the config file and entry, the address, what was sent and the fix."""

    def __init__(self, file: str, entry: str, problem: str, fix: str = "") -> None:
        self.file, self.entry, self.problem, self.fix = file, entry, problem, fix
        text = f"{file}: {entry}: {problem}" if entry else f"{file}: {problem}"
        super().__init__(text + (f". Fix: {fix}" if fix else ""))


class InstrumentReplyError(_OwnMessage, InstrumentCommunicationError, RuntimeError):
    """An instrument's reply could not be parsed: names the instrument, its address, the
    command sent and the reply. The session is reopened before the next command, since a
    reply that makes no sense may mean the stream is out of step."""


class LimitsViolatedAfterReconnect(SafetyLimitError):
    """After a reconnect (the instrument may have restarted), a parameter read outside its
    soft limits; nothing was sent to the instrument but its connect-time setup and reads."""
