"""Pairs delivered through the whole control plane agree with the analytic link model.

For both schemes and fibre from 0 to 25 km per arm (50 km end to end), the station, both node
agents and the orchestrator run as separate processes (`qnetlab._link.deliver`, what
`qnetlab link` runs) and deliver N pairs. The delivered rate and the mean ground-truth fidelity
of the delivered pairs must match `network.link_model` within the run's statistics:

* rate: the station's heralds over the span of the delivered pairs (the link's physics; the
  delivered rate is also reported and can only be lower, by the protocol's reconciliation of
  a pair the nodes disagreed on); heralds are a Poisson process, so a rate from N of them
  has a relative standard error 1/sqrt(N);
* fidelity: the standard error of the mean of the N delivered pairs' fidelities.

Bound: 4.5 standard errors each (8 comparisons: a false failure ~5e-5). The devices and
efficiencies are chosen so that each run takes about a second or two, not to flatter the
model: the same code runs any preset.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from qnetlab.link import build_link_model, deliver
from qnetlab.network.keys import generate_lab_keys
from qnetlab.network.lab import read_pairs
from qnetlab.network.link_model import expected_fidelity, expected_pair_rate
from qnetlab.network.network_config import NetworkConfig, load_network_config
from qnetlab.network.node_state import PairEvent

from conftest import REPO, free_port_run

pytestmark = [pytest.mark.slow, pytest.mark.processes]

SIGMAS = 4.5


def assert_delivered_set_is_sound(config: NetworkConfig, pairs: int) -> None:
    """What the protocol guarantees whatever the machine's load: each node's log holds as
    delivered exactly the orchestrator's delivered pairs, each once, and no pair a node
    expired or gave up for lost is among them."""
    (run_dir,) = config.run_dir.iterdir()
    result = json.loads((run_dir / f"{config.orchestrator.name}_result.json").read_text())
    delivered = {d["seq"] for d in result["delivered"]}
    assert len(delivered) == pairs
    for node in config.nodes:
        log = read_pairs(run_dir, node)
        seqs = log["seq"][log["event"] == PairEvent.DELIVERED].tolist()
        assert len(seqs) == pairs and set(seqs) == delivered, node
        dropped = log["seq"][np.isin(log["event"], [PairEvent.EXPIRED, PairEvent.LOST])]
        assert not delivered & set(dropped.tolist()), node


def link(tmp_path: Path, scheme: str, km: float, transducer: str, collection: float,
         **physics: float) -> NetworkConfig:
    config = load_network_config(REPO / "lab_configs" / "two_node_link.yaml")
    config = config.with_ports(free_port_run(3))
    nodes = {name: dataclasses.replace(node, fibre_length_km=km, transducer=transducer,
                                       collection_efficiency=collection)
             for name, node in config.nodes.items()}
    config = dataclasses.replace(
        config, key_dir=tmp_path / "keys", run_dir=tmp_path / "runs", nodes=nodes,
        link=dataclasses.replace(config.link, scheme=scheme,
                                 physics={**config.link.physics, **physics}))
    generate_lab_keys(config.key_dir, config.key_names())
    return config


@pytest.mark.parametrize(("scheme", "km", "transducer", "collection", "pairs", "physics"), [
    ("two_click", 0.0, "bulk_eo_pulsed", 0.5, 400, {}),
    ("two_click", 25.0, "membrane_eom", 0.9, 60, {}),
    ("single_click", 0.0, "bulk_eo_pulsed", 0.5, 800, {}),
    ("single_click", 10.0, "membrane_eom", 0.5, 250, {"bright_state_population": 0.05}),
], ids=["two-click 0 km", "two-click 2x25 km", "single-click 0 km", "single-click 2x10 km"])
def test_delivered_rate_and_fidelity_match_the_model(
        tmp_path: Path, scheme: str, km: float, transducer: str, collection: float,
        pairs: int, physics: dict[str, float]) -> None:
    config = link(tmp_path, scheme, km, transducer, collection, **physics)
    model = build_link_model(config)
    rate, fidelity = expected_pair_rate(model), expected_fidelity(model)
    delivery = deliver(config, pairs, timeout=30.0)
    report = delivery.report
    assert delivery.ok, (delivery.trouble, report.failed)
    assert report.delivered == pairs and report.agree
    assert_delivered_set_is_sound(config, pairs)
    # No bound on expiries or disagreements: a loaded machine can delay a verdict past a
    # node's memory cutoff, so that node expires the pair while the other holds it (a
    # disagreement, reconciled and never delivered; `report.agree` above). Expiry goes by
    # age, not by state, so it biases neither the herald rate nor the delivered fidelity.
    # The station's heralds over the delivery span are the link's physics; the delivered
    # rate can only be lower (a pair the nodes disagreed on is reconciled, costing up to the
    # orchestrator's reconcile timeout), never higher.
    heralds = report.herald_rate_hz * (report.delivered - 1) / report.rate_hz  # in the span
    assert abs(report.herald_rate_hz - rate) < SIGMAS * rate / math.sqrt(heralds), (
        report.herald_rate_hz, rate)
    assert report.rate_hz <= report.herald_rate_hz * (1 + 1e-9)
    assert abs(report.fidelity_mean - fidelity) < SIGMAS * report.fidelity_stderr, (
        report.fidelity_mean, report.fidelity_stderr, fidelity)
