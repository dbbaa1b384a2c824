"""ID Quantique ID1000 Time Controller: a `TimeTagger` over ZeroMQ.

Follows the ID1000 Time Controller user manual and its SCPI programming guide (ID Quantique),
as exercised by IDQ's example scripts (redistributed in github.com/vxcarson/thesis_code,
``utils/common.py``, ``utils/acquisitions/timestamps.py``, ``streams.py``) and MSL's ID900
driver (github.com/MSLNZ/pr-single-photons, ``photons/equipment/idq_time_controller.py``):

* control: SCPI text over ZeroMQ REQ/REP, ``tcp://<tc>:5555``; every command is answered and
  a failure ends in ``SCPI_ERR_...`` (`drivers.zmq_instrument.ZmqInstrument`);
* per input n: ``INPUt<n>:ENABle``, ``INPUt<n>:THREshold <V>V``; the delay is a DELAY block
  linked to the input (``DELAy<n>:INPOrt:LINK INPU<n>``, ``DELAy<n>:VALUe <ps>``);
* timestamps: IDQ's data-link service (``DataLinkTargetService``, REQ/REP on port 6060 of the
  host that runs it, JSON replies) opens a stream per input with ``start-stream --channel <n>
  --address <tc host> --stream-port <p>`` and forwards the tags on a ZeroMQ PAIR socket on
  port p; the Time Controller sends input n's tags while ``RAW<n>:SEND ON``; a recording is
  ``REC:TRIG:ARM:MODE MANUal; REC:ENABle ON; REC:STOP; REC:NUM 1; REC:DURation <ps>;
  REC:PLAY``; an empty PAIR message ends the recording; ``RAW<n>:ERRORS?`` is non-zero when
  timestamps were lost on the way;
* gating (`TimeTagger.gate`): the time-stamping/counting block n takes input n's delay block
  as its first input and passes its events only inside a window opened and closed by the
  rising edges of the sync input's delay block, as IDQ's histogram-filtering example sets a
  window: ``TSCO<n>:FIR:LINK DELA<n>`` (at connect), ``TSCO<n>:WIND:BEGI:LINK DELA<s>``,
  ``TSCO<n>:WIND:BEGI:DELAY <ps>``, ``TSCO<n>:WIND:BEGI:EDGE RISING``, the same for
  ``END``, ``TSCO<n>:OPIN ONLYFIR`` and ``TSCO<n>:OPOUt MUTE`` (only first-input events
  inside the window pass), ``TSCO<n>:WIND:ENAB ON``; ungated: ``TSCO<n>:WIND:ENAB OFF``,
  ``TSCO<n>:OPOUt ONLYFIR`` (IDQ's timestamp example sets an ungated block so).

Not confirmed (no public copy of the manual was at hand): the stream's binary format, taken as
little-endian uint64 timestamps in 1 ps units from the start of the recording; that the data
service sends the empty message at the end of each recording; the threshold range (+-2 V
assumed) and the meaning of the ``RAW<n>:ERRORS?`` count (taken as "some loss", so blocks carry
``lost_tags=None``); that RAW<n> streams TSCO<n>'s output, so that a window on TSCO<n> gates
the timestamps (IDQ's timestamp example links them explicitly, ``RAW<n>:STOP:LINK TSCO<n>``,
which is not sent here); the window delays' range (0 to 1 s taken, as for the delay blocks)
and resolution (1 ps); that the window compares the delayed signals (each input's delay
block included), as the tags are recorded.

Why the ID1000: its control and data interfaces are published ZeroMQ protocols that need no
vendor library in the process (Swabian's and PicoQuant's need their compiled SDKs), so driver
and emulator can speak the real wire protocol.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import zmq
from qcodes.instrument import InstrumentChannel
from qcodes.validators import Bool, Ints, Numbers

from qnetlab.drivers.zmq_instrument import ZmqInstrument, ZmqRequester
from qnetlab.instruments.errors import (
    InstrumentReplyError,
    InstrumentReportedError,
    InstrumentTimeoutError,
)
from qnetlab.instruments.tag_blocks import TagBlock
from qnetlab.instruments.time_tagger import TagGate, TimeTagger, delay_to_ps

N_INPUTS = 4
GATE_RANGE_S = (0.0, 1.0)
"""s, the window delays taken (not confirmed: the module docstring)."""


def _until_quiet(poller: zmq.Poller, ready: list[tuple[Any, int]], looks: int = 4,
                 ) -> Iterator[tuple[Any, int]]:
    """`ready`, then whatever a non-waiting poll finds ready after it was read, up to `looks`
    more times."""
    for _ in range(looks + 1):
        if not ready:
            return
        yield from ready
        ready = poller.poll(0)


def _number(reply: str) -> float:
    """A number from a reply that may carry a unit ("0.5000V", "1000TB")."""
    return float(reply.strip().rstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))


class ID1000Input(InstrumentChannel["IDQuantiqueID1000"]):
    """One input (1-4) of the ID1000."""

    def __init__(self, parent: IDQuantiqueID1000, name: str, number: int) -> None:
        super().__init__(parent, name)
        self.number = number
        self.add_parameter(
            "enabled", label="Input enabled",
            set_cmd=f"INPUt{number}:ENABle {{}}", get_cmd=f"INPUt{number}:ENABle?",
            val_mapping={True: "ON", False: "OFF"}, vals=Bool(),
        )
        self.add_parameter(
            "trigger_level", unit="V", label="Discriminator threshold",
            set_cmd=f"INPUt{number}:THREshold {{:.4f}}V", get_cmd=f"INPUt{number}:THREshold?",
            get_parser=_number, vals=Numbers(-2.0, 2.0),
        )
        # The tagger takes the delay in integer ps; the role is SI (s).
        self.add_parameter(
            "delay", unit="s", label="Input delay",
            set_cmd=lambda s: self.write(f"DELAy{number}:VALUe {delay_to_ps(s)}"),
            get_cmd=f"DELAy{number}:VALUe?", get_parser=lambda r: _number(r) * 1e-12,
            vals=Numbers(0.0, 1.0),  # MSL's ID900 driver: 0-1 s (>4 us not guaranteed)
        )
        self.add_parameter(
            "counts", label="Counts in the integration window",
            get_cmd=f"INPUt{number}:COUNter?", get_parser=int,
        )
        # The gate: TSCO<n>'s window (module docstring); the role's `gate` sets them together.
        tsco = f"TSCO{number}"
        self.add_parameter(
            "gate_enabled", label="Tags pass only inside the gate's windows",
            set_cmd=self._set_gate_enabled, get_cmd=self._get_gate_enabled, vals=Bool(),
        )
        for name, end, label in (("gate_open", "BEGI", "opens"), ("gate_close", "END",
                                                                  "closes")):
            self.add_parameter(
                name, unit="s", label=f"Gate {label} after the sync tag",
                set_cmd=lambda s, end=end: self.write(
                    f"{tsco}:WIND:{end}:DELAY {delay_to_ps(s)}"),
                get_cmd=f"{tsco}:WIND:{end}:DELAY?", get_parser=lambda r: _number(r) * 1e-12,
                vals=Numbers(*GATE_RANGE_S),
            )
        self.add_parameter(
            "gate_sync", label="Input whose tags open and close the gate",
            set_cmd=self._set_gate_sync, get_cmd=f"{tsco}:WIND:BEGI:LINK?",
            get_parser=_delay_block_input, vals=Ints(1, N_INPUTS),
        )

    def _set_gate_enabled(self, on: bool) -> None:
        tsco = f"TSCO{self.number}"
        if on:
            self.write(f"{tsco}:OPIN ONLYFIR")
            self.write(f"{tsco}:OPOUt MUTE")
            self.write(f"{tsco}:WIND:ENAB ON")
        else:
            self.write(f"{tsco}:WIND:ENAB OFF")
            self.write(f"{tsco}:OPOUt ONLYFIR")

    def _get_gate_enabled(self) -> bool:
        tsco = f"TSCO{self.number}"
        window = self.ask(f"{tsco}:WIND:ENAB?").strip().upper() in ("ON", "1")
        return window and self.ask(f"{tsco}:OPOUt?").strip().upper() == "MUTE"

    def _set_gate_sync(self, sync: int) -> None:
        # Delay block s carries input s (linked at connect): its rising edges open and close.
        tsco = f"TSCO{self.number}"
        for end in ("BEGI", "END"):
            self.write(f"{tsco}:WIND:{end}:LINK DELA{sync}")
            self.write(f"{tsco}:WIND:{end}:EDGE RISING")


def _delay_block_input(reply: str) -> int | None:
    """The input of a delay block named in a reply ("DELA3" -> 3; "NONE" -> None)."""
    word = reply.strip().upper()
    if word == "NONE":
        return None
    for prefix in ("DELAY", "DELA"):
        if word.startswith(prefix) and word[len(prefix):].isdigit():
            return int(word[len(prefix):])
    raise ValueError(f"not a delay block: {reply!r}")


class IDQuantiqueID1000(ZmqInstrument, TimeTagger):
    """ID Quantique ID1000 Time Controller (see the module docstring).

    Args:
        address: the Time Controller's SCPI socket, ``tcp://host:5555``.
        data_address: the data-link service, ``tcp://host:6060`` (it runs on a PC; default:
            this one). Stream sockets connect to its host.
        stream_port_base: input n streams on port ``stream_port_base + n`` (IDQ's examples
            use 4241 + n).
        stream_latency_s: how long after a tag's time it surely has arrived, s. A streamed
            block holds back tags later than the stream's front - this (the front: the time
            since REC:PLAY, or the latest tag received on any input when the whole stream
            runs late), and later than the latest tag of any input still sending but behind
            (a message within this much wall time whose last tag lags the front by more than
            this: the inputs stream separately, one can run behind another). An input that
            has sent nothing for this long holds nothing back: a sparse detector's silence
            cannot be told from a stalled stream, and waiting on it would hold every herald
            for the detector's whole gap between clicks. A tag that comes later still is
            dropped and the next block flagged overflowed (counted in `late_tags`): blocks
            stay sorted whatever the link does.
        block_interval_s: how often streamed blocks are handed on, s. A heralding station
            reads its tagger with ~0.001 (and ``stream_latency_s`` ~0.002): a herald is then
            published a few ms after its photons.
        error_check_interval_s: how often the inputs' loss counters (``RAW<n>:ERRORS?``, one
            control round trip per input) are read, s. Slower than the blocks, so a
            millisecond block interval does not ask the control socket thrice a millisecond;
            a loss is then flagged on the first block cut after the check that saw it (the
            blocks since the check before may have held it already: see `_merge`).
        stream_end_timeout_s: how long past the end of a recording to wait for its end
            message, s.
    """

    def __init__(self, name: str, address: str, data_address: str = "tcp://127.0.0.1:6060",
                 *, timeout: float = 5.0, stream_port_base: int = 4241,
                 stream_latency_s: float = 0.1, block_interval_s: float = 0.05,
                 error_check_interval_s: float = 0.05, stream_end_timeout_s: float = 5.0,
                 **kwargs: Any) -> None:
        super().__init__(name, address, timeout=timeout, **kwargs)
        self.data_address = data_address
        self.stream_port_base = stream_port_base
        self.stream_latency_s = stream_latency_s
        self.block_interval_s = block_interval_s
        self.error_check_interval_s = error_check_interval_s
        self.late_tags = 0
        """Tags dropped since the driver opened because they came after a block that should
        have held them had been handed on (see `stream_latency_s`)."""
        self.stream_end_timeout_s = stream_end_timeout_s
        self._data = ZmqRequester(data_address, timeout, f"{name}'s data-link service at "
                                  f"{data_address}")
        self._inputs: dict[int, ID1000Input] = {}
        for n in range(1, N_INPUTS + 1):
            channel = ID1000Input(self, f"input{n}", n)
            self.add_submodule(f"input{n}", channel)
            self._inputs[n] = channel
            # Delay block n acts on input n (MSL's ID900 driver links them the same way),
            # and time-stamping block n (what RAW<n> streams, gated or not) takes it.
            self.write(f"DELAy{n}:INPOrt:LINK INPU{n}")
            self.write(f"TSCO{n}:FIR:LINK DELA{n}")

    supports_gating = True
    gate_range_s = GATE_RANGE_S

    def _set_gate(self, channel: int, gate: TagGate) -> None:
        ch = self._inputs[channel]
        ch.gate_sync(gate.sync_channel)
        # Widen before narrowing: each write leaves a window that opens before it closes.
        if gate.open_s >= (ch.gate_close() or 0.0):
            ch.gate_close(gate.close_s)
            ch.gate_open(gate.open_s)
        else:
            ch.gate_open(gate.open_s)
            ch.gate_close(gate.close_s)
        ch.gate_enabled(True)

    def _clear_gate(self, channel: int) -> None:
        self._inputs[channel].gate_enabled(False)

    def _read_gate(self, channel: int) -> TagGate | None:
        ch = self._inputs[channel]
        if not ch.gate_enabled():
            return None
        sync = ch.gate_sync()
        if sync is None:
            raise InstrumentReplyError(
                f"{self.name}: input {channel} is gated but its window is linked to no delay "
                f"block (TSCO{channel}:WIND:BEGI:LINK? NONE); ungate it or gate it again")
        return TagGate(int(sync), float(ch.gate_open()), float(ch.gate_close()))

    @property
    def tagger_channels(self) -> Mapping[int, ID1000Input]:
        return self._inputs

    def close(self) -> None:
        # QCoDeS strips an instrument's attributes when it closes: closed twice (or after a
        # station that took over its name closed it), there is nothing left to close.
        data = getattr(self, "_data", None)
        if data is not None:
            data.close()
        super().close()

    # -- data-link service ----------------------------------------------------------------------
    def data_service(self, command: str) -> Any:
        """Send one command to the data-link service; its JSON reply (errors raise)."""
        text = self._data.request(command)
        try:
            answer = json.loads(text) if text.strip() else None
        except ValueError as exc:
            self._data.reset()
            raise InstrumentReplyError(
                f"{self.name}'s data-link service at {self.data_address}: could not parse "
                f"the reply {text[:200]!r} to {command!r} (not JSON: {exc}). The socket is "
                "reopened before the next command") from exc
        # A refusal is {"error": {"description": ...}}; a stream's status carries its last
        # error as a plain field ("error": null when all is well), which is data, not refusal.
        error = answer.get("error") if isinstance(answer, dict) else None
        if isinstance(error, dict):
            description = error.get("description") or "unknown error"
            raise InstrumentReportedError(
                f"{self.name}'s data-link service at {self.data_address} refused "
                f"{command!r}: {description}")
        return answer

    # -- recording ------------------------------------------------------------------------------
    def acquire(self, duration_s: float) -> TagBlock:
        """Record for `duration_s` s; all tags as one sorted block. Nothing is handed on
        before the recording ends, so no tag can come late however far one input's stream
        runs behind another's: the low `stream_latency_s` a heralding station streams with
        does not cost a calibration's recording its tags on a busy host."""
        latency = self.stream_latency_s
        self.stream_latency_s = max(latency, duration_s + self.stream_end_timeout_s)
        try:
            return super().acquire(duration_s)
        finally:
            self.stream_latency_s = latency

    def _blocks(self, duration_s: float) -> Iterator[TagBlock]:
        inputs = [n for n, ch in self._inputs.items() if ch.enabled()]
        # The recording timer as IDQ's example script sets it (duration in ps).
        self.write("REC:TRIG:ARM:MODE MANUal")
        self.write("REC:ENABle ON")
        self.write("REC:STOP")
        self._wait_stopped()  # a recording left running (a reader that stopped early) ends
        self.write("REC:NUM 1")
        self.write(f"REC:DURation {round(duration_s * 1e12)}")
        if not inputs:
            return
        tc_host = urlsplit(self.address).hostname or "127.0.0.1"
        data_host = urlsplit(self.data_address).hostname or "127.0.0.1"
        context: zmq.Context[Any] = zmq.Context.instance()
        streams: dict[int, tuple[str, zmq.Socket[Any]]] = {}
        complete = False
        try:
            for n in inputs:
                self.write(f"RAW{n}:ERRORS:CLEAR")
                port = self.stream_port_base + n
                answer = self.data_service(
                    f"start-stream --channel {n} --address {tc_host} --stream-port {port}")
                sock = context.socket(zmq.PAIR)
                sock.setsockopt(zmq.LINGER, 0)
                sock.connect(f"tcp://{data_host}:{port}")
                if not isinstance(answer, dict) or "id" not in answer:
                    sock.close(0)
                    raise InstrumentReplyError(
                        f"{self.name}'s data-link service at {self.data_address}: its reply "
                        f"{answer!r} to start-stream has no stream id")
                streams[n] = (str(answer["id"]), sock)
                self.write(f"RAW{n}:SEND ON")
            before = time.monotonic()
            self.write("REC:PLAY")
            # The recording starts somewhere inside this exchange: its midpoint is the best
            # estimate (off by at most half a control round trip, ~0.1 ms on a LAN).
            self.recording_started = t_play = (before + time.monotonic()) / 2
            yield from self._merge({n: s for n, (_, s) in streams.items()}, duration_s, t_play)
            complete = True
        finally:
            if not complete:  # the reader stopped early (or failed): so does the recording
                with contextlib.suppress(Exception):
                    self.write("REC:STOP")
            for n, (stream_id, sock) in streams.items():
                # Best effort: a failure here must not hide the error that got us here.
                with contextlib.suppress(Exception):
                    self.write(f"RAW{n}:SEND OFF")
                with contextlib.suppress(Exception):
                    self.data_service(f"stop --id {stream_id}")
                sock.close(0)

    def _wait_stopped(self) -> None:
        """Wait (at most `stream_end_timeout_s`) until REC:STAGe? no longer says PLAYING:
        REC:STOP ends a recording, but not before its reply."""
        deadline = time.monotonic() + self.stream_end_timeout_s
        while self.ask("REC:STAGe?").strip().upper().startswith("PLAY"):
            if time.monotonic() > deadline:
                raise InstrumentTimeoutError(
                    f"{self.name}: the recording still plays {self.stream_end_timeout_s} s "
                    "after REC:STOP. Check the Time Controller (REC:STAGe?) and stop it by "
                    "hand")
            time.sleep(0.01)

    def _merge(self, sockets: dict[int, zmq.Socket[Any]], duration_s: float,
               t_play: float) -> Iterator[TagBlock]:
        """Merge the inputs' streams into sorted, consecutive blocks (see `stream_latency_s`)."""
        poller = zmq.Poller()
        owner = {}
        for n, sock in sockets.items():
            poller.register(sock, zmq.POLLIN)
            owner[sock] = n
        pending: dict[int, list[np.ndarray]] = {n: [] for n in sockets}
        ended: set[int] = set()
        seen_errors = dict.fromkeys(sockets, 0)
        loss_windows: list[tuple[float, float]] = []  # (from, to) ps where tags were lost
        fronts = dict.fromkeys(sockets, -1)  # per input: its latest timestamp received, ps
        heard = dict.fromkeys(sockets, -np.inf)  # per input: monotonic s of its last message
        latest = -1  # latest timestamp received on any input, ps
        emitted_to = 0.0  # ps: every tag before this has been handed on
        index = 0
        deadline = t_play + duration_s + self.stream_end_timeout_s
        next_block = time.monotonic() + self.block_interval_s
        next_check = time.monotonic() + self.error_check_interval_s
        while True:
            # Sleep until the next block is due (precise with a lowered timer slack), then
            # take what has arrived: waking for every message instead costs a thread switch
            # per input per data-link message (thousands a second on a busy link) and hands
            # nothing on sooner, since tags leave only with a block.
            wait_s = next_block - time.monotonic()
            if wait_s > 0:
                time.sleep(wait_s)
            ready = poller.poll(0)
            # Drain until a look finds nothing more (a few looks at most): the inputs' messages
            # of one moment arrive on separate sockets, and an input read only on the next
            # block's poll could find its tags behind the block cut meanwhile.
            for sock, _ in _until_quiet(poller, ready):
                n = owner[sock]
                while True:  # drain what has arrived
                    try:
                        message = sock.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if not message:
                        ended.add(n)
                        poller.unregister(sock)
                        break
                    tags = np.frombuffer(message, dtype="<u8").astype(np.int64)
                    if tags.size and tags[0] < emitted_to:  # behind a block handed on
                        late = int(np.searchsorted(tags, emitted_to))
                        self.late_tags += late
                        tags = tags[late:]
                        loss_windows.append((emitted_to, emitted_to))  # flags the next block
                    if tags.size:
                        pending[n].append(tags)
                        fronts[n] = int(tags[-1])
                        heard[n] = time.monotonic()
                        latest = max(latest, fronts[n])
            done = len(ended) == len(sockets)
            now = time.monotonic()
            next_block += self.block_interval_s
            if next_block <= now:  # woken late (a loaded machine): no burst of blocks
                next_block = now + self.block_interval_s
            if done or now >= next_check:
                next_check = now + self.error_check_interval_s
                for n in sockets:
                    errors = int(self.ask_parsed(f"RAW{n}:ERRORS?", _number, "a count"))
                    if errors > seen_errors[n]:
                        seen_errors[n] = errors
                        # Lost tags lie between what was handed on and what has arrived
                        # (or, found by a later check, in blocks already handed on: those
                        # cannot be flagged any more).
                        loss_windows.append((emitted_to, max(latest, emitted_to)))
            horizon = np.inf if done else max(emitted_to, self._horizon(
                min((now - t_play) * 1e12, latest), fronts,
                self._silent(sockets, ended, heard, now - t_play, now)))
            block = self._cut(pending, horizon, index)
            overflow = any(lo <= horizon and hi >= emitted_to for lo, hi in loss_windows)
            loss_windows = [(lo, hi) for lo, hi in loss_windows if hi >= horizon]
            # An empty block too: a consumer learns the stream is alive (and can stop it)
            # every block interval, even while every input is dark.
            yield TagBlock(block.timestamps, block.channels, overflow, None, index)
            index += 1
            emitted_to = horizon
            if done:
                return
            if now > deadline:
                missing = sorted(set(sockets) - ended)
                raise InstrumentTimeoutError(
                    f"{self.name}: the data-link service at {self.data_address} did not end "
                    f"the stream of input(s) {missing} within {self.stream_end_timeout_s} s "
                    "of the recording's end. Check the service is running and RAW<n>:SEND "
                    "is ON")

    def _silent(self, inputs: Mapping[int, Any], ended: set[int], heard: dict[int, float],
                since_play_s: float, now: float) -> set[int]:
        """Inputs that hold no block back: ended, or nothing heard for the stream latency;
        an input not yet heard at all waits out the recording's first 10 latencies (its
        first tags may come a while after another input's: they are still the first)."""
        latency = self.stream_latency_s
        return {n for n in inputs
                if n in ended or (now - heard[n] > latency
                                  and (heard[n] > -np.inf or since_play_s > 10 * latency))}

    def _horizon(self, front: float, fronts: dict[int, int], silent: set[int]) -> float:
        """Tags before this (ps) may be handed on: the stream's `front` less the stream
        latency, and no later than the latest tag of any input not `silent` (ended, or
        nothing heard for the stream latency; see `stream_latency_s`)."""
        horizon = front - self.stream_latency_s * 1e12
        for n, last in fronts.items():
            if n not in silent:
                horizon = min(horizon, last)
        return horizon

    @staticmethod
    def _cut(pending: dict[int, list[np.ndarray]], horizon: float, index: int) -> TagBlock:
        """The tags before `horizon` (ps), merged in time order; the rest stay pending."""
        parts: dict[int, np.ndarray] = {}
        for n, arrays in pending.items():
            tags = np.concatenate(arrays) if arrays else np.empty(0, np.int64)
            cut = int(np.searchsorted(tags, horizon, side="left")) if np.isfinite(
                horizon) else tags.size
            parts[n] = tags[:cut]
            pending[n] = [tags[cut:]] if cut < tags.size else []
        return TagBlock.from_channels(parts, index=index, dtype=np.int8)
