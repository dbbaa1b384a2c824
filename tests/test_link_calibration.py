"""The link's calibrations through the station's TimeTagger role, the link's windows and
expectation from calibrated values, and the read-only parameter service.

Hand-made tag streams (`stream`: a sync tag per round, each arm's photons a fixed delay after
the round's sync with Gaussian jitter, uniform dark counts) stand in for the tagger, so the
arm-delay fit is checked against known delays; one slow test runs the station's calibrations
and the arm delays on the simulated link behind the station lab's twins.

Statistical tolerances (fixed seeds throughout) are Z = 4.5 standard errors of the statistic
they bound; a correct implementation fails one with probability ~7e-6.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qnetlab.instruments.errors import ConfigError
from qnetlab.instruments.lab_config import load_config
from qnetlab.instruments.tag_blocks import TagBlock
from qnetlab.network.keys import generate_lab_keys
from qnetlab.network.link_model import (
    LinkModel,
    NodeOptics,
    expected_fidelity,
    expected_success_probability,
)
from qnetlab.network.network_config import NetworkConfig, load_network_config
from qnetlab.network.parameters import (
    GET,
    VERSION,
    ParameterServer,
    ParameterServiceError,
    fetch_parameters,
    request,
)
from qnetlab.sequences.calibration import CalibrationOutcome, LabContext, Scope
from qnetlab.sequences.calibration.graph import DataResult
from qnetlab.sequences.calibration.link_nodes import (
    ArmDelayCalibration,
    HeraldingCalibration,
    NodeInputs,
    StationTagger,
    arrival_offsets,
    fit_arrival,
)
from qnetlab.sequences.calibration.link_values import (
    OPERATING_FRACTION,
    CalibratedParts,
    Estimate,
    LinkExpectation,
    MissingCalibration,
    arm_delay_name,
    calibrated_parts,
    expected_link,
    herald_windows,
    station_value_names,
)
from qnetlab.sequences.calibration.store import ParameterStore

Z = 4.5
CONFIG = Path(__file__).parents[1] / "lab_configs" / "two_node_link.yaml"
ROUND_PS = 500_000
"""Two-click at 1 us: a sync tag every 0.5 us."""


def stream(delays_ps: dict[tuple[int, int], int], *, rounds: int = 100_000,
           click_probability: float = 0.02, jitter_ps: float = 70.0, dark_hz: float = 1e3,
           seed: int = 1, decay_ps: float = 0.0) -> TagBlock:
    """Sync tags on input 3 every ROUND_PS; for each (detector input, arm) a click in a round
    with `click_probability`, `delay` ps after that round's sync (Gaussian jitter; with
    `decay_ps`, plus an exponential wait: a transducer's photon, its edge at `delay`);
    uniform dark counts on inputs 1 and 2."""
    rng = np.random.default_rng(seed)
    syncs = np.arange(rounds, dtype=np.int64) * ROUND_PS + 1_000
    times, chans = [syncs], [np.full(rounds, 3)]
    for (inp, _arm), delay in delays_ps.items():
        hit = syncs[rng.random(rounds) < click_probability]
        wait = rng.normal(0.0, jitter_ps, hit.size)
        if decay_ps:
            wait += rng.exponential(decay_ps, hit.size)
        times.append(hit + delay + np.round(wait).astype(np.int64))
        chans.append(np.full(hit.size, inp))
    span = int(syncs[-1])
    for inp in (1, 2):
        n = rng.poisson(dark_hz * span * 1e-12)
        times.append(rng.integers(0, span, n, dtype=np.int64))
        chans.append(np.full(n, inp))
    t, c = np.concatenate(times), np.concatenate(chans)
    order = np.argsort(t, kind="stable")
    return TagBlock(t[order], c[order])


class _Input:
    def __init__(self) -> None:
        self.state = False

    def enabled(self, value: bool | None = None) -> bool | None:
        if value is None:
            return self.state
        self.state = bool(value)
        return None


class HandMadeTagger(StationTagger):
    """The station's tagger role, replaying a hand-made recording."""

    def __init__(self, config: NetworkConfig, block: TagBlock) -> None:
        super().__init__(config)
        self.block = block
        self.tagger_channels = {n: _Input() for n in (1, 2, 3, 4)}
        self.recorded: list[float] = []

    def get(self, ctx: Any) -> Any:
        return self

    def acquire(self, duration: float) -> TagBlock:
        self.recorded.append(duration)
        assert all(self.tagger_channels[n].state for n in (1, 2, 3))  # enabled for it
        return self.block


