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
  timestamps were lost on the way.

Not confirmed (no public copy of the manual was at hand): the stream's binary format, taken as
little-endian uint64 timestamps in 1 ps units from the start of the recording; that the data
service sends the empty message at the end of each recording; the threshold range (+-2 V
assumed) and the meaning of the ``RAW<n>:ERRORS?`` count (taken as "some loss", so blocks carry
``lost_tags=None``).

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
from qcodes.validators import Bool, Numbers

from qnetlab.drivers.zmq_instrument import ZmqInstrument, ZmqRequester
from qnetlab.instruments.errors import (
    InstrumentReplyError,
    InstrumentReportedError,
    InstrumentTimeoutError,
)
from qnetlab.instruments.tag_blocks import TagBlock
from qnetlab.instruments.time_tagger import TimeTagger, delay_to_ps

N_INPUTS = 4


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


class IDQuantiqueID1000(ZmqInstrument, TimeTagger):
    """ID Quantique ID1000 Time Controller (see the module docstring).

    Args:
        address: the Time Controller's SCPI socket, ``tcp://host:5555``.
        data_address: the data-link service, ``tcp://host:6060`` (it runs on a PC; default:
            this one). Stream sockets connect to its host.
        stream_port_base: input n streams on port ``stream_port_base + n`` (IDQ's examples
            use 4241 + n).
        stream_latency_s: how long after a tag's time it surely has arrived, s. A streamed
            block holds back tags later than (time since REC:PLAY - this), so that a quiet
            input cannot later deliver a tag that sorts before a block already handed on.
        block_interval_s: how often streamed blocks are handed on (and the loss counters
            read), s.
        stream_end_timeout_s: how long past the end of a recording to wait for its end
            message, s.
    """

    def __init__(self, name: str, address: str, data_address: str = "tcp://127.0.0.1:6060",
                 *, timeout: float = 5.0, stream_port_base: int = 4241,
                 stream_latency_s: float = 0.1, block_interval_s: float = 0.05,
                 stream_end_timeout_s: float = 5.0, **kwargs: Any) -> None:
        super().__init__(name, address, timeout=timeout, **kwargs)
        self.data_address = data_address
        self.stream_port_base = stream_port_base
        self.stream_latency_s = stream_latency_s
        self.block_interval_s = block_interval_s
        self.stream_end_timeout_s = stream_end_timeout_s
        self._data = ZmqRequester(data_address, timeout, f"{name}'s data-link service at "
                                  f"{data_address}")
        self._inputs: dict[int, ID1000Input] = {}
        for n in range(1, N_INPUTS + 1):
            channel = ID1000Input(self, f"input{n}", n)
            self.add_submodule(f"input{n}", channel)
            self._inputs[n] = channel
            # Delay block n acts on input n (MSL's ID900 driver links them the same way).
            self.write(f"DELAy{n}:INPOrt:LINK INPU{n}")

    @property
    def tagger_channels(self) -> Mapping[int, ID1000Input]:
        return self._inputs

    def close(self) -> None:
        self._data.close()
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
        if isinstance(answer, dict) and "error" in answer:
            error = answer.get("error")
            description = (error.get("description") if isinstance(error, dict) else
                           None) or "unknown error"
            raise InstrumentReportedError(
                f"{self.name}'s data-link service at {self.data_address} refused "
                f"{command!r}: {description}")
        return answer

    # -- recording ------------------------------------------------------------------------------
    def _blocks(self, duration_s: float) -> Iterator[TagBlock]:
        inputs = [n for n, ch in self._inputs.items() if ch.enabled()]
        # The recording timer as IDQ's example script sets it (duration in ps).
        self.write("REC:TRIG:ARM:MODE MANUal")
        self.write("REC:ENABle ON")
        self.write("REC:STOP")
        self.write("REC:NUM 1")
        self.write(f"REC:DURation {round(duration_s * 1e12)}")
        if not inputs:
            return
        tc_host = urlsplit(self.address).hostname or "127.0.0.1"
        data_host = urlsplit(self.data_address).hostname or "127.0.0.1"
        context: zmq.Context[Any] = zmq.Context.instance()
        streams: dict[int, tuple[str, zmq.Socket[Any]]] = {}
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
            t_play = time.monotonic()
            self.write("REC:PLAY")
            yield from self._merge({n: s for n, (_, s) in streams.items()}, duration_s, t_play)
        finally:
            for n, (stream_id, sock) in streams.items():
                # Best effort: a failure here must not hide the error that got us here.
                with contextlib.suppress(Exception):
                    self.write(f"RAW{n}:SEND OFF")
                with contextlib.suppress(Exception):
                    self.data_service(f"stop --id {stream_id}")
                sock.close(0)

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
        latest = -1  # latest timestamp received, ps
        emitted_to = 0.0  # ps: every tag before this has been handed on
        index = 0
        deadline = t_play + duration_s + self.stream_end_timeout_s
        next_block = time.monotonic() + self.block_interval_s
        while True:
            wait_ms = max(0, round((next_block - time.monotonic()) * 1e3))
            # A blocking wait on all streams with a timeout, not a busy loop.
            for sock, _ in poller.poll(wait_ms):
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
                    pending[n].append(tags)
                    latest = max(latest, int(tags[-1]))
            done = len(ended) == len(sockets)
            now = time.monotonic()
            if not done and now < next_block:
                continue
            next_block = now + self.block_interval_s
            for n in sockets:
                errors = int(self.ask_parsed(f"RAW{n}:ERRORS?", _number, "a count"))
                if errors > seen_errors[n]:
                    seen_errors[n] = errors
                    # Lost tags lie between what was handed on and what has arrived.
                    loss_windows.append((emitted_to, max(latest, emitted_to)))
            horizon = (np.inf if done else
                       max(emitted_to, (now - t_play - self.stream_latency_s) * 1e12))
            block = self._cut(pending, horizon, index)
            overflow = any(lo <= horizon and hi >= emitted_to for lo, hi in loss_windows)
            loss_windows = [(lo, hi) for lo, hi in loss_windows if hi >= horizon]
            if len(block) or overflow:
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
