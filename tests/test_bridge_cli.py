"""The bridge from its config (lab_configs/bridge_8.yaml, `load_bridge_config`) and the
`qnetlab bridge` verb: strict validation naming the entry and the fix, the verb on every
shipped workload (a time-compressed simulation: seeded, virtual time, seconds of CPU), its
report (JSON, HTML, the timeline figures, the decision logs) and its exit codes."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qnetlab.cli import EXIT_CHECK_FAILED, EXIT_CONFIG, EXIT_OK, main
from qnetlab.instruments.errors import ConfigError
from qnetlab.network.bridge import bridge_topology, load_bridge_config, makespan_bound
from qnetlab.network.bridge.workload_generators import shipped_workloads

from bridge_lab import BRIDGE_8, LAB_CONFIGS, bridge_data, write_yaml

WORKLOADS = LAB_CONFIGS / "workloads"
MODE = "time-compressed simulation of the link physics; no instrument processes"
SEED = 1


# -- the config -----------------------------------------------------------------------------------
def _set(*keys: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        for key in keys[:-1]:
            data = data[key]
        data[keys[-1]] = value
    return edit


def _delete(*keys: str) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        for key in keys[:-1]:
            data = data[key]
        del data[keys[-1]]
    return edit


def _rename(section: str, name: str, old: str, new: str) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        spec = data[section][name]
        spec[new] = spec.pop(old)
    return edit


def _add_path(key: str) -> Callable[[dict[str, Any]], None]:
    return _set("calibration", "paths", key, value={"age": 1.0, "arm_delay": 5e-7})


@pytest.mark.parametrize(("edit", "entry", "fragment", "fix"), [
    (_rename("qnus", "qnu0", "fibre_length_km", "fibre_lenght_km"),
     "qnus.qnu0.fibre_lenght_km", "unknown key", "did you mean 'fibre_length_km'"),
    (_add_path("qnu9/st0"), "calibration.paths.qnu9/st0", "'qnu9' is not a QNU", "qnu0"),
    (_add_path("qnu1/st7"), "calibration.paths.qnu1/st7", "'st7' is not a station", "st0"),
    (_add_path("qnu1-st0"), "calibration.paths.qnu1-st0", "not a path", "QNU/STATION"),
    (_set("qnus", "qnu1", "port", value=1), "qnus.qnu1.port", "used twice",
     "its own switch port"),
    (_set("stations", "st1", "arms", "a", "port", value=17), "stations.st1.arms.a.port",
     "used twice", "its own switch port"),
    (_set("stations", "st0", "arms", "a", "port", value=3), "stations.st0.arms.a.port",
     "not an egress port", "station arms on egress ports"),
    (_set("qnus", "qnu2", "port", value=20), "qnus.qnu2.port", "not an ingress port",
     "QNUs go on ingress ports"),
    (_delete("stations", "st1", "arms", "b"), "stations.st1.arms.b", "has no arm 'b'",
     "add 'b:"),
    (_set("qnus", "qnu2", "fibre_length_km", value=-0.1), "qnus.qnu2.fibre_length_km",
     "must be >= 0", "km"),
    (_set("stations", "st0", "arms", "b", "fibre_length_km", value=-0.012),
     "stations.st0.arms.b.fibre_length_km", "must be >= 0", "km"),
    (_set("stations", "st0", "arms", "b", "fibre_length_km", value=0.013),
     "stations.st0.arms", "differ", "match the station's arm fibres"),
    (_delete("calibration", "paths", "qnu3/st1"), "calibration.paths.qnu3/st1",
     "no calibration entry", "add 'qnu3/st1:"),
    (_set("calibration", "paths", "qnu3/st1", "age", value=-5), "calibration.paths.qnu3/st1.age",
     "must be >= 0", "s"),
    (_set("qnus", "qnu0", "lab", value="no_such_lab.yaml"), "qnus.qnu0.lab", "no lab config",
     "node_a_lab.yaml"),
    (_set("qnus", "qnu0", "lab", value=str(LAB_CONFIGS / "two_node_link.yaml")),
     "qnus.qnu0.lab", "network config, not a lab config", "instruments:"),
    (_set("switch", "instrument", value="switch"), "switch.instrument",
     "not an instrument of optical_switch_bench.yaml", "optical_switch"),
    (_set("switch", "ingress_ports", value=0), "switch.ingress_ports", "port count", "size"),
    (_set("link_model", "scheme", value="three_click"), "link_model.scheme", "unknown scheme",
     "two_click"),
    (_set("link_model", "transducer_efficiency", value=8.7),
     "link_model.transducer_efficiency", "between 0 and 1", "fraction"),
    (_set("link_model", "attempt_period", value=1e-7), "link_model.attempt_period",
     "round trip", "attempt_period >="),
    (_delete("stations"), "", "missing required key 'stations'", "add 'stations:'"),
    (_set("bridge", "memory_cutoff", value=0), "bridge.memory_cutoff", "must be > 0", "s"),
])
def test_config_errors_name_the_entry_and_the_fix(tmp_path: Path,
                                                  edit: Callable[[dict[str, Any]], None],
                                                  entry: str, fragment: str, fix: str) -> None:
    data = bridge_data()
    edit(data)
    path = write_yaml(data, tmp_path / "bad_bridge.yaml")
    with pytest.raises(ConfigError) as caught:
        load_bridge_config(path)
    assert caught.value.entry == entry
    assert fragment in caught.value.problem
    assert fix in caught.value.fix
    assert str(caught.value).startswith(f"{path}: ")


@pytest.mark.parametrize(("name", "kind"), [("two_node_link.yaml", "a network config"),
                                             ("node_a_lab.yaml", "a lab config")])
def test_another_kind_of_config_is_named_as_such(name: str, kind: str) -> None:
    with pytest.raises(ConfigError, match=f"is {kind}, not a bridge config") as caught:
        load_bridge_config(LAB_CONFIGS / name)
    assert "bridge_8.yaml" in caught.value.fix
    with pytest.raises(ConfigError, match="no such file"):
        load_bridge_config(LAB_CONFIGS / "no_such_bridge.yaml")


def test_the_unedited_copy_loads(tmp_path: Path) -> None:
    """The error cases above each differ from a valid config by their one edit."""
    config = load_bridge_config(write_yaml(bridge_data(), tmp_path / "bridge.yaml"))
    assert len(config.qnus) == 8


def test_bridge_8_builds_the_issues_bridge() -> None:
    """8 QNUs on ingress ports, 2 stations on egress ports of the 16 x 16 switch; the paths'
    ages and arm delays as written; the physics that of `bridge_topology(8, seed=1)`, the
    bridge of docs/bridge.md's results."""
    config = load_bridge_config(BRIDGE_8)
    topology = config.topology()
    assert topology.qnus == tuple(f"qnu{i}" for i in range(8))
    assert topology.stations == ("st0", "st1")
    assert [topology.switch_ports[q] for q in topology.qnus] == list(range(1, 9))
    assert [topology.switch_ports[f"{s}/{a}"] for s in ("st0", "st1") for a in "ab"] == \
        [17, 18, 19, 20]
    assert config.switch.lab.name == "optical_switch_bench.yaml"
    assert {c.lab.name for c in config.stations.values()} == {"heralding_station.yaml"}
    assert topology.calibrated_at("qnu6", "st1") == -883.0
    assert config.arm_delay("qnu0", "st1") == pytest.approx(5.39e-7)
    assert topology.settle_time == 0.025 and topology.recheck_time == 0.2
    assert topology.calibration_lifetime == 600.0 and topology.memory_cutoff == 0.1
    stale = np.sum(-topology.path_calibrated_at > topology.calibration_lifetime)
    assert stale == 6  # about a third of the 16 paths start stale
    reference = bridge_topology(8, seed=1)
    assert topology.link == reference.link
    assert dict(topology.station_fibre_km) == dict(reference.station_fibre_km)
    assert dict(topology.qnu_fibre_km) == dict(reference.qnu_fibre_km)
    np.testing.assert_allclose(topology.path_calibrated_at, reference.path_calibrated_at,
                               atol=0.5)


