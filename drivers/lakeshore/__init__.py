"""Lake Shore drivers."""

from .model_372 import LakeshoreModel372

__all__ = ["LakeshoreModel372"]
