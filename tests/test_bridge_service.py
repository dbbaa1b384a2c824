"""The bridge orchestrator as a process (issue 15, item 3): applications ask it for pairs
and state transfers over CURVE (`BridgeClient`), it schedules them with the bridge's
`Scheduler` on the simulated link-model fabric, and answers every frame, hostile ones with
an ERR naming the field.

The process tests share one orchestrator (a module fixture; time_scale 10: the bridge's
physics runs ten times faster than the wall clock, every bound below is in bridge s and is
turned into a wall-clock wait through it). The engine tests run the same code without
sockets on a clock the test moves.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

import qnetlab.network.bridge.client as client_module
from qnetlab.instruments.errors import ConfigError
from qnetlab.network import ProcessGroup
from qnetlab.network.bridge import Scheduler, bridge_topology
from qnetlab.network.bridge.client import (
    BridgeClient,
    BridgeRefusedError,
    BridgeTimeoutError,
)
from qnetlab.network.bridge.engine import BridgeEngine, teleported_fidelity
from qnetlab.network.bridge.fabric import SimulatedLinkFabric
from qnetlab.network.bridge.service import BridgeServiceSettings, run_bridge_orchestrator
from qnetlab.network.bridge.wire import (
    SOCKET_MAXMSGSIZE,
    VERSION,
    Accepted,
    BridgeWireError,
    Cancel,
    Cancelled,
    DecisionEntry,
    Delivered,
    Err,
    RequestPairs,
    RequestTransfer,
    Transferred,
    decode_reply,
    decode_request,
    encode,
)
from qnetlab.network.keys import generate_lab_keys, make_curve_client

from conftest import free_port_run, wait_until

TIME_SCALE = 10.0
"""Bridge s per wall s in the shared orchestrator."""
SERVER = "bridge_orchestrator"
TOPOLOGY = bridge_topology(8, seed=1)
WAIT = 30.0
"""Wall s any one outcome may take on a loaded 2-core machine (bridge outcomes here take
well under a wall second)."""


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab's keys: the orchestrator, two applications, and a lab process that is no
    client."""
    key_dir = tmp_path_factory.mktemp("keys")
    generate_lab_keys(key_dir, [SERVER, "app", "app2", "station"])
    return key_dir


def _start(group: ProcessGroup, settings: BridgeServiceSettings) -> str:
    """Start the orchestrator; its bound address once it is ready."""
    group.start(settings.name, run_bridge_orchestrator, settings)
    ready = settings.run_dir / f"{settings.name}_ready.json"
    wait_until(ready.exists, WAIT, "the bridge orchestrator's ready file")
    address: str = json.loads(ready.read_text())["address"]
    return address


@pytest.fixture(scope="module")
def service(keys: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[str, BridgeServiceSettings]]:
    run_dir = tmp_path_factory.mktemp("run")
    settings = BridgeServiceSettings(keys, run_dir, TOPOLOGY, time_scale=TIME_SCALE, seed=1,
                                     max_seconds=300.0, clients=("app", "app2"))
    with ProcessGroup() as group:
        yield _start(group, settings), settings


def _decisions(settings: BridgeServiceSettings) -> list[dict[str, Any]]:
    path = settings.run_dir / f"{settings.name}_decisions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line]


# -- the process ---------------------------------------------------------------------------

@pytest.mark.processes
@pytest.mark.slow
def test_a_client_gets_its_pairs_within_the_deadline(service, keys):
    """Three pairs qnu0-qnu1 at fidelity >= 0.55 within 3 bridge s: DELIVERED with three
    fidelities each >= 0.55, latency within the deadline, and the decisions (ACK, ASSIGN,
    OK, each with its reason) both at the client and in the run's decision log."""
    address, settings = service
    with BridgeClient(address, keys, "app") as bridge:
        handle = bridge.request_pairs("qnu0", "qnu1", pairs=3, min_fidelity=0.55,
                                      deadline_s=3.0)
        delivered = bridge.wait(handle, WAIT)
    assert isinstance(delivered, Delivered)
    assert len(delivered.fidelities) == 3
    assert all(0.55 <= f <= 1.0 for f in delivered.fidelities), delivered.fidelities
    assert delivered.latency_s <= 3.0
    assert handle.accepted is not None and handle.accepted.expected_time_s > 0.0
    actions = [d.action for d in handle.decisions]
    assert actions[0] == "ACK" and "ASSIGN" in actions and "OK" in actions
    assert all(d.reason for d in handle.decisions)
    key = f"app/{handle.request_id}"

    def logged() -> list[str]:
        return [r["action"] for r in _decisions(settings) if r.get("request") == key]

    wait_until(lambda: "OK" in logged(), WAIT, "the OK in the decision log")
    assert logged()[:len(actions)] == actions
    assert all(r["client"] == "app" and r["reason"] for r in _decisions(settings)
               if r.get("request") == key)


