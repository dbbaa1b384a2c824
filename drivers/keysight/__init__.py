"""Keysight drivers."""

from .n5183b import KeysightN5183B
from .p9374a import KeysightP9374A

__all__ = ["KeysightN5183B", "KeysightP9374A"]
