"""Log-likelihoods by the instantaneous change of variables, and bits per dimension.

Along ``dx/dt = v(t, x)``, ``d/dt log p_t(x(t)) = −∇·v`` (Chen et al. 2018, "Neural ODEs";
Grathwohl et al. 2019, "FFJORD").  Integrating the augmented state ``(x, ∫ ∇·v dt)`` from
``t0`` to ``t1`` gives ``log p_{t0}(x) = log p_{t1}(x(t1)) + ∫_{t0}^{t1} ∇·v(t, x(t)) dt``
(MATH.md §6).  :func:`cnf_log_prob` is the generic core (any field, any base density,
differentiable for maximum likelihood); :func:`log_likelihood` applies it to a model of a
one-sided interpolant, data at ``t_min`` → prior ``N(0, σ(t_max)² I)`` at ``t_max``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from . import _checks
from .interpolants import Interpolant, check_domain
from .model import check_conditioning, check_output, filter_jit, per_sample
from .ode import integrate, raise_on_failure, resolve_solver, summarize
from .samplers.common import map_chunks, num_heads
from .samplers.ode import velocity_field

__all__ = ["DIVERGENCES", "PROBES", "cnf_log_prob", "log_likelihood", "normal_log_prob", "bits_per_dim",
           "exact_divergence", "hutchinson_divergence"]

DIVERGENCES = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")


def normal_log_prob(z, std=1.0):
    """``log N(z; 0, std² I)`` summed over all entries of one sample ``z``."""
    d = z.size
    return -0.5 * jnp.sum((z / std) ** 2) - d * jnp.log(std) - 0.5 * d * math.log(2 * math.pi)


def exact_divergence(f, x, probe=None):
    """``(f(x), ∇·f(x), ‖∂f/∂x‖_F²)`` from the ``d`` Jacobian columns (JVPs on the basis vectors, vmapped)."""
    del probe
    y, jvp = jax.linearize(f, x)
    d = x.size
    basis = jnp.eye(d, dtype=x.dtype).reshape((d, *x.shape))
    columns = jax.vmap(jvp)(basis).reshape(d, d)  # row i = J e_i, flattened
    return y, jnp.trace(columns), jnp.sum(columns**2)


def hutchinson_divergence(f, x, probe):
    """``(f(x), ξᵀ J ξ, ‖J ξ‖²)`` from one JVP: unbiased estimates of ``tr J`` (Hutchinson 1989) and ``‖J‖_F²``."""
    y, jv = jax.jvp(f, (x,), (probe,))
    return y, jnp.sum(probe * jv), jnp.sum(jv**2)


_DIVERGENCE_FNS = {"exact": exact_divergence, "hutchinson": hutchinson_divergence}


def _draw_probes(key, shape, probe):
    if probe == "rademacher":
        return jax.random.rademacher(key, shape, jnp.result_type(float))
    return jax.random.normal(key, shape)


def cnf_log_prob(field, x, key=None, *, t0=0.0, t1=1.0, base_log_prob=normal_log_prob, divergence="exact",
                 probe="rademacher", solver="tsit5", rtol=1e-5, atol=1e-5, num_steps=100, max_steps=None,
                 adjoint=None, return_stats=False, regularization=False, c=None, per_row_stats=False):
    """``log p_{t0}(x)`` for each row of ``x`` under the flow ``dz/dt = field(t, z)`` (MATH.md §6).

    Solves ``d(z, L)/dt = (field(t, z), ∇·field(t, z))`` from ``(x, 0)`` at ``t0`` to ``t1`` and
    returns ``base_log_prob(z(t1)) + L(t1)`` (FFJORD, Grathwohl et al. 2019).  The
    Hutchinson probe ``ξ`` (Rademacher or Gaussian, ``E[ξξᵀ] = I``) is drawn once per row
    and kept for the whole trajectory.  Differentiable w.r.t. arrays closed over in
    ``field``: the field is closure-converted (``jax.closure_convert``) so that its
    parameters enter diffrax as ``args``, which ``diffrax.RecursiveCheckpointAdjoint``
    (default) and ``diffrax.BacksolveAdjoint`` (pass ``adjoint=``) both differentiate.
    Not jitted itself: call it inside your ``jit``/``grad``.

    Args:
      field: per-sample vector field ``field(t, z)`` (or ``field(t, z, c)`` with a conditioning
        batch ``c``), a plain function or a callable pytree (:mod:`genjax.model`).
      x: ``(n, *event_shape)`` points.
      key: PRNG key, needed for ``divergence="hutchinson"``.
      t0, t1: integration interval (``t0 < t1`` integrates data → base).
      base_log_prob: per-sample log-density of the base at ``t1`` (default ``N(0, I)``).
      divergence: ``exact`` (``d`` JVPs; fine for d ≲ 100) or ``hutchinson`` (one JVP).
      probe: ``rademacher`` or ``gaussian``.
      solver, rtol, atol, num_steps, max_steps: as in :func:`genjax.ode.integrate` (a name or a
        diffrax explicit solver object).
      return_stats: also return ``{nfe, nfe_mean, num_steps, ...}``; ``nfe`` counts
        evaluations of the augmented field, each one call of ``field`` plus its JVPs.
      regularization: also integrate the RNODE terms (Finlay et al. 2020) ``∫‖f‖² dt`` and
        ``∫‖∂f/∂z‖_F² dt`` (exact, or the unbiased ``‖Jξ‖²`` with Hutchinson), returned per row
        as ``stats["kinetic"]`` and ``stats["jacobian_frobenius"]`` (needs ``return_stats``).
      per_row_stats: return the per-row solver stats instead of their summary.

    Returns:
      ``(n,)`` log-densities in nats (and stats if ``return_stats``).
    """
    _checks.check_choice(divergence, "divergence", DIVERGENCES)
    _checks.check_choice(probe, "probe", PROBES)
    resolve_solver(solver)
    num_steps = _checks.check_positive_int(num_steps, "num_steps")
    x = _checks.float_batch(x, "x")
    if divergence == "hutchinson" and key is None:
        raise ValueError("cnf_log_prob: divergence='hutchinson' needs a PRNG key for the probes")
    probes = _draw_probes(key, x.shape, probe) if divergence == "hutchinson" else None
    c = check_conditioning(c, x.shape[0])
    div_fn = _DIVERGENCE_FNS[divergence]
    t0 = jnp.asarray(t0, jnp.result_type(float))
    t1 = jnp.asarray(t1, jnp.result_type(float))
    c0 = None if c is None else jax.tree.map(lambda a: a[0], c)
    converted, consts = jax.closure_convert(lambda t, z, ci: field(t, z) if ci is None else field(t, z, ci), t0,
                                            x[0], c0)

    def augmented(t, state, args):
        params, xi, ci = args
        dz, div, frobenius = div_fn(lambda z: converted(t, z, ci, *params), state[0], xi)
        return (dz, div, jnp.sum(dz**2), frobenius) if regularization else (dz, div)

    def per_sample(x0, xi, ci):
        # The log-det carry starts as 0·Σx0 so that it is batched under vmap: an unbatched carry (e.g. a field
        # whose divergence does not depend on z) gets its parameter cotangent counted n times on fixed-step
        # solves (diffrax 0.7.2 / equinox 0.13.8; jnp.zeros_like is not enough, it stays unbatched).
        zero = 0.0 * jnp.sum(x0)
        y0 = (x0, zero, zero, zero) if regularization else (x0, zero)
        y1, stats = integrate(augmented, y0, t0, t1, solver=solver, num_steps=num_steps, rtol=rtol,
                              atol=atol, max_steps=max_steps, args=(consts, xi, ci), adjoint=adjoint)
        if regularization:  # RNODE (Finlay et al. 2020): ∫‖f‖² dt and ∫‖∂f/∂z‖_F² dt (exact or ‖Jξ‖² estimate)
            stats = {**stats, "kinetic": y1[2], "jacobian_frobenius": y1[3]}
        return base_log_prob(y1[0]) + y1[1], stats

    log_prob, stats = jax.vmap(per_sample, in_axes=(0, None if probes is None else 0, 0))(x, probes, c)
    return (log_prob, stats if per_row_stats else summarize(stats)) if return_stats else log_prob


@filter_jit
def _log_likelihood(model, interpolant, prediction, base_log_prob, from_start, divergence, probe, solver, num_steps,
                    max_steps, rtol, atol, inputs):
    x, key, c = inputs
    c0 = None if c is None else jax.tree.map(lambda a: a[0], c)
    check_output(model, jnp.zeros((), x.dtype), x[0], c0, where="log_likelihood", heads=num_heads(prediction))
    field = lambda t, z, *ci: velocity_field(per_sample(model, *ci), interpolant, prediction)(t, z)
    if base_log_prob is None:  # the one-sided prior (built here: a new function per call would recompile)
        base_log_prob = lambda z: normal_log_prob(z, interpolant.prior_std())  # noqa: E731
    ends = (interpolant.t_min, interpolant.t_max)
    return cnf_log_prob(
        field, x, None if key is None else key[0], t0=ends[0] if from_start else ends[1],
        t1=ends[1] if from_start else ends[0], base_log_prob=base_log_prob, divergence=divergence, probe=probe,
        solver=solver, rtol=rtol, atol=atol, num_steps=num_steps, max_steps=max_steps, return_stats=True, c=c,
        per_row_stats=True,
    )


def log_likelihood(model, interpolant: Interpolant, x, key=None, *, prediction, c=None, x_at: str = "t_min",
                   base_log_prob=None, divergence: str = "exact", probe: str = "rademacher", solver="tsit5",
                   rtol: float = 1e-5, atol: float = 1e-5, num_steps: int = 100, max_steps: int | None = None,
                   chunk_size: int | None = None, mesh=None, return_stats: bool = False):
    """Log-density of each row of ``x`` along the ODE of a model, in nats (MATH.md §6, §10).

    ``log p(x) = log N(x(t_max); 0, σ(t_max)² I) + ∫_{t_min}^{t_max} ∇·v(t, x(t)) dt`` with
    ``v`` converted from ``prediction`` (Song et al. 2021, §D.2); a thin jitted layer over
    :func:`cnf_log_prob`.  Everything stays on ``[t_min, t_max]``: the result is the density
    of ``p_{t_min}`` (≈ the data density) under the prior approximation ``p_{t_max} ≈
    N(0, σ(t_max)² I)`` (exact when ``α(t_max) = 0``).  On the raw ``ddpm`` schedule use a
    fixed-step solver or its smooth ``vp`` equivalent (MATH.md §2).

    Either end may carry the known density: with ``x_at="t_max"`` the rows of ``x`` are points
    at ``t_max`` and ``log p_{t_max}(x) = base_log_prob(x(t_min)) − ∫_{t_min}^{t_max} ∇·v dt``.
    For a two-sided path (``v = b``, which transports ``ρ0`` to ``ρ1``) this is the likelihood of
    ``x1`` when ``ρ0`` has the density ``base_log_prob`` (or of ``x0`` under a known ``ρ1``).

    Args: as :func:`cnf_log_prob`; ``model`` is a per-sample ``fn(t, x)`` (or ``fn(t, x, c)``
    with the conditioning batch ``c``) predicting ``prediction``, passed as data
    (:mod:`genjax.model`); ``chunk_size`` and ``mesh`` as in :func:`genjax.samplers.sample_ode`.
    ``x_at``: ``"t_min"`` (default) or ``"t_max"``, the end where ``x`` lives.
    ``base_log_prob``: per-sample log-density at the other end; default (one-sided, ``x_at="t_min"``
    only) the prior ``N(0, σ(t_max)² I)``.
    With ``chunk_size``, the Hutchinson probes of each chunk come from ``fold_in(key, chunk)``.
    Returns ``(n,)`` log-densities, or ``(logp, stats)`` with ``stats["nfe"]`` if ``return_stats``.
    Raises ``FloatingPointError`` on non-finite values and ``RuntimeError`` when an adaptive
    solve exceeds ``max_steps``.
    """
    _checks.check_callable(model, "model", "fn(t, x) or fn(t, x, c)")
    _checks.check_choice(divergence, "divergence", DIVERGENCES)
    _checks.check_choice(probe, "probe", PROBES)
    _checks.check_choice(x_at, "x_at", ("t_min", "t_max"))
    resolve_solver(solver)
    num_steps = _checks.check_positive_int(num_steps, "num_steps")
    rtol, atol = _checks.check_positive_float(rtol, "rtol"), _checks.check_positive_float(atol, "atol")
    max_steps = _checks.check_optional_positive_int(max_steps, "max_steps")
    if not isinstance(interpolant, Interpolant):
        raise ValueError(f"interpolant must be a genjax.Interpolant, got {type(interpolant).__name__}")
    if base_log_prob is None:
        if interpolant.two_sided or x_at == "t_max":
            raise ValueError("log_likelihood: pass base_log_prob, the per-sample log-density at the other end (a "
                             "two-sided path, or x at t_max, has no Gaussian prior there)")
    else:
        _checks.check_callable(base_log_prob, "base_log_prob", "base_log_prob(z) -> scalar, per sample")
    check_domain(interpolant, prediction, interpolant.t_min, interpolant.t_max, what="log_likelihood")
    x = _checks.float_batch(x, "x")
    if divergence == "hutchinson" and key is None:
        raise ValueError("log_likelihood: divergence='hutchinson' needs a PRNG key for the probes")
    n = x.shape[0]
    size = n if chunk_size is None else min(_checks.check_positive_int(chunk_size, "chunk_size"), n)
    # one key per chunk, repeated per row so that it travels with the rows through map_chunks
    chunk_keys = None if key is None else jnp.repeat(
        jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(-(-n // size))), size, axis=0)[:n]
    log_prob, stats = map_chunks(
        lambda chunk: _log_likelihood(model, interpolant, prediction, base_log_prob, x_at == "t_min", divergence,
                                      probe, solver, num_steps, max_steps, rtol, atol, chunk),
        (x, chunk_keys, check_conditioning(c, n)), chunk_size=chunk_size, mesh=mesh)
    raise_on_failure(stats, "log_likelihood", max_steps)
    if not np.all(np.isfinite(np.asarray(log_prob))):
        raise FloatingPointError("log_likelihood: non-finite log-densities: the model returned non-finite values "
                                 "along the ODE (check its weights and the schedule/prediction pair)")
    return (log_prob, summarize(stats)) if return_stats else log_prob


def bits_per_dim(log_prob, num_dims: int, *, num_bins: int = 256, data_range: float = 2.0):
    """``bpd = −(log p(x) + D log(data_range/num_bins)) / (D ln 2)`` (MATH.md §6).

    For ``num_bins``-level data scaled to an interval of width ``data_range`` (8-bit data in
    [−1, 1]: 256 and 2) with uniform dequantisation; ``log_prob`` in nats of the scaled data.
    """
    num_dims = _checks.check_positive_int(num_dims, "num_dims")
    num_bins = _checks.check_positive_int(num_bins, "num_bins")
    data_range = _checks.check_positive_float(data_range, "data_range")
    log_prob = jnp.asarray(log_prob)
    return -(log_prob + num_dims * np.log(data_range / num_bins)) / (num_dims * np.log(2.0))