# -- the verb -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, Path]]:
    """`qnetlab bridge bridge_8.yaml --workload W --seed 1 --report DIR` (both policies) for
    each shipped workload, in this process: (exit code, stdout, report folder)."""
    import contextlib
    import io

    out: dict[str, tuple[int, str, Path]] = {}
    for stem in shipped_workloads():
        folder = tmp_path_factory.mktemp(stem)
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            code = main(["bridge", str(BRIDGE_8), "--workload", str(WORKLOADS / f"{stem}.yaml"),
                         "--seed", str(SEED), "--report", str(folder)])
        out[stem] = (code, text.getvalue(), folder)
    return out


@pytest.mark.parametrize("stem", sorted(shipped_workloads()))
def test_the_verb_reports_each_shipped_workload(reports: dict[str, tuple[int, str, Path]],
                                                stem: str) -> None:
    code, stdout, folder = reports[stem]
    assert code == EXIT_OK, stdout
    assert MODE in stdout, "the output says it is a simulation without processes"
    for row in ("makespan", "pairs delivered", "pairs wasted", "switch reconfigurations",
                "utilisation st0", "utilisation st1", "request latency p50",
                "request latency p90", "request latency p99", "lower bound"):
        assert row in stdout, row
    (data_path,) = folder.glob("bridge_*.json")
    (page,) = folder.glob("bridge_*.html")
    data = json.loads(data_path.read_text())
    assert data["mode"] == MODE and data["good"] is True
    assert data["provenance"]["seed"] == SEED
    assert data["bridge"]["calibration_graph_wired"] is False
    for policy in ("orchestrator", "round_robin"):
        result = data["results"][policy]
        assert result["complete"] is (policy == "orchestrator" or stem != "random_pairs_8")
        assert result["pairs_delivered"] > 0 and result["pairs_wasted"] >= 0
        assert result["reconfigurations"] > 0
        assert set(result["utilisation"]) == {"st0", "st1"}
        assert all(0.0 < u <= 1.0 for u in result["utilisation"].values())
        latency = result["latency"]
        assert 0.0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    orchestrator = data["results"]["orchestrator"]
    assert orchestrator["pairs_delivered"] == data["workload"]["pairs"]
    bound = data["lower_bound"]
    assert bound["expected"] == max(bound["critical_path"], bound["stations"], bound["qnus"])
    html = page.read_text()
    assert MODE in html
    for policy in ("orchestrator", "round_robin"):
        figure = folder / data["timelines"][policy]
        assert figure.is_file() and figure.stat().st_size > 10_000
        assert figure.name in html, "the page names the saved figure"
        assert base64.b64encode(figure.read_bytes()).decode() in html, "and embeds it"
        log = (folder / data["decision_logs"][policy]).read_text().splitlines()
        assert len(log) == data["results"][policy]["decisions"]
        assert all(json.loads(line)["reason"] for line in log)


