"""Score-matching losses against analytic oracles (MATH.md §4, §9.7).

Expectations are taken exactly where possible: Gaussian data with the 2d sigma points
``m ± sqrt(d) s_i e_i`` (exact for polynomials of degree ≤ 3, so for every quadratic
integrand of a Gaussian model) or a Gauss–Hermite product rule (smooth integrands).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import interpolants as I
from genjax.losses.interpolant import interpolant_loss
from genjax.losses.score import dsm, esm, esm_loss, geometric_sigmas, ncsn, ssm

M = jnp.array([0.5, -1.0, 2.0])
S = jnp.array([0.7, 1.3, 1.0])


def true_score(x, m=M, s=S):
    return -(x - m) / s**2


def sigma_points(m=M, s=S):
    """2d equally weighted points with the mean and covariance of N(m, diag(s²)): exact up to cubics."""
    d = m.shape[0]
    offsets = jnp.sqrt(d) * jnp.diag(s)
    return jnp.concatenate([m + offsets, m - offsets])


def gauss_hermite_2d(m, s, order=40):
    """Nodes and weights of the product Gauss–Hermite rule for E_{N(m, diag s²)} in 2-D."""
    z, w = np.polynomial.hermite_e.hermegauss(order)  # ∫ f(z) exp(−z²/2) dz
    w = w / w.sum()
    zz = np.stack(np.meshgrid(z, z, indexing="ij"), -1).reshape(-1, 2)
    ww = np.outer(w, w).reshape(-1)
    return jnp.asarray(m + s * zz, jnp.float32), jnp.asarray(ww, jnp.float32)


def nonlinear_score(theta):
    """A nonlinear score family with a non-symmetric Jacobian (any smooth model works)."""
    w, b, mu = theta

    def s(x):
        return -(x - mu) + jnp.tanh(w @ x + b)

    return s


def test_esm_trace_equals_jacobian_trace():
    """The JVP-basis trace equals tr(jacfwd) for a nonlinear model (float32 round-off only)."""
    s = nonlinear_score((jnp.array([[0.3, -1.2, 0.5], [2.0, 0.1, -0.7], [0.4, 0.9, 1.1]]), jnp.ones(3), M))
    x = jax.random.normal(jax.random.key(0), (7, 3))
    want = jax.vmap(lambda xi: jnp.trace(jax.jacfwd(s)(xi)) + 0.5 * jnp.sum(s(xi) ** 2))(x)
    np.testing.assert_allclose(esm(s, x), want, rtol=1e-5, atol=1e-5)
    # event shapes other than vectors are flattened consistently
    x2 = x[:, :2].reshape(7, 2, 1)
    sq = lambda y: -(y**3)  # noqa: E731   tr J = −3 Σ y², ½‖s‖² = ½ Σ y⁶
    np.testing.assert_allclose(esm(sq, x2), jnp.sum(-3 * x2**2 + 0.5 * x2**6, axis=(1, 2)), rtol=1e-5)


def test_esm_minus_half_fisher_is_theta_independent_gaussian_model():
    """E[ESM(θ)] = ½ E‖s_θ − ∇log p‖² − ½ E‖∇log p‖² (Hyvärinen 2005), model s_θ = −(x − μ)/v.

    Sigma points make both expectations exact, so the difference is −½ Σ 1/s_i² to float precision.
    """
    x = sigma_points()
    const = -0.5 * jnp.sum(1.0 / S**2)
    for mu, v in [(M, S**2), (jnp.zeros(3), jnp.ones(3)), (jnp.array([3.0, 1.0, -2.0]), jnp.array([0.2, 5.0, 1.0]))]:
        model = lambda y, mu=mu, v=v: -(y - mu) / v  # noqa: E731
        esm_value = jnp.mean(esm(model, x))
        half_fisher = 0.5 * jnp.mean(jnp.sum((jax.vmap(model)(x) - true_score(x)) ** 2, axis=1))
        np.testing.assert_allclose(esm_value - half_fisher, const, rtol=1e-5)
    # at the truth the Fisher divergence vanishes, and ESM is minimal among these θ
    assert abs(float(jnp.mean(esm(true_score, x))) - float(const)) < 1e-4


def test_esm_fisher_identity_nonlinear_model():
    """The same identity for a nonlinear model (integration by parts), Gauss–Hermite expectation.

    40×40 nodes integrate these smooth integrands to ~1e-6; float32 sums add ~1e-5 relative.
    """
    m, s = np.array([0.3, -0.8]), np.array([0.9, 1.4])
    x, w = gauss_hermite_2d(m, s)
    score_p = lambda y: -(y - m) / s**2  # noqa: E731
    const = -0.5 * float(np.sum(1.0 / s**2))
    for seed in range(3):
        k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
        theta = (jax.random.normal(k1, (2, 2)), jax.random.normal(k2, (2,)), jax.random.normal(k3, (2,)))
        model = nonlinear_score(theta)
        esm_value = jnp.sum(w * esm(model, x))
        half_fisher = 0.5 * jnp.sum(w * jnp.sum((jax.vmap(model)(x) - score_p(x)) ** 2, axis=1))
        np.testing.assert_allclose(esm_value - half_fisher, const, rtol=2e-4)


@pytest.mark.parametrize("projection", ["gaussian", "rademacher"])
@pytest.mark.parametrize("variance_reduction", [False, True])
def test_ssm_expectation_equals_esm(projection, variance_reduction):
    """E_v[SSM] = E_v[SSM-VR] = ESM for E[vvᵀ] = I (Song et al. 2019), per data point.

    Tolerance: 5 standard errors of the mean of 4000 one-projection estimates.
    """
    theta = (jnp.array([[0.3, -1.2, 0.5], [2.0, 0.1, -0.7], [0.4, 0.9, 1.1]]), jnp.array([0.1, -0.2, 0.3]), M)
    model = nonlinear_score(theta)
    x = jax.random.normal(jax.random.key(1), (4, 3)) + M
    keys = jax.random.split(jax.random.key(2), 4000)
    draws = jax.jit(jax.vmap(lambda k: ssm(model, x, k, projection=projection, variance_reduction=variance_reduction)))(keys)
    mean, se = jnp.mean(draws, 0), jnp.std(draws, 0) / jnp.sqrt(draws.shape[0])
    want = esm(model, x)
    assert bool(jnp.all(jnp.abs(mean - want) < 5 * se + 1e-5)), (mean, want, se)
    # n_projections averages inside the loss: same expectation, smaller spread
    many = jax.jit(jax.vmap(lambda k: ssm(model, x, k, n_projections=16, projection=projection,
                                  variance_reduction=variance_reduction)))(keys[:500])
    assert bool(jnp.all(jnp.abs(jnp.mean(many, 0) - want) < 5 * jnp.std(many, 0) / jnp.sqrt(500.0) + 1e-5))
    assert bool(jnp.all(jnp.std(many, 0) <= jnp.std(draws, 0) / 2.0 + 1e-6))  # ≈ 1/4 of the spread


def test_ssm_vr_has_smaller_variance_than_ssm():
    """SSM-VR removes the variance of ½(vᵀs)² (Song et al. 2019, §3.2); same keys, same curvature term."""
    model = nonlinear_score((jnp.eye(3), jnp.zeros(3), M))
    x = jax.random.normal(jax.random.key(3), (4, 3)) * 2.0
    keys = jax.random.split(jax.random.key(4), 2000)
    plain = jax.vmap(lambda k: ssm(model, x, k))(keys)
    vr = jax.vmap(lambda k: ssm(model, x, k, variance_reduction=True))(keys)
    assert bool(jnp.all(jnp.std(vr, 0) < jnp.std(plain, 0)))


def test_dsm_minimiser_is_the_smoothed_score():
    """For x ~ N(m, diag s²) the DSM minimiser at noise σ is −(x − m)/(s² + σ²) (Vincent 2011).

    The model ``s(x) = −a ⊙ x + c`` makes the empirical DSM loss quadratic in θ = (a, c), so one
    Newton step from 0 is its exact minimiser (a least-squares regression of −ε/σ on x + σε).
    Tolerance: 5 regression standard errors, SE(a_i) = sqrt(s_i² / (σ² (s_i² + σ²)² n)).
    """
    m, s, sigma, n = jnp.array([1.0, -2.0]), jnp.array([0.5, 1.5]), 0.6, 20_000
    x = m + s * jax.random.normal(jax.random.key(5), (n, 2))
    key = jax.random.key(6)

    def loss(theta):
        a, c = theta[:2], theta[2:]
        return jnp.mean(dsm(lambda y: -a * y + c, x, key, sigma))

    theta0 = jnp.zeros(4)
    theta = theta0 - jnp.linalg.solve(jax.hessian(loss)(theta0), jax.grad(loss)(theta0))
    a, c = theta[:2], theta[2:]
    want_a = 1.0 / (s**2 + sigma**2)
    se_a = jnp.sqrt(s**2 / (sigma**2 * (s**2 + sigma**2) ** 2 * n))
    assert bool(jnp.all(jnp.abs(a - want_a) < 5 * se_a)), (a, want_a, se_a)
    # c/a = mean(x) − mean(ε) s²/σ: SE = s sqrt((1 + s²/σ²)/n)
    se_m = s * jnp.sqrt((1 + s**2 / sigma**2) / n)
    assert bool(jnp.all(jnp.abs(c / a - m) < 5 * se_m)), (c / a, m, se_m)
    assert float(jnp.linalg.norm(jax.grad(loss)(theta))) < 1e-3  # really the minimiser


def _dsm_linear(k, s2, sigma, d):
    """Analytic DSM for data N(·, s2 I) in d dims and the model s(x) = −k (x − m): ½ d [k² s2 + (1/σ − kσ)²]."""
    return 0.5 * d * (k**2 * s2 + (1.0 / sigma - k * sigma) ** 2)


def test_ncsn_equals_level_average_of_sigma2_dsm():
    """NCSN estimator mean = (1/L) Σ σ_i² DSM(σ_i) (Song & Ermon 2019); the model is deliberately wrong.

    Tolerance: 5 standard errors of the mean over the batch.
    """
    s2, d, n = 1.5, 2, 40_000
    sigmas = geometric_sigmas(5.0, 0.1, 6)
    np.testing.assert_allclose(sigmas, 5.0 * (0.1 / 5.0) ** (np.arange(6) / 5), rtol=1e-5)
    kappa = 0.8
    model = lambda sigma, x: -kappa * (x - 1.0) / (s2 + sigma**2)  # noqa: E731
    x = 1.0 + jnp.sqrt(s2) * jax.random.normal(jax.random.key(7), (n, d))
    losses = ncsn(model, x, jax.random.key(8), sigmas)
    want = np.mean([float(sg) ** 2 * _dsm_linear(kappa / (s2 + float(sg) ** 2), s2, float(sg), d) for sg in sigmas])
    assert abs(float(jnp.mean(losses)) - want) < 5 * float(jnp.std(losses)) / np.sqrt(n)


def test_ncsn_continuous_limit_is_half_the_ve_interpolant_loss():
    """With σ log-uniform (ve, t ~ U(0,1)) E[σ² ‖s + ε/σ‖²] = 2 ∫₀¹ σ(t)² DSM(σ(t)) dt.

    Both the foundation's ``interpolant_loss(ve, score, sigma2)`` and twice the NCSN loss with
    many geometric levels must match the analytic integral (5 standard errors of the mean).
    """
    s2, d, n = 1.0, 2, 40_000
    ve = I.ve(sigma_min=0.04, sigma_max=4.0)
    model_sigma = lambda sigma, x: -0.5 * x / (s2 + sigma**2)  # noqa: E731
    x = jnp.sqrt(s2) * jax.random.normal(jax.random.key(9), (n, d))
    ts = np.linspace(0.0, 1.0, 20001)
    sig = 0.04 * 100.0**ts
    integrand = sig**2 * _dsm_linear(0.5 / (s2 + sig**2), s2, sig, d)
    want = 2.0 * np.trapezoid(integrand, ts)
    ip_losses = interpolant_loss(lambda t, y: model_sigma(ve.sigma(t), y), ve, x, jax.random.key(10),
                                 prediction="score", weighting="sigma2")
    ncsn_losses = 2.0 * ncsn(model_sigma, x, jax.random.key(11), geometric_sigmas(4.0, 0.04, 2000))
    for losses in (ip_losses, ncsn_losses):
        assert abs(float(jnp.mean(losses)) - want) < 5 * float(jnp.std(losses)) / np.sqrt(n), (jnp.mean(losses), want)


def test_losses_are_differentiable_and_jittable():
    """Gradients flow through every loss (params closed over), and the losses run under jit."""
    x = jax.random.normal(jax.random.key(12), (8, 3))

    def total(w):
        s = lambda y: jnp.tanh(w @ y)  # noqa: E731
        k = jax.random.key(0)
        return (jnp.mean(esm(s, x)) + jnp.mean(dsm(s, x, k, 0.3)) + jnp.mean(ssm(s, x, k, n_projections=2))
                + jnp.mean(ncsn(lambda sg, y: s(y) / sg, x, k, jnp.array([1.0, 0.5]))))

    g = jax.jit(jax.grad(total))(jnp.eye(3))
    assert g.shape == (3, 3) and bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).sum()) > 0
    np.testing.assert_allclose(jax.jit(lambda y: esm_loss(jnp.sin, y))(x[0]),
                               jnp.sum(jnp.cos(x[0])) + 0.5 * jnp.sum(jnp.sin(x[0]) ** 2), rtol=1e-6)


def test_bad_input_raises_clear_errors():
    s = lambda y: -y  # noqa: E731
    k = jax.random.key(0)
    with pytest.raises(ValueError, match="batch of shape"):
        esm(s, jnp.ones(3))
    with pytest.raises(ValueError, match="NaN or inf"):
        dsm(s, jnp.array([[1.0, jnp.nan]]), k, 0.1)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        dsm(s, jnp.ones((2, 2)), k, 0.0)
    with pytest.raises(ValueError, match="projection="):
        ssm(s, jnp.ones((2, 2)), k, projection="uniform")
    with pytest.raises(ValueError, match="n_projections"):
        ssm(s, jnp.ones((2, 2)), k, n_projections=0)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        geometric_sigmas(0.1, 1.0, 10)
    with pytest.raises(ValueError, match="num_levels"):
        geometric_sigmas(1.0, 0.1, 1)
    with pytest.raises(ValueError, match="1-D array"):
        ncsn(lambda sg, y: -y, jnp.ones((2, 2)), k, jnp.ones((2, 2)))
