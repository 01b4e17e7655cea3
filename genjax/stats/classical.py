"""Classical inference studies: MAP vs MLE for a Gaussian mean, label switching in mixtures, large deviations
of coin flips (MATH.md §15).

* **MAP vs MLE**, ``x_i ~ N(θ, σ²)``, i = 1…n, prior ``θ ~ N(μ0, τ²)``: the MLE ``x̄`` has MSE ``σ²/n``;
  the MAP (= posterior mean) ``w x̄ + (1 − w) μ0``, ``w = nτ²/(nτ² + σ²)``, has MSE
  ``w²σ²/n + (1 − w)²(θ − μ0)²``.  MAP is strictly better iff ``(θ − μ0)² < 2τ² + σ²/n``, and on average
  over the prior always: its Bayes risk is the posterior variance ``τ²σ²/(nτ² + σ²) = w σ²/n``.
* **Label switching** (Stephens 2000; Jasra, Holmes & Stephens 2005): a K-component mixture likelihood is
  invariant under the K! relabellings of its components, so EM from different starts lands on permuted
  copies of one fit and an exchangeable posterior over the component means has K! mirrored modes; the
  posterior mean of ``μ_1`` is then the mean over all components until an ordering ``μ_1 < … < μ_K`` is imposed.
* **Large deviations** of ``p̂_n = S_n/n``, ``S_n ~ Bin(n, p)``, for ``a = k/n > p`` (Cramér 1938; Sanov 1957;
  Cover & Thomas 2006, §11.1–11.4): ``(n + 1)⁻¹ e^{−n KL(a‖p)} ≤ P(p̂_n ≥ a) ≤ e^{−n KL(a‖p)}`` for every n
  (method of types; Chernoff), so ``−(1/n) log P → KL(a‖p)`` with a gap in ``[0, log(n + 1)/n]``; the exact
  prefactor is Bahadur & Rao's (1960) ``P ~ e^{−n KL}/((1 − e^{−λ}) sqrt(2πn a(1 − a)))``,
  ``λ = log(a(1 − p)/(p(1 − a)))``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
import scipy.special

from .._checks import check_positive_float, check_positive_int, is_concrete
from ..targets import GaussianMixture
from .gaussian import gaussian_log_prob

__all__ = [
    "map_weight",
    "mle_map_estimates",
    "mle_map_mse",
    "map_flip_point",
    "mle_map_bayes_risk",
    "relabel",
    "match_labels",
    "mixture_means_log_posterior",
    "bernoulli_kl",
    "binomial_log_tail",
    "LargeDeviations",
    "coin_large_deviations",
]


# -- MAP vs MLE for a Gaussian mean -----------------------------------------------------------------
def _check_scales(where: str, sigma, tau):
    if is_concrete(sigma):
        check_positive_float(float(sigma), f"{where}: sigma")
    if is_concrete(tau):
        check_positive_float(float(tau), f"{where}: tau")


def map_weight(n, *, sigma, tau):
    """``w = nτ²/(nτ² + σ²)``: the weight of ``x̄`` in the MAP estimate (the rest goes to the prior mean)."""
    _check_scales("map_weight", sigma, tau)
    return n * tau**2 / (n * tau**2 + sigma**2)


def mle_map_estimates(x, *, sigma, mu0, tau):
    """``(x̄, w x̄ + (1 − w) μ0)`` over the last axis of ``x`` (``(..., n)`` draws of ``N(θ, σ²)``, prior ``N(μ0, τ²)``)."""
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"mle_map_estimates: x must have shape (..., n) with n >= 1 draws, got {x.shape}")
    mle = jnp.mean(x, axis=-1)
    w = map_weight(x.shape[-1], sigma=sigma, tau=tau)
    return mle, w * mle + (1.0 - w) * mu0


def mle_map_mse(theta, n, *, sigma, mu0, tau):
    """Exact mean squared errors ``(σ²/n, w²σ²/n + (1 − w)²(θ − μ0)²)`` of the MLE and the MAP at the truth ``θ``."""
    n = check_positive_int(n, "mle_map_mse: n")
    w = map_weight(n, sigma=sigma, tau=tau)
    mse_mle = sigma**2 / n
    return jnp.broadcast_to(mse_mle, jnp.shape(theta)), w**2 * mse_mle + (1.0 - w) ** 2 * (jnp.asarray(theta) - mu0) ** 2


def map_flip_point(n, *, sigma, tau):
    """``(θ − μ0)² = 2τ² + σ²/n``: the MAP's MSE is below the MLE's inside it, above outside, equal on it.

    From ``MSE_MAP < MSE_MLE ⟺ (1 − w)²Δ² < (1 − w²)σ²/n ⟺ Δ² < ((1 + w)/(1 − w)) σ²/n`` and
    ``(1 + w)/(1 − w) = (2nτ² + σ²)/σ²``.
    """
    n = check_positive_int(n, "map_flip_point: n")
    _check_scales("map_flip_point", sigma, tau)
    return 2.0 * tau**2 + sigma**2 / n


def mle_map_bayes_risk(n, *, sigma, tau):
    """Prior-averaged MSEs ``(σ²/n, τ²σ²/(nτ² + σ²))`` over ``θ ~ N(μ0, τ²)``: the MAP's is ``w`` times the MLE's."""
    n = check_positive_int(n, "mle_map_bayes_risk: n")
    _check_scales("mle_map_bayes_risk", sigma, tau)
    return sigma**2 / n, tau**2 * sigma**2 / (n * tau**2 + sigma**2)


# -- label switching --------------------------------------------------------------------------------
def _permutation(perm, k: int, where: str) -> np.ndarray:
    perm = np.asarray(perm)
    if perm.shape != (k,) or not np.array_equal(np.sort(perm), np.arange(k)):
        raise ValueError(f"{where}: perm must be a permutation of 0..{k - 1}, got {perm.tolist()}")
    return perm


def relabel(mixture: GaussianMixture, perm) -> GaussianMixture:
    """The same mixture with its components listed in the order ``perm`` (component ``j`` is the old ``perm[j]``)."""
    if not isinstance(mixture, GaussianMixture):
        raise ValueError(f"relabel: mixture must be a genjax.targets.GaussianMixture, got {type(mixture).__name__}")
    perm = _permutation(perm, mixture.means.shape[0], "relabel")
    return GaussianMixture(mixture.log_weights[perm], mixture.means[perm], mixture.covs[perm])


def match_labels(means, reference) -> np.ndarray:
    """The permutation ``π`` minimising ``Σ_k ‖means[π_k] − reference[k]‖²`` (an assignment problem, Hungarian
    algorithm): ``means[π]`` lists the components in the reference's order.  ``means``, ``reference``: ``(K, d)``."""
    means, reference = np.asarray(means, np.float64), np.asarray(reference, np.float64)
    if means.ndim != 2 or means.shape != reference.shape:
        raise ValueError(f"match_labels: means and reference must both have shape (K, d), got {means.shape} "
                         f"and {reference.shape}")
    cost = np.sum((reference[:, None, :] - means[None, :, :]) ** 2, axis=-1)  # cost[k, j]: reference k ← means j
    return scipy.optimize.linear_sum_assignment(cost)[1]


