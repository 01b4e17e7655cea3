"""Classical studies (MATH.md §15, §9.22): MAP vs MLE, label switching, large deviations of coin flips, and the
Inception score — each against a closed form, a quadrature or an exact symmetry."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from genjax.metrics.features import FeatureNet
from genjax.metrics.image import inception_score
from genjax.samplers.langevin import mala, run_chains
from genjax.stats.classical import (bernoulli_kl, binomial_log_tail, coin_large_deviations, map_flip_point,
                                    map_weight, match_labels, mixture_means_log_posterior, mle_map_bayes_risk,
                                    mle_map_estimates, mle_map_mse, relabel)
from genjax.stats.gmm import em
from genjax.targets import GaussianMixture

SIGMA, MU0, TAU = 1.0, 0.0, 0.7


# -- MAP vs MLE -------------------------------------------------------------------------------------
@jax.jit
def _squared_errors(key, theta):
    """Squared errors of (MLE, MAP) over 100 000 data sets of n = 4 draws of N(θ, σ²) per θ."""
    x = theta[:, None, None] + SIGMA * jax.random.normal(key, (theta.shape[0], 100_000, 4))
    mle, map_ = mle_map_estimates(x, sigma=SIGMA, mu0=MU0, tau=TAU)
    return (mle - theta[:, None]) ** 2, (map_ - theta[:, None]) ** 2


def test_mle_map_mse_match_monte_carlo():
    """Monte-Carlo MSEs over 10⁵ replications equal the closed forms within 4 s.e. (s.e. = sd(err²)/√R), on both
    sides of the flip point √(2τ² + σ²/n) = 1.118 (n = 4)."""
    theta = jnp.array([0.0, 0.5, 1.0, 2.0, 3.0])
    errors = [np.asarray(e, np.float64) for e in _squared_errors(jax.random.key(0), theta)]
    closed = [np.asarray(m, np.float64) for m in mle_map_mse(theta, 4, sigma=SIGMA, mu0=MU0, tau=TAU)]
    for err, exact in zip(errors, closed):
        se = err.std(1) / math.sqrt(err.shape[1])
        assert np.all(np.abs(err.mean(1) - exact) < 4 * se)
    mle_wins = errors[0].mean(1) < errors[1].mean(1)  # θ − μ0 = 0, 0.5, 1 inside the flip point; 2, 3 outside
    np.testing.assert_array_equal(mle_wins, [False, False, False, True, True])


@pytest.mark.parametrize("n", [1, 3, 50])
def test_mse_order_flips_exactly_at_threshold(n):
    """At (θ − μ0)² = 2τ² + σ²/n the two MSEs are equal (float32 rounding); 0.1% inside the MAP wins, outside the
    MLE wins."""
    flip = map_flip_point(n, sigma=SIGMA, tau=TAU)
    assert flip == pytest.approx(2 * TAU**2 + SIGMA**2 / n, rel=1e-15)
    mle, map_ = (np.asarray(m, np.float64) for m in mle_map_mse(MU0 + np.sqrt(flip * np.array([0.999, 1.0, 1.001])),
                                                                  n, sigma=SIGMA, mu0=MU0, tau=TAU))
    assert map_[0] < mle[0] and map_[2] > mle[2]
    assert map_[1] == pytest.approx(mle[1], rel=1e-6)


def test_map_wins_on_average_over_the_prior():
    """Bayes risk: the prior average of the closed-form MSE (Gauss–Hermite, exact for this quadratic) is the
    posterior variance τ²σ²/(nτ² + σ²) = w σ²/n < σ²/n."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(8)
    weights = weights / weights.sum()
    for n in (1, 5, 40):
        mle_risk, map_risk = mle_map_bayes_risk(n, sigma=SIGMA, tau=TAU)
        averaged = [float(np.sum(weights * np.asarray(m, np.float64)))
                    for m in mle_map_mse(jnp.asarray(MU0 + TAU * nodes), n, sigma=SIGMA, mu0=MU0, tau=TAU)]
        np.testing.assert_allclose(averaged, [mle_risk, map_risk], rtol=1e-6)
        assert map_risk == pytest.approx(map_weight(n, sigma=SIGMA, tau=TAU) * SIGMA**2 / n, rel=1e-12) and map_risk < mle_risk