@pytest.mark.processes
@pytest.mark.slow
def test_an_impossible_request_gets_err_early_with_the_reason(service, keys):
    """A deadline the physics cannot meet (1 ms; the best path needs tens of ms) is refused
    at once with TIMEOUT and the numbers, a fidelity no path reaches with UNSUPPORTED: no
    station is ever assigned to either."""
    address, _ = service
    with BridgeClient(address, keys, "app") as bridge:
        fast = bridge.request_pairs("qnu2", "qnu3", pairs=1, min_fidelity=0.5,
                                    deadline_s=0.001)
        with pytest.raises(BridgeRefusedError, match="refused early") as err:
            bridge.wait(fast, WAIT)
        assert err.value.code == "TIMEOUT" and "expected" in err.value.reason
        assert [d.action for d in fast.decisions] == ["ERR"]
        good = bridge.request_pairs("qnu2", "qnu3", min_fidelity=0.9)
        with pytest.raises(BridgeRefusedError, match=r"no path reaches fidelity 0\.900"):
            bridge.wait(good, WAIT)
        assert good.outcome is not None and getattr(good.outcome, "code", "") == "UNSUPPORTED"
        unknown = bridge.request_pairs("qnu2", "qnu99")
        with pytest.raises(BridgeRefusedError, match="qnu99 is not on bridge"):
            bridge.wait(unknown, WAIT)


@pytest.mark.processes
@pytest.mark.slow
def test_cancel_withdraws_a_request_and_frees_its_station(service, keys):
    """Ten pairs held at once at 27 Hz within a 0.1 s window: accepted, but expected to take
    minutes. Cancelled: CANCELLED and the CANCEL decision; the QNUs are then served again."""
    address, _ = service
    with BridgeClient(address, keys, "app2") as bridge:
        slow = bridge.request_pairs("qnu4", "qnu5", pairs=10, min_fidelity=0.5)
        deadline = time.monotonic() + WAIT
        while slow.accepted is None and not slow.done and time.monotonic() < deadline:
            bridge.poll(0.2)
        assert slow.accepted is not None and slow.accepted.expected_time_s > 60.0
        bridge.cancel(slow)
        assert isinstance(bridge.wait(slow, WAIT), Cancelled)
        cancel = [d for d in slow.decisions if d.action == "CANCEL"]
        assert cancel and "cancelled by the application" in cancel[0].reason
        again = bridge.request_pairs("qnu4", "qnu5", pairs=1, min_fidelity=0.5,
                                     deadline_s=5.0)
        assert isinstance(bridge.wait(again, WAIT), Delivered)
        with pytest.raises(KeyError, match="no request"):
            bridge.cancel("never-made")


@pytest.mark.processes
@pytest.mark.slow
def test_a_transfer_reports_the_teleported_fidelity_and_two_bits(service, keys):
    """A state transfer consumes one pair of fidelity F >= the minimum and reports the
    transferred state's fidelity (2F + 1)/3, the two bits and their flight time."""
    address, _ = service
    with BridgeClient(address, keys, "app") as bridge:
        handle = bridge.request_transfer("qnu6", "qnu7", state="+i", min_fidelity=0.5,
                                         deadline_s=5.0)
        done = bridge.wait(handle, WAIT)
    assert isinstance(done, Transferred)
    assert 0.5 <= done.pair_fidelity <= 1.0
    assert done.fidelity == pytest.approx((2.0 * done.pair_fidelity + 1.0) / 3.0, abs=1e-12)
    assert all(bit in (0, 1) for bit in done.bits)
    assert done.classical_delay_s == pytest.approx(TOPOLOGY.classical_delay("qnu6", "qnu7"))


