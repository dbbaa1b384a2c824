"""Package faces that load their names on first use (PEP 562 module ``__getattr__``).

A package lists ``module -> names`` once; its names import from their modules only when first
used, so ``qnetlab --help`` and the network processes do not pay for QCoDeS. Type checkers see
the same names through the package's ``if TYPE_CHECKING:`` imports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_attributes(package: str, module_of: Mapping[str, str], public: Sequence[str],
                    namespace: dict[str, Any],
                    ) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of `package`: a name of `module_of` is imported
    from its (relative) module on first use and kept in `namespace` (the package's globals)."""

    def getattr_(name: str) -> object:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # found directly from now on
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *public})

    return getattr_, dir_
