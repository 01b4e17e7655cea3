"""Score-matching losses (MATH.md §4): explicit, denoising, sliced and NCSN.

Each loss is a per-sample function of a score callable and one data point ``x`` (any event
shape); the batch helpers (``esm``, ``dsm``, ``ssm``, ``ncsn``) ``vmap`` it and return the
per-sample losses, shape ``(n,)`` — take the mean to train.  Score callables close over
their parameters (``lambda x: apply(params, x)``), so ``jax.grad`` of the mean trains them.

* ESM (Hyvärinen 2005): ``tr ∇_x s(x) + ½‖s(x)‖²``; its expectation is
  ``½ E‖s − ∇log p‖² − ½ E‖∇log p‖²`` (half the Fisher divergence up to a θ-free constant).
* DSM (Vincent 2011) at noise std σ: ``½‖s(x + σε) + ε/σ‖²``.
* SSM (Song et al. 2019): ``vᵀ∇_x(vᵀs) + ½(vᵀs)²`` with ``E[vvᵀ] = I``; SSM-VR uses ``½‖s‖²``.
* NCSN (Song & Ermon 2019): ``(1/L) Σ_i σ_i² DSM(σ_i)`` over geometric ``σ_1 > … > σ_L``.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_batch, is_concrete
from ..likelihood import exact_divergence, hutchinson_divergence

__all__ = [
    "PROJECTIONS",
    "esm_loss",
    "dsm_loss",
    "ssm_loss",
    "ncsn_loss",
    "esm",
    "dsm",
    "ssm",
    "ncsn",
    "geometric_sigmas",
]

PROJECTIONS = ("gaussian", "rademacher")


def esm_loss(score_fn: Callable, x):
    """Explicit score matching ``tr ∇_x s(x) + ½‖s(x)‖²`` (Hyvärinen 2005) for one ``x``.

    The trace is exact: :func:`genjax.likelihood.exact_divergence`, ``d`` JVPs with the basis
    vectors (cost ∝ d forward passes: use SSM/DSM beyond small d).
    """
    s, trace, _ = exact_divergence(score_fn, x)
    return trace + 0.5 * jnp.sum(s**2)


def dsm_loss(score_fn: Callable, x, key, sigma):
    """Denoising score matching ``½‖s(x + σε) + ε/σ‖²``, ``ε ~ N(0, I)`` (Vincent 2011)."""
    eps = jax.random.normal(key, x.shape, x.dtype)
    return 0.5 * jnp.sum((score_fn(x + sigma * eps) + eps / sigma) ** 2)


def _projections(key, shape, dtype, n_projections, projection):
    if projection == "gaussian":
        return jax.random.normal(key, (n_projections, *shape), dtype)
    return jax.random.rademacher(key, (n_projections, *shape), dtype)


def ssm_loss(score_fn: Callable, x, key, *, n_projections: int = 1, projection: str = "gaussian",
             variance_reduction: bool = False):
    """Sliced score matching (Song, Garg, Shi & Ermon 2019) for one ``x``.

    ``mean_v [ vᵀ∇_x(vᵀs) + ½(vᵀs)² ]`` over ``n_projections`` draws of ``v`` (Gaussian or
    Rademacher, ``E[vvᵀ] = I``); with ``variance_reduction`` (SSM-VR) the last term is the
    exact ``½‖s‖²``.  ``vᵀ∇_x(vᵀs) = vᵀ J v`` is one JVP per projection
    (:func:`genjax.likelihood.hutchinson_divergence`), never a full Jacobian.
    """
    v = _projections(key, x.shape, x.dtype, n_projections, projection)
    s, vjv, _ = jax.vmap(lambda u: hutchinson_divergence(score_fn, x, u))(v)  # s(x) per projection, vᵀJv
    curvature = jnp.mean(vjv)
    if variance_reduction:
        return curvature + 0.5 * jnp.sum(s[0] ** 2)
    return curvature + 0.5 * jnp.mean(jnp.sum(v * s, axis=tuple(range(1, v.ndim))) ** 2)


def geometric_sigmas(sigma_max: float, sigma_min: float, num_levels: int):
    """``σ_1 = σ_max > … > σ_L = σ_min``, geometric (Song & Ermon 2019), largest first."""
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"geometric_sigmas: need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    if int(num_levels) != num_levels or num_levels < 2:
        raise ValueError(f"geometric_sigmas: num_levels must be an integer >= 2, got {num_levels!r}")
    return jnp.geomspace(sigma_max, sigma_min, int(num_levels), dtype=jnp.float32)


def ncsn_loss(score_fn: Callable, x, key, sigmas):
    """NCSN loss (Song & Ermon 2019) for one ``x``; ``score_fn(sigma, x)`` is noise-conditional.

    Estimator of ``(1/L) Σ_i σ_i² DSM(σ_i)``: one level ``i ~ U{1..L}`` per sample, then
    ``σ_i² · ½‖s(σ_i, x + σ_i ε) + ε/σ_i‖²`` — unbiased, as in the paper's training code.
    Its continuous-level limit (σ log-uniform) is ``½ ·`` the foundation's
    ``interpolant_loss(fn, ve, x0, key, prediction="score", weighting="sigma2")`` with
    ``fn(t, x) = s(σ(t), x)`` (that loss has no ½).
    """
    k_level, k_eps = jax.random.split(key)
    sigma = jax.random.choice(k_level, sigmas)
    return sigma**2 * dsm_loss(lambda y: score_fn(sigma, y), x, k_eps, sigma)


# --------------------------------------------------------------------------------------
# Batch helpers: vmap over the leading axis of ``x`` (and over split keys), return (n,).
# --------------------------------------------------------------------------------------


def _check_batch(name, x):
    check_batch(f"{name}: x", x)
    return jnp.asarray(x)


def _check_sigma(name, sigma):
    if is_concrete(sigma) and not np.all(np.asarray(sigma) > 0):
        raise ValueError(f"{name}: noise std sigma must be > 0, got {sigma!r}")


def esm(score_fn: Callable, x):
    """Per-sample :func:`esm_loss` over a batch ``x`` of shape ``(n, *event)`` → ``(n,)``."""
    x = _check_batch("esm", x)
    return jax.vmap(lambda xi: esm_loss(score_fn, xi))(x)


def dsm(score_fn: Callable, x, key, sigma):
    """Per-sample :func:`dsm_loss` at noise std ``sigma`` over a batch → ``(n,)``."""
    x = _check_batch("dsm", x)
    _check_sigma("dsm", sigma)
    keys = jax.random.split(key, x.shape[0])
    return jax.vmap(lambda k, xi: dsm_loss(score_fn, xi, k, sigma))(keys, x)


def ssm(score_fn: Callable, x, key, *, n_projections: int = 1, projection: str = "gaussian",
        variance_reduction: bool = False):
    """Per-sample :func:`ssm_loss` (or SSM-VR with ``variance_reduction=True``) over a batch → ``(n,)``."""
    x = _check_batch("ssm", x)
    if projection not in PROJECTIONS:
        raise ValueError(f"ssm: projection={projection!r} is not known; expected one of {PROJECTIONS}")
    if int(n_projections) != n_projections or n_projections < 1:
        raise ValueError(f"ssm: n_projections must be a positive integer, got {n_projections!r}")
    keys = jax.random.split(key, x.shape[0])
    return jax.vmap(lambda k, xi: ssm_loss(score_fn, xi, k, n_projections=int(n_projections),
                                           projection=projection, variance_reduction=variance_reduction))(keys, x)


def ncsn(score_fn: Callable, x, key, sigmas):
    """Per-sample :func:`ncsn_loss` over a batch → ``(n,)``; ``sigmas`` e.g. :func:`geometric_sigmas`."""
    x = _check_batch("ncsn", x)
    sigmas = jnp.asarray(sigmas)
    if sigmas.ndim != 1 or sigmas.shape[0] < 1:
        raise ValueError(f"ncsn: sigmas must be a 1-D array of noise levels, got shape {sigmas.shape}")
    _check_sigma("ncsn", sigmas)
    keys = jax.random.split(key, x.shape[0])
    return jax.vmap(lambda k, xi: ncsn_loss(score_fn, xi, k, sigmas))(keys, x)
