"""SDE sampling with tunable diffusion, Euler–Maruyama through the diffrax core.

Generation (decreasing t, from ``t_start`` = ``t_max`` to ``t_end`` = ``t_min`` by default):
``dx = [v(t, x) − ε(t) s(t, x)] dt + sqrt(2 ε(t)) dW̄``; increasing t (encoding, or a two-sided
path run x0 → x1): ``dx = [v + ε s] dt + sqrt(2 ε) dW``.  Every ``ε ≥ 0`` has the marginals of
the ODE ``dx/dt = v`` (MATH.md §5, §10).  ``ε = g²/2`` gives the diffusion model's reverse SDE
``dx = [f x − g² s] dt + g dW̄`` (Anderson 1982; Song et al. 2021), ``ε = 0`` the PF-ODE.

diffrax runs ``t0 > t1`` by negating time; a Brownian increment over a step of length
``|Δt|`` then has variance ``|Δt|`` (checked in ``tests/test_samplers.py`` through the
variance of the samples).
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import lineax
import numpy as np

from .. import _checks
from ..interpolants import Interpolant, convert
from ..model import filter_jit
from ..ode import integrate, summarize
from .common import (check_sampler_args, check_samples, check_start, check_two_sided_start, map_chunks, model_field,
                     prior_draw, sample_inputs)
from .ode import check_save_times, resolve_times, trajectory_stats

__all__ = ["sample_sde", "sde_drift", "resolve_diffusion", "check_diffusion"]


def sde_drift(fn, interpolant: Interpolant, prediction, diffusion, *, forward: bool = False):
    """Per-sample drift ``v ∓ ε(t) s`` (``−`` backward in time, ``+`` forward), ``v`` and ``s`` from one call of ``fn``.

    ``v`` is the ODE's field: the PF-ODE velocity of a one-sided path, ``b`` of a two-sided one.
    """
    sign = 1.0 if forward else -1.0

    def drift(t, x):
        out = fn(t, x)
        v = convert(out, prediction, "velocity", interpolant, t, x)
        s = convert(out, prediction, "score", interpolant, t, x)
        return v + sign * diffusion(t) * s

    return drift


def resolve_diffusion(interpolant: Interpolant, diffusion):
    """``diffusion`` (a callable, or a number for a constant ``ε``) or the default ``ε(t) = g(t)²/2`` of a
    one-sided interpolant (two-sided paths have no default: pass ``diffusion``)."""
    if callable(diffusion):
        return diffusion
    if isinstance(diffusion, (int, float, np.number)) and not isinstance(diffusion, bool):
        return lambda t: float(diffusion) * jnp.ones_like(t)
    if diffusion is not None:
        raise ValueError(f"diffusion must be a callable ε(t) >= 0, a number >= 0 or None, got {diffusion!r}")
    if interpolant.two_sided:
        raise ValueError("diffusion: a two-sided interpolant has no default ε(t); pass diffusion=ε(t) >= 0 (a number "
                         "or a function of t), e.g. the bridge's σ²/2 for SB-CFM")

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


def sde_terms(drift, diffusion, x, key):
    """diffrax terms of ``dx = drift dt + sqrt(2ε(t)) dW`` for one sample (Brownian path from ``key``)."""

    def noise(t, y, args):
        return lineax.DiagonalLinearOperator(jnp.sqrt(2.0 * diffusion(t)) * jnp.ones_like(y))

    bm = diffrax.UnsafeBrownianPath(shape=jax.ShapeDtypeStruct(x.shape, x.dtype), key=key)
    return diffrax.MultiTerm(diffrax.ODETerm(lambda t, y, args: drift(t, y)), diffrax.ControlTerm(noise, bm))


@filter_jit
def _sde(model, interpolant, prediction, diffusion, event_shape, dtype, num_steps, ts, save_times, t_start, t_end,
         inputs):
    diffusion = resolve_diffusion(interpolant, diffusion)

    def one(key, x0, c):
        f = model_field(model, c, event_shape, dtype, "sample_sde", prediction)
        k_init, k_path = jax.random.split(key)
        x0 = prior_draw(k_init, event_shape, interpolant.sigma(t_start)).astype(dtype) if x0 is None else x0
        drift = sde_drift(f, interpolant, prediction, diffusion, forward=t_end > t_start)
        terms = sde_terms(drift, diffusion, x0, k_path)
        return integrate(None, x0, t_start, t_end, solver="euler", num_steps=num_steps, ts=ts, terms=terms,
                         save_times=save_times, adjoint=diffrax.ForwardMode())

    return jax.vmap(one)(*inputs)


def sample_sde(model, interpolant: Interpolant, key, shape=None, *, prediction, diffusion=None,
               num_steps: int = 1000, ts=None, t_start=None, t_end=None, x_init=None, c=None, save_times=None,
               chunk_size: int | None = None, mesh=None):
    """Sample with the SDE ``dx = [v ∓ ε s] dt + sqrt(2ε) dW`` (MATH.md §5, §10), Euler–Maruyama.

    ``v`` and ``s`` are converted from the model's prediction (Song et al. 2021's reverse SDE
    for ``ε = g²/2``; Albergo, Boffi & Vanden-Eijnden 2023 for general ``ε`` and two-sided
    paths, where ``v = b`` and ``s = −η/γ`` need a ``("velocity", "noise")`` model).  Runs
    ``num_steps`` equal steps (or the explicit grid ``ts``) from ``t_start`` (default ``t_max``)
    to ``t_end`` (default ``t_min``): decreasing t with ``v − ε s`` (generation), increasing t
    with ``v + ε s`` (encoding, or a two-sided path run from ``ρ0`` to ``ρ1``; needs
    ``x_init``).  Starts from ``x_init`` or the one-sided prior ``N(0, σ(t_start)² I)``.
    Brownian increments come from ``diffrax.UnsafeBrownianPath`` (exact for fixed-step EM),
    one path per sample from ``split(key, n)[i]``.

    Args:
      model, prediction, c, save_times, chunk_size, mesh: as :func:`genjax.samplers.sample_ode`.
      key: PRNG key (required: it drives the noise).
      diffusion: ``ε(t) >= 0``, a scalar function of t or a number; default (one-sided paths
        only) ``g(t)²/2`` from ``interpolant.sde_coefficients`` (needs ``α > 0``, so not at
        ``t = 1`` on ``linear``).  ``0`` gives the ODE with Euler steps.

    Returns ``(samples, stats)`` with ``stats["nfe"] = num_steps``.
    """
    t_start, t_end, ts = resolve_times(interpolant, t_start, t_end, ts, decreasing=False)
    num_steps = _checks.check_positive_int(num_steps, "num_steps")
    # Euler–Maruyama evaluates the model at every grid time but the last
    last_eval = float(ts[-2]) if ts is not None else t_end + (t_start - t_end) / num_steps
    check_sampler_args(model, interpolant, prediction, "sample_sde", min(last_eval, t_start), max(last_eval, t_start),
                       to=("velocity", "score"))
    if key is None:
        raise ValueError("sample_sde: key is required (it drives the Brownian motion)")
    check_two_sided_start(interpolant, x_init, "sample_sde")
    if t_end > t_start and x_init is None:
        raise ValueError("sample_sde: integrating forward in time (t_end > t_start) starts from data: pass x_init")
    shape, x_init = check_start(key, shape, x_init)
    check_diffusion(resolve_diffusion(interpolant, diffusion), t_start, t_end)
    save_times = check_save_times(save_times, t_start, t_end)
    dtype = jnp.result_type(float) if x_init is None else x_init.dtype
    samples, stats = map_chunks(
        lambda chunk: _sde(model, interpolant, prediction, diffusion, shape[1:], dtype, num_steps, ts, save_times,
                           t_start, t_end, chunk),
        sample_inputs(key, shape, x_init, c), chunk_size=chunk_size, mesh=mesh)
    check_samples(samples, "sample_sde")
    stats = summarize(stats)
    del stats["result"]
    return samples, trajectory_stats(stats, save_times)
