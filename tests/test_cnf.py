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


def test_linear_field_log_prob_is_gaussian_with_trace_log_det(linear_cnf):
    cnf, params = linear_cnf
    x = jax.random.normal(jax.random.PRNGKey(0), (6, 3))
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
    # Any solver integrates the constant divergence exactly and both runs share z(1): Euler suffices.
    cnf = CNF(Linear(3), (3,), probe=probe, solver="euler", num_steps=2)
    n = 4000
    x = jnp.tile(jnp.array([[0.3, -0.7, 1.1]]), (n, 1))  # one point, n independent probes
    params = linear_params(A)
    exact = cnf.log_prob(params, x[:1])
    estimates = np.asarray(cnf.log_prob(params, x, jax.random.PRNGKey(2), divergence="hutchinson") - exact[0])
    se = estimates.std() / np.sqrt(n)
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
        ("recursive", dict(solver="heun", num_steps=16)),  # exact gradient of the discrete solve
        ("backsolve", dict(solver="tsit5", rtol=1e-10, atol=1e-10)),  # continuous adjoint: needs a tight solve
    ],
)
def test_gradient_through_the_solve_matches_finite_differences(adjoint, options):
    with jax.enable_x64(True):
        cnf = ffjord(2, (8,), divergence="exact", adjoint=adjoint, **options)
        x = jax.random.normal(jax.random.PRNGKey(0), (4, 2), jnp.float64)
        params = jax.tree.map(lambda p: p.astype(jnp.float64), cnf.init(jax.random.PRNGKey(1), x))
        params = jax.tree.map(lambda p, k: p + 0.3 * jax.random.normal(k, p.shape, p.dtype), params,
                              jax.tree.unflatten(jax.tree.structure(params),
                                                 list(jax.random.split(jax.random.PRNGKey(2), len(jax.tree.leaves(params))))))
        direction = jax.tree.map(lambda p: jnp.sign(jnp.sin(jnp.arange(p.size) + 1.0)).reshape(p.shape), params)
        loss = jax.jit(lambda p, x: cnf.loss(p, x, None)[0])
        grad = jax.jit(jax.grad(lambda p, x: cnf.loss(p, x, None)[0]))(params, x)
        analytic = sum(jnp.sum(g * d) for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(direction)))
        eps = 1e-5
        shifted = lambda s: jax.tree.map(lambda p, d: p + s * d, params, direction)  # noqa: E731
        numeric = (loss(shifted(eps), x) - loss(shifted(-eps), x)) / (2 * eps)
        # Central differences in float64: O(eps²) ≈ 1e-10 truncation, ~1e-16/eps ≈ 1e-11 rounding;
        # backsolve re-solves the ODE backwards, exact up to the 1e-10 solver tolerance.
        np.testing.assert_allclose(float(analytic), float(numeric), rtol=1e-6, atol=1e-7)


def test_training_loss_reports_nfe():
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 2))
    for solver, steps, nfe in [("euler", 8, 8), ("heun", 5, 10)]:  # fixed steps: evals/step × steps
        cnf = ffjord(2, (8,), solver=solver, num_steps=steps)
        params = cnf.init(jax.random.PRNGKey(1), x)
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
    """f = A z: ∫₀¹‖∂f/∂z‖_F² dt = ‖A‖_F², ∫₀¹‖f‖² dt = ∫‖A e^{At} x‖² dt (quadrature), and the loss adds them."""
    cnf = CNF(Linear(3), (3,), divergence="exact", rtol=1e-6, atol=1e-6, kinetic_weight=0.3, jacobian_weight=0.2)
    params = linear_params(A)
    x = jax.random.normal(jax.random.PRNGKey(4), (4, 3))
    log_prob, stats = cnf.log_prob(params, x, return_stats=True, regularization=True)
    np.testing.assert_allclose(stats["jacobian_frobenius"], np.sum(A**2), rtol=1e-4)
    ts = np.linspace(0.0, 1.0, 2001)
    a64, x64 = A.astype(np.float64), np.asarray(x, np.float64)
    speeds = np.stack([np.sum((x64 @ (a64 @ scipy.linalg.expm(a64 * t)).T) ** 2, axis=1) for t in ts])
    np.testing.assert_allclose(stats["kinetic"], np.trapezoid(speeds, ts, axis=0), rtol=1e-4)
    loss, aux = cnf.loss(params, x, jax.random.PRNGKey(5))
    expected = -np.mean(log_prob) + 0.3 * np.mean(stats["kinetic"]) + 0.2 * np.sum(A**2)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert float(jax.grad(lambda p: cnf.loss(p, x, jax.random.PRNGKey(5))[0])(params)["params"]["Dense_0"]["kernel"].sum()) != 0.0
    with pytest.raises(ValueError, match="kinetic_weight"):
        CNF(Linear(3), (3,), kinetic_weight=-1.0)
