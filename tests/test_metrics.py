"""Sample metrics against analytic oracles (MATH.md §8, §9.10)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.spatial.distance
import scipy.stats

from genjax import metrics
from genjax.data import toy

KEY = jax.random.key(0)
C1 = np.array([[1.0, 0.6], [0.6, 1.0]])
C2 = np.array([[2.0, -0.5], [-0.5, 0.5]])  # does not commute with C1


def sqrt_psd(a):
    return scipy.linalg.sqrtm(a).real


def frechet64(mu1, c1, mu2, c2):
    """Independent float64 Fréchet distance via scipy's sqrtm on the symmetric form."""
    r = sqrt_psd(c1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2) - 2 * np.trace(sqrt_psd(r @ c2 @ r)))


@pytest.fixture(scope="module")
def null_and_shift():
    """64 repeats of (N(0,I) vs N(0,I)) and (N(0,I) vs N((1,0), I)) samples, n = 100, vmapped."""
    keys = jax.random.split(KEY, 64)
    a = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 0), (100, 2)))(keys)
    b = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 1), (100, 2)))(keys)
    shift = jnp.array([1.0, 0.0])
    out = {}
    for name, fn in (("energy", metrics.energy_distance), ("mmd", metrics.mmd2), ("kid", metrics.kid)):
        out[name] = (np.asarray(jax.vmap(fn)(a, b)), np.asarray(jax.vmap(fn)(a, b + shift)))
    return out


# -- Wasserstein ----------------------------------------------------------------------
def test_w2_exact_for_an_affine_map_and_approaches_frechet():
    """For y_i = A x_i + b with A symmetric PD, x_i ↦ y_i is the optimal (Brenier) coupling of the two
    empirical measures, so W2² = mean ‖(A − I) x_i + b‖² exactly.  With A = Σ1^{-1/2}(Σ1^{1/2}Σ2Σ1^{1/2})^{1/2}Σ1^{-1/2}
    and x ~ N(0, Σ1), y ~ N(b, Σ2), whose W2² is the Fréchet formula: that limit holds within 5 Monte-Carlo s.e.
    """
    r = sqrt_psd(C1)
    ri = np.linalg.inv(r)
    a = ri @ sqrt_psd(r @ C2 @ r) @ ri
    b = np.array([1.0, -1.0])
    x = np.asarray(jax.random.multivariate_normal(KEY, jnp.zeros(2), jnp.asarray(C1, jnp.float32), (500,)), np.float64)
    y = x @ a.T + b
    per_point = np.sum((x @ (a - np.eye(2)).T + b) ** 2, axis=1)
    w2 = metrics.wasserstein2(x, y)
    assert w2**2 == pytest.approx(per_point.mean(), rel=1e-5)  # float32 inputs
    exact = frechet64(np.zeros(2), C1, b, C2)
    assert float(metrics.frechet_distance(np.zeros(2), C1, b, C2)) == pytest.approx(exact, rel=1e-5)
    assert abs(w2**2 - exact) < 5 * per_point.std(ddof=1) / math.sqrt(per_point.size)


@pytest.mark.parametrize("dim", [1, 2])
def test_w2_of_independent_gaussian_samples_obeys_gelbrich(dim):
    """Gelbrich: W2²(μ, ν) ≥ Fréchet distance of their means and covariances, with equality for Gaussians.

    For the empirical measures (biased covariances) the bound is exact; the gap is their non-Gaussianity,
    measured 0.013 ± 0.006 (1-D) and 0.044 ± 0.005 (2-D) over 20 repeats at n = 500, so we allow 0.1.
    1-D case: N(0, 1) vs N(1, 2²) with population W2² = 1 + 1 = 2.
    """
    k1, k2 = jax.random.split(KEY)
    if dim == 1:
        c1, c2, b = np.eye(1), 4 * np.eye(1), np.ones(1)
    else:
        c1, c2, b = C1, C2, np.array([1.0, -1.0])
    x = np.asarray(jax.random.multivariate_normal(k1, jnp.zeros(dim), jnp.asarray(c1, jnp.float32), (500,)), np.float64)
    y = np.asarray(jax.random.multivariate_normal(k2, jnp.asarray(b, jnp.float32), jnp.asarray(c2, jnp.float32), (500,)), np.float64)
    moments = lambda s: (s.mean(0), np.atleast_2d(np.cov(s.T, bias=True)))  # noqa: E731
    gap = metrics.wasserstein2(x, y) ** 2 - frechet64(*moments(x), *moments(y))
    assert -1e-4 < gap < 0.1
    if dim == 1:
        assert frechet64(np.zeros(1), c1, b, c2) == pytest.approx(2.0)