@pytest.mark.processes
@pytest.mark.slow
def test_a_client_without_the_right_key_hears_nothing(service, keys, tmp_path):
    """A key the orchestrator does not hold never completes the handshake; a lab key that is
    not a client's is heard but never answered. Both time out naming the fix, and the
    orchestrator keeps serving its clients."""
    address, settings = service
    outsider = tmp_path / "outsider"
    generate_lab_keys(outsider, ["intruder"])
    shutil.copy(keys / "public" / f"{SERVER}.key", outsider / "public")
    for key_dir, name in ((outsider, "intruder"), (keys, "station")):
        with BridgeClient(address, key_dir, name) as stranger:
            handle = stranger.request_pairs("qnu0", "qnu2")
            with pytest.raises(BridgeTimeoutError, match=r"no answer .* public key"):
                stranger.wait(handle, 1.0)
            assert not handle.decisions and not stranger.unattributed
    with BridgeClient(address, keys, "app") as bridge:
        assert isinstance(bridge.wait(bridge.request_pairs("qnu0", "qnu2"), WAIT), Delivered)
    wait_until(lambda: any(r.get("event") == "not_a_client" and r["key_owner"] == "station"
                           for r in _decisions(settings)), WAIT, "the stranger in the log")


def _raw(data: dict[str, Any]) -> bytes:
    return bytes([VERSION]) + json.dumps(data).encode()


_PAIRS = {"type": "REQUEST_PAIRS", "request_id": "bad-1", "qnu_a": "qnu0", "qnu_b": "qnu1",
          "pairs": 1, "min_fidelity": 0.5, "deadline_s": None}
_TRANSFER = {"type": "REQUEST_TRANSFER", "request_id": "bad-2", "source": "qnu0",
             "target": "qnu1", "state": "+", "min_fidelity": 0.5, "deadline_s": None}

MALFORMED: list[tuple[list[bytes], str]] = [
    ([b""], "version"),
    ([bytes([2]) + b"{}"], "version"),
    ([bytes([VERSION]) + b"not json"], "payload"),
    ([bytes([VERSION]) + b"\xff\xfe"], "payload"),
    ([bytes([VERSION]) + b"[1, 2]"], "payload"),
    ([bytes([VERSION]) + b'{"type": "REQUEST_PAIRS", "min_fidelity": NaN}'], "payload"),
    ([_raw({**_PAIRS, "type": "ACCEPTED"})], "type"),
    ([_raw({**_PAIRS, "type": 7})], "type"),
    ([_raw({k: v for k, v in _PAIRS.items() if k != "pairs"})], "pairs"),
    ([_raw({**_PAIRS, "priority": 1})], "priority"),
    ([_raw({**_PAIRS, "\x00" * 100: 1})], "payload"),
    ([_raw({**_PAIRS, "pairs": "3"})], "pairs"),
    ([_raw({**_PAIRS, "pairs": 0})], "pairs"),
    ([_raw({**_PAIRS, "pairs": True})], "pairs"),
    ([_raw({**_PAIRS, "pairs": 10**6})], "pairs"),
    ([_raw({**_PAIRS, "min_fidelity": 1.5})], "min_fidelity"),
    ([_raw({**_PAIRS, "deadline_s": -1.0})], "deadline_s"),
    ([bytes([VERSION]) + json.dumps(_PAIRS).replace('"deadline_s": null',
                                                    '"deadline_s": 1e999').encode()],
     "deadline_s"),
    ([_raw({**_PAIRS, "request_id": "a/b"})], "request_id"),
    ([_raw({**_PAIRS, "request_id": "x" * 65})], "request_id"),
    ([_raw({**_PAIRS, "qnu_b": "qnu0"})], "qnu_b"),
    ([_raw({**_PAIRS, "qnu_a": 5})], "qnu_a"),
    ([_raw({**_PAIRS, "qnu_a": "q" * 5000})], "qnu_a"),
    ([_raw({**_TRANSFER, "state": [1.0, 1.0, 1.0]})], "state"),
    ([_raw({**_TRANSFER, "state": "zero"})], "state"),
    ([_raw({**_TRANSFER, "state": [1, "a", 0]})], "state[1]"),
    ([_raw({"type": "CANCEL"})], "request_id"),
    ([_raw(_PAIRS), _raw(_PAIRS)], "frames"),
]


