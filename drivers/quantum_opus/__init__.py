"""Quantum Opus drivers."""

from .sim900_snspd import QuantumOpusSIM900

__all__ = ["QuantumOpusSIM900"]
