"""Oracles for genjax.stats: Gaussian MLE, EM, KDE, divergences (MATH.md §8, §9.11)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from genjax import stats as S
from genjax.targets import GaussianMixture

EIGHT = [1.2, 2.3, 1.8, 2.1, 1.5, 2.7, 1.9, 2.4]


# -- Gaussian MLE ------------------------------------------------------------------------
def test_eight_point_mle_oracle():
    x = jnp.array(EIGHT)
    mean, var = S.gaussian_mle(x)
    # MATH.md §9.11 values are given to 6 significant digits; float32 is good to ~1e-7 relative.
    np.testing.assert_allclose(float(mean), 1.9875, atol=1e-6)
    np.testing.assert_allclose(math.sqrt(float(var)), 0.459449, atol=1e-6)
    np.testing.assert_allclose(float(S.mean_log_likelihood(x, mean, var)), -0.641212, atol=1e-6)


def test_full_and_diagonal_mle_match_hand_formulas():
    x = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, -1.0], [2.0, 1.0]], np.float32)
    mean, cov = S.gaussian_mle(x, covariance_type="full")
    # by hand: mean (2, 1); centred rows (-2,0),(0,2),(2,-2),(0,0) → Σ = [[8, -4], [-4, 8]]/4
    np.testing.assert_allclose(mean, [2.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(cov, [[2.0, -1.0], [-1.0, 2.0]], atol=1e-6)
    _, var = S.gaussian_mle(x, covariance_type="diag")
    np.testing.assert_allclose(var, [2.0, 2.0], atol=1e-6)


def test_gaussian_log_prob_against_scipy():
    mean, cov = np.array([0.5, -1.0]), np.array([[2.0, 0.6], [0.6, 1.0]])
    x = np.array([1.0, 0.3])
    want = scipy.stats.multivariate_normal(mean, cov).logpdf(x)
    np.testing.assert_allclose(float(S.gaussian_log_prob(x, mean, cov)), want, rtol=1e-5)
    want_diag = scipy.stats.norm(mean, [1.5, 0.5]).logpdf(x).sum()
    np.testing.assert_allclose(float(S.gaussian_log_prob(x, mean, np.array([2.25, 0.25]))), want_diag, rtol=1e-5)


def test_gradient_mle_converges_to_closed_form():
    x = jax.random.normal(jax.random.key(0), (256, 2)) * jnp.array([0.5, 2.0]) + jnp.array([1.0, -1.0])
    mean, var, history = S.gaussian_mle_gradient(x, steps=600, learning_rate=0.05)
    want_mean, want_var = S.gaussian_mle(x)
    # Adam on a smooth convex problem (in μ; log σ too): after 600 steps the iterate is within
    # ~1e-3 of the optimum; the loss must also have decreased to the closed-form NLL.
    np.testing.assert_allclose(mean, want_mean, atol=2e-3)
    np.testing.assert_allclose(var, want_var, rtol=2e-3)
    np.testing.assert_allclose(float(history[-1]), -float(S.mean_log_likelihood(x, want_mean, want_var)), atol=1e-4)
    assert float(history[0]) > float(history[-1]) + 0.5


def test_fisher_information_and_standard_errors():
    sigma = 1.7
    np.testing.assert_allclose(S.gaussian_fisher_information(sigma), np.diag([1 / sigma**2, 2 / sigma**2]), rtol=1e-6)
    # Fisher = −E[Hessian of log N(x; μ, σ²)] in (μ, σ): Monte Carlo over 20000 draws.
    x = sigma * jax.random.normal(jax.random.key(1), (20_000,))
    hess = jax.jit(jax.vmap(jax.hessian(lambda th, xi: S.gaussian_log_prob(xi, th[0], th[1] ** 2)), (None, 0)))(jnp.array([0.0, sigma]), x)
    # −∂²/∂σ² = 3x²/σ⁴ − 1/σ² has std √18/σ² → MC s.e. √18/σ²/√20000 ≈ 0.01; allow 5 s.e.
    np.testing.assert_allclose(-np.mean(np.asarray(hess), 0), np.diag([1 / sigma**2, 2 / sigma**2]), atol=0.05)
    # Empirical spread of the MLE over 4000 replications of N = 200 vs (σ/√N, σ/√(2N)).
    n, reps = 200, 4000
    data = sigma * jax.random.normal(jax.random.key(2), (reps, n))
    means, vars_ = jax.jit(jax.vmap(S.gaussian_mle))(data)
    se_mu, se_sigma = S.mle_standard_errors(sigma, n)
    np.testing.assert_allclose([float(se_mu), float(se_sigma)], [sigma / math.sqrt(n), sigma / math.sqrt(2 * n)], rtol=1e-6)
    # A std estimated from R = 4000 replications has relative s.e. 1/√(2R) ≈ 1.1%; 5 s.e. → 6%.
    np.testing.assert_allclose(float(jnp.std(means)), float(se_mu), rtol=0.06)
    np.testing.assert_allclose(float(jnp.std(jnp.sqrt(vars_))), float(se_sigma), rtol=0.06)


# -- EM ----------------------------------------------------------------------------------
TRUTH = GaussianMixture.create(
    jnp.array([0.3, 0.5, 0.2]),
    jnp.array([[-5.0, 0.0], [0.0, 5.0], [5.0, 0.0]]),
    jnp.array([[[1.0, 0.5], [0.5, 1.0]], [[0.5, 0.0], [0.0, 1.5]], [[1.0, -0.3], [-0.3, 0.5]]]),
)
N_EM = 3000


@pytest.fixture(scope="module")
def em_data():
    return TRUTH.sample(jax.random.key(3), N_EM)


@pytest.fixture(scope="module", params=["full", "diag"])
def em_fit(request, em_data):
    return S.fit_gmm(jax.random.key(4), em_data, 3, covariance_type=request.param, n_init=3, tol=1e-6, max_iter=200)


def test_em_recovers_separated_components(em_fit):
    assert bool(em_fit.converged)
    order = np.argsort(np.asarray(em_fit.means)[:, 0])  # truth is sorted by the first coordinate
    w, mu = np.asarray(em_fit.weights)[order], np.asarray(em_fit.means)[order]
    w_true, mu_true = np.asarray(TRUTH.weights), np.asarray(TRUTH.means)
    # Components overlap negligibly (≥ 5 std apart), so the MLE errors are the per-component
    # sample errors: s.e.(w) = √(w(1−w)/N), s.e.(μ) ≤ √(max eig Σ / (w N)); allow 5 s.e.
    np.testing.assert_allclose(w, w_true, atol=5 * np.sqrt(w_true * (1 - w_true) / N_EM).max())
    se_mu = np.sqrt(1.5 / (w_true.min() * N_EM))
    np.testing.assert_allclose(mu, mu_true, atol=5 * se_mu)
    if em_fit.covariance_type == "full":
        # s.e. of a covariance entry ≈ √(2/(wN)) · Σ scale ≈ 0.05; allow ~5 s.e.
        np.testing.assert_allclose(np.asarray(em_fit.covariances)[order], np.asarray(TRUTH.covs), atol=0.25)


@pytest.fixture(scope="module", params=["full", "diag"])
def em_from_init(request, em_data):
    """EM with K = 4 on 3-component data: one component is split, so EM creeps for 40–250 steps."""
    init = S.init_gmm(jax.random.key(5), em_data, 4, covariance_type=request.param)
    return init, S.em(em_data, *init, tol=1e-6, max_iter=300)


def test_em_log_likelihood_never_decreases(em_from_init, em_data):
    _, fit = em_from_init
    h = np.asarray(fit.history)[: int(fit.n_iter) + 1]
    assert bool(fit.converged) and int(fit.n_iter) >= 20 and np.all(np.isfinite(h))
    assert np.all(np.isnan(np.asarray(fit.history)[int(fit.n_iter) + 1 :]))
    # EM is monotone in exact arithmetic; float32 round-off of a mean of N log-densities
    # (|ll| ≈ 3.7) is ~1e-6.
    assert np.diff(h).min() > -2e-6, np.diff(h).min()
    assert h[-1] > h[0] + 0.01
    np.testing.assert_allclose(float(fit.log_likelihood), h[-1], rtol=1e-7)
    # The recorded value is the mean log-density of the returned parameters.
    mean_log_prob = jax.jit(lambda f, x: jnp.mean(jax.vmap(f.log_prob)(x)))(fit, em_data)
    np.testing.assert_allclose(float(mean_log_prob), h[-1], atol=1e-5)


def test_em_agrees_with_sklearn_from_same_init(em_from_init, em_data):
    sklearn = pytest.importorskip("sklearn.mixture")
    init, fit = em_from_init
    w, m, c = (np.asarray(a, np.float64) for a in init)
    prec = np.linalg.inv(c) if fit.covariance_type == "full" else 1.0 / c
    x64 = np.asarray(em_data, np.float64)
    ref = sklearn.GaussianMixture(
        4, covariance_type=fit.covariance_type, tol=1e-6, max_iter=300, reg_covar=1e-6, n_init=1,
        weights_init=w / w.sum(), means_init=m, precisions_init=prec, init_params="random",
    ).fit(x64)
    # Same algorithm from the same start (sklearn takes one more M-step after its stopping
    # test, worth < tol); the rest is float32 vs float64 round-off, measured ≤ 1e-5.
    np.testing.assert_allclose(float(fit.log_likelihood), ref.score(x64), atol=3e-5)
    np.testing.assert_allclose(float(fit.aic(em_data)), ref.aic(x64), rtol=1e-5)
    np.testing.assert_allclose(float(fit.bic(em_data)), ref.bic(x64), rtol=1e-5)


def test_gmm_parameter_count_and_criteria(em_fit, em_data):
    # K=3, d=2: 2 weights + 6 means + 9 (full: 3 per 2×2) or 6 (diag) covariance entries.
    p = {"full": 17, "diag": 14}[em_fit.covariance_type]
    assert em_fit.num_parameters == p
    total = N_EM * float(em_fit.log_likelihood)
    np.testing.assert_allclose(float(em_fit.aic(em_data)), -2 * total + 2 * p, rtol=1e-5)
    np.testing.assert_allclose(float(em_fit.bic(em_data)), -2 * total + p * math.log(N_EM), rtol=1e-5)


def test_kmeans_plusplus_never_repeats_a_point():
    # D² sampling gives already chosen points probability 0, so K = N picks every point once.
    x = jax.random.normal(jax.random.key(7), (12, 3))
    centres = np.asarray(S.kmeans_plusplus(jax.random.key(8), x, 12))
    idx = [int(np.argmin(np.abs(np.asarray(x) - c).sum(1))) for c in centres]
    assert sorted(idx) == list(range(12))


# -- KDE ---------------------------------------------------------------------------------
def test_bandwidth_rules_hand_values():
    np.testing.assert_allclose(S.scott_factor(100, 1), 100 ** -0.2, rtol=1e-12)
    np.testing.assert_allclose(S.scott_factor(100, 1), 0.3981072, rtol=1e-6)
    np.testing.assert_allclose(S.silverman_factor(100, 1), 0.4216846, rtol=1e-6)
    # In 1-D Silverman's factor is (4/3)^{1/5} N^{-1/5} = 1.0592 N^{-1/5}; in 2-D it equals Scott's.
    np.testing.assert_allclose(S.silverman_factor(100, 1) / S.scott_factor(100, 1), 1.0592238, rtol=1e-6)
    np.testing.assert_allclose(S.silverman_factor(1000, 2), S.scott_factor(1000, 2), rtol=1e-12)
    # data 0..4: unbiased variance 2.5, Scott factor 5^{-1/5} → H = 5^{-2/5}·2.5 = 1.3132639
    k = S.kde(jnp.arange(5.0)[:, None], "scott")
    np.testing.assert_allclose(float(k.covariance[0, 0]), 1.3132639, rtol=1e-5)


def test_kde_log_prob_hand_value():
    # Two points 0 and 2, h = 1: p̂(1) = ½[N(1; 0, 1) + N(1; 2, 1)] = e^{−1/2}/√(2π).
    k = S.kde(jnp.array([[0.0], [2.0]]), 1.0)
    np.testing.assert_allclose(float(jnp.exp(k.log_prob(jnp.array([1.0])))), 0.24197072, rtol=1e-6)


density = jax.jit(lambda k, pts: jnp.exp(jax.vmap(k.log_prob)(pts)))


@pytest.mark.parametrize("bandwidth", ["scott", "silverman"])
def test_kde_integrates_to_one(bandwidth):
    key1, key2 = jax.random.split(jax.random.key(9))
    x1 = jax.random.normal(key1, (100, 1))
    k1 = S.kde(x1, bandwidth)
    grid = jnp.linspace(-8.0, 8.0, 4001)[:, None]
    mass1 = jnp.trapezoid(density(k1, grid), dx=16.0 / 4000)
    # Trapezoid error on a smooth density with spacing 0.004 is < 1e-6; tails beyond ±8 are
    # < 1e-9; float32 summation ~1e-6.
    np.testing.assert_allclose(float(mass1), 1.0, atol=1e-4)
    x2 = jax.random.normal(key2, (60, 2)) @ jnp.array([[1.0, 0.5], [0.0, 0.7]])
    k2 = S.kde(x2, bandwidth)
    g = jnp.linspace(-7.0, 7.0, 201)
    pts = jnp.stack(jnp.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    dens = density(k2, pts).reshape(201, 201)
    mass2 = jnp.sum(dens) * (14.0 / 200) ** 2  # smooth, decayed at the edges: Riemann ≈ trapezoid
    np.testing.assert_allclose(float(mass2), 1.0, atol=2e-3)


def test_kde_sample_moments():
    data = jnp.array([[0.0], [1.0], [5.0]])
    k = S.kde(data, 0.5)
    y = k.sample(jax.random.key(10), 40_000)
    # Mixture moments: mean 2, variance = biased data variance (14/3) + h² = 4.9167.
    # s.e. of the mean √(4.92/40000) ≈ 0.011, of the variance ≈ 0.03; allow ~5 s.e.
    np.testing.assert_allclose(float(jnp.mean(y)), 2.0, atol=0.06)
    np.testing.assert_allclose(float(jnp.var(y)), 14 / 3 + 0.25, atol=0.15)


# -- divergences -------------------------------------------------------------------------
def test_gaussian_kl_hand_value_and_zero():
    # KL(N(0,1) ‖ N(1,4)) = log 2 + (1 + 1)/8 − ½
    np.testing.assert_allclose(float(S.kl_gaussian(0.0, 1.0, 1.0, 4.0)), math.log(2) + 0.25 - 0.5, rtol=1e-6)
    cov = jnp.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.5]])
    np.testing.assert_allclose(float(S.kl_gaussian(jnp.ones(3), cov, jnp.ones(3), cov)), 0.0, atol=1e-6)


def test_gaussian_kl_closed_form_equals_monte_carlo():
    p = GaussianMixture.create(jnp.ones(1), jnp.array([[0.0, 1.0, -1.0]]), jnp.array([[[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.5]]]))
    q = GaussianMixture.create(jnp.ones(1), jnp.array([[0.5, 0.0, -1.0]]), jnp.array([[[1.0, -0.2, 0.1], [-0.2, 1.5, 0.0], [0.1, 0.0, 1.0]]]))
    exact = S.kl_gaussian(p.means[0], p.covs[0], q.means[0], q.covs[0])
    est = S.mc_kl(jax.random.key(11), p.log_prob, p.sample, q.log_prob, n=20_000)
    assert abs(float(est.value) - float(exact)) < 5 * float(est.stderr), (est, exact)
    assert float(est.stderr) < 0.05 * float(exact)  # the test has power


def test_js_bounds_and_disjoint_supports():
    a = GaussianMixture.diagonal(jnp.ones(1), jnp.zeros((1, 1)), jnp.ones((1, 1)))
    far = GaussianMixture.diagonal(jnp.ones(1), jnp.full((1, 1), 60.0), jnp.ones((1, 1)))
    js = S.mc_js(jax.random.key(12), a.log_prob, a.sample, far.log_prob, far.sample, n=2000)
    # Supports effectively disjoint (60 std apart): every log-ratio is log 2 to float precision.
    np.testing.assert_allclose(float(js.value), math.log(2), atol=1e-6)
    # Overlapping pair: quadrature oracle on a fine grid, and JS < log 2.
    near = GaussianMixture.diagonal(jnp.ones(1), jnp.full((1, 1), 1.0), jnp.full((1, 1), 1.5))
    js = S.mc_js(jax.random.key(13), a.log_prob, a.sample, near.log_prob, near.sample, n=20_000)
    grid = np.linspace(-15, 15, 30001)
    pa, pn = scipy.stats.norm(0, 1).pdf(grid), scipy.stats.norm(1, 1.5).pdf(grid)
    m = 0.5 * (pa + pn)
    exact = 0.5 * np.trapezoid(pa * np.log(pa / m) + pn * np.log(pn / m), grid)
    assert abs(float(js.value) - exact) < 5 * float(js.stderr), (js, exact)
    assert float(js.value) < math.log(2) and exact < math.log(2)


BERNOULLI_CLOSED_FORMS = {
    "kl": lambda a, b: a * math.log(a / b) + (1 - a) * math.log((1 - a) / (1 - b)),
    "reverse_kl": lambda a, b: b * math.log(b / a) + (1 - b) * math.log((1 - b) / (1 - a)),
    "tv": lambda a, b: abs(a - b),
    "pearson": lambda a, b: (a - b) ** 2 / (b * (1 - b)),
    "neyman": lambda a, b: (a - b) ** 2 / (a * (1 - a)),
    "hellinger": lambda a, b: (math.sqrt(a) - math.sqrt(b)) ** 2 + (math.sqrt(1 - a) - math.sqrt(1 - b)) ** 2,
    "js": lambda a, b: 0.5 * sum(
        p * math.log(2 * p / (p + q)) + q * math.log(2 * q / (p + q)) for p, q in ((a, b), (1 - a, 1 - b))
    ),
}


@pytest.mark.parametrize("name", sorted(BERNOULLI_CLOSED_FORMS))
def test_f_divergences_between_bernoullis(name):
    div = S.f_divergence(name)
    for a, b in ((0.3, 0.6), (0.9, 0.2), (0.5, 0.5)):
        got = float(div(jnp.array([a, 1 - a]), jnp.array([b, 1 - b])))
        np.testing.assert_allclose(got, BERNOULLI_CLOSED_FORMS[name](a, b), rtol=1e-5, atol=1e-7)


def test_f_divergence_monte_carlo_between_gaussians():
    # P = N(1, 1), Q = N(0, 1.5²): KL closed form; squared Hellinger 2(1 − BC) with
    # BC = √(2σpσq/(σp²+σq²)) exp(−(μp−μq)²/(4(σp²+σq²))).
    mp, sp, mq, sq = 1.0, 1.0, 0.0, 1.5
    xq = mq + sq * jax.random.normal(jax.random.key(14), (40_000,))
    log_ratio = scipy.stats.norm(mp, sp).logpdf(np.asarray(xq)) - scipy.stats.norm(mq, sq).logpdf(np.asarray(xq))
    bc = math.sqrt(2 * sp * sq / (sp**2 + sq**2)) * math.exp(-((mp - mq) ** 2) / (4 * (sp**2 + sq**2)))
    oracles = {"kl": float(S.kl_gaussian(mp, sp**2, mq, sq**2)), "hellinger": 2 * (1 - bc)}
    for name, exact in oracles.items():
        est = S.f_divergence(name).monte_carlo(log_ratio)
        assert abs(float(est.value) - exact) < 5 * float(est.stderr), (name, est, exact)


@pytest.mark.parametrize("name", sorted(S.F_DIVERGENCES))
def test_fenchel_young_and_activation_domain(name):
    div = S.f_divergence(name)
    u = jnp.geomspace(0.05, 20.0, 41)
    t = div.activation(jnp.linspace(-6.0, 6.0, 61))
    assert bool(jnp.all(div.in_domain(t))), "g_f must map into dom f*"
    gap = div.f(u)[:, None] + div.conjugate(t)[None, :] - u[:, None] * t[None, :]
    assert float(jnp.min(gap)) > -1e-5  # f(u) + f*(t) ≥ ut
    t_star = div.f_prime(u)
    tight = div.f(u) + div.conjugate(t_star) - u * t_star
    np.testing.assert_allclose(tight, 0.0, atol=2e-5 * float(jnp.max(jnp.abs(u * t_star)) + 1))


@pytest.mark.parametrize("name", sorted(S.F_DIVERGENCES))
def test_conjugate_of_activation_closed_form(name):
    # f*(g_f(v)) in closed form equals the composition where that is well conditioned (float64 reference) and
    # stays finite beyond it, where float32 rounds g_f(v) onto the boundary of dom f*.
    div = S.f_divergence(name)
    v = np.linspace(-5.0, 5.0, 41)
    with jax.enable_x64(True):
        reference = np.asarray(div.conjugate(div.activation(jnp.asarray(v, jnp.float64))))
    np.testing.assert_allclose(np.asarray(div.conjugate_activation(jnp.asarray(v, jnp.float32))), reference,
                               rtol=1e-5, atol=1e-6)
    far = div.conjugate_activation(jnp.array([-30.0, 30.0], jnp.float32))
    assert bool(jnp.all(jnp.isfinite(far)))


@pytest.mark.parametrize("name", sorted(S.F_DIVERGENCES))
def test_variational_bound_below_divergence_and_tight(name):
    div = S.f_divergence(name)
    p = jnp.array([0.1, 0.4, 0.2, 0.3])
    q = jnp.array([0.3, 0.2, 0.25, 0.25])
    exact = float(div(p, q))
    t_star = div.f_prime(p / q)
    np.testing.assert_allclose(float(div.discrete_lower_bound(p, q, t_star)), exact, rtol=1e-5, atol=1e-6)
    raw = jax.random.normal(jax.random.key(15), (200, 4)) * 2.0
    bounds = jax.jit(jax.vmap(lambda v: div.discrete_lower_bound(p, q, div.activation(v))))(raw)
    assert float(jnp.max(bounds)) <= exact + 1e-6
    # and the sample-based bound with T* on draws from P and Q estimates D_f
    kp, kq = jax.random.split(jax.random.key(16))
    ip, iq = jax.random.categorical(kp, jnp.log(p), shape=(20_000,)), jax.random.categorical(kq, jnp.log(q), shape=(20_000,))
    est = div.lower_bound(t_star[ip], t_star[iq])
    spread = float(jnp.std(t_star[ip]) + jnp.std(div.conjugate(t_star)[iq]))
    assert abs(float(est) - exact) < 5 * spread / math.sqrt(20_000)


def test_js_table_matches_nowozin_generator_halved():
    # Nowozin et al. 2016's generator u log u − (u+1) log((1+u)/2) gives 2·JS.
    p, q = jnp.array([0.2, 0.8]), jnp.array([0.6, 0.4])
    u = p / q
    nowozin = jnp.sum(q * (u * jnp.log(u) - (u + 1) * jnp.log((1 + u) / 2)))
    np.testing.assert_allclose(2 * float(S.JENSEN_SHANNON(p, q)), float(nowozin), rtol=1e-6)


# -- degenerate data ---------------------------------------------------------------------
SPIKE_LL = -math.log(2 * math.pi * 1e-6)  # log N(c; c, 1e-6 I) in 2-D: a point mass floored by reg_covar = 1e-6


def _fit3(x, **options):
    """K = 3 on (N_EM, 2) data with em_fit's static options (n_init, max_iter), so nothing compiles again."""
    return S.fit_gmm(jax.random.key(0), x, 3, n_init=3, tol=1e-6, max_iter=200, **options)


