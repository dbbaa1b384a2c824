"""The simulated bridge world: the optical switch's twin and every heralding station's twins,
with each station's link following what the switch connects to its arms.

`plan_bridge_world(config, run_dir)` turns a bridge config (`network.bridge.bridge_config`,
lab_configs/bridge_8.yaml) into the labs one world process serves on free loopback ports:
the switch's lab (``switch.lab``: the Polatis Series 6000 twin) and, per station, its lab
(``stations.<s>.lab``: SNSPDs and the ID1000) with a ``qnetlab.simulation.link`` section, so
that the bench wires the tagger twin to its SNSPD twins as for the single link
(`link_events.attach_link`). `build_bridge_world(plan)` builds the benches and replaces each
station tagger's `LinkEvents` with a `SwitchedLink`: the same link physics
(`physics.link_clicks`) drawn for whatever the switch connects to that station's two arms.

- An arm (an egress port) carries the photons of the QNU whose ingress port the switch joins
  to it, once the path has settled (`physics.optical_switch.SwitchPaths.transmission`): the
  QNU's node optics are the bridge config's ``link_model`` with the fibre from the QNU to the
  beam splitter (the QNU's fibre plus the station's arm fibre) and the path's own insertion
  loss (the twin's per-path draw) in the collection efficiency.
- An arm with no QNU joined (or still switching) brings no light: its detector clicks are
  dark counts (and the other arm's photons) only.
- The arms are read as each block of events is drawn (`ID1000Server` draws up to 0.25 s
  ahead of real time; `SwitchedLink` waits until `LEAD_S` before the block's recording time
  so the draw sees the switch as it is then). When the pair changes, the station's link is a
  fresh draw (its own seed) from that block on. So the link follows the switch at most
  `SWITCH_LAG_S` late (`network.bridge.station_fabric.StationFabricSettings.guard_s`).

Across hosts (``plan_bridge_world(..., on_hosts=True)``, the config's ``world.address``
tcp://HOST:PORT) the labs take consecutive ports from PORT up instead, so that every host
computes the same plan from the config: the world serves its twins on its loopback at those
ports and relays HOST's (`tcp_relay.TcpRelay`, `BridgeWorldPlan.relay`), and the stations and
the orchestrator open the labs as `BridgeWorldPlan.reached` gives them (HOST in their
addresses).

The QNUs emit on every attempt (no node agent tells them when: phase 1 of the
process-level bridge, docs/bridge.md#stations-on-taggers-behind-the-switch).

Ground truth (`BridgeWorldPlan.truth_dir`, set by the one-host launcher; sim profile only, as
the world is): each station's tagger twin writes, per recording, ``<station>_truth.npy``
(`link_events.TWIN_TRUTH_DTYPE` rows in attempt order, grown by appends like the single
link's `TruthWriter` file: valid after every append) and ``<station>_joins.jsonl``, a line per
change of its arms: from which attempt (and recording ps) on the switch joined which QNUs
(``null``: none) to arms a and b. Each stretch's truth is its own link's, for the attempts
emitted from the change on whose true windows ended before the next change: an attempt
straddling a change has no row (the station's heralds there fall in the orchestrator's
`SWITCH_LAG_S` guard).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qnetlab.instruments.lab_config import LabConfig, load_config, parse_config
from qnetlab.network.link_model import NodeOptics

from .link_config import N_TAGGER_INPUTS, LinkSpec
from .link_events import LinkEvents, TruthWriter

if TYPE_CHECKING:
    from qnetlab.network.bridge.bridge_config import BridgeConfig

    from .bench import SimulatedBench
    from .devices.idq_id1000 import IDQuantiqueID1000Emulator
    from .physics.optical_switch import SwitchPaths

__all__ = ["DETECTOR_INPUTS", "LEAD_S", "SWITCH_LAG_S", "SYNC_INPUT", "TAGGER", "BridgeWorld",
           "BridgeWorldPlan", "SwitchedLink", "build_bridge_world", "plan_bridge_world"]

TAGGER = "tagger"
"""The station lab's ID1000 (heralding_station.yaml)."""
SYNC_INPUT = 3
"""Tagger input of the attempt clock (heralding_station.yaml's cabling: 1, 2 detectors)."""
DETECTOR_INPUTS = (1, 2)
LEAD_S = 0.05
"""s before a block's recording time at which its events are drawn (and the arms read): more
than a block's draw takes, so the stream still leaves on time."""
SWITCH_LAG_S = LEAD_S + 0.025
"""s a station's link may follow the switch late: `LEAD_S`, a batch of chunks drawn at once
(the ID1000 twin's 5 ms) and the station's mapping of tagger time to its clock (ms)."""
_PLACEHOLDER_PRESET = "bulk_eo_pulsed"
"""The preset the lab's link section names to pass its checks; every block's nodes are the
bridge config's link model instead (`SwitchedLink.spec`)."""


