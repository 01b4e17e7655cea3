"""Consistency models (MATH.md §13, oracles §9.16) against closed forms.

Gaussian data ``N(m, s²)`` on a one-sided path has the linear PF-ODE map
``φ_{t→r}(x) = α_r m + (std_r/std_t)(x − α_t m)`` (``genjax.targets.gaussian_flow_map``), so the
exact consistency function is ``f*(x, t) = φ_{t→t_min}(x)``; the scalings, grid, index law and
distances are checked against formulas written here in float64 NumPy.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax import interpolants as I
from genjax.distill.consistency import (ConsistencyModel, consistency_times, ict_num_scales, ict_stages,
                                        sample_consistency, train_consistency)
from genjax.losses.consistency import (consistency_grid, consistency_loss, consistency_scalings, index_probabilities,
                                       pseudo_huber, sample_index, teacher_step)
from genjax.model import Model
from genjax.nets.mlp import TimeMLP
from genjax.targets import gaussian, gaussian_flow_map

M, S = 1.0, 0.5  # data N(M, S²) in 1-D
SD = 0.5  # σ_d
KEY = jax.random.key(0)
PRESETS = (I.linear, I.vp, I.ve, I.cosine, I.trig)


def scales64(ip, t):
    """``(α, σ)`` in float64 (the closed forms evaluated by NumPy through the preset's jnp functions)."""
    return float(ip.alpha(jnp.float32(t))), float(ip.sigma(jnp.float32(t)))


def spec_scalings(ip, t):
    """MATH.md §13 scalings from ``σ̃ = σ/α`` (limits (0, σ_d, 0) where α = 0)."""
    a, s = scales64(ip, t)
    a0, s0 = scales64(ip, ip.t_min)
    if a <= 0:
        return 0.0, SD, 0.0
    sig, sig0 = s / a, s0 / a0
    return (SD**2 / ((sig - sig0) ** 2 + SD**2), SD * (sig - sig0) / math.sqrt(SD**2 + sig**2),
            1 / math.sqrt(sig**2 + SD**2))


def f_star(ip):
    """The exact consistency function of N(M, S²) data."""
    return lambda t, x: gaussian_flow_map(ip, M, S, t, ip.t_min, x)


# ----------------------------------------------------------------------------- 1. parameterisation


@pytest.fixture(scope="module")
def random_net():
    net = TimeMLP(hidden=(16, 16))
    x = 3.0 * jax.random.normal(jax.random.key(1), (32, 3))
    return Model(net.apply, net.init(jax.random.key(2), 0.5, x[0])), x


@pytest.mark.parametrize("ip", PRESETS, ids=lambda ip: ip.name)
def test_boundary_condition_is_exact(ip, random_net):
    """c_skip(t_min) = 1, c_out(t_min) = 0 and f(x, t_min) = x bit for bit, for a random net (§9.16)."""
    net, x = random_net
    c_skip, c_out, c_in = consistency_scalings(ip, ip.t_min)
    assert float(c_skip) == 1.0 and float(c_out) == 0.0
    cm = ConsistencyModel(net, ip)
    np.testing.assert_array_equal(jax.vmap(lambda x: cm(ip.t_min, x))(x), x)
    # and inside the interval the scalings follow MATH.md §13 (float32 rounding of σ̃: rtol 1e-5)
    for t in (0.5 * (ip.t_min + ip.t_max), ip.t_max):
        np.testing.assert_allclose([float(v) for v in consistency_scalings(ip, t)], spec_scalings(ip, t),
                                   rtol=1e-5, atol=1e-7)


def test_parameterisation_matches_formula():
    """f = α(t_min)[c_skip x̃ + c_out F(t, c_in x̃)], x̃ = x/α, with a known F, at interior times (float64 oracle)."""
    F = lambda t, u: jnp.sin(3.0 * u) + t  # noqa: E731
    x = np.linspace(-2.0, 2.0, 7).reshape(7, 1).astype(np.float32)
    for ip in (I.vp, I.ve, I.linear):
        cm = ConsistencyModel(F, ip)
        for t in (0.05, 0.4, 0.9):
            a, _ = scales64(ip, t)
            a0, _ = scales64(ip, ip.t_min)
            c_skip, c_out, c_in = spec_scalings(ip, t)
            xt = x.astype(np.float64) / a
            want = a0 * (c_skip * xt + c_out * (np.sin(3.0 * c_in * xt) + t))
            got = jax.vmap(lambda xx: cm(jnp.float32(t), xx))(x)
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    # α(1) = 0 on linear: σ̃ = ∞, f = α(0) σ_d F(1, x/σ) (the finite limit)
    got = jax.vmap(lambda xx: ConsistencyModel(F, I.linear)(jnp.float32(1.0), xx))(x)
    np.testing.assert_allclose(got, SD * (np.sin(3.0 * x) + 1.0), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- grid and index law


def karras(n, lo, hi, rho=7.0):
    """The ρ-grid, increasing, float64."""
    i = np.arange(n) / (n - 1)
    return (lo ** (1 / rho) + i * (hi ** (1 / rho) - lo ** (1 / rho))) ** rho


def test_grid_matches_closed_form_inverses():
    """ve: t = log(σ̃/σ_min)/log(σ_max/σ_min); linear: t = σ̃/(1 + σ̃) from 0.002, with t_1 = t_min = 0 exactly."""
    ip = I.ve(sigma_max=20.0)
    ts, sig = consistency_grid(ip, 12)
    want = karras(12, 0.01, 20.0)
    np.testing.assert_allclose(sig, want, rtol=3e-6)  # edm_sigmas runs in float32
    np.testing.assert_allclose(ts, np.log(want / 0.01) / np.log(2000.0), atol=2e-6)  # bisection in float32
    assert ts[0] == 0.0 and ts[-1] == 1.0
    ts, sig = consistency_grid(I.linear, 12)
    want = karras(12, 0.002, 80.0)
    assert ts[0] == 0.0 and sig[0] == 0.0
    np.testing.assert_allclose(sig[1:], want[1:], rtol=3e-6)
    np.testing.assert_allclose(ts[1:], want[1:] / (1 + want[1:]), atol=2e-6)


def erf_probabilities(sigmas, p_mean=-1.1, p_std=2.0):
    cdf = [math.erf((math.log(s) - p_mean) / (math.sqrt(2) * p_std)) if s > 0 else -1.0 for s in sigmas]
    p = np.diff(cdf)
    return p / p.sum()


@pytest.mark.parametrize("ip", (I.vp, I.linear), ids=lambda ip: ip.name)
def test_lognormal_index_law(ip):
    """Index counts vs the improved-CT erf law; Pearson χ² against its (k − 1)-dof mean + 5 sd."""
    _, sig = consistency_grid(ip, 12)
    p = erf_probabilities(sig)
    np.testing.assert_allclose(index_probabilities(sig, "lognormal"), p, rtol=1e-12)
    n = 200_000
    draws = jax.jit(jax.vmap(sample_index, (0, None)))(jax.random.split(KEY, n), jnp.log(jnp.asarray(p, jnp.float32)))
    counts = np.bincount(np.asarray(draws), minlength=p.size)
    expected = n * p
    keep = expected >= 5
    chi2 = np.sum((counts[keep] - expected[keep]) ** 2 / expected[keep]) + (
        (counts[~keep].sum() - expected[~keep].sum()) ** 2 / max(expected[~keep].sum(), 1e-9) if (~keep).any() else 0)
    dof = keep.sum() - (0 if (~keep).any() else 1)
    assert chi2 < dof + 5 * math.sqrt(2 * dof), (chi2, dof)
    np.testing.assert_allclose(index_probabilities(sig, "uniform"), np.full(11, 1 / 11))


def test_ict_curriculum():
    """N(k) = min(s0 2^{⌊k/K'⌋}, s1) + 1, K' = ⌊K/(log2⌊s1/s0⌋ + 1)⌋, at the stage boundaries."""
    # K = 800, s0 = 10, s1 = 1280: K' = 800/8 = 100
    want = {0: 11, 99: 11, 100: 21, 199: 21, 200: 41, 600: 641, 699: 641, 700: 1281, 799: 1281}
    assert {k: ict_num_scales(k, 800) for k in want} == want
    # s1/s0 = 100: K' = ⌊800/(log2 100 + 1)⌋ = ⌊104.66⌋ = 104; the cap s1 = 1000 binds from 7 K'
    want = {103: 11, 104: 21, 623: 321, 624: 641, 727: 641, 728: 1001, 799: 1001}
    assert {k: ict_num_scales(k, 800, 10, 1000) for k in want} == want
    stages = ict_stages(800, 10, 1000)
    assert stages[0][0] == 0 and stages[-1][1] == 800
    assert all(a[1] == b[0] for a, b in zip(stages, stages[1:]))
    for start, end, n in stages:
        assert ict_num_scales(start, 800, 10, 1000) == n == ict_num_scales(end - 1, 800, 10, 1000)
    assert [n for *_, n in stages] == [11, 21, 41, 81, 161, 321, 641, 1001]


# ----------------------------------------------------------------------------- distances and targets


def test_pseudo_huber_formula_and_limits():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 5))
    c = 0.3
    delta2 = np.sum((a - b) ** 2)
    np.testing.assert_allclose(pseudo_huber(jnp.asarray(a), jnp.asarray(b), c), math.sqrt(delta2 + c**2) - c,
                               rtol=1e-6)
    u = rng.normal(size=5)
    small, large = 1e-3 * c * u / np.linalg.norm(u), 1e4 * c * u / np.linalg.norm(u)
    zero = jnp.zeros(5)
    # ‖δ‖ = 1e-3 c: ½‖δ‖²/c to relative O(‖δ‖²/c²) = 1e-6 (the form without cancellation keeps it in float32)
    np.testing.assert_allclose(pseudo_huber(jnp.asarray(small), zero, c), 0.5 * (1e-3 * c) ** 2 / c, rtol=1e-5)
    # ‖δ‖ = 1e4 c: ‖δ‖ − c to relative O(c/‖δ‖)² ~ 1e-8, float32: 1e-6
    np.testing.assert_allclose(pseudo_huber(jnp.asarray(large), zero, c), 1e4 * c - c, rtol=1e-6)


