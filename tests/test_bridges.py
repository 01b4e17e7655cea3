"""Two-sided interpolants (MATH.md §10): presets, conversions, losses, samplers both ways, likelihood.

Oracles: Gaussian → Gaussian fields in closed form (float64 NumPy, MATH.md §10), mixture →
mixture marginals (``genjax.targets.Bridge``), the Gaussian OT map (``scipy.linalg.sqrtm``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import genjax
from genjax import interpolants as I
from genjax import targets as T
from genjax.losses import interpolant_loss
from genjax.model import Heads
from genjax.samplers import sample_ode, sample_sde

M0, S0 = np.array([0.0, 1.0]), np.array([[1.0, 0.6], [0.6, 0.8]])
M1, S1 = np.array([2.0, -1.0]), np.array([[0.5, -0.2], [-0.2, 1.5]])
RHO0 = T.GaussianMixture.create(np.ones(1), M0[None], S0[None])
RHO1 = T.GaussianMixture.create(np.ones(1), M1[None], S1[None])
BROWNIAN = I.bridge(path="trig", gamma="brownian", a=0.5)


def gaussian_fields(ip, t, x):
    """MATH.md §10 in float64: ``b* = α̇μ0+β̇μ1 + (Σ̇_t/2)Σ_t⁻¹(x−μ_t)``, ``η* = γΣ_t⁻¹(x−μ_t)``, ``s* = −Σ_t⁻¹(x−μ_t)``,
    and the endpoint predictions ``E[x0|x_t]``, ``E[x1|x_t]``."""
    (a, b, g), (da, db, dg) = (np.array([float(v) for v in f(jnp.float32(t))], np.float64)
                               for f in (ip.coefficients, ip.derivatives))
    mu = a * M0 + b * M1
    cov = a**2 * S0 + b**2 * S1 + g**2 * np.eye(2)
    half_dcov = a * da * S0 + b * db * S1 + g * dg * np.eye(2)
    u = np.linalg.solve(cov, x - mu)
    return {"velocity": da * M0 + db * M1 + half_dcov @ u, "noise": g * u, "score": -u,
            "x0": M0 + a * S0 @ u, "x1": M1 + b * S1 @ u, "coef": (a, b, g, da, db, dg)}


@pytest.mark.parametrize("t", [0.05, 0.5, 0.9])
def test_gaussian_fields_and_two_sided_relations(t):
    x = np.array([0.7, -0.4])
    want = gaussian_fields(BROWNIAN, t, x)
    bridge = T.Bridge(RHO0, RHO1, BROWNIAN)
    for name in ("velocity", "noise", "score"):
        np.testing.assert_allclose(bridge.field(name)(jnp.float32(t), jnp.asarray(x, jnp.float32)), want[name],
                                   rtol=2e-4, atol=2e-5)
    a, b, g, da, db, dg = want["coef"]
    # the minus sign: b = E[α̇x0 + β̇x1 | x_t] − γγ̇ s
    np.testing.assert_allclose(da * want["x0"] + db * want["x1"] - g * dg * want["score"], want["velocity"], rtol=1e-10)
    # convert: (x̂0, η) → b, (b, η) → x̂0, η ↔ s
    xt, tt = jnp.asarray(x, jnp.float32), jnp.float32(t)
    as32 = lambda *v: tuple(jnp.asarray(u, jnp.float32) for u in v)  # noqa: E731
    got_b = genjax.convert(as32(want["x0"], want["noise"]), ("data", "noise"), "velocity", BROWNIAN, tt, xt)
    np.testing.assert_allclose(got_b, want["velocity"], rtol=2e-4, atol=2e-5)
    got_x0 = genjax.convert(as32(want["velocity"], want["noise"]), ("velocity", "noise"), "data", BROWNIAN, tt, xt)
    np.testing.assert_allclose(got_x0, want["x0"], rtol=2e-4, atol=2e-5)
    got_b = genjax.convert(as32(want["x0"], want["score"]), ("data", "score"), "velocity", BROWNIAN, tt, xt)
    np.testing.assert_allclose(got_b, want["velocity"], rtol=2e-4, atol=2e-5)
    got_s = genjax.convert(as32(want["velocity"], want["noise"]), ("velocity", "noise"), "score", BROWNIAN, tt, xt)
    np.testing.assert_allclose(got_s, want["score"], rtol=2e-4, atol=2e-5)


def test_latent_free_bridge_converts_data_to_velocity():
    ip = I.bridge(path="trig")
    t, x = 0.4, np.array([0.3, 0.2])
    a, b = np.cos(np.pi * t / 2), np.sin(np.pi * t / 2)
    da, db = -np.pi / 2 * b, np.pi / 2 * a
    cov = a**2 * S0 + b**2 * S1
    u = np.linalg.solve(cov, x - a * M0 - b * M1)
    x0, x1 = M0 + a * S0 @ u, M1 + b * S1 @ u
    got = genjax.convert(jnp.asarray(x0, jnp.float32), "data", "velocity", ip, jnp.float32(t), jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(got, da * x0 + db * x1, rtol=1e-4, atol=1e-5)
    assert I.latent_free(ip) and not I.latent_free(BROWNIAN)


@pytest.mark.parametrize("gamma", I.GAMMAS)
@pytest.mark.parametrize("path", ["linear", "trig"])
def test_bridge_presets(path, gamma):
    ip = I.bridge(path=path, gamma=gamma, a=0.7)
    assert ip.two_sided and I.check_interpolant(ip) is ip
    ts = jnp.linspace(max(ip.t_min, 0.01), min(ip.t_max, 0.99), 9)
    np.testing.assert_allclose(jax.vmap(ip.derivatives)(ts), jax.vmap(ip.jvp_derivatives)(ts), rtol=1e-4, atol=1e-5)
    g = {"none": 0.0 * ts, "brownian": np.sqrt(0.7 * ts * (1 - ts)), "quadratic": 0.7 * ts * (1 - ts),
         "sin2": 0.7 * np.sin(np.pi * ts) ** 2}[gamma]
    np.testing.assert_allclose(jax.vmap(ip.gamma)(ts), g, rtol=1e-5, atol=1e-7)
    assert (ip.t_min, ip.t_max) == ((1e-3, 1 - 1e-3) if gamma == "brownian" else (0.0, 1.0))


def test_presets_with_equal_parameters_are_one_object():
    """Samplers hash the interpolant: rebuilding a preset with the same parameters must not recompile them."""
    assert I.bridge(gamma="brownian", a=0.25) is I.bridge(a=0.25, gamma="brownian")
    assert I.vp(beta_max=10.0) is I.vp(beta_max=10.0) and I.vp(beta_max=10.0) is not I.vp(beta_max=12.0)
    sb = genjax.couplings.schrodinger_bridge(0.5)
    assert sb.interpolant is genjax.couplings.schrodinger_bridge(0.5).interpolant


def test_bridge_preset_errors():
    for kwargs, match in [({"path": "cubic"}, "path"), ({"gamma": "bm"}, "gamma"), ({"a": 0.0}, "a=0.0")]:
        with pytest.raises(ValueError, match=match):
            I.bridge(**kwargs)


def test_path_samples_match_the_bridge_marginal():
    """x_t = α x0 + β x1 + γ z drawn through the loss's path has the mixture marginal's mean and covariance."""
    n, t = 20000, 0.35
    k0, k1, kz = jax.random.split(jax.random.key(0), 3)
    x0, x1 = RHO0.sample(k0, n), RHO1.sample(k1, n)
    z = jax.random.normal(kz, x0.shape)
    xt = np.asarray(jax.vmap(lambda a, b, c: BROWNIAN.sample_path(a, jnp.float32(t), c, b))(x0, x1, z), np.float64)
    marg = T.Bridge(RHO0, RHO1, BROWNIAN).marginal(jnp.float32(t))
    cov = np.asarray(marg.covs[0], np.float64)
    se = np.sqrt(np.diag(cov) / n)
    np.testing.assert_array_less(np.abs(xt.mean(0) - np.asarray(marg.means[0])), 4 * se)
    np.testing.assert_allclose(np.cov(xt.T), cov, atol=4 * np.sqrt(2 / n) * np.max(np.diag(cov)))


def test_heads_loss_and_antithetic_are_unbiased():
    """The two-head loss is the sum of the single losses; the antithetic loss has the same mean (MATH.md §10)."""
    n = 4000
    k0, k1 = jax.random.split(jax.random.key(1))
    x0, x1 = RHO0.sample(k0, n), RHO1.sample(k1, n)
    b_model = lambda t, x: 0.3 * x + t  # noqa: E731
    eta_model = lambda t, x: -0.2 * x  # noqa: E731
    key = jax.random.key(2)
    kw = dict(x1=x1)
    lb = interpolant_loss(b_model, BROWNIAN, x0, key, prediction="velocity", **kw)
    le = interpolant_loss(eta_model, BROWNIAN, x0, key, prediction="noise", **kw)
    both = interpolant_loss(Heads(b_model, eta_model), BROWNIAN, x0, key, prediction=("velocity", "noise"), **kw)
    np.testing.assert_allclose(both, lb + le, rtol=1e-5)
    anti = interpolant_loss(b_model, BROWNIAN, x0, key, prediction="velocity", antithetic=True, **kw)
    diff = np.asarray(anti - lb)
    assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(n)


def test_antithetic_removes_the_gamma_dot_gradient_noise():
    """Near t = 0 with γ = sqrt(a t(1−t)) the plain b-loss gradient has O(γ̇) noise; antithetic leaves O(γγ̇) = O(1)."""
    n = 2000
    k0, k1 = jax.random.split(jax.random.key(3))
    x0, x1 = RHO0.sample(k0, n), RHO1.sample(k1, n)

    def grad_std(t, antithetic):
        def per_sample_grad(w):
            return jax.jacobian(lambda w: interpolant_loss(lambda s, x: w * x, BROWNIAN, x0, jax.random.key(4),
                                                           prediction="velocity", x1=x1, antithetic=antithetic,
                                                           time_sampling=lambda k: t))(w)
        return float(jnp.std(per_sample_grad(jnp.float32(0.5))))

    times = (1e-5, 1e-3)
    plain = [grad_std(t, False) for t in times]
    anti = [grad_std(t, True) for t in times]
    dgamma = [float(BROWNIAN.derivatives(jnp.float32(t))[2]) for t in times]
    # plain: the std tracks γ̇ (ratio 10 between the two times); antithetic: the same at both (O(1))
    np.testing.assert_allclose(plain[0] / plain[1], dgamma[0] / dgamma[1], rtol=0.1)
    np.testing.assert_allclose(anti[0] / anti[1], 1.0, rtol=0.05)
    assert anti[0] < plain[0] / 20


def test_two_sided_loss_and_sampler_errors():
    x0 = jnp.ones((4, 2))
    with pytest.raises(ValueError, match="tuple of distinct names"):
        interpolant_loss(Heads(lambda t, x: x, lambda t, x: x), BROWNIAN, x0, jax.random.key(0),
                         prediction=("velocity", "velocity"), x1=x0)
    with pytest.raises(ValueError, match="several heads are for two-sided"):
        interpolant_loss(Heads(lambda t, x: x, lambda t, x: x), I.linear, x0, jax.random.key(0),
                         prediction=("velocity", "noise"))
    with pytest.raises(ValueError, match="tuple of 2 arrays"):
        interpolant_loss(lambda t, x: x, BROWNIAN, x0, jax.random.key(0), prediction=("velocity", "noise"), x1=x0)
    with pytest.raises(ValueError, match="pass x_init"):
        sample_ode(lambda t, x: x, BROWNIAN, jax.random.key(0), (4, 2), prediction="velocity")
    with pytest.raises(ValueError, match="no default ε"):
        sample_sde(Heads(lambda t, x: x, lambda t, x: x), BROWNIAN, jax.random.key(0), x_init=x0,
                   prediction=("velocity", "noise"))
    with pytest.raises(ValueError, match="learn the denoiser"):
        sample_sde(lambda t, x: x, BROWNIAN, jax.random.key(0), x_init=x0, prediction="velocity", diffusion=0.1)
    with pytest.raises(ValueError, match="base_log_prob"):
        genjax.log_likelihood(lambda t, x: x, BROWNIAN, x0, prediction="velocity")


def moments_close(x, mean, cov, n_se=5.0):
    """Mean within ``n_se`` standard errors; covariance entries within ``n_se`` SE of a Gaussian sample covariance."""
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    se_mean = np.sqrt(np.diag(cov) / n)
    np.testing.assert_array_less(np.abs(x.mean(0) - mean), n_se * se_mean)
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    np.testing.assert_array_less(np.abs(np.cov(x.T) - cov), n_se * se_cov)


N = 4000


@pytest.fixture(scope="module")
def ends():
    """Exact draws of the bridge marginal at t_min and t_max (BROWNIAN's γ(t_min) = 0.02, not 0)."""
    bridge = T.Bridge(RHO0, RHO1, BROWNIAN)
    k0, k1 = jax.random.split(jax.random.key(7))
    return bridge, bridge.marginal(BROWNIAN.t_min).sample(k0, N), bridge.marginal(BROWNIAN.t_max).sample(k1, N)


@pytest.mark.parametrize("forward", [True, False], ids=["forward", "backward"])
def test_ode_with_exact_b_transports_both_ways(ends, forward):
    bridge, x_lo, x_hi = ends
    ip = BROWNIAN
    start, end = (ip.t_min, ip.t_max) if forward else (ip.t_max, ip.t_min)
    xs, stats = sample_ode(bridge.field("velocity"), ip, x_init=x_lo if forward else x_hi, t_start=start, t_end=end,
                           prediction="velocity", rtol=1e-5, atol=1e-5)
    want = bridge.marginal(end)
    moments_close(xs, np.asarray(want.means[0]), np.asarray(want.covs[0], np.float64))
    assert int(stats["nfe"]) < 200


DIFFUSIONS = {"const": 0.3, "gamma2": lambda t: 2.0 * BROWNIAN.gamma(t) ** 2}


@pytest.mark.parametrize("diffusion", DIFFUSIONS, ids=list(DIFFUSIONS))
@pytest.mark.parametrize("forward", [True, False], ids=["forward", "backward"])
def test_sde_with_exact_heads_keeps_the_marginals(ends, forward, diffusion):
    """Forward ``b + εs`` and backward ``b − εs`` SDEs keep the bridge marginals for every ε(t) (MATH.md §10).

    400 Euler–Maruyama steps: the O(h) bias in the covariance is ~1e-3, below the 5-SE band (~0.05).
    """
    bridge, x_lo, x_hi = ends
    ip = BROWNIAN
    start, end = (ip.t_min, ip.t_max) if forward else (ip.t_max, ip.t_min)
    xs, _ = sample_sde(bridge.field(("velocity", "noise")), ip, jax.random.key(11), x_init=x_lo if forward else x_hi,
                       t_start=start, t_end=end, prediction=("velocity", "noise"), diffusion=DIFFUSIONS[diffusion],
                       num_steps=400)
    want = bridge.marginal(end)
    moments_close(xs, np.asarray(want.means[0]), np.asarray(want.covs[0], np.float64))


def _mixtures():
    rho0 = T.GaussianMixture.diagonal(np.ones(2), np.array([[-1.5, 0.0], [1.5, 0.5]]), 0.3)
    rho1 = T.GaussianMixture.diagonal(np.array([0.3, 0.3, 0.4]), np.array([[0.0, 2.0], [-2.0, -1.0], [2.0, -1.0]]),
                                      np.array([[0.4, 0.2], [0.3, 0.3], [0.2, 0.5]]))
    return rho0, rho1


@pytest.mark.parametrize("sampler", ["ode", "sde"])
def test_mixture_to_mixture_samplers_reproduce_the_target(sampler):
    """Backward from ρ1 to ρ0 with the exact K0·K1 fields: the samples' cross-entropy under ρ0 equals its entropy."""
    rho0, rho1 = _mixtures()
    ip = I.bridge(gamma="sin2", a=0.5)
    bridge = T.Bridge(rho0, rho1, ip)
    n = 2000
    x1 = rho1.sample(jax.random.key(5), n)
    if sampler == "ode":
        xs, _ = sample_ode(bridge.field("velocity"), ip, x_init=x1, prediction="velocity")
    else:
        xs, _ = sample_sde(bridge.field(("velocity", "score")), ip.replace(t_min=0.01, t_max=0.99), jax.random.key(6),
                           x_init=x1, prediction=("velocity", "score"), diffusion=0.2, num_steps=200)
    logp = np.asarray(jax.vmap(rho0.log_prob)(jnp.asarray(xs)), np.float64)
    entropy = float(rho0.entropy(jax.random.key(8), 200_000))
    # E_samples[−log ρ0] ≥ H(ρ0), equal iff samples ~ ρ0; MC SE ~ std(log p)/sqrt(n) ≈ 0.02
    se = logp.std() / np.sqrt(n)
    assert abs(-logp.mean() - entropy) < 4 * se + 0.01
    mode_mass = np.mean(np.asarray(xs)[:, 0] > 0)
    assert abs(mode_mass - 0.5) < 4 * np.sqrt(0.25 / n)


def test_likelihood_of_x1_under_known_rho0():
    """log ρ1(x1) = log ρ0(X(t_min)) − ∫ ∇·b dt along the ODE of the exact b (mixtures; exact divergence)."""
    rho0, rho1 = _mixtures()
    ip = I.bridge(gamma="sin2", a=0.5)
    x1 = rho1.sample(jax.random.key(9), 64)
    got = genjax.log_likelihood(T.Bridge(rho0, rho1, ip).field("velocity"), ip, x1, prediction="velocity",
                                x_at="t_max", base_log_prob=rho0.log_prob)
    np.testing.assert_allclose(got, jax.vmap(rho1.log_prob)(x1), atol=2e-3)


def test_ot_coupled_gaussian_ode_is_the_gaussian_ot_map():
    """With γ = 0 and the OT coupling x1 = μ1 + A(x0 − μ0), the ODE of b from x0 lands on T(x0) (Gaussian OT map)."""
    root = scipy.linalg.sqrtm(S0)
    inv_root = np.linalg.inv(root)
    A = np.real(inv_root @ scipy.linalg.sqrtm(root @ S1 @ root) @ inv_root)
    np.testing.assert_allclose(A @ S0 @ A.T, S1, atol=1e-10)  # A pushes Σ0 to Σ1, A symmetric positive
    ip = I.bridge()
    bridge = T.Bridge(RHO0, RHO1, ip, cross=jnp.asarray(S0 @ A, jnp.float32))
    x0 = RHO0.sample(jax.random.key(10), 256)
    xs, _ = sample_ode(bridge.field("velocity"), ip, x_init=x0, t_start=0.0, t_end=1.0, prediction="velocity")
    want = M1 + (np.asarray(x0, np.float64) - M0) @ A.T
    np.testing.assert_allclose(xs, want, atol=2e-3)


def test_sb_cfm_target_is_the_bridge_velocity_target():
    """SB-CFM (Tong et al. 2023) writes the target as x1 − x0 + ((1−2t)/(2t(1−t)))(x_t − μ_t); on the Brownian bridge of
    the same σ it is the loss's α̇x0 + β̇x1 + γ̇z (MATH.md §11), and ε = σ²/2 is the bridge SDE's diffusion."""
    sigma = 0.7
    sb = genjax.couplings.schrodinger_bridge(sigma)
    ip = sb.interpolant
    assert sb.epsilon == pytest.approx(2 * sigma**2) and sb.diffusion == pytest.approx(sigma**2 / 2)
    n = 64
    k0, k1 = jax.random.split(jax.random.key(12))
    x0, x1 = RHO0.sample(k0, n), RHO1.sample(k1, n)
    key = jax.random.key(13)
    # the loss's documented per-sample randomness: (k_t, k_z) = split(split(key, n)[i]), t ~ U(t_min, t_max)
    draws = [jax.random.split(k) for k in jax.random.split(key, n)]
    ts = np.array([float(jax.random.uniform(kt, (), minval=ip.t_min, maxval=ip.t_max)) for kt, _ in draws])
    zs = np.stack([np.asarray(jax.random.normal(kz, (2,))) for _, kz in draws]).astype(np.float64)
    x0n, x1n = np.asarray(x0, np.float64), np.asarray(x1, np.float64)
    mu = (1 - ts)[:, None] * x0n + ts[:, None] * x1n
    xts = mu + sigma * np.sqrt(ts * (1 - ts))[:, None] * zs
    target = x1n - x0n + ((1 - 2 * ts) / (2 * ts * (1 - ts)))[:, None] * (xts - mu)
    loss = interpolant_loss(lambda t, x: jnp.zeros_like(x), ip, x0, key, prediction="velocity", x1=x1)
    np.testing.assert_allclose(loss, np.sum(target**2, 1), rtol=2e-3)


def test_regression_of_the_targets_on_x_t_is_b_and_eta():
    """MATH.md 9.12: least squares of ẋ_t and z on (1, x_t) over draws (x0, x1, z) (exact for Gaussians: E[·|x_t] is
    affine) reproduces the closed-form b* and η* at test points."""
    n, t = 200_000, 0.3
    ip = BROWNIAN
    k0, k1, kz = jax.random.split(jax.random.key(14), 3)
    x0, x1 = (np.asarray(r.sample(k, n), np.float64) for r, k in ((RHO0, k0), (RHO1, k1)))
    z = np.asarray(jax.random.normal(kz, (n, 2)), np.float64)
    a, b, g, da, db, dg = gaussian_fields(ip, t, np.zeros(2))["coef"]
    xt = a * x0 + b * x1 + g * z
    design = np.concatenate([np.ones((n, 1)), xt], 1)
    coef_v, *_ = np.linalg.lstsq(design, da * x0 + db * x1 + dg * z, rcond=None)
    coef_z, *_ = np.linalg.lstsq(design, z, rcond=None)
    field = T.Bridge(RHO0, RHO1, ip).field(("velocity", "noise"))
    for x in ([0.5, 0.2], [2.0, -1.0], [1.0, 1.0]):
        b_code, eta_code = field(jnp.float32(t), jnp.asarray(x, jnp.float32))
        q = np.concatenate([[1.0], x])
        np.testing.assert_allclose(b_code, q @ coef_v, atol=0.02)  # MC SE of the fit ~ 3e-3
        np.testing.assert_allclose(eta_code, q @ coef_z, atol=0.01)


def test_b_transports_and_the_endpoint_velocity_does_not():
    """MATH.md §10: d/dt E‖x_t‖² = E[2 x_t·b(t, x_t)] for the code's b; E[α̇x0 + β̇x1 | x_t] = b + γγ̇ s misses it by
    2γγ̇ E[x·s] = −2dγγ̇ (the minus sign of b = E[α̇x0 + β̇x1 | x_t] − γγ̇ s)."""
    n, t, h = 400_000, 0.2, 1e-3
    ip = BROWNIAN

    def expected_square(s):  # E‖x_s‖² = ‖μ_s‖² + tr Σ_s, float64
        a, b, g = (float(v) for v in ip.coefficients(s))
        return float(np.sum((a * M0 + b * M1) ** 2) + np.trace(a**2 * S0 + b**2 * S1) + 2 * g**2)

    a, b, g = (float(v) for v in ip.coefficients(t))
    want = (expected_square(t + h) - expected_square(t - h)) / (2 * h)
    xs = T.Bridge(RHO0, RHO1, ip).marginal(jnp.float32(t)).sample(jax.random.key(15), n)
    b_field, s_field = (jax.vmap(T.Bridge(RHO0, RHO1, ip).field(name), (None, 0)) for name in ("velocity", "score"))
    xb = np.asarray(jnp.sum(2 * xs * b_field(jnp.float32(t), xs), 1), np.float64)
    xs_s = np.asarray(jnp.sum(xs * s_field(jnp.float32(t), xs), 1), np.float64)
    assert abs(xb.mean() - want) < 4 * xb.std() / np.sqrt(n)
    gdg = g * float(ip.derivatives(jnp.float32(t))[2])
    assert abs(xs_s.mean() + 2) < 4 * xs_s.std() / np.sqrt(n)  # E[x·s] = −d
    se = xb.std() / np.sqrt(n)
    endpoint = xb.mean() + 2 * gdg * xs_s.mean()
    assert abs(endpoint - want + 4 * gdg) < 4 * se + 0.01 and 4 * gdg > 40 * se  # off by −2dγγ̇ = −0.6 (d = 2)
