"""The link's calibrations on the simulated link bench, and the read-only parameter service.

The graph: the link's nodes (`link_calibrations` from lab_configs/two_node_link.yaml) on top
of small stand-ins for the node-scope calibrations (transducer efficiency and added noise of
each node, the station's detector efficiency), which commit the bench's true values, so this
file does not depend on the node calibrations' sequences. node_a runs the link calibrations;
node_b's values reach it only through node_b's `ParameterServer` (CURVE on 127.0.0.1).

Statistical tolerances (fixed seeds throughout) are Z = 4.5 standard errors of the statistic
they bound, derived at each check; a correct implementation fails one with probability ~7e-6.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qnetlab.network.keys import generate_lab_keys
from qnetlab.network.network_config import NetworkConfig, load_network_config
from qnetlab.network.parameters import (
    GET,
    VERSION,
    ParameterServer,
    ParameterServiceError,
    fetch_parameters,
    request,
)
from qnetlab.sequences.calibration import (
    CalibrationGraph,
    CalibrationNode,
    CalibrationOutcome,
    CheckOutcome,
    DataResult,
    LabContext,
    Maintainer,
    Scope,
)
from qnetlab.sequences.calibration.link_nodes import (
    LinkBenchHandle,
    NodeInputs,
    RemoteParameters,
    link_calibrations,
)
from qnetlab.sim_instruments.link_bench import SimulatedLinkBench
from qnetlab.sim_instruments.physics.link import (
    FIBRE_DELAY_S_PER_KM,
    LinkModel,
    LinkSimulator,
    NodeOptics,
    arrival_histogram,
    expected_success_probability,
)

pytestmark = pytest.mark.slow

Z = 4.5
CONFIG = Path(__file__).parents[1] / "lab_configs" / "two_node_link.yaml"
FIRST_PHOTON_BIAS = 2e-12
"""s: bound on the arm delay's early bias. With m = 0.2 x 0.91 x 0.9 / 2 = 0.08 photons per
detector and pulse, P(2 photons | a click) ~ m / 2 = 0.04, and the earlier of two Gaussian
arrivals is early by 0.56 s_rms = 39 ps: 0.04 x 39 ps = 1.6 ps."""


class Clock:
    def __init__(self) -> None:
        self.t = 2_000_000.0

    def __call__(self) -> float:
        return self.t


class TrueValue(CalibrationNode):
    """Stand-in node-scope calibration: commits the bench's true values; in spec while they
    are within 5 % of the stored ones."""

    def __init__(self, name: str, scope: str, read: Any) -> None:
        super().__init__(name, scope=scope)
        self.read = read

    def calibrate(self, ctx: Any) -> CalibrationOutcome:
        return CalibrationOutcome(True, "true values", {k: (v, "") for k, v in self.read().items()})

    def check_data(self, ctx: Any) -> CheckOutcome:
        store = ctx.store(self.scope)
        ok = all(abs(v - store.current(k).value) <= 0.05 * abs(v) for k, v in self.read().items())
        return CheckOutcome(DataResult.IN_SPEC if ok else DataResult.OUT_OF_SPEC, "")


@dataclasses.dataclass
class Lab:
    config: NetworkConfig
    bench: SimulatedLinkBench
    graph: CalibrationGraph
    ctx: LabContext
    clock: Clock
    server: ParameterServer
    key_dir: Path


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    config = load_network_config(CONFIG)
    key_dir = tmp_path / "keys"
    generate_lab_keys(key_dir, ["node_a", "node_b"])
    bench = SimulatedLinkBench(config)
    clock = Clock()
    ctx = LabContext({s: Scope(s, tmp_path / f"{s}.db") for s in ("node_a", "node_b", "link")},
                     clock=clock)

    def transducer(node: str) -> Any:
        optics = bench.node_optics(node)
        return lambda: {"transducer_efficiency": optics.transducer_efficiency,
                        "transducer_added_noise": optics.transducer_added_noise}

    stand_ins = [
        TrueValue("node_a.transducer", "node_a", transducer("node_a")),
        TrueValue("node_b.transducer", "node_b", transducer("node_b")),
        TrueValue("node_b.detector_efficiency", "node_b",
                  lambda: {"detection_efficiency": bench.detector_efficiency}),
    ]
    server = ParameterServer(ctx.store("node_b"), "tcp://127.0.0.1:*", key_dir, "node_b",
                             lifetime=60.0).start()
    remote = RemoteParameters(server.address, key_dir, "node_a", "node_b", timeout=2.0)
    inputs = (NodeInputs("node_a"),
              NodeInputs("node_b", detection_efficiency="detection_efficiency", remote=remote))
    nodes = link_calibrations(config, inputs, depends_on=[n.name for n in stand_ins],
                              bench=LinkBenchHandle(lambda: bench))
    try:
        yield Lab(config, bench, CalibrationGraph([*stand_ins, *nodes]), ctx, clock, server,
                  key_dir)
    finally:
        server.stop()


def stored(lab: Lab, name: str) -> float:
    value = lab.ctx.store("link").current(name)
    assert value is not None, name
    return value.value


# -- physics ---------------------------------------------------------------------------------------
def test_a_misplaced_window_loses_photons_in_the_formulas_and_the_simulator() -> None:
    node = NodeOptics(0.0, transducer_efficiency=0.5, transducer_added_noise=0.0,
                      collection_efficiency=0.9)
    centred = LinkModel("two_click", node, node, dark_count_rate=0.0)
    # half the window off: Phi(0) - Phi(-W/s) = 0.5 of arm b's photons stay inside
    shifted = dataclasses.replace(centred, window_offset_b=centred.detection_window / 2)
    assert shifted.window_acceptance("b") == pytest.approx(0.5, abs=1e-12)
    assert shifted.arm_transmission("b") == pytest.approx(0.5 * centred.arm_transmission("b"))
    assert shifted.arm_transmission("a") == centred.arm_transmission("a")
    # two-click without background: p = t_a t_b / 2, so it halves too
    p = expected_success_probability(shifted)
    assert p == pytest.approx(expected_success_probability(centred) / 2, rel=1e-9)
    attempts = 400_000
    heralds = LinkSimulator(shifted, seed=5).run(attempts).heralds.size
    # binomial: standard error sqrt(p (1 - p) / N) (p ~ 0.05: ~3.5e-4)
    assert abs(heralds / attempts - p) < Z * math.sqrt(p * (1 - p) / attempts)


def test_the_arrival_histogram_peaks_at_the_light_time_over_uniform_dark_counts() -> None:
    node = NodeOptics(10.0, 0.1, 0.0)
    model = LinkModel("two_click", node, node, dark_count_rate=200.0)
    edges = np.linspace(0.0, 100e-6, 100_001)  # 1 ns bins over 100 us
    attempts = 20_000
    counts = arrival_histogram(model, "a", attempts, edges, seed=3)
    centres = (edges[1:] + edges[:-1]) / 2
    near = np.abs(centres - node.light_time) < 1e-9
    far = np.abs(centres - node.light_time) > 10e-9
    m = 0.2 * 10 ** (-0.2) * 0.9 / 2  # photons per detector and pulse (10 km of fibre)
    clicked = -math.expm1(-m)
    # dark counts: per detector and attempt q = 1 - exp(-DCR x 100 us) = 0.0198, uniform over
    # the gate; the first click wins, so a dark count after a photon's click (at 49 us of the
    # 100 us gate) is not recorded: 2 N q (1 - clicked x 0.51); Poisson error sqrt(~770) = 28
    q = -math.expm1(-200.0 * 100e-6)
    dark = counts[far].sum()
    expected = 2 * attempts * q * (1 - clicked * (1 - node.light_time / 100e-6)) * far.mean()
    assert abs(dark - expected) < Z * math.sqrt(expected)
    # uniform: the halves differ only by the shadowed dark counts after the photons' clicks
    # (2 N q clicked x 0.51 ~ 22) within Poisson errors
    halves = np.array_split(counts[far], 2)
    shadowed = 2 * attempts * q * clicked * (1 - node.light_time / 100e-6)
    assert abs(halves[0].sum() - halves[1].sum() - shadowed) < Z * math.sqrt(dark)
    # the peak: 2 detectors x N x (1 - exp(-m)), less the ~q/2 of cells where a dark count
    # came first; binomial error ~ sqrt(clicks)
    clicks = counts[near].sum()
    assert abs(clicks - 2 * attempts * clicked * (1 - q / 2)) < Z * math.sqrt(clicks)
    assert np.argmax(counts) in np.flatnonzero(near)


# -- the link's calibrations -------------------------------------------------------------------
def test_from_cold_the_arm_delays_calibrate_to_the_true_light_time(lab: Lab) -> None:
    session = Maintainer(lab.graph, lab.ctx)
    assert session.maintain_all(), "\n".join(map(str, session.log))
    for node in lab.config.link.nodes:
        delay, error = stored(lab, f"arm_delay_{node}"), stored(lab, f"arm_delay_{node}_error")
        true = lab.config.nodes[node].fibre_length_km * FIBRE_DELAY_S_PER_KM
        # fit error ~ 70 ps / sqrt(~3000 clicks) ~ 1.3 ps; plus the stated first-photon bias
        assert error < 3e-12
        assert abs(delay - true) < Z * error + FIRST_PHOTON_BIAS, (node, delay - true)
        assert lab.bench.expected_delay(node) == delay  # applied to the station
        # the bench's 70 ps rms, from >= 3000 clicks: standard error 70 ps / sqrt(2 x 3000)
        assert abs(stored(lab, f"arrival_spread_{node}") - 70e-12) < Z * 70e-12 / math.sqrt(6000)
    # a new session's bench starts with the stored arm delays, not the config's nominal ones
    reopened = LinkBenchHandle(lambda: SimulatedLinkBench(lab.config)).get(lab.ctx)
    assert all(reopened.expected_delay(n) == stored(lab, f"arm_delay_{n}")  # type: ignore[attr-defined]
               for n in lab.config.link.nodes)
    p, p_err = stored(lab, "herald_success_probability"), \
        stored(lab, "herald_success_probability_error")
    truth = lab.bench.herald(1).true_success_probability
    assert abs(p - truth) < Z * p_err
    assert stored(lab, "herald_expected_fidelity") == pytest.approx(
        lab.bench.expected_fidelity(), abs=0.01)  # calibrated arms ~ true to ~0.01 %


def test_a_fibre_change_is_found_and_only_its_arm_delay_and_the_heralding_recalibrated(
        lab: Lab) -> None:
    Maintainer(lab.graph, lab.ctx).maintain_all()
    lab.clock.t += 60.0
    control = Maintainer(lab.graph, lab.ctx)  # before the fault the quick checks pass
    assert control.check_data("link.heralding", "control") is DataResult.IN_SPEC
    assert control.check_data("link.arm_delay_node_b", "control") is DataResult.IN_SPEC

    lab.bench.change_fibre_length("node_b", 2.02)  # 20 m more: 98 ns later
    lab.clock.t += 60.0
    probe = Maintainer(lab.graph, lab.ctx)
    assert probe.check_data("link.arm_delay_node_b", "fault") is DataResult.OUT_OF_SPEC
    assert probe.check_data("link.arm_delay_node_a", "fault") is DataResult.IN_SPEC
    assert probe.check_data("link.heralding", "fault") is DataResult.BAD_DATA
    before = lab.ctx.store("link").current("arm_delay_node_a")

    session = Maintainer(lab.graph, lab.ctx)
    assert session.diagnose("link.heralding")
    assert session.recalibrated == ["link.arm_delay_node_b", "link.heralding"]
    assert lab.ctx.store("link").current("arm_delay_node_a") == before
    true = 2.02 * FIBRE_DELAY_S_PER_KM
    error = stored(lab, "arm_delay_node_b_error")
    assert abs(stored(lab, "arm_delay_node_b") - true) < Z * error + FIRST_PHOTON_BIAS
    assert lab.bench.expected_delay("node_b") == stored(lab, "arm_delay_node_b")
    run = lab.bench.herald(1)
    assert abs(run.window_offsets["node_b"]) < 10e-12
    p = stored(lab, "herald_success_probability")
    assert abs(p - run.true_success_probability) < Z * stored(
        lab, "herald_success_probability_error")


def test_a_small_drift_inside_the_window_stays_in_spec(lab: Lab) -> None:
    Maintainer(lab.graph, lab.ctx).maintain_all()
    # 2 cm: 98 ps, well inside what the 2 ns window tolerates (~780 ps at 70 ps spread)
    lab.bench.change_fibre_length("node_a", 2.00002)
    check = Maintainer(lab.graph, lab.ctx)
    assert check.check_data("link.arm_delay_node_a", "drift") is DataResult.IN_SPEC
    # the drift is measured, just tolerated: "shift +98.1 +- 3.0 ps"
    found = re.search(r"shift ([-+][\d.]+) \+- ([\d.]+) ps", check.log[-1].detail)
    assert found is not None, check.log[-1].detail
    shift, sigma = float(found[1]), float(found[2])
    drift_ps = 0.00002 * FIBRE_DELAY_S_PER_KM * 1e12  # 98 ps
    # both peaks carry the same first-photon bias, so it cancels; sigma combines both errors
    assert abs(shift - drift_ps) < Z * sigma


def test_the_other_nodes_values_come_over_the_parameter_service(lab: Lab) -> None:
    session = Maintainer(lab.graph, lab.ctx)
    assert session.maintain_all()
    assert lab.server.served >= 1  # the heralding read node_b through the service
    lab.server.stop()
    check = Maintainer(lab.graph, lab.ctx).check_data("link.heralding", "server gone")
    assert check is DataResult.BAD_DATA
    event = lab.ctx.store("link").last_event("link.heralding")
    assert event is not None and lab.server.address in event.detail


# -- the parameter service ------------------------------------------------------------------------
def test_published_values_are_read_over_curve(lab: Lab) -> None:
    Maintainer(lab.graph, lab.ctx).maintain("node_b.transducer")
    published = {k: v.value for k, v in lab.ctx.store("node_b").current_values().items()}
    assert published  # something to read
    got = fetch_parameters(lab.server.address, lab.key_dir, "node_a", "node_b", timeout=2.0)
    assert got == published


def test_a_client_without_a_lab_key_gets_nothing(lab: Lab, tmp_path: Path) -> None:
    Maintainer(lab.graph, lab.ctx).maintain("node_b.transducer")
    outsider = tmp_path / "outsider_keys"
    generate_lab_keys(outsider, ["outsider"])
    shutil.copy(lab.key_dir / "public" / "node_b.key", outsider / "public" / "node_b.key")
    served = lab.server.served
    with pytest.raises(ParameterServiceError, match=lab.server.address.replace(".", r"\.")):
        fetch_parameters(lab.server.address, outsider, "outsider", "node_b", timeout=0.5)
    assert lab.server.served == served


def test_a_write_attempt_is_refused_and_changes_nothing(lab: Lab) -> None:
    Maintainer(lab.graph, lab.ctx).maintain("node_b.transducer")
    store = lab.ctx.store("node_b")
    before = store.current_values()
    write = bytes([VERSION]) + b'SET {"transducer_efficiency": 0.9}'
    reply = request(lab.server.address, lab.key_dir, "node_a", "node_b", write, 2.0)
    assert "read-only" in reply["error"]
    reply = request(lab.server.address, lab.key_dir, "node_a", "node_b", b"\x07" + GET, 2.0)
    assert "version" in reply["error"]
    assert lab.server.refused == 2
    assert store.current_values() == before