def test_sliced_wasserstein_in_1d_equals_exact_wasserstein():
    """In 1-D every direction is ±1, so SW_p is the exact W_p of the empirical measures."""
    k1, k2 = jax.random.split(KEY)
    x, y = jax.random.normal(k1, (300, 1)), 0.5 + 2 * jax.random.normal(k2, (300, 1))
    xs, ys = np.sort(np.asarray(x[:, 0], np.float64)), np.sort(np.asarray(y[:, 0], np.float64))
    w2 = np.sqrt(np.mean((xs - ys) ** 2))
    np.testing.assert_allclose(float(metrics.sliced_wasserstein(x, y, KEY, num_projections=4)), w2, rtol=1e-5)
    np.testing.assert_allclose(metrics.wasserstein2(x, y), w2, rtol=1e-5)
    # unequal sizes: p = 1 against scipy; p = 2 against sorting after replicating both to lcm(300, 200) = 600 points
    y2 = np.asarray(y[:200, 0], np.float64)
    sw1 = float(metrics.sliced_wasserstein(x, y[:200], KEY, num_projections=4, p=1))
    np.testing.assert_allclose(sw1, scipy.stats.wasserstein_distance(xs, y2), rtol=1e-5)
    w2_unequal = np.sqrt(np.mean((np.sort(np.repeat(xs, 2)) - np.sort(np.repeat(y2, 3))) ** 2))
    np.testing.assert_allclose(float(metrics.sliced_wasserstein(x, y[:200], KEY, num_projections=4)), w2_unequal, rtol=1e-5)


def test_sliced_wasserstein_of_a_translation():
    """y = x + m: each projection's W2² is exactly (θᵀm)², so SW2² = mean_θ (θᵀm)² → ‖m‖²/2 in 2-D.

    (θᵀm)² = ‖m‖² cos² φ with φ uniform has variance ‖m‖⁴/8; with 1000 directions the s.e. is 0.011.
    """
    x = jax.random.normal(KEY, (400, 2))
    m = jnp.array([0.6, -0.8])  # ‖m‖ = 1
    sw = float(metrics.sliced_wasserstein(x, x + m, jax.random.key(3), num_projections=1000))
    assert sw**2 == pytest.approx(0.5, abs=5 * math.sqrt(1 / 8 / 1000))


