"""What a lab database holds and what each sequence takes, for people at a terminal.

`run_rows` lists a database's runs (id, sequence, when, status, verdict) from QCoDeS's own
tables; `describe` gives a sequence's one-line description, and `option_rows` its options
with type, default and the unit-bearing docstring each field of its options dataclass has
(read from the source: dataclasses keep no field docstrings at run time).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import json
import textwrap
import typing
from pathlib import Path
from typing import Any

from .data import ANALYSIS, SEQUENCE, STATUS, open_database

__all__ = ["describe", "option_rows", "run_rows"]


def run_rows(db_path: str | Path) -> list[list[str]]:
    """One row per run of the database: id, sequence, started (local time), status and the
    stored analysis's verdict ("not analyzed" if it has none). FileNotFoundError if there is
    no database at `db_path` (opening one would create it)."""
    from qcodes.dataset import experiments

    path = Path(db_path)
    if not path.is_file():
        raise FileNotFoundError(f"no database at {path}")
    rows = []
    with open_database(path) as conn:
        for experiment in experiments(conn=conn):
            for ds in experiment.data_sets():
                meta = ds.metadata
                rows.append([str(ds.run_id), _text(meta.get(SEQUENCE), ds.name),
                             ds.run_timestamp() or "", _text(meta.get(STATUS), "unknown"),
                             _verdict(meta.get(ANALYSIS))])
    return sorted(rows, key=lambda row: int(row[0]))


def _text(stored: Any, default: str) -> str:
    if stored is None:
        return default
    try:
        return str(json.loads(stored))
    except (TypeError, ValueError):
        return str(stored)


def _verdict(stored: Any) -> str:
    if stored is None:
        return "not analyzed"
    try:
        verdict = json.loads(stored)["verdict"]
    except (TypeError, ValueError, KeyError):
        return "unreadable analysis"
    if verdict.get("good"):
        return "good"
    return f"bad: {verdict.get('reason')}"


def describe(cls: type) -> str:
    """The first sentence of a sequence class's docstring."""
    paragraph = " ".join((inspect.getdoc(cls) or "").split("\n\n")[0].split())
    sentence, dot, _ = paragraph.partition(". ")
    return sentence + ("." if dot else "")


def option_rows(options_class: type) -> list[list[str]]:
    """Per field of an options dataclass: name, type, default, description (its docstring,
    which names the unit)."""
    docs = _field_docs(options_class)
    hints = typing.get_type_hints(options_class)
    rows = []
    for f in dataclasses.fields(options_class):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        hint = hints.get(f.name, f.type)
        kind = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
        rows.append([f.name, kind, default, " ".join(docs.get(f.name, "").split())])
    return rows


def _field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (a string right after ``name: type = default``) of `cls` and its
    dataclass bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        tree = ast.parse(source)
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for item, after in itertools.pairwise(body):
            if (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[item.target.id] = after.value.value
    return docs
