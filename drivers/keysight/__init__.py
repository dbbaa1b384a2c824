"""Keysight drivers."""

from .n5183b import KeysightN5183B

__all__ = ["KeysightN5183B"]