def mixture_means_log_posterior(means, x, *, weights, std, prior_mean=0.0, prior_std=1.0):
    """``log p(μ_1…μ_K | x)`` up to a constant for a 1-D mixture ``Σ_k w_k N(μ_k, std²)`` with known weights and
    std, and the exchangeable prior ``μ_k ~ N(prior_mean, prior_std²)`` i.i.d.:
    ``Σ_n log Σ_k w_k N(x_n; μ_k, std²) + Σ_k log N(μ_k; prior_mean, prior_std²)``.

    With equal weights it is invariant under every permutation of ``means`` (``(K,)``); ``x``: ``(n,)``.
    """
    means, x = jnp.asarray(means), jnp.asarray(x)
    log_weights = jnp.log(jnp.asarray(weights, means.dtype))
    if means.ndim != 1 or x.ndim != 1 or log_weights.shape != means.shape:
        raise ValueError(f"mixture_means_log_posterior: means, x and weights must have shapes (K,), (n,), (K,), "
                         f"got {means.shape}, {x.shape}, {log_weights.shape}")
    per_component = jax.vmap(jax.vmap(gaussian_log_prob, (None, 0, None)), (0, None, None))(x, means, std**2)
    log_likelihood = jnp.sum(jax.nn.logsumexp(log_weights + per_component, axis=-1))
    return log_likelihood + jnp.sum(jax.vmap(gaussian_log_prob, (0, None, None))(means, prior_mean, prior_std**2))