def test_ct_target_uses_the_same_noise_and_stops_the_target_gradient():
    """CT: x_{t_{n+1}} = α x0 + σ z and x̂_{t_n} = α(t_n) x0 + σ(t_n) z with the same x0, z (per-sample keys);
    λ = 1/(σ̃_{n+1} − σ̃_n); the gradient flows only through f_θ(x_{t_{n+1}}) (θ⁻ = sg(θ)); and the default
    pseudo-Huber metric with c = 0.00054 sqrt(d) on the same draws."""
    ip, n_scales, n = I.ve(sigma_max=20.0), 9, 32
    x0 = np.asarray(M + S * jax.random.normal(jax.random.key(4), (n, 2)), np.float64)
    sig = karras(n_scales, 0.01, 20.0)
    ts = np.log(sig / 0.01) / np.log(2000.0)
    apply = lambda th, t, x: th * jnp.sin(x) * (1 + t) + t * x  # noqa: E731
    theta = 0.7
    loss = lambda th: consistency_loss(Model(apply, th), ip, x0.astype(np.float32), KEY, num_scales=n_scales,  # noqa: E731
                                       metric="l2", noise="uniform")
    k_n, k_z = jax.vmap(jax.random.split, out_axes=1)(jax.random.split(KEY, n))
    j = np.asarray(jax.vmap(lambda k: jax.random.categorical(k, jnp.zeros(n_scales - 1)))(k_n))
    z = np.asarray(jax.vmap(lambda k: jax.random.normal(k, (2,)))(k_z), np.float64)
    t_lo, t_hi = ts[j][:, None], ts[j + 1][:, None]
    x_hi, x_lo = x0 + sig[j + 1][:, None] * z, x0 + sig[j][:, None] * z  # α = 1, σ = σ̃ on ve
    f_hi = theta * np.sin(x_hi) * (1 + t_hi) + t_hi * x_hi
    f_lo = theta * np.sin(x_lo) * (1 + t_lo) + t_lo * x_lo
    lam = 1 / (sig[j + 1] - sig[j])
    want = lam * np.sum((f_hi - f_lo) ** 2, 1)
    grad = np.mean(lam * 2 * np.sum((f_hi - f_lo) * np.sin(x_hi) * (1 + t_hi), 1))
    huber = lambda th: consistency_loss(Model(apply, th), ip, x0.astype(np.float32), KEY, num_scales=n_scales,  # noqa: E731
                                        noise="uniform")
    (_, (per_sample, ph)), g = jax.jit(jax.value_and_grad(lambda th: (loss(th).mean(), (loss(th), huber(th))),
                                                          has_aux=True))(jnp.float32(theta))
    np.testing.assert_allclose(per_sample, want, rtol=2e-4)  # grid times: bisection in float32
    np.testing.assert_allclose(g, grad, rtol=2e-4)
    # the default metric on the same draws: λ (sqrt(‖·‖² + c²) − c) with c = 0.00054 sqrt(d), d = 2
    c = 0.00054 * math.sqrt(2)
    np.testing.assert_allclose(ph, lam * (np.sqrt(want / lam + c**2) - c), rtol=2e-4)


