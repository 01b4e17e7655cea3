"""Targets with analytic densities and scores: Gaussian mixtures at every noise level.

For data ``x0 ~ Σ_k w_k N(μ_k, Σ_k)`` and a one-sided path ``x_t = α x0 + σ ε`` the
marginal is again a mixture, ``p_t = Σ_k w_k N(α μ_k, α² Σ_k + σ² I)`` (MATH.md §9.1–9.2),
so the exact score, noise, data and velocity fields are closed form; between two mixtures along
a two-sided path the marginal is a mixture of all pairs (:class:`Bridge`, MATH.md §10).  Tests drive every
sampler and likelihood with these fields; experiments use them as ground truth.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from .interpolants import Interpolant, check_prediction, check_predictions

__all__ = ["Bridge", "GaussianMixture", "gaussian", "gaussian_flow_map", "noised"]


@struct.dataclass
class GaussianMixture:
    """``Σ_k w_k N(μ_k, Σ_k)`` with full covariances; a pytree, so it can cross ``jit``.

    Build with :meth:`create` (full covariances) or :meth:`diagonal` (per-coordinate stds).
    """

    log_weights: jax.Array  # (K,) normalised
    means: jax.Array  # (K, d)
    covs: jax.Array  # (K, d, d)

    @classmethod
    def create(cls, weights, means, covs) -> "GaussianMixture":
        weights, means, covs = (jnp.asarray(a, jnp.float32) for a in (weights, means, covs))
        if means.ndim != 2:
            raise ValueError(f"GaussianMixture: means must have shape (K, d), got {means.shape}")
        k, d = means.shape
        if weights.shape != (k,):
            raise ValueError(f"GaussianMixture: weights must have shape ({k},), got {weights.shape}")
        if covs.shape != (k, d, d):
            raise ValueError(f"GaussianMixture: covs must have shape ({k}, {d}, {d}), got {covs.shape}")
        if not bool(jnp.all(weights >= 0)) or not bool(jnp.sum(weights) > 0):
            raise ValueError("GaussianMixture: weights must be non-negative with a positive sum")
        if not bool(jnp.all(jnp.isfinite(means))) or not bool(jnp.all(jnp.isfinite(covs))):
            raise ValueError("GaussianMixture: means and covs must be finite")
        if not bool(jnp.all(jnp.linalg.eigvalsh(0.5 * (covs + jnp.swapaxes(covs, -1, -2))) > 0)):
            raise ValueError("GaussianMixture: every covariance must be symmetric positive definite")
        return cls(jnp.log(weights / jnp.sum(weights)), means, covs)

    @classmethod
    def diagonal(cls, weights, means, stds) -> "GaussianMixture":
        stds = jnp.asarray(stds, jnp.float32)
        means = jnp.asarray(means, jnp.float32)
        stds = jnp.broadcast_to(stds, means.shape) if stds.ndim < 2 else stds
        return cls.create(weights, means, jax.vmap(jnp.diag)(stds**2))

    @property
    def dim(self) -> int:
        return self.means.shape[-1]

    @property
    def weights(self) -> jax.Array:
        return jnp.exp(self.log_weights)

    def _component_log_probs(self, x):
        chol = jnp.linalg.cholesky(self.covs)  # (K, d, d)
        diff = x[None, :] - self.means  # (K, d)
        sol = jax.scipy.linalg.solve_triangular(chol, diff[..., None], lower=True)[..., 0]
        logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
        return -0.5 * (jnp.sum(sol**2, -1) + logdet + self.dim * jnp.log(2 * jnp.pi))

    def log_prob(self, x):
        """Log-density of one point ``x`` of shape ``(d,)`` (vmap for batches)."""
        return jax.nn.logsumexp(self.log_weights + self._component_log_probs(x))

    def responsibilities(self, x):
        """Posterior component probabilities ``p(k | x)``."""
        return jax.nn.softmax(self.log_weights + self._component_log_probs(x))

    def score(self, x):
        """``∇ log p(x) = Σ_k r_k(x) Σ_k⁻¹ (μ_k − x)`` for one point."""
        r = self.responsibilities(x)
        per = jnp.linalg.solve(self.covs, (self.means - x[None, :])[..., None])[..., 0]
        return jnp.sum(r[:, None] * per, axis=0)

    def sample(self, key, n: int):
        """``n`` samples, shape ``(n, d)``."""
        kc, kz = jax.random.split(key)
        comp = jax.random.categorical(kc, self.log_weights, shape=(n,))
        chol = jnp.linalg.cholesky(self.covs)[comp]
        z = jax.random.normal(kz, (n, self.dim))
        return self.means[comp] + jnp.einsum("nij,nj->ni", chol, z)

    def mean(self):
        return jnp.sum(self.weights[:, None] * self.means, axis=0)

    def covariance(self):
        m = self.mean()
        second = self.covs + jnp.einsum("ki,kj->kij", self.means, self.means)
        return jnp.sum(self.weights[:, None, None] * second, axis=0) - jnp.outer(m, m)

    def entropy(self, key=None, n: int = 200_000):
        """Differential entropy in nats: exact for one component, else Monte Carlo with ``n`` draws."""
        if self.means.shape[0] == 1:
            _, logdet = jnp.linalg.slogdet(self.covs[0])
            return 0.5 * (self.dim * (1.0 + jnp.log(2 * jnp.pi)) + logdet)
        if key is None:
            raise ValueError("GaussianMixture.entropy: a PRNG key is needed for the Monte-Carlo estimate")
        return -jnp.mean(jax.vmap(self.log_prob)(self.sample(key, n)))

    def marginal(self, interpolant: Interpolant, t) -> "GaussianMixture":
        """``p_t = Σ_k w_k N(α μ_k, α² Σ_k + σ² I)`` under a one-sided path at time ``t``."""
        a, s, _, _ = interpolant.scales(t)
        eye = jnp.eye(self.dim, dtype=self.covs.dtype)
        return GaussianMixture(self.log_weights, a * self.means, a**2 * self.covs + s**2 * eye)

    def posterior(self, interpolant: Interpolant, t, x):
        """``(E[x0 | x_t = x], E[ε | x_t = x])`` in closed form, finite at ``α = 0`` and at ``σ = 0``.

        Per component, with ``C_k = α² Σ_k + σ² I`` and ``u_k = C_k⁻¹ (x − α μ_k)``:
        ``E[x0] = μ_k + α Σ_k u_k`` and ``E[ε] = σ u_k``, mixed by the responsibilities at ``t``.
        """
        a, s, _, _ = interpolant.scales(t)
        marg = self.marginal(interpolant, t)
        r = marg.responsibilities(x)
        u = jnp.linalg.solve(marg.covs, (x[None, :] - marg.means)[..., None])[..., 0]  # (K, d)
        x0 = self.means + a * jnp.einsum("kij,kj->ki", self.covs, u)
        return jnp.sum(r[:, None] * x0, axis=0), s * jnp.sum(r[:, None] * u, axis=0)

    def field(self, interpolant: Interpolant, prediction: str = "velocity"):
        """The exact per-sample ``fn(t, x)`` predicting ``prediction`` for this data under ``interpolant``.

        ``velocity = α̇ E[x0|x] + σ̇ E[ε|x]``, ``noise = E[ε|x]``, ``data = E[x0|x]``, ``score = ∇ log p_t``.
        """
        check_prediction(prediction)

        def fn(t, x):
            if prediction == "score":
                return self.marginal(interpolant, t).score(x)
            x0, eps = self.posterior(interpolant, t, x)
            if prediction == "data":
                return x0
            if prediction == "noise":
                return eps
            _, _, da, ds = interpolant.scales(t)
            return da * x0 + ds * eps

        return fn


def gaussian(mean, std) -> GaussianMixture:
    """A single Gaussian ``N(mean, diag(std²))`` as a one-component mixture."""
    mean = jnp.atleast_1d(jnp.asarray(mean, jnp.float32))
    return GaussianMixture.diagonal(jnp.ones(1), mean[None, :], jnp.broadcast_to(jnp.asarray(std, jnp.float32), mean.shape)[None, :])


def gaussian_flow_map(interpolant: Interpolant, mean, std, t, r, x):
    """The exact PF-ODE map ``φ_{t→r}(x)`` of Gaussian data ``N(mean, diag(std²))`` (MATH.md §13).

    Per coordinate ``φ_{t→r}(x) = α_r m + (std_r/std_t)(x − α_t m)`` with
    ``std_t = sqrt(α_t² s² + σ_t²)``: the ODE is linear and keeps ``p_t = N(α_t m, std_t²)``.
    ``f*(x, t) = φ_{t→t_min}(x)`` is the exact consistency function, and
    ``(x − φ_{t→r}(x))/(t − r)`` the exact MeanFlow average velocity.
    """
    mean, std = jnp.asarray(mean), jnp.asarray(std)
    a_t, s_t, _, _ = interpolant.scales(t)
    a_r, s_r, _, _ = interpolant.scales(r)
    std_t = jnp.sqrt(a_t**2 * std**2 + s_t**2)
    std_r = jnp.sqrt(a_r**2 * std**2 + s_r**2)
    return a_r * mean + (std_r / std_t) * (x - a_t * mean)


def noised(mixture: GaussianMixture, sigma) -> GaussianMixture:
    """The data convolved with ``N(0, σ² I)``: ``Σ_k w_k N(μ_k, Σ_k + σ² I)``.

    The VE/NCSN noise-level convention (Song & Ermon 2019): ``noised(p, σ).score(x)`` is the
    exact noise-conditional score ``s(σ, x)`` that annealed Langevin dynamics anneals through.
    """
    eye = jnp.eye(mixture.dim, dtype=mixture.covs.dtype)
    return GaussianMixture(mixture.log_weights, mixture.means, mixture.covs + jnp.asarray(sigma) ** 2 * eye)


# ---------------------------------------------------------------------------------
# Two-sided paths x_t = α x0 + β x1 + γ z between two mixtures (MATH.md §10).
# ---------------------------------------------------------------------------------


class Bridge(NamedTuple):
    """The exact two-sided path between ``rho0`` and ``rho1`` along ``interpolant``.

    Pairs are independent (``x0 ⟂ x1``), so ``p_t`` is a mixture of ``K0·K1`` Gaussians with
    weights ``π_i w_j``, means ``α μ0_i + β μ1_j`` and covariances ``α² Σ0_i + β² Σ1_j + γ² I``
    (MATH.md §10).  For one Gaussian each, ``cross`` = ``Cov(x0, x1)`` gives any jointly Gaussian
    coupling instead (e.g. the OT coupling ``Σ0 A`` of the map ``x1 = μ1 + A(x0 − μ0)``), with
    ``Σ_t = α² Σ0 + β² Σ1 + αβ (C + Cᵀ) + γ² I``.
    """

    rho0: GaussianMixture
    rho1: GaussianMixture
    interpolant: Interpolant
    cross: jax.Array | None = None

    def _pairs(self, t):
        """Per pair ``k = (i, j)``: log weights, ``Cov(x0, x_t)``, ``Cov(x1, x_t)``, and the marginal ``N(μ_t, Σ_t)``."""
        a, b, g = self.interpolant.coefficients(t)
        r0, r1 = self.rho0, self.rho1
        if self.cross is not None and (r0.means.shape[0], r1.means.shape[0]) != (1, 1):
            raise ValueError("Bridge: cross (a coupling covariance) needs one Gaussian at each end")
        cross = jnp.zeros_like(r0.covs[0]) if self.cross is None else jnp.asarray(self.cross, r0.covs.dtype)
        S0, S1 = r0.covs[:, None], r1.covs[None, :]  # (K0, 1, d, d), (1, K1, d, d)
        c0 = a * S0 + b * cross  # Cov(x0, x_t)
        c1 = a * cross.T + b * S1  # Cov(x1, x_t)
        cov = a * c0 + b * c1 + g**2 * jnp.eye(r0.dim, dtype=r0.covs.dtype)  # Σ_t (C + Cᵀ enters once each)
        mean = a * r0.means[:, None] + b * r1.means[None, :]
        log_w = r0.log_weights[:, None] + r1.log_weights[None, :]
        d = r0.dim
        shape = jnp.broadcast_shapes(c0.shape, c1.shape)
        flat = lambda v, tail: jnp.broadcast_to(v, (*shape[:2], *tail)).reshape(-1, *tail)  # noqa: E731
        return flat(log_w, ()), flat(c0, (d, d)), flat(c1, (d, d)), GaussianMixture(
            flat(log_w, ()), flat(mean, (d,)), flat(cov, (d, d)))

    def marginal(self, t) -> GaussianMixture:
        """``p_t``: the ``K0·K1``-component mixture at time ``t``."""
        return self._pairs(t)[3]

    def posterior(self, t, x):
        """``(E[x0 | x_t = x], E[x1 | x_t = x], E[z | x_t = x], ∇ log p_t(x))`` in closed form.

        Per pair, with ``u_k = Σ_t⁻¹(x − μ_t)``: ``x̂0 = μ0 + Cov(x0, x_t) u``, ``x̂1 = μ1 + Cov(x1, x_t) u``,
        ``η = γ u``, score ``−u``; mixed by the responsibilities.
        """
        g = self.interpolant.coefficients(t)[2]
        _, c0, c1, marg = self._pairs(t)
        k0, k1 = self.rho0.means.shape[0], self.rho1.means.shape[0]
        m0 = jnp.repeat(self.rho0.means, k1, axis=0)
        m1 = jnp.tile(self.rho1.means, (k0, 1))
        r = marg.responsibilities(x)[:, None]
        u = jnp.linalg.solve(marg.covs, (x[None, :] - marg.means)[..., None])[..., 0]
        x0 = m0 + jnp.einsum("kij,kj->ki", c0, u)
        x1 = m1 + jnp.einsum("kij,kj->ki", c1, u)
        u = jnp.sum(r * u, 0)
        return jnp.sum(r * x0, 0), jnp.sum(r * x1, 0), g * u, -u

    def field(self, prediction="velocity"):
        """Exact per-sample ``fn(t, x)``: ``velocity`` ``b = α̇ x̂0 + β̇ x̂1 + γ̇ η``, ``noise`` ``η``, ``data`` ``x̂0``,
        ``score`` ``∇ log p_t``; a tuple of names gives a tuple of heads."""
        names = check_predictions(prediction, self.interpolant)

        def fn(t, x):
            x0, x1, eta, score = self.posterior(t, x)
            da, db, dg = self.interpolant.derivatives(t)
            values = {"velocity": da * x0 + db * x1 + dg * eta, "noise": eta, "data": x0, "score": score}
            out = tuple(values[name] for name in names)
            return out[0] if isinstance(prediction, str) else out

        return fn
