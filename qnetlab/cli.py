"""The `qnetlab` command line: each verb a thin layer over the packages.

Exit codes: 0 success; 1 an instrument answered but failed its check, refused a setting, or
a verdict is bad; 2 a usage or lab-config error (the message names the file, the entry and
the fix); 3 an instrument could not be reached, stopped answering or answered nonsense; 130
interrupted (Ctrl-C, SIGTERM or SIGHUP: the bench is put back and an interrupted run keeps
its points, as on Ctrl-C). An exception a verb lets through gets its code from its family
(`EXIT_CODES`; the families are in `qnetlab.instruments.errors`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any

from qnetlab.instruments.errors import (
    ConfigError,
    InstrumentCommunicationError,
    InstrumentError,
    QnetlabError,
    StopSignal,
    VerdictError,
)

EXIT_OK, EXIT_CHECK_FAILED, EXIT_CONFIG, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[type[BaseException], int] = {
    ConfigError: EXIT_CONFIG,
    InstrumentCommunicationError: EXIT_UNREACHABLE,
    InstrumentError: EXIT_CHECK_FAILED,  # refused, reported, or failed otherwise
    VerdictError: EXIT_CHECK_FAILED,
    QnetlabError: EXIT_CHECK_FAILED,
    KeyboardInterrupt: EXIT_INTERRUPTED,  # Ctrl-C, and qnetlab's Interrupted / StopSignal
}
"""Exception family -> exit code. An exception gets the code of the first class of its
MRO found here, so the most specific family wins (an `InstrumentUnreachableError` is an
`InstrumentCommunicationError` before it is an `InstrumentError`)."""


def exit_code(exc: BaseException) -> int | None:
    """The exit code of `exc`'s family (`EXIT_CODES`); None if it belongs to none."""
    for cls in type(exc).__mro__:
        code = EXIT_CODES.get(cls)
        if code is not None:
            return code
    return None

_VERB_MODULES: tuple[str, ...] = ("._runs", "._characterize", ".link", "._keys", "._calibrate",
                                  "._monitor", ".bridge_cmd")
"""Modules of the later verbs. Each has ``add_parser(verbs)``, which adds its subparser with
``set_defaults(handler=...)``; the handler takes the parsed arguments and returns an exit
code. Their heavy imports happen inside the handler, so ``--help`` stays fast."""


def _add_profile(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", choices=("sim", "real"), default="sim",
        help="sim: the simulated twins in this process (default); real: the real VISA "
             "addresses (point them at `qnetlab sim serve` for a hardware-free rehearsal)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qnetlab", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log instrument I/O")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    check = verbs.add_parser(
        "check", help="connect to every instrument of a station and print identities and "
                      "key values",
        description="Connect to every instrument of a station through VISA and print each "
                    "one's identity and key parameter values with units.",
    )
    check.add_argument("config", help="station YAML, e.g. lab_configs/transducer_bench.yaml")
    _add_profile(check)
    check.add_argument("--conformance", action="store_true",
                       help="also run each driver's role conformance check (sets probe "
                            "values: only on a bench that is safe to drive)")

    sim = verbs.add_parser("sim", help="simulated instruments")
    sim_verbs = sim.add_subparsers(dest="sim_verb", required=True, metavar="SIMVERB")
    serve = sim_verbs.add_parser(
        "serve", help="serve the simulated instruments as TCP SCPI servers until stopped",
        description="Serve every simulated instrument of a station on the loopback port of "
                    "its real address, until Ctrl-C. A network config (e.g. "
                    "lab_configs/two_node_link.yaml) serves every lab it names in this one "
                    "process: both node labs and the heralding station's lab, whose time "
                    "tagger twin streams the simulated link; then `qnetlab bringup NETWORK "
                    "--profile real` rehearses the whole network over real transports.",
    )
    serve.add_argument("config", help="station YAML, or a network YAML")
    serve.add_argument("--control-port", type=int, default=None,
                       help="also open a JSON control port (fault injection, virtual time); "
                            "with a network, one per lab on this port and the next ones")
    serve.add_argument("--clock", choices=("paced", "virtual"), default="paced",
                       help="paced (default): lab time keeps up with real time, so heating "
                            "and the fridge evolve while clients wait, and acquisitions "
                            "still return at once; virtual: time moves only with "
                            "acquisitions and the control port's advance")
    serve.add_argument("--max-seconds", type=float, default=None,
                       help="stop by itself after this many seconds")
    importlib.import_module(".sim_day", __package__).add_parser(sim_verbs)  # `sim day`
    for module in _VERB_MODULES:
        importlib.import_module(module, __package__).add_parser(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    with stop_signals_as_interrupt():
        return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        if args.verb == "check":
            from ._check import run_check

            return run_check(args.config, args.profile, args.conformance)
        if args.verb == "sim" and args.sim_verb == "serve":
            return _serve(args)
        handler = getattr(args, "handler", None)
        if handler is not None:
            return int(handler(args))
    except KeyboardInterrupt as exc:
        print(interrupted_message(exc), file=sys.stderr)
        return EXIT_INTERRUPTED
    except QnetlabError as exc:
        print(f"qnetlab: {exc}", file=sys.stderr)
        return exit_code(exc) or EXIT_CHECK_FAILED
    return EXIT_CONFIG


STOP_SIGNALS: tuple[str, ...] = ("SIGTERM", "SIGHUP")


def stop_signals_as_interrupt() -> contextlib.AbstractContextManager[None]:
    """While the body runs, SIGTERM and SIGHUP raise `StopSignal` in the main thread (as
    Ctrl-C raises KeyboardInterrupt); the previous handlers come back afterwards. A second
    signal while the first is being handled is ignored, so a supervisor repeating its
    SIGTERM cannot cut the bench's restoration short (SIGKILL still ends the process)."""
    stopping = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise StopSignal(signal.Signals(signum).name)

    return _signals_call(handler)


@contextlib.contextmanager
def _signals_call(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """While the body runs, the stop signals (SIGTERM, SIGHUP) call `handler`; the previous
    handlers come back afterwards. A signal ignored when the process started stays ignored
    (``nohup qnetlab sim serve ... &`` must survive the terminal closing). Outside the main
    thread (Python delivers signals only there, and refuses handlers from elsewhere) nothing
    is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = [getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)]
    wanted = [signum for signum in wanted if signal.getsignal(signum) is not signal.SIG_IGN]
    previous = {signum: signal.signal(signum, handler) for signum in wanted}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def interrupted_message(exc: KeyboardInterrupt) -> str:
    """What an interrupted command says: by what, and the notes the framework and the verbs
    attached on the way up (the run id, the points kept, where it stopped, the report)."""
    how = f"stopped by {exc}" if isinstance(exc, StopSignal) else "interrupted"
    notes = [str(note) for note in getattr(exc, "__notes__", ())]
    return "\n".join([f"qnetlab: {how}", *(f"  {note}" for note in notes)])


def _serve(args: Any) -> int:
    from ._serve import serve

    return serve(args.config, control_port=args.control_port, clock=args.clock,
                 max_seconds=args.max_seconds)