def test_teacher_step_local_order():
    """One teacher step vs the exact Gaussian flow map (linear path): local error O(Δ³) for Heun, O(Δ²) for
    Euler, log2 error ratios per halving of Δ within 0.4 of the order (measured 3.08–3.12 and 2.0)."""
    ip, deltas = I.linear, (0.2, 0.1, 0.05)
    field = gaussian([M, M], [S, S]).field(ip, "velocity")
    x, t = jnp.array([0.3, -1.1]), 0.7
    for solver, order in (("heun", 3), ("euler", 2)):
        step = jax.jit(lambda r: teacher_step(field, ip, x, t, r, prediction="velocity", solver=solver))
        errs = np.array([float(jnp.max(jnp.abs(step(t - d) - gaussian_flow_map(ip, M, S, t, t - d, x))))
                         for d in deltas])
        slopes = np.log2(errs[:-1] / errs[1:])
        assert np.all(np.abs(slopes - order) < 0.4), (solver, errs, slopes)


def test_cd_loss_of_exact_consistency_function_vanishes():
    """CD with the exact teacher and f = f*: the loss is (std_min/std_{t_n})² × the teacher's squared local
    error, O(Δ⁶) for Heun: it falls ≥ 16× per doubling of N (measured 24–120× on linear and vp) and tends to 0.
    Here on vp with a noise-predicting teacher (converted to the velocity field)."""
    x0 = M + S * jax.random.normal(jax.random.key(5), (2000, 1))

    def mean_loss(ip, n, prediction="velocity"):
        teacher = gaussian(M, S).field(ip, prediction)
        loss = jax.jit(lambda x0, key: jnp.mean(consistency_loss(
            f_star(ip), ip, x0, key, num_scales=n, teacher=teacher, teacher_prediction=prediction, metric="l2",
            weighting="unit")))
        return float(loss(x0, KEY))

    means = [mean_loss(I.vp, n, "noise") for n in (8, 32)]  # measured 1.6e-3, 2.6e-7 (velocity teacher: same)
    assert means[0] / means[1] > 16**2 and means[1] < 1e-6, means