# -- Fréchet --------------------------------------------------------------------------
def test_frechet_closed_forms_and_non_commuting_covariances():
    # 1-D: (m1 − m2)² + (s1 − s2)²
    assert float(metrics.frechet_distance(0.0, 1.0, 1.0, 4.0)) == pytest.approx(1.0 + 1.0, rel=1e-6)
    # 2×2: tr(A + B) − 2 sqrt(tr(AB) + 2 sqrt(det(AB))), for non-commuting A, B
    a, b = np.array([[4.0, 1.9], [1.9, 1.0]]), np.array([[1.0, -0.9], [-0.9, 1.0]])
    assert not np.allclose(a @ b, b @ a)
    mu1, mu2 = np.array([0.3, -1.0]), np.array([1.0, 0.5])
    closed = np.sum((mu1 - mu2) ** 2) + np.trace(a + b) - 2 * np.sqrt(np.trace(a @ b) + 2 * np.sqrt(np.linalg.det(a @ b)))
    got = float(metrics.frechet_distance(mu1, a, mu2, b))
    assert got == pytest.approx(closed, rel=1e-5)
    # the commuting-only shortcut tr(A^{1/2} B^{1/2}) is 0.29 off here, so the test can catch it
    naive = np.sum((mu1 - mu2) ** 2) + np.trace(a + b) - 2 * np.trace(sqrt_psd(a) @ sqrt_psd(b))
    assert abs(naive - closed) > 0.2
    # 5-D random SPD pair against float64 scipy sqrtm; identical Gaussians give 0
    rng = np.random.default_rng(0)
    g1, g2 = rng.standard_normal((5, 5)), rng.standard_normal((5, 5))
    s1, s2 = g1 @ g1.T + 0.5 * np.eye(5), g2 @ g2.T + 0.5 * np.eye(5)
    m1, m2 = rng.standard_normal(5), rng.standard_normal(5)
    assert float(metrics.frechet_distance(m1, s1, m2, s2)) == pytest.approx(frechet64(m1, s1, m2, s2), rel=1e-4)
    assert float(metrics.frechet_distance(m1, s1, m1, s1)) == pytest.approx(0.0, abs=1e-4 * np.trace(s1))
    # singular covariances (eigenvalues clipped at 0): N(0, diag(1, 0)) vs N(0, diag(0, 1)) → tr = 2
    assert float(metrics.frechet_distance(np.zeros(2), np.diag([1.0, 0.0]), np.zeros(2), np.diag([0.0, 1.0]))) == pytest.approx(2.0, abs=1e-6)


def test_frechet_from_samples():
    """Equals the float64 formula on the sample moments (n − 1 covariances); → population value.

    Population: ‖(0.5, 0)‖² + tr(I + diag(1, 4) − 2 diag(1, 2)) = 1.25.  The estimate's s.d. was measured
    0.21 at n = 500 (20 repeats), i.e. 0.033 at n = 20000; we allow 5 s.d.
    """
    k1, k2 = jax.random.split(KEY)
    x = jax.random.normal(k1, (20000, 2))
    y = jax.random.normal(k2, (20000, 2)) * jnp.array([1.0, 2.0]) + jnp.array([0.5, 0.0])
    got = float(metrics.frechet_distance_samples(x, y))
    x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
    assert got == pytest.approx(frechet64(x64.mean(0), np.cov(x64.T), y64.mean(0), np.cov(y64.T)), abs=1e-4)
    assert got == pytest.approx(1.25, abs=5 * 0.033)


# -- kernel two-sample statistics -----------------------------------------------------
def test_identical_samples():
    """V-statistics are exactly 0 for y = x; the unbiased ones equal −(2/n)(k(0) − mean_{i≠j} k(x_i, x_j))."""
    x = jax.random.normal(KEY, (300, 2))
    n = x.shape[0]
    assert abs(float(metrics.energy_distance(x, x, unbiased=False))) < 1e-6
    assert abs(float(metrics.mmd2(x, x, unbiased=False))) < 1e-6
    mean_dist = scipy.spatial.distance.pdist(np.asarray(x, np.float64)).mean()
    assert float(metrics.energy_distance(x, x)) == pytest.approx(-2 * mean_dist / n, rel=1e-4)
    d2 = scipy.spatial.distance.pdist(np.asarray(x, np.float64), "sqeuclidean")
    bw = [0.5, 2.0]
    k_off = sum(np.exp(-d2 / (2 * b**2)) for b in bw).mean()
    assert float(metrics.mmd2(x, x, bandwidths=bw)) == pytest.approx(-2 * (len(bw) - k_off) / n, rel=1e-4)


def test_unbiased_estimators_are_centred_under_the_null(null_and_shift):
    """Over 64 repeats of two independent N(0, I) samples the mean is 0 within 5 s.e."""
    for name, (null, _) in null_and_shift.items():
        assert abs(null.mean()) < 5 * null.std(ddof=1) / math.sqrt(null.size), name


