"""Free loopback ports for simulated servers, tests and benchmarks."""

from __future__ import annotations

import random
import socket
from collections.abc import Sequence


def free_port_run(count: int, hosts: Sequence[str] = ("127.0.0.1",)) -> int:
    """A base port such that ``base .. base + count`` are all free now on every one of
    `hosts` (loopback addresses: the rehearsal lab can give each instrument its own
    127.0.0.x), below Linux's ephemeral range (32768-60999), so that no client socket opened
    meanwhile can take one of them. A small race remains (another process may bind one
    first); the bind then fails loudly where the port is used."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32000 - count)
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
    raise RuntimeError(f"no run of {count + 1} free ports below 32000 on {', '.join(hosts)}")
