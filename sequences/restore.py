"""Settings a sequence changed, put back after the run (`LabSequence.restorer`)."""

from __future__ import annotations

import logging
from typing import Any

from qnetlab.instruments.errors import QnetlabError

log = logging.getLogger(__name__)


class Restorer:
    """Remembers settings before a sequence changes them and puts them back afterwards
    (last changed, first restored)."""

    def __init__(self) -> None:
        self._saved: list[tuple[Any, Any]] = []

    def change(self, param: Any, value: Any) -> None:
        """Set `param` to `value`, remembering its value before the first change."""
        if not any(p is param for p, _ in self._saved):
            self._saved.append((param, param.get()))
        param.set(value)

    def restore(self) -> None:
        """Put every changed setting back; a failure is logged and the rest still restored,
        then the first failure is raised (the framework reports it after saving the data)."""
        first: Exception | None = None
        for param, value in reversed(self._saved):
            try:
                param.set(value)
            except (QnetlabError, ValueError) as exc:
                log.warning("could not restore %s to %r: %s", param.full_name, value, exc)
                first = first or exc
        self._saved.clear()
        if first is not None:
            raise first