# ----------------------------------------------------------------------------- 7. sampling


def exact_consistency_model(ip):
    """A ConsistencyModel whose net F makes f = f* exactly for t > t_min (F solved from the §13 formula)."""

    def F(t, u):
        a, s = ip.alpha(t), ip.sigma(t)
        a0, s0 = ip.alpha(ip.t_min), ip.sigma(ip.t_min)
        x = u * jnp.sqrt(s**2 + (a * SD) ** 2)  # u = c_in x̃ = x/sqrt(σ² + α²σ_d²)
        finite = a > 0
        sig = s / jnp.where(finite, a, 1.0)
        gap = sig - s0 / a0
        skip = jnp.where(finite, SD**2 / (gap**2 + SD**2) * x / jnp.where(finite, a, 1.0), 0.0)  # c_skip x̃
        c_out = jnp.where(finite, SD * gap / jnp.sqrt(SD**2 + sig**2), SD)
        out = (gaussian_flow_map(ip, M, S, t, ip.t_min, x) / a0 - skip) / jnp.where(c_out == 0, 1.0, c_out)
        return jnp.where(c_out == 0, 0.0, out)

    return ConsistencyModel(F, ip)


def push_forward(ip, ts, mean, var):
    """Exact moments after Alg. 1 with f*: x_t = α x + σ ξ, then the affine f*(·, t) = φ_{t→t_min}."""
    a0, s0 = scales64(ip, ip.t_min)
    std0 = math.sqrt(a0**2 * S**2 + s0**2)
    for i, t in enumerate(ts):
        a, s = scales64(ip, t)
        if i > 0:
            mean, var = a * mean, a**2 * var + s**2
        std = math.sqrt(a**2 * S**2 + s**2)
        mean, var = a0 * M + std0 / std * (mean - a * M), (std0 / std) ** 2 * var
    return mean, var


