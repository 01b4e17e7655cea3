"""Gaussian maximum likelihood: closed form, gradient ascent, Fisher information.

MATH.md §8: ``μ̂ = mean(x)``, ``σ̂² = (1/N) Σ (x − μ̂)²`` (biased); maximising the likelihood is
minimising the cross-entropy ``−E_data log q`` and the forward KL ``KL(data ‖ q)``, which differ
by the data entropy only.  The input checks (:func:`as_data`) are shared by the whole package.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from .._checks import check_finite

__all__ = [
    "as_data",
    "gaussian_mle",
    "gaussian_log_prob",
    "mean_log_likelihood",
    "gaussian_mle_gradient",
    "minimise",
    "gaussian_fisher_information",
    "mle_standard_errors",
]

_LOG_2PI = math.log(2.0 * math.pi)
COVARIANCE_TYPES = ("diag", "full")


def as_data(x, name: str = "x", ndim: tuple[int, ...] = (2,), min_rows: int = 1) -> jax.Array:
    """``x`` as a float array after eager checks: ``ndim`` allowed, ≥ ``min_rows`` rows, all finite.

    Raises a ``ValueError`` that names ``name`` and the expected form.  Under ``jit``/``vmap``
    (tracers) only the static shape checks run.
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    forms = {1: "(N,)", 2: "(N, d)"}
    if x.ndim not in ndim:
        expected = " or ".join(forms.get(k, f"{k}-D") for k in ndim)
        hint = "; use x[:, None] for 1-D data" if x.ndim == 1 and 2 in ndim else ""
        raise ValueError(f"{name} must have shape {expected}, got shape {x.shape}{hint}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows (samples), got {x.shape[0]}")
    if x.ndim == 2 and x.shape[1] < 1:
        raise ValueError(f"{name} must have at least one column, got shape {x.shape}")
    check_finite(name, x)
    return x


def check_covariance_type(covariance_type: str) -> str:
    """Return ``covariance_type`` if it is ``"diag"`` or ``"full"``, else raise a ``ValueError``."""
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type={covariance_type!r} is not known; expected one of {COVARIANCE_TYPES}")
    return covariance_type


def gaussian_mle(x, covariance_type: str = "diag"):
    """Closed-form Gaussian MLE ``(μ̂, σ̂²)`` with the biased variance ``(1/N) Σ (x − μ̂)²``.

    ``x`` of shape ``(N,)`` gives scalars; ``(N, d)`` gives ``(d,)`` means and either ``(d,)``
    variances (``covariance_type="diag"``) or the ``(d, d)`` matrix ``(1/N) Σ (x − μ̂)(x − μ̂)ᵀ``
    (``"full"``).
    """
    x = as_data(x, ndim=(1, 2))
    check_covariance_type(covariance_type)
    mean = jnp.mean(x, axis=0)
    centred = x - mean
    if covariance_type == "full" and x.ndim == 2:
        return mean, centred.T @ centred / x.shape[0]
    return mean, jnp.mean(centred**2, axis=0)


def gaussian_log_prob(x, mean, var):
    """Per-sample ``log N(x; μ, Σ)``.

    ``x`` scalar or ``(d,)``; ``var`` a scalar or ``(d,)`` (diagonal, summed over coordinates)
    or, for ``x`` of shape ``(d,)``, a full ``(d, d)`` covariance (Cholesky solve).
    """
    x, mean, var = jnp.asarray(x), jnp.asarray(mean), jnp.asarray(var)
    if var.ndim == 2:
        if x.ndim != 1 or var.shape != (x.shape[0], x.shape[0]):
            raise ValueError(f"a full covariance needs x of shape (d,) and var of shape (d, d); got {x.shape}, {var.shape}")
        chol = jnp.linalg.cholesky(var)
        z = jax.scipy.linalg.solve_triangular(chol, x - mean, lower=True)
        logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
        return -0.5 * (jnp.sum(z**2) + logdet + x.shape[0] * _LOG_2PI)
    per_coordinate = -0.5 * ((x - mean) ** 2 / var + jnp.log(var) + _LOG_2PI)
    return jnp.sum(jnp.broadcast_to(per_coordinate, x.shape))


def mean_log_likelihood(x, mean, var):
    """``(1/N) Σ_i log N(x_i; μ, Σ)`` over the rows of ``x`` (per-sample log-prob, vmapped)."""
    x = as_data(x, ndim=(1, 2))
    return jnp.mean(jax.vmap(gaussian_log_prob, in_axes=(0, None, None))(x, mean, var))


def _negative_log_likelihood(params, x):
    mean, log_std = params
    return -jnp.mean(jax.vmap(gaussian_log_prob, in_axes=(0, None, None))(x, mean, jnp.exp(2.0 * log_std)))


def _minimise(loss_fn, params, optimizer, steps, *args):
    def step(carry, _):
        params, state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, *args)
        updates, state = optimizer.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), loss

    (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), None, length=steps)
    return params, losses


_minimise_jit = jax.jit(_minimise, static_argnums=(0, 2, 3))


def minimise(loss_fn: Callable, params, optimizer, steps: int, *args):
    """``steps`` updates of ``optimizer`` (optax) on ``loss_fn(params, *args)``, one ``lax.scan``.

    Returns ``(params, loss_history)`` where ``loss_history[i]`` is the loss before update ``i``.
    ``loss_fn`` and ``optimizer`` are static (hashed by identity): module-level functions compile once.
    """
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    return _minimise_jit(loss_fn, params, optimizer, int(steps), *args)


def gaussian_mle_gradient(x, *, steps: int = 500, learning_rate: float = 0.05, optimizer=None):
    """The diagonal Gaussian MLE by gradient ascent on ``(μ, log σ)``, compiled with ``lax.scan``.

    Minimises ``−(1/N) Σ log N(x_i; μ, σ²)`` from ``μ = 0, σ = 1`` with ``optimizer``
    (default ``optax.adam(learning_rate)``).  Returns ``(mean, var, nll_history)``; the optimum
    is :func:`gaussian_mle` (``diag``).
    """
    x = as_data(x, ndim=(1, 2))
    if optimizer is None:
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
        optimizer = optax.adam(learning_rate)
    zeros = jnp.zeros(x.shape[1:], x.dtype)
    (mean, log_std), history = minimise(_negative_log_likelihood, (zeros, zeros), optimizer, steps, x)
    return mean, jnp.exp(2.0 * log_std), history


def gaussian_fisher_information(std):
    """Fisher information of ``N(μ, σ²)`` per observation in ``(μ, σ)``: ``diag(1/σ², 2/σ²)``."""
    std = jnp.asarray(std)
    return jnp.diag(jnp.stack([1.0 / std**2, 2.0 / std**2]))


def mle_standard_errors(std, n):
    """Asymptotic standard errors of ``(μ̂, σ̂)`` from ``N`` draws: ``(σ/√N, σ/√(2N))`` = ``sqrt(diag(I⁻¹)/N)``."""
    std = jnp.asarray(std)
    return std / jnp.sqrt(n), std / jnp.sqrt(2.0 * n)
