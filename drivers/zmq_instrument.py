"""The ZeroMQ base for instruments whose control interface is text over a REQ/REP socket.

It gives what `drivers.visa.QnetVisaInstrument` gives VISA drivers:

* Every request has a receive timeout. A REQ socket that sent a request and got no reply
  refuses to send again (and a late reply would be read as the answer to the next query), so
  after a timeout the socket is closed with no linger and recreated before the next command.
  The error, `InstrumentTimeoutError`, names the instrument and its address.
* A reply that reports a failed command raises `InstrumentReportedError` at once, naming the
  instrument, address, command and reply. ID Quantique's Time Controllers reply to every
  command, ending a failure with ``SCPI_ERR_<kind>`` (e.g. ``SCPI_ERR_INVALID_CMD``,
  ``SCPI_ERR_PARAM_TYPE``), so ``reply_error_marker`` defaults to that.
* A reply a parameter cannot parse raises `InstrumentReplyError` (instrument, address,
  command, reply), not a bare ValueError, and the socket is reopened before the next request.

`ZmqRequester` is the socket logic on its own, for other REQ/REP services (a data-link
service) that are not QCoDeS instruments.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, ClassVar

import zmq
from qcodes.instrument import Instrument
from qcodes.validators import Numbers

from qnetlab.instruments.errors import (
    InstrumentConnectionError,
    InstrumentReplyError,
    InstrumentReportedError,
    InstrumentTimeoutError,
)

from ._replies import ConnectedMeta, guard_replies, parse_reply


class ZmqRequester:
    """One REQ socket to `address` with timeouts, recreated after a timeout."""

    def __init__(self, address: str, timeout: float, who: str,
                 context: zmq.Context[Any] | None = None) -> None:
        self.address = address
        self.timeout = timeout
        """s, for sending and for the reply."""
        self.who = who
        """How errors name the client ("id1000 at tcp://host:5555")."""
        self._context = context or zmq.Context.instance()
        self._socket: zmq.Socket[Any] | None = None

    def _open(self) -> zmq.Socket[Any]:
        if self._socket is None:
            sock = self._context.socket(zmq.REQ)
            # No linger: a request to a dead peer must not hold close() or interpreter exit.
            sock.setsockopt(zmq.LINGER, 0)
            ms = max(1, round(self.timeout * 1e3))
            sock.setsockopt(zmq.RCVTIMEO, ms)
            sock.setsockopt(zmq.SNDTIMEO, ms)
            try:
                sock.connect(self.address)
            except zmq.ZMQError as exc:
                sock.close(0)
                raise InstrumentConnectionError(
                    f"{self.who}: cannot connect to {self.address} ({exc}). Give the address "
                    "as tcp://host:port") from exc
            self._socket = sock
        return self._socket

    def reset(self) -> None:
        """Close the socket; the next request opens a fresh one."""
        if self._socket is not None:
            with contextlib.suppress(zmq.ZMQError):
                self._socket.close(0)
            self._socket = None

    def close(self) -> None:
        self.reset()

    def request(self, message: str) -> str:
        """Send `message`, return the reply text; InstrumentTimeoutError after `timeout`."""
        sock = self._open()
        try:
            sock.send_string(message)
            return sock.recv().decode("utf-8", errors="replace")
        except zmq.Again as exc:
            self.reset()  # a REQ socket stuck waiting for a reply cannot send again
            raise InstrumentTimeoutError(
                f"{self.who} did not answer {message!r} within {self.timeout} s. The socket "
                "is reset before the next command; if this repeats, check the instrument is "
                "on and the address is right") from exc
        except zmq.ZMQError as exc:
            self.reset()
            raise InstrumentConnectionError(
                f"{self.who}: ZeroMQ error during {message!r} ({exc}). The socket is reopened "
                "before the next command") from exc
        except BaseException:
            # Interrupted mid-exchange (Ctrl-C): the reply may still come. Start afresh.
            self.reset()
            raise


class ZmqInstrument(Instrument, metaclass=ConnectedMeta):
    """QCoDeS instrument over a ZeroMQ REQ socket: ``address`` is ``tcp://host:port``."""

    reply_error_marker: ClassVar[str] = "SCPI_ERR_"
    """A reply containing this reports a failed command (None: replies never do)."""

    def __init__(self, name: str, address: str, timeout: float = 5.0, **kwargs: Any) -> None:
        self.address = address
        self._requester = ZmqRequester(address, timeout, f"{name} at {address}")
        self._last_query: tuple[str, str] | None = None
        super().__init__(name, **kwargs)
        self.add_parameter(
            "timeout", unit="s", label="Reply timeout",
            get_cmd=lambda: self._requester.timeout, set_cmd=self._set_timeout,
            vals=Numbers(1e-3, 3600.0),
        )

    def _after_init(self) -> None:
        """Once the whole ``__init__`` ran (`ConnectedMeta`): guard reply parsing."""
        guard_replies(self, self)

    def reply_error(self, reply: Any, problem: str, command: str | None = None,
                    what: str = "") -> InstrumentReplyError:
        """The error for a reply that cannot be parsed; the socket is reopened before the next
        request. `command` defaults to the last query, if `reply` answered it."""
        if command is None and self._last_query is not None and self._last_query[1] == reply:
            command = self._last_query[0]
        self._requester.reset()
        sent = f" to {command!r}" if command else ""
        for_what = f" (for {what})" if what else ""
        return InstrumentReplyError(
            f"{self.name} at {self.address}: could not parse the reply {reply!r}{sent}"
            f"{for_what} ({problem}). The socket is reopened before the next command; if "
            "this repeats, check the instrument model and its firmware")

    def ask_parsed(self, cmd: str, parser: Callable[[str], Any], what: str = "") -> Any:
        """``parser(self.ask(cmd))``; a reply it cannot parse raises InstrumentReplyError."""
        return parse_reply(self, cmd, self.ask(cmd), parser, what)

    def _set_timeout(self, value: float) -> None:
        self._requester.timeout = float(value)
        self._requester.reset()  # the socket options take the new timeout on reopening

    def _check_reply(self, cmd: str, reply: str) -> str:
        marker = self.reply_error_marker
        if marker and marker in reply:
            raise InstrumentReportedError(
                f"{self.name} at {self.address} refused {cmd!r}: {reply.strip()}")
        return reply

    def ask_raw(self, cmd: str) -> str:
        reply = self._check_reply(cmd, self._requester.request(cmd)).strip()
        self._last_query = (cmd, reply)
        return reply

    def write_raw(self, cmd: str) -> None:
        # REQ/REP: a command is answered too (often with an empty or echo reply), and the
        # reply must be read before the next request; it is checked for an error and dropped.
        self._check_reply(cmd, self._requester.request(cmd))

    def close(self) -> None:
        requester = getattr(self, "_requester", None)  # gone after a first close (QCoDeS)
        if requester is not None:
            requester.close()
        super().close()
