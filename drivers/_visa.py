"""The VISA base every qnetlab driver shares.

It fixes three things plain `VisaInstrument` leaves to each driver:

* pyvisa-py leaves Nagle's algorithm on for ``TCPIP::host::port::SOCKET`` resources, so a
  write followed by a query stalls ~40 ms; we switch TCP_NODELAY on the session's socket
  (``set_visa_attribute(VI_ATTR_TCPIP_NODELAY)`` raises in pyvisa-py 0.8.1).
* After every write the instrument's error queue is read (where the model has one), so a
  rejected command raises at once instead of surfacing later as a wrong value.
* A VISA timeout or a lost connection becomes an error that names the instrument and its
  address; the session is then reopened before the next command, so a late reply cannot be
  read as the answer to the next query and the station recovers without a restart.
"""

from __future__ import annotations

import contextlib
import socket
from typing import TYPE_CHECKING, Any, ClassVar

import pyvisa
import pyvisa.constants
from qcodes.instrument import VisaInstrument

from instruments.errors import (
    InstrumentConnectionError,
    InstrumentReportedError,
    InstrumentTimeoutError,
)

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


class QnetVisaInstrument(VisaInstrument):
    """VISA base of the qnetlab drivers: no Nagle stall, error-queue checks, clear errors."""

    error_query: ClassVar[str | None] = "SYST:ERR?"
    """Query that pops one entry of the error queue; None where the model has no queue."""
    max_errors_read: ClassVar[int] = 20
    status_query: ClassVar[str | None] = None
    """For models without an error queue: the IEEE 488.2 standard event status register query
    (``*ESR?``, which also clears it), read after every write instead."""
    esr_errors: ClassVar[tuple[tuple[int, str], ...]] = STANDARD_ESR_ERRORS

    def __init__(self, name: str, address: str | None = None, **kwargs: Any) -> None:
        self._visalib_spec: str | None = kwargs.get("visalib")
        self._needs_reconnect = False
        super().__init__(name, address, **kwargs)

    # -- connection --------------------------------------------------------------------------------
    def _open_resource(self, address: str, visalib: str | None) -> MessageBasedResource:
        resource = super()._open_resource(address, visalib)
        _switch_nagle_off(resource)
        return resource

    def reconnect(self) -> None:
        """Close and reopen the VISA session (after a timeout or a dropped connection)."""
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

    # -- I/O -------------------------------------------------------------------------------------
    def _failed(self, exc: Exception, cmd: str) -> Exception:
        self._needs_reconnect = True
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
        reply = self._io(cmd, query=True)
        assert reply is not None
        return reply

    # -- error queue -----------------------------------------------------------------------------
    def parse_error(self, reply: str) -> tuple[int, str]:
        """Split an error-queue entry ('-222,"Data out of range"') into code and message."""
        code, _, message = reply.partition(",")
        try:
            return int(code), message.strip().strip('"')
        except ValueError:
            return -1, reply

    def check_error_queue(self, after: str = "") -> None:
        """Read the error queue empty (or the event status register); raise on errors."""
        if self.error_query is None:
            if self.status_query is not None:
                self._check_event_status(after)
            return
        errors = []
        for _ in range(self.max_errors_read):
            reply = self._io(self.error_query, query=True)
            assert reply is not None
            code, message = self.parse_error(reply)
            if code == 0:
                break
            errors.append(f"{code}: {message}")
        if errors:
            raise InstrumentReportedError(
                f"{self.name} at {self.address} reported "
                + "; ".join(errors)
                + (f" after {after!r}" if after else "")
            )

    def _check_event_status(self, after: str) -> None:
        assert self.status_query is not None
        reply = self._io(self.status_query, query=True)
        assert reply is not None
        suffix = f" after {after!r}" if after else ""
        try:
            esr = int(reply.strip())
        except ValueError:
            raise InstrumentReportedError(
                f"{self.name} at {self.address}: {self.status_query} gave {reply!r}, not a "
                f"number{suffix}"
            ) from None
        errors = [text for bit, text in self.esr_errors if esr & bit]
        if errors:
            raise InstrumentReportedError(
                f"{self.name} at {self.address} reported {'; '.join(errors)} "
                f"({self.status_query} = {esr}){suffix}"
            )
