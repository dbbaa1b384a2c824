"""A lab process publishes its telemetry (network.lab_telemetry): the simulated transducer
bench, loaded through its config with telemetry on a free port and keys made as
``qnetlab keys`` makes them, heard by a `TelemetrySubscriber` as the monitor would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qnetlab.instruments.lab_config import load_config
from qnetlab.instruments.station import load_station
from qnetlab.network.keys import generate_lab_keys
from qnetlab.network.lab_telemetry import LabTelemetry, start_lab_telemetry
from qnetlab.network.telemetry import (
    CalibrationStates,
    SequenceProgress,
    TelemetryMessage,
    TelemetrySubscriber,
    ValueReading,
    telemetry_endpoints,
)
from qnetlab.network.telemetry_config import telemetry_key_names
from qnetlab.sequences.progress import Progress, report_calibration, reporting_to
from qnetlab.sim_instruments.ports import free_port_run
from qnetlab.sim_instruments.visa_backend import bench_of

from conftest import BENCH_CONFIG

DEADLINE = 30.0  # s; generous on a loaded 2-core box: every wait ends at its event first
CEILING = "interlocks.no_pump_on_warm_fridge"  # always published: what a join waits for


def bench_with_telemetry(folder: Path) -> Path:
    """The shipped bench in `folder`/configs with every port free (its telemetry's too),
    its keys generated in `folder`/lab_data/keys (the config's relative key_dir)."""
    config = load_config(BENCH_CONFIG)
    (folder / "configs").mkdir()
    path = config.with_ports(free_port_run(config.port_count)).to_yaml(
        folder / "configs" / "transducer_bench.yaml").path
    key_dir, names = telemetry_key_names(path)
    generate_lab_keys(key_dir, names)
    return path


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Any, LabTelemetry, TelemetrySubscriber]]:
    path = bench_with_telemetry(tmp_path)
    station = load_station(path)
    telemetry = start_lab_telemetry(station, period_s=0.05)
    where = telemetry_endpoints(path)
    subscriber = TelemetrySubscriber(where.endpoints, key_dir=where.key_dir)
    try:
        yield station, telemetry, subscriber
    finally:
        subscriber.close()
        telemetry.close()
        station.close()


def _value(name: str, test: Any = lambda v: True) -> Any:
    def predicate(message: TelemetryMessage) -> bool:
        return isinstance(message, ValueReading) and message.name == name and test(message)
    return predicate


def test_the_shipped_bench_names_its_telemetry_and_its_keys() -> None:
    where = telemetry_endpoints(BENCH_CONFIG)
    assert where.endpoints == {"transducer_bench": "tcp://127.0.0.1:29120"}
    assert where.key_dir is not None and where.key_dir.name == "transducer_bench"
    assert telemetry_key_names(BENCH_CONFIG)[1] == ["transducer_bench", "monitor"]


def test_the_monitor_hears_the_pump_set_with_units_and_kinds(lab: Any) -> None:
    station, telemetry, subscriber = lab
    kinds = {m.name: m.kind for m in telemetry.monitored}
    assert kinds["fridge.temperature"] == "mxc_temperature"
    assert kinds["pump_laser.power"] == "pump_power"
    assert kinds["pump_laser.output"] == "pump_on"
    assert kinds["mw_source.power"] == "mw_power"
    assert kinds["snspd.ch1.count_rate"] == "count_rate"
    ceiling = subscriber.wait_for(_value("interlocks.no_pump_on_warm_fridge"), DEADLINE)
    assert ceiling.kind == "mxc_ceiling" and ceiling.value == 0.050 and ceiling.unit == "K"
    station.instrument("pump_laser").power(2.0e-3)
    station.instrument("pump_laser").output(True)
    # The sampler thread publishes the caches the set updated: no instrument read by it.
    power = subscriber.wait_for(_value("pump_laser.power", lambda m: m.value == 2.0e-3),
                                DEADLINE)
    assert power.unit == "W" and power.kind == "pump_power" and power.source == \
        "transducer_bench"
    subscriber.wait_for(_value("pump_laser.output", lambda m: m.value == 1.0), DEADLINE)
    station.instrument("pump_laser").power(4.0e-3)
    subscriber.wait_for(_value("pump_laser.power", lambda m: m.value == 4.0e-3), DEADLINE)
    assert subscriber.malformed == 0