def _finite(fit):
    return all(np.all(np.isfinite(np.asarray(a))) for a in (fit.weights, fit.means, fit.covariances, fit.log_likelihood))


def test_gmm_on_identical_points():
    """All points at c: the MLE N(c, 0) is floored to N(c, reg_covar·I) and the other components come back empty
    (with a warning); with reg_covar = 0 the covariance is singular: a ValueError before any work."""
    x = jnp.full((N_EM, 2), 3.0)
    with pytest.warns(UserWarning, match="only 1 distinct point.*n_components=3: 2 component"):
        fit = _fit3(x)
    assert _finite(fit)
    k = int(jnp.argmax(fit.weights))
    assert float(fit.weights[k]) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(fit.means[k], [3.0, 3.0], rtol=1e-6)
    np.testing.assert_allclose(fit.covariances[k], 1e-6 * np.eye(2), rtol=1e-4, atol=1e-12)
    np.testing.assert_allclose(float(fit.log_likelihood), SPIKE_LL, rtol=1e-5)
    with pytest.raises(ValueError, match=r"constant in coordinate\(s\) \[0, 1\].*reg_covar > 0"):
        _fit3(x, reg_covar=0.0)


def test_gmm_constant_coordinate_and_few_distinct_points(em_data):
    """A constant coordinate gets variance exactly reg_covar in every component; 2 distinct points with K = 3
    give weights (½, ½, 0) and mean log-likelihood log ½ + SPIKE_LL."""
    x = em_data.at[:, 1].set(5.0)
    fit = _fit3(x)
    assert _finite(fit)
    np.testing.assert_allclose(fit.covariances[:, 1, 1], 1e-6, rtol=1e-3)
    np.testing.assert_allclose(fit.covariances[:, 0, 1], 0.0, atol=1e-9)
    with pytest.raises(ValueError, match=r"constant in coordinate\(s\) \[1\]"):
        _fit3(x, reg_covar=0.0)
    pairs = jnp.repeat(jnp.array([[0.0, 0.0], [1.0, 1.0]]), N_EM // 2, axis=0)
    with pytest.warns(UserWarning, match="only 2 distinct point"):
        fit = _fit3(pairs)
    assert _finite(fit)
    np.testing.assert_allclose(np.sort(np.asarray(fit.weights)), [0.0, 0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(float(fit.log_likelihood), math.log(0.5) + SPIKE_LL, rtol=1e-5)
    with pytest.raises(ValueError, match="only 2 distinct point.*reg_covar > 0"):
        _fit3(pairs, reg_covar=0.0)


def test_gmm_collapse_without_reg_covar_raises():
    """Three distinct points, K = 3, reg_covar = 0: each component collapses onto a point (zero covariance) and
    EM's output is NaN; with the floor the fit is three spikes of weight ⅓."""
    x = jnp.repeat(jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), N_EM // 3, axis=0)
    with pytest.raises(ValueError, match="non-finite parameters.*reg_covar=0.0"):
        _fit3(x, reg_covar=0.0)
    np.testing.assert_allclose(float(_fit3(x).log_likelihood), math.log(1 / 3) + SPIKE_LL, rtol=1e-5)
    with pytest.raises(ValueError, match="NaN"):
        _fit3(x.at[2, 1].set(jnp.nan))
    with pytest.raises(ValueError, match="NaN"):
        S.em(x.at[0, 0].set(jnp.nan), jnp.ones(2), x[:2], jnp.ones((2, 2)))


# -- bad input ---------------------------------------------------------------------------
def test_bad_input_raises_clear_errors(em_data):
    with pytest.raises(ValueError, match="NaN"):
        S.gaussian_mle(jnp.array([1.0, jnp.nan]))
    with pytest.raises(ValueError, match=r"shape \(N, d\)"):
        S.fit_gmm(jax.random.key(0), jnp.ones(10), 2)
    with pytest.raises(ValueError, match="exceeds the number of samples"):
        S.fit_gmm(jax.random.key(0), em_data[:3], 5)
    with pytest.raises(ValueError, match="covariance_type"):
        S.fit_gmm(jax.random.key(0), em_data, 2, covariance_type="spherical")
    with pytest.raises(ValueError, match="NaN"):
        S.fit_gmm(jax.random.key(0), em_data.at[0, 0].set(jnp.inf), 2)
    with pytest.raises(ValueError, match="covariances must have shape"):
        S.em(em_data, jnp.ones(2) / 2, jnp.zeros((2, 2)), jnp.ones((3, 2)))
    for bad in (0.0, -1.0, float("nan"), "gaussian"):
        with pytest.raises(ValueError, match="bandwidth"):
            S.kde(em_data, bad)
    with pytest.raises(ValueError, match="singular"):
        S.kde(jnp.ones((10, 2)), "scott")
    with pytest.raises(ValueError, match="not known"):
        S.f_divergence("wasserstein")
    with pytest.raises(ValueError, match="same dimension"):
        S.kl_gaussian(jnp.zeros(2), 1.0, jnp.zeros(3), 1.0)
    with pytest.raises(ValueError, match="q > 0"):
        S.KL(jnp.array([0.5, 0.5]), jnp.array([1.0, 0.0]))
