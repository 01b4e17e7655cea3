"""genjax: functional JAX/Flax generative modelling around one stochastic-interpolant trainer.

Data at t = 0, prior at t = 1 (docs/MATH.md).  A model is a per-sample callable ``fn(t, x)``
(or ``fn(t, x, c)``) passed as data (:mod:`genjax.model`); every loss, sampler and likelihood
takes it with an ``Interpolant`` and a prediction name.
"""

from . import (couplings, data, distill, flows, guidance, interpolants, losses, metrics, model, models, nets, ode,
               samplers, stats, targets, train)
from .guidance import classifier_free
from .interpolants import Interpolant, convert
from .likelihood import bits_per_dim, cnf_log_prob, log_likelihood
from .losses import interpolant_loss
from .model import Heads, Model
from .runs import load_run, save_run
from .samplers import sample_annealed_langevin, sample_ddim, sample_ddpm, sample_heun, sample_ode, sample_pc, sample_sde
from .train import TrainState, fit, train_interpolant

__version__ = "0.1.0"

__all__ = [
    "Heads",
    "Interpolant",
    "Model",
    "TrainState",
    "bits_per_dim",
    "classifier_free",
    "cnf_log_prob",
    "convert",
    "couplings",
    "data",
    "distill",
    "models",
    "fit",
    "flows",
    "guidance",
    "interpolant_loss",
    "interpolants",
    "load_run",
    "log_likelihood",
    "losses",
    "metrics",
    "model",
    "nets",
    "ode",
    "sample_annealed_langevin",
    "sample_ddim",
    "sample_ddpm",
    "sample_heun",
    "sample_ode",
    "sample_pc",
    "sample_sde",
    "samplers",
    "save_run",
    "stats",
    "targets",
    "train",
    "train_interpolant",
]
