"""Flax linen modules, and their size and cost."""

from .conv import CouplingConvNet
from .mlp import IntervalMLP, TimeMLP, fourier_features
from .stats import count_params, flops
from .unet import UNet

__all__ = ["CouplingConvNet", "IntervalMLP", "TimeMLP", "UNet", "count_params", "flops", "fourier_features"]
