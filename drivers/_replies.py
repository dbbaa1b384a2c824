"""What the VISA and ZeroMQ bases share: replies that cannot be parsed become errors that name
the instrument, and a hook that runs once a driver is fully constructed.

A reply off the wire is hostile until checked. QCoDeS turns a reply into a value with the
parameter's ``get_parser`` (and ``val_mapping``); a reply that is garbage then raises a bare
ValueError (or KeyError) that names neither the instrument nor what it said. `guard_replies`
wraps every such parser of an instrument and its channels, so a failure raises the
instrument's `reply_error` (an `InstrumentReplyError` naming instrument, address, command and
reply). It runs after the driver's ``__init__`` (`ConnectedMeta`), because vendor drivers add
channel parameters after their channels exist (the AWG5208's ``amplitude``, for one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from qcodes.instrument import InstrumentBase
from qcodes.instrument.instrument_meta import InstrumentMeta
from qcodes.parameters import DelegateParameter, Parameter

from qnetlab.instruments.errors import InstrumentReplyError

PARSE_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError, KeyError, IndexError,
                                             ArithmeticError)
"""What a parser raises on a reply it cannot make sense of."""


class ReplyChecking(Protocol):
    def reply_error(self, reply: Any, problem: str, command: str | None = None,
                    what: str = "") -> InstrumentReplyError: ...


class ConnectedMeta(InstrumentMeta):
    """Runs ``instance._after_init()`` once the whole ``__init__`` (the vendor driver's
    included) has succeeded; if that fails, the instrument is closed and the error raised."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        instance = super().__call__(*args, **kwargs)
        try:
            instance._after_init()
        except BaseException:
            instance.close()
            raise
        return instance


def all_parameters(instrument: InstrumentBase) -> Iterator[Parameter]:
    """Every Parameter of `instrument` and of its submodules (channels), once each."""
    seen: set[int] = set()
    stack: list[InstrumentBase] = [instrument]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for param in node.parameters.values():
            if isinstance(param, Parameter) and id(param) not in seen:
                seen.add(id(param))
                yield param
        for sub in node.submodules.values():
            if isinstance(sub, InstrumentBase):
                stack.append(sub)
            else:  # a ChannelList / ChannelTuple: its channels
                stack.extend(ch for ch in sub if isinstance(ch, InstrumentBase))


def _in_mapping(value: Any, inverse: dict[Any, Any]) -> bool:
    # As QCoDeS looks a reply up: the value itself, else the value as an int.
    if value in inverse:
        return True
    try:
        return int(value) in inverse
    except PARSE_ERRORS:
        return False


def _checked(param: Parameter, parser: Callable[[Any], Any] | None,
             owner: ReplyChecking) -> Callable[[Any], Any]:
    inverse = param.inverse_val_mapping

    def parse(raw: Any) -> Any:
        try:
            value = parser(raw) if parser is not None else raw
        except PARSE_ERRORS as exc:
            raise owner.reply_error(raw, f"{type(exc).__name__}: {exc}",
                                    what=param.full_name) from exc
        if inverse is not None and not _in_mapping(value, inverse):
            raise owner.reply_error(raw, f"not one of {sorted(map(str, inverse))}",
                                    what=param.full_name)
        return value

    parse.__qnet_checked__ = True  # type: ignore[attr-defined]
    return parse


def guard_replies(instrument: InstrumentBase, owner: ReplyChecking) -> None:
    """Wrap the reply parsing (``get_parser``, ``val_mapping``) of every parameter of
    `instrument` so that a reply it cannot parse raises ``owner.reply_error``."""
    for param in all_parameters(instrument):
        if isinstance(param, DelegateParameter) or not param.gettable:
            continue  # a delegate parses nothing itself: its source does
        parser = param.get_parser
        if getattr(parser, "__qnet_checked__", False):
            continue
        if parser is None and param.inverse_val_mapping is None:
            continue
        param.get_parser = _checked(param, parser, owner)


def parse_reply(owner: ReplyChecking, command: str, reply: str,
                parser: Callable[[str], Any], what: str = "") -> Any:
    """`parser(reply)`, or ``owner.reply_error`` naming `command` if it cannot."""
    try:
        return parser(reply)
    except PARSE_ERRORS as exc:
        raise owner.reply_error(reply, f"{type(exc).__name__}: {exc}", command=command,
                                what=what) from exc