@pytest.mark.parametrize("stem", sorted(shipped_workloads()))
def test_orchestrator_beats_round_robin_and_respects_the_bound(
        reports: dict[str, tuple[int, str, Path]], stem: str) -> None:
    """Fixed seed: the orchestrator's makespan is at least the lower bound (expected and
    hard) and no worse than the round-robin baseline's; the report's bound is the one
    `makespan_bound` gives on the config's bridge."""
    _, _, folder = reports[stem]
    (data_path,) = folder.glob("bridge_*.json")
    data = json.loads(data_path.read_text())
    bound = makespan_bound(shipped_workloads()[stem], load_bridge_config(BRIDGE_8).topology())
    assert data["lower_bound"]["expected"] == pytest.approx(bound.expected)
    orchestrator = data["results"]["orchestrator"]["makespan"]
    round_robin = data["results"]["round_robin"]["makespan"]
    assert orchestrator >= bound.expected >= bound.hard
    assert orchestrator <= round_robin
    assert data["comparison"]["orchestrator"]["over_bound"] == \
        pytest.approx(orchestrator / bound.expected)


def test_the_timeline_adds_up_to_the_stations_utilisation() -> None:
    """The figure's heralding bars, read from the decisions, are the time the simulation
    counted each station as heralding (so the picture and the utilisation agree)."""
    from qnetlab.bridge_cmd import run_bridge
    from qnetlab.bridge_report import read_timeline

    run = run_bridge(BRIDGE_8, WORKLOADS / "distributed_ghz_8.yaml", seed=SEED)
    for result in run.results.values():
        tl = read_timeline(result.decisions, run.topology.stations, result.makespan)
        for station, busy in result.station_busy.items():
            drawn = sum(s.end - s.start for s in tl.heralding[station])
            assert drawn == pytest.approx(busy, abs=1e-12), (result.policy, station)
        assert sum(map(len, tl.reconfigurations.values())) == result.reconfigurations
        assert len(tl.requests) == len([op for op in run.workload.operations if op.remote])
        assert all(outcome == "OK" for *_, outcome in tl.requests)