# -- large deviations of coin flips -----------------------------------------------------------------
def _check_probability(where: str, name: str, value, *, closed: bool) -> float:
    value = float(value)
    ok = 0.0 <= value <= 1.0 if closed else 0.0 < value < 1.0
    if not ok:
        raise ValueError(f"{where}: {name} must lie in {'[0, 1]' if closed else '(0, 1)'}, got {value!r}")
    return value


def bernoulli_kl(a, p) -> float:
    """``KL(Ber(a) ‖ Ber(p)) = a log(a/p) + (1 − a) log((1 − a)/(1 − p))`` in nats (``0 log 0 = 0``), float64."""
    a = _check_probability("bernoulli_kl", "a", a, closed=True)
    p = _check_probability("bernoulli_kl", "p", p, closed=False)
    return float(scipy.special.xlogy(a, a / p) + scipy.special.xlogy(1.0 - a, (1.0 - a) / (1.0 - p)))


def _check_counts(where: str, n, k) -> tuple[int, int]:
    n = check_positive_int(n, f"{where}: n")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= n:
        raise ValueError(f"{where}: k must be an integer in [0, n={n}], got {k!r}")
    return n, int(k)


def binomial_log_tail(n, k, p) -> float:
    """``log P(S_n ≥ k)``, ``S_n ~ Bin(n, p)``: ``logsumexp_{j=k..n}[log C(n, j) + j log p + (n − j) log(1 − p)]``
    in float64 (exact to rounding even where ``P`` underflows)."""
    n, k = _check_counts("binomial_log_tail", n, k)
    p = _check_probability("binomial_log_tail", "p", p, closed=False)
    j = np.arange(k, n + 1, dtype=np.float64)
    log_choose = scipy.special.gammaln(n + 1.0) - scipy.special.gammaln(j + 1.0) - scipy.special.gammaln(n - j + 1.0)
    return float(scipy.special.logsumexp(log_choose + j * math.log(p) + (n - j) * math.log1p(-p)))


class LargeDeviations(NamedTuple):
    """``log P(p̂_n ≥ a)`` (``a = k/n``), ``KL(a‖p)`` and the logs of its bounds and asymptotic form (nats)."""

    log_tail: float  # exact, binomial_log_tail
    kl: float  # KL(a ‖ p)
    chernoff: float  # −n KL: an upper bound for every n
    types_lower: float  # −n KL − log(n + 1): a lower bound for every n
    bahadur_rao: float  # −n KL − log((1 − e^{−λ}) sqrt(2πn a(1 − a))): log P + o(1)


def coin_large_deviations(n, k, p) -> LargeDeviations:
    """Exact ``log P(S_n ≥ k)`` for ``S_n ~ Bin(n, p)`` and ``k/n = a ∈ (p, 1)``, beside ``−n KL(a‖p)`` and its
    corrections.

    Upper (Chernoff): ``P ≤ e^{−λk} E e^{λS_n} = e^{−n KL(a‖p)}`` at the optimal tilt ``λ``.  Lower (types):
    ``P ≥ P(S_n = k) = C(n, k) aᵏ(1 − a)^{n−k} e^{−n KL(a‖p)}``, and ``C(n, k) aᵏ(1 − a)^{n−k} ≥ 1/(n + 1)``
    because it is the largest of the ``n + 1`` terms of ``(a + 1 − a)ⁿ = 1``.
    """
    n, k = _check_counts("coin_large_deviations", n, k)
    p = _check_probability("coin_large_deviations", "p", p, closed=False)
    a = k / n
    if not p < a < 1.0:
        raise ValueError(f"coin_large_deviations: need p < k/n < 1 (a large deviation above the mean, short of "
                         f"all heads), got k/n = {a!r} with p = {p!r}")
    kl = bernoulli_kl(a, p)
    tilt = math.log(a * (1.0 - p) / (p * (1.0 - a)))
    prefactor = math.log((1.0 - math.exp(-tilt)) * math.sqrt(2.0 * math.pi * n * a * (1.0 - a)))
    return LargeDeviations(binomial_log_tail(n, k, p), kl, -n * kl, -n * kl - math.log(n + 1.0), -n * kl - prefactor)
