"""JKO steps and the Fokker–Planck flow of KL(·‖π) against closed forms (MATH.md §15, §9.21)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.samplers.langevin import run_chains, ula
from genjax.stats.divergences import kl_gaussian
from genjax.stats.gaussian import gaussian_log_prob
from genjax.stats.jko import (
    Particles,
    affine_map,
    gaussian_particles,
    icnn_map,
    jko_gaussian,
    jko_objective,
    jko_particle_step,
    jko_step_gaussian,
    kl_to_target,
    ou_marginal,
    push_particles,
)

M0, S0 = jnp.array([2.0, -1.0]), jnp.array([0.5, 1.5])


def quadratic(x):
    return 0.5 * jnp.sum(x**2)


def test_closed_form_step_is_the_numerical_minimiser():
    """§9.21: the closed-form JKO step for KL(·‖N(μ, σ²)) = Adam's minimiser over diagonal Gaussians of
    KL + W2²/(2τ) (strongly convex in (m', log s'); converged to ~1e-4)."""
    target_mean, target_std = jnp.array([1.0, -0.5]), jnp.array([0.7, 2.0])
    energy = lambda m, s: kl_gaussian(m, s**2, target_mean, target_std**2)  # noqa: E731
    tau = 0.5
    got_m, got_s = jko_step_gaussian(energy, M0, S0, tau)
    want_m, want_s = jko_gaussian(M0, S0, tau, target_mean=target_mean, target_std=target_std)
    np.testing.assert_allclose(got_m, want_m, atol=1e-3)
    np.testing.assert_allclose(got_s, want_s, atol=1e-3)
    # σ = 1: m/(1 + τ) and the root of (1 + τ) s'² − s s' − τ = 0 (s = 1 is a fixed point).
    m1, s1 = jko_gaussian(M0, jnp.array([0.5, 1.0]), tau)
    np.testing.assert_allclose(m1, M0 / (1 + tau), rtol=1e-6)
    np.testing.assert_allclose((1 + tau) * s1**2 - jnp.array([0.5, 1.0]) * s1 - tau, 0.0, atol=1e-6)
    assert float(s1[1]) == pytest.approx(1.0, abs=1e-6)


def test_jko_steps_converge_to_the_ou_marginal_at_first_order():
    """k closed-form steps with τ = t/k against the exact OU marginal at t: the mean is m(1 + τ)^{−t/τ} =
    m e^{−t}(1 + tτ/2 + O(τ²)), so the error is O(τ) and halves with τ (ratio 0.5 ± 0.05 for τ ≤ 0.05)."""
    t, tm, ts = 1.5, jnp.array([0.5, 0.0]), jnp.array([1.0, 0.6])
    want_m, want_s = ou_marginal(M0, S0, t, target_mean=tm, target_std=ts)
    errors = []
    for k in (30, 60, 120):
        m, s = M0, S0
        for _ in range(k):
            m, s = jko_gaussian(m, s, t / k, target_mean=tm, target_std=ts)
        errors.append(float(jnp.max(jnp.abs(m - want_m)) + jnp.max(jnp.abs(s - want_s))))
    assert errors[0] < 0.05
    np.testing.assert_allclose(np.array(errors[1:]) / np.array(errors[:-1]), 0.5, atol=0.05)
    # The OU marginal itself: N(m e^{−t}, 1 + (s² − 1) e^{−2t}) for π = N(0, 1).
    m, s = ou_marginal(M0, S0, t)
    np.testing.assert_allclose(m, M0 * np.exp(-t), rtol=1e-6)
    np.testing.assert_allclose(s**2, 1 + (S0**2 - 1) * np.exp(-2 * t), rtol=1e-6)


@pytest.fixture(scope="module")
def affine_step():
    rotation = jnp.array([[0.8, -0.6], [0.6, 0.8]])  # a correlated start: the map must be a full matrix
    p = gaussian_particles(jax.random.key(0), 2000, M0, S0)
    p = Particles(p.x @ rotation.T, p.log_density)  # |det R| = 1, so the log-density is unchanged
    tau = 0.3
    new, params, losses = jko_particle_step(affine_map(), quadratic, p, tau, key=jax.random.key(1), num_steps=800)
    return p, new, params, losses, tau, rotation


def test_affine_particle_step_is_the_closed_form_step(affine_step):
    """§9.21 on particles: for π = N(0, I) the objective over affine maps depends on the particles through
    their empirical mean m̂ and covariance Σ̂ = U diag(λ) Uᵀ only, so the minimiser is the Gaussian step
    from N(m̂, Σ̂): mean m̂/(1 + τ) and, in the eigenbasis, std jko_gaussian(√λ); the map is the
    symmetric OT map A = U diag(r/√λ) Uᵀ.  No Monte-Carlo error enters; 800 Adam steps converge to ~1e-5
    (the mean offset couples A and b: 300 steps leave 1e-3)."""
    p, new, params, losses, tau, _ = affine_step
    mean, cov = jnp.mean(p.x, 0), jnp.cov(p.x.T, bias=True)
    lam, u = jnp.linalg.eigh(cov)
    _, r = jko_gaussian(jnp.zeros(2), jnp.sqrt(lam), tau)
    want_map = (u * (r / jnp.sqrt(lam))) @ u.T
    np.testing.assert_allclose(params["A"], want_map, atol=2e-4)
    np.testing.assert_allclose(jnp.mean(new.x, 0), mean / (1 + tau), atol=2e-4)
    np.testing.assert_allclose(jnp.cov(new.x.T, bias=True), (u * r**2) @ u.T, atol=5e-4)
    assert float(losses[-1]) < float(losses[0])


def test_particles_carry_their_exact_log_density(affine_step):
    """ρ_0 = R#N(m, diag s²) is the Gaussian N(Rm, R diag(s²) Rᵀ); after x ↦ Ax + b the tracked
    log ρ_0(x) − log|det A| must equal log N(y; A R m + b, A R diag(s²) Rᵀ Aᵀ) exactly (float32)."""
    p, new, params, _, _, rotation = affine_step
    a, b = params["A"], params["b"]
    cov = a @ rotation @ jnp.diag(S0**2) @ rotation.T @ a.T
    want = jax.vmap(gaussian_log_prob, (0, None, None))(new.x, a @ rotation @ M0 + b, cov)
    np.testing.assert_allclose(new.log_density, want, rtol=1e-4, atol=1e-4)
    # KL(ρ‖π) from the carried densities: Monte Carlo around the closed form (5 standard errors).
    log_pi = lambda x: gaussian_log_prob(x, jnp.zeros(2), jnp.ones(2))  # noqa: E731
    kl, se = kl_to_target(new, log_pi)
    assert abs(float(kl) - float(kl_gaussian(a @ rotation @ M0 + b, cov, jnp.zeros(2), jnp.ones(2)))) < 5 * float(se)
    # Held-out particles moved by the same map carry the same exact density.
    fresh = gaussian_particles(jax.random.key(9), 2000, M0, S0)  # the fitted shape: push_particles is compiled
    moved = push_particles(affine_map(), params, Particles(fresh.x @ rotation.T, fresh.log_density))
    want = jax.vmap(gaussian_log_prob, (0, None, None))(moved.x, a @ rotation @ M0 + b, cov)
    np.testing.assert_allclose(moved.log_density, want, rtol=1e-4, atol=1e-4)


def test_icnn_map_is_a_convex_gradient_with_its_log_det():
    """T = ∇ψ with ψ input-convex (weights on z kept positive): ∇T = ∇²ψ is symmetric positive definite at
    every point, for any parameters (a random draw with large convex weights here), and the returned
    log-determinant is slogdet of jacfwd(T)."""
    tm = icnn_map(hidden=(8, 8), init_scale=1.0)
    params = tm.init(jax.random.key(2), 2)
    x = 2.0 * jax.random.normal(jax.random.key(3), (64, 2))
    jacobian = jax.jacfwd(lambda v: tm.apply(params, v)[0])
    y, log_det, jac = jax.jit(jax.vmap(lambda v: (*tm.apply(params, v), jacobian(v))))(x)
    np.testing.assert_allclose(jac, jnp.swapaxes(jac, 1, 2), atol=1e-5)
    assert bool(jnp.all(jnp.linalg.eigvalsh(jac) > 0))
    np.testing.assert_allclose(log_det, jnp.linalg.slogdet(jac)[1], atol=1e-5)
    assert float(jnp.max(jnp.abs(y - x))) > 0.1  # the convex term is not negligible at this scale


@pytest.mark.slow
def test_icnn_step_matches_the_gaussian_step():
    """On a Gaussian start the exact step is affine, inside the ICNN-gradient family: the pushed moments
    match the closed form from the empirical moments to 2e-3 (an optimisation tolerance: 400 Adam steps
    from the identity), and the carried log-density changes by −log det ∇T."""
    tm = icnn_map(hidden=(16, 16))
    p = gaussian_particles(jax.random.key(2), 500, M0, S0)
    tau = 0.2
    new, params, _ = jko_particle_step(tm, quadratic, p, tau, key=jax.random.key(3), num_steps=400)
    want_m, want_s = jko_gaussian(jnp.mean(p.x, 0), jnp.std(p.x, 0), tau)
    np.testing.assert_allclose(jnp.mean(new.x, 0), want_m, atol=2e-3)
    np.testing.assert_allclose(jnp.std(new.x, 0), want_s, atol=2e-3)
    jac = jax.jit(jax.vmap(jax.jacfwd(lambda x: tm.apply(params, x)[0])))(p.x)
    np.testing.assert_allclose(new.log_density - p.log_density, -jnp.linalg.slogdet(jac)[1], atol=1e-4)


def test_ula_follows_the_ou_marginals_over_time():
    """ULA x ← (1 − h)x + sqrt(2h)ξ on π = N(0, 1) against the exact OU law at t = kh.

    Its moments are m(1 − h)^k and (1 − h)^{2k}s² + 2h(1 − (1 − h)^{2k})/(1 − (1 − h)²), which differ from
    OU's by O(h): bounded here by h (checked).  Tolerance: 5 MC standard errors (20 000 chains) + that gap."""
    n, m0, s0, h, steps = 20_000, 2.0, 0.5, 0.02, 25
    x = m0 + s0 * jax.random.normal(jax.random.key(4), (n, 1))
    kernel = ula(h, score_fn=lambda y: -y)
    for i, key in enumerate(jax.random.split(jax.random.key(5), 3)):  # t = 0.5, 1.0, 1.5
        x = run_chains(kernel, key, x, steps)[0].position
        k = steps * (i + 1)
        want_m, want_s = (float(v) for v in ou_marginal(m0, s0, h * k))
        q = (1 - h) ** k
        ula_m, ula_v = m0 * q, q**2 * s0**2 + 2 * h * (1 - q**2) / (1 - (1 - h) ** 2)
        gap_m, gap_v = abs(ula_m - want_m), abs(ula_v - want_s**2)
        assert gap_m < h and gap_v < h
        assert abs(float(jnp.mean(x)) - want_m) < 5 * want_s / np.sqrt(n) + gap_m
        assert abs(float(jnp.var(x)) - want_s**2) < 5 * want_s**2 * np.sqrt(2 / n) + gap_v


def test_bad_input_raises_clear_errors():
    p = gaussian_particles(jax.random.key(0), 8, M0, S0)
    with pytest.raises(ValueError, match="tau"):
        jko_gaussian(M0, S0, 0.0)
    with pytest.raises(ValueError, match="std"):
        ou_marginal(M0, -S0, 1.0)
    with pytest.raises(ValueError, match="t must be"):
        ou_marginal(M0, S0, -1.0)
    with pytest.raises(ValueError, match="tau"):
        jko_step_gaussian(lambda m, s: m, 0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="transport_map"):
        jko_objective(lambda x: x, quadratic)
    with pytest.raises(ValueError, match="potential"):
        jko_objective(affine_map(), None)
    with pytest.raises(ValueError, match="params .* or a key"):
        jko_particle_step(affine_map(), quadratic, p, 0.1)
    with pytest.raises(ValueError, match="log_density"):
        jko_particle_step(affine_map(), quadratic, Particles(p.x, p.log_density[:3]), 0.1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="particles.x"):
        jko_particle_step(affine_map(), quadratic, Particles(p.x[:, 0], p.log_density), 0.1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="hidden"):
        icnn_map(hidden=())
