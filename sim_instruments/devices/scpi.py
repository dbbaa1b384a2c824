"""A small SCPI engine for the emulators (IEEE 488.2 and SCPI-1999).

Commands are declared in the manuals' own notation: upper case is the short form, the whole
word the long form, ``[...]`` an optional node and ``<n>`` a numeric suffix, for example
``[SOURce]:FREQuency[:CW]`` or ``CALCulate<n>:DATA``. Headers match case-insensitively in
short or long form. A message may hold several commands separated by ``;``; a command that
follows without a leading ``:`` is resolved relative to the previous one's parent node, as
SCPI-1999 vol. 1 section 6.2.4 says, and from the root if that fails. Errors go to a queue
read with ``SYSTem:ERRor?`` and set the standard event status register (``*ESR?``).
"""

from __future__ import annotations

import itertools
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ..physics.world import LabWorld

# SCPI-1999 vol. 2, chapter 21: standard error numbers and messages.
NO_ERROR = (0, "No error")
COMMAND_ERROR = (-100, "Command error")
SYNTAX_ERROR = (-102, "Syntax error")
DATA_TYPE_ERROR = (-104, "Data type error")
PARAMETER_NOT_ALLOWED = (-108, "Parameter not allowed")
MISSING_PARAMETER = (-109, "Missing parameter")
UNDEFINED_HEADER = (-113, "Undefined header")
SUFFIX_OUT_OF_RANGE = (-114, "Header suffix out of range")
EXECUTION_ERROR = (-200, "Execution error")
SETTINGS_CONFLICT = (-221, "Settings conflict")
DATA_OUT_OF_RANGE = (-222, "Data out of range")
ILLEGAL_PARAMETER_VALUE = (-224, "Illegal parameter value")
HARDWARE_ERROR = (-240, "Hardware error")
SYSTEM_ERROR = (-310, "System error")
QUEUE_OVERFLOW = (-350, "Queue overflow")
QUERY_INTERRUPTED = (-410, "Query INTERRUPTED")

_ESR_QUERY_ERROR = 1 << 2
_ESR_DEVICE_ERROR = 1 << 3
_ESR_EXECUTION_ERROR = 1 << 4
_ESR_COMMAND_ERROR = 1 << 5


class ScpiError(Exception):
    """Raised by a handler; becomes an entry in the error queue."""

    def __init__(self, error: tuple[int, str], detail: str = "") -> None:
        super().__init__(error[1] + (f"; {detail}" if detail else ""))
        self.code = error[0]
        self.message = error[1] + (f"; {detail}" if detail else "")


# -- command patterns ----------------------------------------------------------------------

_NODE = re.compile(r"(\[)?:?([A-Za-z*]+)(<\w+>)?(\])?")


@dataclass(frozen=True)
class _Node:
    short: str
    long: str
    has_suffix: bool

    def match(self, token: str) -> tuple[bool, int | None]:
        word = token.upper()
        suffix: int | None = None
        if self.has_suffix:
            stripped = word.rstrip("0123456789")
            if stripped != word:
                suffix = int(word[len(stripped):])
                word = stripped
        return word in (self.short, self.long), suffix


def _parse_pattern(pattern: str) -> list[tuple[_Node, bool]]:
    nodes: list[tuple[_Node, bool]] = []
    for part in re.findall(r"\[?:?[A-Za-z*]+(?:<\w+>)?\]?", pattern):
        m = _NODE.fullmatch(part)
        if m is None:  # pragma: no cover - patterns are ours
            raise ValueError(f"bad SCPI pattern {pattern!r}")
        word = m.group(2)
        short = "".join(c for c in word if not c.islower()).upper()
        nodes.append((_Node(short, word.upper(), m.group(3) is not None), m.group(1) is not None))
    return nodes


def _expansions(pattern: str) -> list[tuple[_Node, ...]]:
    nodes = _parse_pattern(pattern)
    optional = [i for i, (_, opt) in enumerate(nodes) if opt]
    out = []
    for keep in itertools.product((True, False), repeat=len(optional)):
        dropped = {i for i, k in zip(optional, keep, strict=True) if not k}
        out.append(tuple(n for i, (n, _) in enumerate(nodes) if i not in dropped))
    return out