@pytest.mark.processes
@pytest.mark.slow
def test_each_malformed_frame_gets_an_error_naming_the_field_and_serving_goes_on(
        service, keys):
    """Every frame of `MALFORMED` (from a client holding a good key) is answered with ERR
    MALFORMED naming the field it got wrong, with the request id where it could be read;
    after all of them the orchestrator still serves a good request on the same
    connection."""
    address, settings = service
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.linger = 0
    dealer.setsockopt(zmq.MAXMSGSIZE, SOCKET_MAXMSGSIZE)
    try:
        make_curve_client(dealer, keys, "app", SERVER)
        dealer.connect(address)
        for frames, field in MALFORMED:
            dealer.send_multipart(frames)
            assert dealer.poll(int(WAIT * 1000)), f"no answer to a frame bad in {field}"
            reply = decode_reply(dealer.recv())
            assert isinstance(reply, Err), reply
            assert (reply.code, reply.field) == ("MALFORMED", field), (frames, reply)
            if field in ("pairs", "min_fidelity", "deadline_s", "qnu_b", "priority"):
                assert reply.request_id == "bad-1", reply
        dealer.send(_raw({**_PAIRS, "request_id": "good-1"}))
        replies: list[Any] = []
        deadline = time.monotonic() + WAIT
        while not any(isinstance(r, Delivered) for r in replies):
            assert time.monotonic() < deadline, f"no DELIVERED after the bad frames: {replies}"
            if dealer.poll(200):
                replies.append(decode_reply(dealer.recv()))
        assert any(isinstance(r, Accepted) and r.request_id == "good-1" for r in replies)
    finally:
        dealer.close(0)
        context.term()
    wait_until(lambda: sum(r.get("event") == "malformed" for r in _decisions(settings))
               >= len(MALFORMED), WAIT, "every malformed frame in the log")


@pytest.mark.processes
@pytest.mark.slow
def test_the_service_stops_by_itself_and_binds_loopback_only(keys, tmp_path):
    """With max_seconds it stops by itself, refusing what is still open (NO_RESOURCES, the
    reason named) so no client waits in vain, and writes its summary (the fabric named
    simulated). It bound the loopback interface it was given; every-interface addresses
    are refused before anything starts."""
    for address in ("tcp://*:5600", "tcp://0.0.0.0:5600", "udp://127.0.0.1:5600"):
        with pytest.raises(ConfigError, match="address"):
            BridgeServiceSettings(keys, tmp_path, TOPOLOGY, address=address)
    max_seconds = 3.0
    settings = BridgeServiceSettings(keys, tmp_path / "run", TOPOLOGY, time_scale=TIME_SCALE,
                                     max_seconds=max_seconds)
    with ProcessGroup() as group:
        address = _start(group, settings)
        assert address.startswith("tcp://127.0.0.1:")
        with BridgeClient(address, keys, "app") as bridge:
            # 14 pairs within one 0.1 s window at 27 Hz: accepted, expected in about a day
            endless = bridge.request_pairs("qnu0", "qnu1", pairs=14)
            with pytest.raises(BridgeRefusedError, match="max_seconds") as err:
                bridge.wait(endless, max_seconds + WAIT)
            assert err.value.code == "NO_RESOURCES"
            assert endless.accepted is not None and endless.accepted.expected_time_s > 1e4
        assert group.join(settings.name, WAIT) == 0, "the orchestrator did not stop by itself"
    summary = json.loads((settings.run_dir / f"{settings.name}_summary.json").read_text())
    assert summary["stopped"].startswith("max_seconds") and summary["simulated"] is True
    assert "simulated" in summary["fabric"]


# -- the engine, on a clock the test moves -------------------------------------------------

def _engine(seed: int = 1) -> BridgeEngine:
    return BridgeEngine(TOPOLOGY, Scheduler(TOPOLOGY), SimulatedLinkFabric(TOPOLOGY, seed),
                        seed)


def _outcomes(engine: BridgeEngine) -> list[Any]:
    return [m for _, m in engine.outbox if not isinstance(m, DecisionEntry | Accepted)]