# -- label switching --------------------------------------------------------------------------------
def test_mixture_likelihood_invariant_under_all_relabellings():
    """All 3! relabellings of a 3-component 2-D mixture give the same log-density at every point (float32 rounding
    of the order inside logsumexp), while the parameter lists differ."""
    mix = GaussianMixture(jnp.log(jnp.array([0.2, 0.3, 0.5])), jnp.array([[-2.0, 0.0], [1.0, 1.0], [2.0, -1.0]]),
                          jnp.array([[[1.0, 0.3], [0.3, 0.5]], [[0.4, 0.0], [0.0, 0.4]], [[2.0, -0.5], [-0.5, 1.0]]]))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(64, 2)) * 2.0, jnp.float32)
    log_prob = jax.jit(lambda m: jax.vmap(m.log_prob)(x))
    reference = np.asarray(log_prob(mix))
    for perm in itertools.permutations(range(3)):
        other = relabel(mix, perm)
        np.testing.assert_allclose(np.asarray(log_prob(other)), reference, rtol=1e-6, atol=1e-6)
        assert perm == (0, 1, 2) or not np.array_equal(np.asarray(other.means), np.asarray(mix.means))


def test_em_from_relabelled_start_lands_on_relabelled_fit():
    """EM is permutation-equivariant: started from a relabelled initialisation it returns the relabelled fit (same
    log-likelihood), and match_labels recovers the permutation from the means."""
    centres = np.array([[-3.0, 0.0], [0.0, 3.0], [3.0, 0.0]])
    rng = np.random.default_rng(2)
    x = jnp.asarray(centres[rng.integers(0, 3, 600)] + 0.8 * rng.normal(size=(600, 2)), jnp.float32)
    weights, means, covs = jnp.ones(3) / 3, jnp.array([[-1.0, -1.0], [0.0, 1.0], [1.0, -1.0]]), jnp.ones((3, 2))
    perm = np.array([2, 0, 1])
    fit = em(x, weights, means, covs, tol=1e-6)
    permuted = em(x, weights[perm], means[perm], covs[perm], tol=1e-6)
    assert float(permuted.log_likelihood) == pytest.approx(float(fit.log_likelihood), abs=1e-5)
    for a, b in ((permuted.weights, fit.weights), (permuted.means, fit.means), (permuted.covariances, fit.covariances)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b)[perm], atol=1e-4)
    np.testing.assert_array_equal(match_labels(permuted.means, fit.means), np.argsort(perm))
    np.testing.assert_allclose(np.asarray(fit.means)[match_labels(fit.means, centres)], centres, atol=0.15)


@pytest.fixture(scope="module")
def two_means_posterior():
    """The grid posterior of (μ1, μ2) for 40 draws of ½N(−1, 1) + ½N(1, 1), prior N(0, 3²) on each mean."""
    key_c, key_z = jax.random.split(jax.random.key(3))
    x = jnp.where(jax.random.bernoulli(key_c, 0.5, (40,)), -1.0, 1.0) + jax.random.normal(key_z, (40,))
    posterior = jax.jit(lambda m: mixture_means_log_posterior(m, x, weights=jnp.array([0.5, 0.5]), std=1.0,
                                                             prior_std=3.0))
    grid = jnp.linspace(-4.0, 4.0, 161)
    log_post = np.asarray(jax.vmap(lambda a: jax.vmap(lambda b: posterior(jnp.stack([a, b])))(grid))(grid), np.float64)
    p = np.exp(log_post - log_post.max())
    return x, posterior, np.asarray(grid, np.float64), p / p.sum()


def test_grid_posterior_is_exactly_symmetric(two_means_posterior):
    """p(μ1, μ2 | x) = p(μ2, μ1 | x) on the grid (float32 rounding), so P(μ1 < μ2) + ½P(μ1 = μ2) = ½ and the
    posterior means of μ1 and μ2 coincide; after ordering, E[min] and E[max] fall on either side of the data mean."""
    x, _, grid, p = two_means_posterior
    np.testing.assert_allclose(p, p.T, rtol=1e-5, atol=1e-12)
    below = np.triu(p, 1).sum()  # rows μ1, columns μ2: μ1 < μ2 above the diagonal
    assert below + 0.5 * np.trace(p) == pytest.approx(0.5, abs=1e-6)
    mean_mu1, mean_mu2 = (p.sum(axis) @ grid for axis in (1, 0))
    assert mean_mu1 == pytest.approx(mean_mu2, abs=1e-6)
    low = np.minimum(grid[:, None], grid[None, :])
    assert (p * low).sum() < float(jnp.mean(x)) - 0.5 < float(jnp.mean(x)) + 0.5 < (p * (grid[:, None] + grid[None, :] - low)).sum()


