"""The VISA base every qnetlab driver shares.

It does what plain `VisaInstrument` leaves to each driver:

* pyvisa-py leaves Nagle's algorithm on for ``TCPIP::host::port::SOCKET`` resources, so a
  write followed by a query stalls ~40 ms; we switch TCP_NODELAY on the session's socket
  (``set_visa_attribute(VI_ATTR_TCPIP_NODELAY)`` raises in pyvisa-py 0.8.1).
* After every write the instrument's error queue is read (where the model has one), so a
  rejected command raises at once instead of surfacing later as a wrong value.
* A VISA timeout or a lost connection becomes an error that names the instrument and its
  address; the session is then reopened before the next command, so a late reply cannot be
  read as the answer to the next query and the station recovers without a restart.
* A query that gets no reply in time is followed (after reopening the session) by a read of
  the error queue, or of the event status register on models without one, and so is a
  reply that cannot be parsed on models with a queue: an error the instrument queued for
  that query is reported as the query's, naming it, not blamed on the next write.
  Successful queries are not followed by a read: that would double their cost. (A query
  to an instrument that has hung costs two timeouts: its own and the read's.) An error a
  write's check finds names the queries since the last check as possible causes too.
* A reply a parameter cannot parse raises `InstrumentReplyError` (instrument, address,
  command, reply), and the session is reopened before the next command.
* A reconnect redoes the driver's connect-time setup (`connect_setup`: units, formats),
  reads the error queue empty, forgets every cached value (the instrument may have
  restarted) and reads every soft-limited parameter again: one outside its limits raises
  `LimitsViolatedAfterReconnect` before the command that triggered the reconnect is sent.
"""

from __future__ import annotations

import contextlib
import socket
from collections import deque
from typing import TYPE_CHECKING, Any, ClassVar

import pyvisa
import pyvisa.constants
from qcodes.instrument import VisaInstrument

from qnetlab.instruments.errors import (
    InstrumentConnectionError,
    InstrumentReplyError,
    InstrumentReportedError,
    InstrumentTimeoutError,
    LimitsViolatedAfterReconnect,
)
from qnetlab.instruments.safety import SoftLimits

from ._replies import ConnectedMeta, all_parameters, guard_replies, parse_reply

if TYPE_CHECKING:
    from pyvisa.resources import MessageBasedResource


def _switch_nagle_off(resource: MessageBasedResource) -> None:
    session = getattr(resource.visalib, "sessions", {}).get(resource.session)
    sock = getattr(session, "interface", None)
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


STANDARD_ESR_ERRORS: tuple[tuple[int, str], ...] = (
    (1 << 5, "command error (CME: unrecognised command or bad syntax)"),
    (1 << 4, "execution error (EXE: a parameter out of range)"),
    (1 << 3, "device-dependent error (DDE)"),
    (1 << 2, "query error (QYE)"),
)
"""IEEE 488.2 standard event status register bits that mean a command failed."""


