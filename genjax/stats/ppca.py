"""Probabilistic PCA in closed form (Tipping & Bishop 1999; MATH.md §15).

The model ``x = W z + μ + ε``, ``z ~ N(0, I_q)``, ``ε ~ N(0, σ² I_d)`` has the marginal
``p(x) = N(μ, C)``, ``C = W Wᵀ + σ² I``, and the exact posterior
``p(z | x) = N(M⁻¹ Wᵀ (x − μ), σ² M⁻¹)``, ``M = Wᵀ W + σ² I_q``.  The maximum-likelihood
parameters follow from the eigen-decomposition ``S = U Λ Uᵀ`` of the biased sample covariance:
``μ = x̄``, ``σ²`` the mean of the ``d − q`` smallest eigenvalues and ``W = U_q (Λ_q − σ² I)^{1/2}``
(up to a rotation R, here ``R = I``, so ``Wᵀ W`` is diagonal and so is the posterior covariance).
It is the linear-Gaussian VAE whose exact posterior makes the ELBO equal ``log p(x)``
(:mod:`genjax.models.vae`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._checks import check_positive_int
from .gaussian import as_data, gaussian_log_prob

__all__ = ["PPCA", "ppca_mle", "ppca_covariance", "ppca_log_prob", "ppca_log_likelihood", "ppca_posterior"]

_LOG_2PI = math.log(2.0 * math.pi)


class PPCA(NamedTuple):
    """Probabilistic PCA parameters: ``mean`` ``(d,)``, ``weight`` W ``(d, q)``, scalar ``noise_var`` σ²."""

    mean: jax.Array
    weight: jax.Array
    noise_var: jax.Array


def ppca_mle(x, latent_dim: int) -> PPCA:
    """Closed-form MLE of Tipping & Bishop (1999), eqs. 7–8, for data ``x`` ``(N, d)`` and ``q = latent_dim < d``.

    ``μ = x̄``, ``σ² = (1/(d − q)) Σ_{j>q} λ_j``, ``W = U_q (Λ_q − σ² I)^{1/2}`` with the eigenvalues
    ``λ_1 ≥ … ≥ λ_d`` of ``S = (1/N) Σ (x − x̄)(x − x̄)ᵀ``.
    """
    x = as_data(x, min_rows=2)
    q = check_positive_int(latent_dim, "latent_dim")
    d = x.shape[1]
    if q >= d:
        raise ValueError(f"latent_dim must be below the data dimension d={d}, got {q}")
    mean = jnp.mean(x, axis=0)
    centred = x - mean
    eigvals, eigvecs = jnp.linalg.eigh(centred.T @ centred / x.shape[0])  # ascending
    eigvals, eigvecs = eigvals[::-1], eigvecs[:, ::-1]
    noise_var = jnp.mean(eigvals[q:])
    weight = eigvecs[:, :q] * jnp.sqrt(jnp.maximum(eigvals[:q] - noise_var, 0.0))
    return PPCA(mean, weight, noise_var)


def ppca_covariance(model: PPCA) -> jax.Array:
    """The marginal covariance ``C = W Wᵀ + σ² I``."""
    weight = jnp.asarray(model.weight)
    return weight @ weight.T + model.noise_var * jnp.eye(weight.shape[0], dtype=weight.dtype)


def ppca_log_prob(model: PPCA, x) -> jax.Array:
    """Per-sample ``log p(x) = log N(x; μ, C)`` for ``x`` of shape ``(d,)``."""
    return gaussian_log_prob(x, model.mean, ppca_covariance(model))


def ppca_log_likelihood(model: PPCA, x) -> jax.Array:
    """``log L = −(N/2)[d log 2π + log det C + tr(C⁻¹ S)]``, ``S = (1/N) Σ (x − μ)(x − μ)ᵀ``: the sum of ``log p(x_i)``.

    With ``μ = x̄``, S is the biased sample covariance of MATH.md §15.
    """
    x = as_data(x)
    n, d = x.shape
    centred = x - model.mean
    cov = ppca_covariance(model)
    chol = jnp.linalg.cholesky(cov)
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    solved = jax.scipy.linalg.cho_solve((chol, True), centred.T @ centred / n)
    return -0.5 * n * (d * _LOG_2PI + log_det + jnp.trace(solved))


def ppca_posterior(model: PPCA, x) -> tuple[jax.Array, jax.Array]:
    """The exact posterior ``p(z | x) = N(M⁻¹ Wᵀ (x − μ), σ² M⁻¹)``, ``M = Wᵀ W + σ² I``: ``(mean (q,), cov (q, q))``.

    Per sample, ``x`` of shape ``(d,)``.
    """
    weight = jnp.asarray(model.weight)
    m = weight.T @ weight + model.noise_var * jnp.eye(weight.shape[1], dtype=weight.dtype)
    m_inv = jnp.linalg.inv(m)
    return m_inv @ (weight.T @ (jnp.asarray(x) - model.mean)), model.noise_var * m_inv