def test_the_monitor_hears_the_mixing_chamber_warm_when_heat_is_injected(lab: Any) -> None:
    station, telemetry, subscriber = lab
    fridge = station.instrument("fridge")
    cold = next(r for r in telemetry.sample(fresh=True) if r.name == "fridge.temperature")
    assert cold.unit == "K" and cold.kind == "mxc_temperature"
    subscriber.wait_for(_value(CEILING), DEADLINE)
    world = bench_of(fridge).world
    world.set_extra_heat_load(20e-6)
    world.advance(600)  # ten time constants of the mixing chamber
    warm = world.fridge.equilibrium_temperature(20e-6)
    assert warm > 2 * cold.value
    # A fresh read at a safe point, from the thread that owns the station.
    telemetry.sample(fresh=True)
    heard = subscriber.wait_for(_value("fridge.temperature",
                                       lambda m: m.value > 2 * cold.value), DEADLINE)
    assert heard.value == pytest.approx(warm, rel=0.05) and heard.time >= cold.time


def test_calibration_states_reach_the_monitor(lab: Any) -> None:
    _, telemetry, subscriber = lab
    subscriber.wait_for(_value(CEILING), DEADLINE)  # joined
    with reporting_to(telemetry):
        report_calibration([("dark_counts", "in spec", 12.0, 86400.0),
                            ("mw_resonance", "never calibrated", None, 86400.0)])
    report_calibration([("outside", "in spec", 1.0, 1.0)])  # no reporter after the block
    heard = subscriber.wait_for(lambda m: isinstance(m, CalibrationStates), DEADLINE)
    assert isinstance(heard, CalibrationStates) and heard.source == "transducer_bench"
    assert [(n.name, n.state) for n in heard.nodes] == [("dark_counts", "in spec"),
                                                        ("mw_resonance", "never calibrated")]
    assert heard.nodes[0].age_s == 12.0 and heard.nodes[1].age_s is None


def test_progress_states_arrive_in_order_with_the_pause_reason(lab: Any) -> None:
    _, telemetry, subscriber = lab
    # Join first: a SUB hears only what is published after its connection is up.
    subscriber.wait_for(_value(CEILING), DEADLINE)
    with reporting_to(telemetry):
        progress = Progress(4, "efficiency_map", quiet=True)
        progress.update(1, "pump 2 mW")
        progress.interlock("paused", "PAUSED before pump 4 mW: fridge too warm")
        progress.interlock("resumed", "RESUMED after 30 s")
        progress.update(4, "pump 8 mW")
        progress.close()
    heard: list[SequenceProgress] = []
    while not heard or heard[-1].state != "finished":
        message = subscriber.wait_for(lambda m: isinstance(m, SequenceProgress), DEADLINE)
        assert isinstance(message, SequenceProgress)
        heard.append(message)
    assert [m.state for m in heard] == ["running", "running", "paused", "resumed", "running",
                                        "finished"]
    assert heard[2].reason.startswith("PAUSED before pump 4 mW") and heard[2].done == 1
    assert heard[-1].done == heard[-1].total == 4 and heard[-1].sequence == "efficiency_map"


def test_a_failing_reporter_never_stops_the_run() -> None:
    class Broken:
        def sequence_progress(self, *args: object) -> None:
            raise RuntimeError("publisher gone")

        def calibration_states(self, *args: object) -> None:
            raise RuntimeError("publisher gone")

    with reporting_to(Broken()):
        progress = Progress(2, "s", quiet=True)
        progress.update(1)
        progress.update(2)
        progress.close()
        report_calibration([])


