"""Every emulator answers every query its driver's snapshot sends (issue 11, item 21).

Each driver (the qnetlab driver, whose parameters are those of the upstream QCoDeS or
qcodes_contrib_drivers driver it subclasses, plus the role's) takes a full
``snapshot(update=True)`` from its twin over the TCP rehearsal transport (`qnetlab sim
serve`, pyvisa-py sockets), with a short timeout: not one query may time out or fail, and
the instrument's error queue (or event status register) must be empty afterwards. An
unanswered query costs a whole VISA timeout on hardware and in the rehearsal lab alike.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from qnetlab.drivers.idquantique import IDQuantiqueID1000
from qnetlab.drivers.keysight import KeysightN5183B, KeysightP9374A
from qnetlab.drivers.lakeshore import LakeshoreModel372
from qnetlab.drivers.quantum_opus import QuantumOpusSIM900
from qnetlab.drivers.santec import SantecTSL570
from qnetlab.drivers.tektronix import TektronixAWG5208
from qnetlab.drivers.thorlabs import ThorlabsPM100D
from qnetlab.sim_instruments.server import ControlClient

from conftest import REPO, free_port_run

pytestmark = [pytest.mark.tcp, pytest.mark.processes]

TIMEOUT_S = 3.0
"""VISA timeout given to the drivers. The tests count timeouts rather than time the snapshot,
so a loaded machine cannot fail them; the timeout is kept short only so that a broken
emulator fails in minutes, not hours (the AWG5208 once left 218 queries unanswered)."""

# name -> (driver, twin, extra init keywords)
VISA_MODELS: dict[str, tuple[type, str, dict[str, Any]]] = {
    "mw_source": (KeysightN5183B, "keysight_n5183b", {}),
    "vna": (KeysightP9374A, "keysight_p9374a", {}),
    "pump_laser": (SantecTSL570, "santec_tsl570", {}),
    "power_meter": (ThorlabsPM100D, "thorlabs_pm100d", {}),
    "fridge": (LakeshoreModel372, "lakeshore_372", {}),
    "awg": (TektronixAWG5208, "tektronix_awg5208", {}),
    "snspd": (QuantumOpusSIM900, "srs_sim900_quantum_opus", {"slots": [1, 2]}),
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Every emulated model served by one `qnetlab sim serve` on free loopback ports;
    yields instrument name -> address (the ID1000's data link as ``tagger_data``)."""
    base = free_port_run(len(VISA_MODELS) + 3)
    addresses = {name: f"TCPIP0::127.0.0.1::{base + i}::SOCKET"
                 for i, name in enumerate(VISA_MODELS)}
    addresses["tagger"] = f"tcp://127.0.0.1:{base + len(VISA_MODELS)}"
    addresses["tagger_data"] = f"tcp://127.0.0.1:{base + len(VISA_MODELS) + 1}"
    control_port = base + len(VISA_MODELS) + 2
    entries = "".join(
        f"  {name}:\n    type: {driver.__module__}.{driver.__name__}\n"
        f"    address: {{sim: {twin}, real: '{addresses[name]}'}}\n"
        for name, (driver, twin, _) in VISA_MODELS.items())
    entries += (
        "  tagger:\n    type: qnetlab.drivers.idquantique.IDQuantiqueID1000\n"
        f"    address: {{sim: idq_id1000, real: '{addresses['tagger']}'}}\n"
        f"    init: {{data_address: '{addresses['tagger_data']}'}}\n")
    folder = tmp_path_factory.mktemp("snapshots")
    config = folder / "all_models.yaml"
    config.write_text(textwrap.dedent("""
        qnetlab:
          simulation: {seed: 11, transducer: bulk_eo_cw}
        instruments:
    """).lstrip() + entries)
    # The server's log goes to a file: a pipe nobody reads could fill and stall it.
    log = (folder / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "qnetlab", "sim", "serve", str(config), "--control-port",
         str(control_port), "--max-seconds", "300"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 30
    while True:
        try:
            client = ControlClient(control_port)
            client.request(op="ping")
            client.close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.close()
                detail = (folder / "serve.log").read_text()
                raise RuntimeError(f"sim serve did not start: {detail}") from None
            time.sleep(0.1)
    try:
        yield addresses
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def _snapshot_failures(inst: Any, caplog: pytest.LogCaptureFixture
                       ) -> tuple[list[str], list[str]]:
    """Take ``inst.snapshot(update=True)``; return the parameters QCoDeS could not update
    (it logs them and carries on) and the commands that timed out or lost the link."""
    broken: list[str] = []
    failed = inst._failed

    def spy(exc: Exception, cmd: str) -> Exception:
        broken.append(cmd)
        return failed(exc, cmd)

    inst._failed = spy  # every timeout or lost connection of the VISA base goes through it
    caplog.clear()
    try:
        with caplog.at_level(logging.WARNING):
            inst.snapshot(update=True)
    finally:
        del inst._failed
    not_updated = [r.getMessage() for r in caplog.records
                   if "Could not update" in r.getMessage()]
    return not_updated, broken


@pytest.mark.parametrize("name", list(VISA_MODELS))
def test_snapshot_update_gets_every_answer_over_tcp(
    served: dict[str, str], name: str, caplog: pytest.LogCaptureFixture,
) -> None:
    driver, _, init = VISA_MODELS[name]
    inst = driver(f"{name}_{uuid.uuid4().hex[:6]}", served[name], visalib="@py",
                  timeout=TIMEOUT_S, **init)
    try:
        not_updated, timed_out = _snapshot_failures(inst, caplog)
        assert timed_out == []
        assert not_updated == []
        # Nothing the snapshot sent was refused: the error queue (*ESR? on the models
        # without one) is empty.
        inst.check_error_queue("snapshot(update=True)")
    finally:
        inst.close()


def test_id1000_snapshot_update_gets_every_answer_over_tcp(
    served: dict[str, str], caplog: pytest.LogCaptureFixture,
) -> None:
    # The ID1000 answers on its ZeroMQ SCPI socket; a refused query comes back as an error
    # reply (SCPI_ERR_...), which the driver raises and QCoDeS's snapshot logs.
    tagger = IDQuantiqueID1000(f"tagger_{uuid.uuid4().hex[:6]}", served["tagger"],
                               data_address=served["tagger_data"], timeout=TIMEOUT_S)
    try:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            snapshot = tagger.snapshot(update=True)
        assert [r.getMessage() for r in caplog.records
                if "Could not update" in r.getMessage()] == []
        assert snapshot["submodules"]["input1"]["parameters"]["enabled"]["value"] is not None
    finally:
        tagger.close()
