"""Langevin samplers against analytic oracles (MATH.md §5, §9.8).

Monte-Carlo tolerances: for n independent chains the standard error of a mean is s/sqrt(n)
and of a variance v·sqrt(2/n); tests allow ~5 of them plus any stated discretisation bias.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import interpolants as I
from genjax.samplers.langevin import (
    mala,
    polynomial_decay,
    run_chains,
    sample_annealed_langevin,
    sample_pc,
    sgld,
    ula,
)
from genjax.losses.score import geometric_sigmas
from genjax.targets import GaussianMixture, gaussian, noised

N_CHAINS = 20_000


def var_tol(v, n=N_CHAINS):
    return 5.0 * v * np.sqrt(2.0 / n)


def test_ula_stationary_variance_is_biased_as_predicted():
    """ULA on N(0, s²) with step h: x ← (1 − h/s²) x + sqrt(2h) ξ, stationary var s²/(1 − h/(2s²)).

    h/s² = 0.5 gives a 33% bias, far beyond the 5% MC tolerance; both the score and the
    log-density (jax.grad) forms must agree with it.  100 steps: (1 − h/s²)^200 ≈ 1e-60 burn-in.
    """
    s2, h = 2.0, 1.0
    want = s2 / (1.0 - h / (2.0 * s2))
    x0 = jnp.full((N_CHAINS, 1), 3.0)
    for kernel in (ula(h, score_fn=lambda x: -x / s2), ula(h, log_prob_fn=lambda x: -0.5 * jnp.sum(x**2) / s2)):
        states, _ = run_chains(kernel, jax.random.key(0), x0, 100)
        got = float(jnp.var(states.position))
        assert abs(got - want) < var_tol(want), (got, want)
        assert abs(float(jnp.mean(states.position))) < 5 * np.sqrt(want / N_CHAINS)


def test_mala_is_exact_with_a_large_step_and_ula_is_not():
    """MALA leaves N(m, diag s²) invariant for any step (Roberts & Tweedie 1996).

    Step h = 0.3: ULA would inflate var_1 by 1/(1 − h/(2·0.5²)) = 2.5× (checked on the same
    chains); chains start 2 std out at m + 2s and run 400 steps.  Acceptance rate in (0, 1].
    """
    m, s = jnp.array([1.0, -1.0]), jnp.array([0.5, 2.0])
    h, n = 0.3, 4000
    log_p = lambda x: -0.5 * jnp.sum((x - m) ** 2 / s**2)  # noqa: E731  (unnormalised is enough)
    x0 = jnp.broadcast_to(m + 2.0 * s, (n, 2))
    states, info = run_chains(mala(log_p, h), jax.random.key(1), x0, 400)
    x = states.position
    assert bool(jnp.all(jnp.abs(jnp.mean(x, 0) - m) < 5 * s / np.sqrt(n))), jnp.mean(x, 0)
    assert bool(jnp.all(jnp.abs(jnp.var(x, 0) - s**2) < 5 * s**2 * np.sqrt(2.0 / n))), jnp.var(x, 0)
    rate = float(jnp.mean(info.acceptance_rate))
    assert 0.0 < rate <= 1.0 and 0.0 < float(jnp.mean(info.is_accepted)) < 1.0
    assert abs(rate - float(jnp.mean(info.is_accepted))) < 0.02  # E[accept] = E[min(1, ratio)]
    assert info.acceptance_rate.shape == (400, n)
    # MALA's state caches log p and its gradient at the position
    np.testing.assert_allclose(states.log_prob, jax.vmap(log_p)(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(states.score, -(x - m) / s**2, rtol=1e-5, atol=1e-5)
    biased, _ = run_chains(ula(h, log_prob_fn=log_p), jax.random.key(1), x0, 400)
    want = s**2 / (1.0 - h / (2.0 * s**2))
    assert bool(jnp.all(jnp.abs(jnp.var(biased.position, 0) - want) < 5 * want * np.sqrt(2.0 / n)))


def test_sgld_samples_the_gaussian_posterior():
    """Gaussian mean model: y_j ~ N(θ, 1), θ ~ N(0, τ²) ⇒ θ | y ~ N(Σy/(N + τ⁻²), 1/(N + τ⁻²)).

    Steps h_k = a (b + k)^(−0.55) (Welling & Teh 2011) sum to ~13 posterior relaxation times
    and end at 5.9e-5, where the minibatch-gradient noise adds h (N²/n)/2 ≈ 3% relative variance
    (ULA bias h/(2 v) ≈ 0.6%).  Tolerance on the variance: 5 SE = 5 sqrt(2/2000) = 16%, plus 4%;
    on the mean 5 SE.  Without the N/n rescaling the variance would be ~5× off.
    """
    n_data, tau2, batch, steps, chains = 200, 4.0, 40, 600, 2000
    y = 0.7 + jax.random.normal(jax.random.key(2), (n_data, 1))
    precision = n_data + 1.0 / tau2
    post_mean, post_var = float(jnp.sum(y)) / precision, 1.0 / precision
    schedule = polynomial_decay(a=2e-3, b=10.0, gamma=0.55)
    kernel = sgld(lambda th: -0.5 * jnp.sum(th**2) / tau2, lambda th, yj: -0.5 * jnp.sum((yj - th) ** 2),
                  y, batch_size=batch, step_size=schedule)
    states, info = run_chains(kernel, jax.random.key(3), jnp.zeros((chains, 1)), steps)
    theta = states.position[:, 0]
    assert abs(float(jnp.mean(theta)) - post_mean) < 5 * np.sqrt(post_var / chains)
    assert abs(float(jnp.var(theta)) / post_var - 1.0) < 0.20, (float(jnp.var(theta)), post_var)
    np.testing.assert_allclose(info.step_size[:, 0], 2e-3 * (10.0 + np.arange(steps)) ** -0.55, rtol=1e-5)
    assert int(states.count[0]) == steps


def _annealed_recursion(m0, v0, mu, s2, sigmas, step_lr, steps):
    """Exact moments of ULA with score −(x − μ)/c, c = s² + σ², h = a/2: m ← m + (h/c)(μ − m), v ← (1 − h/c)² v + 2h."""
    m, v, out = m0, v0, []
    for sigma in sigmas:
        c = s2 + sigma**2
        h = 0.5 * step_lr * sigma**2 / sigmas[-1] ** 2
        for _ in range(steps):
            m, v = m + (h / c) * (mu - m), (1 - h / c) ** 2 * v + 2 * h
        out.append((m, v))
    return out


def test_annealed_langevin_follows_the_exact_moment_recursion():
    """Annealed Langevin (Song & Ermon 2019) with the exact noised score of N(μ, s²): per level and end to end.

    Levels are run one at a time (σ_L = σ_i, step_lr = a_i) and chained through x_init, then
    the whole schedule in one call; few steps per level so the chains are NOT yet stationary
    and the recursion (not just the limit) is tested.  Final Tweedie denoising scales the
    deviation by s²/(s² + σ_L²).
    """
    mu, s2, n = 1.5, 0.5, N_CHAINS
    sigmas = np.array([3.0, 1.0, 0.3, 0.1])
    step_lr, steps = 0.02, 6
    score = lambda sigma, x: -(x - mu) / (s2 + sigma**2)  # noqa: E731
    x0 = 4.0 * jax.random.normal(jax.random.key(4), (n, 1)) - 2.0
    want = _annealed_recursion(-2.0, 16.0, mu, s2, sigmas, step_lr, steps)
    x, key = x0, jax.random.key(5)
    for sigma, (m, v) in zip(sigmas, want):
        key, sub = jax.random.split(key)
        a_i = step_lr * sigma**2 / sigmas[-1] ** 2
        x, stats = sample_annealed_langevin(score, sub, x.shape, jnp.array([sigma]), steps_per_level=steps,
                                            step_lr=a_i, denoise=False, x_init=x)
        assert abs(float(jnp.mean(x)) - m) < 5 * np.sqrt(v / n), (sigma, float(jnp.mean(x)), m)
        assert abs(float(jnp.var(x)) - v) < var_tol(v), (sigma, float(jnp.var(x)), v)
    assert stats["nfe"] == steps
    m, v = want[-1]
    shrink = s2 / (s2 + sigmas[-1] ** 2)
    x, stats = sample_annealed_langevin(score, jax.random.key(6), x0.shape, sigmas, steps_per_level=steps,
                                        step_lr=step_lr, x_init=x0)
    assert stats["nfe"] == len(sigmas) * steps + 1
    assert abs(float(jnp.mean(x)) - (mu + shrink * (m - mu))) < 5 * np.sqrt(shrink**2 * v / n)
    assert abs(float(jnp.var(x)) - shrink**2 * v) < var_tol(shrink**2 * v)


def two_mode_noised_score(sigma, x, weights=jnp.array([0.2, 0.8]), means=jnp.array([[-4.0, 0.0], [4.0, 0.0]]), s=0.5):
    """Closed-form score of Σ_k w_k N(μ_k, (s² + σ²) I): Σ_k r_k(x) (μ_k − x)/(s² + σ²)."""
    c = s**2 + sigma**2
    r = jax.nn.softmax(jnp.log(weights) - jnp.sum((x - means) ** 2, axis=1) / (2 * c))
    return jnp.sum(r[:, None] * (means - x), axis=0) / c


def test_noised_mixture_score_is_the_convolved_score():
    mix = GaussianMixture.diagonal(jnp.array([0.2, 0.8]), jnp.array([[-4.0, 0.0], [4.0, 0.0]]), 0.5)
    x = 3.0 * jax.random.normal(jax.random.key(12), (16, 2))
    scores = jax.jit(lambda sigma, y: jax.vmap(noised(mix, sigma).score)(y))
    for sigma in (0.0, 0.7, 5.0):
        got = scores(sigma, x)
        np.testing.assert_allclose(got, jax.vmap(lambda y: two_mode_noised_score(sigma, y))(x), rtol=1e-4, atol=1e-5)


def test_annealed_langevin_recovers_unequal_mode_weights_where_ula_cannot():
    """Two modes 8 apart with weights 0.2 / 0.8 (Song & Ermon 2019, Fig. 3): annealing through the exact
    noised scores recovers the weights (5 binomial SE; the finite-annealing bias measured at ≤ 0.01
    with 20 levels), while ULA on p from the same start (200 steps, enough to settle in a mode)
    keeps the start's 50/50 split."""
    n = 2000
    x0 = 8.0 * jax.random.normal(jax.random.key(9), (n, 2))
    x, _ = sample_annealed_langevin(two_mode_noised_score, jax.random.key(10), (n, 2),
                                    geometric_sigmas(8.0, 0.1, 20), steps_per_level=20, step_lr=5e-3, x_init=x0)
    assert abs(float(jnp.mean(x[:, 0] < 0)) - 0.2) < 5 * np.sqrt(0.2 * 0.8 / n)
    stuck, _ = run_chains(ula(0.05, score_fn=lambda y: two_mode_noised_score(0.0, y)), jax.random.key(11), x0, 200)
    assert abs(float(jnp.mean(stuck.position[:, 0] < 0)) - 0.5) < 0.05


