"""Tektronix AWG5208 arbitrary waveform generator (8 channels, 2.5 GS/s, 4 markers a channel).

Reuses QCoDeS's `TektronixAWG5208` driver (base `TektronixAWG70000Base`), whose commands
follow the Tektronix AWG5200 Series Programmer Manual (077-1337-xx), and adds the qnetlab VISA
base and the `AWG` role. What the QCoDeS driver sends at init: ``*IDN?`` (the model must be
``AWG5208``), ``MMEMory:CDIRectory "\\Users\\OEM\\Documents"``; its parameters read and set
``CLOCk:SRATe``, ``SOURce<n>:VOLTage``, ``SOURce<n>:VOLTage:LEVel:IMMediate:OFFSet`` and
``OUTPut<n>:STATe``; ``stop()`` sends ``AWGControl:STOP``, ``run_state`` reads
``AWGControl:RSTATe?``, ``clearWaveformList``/``clearSequenceList`` send ``WLISt:WAVeform:
DELete ALL``/``SLISt:SEQuence:DELete ALL`` and ``setSequenceTrack`` sends ``SOURce<n>:CASSet:
SEQuence``.

Added here, from the same manual:

* per channel ``amplitude`` (V peak-to-peak, ``SOURce<n>:VOLTage``), ``output`` (bool,
  ``OUTPut<n>:STATe``) and ``skew`` (s, ``SOURce<n>:SKEW``), the role's names and types;
  QCoDeS's ``awg_amplitude`` and ``state`` stay as they were;
* ``sample_rate`` in Hz: QCoDeS declares it in "Sa/s", the role in SI (see `add_parameter`);
* the instrument's limits, read back before every upload (``WLISt:WAVeform:LMAXimum?``,
  ``LMINimum?``, ``GRANularity?``);
* uploads without files on the instrument's disk: ``WLISt:WAVeform:NEW``, then
  ``WLISt:WAVeform:DATA`` (IEEE 488.2 block of little-endian float32 samples, -1..1) and
  ``WLISt:WAVeform:MARKer:DATA`` (one byte a sample, marker m in bit m-1, the packing
  QCoDeS uses in its .wfmx files), then ``SLISt:SEQuence:NEW`` and ``SLISt:SEQuence:STEP<n>:
  TASSet<m>:WAVeform`` / ``:RCOunt``. QCoDeS's own route (a .seqx file through ``MMEMory:
  DATA`` and ``MMEMory:OPEN:SASSet:SEQuence``) needs the 2400-sample .wfmx minimum and a
  zip on the instrument's disk; the list commands do the same with less to go wrong.
* ``run()`` sends ``AWGControl:RUN`` and checks ``AWGControl:RSTATe?`` once: QCoDeS's
  ``play()`` polls with 0.1 s sleeps and its timeout never fires (it compares a negative
  elapsed time).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyvisa
from qcodes.instrument import InstrumentChannel
from qcodes.instrument_drivers.tektronix import TektronixAWG5208 as QcodesAWG5208
from qcodes.parameters import create_on_off_val_mapping
from qcodes.validators import Numbers

from qnetlab.instruments.awg import AWG, AwgLimits, AwgStep
from qnetlab.instruments.errors import InstrumentReportedError

from ..visa import QnetVisaInstrument

N_MARKERS = 4
"""Markers per channel (AWG5208 at 12-bit DAC resolution, the *RST setting)."""
MAX_SKEW = 2e-9
"""s: the per-channel skew range is +-2 ns (AWG5200 data sheet; check)."""
MIN_AMPLITUDE, MAX_AMPLITUDE = 0.025, 1.5
"""V peak-to-peak: the DC high-voltage path's amplitude range (AWG5200 data sheet)."""


def _block(payload: bytes) -> bytes:
    """An IEEE 488.2 definite-length block, #<n><length><payload>."""
    length = str(len(payload)).encode("ascii")
    return b"#" + str(len(length)).encode("ascii") + length + payload


