"""qnetlab installs under its own namespace, beside InstrumentKit (imported as `instruments`).

A wheel built from this checkout goes into a fresh virtual environment with InstrumentKit from
the package registry; both import, and the installed `qnetlab` command runs a check of the
simulated transducer bench. The environment reuses this one's packages for qnetlab's
dependencies (a .pth line), so only the wheel and InstrumentKit are installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.processes]

SOURCES = ("pyproject.toml", "README.md", "pyvisa_qnetlab.py", "qnetlab", "instruments",
           "drivers", "sim_instruments", "sequences", "network")
INSTRUMENTKIT_DEPENDENCIES = ("pyserial>=3.3", "quantities>=0.12.1", "future>=0.15",
                              "python-vxi11>=0.8", "python-usbtmc", "pyusb")
OFFLINE = ("Could not find a version", "No matching distribution", "Failed to establish",
           "Temporary failure in name resolution", "Network is unreachable")


def _run(command: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _pip(venv: Path, *args: str, cwd: Path) -> None:
    done = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *args], cwd)
    if done.returncode != 0:
        if any(sign in done.stderr for sign in OFFLINE):
            pytest.skip(f"the package registry is not reachable: {done.stderr[-300:]}")
        raise AssertionError(f"pip install {' '.join(args)} failed:\n{done.stderr[-2000:]}")


def test_installed_qnetlab_lives_beside_instrumentkit(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:  # build from a copy: no build/ or egg-info in the checkout
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    wheels = tmp_path / "wheels"
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels),
                  str(source)], tmp_path)
    if built.returncode != 0 and any(sign in built.stderr for sign in OFFLINE):
        pytest.skip(f"the package registry is not reachable: {built.stderr[-300:]}")
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = wheels.glob("qnetlab-*.whl")

    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)], tmp_path).returncode == 0
    site = Path(_run([str(venv / "bin" / "python"), "-c",
                      "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     tmp_path).stdout.strip())
    # qnetlab's dependencies from this environment, after the new one's own packages.
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _pip(venv, "--no-deps", str(wheel), cwd=tmp_path)
    # InstrumentKit 0.6 pins ruamel.yaml ~=0.15 (no wheel for Python 3.11) and enum34 (which
    # breaks `enum` on Python 3): take ruamel.yaml from QCoDeS's environment, the rest as pinned.
    _pip(venv, "--no-deps", "instrumentkit", cwd=tmp_path)
    _pip(venv, *INSTRUMENTKIT_DEPENDENCIES, cwd=tmp_path)

    probe = _run([str(venv / "bin" / "python"), "-c",
                  "import instruments, qnetlab.instruments, pyvisa_qnetlab\n"
                  "print(instruments.__file__)\nprint(qnetlab.instruments.__file__)\n"
                  "print(hasattr(instruments, 'Instrument'))"], tmp_path)
    assert probe.returncode == 0, probe.stderr
    instrumentkit, ours, is_instrumentkit = probe.stdout.split()
    assert Path(instrumentkit).is_relative_to(site) and is_instrumentkit == "True"
    assert Path(ours).is_relative_to(site / "qnetlab")

    check = _run([str(venv / "bin" / "qnetlab"), "check",
                  str(REPO / "lab_configs" / "transducer_bench.yaml")], tmp_path)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    assert "pump_laser" in check.stdout