def test_a_late_turn_changes_no_outcome():
    """The engine carries out what fell due in time order: one jump of 5 s (a process that
    was descheduled) gives exactly the replies that 1 ms steps give."""
    def run(step: float) -> list[Any]:
        engine = _engine()
        engine.handle("app", RequestPairs("p", "qnu0", "qnu1", 3, 0.55, 2.0), 0.0)
        engine.handle("app", RequestTransfer("t", "qnu2", "qnu3", "0", 0.5, None), 0.0)
        engine.handle("app", RequestPairs("q", "qnu0", "qnu4", 2, 0.5, 1.0), 0.0)
        now = 0.0
        while now < 5.0:
            now = min(5.0, now + step)
            engine.advance(now)
        return list(engine.outbox)

    assert run(0.001) == run(5.0)
    outcomes = [m for _, m in run(5.0) if isinstance(m, Delivered | Transferred)]
    assert {m.request_id for m in outcomes} == {"p", "t", "q"}


def test_transfers_report_werner_fidelity_and_uniform_bits():
    """Many transfers on the engine: each fidelity is (2F + 1)/3 of its pair's, each pair
    at least the minimum, and all four bit pairs occur (drawn uniformly)."""
    engine = _engine(seed=3)
    now = 0.0
    for i in range(40):
        engine.handle("app", RequestTransfer(f"t{i}", "qnu0", "qnu5", "-", 0.55, None), now)
        while not any(isinstance(m, Transferred) and m.request_id == f"t{i}"
                      for _, m in engine.outbox):
            now += 0.01
            engine.advance(now)
    done = [m for m in _outcomes(engine) if isinstance(m, Transferred)]
    assert len(done) == 40
    assert all(m.pair_fidelity >= 0.55 for m in done)
    assert all(m.fidelity == pytest.approx((2 * m.pair_fidelity + 1) / 3) for m in done)
    assert {m.bits for m in done} == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_teleported_fidelity_of_mixed_states():
    """Pure states: (2F + 1)/3; the maximally mixed state arrives unchanged (fidelity 1);
    a perfect pair teleports anything perfectly."""
    assert teleported_fidelity(0.7, (0.0, 0.0, 1.0)) == pytest.approx(0.8)
    assert teleported_fidelity(0.7, (0.0, 0.0, 0.0)) == pytest.approx(1.0)
    assert teleported_fidelity(1.0, (0.3, 0.4, 0.0)) == pytest.approx(1.0)
    assert 0.8 < teleported_fidelity(0.7, (0.0, 0.6, 0.0)) < 1.0


def test_engine_refuses_duplicate_ids_unknown_cancels_and_floods():
    """A second open request with one id, a cancel of what is not open, and requests beyond
    the per-client limit are each refused with their own code; another client's same id is
    its own."""
    engine = BridgeEngine(TOPOLOGY, Scheduler(TOPOLOGY), SimulatedLinkFabric(TOPOLOGY), 0,
                          max_open_per_client=2)
    slow = RequestPairs("x", "qnu0", "qnu1", 10, 0.5, None)
    engine.handle("app", slow, 0.0)
    engine.handle("app", slow, 0.0)
    engine.handle("app2", slow, 0.0)
    engine.handle("app", Cancel("nope"), 0.0)
    engine.handle("app", RequestPairs("y", "qnu2", "qnu3", 10, 0.5, None), 0.0)
    engine.handle("app", RequestPairs("z", "qnu4", "qnu5", 10, 0.5, None), 0.0)
    errs = {(c, m.request_id): m.code for c, m in engine.outbox if isinstance(m, Err)}
    assert errs == {("app", "x"): "UNSUPPORTED", ("app", "nope"): "UNKNOWN_REQUEST",
                    ("app", "z"): "NO_RESOURCES"}
    engine.handle("app", Cancel("x"), 0.1)
    assert ("app", Cancelled("x")) in engine.outbox
    assert len(engine.open) == 2  # app/y and app2/x


# -- the wire ------------------------------------------------------------------------------

