"""genjax: functional JAX/Flax generative modelling around one stochastic-interpolant trainer."""

from . import interpolants, targets
from .interpolants import Interpolant, convert

__version__ = "0.1.0"
