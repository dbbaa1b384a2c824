"""Thorlabs PM100D optical power and energy meter console.

Reuses `qcodes_contrib_drivers.drivers.Thorlabs.PM100D.Thorlab_PM100D` and adds the qnetlab
VISA base and the `OpticalPowerMeter` role. Commands follow the SCPI command reference in the
Thorlabs PM100D operation manual (chapter "Computer interface", shared by the PM100 series).

What this class changes in the contrib driver, and why:

* No sleeps. The contrib driver sleeps 5.4 s at connect (`_set_transition_filter`) and 0.2 s
  per reading; the console needs neither: SCPI commands are executed in order, and a query
  answers only when its measurement is done.
* A reading is ``MEAS:POW?``. The contrib driver writes ``MEAS:POW`` without ``?``, but
  MEASure is query-only in the reference, so a faithful console puts an error in its queue
  (and our error check after every write raises), and it then asks ``FETC?`` for the result
  of an earlier ``INIT``. ``MEASure:POWer?`` is CONFigure:POWer + READ? in one exchange.
* ``averaging``, ``wavelength`` and ``beam_diameter`` are redefined. The contrib ``averaging``
  has ``set_cmd='AVER'`` with no ``{}``, so QCoDeS sends a bare ``AVER`` and drops the value
  (-109 Missing parameter); ``wavelength`` and ``beam_diameter`` have a ``scale`` but no
  ``get_parser``, so a get divides the reply string and raises TypeError.
* `_check_error` parses the code instead of comparing the reply's first two characters with
  '+0' (a console that answers ``0,"No error"`` would have raised).

Units: ``wavelength`` in m (the console takes nm), ``power`` in W, ``beam_diameter`` in m (the
console takes mm), ``averaging`` a count of samples of about 3 ms each (manual,
``SENSe:AVERage``).
"""

from __future__ import annotations

from typing import Any

import qcodes.validators as vals
from qcodes.parameters import Parameter
from qcodes_contrib_drivers.drivers.Thorlabs.PM100D import Thorlab_PM100D

from qnetlab.instruments.optical_power_meter import OpticalPowerMeter

from ..visa import QnetVisaInstrument

MAX_AVERAGING = 10_000
"""Upper bound of the averaging count this driver allows (30 s of samples at ~3 ms each)."""


class ThorlabsPM100D(Thorlab_PM100D, QnetVisaInstrument, OpticalPowerMeter):
    """Thorlabs PM100D, as a qnetlab `OpticalPowerMeter`.

    ``timeout`` (s) must cover a reading: about 3 ms per averaged sample, so the default
    averaging of 300 that the contrib driver sets takes about 0.9 s.
    """

    default_terminator = "\n"
    error_query = "SYST:ERR?"

    def __init__(self, name: str, address: str, terminator: str = "\n", timeout: float = 20,
                 **kwargs: Any) -> None:
        # `visalib` and the other VisaInstrument keywords travel in kwargs through the contrib
        # __init__ to QnetVisaInstrument.
        self._parameters_fixed = False
        super().__init__(name, address, terminator=terminator, timeout=timeout, **kwargs)

    # -- fixes of the contrib driver ---------------------------------------------------------------
    def _fix_parameters(self) -> None:
        """Redefine the contrib parameters whose commands or parsing are broken (see module)."""
        for name in ("averaging", "wavelength", "beam_diameter"):
            self.remove_parameter(name)
        self.averaging: Parameter = self.add_parameter(
            "averaging",
            label="Averaging count",
            get_cmd="SENS:AVER?",
            get_parser=int,
            set_cmd="SENS:AVER {:d}",
            vals=vals.Ints(1, MAX_AVERAGING),
        )
        self.wavelength: Parameter = self.add_parameter(
            "wavelength",
            label="Correction wavelength",
            unit="m",
            get_cmd="SENS:CORR:WAV?",
            get_parser=float,
            set_cmd="SENS:CORR:WAV {:.4f}",
            scale=1e9,  # the console speaks nm
            vals=vals.Numbers(185e-9, 25e-6),  # console range; the sensor limits it further
        )
        self.beam_diameter: Parameter = self.add_parameter(
            "beam_diameter",
            label="Beam diameter",
            unit="m",
            get_cmd="SENS:CORR:BEAM?",
            get_parser=float,
            set_cmd="SENS:CORR:BEAM {:.6g}",
            scale=1e3,  # the console speaks mm
            vals=vals.Numbers(1e-6, 1.0),
        )
        self._parameters_fixed = True

    def _set_transition_filter(self, positive: int, negative: int) -> None:
        """Set the STATus:OPERation transition filters, without the contrib driver's 5.4 s sleep.

        The contrib __init__ calls this right after creating its parameters and before it
        first uses ``averaging``, so the broken parameters are redefined here.
        """
        if not self._parameters_fixed:
            self._fix_parameters()
        self.write(f"STAT:OPER:PTR {positive}")
        self.write(f"STAT:OPER:NTR {negative}")
        self.ask("STAT:OPER?")  # reading the event register clears it

    def _get_power(self) -> float:
        """Measure the power, W: one ``MEAS:POW?`` (query form, as the reference defines it)."""
        return float(self.ask_parsed("MEAS:POW?", float, "the power, W"))

    def _check_error(self) -> None:
        self.check_error_queue()
