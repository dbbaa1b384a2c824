"""ID Quantique drivers."""

from .id1000 import IDQuantiqueID1000

__all__ = ["IDQuantiqueID1000"]
