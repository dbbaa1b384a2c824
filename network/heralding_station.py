"""The heralding station process: heralds decided from its time tagger, published at once.

`run_station` binds the station's sockets (PUB ``herald_address``: HERALDS, Heartbeat,
AttemptStats; ROUTER ``request_address``: ResendRequest, ClockRequest, and a bridge
orchestrator's SetArmDelays and MeasureArrivals (`station_arms`); all CURVE servers
admitting only the lab's keys), builds the herald source and runs the loop of
`network.herald_publisher` until stopped. Station time is ``(monotonic_ns - epoch_ns)`` in
ps (`epoch_ns` from the launcher).

The pieces: `herald_publisher` (the loop, requests, files), `herald_sources` (`TaggerHeralds`:
the station lab's tagger, its detector inputs gated to the herald windows while it publishes,
and the herald engine), `test_signals` (`PeriodicHeralds`,
`TimeSlots`: tests and benchmarks, never imported here), `station_faults` (`StationFaults`:
fault tests). Names other modules import from here are re-exported.

Protocol: docs/link.md#the-stations-schedule.
"""

from __future__ import annotations

import sys
from typing import Any

import zmq

from .herald_publisher import (
    SEND_DTYPE,
    BlockReader,
    HeraldPublisher,
    StationSettings,
    publish_loop,
)
from .herald_sources import (
    HeraldBlock,
    HeraldSource,
    HeraldSourceFactory,
    TaggerSource,
    station_now_ps,
)
from .keys import make_curve_server, start_authenticator
from .link_telemetry import StationTelemetry, open_publisher
from .messages import STATION_SENDER_ID, incarnation_seq, limit_frame_size, new_incarnation
from .station_faults import StationFaults

SWITCH_INTERVAL_S = 2e-4
"""How often (s) the station's threads may take the interpreter lock from each other: the
tagger's reader and the publish loop (and the tagger twin's threads, when its lab is
simulated in this process) share one lock, and with
Python's default (5 ms) a block that arrives while another thread computes waits up to that
long at every lock hand-over."""

__all__ = [
    "SEND_DTYPE",
    "STATION_SENDER_ID",
    "HeraldBlock",
    "HeraldSource",
    "HeraldSourceFactory",
    "StationFaults",
    "StationSettings",
    "TaggerSource",
    "incarnation_seq",
    "new_incarnation",
    "run_station",
    "station_now_ps",
]


def run_station(settings: StationSettings, source_factory: HeraldSourceFactory | None,
                stop: Any) -> None:
    """The station until `stop` (a StopFlag), `max_seconds` or the source's end. The source
    is `source_factory`'s, else `settings.source`'s (the tagger, in production)."""
    factory = source_factory if source_factory is not None else settings.source
    if factory is None:
        raise ValueError(f"station {settings.name}: no herald source (give a source factory, "
                         "or StationSettings.source from network.lab.plan_lab)")
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    context = zmq.Context()
    authenticator = None
    pub = context.socket(zmq.PUB)
    router = context.socket(zmq.ROUTER)
    publisher: HeraldPublisher | None = None
    reader: BlockReader | None = None
    telemetry = StationTelemetry(
        open_publisher(settings.telemetry_address, settings.key_dir, settings.name),
        settings.name, str(settings.link_id))
    try:
        if settings.key_dir is not None:
            authenticator = start_authenticator(context, settings.key_dir)
            make_curve_server(pub, settings.key_dir, settings.name)
            make_curve_server(router, settings.key_dir, settings.name)
        limit_frame_size(pub, router)  # a PUB receives too: its subscribers' subscriptions
        pub.sndhwm = 1_000_000
        pub.linger = 500
        router.linger = 0
        pub.bind(settings.herald_address)
        router.bind(settings.request_address)
        publisher = HeraldPublisher(settings, pub, router)
        # Before the source: a restarted station's new incarnation leads its heralds. The
        # source is built in the reader thread (a lab takes seconds to open): the loop
        # heartbeats meanwhile.
        publisher.heartbeat()
        reader = BlockReader(context, factory, settings.epoch_ns, publish=publisher.publish,
                             link_id=settings.link_id)
        publisher.arm_requests = reader.arm_requests
        reader.start()
        publish_loop(publisher, reader, stop, telemetry)
    finally:
        if publisher is not None:
            telemetry.tick(publisher, final=True)
        telemetry.close()
        reader_stopped = True
        if reader is not None:
            reader_stopped = reader.stop()
            # Taken for good: a reader left stuck in its source never publishes once the
            # files are written and the PUB is closed (it publishes only holding the lock).
            reader.lock.acquire(timeout=reader.stop_timeout_s)
            if publisher is not None:
                publisher.source_summary = reader.summary
        if publisher is not None:  # the heralds on disk before anything else can fail
            publisher.write_files()
        pub.close()
        router.close()
        if authenticator is not None:
            authenticator.stop()
        # Never destroy(): closing the socket of a reader thread still stuck in its source
        # from here aborts the process inside libzmq. A stuck reader keeps its socket and
        # the context; the process is ending and takes both.
        if reader_stopped:
            context.term()
        sys.setswitchinterval(switch_interval)
