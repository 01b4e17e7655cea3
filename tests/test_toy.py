"""Toy data sets: FFJORD conventions, exact densities and entropies (MATH.md §8)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from genjax.data import toy
from genjax.targets import GaussianMixture, gaussian

KEY = jax.random.key(0)
N = 20000


@pytest.fixture(scope="module")
def samples():
    """One compiled draw of N points per data set, shared by the tests."""
    return {name: np.asarray(ds.sample(KEY, N)) for name, ds in toy.DATASETS.items()}


def batched(log_prob):
    """A per-point ``log_prob`` over a batch, compiled (an eager ``vmap`` compiles and dispatches op by op)."""
    return jax.jit(jax.vmap(log_prob))


def midpoint_grid(lim, h):
    g = np.arange(-lim + h / 2, lim, h)
    xx, yy = np.meshgrid(g, g)
    return jnp.asarray(np.stack([xx.ravel(), yy.ravel()], -1), jnp.float32)


def ffjord_reference(name, n, rng):
    """FFJORD's ``lib/toy_data.py`` (numpy / scikit-learn), with moons standardised by our constants."""
    if name in ("moons", "circles", "swissroll"):
        datasets = pytest.importorskip("sklearn.datasets")
    if name == "moons":
        x = datasets.make_moons(n_samples=n, noise=0.1, random_state=rng)[0]
        return (x - np.array(toy.MOONS_MEAN)) / np.array(toy.MOONS_STD)
    if name == "circles":
        return 3 * datasets.make_circles(n_samples=n, factor=0.5, noise=0.08, random_state=rng)[0]
    if name == "swissroll":
        return datasets.make_swiss_roll(n_samples=n, noise=1.0, random_state=rng)[0][:, [0, 2]] / 5
    if name == "eight_gaussians":
        r = 1 / np.sqrt(2)
        centres = 4 * np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (r, r), (r, -r), (-r, r), (-r, -r)])
        return (rng.randn(n, 2) * 0.5 + centres[rng.randint(8, size=n)]) / 1.414
    if name == "pinwheel":
        rads = np.linspace(0, 2 * np.pi, 5, endpoint=False)
        f = rng.randn(n, 2) * np.array([0.3, 0.1])
        f[:, 0] += 1.0
        a = rads[np.repeat(np.arange(5), n // 5)] + 0.25 * np.exp(f[:, 0])
        rot = np.reshape(np.stack([np.cos(a), -np.sin(a), np.sin(a), np.cos(a)]).T, (-1, 2, 2))
        return 2 * rng.permutation(np.einsum("ti,tij->tj", f, rot))
    if name == "two_spirals":
        m = np.sqrt(rng.rand(n // 2, 1)) * 540 * (2 * np.pi) / 360
        d1x = -np.cos(m) * m + rng.rand(n // 2, 1) * 0.5
        d1y = np.sin(m) * m + rng.rand(n // 2, 1) * 0.5
        x = np.vstack((np.hstack((d1x, d1y)), np.hstack((-d1x, -d1y)))) / 3
        return x + rng.randn(*x.shape) * 0.1
    if name == "checkerboard":
        x1 = rng.rand(n) * 4 - 2
        x2 = rng.rand(n) - rng.randint(0, 2, n) * 2 + np.floor(x1) % 2
        return np.stack([x1, x2], 1) * 2
    raise AssertionError(name)


def chi2_two_sample_pvalue(a, b, lim=5.0, bins=20):
    """χ² homogeneity test of two equal-size samples on a 20×20 grid of [−5, 5]² plus an 'outside' cell;
    cells with fewer than 10 points in total are pooled."""
    edges = np.linspace(-lim, lim, bins + 1)
    counts = []
    for s in (a, b):
        h = np.histogram2d(s[:, 0], s[:, 1], [edges, edges])[0].ravel()
        counts.append(np.append(h, len(s) - h.sum()))
    ha, hb = counts
    small = ha + hb < 10
    ha, hb = np.append(ha[~small], ha[small].sum()), np.append(hb[~small], hb[small].sum())
    keep = ha + hb > 0
    stat = np.sum((ha[keep] - hb[keep]) ** 2 / (ha[keep] + hb[keep]))
    return scipy.stats.chi2.sf(stat, keep.sum() - 1)


@pytest.mark.parametrize("name", sorted(toy.DATASETS))
def test_shapes_dtype_determinism(name, samples):
    ds = toy.get(name)
    a = ds.sample(KEY, N)
    assert a.shape == (N, 2) and a.dtype == jnp.float32 and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, samples[name])
    assert not np.array_equal(a, ds.sample(jax.random.key(1), N))


@pytest.mark.parametrize("name", sorted(toy.DATASETS))
def test_matches_ffjord_reference(name, samples):
    """Same law as FFJORD's generator: two-sample χ² p-value > 1e−4 at n = 20000.

    Sensitivity (measured): a 3% rescaling or, for the chiral sets, a mirror image gives p < 1e−40.
    """
    ref = ffjord_reference(name, N, np.random.RandomState(0))
    assert chi2_two_sample_pvalue(samples[name], ref) > 1e-4


def test_eight_gaussians_moments(samples):
    """Centres r(cos kπ/4, sin kπ/4), r = 4/1.414, std s = 0.5/1.414: mean 0, covariance (r²/2 + s²) I.

    Tolerance: 5 Monte-Carlo s.e. of each mean and covariance entry, estimated from the sample.
    """
    x = samples["eight_gaussians"].astype(np.float64)
    var = (4 / 1.414) ** 2 / 2 + (0.5 / 1.414) ** 2
    assert np.all(np.abs(x.mean(0)) < 5 * x.std(0) / math.sqrt(N))
    products = x[:, :, None] * x[:, None, :]
    se = products.reshape(N, 4).std(0).reshape(2, 2) / math.sqrt(N)
    assert np.all(np.abs(products.mean(0) - var * np.eye(2)) < 5 * se)


def test_moons_standardised(samples):
    """Mean 0 and std 1 per coordinate within 5 Monte-Carlo s.e. (s.e. of the variance from the 4th moment)."""
    x = samples["moons"].astype(np.float64)
    assert np.all(np.abs(x.mean(0)) < 5 * x.std(0) / math.sqrt(N))
    centred_sq = (x - x.mean(0)) ** 2
    assert np.all(np.abs(centred_sq.mean(0) - 1.0) < 5 * centred_sq.std(0) / math.sqrt(N))


def test_checkerboard_support_and_uniform_occupancy(samples):
    """Every sample has density 1/32; the unit cells hit are exactly 32 (area 32), and equally often.

    χ² over the 32 cells (31 d.o.f.) must stay below its 1 − 1e−4 quantile.
    """
    x = samples["checkerboard"]
    lp = np.asarray(batched(toy.checkerboard.log_prob)(jnp.asarray(x)))
    np.testing.assert_array_equal(lp, np.float32(-math.log(32)))
    cells = (np.floor(x[:, 0]) + 4) * 8 + (np.floor(x[:, 1]) + 4)
    counts = np.bincount(cells.astype(int), minlength=64)
    occupied = counts[counts > 0]
    assert occupied.size == 32
    chi2 = np.sum((occupied - N / 32) ** 2 / (N / 32))
    assert chi2 < scipy.stats.chi2.ppf(1 - 1e-4, 31)
    assert toy.checkerboard.entropy == math.log(32)
    # FFJORD: x1 ∈ [0, 2) pairs with x2 ∈ [0, 2) ∪ [−4, −2)
    log_prob = jax.jit(toy.checkerboard.log_prob)
    lp = [float(log_prob(jnp.array(p))) for p in ([1.0, 1.0], [1.0, -3.0], [1.0, -1.0], [1.0, 5.0])]
    np.testing.assert_allclose(lp, [-math.log(32)] * 2 + [-np.inf] * 2, rtol=1e-6)


def test_densities_integrate_to_one_and_entropies():
    """Midpoint rule: exact for the checkerboard (cell edges on the square edges); spectrally accurate for
    the smooth, 9σ-contained eight Gaussians, so only float32 rounding (~1e−6) remains.  The quadrature
    entropy −Σ p log p h² checks the stored constant; a Monte-Carlo estimate must agree within 5 s.e."""
    h = 0.05
    p = np.exp(np.asarray(batched(toy.checkerboard.log_prob)(midpoint_grid(5.0, h)), np.float64))
    assert p.sum() * h**2 == pytest.approx(1.0, abs=1e-5)
    h = 0.02
    lp = np.asarray(batched(toy.eight_gaussians.log_prob)(midpoint_grid(6.0, h)), np.float64)
    p = np.exp(lp)
    assert p.sum() * h**2 == pytest.approx(1.0, abs=1e-5)
    assert -(p * lp).sum() * h**2 == pytest.approx(toy.eight_gaussians.entropy, abs=1e-5)


def test_eight_gaussians_entropy_monte_carlo(samples):
    lp = np.asarray(batched(toy.eight_gaussians.log_prob)(jnp.asarray(samples["eight_gaussians"])), np.float64)
    assert abs(-lp.mean() - toy.eight_gaussians.entropy) < 5 * lp.std() / math.sqrt(N)


def test_gaussian_mixture_builder():
    # one component: exact entropy ½ log det(2πe Σ) and the scipy log-density
    ds = toy.gaussian_mixture(gaussian([1.0, 2.0], [0.5, 2.0]), "g")
    assert ds.name == "g" and ds.dim == 2
    assert ds.entropy == pytest.approx(0.5 * 2 * (1 + math.log(2 * math.pi)) + math.log(0.5 * 2.0), rel=1e-6)
    ref = scipy.stats.multivariate_normal([1.0, 2.0], np.diag([0.25, 4.0])).logpdf([0.3, -1.0])
    assert float(jax.jit(ds.log_prob)(jnp.array([0.3, -1.0]))) == pytest.approx(ref, rel=1e-5)
    # two components 20σ apart in 3-D: entropy log 2 + ½·3·log(2πe); Monte Carlo with log p of
    # variance d/2 = 1.5, so 5 s.e. = 5 sqrt(1.5/n)
    mix = GaussianMixture.diagonal(jnp.ones(2), jnp.array([[-10.0, 0, 0], [10.0, 0, 0]]), 1.0)
    n = 20000
    ds = toy.gaussian_mixture(mix, "two", key=jax.random.key(5), num_entropy_samples=n)
    assert ds.dim == 3 and ds.sample(KEY, 7).shape == (7, 3)
    assert ds.entropy == pytest.approx(math.log(2) + 1.5 * math.log(2 * math.pi * math.e), abs=5 * math.sqrt(1.5 / n))


def test_bad_input():
    with pytest.raises(ValueError, match=r"unknown toy data set 'mnist'.*checkerboard.*two_spirals"):
        toy.get("mnist")
    for n in (0, 2.5, "10"):
        with pytest.raises(ValueError, match="n must be a positive integer"):
            toy.moons.sample(KEY, n)
    with pytest.raises(ValueError, match="PRNG key"):
        toy.moons.sample(3, 10)
    with pytest.raises(ValueError, match=r"one point of shape \(2,\)"):
        toy.eight_gaussians.log_prob(jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="GaussianMixture"):
        toy.gaussian_mixture("eight")
    assert toy.two_spirals.log_prob is None and toy.two_spirals.entropy is None


def test_swissroll_density_and_entropy():
    """The roll's log-density (a 1-D integral over its parameter, midpoint rule) against scipy's adaptive
    quadrature at points on and off the roll; it integrates to 1 on a 2-D grid and its quadrature entropy
    is the stored constant; a Monte-Carlo estimate on samples agrees within 5 s.e."""
    from scipy import integrate

    def reference(x):
        def f(t):
            d2 = (x[0] - t * math.cos(t) / 5) ** 2 + (x[1] - t * math.sin(t) / 5) ** 2
            return math.exp(-d2 / 0.08) / (2 * math.pi * 0.04)

        value, _ = integrate.quad(f, 1.5 * np.pi, 4.5 * np.pi, limit=400, epsabs=0, epsrel=1e-10)
        return np.log(value / (3 * np.pi))

    log_prob = jax.jit(toy.swissroll.log_prob)
    for x in ([0.0, 0.0], [1.9, 0.1], [-2.0, -1.5], [3.5, 3.5]):
        assert float(log_prob(jnp.array(x))) == pytest.approx(reference(np.array(x)), abs=2e-4)
    h = 0.05  # a quarter of the noise scale: the midpoint rule's error on these Gaussian bumps is ~exp(−2π²·16)
    lp = np.asarray(batched(toy.swissroll.log_prob)(midpoint_grid(4.5, h)), np.float64)
    p = np.exp(lp)
    assert p.sum() * h**2 == pytest.approx(1.0, abs=1e-4)
    assert -(p * lp).sum() * h**2 == pytest.approx(toy.swissroll.entropy, abs=1e-3)
    x = toy.swissroll.sample(jax.random.key(3), 5000)
    lx = np.asarray(batched(toy.swissroll.log_prob)(x), np.float64)
    assert abs(-lx.mean() - toy.swissroll.entropy) < 5 * lx.std() / math.sqrt(lx.size)


def test_moons_density_and_entropy(samples):
    """The standardised moons' log-density (Gauss–Legendre over each arc's θ) against scipy's adaptive quadrature
    of ``(1/2π) Σ_arc ∫_0^π N(x; c(θ), 0.1² I) dθ`` plus the log-Jacobian of the standardisation, at points on an
    arc, next to an arc's end and far off; it integrates to 1 on a 2-D grid (midpoint rule with h = 0.04, a third
    of the smallest noise scale 0.1/MOONS_STD_x = 0.115: error ~exp(−2π²·8), so float32 rounding is all that
    remains); the quadrature entropy is the stored constant; the Monte-Carlo entropy on the 20 000 fixture draws
    agrees within 4 s.e."""
    from scipy import integrate

    mean, std = np.array(toy.MOONS_MEAN), np.array(toy.MOONS_STD)

    def reference(y):
        x = mean + std * y

        def f(t, arc):
            c = (math.cos(t), math.sin(t)) if arc == 0 else (1 - math.cos(t), 0.5 - math.sin(t))
            return math.exp(-((x[0] - c[0]) ** 2 + (x[1] - c[1]) ** 2) / 0.02) / (2 * math.pi * 0.01)

        value = sum(integrate.quad(f, 0, math.pi, args=(arc,), limit=400, epsrel=1e-10)[0] for arc in (0, 1))
        return math.log(value / (2 * math.pi)) + math.log(std[0] * std[1])

    log_prob = jax.jit(toy.moons.log_prob)
    for y in ([0.0, 0.0], [-0.57, -0.5], [-1.7, -0.9], [2.3, 0.9], [2.0, -1.0]):  # [−1.7, −0.9]: the upper arc's end
        assert float(log_prob(jnp.array(y))) == pytest.approx(reference(np.array(y)), abs=1e-4)
    h = 0.04
    lp = np.asarray(batched(toy.moons.log_prob)(midpoint_grid(4.5, h)), np.float64)
    p = np.exp(lp)
    assert p.sum() * h**2 == pytest.approx(1.0, abs=1e-4)
    assert -(p * lp).sum() * h**2 == pytest.approx(toy.moons.entropy, abs=1e-4)
    lx = np.asarray(batched(toy.moons.log_prob)(jnp.asarray(samples["moons"])), np.float64)
    assert abs(-lx.mean() - toy.moons.entropy) < 4 * lx.std() / math.sqrt(lx.size)