def isotropic_score(interpolant, m, s):
    """Exact score of p_t = N(α m, (α² s² + σ²) I) for data N(m, s² I) (MATH.md §9.1)."""

    def fn(t, x):
        a, sig, _, _ = interpolant.scales(t)
        return -(x - a * m) / (a**2 * s**2 + sig**2)

    return fn


@pytest.mark.parametrize("interpolant, predictor", [(I.vp, "reverse_sde"), (I.ve(sigma_max=40.0), "ode")])
def test_pc_reproduces_gaussian_data(interpolant, predictor):
    """PC sampling (Song et al. 2021) with the exact score of Gaussian data returns N(m, s² I).

    Isotropic data, so the snr corrector step h ≈ 2 α_i r² s_t² is the same in every coordinate.
    Tolerance: 5 MC standard errors plus the discretisation: 300 Euler(-Maruyama) steps
    (measured < 0.5% in std) and the corrector's ULA bias at its snr step, std × (1 − r²)^(−1/2)
    ≈ 1.013 for r = 0.16 — 2% in std in all.
    """
    m, s, n = jnp.array([1.0, -2.0]), 0.8, N_CHAINS
    x, stats = sample_pc(isotropic_score(interpolant, m, s), interpolant, jax.random.key(7), (n, 2),
                         prediction="score", num_steps=300, corrector_steps=1, predictor=predictor)
    assert stats["nfe"] == 600
    assert bool(jnp.all(jnp.abs(jnp.mean(x, 0) - m) < 5 * s / np.sqrt(n) + 0.01 * s)), jnp.mean(x, 0)
    std = jnp.std(x, 0)
    assert bool(jnp.all(jnp.abs(std / s - 1.0) < 5 / np.sqrt(2 * n) + 0.02)), std


