"""FFJORD / CNF against analytic oracles (MATH.md §6, §9.5): linear fields, Hutchinson, gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from genjax.flows import CNF, ffjord

A = np.array([[-0.5, 0.8, 0.1], [-0.3, 0.2, 0.4], [0.6, -0.2, -0.1]], np.float32)


class Linear(nn.Module):
    """``f(t, z) = A z``: the CNF map over [0, 1] is ``z(1) = e^A x`` with ``log|det| = tr(A)``."""

    dim: int

    @nn.compact
    def __call__(self, t, z):
        return nn.Dense(self.dim, use_bias=False)(z)


def linear_params(a):
    return {"params": {"Dense_0": {"kernel": jnp.asarray(a.T)}}}


@pytest.fixture(scope="module")
def linear_cnf():
    cnf = CNF(Linear(3), (3,), rtol=1e-6, atol=1e-6)
    return cnf, linear_params(A)


@pytest.fixture(scope="module")
def ffjord_init():
    """One compiled ``init`` of ``ffjord(2, (8,))`` and its batch, shared by the tests of that architecture."""
    x = np.random.default_rng(0).standard_normal((4, 2))
    params = jax.jit(ffjord(2, (8,)).init)(jax.random.PRNGKey(1), jnp.asarray(x, jnp.float32))
    return params, x


def test_linear_field_log_prob_is_gaussian_with_trace_log_det(linear_cnf):
    cnf, params = linear_cnf
    x = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    log_prob = jax.jit(cnf.log_prob)(params, x)
    z1 = np.asarray(x, np.float64) @ scipy.linalg.expm(A.astype(np.float64)).T
    exact = scipy.stats.multivariate_normal(np.zeros(3), np.eye(3)).logpdf(z1) + np.trace(A) * 1.0  # tr(A)·Δt
    # Tsit5 at rtol = atol = 1e-6 in float32: error ≲ 1e-5 on O(1) log-densities.
    np.testing.assert_allclose(log_prob, exact, atol=5e-5)


def test_linear_field_samples_have_the_pushforward_covariance(linear_cnf):
    """Sampling runs t: 1 → 0, so x = e^{−A} z and Cov x = e^{−A} e^{−Aᵀ}."""
    cnf, params = linear_cnf
    n = 20_000
    x = jax.jit(cnf.sample, static_argnums=2)(params, jax.random.PRNGKey(1), n)
    inv = scipy.linalg.expm(-A.astype(np.float64))
    cov = inv @ inv.T
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)  # s.e. of sample covariances
    assert np.all(np.abs(np.cov(np.asarray(x).T) - cov) < 5 * se)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_with_the_quadratic_form_variance(probe):
    """For f = A z the per-trajectory estimate of ∫∇·f dt is ξᵀAξ: mean tr(A), variance known."""
    # Euler integrates the constant divergence exactly, and its two steps give z(1) = (I + A/2)² x: the exact
    # log-density of the discrete solve is log N((I + A/2)² x; 0, I) + tr(A) in closed form.
    cnf = CNF(Linear(3), (3,), probe=probe, solver="euler", num_steps=2)
    n = 4000
    point = np.array([0.3, -0.7, 1.1], np.float32)
    x = jnp.tile(jnp.asarray(point)[None], (n, 1))  # one point, n independent probes
    step = np.eye(3) + A.astype(np.float64) / 2
    exact = scipy.stats.multivariate_normal(np.zeros(3), np.eye(3)).logpdf(step @ step @ point) + np.trace(A)
    hutchinson = jax.jit(lambda p, x, key: cnf.log_prob(p, x, key, divergence="hutchinson", return_stats=True))
    log_prob, stats = hutchinson(linear_params(A), x, jax.random.PRNGKey(2))
    assert int(stats["nfe"]) == 2  # fixed steps: 1 evaluation per Euler step × 2 steps
    estimates = np.asarray(log_prob, np.float64) - exact
    se = estimates.std() / np.sqrt(n)  # ≈ 0.014 (rademacher); float32 rounding of log p is ~1e-6
    assert abs(estimates.mean()) < 4.5 * se, (estimates.mean(), se)
    sym = (A + A.T) / 2
    if probe == "rademacher":  # ξᵀAξ = tr A + Σ_{i<j} (A_ij + A_ji) ξ_i ξ_j, uncorrelated ±1 products
        variance = sum((A[i, j] + A[j, i]) ** 2 for i in range(3) for j in range(i + 1, 3))
        # s.e. of a sample variance of a bounded sum of 3 signs at n = 4000: ≈ 2% → allow 10%.
        np.testing.assert_allclose(estimates.var(), variance, rtol=0.1)
    else:  # Var ξᵀSξ = 2‖S‖_F² for Gaussian ξ
        variance = 2 * np.sum(sym**2)
        np.testing.assert_allclose(estimates.var(), variance, rtol=0.25)  # heavier tails: s.e. ≈ 5%


@pytest.mark.parametrize(
    "adjoint, options",
    [
        # exact gradient of the discrete solve, here of the loss with both RNODE terms (Finlay et al. 2020)
        ("recursive", dict(solver="euler", num_steps=16, kinetic_weight=0.3, jacobian_weight=0.2)),
        ("backsolve", dict(solver="tsit5", rtol=1e-10, atol=1e-10)),  # continuous adjoint: needs a tight solve
    ],
)
def test_gradient_through_the_solve_matches_finite_differences(ffjord_init, adjoint, options):
    init, x = ffjord_init
    rng = np.random.default_rng(2)
    params = jax.tree.map(lambda p: np.asarray(p, np.float64) + 0.3 * rng.standard_normal(p.shape), init)
    direction = jax.tree.map(lambda p: np.sign(np.sin(np.arange(p.size) + 1.0)).reshape(p.shape), params)
    eps = 1e-5
    with jax.enable_x64(True):
        cnf = ffjord(2, (8,), divergence="exact", adjoint=adjoint, **options)
        # One compiled value_and_grad serves both the gradient at p and the losses at p ± eps·d.
        value_and_grad = jax.jit(jax.value_and_grad(lambda p, x: cnf.loss(p, x, None), has_aux=True))
        x = jnp.asarray(x)  # float64
        shifted = lambda s: jax.tree.map(lambda p, d: jnp.asarray(p + s * d), params, direction)  # noqa: E731
        (_, aux), grad = value_and_grad(shifted(0.0), x)
        analytic = sum(np.sum(np.asarray(g) * d) for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(direction)))
        loss = lambda s: float(value_and_grad(shifted(s), x)[0][0])  # noqa: E731
        numeric = (loss(eps) - loss(-eps)) / (2 * eps)
    # Central differences in float64: O(eps²) ≈ 1e-10 truncation, ~1e-16/eps ≈ 1e-11 rounding;
    # backsolve re-solves the ODE backwards, exact up to the 1e-10 solver tolerance.
    np.testing.assert_allclose(float(analytic), numeric, rtol=1e-6, atol=1e-7)
    if options["solver"] == "euler":
        assert int(aux["nfe"]) == options["num_steps"]  # the loss reports nfe: 1 evaluation per Euler step


# Slow: the fast finite-difference test checks the nfe reported by an Euler loss, and tests/test_samplers.py
# the evaluations per step of every solver of the shared genjax.ode.integrate.
@pytest.mark.slow
def test_training_loss_reports_nfe(ffjord_init):
    params, x = ffjord_init
    x = jnp.asarray(x, jnp.float32)
    for solver, steps, nfe in [("euler", 8, 8), ("heun", 5, 10)]:  # fixed steps: evals/step × steps
        cnf = ffjord(2, (8,), solver=solver, num_steps=steps)
        loss, aux = jax.jit(cnf.loss)(params, x, jax.random.PRNGKey(2))
        assert int(aux["nfe"]) == nfe and np.isfinite(float(loss))


def test_bad_input_raises(linear_cnf):
    cnf, params = linear_cnf
    with pytest.raises(ValueError, match=r"x must have shape \(n, 3\)"):
        cnf.log_prob(params, jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        cnf.log_prob(params, jnp.array([[0.0, jnp.nan, 1.0]]))
    with pytest.raises(ValueError, match="adjoint"):
        ffjord(2, adjoint="forward")
    with pytest.raises(ValueError, match="divergence"):
        ffjord(2, divergence="trace")
    with pytest.raises(ValueError, match="solver"):
        ffjord(2, solver="rk4")
    with pytest.raises(ValueError, match="key"):
        cnf.log_prob(params, jnp.ones((2, 3)), divergence="hutchinson")


def test_rnode_terms_for_a_linear_field():
    """f = A z: ∫₀¹‖∂f/∂z‖_F² dt = ‖A‖_F², ∫₀¹‖f‖² dt = ∫‖A e^{At} x‖² dt (quadrature), and the loss adds them.

    The loss is evaluated row by row (vmapped over one-row batches, one compilation) so that every term is
    checked per row; its gradient is checked against finite differences in
    ``test_gradient_through_the_solve_matches_finite_differences[recursive]``.
    """
    cnf = CNF(Linear(3), (3,), divergence="exact", rtol=1e-6, atol=1e-6, kinetic_weight=0.3, jacobian_weight=0.2)
    x = np.random.default_rng(4).standard_normal((4, 3)).astype(np.float32)
    per_row = jax.jit(jax.vmap(lambda params, row: cnf.loss(params, row[None], None), (None, 0)))
    loss, aux = per_row(linear_params(A), x)
    np.testing.assert_allclose(aux["jacobian_frobenius"], np.sum(A**2), rtol=1e-4)
    ts = np.linspace(0.0, 1.0, 2001)
    a64, x64 = A.astype(np.float64), np.asarray(x, np.float64)
    speeds = np.stack([np.sum((x64 @ (a64 @ scipy.linalg.expm(a64 * t)).T) ** 2, axis=1) for t in ts])
    np.testing.assert_allclose(aux["kinetic"], np.trapezoid(speeds, ts, axis=0), rtol=1e-4)
    z1 = x64 @ scipy.linalg.expm(a64).T
    log_prob = scipy.stats.multivariate_normal(np.zeros(3), np.eye(3)).logpdf(z1) + np.trace(a64)
    np.testing.assert_allclose(aux["nll"], -log_prob, atol=5e-5)  # as in the log-prob test above
    expected = np.asarray(aux["nll"]) + 0.3 * np.asarray(aux["kinetic"]) + 0.2 * np.sum(A**2)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="kinetic_weight"):
        CNF(Linear(3), (3,), kinetic_weight=-1.0)
