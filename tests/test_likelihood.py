"""Likelihoods against analytic oracles (MATH.md §6, §9.1, §9.2, §9.5).

* Gaussian data ``N(m, C)`` (full covariance, so the Jacobian of the field is not diagonal):
  every ``p_t = N(α m, α² C + σ² I)`` and the exact velocity is affine (written out below from
  MATH.md §9.1), so the PF-ODE log-likelihood must equal the analytic log-density.
* A linear field ``v = A x``: ``z(t1) = expm(A Δt) x`` and ``∫ ∇·v dt = tr(A) Δt``.
"""

import itertools
import math

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import expm

from genjax import interpolants as I
from genjax import targets
from genjax.likelihood import bits_per_dim, cnf_log_prob, log_likelihood

M = np.array([1.0, -2.0])
C = np.array([[1.0, 0.6], [0.6, 0.5]])
Z = 5.0  # Monte-Carlo tolerance in standard errors


def _velocity(ip):
    """v*(t, x) = α̇ m + (αα̇ C + σσ̇ I)(α² C + σ² I)⁻¹ (x − α m) for data N(m, C) (MATH.md §9.1)."""
    m, c, eye = (jnp.asarray(a, jnp.float32) for a in (M, C, np.eye(2)))

    def fn(t, x):
        a, s, da, ds = ip.scales(t)
        return da * m + (a * da * c + s * ds * eye) @ jnp.linalg.solve(a**2 * c + s**2 * eye, x - a * m)

    return fn


FIELDS = {name: _velocity(getattr(I, name)) for name in ("linear", "vp", "subvp", "cosine", "ve", "ddpm")}


def scales64(ip, t):
    return tuple(np.asarray(v, np.float64) for v in ip.scales(jnp.asarray(t, jnp.float32)))


def gauss_logpdf(x, mean, cov):
    diff = x - mean
    _, logdet = np.linalg.slogdet(cov)
    quad = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
    return -0.5 * (quad + logdet + len(mean) * math.log(2 * math.pi))


def marginal(ip, t):
    a, s, _, _ = scales64(ip, t)
    return a * M, a**2 * C + s**2 * np.eye(2)


def exact_flow(ip, x, t_from, t_to):
    """PF-ODE map of Gaussian data: all Σ_t = α²C + σ²I commute, so
    x ↦ μ_to + Σ_to^{1/2} Σ_from^{-1/2} (x − μ_from)."""
    (m0, c0), (m1, c1) = marginal(ip, t_from), marginal(ip, t_to)
    w, u = np.linalg.eigh(C)
    a0, s0, _, _ = scales64(ip, t_from)
    a1, s1, _, _ = scales64(ip, t_to)
    gain = u @ np.diag(np.sqrt((a1**2 * w + s1**2) / (a0**2 * w + s0**2))) @ u.T
    return m1 + (x - m0) @ gain.T


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(0)
    x = M + rng.normal(size=(32, 2)) @ np.linalg.cholesky(C).T
    return np.concatenate([x, [[4.0, 1.0], [-3.0, -4.0]]])  # plus two points far in the tails


def test_exact_linear(points):
    """α(1) = 0: the prior N(0, 1) is exact, so log_likelihood = log N(x; m, C) (float32 suffices: ~1e-5 nats)."""
    lp, stats = log_likelihood(FIELDS["linear"], I.linear, points, prediction="velocity", rtol=1e-6, atol=1e-6, return_stats=True)
    np.testing.assert_allclose(np.asarray(lp), gauss_logpdf(points, M, C), atol=1e-3)
    assert 20 < int(stats["nfe"]) < 500


@pytest.mark.parametrize("name", ["vp", "subvp", "cosine", "ve"])
def test_exact_with_the_prior_correction(points, name):
    """The prior N(0, σ(1)²) differs from p_1 when α(1) > 0 (vp: 0.0066; ve: α ≡ 1); the oracle adds that
    known difference: log_likelihood = log p_{t_min}(x) + log N(z; 0, σ(1)² I) − log p_1(z), z the exact
    flow of x to t = 1 (MATH.md §9.1)."""
    ip = getattr(I, name)
    lp = np.asarray(log_likelihood(FIELDS[name], ip, points, prediction="velocity", rtol=1e-6, atol=1e-6))
    z = exact_flow(ip, points, ip.t_min, ip.t_max)
    _, s1, _, _ = scales64(ip, ip.t_max)
    oracle = (gauss_logpdf(points, *marginal(ip, ip.t_min)) + gauss_logpdf(z, np.zeros(2), s1**2 * np.eye(2))
              - gauss_logpdf(z, *marginal(ip, ip.t_max)))
    np.testing.assert_allclose(lp, oracle, atol=1e-3)
    if name == "vp":
        assert np.max(np.abs(oracle - gauss_logpdf(points, M, C))) > 5e-3  # the correction matters at 1e-3


