"""The ID1000 emulator's time-stamping/counting blocks (TSCO<n>): gating an input to windows.

On the ID1000 a TSCO block takes a first input (a delay block's output) and a window opened
and closed by the edges of other blocks; it passes its first input's events inside the
window as ``OPIN`` says and outside as ``OPOUt`` says. Commands as IDQ's example scripts use
them (redistributed in github.com/vxcarson/thesis_code and other users' code; e.g. IDQ's
histogram-filtering example)::

    TSCO<n>:FIRst:LINK DELA<m>|NONE      TSCO<n>:WINDow:ENABle ON|OFF
    TSCO<n>:WINDow:BEGIn:LINK DELA<s>|NONE   TSCO<n>:WINDow:BEGIn:DELAy <ps>
    TSCO<n>:WINDow:BEGIn:EDGE RISing|FALLing (END: the same)
    TSCO<n>:OPIN ONLYFIR|MUTE            TSCO<n>:OPOUt ONLYFIR|MUTE

(each with its query). RAW<n> streams TSCO<n>'s output here.

Modelling choices (not confirmed against the manual; check on a real unit):

* the window of a tag is taken on DELAYED times, i.e. the times the tagger records (each
  input's hidden and user delays and its jitter): a tag at t on the gated input is inside iff
  ``BEGI:DELAY <= t - s < END:DELAY`` for some recorded tag s of the input whose delay block
  opens the window (the union of every sync edge's window; `physics.gating`);
* only windows whose begin and end are linked to ONE delay block on rising edges, with
  0 <= begin < end, are emulated; other settings are stored and answered, and RECord:PLAY
  refuses them with a settings conflict (-221) naming what is not emulated;
* ``OPIN``/``OPOUt`` take ``ONLYFIR`` (pass the first input) or ``MUTE`` (pass nothing);
  the instrument's other operations (second input, AND/OR) are refused (-224);
* with the window off, every event is outside (``OPOUt`` applies): IDQ's scripts set
  ``OPOU ONLYFIR`` for an ungated block;
* reset state: block n's first input is DELA<n> (n <= 4) or NONE, window off, links NONE,
  delays 0, rising edges, ``OPIN ONLYFIR``, ``OPOUt ONLYFIR``; window delays 0 to 1 s;
* the input counter (``INPUt<n>:COUNter?``) counts the input, ungated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..physics.gating import Gate
from .scpi import (
    ILLEGAL_PARAMETER_VALUE,
    SETTINGS_CONFLICT,
    Args,
    ScpiError,
    command,
    mnemonics,
)

N_TSCO = 8
"""TSCO1-8 (blocks 1-4 feed RAW1-4)."""
_OPERATIONS = {"ONLYFIR": "ONLYFIR", "ONLYFIRST": "ONLYFIR", "MUTE": "MUTE"}
_EDGES = mnemonics("RISing", "FALLing")


@dataclass
class Tsco:
    """One TSCO block's settings (module docstring)."""

    first: int | None
    window: bool = False
    begin_link: int | None = None
    begin_delay_ps: int = 0
    begin_edge: str = "RIS"
    end_link: int | None = None
    end_delay_ps: int = 0
    end_edge: str = "RIS"
    inside: str = "ONLYFIR"
    outside: str = "ONLYFIR"


def _delay_block(word: str) -> int | None:
    """DELA<m> (or DELAY<m>) -> m, NONE -> None; other sources are not emulated."""
    word = word.upper()
    if word == "NONE":
        return None
    for prefix in ("DELAY", "DELA"):
        if word.startswith(prefix) and word[len(prefix):].isdigit():
            m = int(word[len(prefix):])
            if 1 <= m <= 8:
                return m
    raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"{word}: the emulator links delay blocks "
                    "DELA1-8 or NONE")


def _link_text(block: int | None) -> str:
    return "NONE" if block is None else f"DELA{block}"