@dataclass(frozen=True)
class BridgeWorldPlan:
    """What the world process serves (picklable): labs on their loopback ports."""

    bridge: str
    """The bridge's name (for messages)."""
    switch_lab: LabConfig
    switch_instrument: str
    station_labs: dict[str, LabConfig]
    """Station -> its lab, on its own ports, with the link section and no database."""
    qnu_ports: dict[int, str]
    """Ingress port -> QNU."""
    qnu_fibre_km: dict[str, float]
    arms: dict[str, tuple[int, int]]
    """Station -> egress ports of arms a and b."""
    arm_fibre_km: dict[str, float]
    link: Any
    """network.bridge.topology.LinkParameters (the nodes' optics)."""
    seed: int = 0
    lead_s: float | None = LEAD_S
    """None: draw without waiting (a test reading the recording directly)."""
    relay: tuple[str, tuple[int, ...]] | None = None
    """Across hosts: (the world's host, its ports): the world relays HOST:PORT to its
    twins on loopback (unless HOST is a loopback address: the twins are there). None: free
    loopback ports (one host)."""
    first_ports: dict[str, int] = field(default_factory=dict)
    """Lab ("switch" or a station) -> its first port (`LabConfig.with_ports`)."""
    truth_dir: Path | None = None
    """Where each station's tagger twin writes its ground truth and the QNUs its switch
    joined when (module docstring); None: no truth."""

    def reached(self, lab: str) -> LabConfig:
        """The lab ("switch" or a station) as a process on another host opens it: its
        addresses on the world's host (across hosts), else as served."""
        config = self.switch_lab if lab == "switch" else self.station_labs[lab]
        if self.relay is None:
            return config
        return config.with_ports(self.first_ports[lab], host=self.relay[0])


def _private(lab: LabConfig, run_dir: Path, name: str,
             simulation: Mapping[str, Any] | None = None,
             take: Callable[[int], int] | None = None) -> LabConfig:
    """`lab` with no telemetry, its database in `run_dir` (never the lab's own: the world's
    stations apply no calibration), loopback ports (`take(count)`: the first of `count` +1
    ports; default free ones), and `simulation`'s link."""
    from .ports import free_port_run

    take = take or free_port_run
    document = deepcopy(lab.document)
    qnetlab = document.setdefault("qnetlab", {}) or {}
    document["qnetlab"] = qnetlab
    qnetlab.pop("telemetry", None)
    qnetlab["database"] = str(run_dir / f"{name}.db")
    if simulation is not None:
        qnetlab["simulation"] = {**(qnetlab.get("simulation") or {}), "link": dict(simulation)}
        # The ID1000 driver's stream ports are fixed (4242-4245) unless told: one run each,
        # or two stations on one host collide.
        tagger = document["instruments"][TAGGER]
        tagger["init"] = {**(tagger.get("init") or {}),
                          "stream_port_base": take(N_TAGGER_INPUTS + 1)}
    private = parse_config(lab.path, document)
    return private.with_ports(take(private.port_count), host="127.0.0.1")


def link_section(config: BridgeConfig, station: str, seed: int) -> dict[str, Any]:
    """The station lab's ``qnetlab.simulation.link``: the bridge's scheme, attempt clock and
    windows, the tagger's inputs, placeholder nodes (every block's real ones are
    `SwitchedLink.spec`'s)."""
    p = config.link
    node = {"transducer": _PLACEHOLDER_PRESET, "collection_efficiency": 0.0,
            "fibre_length_km": config.stations[station].fibre_length_km,
            "repetition_limit": p.repetition_limit}
    return {"scheme": p.scheme, "attempt_period": p.attempt_period,
            "detection_window": p.detection_window, "hom_visibility": p.hom_visibility,
            "sync_input": SYNC_INPUT, "detector_inputs": list(DETECTOR_INPUTS), "seed": seed,
            "tagger": TAGGER, "nodes": {"arm_a": dict(node), "arm_b": dict(node)}}


