"""The shipped workloads, generated (seeded where random): lab_configs/workloads/ holds their
files for the 8-QNU bridge, and the benchmarks make them for any number of QNUs.

- `distributed_ghz`: a GHZ state across all QPUs by remote CNOT fan-out on a binary tree
  (log2(N) levels, one pair per remote CNOT): a deep DAG on every QNU.
- `partitioned_circuit`: a circuit cut into one partition per QPU, brickwork layers of remote
  CNOTs between neighbouring partitions (each cut crosses a few CNOTs back to back, so the same
  QNU pair asks again and again), and a state transfer at the end.
- `random_pairs`: independent requests between random QNU pairs arriving as a Poisson process
  (1-3 pairs each, some with deadlines).

Durations: a local gate layer 1 us, a measurement 2 us (superconducting QPUs, order of
magnitude); fidelities 0.55 (the bridge's Barrett-Kok pairs are ~0.57 when fresh).
"""

from __future__ import annotations

import numpy as np

from .workload import Operation, Workload, parse_workload

GATE_TIME = 1e-6
"""s, a layer of local gates (superconducting QPU, order of magnitude)."""
MEASURE_TIME = 2e-6
"""s, a measurement and its feed-forward."""
MIN_FIDELITY = 0.55


def qnu_names(n: int) -> list[str]:
    """qnu0 ... qnu{n-1}."""
    return [f"qnu{i}" for i in range(n)]


def _validated(name: str, qnus: list[str], ops: list[Operation]) -> Workload:
    # through the file form, so a generated workload passes the same checks as a file
    return parse_workload(Workload(name, tuple(qnus), tuple(ops), {}).to_dict(), name)


def distributed_ghz(n_qnus: int, min_fidelity: float = MIN_FIDELITY) -> Workload:
    """GHZ across `n_qnus` QPUs: H on qnu0, then at level k each QPU i < 2^k that already holds
    the state does a remote CNOT onto QPU i + 2^k (one pair, then a gate and a measurement
    with its correction), then every QPU measures its GHZ qubit's stabiliser check."""
    qnus = qnu_names(n_qnus)
    ops = [Operation("h_qnu0", "local", ("qnu0",), GATE_TIME)]
    last = {"qnu0": "h_qnu0"}
    span = 1
    while span < n_qnus:
        for i in range(min(span, n_qnus - span)):
            a, b = qnus[i], qnus[i + span]
            op_id = f"cx_{a}_{b}"
            ops.append(Operation(op_id, "pairs", (a, b), GATE_TIME + MEASURE_TIME, 1,
                                 min_fidelity, (last[a],)))
            last[a] = last[b] = op_id
        span *= 2
    for q in qnus:
        ops.append(Operation(f"check_{q}", "local", (q,), MEASURE_TIME, after=(last[q],)))
    return _validated(f"distributed_ghz_{n_qnus}", qnus, ops)


def partitioned_circuit(n_qnus: int, layers: int = 6, cnots_per_cut: int = 3,
                        min_fidelity: float = MIN_FIDELITY) -> Workload:
    """A circuit of `layers` brickwork layers over `n_qnus` partitions (one per QPU): each layer
    does local gates on every QPU, then `cnots_per_cut` remote CNOTs back to back across each
    cut of the layer ((0,1), (2,3), ... on even layers, (1,2), (3,4), ... on odd ones); at the
    end qnu0 teleports its output qubit to the last QPU (a state transfer)."""
    qnus = qnu_names(n_qnus)
    ops: list[Operation] = []
    last: dict[str, str] = {}
    for layer in range(layers):
        for q in qnus:
            op_id = f"l{layer}_{q}"
            ops.append(Operation(op_id, "local", (q,), GATE_TIME,
                                 after=(last[q],) if q in last else ()))
            last[q] = op_id
        for i in range(layer % 2, n_qnus - 1, 2):
            a, b = qnus[i], qnus[i + 1]
            for k in range(cnots_per_cut):
                op_id = f"l{layer}_cx{k}_{a}_{b}"
                ops.append(Operation(op_id, "pairs", (a, b), GATE_TIME, 1, min_fidelity,
                                     tuple(sorted({last[a], last[b]}))))
                last[a] = last[b] = op_id
    src, dst = qnus[0], qnus[-1]
    ops.append(Operation("teleport_out", "transfer", (src, dst), GATE_TIME, 1, min_fidelity,
                         tuple(sorted({last[src], last[dst]}))))
    return _validated(f"partitioned_circuit_{n_qnus}", qnus, ops)


def random_pairs(n_qnus: int, requests: int, seed: int, rate: float,
                 deadline_fraction: float = 0.3, deadline: float = 3.0,
                 min_fidelity: float = MIN_FIDELITY) -> Workload:
    """`requests` independent pair requests between uniformly random QNU pairs, released as a
    Poisson process of `rate` Hz (seeded), 1-3 pairs each (weights 0.6/0.3/0.1); a
    `deadline_fraction` of them must be served within `deadline` s of their release."""
    rng = np.random.default_rng(seed)
    qnus = qnu_names(n_qnus)
    times = np.cumsum(rng.exponential(1.0 / rate, requests))
    ops = []
    for i in range(requests):
        a, b = rng.choice(n_qnus, 2, replace=False)
        pairs = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
        due = deadline if rng.random() < deadline_fraction else None
        ops.append(Operation(f"r{i}", "pairs", (qnus[int(a)], qnus[int(b)]), GATE_TIME, pairs,
                             min_fidelity, release=round(float(times[i]), 6), deadline=due))
    return _validated(f"random_pairs_{n_qnus}_seed{seed}", qnus, ops)


def shipped_workloads() -> dict[str, Workload]:
    """The workloads of lab_configs/workloads/ (file stem -> workload), for the 8-QNU bridge:
    regenerate the files with `write_shipped_workloads`."""
    return {
        "distributed_ghz_8": distributed_ghz(8),
        "partitioned_circuit_8": partitioned_circuit(8),
        "random_pairs_8": random_pairs(8, 60, seed=20261206, rate=20.0),
    }


def write_shipped_workloads(directory: str) -> list[str]:
    """Write `shipped_workloads` as YAML files into `directory`; their paths."""
    from pathlib import Path

    from .workload import write_workload

    paths = []
    for stem, workload in shipped_workloads().items():
        path = Path(directory) / f"{stem}.yaml"
        write_workload(workload, path)
        paths.append(str(path))
    return paths