def test_pc_corrector_step_carries_the_alpha_ratio_on_vp():
    """On vp the snr step is h = 2 α_i (r‖ξ‖/‖s‖)² with α_i = α(t)²/α(s)² (1 − β_i; Song et al. 2021, Alg. 5).

    One level t = 0.9 → s = 0.5 (ts grid) with 100 corrector steps from the exact p_t = N(α m, c I):
    α_i = e^{−(B(0.9) − B(0.5))} ≈ 0.0037, so the corrector's fixed point c (1 + α_i r²) stays at c
    (without α_i it would be c (1 + r²) = 1.25 c: std +11.8%).  The PF-ODE Euler predictor is affine,
    x ↦ x + (s − t)(α̇ m + k (x − α m)), so the final std is |1 + (s − t) k| sqrt(c (1 + α_i r²)).
    Tolerance: 5 MC standard errors of a std (1/sqrt(2n) relative) plus 0.5% for the corrector's drift.
    """
    ip, m, s0, r, n = I.vp, jnp.array([1.0, -2.0]), 0.8, 0.5, N_CHAINS
    t, s = 0.9, 0.5
    a_t, sig_t, da_t, ds_t = (float(v) for v in ip.scales(jnp.float32(t)))
    a_s = float(ip.alpha(jnp.float32(s)))
    c = a_t**2 * s0**2 + sig_t**2
    x_init = a_t * m + np.sqrt(c) * jax.random.normal(jax.random.key(12), (n, 2))
    x, stats = sample_pc(isotropic_score(ip, m, s0), ip, jax.random.key(13), prediction="score", ts=[t, s],
                         corrector_steps=100, snr=r, predictor="ode", x_init=x_init)
    assert stats["nfe"] == 101
    k = (a_t * da_t * s0**2 + sig_t * ds_t) / c
    alpha_ratio = (a_t / a_s) ** 2
    want = abs(1 + (s - t) * k) * np.sqrt(c * (1 + alpha_ratio * r**2))
    ratio = np.asarray(jnp.std(x, 0)) / want
    assert np.all(np.abs(ratio - 1.0) < 5 / np.sqrt(2 * n) + 0.005), ratio


