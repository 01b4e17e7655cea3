"""MeanFlow one-step models (Geng, Deng, Bai, Kolter & He 2025; MATH.md §13): training and sampling.

A MeanFlow model ``u(x, r, t)`` predicts the average PF-ODE velocity over ``[r, t]``, called per
sample as ``fn(times, x[, c])`` with ``times = jnp.array([r, t])`` (e.g. ``genjax.Model`` around
:class:`genjax.nets.mlp.IntervalMLP`).  One step ``x_r = x_t − (t − r) u(x_t, r, t)`` replaces
the whole ODE solve from ``t`` to ``r``; :func:`sample_meanflow` takes one or a few such steps.
It is trained from data alone by :func:`genjax.losses.meanflow.meanflow_loss` (no teacher).

MeanFlow is the one-step model here because its average velocity is closed-form on Gaussian
data (:func:`gaussian_average_velocity`, an exact oracle), its training identity
``u = v − (t − r) du/dt`` is exact and testable with ``jax.jvp``, and it needs no bootstrap
targets or self-consistency schedule (unlike shortcut and consistency models).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from .. import _checks
from ..interpolants import Interpolant
from ..losses.meanflow import check_meanflow_model, check_meanflow_options, check_one_sided, meanflow_loss
from ..model import Model, filter_jit, per_sample
from ..ode import check_grid
from ..samplers.common import check_interval, check_samples, check_start, map_chunks, prior_draw, sample_inputs
from ..targets import gaussian_flow_map
from ..train.interpolant import split_batch
from ..train.loop import fit
from ..train.state import TrainState

__all__ = ["LOSS_OPTIONS", "gaussian_average_velocity", "meanflow_objective", "sample_meanflow", "train_meanflow"]

LOSS_OPTIONS = ("ratio", "time_sampling", "p_mean", "p_std", "adaptive_p", "adaptive_c")
_LOSS_DEFAULTS = {"ratio": 0.25, "time_sampling": "lognormal", "p_mean": -0.4, "p_std": 1.0, "adaptive_p": 1.0,
                  "adaptive_c": 1e-3}


def gaussian_average_velocity(interpolant: Interpolant, mean, std, r, t, x):
    """The exact average velocity ``u*(x, r, t)`` of Gaussian data ``N(mean, diag(std²))`` (MATH.md §13).

    ``u* = (x − φ_{t→r}(x))/(t − r)`` with the exact PF-ODE map φ
    (:func:`genjax.targets.gaussian_flow_map`) for ``r ≠ t``, and its limit, the exact velocity
    ``v*(t, x) = ∂_r φ_{t→r}(x)|_{r=t}`` (MATH.md §9.1), at ``r = t``.  Per sample: ``x`` of shape ``(d,)``, scalar ``r`` and ``t``.
    In float32 the quotient loses about ``eps/|t − r|`` relative accuracy as ``r → t``.
    """
    r, t = jnp.asarray(r), jnp.asarray(t)
    same = r == t  # then φ_{t→r}(x) = x and the quotient branch is 0/1, finite for jvp and grad
    average = (x - gaussian_flow_map(interpolant, mean, std, t, r, x)) / jnp.where(same, 1.0, t - r)
    # v*(t, x) = ∂_r φ_{t→r}(x) at r = t (the flow map's derivative in its end time).
    velocity = jax.jvp(lambda s: gaussian_flow_map(interpolant, mean, std, t, s, x), (t,), (jnp.ones_like(t),))[1]
    return jnp.where(same, velocity, average)


def meanflow_objective(apply_fn: Callable, interpolant: Interpolant, **loss_kwargs) -> Callable:
    """``loss_fn(params, batch, key) = mean_i meanflow_loss(Model(apply_fn, params), ...)`` for :func:`fit`.

    ``apply_fn(params, times, x[, c])`` is per sample; ``batch``: an array ``x0``, a pair
    ``(x0, x1)`` or a dict ``{"x0", "x1", "c"}`` (:func:`genjax.train.interpolant.split_batch`).
    ``loss_kwargs``: :data:`LOSS_OPTIONS` of :func:`meanflow_loss`.  The aux dict holds ``mse``,
    the batch mean of the unweighted ``‖Δ‖²``.
    """
    unknown = sorted(set(loss_kwargs) - set(LOSS_OPTIONS))
    if unknown:
        raise ValueError(f"meanflow_objective: unknown options {unknown}; expected some of {LOSS_OPTIONS}")
    options = {**_LOSS_DEFAULTS, **loss_kwargs}
    check_meanflow_options(interpolant, where="train_meanflow", **options)
    _checks.check_callable(apply_fn, "apply_fn", "apply_fn(params, times, x) or apply_fn(params, times, x, c)")

    def loss_fn(params, batch, key):
        x0, x1, c = split_batch(batch)
        losses, errors = meanflow_loss(Model(apply_fn, params), interpolant, x0, key, x1=x1, c=c,
                                       return_error=True, **options)
        return jnp.mean(losses), {"mse": jnp.mean(errors)}

    return loss_fn


def train_meanflow(apply_fn: Callable, params: Any, interpolant: Interpolant, data, *, key: jax.Array, optimizer,
                   **loss_and_fit_kwargs) -> tuple[TrainState, dict]:
    """Train a MeanFlow model ``apply_fn(params, times, x[, c])`` on ``data`` along ``interpolant``.

    ``fit(meanflow_objective(apply_fn, interpolant, **loss_options), TrainState.create(params,
    optimizer, key), data, **fit_kwargs)``: the keywords named in :data:`LOSS_OPTIONS` go to the
    loss (:func:`genjax.losses.meanflow.meanflow_loss`), all others to :func:`genjax.train.fit`
    (``num_steps`` and ``batch_size`` are required).  ``data`` as for
    :func:`genjax.train.train_interpolant`.  ``history["mse"]`` is the unweighted ``‖Δ‖²``.
    ``genjax.Model(apply_fn, state.ema_params)`` is then the model for :func:`sample_meanflow`.
    """
    loss_options = {k: v for k, v in loss_and_fit_kwargs.items() if k in LOSS_OPTIONS}
    fit_kwargs = {k: v for k, v in loss_and_fit_kwargs.items() if k not in LOSS_OPTIONS}
    loss_fn = meanflow_objective(apply_fn, interpolant, **loss_options)
    return fit(loss_fn, TrainState.create(params, optimizer, key), data, **fit_kwargs)


@filter_jit
def _meanflow(model, interpolant, event_shape, dtype, ts, inputs):
    def one(key, x_init, c):
        check_meanflow_model(model, jax.ShapeDtypeStruct(tuple(event_shape), dtype), c, where="sample_meanflow")
        u = per_sample(model, c)
        x = prior_draw(key, event_shape, interpolant.sigma(ts[0])).astype(dtype) if x_init is None else x_init

        def step(x, pair):
            t, r = pair
            return x - (t - r) * u(jnp.stack([r, t]), x), None

        x, _ = jax.lax.scan(step, x, (ts[:-1], ts[1:]))
        return x

    return jax.vmap(one)(*inputs)


def sample_meanflow(model, interpolant: Interpolant, key=None, shape=None, *, num_steps: int = 1, ts=None,
                    x_init=None, c=None, chunk_size: int | None = None, mesh=None):
    """Sample with MeanFlow steps ``x_r = x_t − (t − r) u(x_t, r, t)`` (Geng et al. 2025, Alg. 2).

    On a decreasing grid ``t_max = t_0 > t_1 > … > t_N = t_min`` (default uniform in t,
    ``N = num_steps``; ``num_steps = 1`` is one-step generation), starting from ``x_init`` at
    ``t_0`` or from the prior ``N(0, σ(t_0)² I)``.  With the exact ``u*`` every grid gives the
    exact PF-ODE map ``φ_{t_0→t_N}`` (the maps compose).

    Args:
      model: per-sample ``fn(times, x)`` or ``fn(times, x, c)`` with ``times = jnp.array([r, t])``,
        passed as data (new weights never recompile).
      interpolant: a one-sided path.
      key: PRNG key for the prior draws (sample ``i`` uses ``split(key, n)[i]``; unused with ``x_init``).
      shape: ``(n, *event_shape)``; may be omitted with ``x_init``.
      num_steps: number of MeanFlow steps N (NFE = N).
      ts: an explicit strictly decreasing grid inside ``[t_min, t_max]`` instead of ``num_steps``.
      c, chunk_size, mesh: as :func:`genjax.samplers.sample_ode`.

    Returns ``(samples, {"nfe": N})``; raises ``FloatingPointError`` on non-finite samples.
    """
    check_one_sided(interpolant, "sample_meanflow")
    _checks.check_callable(model, "model", "fn(times, x) or fn(times, x, c) with times = jnp.array([r, t])")
    if ts is None:
        num_steps = _checks.check_positive_int(num_steps, "num_steps")
        ts = jnp.linspace(interpolant.t_max, interpolant.t_min, num_steps + 1)
    else:
        grid = check_grid(ts, "ts")
        if grid[-1] > grid[0]:
            raise ValueError(f"sample_meanflow: ts must decrease (generation runs from t_max to t_min), got "
                             f"{grid.tolist()!r:.200}")
        check_interval(interpolant, grid[0], grid[-1], decreasing=True)
        ts = jnp.asarray(grid, jnp.result_type(float))
    shape, x_init = check_start(key, shape, x_init)
    dtype = jnp.result_type(float) if x_init is None else x_init.dtype
    samples = map_chunks(lambda chunk: _meanflow(model, interpolant, shape[1:], dtype, ts, chunk),
                         sample_inputs(key, shape, x_init, c), chunk_size=chunk_size, mesh=mesh)
    check_samples(samples, "sample_meanflow")
    return samples, {"nfe": int(ts.shape[0]) - 1}