def test_shift_is_detected_beyond_the_null_spread(null_and_shift):
    """A unit shift moves every statistic (each repeat) more than 5 null s.d. above the null mean."""
    for name, (null, alt) in null_and_shift.items():
        assert alt.min() > null.mean() + 5 * null.std(ddof=1), name


def test_energy_distance_in_1d_equals_twice_the_integrated_squared_cdf_gap():
    """Székely: ED = 2∫(F − G)².  Exact for the empirical CDFs with the V-statistic (unequal sizes);
    the unbiased estimator's mean over 32 repeats matches the population value within 5 s.e."""
    k1, k2 = jax.random.split(KEY)
    x, y = jax.random.normal(k1, (300, 1)), 1.0 + jax.random.normal(k2, (200, 1))
    xs, ys = np.sort(np.asarray(x[:, 0], np.float64)), np.sort(np.asarray(y[:, 0], np.float64))
    z = np.sort(np.concatenate([xs, ys]))
    f = np.searchsorted(xs, z[:-1], side="right") / xs.size
    g = np.searchsorted(ys, z[:-1], side="right") / ys.size
    empirical = 2 * np.sum((f - g) ** 2 * np.diff(z))
    assert float(metrics.energy_distance(x, y, unbiased=False)) == pytest.approx(empirical, rel=1e-4)

    grid = np.linspace(-12.0, 13.0, 250001)
    population = 2 * np.trapezoid((scipy.stats.norm.cdf(grid) - scipy.stats.norm.cdf(grid - 1.0)) ** 2, grid)
    # the same value from E|X − Y| with X − Y ~ N(−1, 2): 2 E|N(1, 2)| − 2 E|N(0, 2)|
    e_abs = 2 / math.sqrt(math.pi) * math.exp(-0.25) + (1 - 2 * scipy.stats.norm.cdf(-1 / math.sqrt(2)))
    assert population == pytest.approx(2 * e_abs - 4 / math.sqrt(math.pi), abs=1e-8)
    keys = jax.random.split(KEY, 32)
    vals = np.asarray(jax.vmap(lambda k: metrics.energy_distance(
        jax.random.normal(jax.random.fold_in(k, 0), (200, 1)),
        1.0 + jax.random.normal(jax.random.fold_in(k, 1), (200, 1))))(keys))
    assert abs(vals.mean() - population) < 5 * vals.std(ddof=1) / math.sqrt(vals.size)


def test_kid_linear_kernel_identity_and_subsets():
    """With k(a, b) = aᵀb the unbiased MMD² is ‖x̄ − ȳ‖² − tr Ĉx/n − tr Ĉy/m (Ĉ with n − 1)."""
    k1, k2 = jax.random.split(KEY)
    x, y = jax.random.normal(k1, (150, 3)), 0.3 + jax.random.normal(k2, (120, 3))
    x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
    expected = (np.sum((x64.mean(0) - y64.mean(0)) ** 2) - np.trace(np.cov(x64.T)) / 150
                - np.trace(np.cov(y64.T)) / 120)
    got = float(metrics.kid(x, y, degree=1, gamma=1.0, coef0=0.0))
    assert got == pytest.approx(expected, abs=1e-5 * np.mean(x64**2))
    # a single "subset" of every point is the full estimate (the estimator is permutation invariant)
    full = float(metrics.kid(x[:120], y))
    one = float(metrics.kid(x[:120], y, num_subsets=1, subset_size=120, key=KEY))
    assert one == pytest.approx(full, rel=1e-4, abs=1e-6)


def test_jit_compatible():
    """Under jit only the shape checks run; values match the eager call (median-heuristic MMD, sliced W)."""
    x, y = jax.random.normal(KEY, (50, 2)), jax.random.normal(jax.random.key(1), (60, 2))
    assert float(jax.jit(metrics.mmd2)(x, y)) == pytest.approx(float(metrics.mmd2(x, y)), rel=1e-5, abs=1e-7)
    sw = jax.jit(metrics.sliced_wasserstein, static_argnames="num_projections")
    assert float(sw(x, y, KEY, num_projections=8)) == pytest.approx(float(metrics.sliced_wasserstein(x, y, KEY, 8)), rel=1e-5)


