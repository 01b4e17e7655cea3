"""Flax linen modules, and their size and cost."""

from .autoregressive import MADE, CausalTransformer, MarkovChain, PixelCNN
from .conv import CouplingConvNet
from .mlp import IntervalMLP, TimeMLP, fourier_features
from .stats import count_params, flops
from .unet import UNet
from .vae import GaussianDecoder, GaussianEncoder

__all__ = ["CausalTransformer", "CouplingConvNet", "GaussianDecoder", "GaussianEncoder", "IntervalMLP", "MADE",
           "MarkovChain", "PixelCNN", "TimeMLP", "UNet", "count_params", "flops", "fourier_features"]
