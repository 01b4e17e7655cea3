"""Flax linen modules."""

from .conv import CouplingConvNet
from .mlp import TimeMLP, fourier_features

__all__ = ["CouplingConvNet", "TimeMLP", "fourier_features"]