def test_pc_snr_corrector_has_its_predicted_fixed_point():
    """The snr rule's stationary law on an isotropic Gaussian p_t = N(μ, c I) (Song et al. 2021, Alg. 4).

    With batch-mean norms, E‖ξ‖/E‖s‖ = c/sqrt(v) for samples of variance v (Rayleigh means), so
    h = 2 r² c²/v and ULA's stationary variance c/(1 − h/(2c)) has the fixed point v = c (1 + r²).
    The PF-ODE predictor preserves v/c, so with many corrector steps per level (10) the samples
    end with std s sqrt(1 + r²) = 1.118 s for r = 0.5 (a doubled step would give 1.225 s).
    Tolerance: 5 MC SE + 1% (remaining non-stationarity, measured ≤ 0.4%).
    """
    m, s, r, n = jnp.array([1.0, -2.0]), 0.8, 0.5, N_CHAINS
    ip = I.ve(sigma_max=40.0)
    x, stats = sample_pc(isotropic_score(ip, m, s), ip, jax.random.key(8), (n, 2), prediction="score",
                         num_steps=100, corrector_steps=10, snr=r, predictor="ode")
    assert stats["nfe"] == 1100
    ratio = np.asarray(jnp.std(x, 0)) / s
    assert np.all(np.abs(ratio - np.sqrt(1 + r**2)) < 5 / np.sqrt(2 * n) + 0.01), ratio


