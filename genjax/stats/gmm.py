"""Gaussian mixtures by expectation–maximisation (Dempster, Laird & Rubin 1977), fully compiled.

E-step in log space: ``log r_nk = log w_k + log N(x_n; μ_k, Σ_k) − logsumexp_j(...)``.
M-step: ``N_k = Σ_n r_nk``, ``w_k = N_k/N``, ``μ_k = Σ_n r_nk x_n / N_k``,
``Σ_k = Σ_n r_nk (x_n − μ_k)(x_n − μ_k)ᵀ / N_k + reg_covar·I`` (diagonal: the diagonal of it).
The mean log-likelihood never decreases (MATH.md §8, §9.11).  The loop is one
``lax.while_loop`` that stops when the improvement drops below ``tol`` or after ``max_iter``
M-steps and records the history; restarts run in parallel under ``vmap`` and the best final
log-likelihood wins.  Initialisation: k-means++ seeding (Arthur & Vassilvitskii 2007), every
point assigned to its nearest seed, one M-step.  Conventions follow scikit-learn's
``GaussianMixture`` (``tol`` on the mean log-likelihood, ``reg_covar``, AIC/BIC, the
``10·eps`` added to ``N_k``) so results can be compared from the same initialisation.

Degenerate data: ``reg_covar`` (default 1e−6, as scikit-learn) keeps every covariance
positive definite when points coincide or a coordinate is constant; with ``reg_covar=0``
such data raise a ``ValueError`` before any work, and a fit that still turns non-finite
(a component collapsed onto a point) raises one after.  Fewer distinct points than
components warn: the extra components come back empty (weight ≈ 0).
"""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .._checks import check_finite, is_concrete
from ..targets import GaussianMixture
from .gaussian import as_data, check_covariance_type

__all__ = ["GMMFit", "kmeans_plusplus", "init_gmm", "em", "fit_gmm"]

_LOG_2PI = math.log(2.0 * math.pi)


@struct.dataclass
class GMMFit:
    """A fitted mixture: parameters, the log-likelihood history and convergence information.

    ``covariances`` is ``(K, d, d)`` for ``covariance_type="full"`` and ``(K, d)`` variances for
    ``"diag"``.  ``history[i]`` is the mean training log-likelihood after ``i`` M-steps
    (``history[0]``: the initialisation), NaN after ``n_iter``; ``log_likelihood == history[n_iter]``.
    """

    weights: jax.Array
    means: jax.Array
    covariances: jax.Array
    log_likelihood: jax.Array
    history: jax.Array
    n_iter: jax.Array
    converged: jax.Array
    covariance_type: str = struct.field(pytree_node=False, default="full")

    def full_covariances(self) -> jax.Array:
        if self.covariance_type == "diag":
            return jax.vmap(jnp.diag)(self.covariances)
        return self.covariances

    def to_mixture(self) -> GaussianMixture:
        """The fit as a :class:`genjax.targets.GaussianMixture` (its ``log_prob``, ``sample``, ``score``)."""
        return GaussianMixture(jnp.log(self.weights), self.means, self.full_covariances())

    def log_prob(self, x):
        """Per-sample log-density, ``x`` of shape ``(d,)``."""
        return self.to_mixture().log_prob(x)

    def sample(self, key, n: int):
        return self.to_mixture().sample(key, n)

    @property
    def num_parameters(self) -> int:
        """Free parameters: ``K−1`` weights, ``K d`` means, ``K d(d+1)/2`` (full) or ``K d`` (diag) covariances."""
        k, d = self.means.shape[-2:]
        cov = k * d * (d + 1) // 2 if self.covariance_type == "full" else k * d
        return (k - 1) + k * d + cov

    def _total_log_likelihood(self, x):
        x = as_data(x)
        return x.shape[0] * _mean_log_prob(self.to_mixture(), x), x.shape[0]

    def aic(self, x):
        """Akaike information criterion ``−2 log L + 2p`` on ``x`` (Akaike 1974)."""
        total, _ = self._total_log_likelihood(x)
        return -2.0 * total + 2.0 * self.num_parameters

    def bic(self, x):
        """Bayesian information criterion ``−2 log L + p log N`` on ``x`` (Schwarz 1978)."""
        total, n = self._total_log_likelihood(x)
        return -2.0 * total + self.num_parameters * math.log(n)


