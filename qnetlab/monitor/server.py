"""The monitor's web server: one telemetry subscriber, one Bokeh server, any number of pages.

`MonitorServer` binds its port in the caller (a port in use is a `ConfigError` at once),
then runs two threads: the *feed*, the only reader of the one `TelemetrySubscriber`, folding
every message into the one `MonitorState`; and the Bokeh server's IOLoop, where each browser
session gets its own document (`page.MonitorSession`) reading that state. BokehJS is served
by this server from the Bokeh wheel's own static files (never a CDN: labs are often
offline), whatever ``BOKEH_RESOURCES`` says.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import queue
import socket as socketlib
import threading
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urljoin

from bokeh.application import Application
from bokeh.application.handlers.function import FunctionHandler
from bokeh.document import Document
from bokeh.resources import Resources
from bokeh.server.server import BaseServer
from bokeh.server.tornado import BokehTornado
from bokeh.server.views.static_handler import StaticHandler
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.netutil import bind_sockets

from qnetlab.instruments.errors import ConfigError
from qnetlab.network.telemetry import TelemetrySubscriber

from .page import MonitorSession, MonitorSettings
from .state import HISTORY_POINTS, MonitorState

log = logging.getLogger(__name__)

DEFAULT_PORT = 5006
"""Bokeh's own default port."""
RECEIVE_S = 0.2
"""The feed's longest wait for telemetry before it checks whether to stop."""
UNUSED_SESSION_MS = 60_000
"""A closed tab's document is freed after this long (Bokeh's default is 15 min)."""


class _LocalBokeh(BokehTornado):
    """BokehTornado that always serves BokehJS itself, from the installed wheel."""

    def resources(self, absolute_url: str | bool | None = None) -> Resources:
        base = absolute_url if isinstance(absolute_url, str) else "/"
        return Resources(mode="server", root_url=urljoin(base, self._prefix),
                         path_versioner=StaticHandler.append_version)


def _bind(host: str, port: int, config: str) -> list[socketlib.socket]:
    try:
        return bind_sockets(port, address=host)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(config, "--port", f"port {port} on {host} is already in use "
                              "(another monitor?)",
                              "stop what listens there, or choose a free port with "
                              "--port N") from None
        raise ConfigError(config, "--host", f"cannot listen on {host}:{port} ({exc})",
                          "give --host an address of this machine, e.g. 127.0.0.1") from None


def _origins(host: str, port: int) -> list[str]:
    """Where pages may open their websocket from: this host by its names."""
    names = {host, "localhost", "127.0.0.1", socketlib.gethostname(), socketlib.getfqdn()}
    return sorted(f"{name}:{port}" for name in names if name and name not in ("0.0.0.0", "::"))


class MonitorServer:
    """Serves the monitor page for the publishers `endpoints` (source -> address, with the
    CURVE keys in `key_dir`, None: no CURVE) on ``http://host:port/`` (port 0: any free
    one). `start` raises ConfigError when the port is taken or a key is missing."""

    def __init__(self, endpoints: Mapping[str, str], key_dir: Path | None, *, title: str,
                 host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 silent_after_s: float = 5.0, history: int = HISTORY_POINTS,
                 config: str = "qnetlab monitor") -> None:
        self.endpoints, self.key_dir = dict(endpoints), key_dir
        self.host, self.port, self.config = host, port, config
        self.state = MonitorState(sources=tuple(self.endpoints), history=history)
        self.settings = MonitorSettings(title=title, silent_after_s=silent_after_s)
        self.sessions = 0
        """Browser sessions (documents) opened so far."""
        self._subscriber: TelemetrySubscriber | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._io_loop: IOLoop | None = None
        self._server: BaseServer | None = None

    @property
    def url(self) -> str:
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{shown}:{self.port}/"

    @property
    def malformed(self) -> int:
        """Messages the subscriber dropped as malformed."""
        return self._subscriber.malformed if self._subscriber is not None else 0

    def start(self) -> MonitorServer:
        """Bind, subscribe, and serve in background threads; returns at once."""
        sockets = _bind(self.host, self.port, self.config)
        self.port = sockets[0].getsockname()[1]
        try:
            # Created here so a missing key is reported to the caller; used and closed only
            # by the feed thread from now on (ZeroMQ sockets move between threads this way).
            self._subscriber = TelemetrySubscriber(self.endpoints, key_dir=self.key_dir)
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        feed = threading.Thread(target=self._feed, args=(self._subscriber,),
                                name="monitor-feed", daemon=True)
        feed.start()
        self._threads.append(feed)
        ready: queue.Queue[BaseException | None] = queue.Queue()
        web = threading.Thread(target=self._serve, args=(sockets, ready),
                               name="monitor-web", daemon=True)
        web.start()
        self._threads.append(web)
        failure = ready.get()
        if failure is not None:
            self.stop()
            raise failure
        return self

    def _feed(self, subscriber: TelemetrySubscriber) -> None:
        try:
            while not self._stop.is_set():
                try:
                    messages = subscriber.receive(RECEIVE_S)
                except Exception:  # a bug must not freeze the page silently: log, go on
                    log.exception("monitor: reading telemetry failed")
                    self._stop.wait(1.0)
                    continue
                if messages:
                    self.state.fold_all(messages)
        finally:
            subscriber.close()

    def _make_document(self, doc: Document) -> None:
        self.sessions += 1
        MonitorSession(doc, self.state, self.settings, lambda: self.malformed)

    def _serve(self, sockets: list[socketlib.socket],
               ready: queue.Queue[BaseException | None]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            io_loop = IOLoop.current()
            app = _LocalBokeh({"/": Application(FunctionHandler(self._make_document))},
                              extra_websocket_origins=_origins(self.host, self.port),
                              absolute_url=self.url,
                              unused_session_lifetime_milliseconds=UNUSED_SESSION_MS,
                              check_unused_sessions_milliseconds=UNUSED_SESSION_MS // 4)
            http = HTTPServer(app)
            http.add_sockets(sockets)
            self._server = BaseServer(io_loop, app, http)
            self._server.start()
            self._io_loop = io_loop
        except BaseException as exc:
            for sock in sockets:
                sock.close()
            loop.close()
            ready.put(exc)
            return
        ready.put(None)
        try:
            io_loop.start()
        finally:
            loop.close()

    def _shutdown(self) -> None:
        if self._server is not None:
            self._server.stop()
        if self._io_loop is not None:
            self._io_loop.stop()

    def stop(self) -> None:
        """Close the page's port and the subscriber; idempotent."""
        self._stop.set()
        if self._io_loop is not None:
            self._io_loop.add_callback(self._shutdown)
        for thread in self._threads:
            thread.join(timeout=10.0)
        self._threads.clear()
        self._io_loop = None

    def __enter__(self) -> MonitorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait(max_seconds: float | None) -> None:
    """Block the main thread until `max_seconds` pass, or forever; Ctrl-C and the stop
    signals still reach it (a lock's wait is interrupted by signals)."""
    threading.Event().wait(max_seconds)