# -- likelihood reporting and floors --------------------------------------------------
def _std_normal_log_prob(x):
    return -0.5 * jnp.sum(x**2) - 0.5 * x.size * math.log(2 * math.pi)


@pytest.mark.parametrize("s", [0.5, 1.0, 1.5])
def test_cross_entropy_gaussian_closed_form(s):
    """Samples of N(0, s² I₂) under N(0, I₂): E[−log p] = log(2π) + s² (½log(2π) + s²/2 per dimension), within
    4 standard errors (sd of ½‖x‖² is s²).  For s < 1 that is below p's own entropy log(2πe): a reference, not
    a floor."""
    x = s * jax.random.normal(KEY, (20000, 2))
    mean, se = metrics.cross_entropy(_std_normal_log_prob, x)
    assert abs(mean - (math.log(2 * math.pi) + s**2)) < 4 * se
    assert se == pytest.approx(s**2 / math.sqrt(20000), rel=0.05)
    assert (mean < math.log(2 * math.pi * math.e)) == (s < 1)


def test_cross_entropy_exposes_over_dispersed_samples():
    """2000 eight-Gaussians samples score the data entropy within 4 s.e.; the same points blurred by N(0, 0.2²)
    (component std 0.354 → 0.406) score higher by > 4 combined s.e. (measured: +0.30 nats ≈ 8.5 s.e., while
    energy distance and W2 against 2000 held-out points stay at their data floors)."""
    ds = toy.eight_gaussians
    k1, k2 = jax.random.split(KEY)
    data = ds.sample(k1, 2000)
    blurred = data + 0.2 * jax.random.normal(k2, data.shape)
    (ce, se), (ce_blur, se_blur) = (metrics.cross_entropy(ds.log_prob, x) for x in (data, blurred))
    assert abs(ce - ds.entropy) < 4 * se
    assert ce_blur - ce > 4 * math.hypot(se, se_blur)


class _UnhashableNormal:
    """A callable density that cannot key a cache (like a module holding arrays)."""

    __hash__ = None

    def __call__(self, x):
        return _std_normal_log_prob(x)


def test_cross_entropy_bad_input_and_zero_density():
    x = jax.random.normal(KEY, (10, 2))
    expected = -np.mean(np.asarray(jax.vmap(_std_normal_log_prob)(x)))
    assert metrics.cross_entropy(_UnhashableNormal(), x)[0] == pytest.approx(expected, rel=1e-6)
    outside = jnp.array([[1.0, 1.0], [1.0, -1.0]])  # on, then off the checkerboard's squares
    assert metrics.cross_entropy(toy.checkerboard.log_prob, outside) == (math.inf, math.inf)
    assert metrics.cross_entropy(toy.checkerboard.log_prob, outside[:1].repeat(2, 0)) == (pytest.approx(math.log(32)), 0.0)
    with pytest.raises(ValueError, match=r"samples must be a 2-D array of shape \(n, d\)"):
        metrics.cross_entropy(_std_normal_log_prob, jnp.zeros(10))
    with pytest.raises(ValueError, match="samples contains NaN"):
        metrics.cross_entropy(_std_normal_log_prob, x.at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="at least 2 samples"):
        metrics.cross_entropy(_std_normal_log_prob, x[:1])
    with pytest.raises(ValueError, match="callable"):
        metrics.cross_entropy(None, x)
    with pytest.raises(ValueError, match="scalar per point"):
        metrics.cross_entropy(lambda p: p, x)
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        metrics.cross_entropy(lambda p: jnp.log(p[0]), x)