Handler = Callable[..., "str | bytes | None"]
"""A command handler: None for no reply, text, or bytes for replies that are not ASCII (an IEEE
488.2 definite-length block of binary data, ``#<n><length><bytes>``)."""


def command(pattern: str, *, query: bool = False) -> Callable[[Handler], Handler]:
    """Declare an emulator method as the handler of a command (or, with query=True, its query).

    The handler gets the parameters as an `Args` and the header's numeric suffixes (default 1)
    as keyword `suffix` when the pattern has any. A query handler returns the reply text, or
    bytes for a binary block (see `definite_length_block`).
    """

    def mark(func: Handler) -> Handler:
        func.__dict__.setdefault("_scpi", []).append((pattern, query))
        return func

    return mark


# -- parameters ------------------------------------------------------------------------------

_UNIT_SCALE = {
    "": 1.0, "HZ": 1.0, "KHZ": 1e3, "MHZ": 1e6, "GHZ": 1e9, "THZ": 1e12,
    "S": 1.0, "MS": 1e-3, "US": 1e-6, "NS": 1e-9, "PS": 1e-12,
    "W": 1.0, "MW": 1e-3, "UW": 1e-6, "NW": 1e-9, "PW": 1e-12,
    "M": 1.0, "MM": 1e-3, "UM": 1e-6, "NM": 1e-9,
    "DBM": 1.0, "DB": 1.0, "V": 1.0, "MV": 1e-3, "A": 1.0, "MA": 1e-3, "K": 1.0,
    "RAD": 1.0, "DEG": 1.0, "PCT": 1.0,
}
_NUMBER = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z]*)\s*")


class Args:
    """The parameters of one command, with the conversions SCPI defines."""

    def __init__(self, params: list[str]) -> None:
        self.params = params

    def __len__(self) -> int:
        return len(self.params)

    def text(self, i: int = 0) -> str:
        if i >= len(self.params) or self.params[i] == "":
            raise ScpiError(MISSING_PARAMETER)
        return self.params[i].strip().strip('"').strip("'")

    def number(
        self, i: int = 0, *, low: float | None = None, high: float | None = None,
        default: float | None = None, units: tuple[str, ...] = (),
    ) -> float:
        """A <numeric_value>: a number with an optional unit suffix, or MIN, MAX, DEF."""
        raw = self.text(i)
        keyword = raw.upper()
        if keyword in ("MIN", "MINIMUM") and low is not None:
            return low
        if keyword in ("MAX", "MAXIMUM") and high is not None:
            return high
        if keyword in ("DEF", "DEFAULT") and default is not None:
            return default
        m = _NUMBER.fullmatch(raw)
        if m is None:
            raise ScpiError(DATA_TYPE_ERROR, raw)
        unit = m.group(2).upper()
        if unit and (unit not in _UNIT_SCALE or (units and unit not in units)):
            raise ScpiError((-131, "Invalid suffix"), m.group(2))
        value = float(m.group(1)) * _UNIT_SCALE[unit]
        if (low is not None and value < low) or (high is not None and value > high):
            raise ScpiError(DATA_OUT_OF_RANGE, f"{value:g} not in [{low:g}, {high:g}]"
                            if low is not None and high is not None else raw)
        return value

    def integer(self, i: int = 0, *, low: int | None = None, high: int | None = None) -> int:
        value = self.number(i, low=low, high=high)
        if value != int(value):
            raise ScpiError(DATA_TYPE_ERROR, self.text(i))
        return int(value)

    def boolean(self, i: int = 0) -> bool:
        word = self.text(i).upper()
        if word in ("1", "ON"):
            return True
        if word in ("0", "OFF"):
            return False
        raise ScpiError(ILLEGAL_PARAMETER_VALUE, word)

    def choice(self, i: int, options: dict[str, str]) -> str:
        """One of several character data; `options` maps every accepted spelling to a value."""
        word = self.text(i).upper()
        try:
            return options[word]
        except KeyError:
            raise ScpiError(ILLEGAL_PARAMETER_VALUE, word) from None


