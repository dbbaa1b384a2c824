"""At the orchestrator a node is the owner of its CURVE key, not what it calls itself.

The orchestrator runs as its own process (`run_orchestrator` in a `ProcessGroup`) on a free
127.0.0.1 port with freshly generated lab keys; the test's DEALERs play the node agents the
way `network.node_agent` talks to it (CURVE client keys, routing identity left to the ROUTER;
without CURVE, routing identity = node name).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from zmq.utils import z85
from zmq.utils.monitor import recv_monitor_message

from qnetlab.network import ProcessGroup
from qnetlab.network.keys import (
    LabKeyError,
    generate_lab_keys,
    key_owner,
    load_public_key,
    make_curve_client,
    make_curve_server,
    start_authenticator,
)
from qnetlab.network.lab import plan_lab
from qnetlab.network.messages import Ack, Create, Err, ErrCode, Heartbeat, Ok, OkBatch, decode
from qnetlab.network.network_config import NetworkConfig, load_network_config
from qnetlab.network.orchestrator import OrchestratorSettings, run_orchestrator

from conftest import REPO, free_port_run

pytestmark = [pytest.mark.slow, pytest.mark.processes]

CONFIG = REPO / "lab_configs" / "two_node_link.yaml"
LIMIT = 15.0
"""s after which the orchestrator stops by itself."""
PAIRS = 3


def lab_config(tmp_path: Path) -> NetworkConfig:
    config = load_network_config(CONFIG)
    config = config.with_ports(free_port_run(config.port_count))
    config = dataclasses.replace(config, key_dir=tmp_path / "keys", run_dir=tmp_path / "runs")
    generate_lab_keys(config.key_dir, config.key_names())
    return config


def orchestrator_settings(config: NetworkConfig, *, curve: bool = True) -> OrchestratorSettings:
    return plan_lab(config, pairs=PAIRS, run_dir=config.run_dir, epoch_ns=time.monotonic_ns(),
                    goodness=0.9, expected_pair_rate=1000.0, curve=curve,
                    max_seconds=LIMIT).orchestrator


@pytest.fixture
def context() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def group() -> Iterator[ProcessGroup]:
    with ProcessGroup() as processes:
        yield processes


def dealer(context: zmq.Context, config: NetworkConfig, *, key: str | None,
           claims: str | None = None, handshake: bool = False) -> zmq.Socket:
    """A DEALER to the orchestrator holding `key`'s lab keypair (None: no CURVE) and, if
    `claims` is given, calling itself that (routing identity). With `handshake`, return once
    its CURVE handshake (ZAP included) is done, so whatever it sends is judged under its key."""
    socket = context.socket(zmq.DEALER)
    socket.linger = 0
    if claims is not None:
        socket.identity = claims.encode()
    if key is not None:
        make_curve_client(socket, config.key_dir, key, config.orchestrator.name)
    if not handshake:
        socket.connect(config.orchestrator.address)
        return socket
    monitor = socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    monitor.rcvtimeo = 10_000
    try:
        socket.connect(config.orchestrator.address)
        recv_monitor_message(monitor)
    except zmq.Again:
        raise AssertionError(f"no CURVE handshake as {claims!r} with {key!r}'s key in "
                             "10 s") from None
    finally:
        socket.disable_monitor()
        monitor.close(0)
    return socket


def drain(socket: zmq.Socket) -> list[Any]:
    out = []
    while socket.poll(0):
        out.append(decode(socket.recv()))
    return out


def result(config: NetworkConfig) -> dict[str, Any]:
    return json.loads((config.run_dir / f"{config.orchestrator.name}_result.json").read_text())


def serve_request(config: NetworkConfig, nodes: dict[str, zmq.Socket], also: Any = None,
                  incarnation: dict[str, int] | None = None) -> dict[str, set[int]]:
    """Heartbeat as the genuine nodes until each has a CREATE, answer it with an ACK and OKs
    for seqs 0..PAIRS-1, and collect the verdicts until the orchestrator has delivered.
    Returns the seqs each node got an OK verdict for. `also()` runs on every round; a node's
    heartbeats carry its `incarnation` (default 0) in their high 32 bits."""
    node_ids = {name: i + 1 for i, name in enumerate(config.nodes)}
    creates: dict[str, Create] = {}
    verdicts: dict[str, set[int]] = {name: set() for name in nodes}
    deadline = time.monotonic() + 10.0
    beat = 0
    while any(len(v) < PAIRS for v in verdicts.values()):
        assert time.monotonic() < deadline, f"request not served: {creates}, {verdicts}"
        beat += 1
        for name, socket in list(nodes.items()):
            high = (incarnation or {}).get(name, 0) << 32
            socket.send(Heartbeat(node_ids[name], high | beat, 0).encode())
            for message in drain(socket):
                if isinstance(message, Create) and message.number > 0 and name not in creates:
                    creates[name] = message
                    socket.send(Ack(message.create_id, 0.01).encode())
                    for seq in range(PAIRS):
                        socket.send(Ok(message.create_id, config.link.id, seq, 0.9,
                                       0).encode())
                elif isinstance(message, OkBatch):  # the orchestrator's verdicts come batched
                    verdicts[name].update(message.seqs.tolist())
        if also is not None:
            also()
        time.sleep(0.02)
    return verdicts


@pytest.mark.parametrize("owner", ["station", "orchestrator"])
def test_other_key_holder_calling_itself_a_node_is_dropped_and_cannot_lock_it_out(
        tmp_path, group, context, owner):
    config = lab_config(tmp_path)
    settings = orchestrator_settings(config)
    group.start(settings.name, run_orchestrator, settings)
    # Someone holding `owner`'s lab key connects first, calling itself "node_a" (the routing
    # identity a ROUTER gives to whoever claims it first), and stays.
    impostor = dealer(context, config, key=owner, claims="node_a", handshake=True)
    node_b = dealer(context, config, key="node_b", handshake=True)

    # Were the impostor's heartbeats taken as node_a's, both would get a CREATE (it goes out
    # once both nodes are heard).
    forged: list[Any] = [Ack(1, 0.01), Ok(1, config.link.id, 0, 0.9, 0),
                         Err(1, config.link.id, 1, ErrCode.LOST)]
    for message in forged:
        impostor.send(message.encode())
    for beat in range(1, 16):  # 15 x 40 ms: > 2 x the orchestrator's 0.2 s silence limit
        impostor.send(Heartbeat(1, beat, 0).encode())
        node_b.send(Heartbeat(2, beat, 0).encode())
        forged.append(Heartbeat(1, beat, 0))
        time.sleep(0.04)
    assert drain(node_b) == [] and drain(impostor) == []

    # The genuine node_a comes while the impostor is still connected and still talking.
    node_a = dealer(context, config, key="node_a")

    def keep_forging() -> None:
        impostor.send(Heartbeat(1, 99, 0).encode())
        forged.append(Heartbeat(1, 99, 0))

    verdicts = serve_request(config, {"node_a": node_a, "node_b": node_b}, keep_forging)
    assert group.join(settings.name, 10) == 0, "orchestrator did not finish"
    assert drain(impostor) == []  # nothing for node_a ever went to the impostor

    outcome = result(config)
    assert not outcome["failed"]
    assert sorted(d["seq"] for d in outcome["delivered"]) == list(range(PAIRS))
    assert verdicts == {"node_a": set(range(PAIRS)), "node_b": set(range(PAIRS))}
    counters = outcome["counters"]
    # Every forged message the orchestrator read was dropped (the last few may still have
    # been queued when it finished).
    assert len(forged) - 5 <= counters["not_a_node"] <= len(forged)
    assert counters["acks"] == 2  # the genuine nodes' ACKs only, not the forged one
    assert "disagreements" not in counters and "stale" not in counters
    events = [e for e in outcome["events"] if e["event"] == "not_a_node"]
    assert [e["key_owner"] for e in events] == [owner]


def test_second_connection_with_a_live_nodes_key_is_ignored_until_the_first_falls_silent(
        tmp_path, group, context):
    config = lab_config(tmp_path)
    settings = orchestrator_settings(config)
    group.start(settings.name, run_orchestrator, settings)
    first = dealer(context, config, key="node_a", handshake=True)
    second = dealer(context, config, key="node_a", handshake=True)  # a stale twin, say
    node_b = dealer(context, config, key="node_b", handshake=True)
    # Both twins talking every 40 ms until the CREATEs have come (the orchestrator's start
    # takes what the machine gives it: waited for, not assumed), at least 10 beats.
    deadline = time.monotonic() + 30.0
    beat = 0
    while beat < 10 or not (first.poll(0) and node_b.poll(0)):
        assert time.monotonic() < deadline, "no CREATE within 30 s of the nodes' first beats"
        beat += 1
        first.send(Heartbeat(1, beat, 0).encode())
        second.send(Heartbeat(1, (7 << 32) | beat, 0).encode())  # another incarnation
        node_b.send(Heartbeat(2, beat, 0).encode())
        time.sleep(0.04)
    # The first connection is node_a: it (and node_b) got the CREATE, the twin nothing, and
    # the twin's other incarnation was not taken for a restart.
    assert [type(m) for m in drain(first)] == [Create]
    assert [type(m) for m in drain(node_b)] == [Create]
    assert drain(second) == []
    first.close(0)
    # Once the first has been silent past the limit (4 x 50 ms), the second is node_a, a
    # restarted one (its own incarnation): the request starts again with it.
    time.sleep(0.3)
    verdicts = serve_request(config, {"node_a": second, "node_b": node_b},
                             incarnation={"node_a": 7})
    assert group.join(settings.name, 10) == 0, "orchestrator did not finish"
    assert verdicts == {"node_a": set(range(PAIRS)), "node_b": set(range(PAIRS))}
    outcome = result(config)
    counters = outcome["counters"]
    assert counters["duplicate_connection"] == beat  # the twin's heartbeats while first lived
    assert counters["node_restarts"] == 1  # the switch to the second, once
    assert [e["node"] for e in outcome["events"] if e["event"] == "duplicate_connection"] \
        == ["node_a"]


def test_without_curve_no_key_is_asked_for(tmp_path, group, context):
    """The benchmark's comparison runs without CURVE: there is no User-Id, and the nodes'
    messages are taken as before."""
    config = lab_config(tmp_path)
    settings = orchestrator_settings(config, curve=False)
    group.start(settings.name, run_orchestrator, settings)
    nodes = {name: dealer(context, config, key=None, claims=name) for name in config.nodes}
    verdicts = serve_request(config, nodes)
    assert group.join(settings.name, 10) == 0, "orchestrator did not finish"
    outcome = result(config)
    assert not outcome["failed"] and len(outcome["delivered"]) == PAIRS
    assert verdicts == {name: set(range(PAIRS)) for name in config.nodes}
    assert "not_a_node" not in outcome["counters"]


def test_authenticator_names_each_key_by_its_file(tmp_path, context):
    config = lab_config(tmp_path)
    authenticator = start_authenticator(context, config.key_dir)
    router = context.socket(zmq.ROUTER)
    router.linger = 0
    try:
        for name in config.key_names():
            raw = z85.decode(load_public_key(config.key_dir, name))
            assert authenticator.curve_user_id(raw) == name
        # Over a real connection: the claimed identity is the peer's word, the User-Id is
        # the key's owner.
        make_curve_server(router, config.key_dir, config.orchestrator.name)
        router.rcvtimeo = 5000
        port = router.bind_to_random_port("tcp://127.0.0.1")
        config = dataclasses.replace(config, orchestrator=dataclasses.replace(
            config.orchestrator, address=f"tcp://127.0.0.1:{port}"))
        for key, claims in (("station", "node_a"), ("node_b", "node_b")):
            peer = dealer(context, config, key=key, claims=claims)
            peer.send(b"hello")
            frames = router.recv_multipart(copy=False)
            assert frames[0].bytes == claims.encode() and frames[1].bytes == b"hello"
            assert key_owner(frames[-1]) == key
            peer.close(0)
    finally:
        router.close(0)
        authenticator.stop()


def test_key_owner_is_none_without_curve(context):
    router, peer = context.socket(zmq.ROUTER), context.socket(zmq.DEALER)
    router.linger = peer.linger = 0
    router.rcvtimeo = 5000
    port = router.bind_to_random_port("tcp://127.0.0.1")
    peer.connect(f"tcp://127.0.0.1:{port}")
    peer.send(b"hello")
    assert key_owner(router.recv_multipart(copy=False)[-1]) is None
    router.close(0)
    peer.close(0)


def test_one_key_under_two_names_is_refused(tmp_path, context):
    config = lab_config(tmp_path)
    public = config.key_dir / "public"
    (public / "node_c.key").write_bytes((public / "node_a.key").read_bytes())
    with pytest.raises(LabKeyError, match=r"node_c\.key.*same public key as node_a\.key"):
        start_authenticator(context, config.key_dir)