def test_bad_input_raises_clear_errors():
    score = lambda x: -x  # noqa: E731
    with pytest.raises(ValueError, match="exactly one of score_fn"):
        ula(0.1)
    with pytest.raises(ValueError, match="exactly one of score_fn"):
        ula(0.1, score_fn=score, log_prob_fn=lambda x: -0.5 * jnp.sum(x**2))
    with pytest.raises(ValueError, match="step_size"):
        ula(-0.1, score_fn=score)
    with pytest.raises(ValueError, match="log_prob_fn must be a callable"):
        mala(None, 0.1)
    with pytest.raises(ValueError, match="positions contains NaN"):
        run_chains(ula(0.1, score_fn=score), jax.random.key(0), jnp.array([[jnp.nan]]), 5)
    with pytest.raises(ValueError, match="num_steps"):
        run_chains(ula(0.1, score_fn=score), jax.random.key(0), jnp.zeros((2, 1)), 0)
    with pytest.raises(ValueError, match="batch_size"):
        sgld(lambda th: 0.0, lambda th, y: 0.0, jnp.zeros((10, 1)), 20, 0.1)
    with pytest.raises(ValueError, match="gamma"):
        polynomial_decay(0.1, 1.0, 2.0)
    with pytest.raises(ValueError, match="strictly decreasing"):
        sample_annealed_langevin(lambda s, x: -x, jax.random.key(0), (4, 2), jnp.array([0.1, 1.0]))
    fn = gaussian([0.0], [1.0]).field(I.vp, "score")
    with pytest.raises(ValueError, match="predictor="):
        sample_pc(fn, I.vp, jax.random.key(0), (4, 1), prediction="score", num_steps=10, predictor="euler")
    with pytest.raises(ValueError, match="snr"):
        sample_pc(fn, I.vp, jax.random.key(0), (4, 1), prediction="score", num_steps=10, snr=0.0)
    with pytest.raises(ValueError, match="prediction="):
        sample_pc(fn, I.vp, jax.random.key(0), (4, 1), prediction="eps", num_steps=10)
    with pytest.raises(ValueError, match="shape"):
        sample_pc(fn, I.vp, jax.random.key(0), (4,), prediction="score", num_steps=10)


# -- constant preconditioning (Girolami & Calderhead 2011, constant metric) -------------
S_ANISO = jnp.array([0.5, 2.0])  # target N(0, diag s²), condition number 16


def test_preconditioned_ula_stationary_variance_per_coordinate():
    """On N(0, diag s²), diagonal M: x_i ← (1 − h m_i/s_i²) x_i + sqrt(2h m_i) ξ_i, stationary variance
    2h m_i/(1 − (1 − h m_i/s_i²)²) = s_i²/(1 − h m_i/(2 s_i²)).  h = 0.2: without M the stiff coordinate is
    67% too wide and the other 2.5%; with M = (0.5, 8) both are 25% too wide.  The slowest contraction
    |1 − h m_i/s_i²| ≤ 0.95 over 150 steps leaves 5e-4 of the start; tolerance 5 MC standard errors."""
    h, n = 0.2, N_CHAINS
    s2 = S_ANISO**2
    x0 = jnp.broadcast_to(3.0 * S_ANISO, (n, 2))
    for m in (None, jnp.array([0.5, 8.0])):
        x = run_chains(ula(h, score_fn=lambda x: -x / s2, precondition=m), jax.random.key(20), x0, 150)[0].position
        m = jnp.ones(2) if m is None else m
        a = 1 - h * m / s2
        want = np.asarray(2 * h * m / (1 - a**2))
        np.testing.assert_allclose(want, s2 / (1 - h * m / (2 * s2)), rtol=1e-6)
        assert np.all(np.abs(np.asarray(jnp.var(x, 0)) - want) < var_tol(want)), (m, jnp.var(x, 0), want)


