"""EDM/Heun sampler (Karras et al. 2022) against analytic oracles (MATH.md §5, §9.1–9.2).

For Gaussian data N(m, s²) the EDM ODE in ``x̃ = x/α``, ``σ̃ = σ/α`` is linear: with
``y = x̃ − m``, ``dy/dσ̃ = y σ̃/(s² + σ̃²)``.  Every Heun/Euler/churn step then multiplies the
deviation by a number that a few lines of numpy compute (:func:`heun_gain`), independently
of the sampler: that gives exact means and variances of the samples for every schedule.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import interpolants as I
from genjax.samplers.heun import edm_sigmas, sample_heun, sigma_to_time
from genjax.targets import GaussianMixture, gaussian

M, S = np.array([1.0, -2.0]), np.array([0.5, 1.5])
N = 4000


def heun_moments(s, sigmas, m0, v0, churn=0.0):
    """Exact (mean, var) of y = x̃ − m after EDM Alg. 2 on N(m, s²) data, from y ~ N(m0, v0).

    ``churn``: γ = min(churn/N, √2 − 1) at every step (s_tmin = 0, s_tmax = ∞), σ̂ = σ(1 + γ).
    """
    f = lambda y, sg: y * sg / (s**2 + sg**2)  # noqa: E731  dy/dσ̃ per unit y
    n = len(sigmas)
    gamma = min(churn / n, math.sqrt(2) - 1)
    mean, var = m0, v0
    for i, sg in enumerate(sigmas):
        s_hat = sg * (1 + gamma)
        var = var + s_hat**2 - sg**2
        if i == n - 1:  # Euler to σ = 0 returns the denoiser: y s²/(s² + σ̂²)
            g = s**2 / (s**2 + s_hat**2)
        else:
            nxt = sigmas[i + 1]
            d1 = f(1.0, s_hat)
            g = 1.0 + 0.5 * (nxt - s_hat) * (d1 + f(1.0 + (nxt - s_hat) * d1, nxt))
        mean, var = g * mean, g**2 * var
    return mean, var


def check_moments(x, s, sigmas, churn=0.0):
    """Sample moments vs the exact recursion (start x̃ ~ N(0, σ_max²), i.e. y ~ N(−m, σ_max²)), 5 MC SE."""
    sig = np.asarray(sigmas, np.float64)
    mean, var = heun_moments(s, sig, -M, sig[0] ** 2, churn)
    want_mean, want_std = M + mean, np.sqrt(var)
    got_mean, got_std = np.asarray(jnp.mean(x, 0)), np.asarray(jnp.std(x, 0))
    n = x.shape[0]
    assert np.all(np.abs(got_mean - want_mean) < 5 * want_std / np.sqrt(n)), (got_mean, want_mean)
    assert np.all(np.abs(got_std - want_std) < 5 * want_std / np.sqrt(2 * n)), (got_std, want_std)


def test_sigma_to_time_inverts_closed_forms():
    """Bisection on σ̃(t) = σ/α against the closed-form inverses (float32: ~1e-6)."""
    sig = jnp.array([0.02, 0.3, 1.0, 4.0, 30.0])
    ve = I.ve(sigma_min=0.01, sigma_max=50.0)
    np.testing.assert_allclose(sigma_to_time(ve, sig), np.log(sig / 0.01) / np.log(5000.0), atol=2e-6)
    np.testing.assert_allclose(sigma_to_time(I.linear, sig), sig / (1 + sig), atol=2e-6)
    np.testing.assert_allclose(sigma_to_time(I.trig, sig), 2 / np.pi * np.arctan(sig), atol=2e-6)
    # vp: σ̃² = 1/α² − 1 = e^{B(t)} − 1, B = β_min t + ½(β_max − β_min) t²
    b = np.log1p(np.asarray(sig, np.float64) ** 2)
    t_vp = (-0.1 + np.sqrt(0.1**2 + 2 * 19.9 * b)) / 19.9
    np.testing.assert_allclose(sigma_to_time(I.vp, sig), t_vp, atol=2e-6)


def test_edm_sigmas_are_rho_spaced():
    sig = np.asarray(edm_sigmas(10, 0.002, 80.0, rho=7.0), np.float64)
    assert sig[0] == pytest.approx(80.0, rel=1e-5) and sig[-1] == pytest.approx(0.002, rel=1e-5)
    np.testing.assert_allclose(np.diff(sig ** (1 / 7)), (0.002 ** (1 / 7) - 80 ** (1 / 7)) / 9, rtol=1e-4)


@pytest.fixture(scope="module")
def shared_grid_samples():
    """Heun on one σ̃ grid (N = 8, σ̃ ∈ [0.02, 30]) with the exact field of each schedule, same key."""
    out = {}
    for ip, pred in ((I.vp, "noise"), (I.ve(sigma_max=50.0), "score"), (I.linear, "velocity")):
        x, stats = sample_heun(gaussian(M, S).field(ip, pred), ip, jax.random.key(0), (N, 2), prediction=pred, num_steps=8,
                               sigma_min=0.02, sigma_max=30.0)
        out[ip.name] = x
        assert stats["nfe"] == 15
    return out


def test_heun_matches_the_exact_linear_recursion(shared_grid_samples):
    """8 Heun steps are far from converged (std off by several %), and the samples must match the
    exact moments of THAT discretisation: this fails for Euler steps or a wrong σ̃ ↔ t map."""
    for x in shared_grid_samples.values():
        check_moments(x, S, edm_sigmas(8, 0.02, 30.0))


def test_heun_is_schedule_independent_in_sigma_tilde(shared_grid_samples):
    """Same σ̃ grid and key ⇒ the same x̃ path for vp, ve and linear (Karras et al. 2022, §3), up to float32."""
    xs = list(shared_grid_samples.values())
    for x in xs[1:]:
        np.testing.assert_allclose(x, xs[0], atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize("interpolant", [I.vp, I.ve(sigma_max=80.0), I.linear])
def test_heun_defaults_reproduce_gaussian_data(interpolant):
    """Default σ̃ range (vp: [σ̃(t_min), σ̃(1) ≈ 151]; ve: [0.01, 80]; linear: EDM's [0.002, 80]), N = 40.

    Tolerance: 5 MC SE plus the remaining discretisation + prior mismatch, bounded by the exact
    recursion (< 0.5% of s here) — and the recursion itself is checked to that level.
    """
    x, _ = sample_heun(gaussian(M, S).field(interpolant, "data"), interpolant, jax.random.key(1), (N, 2), prediction="data",
                       num_steps=40)
    se = 5 * S / np.sqrt(N)
    assert np.all(np.abs(np.asarray(jnp.mean(x, 0)) - M) < se + 0.005 * S + 0.01)
    assert np.all(np.abs(np.asarray(jnp.std(x, 0)) - S) < se / np.sqrt(2) + 0.005 * S)


def test_heun_churn_matches_the_exact_stochastic_recursion():
    """Stochastic churn (γ = √2 − 1 every step) on vp: the variance recursion with the added noise
    σ̂² − σ² before each step is exact for Gaussian data."""
    sig = edm_sigmas(12, 0.01, 100.0)
    x, stats = sample_heun(gaussian(M, S).field(I.vp, "data"), I.vp, jax.random.key(2), (N, 2), prediction="data",
                           num_steps=12, sigma_min=0.01, sigma_max=100.0, churn=100.0)
    assert stats["nfe"] == 23
    check_moments(x, S, sig, churn=100.0)


def test_heun_recovers_mixture_weights():
    """Two well-separated modes with weights 0.25 / 0.75 (MATH.md §9.2): the fraction of samples
    nearest each mode matches within 5 binomial SE; the per-mode spread matches s = 0.3."""
    mix = GaussianMixture.diagonal(jnp.array([0.25, 0.75]), jnp.array([[-2.0, 0.0], [2.0, 1.0]]), 0.3)
    x, _ = sample_heun(mix.field(I.vp, "noise"), I.vp, jax.random.key(3), (N, 2), prediction="noise", num_steps=40)
    left = np.asarray(x[:, 0] < 0)
    assert abs(left.mean() - 0.25) < 5 * np.sqrt(0.25 * 0.75 / N)
    # 5 SE of a std from ~3000 points ≈ 6.5%, + 1.5% discretisation (the Gaussian recursion for s = 0.3, N = 40)
    np.testing.assert_allclose(np.std(np.asarray(x)[~left], 0), [0.3, 0.3], rtol=0.08)


def test_bad_input_raises_clear_errors():
    fn = gaussian(M, S).field(I.vp, "score")
    with pytest.raises(ValueError, match="prediction="):
        sample_heun(fn, I.vp, jax.random.key(0), (4, 2), prediction="epsilon")
    with pytest.raises(ValueError, match="sigma_max=.*outside"):
        sample_heun(fn, I.ve, jax.random.key(0), (4, 2), prediction="score", sigma_max=500.0)
    with pytest.raises(ValueError, match="sigma_min=.*outside"):
        sample_heun(fn, I.ve, jax.random.key(0), (4, 2), prediction="score", sigma_min=1e-4)
    with pytest.raises(ValueError, match="shape"):
        sample_heun(fn, I.vp, jax.random.key(0), (4,), prediction="score")
    with pytest.raises(ValueError, match="churn"):
        sample_heun(fn, I.vp, jax.random.key(0), (4, 2), prediction="score", churn=-1.0)
    with pytest.raises(ValueError, match="num_steps"):
        sample_heun(fn, I.vp, jax.random.key(0), (4, 2), prediction="score", num_steps=0)
    bridge = I.Interpolant(lambda t: 1 - t, lambda t: t, lambda t: t * (1 - t), two_sided=True)
    with pytest.raises(ValueError, match="one-sided"):
        sample_heun(fn, bridge, jax.random.key(0), (4, 2), prediction="score")
