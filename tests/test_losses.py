"""Oracle 3 (MATH.md §9.3): the interpolant loss equals the published losses on the same keys."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import interpolants as I
from genjax.losses import interpolant_loss

N, D = 64, 3
X0 = jax.random.normal(jax.random.key(11), (N, D)) * 2.0 + 1.0
KEY = jax.random.key(5)


def model(t, x):
    """An arbitrary smooth per-sample 'network' (the identity of the model does not matter)."""
    return jnp.tanh(x * (1.0 + t)) - 0.3 * t * x[::-1]


def per_sample_draws(key, n, time_fn):
    """The documented RNG protocol: k_i = split(key, n)[i]; (k_t, k_z) = split(k_i)."""
    ts, zs = [], []
    for k in jax.random.split(key, n):
        kt, kz = jax.random.split(k)
        ts.append(time_fn(kt))
        zs.append(jax.random.normal(kz, (D,)))
    return np.array(ts), np.array(zs)


def test_ddpm_noise_discrete_equals_L_simple():
    """L_simple = ‖ε − ε_θ(sqrt(ᾱ_i) x0 + sqrt(1−ᾱ_i) ε, i/T)‖², i ~ U{1..T} (Ho et al. 2020)."""
    T = 1000
    abar = np.cumprod(1.0 - np.linspace(1e-4, 0.02, T))  # ᾱ_1..ᾱ_T
    ii, eps = per_sample_draws(KEY, N, lambda k: int(jax.random.randint(k, (), 1, T + 1)))
    x0 = np.asarray(X0)
    xt = np.sqrt(abar[ii - 1])[:, None] * x0 + np.sqrt(1 - abar[ii - 1])[:, None] * eps
    pred = np.stack([np.asarray(model(jnp.float32(i / T), jnp.asarray(x, jnp.float32))) for i, x in zip(ii, xt)])
    want = np.sum((eps - pred) ** 2, axis=1)
    got = interpolant_loss(model, I.ddpm, X0, KEY, prediction="noise", time_sampling="discrete")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_linear_velocity_equals_cfm():
    """CFM with data at t=0: ‖v_θ((1−t) x0 + t ε, t) − (ε − x0)‖², t ~ U(0, 1)."""
    ts, eps = per_sample_draws(KEY, N, lambda k: float(jax.random.uniform(k, ())))
    x0 = np.asarray(X0)
    xt = (1 - ts)[:, None] * x0 + ts[:, None] * eps
    pred = np.stack([np.asarray(model(jnp.float32(t), jnp.asarray(x, jnp.float32))) for t, x in zip(ts, xt)])
    want = np.sum((pred - (eps - x0)) ** 2, axis=1)
    got = interpolant_loss(model, I.linear, X0, KEY, prediction="velocity")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_vp_score_sigma2_equals_eps_loss():
    """σ² ‖s_θ + ε/σ‖² = ‖ε − ε_θ‖² with ε_θ = −σ s_θ (Song et al. 2021), t ~ U(t_min, 1)."""
    score_model = model
    eps_model = lambda t, x: -I.vp.sigma(t) * score_model(t, x)  # noqa: E731
    a = interpolant_loss(score_model, I.vp, X0, KEY, prediction="score", weighting="sigma2")
    b = interpolant_loss(eps_model, I.vp, X0, KEY, prediction="noise", weighting="unit")
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # and against an independent closed-form VP path
    ts, eps = per_sample_draws(KEY, N, lambda k: float(jax.random.uniform(k, (), minval=1e-5, maxval=1.0)))
    B = 0.1 * ts + 0.5 * 19.9 * ts**2
    alpha, sigma = np.exp(-0.5 * B), np.sqrt(1 - np.exp(-B))
    xt = alpha[:, None] * np.asarray(X0) + sigma[:, None] * eps
    pred = np.stack([np.asarray(eps_model(jnp.float32(t), jnp.asarray(x, jnp.float32))) for t, x in zip(ts, xt)])
    np.testing.assert_allclose(a, np.sum((eps - pred) ** 2, axis=1), rtol=2e-3, atol=1e-4)


def test_exact_field_minimises_the_loss():
    """For Gaussian data the exact velocity E[ẋ_t|x_t] gives a lower loss than a perturbed field."""
    from genjax.targets import gaussian

    g = gaussian([1.0, -2.0, 0.5], [0.5, 2.0, 1.0])
    x0 = g.sample(jax.random.key(3), 4000)
    exact = g.field(I.trig, "velocity")
    perturbed = lambda t, x: exact(t, x) + 0.2  # noqa: E731
    l_exact = interpolant_loss(exact, I.trig, x0, KEY, prediction="velocity").mean()
    l_pert = interpolant_loss(perturbed, I.trig, x0, KEY, prediction="velocity").mean()
    # E‖v + c − target‖² = E‖v − target‖² + ‖c‖² exactly in expectation (cross term has mean 0).
    np.testing.assert_allclose(l_pert - l_exact, 3 * 0.2**2, rtol=0.15)


def test_two_sided_targets():
    ip = I.Interpolant(lambda t: 1 - t, lambda t: t, lambda t: jnp.sqrt(2 * t * (1 - t)), two_sided=True,
                       t_min=1e-3, t_max=1 - 1e-3)
    x1 = jax.random.normal(jax.random.key(9), (N, D)) + 4.0
    ts, zs = per_sample_draws(KEY, N, lambda k: float(jax.random.uniform(k, (), minval=1e-3, maxval=1 - 1e-3)))
    x0, x1n = np.asarray(X0), np.asarray(x1)
    g = np.sqrt(2 * ts * (1 - ts))
    dg = (1 - 2 * ts) / np.sqrt(2 * ts * (1 - ts))
    xt = (1 - ts)[:, None] * x0 + ts[:, None] * x1n + g[:, None] * zs
    pred = np.stack([np.asarray(model(jnp.float32(t), jnp.asarray(x, jnp.float32))) for t, x in zip(ts, xt)])
    target = x1n - x0 + dg[:, None] * zs
    got = interpolant_loss(model, ip, X0, KEY, prediction="velocity", x1=x1)
    np.testing.assert_allclose(got, np.sum((pred - target) ** 2, 1), rtol=1e-3, atol=1e-3)
    got_eta = interpolant_loss(model, ip, X0, KEY, prediction="noise", x1=x1)
    np.testing.assert_allclose(got_eta, np.sum((pred - zs) ** 2, 1), rtol=1e-3, atol=1e-3)


def test_loss_is_jittable_and_differentiable():
    f = jax.jit(lambda c: interpolant_loss(lambda t, x: c * x, I.linear, X0, KEY, prediction="velocity").mean())
    assert np.isfinite(float(f(0.5)))
    assert np.isfinite(float(jax.grad(lambda c: f(c))(0.5)))


def test_bad_input():
    with pytest.raises(ValueError, match="prediction"):
        interpolant_loss(model, I.linear, X0, KEY, prediction="epsilon")
    with pytest.raises(ValueError, match="weighting"):
        interpolant_loss(model, I.linear, X0, KEY, prediction="velocity", weighting="snr^2")
    with pytest.raises(ValueError, match="time_sampling"):
        interpolant_loss(model, I.linear, X0, KEY, prediction="velocity", time_sampling="beta")
    with pytest.raises(ValueError, match="num_steps"):
        interpolant_loss(model, I.linear, X0, KEY, prediction="velocity", time_sampling="discrete")
    with pytest.raises(ValueError, match="x0 must be a batch"):
        interpolant_loss(model, I.linear, X0[0], KEY, prediction="velocity")
    with pytest.raises(ValueError, match="NaN"):
        interpolant_loss(model, I.linear, X0.at[3, 1].set(jnp.nan), KEY, prediction="velocity")
    with pytest.raises(ValueError, match="per-sample shape and dtype"):
        interpolant_loss(lambda t, x: x[:2], I.linear, X0, KEY, prediction="velocity")
    with pytest.raises(ValueError, match="x1 must have the shape"):
        interpolant_loss(model, I.linear, X0, KEY, prediction="velocity", x1=X0[:, :2])
