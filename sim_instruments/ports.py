"""Free loopback ports for simulated servers, tests and benchmarks."""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Sequence

PORT_RANGE_ENV = "QNETLAB_FREE_PORTS"
"""Where `free_port_run` looks, ``low-high`` (default 20000-32000). The test suite gives each
pytest-xdist worker a slice of its own, so that two workers never pick the same port between
one's check and its bind (tests/conftest.py)."""
DEFAULT_RANGE = (20000, 32000)


def port_range() -> tuple[int, int]:
    """The ports `free_port_run` may pick, [low, high): `PORT_RANGE_ENV` or the default."""
    text = os.environ.get(PORT_RANGE_ENV, "").strip()
    if not text:
        return DEFAULT_RANGE
    try:
        low, high = (int(part) for part in text.split("-"))
    except ValueError:
        low = high = 0
    if not 1024 <= low < high <= 65536:
        raise ValueError(f"{PORT_RANGE_ENV}={text!r}: expected low-high with "
                         "1024 <= low < high <= 65536, e.g. 20000-26000")
    return low, high


def free_port_run(count: int, hosts: Sequence[str] = ("127.0.0.1",)) -> int:
    """A base port such that ``base .. base + count`` are all free now on every one of
    `hosts` (loopback addresses: the rehearsal lab can give each instrument its own
    127.0.0.x), below Linux's ephemeral range (32768-60999), so that no client socket opened
    meanwhile can take one of them. A small race remains (another process may bind one
    first); the bind then fails loudly where the port is used."""
    rng = random.Random()
    low, high = port_range()
    for _ in range(200):
        base = rng.randrange(low, high - count)
        held: list[socket.socket] = []
        try:
            for port in range(base, base + count + 1):
                for host in hosts:
                    s = socket.socket()
                    held.append(s)
                    s.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError(f"no run of {count + 1} free ports in {low}-{high} on "
                       f"{', '.join(hosts)}")
