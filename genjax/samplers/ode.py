"""Probability-flow ODE sampling through diffrax, and the helpers every sampler shares.

Generation integrates ``dx/dt = v(t, x)`` from ``t_max`` down to ``t_min`` (data at t = 0,
prior at t = 1; MATH.md §1, §5).  Models are per-sample callables ``fn(t, x)`` predicting
``velocity | noise | data | score``; the velocity comes from :func:`genjax.interpolants.convert`.
Everything stays on ``[t_min, t_max]``, where the conversions are finite (MATH.md §3): a
``noise``/``score`` model needs ``α(t) > 0`` there, a ``data``/``score`` model ``σ(t) > 0``.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks
from ..interpolants import Interpolant, check_prediction, convert

__all__ = ["SOLVERS", "sample_ode", "velocity_field", "integrate"]


class Solver(NamedTuple):
    """A diffrax solver and how many vector-field evaluations it costs.

    ``nfe = initial_evals + evals_per_step * num_steps`` (diffrax's ``num_steps`` counts
    accepted and rejected steps).  Tsit5/Dopri5 are FSAL: 7 stages, the first evaluated once
    at ``t0`` and then reused from the previous step, so 6 new evaluations per step.  Checked
    against an exact call count in ``tests/test_samplers.py``.
    """

    make: Callable[[], diffrax.AbstractSolver]
    adaptive: bool
    evals_per_step: int
    initial_evals: int


SOLVERS = {
    "euler": Solver(diffrax.Euler, False, 1, 0),
    "heun": Solver(diffrax.Heun, False, 2, 0),
    "midpoint": Solver(diffrax.Midpoint, False, 2, 0),
    "tsit5": Solver(diffrax.Tsit5, True, 6, 1),
    "dopri5": Solver(diffrax.Dopri5, True, 6, 1),
}

_ADAPTIVE_MAX_STEPS = 4096


# ---------------------------------------------------------------------------------
# Validation helpers (eager, before jit), shared by every sampler and the likelihood.
# ---------------------------------------------------------------------------------


def check_solver(solver: str) -> Solver:
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r} is not a known solver; expected one of {tuple(SOLVERS)}")
    return SOLVERS[solver]


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_positive_float(value, name: str) -> float:
    is_number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    if not is_number or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def check_batch(x, name: str = "x") -> jax.Array:
    """``x`` as a float array of shape ``(n, *event)`` (2-D or more, n >= 1) with finite entries."""
    _checks.check_batch(name, x)
    x = jnp.asarray(x)
    if x.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one sample, got shape {x.shape}")
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def check_shape(shape) -> tuple[int, ...]:
    """``shape`` as a tuple ``(n, *event_shape)`` of positive ints with at least 2 entries."""
    if not isinstance(shape, (tuple, list)) or len(shape) < 2 or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in shape
    ):
        raise ValueError(
            f"shape must be a tuple (n, *event_shape) of positive ints with at least 2 entries, got {shape!r}"
        )
    return tuple(int(s) for s in shape)


def check_start(key, shape, x_init) -> tuple[tuple[int, ...], jax.Array | None]:
    """Validate ``(key, shape)`` or ``x_init``; returns ``(shape, x_init)``."""
    if x_init is not None:
        x_init = check_batch(x_init, "x_init")
        if shape is not None and check_shape(shape) != x_init.shape:
            raise ValueError(f"shape={tuple(shape)} does not match x_init.shape={x_init.shape}")
        return x_init.shape, x_init
    if key is None:
        raise ValueError("key is required to draw the initial state from the prior (or pass x_init)")
    if shape is None:
        raise ValueError("shape=(n, *event_shape) is required when x_init is not given")
    return check_shape(shape), None


def check_interval(interpolant: Interpolant, t_start, t_end, *, decreasing: bool) -> tuple[float, float]:
    """Resolve ``t_start`` (default ``t_max``) and ``t_end`` (default ``t_min``) inside ``[t_min, t_max]``."""
    if interpolant.two_sided:
        raise ValueError("samplers need a one-sided interpolant (Gaussian prior); got a two-sided one")
    lo, hi = interpolant.t_min, interpolant.t_max
    t_start = hi if t_start is None else float(t_start)
    t_end = lo if t_end is None else float(t_end)
    for name, value in (("t_start", t_start), ("t_end", t_end)):
        if not lo <= value <= hi:
            raise ValueError(
                f"{name}={value} must lie in [t_min, t_max] = [{lo}, {hi}] of interpolant {interpolant.name!r}"
            )
    if t_start == t_end or (decreasing and t_end > t_start):
        want = "t_end < t_start" if decreasing else "t_end != t_start"
        raise ValueError(f"need {want}, got t_start={t_start}, t_end={t_end}")
    return t_start, t_end


def initial_state(interpolant: Interpolant, key, shape, x_init, t_start):
    """``x_init`` or a draw from ``N(0, σ(t_start)² I)`` (the prior ``N(0, σ(t_max)² I)`` by default)."""
    if x_init is not None:
        return x_init
    return interpolant.sigma(t_start) * jax.random.normal(key, shape)


def velocity_field(fn: Callable, interpolant: Interpolant, prediction: str) -> Callable:
    """Per-sample PF-ODE velocity ``v(t, x)`` from a model predicting ``prediction`` (MATH.md §3)."""
    check_prediction(prediction)

    def v(t, x):
        return convert(fn(t, x), prediction, "velocity", interpolant, t, x)

    return v


# ---------------------------------------------------------------------------------
# One ODE solve (per sample); shared with the likelihood / CNF core.
# ---------------------------------------------------------------------------------


def integrate(vector_field, y0, t0, t1, *, solver="tsit5", num_steps=100, rtol=1e-5, atol=1e-5,
              max_steps=None, args=None, adjoint=None):
    """Solve ``dy/dt = vector_field(t, y, args)`` from ``t0`` to ``t1`` (either direction) with diffrax.

    Fixed-step solvers take ``num_steps`` equal steps; adaptive ones use a PID controller with
    ``rtol``/``atol`` and start from the step ``(t1 − t0)/num_steps``.  ``y`` may be any pytree.
    Returns ``(y(t1), stats)`` with ``stats = {nfe, num_steps, num_rejected_steps}``.
    """
    spec = SOLVERS[solver]
    if max_steps is None:
        max_steps = _ADAPTIVE_MAX_STEPS if spec.adaptive else num_steps
    controller = diffrax.PIDController(rtol=rtol, atol=atol) if spec.adaptive else diffrax.ConstantStepSize()
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field), spec.make(), t0, t1, (t1 - t0) / num_steps, y0, args=args,
        stepsize_controller=controller, saveat=diffrax.SaveAt(t1=True), max_steps=max_steps,
        adjoint=diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint,
    )
    steps = sol.stats["num_steps"]
    stats = {
        "nfe": spec.initial_evals + spec.evals_per_step * steps,
        "num_steps": steps,
        "num_rejected_steps": sol.stats["num_rejected_steps"],
    }
    return jax.tree.map(lambda leaf: leaf[-1], sol.ys), stats


def summarize(stats: dict) -> dict:
    """Per-sample solver stats → ``nfe`` (max over the batch = batched calls of ``fn``), ``nfe_mean`` and the rest."""
    per_sample = {k: v for k, v in stats.items() if k != "nfe"}
    return {"nfe": jnp.max(stats["nfe"]), "nfe_mean": jnp.mean(stats["nfe"]), **per_sample}


@functools.partial(jax.jit,
                   static_argnames=("fn", "interpolant", "prediction", "shape", "solver", "num_steps", "max_steps"))
def _sample_ode(fn, interpolant, prediction, shape, solver, num_steps, max_steps, key, x_init, t_start, t_end,
                rtol, atol):
    x = initial_state(interpolant, key, shape, x_init, t_start)
    v = velocity_field(fn, interpolant, prediction)
    solve = functools.partial(integrate, lambda t, y, args: v(t, y), t0=t_start, t1=t_end, solver=solver,
                              num_steps=num_steps, rtol=rtol, atol=atol, max_steps=max_steps)
    samples, stats = jax.vmap(solve)(x)
    return samples, summarize(stats)


def sample_ode(fn, interpolant: Interpolant, key, shape=None, prediction: str = "velocity", *, solver: str = "tsit5",
               num_steps: int = 100, rtol: float = 1e-5, atol: float = 1e-5, t_start=None, t_end=None, x_init=None,
               max_steps: int | None = None):
    """Sample by integrating the probability-flow ODE ``dx/dt = v(t, x)`` (MATH.md §5).

    Song et al. 2021 ("Score-Based Generative Modeling through SDEs", PF-ODE) / Lipman et
    al. 2023 (flow matching), in this project's time convention: from ``t_start`` (default
    ``t_max``) down to ``t_end`` (default ``t_min``), starting from ``x_init`` or from
    ``N(0, σ(t_start)² I)`` (the prior ``N(0, σ(t_max)² I)``).  Both times must lie in
    ``[t_min, t_max]``; ``t_end > t_start`` (encoding data to noise) needs ``x_init``.

    Args:
      fn: per-sample model ``fn(t, x)``, scalar ``t``, ``x`` of the event shape.
      interpolant: a one-sided :class:`~genjax.interpolants.Interpolant`.
      key: PRNG key for the prior draw (unused with ``x_init``).
      shape: ``(n, *event_shape)``; may be omitted with ``x_init``.
      prediction: what ``fn`` predicts: ``velocity | noise | data | score``.
      solver: ``euler | heun | midpoint`` (``num_steps`` fixed steps) or ``tsit5 | dopri5``
        (adaptive, PID controller with ``rtol``/``atol``, first step ``Δt/num_steps``).
      max_steps: diffrax's step limit (default ``num_steps`` fixed, 4096 adaptive).

    Returns:
      ``(samples, stats)``: samples of ``shape``; ``stats["nfe"]`` = evaluations of ``fn``
      per sample (max over the batch, which is the number of batched calls made; computed
      as ``initial_evals + evals_per_step · num_steps`` from diffrax's step count, see
      :class:`Solver`), ``nfe_mean``, and per-sample ``num_steps``/``num_rejected_steps``.
    """
    check_prediction(prediction)
    check_solver(solver)
    num_steps = check_positive_int(num_steps, "num_steps")
    rtol, atol = check_positive_float(rtol, "rtol"), check_positive_float(atol, "atol")
    if max_steps is not None:
        max_steps = check_positive_int(max_steps, "max_steps")
    t_start, t_end = check_interval(interpolant, t_start, t_end, decreasing=False)
    if t_end > t_start and x_init is None:
        raise ValueError("integrating forward in time (t_end > t_start) encodes data: pass x_init")
    shape, x_init = check_start(key, shape, x_init)
    return _sample_ode(fn, interpolant, prediction, shape, solver, num_steps, max_steps, key, x_init,
                       t_start, t_end, rtol, atol)