class QnetVisaInstrument(VisaInstrument, metaclass=ConnectedMeta):
    """VISA base of the qnetlab drivers: no Nagle stall, error-queue checks, clear errors,
    recovery after a reconnect (see the module docstring)."""

    error_query: ClassVar[str | None] = "SYST:ERR?"
    """Query that pops one entry of the error queue; None where the model has no queue."""
    max_errors_read: ClassVar[int] = 20
    status_query: ClassVar[str | None] = None
    """For models without an error queue: the IEEE 488.2 standard event status register query
    (``*ESR?``, which also clears it), read after every write instead."""
    esr_errors: ClassVar[tuple[tuple[int, str], ...]] = STANDARD_ESR_ERRORS
    queries_remembered: ClassVar[int] = 3
    """How many queries since the last error check an error report names as possible causes."""

    def __init__(self, name: str, address: str | None = None, **kwargs: Any) -> None:
        self._visalib_spec: str | None = kwargs.get("visalib")
        self._needs_reconnect = False
        self._recovering = False
        self._failed_command: str | None = None
        self._last_query: tuple[str, str] | None = None
        self._queries_since_check: deque[str] = deque(maxlen=self.queries_remembered)
        super().__init__(name, address, **kwargs)
        # Drop what another program, or the power-up (PON), left in the error state, so the
        # driver's first write is not blamed for it.
        self._log_stale_errors(self.read_error_state(), "at connection")

    def connect_setup(self) -> None:
        """Send what the driver relies on and the instrument forgets when it restarts (units,
        data formats, modes), e.g. the TSL-570's ``:POW:UNIT 1``. Runs once the driver is
        constructed and again after every reconnect, so after a restart the parameters mean
        what they say. The error state is read empty just before. Default: nothing."""

    def _after_init(self) -> None:
        """Once the whole ``__init__`` ran (`ConnectedMeta`): guard reply parsing, set up."""
        guard_replies(self, self)
        self.connect_setup()

    # -- connection --------------------------------------------------------------------------------
    def _open_resource(self, address: str, visalib: str | None) -> MessageBasedResource:
        resource = super()._open_resource(address, visalib)
        _switch_nagle_off(resource)
        return resource

    def reconnect(self) -> None:
        """Close and reopen the VISA session (after a timeout, a dropped connection or a reply
        out of step), then recover the instrument's state (see `_recover`)."""
        found = self._reopen()
        self._log_stale_errors(found, "on reconnecting")
        self._failed_command = None

    def _reopen(self) -> list[str]:
        """Reopen the session and recover; returns what the error state held on reopening
        (errors of the command that failed before, if the instrument queued any)."""
        address = self.address
        assert address is not None
        with contextlib.suppress(Exception):  # the old session may already be gone
            self.visa_handle.close()
        try:
            self.set_address(address, self._visalib_spec)
        except Exception as exc:
            self._needs_reconnect = True
            raise InstrumentConnectionError(
                f"{self.name} at {address}: could not reconnect ({exc}). Check that the "
                "instrument is on and reachable; for the simulated lab, that `qnetlab sim "
                "serve` is running"
            ) from exc
        terminator = self.default_terminator
        if terminator is not None:
            self.set_terminator(terminator)
        self._needs_reconnect = False
        self.log.info("reconnected to %s", address)
        self._recovering = True
        try:
            return self._recover()
        finally:
            self._recovering = False

    def _recover(self) -> list[str]:
        """After reopening: the instrument may have restarted (power cut, firmware reboot,
        `qnetlab sim serve` restarted), so its units, formats and settings are unknown."""
        found = self.read_error_state()
        self.connect_setup()
        self.invalidate_cache()  # recursive: channels too
        self.check_soft_limits()
        return found

    def _log_stale_errors(self, errors: list[str], when: str) -> None:
        if errors:
            cause = (f" (they may stem from {self._failed_command!r}, which failed before)"
                     if self._failed_command else "")
            self.log.warning("%s at %s: the error state held %s %s%s; cleared", self.name,
                             self.address, "; ".join(errors), when, cause)

    def check_soft_limits(self) -> None:
        """Read every parameter that has soft limits (`instruments.safety.SoftLimits`) and
        raise `LimitsViolatedAfterReconnect` if any reads outside them."""
        outside = []
        for param in all_parameters(self):
            limits = next((v for v in param.validators if isinstance(v, SoftLimits)), None)
            if limits is None or not param.gettable:
                continue
            value = param.get()
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if not limits.low <= value <= limits.high:
                unit = f" {param.unit}" if param.unit else ""
                outside.append(f"{param.full_name} reads {value:g}{unit}, outside its soft "
                               f"limits [{limits.low:g}, {limits.high:g}]{unit} (from "
                               f"{limits.source})")
        if outside:
            raise LimitsViolatedAfterReconnect(
                f"{self.name} at {self.address}: after reconnecting (the instrument may have "
                f"restarted) {'; '.join(outside)}. Nothing was set: the command that led to "
                "the reconnect was not sent. Check the instrument, then set the value inside "
                "its limits"
            )

    # -- I/O -------------------------------------------------------------------------------------
    def _failed(self, exc: Exception, cmd: str) -> Exception:
        self._needs_reconnect = True
        self._failed_command = cmd
        where = f"{self.name} at {self.address}"
        if isinstance(exc, pyvisa.errors.VisaIOError) and exc.error_code == (
            pyvisa.constants.StatusCode.error_timeout
        ):
            return InstrumentTimeoutError(
                f"{where} did not answer {cmd!r} within {self.timeout.cache.get()} s. The "
                "session is reset before the next command; if this repeats, check the "
                "instrument is on and the address is right"
            )
        return InstrumentConnectionError(
            f"{where}: connection failed during {cmd!r} ({exc}). The session is reopened "
            "before the next command"
        )

    def _io(self, cmd: str, query: bool) -> str | None:
        if self._needs_reconnect:
            self.reconnect()
        try:
            if query:
                return super().ask_raw(cmd)
            super().write_raw(cmd)
            return None
        except (pyvisa.errors.VisaIOError, OSError) as exc:
            raise self._failed(exc, cmd) from exc
        except BaseException:
            # Interrupted mid-exchange (Ctrl-C, an alarm): a reply may still be on its way
            # and would be read as the answer to the next query. Start afresh next time.
            self._needs_reconnect = True
            raise

    def write_raw(self, cmd: str) -> None:
        self._io(cmd, query=False)
        self.check_error_queue(cmd)

    def ask_raw(self, cmd: str) -> str:
        try:
            reply = self._io(cmd, query=True)
        except InstrumentTimeoutError as timeout:
            # An unknown or refused query is often not answered at all; the instrument says
            # why in its error queue. Read it now, or the next write would be blamed.
            errors = self._errors_after_failure()
            if errors:
                raise InstrumentReportedError(
                    f"{self.name} at {self.address} reported {'; '.join(errors)} for "
                    f"{cmd!r}, which got no reply"
                ) from timeout
            raise
        assert reply is not None
        self._last_query = (cmd, reply)
        self._queries_since_check.append(cmd)
        return reply

    def _errors_after_failure(self) -> list[str]:
        """The error state after a query failed: the session is reopened first (a late reply
        may still come). Empty when it cannot be read (the failure is then what to report)."""
        if self._recovering:
            return []  # a failure while recovering from another: report it as it is
        try:
            if self._needs_reconnect:
                return self._reopen()
            return self.read_error_state()
        except (InstrumentTimeoutError, InstrumentConnectionError, InstrumentReplyError):
            return []

    # -- replies ---------------------------------------------------------------------------------
    def reply_error(self, reply: Any, problem: str, command: str | None = None,
                    what: str = "") -> InstrumentReplyError:
        """The error for a reply that cannot be parsed. Marks the session for reopening (the
        reply may be out of step) and, on models with an error queue, reads the queue and
        names what it held. `command` defaults to the last query, if `reply` answered it."""
        if command is None and self._last_query is not None and self._last_query[1] == reply:
            command = self._last_query[0]
        self._needs_reconnect = True
        self._failed_command = command
        errors = self._errors_after_failure() if self.error_query is not None else []
        sent = f" to {command!r}" if command else ""
        for_what = f" (for {what})" if what else ""
        queue = f"; its error queue then held {'; '.join(errors)}" if errors else ""
        return InstrumentReplyError(
            f"{self.name} at {self.address}: could not parse the reply {reply!r}{sent}"
            f"{for_what} ({problem}){queue}. The session is reopened before the next command; "
            "if this repeats, check the instrument model and its interface settings"
        )

    def ask_parsed(self, cmd: str, parser: Any, what: str = "") -> Any:
        """``parser(self.ask(cmd))``; a reply it cannot parse raises InstrumentReplyError."""
        return parse_reply(self, cmd, self.ask(cmd), parser, what)

    # -- error queue -----------------------------------------------------------------------------
    def parse_error(self, reply: str) -> tuple[int, str]:
        """Split an error-queue entry ('-222,"Data out of range"') into code and message;
        `InstrumentReplyError` if the code is not a number."""
        code, _, message = reply.partition(",")
        number = parse_reply(self, self.error_query or "", code.strip(), int,
                             "an error-queue entry, <code>,\"<message>\"")
        return number, message.strip().strip('"')

    def read_error_state(self) -> list[str]:
        """Read the error queue empty (or read, which clears, the standard event status
        register): the errors it held, as text ("-113: Undefined header")."""
        self._queries_since_check.clear()
        if self.error_query is None:
            return self._read_event_status()
        errors = []
        for _ in range(self.max_errors_read):
            reply = self._io(self.error_query, query=True)
            assert reply is not None
            code, message = self.parse_error(reply)
            if code == 0:
                break
            errors.append(f"{code}: {message}")
        return errors

    def _read_event_status(self) -> list[str]:
        if self.status_query is None:
            return []
        reply = self._io(self.status_query, query=True)
        assert reply is not None
        esr = parse_reply(self, self.status_query, reply.strip(), int,
                          "the event status register, a number")
        errors = [text for bit, text in self.esr_errors if esr & bit]
        return [f"{'; '.join(errors)} ({self.status_query} = {esr})"] if errors else []

    def check_error_queue(self, after: str = "") -> None:
        """Read the error queue empty (or the event status register); raise on errors."""
        earlier = list(self._queries_since_check)
        errors = self.read_error_state()
        if errors:
            maybe = (" (or from an earlier query, whose errors are only read at the next "
                     f"write: {', '.join(map(repr, earlier))})" if earlier and after else "")
            raise InstrumentReportedError(
                f"{self.name} at {self.address} reported "
                + "; ".join(errors)
                + (f" after {after!r}" if after else "")
                + maybe
            )