@jax.jit
def _mean_log_prob(mixture: GaussianMixture, x):
    return jnp.mean(jax.vmap(mixture.log_prob)(x))


# -- per-sample E-step -------------------------------------------------------------------
def _precision_factors(covariances, covariance_type):
    """``P_k`` with ``Σ_k⁻¹ = P_k P_kᵀ`` (full: ``L_k⁻ᵀ``; diag: ``1/σ_k``) and ``log det P_k``."""
    if covariance_type == "diag":
        prec = 1.0 / jnp.sqrt(covariances)
        return prec, jnp.sum(jnp.log(prec), axis=-1)
    chol = jnp.linalg.cholesky(covariances)
    eye = jnp.eye(covariances.shape[-1], dtype=covariances.dtype)
    prec = jnp.swapaxes(jax.scipy.linalg.solve_triangular(chol, eye[None], lower=True), -1, -2)
    return prec, -jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)


def _log_joint(x, log_weights, means, prec, log_det_prec, covariance_type):
    """``log w_k + log N(x; μ_k, Σ_k)`` for one point ``x`` of shape ``(d,)``, all ``k``."""
    if covariance_type == "diag":
        y = (x[None, :] - means) * prec
    else:
        y = jnp.einsum("d,kde->ke", x, prec) - jnp.einsum("kd,kde->ke", means, prec)
    return log_weights + log_det_prec - 0.5 * (jnp.sum(y**2, axis=-1) + x.shape[0] * _LOG_2PI)


def _e_step(x, weights, means, covariances, covariance_type):
    """Mean log-likelihood and log-responsibilities ``(N, K)``."""
    prec, log_det_prec = _precision_factors(covariances, covariance_type)
    log_joint = jax.vmap(_log_joint, in_axes=(0, None, None, None, None, None))(
        x, jnp.log(weights), means, prec, log_det_prec, covariance_type
    )
    log_norm = jax.nn.logsumexp(log_joint, axis=1, keepdims=True)
    return jnp.mean(log_norm), log_joint - log_norm


def _m_step(x, resp, reg_covar, covariance_type):
    """Weights, means and covariances (``+ reg_covar`` on the diagonal) from responsibilities ``(N, K)``."""
    nk = jnp.sum(resp, axis=0) + 10.0 * jnp.finfo(resp.dtype).eps
    means = resp.T @ x / nk[:, None]

    def covariance(r, mean, n):
        diff = x - mean
        if covariance_type == "diag":
            return (r @ diff**2) / n + reg_covar
        return (r[:, None] * diff).T @ diff / n + reg_covar * jnp.eye(x.shape[1], dtype=x.dtype)

    return nk / jnp.sum(nk), means, jax.vmap(covariance)(resp.T, means, nk)


# -- initialisation ---------------------------------------------------------------------
def kmeans_plusplus(key, x, n_clusters: int):
    """k-means++ seeds ``(K, d)``: the first uniformly, each next ∝ squared distance to the nearest.

    One uniform draw per seed, mapped through the inverse CDF of the ``D²`` weights.
    """
    u = jax.random.uniform(key, (n_clusters,), x.dtype)
    first = x[jnp.minimum((u[0] * x.shape[0]).astype(jnp.int32), x.shape[0] - 1)]
    centres = jnp.zeros((n_clusters, x.shape[1]), x.dtype).at[0].set(first)
    dist2 = jnp.sum((x - first) ** 2, axis=1)

    def add(i, state):
        centres, dist2 = state
        cdf = jnp.cumsum(dist2)
        idx = jnp.minimum(jnp.searchsorted(cdf, u[i] * cdf[-1], side="right"), x.shape[0] - 1)
        centre = x[idx]
        return centres.at[i].set(centre), jnp.minimum(dist2, jnp.sum((x - centre) ** 2, axis=1))

    return jax.lax.fori_loop(1, n_clusters, add, (centres, dist2))[0]


