"""Path diagnostics of a transport ODE ``dZ/dt = b(t, Z)`` (MATH.md §11): straightness and path energy.

For a model of the field ``b`` along an interpolant (a two-sided bridge, or a one-sided path
between data and noise), the flow ``Z_t`` is solved with :func:`genjax.sample_ode` from samples
of one end, the state is saved on a grid of times, and ``b`` is evaluated on the saved states.
Expectations are sample means; time integrals use Simpson's rule on the grid (float64).
On ``[a, b] = [t_min, t_max]`` with ``L = b − a`` (``[0, 1]`` for ``γ = 0`` bridges):

* straightness (Liu et al. 2023, "Flow Straight and Fast"):
  ``S = ∫_a^b E‖(Z_b − Z_a)/L − Ż_t‖² dt``, zero iff every path is a straight line run at
  constant speed; since ``∫ Ż dt = Z_b − Z_a``, ``S = PE − E‖Z_b − Z_a‖²/L``, so the
  normalised ``S/PE ∈ [0, 1]`` is the fraction of the kinetic energy spent off the chord;
* path energy ``PE = ∫_a^b E‖b(t, Z_t)‖² dt`` (``= ∫ E‖b(t, x_t)‖² dt`` when the flow carries
  ``ρ_a`` along the interpolant's marginals); ``PE ≥ W2²(ρ0, ρ1)`` on ``[0, 1]``
  (Benamou & Brenier 2000), with equality iff the flow is the OT displacement interpolation
  (Tong et al. 2023 report ``NPE = |PE − W2²|/W2²``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.integrate

from .. import _checks
from ..interpolants import Interpolant
from ..model import filter_jit
from ..samplers import sample_ode
from ..samplers.common import model_field
from ..samplers.ode import velocity_field

__all__ = ["Trajectory", "ode_trajectory", "straightness", "path_energy", "normalised_path_energy"]


class Trajectory(NamedTuple):
    """An ODE flow on a time grid, times increasing whichever way it was solved.

    Attributes:
      times: ``(T,)`` float64 grid from ``t_min`` to ``t_max``.
      z: ``(T, n, *event)`` float64 states ``Z_t``.
      velocity: ``(T, n, *event)`` float64 field ``b(t, Z_t)`` on the states.
      nfe: field evaluations per sample of the solve (the grid evaluations not counted).
    """

    times: np.ndarray
    z: np.ndarray
    velocity: np.ndarray
    nfe: int


@filter_jit
def _field_on_grid(model, interpolant, prediction, times, z):
    v = velocity_field(model_field(model, None, z.shape[2:], z.dtype, "ode_trajectory", prediction),
                       interpolant, prediction)
    return jax.vmap(lambda t, zt: jax.vmap(lambda x: v(t, x))(zt))(times, z)


def ode_trajectory(model, interpolant: Interpolant, x_init, *, prediction="velocity", backward: bool = False,
                   num_times: int = 65, solver="tsit5", num_steps: int = 100, rtol: float = 1e-5,
                   atol: float = 1e-5) -> Trajectory:
    """Solve ``dZ/dt = b(t, Z)`` over ``[t_min, t_max]`` with :func:`genjax.sample_ode`, saving ``num_times`` states.

    ``x_init`` holds samples of ``ρ0`` (solved forward, ``t_min → t_max``) or, with ``backward=True``,
    of ``ρ1`` (solved ``t_max → t_min``; for a one-sided path, prior draws ``N(0, σ(t_max)² I)``).
    ``prediction``, ``solver``, ``num_steps``, ``rtol``, ``atol``: as :func:`genjax.sample_ode`
    (a tuple of predictions for a multi-head model, e.g. ``("velocity", "noise")``; ``b`` is the
    ODE's field).  The model's ``b`` is then evaluated at every saved state.
    """
    num_times = _checks.check_positive_int(num_times, "num_times")
    if num_times < 3:
        raise ValueError(f"ode_trajectory: num_times must be >= 3 (Simpson's rule), got {num_times}")
    times = np.linspace(interpolant.t_min, interpolant.t_max, num_times)
    ends = (interpolant.t_max, interpolant.t_min) if backward else (interpolant.t_min, interpolant.t_max)
    _, stats = sample_ode(model, interpolant, x_init=x_init, t_start=ends[0], t_end=ends[1], prediction=prediction,
                          solver=solver, num_steps=num_steps, rtol=rtol, atol=atol,
                          save_times=times[::-1] if backward else times)
    z = stats["trajectory"][::-1] if backward else stats["trajectory"]
    velocity = _field_on_grid(model, interpolant, prediction, jnp.asarray(times, z.dtype), z)
    return Trajectory(times, np.asarray(z, np.float64), np.asarray(velocity, np.float64), int(stats["nfe"]))


def _sq_norms(a: np.ndarray) -> np.ndarray:
    """``‖a‖²`` over the event axes of ``(T, n, *event)``."""
    return np.sum(a.reshape(*a.shape[:2], -1) ** 2, axis=-1)


def _resolve(trajectory_or_model, interpolant, x_init, ode_kwargs) -> Trajectory:
    if isinstance(trajectory_or_model, Trajectory):
        if interpolant is not None or x_init is not None or ode_kwargs:
            raise ValueError("pass either a Trajectory or (model, interpolant, x_init, **ode_trajectory options)")
        return trajectory_or_model
    if interpolant is None or x_init is None:
        raise ValueError("pass a Trajectory, or a model with its interpolant and x_init (samples of one end)")
    return ode_trajectory(trajectory_or_model, interpolant, x_init, **ode_kwargs)


def straightness(trajectory_or_model, interpolant: Interpolant | None = None, x_init=None, *,
                 normalised: bool = False, **ode_kwargs) -> float:
    """``S = ∫_a^b E‖(Z_b − Z_a)/L − b(t, Z_t)‖² dt`` (MATH.md §11), or ``S/PE`` with ``normalised=True``.

    Takes a :class:`Trajectory`, or ``(model, interpolant, x_init, **ode_kwargs)`` passed to
    :func:`ode_trajectory`.  ``S = 0`` iff the flow moves every point along a straight line at
    constant speed (Liu et al. 2023); ``S/PE`` is scale-free, in ``[0, 1]``.
    """
    traj = _resolve(trajectory_or_model, interpolant, x_init, ode_kwargs)
    chord = (traj.z[-1] - traj.z[0]) / (traj.times[-1] - traj.times[0])
    s = float(scipy.integrate.simpson(np.mean(_sq_norms(chord[None] - traj.velocity), axis=1), x=traj.times))
    return s / path_energy(traj) if normalised else s


def path_energy(trajectory_or_model, interpolant: Interpolant | None = None, x_init=None, **ode_kwargs) -> float:
    """``PE = ∫_a^b E‖b(t, Z_t)‖² dt`` along the ODE flow (MATH.md §11; ``≥ W2²(ρ0, ρ1)`` on ``[0, 1]``).

    Takes a :class:`Trajectory`, or ``(model, interpolant, x_init, **ode_kwargs)`` passed to
    :func:`ode_trajectory`.
    """
    traj = _resolve(trajectory_or_model, interpolant, x_init, ode_kwargs)
    return float(scipy.integrate.simpson(np.mean(_sq_norms(traj.velocity), axis=1), x=traj.times))


def normalised_path_energy(pe: float, w2_squared: float) -> float:
    """``NPE = |PE − W2²| / W2²`` (Tong et al. 2023): 0 for the OT displacement interpolation."""
    w2_squared = _checks.check_positive_float(w2_squared, "w2_squared")
    return abs(float(pe) - w2_squared) / w2_squared
