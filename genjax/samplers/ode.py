"""Probability-flow ODE sampling through the shared diffrax core (:mod:`genjax.ode`).

Generation integrates ``dx/dt = v(t, x)`` from ``t_max`` down to ``t_min`` (data at t = 0,
prior at t = 1; MATH.md §1, §5).  The model predicts ``velocity | noise | data | score``; the
velocity comes from :func:`genjax.interpolants.convert`.  Everything stays on
``[t_min, t_max]``, where the conversions are finite (MATH.md §3).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks
from ..interpolants import Interpolant, convert
from ..model import filter_jit
from ..ode import SOLVERS, check_grid, integrate, raise_on_failure, resolve_solver, summarize
from .common import (check_interval, check_sampler_args, check_samples, check_start, check_two_sided_start, map_chunks,
                     model_field, prior_draw, sample_inputs)

__all__ = ["SOLVERS", "sample_ode", "velocity_field", "resolve_times", "check_save_times", "trajectory_stats"]


def velocity_field(fn, interpolant: Interpolant, prediction):
    """Per-sample ODE velocity ``v(t, x)`` from a per-sample model predicting ``prediction`` (MATH.md §3):
    the PF-ODE velocity of a one-sided path, ``b`` of a two-sided one (MATH.md §10)."""
    return lambda t, x: convert(fn(t, x), prediction, "velocity", interpolant, t, x)


def resolve_times(interpolant: Interpolant, t_start, t_end, ts, *, decreasing: bool):
    """``(t_start, t_end, ts)``: an explicit grid ``ts`` (inside ``[t_min, t_max]``) fixes both ends."""
    if ts is None:
        return (*check_interval(interpolant, t_start, t_end, decreasing=decreasing), None)
    if t_start is not None or t_end is not None:
        raise ValueError("pass either ts (an explicit time grid) or t_start/t_end, not both")
    ts = check_grid(ts, "ts")
    t_start, t_end = check_interval(interpolant, ts[0], ts[-1], decreasing=decreasing)
    return t_start, t_end, jnp.asarray(ts, jnp.result_type(float))


def check_save_times(save_times, t_start: float, t_end: float):
    """Times monotone in the direction of integration, inside ``[t_end, t_start]`` (either order)."""
    if save_times is None:
        return None
    times = np.atleast_1d(np.asarray(save_times, np.float64))
    lo, hi = min(t_start, t_end), max(t_start, t_end)
    direction = np.sign(t_end - t_start)
    if times.ndim != 1 or not np.all(np.isfinite(times)) or np.any(times < lo) or np.any(times > hi) or (
            times.size > 1 and not np.all(np.sign(np.diff(times)) == direction)):
        raise ValueError(f"save_times must be finite times inside [{lo}, {hi}], strictly monotone from "
                         f"t_start={t_start} towards t_end={t_end}; got {times.tolist()!r:.200}")
    return jnp.asarray(times, jnp.result_type(float))


def trajectory_stats(stats: dict, save_times) -> dict:
    """Move a per-sample ``trajectory`` (n, T, ...) to ``stats["trajectory"]`` (T, n, ...) with its times."""
    if "trajectory" in stats:
        stats["trajectory"] = jnp.moveaxis(jnp.asarray(stats["trajectory"]), 1, 0)
        stats["save_times"] = save_times
    return stats


@filter_jit
def _ode(model, interpolant, prediction, event_shape, dtype, solver, num_steps, ts, rtol, atol, controller,
         max_steps, save_times, t_start, t_end, inputs):
    def one(key, x0, c):
        f = model_field(model, c, event_shape, dtype, "sample_ode", prediction)
        v = velocity_field(f, interpolant, prediction)
        x0 = prior_draw(key, event_shape, interpolant.sigma(t_start)).astype(dtype) if x0 is None else x0
        return integrate(lambda t, y, args: v(t, y), x0, t_start, t_end, solver=solver, num_steps=num_steps, ts=ts,
                         rtol=rtol, atol=atol, max_steps=max_steps, stepsize_controller=controller,
                         save_times=save_times)

    return jax.vmap(one)(*inputs)


def sample_ode(model, interpolant: Interpolant, key=None, shape=None, *, prediction, solver="tsit5",
               num_steps: int = 100, ts=None, rtol: float = 1e-5, atol: float = 1e-5, stepsize_controller=None,
               max_steps: int | None = None, t_start=None, t_end=None, x_init=None, c=None, save_times=None,
               chunk_size: int | None = None, mesh=None):
    """Sample by integrating the probability-flow ODE ``dx/dt = v(t, x)`` (MATH.md §5).

    Song et al. 2021 ("Score-Based Generative Modeling through SDEs", PF-ODE) / Lipman et
    al. 2023 (flow matching), in this project's time convention: from ``t_start`` (default
    ``t_max``) down to ``t_end`` (default ``t_min``), starting from ``x_init`` or from
    ``N(0, σ(t_start)² I)``.  ``t_end > t_start`` (encoding data to noise) needs ``x_init``.
    A two-sided path (MATH.md §10) transports with ``b`` itself, either way: backward from
    samples of ``ρ1`` (default ``t_max → t_min``) or forward from samples of ``ρ0``
    (``t_start=ip.t_min, t_end=ip.t_max``); ``x_init`` is required.

    Args:
      model: per-sample model ``fn(t, x)`` or ``fn(t, x, c)``, passed as data (:mod:`genjax.model`).
      interpolant: an :class:`~genjax.interpolants.Interpolant` (one- or two-sided).
      key: PRNG key for the prior draws (sample ``i`` uses ``split(key, n)[i]``; unused with ``x_init``).
      shape: ``(n, *event_shape)``; may be omitted with ``x_init``.
      prediction: what the model predicts: ``velocity | noise | data | score`` (required), or on
        a two-sided path a tuple of them for a multi-head model (``b`` must follow from it).
      solver: ``euler | heun | midpoint`` (``num_steps`` fixed steps), ``tsit5 | dopri5``
        (adaptive, PID controller with ``rtol``/``atol``, first step ``Δt/num_steps``), or a
        diffrax explicit solver object; ``stepsize_controller`` replaces the default controller.
      ts: an explicit time grid from ``t_start`` to ``t_end`` (``diffrax.StepTo``) instead of
        ``num_steps``/``t_start``/``t_end``.
      max_steps: step budget of an adaptive solve (default 4096); exceeding it raises.
      c: conditioning batch (leading axis n) passed to ``fn(t, x, c)`` per sample.
      save_times: times at which to record the trajectory, returned as ``stats["trajectory"]``
        of shape ``(len(save_times), n, *event_shape)``.
      chunk_size: integrate at most this many samples at once (bounded memory for any n;
        several chunks are returned as a NumPy array).
      mesh: a ``jax.sharding.Mesh`` with a ``"data"`` axis: samples are sharded over it.

    Returns:
      ``(samples, stats)``: ``stats["nfe"]`` = model evaluations per sample (max over the
      batch = batched calls; ``initial_evals + evals_per_step · num_steps`` from diffrax's
      step count, see :class:`genjax.ode.Solver`), ``nfe_mean`` and per-sample
      ``num_steps``/``num_rejected_steps``.  Raises ``FloatingPointError`` on non-finite
      samples and ``RuntimeError`` when an adaptive solve exceeds ``max_steps``.
    """
    t_start, t_end, ts = resolve_times(interpolant, t_start, t_end, ts, decreasing=False)
    check_sampler_args(model, interpolant, prediction, "sample_ode", min(t_start, t_end), max(t_start, t_end))
    resolve_solver(solver)
    num_steps = _checks.check_positive_int(num_steps, "num_steps")
    rtol, atol = _checks.check_positive_float(rtol, "rtol"), _checks.check_positive_float(atol, "atol")
    max_steps = _checks.check_optional_positive_int(max_steps, "max_steps")
    check_two_sided_start(interpolant, x_init, "sample_ode")
    if t_end > t_start and x_init is None:
        raise ValueError("integrating forward in time (t_end > t_start) encodes data: pass x_init")
    shape, x_init = check_start(key, shape, x_init)
    save_times = check_save_times(save_times, t_start, t_end)
    dtype = jnp.result_type(float) if x_init is None else x_init.dtype
    samples, stats = map_chunks(
        lambda chunk: _ode(model, interpolant, prediction, shape[1:], dtype, solver, num_steps, ts, rtol, atol,
                           stepsize_controller, max_steps, save_times, t_start, t_end, chunk),
        sample_inputs(key, shape, x_init, c), chunk_size=chunk_size, mesh=mesh)
    raise_on_failure(stats, "sample_ode", max_steps)
    check_samples(samples, "sample_ode")
    return samples, trajectory_stats(summarize(stats), save_times)
