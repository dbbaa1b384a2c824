"""Tektronix drivers."""

from .awg5208 import TektronixAWG5208

__all__ = ["TektronixAWG5208"]