@pytest.mark.parametrize("ip", (I.linear, I.vp), ids=lambda ip: ip.name)
def test_sampling_with_exact_consistency_function(ip):
    """One step maps the prior N(0, σ(t_max)²) through f*: N(M, S²) on linear (exact prior), the closed-form
    push-forward elsewhere; each further step re-noises and maps back, keeping the law exact.  5 MC SE."""
    cm, n = exact_consistency_model(ip), 20_000
    for steps in (1, 3):
        x, stats = sample_consistency(cm, ip, jax.random.key(6), (n, 1), num_steps=steps)
        assert stats["nfe"] == steps
        mean, var = push_forward(ip, consistency_times(ip, steps), 0.0, float(ip.prior_std()) ** 2)
        if ip is I.linear:
            assert abs(mean - M) < 1e-6 and abs(var - S**2) < 1e-6
        sd = math.sqrt(var)
        assert abs(float(x.mean()) - mean) < 5 * sd / math.sqrt(n), (steps, float(x.mean()), mean)
        assert abs(float(x.std()) - sd) < 5 * sd / math.sqrt(2 * n), (steps, float(x.std()), sd)


def test_sampler_options():
    """Per-sample keys (chunking does not change samples), x_init is the state at ts[0], explicit ts."""
    cm = exact_consistency_model(I.linear)
    a, _ = sample_consistency(cm, I.linear, KEY, (10, 1), num_steps=2)
    b, _ = sample_consistency(cm, I.linear, KEY, (10, 1), num_steps=2, chunk_size=4)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    x1 = jnp.linspace(-2, 2, 5).reshape(5, 1)
    got, stats = sample_consistency(cm, I.linear, None, x_init=x1, ts=[1.0])
    np.testing.assert_allclose(got, M + S * x1, rtol=1e-5, atol=1e-6)  # f*(x, 1) = m + s x on linear
    assert stats["nfe"] == 1
    ts = consistency_times(I.linear, 2)  # ρ = 7 midpoint of [0.002, 80]: σ̃ = 2.5 → t = 2.5/3.5
    sig = ((0.002 ** (1 / 7) + 80 ** (1 / 7)) / 2) ** 7
    np.testing.assert_allclose(ts, [1.0, sig / (1 + sig)], atol=2e-6)


# ----------------------------------------------------------------------------- 6. training


@pytest.fixture(scope="module")
def tiny():
    net = TimeMLP(hidden=(32, 32), num_frequencies=4)
    return net, net.init(jax.random.key(0), 0.5, jnp.zeros(1))


def gaussian_data(key, n):
    return M + S * jax.random.normal(key, (n, 1))


def test_cd_training_one_step_matches_gaussian(tiny):
    """CD from the exact velocity teacher on linear, iCT loss (pseudo-Huber, log-normal n, 1/Δσ̃), N = 18:
    2000 steps of a 2×32 TimeMLP.  Measured one-step mean 1.018, std 0.488 (two-step 0.937, 0.482).  Tolerance
    (training error, MC SE ≈ 0.004): |mean − M| < 0.1, |std − S| < 0.05."""
    net, params = tiny
    state, history = train_consistency(net.apply, params, I.linear, gaussian_data, key=jax.random.key(1),
                                       optimizer=optax.adam(optax.cosine_decay_schedule(3e-3, 2000, 0.1)),
                                       num_steps=2000, batch_size=256, ema_decay=0.99, progress=False,
                                       teacher=gaussian(M, S).field(I.linear, "velocity"),
                                       teacher_prediction="velocity", steps_per_call=500)
    assert history["stages"] == [(0, 2000, 18)] and np.all(history["num_scales"] == 18)
    assert history["loss"][-100:].mean() < 0.2 * history["loss"][:100].mean()
    cm = ConsistencyModel(Model(net.apply, state.ema_params), I.linear)
    x, _ = sample_consistency(cm, I.linear, jax.random.key(2), (20_000, 1))
    assert abs(float(x.mean()) - M) < 0.1 and abs(float(x.std()) - S) < 0.05, (x.mean(), x.std())


