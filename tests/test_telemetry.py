"""Telemetry's wire (network.telemetry): messages round-trip, every malformed frame is refused
by `decode` naming what is wrong and counted (never raised) by a subscriber, CURVE admits only
the lab's keys, and a publisher never blocks."""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zmq

from qnetlab.instruments.errors import ConfigError, QnetlabError
from qnetlab.network.keys import generate_lab_keys
from qnetlab.network.telemetry import (
    MAX_FRAME_BYTES,
    SEND_HWM,
    CalibrationStates,
    LinkStatistics,
    NodeStatus,
    SequenceProgress,
    TelemetryError,
    TelemetryMessage,
    TelemetryPublisher,
    TelemetrySubscriber,
    ValueReading,
    decode,
    encode,
)
from qnetlab.sim_instruments.ports import free_port_run

NOW = 1_780_000_000.25

MESSAGES: list[TelemetryMessage] = [
    ValueReading("bench", "fridge.mxc_temperature", 0.0123, "K", NOW, "mxc_temperature"),
    ValueReading("bench", "pump_laser.output", 1, "", NOW, "pump_on"),
    ValueReading("bench", "snspd.ch1.count_rate", 1.5e4, "Hz", NOW),
    SequenceProgress("bench", "efficiency_map", 3, 10, "pump 2 mW", "running", "", NOW),
    SequenceProgress("bench", "efficiency_map", 3, 10, "", "paused",
                     "fridge 0.061 K > 0.05 K ceiling", NOW),
    CalibrationStates("node_a_lab", (NodeStatus("dark_counts", "in spec", 12.5, 86400.0),
                                     NodeStatus("mw_resonance", "never calibrated", None,
                                                None)), NOW),
    CalibrationStates("node_a_lab", (), NOW),
    LinkStatistics("orchestrator", "node_a-node_b", 35.2, 120, 0.81, 0.004, 0.0092,
                   {"EXPIRED": 3, "LOST": 0, "TIMEOUT": 1}, NOW),
    LinkStatistics("station", "0", 0.0, 0, None, None, None, {}, NOW),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_with_a_filterable_topic(message: TelemetryMessage) -> None:
    frames = encode(message)
    assert len(frames) == 2 and frames[1][0] == 1
    assert frames[0].decode().startswith(f"{message.source}/")
    assert decode(frames) == message
    json.loads(frames[1][1:])  # readable JSON after the version byte


def _payload(message: TelemetryMessage, **changes: Any) -> list[bytes]:
    topic, payload = encode(message)
    data = json.loads(payload[1:])
    for key, value in changes.items():
        if value is _DROP:
            del data[key]
        else:
            data[key] = value
    return [topic, b"\x01" + json.dumps(data).encode()]


_DROP = object()
VALUE, PROGRESS, CAL, LINK = MESSAGES[0], MESSAGES[3], MESSAGES[5], MESSAGES[7]

MALFORMED: dict[str, tuple[list[bytes], str]] = {
    "one frame": ([b"bench/value"], "frames"),
    "three frames": ([b"bench/value", b"\x01{}", b""], "frames"),
    "topic not utf-8": ([b"\xff/value", encode(VALUE)[1]], "topic"),
    "topic without kind": ([b"bench", encode(VALUE)[1]], "topic"),
    "unknown kind": ([b"bench/weather", encode(VALUE)[1]], "topic"),
    "topic names another source": ([b"other/value", encode(VALUE)[1]], "topic"),
    "wrong version": ([b"bench/value", b"\x02" + encode(VALUE)[1][1:]], "version"),
    "empty payload": ([b"bench/value", b""], "version"),
    "not json": ([b"bench/value", b"\x01{nope"], "JSON"),
    "not utf-8 json": ([b"bench/value", b"\x01\xff\xfe"], "JSON"),
    "json not an object": ([b"bench/value", b"\x01[1, 2]"], "object"),
    "NaN value": ([b"bench/value", b'\x01{"source":"bench","name":"a.b","value":NaN,'
                                   b'"unit":"K","time":1.0,"kind":""}'], "NaN"),
    "Infinity value": ([b"bench/value", b'\x01{"source":"bench","name":"a.b",'
                                        b'"value":Infinity,"unit":"K","time":1.0,"kind":""}'],
                       "Infinity"),
    "huge value": (_payload(VALUE, value=10**400), "finite"),
    "value is text": (_payload(VALUE, value="0.01"), "value"),
    "value is bool": (_payload(VALUE, value=True), "value"),
    "unknown value kind": (_payload(VALUE, kind="fridge"), "kind"),
    "missing field": (_payload(VALUE, unit=_DROP), "missing"),
    "extra field": (_payload(VALUE, colour="red"), "unknown"),
    "empty name": (_payload(VALUE, name=""), "name"),
    "long name": (_payload(VALUE, name="x" * 201), "name"),
    "control char in name": (_payload(VALUE, name="a\nb"), "name"),
    "negative time": (_payload(VALUE, time=-1.0), "time"),
    "time is null": (_payload(VALUE, time=None), "time"),
    "oversized payload": ([b"bench/value", b"\x01" + b" " * MAX_FRAME_BYTES], "bytes"),
    "deep nesting": ([b"bench/value", b"\x01" + b"[" * 60000], "JSON"),
    "unknown state": (_payload(PROGRESS, state="sleeping"), "state"),
    "negative done": (_payload(PROGRESS, done=-1), "done"),
    "fractional total": (_payload(PROGRESS, total=2.5), "total"),
    "count too large": (_payload(PROGRESS, done=2**60), "done"),
    "long reason": (_payload(PROGRESS, reason="r" * 1001), "reason"),
    "nodes not a list": (_payload(CAL, nodes={"a": 1}), "nodes"),
    "node not 4 items": (_payload(CAL, nodes=[["a", "in spec", 1.0]]), "nodes"),
    "node age text": (_payload(CAL, nodes=[["a", "in spec", "old", None]]), "age_s"),
    "node negative timeout": (_payload(CAL, nodes=[["a", "in spec", 1.0, -5]]), "timeout_s"),
    "too many nodes": (_payload(CAL, nodes=[["a", "", None, None]] * 513), "nodes"),
    "fidelity above 1": (_payload(LINK, fidelity=1.5), "fidelity"),
    "negative rate": (_payload(LINK, herald_rate_hz=-1.0), "herald_rate_hz"),
    "negative latency": (_payload(LINK, latency_p99_s=-0.1), "latency_p99_s"),
    "errors a list": (_payload(LINK, errors=[1]), "errors"),
    "error count text": (_payload(LINK, errors={"LOST": "3"}), "LOST"),
    "error count negative": (_payload(LINK, errors={"LOST": -3}), "LOST"),
    "delivered float": (_payload(LINK, delivered=1.0), "delivered"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_decode_refuses_every_malformed_frame_naming_what_is_wrong(case: str) -> None:
    frames, named = MALFORMED[case]
    with pytest.raises(TelemetryError, match=named) as caught:
        decode(frames)
    assert isinstance(caught.value, QnetlabError)


@pytest.mark.parametrize("build", [
    lambda: ValueReading("bench", "a.b", math.nan, "K", NOW),
    lambda: ValueReading("bench", "a.b", 1.0, "K", NOW, "temperature"),
    lambda: SequenceProgress("bench", "s", 1, 2, "", "done", "", NOW),
    lambda: LinkStatistics("st", "l", 1.0, -1, None, None, None, {}, NOW),
    lambda: CalibrationStates("lab", [NodeStatus("a", "", None, None)], NOW),  # type: ignore[arg-type, unused-ignore]
    lambda: ValueReading("be/nch", "a.b", 1.0, "K", NOW),
])
def test_a_bad_message_cannot_even_be_made(build: Callable[[], Any]) -> None:
    with pytest.raises(TelemetryError):
        build()


def _address() -> str:
    return f"tcp://127.0.0.1:{free_port_run(1)}"


def _publish_until_heard(publisher: TelemetryPublisher, subscriber: TelemetrySubscriber,
                         message: TelemetryMessage, timeout: float = 20.0
                         ) -> list[TelemetryMessage]:
    """Publish `message` repeatedly (a SUB joins asynchronously) until `subscriber` hears
    something; everything it heard."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publisher.publish(message)
        heard = subscriber.receive(0.05)
        if heard:
            return heard
    pytest.fail(f"nothing heard within {timeout} s")


def test_a_subscriber_hears_every_kind_from_several_publishers_without_keys() -> None:
    with TelemetryPublisher(_address(), key_dir=None, name="bench") as bench, \
            TelemetryPublisher(_address(), key_dir=None, name="orchestrator") as orc, \
            TelemetrySubscriber({"bench": bench.address, "orchestrator": orc.address},
                                key_dir=None) as subscriber:
        _publish_until_heard(bench, subscriber, VALUE)
        _publish_until_heard(orc, subscriber, LINK)
        for message in MESSAGES[:5]:
            bench.publish(message)
        heard: list[TelemetryMessage] = []
        deadline = time.monotonic() + 20
        while len([m for m in heard if m in MESSAGES[:5]]) < 5 and time.monotonic() < deadline:
            heard += subscriber.receive(0.5)
        assert [m for m in heard if m != VALUE][-4:] == MESSAGES[1:5]
        assert subscriber.malformed == 0


def test_a_subscriber_counts_and_drops_malformed_messages_and_keeps_listening() -> None:
    raw: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUB)
    raw.linger = 0
    port = raw.bind_to_random_port("tcp://127.0.0.1")
    try:
        with TelemetrySubscriber({"bench": f"tcp://127.0.0.1:{port}"},
                                 key_dir=None) as subscriber:
            good = encode(VALUE)
            deadline = time.monotonic() + 20
            while not subscriber.receive(0.05):  # joined once a good one is heard
                raw.send_multipart(good)
                assert time.monotonic() < deadline, "the subscriber never joined"
            bad = [frames for frames, _ in MALFORMED.values()
                   if len(frames) == 2 and len(frames[1]) < MAX_FRAME_BYTES]
            spoofed = encode(ValueReading("intruder", "a.b", 1.0, "K", NOW))
            for frames in [*bad, spoofed, [b"only one frame"]]:
                raw.send_multipart(frames)
            raw.send_multipart(encode(PROGRESS))
            heard = subscriber.wait_for(lambda m: m == PROGRESS, 20.0)
            assert heard == PROGRESS
            assert subscriber.malformed == len(bad) + 2
            assert "only one frame" not in subscriber.last_error
    finally:
        raw.close(0)


def test_curve_only_the_labs_keys_hear_the_publisher(tmp_path: Path) -> None:
    lab, outsider = tmp_path / "lab_keys", tmp_path / "outsider_keys"
    generate_lab_keys(lab, ["bench", "monitor"])
    # The outsider knows the publisher's public key, but its own key is not the lab's.
    generate_lab_keys(outsider, ["monitor"])
    shutil.copy(lab / "public" / "bench.key", outsider / "public" / "bench.key")
    with TelemetryPublisher(_address(), key_dir=lab, name="bench") as publisher, \
            TelemetrySubscriber({"bench": publisher.address}, key_dir=outsider) as intruder, \
            TelemetrySubscriber({"bench": publisher.address}, key_dir=lab) as monitor:
        heard = _publish_until_heard(publisher, monitor, VALUE)
        assert heard[0] == VALUE
        for _ in range(20):
            publisher.publish(PROGRESS)
        monitor.wait_for(lambda m: m == PROGRESS, 20.0)
        # The monitor heard everything since; the intruder's handshake was refused.
        assert intruder.receive(0.2) == [] and intruder.malformed == 0


def test_without_the_key_files_publisher_and_subscriber_name_qnetlab_keys(
        tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="qnetlab keys"):
        TelemetryPublisher(_address(), key_dir=tmp_path / "none", name="bench")
    generate_lab_keys(tmp_path / "keys", ["bench"])
    with pytest.raises(ConfigError, match=r"monitor\.key_secret.*qnetlab keys"):
        TelemetrySubscriber({"bench": _address()}, key_dir=tmp_path / "keys")


def test_the_publisher_never_blocks_with_no_subscriber_or_a_stuck_one() -> None:
    address = _address()
    with TelemetryPublisher(address, key_dir=None, name="bench") as publisher:
        count = 20 * SEND_HWM
        started = time.monotonic()
        for _ in range(count):
            publisher.publish(VALUE)
        # A subscriber that never reads: the queues fill, then messages drop, never wait.
        stuck: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
        stuck.linger = 0
        stuck.setsockopt(zmq.SUBSCRIBE, b"")
        stuck.connect(address)
        try:
            for _ in range(count):
                publisher.publish(VALUE)
        finally:
            stuck.close(0)
        # 40k small sends take well under a second; a blocked send would hang here forever.
        assert time.monotonic() - started < 60


def test_a_port_in_use_is_a_config_error_naming_the_port_and_the_entry() -> None:
    with TelemetryPublisher(_address(), key_dir=None, name="bench") as first:
        port = first.address.rpartition(":")[2]
        with pytest.raises(ConfigError) as caught:
            TelemetryPublisher(first.address, key_dir=None, name="bench",
                               config_file="lab.yaml", config_entry="qnetlab.telemetry.address")
        text = str(caught.value)
        assert f"port {port}" in text and "qnetlab.telemetry.address" in text
        assert "lab.yaml" in text


def test_publishing_after_close_does_nothing() -> None:
    publisher = TelemetryPublisher(_address(), key_dir=None, name="bench")
    publisher.close()
    publisher.publish(VALUE)
    publisher.close()