def _prior_corrected_oracle(ip, x):
    z = exact_flow(ip, x, ip.t_min, ip.t_max)
    _, s1, _, _ = scales64(ip, ip.t_max)
    return (gauss_logpdf(x, *marginal(ip, ip.t_min)) + gauss_logpdf(z, np.zeros(2), s1**2 * np.eye(2))
            - gauss_logpdf(z, *marginal(ip, ip.t_max)))


def test_fixed_step_heun_on_the_ddpm_grid_is_second_order(points):
    """Heun steps landing on the ddpm knots (999/N grid points per step from t_min = 0.001): the error falls
    ~(111/27)² ≈ 17× from 27 to 111 steps; a one-sided slope at the knots leaves an O(1/T) error floor."""
    ip = I.ddpm
    oracle = _prior_corrected_oracle(ip, points)
    errors = [np.max(np.abs(np.asarray(log_likelihood(FIELDS["ddpm"], ip, points, prediction="velocity",
                                                      solver="heun", num_steps=n)) - oracle)) for n in (27, 111)]
    assert errors[1] < errors[0] / 8, errors


def test_fixed_step_nfe_and_error(points):
    lp, stats = log_likelihood(FIELDS["linear"], I.linear, points, prediction="velocity", solver="heun", num_steps=50, return_stats=True)
    assert int(stats["nfe"]) == 100  # Heun: 2 evaluations per step
    # Heun is second order: 50 steps on this smooth flow are accurate to ~1e-4 nats (measured), bound 1e-2.
    np.testing.assert_allclose(np.asarray(lp), gauss_logpdf(points, M, C), atol=1e-2)


def test_mixture_linear():
    """Oracle 2: the exact mixture field's PF-ODE likelihood is the mixture log-density (linear: exact prior)."""
    mix = targets.GaussianMixture.diagonal([0.3, 0.7], [[-2.0, 0.0], [2.0, 1.0]], [[0.5, 0.8], [0.7, 0.4]])
    x = np.asarray(mix.sample(jax.random.key(0), 12))
    lp = log_likelihood(mix.field(I.linear, "velocity"), I.linear, x, prediction="velocity", rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(lp), np.asarray(jax.vmap(mix.log_prob)(x)), atol=2e-3)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_unbiased(points, probe):
    """One point repeated n times: each row has its own probe; their mean → the exact log-density."""
    n = 2000
    x = np.repeat(points[:1], n, axis=0)
    lp = np.asarray(log_likelihood(FIELDS["linear"], I.linear, x, jax.random.key(1), prediction="velocity", divergence="hutchinson",
                                   probe=probe, rtol=1e-6, atol=1e-6))
    exact = gauss_logpdf(points[:1], M, C)[0]
    assert lp.std() > 1e-3  # the estimate is random (the Jacobian is not diagonal)
    assert abs(lp.mean() - exact) < Z * lp.std() / math.sqrt(n)


# ---------------------------------------------------------------------------------
# Oracle 5: linear field v = A x with a non-symmetric A.
# ---------------------------------------------------------------------------------

A = np.array([[0.3, 1.2, -0.4], [-0.5, -0.2, 0.7], [0.9, 0.1, -0.6]])
T0, T1 = 0.1, 0.8
DT = T1 - T0


def _linear_field(t, z):
    return jnp.asarray(A, jnp.float32) @ z


def test_cnf_linear_exact():
    x = np.random.default_rng(2).normal(size=(8, 3))
    logdet = cnf_log_prob(_linear_field, x, t0=T0, t1=T1, base_log_prob=lambda z: 0.0 * jnp.sum(z),
                          rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(logdet), np.trace(A) * DT, rtol=1e-5, atol=1e-6)
    full = cnf_log_prob(_linear_field, x, t0=T0, t1=T1, rtol=1e-6, atol=1e-6)
    z = x @ expm(A * DT).T
    oracle = gauss_logpdf(z, np.zeros(3), np.eye(3)) + np.trace(A) * DT
    np.testing.assert_allclose(np.asarray(full), oracle, rtol=1e-5, atol=1e-4)


def test_cnf_hutchinson_rademacher_once_per_trajectory():
    """Each row is Δt ξᵀAξ for ONE Rademacher ξ (a probe redrawn per step would average these values);
    the mean over rows is tr(A)Δt within 5 analytic standard errors
    (Var ξᵀAξ = 2 Σ_{i≠j} B_ij², B = (A+Aᵀ)/2)."""
    n = 4000
    x = np.zeros((n, 3))  # the field's Jacobian is A everywhere; the base term is then constant
    est = np.asarray(cnf_log_prob(_linear_field, x, jax.random.key(3), t0=T0, t1=T1, divergence="hutchinson",
                                  base_log_prob=lambda z: 0.0 * jnp.sum(z), rtol=1e-6, atol=1e-6))
    allowed = np.array([DT * np.array(xi) @ A @ np.array(xi) for xi in itertools.product([-1, 1], repeat=3)])
    assert np.max(np.min(np.abs(est[:, None] - allowed[None, :]), axis=1)) < 1e-5
    b = 0.5 * (A + A.T)
    se = DT * math.sqrt(2 * (np.sum(b**2) - np.sum(np.diag(b) ** 2)) / n)
    assert abs(est.mean() - np.trace(A) * DT) < Z * se


