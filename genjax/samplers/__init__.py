"""Samplers: every one takes a model (passed as data), an Interpolant and a prediction name.

The contract (DESIGN.md): ``sample_*(model, interpolant, key, shape=None, *, prediction, x_init=None,
c=None, chunk_size=None, mesh=None, ...) -> (samples, stats)`` with ``stats["nfe"]``.
Generation runs from the prior at ``t_max`` down to ``t_min`` (data at t = 0; MATH.md §5).
Langevin kernels (``ula``, ``mala``, ``sgld``) are ``init``/``step`` pairs over explicit state.
"""

from ..ode import SOLVERS, integrate
from .common import map_chunks
from .fast import log_snr, sample_dpm, sample_unipc, time_grid
from .discrete import ddim_timesteps, gaussian_step, sample_ddim, sample_ddpm
from .heun import edm_sigmas, sample_heun, sigma_to_time
from .langevin import (
    PREDICTORS,
    Kernel,
    LangevinState,
    MALAInfo,
    MALAState,
    SGLDInfo,
    SGLDState,
    langevin_move,
    mala,
    Preconditioner,
    polynomial_decay,
    preconditioner,
    run_chains,
    sample_annealed_langevin,
    sample_pc,
    sgld,
    ula,
)
from .ode import sample_ode, velocity_field
from .sde import sample_sde, sde_drift

__all__ = [
    "Kernel",
    "Preconditioner",
    "preconditioner",
    "LangevinState",
    "MALAInfo",
    "MALAState",
    "PREDICTORS",
    "SGLDInfo",
    "SGLDState",
    "SOLVERS",
    "ddim_timesteps",
    "edm_sigmas",
    "gaussian_step",
    "integrate",
    "langevin_move",
    "log_snr",
    "mala",
    "map_chunks",
    "polynomial_decay",
    "run_chains",
    "sample_annealed_langevin",
    "sample_ddim",
    "sample_ddpm",
    "sample_dpm",
    "sample_heun",
    "sample_ode",
    "sample_pc",
    "sample_sde",
    "sde_drift",
    "sgld",
    "sigma_to_time",
    "time_grid",
    "ula",
    "sample_unipc",
    "velocity_field",
]
