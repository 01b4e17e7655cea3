"""Gaussian kernel density estimation: ``p̂(x) = (1/N) Σ_i N(x; x_i, H)`` (Parzen 1962, Rosenblatt 1956).

Bandwidth rules (normal-reference, multivariate forms as in ``scipy.stats.gaussian_kde``):
``H = c² Σ̂`` with ``Σ̂`` the unbiased sample covariance (``1/(N−1)``) and

* Scott (1992): ``c = N^{−1/(d+4)}``;
* Silverman (1986): ``c = (N (d+2)/4)^{−1/(d+4)}`` (1-D: ``1.06 σ̂ N^{−1/5}``).

A positive float ``h`` instead gives the isotropic kernel ``H = h² I``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct

from .gaussian import as_data

__all__ = ["KDE", "kde", "scott_factor", "silverman_factor"]


def scott_factor(n: int, d: int) -> float:
    """Scott's rule ``N^{−1/(d+4)}``: the kernel std in units of the data std."""
    return float(n) ** (-1.0 / (d + 4))


def silverman_factor(n: int, d: int) -> float:
    """Silverman's rule ``(N (d+2)/4)^{−1/(d+4)}``: the kernel std in units of the data std."""
    return (float(n) * (d + 2) / 4.0) ** (-1.0 / (d + 4))


_RULES = {"scott": scott_factor, "silverman": silverman_factor}


@struct.dataclass
class KDE:
    """A Gaussian KDE; ``data`` ``(N, d)`` and the Cholesky factor ``L`` of the kernel covariance ``H = L Lᵀ``."""

    data: jax.Array
    chol: jax.Array

    @property
    def covariance(self) -> jax.Array:
        """The kernel (bandwidth) matrix ``H``."""
        return self.chol @ self.chol.T

    def log_prob(self, x):
        """``log p̂(x) = logsumexp_i(−½‖L⁻¹(x − x_i)‖²) − log N − ½ log det(2π H)`` for one ``x`` ``(d,)``."""
        n, d = self.data.shape
        z = jax.scipy.linalg.solve_triangular(self.chol, (x[None, :] - self.data).T, lower=True)
        log_norm = jnp.sum(jnp.log(jnp.diagonal(self.chol))) + 0.5 * d * math.log(2 * math.pi) + math.log(n)
        return jax.nn.logsumexp(-0.5 * jnp.sum(z**2, axis=0)) - log_norm

    def sample(self, key, n: int):
        """``n`` draws ``x_I + L z`` with ``I`` uniform over the data and ``z ~ N(0, I)``."""
        ki, kz = jax.random.split(key)
        idx = jax.random.randint(ki, (n,), 0, self.data.shape[0])
        return self.data[idx] + jax.random.normal(kz, (n, self.data.shape[1])) @ self.chol.T


def kde(data, bandwidth="scott") -> KDE:
    """A Gaussian KDE of ``data`` ``(N, d)``; ``bandwidth`` is ``"scott"``, ``"silverman"`` or a float ``h > 0``."""
    data = as_data(data, "data")
    n, d = data.shape
    if isinstance(bandwidth, str):
        if bandwidth not in _RULES:
            raise ValueError(f"bandwidth={bandwidth!r} is not a known rule; expected one of {tuple(_RULES)} or a float > 0")
        if n < 2:
            raise ValueError(f"the {bandwidth!r} rule needs at least 2 data points, got N={n}")
        centred = data - jnp.mean(data, axis=0)
        cov = _RULES[bandwidth](n, d) ** 2 * (centred.T @ centred) / (n - 1)
        chol = jnp.linalg.cholesky(cov)
        if not bool(jnp.all(jnp.isfinite(chol))) or not bool(jnp.all(jnp.diagonal(chol) > 0)):
            raise ValueError("data: the sample covariance is singular; pass a float bandwidth instead of a rule")
        return KDE(data, chol)
    try:
        h = float(bandwidth)
    except (TypeError, ValueError):
        raise ValueError(f"bandwidth must be 'scott', 'silverman' or a positive float, got {bandwidth!r}") from None
    if not (math.isfinite(h) and h > 0):
        raise ValueError(f"bandwidth must be a positive finite float, got {bandwidth!r}")
    return KDE(data, h * jnp.eye(d, dtype=data.dtype))