@pytest.mark.slow
def test_ct_training_with_curriculum(tiny):
    """CT (no teacher) with the iCT curriculum s0 = 10, s1 = 160 over 4000 steps (5 stages, one fit each):
    the per-step N follows N(k); measured one-step mean 0.987, std 0.481, two-step 1.002, 0.486."""
    net, params = tiny
    state, history = train_consistency(net.apply, params, I.linear, gaussian_data, key=jax.random.key(1),
                                       optimizer=optax.adam(optax.cosine_decay_schedule(3e-3, 4000, 0.1)),
                                       num_steps=4000, batch_size=512, ema_decay=0.99, progress=False, s0=10, s1=160)
    np.testing.assert_array_equal(history["step"], np.arange(1, 4001))
    np.testing.assert_array_equal(history["num_scales"], [ict_num_scales(k, 4000, 10, 160) for k in range(4000)])
    assert int(state.step) == 4000
    cm = ConsistencyModel(Model(net.apply, state.ema_params), I.linear)
    for steps in (1, 2):
        x, _ = sample_consistency(cm, I.linear, jax.random.key(2), (20_000, 1), num_steps=steps)
        assert abs(float(x.mean()) - M) < 0.1 and abs(float(x.std()) - S) < 0.05, (steps, x.mean(), x.std())


# ----------------------------------------------------------------------------- 8. bad input


def test_bad_input():
    x0 = jnp.ones((4, 1))
    model = lambda t, x: x  # noqa: E731
    bridge = I.bridge()
    with pytest.raises(ValueError, match="one-sided"):
        ConsistencyModel(model, bridge)
    with pytest.raises(ValueError, match="one-sided"):
        consistency_loss(model, bridge, x0, KEY, num_scales=8)
    with pytest.raises(ValueError, match="one-sided"):
        sample_consistency(model, bridge, KEY, (4, 1))
    with pytest.raises(ValueError, match="one-sided"):
        train_consistency(lambda p, t, x: x, {}, bridge, x0, key=KEY, optimizer=optax.sgd(0.1), num_steps=1,
                          batch_size=2)
    for kwargs, match in (({"metric": "l1"}, "metric"), ({"noise": "gamma"}, "noise"),
                          ({"weighting": "snr"}, "weighting"), ({"num_scales": 1}, "num_scales"),
                          ({"huber_c": 0.0}, "huber_c"), ({"p_std": -1.0}, "p_std"),
                          ({"teacher": model}, "teacher_prediction"),
                          ({"teacher_prediction": "velocity"}, "without a teacher"),
                          ({"teacher": model, "teacher_prediction": "eps"}, "teacher_prediction"),
                          ({"teacher": model, "teacher_prediction": "data", "teacher_solver": "rk9"}, "solver")):
        with pytest.raises(ValueError, match=match):
            consistency_loss(model, I.vp, x0, KEY, **{"num_scales": 8, **kwargs})
    with pytest.raises(ValueError, match="per-sample shape"):
        consistency_loss(lambda t, x: x[:0], I.vp, x0, KEY, num_scales=8)
    with pytest.raises(ValueError, match="x0 must be a batch"):
        consistency_loss(model, I.vp, x0[0], KEY, num_scales=8)
    with pytest.raises(ValueError, match="strictly decreasing"):
        sample_consistency(model, I.vp, KEY, (4, 1), ts=[0.5, 0.9])
    with pytest.raises(ValueError, match=r"\(t_min, t_max\]"):
        sample_consistency(model, I.vp, KEY, (4, 1), ts=[0.9, I.vp.t_min])
    with pytest.raises(ValueError, match="either num_steps or an explicit ts"):
        sample_consistency(model, I.vp, KEY, (4, 1), num_steps=2, ts=[0.9, 0.5])
    with pytest.raises(ValueError, match="num_steps must be a positive integer"):
        sample_consistency(model, I.vp, KEY, (4, 1), num_steps=0)
    with pytest.raises(ValueError, match="s0 <= s1"):
        ict_num_scales(0, 100, s0=20, s1=10)
    with pytest.raises(ValueError, match="sigma_data"):
        ConsistencyModel(model, I.vp, sigma_data=0.0)
