"""The unified stochastic-interpolant loss (MATH.md §4).

``ℓ(θ) = E_{t, x0, x1, z} w(t) ‖pred_θ(t, x_t) − target‖²`` with ``x_t = α x0 + β x1 + γ z``
and target ``ẋ_t`` (velocity), ``ε`` (noise), ``x0`` (data) or ``−ε/σ`` (score).

Choosing the schedule, prediction, time sampling and weighting recovers published losses
exactly (MATH.md §2): (ddpm, noise, discrete, unit) is DDPM's ``L_simple`` (Ho et al. 2020);
(linear, velocity, uniform, unit) is conditional flow matching (Lipman et al. 2023; Liu et
al. 2023, with data at t=0); (vp, score, uniform, sigma2) is the denoising score-matching
loss of the VP-SDE (Song et al. 2021), equal to the ε-loss.

Randomness, per sample ``i`` (so independent implementations can reproduce it):
``k_i = split(key, n)[i]``, ``(k_t, k_z) = split(k_i)``, ``t`` from ``k_t`` and
``z = normal(k_z, event_shape)``.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from .._checks import check_batch, check_callable, check_finite
from ..interpolants import Interpolant, check_predictions
from ..model import check_conditioning, check_output, per_sample

__all__ = ["interpolant_loss", "sample_time", "WEIGHTINGS", "TIME_SAMPLINGS"]

WEIGHTINGS = ("unit", "sigma2")
TIME_SAMPLINGS = ("uniform", "discrete")


def sample_time(key, interpolant: Interpolant, time_sampling="uniform", num_steps: int | None = None):
    """One training time: ``U(t_min, t_max)``, or ``i/T`` with ``i`` uniform on ``{1..T}``, or ``time_sampling(key)``."""
    if callable(time_sampling):
        return jnp.asarray(time_sampling(key), jnp.float32)
    if time_sampling == "uniform":
        return jax.random.uniform(key, (), minval=interpolant.t_min, maxval=interpolant.t_max)
    steps = num_steps or interpolant.num_steps
    i = jax.random.randint(key, (), 1, steps + 1)
    return i.astype(jnp.float32) / steps


def _check_args(interpolant, x0, x1, prediction, weighting, time_sampling, num_steps):
    if not isinstance(interpolant, Interpolant):
        raise ValueError(f"interpolant must be a genjax.Interpolant, got {type(interpolant).__name__}")
    if not (callable(weighting) or weighting in WEIGHTINGS):
        raise ValueError(f"weighting={weighting!r} is not known; expected one of {WEIGHTINGS} or a callable w(t)")
    if not (callable(time_sampling) or time_sampling in TIME_SAMPLINGS):
        raise ValueError(
            f"time_sampling={time_sampling!r} is not known; expected one of {TIME_SAMPLINGS} or a callable key -> t"
        )
    if time_sampling == "discrete" and not (num_steps or interpolant.num_steps):
        raise ValueError(
            f"time_sampling='discrete' needs a grid size: pass num_steps=T or use an interpolant with num_steps "
            f"(interpolant {interpolant.name!r} has none)"
        )
    names = check_predictions(prediction, interpolant)
    check_batch("x0", x0)
    if x1 is not None and jnp.shape(x1) != jnp.shape(x0):
        raise ValueError(f"x1 must have the shape of x0 {jnp.shape(x0)}, got {jnp.shape(x1)}")
    if interpolant.two_sided and x1 is None:
        raise ValueError(f"interpolant {interpolant.name!r} is two-sided: pass the x1 batch (the second data set)")
    check_finite("x1", x1)
    return names


def interpolant_loss(
    model: Callable,
    interpolant: Interpolant,
    x0,
    key,
    *,
    prediction,
    weighting: str | Callable = "unit",
    time_sampling: str | Callable = "uniform",
    x1=None,
    c=None,
    num_steps: int | None = None,
    antithetic: bool = False,
):
    """Per-sample interpolant losses, shape ``(n,)`` (take the mean to train).

    Args:
      model: per-sample model ``fn(t, x)`` (or ``fn(t, x, c)``) predicting ``prediction`` (scalar
        ``t``, ``x`` of event shape), passed as data (:mod:`genjax.model`).
      interpolant: the path; one-sided unless ``interpolant.two_sided``.
      x0: data batch ``(n, *event_shape)``.
      key: PRNG key (split per sample, see the module docstring).
      prediction: ``"velocity" | "noise" | "data" | "score"`` (two-sided: or a tuple of them, one per head).
      weighting: ``"unit"`` (w = 1), ``"sigma2"`` (w = σ(t)², or γ(t)² for two-sided paths) or ``w(t)``.
      time_sampling: ``"uniform"`` on ``[t_min, t_max]``, ``"discrete"`` (``i/T``, ``i ∈ {1..T}``) or ``key -> t``.
      x1: optional second batch. Two-sided paths need it (``x_t = α x0 + β x1 + γ z``, noise target ``z``,
        score target ``−z/γ``); for one-sided paths it replaces the Gaussian draw (e.g. coupled pairs),
        with noise target ``(β x1 + γ z)/σ``.
      c: optional conditioning batch (a pytree of arrays with leading axis n), one entry per sample.
      num_steps: discrete grid size T (default ``interpolant.num_steps``).
      antithetic: average the loss over ``x_t^± = α x0 + β x1 ± γ z`` (targets with ``±z``): unbiased,
        and the ``O(γ̇)`` gradient noise of the velocity loss cancels to ``O(γγ̇)`` (MATH.md §10), which
        matters where ``γ̇ → ∞`` (``γ ∝ sqrt(t(1−t))``).  Two model calls per sample.

    Two-sided paths may train several heads at once: ``prediction=("velocity", "noise")`` with a
    model returning the tuple ``(b̂, η̂)`` (or :class:`genjax.model.Heads`), loss ``‖b̂ − ẋ_t‖² + ‖η̂ − z‖²``
    on the same draw.  The squared error is summed over the event dimensions: ``‖·‖²``.
    """
    check_callable(model, "model", "fn(t, x) or fn(t, x, c)")
    names = _check_args(interpolant, x0, x1, prediction, weighting, time_sampling, num_steps)
    x0 = jnp.asarray(x0)
    keys = jax.random.split(key, x0.shape[0])
    c = check_conditioning(c, x0.shape[0])
    check_output(model, jnp.zeros(()), jax.ShapeDtypeStruct(x0.shape[1:], x0.dtype),
                 None if c is None else jax.tree.map(lambda a: a[0], c), where="interpolant_loss", heads=len(names))

    def squared_error(model_fn, t, a0, a1, z):
        xt = interpolant.sample_path(a0, t, z, a1)
        if a1 is None:  # one-sided: x_t = α x0 + σ ε
            _, s, da, ds = interpolant.scales(t)
            noise, noise_scale = z, s
            velocity = da * a0 + ds * z
        else:
            _, b, g = interpolant.coefficients(t)
            da, db, dg = interpolant.derivatives(t)
            velocity = da * a0 + db * a1 + dg * z
            if interpolant.two_sided:
                noise, noise_scale = z, g
            else:
                noise_scale = jnp.sqrt(b**2 + g**2)
                noise = (b * a1 + g * z) / noise_scale
        targets = {"velocity": velocity, "noise": noise, "data": a0}
        pred = model_fn(t, xt)
        preds = pred if len(names) > 1 else (pred,)
        return sum(jnp.sum((p - targets.get(name, -noise / noise_scale)) ** 2) for name, p in zip(names, preds))

    def one(k, a0, a1, ci):
        kt, kz = jax.random.split(k)
        t = sample_time(kt, interpolant, time_sampling, num_steps)
        z = jax.random.normal(kz, a0.shape, a0.dtype)
        model_fn = per_sample(model, ci)
        loss = squared_error(model_fn, t, a0, a1, z)
        if antithetic:
            loss = 0.5 * (loss + squared_error(model_fn, t, a0, a1, -z))
        if callable(weighting):
            w = weighting(t)
        elif weighting == "sigma2":
            w = interpolant.coefficients(t)[2] ** 2 if interpolant.two_sided else interpolant.sigma(t) ** 2
        else:
            w = 1.0
        return w * loss

    return jax.vmap(one)(keys, x0, None if x1 is None else jnp.asarray(x1), c)