def test_mala_chains_visit_both_labellings(two_means_posterior):
    """MALA from exchangeable starts (random data points): the fraction of chains with μ1 < μ2 is ½ within 4 binomial s.e., and the
    *ordered* chain means match the grid quadrature within 4 s.e. (independent chains, one final state each)."""
    x, posterior, grid, p = two_means_posterior
    chains = 500
    starts = x[jax.random.randint(jax.random.key(4), (chains, 2), 0, x.shape[0])]  # exchangeable starts
    # step h = 0.05: h·λ ≈ 1 for the curvature λ ≈ n/(2σ²) = 20 of each mean (h·λ ≥ 2 overshoots, chains stick)
    states, _ = run_chains(mala(posterior, 0.05), jax.random.key(5), starts, 300)
    mu = np.asarray(states.position, np.float64)
    assert abs(np.mean(mu[:, 0] < mu[:, 1]) - 0.5) < 4 * math.sqrt(0.25 / chains)
    ordered = np.sort(mu, axis=1)
    low = np.minimum(grid[:, None], grid[None, :])
    exact = [(p * low).sum(), (p * (grid[:, None] + grid[None, :] - low)).sum()]
    assert np.all(np.abs(ordered.mean(0) - exact) < 4 * ordered.std(0) / math.sqrt(chains))


# -- large deviations -------------------------------------------------------------------------------
def test_binomial_log_tail_against_scipy():
    for n, k, p in [(10, 6, 0.5), (100, 60, 0.5), (1000, 400, 0.3), (1, 1, 0.2), (50, 0, 0.4), (3000, 2000, 0.5)]:
        exact = scipy.stats.binom.sf(k - 1, n, p)
        assert math.exp(binomial_log_tail(n, k, p)) == pytest.approx(exact, rel=1e-10)
    # where the tail underflows float64 (scipy's logsf returns −inf): exact integers, P = Σ_{j≥k} C(n, j) / 2ⁿ
    n, k = 4000, 3000
    term, total = math.comb(n, k), 0
    for j in range(k, n + 1):  # C(n, j + 1) = C(n, j)(n − j)/(j + 1), exactly
        total, term = total + term, term * (n - j) // (j + 1)
    exact = math.log(total) - n * math.log(2)
    assert binomial_log_tail(n, k, 0.5) == pytest.approx(exact, rel=1e-12)


def test_bernoulli_kl_hand_values():
    assert bernoulli_kl(0.6, 0.5) == pytest.approx(0.6 * math.log(1.2) + 0.4 * math.log(0.8), rel=1e-14)
    assert bernoulli_kl(1.0, 0.3) == pytest.approx(-math.log(0.3), rel=1e-14)
    assert bernoulli_kl(0.3, 0.3) == 0.0


@pytest.mark.parametrize("p,a", [(0.5, 0.6), (0.3, 0.5), (0.1, 0.75)])
def test_chernoff_and_types_bounds_hold_for_every_n(p, a):
    """(n + 1)⁻¹ e^{−n KL} ≤ P(p̂_n ≥ a) ≤ e^{−n KL} for every n ≤ 400 with na an integer; the rate gap
    −(1/n) log P − KL(a‖p) ∈ [0, log(n + 1)/n]; the Bahadur–Rao form is O(1/n) away (10× closer at 10× n)."""
    for n in (n for n in range(1, 401) if abs(n * a - round(n * a)) < 1e-9 and round(n * a) < n):
        ld = coin_large_deviations(n, round(n * a), p)
        assert ld.types_lower <= ld.log_tail <= ld.chernoff
        assert 0 <= -ld.log_tail / n - ld.kl <= math.log(n + 1) / n
    gaps = [abs(ld.log_tail - ld.bahadur_rao) for ld in (coin_large_deviations(n, round(n * a), p) for n in (400, 4000))]
    assert 6 < gaps[0] / gaps[1] < 15