def test_preconditioned_ula_with_a_full_matrix_solves_the_lyapunov_equation():
    """Full SPD M on N(0, Σ): x ← B x + sqrt(2h) C ξ with B = I − h M Σ⁻¹, C Cᵀ = M, so the stationary
    covariance solves P = B P Bᵀ + 2h M (scipy's discrete Lyapunov solver).  Tolerance: 5 standard
    errors of a sample covariance entry, sqrt((P_ii P_jj + P_ij²)/n)."""
    import scipy.linalg

    h, n = 0.3, N_CHAINS
    sigma = np.diag(np.asarray(S_ANISO**2, np.float64))
    m = np.array([[0.3, 0.5], [0.5, 3.0]])
    b = np.eye(2) - h * m @ np.linalg.inv(sigma)
    assert np.max(np.abs(np.linalg.eigvals(b))) < 0.9
    want = scipy.linalg.solve_discrete_lyapunov(b, 2 * h * m)
    x = run_chains(ula(h, log_prob_fn=lambda x: -0.5 * jnp.sum(x**2 / S_ANISO**2), precondition=m),
                   jax.random.key(21), jnp.zeros((n, 2)), 200)[0].position
    got = np.cov(np.asarray(x, np.float64).T, bias=True)
    se = np.sqrt((np.outer(np.diag(want), np.diag(want)) + want**2) / n)
    assert np.all(np.abs(got - want) < 5 * se), (got, want)
    assert abs(want[0, 1]) > 10 * se[0, 1]  # M couples the coordinates: a diagonal answer would fail


def test_preconditioned_mala_is_exact():
    """MALA with a full M (proposal N(x + hM∇log p, 2hM), its density in the MH ratio) leaves N(μ, diag s²)
    invariant at h = 0.8, where preconditioned ULA would be off by a factor up to 1/(1 − h m_i/(2s_i²))."""
    mu, h, n = jnp.array([1.0, -1.0]), 0.8, 4000
    m = jnp.array([[0.25, 0.3], [0.3, 4.0]])
    log_p = lambda x: -0.5 * jnp.sum((x - mu) ** 2 / S_ANISO**2)  # noqa: E731
    x0 = jnp.broadcast_to(mu + 2.0 * S_ANISO, (n, 2))
    states, info = run_chains(mala(log_p, h, precondition=m), jax.random.key(22), x0, 150)
    x = states.position
    assert bool(jnp.all(jnp.abs(jnp.mean(x, 0) - mu) < 5 * S_ANISO / np.sqrt(n))), jnp.mean(x, 0)
    assert bool(jnp.all(jnp.abs(jnp.var(x, 0) - S_ANISO**2) < 5 * S_ANISO**2 * np.sqrt(2.0 / n))), jnp.var(x, 0)
    assert 0.3 < float(jnp.mean(info.acceptance_rate)) < 1.0


def test_bad_preconditioner_raises_clear_errors():
    score = lambda x: -x  # noqa: E731
    with pytest.raises(ValueError, match="positive definite"):
        ula(0.1, score_fn=score, precondition=jnp.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="symmetric"):
        ula(0.1, score_fn=score, precondition=jnp.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="diagonal M must be positive"):
        mala(lambda x: -0.5 * jnp.sum(x**2), 0.1, precondition=jnp.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="scalar"):
        ula(0.1, score_fn=score, precondition=2.0)
    with pytest.raises(ValueError, match="does not fit positions"):
        run_chains(ula(0.1, score_fn=score, precondition=jnp.ones(3)), jax.random.key(0), jnp.zeros((2, 2)), 5)