def test_a_run_paused_by_the_interlock_is_heard_paused_with_its_reason_then_resumed(
        lab: Any, tmp_path: Path) -> None:
    from test_run_guard import _PumpAndRead  # the run guard's sequence: heat at step 2

    station, telemetry, subscriber = lab
    subscriber.wait_for(_value(CEILING), DEADLINE)  # joined
    with reporting_to(telemetry):
        result = _PumpAndRead(heat_at_step=2, recover_after=60.0).run(
            station, tmp_path / "lab.db", quiet=True)
    assert result.status == "completed"
    states: list[SequenceProgress] = []
    while not states or states[-1].state != "finished":
        message = subscriber.wait_for(lambda m: isinstance(m, SequenceProgress), DEADLINE)
        assert isinstance(message, SequenceProgress)
        states.append(message)
    names = [m.state for m in states]
    assert names.count("paused") == 1 and names.count("resumed") == 1
    paused = states[names.index("paused")]
    assert paused.sequence == "pump_and_read" and paused.done == 2
    assert "no_pump_on_warm_fridge" in paused.reason and "PAUSED before step 2" in paused.reason
    assert names.index("paused") < names.index("resumed") < names.index("finished")
    assert states[-1].done == states[-1].total == 6


@pytest.mark.parametrize(("text", "entry", "words"), [
    ("    adress: tcp://127.0.0.1:29120\n    key_dir: keys\n", "qnetlab.telemetry.adress",
     "did you mean 'address'"),
    ("    address: tcp://127.0.0.1:29120\n", "qnetlab.telemetry", "missing required key "
     "'key_dir'"),
    ("    address: 127.0.0.1:29120\n    key_dir: keys\n", "qnetlab.telemetry.address",
     "not a tcp address"),
    ("    address: tcp://127.0.0.1:29120\n    key_dir: keys\n    name: a/b\n",
     "qnetlab.telemetry.name", "not a usable publisher name"),
])
def test_a_lab_configs_telemetry_typos_are_named(tmp_path: Path, text: str, entry: str,
                                                 words: str) -> None:
    from qnetlab.instruments.errors import ConfigError

    path = tmp_path / "lab.yaml"
    path.write_text("instruments:\n"
                    "  fridge: {type: qnetlab.drivers.lakeshore.LakeshoreModel372,\n"
                    "           address: {sim: lakeshore_372}}\n"
                    "qnetlab:\n  telemetry:\n" + text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.entry == entry and words in str(caught.value)


@pytest.mark.parametrize(("section", "old", "new", "entry", "words"), [
    ("station", "  telemetry_address: tcp://127.0.0.1:29106",
     "  telemetry_adress: tcp://127.0.0.1:29106", "station.telemetry_adress",
     "did you mean 'telemetry_address'"),
    ("orchestrator", "  telemetry_address: tcp://127.0.0.1:29107",
     "  telemetry_address: tcp://*:29107", "orchestrator.telemetry_address",
     "binding every interface"),
    ("nodes", "    telemetry_address: tcp://127.0.0.1:29109",
     "    telemetry_address: tcp://127.0.0.1:29101", "station/orchestrator",
     "share one address"),
])
def test_a_network_configs_telemetry_typos_are_named(tmp_path: Path, section: str, old: str,
                                                     new: str, entry: str, words: str) -> None:
    import shutil

    from qnetlab.instruments.errors import ConfigError
    from qnetlab.network.network_config import load_network_config

    shipped = BENCH_CONFIG.parent
    for name in ("heralding_station.yaml", "node_a_lab.yaml", "node_b_lab.yaml"):
        shutil.copy(shipped / name, tmp_path / name)
    text = (shipped / "two_node_link.yaml").read_text()
    assert old in text, section
    (tmp_path / "net.yaml").write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        load_network_config(tmp_path / "net.yaml")
    assert caught.value.entry == entry and words in str(caught.value)