def plan_bridge_world(config: BridgeConfig, run_dir: Path, seed: int = 0, *,
                      on_hosts: bool = False, truth_dir: Path | None = None
                      ) -> BridgeWorldPlan:
    """The labs of `config`'s switch and stations, each on free loopback ports; with
    `on_hosts`, on consecutive ports from the config's ``world.address`` (module docstring:
    the same plan on every host); with `truth_dir`, the stations' ground truth written there.
    ConfigError naming ``world.address`` when it is missing or its ports reach another
    process's address on its host or past 65535."""
    from .ports import free_port_run

    run_dir.mkdir(parents=True, exist_ok=True)
    relay_host, ports, taken = None, [0], []
    if on_hosts:
        relay_host, ports[0] = _world_address(config)

    def take(count: int) -> int:
        """The first of `count` + 1 ports; the last taken is a lab's first port."""
        if relay_host is None:
            taken.append(free_port_run(count))
        else:
            taken.append(ports[0])
            ports[0] += count + 1  # with_ports and stream_port_base use first..first+count
        return taken[-1]

    first_ports: dict[str, int] = {}
    switch = _private(load_config(config.switch.lab), run_dir, "switch", take=take)
    first_ports["switch"] = taken[-1]
    stations = {}
    for i, (s, c) in enumerate(config.stations.items()):
        stations[s] = _private(load_config(c.lab), run_dir, s,
                               link_section(config, s, seed + 1000 * i), take=take)
        first_ports[s] = taken[-1]
    relay = None
    if relay_host is not None:
        first = _world_address(config)[1]
        relay = (relay_host, tuple(range(first, ports[0])))
        _check_world_ports(config, relay_host, relay[1])
    return BridgeWorldPlan(
        config.name, switch, config.switch.instrument, stations,
        {c.port: q for q, c in config.qnus.items()},
        {q: c.fibre_length_km for q, c in config.qnus.items()},
        {s: c.ports for s, c in config.stations.items()},
        {s: c.fibre_length_km for s, c in config.stations.items()}, config.link, seed,
        relay=relay, first_ports=first_ports, truth_dir=truth_dir)


def _world_address(config: BridgeConfig) -> tuple[str, int]:
    from qnetlab.instruments.errors import ConfigError

    if config.world_address is None:
        raise ConfigError(str(config.path), "world.address", "missing: the bridge world has "
                          "no address to serve its twins on across hosts",
                          "add 'world: {address: tcp://HOST:PORT}' (HOST: the world's host)")
    host, _, port = config.world_address.removeprefix("tcp://").rpartition(":")
    return host, int(port)


def _check_world_ports(config: BridgeConfig, host: str, ports: Sequence[int]) -> None:
    from qnetlab.instruments.errors import ConfigError

    if ports[-1] > 65535:
        raise ConfigError(str(config.path), "world.address", f"the world's {len(ports)} "
                          f"ports from {ports[0]} pass 65535", "choose a lower first port")
    for entry, address in config.bound_addresses().items():
        other_host, _, port = address.removeprefix("tcp://").rpartition(":")
        if other_host == host and int(port) in ports:
            raise ConfigError(str(config.path), "world.address", f"the world serves its "
                              f"twins on {host}:{ports[0]}..{ports[-1]}, which holds "
                              f"{entry} ({address})", f"move world.address past {ports[-1]} "
                              f"or {entry} out of the range")


Arm = tuple[str | None, float]
"""(the QNU whose light reaches an arm, or None; the path's power transmission)."""


