"""The errors qnetlab raises: each names the thing that is wrong and how to fix it."""

from __future__ import annotations


class QnetlabError(Exception):
    """Base of every qnetlab error."""


class ConfigError(QnetlabError, ValueError):
    """A lab config is wrong: names the file, the entry, the problem and the fix."""

    def __init__(self, file: str, entry: str, problem: str, fix: str = "") -> None:
        self.file, self.entry, self.problem, self.fix = file, entry, problem, fix
        text = f"{file}: {entry}: {problem}" if entry else f"{file}: {problem}"
        super().__init__(text + (f". Fix: {fix}" if fix else ""))


class SafetyLimitError(QnetlabError, ValueError):
    """A value outside a soft limit from the lab config; the instrument was not touched."""


class InterlockError(QnetlabError, RuntimeError):
    """An interlock refused a setting; the instrument was not touched."""


class InstrumentTimeoutError(QnetlabError, TimeoutError):
    """An instrument did not answer in time."""


class InstrumentConnectionError(QnetlabError, ConnectionError):
    """The connection to an instrument failed or was lost."""


class InstrumentReportedError(QnetlabError, RuntimeError):
    """The instrument's error queue reported an error after a command."""