def test_nll_and_mean_bits_per_dim():
    # checkerboard samples under their own density: NLL = log 32 exactly, with no spread
    x = toy.checkerboard.sample(KEY, 100)
    mean, se = metrics.nll(jax.vmap(toy.checkerboard.log_prob)(x))
    assert mean == pytest.approx(math.log(32), rel=1e-6) and se == pytest.approx(0.0, abs=1e-6)
    # Gaussian: NLL → entropy ½ log(2πe) within 5 s.e.
    z = np.asarray(jax.random.normal(KEY, (4000,)), np.float64)
    mean, se = metrics.nll(scipy.stats.norm.logpdf(z))
    assert abs(mean - 0.5 * math.log(2 * math.pi * math.e)) < 5 * se
    # uniform density 2^{-D} on [−1, 1]^D, dequantised 8-bit data: exactly 8 bits/dim
    bpd, se = metrics.mean_bits_per_dim(np.full(10, -3 * math.log(2.0)), dim=3)
    assert bpd == pytest.approx(8.0) and se == pytest.approx(0.0)


def test_data_floor():
    """Two independent data samples: the unbiased energy distance averages to 0 within 5 s.e."""
    mean, std = metrics.data_floor(metrics.energy_distance, toy.moons.sample, KEY, 200, 300, repeats=6)
    assert np.isfinite(mean) and 0 < std < 0.1
    assert abs(mean) < 5 * std / math.sqrt(6)


def test_bad_input():
    x = jnp.ones((10, 2))
    with pytest.raises(ValueError, match="same dimension"):
        metrics.energy_distance(x, jnp.ones((10, 3)))
    with pytest.raises(ValueError, match=r"x must be a 2-D array of shape \(n, d\)"):
        metrics.mmd2(jnp.ones(10), x)
    with pytest.raises(ValueError, match="y contains NaN"):
        metrics.kid(x, x.at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="x contains NaN"):
        metrics.sliced_wasserstein(x.at[1, 1].set(jnp.inf), x, KEY)
    with pytest.raises(ValueError, match="at least 2 samples"):
        metrics.energy_distance(jnp.ones((1, 2)), x)
    with pytest.raises(ValueError, match="same number of samples"):
        metrics.wasserstein2(x, jnp.ones((5, 2)))
    with pytest.raises(ValueError, match=r"cov1 must have shape \(2, 2\)"):
        metrics.frechet_distance(jnp.zeros(2), jnp.eye(3), jnp.zeros(2), jnp.eye(2))
    with pytest.raises(ValueError, match="positive semi-definite"):
        metrics.frechet_distance(jnp.zeros(2), -jnp.eye(2), jnp.zeros(2), jnp.eye(2))
    with pytest.raises(ValueError, match="bandwidths"):
        metrics.mmd2(x, x, bandwidths=-1.0)
    with pytest.raises(ValueError, match="num_projections"):
        metrics.sliced_wasserstein(x, x, KEY, num_projections=0)
    with pytest.raises(ValueError, match="subset_size"):
        metrics.kid(x, x, num_subsets=2, subset_size=11, key=KEY)
    with pytest.raises(ValueError, match="PRNG key"):
        metrics.kid(x, x, num_subsets=2)
    with pytest.raises(ValueError, match="log_prob_values contains NaN"):
        metrics.nll(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="repeats"):
        metrics.data_floor(metrics.energy_distance, lambda k, n: jnp.ones((n, 2)), KEY, 5, 5, repeats=1)