# -- exit codes -----------------------------------------------------------------------------------
def test_a_config_error_exits_2_naming_the_entry(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = bridge_data()
    data["qnus"]["qnu1"]["port"] = 1
    path = write_yaml(data, tmp_path / "bad.yaml")
    code = main(["bridge", str(path), "--workload", str(WORKLOADS / "distributed_ghz_8.yaml"),
                 "--report", str(tmp_path / "report")])
    assert code == EXIT_CONFIG
    assert "qnus.qnu1.port: port 1 is used twice" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


def test_a_negative_seed_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bridge", str(BRIDGE_8), "--workload", str(WORKLOADS / "distributed_ghz_8.yaml"),
                 "--seed", "-1", "--report", str(tmp_path / "report")])
    assert code == EXIT_CONFIG
    assert "--seed" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


def test_a_workload_qnu_the_bridge_lacks_exits_2(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    workload = tmp_path / "w.yaml"
    workload.write_text('name: w\nqnus: [qnu0, qnu9]\noperations:\n'
                        '  - {id: x, kind: pairs, qnus: [qnu0, qnu9]}\n')
    code = main(["bridge", str(BRIDGE_8), "--workload", str(workload),
                 "--report", str(tmp_path / "report")])
    assert code == EXIT_CONFIG
    err = capsys.readouterr().err
    assert f"{workload}: qnus: qnu9 not on bridge bridge_8" in err and "Fix:" in err


def test_a_failed_operation_is_a_bad_verdict(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """No path reaches fidelity 0.9 (the noise-limited pairs are about 0.57): the request is
    refused (ERR UNSUPPORTED), its operation fails, the report still gets written, exit 1."""
    workload = tmp_path / "w.yaml"
    workload.write_text('name: too_good\nqnus: [qnu0, qnu1]\noperations:\n'
                        '  - {id: x, kind: pairs, qnus: [qnu0, qnu1], min_fidelity: 0.9}\n')
    code = main(["bridge", str(BRIDGE_8), "--workload", str(workload), "--policy",
                 "orchestrator", "--report", str(tmp_path / "report")])
    assert code == EXIT_CHECK_FAILED
    assert "UNSUPPORTED 1" in capsys.readouterr().err
    data = json.loads((tmp_path / "report" / "bridge_too_good.json").read_text())
    assert data["good"] is False and list(data["results"]) == ["orchestrator"]
    assert data["results"]["orchestrator"]["errors"] == {"UNSUPPORTED": 1}
    assert math.isfinite(data["lower_bound"]["expected"])
