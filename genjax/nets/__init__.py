"""Flax linen modules."""

from .mlp import TimeMLP, fourier_features

__all__ = ["TimeMLP", "fourier_features"]
