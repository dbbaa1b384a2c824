"""Thorlabs drivers."""

from .pm100d import ThorlabsPM100D

__all__ = ["ThorlabsPM100D"]
