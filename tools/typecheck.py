"""Run mypy on the installed shape of qnetlab: ``python tools/typecheck.py [mypy options]``.

The repository keeps the lab's folder names (``instruments/``, ``drivers/``, ...), which install
as ``qnetlab.instruments``, ... (``[tool.setuptools.package-dir]`` in pyproject.toml). mypy
cannot follow that mapping, so this builds the installed tree from symbolic links under
``build/typecheck`` and checks package ``qnetlab`` there with the repository's mypy settings.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("instruments", "drivers", "sim_instruments", "sequences", "network")


def link_tree() -> Path:
    root = REPO / "build" / "typecheck"
    shutil.rmtree(root, ignore_errors=True)
    package = root / "qnetlab"
    package.mkdir(parents=True)
    for module in (REPO / "qnetlab").glob("*.py"):
        (package / module.name).symlink_to(module)
    for folder in FOLDERS:
        (package / folder).symlink_to(REPO / folder, target_is_directory=True)
    return root


def main() -> int:
    root = link_tree()
    command = [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
               "-p", "qnetlab", *sys.argv[1:]]
    return subprocess.call(command, cwd=root)


if __name__ == "__main__":
    raise SystemExit(main())
