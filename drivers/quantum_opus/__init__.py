"""Quantum Opus drivers."""

from .sim900_snspd import QuantumOpusSIM900, SlotError

__all__ = ["QuantumOpusSIM900", "SlotError"]
