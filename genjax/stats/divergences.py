"""Divergences: closed-form Gaussian KL, Monte-Carlo KL/JS, and the f-divergence family.

``D_f(P‖Q) = E_Q[f(p/q)]`` for a convex ``f`` with ``f(1) = 0`` (Csiszár 1967, Ali & Silvey 1966).
Every member is one row of a table giving ``f``, its convex conjugate ``f*(t) = sup_u ut − f(u)``,
the domain of ``f*``, the output activation ``g_f: ℝ → dom f*`` of an f-GAN critic and ``f'``
(Nowozin, Cseke & Tomioka 2016, Tables 1–2).  The variational lower bound is
``D_f(P‖Q) ≥ sup_T E_P[T] − E_Q[f*(T)]``, tight at ``T = f'(p/q)``.

Conventions: Jensen–Shannon here is ``JS = ½ KL(P‖M) + ½ KL(Q‖M)``, ``M = (P+Q)/2``, so
``0 ≤ JS ≤ log 2``.  (Nowozin et al.'s Table 1 lists this ``½`` form next to the generator
``u log u − (u+1) log((1+u)/2)``, which gives ``2·JS``; we use half of it.)  Squared Hellinger
is ``∫(√p − √q)² = 2(1 − Σ√(pq))`` (no ½), total variation ``½ ∫|p − q|``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy

__all__ = [
    "MCEstimate",
    "kl_gaussian",
    "mc_kl",
    "mc_js",
    "FDivergence",
    "KL",
    "REVERSE_KL",
    "JENSEN_SHANNON",
    "TOTAL_VARIATION",
    "PEARSON",
    "NEYMAN",
    "SQUARED_HELLINGER",
    "F_DIVERGENCES",
    "f_divergence",
]

_LOG2 = math.log(2.0)


class MCEstimate(NamedTuple):
    """A Monte-Carlo estimate and its standard error ``std/√n``."""

    value: jax.Array
    stderr: jax.Array


def _mc(values) -> MCEstimate:
    return MCEstimate(jnp.mean(values), jnp.std(values, ddof=1) / jnp.sqrt(values.shape[0]))


# -- Gaussians --------------------------------------------------------------------------
def _as_gaussian(mean, cov, name):
    mean = jnp.atleast_1d(jnp.asarray(mean, jnp.float32))
    cov = jnp.asarray(cov, jnp.float32)
    d = mean.shape[-1]
    if mean.ndim != 1:
        raise ValueError(f"{name}: the mean must be a scalar or have shape (d,), got {mean.shape}")
    if cov.ndim == 0 or cov.shape == (d,):
        cov = jnp.diag(jnp.broadcast_to(cov, (d,)))
    if cov.shape != (d, d):
        raise ValueError(f"{name}: the covariance must be a scalar, ({d},) or ({d}, {d}), got {cov.shape}")
    return mean, cov


def kl_gaussian(mean_p, cov_p, mean_q, cov_q):
    """``KL(N(μp, Σp) ‖ N(μq, Σq)) = ½[tr(Σq⁻¹Σp) + δᵀΣq⁻¹δ − d + log|Σq| − log|Σp|]``, ``δ = μq − μp``.

    Covariances may be scalars, ``(d,)`` diagonals or full ``(d, d)`` (Cholesky solves).
    """
    mean_p, cov_p = _as_gaussian(mean_p, cov_p, "P")
    mean_q, cov_q = _as_gaussian(mean_q, cov_q, "Q")
    if mean_p.shape != mean_q.shape:
        raise ValueError(f"P and Q must have the same dimension, got {mean_p.shape} and {mean_q.shape}")
    lp, lq = jnp.linalg.cholesky(cov_p), jnp.linalg.cholesky(cov_q)
    a = jax.scipy.linalg.solve_triangular(lq, lp, lower=True)  # tr(Σq⁻¹Σp) = ‖Lq⁻¹Lp‖²_F
    delta = jax.scipy.linalg.solve_triangular(lq, mean_q - mean_p, lower=True)
    logdet = lambda chol: 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))  # noqa: E731
    return 0.5 * (jnp.sum(a**2) + jnp.sum(delta**2) - mean_p.shape[0] + logdet(lq) - logdet(lp))


# -- Monte Carlo between any two models -------------------------------------------------
def _check_n(n):
    if int(n) != n or n < 2:
        raise ValueError(f"n must be an integer >= 2 (for a standard error), got {n!r}")
    return int(n)


def mc_kl(key, log_p: Callable, sample_p: Callable, log_q: Callable, n: int = 10_000) -> MCEstimate:
    """``KL(P‖Q) ≈ (1/n) Σ [log p(x_i) − log q(x_i)]``, ``x_i ~ P``; per-sample ``log_p``/``log_q``, ``sample_p(key, n)``."""
    n = _check_n(n)

    @jax.jit
    def log_ratios(key):
        x = sample_p(key, n)
        return jax.vmap(log_p)(x) - jax.vmap(log_q)(x)

    return _mc(log_ratios(key))


def mc_js(key, log_p: Callable, sample_p: Callable, log_q: Callable, sample_q: Callable, n: int = 10_000) -> MCEstimate:
    """``JS = ½ E_P[log p/m] + ½ E_Q[log q/m]``, ``m = (p+q)/2`` (in log space), ``n`` draws from each.

    Bounded by ``log 2``, reached for disjoint supports.
    """
    n = _check_n(n)

    def log_ratio_to_mixture(log_num, log_other, x):  # log p(x) − log m(x)
        a, b = jax.vmap(log_num)(x), jax.vmap(log_other)(x)
        return _LOG2 + a - jnp.logaddexp(a, b)

    @jax.jit
    def terms(key):
        kp, kq = jax.random.split(key)
        return log_ratio_to_mixture(log_p, log_q, sample_p(kp, n)), log_ratio_to_mixture(log_q, log_p, sample_q(kq, n))

    tp, tq = terms(key)
    value = 0.5 * (jnp.mean(tp) + jnp.mean(tq))
    stderr = 0.5 * jnp.sqrt(jnp.var(tp, ddof=1) / n + jnp.var(tq, ddof=1) / n)
    return MCEstimate(value, stderr)


# -- the f-divergence family ------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FDivergence:
    """``D_f(P‖Q) = E_Q[f(p/q)]`` with conjugate ``f*`` on ``dom f*`` and f-GAN activation ``g_f``.

    Fields: ``f(u)`` for ``u ≥ 0``; ``f_star(t)`` valid on ``dom f*`` (``in_domain(t)``,
    described by ``domain``); ``activation(v)`` maps a critic's raw output to ``dom f*``;
    ``f_prime(u)`` gives the optimal critic ``T*(x) = f'(p(x)/q(x))``; ``conjugate_activation(v)`` is
    ``f*(g_f(v))`` in closed form, finite for every finite v (the composition rounds onto the boundary of
    ``dom f*`` in float32 for |v| ≳ 17, where ``conjugate`` returns +∞).
    """

    name: str
    f: Callable
    f_star: Callable
    in_domain: Callable
    domain: str
    activation: Callable
    f_prime: Callable
    conjugate_activation: Callable

    def conjugate(self, t):
        """``f*(t)``, ``+∞`` outside ``dom f*``."""
        inside = self.in_domain(t)
        return jnp.where(inside, self.f_star(jnp.where(inside, t, 0.0)), jnp.inf)

    def __call__(self, p, q):
        """``Σ_i q_i f(p_i/q_i)`` for discrete distributions (``q > 0`` everywhere)."""
        p, q = jnp.asarray(p, jnp.float32), jnp.asarray(q, jnp.float32)
        if p.shape != q.shape:
            raise ValueError(f"{self.name}: p and q must have the same shape, got {p.shape} and {q.shape}")
        if not (bool(jnp.all(p >= 0)) and bool(jnp.all(q > 0))):
            raise ValueError(f"{self.name}: need p >= 0 and q > 0 elementwise")
        return jnp.sum(q * self.f(p / q))

    def monte_carlo(self, log_ratio) -> MCEstimate:
        """``E_Q[f(p/q)]`` from ``log p(x_i) − log q(x_i)`` at draws ``x_i ~ Q``."""
        return _mc(self.f(jnp.exp(jnp.asarray(log_ratio))))

    def lower_bound(self, t_p, t_q):
        """``E_P[T] − E_Q[f*(T)]`` from critic values ``T`` (in ``dom f*``) at draws from ``P`` and ``Q``.

        For discrete distributions pass weighted sums instead (see :meth:`discrete_lower_bound`).
        """
        return jnp.mean(t_p) - jnp.mean(self.conjugate(t_q))

    def discrete_lower_bound(self, p, q, t):
        """``Σ_i p_i T_i − Σ_i q_i f*(T_i)`` for a critic ``T`` on a finite space."""
        return jnp.sum(p * t) - jnp.sum(q * self.conjugate(t))


_all_reals = jnp.isfinite
_identity = lambda v: v  # noqa: E731

# One row per divergence: name, f(u), f*(t), dom f* (predicate, text), activation g_f(v), f'(u), f*(g_f(v)).
KL = FDivergence(
    "kl",
    lambda u: xlogy(u, u),
    lambda t: jnp.exp(t - 1.0),
    _all_reals, "ℝ",
    _identity,
    lambda u: 1.0 + jnp.log(u),
    lambda v: jnp.exp(v - 1.0),
)
REVERSE_KL = FDivergence(
    "reverse_kl",
    lambda u: -jnp.log(u),
    lambda t: -1.0 - jnp.log(-t),
    lambda t: t < 0, "t < 0",
    lambda v: -jnp.exp(-v),
    lambda u: -1.0 / u,
    lambda v: v - 1.0,
)
JENSEN_SHANNON = FDivergence(
    "js",
    lambda u: 0.5 * (xlogy(u, u) - (u + 1.0) * jnp.log((u + 1.0) / 2.0)),
    lambda t: -0.5 * jnp.log(2.0 - jnp.exp(2.0 * t)),
    lambda t: t < 0.5 * _LOG2, "t < ½ log 2",
    lambda v: 0.5 * (_LOG2 - jax.nn.softplus(-v)),
    lambda u: 0.5 * jnp.log(2.0 * u / (1.0 + u)),
    lambda v: 0.5 * (jax.nn.softplus(v) - _LOG2),
)
TOTAL_VARIATION = FDivergence(
    "tv",
    lambda u: 0.5 * jnp.abs(u - 1.0),
    _identity,
    lambda t: jnp.abs(t) <= 0.5, "|t| ≤ ½",
    lambda v: 0.5 * jnp.tanh(v),
    lambda u: 0.5 * jnp.sign(u - 1.0),
    lambda v: 0.5 * jnp.tanh(v),
)
PEARSON = FDivergence(
    "pearson",
    lambda u: (u - 1.0) ** 2,
    lambda t: 0.25 * t**2 + t,
    _all_reals, "ℝ",
    _identity,
    lambda u: 2.0 * (u - 1.0),
    lambda v: 0.25 * v**2 + v,
)
NEYMAN = FDivergence(
    "neyman",
    lambda u: (1.0 - u) ** 2 / u,
    lambda t: 2.0 - 2.0 * jnp.sqrt(1.0 - t),
    lambda t: t < 1.0, "t < 1",
    lambda v: 1.0 - jnp.exp(v),
    lambda u: 1.0 - 1.0 / u**2,
    lambda v: 2.0 - 2.0 * jnp.exp(0.5 * v),
)
SQUARED_HELLINGER = FDivergence(
    "hellinger",
    lambda u: (jnp.sqrt(u) - 1.0) ** 2,
    lambda t: t / (1.0 - t),
    lambda t: t < 1.0, "t < 1",
    lambda v: 1.0 - jnp.exp(v),
    lambda u: 1.0 - 1.0 / jnp.sqrt(u),
    lambda v: jnp.expm1(-v),
)

F_DIVERGENCES = {d.name: d for d in (KL, REVERSE_KL, JENSEN_SHANNON, TOTAL_VARIATION, PEARSON, NEYMAN, SQUARED_HELLINGER)}


def f_divergence(name: str) -> FDivergence:
    """The table row called ``name`` (one of ``F_DIVERGENCES``)."""
    if name not in F_DIVERGENCES:
        raise ValueError(f"f-divergence {name!r} is not known; expected one of {tuple(F_DIVERGENCES)}")
    return F_DIVERGENCES[name]