@dataclass
class SwitchedLink:
    """The ID1000 twin's event source of one station behind the switch (module docstring).

    `base`: the `LinkEvents` the bench attached (its SNSPD twins, its tagger, the bench's
    other events); `paths`/`switch_now`: the switch twin's paths and its world's clock."""

    station: str
    plan: BridgeWorldPlan
    base: LinkEvents
    paths: SwitchPaths
    switch_now: Any
    """() -> s on the switch world's clock."""
    changes: list[tuple[float, tuple[Arm, Arm]]] = field(default_factory=list)
    """(monotonic s, arms) at each change of the arms a recording drew (newest last)."""

    def arms(self) -> tuple[Arm, Arm]:
        """What reaches arm a and arm b now (the switch's settled paths)."""
        connections = dict(self.paths.connections)  # a copy: the SCPI thread changes them
        now = self.switch_now()
        out: list[Arm] = []
        for egress in self.plan.arms[self.station]:
            ingress = next((i for i, e in connections.items() if e == egress), None)
            qnu = self.plan.qnu_ports.get(ingress) if ingress is not None else None
            try:
                transmission = (self.paths.transmission(ingress, egress, now)
                                if ingress is not None else 0.0)
            except KeyError:  # disconnected between the copy and the read
                transmission = 0.0
            out.append((qnu, transmission) if qnu is not None and transmission > 0.0
                       else (None, 0.0))
        return out[0], out[1]

    def optics(self, arm: Arm) -> NodeOptics:
        """The node optics behind one arm: the bridge's link model over the QNU's fibre to
        the beam splitter and the path's transmission; no light without a QNU."""
        p, (qnu, transmission) = self.plan.link, arm
        fibre = self.plan.arm_fibre_km[self.station] + (
            self.plan.qnu_fibre_km[qnu] if qnu is not None else 0.0)
        return NodeOptics(fibre, p.transducer_efficiency, p.transducer_added_noise,
                          p.collection_efficiency * transmission,
                          conversion_bandwidth=p.conversion_bandwidth,
                          memory_t2=p.memory_t2, repetition_limit=p.repetition_limit)

    def spec(self, arms: tuple[Arm, Arm], epoch: int) -> LinkSpec:
        """The link of `arms` (a fresh seed per change: `epoch`)."""
        base = self.base.spec
        physics = dataclasses.replace(base.physics, nodes=(self.optics(arms[0]),
                                                           self.optics(arms[1])),
                                      seed=base.physics.seed + epoch)
        names = (arms[0][0] or "none", arms[1][0] or "none")
        return dataclasses.replace(base, physics=physics, node_names=names, truth_file=None,
                                   herald_windows_ps=None)

    def events_for(self, spec: LinkSpec) -> LinkEvents:
        b = self.base
        return LinkEvents(spec, b.tagger, b.detectors, b.fallback)

    def events(self, inputs: Sequence[int], start_ps: int, stop_ps: int,
               rng: np.random.Generator) -> dict[int, np.ndarray]:
        """A counter reading (INPUt:COUNter?): the link as the arms are now."""
        return self.events_for(self.spec(self.arms(), 0)).events(inputs, start_ps, stop_ps,
                                                                 rng)

    def open_recording(self, duration_ps: int) -> _SwitchedRecording:
        return _SwitchedRecording(self, duration_ps)


TRUTH_BATCH_ATTEMPTS = 4096
"""Attempts decided between appends to a station's truth file (80 ms at 50 kHz)."""


