"""genjax: functional JAX/Flax generative modelling around one stochastic-interpolant trainer.

Data at t = 0, prior at t = 1 (MATH.md).  A model is a per-sample callable ``fn(t, x)``;
every loss, sampler and likelihood takes it with an ``Interpolant`` and a prediction name.
"""

from . import data, flows, interpolants, losses, metrics, nets, samplers, stats, targets, train
from .interpolants import Interpolant, convert
from .likelihood import bits_per_dim, cnf_log_prob, log_likelihood
from .losses import interpolant_loss
from .samplers import sample_ddim, sample_ddpm, sample_ode, sample_sde
from .train import TrainState, fit, train_interpolant

__version__ = "0.1.0"

__all__ = [
    "Interpolant",
    "TrainState",
    "bits_per_dim",
    "cnf_log_prob",
    "convert",
    "data",
    "fit",
    "flows",
    "interpolant_loss",
    "interpolants",
    "log_likelihood",
    "losses",
    "metrics",
    "nets",
    "sample_ddim",
    "sample_ddpm",
    "sample_ode",
    "sample_sde",
    "samplers",
    "stats",
    "targets",
    "train",
    "train_interpolant",
]