def _init(key, x, n_components, covariance_type, reg_covar):
    centres = kmeans_plusplus(key, x, n_components)
    nearest = jnp.argmin(jnp.sum(centres**2, axis=1) - 2.0 * x @ centres.T, axis=1)  # ‖x−c‖² − ‖x‖²
    return _m_step(x, jax.nn.one_hot(nearest, n_components, dtype=x.dtype), reg_covar, covariance_type)


# -- the EM loop ------------------------------------------------------------------------
def _em(x, weights, means, covariances, tol, reg_covar, max_iter, covariance_type):
    shift = jnp.mean(x, axis=0)  # EM is translation-equivariant; centring helps float32
    x = x - shift
    ll, log_resp = _e_step(x, weights, means - shift, covariances, covariance_type)
    history = jnp.full((max_iter + 1,), jnp.nan, x.dtype).at[0].set(ll)

    def cond(state):
        *_, i, _, converged = state
        return (i < max_iter) & ~converged

    def body(state):
        _, log_resp, ll_prev, i, history, _ = state
        params = _m_step(x, jnp.exp(log_resp), reg_covar, covariance_type)
        ll, log_resp = _e_step(x, *params, covariance_type)
        return params, log_resp, ll, i + 1, history.at[i + 1].set(ll), jnp.abs(ll - ll_prev) < tol

    state = ((weights, means - shift, covariances), log_resp, ll, jnp.int32(0), history, jnp.bool_(False))
    (weights, means, covariances), _, ll, n_iter, history, converged = jax.lax.while_loop(cond, body, state)
    return GMMFit(weights, means + shift, covariances, ll, history, n_iter, converged, covariance_type)


def _fit(keys, x, n_components, tol, reg_covar, max_iter, covariance_type):
    def one(key):
        return _em(x, *_init(key, x, n_components, covariance_type, reg_covar), tol, reg_covar, max_iter, covariance_type)

    fits = jax.vmap(one)(keys)
    best = jnp.argmax(jnp.where(jnp.isfinite(fits.log_likelihood), fits.log_likelihood, -jnp.inf))
    return jax.tree_util.tree_map(lambda a: a[best], fits)


_STATIC = ("max_iter", "covariance_type")
_em_jit = jax.jit(_em, static_argnames=_STATIC)
_fit_jit = jax.jit(_fit, static_argnames=("n_components",) + _STATIC)
_init_jit = jax.jit(_init, static_argnames=("n_components", "covariance_type"))


def _check_options(x, n_components, covariance_type, tol, reg_covar, max_iter):
    x = as_data(x)
    x = jnp.asarray(x, x.dtype)  # drop a weak type (e.g. from jnp.full), which would compile the fit again
    if int(n_components) != n_components or n_components < 1:
        raise ValueError(f"n_components must be a positive integer, got {n_components!r}")
    if n_components > x.shape[0]:
        raise ValueError(f"n_components={n_components} exceeds the number of samples N={x.shape[0]} in x")
    check_covariance_type(covariance_type)
    if not (tol >= 0):
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    if not (reg_covar >= 0):
        raise ValueError(f"reg_covar must be >= 0, got {reg_covar!r}")
    if int(max_iter) != max_iter or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if is_concrete(x):
        _check_degenerate(np.asarray(x), int(n_components), reg_covar)
    return x


def _check_degenerate(x, n_components: int, reg_covar: float) -> None:
    """Refuse data whose covariances are singular without ``reg_covar``; warn on fewer distinct points than ``K``."""
    constant = np.flatnonzero(np.all(x == x[:1], axis=0))
    if reg_covar == 0 and constant.size:
        raise ValueError(
            f"x is constant in coordinate(s) {constant.tolist()}, so every covariance is singular with reg_covar=0; "
            "pass reg_covar > 0 (e.g. 1e-6, scikit-learn's default) or drop those coordinates"
        )
    distinct = np.unique(x, axis=0).shape[0] if n_components > 1 else 1
    if distinct < n_components:
        if reg_covar == 0:
            raise ValueError(
                f"x has only {distinct} distinct point(s) for n_components={n_components}: components on single "
                "points have singular covariances with reg_covar=0; pass reg_covar > 0 (e.g. 1e-6)"
            )
        warnings.warn(
            f"x has only {distinct} distinct point(s), fewer than n_components={n_components}: "
            f"{n_components - distinct} component(s) will be empty (weight ≈ 0)",
            stacklevel=4,  # the caller of fit_gmm / em / init_gmm
        )