def test_cnf_hutchinson_gaussian_unbiased():
    n = 4000
    est = np.asarray(cnf_log_prob(_linear_field, np.zeros((n, 3)), jax.random.key(4), t0=T0, t1=T1,
                                  divergence="hutchinson", probe="gaussian", base_log_prob=lambda z: 0.0 * jnp.sum(z),
                                  rtol=1e-6, atol=1e-6))
    b = 0.5 * (A + A.T)
    se = DT * math.sqrt(2 * np.sum(b**2) / n)  # Var ξᵀBξ = 2 tr(B²) for Gaussian ξ
    assert abs(est.mean() - np.trace(A) * DT) < Z * se


@pytest.mark.parametrize("adjoint,solver", [(None, "heun"), (diffrax.BacksolveAdjoint(), "midpoint")],
                         ids=["checkpoint-heun", "backsolve-midpoint"])
def test_cnf_gradient_wrt_closed_over_parameter(adjoint, solver):
    """v = a z: log p(x) = log N(e^{aΔt} x; 0, I) + d a Δt, so d/da = −|x|² Δt e^{2aΔt} + d Δt.

    The field's divergence does not depend on z, the case where an unbatched log-det carry made
    diffrax count the cotangent n times on fixed-step solves (regression test: n = 4, midpoint).
    """
    x = np.random.default_rng(5).normal(size=(4, 3))
    a0 = 0.3

    def total(a):
        return jnp.sum(cnf_log_prob(lambda t, z: a * z, x, t0=T0, t1=T1, rtol=1e-6, atol=1e-6, solver=solver,
                                    num_steps=20, adjoint=adjoint))

    grad = float(jax.grad(total)(jnp.float32(a0)))
    expected = float(np.sum(-np.sum(x**2, 1) * DT * np.exp(2 * a0 * DT) + 3 * DT))
    # Heun and midpoint with 20 steps: O(h²) error, measured ≤ 2e-4 relative.
    assert abs(grad - expected) < 1e-3 * abs(expected)


# ---------------------------------------------------------------------------------
# Bits per dimension and bad input.
# ---------------------------------------------------------------------------------


def test_bits_per_dim():
    d = 3072
    # Uniform density on [−1, 1]^D (log p = −D log 2) is exactly 8 bits/dim for 8-bit data.
    np.testing.assert_allclose(float(bits_per_dim(-d * math.log(2.0), d)), 8.0, rtol=1e-6)
    # One bit: two bins over [0, 1] and log p = 0.
    np.testing.assert_allclose(float(bits_per_dim(0.0, 5, num_bins=2, data_range=1.0)), 1.0, rtol=1e-6)
    # Vectorised, and lower log p → more bits.
    out = np.asarray(bits_per_dim(jnp.array([-100.0, -200.0]), 10))
    assert out.shape == (2,) and out[1] > out[0]


BAD_CALLS = [
    (lambda: log_likelihood(FIELDS["linear"], I.linear, np.ones(3), prediction="velocity"), "x must be a batch"),
    (lambda: log_likelihood(FIELDS["linear"], I.linear, np.array([[0.0, np.nan]]), prediction="velocity"), "NaN"),
    (lambda: log_likelihood(FIELDS["linear"], I.linear, np.ones((2, 2)), prediction="velocity", divergence="trace"), "divergence"),
    (lambda: log_likelihood(FIELDS["linear"], I.linear, np.ones((2, 2)), prediction="velocity", divergence="hutchinson"), "key"),
    (lambda: log_likelihood(FIELDS["linear"], I.linear, np.ones((2, 2)), jax.random.key(0), prediction="velocity", divergence="hutchinson",
                            probe="uniform"), "probe"),
    (lambda: log_likelihood(FIELDS["linear"], I.linear, np.ones((2, 2)), prediction="eps"), "prediction"),
    (lambda: log_likelihood(FIELDS["linear"], I.linear, np.ones((2, 2)), prediction="velocity", solver="rk45"), "solver"),
    (lambda: log_likelihood(FIELDS["linear"], I.linear, np.ones((2, 2)), prediction="velocity", atol=0.0), "atol"),
    (lambda: cnf_log_prob(_linear_field, np.full((2, 3), np.inf)), "NaN or inf"),
    (lambda: cnf_log_prob(_linear_field, np.ones((2, 3)), divergence="hutchinson"), "key"),
    (lambda: bits_per_dim(-1.0, 0), "num_dims"),
    (lambda: bits_per_dim(-1.0, 3, num_bins=0), "num_bins"),
    (lambda: bits_per_dim(-1.0, 3, data_range=-2.0), "data_range"),
]


@pytest.mark.parametrize("call,match", BAD_CALLS)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