# -- k-NN precision and recall --------------------------------------------------------
def _knn_precision_recall64(real, fake, k):
    """Independent float64 reference: full distance matrices (scipy) and sorted k-th neighbour distances."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    r_real = np.sort(scipy.spatial.distance.cdist(real, real), axis=1)[:, k]  # column 0 is the point itself
    r_fake = np.sort(scipy.spatial.distance.cdist(fake, fake), axis=1)[:, k]
    cross = scipy.spatial.distance.cdist(fake, real)  # (m, n)
    return np.mean(np.any(cross <= r_real[None, :], axis=1)), np.mean(np.any(cross.T <= r_fake[None, :], axis=1))


def test_knn_precision_recall_by_hand_in_1d():
    """real = {0, 1, 2, 3, 10}, k = 1: radii 1, 1, 1, 1, 7.  fake = {0.5, 2.4, 5.5}: radii 1.9, 1.9, 3.1.
    Every fake point lies in a real ball (5.5 in B(10, 7)): precision 1; 10 is 4.5 > 3.1 from 5.5: recall 4/5.
    Adding the outlier 20 (outside B(10, 7); its own radius 14.5 covers 10): precision 3/4, recall 1."""
    real = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])
    fake = np.array([[0.5], [2.4], [5.5]])
    assert metrics.knn_precision_recall(real, fake, k=1) == (1.0, pytest.approx(0.8))
    assert metrics.knn_precision_recall(real, np.vstack([fake, [[20.0]]]), k=1) == (0.75, 1.0)


def test_knn_precision_recall_identical_disjoint_and_subset():
    x = jax.random.normal(KEY, (300, 5))
    assert metrics.knn_precision_recall(x, x) == (1.0, 1.0)
    assert metrics.knn_precision_recall(x, x + 100.0) == (0.0, 0.0)
    assert metrics.knn_precision_recall(x, x[:60])[0] == 1.0


def test_knn_precision_recall_matches_float64_brute_force_for_any_chunking():
    k1, k2 = jax.random.split(KEY)
    real, fake = jax.random.normal(k1, (300, 4)), 1.0 + 0.7 * jax.random.normal(k2, (250, 4))
    for k in (1, 3, 5):
        expected = _knn_precision_recall64(real, fake, k)
        assert 0.2 < expected[0] < 0.95 and 0.2 < expected[1] < 0.95  # neither trivial
        for chunk_size in (7, 1000):
            got = metrics.knn_precision_recall(real, fake, k, chunk_size=chunk_size)
            np.testing.assert_allclose(got, expected, atol=1e-12)


def test_knn_recall_detects_mode_dropping():
    """Four unit Gaussians 20 apart, 250 real points each.  Samples from two of them: precision ≈ 1, and recall is
    at most 1/2 (no sample ball reaches a dropped mode) and close to it; samples from all four: both ≈ 1."""
    centres = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0], [20.0, 20.0]])
    keys = jax.random.split(KEY, 3)
    real = np.repeat(centres, 250, axis=0) + np.asarray(jax.random.normal(keys[0], (1000, 2)))
    dropped = np.repeat(centres[:2], 250, axis=0) + np.asarray(jax.random.normal(keys[1], (500, 2)))
    full = np.repeat(centres, 125, axis=0) + np.asarray(jax.random.normal(keys[2], (500, 2)))
    precision, recall = metrics.knn_precision_recall(real, dropped)
    assert precision > 0.93 and 0.45 < recall <= 0.5
    precision, recall = metrics.knn_precision_recall(real, full)
    assert precision > 0.93 and recall > 0.93


def test_knn_precision_recall_bad_input():
    x = jnp.ones((10, 2))
    with pytest.raises(ValueError, match="real and fake must have the same dimension"):
        metrics.knn_precision_recall(x, jnp.ones((10, 3)))
    with pytest.raises(ValueError, match="fake needs more than k = 3 points"):
        metrics.knn_precision_recall(x, x[:3])
    with pytest.raises(ValueError, match="k must be a positive integer"):
        metrics.knn_precision_recall(x, x, k=0)
    with pytest.raises(ValueError, match="real contains NaN"):
        metrics.knn_precision_recall(x.at[0, 0].set(jnp.nan), x)


def test_frechet_distance_of_close_near_singular_samples():
    """``x`` and ``x + δ`` share their covariance, so FD = ‖δ‖² = 1e-3.  Features of rank 20 in 192 dimensions
    (plus 1e-3 noise; tr Σ ≈ 3800) make Σ nearly singular: float32 eigendecompositions give −9.4 here, the
    float64 path 8.8e-4 (the ~1e-4 left is eigh's rounding on the 172 eigenvalues near 1e-6)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 20)) @ rng.normal(size=(20, 192)) + 1e-3 * rng.normal(size=(500, 192))
    fd = metrics.frechet_distance_samples(x, x + np.sqrt(1e-3 / 192))
    assert abs(fd - 1e-3) < 3e-4