@pytest.fixture
def config() -> NetworkConfig:
    return load_network_config(CONFIG)


def ctx_for(tmp_path: Path) -> LabContext:
    return LabContext({s: Scope(s, tmp_path / f"{s}.db")
                       for s in ("station", "link", "node_a", "node_b")})


NOMINAL_PS = 9_800_000  # 2 km at 4.9 us/km
TRUE = {(1, 0): NOMINAL_PS + 40_123, (1, 1): NOMINAL_PS + 40_123,
        (2, 0): NOMINAL_PS + 41_470, (2, 1): NOMINAL_PS + 41_470}
"""Equal arms, detector 1 behind detector 0 by 1.347 ns (its cable and input)."""


# -- the arrival histogram ------------------------------------------------------------------------
def test_offsets_are_taken_from_the_round_the_click_can_come_from() -> None:
    block = stream({(1, 0): NOMINAL_PS + 123}, rounds=2_000, click_probability=1.0,
                   jitter_ps=0.0, dark_hz=0.0)
    offsets, syncs, clicks = arrival_offsets(block.timestamps, block.channels, 3, 1,
                                             NOMINAL_PS, ROUND_PS // 2)
    assert syncs == 2_000 and clicks == 2_000
    # every click whose emitting sync was recorded, and only those, at the true delay
    assert offsets.size == 2_000 and np.all(offsets == NOMINAL_PS + 123)
    # a nominal off by less than half a round still names the right round
    offsets, _, _ = arrival_offsets(block.timestamps, block.channels, 3, 1,
                                    NOMINAL_PS + ROUND_PS // 2 - 1_000, ROUND_PS // 2)
    assert np.all(offsets == NOMINAL_PS + 123)


def test_the_fit_finds_the_true_delay_within_its_error() -> None:
    block = stream(TRUE)
    for (inp, _), true in list(TRUE.items())[::2]:
        offsets, syncs, clicks = arrival_offsets(block.timestamps, block.channels, 3, inp,
                                                 NOMINAL_PS, 250_000)
        fit = fit_arrival(offsets, syncs, clicks, sync_input=3, detector_input=inp,
                          nominal_ps=NOMINAL_PS, half_range_ps=250_000)
        assert not isinstance(fit, type(None))
        assert abs(fit.delay_ps - true) < Z * fit.delay_stderr_ps
        assert abs(fit.sigma_ps - 70.0) < Z * fit.sigma_stderr_ps


def test_darkness_has_no_peak() -> None:
    block = stream({}, dark_hz=1e4)
    offsets, syncs, clicks = arrival_offsets(block.timestamps, block.channels, 3, 1,
                                             NOMINAL_PS, 250_000)
    fit = fit_arrival(offsets, syncs, clicks, sync_input=3, detector_input=1,
                      nominal_ps=NOMINAL_PS, half_range_ps=250_000)
    assert not getattr(fit, "good", True)


# -- the arm-delay calibration --------------------------------------------------------------------
def test_arm_delays_commit_each_detectors_window_centre(tmp_path: Path,
                                                         config: NetworkConfig) -> None:
    tagger = HandMadeTagger(config, stream(TRUE))
    ctx = ctx_for(tmp_path)
    node = ArmDelayCalibration("node_a", config, tagger)
    outcome = node.calibrate(ctx)
    assert outcome.good, outcome.detail
    assert "share one peak" in outcome.detail  # equal arms
    for d, inp in enumerate((1, 2)):
        delay, _ = outcome.values[arm_delay_name("node_a", d)]
        error, _ = outcome.values[f"{arm_delay_name('node_a', d)}_error"]
        assert abs(delay * 1e12 - TRUE[(inp, 0)]) < Z * error * 1e12
    assert not any(ch.state for ch in tagger.tagger_channels.values())  # put back
    ctx.store("link").record_calibration(node.name, outcome)
    assert node.check_data(ctx).result is DataResult.IN_SPEC
    # the fibre is 6 m longer (30 ns): the (40 ns) window no longer holds the photons
    tagger.block = stream({k: v + 30_000 for k, v in TRUE.items()}, seed=2)
    assert node.check_data(ctx).result is DataResult.OUT_OF_SPEC


def test_unequal_arms_each_find_their_own_peak(tmp_path: Path, config: NetworkConfig) -> None:
    """node_b's spool is 50 m longer (245 ns, more than 4 of the 40 ns windows), within the
    default search range: each arm searches only halfway to the other's nominal, so each
    finds its own peak."""
    longer = dataclasses.replace(config, nodes={**config.nodes, "node_b": dataclasses.replace(
        config.nodes["node_b"], fibre_length_km=2.05)})
    b_delay = NOMINAL_PS + 245_000
    block = stream({(1, 0): TRUE[(1, 0)], (2, 0): TRUE[(2, 0)],
                    (1, 1): b_delay + 40_123, (2, 1): b_delay + 41_470}, seed=5)
    ctx = ctx_for(tmp_path)
    for node, expected in (("node_a", TRUE[(1, 0)]), ("node_b", b_delay + 40_123)):
        outcome = ArmDelayCalibration(node, longer, HandMadeTagger(longer, block)
                                      ).calibrate(ctx)
        assert outcome.good, outcome.detail
        delay, _ = outcome.values[arm_delay_name(node, 0)]
        error, _ = outcome.values[f"{arm_delay_name(node, 0)}_error"]
        assert abs(delay * 1e12 - expected) < Z * error * 1e12
        assert "share one peak" not in outcome.detail


def test_an_arm_delays_error_covers_its_scatter_on_a_photons_exponential_edge(
        tmp_path: Path, config: NetworkConfig) -> None:
    """A 10 MHz-band transducer's photon arrives as an exponential edge (16 ns), which the
    Gaussian peak fit's own error understated 2.5-9 times against repeated measurements; the
    stored error is the larger of it and the fit's bootstrap scatter. 12 calibrations on
    independent streams (1,800 photon clicks per detector, as 1 s of the link gives): with
    honest errors ~95 % of the 24 per-detector values lie within 2 errors of their detector's
    mean (90 % allowed for the error's own ~25 % uncertainty): fewer than 19 of 24 then has
    chance P(X <= 18 | 24, 0.9) = 2.8 %. 21 are; with the fit's own error 12 were."""
    ctx = ctx_for(tmp_path)
    values: dict[int, list[tuple[float, float]]] = {0: [], 1: []}
    for seed in range(12):
        block = stream(TRUE, rounds=90_000, click_probability=0.01, decay_ps=16_000.0,
                       seed=100 + seed)
        outcome = ArmDelayCalibration("node_a", config, HandMadeTagger(config, block)
                                      ).calibrate(ctx)
        assert outcome.good, outcome.detail
        for d in (0, 1):
            delay, _ = outcome.values[arm_delay_name("node_a", d)]
            error, _ = outcome.values[f"{arm_delay_name('node_a', d)}_error"]
            values[d].append((delay, error))
    within = 0
    for found in values.values():
        delays = np.array([v for v, _ in found])
        for k, (delay, error) in enumerate(found):
            others = np.delete(delays, k).mean()
            within += abs(delay - others) <= 2.0 * error
    assert within >= 19, values


def test_without_a_sync_the_calibration_says_what_to_check(tmp_path: Path,
                                                           config: NetworkConfig) -> None:
    block = stream(TRUE)
    keep = block.channels != 3
    tagger = HandMadeTagger(config, TagBlock(block.timestamps[keep], block.channels[keep]))
    outcome = ArmDelayCalibration("node_b", config, tagger).calibrate(ctx_for(tmp_path))
    assert not outcome.good and "attempt clock" in outcome.detail


def heralding_stream(p: float, attempts: int = 200_000, seed: int = 3) -> TagBlock:
    """Two-click rounds (a sync every ROUND_PS); with probability `p` an attempt has one
    click in each round's window, each on a random detector (a herald), else no click."""
    rng = np.random.default_rng(seed)
    syncs = np.arange(2 * attempts, dtype=np.int64) * ROUND_PS + 1_000
    hit = np.flatnonzero(rng.random(attempts) < p)
    times, chans = [syncs], [np.full(syncs.size, 3)]
    for r in (0, 1):
        det = rng.integers(0, 2, hit.size)
        inp = np.where(det == 0, 1, 2)
        delay = np.where(det == 0, TRUE[(1, 0)], TRUE[(2, 0)])
        times.append(syncs[2 * hit + r] + delay)
        chans.append(inp)
    t, c = np.concatenate(times), np.concatenate(chans)
    order = np.argsort(t, kind="stable")
    return TagBlock(t[order], c[order])


class Expecting(HeraldingCalibration):
    """The heralding calibration with a stand-in expectation (the parts' arithmetic is
    tested above)."""

    p = Estimate(0.01, 0.0002)

    def expectation(self, ctx: Any) -> LinkExpectation:
        period = self.config.link.attempt_period
        return LinkExpectation(self.p, Estimate(self.p.value / period, 0.0), Estimate(0.8))


def test_heralding_runs_the_engine_on_a_recording_with_the_calibrated_windows(
        tmp_path: Path, config: NetworkConfig) -> None:
    """p = 0.01 over 200,000 attempts: ~2000 heralds, binomial error 2.2e-4; the tolerance
    is 4 x (2.2e-4 (+) 2e-4) = 1.2e-3, so p = 0.005 disagrees by ~17 of its sigmas."""
    ctx = ctx_for(tmp_path)
    ctx.store("link").record_calibration("link.arm", CalibrationOutcome(True, "", {
        arm_delay_name(n, d): (TRUE[(d + 1, 0)] * 1e-12, "s")
        for n in config.link.nodes for d in (0, 1)}))
    tagger = HandMadeTagger(config, heralding_stream(0.01))
    node = Expecting(config, tagger, (NodeInputs("node_a"), NodeInputs("node_b")))
    outcome = node.calibrate(ctx)
    assert outcome.good, outcome.detail
    p, _ = outcome.values["herald_success_probability"]
    error, _ = outcome.values["herald_success_probability_error"]
    assert abs(p - 0.01) < Z * error
    assert "psi+" in outcome.detail
    ctx.store("link").record_calibration(node.name, outcome)
    assert node.check_data(ctx).result is DataResult.IN_SPEC
    tagger.block = heralding_stream(0.005, seed=4)  # half the heralds: something upstream
    assert node.check_data(ctx).result is DataResult.BAD_DATA
    assert not node.calibrate(ctx).good


# -- windows and expectation ----------------------------------------------------------------------
def test_windows_come_from_the_stored_arm_delays(tmp_path: Path,
                                                  config: NetworkConfig) -> None:
    store = ParameterStore(tmp_path / "link.db")
    with pytest.raises(MissingCalibration) as info:
        herald_windows(config, store)
    assert "qnetlab calibrate" in info.value.fix
    values = {arm_delay_name(n, d): (9.8e-6 + 1e-9 * d + 2e-12 * a, "s")
              for a, n in enumerate(config.link.nodes) for d in (0, 1)}
    store.record_calibration("link.arm_delays", CalibrationOutcome(True, "", values))
    windows = herald_windows(config, store)
    assert windows.offsets_ps == ((9_800_000, 9_800_002), (9_801_000, 9_801_002))
    assert (windows.sync_channel, windows.detector_channels) == (3, (1, 2))
    assert windows.window_ps == 40_000 and windows.scheme == "two_click"


def parts(**errors: float) -> CalibratedParts:
    return CalibratedParts(
        {"node_a": Estimate(0.087, errors.get("eta", 0.0)), "node_b": Estimate(0.087)},
        {"node_a": Estimate(0.16), "node_b": Estimate(0.16)},
        {"node_a": 9.8e-6, "node_b": 9.8e-6}, 70e-12,
        Estimate(0.88, errors.get("det", 0.0)), Estimate(4.0, 0.3))


def test_the_expectation_is_the_link_model_of_the_calibrated_parts(
        config: NetworkConfig) -> None:
    # each node's calibrated conversion bandwidth, and its memory's T2 and repetition limit
    # from the network config (nodes.<node>)
    bands = {"node_a": 10e6, "node_b": 10e6}
    got = expected_link(config, dataclasses.replace(parts(), conversion_bandwidth=bands))
    optics = NodeOptics(2.0, 0.087, 0.16, 0.5, conversion_bandwidth=10e6, memory_t2=0.1,
                        repetition_limit=1e5)
    model = LinkModel("two_click", optics, optics, detector_efficiency=0.88,
                      dark_count_rate=4.0, arrival_time_spread=70e-12, **config.link.physics)
    p = expected_success_probability(model)
    assert got.success_probability.value == pytest.approx(p, rel=1e-6)
    assert got.fidelity.value == pytest.approx(expected_fidelity(model), rel=1e-6)
    rate, fidelity = got
    assert rate.value == pytest.approx(p / config.link.attempt_period, rel=1e-9)
    assert fidelity is got.fidelity


def test_errors_propagate_from_the_parts(config: NetworkConfig) -> None:
    base = expected_link(config, parts()).success_probability
    # two-click p goes as eta_a eta_b det^2: a relative error e on det is ~2e on p, on eta_a e
    det = expected_link(config, parts(det=0.0088)).success_probability
    eta = expected_link(config, parts(eta=0.00087)).success_probability
    assert det.error / base.value == pytest.approx(2 * 0.01, rel=0.05)
    assert eta.error / base.value == pytest.approx(0.01, rel=0.05)


def test_calibrated_parts_are_read_from_the_stores(tmp_path: Path,
                                                    config: NetworkConfig) -> None:
    lab = load_config(config.station.lab)
    assert station_value_names(config, lab) == {
        "det0": ("detection_efficiency_ch1", "dark_count_rate_ch1"),
        "det1": ("detection_efficiency_ch2", "dark_count_rate_ch2")}
    station, link = (ParameterStore(tmp_path / f"{s}.db") for s in ("station", "link"))
    station.record_calibration("station.all", CalibrationOutcome(True, "", {
        "detection_efficiency_ch1": (0.90, ""), "detection_efficiency_ch1_error": (0.01, ""),
        "detection_efficiency_ch2": (0.92, ""), "detection_efficiency_ch2_error": (0.01, ""),
        "dark_count_rate_ch1": (4.0, "Hz"), "dark_count_rate_ch2": (6.0, "Hz")}))
    nodes = {n: {"transducer_efficiency": 0.087, "transducer_added_noise": 0.16}
             for n in config.link.nodes}
    with pytest.raises(MissingCalibration, match="arm_delay_node_a_det0"):
        calibrated_parts(config, lab, station, link, nodes)
    link.record_calibration("link.arm", CalibrationOutcome(True, "", {
        **{arm_delay_name(n, d): (9.8e-6, "s") for n in config.link.nodes for d in (0, 1)},
        **{f"arrival_spread_{n}": (70e-12, "s") for n in config.link.nodes}}))
    got = calibrated_parts(config, lab, station, link, nodes)
    assert got.detector_efficiency.value == pytest.approx(OPERATING_FRACTION * 0.91)
    assert got.detector_efficiency.error == pytest.approx(
        OPERATING_FRACTION * math.hypot(0.01, 0.01) / 2)
    assert got.dark_count_rate.value == 5.0
    assert got.transducer_efficiency["node_b"].error == pytest.approx(0.03 * 0.087)


def test_an_uncabled_detector_input_is_a_config_error(config: NetworkConfig) -> None:
    lab = load_config(config.station.lab)
    moved = dataclasses.replace(config, station=dataclasses.replace(
        config.station, detector_inputs=(1, 4)))
    with pytest.raises(ConfigError, match=r"tagger\.4"):
        station_value_names(moved, lab)


# -- on the simulated link -----------------------------------------------------------------------
@pytest.mark.slow
def test_the_link_calibrates_through_the_twin(tmp_path: Path, config: NetworkConfig) -> None:
    """The station lab with the link's world behind its twins (as `network_calibration`
    opens it): the detectors calibrated, both arms found where 2 km of fibre puts them (the
    tagger's hidden input delays are a few ns), and the heralding agreeing with the
    expectation from the calibrated parts (its own Z-sigma test). The nodes' operating points
    are committed by hand (the preset's eta 0.087, N_add 0.16 and 10 MHz conversion band) in
    place of their graphs."""
    from qnetlab.sequences.calibration import Maintainer
    from qnetlab.sequences.calibration.graph import CalibrationGraph
    from qnetlab.sequences.calibration.link_nodes import link_calibrations
    from qnetlab.sequences.calibration.network_lab import (
        _opener,
        _station_nodes,
        arm_dependencies,
    )

    scopes = {"station": Scope("station", tmp_path / "station.db", config.station.lab),
              "link": Scope("link", tmp_path / "link.db", config.station.lab),
              "node_a": Scope("node_a", tmp_path / "a.db"),
              "node_b": Scope("node_b", tmp_path / "b.db")}
    ctx = LabContext(scopes)
    ctx.opener = _opener(config, ctx)
    for n in config.link.nodes:
        ctx.store(n).record_calibration(f"{n}.link_operating_point", CalibrationOutcome(
            True, "by hand", {"transducer_efficiency": (0.087, ""),
                              "transducer_added_noise": (0.16, "photons"),
                              "conversion_bandwidth": (10e6, "Hz")}))
    lab = load_config(config.station.lab)
    station = _station_nodes(config, lab)
    # As `network_calibration` wires them: the arms after the detector biases are calibrated
    # (maintaining link.heralding alone must not run them on unbiased detectors).
    arm_deps = arm_dependencies(lab, station)
    assert {"station.detector_efficiency_ch1", "station.detector_efficiency_ch2"} <= set(
        arm_deps)
    graph = CalibrationGraph([*station, *link_calibrations(
        config, (NodeInputs("node_a"), NodeInputs("node_b")),
        depends_on=[n.name for n in station], arm_depends_on=arm_deps)])
    try:
        maintainer = Maintainer(graph, ctx)
        assert maintainer.maintain("link.heralding"), "\n".join(str(a) for a in maintainer.log)
        store = ctx.store("link")
        for n in config.link.nodes:
            for d in (0, 1):
                value = store.current(arm_delay_name(n, d))
                assert value is not None and abs(value.value - 9.8e-6) < 5e-9
        assert store.current("herald_success_probability") is not None
    finally:
        ctx.close()


# -- the parameter service ------------------------------------------------------------------------
@pytest.fixture
def served(tmp_path: Path) -> Any:
    key_dir = tmp_path / "keys"
    generate_lab_keys(key_dir, ["node_a", "node_b"])
    store = ParameterStore(tmp_path / "node_b.db")
    store.record_calibration("node_b.link_operating_point", CalibrationOutcome(True, "", {
        "transducer_efficiency": (0.087, ""), "transducer_added_noise": (0.16, "photons")}))
    server = ParameterServer(store, "tcp://127.0.0.1:*", key_dir, "node_b",
                             lifetime=60.0).start()
    try:
        yield server, store, key_dir
    finally:
        server.stop()


def test_published_values_are_read_over_curve(served: Any) -> None:
    server, store, key_dir = served
    published = {k: v.value for k, v in store.current_values().items()}
    got = fetch_parameters(server.address, key_dir, "node_a", "node_b", timeout=2.0)
    assert got == published


def test_a_client_without_a_lab_key_gets_nothing(served: Any, tmp_path: Path) -> None:
    server, _, key_dir = served
    outsider = tmp_path / "outsider_keys"
    generate_lab_keys(outsider, ["outsider"])
    shutil.copy(key_dir / "public" / "node_b.key", outsider / "public" / "node_b.key")
    before = server.served
    with pytest.raises(ParameterServiceError, match=server.address.replace(".", r"\.")):
        fetch_parameters(server.address, outsider, "outsider", "node_b", timeout=0.5)
    assert server.served == before


def test_a_write_attempt_is_refused_and_changes_nothing(served: Any) -> None:
    server, store, key_dir = served
    before = store.current_values()
    write = bytes([VERSION]) + b'SET {"transducer_efficiency": 0.9}'
    reply = request(server.address, key_dir, "node_a", "node_b", write, 2.0)
    assert "read-only" in reply["error"]
    reply = request(server.address, key_dir, "node_a", "node_b", b"\x07" + GET, 2.0)
    assert "version" in reply["error"]
    assert server.refused == 2
    assert store.current_values() == before
