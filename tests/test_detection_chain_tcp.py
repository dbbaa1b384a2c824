"""The detection chain's VISA drivers over the TCP rehearsal transport (`qnetlab sim serve`).

The AWG upload goes over a real socket as IEEE 488.2 binary blocks, whose bytes may contain
the terminator; the server must frame them as the in-process backend does.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from qnetlab.drivers.quantum_opus import QuantumOpusSIM900
from qnetlab.drivers.tektronix import TektronixAWG5208
from qnetlab.instruments.awg import AwgStep, AwgWaveform
from qnetlab.instruments.conformance import assert_conforms
from qnetlab.sim_instruments.server import ControlClient

from conftest import REPO, free_port_run

pytestmark = pytest.mark.processes


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = free_port_run(4)
    config = tmp_path_factory.mktemp("chain") / "chain.yaml"
    config.write_text(textwrap.dedent(f"""
        qnetlab:
          simulation: {{seed: 3}}
        instruments:
          snspd:
            type: qnetlab.drivers.quantum_opus.QuantumOpusSIM900
            address: {{sim: srs_sim900_quantum_opus,
                       real: "TCPIP0::127.0.0.1::{base}::SOCKET"}}
          awg:
            type: qnetlab.drivers.tektronix.TektronixAWG5208
            address: {{sim: tektronix_awg5208, real: "TCPIP0::127.0.0.1::{base + 1}::SOCKET"}}
    """))
    proc = subprocess.Popen(
        [sys.executable, "-m", "qnetlab", "sim", "serve", str(config), "--control-port",
         str(base + 2), "--max-seconds", "300"], cwd=REPO, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            ControlClient(base + 2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("sim serve did not start") from None
            time.sleep(0.1)
    yield base
    proc.terminate()
    proc.wait(10)


def test_snspd_driver_conforms_over_tcp(served):
    snspd = QuantumOpusSIM900("snspd_tcp", f"TCPIP0::127.0.0.1::{served}::SOCKET",
                              visalib="@py", slots=[1, 2])
    try:
        assert_conforms(snspd)
    finally:
        snspd.close()


def test_awg_driver_conforms_and_uploads_binary_over_tcp(served):
    awg = TektronixAWG5208("awg_tcp", f"TCPIP0::127.0.0.1::{served + 1}::SOCKET",
                           visalib="@py")
    try:
        assert_conforms(awg)
        n = 2400
        # 0x0A (the terminator) appears inside both blocks: in these float32 samples, and in
        # the marker bytes where markers 2 and 4 are high together (bits 1 and 3: 10). Cut at
        # a terminator, the rest of a block would be parsed as commands and fail with an
        # error the driver raises after the write.
        samples = np.full(n, 0.5, dtype=np.float32)
        samples[::7] = np.float32(np.frombuffer(b"\x0a\x0a\x0a\x3e", dtype="<f4")[0])
        markers = np.zeros((4, n), dtype=np.uint8)
        markers[1, ::3] = 1
        markers[3, ::5] = 1
        awg.upload_sequence([AwgStep({1: AwgWaveform(samples, markers)}, repeat=2)],
                            name="tcp_test")
        assert int(awg.ask("WLISt:SIZE?")) >= 1
        awg.check_error_queue("upload")
    finally:
        awg.close()
