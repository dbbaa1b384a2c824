"""The layers hold: import-linter's contracts of pyproject.toml, on the installed shape.

The simulation lives behind instruments: `instruments`, `sequences` and `network` reach it
only through configuration (the ``qnetlab`` VISA backend and ZeroMQ twins, chosen by name),
never by import, also not lazily inside a function.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "lint_imports.py"


def _lint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True,
                          timeout=600, cwd=REPO)


def test_every_import_contract_is_kept() -> None:
    result = _lint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_lazy_import_of_the_simulated_lab_breaks_the_contract(tmp_path: Path) -> None:
    """The contract sees an import inside a function, as the one the layering forbids."""
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import typecheck
    finally:
        sys.path.pop(0)
    # A tree like the installed one, with `network` a real folder holding one offender.
    root = tmp_path / "tree"
    typecheck.link_tree(root)
    network = root / "qnetlab" / "network"
    network.unlink()
    network.mkdir()
    for module in (REPO / "network").glob("*.py"):
        (network / module.name).symlink_to(module)
    (network / "_offender.py").write_text(
        "def twin():\n    from qnetlab.sim_instruments import bench\n    return bench\n")
    command = [sys.executable, "-c", "import sys; from importlinter.cli import "
               "lint_imports_command; sys.exit(lint_imports_command())",
               "--config", str(REPO / "pyproject.toml"), "--no-cache"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=root,
                            env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "qnetlab.network._offender -> qnetlab.sim_instruments" in result.stdout