# -- Inception score --------------------------------------------------------------------------------
def test_inception_score_is_exp_mutual_information():
    """IS = exp(I(x; y)) = exp(H(y) − H(y|x)) for a known channel p(y|x): a binary symmetric channel with error ε on
    balanced inputs gives 2·exp(−H_b(ε)); a 3-class channel on unbalanced inputs, its mutual information."""
    eps = 0.1
    logits = np.log(np.array([[1 - eps, eps], [eps, 1 - eps]]))[np.arange(200) % 2]
    h_b = -(eps * math.log(eps) + (1 - eps) * math.log(1 - eps))
    assert inception_score(lambda s: s, logits, splits=1) == pytest.approx((2 * math.exp(-h_b), 0.0), rel=1e-12)
    channel = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    counts = np.array([50, 30, 20])
    inputs = np.repeat(np.arange(3), counts)
    p_x = counts / counts.sum()
    p_y = p_x @ channel
    entropy = lambda q: -np.sum(q * np.log(q), axis=-1)  # noqa: E731
    mutual_information = entropy(p_y) - p_x @ entropy(channel)
    mean, sd = inception_score(lambda s: s, np.log(channel)[inputs], splits=1)
    assert mean == pytest.approx(math.exp(mutual_information), rel=1e-12) and sd == 0.0


def test_inception_score_limits_and_splits():
    """Constant predictions score 1; confident predictions balanced over K classes score K; splits give the mean
    and the (ddof = 0) s.d. of the per-split scores."""
    constant = np.tile([0.3, -1.0, 2.0, 0.0], (120, 1))
    assert inception_score(lambda s: s, constant, splits=4) == pytest.approx((1.0, 0.0), abs=1e-12)
    for k in (2, 5, 10):
        confident = 60.0 * np.eye(k)[np.arange(20 * k) % k]
        assert inception_score(lambda s: s, confident, splits=4)[0] == pytest.approx(k, rel=1e-12)
    half_and_half = np.concatenate([constant[:, :3], 60.0 * np.eye(3)[np.arange(120) % 3]])
    assert inception_score(lambda s: s, half_and_half, splits=2) == pytest.approx((2.0, 1.0), rel=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="sigma must be a positive finite number"):
        map_weight(3, sigma=0.0, tau=1.0)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        mle_map_mse(0.0, 0, sigma=1.0, mu0=0.0, tau=1.0)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., n\)"):
        mle_map_estimates(1.0, sigma=1.0, mu0=0.0, tau=1.0)
    with pytest.raises(ValueError, match="perm must be a permutation of 0..1"):
        relabel(GaussianMixture(jnp.zeros(2), jnp.zeros((2, 1)), jnp.ones((2, 1, 1))), [0, 0])
    with pytest.raises(ValueError, match=r"shape \(K, d\)"):
        match_labels(np.zeros((3, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"shapes \(K,\), \(n,\), \(K,\)"):
        mixture_means_log_posterior(jnp.zeros(2), jnp.zeros(5), weights=jnp.ones(3), std=1.0)
    with pytest.raises(ValueError, match=r"p must lie in \(0, 1\)"):
        binomial_log_tail(10, 3, 1.0)
    with pytest.raises(ValueError, match=r"k must be an integer in \[0, n=10\]"):
        binomial_log_tail(10, 11, 0.5)
    with pytest.raises(ValueError, match="need p < k/n < 1"):
        coin_large_deviations(10, 4, 0.5)
    with pytest.raises(ValueError, match="splits must be an integer"):
        inception_score(lambda s: s, np.zeros((5, 3)), splits=6)
    with pytest.raises(ValueError, match=r"logits must have shape \(5, K\) with K >= 2"):
        inception_score(lambda s: s[:, :1], np.zeros((5, 3)), splits=1)
    with pytest.raises(ValueError, match="with a logits layer"):
        inception_score(FeatureNet(None, None, (8, 8, 1)), np.zeros((5, 8, 8, 1)), splits=1)  # no logits layer