MESSAGES = [
    RequestPairs("r-1", "qnu0", "qnu1", 2, 0.55, 1.5),
    RequestPairs("r-2", "qnu0", "qnu1", 1, 0.0, None),
    RequestTransfer("t.1", "qnu0", "qnu7", (0.0, 0.6, 0.8), 0.5, None),
    RequestTransfer("t:2", "qnu0", "qnu7", "-i", 0.5, 2.0),
    Cancel("r-1"),
    Accepted("r-1", 0.25),
    Delivered("r-1", "st0", (0.56, 0.57), 0.3),
    Transferred("t.1", "st1", 0.71, 0.565, (1, 0), 1e-6, 0.2),
    Cancelled("r-1"),
    Err(None, "MALFORMED", "bad", "pairs"),
    Err("r-2", "TIMEOUT", "too late"),
    DecisionEntry("r-1", 0.1, "ASSIGN", "connect", "st0", ("qnu0", "qnu1"), 0.125, None,
                  {"setup": 0.025}),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.TYPE)
def test_every_message_survives_the_wire(message):
    decode = decode_request if isinstance(message, RequestPairs | RequestTransfer | Cancel) \
        else decode_reply
    assert decode(encode(message)) == message


def test_replies_and_requests_are_not_confused_and_bad_values_are_named():
    with pytest.raises(BridgeWireError, match="'type'"):
        decode_reply(encode(Cancel("r")))
    with pytest.raises(BridgeWireError, match="'type'"):
        decode_request(encode(Cancelled("r")))
    with pytest.raises(BridgeWireError, match="'fidelities\\[1\\]'"):
        Delivered("r", "st0", (0.5, math.nan), 0.1)
    with pytest.raises(BridgeWireError, match="'bits\\[0\\]'"):
        Transferred("r", "st0", 0.7, 0.55, (2, 0), 0.0, 0.1)
    with pytest.raises(BridgeWireError, match="'code'"):
        Err("r", "NOPE", "x")
    with pytest.raises(BridgeWireError, match=r"'values\.bad'"):
        DecisionEntry("r", 0.0, "WAIT", "x", None, (), None, None, {"bad": math.inf})


def test_the_client_drops_malformed_replies_and_keeps_listening(keys):
    """The client treats the orchestrator's frames as hostile too: garbage, a reply of the
    wrong side and an out-of-range DELIVERED are counted by field and dropped, and the good
    DELIVERED after them still ends the wait. (An orchestrator stand-in: a CURVE ROUTER
    with the orchestrator's key, in this thread.)"""
    from qnetlab.network.keys import make_curve_server, start_authenticator

    context = zmq.Context()
    authenticator = start_authenticator(context, keys)
    router = context.socket(zmq.ROUTER)
    router.linger = 0
    try:
        make_curve_server(router, keys, SERVER)
        router.bind("tcp://127.0.0.1:*")
        address = router.getsockopt(zmq.LAST_ENDPOINT).decode()
        with BridgeClient(address, keys, "app") as bridge:
            handle = bridge.request_pairs("qnu0", "qnu1", request_id="r1")
            assert router.poll(int(WAIT * 1000)), "the request never arrived"
            route, frame = router.recv_multipart()
            assert decode_request(frame) == RequestPairs("r1", "qnu0", "qnu1", 1, 0.5, None)
            good = encode(Delivered("r1", "st0", (0.56,), 0.1))
            bad_fidelity = good.replace(b"0.56", b"1.56")
            for reply in (b"\x01{", encode(Cancel("r1")), bad_fidelity, good):
                router.send_multipart([route, reply])
            assert bridge.wait(handle, WAIT) == Delivered("r1", "st0", (0.56,), 0.1)
            assert bridge.malformed == {"payload": 1, "type": 1, "fidelities[0]": 1}
    finally:
        router.close(0)
        authenticator.stop()
        context.term()


def test_a_client_nobody_answers_gets_an_error_naming_the_orchestrator_not_a_hang(
        keys: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens at the address (or the orchestrator refused the client's key): the
    requests queue up to the socket's 1000 frames, then the next one raises
    `BridgeTimeoutError` naming the address and the key to check, instead of blocking the
    application for ever (the send timeout shortened here so the test waits 0.05 s)."""
    monkeypatch.setattr(client_module, "SEND_TIMEOUT_S", 0.05)
    port = free_port_run(1)
    address = f"tcp://127.0.0.1:{port}"
    with BridgeClient(address, keys, "app") as bridge, \
            pytest.raises(BridgeTimeoutError, match=rf"{address}.*app's public key"):
        for i in range(1001 + 1):
            bridge.request_pairs("qnu0", "qnu1", request_id=f"r{i}")
    assert len(bridge.handles) == 1000  # the refused request has no handle