class TscoCommands:
    """The TSCO<n> commands of the ID1000 emulator (a mixin of `IDQuantiqueID1000Emulator`,
    which provides `delay_link`, `max_delay_ps` and calls `reset_tsco` on reset)."""

    max_delay_ps: ClassVar[int]
    delay_link: dict[int, int | None]
    tsco: dict[int, Tsco]

    def reset_tsco(self) -> None:
        self.tsco = {n: Tsco(first=n if n <= 4 else None) for n in range(1, N_TSCO + 1)}

    def _tsco(self, suffix: int) -> Tsco:
        if not 1 <= suffix <= N_TSCO:
            raise ScpiError((-114, "Header suffix out of range"), str(suffix))
        return self.tsco[suffix]

    @command("TSCO<n>:FIRst:LINK")
    def _set_first(self, args: Args, suffix: int) -> None:
        self._tsco(suffix).first = _delay_block(args.text())

    @command("TSCO<n>:FIRst:LINK", query=True)
    def _get_first(self, args: Args, suffix: int) -> str:
        return _link_text(self._tsco(suffix).first)

    @command("TSCO<n>:WINDow:ENABle")
    def _set_window(self, args: Args, suffix: int) -> None:
        self._tsco(suffix).window = args.boolean()

    @command("TSCO<n>:WINDow:ENABle", query=True)
    def _get_window(self, args: Args, suffix: int) -> str:
        return "ON" if self._tsco(suffix).window else "OFF"

    @command("TSCO<n>:WINDow:BEGIn:LINK")
    def _set_begin_link(self, args: Args, suffix: int) -> None:
        self._tsco(suffix).begin_link = _delay_block(args.text())

    @command("TSCO<n>:WINDow:BEGIn:LINK", query=True)
    def _get_begin_link(self, args: Args, suffix: int) -> str:
        return _link_text(self._tsco(suffix).begin_link)

    @command("TSCO<n>:WINDow:END:LINK")
    def _set_end_link(self, args: Args, suffix: int) -> None:
        self._tsco(suffix).end_link = _delay_block(args.text())

    @command("TSCO<n>:WINDow:END:LINK", query=True)
    def _get_end_link(self, args: Args, suffix: int) -> str:
        return _link_text(self._tsco(suffix).end_link)

    @command("TSCO<n>:WINDow:BEGIn:DELAy")
    def _set_begin_delay(self, args: Args, suffix: int) -> None:
        self._tsco(suffix).begin_delay_ps = args.integer(low=0, high=self.max_delay_ps)

    @command("TSCO<n>:WINDow:BEGIn:DELAy", query=True)
    def _get_begin_delay(self, args: Args, suffix: int) -> str:
        return str(self._tsco(suffix).begin_delay_ps)

    @command("TSCO<n>:WINDow:END:DELAy")
    def _set_end_delay(self, args: Args, suffix: int) -> None:
        self._tsco(suffix).end_delay_ps = args.integer(low=0, high=self.max_delay_ps)

    @command("TSCO<n>:WINDow:END:DELAy", query=True)
    def _get_end_delay(self, args: Args, suffix: int) -> str:
        return str(self._tsco(suffix).end_delay_ps)

    @command("TSCO<n>:WINDow:BEGIn:EDGE")
    def _set_begin_edge(self, args: Args, suffix: int) -> None:
        self._tsco(suffix).begin_edge = args.choice(0, _EDGES)

    @command("TSCO<n>:WINDow:BEGIn:EDGE", query=True)
    def _get_begin_edge(self, args: Args, suffix: int) -> str:
        return {"RIS": "RISING", "FALL": "FALLING"}[self._tsco(suffix).begin_edge]

    @command("TSCO<n>:WINDow:END:EDGE")
    def _set_end_edge(self, args: Args, suffix: int) -> None:
        self._tsco(suffix).end_edge = args.choice(0, _EDGES)

    @command("TSCO<n>:WINDow:END:EDGE", query=True)
    def _get_end_edge(self, args: Args, suffix: int) -> str:
        return {"RIS": "RISING", "FALL": "FALLING"}[self._tsco(suffix).end_edge]

    @command("TSCO<n>:OPIN")
    def _set_inside(self, args: Args, suffix: int) -> None:
        self._tsco(suffix).inside = self._operation(args)

    @command("TSCO<n>:OPIN", query=True)
    def _get_inside(self, args: Args, suffix: int) -> str:
        return self._tsco(suffix).inside

    @command("TSCO<n>:OPOUt")
    def _set_outside(self, args: Args, suffix: int) -> None:
        self._tsco(suffix).outside = self._operation(args)

    @command("TSCO<n>:OPOUt", query=True)
    def _get_outside(self, args: Args, suffix: int) -> str:
        return self._tsco(suffix).outside

    @staticmethod
    def _operation(args: Args) -> str:
        word = args.text().upper()
        if word not in _OPERATIONS:
            raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"{word}: the emulator passes the first "
                            "input (ONLYFIR) or nothing (MUTE)")
        return _OPERATIONS[word]

    # -- what RAW<n> streams ------------------------------------------------------------------
    def stream_gates(self, inputs: list[int] | range) -> dict[int, Gate]:
        """Input -> its `Gate`, for each of `inputs` whose TSCO block does not simply pass it
        (window off and OPOUt ONLYFIR). ScpiError (-221) for what is not emulated."""
        out = {}
        for n in inputs:
            block = self.tsco[n]
            if block.first is None or self.delay_link.get(block.first) != n:
                raise ScpiError(SETTINGS_CONFLICT, f"TSCO{n}:FIRst:LINK is "
                                f"{_link_text(block.first)}: the emulator streams RAW{n} from "
                                f"input {n} (link a delay block of INPU{n})")
            inside, outside = block.inside == "ONLYFIR", block.outside == "ONLYFIR"
            if not block.window:
                if not outside:
                    out[n] = Gate(None, 0, 0, inside=False, outside=False)
                continue
            out[n] = Gate(self._window_input(n, block), block.begin_delay_ps,
                          block.end_delay_ps, inside, outside)
        return out

    def _window_input(self, n: int, block: Tsco) -> int | None:
        """The input whose recorded tags open TSCO<n>'s window (None: nothing opens it)."""
        if block.begin_link != block.end_link or block.begin_edge != "RIS" or (
                block.end_edge != "RIS"):
            raise ScpiError(SETTINGS_CONFLICT, f"TSCO{n}'s window: the emulator opens and "
                            "closes a window on the rising edges of one delay block "
                            "(BEGI:LINK = END:LINK, EDGE RISING)")
        if not block.begin_delay_ps < block.end_delay_ps:
            raise ScpiError(SETTINGS_CONFLICT, f"TSCO{n}'s window closes "
                            f"({block.end_delay_ps} ps) before it opens "
                            f"({block.begin_delay_ps} ps): the emulator needs BEGI:DELAY < "
                            "END:DELAY")
        return None if block.begin_link is None else self.delay_link.get(block.begin_link)
