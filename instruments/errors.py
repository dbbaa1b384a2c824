"""The errors qnetlab raises: each names the thing that is wrong and how to fix it."""

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


class SafetyLimitError(_OwnMessage, QnetlabError, ValueError):
    """A value outside a soft limit from the lab config; the instrument was not touched."""


class InterlockError(_OwnMessage, QnetlabError, RuntimeError):
    """An interlock refused a setting; the instrument was not touched."""


class InstrumentTimeoutError(QnetlabError, TimeoutError):
    """An instrument did not answer in time."""


class InstrumentConnectionError(QnetlabError, ConnectionError):
    """The connection to an instrument failed or was lost."""


class InstrumentReportedError(QnetlabError, RuntimeError):
    """The instrument's error queue reported an error after a command."""


class InstrumentUnreachableError(InstrumentConnectionError):
    """An instrument of a station could not be connected: nothing answered at its address,
    it accepted the connection but did not answer, or its replies made no sense to the
    driver. Names the config file and entry, the address, what was sent and the fix."""

    def __init__(self, file: str, entry: str, problem: str, fix: str = "") -> None:
        self.file, self.entry, self.problem, self.fix = file, entry, problem, fix
        text = f"{file}: {entry}: {problem}" if entry else f"{file}: {problem}"
        super().__init__(text + (f". Fix: {fix}" if fix else ""))


class InstrumentReplyError(_OwnMessage, QnetlabError, RuntimeError):
    """An instrument's reply could not be parsed: names the instrument, its address, the
    command sent and the reply. The session is reopened before the next command, since a
    reply that makes no sense may mean the stream is out of step."""


class LimitsViolatedAfterReconnect(SafetyLimitError):
    """After a reconnect (the instrument may have restarted), a parameter read outside its
    soft limits; nothing was sent to the instrument but its connect-time setup and reads."""
