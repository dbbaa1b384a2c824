"""Polatis drivers."""

from .series6000 import PolatisSeries6000

__all__ = ["PolatisSeries6000"]