def _check_fit(fit: GMMFit, reg_covar: float) -> GMMFit:
    """Raise if EM returned non-finite parameters (a component collapsed onto a point or a subspace)."""
    if is_concrete(fit.log_likelihood) and not all(bool(jnp.all(jnp.isfinite(a))) for a in (fit.weights, fit.means, fit.covariances, fit.log_likelihood)):
        raise ValueError(
            f"EM produced non-finite parameters: a component collapsed onto a point or a lower-dimensional set, "
            f"where its covariance is singular (reg_covar={reg_covar}); pass a larger reg_covar, e.g. 1e-6"
        )
    return fit


def init_gmm(key, x, n_components: int, *, covariance_type: str = "full", reg_covar: float = 1e-6):
    """k-means++ initial ``(weights, means, covariances)`` for :func:`em` (pure JAX)."""
    x = _check_options(x, n_components, covariance_type, 0.0, reg_covar, 1)
    return _init_jit(key, x, int(n_components), covariance_type, reg_covar)


def em(x, weights, means, covariances, *, max_iter: int = 100, tol: float = 1e-3, reg_covar: float = 1e-6) -> GMMFit:
    """EM on ``x`` ``(N, d)`` from given parameters (weights are normalised).

    ``covariances`` of shape ``(K, d, d)`` selects full covariances, ``(K, d)`` diagonal variances.
    Stops when the mean log-likelihood improves by less than ``tol`` or after ``max_iter`` M-steps.
    """
    weights, means, covariances = (jnp.asarray(a, jnp.float32) for a in (weights, means, covariances))
    if means.ndim != 2 or weights.shape != means.shape[:1]:
        raise ValueError(f"weights and means must have shapes (K,) and (K, d), got {weights.shape} and {means.shape}")
    k, d = means.shape
    covariance_type = {2: "diag", 3: "full"}.get(covariances.ndim)
    if covariances.shape not in ((k, d), (k, d, d)):
        raise ValueError(f"covariances must have shape ({k}, {d}, {d}) (full) or ({k}, {d}) (diag), got {covariances.shape}")
    x = _check_options(x, k, covariance_type, tol, reg_covar, max_iter)
    if x.shape[1] != d:
        raise ValueError(f"x has {x.shape[1]} columns but the means have d={d}")
    if not (bool(jnp.all(weights >= 0)) and float(jnp.sum(weights)) > 0):
        raise ValueError("weights must be non-negative with a positive sum")
    check_finite("means", means)
    check_finite("covariances", covariances)
    weights = weights / jnp.sum(weights)
    return _check_fit(_em_jit(x, weights, means, covariances, tol, reg_covar, int(max_iter), covariance_type), reg_covar)


def fit_gmm(
    key,
    x,
    n_components: int,
    *,
    covariance_type: str = "full",
    n_init: int = 1,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
) -> GMMFit:
    """Fit a ``K``-component mixture to ``x`` ``(N, d)`` by EM from ``n_init`` k-means++ restarts in parallel.

    Returns the restart with the highest final mean log-likelihood.
    """
    x = _check_options(x, n_components, covariance_type, tol, reg_covar, max_iter)
    if int(n_init) != n_init or n_init < 1:
        raise ValueError(f"n_init must be a positive integer, got {n_init!r}")
    keys = jax.random.split(key, int(n_init))
    return _check_fit(_fit_jit(keys, x, int(n_components), tol, reg_covar, int(max_iter), covariance_type), reg_covar)
