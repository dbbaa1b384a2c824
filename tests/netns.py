"""Linux network namespaces as hosts, for the tests that run a lab's processes across them
(tests/test_netns_link.py, tests/test_netns_bridge.py).

A hub namespace holds a bridge; a veth pair joins it to each "host" (a namespace with its own
``eth0`` at the address given and its own loopback). Namespaces need root (``ip netns add``):
without, a test skips and says why; in CI (``CI=true``, where the tests run as root) it fails
instead, so it cannot silently stop running.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

STOP_S = 30.0
"""s a launcher may take to stop after SIGTERM (its process gets 20 s to write its files,
`network.ProcessGroup`)."""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def unavailable(test_file: str) -> str:
    """Why network namespaces cannot be made here ("" when they can, as far as can be told
    without trying)."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are a Linux feature"
    if os.geteuid() != 0:
        return ("not root: `ip netns add` needs CAP_SYS_ADMIN (CI runs the tests as root; "
                f"locally: sudo .venv/bin/python -m pytest {test_file})")
    if shutil.which("ip") is None:
        return "no `ip` command: install iproute2"
    return ""


def skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must run the network-namespace test: {reason}")
    pytest.skip(reason)


def build(hub: str, hosts: Mapping[str, str], created: list[str]) -> None:
    """The hub's bridge, and per host (namespace -> its address) a veth from the hub to it
    (eth0 there, with the address /24; loopback up: twins listen on 127.0.0.1). Every
    namespace made is appended to `created` at once (to be deleted whatever happens)."""
    ip("netns", "add", hub)
    created.append(hub)
    ip("-n", hub, "link", "add", "br0", "type", "bridge")
    ip("-n", hub, "link", "set", "br0", "up")
    for i, (ns, address) in enumerate(hosts.items(), start=1):
        ip("netns", "add", ns)
        created.append(ns)
        # Made inside the hub and moved at once: nothing appears in the host's namespace.
        ip("-n", hub, "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0",
           "netns", ns)
        ip("-n", hub, "link", "set", f"v{i}", "master", "br0", "up")
        ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "lo", "up")


@contextmanager
def namespaces(hub: str, hosts: Mapping[str, str], test_file: str) -> Iterator[None]:
    """`build` the hosts (namespace -> address) or skip/fail saying why; delete every
    namespace made on the way out, whatever the outcome."""
    created: list[str] = []
    try:
        reason = unavailable(test_file)
        if not reason:
            try:
                build(hub, hosts, created)
            except subprocess.CalledProcessError as exc:
                reason = (f"`{' '.join(exc.cmd)}` failed: {exc.stderr.strip()} (no "
                          "network namespaces here: a container without CAP_SYS_ADMIN?)")
            except (OSError, subprocess.TimeoutExpired) as exc:
                reason = f"`ip netns` could not run: {exc}"
        if reason:
            skip_or_fail(reason)
        yield
    finally:
        for ns in reversed(created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def launch_in(ns: str, log: Path, argv: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    """``python -m qnetlab ARGV`` in namespace `ns`, its output appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "qnetlab",
                                 *argv], stdout=out, stderr=subprocess.STDOUT, cwd=cwd)


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process still running, then SIGKILL those that outlive `STOP_S`."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(STOP_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
