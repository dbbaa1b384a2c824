"""Shared fixtures: simulated instruments reached through real VISA transports."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from qcodes.instrument import Instrument

REPO = Path(__file__).resolve().parents[1]
BENCH_CONFIG = REPO / "lab_configs" / "transducer_bench.yaml"


@pytest.fixture
def sim_instrument(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Open one driver against its simulated twin over the in-process VISA backend.

    ``sim_instrument(DriverClass, "twin_name", transducer="bulk_eo_cw", seed=1, **init)``
    writes a one-instrument lab config and connects; the instrument is closed afterwards.
    Each call gets a fresh world. `sim_instruments.visa_backend.bench_of(inst)` gives the
    bench (world, emulator, faults) behind it.
    """
    opened: list[Instrument] = []

    def open_twin(driver: type, twin: str, *, transducer: str = "bulk_eo_cw", seed: int = 1,
                  **init: Any) -> Any:
        name = f"{twin}_{len(opened)}"
        config = tmp_path / f"{name}.yaml"
        config.write_text(
            f"qnetlab:\n  simulation: {{seed: {seed}, transducer: {transducer}}}\n"
            f"instruments:\n  {name}:\n    type: {driver.__module__}.{driver.__name__}\n"
            f"    address: {{sim: {twin}}}\n"
        )
        inst = driver(name, f"TCPIP0::{name}::{twin}::INSTR",
                      visalib=f"{config}#{uuid.uuid4().hex}@qnetlab", **init)
        opened.append(inst)
        return inst

    yield open_twin
    for inst in opened:
        inst.close()
