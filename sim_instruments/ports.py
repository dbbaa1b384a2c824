"""Free loopback ports for simulated servers, tests and benchmarks."""

from __future__ import annotations

import random
import socket


def free_port_run(count: int) -> int:
    """A base port such that ``base .. base + count`` are all free on 127.0.0.1 now, below
    Linux's ephemeral range (32768-60999), so that no client socket opened meanwhile can take
    one of them. A small race remains (another process may bind one first); the bind then
    fails loudly where the port is used."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32000 - count)
        held: list[socket.socket] = []
        try:
            for port in range(base, base + count + 1):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError(f"no run of {count + 1} free loopback ports below 32000")