def mnemonics(*words: str) -> dict[str, str]:
    """Accepted spellings (short and long form) of SCPI character data -> the short form, for
    `Args.choice`: mnemonics("CONTinuous") accepts CONT and CONTINUOUS, giving "CONT"."""
    out = {}
    for word in words:
        short = "".join(c for c in word if not c.islower())
        out[short.upper()] = short
        out[word.upper()] = short
    return out


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    """Split `text` at `separator` where it is not inside a quoted string; parts stripped."""
    out, cur, quote = [], [], ""
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            cur.append(ch)
        elif ch == separator:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return out


def split_params(text: str) -> list[str]:
    """Split a parameter list at commas outside quotes."""
    out = _split_outside_quotes(text, ",")
    return out if out != [""] else []


def split_commands(message: str) -> list[str]:
    """Split a program message at semicolons outside quotes."""
    return [c for c in _split_outside_quotes(message, ";") if c]


# -- the device ----------------------------------------------------------------------------------


class ScpiDevice:
    """Base of every emulator: command dispatch, IEEE 488.2 common commands, error queue.

    Subclasses set `identity` (the four *IDN? fields) and declare their commands with
    `@command`. `handle(message)` takes one program message (no terminator) and returns the
    response message (str, or bytes when a reply unit is a binary block), or None when nothing
    is to be sent back.
    """

    identity: ClassVar[tuple[str, str, str, str]] = ("qnetlab", "emulator", "0", "0")
    options: ClassVar[str] = "0"
    terminator: ClassVar[str] = "\n"
    error_queue_size: ClassVar[int] = 30
    _table: ClassVar[dict[tuple[int, bool], list[tuple[tuple[_Node, ...], Handler]]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: dict[tuple[int, bool], list[tuple[tuple[_Node, ...], Handler]]] = {}
        for klass in reversed(cls.__mro__):
            for attr in vars(klass).values():
                for pattern, is_query in getattr(attr, "_scpi", ()):
                    for nodes in _expansions(pattern):
                        table.setdefault((len(nodes), is_query), []).append((nodes, attr))
        cls._table = table

    def __init__(self, world: LabWorld, name: str) -> None:
        self.world = world
        self.name = name
        self._errors: deque[tuple[int, str]] = deque()
        self._esr = 0
        self._cache: dict[tuple[str, bool], tuple[Handler, dict[str, int]] | None] = {}
        self.reset()

    # Subclasses extend reset() to restore their *RST state.
    def reset(self) -> None:
        pass

    def power_on(self) -> None:
        """Switch the instrument off and on again (the `restart` fault): the error queue is
        emptied, the event status register holds only PON (bit 7, IEEE 488.2 11.5.1.1.2) and
        the settings are the power-on ones, which are the *RST ones unless a model says
        otherwise (it then extends this method)."""
        self._errors.clear()
        self._esr = 1 << 7
        self.reset()

    # -- error queue --------------------------------------------------------------------------
    def push_error(self, code: int, message: str) -> None:
        if code <= -100 and code > -200:
            self._esr |= _ESR_COMMAND_ERROR
        elif code <= -200 and code > -300:
            self._esr |= _ESR_EXECUTION_ERROR
        elif code <= -400 and code > -500:
            self._esr |= _ESR_QUERY_ERROR
        else:
            self._esr |= _ESR_DEVICE_ERROR
        if len(self._errors) >= self.error_queue_size:
            self._errors[-1] = QUEUE_OVERFLOW
        else:
            self._errors.append((code, message))

    def format_error(self, code: int, message: str) -> str:
        return f'{code:+d},"{message}"'

    def next_error(self) -> str:
        code, message = self._errors.popleft() if self._errors else NO_ERROR
        return self.format_error(code, message)

    # -- dispatch -------------------------------------------------------------------------------
    def handle(self, message: str) -> str | bytes | None:
        replies: list[str | bytes] = []
        parent: list[str] = []
        for unit in split_commands(message):
            header, _, rest = unit.partition(" ")
            is_query = header.endswith("?")
            header = header.rstrip("?")
            reply: str | bytes | None
            try:
                if header.startswith("*"):
                    reply = self._common(header.upper(), is_query, rest)
                else:
                    reply, parent = self._dispatch(header, is_query, rest, parent)
            except ScpiError as err:
                self.push_error(err.code, err.message)
                continue
            if reply is not None:
                replies.append(reply)
        if not replies:
            return None
        texts = [r for r in replies if isinstance(r, str)]
        if len(texts) == len(replies):
            return ";".join(texts)
        # A binary block is not ASCII text: the whole response message becomes bytes.
        return b";".join(r.encode("ascii") if isinstance(r, str) else r for r in replies)

    def _dispatch(
        self, header: str, is_query: bool, rest: str, parent: list[str]
    ) -> tuple[str | bytes | None, list[str]]:
        absolute = header.startswith(":")
        tokens = [t for t in header.strip(":").split(":") if t]
        if not tokens:
            raise ScpiError(SYNTAX_ERROR, header)
        found = None
        if not absolute and parent:
            found = self._lookup(parent + tokens, is_query)
            if found:
                tokens = parent + tokens
        if found is None:
            found = self._lookup(tokens, is_query)
        if found is None:
            raise ScpiError(UNDEFINED_HEADER, header + ("?" if is_query else ""))
        handler, suffixes = found
        args = Args(split_params(rest.strip()))
        if not is_query and not rest.strip() and _needs_argument(handler):
            raise ScpiError(MISSING_PARAMETER, header)
        reply = handler(self, args, **suffixes) if suffixes else handler(self, args)
        return reply, tokens[:-1]

    def _lookup(self, tokens: list[str], is_query: bool) -> tuple[Handler, dict[str, int]] | None:
        key = (":".join(tokens).upper(), is_query)
        if key in self._cache:
            return self._cache[key]
        result = None
        for nodes, handler in self._table.get((len(tokens), is_query), ()):
            suffixes: dict[str, int] = {}
            for node, token in zip(nodes, tokens, strict=True):
                ok, suffix = node.match(token)
                if not ok:
                    break
                if node.has_suffix:
                    suffixes["suffix"] = suffix if suffix is not None else 1
            else:
                result = (handler, suffixes)
                break
        self._cache[key] = result
        return result

    # -- IEEE 488.2 common commands (IEEE 488.2-1992 section 10) ---------------------------
    def _common(self, header: str, is_query: bool, rest: str) -> str | None:
        if header == "*IDN" and is_query:
            return ",".join(self.identity)
        if header == "*RST" and not is_query:
            self.reset()
            return None
        if header == "*CLS" and not is_query:
            self._errors.clear()
            self._esr = 0
            return None
        if header == "*OPC":
            return "1" if is_query else None
        if header == "*WAI" and not is_query:
            return None
        if header == "*ESR" and is_query:
            value, self._esr = self._esr, 0
            return str(value)
        if header == "*STB" and is_query:
            return str((1 << 2 if self._errors else 0) | (1 << 5 if self._esr else 0))
        if header == "*TST" and is_query:
            return "0"
        if header == "*OPT" and is_query:
            return self.options
        if header in ("*ESE", "*SRE"):
            return "0" if is_query else None
        raise ScpiError(UNDEFINED_HEADER, header + ("?" if is_query else ""))

    # -- common SCPI subsystem ---------------------------------------------------------------
    @command("SYSTem:ERRor[:NEXT]", query=True)
    def _system_error(self, args: Args) -> str:
        return self.next_error()


def _needs_argument(handler: Handler) -> bool:
    return not getattr(handler, "_no_argument", False)


def no_argument(func: Handler) -> Handler:
    """Mark a setting command that takes no parameter (an event such as INITiate)."""
    func._no_argument = True  # type: ignore[attr-defined]
    return func


def definite_length_block(data: bytes) -> bytes:
    """An IEEE 488.2 (section 8.7.9) definite-length arbitrary block: #<n><length><data>."""
    length = str(len(data))
    return b"#" + str(len(length)).encode("ascii") + length.encode("ascii") + data


def fmt(value: float) -> str:
    """A number the way most SCPI instruments print an NR3: +1.23456789000E+09."""
    return f"{value:+.9E}"
