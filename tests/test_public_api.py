"""Every package's public face: its ``__all__`` imports, has no duplicates, and is lazy where
it must be (``qnetlab --help`` and the network's processes must not pay for QCoDeS); nothing
outside a package imports that package's private modules.

The packages are read from pyproject.toml (``[tool.setuptools]``), so a new package is
covered as soon as it is installed.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
_SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
PACKAGES: list[str] = sorted(_SETUPTOOLS["packages"])
PACKAGE_DIRS: dict[str, str] = {
    name: folder for name, folder in _SETUPTOOLS["package-dir"].items() if name
}


def package_folder(package: str) -> Path:
    """The repository folder of an installed package name, by the package-dir mapping."""
    parts = package.split(".")
    for n in range(len(parts), 0, -1):
        head = ".".join(parts[:n])
        if head in PACKAGE_DIRS:
            return REPO / PACKAGE_DIRS[head] / Path(*parts[n:])
    return REPO / Path(*parts)


def module_name(path: Path) -> str:
    """The installed module name of a repository file (tests and benchmarks keep their own)."""
    for package in sorted(PACKAGES, key=len, reverse=True):
        folder = package_folder(package)
        if path.is_relative_to(folder):
            rest = path.relative_to(folder).with_suffix("").parts
            rest = rest[:-1] if rest[-1] == "__init__" else rest
            return ".".join((package, *rest))
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def _public(package: str) -> tuple[ModuleType, list[str]]:
    module = importlib.import_module(package)
    names = getattr(module, "__all__", None)
    assert names is not None, f"{package} has no __all__"
    return module, list(names)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_name_in_all_is_importable(package: str) -> None:
    module, names = _public(package)
    missing = [name for name in names if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names what it does not have: {missing}"
    namespace: dict[str, object] = {}
    exec(f"from {package} import *", namespace)  # the star import a notebook would do
    assert set(names) <= set(namespace)


@pytest.mark.parametrize("package", PACKAGES)
def test_all_has_no_duplicates(package: str) -> None:
    _, names = _public(package)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert not duplicates, f"{package}.__all__ lists {duplicates} more than once"


def _type_checking_imports(package: str) -> dict[str, str]:
    """Name -> relative module of the imports under ``if TYPE_CHECKING:`` in the package's
    ``__init__`` (what type checkers and editors see of the lazily loaded names)."""
    tree = ast.parse((package_folder(package) / "__init__.py").read_text())
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom):
                    where = "." * statement.level + (statement.module or "")
                    found.update({alias.asname or alias.name: where
                                  for alias in statement.names})
    return found


LAZY_PACKAGES = [p for p in PACKAGES if "_MODULE_OF" in
                 (package_folder(p) / "__init__.py").read_text()]


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_lazy_names_agree_with_what_type_checkers_see(package: str) -> None:
    """A lazily loaded name is in ``__all__``, loads from the module type checkers are told,
    and a name that is not there raises AttributeError (so ``hasattr`` and ``from ... import``
    behave as for any module)."""
    module, names = _public(package)
    lazy: dict[str, str] = module._MODULE_OF
    assert _type_checking_imports(package) == lazy
    assert set(lazy) <= set(names)
    assert set(names) <= set(lazy) | set(vars(module))
    assert set(names) <= set(dir(module))
    with pytest.raises(AttributeError, match="no_such_name"):
        module.no_such_name  # noqa: B018


@pytest.mark.processes
def test_the_command_line_and_the_errors_do_not_import_qcodes(tmp_path: Path) -> None:
    """``qnetlab --help`` imports `qnetlab.cli`; a network process imports `qnetlab.network`
    and the errors. None of them needs QCoDeS (about half a second per process)."""
    code = (
        "import sys\n"
        "import qnetlab, qnetlab.cli, qnetlab.network, qnetlab.drivers, qnetlab.sim_instruments\n"
        "from qnetlab.instruments import ConfigError, QnetlabError\n"
        "from qnetlab import InstrumentError\n"
        "heavy = sorted(m for m in ('qcodes', 'scipy', 'numba') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every module `path` imports, relative imports resolved; a
    ``from package import name`` counts ``package.name`` when that is a module."""
    me = module_name(path)
    here = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names
                      if alias.name.startswith("_") and _is_module(f"{target}.{alias.name}")]
    return [(line, name) for line, name in found if name.split(".")[0] == "qnetlab"]


def _is_module(name: str) -> bool:
    folder = package_folder(name.rsplit(".", 1)[0])
    leaf = name.rsplit(".", 1)[1]
    return (folder / f"{leaf}.py").exists() or (folder / leaf / "__init__.py").exists()


def _private_owner(module: str) -> str | None:
    """The package that owns `module` if `module` is private (a part starts with ``_``,
    dunders aside): only that package's own modules may import it."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def _source_files() -> list[Path]:
    roots = [package_folder(p) for p in PACKAGES if "." not in p or
             PACKAGE_DIRS.get(p)] + [REPO / "tests", REPO / "benchmarks", REPO / "tools"]
    files = {f for root in roots if root.is_dir() for f in root.rglob("*.py")}
    files |= set(REPO.glob("*.py"))  # pyvisa_qnetlab
    return sorted(f for f in files if "build" not in f.relative_to(REPO).parts)


def test_no_module_imports_another_packages_private_modules() -> None:
    offences = []
    for path in _source_files():
        importer = module_name(path)
        for line, module in _imported_modules(path):
            owner = _private_owner(module)
            if owner is not None and importer != owner and not importer.startswith(owner + "."):
                offences.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert not offences, "\n".join(offences)
