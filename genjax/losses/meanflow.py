"""The MeanFlow loss (Geng, Deng, Bai, Kolter & He 2025, "Mean Flows for One-step Generative Modeling"; MATH.md §13).

A MeanFlow model predicts the average velocity ``u(x, r, t) = (1/(t − r)) ∫_r^t v(τ, x_τ) dτ``
along the PF-ODE trajectory through ``x_t = x`` (``r ≤ t``), so that one step
``x_r = x_t − (t − r) u(x_t, r, t)`` jumps from ``t`` to ``r``.  Differentiating
``(t − r) u`` in ``t`` gives the MeanFlow identity

    u = v − (t − r) du/dt,     du/dt = v·∂_x u + ∂_t u,

whose right side is the tangent of ``jax.jvp(u, (x, r, t), (v, 0, 1))``.  The loss regresses
the model on that identity with the conditional velocity ``ẋ_t = α̇ x0 + σ̇ ε`` in place of
``v`` (both in the tangent and in the target):

    Δ = u_θ(x_t, r, t) − sg(ẋ_t − (t − r) du_θ/dt),    ℓ = sg(w) ‖Δ‖²,   w = 1/(‖Δ‖² + c)^p,

with the paper's adaptive weight (``p = 1``, ``c = 10⁻³``; ``p = 0`` is plain L2).  The target
is affine in ``ẋ_t``, so its conditional mean given ``(x_t, r, t)`` is ``v − (t − r) du_θ/dt``
and the exact ``u*`` is a fixed point.  At ``r = t`` the loss is flow matching on ``u(x, t, t) = v``.

MeanFlow rather than shortcut/consistency-style models: its average velocity is closed-form on
Gaussian data (an exact oracle), its training identity is exact and checkable with ``jax.jvp``,
and it needs no bootstrap targets, teacher or self-consistency schedule.

The model is an ordinary per-sample genjax model whose time argument is the pair
``times = jnp.array([r, t])``: ``fn(times, x)`` or ``fn(times, x, c)`` (e.g. ``genjax.Model``
around :class:`genjax.nets.mlp.IntervalMLP`).

Randomness, per sample ``i``: ``k_i = split(key, n)[i]``, ``(k_time, k_z) = split(k_i)``,
``(r, t) = sample_time_pair(k_time, ...)`` and ``z = normal(k_z, event_shape)``.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from .._checks import check_batch, check_callable, check_finite
from ..interpolants import Interpolant
from ..model import check_conditioning, check_output, per_sample

__all__ = ["meanflow_loss", "sample_time_pair", "check_one_sided", "check_meanflow_options", "check_meanflow_model",
           "MEANFLOW_TIME_SAMPLINGS"]

MEANFLOW_TIME_SAMPLINGS = ("lognormal", "uniform")


def sample_time_pair(key, interpolant: Interpolant, *, ratio: float = 0.25, time_sampling="lognormal",
                     p_mean: float = -0.4, p_std: float = 1.0):
    """One training pair ``(r, t)`` with ``t_min ≤ r ≤ t ≤ t_max`` (Geng et al. 2025, §4.3).

    ``(k_t, k_r) = split(key)``.  Two times are drawn from ``k_t`` and sorted (``r`` the smaller):
    ``"lognormal"`` (the paper's logit-normal ``lognorm(p_mean, p_std)``): ``t_min + (t_max −
    t_min)·sigmoid(p_mean + p_std·n)``, ``n ~ N(0, 1)``; ``"uniform"``: ``U(t_min, t_max)``; or a
    callable ``key -> two times`` (any order).  Then ``r = t`` unless ``bernoulli(k_r, ratio)``:
    a fraction ``1 − ratio`` of the pairs trains the instantaneous velocity ``u(x, t, t) = v``
    (the paper's best: ``ratio = 0.25`` of pairs with ``r ≠ t``; it fixes the count per batch,
    here each sample draws it, which is the same in expectation).
    """
    k_t, k_r = jax.random.split(key)
    lo, hi = interpolant.t_min, interpolant.t_max
    if callable(time_sampling):
        pair = jnp.asarray(time_sampling(k_t), jnp.result_type(float))
        if pair.shape != (2,):
            raise ValueError(f"time_sampling: a callable must return two times, shape (2,), got shape {pair.shape}")
    elif time_sampling == "lognormal":
        pair = lo + (hi - lo) * jax.nn.sigmoid(p_mean + p_std * jax.random.normal(k_t, (2,)))
    else:
        pair = jax.random.uniform(k_t, (2,), minval=lo, maxval=hi)
    r, t = jnp.min(pair), jnp.max(pair)
    return jnp.where(jax.random.bernoulli(k_r, ratio), r, t), t


def _number(value, name: str, condition: Callable[[float], bool], need: str) -> float:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (is_number and math.isfinite(value) and condition(value)):
        raise ValueError(f"{name} must be {need}, got {value!r}")
    return float(value)


def check_one_sided(interpolant, where: str) -> None:
    """Raise ``ValueError`` unless ``interpolant`` is a one-sided :class:`~genjax.interpolants.Interpolant`."""
    if not isinstance(interpolant, Interpolant) or interpolant.two_sided:
        raise ValueError(f"{where}: interpolant must be a one-sided genjax.Interpolant (x_t = α x0 + σ ε, MATH.md §1); "
                         f"got {getattr(interpolant, 'name', type(interpolant).__name__)!r}"
                         + (", which is two-sided" if isinstance(interpolant, Interpolant) else ""))


def check_meanflow_options(interpolant, *, ratio, time_sampling, p_mean, p_std, adaptive_p, adaptive_c,
                           where: str = "meanflow_loss") -> None:
    """Raise ``ValueError`` on a two-sided or foreign interpolant or a bad MeanFlow option."""
    check_one_sided(interpolant, where)
    _number(ratio, "ratio", lambda v: 0.0 <= v <= 1.0, "a number in [0, 1] (the fraction of pairs with r ≠ t)")
    if not (callable(time_sampling) or time_sampling in MEANFLOW_TIME_SAMPLINGS):
        raise ValueError(f"time_sampling={time_sampling!r} is not known; expected one of {MEANFLOW_TIME_SAMPLINGS} "
                         "or a callable key -> two times")
    _number(p_mean, "p_mean", lambda v: True, "a finite number (the logit-normal location)")
    _number(p_std, "p_std", lambda v: v > 0, "a positive finite number (the logit-normal scale)")
    _number(adaptive_p, "adaptive_p", lambda v: v >= 0, "a finite number >= 0 (w = 1/(‖Δ‖² + c)^p; 0 is plain L2)")
    _number(adaptive_c, "adaptive_c", lambda v: v > 0, "a positive finite number (w = 1/(‖Δ‖² + c)^p)")


def check_meanflow_model(model, x_spec, c=None, *, where: str) -> None:
    """``check_output`` for a MeanFlow model called per sample as ``fn(times, x[, c])``, ``times = [r, t]``."""
    check_callable(model, "model", "fn(times, x) or fn(times, x, c) with times = jnp.array([r, t])")
    try:
        check_output(model, jnp.zeros(2, jnp.result_type(float)), x_spec, c, where=where)
    except ValueError as err:
        raise ValueError(f"{err} [a MeanFlow model takes the time pair times = jnp.array([r, t]), shape (2,), "
                         "in place of t]") from err


def _path(interpolant: Interpolant, t, a0, a1, z):
    """``(x_t, ẋ_t)``: ``α x0 + σ z`` and ``α̇ x0 + σ̇ z``, or ``α x0 + β x1 + γ z`` and its t-derivative."""
    if a1 is None:
        a, s, da, ds = interpolant.scales(t)
        return a * a0 + s * z, da * a0 + ds * z
    da, db, dg = interpolant.derivatives(t)
    return interpolant.sample_path(a0, t, z, a1), da * a0 + db * a1 + dg * z


def meanflow_loss(
    model: Callable,
    interpolant: Interpolant,
    x0,
    key,
    *,
    x1=None,
    c=None,
    ratio: float = 0.25,
    time_sampling: str | Callable = "lognormal",
    p_mean: float = -0.4,
    p_std: float = 1.0,
    adaptive_p: float = 1.0,
    adaptive_c: float = 1e-3,
    return_error: bool = False,
):
    """Per-sample MeanFlow losses ``sg(w)‖Δ‖²``, shape ``(n,)`` (take the mean to train; module docstring).

    Args:
      model: per-sample ``fn(times, x)`` (or ``fn(times, x, c)``), ``times = jnp.array([r, t])``,
        returning the average velocity ``u(x, r, t)`` of ``x``'s shape, passed as data.
      interpolant: a one-sided path.
      x0: data batch ``(n, *event_shape)``.
      key: PRNG key (split per sample, module docstring).
      x1: optional coupled prior draws ``(n, *event_shape)`` replacing the Gaussian draw, as in
        :func:`genjax.losses.interpolant_loss`: ``x_t = α x0 + β x1 + γ z``.
      c: optional conditioning batch (leading axis n).
      ratio, time_sampling, p_mean, p_std: the time pairs, :func:`sample_time_pair`.
      adaptive_p, adaptive_c: the weight ``w = 1/(‖Δ‖² + c)^p`` (p = 0: plain L2).
      return_error: also return the unweighted ``‖Δ‖²`` per sample (the paper's logged error).
    """
    check_meanflow_options(interpolant, ratio=ratio, time_sampling=time_sampling, p_mean=p_mean, p_std=p_std,
                           adaptive_p=adaptive_p, adaptive_c=adaptive_c)
    check_batch("x0", x0)
    x0 = jnp.asarray(x0)
    if x1 is not None:
        if jnp.shape(x1) != x0.shape:
            raise ValueError(f"x1 must have the shape of x0 {x0.shape}, got {jnp.shape(x1)}")
        check_finite("x1", x1)
        x1 = jnp.asarray(x1)
    n = x0.shape[0]
    c = check_conditioning(c, n)
    check_meanflow_model(model, jax.ShapeDtypeStruct(x0.shape[1:], x0.dtype),
                         None if c is None else jax.tree.map(lambda a: a[0], c), where="meanflow_loss")

    def one(k, a0, a1, ci):
        k_time, k_z = jax.random.split(k)
        r, t = sample_time_pair(k_time, interpolant, ratio=ratio, time_sampling=time_sampling, p_mean=p_mean,
                                p_std=p_std)
        z = jax.random.normal(k_z, a0.shape, a0.dtype)
        xt, v = _path(interpolant, t, a0, a1, z)
        v = v.astype(xt.dtype)
        fn = per_sample(model, ci)
        u, dudt = jax.jvp(lambda x, r, t: fn(jnp.stack([r, t]), x), (xt, r, t),
                          (v, jnp.zeros_like(r), jnp.ones_like(t)))
        target = jax.lax.stop_gradient(v - (t - r) * dudt)
        error = jnp.sum((u - target) ** 2)
        weight = jax.lax.stop_gradient((error + adaptive_c) ** -adaptive_p)
        return weight * error, error

    losses, errors = jax.vmap(one)(jax.random.split(key, n), x0, x1, c)
    return (losses, errors) if return_error else losses
