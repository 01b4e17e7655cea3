"""Reverse-time SDE sampling with tunable diffusion, Euler–Maruyama through diffrax.

``dx = [v(t, x) − ε(t) s(t, x)] dt + sqrt(2 ε(t)) dW̄``, integrated with decreasing t from
``t_start`` (default ``t_max``) to ``t_end`` (default ``t_min``): every ``ε ≥ 0`` has the
marginals of the PF-ODE (MATH.md §5).  ``ε = g²/2`` gives the diffusion model's reverse SDE
``dx = [f x − g² s] dt + g dW̄`` (Anderson 1982; Song et al. 2021), ``ε = 0`` the PF-ODE.

diffrax runs ``t0 > t1`` by negating time; a Brownian increment over a step of length
``|Δt|`` then has variance ``|Δt|`` (checked in ``tests/test_samplers.py`` through the
variance of the samples).
"""

from __future__ import annotations

import functools

import diffrax
import jax
import jax.numpy as jnp
import lineax
import numpy as np

from ..interpolants import Interpolant, check_prediction, convert
from .ode import check_interval, check_positive_int, check_start, initial_state

__all__ = ["sample_sde", "reverse_drift", "resolve_diffusion", "check_diffusion"]


def reverse_drift(fn, interpolant: Interpolant, prediction: str, diffusion):
    """Per-sample drift ``v − ε(t) s`` of the reverse-time SDE, ``v`` and ``s`` from one call of ``fn``."""

    def drift(t, x):
        out = fn(t, x)
        v = convert(out, prediction, "velocity", interpolant, t, x)
        s = convert(out, prediction, "score", interpolant, t, x)
        return v - diffusion(t) * s

    return drift


def resolve_diffusion(interpolant: Interpolant, diffusion):
    """``diffusion`` or the default ``ε(t) = g(t)²/2`` of the interpolant."""
    if diffusion is not None:
        return diffusion

    def eps(t):
        return 0.5 * interpolant.sde_coefficients(t)[1]

    return eps


def check_diffusion(diffusion, t_start, t_end):
    """Raise ``ValueError`` unless ``diffusion(t)`` is a finite scalar ``>= 0`` on a grid of ``[t_end, t_start]``."""
    ts = np.linspace(t_end, t_start, 17)
    try:
        values = np.asarray(jax.vmap(lambda t: jnp.asarray(diffusion(t), jnp.float32) * jnp.ones(()))(jnp.asarray(ts)))
    except Exception as err:
        raise ValueError(f"diffusion must be a jax-traceable scalar function ε(t) ({err})") from err
    if values.shape != ts.shape:
        raise ValueError(f"diffusion(t) must return a scalar, got shape {values.shape[1:]}")
    bad = ~(np.isfinite(values) & (values >= 0))
    if bad.any():
        t = ts[int(np.argmax(bad))]
        raise ValueError(
            f"diffusion ε(t) must be finite and >= 0 on [t_end, t_start]; got ε({t:.4g}) = {values[bad][0]:.4g} "
            "(the default g²/2 needs α(t) > 0: pass diffusion=... or a smaller t_start)"
        )


@functools.partial(jax.jit, static_argnames=("fn", "interpolant", "prediction", "diffusion", "shape", "num_steps"))
def _sample_sde(fn, interpolant, prediction, diffusion, shape, num_steps, key, x_init, t_start, t_end):
    k_init, k_paths = jax.random.split(key)
    x = initial_state(interpolant, k_init, shape, x_init, t_start)
    diffusion = resolve_diffusion(interpolant, diffusion)
    drift = reverse_drift(fn, interpolant, prediction, diffusion)

    def noise(t, y, args):
        return lineax.DiagonalLinearOperator(jnp.sqrt(2.0 * diffusion(t)) * jnp.ones_like(y))

    def solve(x0, path_key):
        bm = diffrax.UnsafeBrownianPath(shape=jax.ShapeDtypeStruct(x0.shape, x0.dtype), key=path_key)
        terms = diffrax.MultiTerm(diffrax.ODETerm(lambda t, y, args: drift(t, y)), diffrax.ControlTerm(noise, bm))
        sol = diffrax.diffeqsolve(terms, diffrax.Euler(), t_start, t_end, (t_end - t_start) / num_steps, x0,
                                  saveat=diffrax.SaveAt(t1=True), max_steps=num_steps, adjoint=diffrax.ForwardMode())
        return sol.ys[-1]

    return jax.vmap(solve)(x, jax.random.split(k_paths, shape[0]))


def sample_sde(fn, interpolant: Interpolant, key, shape=None, prediction: str = "score", *, diffusion=None,
               num_steps: int = 1000, t_start=None, t_end=None, x_init=None):
    """Sample with the reverse-time SDE ``dx = [v − ε s] dt + sqrt(2ε) dW̄`` (MATH.md §5), Euler–Maruyama.

    ``v`` and ``s`` are converted from the one prediction of ``fn`` (Song et al. 2021's reverse
    SDE for ``ε = g²/2``; Albergo, Boffi & Vanden-Eijnden 2023 for general ``ε``).  Runs
    ``num_steps`` equal steps from ``t_start`` (default ``t_max``) down to ``t_end`` (default
    ``t_min``), both in ``[t_min, t_max]``, from ``x_init`` or the prior ``N(0, σ(t_start)² I)``.
    Brownian increments come from ``diffrax.UnsafeBrownianPath`` (exact for fixed-step EM).

    Args:
      fn: per-sample model ``fn(t, x)``; ``prediction``: ``velocity | noise | data | score``.
      key: PRNG key (required: it drives the noise).
      shape: ``(n, *event_shape)``; may be omitted with ``x_init``.
      diffusion: scalar function ``ε(t) >= 0``; default ``g(t)²/2`` from
        ``interpolant.sde_coefficients`` (needs ``α > 0``, so not at ``t = 1`` on ``linear``).
        ``lambda t: 0.0`` gives the PF-ODE with Euler steps.

    Returns:
      samples of shape ``(n, *event_shape)``.
    """
    check_prediction(prediction)
    num_steps = check_positive_int(num_steps, "num_steps")
    t_start, t_end = check_interval(interpolant, t_start, t_end, decreasing=True)
    if key is None:
        raise ValueError("sample_sde: key is required (it drives the Brownian motion)")
    shape, x_init = check_start(key, shape, x_init)
    if diffusion is not None and not callable(diffusion):
        raise ValueError(f"diffusion must be a callable ε(t) >= 0 or None, got {diffusion!r}")
    check_diffusion(resolve_diffusion(interpolant, diffusion), t_start, t_end)
    return _sample_sde(fn, interpolant, prediction, diffusion, shape, num_steps, key, x_init, t_start, t_end)
