"""The exception families of `qnetlab.instruments.errors`: each is caught by kind and maps to
its exit code through `qnetlab.cli.main` (a verb's handler is replaced by one that raises)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import qnetlab.network.network_config
from qnetlab.cli import EXIT_CODES, exit_code, main
from qnetlab.instruments import errors
from qnetlab.instruments.errors import (
    ConfigError,
    InstrumentCommunicationError,
    InstrumentConnectionError,
    InstrumentError,
    InstrumentRefusedError,
    InstrumentReplyError,
    InstrumentReportedError,
    InstrumentTimeoutError,
    InstrumentUnreachableError,
    InterlockError,
    Interrupted,
    LimitsViolatedAfterReconnect,
    QnetlabError,
    SafetyLimitError,
    StopSignal,
    VerdictError,
)

ROOT = Path(__file__).resolve().parents[1]

RAISED: list[tuple[BaseException, int]] = [
    (ConfigError("lab.yaml", "instruments.x", "wrong", "fix it"), 2),
    (InstrumentUnreachableError("lab.yaml", "instruments.x.address", "no answer"), 3),
    (InstrumentTimeoutError("x did not answer"), 3),
    (InstrumentConnectionError("x dropped the connection"), 3),
    (InstrumentReplyError("x sent nonsense"), 3),
    (InstrumentReportedError("x: -222 Data out of range"), 1),
    (SafetyLimitError("x: above the soft limit"), 1),
    (LimitsViolatedAfterReconnect("x: outside after reconnect"), 1),
    (InterlockError("interlock refused"), 1),
    (InstrumentError("x failed"), 1),
    (VerdictError("verdict bad: fit failed"), 1),
]


@pytest.fixture
def network_stub(tmp_path: Path) -> Path:
    """A file `qnetlab keys` takes for a network config (its loader is the one that raises)."""
    path = tmp_path / "network.yaml"
    path.write_text("network: {}\n")
    return path


@pytest.mark.parametrize(("exc", "code"), RAISED, ids=lambda v: type(v).__name__)
def test_each_family_exits_with_its_code(exc, code, monkeypatch, capsys, network_stub):
    def handler(path: object) -> object:
        raise exc

    monkeypatch.setattr(qnetlab.network.network_config, "load_network_config", handler)
    assert main(["keys", str(network_stub)]) == code
    assert str(exc) in capsys.readouterr().err


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), Interrupted(), StopSignal("SIGTERM")],
                         ids=lambda v: type(v).__name__)
def test_an_interrupt_exits_130(exc, monkeypatch, capsys, network_stub):
    def handler(path: object) -> object:
        raise exc

    monkeypatch.setattr(qnetlab.network.network_config, "load_network_config", handler)
    assert main(["keys", str(network_stub)]) == 130
    assert "qnetlab: " in capsys.readouterr().err


@pytest.mark.parametrize(("exc", "code"), RAISED, ids=lambda v: type(v).__name__)
def test_every_family_is_a_qnetlab_error(exc, code):
    with pytest.raises(QnetlabError):
        raise exc
    assert exit_code(exc) == code


def test_the_families_group_as_documented():
    assert issubclass(InstrumentUnreachableError, InstrumentCommunicationError)
    assert issubclass(InstrumentReplyError, InstrumentCommunicationError)
    for refused in (SafetyLimitError, InterlockError, InstrumentReportedError):
        assert issubclass(refused, InstrumentRefusedError)
    for family in (InstrumentCommunicationError, InstrumentRefusedError):
        assert issubclass(family, InstrumentError)
    # The builtin bases stay, so existing `except TimeoutError` / `ValueError` still work.
    assert issubclass(InstrumentTimeoutError, TimeoutError)
    assert issubclass(ConfigError, ValueError) and issubclass(SafetyLimitError, ValueError)


def test_a_stop_signal_is_a_keyboard_interrupt_and_not_an_exception():
    with pytest.raises(KeyboardInterrupt):
        raise StopSignal("SIGTERM")
    assert issubclass(StopSignal, Interrupted)
    # `except Exception` in a logging wrapper or retry loop must never swallow a stop.
    assert not issubclass(Interrupted, Exception)
    import qnetlab.cli

    assert qnetlab.cli.StopSignal is StopSignal  # the old import path keeps working


def test_the_package_errors_join_a_family():
    from qnetlab.drivers.quantum_opus.sim900_snspd import SlotError
    from qnetlab.instruments.awg import WaveformRejectedError
    from qnetlab.instruments.single_photon_detector import CounterNotConnectedError
    from qnetlab.instruments.tag_blocks import TagBlockError
    from qnetlab.network.keys import LabKeyError
    from qnetlab.network.parameters import ParameterServiceError
    from qnetlab.sequences.calibration.graph import GraphError
    from qnetlab.sequences.interlock import InterlockTimeoutError
    from qnetlab.sequences.transducer.fridge_load import FridgeCeilingError

    assert exit_code(LabKeyError("keys", "", "missing")) == 2
    assert exit_code(GraphError("calibration graph (lab.yaml): a cycle")) == 2
    assert str(GraphError("calibration graph (lab.yaml): a cycle")) == (
        "calibration graph (lab.yaml): a cycle")
    assert exit_code(ParameterServiceError("no answer")) == 3
    for refused in (SlotError, WaveformRejectedError, InterlockTimeoutError,
                    FridgeCeilingError):
        assert issubclass(refused, InstrumentRefusedError), refused
    for failed in (TagBlockError, CounterNotConnectedError):
        assert issubclass(failed, InstrumentError), failed


INTERNAL = {"MalformedMessage", "ScpiError", "MissingInputError", "_Stop", "_OwnMessage",
            "QnetlabError", "Interrupted"}  # the two roots
"""Exceptions that never leave their module (see the errors module docstring), and the roots."""


def test_no_error_class_outside_the_hierarchy():
    """Every exception class defined in the packages derives from a family (or is internal)."""
    public = {name for name, obj in vars(errors).items()
              if inspect.isclass(obj) and issubclass(obj, BaseException)}
    outside = []
    for folder in ("instruments", "drivers", "sim_instruments", "sequences", "network",
                   "qnetlab"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.ClassDef) or node.name in INTERNAL:
                    continue
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "")
                         for b in node.bases}
                builtin = {"Exception", "ValueError", "RuntimeError", "LookupError",
                           "TimeoutError", "KeyboardInterrupt", "ConnectionError"}
                if bases & builtin and not bases & (public | {"ConfigError"}):
                    outside.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert not outside, f"error classes outside the families: {outside}"


def test_the_exit_code_table_covers_each_family_once():
    assert EXIT_CODES[ConfigError] == 2
    assert EXIT_CODES[InstrumentCommunicationError] == 3
    assert EXIT_CODES[KeyboardInterrupt] == 130
    assert exit_code(ValueError("not ours")) is None


def test_a_bad_verdict_raises_a_verdict_error_when_asked():
    from qnetlab.sequences.analysis import Reason, Verdict

    Verdict.ok("fine").raise_if_bad()  # a good verdict raises nothing
    bad = Verdict.bad(next(iter(Reason)), "no dip found")
    with pytest.raises(VerdictError, match="no dip found") as info:
        bad.raise_if_bad("run 7")
    assert info.value.verdict is bad
    assert exit_code(info.value) == 1
