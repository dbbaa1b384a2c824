"""PyVISA backend entry point: ``visalib="<lab config>@qnetlab"`` loads this module."""

from qnetlab.sim_instruments.visa_backend import WRAPPER_CLASS, QnetlabVisaLibrary

__all__ = ["WRAPPER_CLASS", "QnetlabVisaLibrary"]
