"""Santec drivers."""

from .tsl570 import SantecTSL570

__all__ = ["SantecTSL570"]