class _StationTruth:
    """A station's ground truth over one recording (module docstring): the truth rows of
    each stretch of arms from its own link's draw, and a line per stretch in the joins
    file."""

    def __init__(self, source: SwitchedLink, folder: Path) -> None:
        self.source = source
        station = source.station
        self.writer = TruthWriter(folder / f"{station}_truth.npy")
        self.joins = (folder / f"{station}_joins.jsonl").open("w")
        self.clicks: Any = None
        """The current stretch's `LinkClicks` (None: before the first)."""
        self.done = 0
        """Attempts of the current stretch whose truth is written (or skipped)."""

    def begin(self, clicks: Any, start_ps: int, arms: tuple[Arm, Arm]) -> None:
        """A new stretch from recording time `start_ps`: the last one's truth up to there,
        then attempts emitted from `start_ps` on are this one's."""
        self.advance(start_ps, force=True)
        period = self.source.base.spec.physics.attempt_period_ps
        self.clicks, self.done = clicks, -(-start_ps // period)
        self.joins.write(json.dumps({"first_attempt": self.done, "from_ps": start_ps,
                                     "qnus": [arms[0][0], arms[1][0]]}) + "\n")
        self.joins.flush()

    def advance(self, reached_ps: int, *, force: bool = False) -> None:
        """Write the truth of the attempts decided by `reached_ps` (in batches)."""
        if self.clicks is None:
            return
        final = self.clicks.attempts_final_by(reached_ps)
        if final - self.done < (1 if force else TRUTH_BATCH_ATTEMPTS):
            return
        rows = self.clicks.truth(self.done, final)
        tagger, sync = self.source.base.tagger, self.source.base.spec.sync_input
        # as the tag of the attempt's first sync edge (link_events' TWIN_TRUTH_DTYPE)
        rows["sync_ps"] += tagger.model.channels[sync - 1].delay_ps \
            + tagger.user_delays_ps()[sync]
        self.writer.append(rows)
        self.done = final

    def close(self, reached_ps: int) -> None:
        try:
            self.advance(reached_ps, force=True)
        finally:
            self.writer.close()
            self.joins.close()


class _SwitchedRecording:
    """One recording: the link of the arms as each block is drawn."""

    def __init__(self, source: SwitchedLink, duration_ps: int) -> None:
        self.source, self.duration_ps = source, duration_ps
        self.opened = time.monotonic()
        """~ the recording's start on this host's clock (the server's t0, a little later)."""
        self.epoch = 0
        self.arms: tuple[Arm, Arm] | None = None
        self.current: Any = None
        folder = source.plan.truth_dir
        self.truth = _StationTruth(source, folder) if folder is not None else None
        self.reached = 0

    def _pace(self, start_ps: int) -> None:
        lead = self.source.plan.lead_s
        if lead is None:
            return
        wait = self.opened + start_ps * 1e-12 - lead - time.monotonic()
        if wait > 0.0:
            time.sleep(wait)  # pacing to real time is the point: nothing to wait on

    def events(self, inputs: Sequence[int], start_ps: int, stop_ps: int,
               rng: np.random.Generator) -> dict[int, np.ndarray]:
        self._pace(start_ps)
        arms = self.source.arms()
        if arms != self.arms:
            if self.current is not None:
                self.current.finish(start_ps)
            self.epoch += 1
            spec = self.source.spec(arms, self.epoch)
            self.current = self.source.events_for(spec).open_recording(self.duration_ps)
            self.arms = arms
            self.source.changes.append((time.monotonic(), arms))
            if self.truth is not None:
                self.truth.begin(self.current.clicks, start_ps, arms)
        events: dict[int, np.ndarray] = self.current.events(inputs, start_ps, stop_ps, rng)
        self.reached = max(self.reached, stop_ps)
        if self.truth is not None:
            self.truth.advance(self.reached)
        return events

    def finish(self, reached_ps: int) -> None:
        if self.current is not None:
            self.current.finish(reached_ps)
        if self.truth is not None:
            self.truth.close(min(self.reached, reached_ps) if self.reached else reached_ps)


@dataclass
class BridgeWorld:
    """The built benches: the switch's and each station's (its tagger on a `SwitchedLink`)."""

    plan: BridgeWorldPlan
    switch_bench: SimulatedBench
    station_benches: dict[str, SimulatedBench]
    links: dict[str, SwitchedLink]

    @property
    def paths(self) -> SwitchPaths:
        return self.switch_bench.world.optical_switches[self.plan.switch_instrument]

    def benches(self) -> dict[str, SimulatedBench]:
        return {"switch": self.switch_bench, **self.station_benches}


def build_bridge_world(plan: BridgeWorldPlan, clock: str = "paced") -> BridgeWorld:
    """The switch's bench and every station's, each station's tagger streaming the link its
    arms are switched to. ConfigError (naming the lab and entry) from a lab that does not
    fit: no switch twin, no tagger twin wired to SNSPD twins."""
    from .bench import build_bench

    switch_bench = build_bench(plan.switch_lab, clock=clock)
    paths = switch_bench.world.optical_switches.get(plan.switch_instrument)
    if paths is None:
        raise plan.switch_lab.error(f"instruments.{plan.switch_instrument}",
                                    "is not a simulated optical switch (polatis_6000)",
                                    "name the lab's Polatis twin in the bridge's "
                                    "switch.instrument")
    benches: dict[str, SimulatedBench] = {}
    links: dict[str, SwitchedLink] = {}
    for station, lab in plan.station_labs.items():
        bench = build_bench(lab, clock=clock)
        tagger: IDQuantiqueID1000Emulator = bench.zmq_devices[TAGGER]  # type: ignore[assignment]
        base = tagger.source
        if not isinstance(base, LinkEvents):
            raise lab.error(f"instruments.{TAGGER}", "the station's tagger twin streams no "
                            "link", "give the station lab an idq_id1000 tagger wired to its "
                            "SNSPD twins (heralding_station.yaml)")
        link = SwitchedLink(station, plan, base, paths, switch_bench.world.now)
        tagger.source = link
        benches[station], links[station] = bench, link
    return BridgeWorld(plan, switch_bench, benches, links)
