"""Samplers: every one takes a per-sample model ``fn(t, x)``, an Interpolant and a prediction name.

Generation runs from the prior at ``t_max`` down to ``t_min`` (data at t = 0; MATH.md §5).
"""

from .discrete import gaussian_step, sample_ddim, sample_ddpm
from .ode import SOLVERS, integrate, sample_ode, velocity_field
from .sde import reverse_drift, sample_sde

__all__ = [
    "SOLVERS",
    "gaussian_step",
    "integrate",
    "reverse_drift",
    "sample_ddim",
    "sample_ddpm",
    "sample_ode",
    "sample_sde",
    "velocity_field",
]