class TektronixAWG5208(QcodesAWG5208, QnetVisaInstrument, AWG):
    """Tektronix AWG5208, as a qnetlab `AWG` (Tektronix AWG5200 Series Programmer Manual).

    Channels are ``ch1`` .. ``ch8`` (QCoDeS's `Tektronix70000AWGChannel`), each with the
    role's ``amplitude`` (V), ``offset`` (V), ``skew`` (s) and ``output`` (bool).
    """

    error_query = "SYSTem:ERRor?"

    def __init__(self, name: str, address: str, **kwargs: Any) -> None:
        super().__init__(name, address, **kwargs)
        for number, channel in self.awg_channels.items():
            channel.add_parameter(
                "amplitude", label=f"Channel {number} amplitude", unit="V",
                get_cmd=f"SOURce{number}:VOLTage?", set_cmd=f"SOURce{number}:VOLTage {{}}",
                get_parser=float, vals=Numbers(MIN_AMPLITUDE, MAX_AMPLITUDE),
                docstring="Full scale, V peak-to-peak: sample +-1 is +-amplitude/2 + offset",
            )
            channel.add_parameter(
                "skew", label=f"Channel {number} skew", unit="s",
                get_cmd=f"SOURce{number}:SKEW?", set_cmd=f"SOURce{number}:SKEW {{:.12g}}",
                get_parser=float, vals=Numbers(-MAX_SKEW, MAX_SKEW),
                docstring="Delay added to the channel's analog and marker outputs, s",
            )
            channel.add_parameter(
                "output", label=f"Channel {number} output",
                get_cmd=f"OUTPut{number}:STATe?", set_cmd=f"OUTPut{number}:STATe {{}}",
                val_mapping=create_on_off_val_mapping(on_val="1", off_val="0"),
            )

    def add_parameter(self, name: str, *args: Any, **kwargs: Any) -> Any:
        # QCoDeS declares sample_rate in "Sa/s"; the role fixes SI units (Hz), and QCoDeS
        # refuses a unit that differs from the abstract one, so it is changed on the way in.
        if name == "sample_rate" and kwargs.get("unit") == "Sa/s":
            kwargs["unit"] = "Hz"
        return super().add_parameter(name, *args, **kwargs)

    # -- the role ---------------------------------------------------------------------------
    @property
    def awg_channels(self) -> Mapping[int, InstrumentChannel[Any]]:
        return {n: self.submodules[f"ch{n}"] for n in range(1, self.num_channels + 1)}  # type: ignore[misc]

    def limits(self) -> AwgLimits:
        return AwgLimits(
            n_channels=self.num_channels,
            n_markers=N_MARKERS,
            memory_samples=self.ask_parsed("WLISt:WAVeform:LMAXimum?", int, "samples"),
            min_samples=self.ask_parsed("WLISt:WAVeform:LMINimum?", int, "samples"),
            granularity=self.ask_parsed("WLISt:WAVeform:GRANularity?", int, "samples"),
        )

    def _upload(self, steps: Sequence[AwgStep], name: str, limits: AwgLimits) -> None:
        self.stop()
        self.clearSequenceList()
        self.clearWaveformList()
        used = sorted({ch for step in steps for ch in step.waveforms})
        self.write(f'SLISt:SEQuence:NEW "{name}",{len(steps)},{len(used)}')
        for k, step in enumerate(steps, start=1):
            n = len(next(iter(step.waveforms.values())))
            for track, ch in enumerate(used, start=1):
                wave = step.waveforms.get(ch)
                samples = np.zeros(n) if wave is None else np.asarray(wave.samples, float)
                markers = (np.zeros((limits.n_markers, n), bool)
                           if wave is None or wave.markers is None
                           else np.asarray(wave.markers, bool))
                wfm = f"{name}_s{k}_ch{ch}"
                self.write(f'WLISt:WAVeform:NEW "{wfm}",{n}')
                self._write_block(f'WLISt:WAVeform:DATA "{wfm}",0,{n},',
                                  samples.astype("<f4").tobytes())
                bits = (markers.astype(np.uint8)
                        << np.arange(limits.n_markers, dtype=np.uint8)[:, None]).sum(
                            axis=0, dtype=np.uint8)
                self._write_block(f'WLISt:WAVeform:MARKer:DATA "{wfm}",0,{n},', bits.tobytes())
                self.write(f'SLISt:SEQuence:STEP{k}:TASSet{track}:WAVeform "{name}","{wfm}"')
            self.write(f'SLISt:SEQuence:STEP{k}:RCOunt "{name}",{int(step.repeat)}')
        for track, ch in enumerate(used, start=1):
            self.awg_channels[ch].setSequenceTrack(name, track)
        self.ask("*OPC?")

    def _write_block(self, header: str, payload: bytes) -> None:
        """Write `header` followed by `payload` as a definite-length block, then read the
        error queue, with the VISA base's reconnect and error handling."""
        if self._needs_reconnect:
            self.reconnect()
        message = header.encode("ascii") + _block(payload) + b"\n"
        try:
            self.visa_handle.write_raw(message)
        except (pyvisa.errors.VisaIOError, OSError) as exc:
            raise self._failed(exc, header) from exc
        except BaseException:
            self._needs_reconnect = True
            raise
        self.check_error_queue(header + "<block>")

    def _run(self) -> None:
        self.write("AWGControl:RUN")
        if self.run_state() == "Stopped":
            raise InstrumentReportedError(
                f"{self.name} at {self.address} did not start playing: is a sequence "
                "assigned to a channel (upload_sequence)?"
            )

    def _stop(self) -> None:
        self.write("AWGControl:STOP")

    def _is_running(self) -> bool:
        return bool(self.run_state() != "Stopped")
