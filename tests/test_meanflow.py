"""MeanFlow (MATH.md §13; oracle 9.16): the exact average velocity of Gaussian data, the loss, the sampler.

Oracles: the exact PF-ODE map of Gaussian data ``φ_{t→r}`` and its average velocity
``u* = (x − φ_{t→r}(x))/(t − r)``; the exact velocity ``v*`` of MATH.md §9.1
(``gaussian(m, s).field``); an adaptive ODE solve; the loss written out by hand with closed-form
derivatives on the documented keys; Monte-Carlo moments of the time pairs and of the loss gradient.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import genjax
from genjax import interpolants as I
from genjax.distill.meanflow import gaussian_average_velocity, meanflow_objective, sample_meanflow, train_meanflow
from genjax.losses.meanflow import meanflow_loss, sample_time_pair
from genjax.nets.mlp import IntervalMLP, fourier_features
from genjax.ode import integrate
from genjax.targets import gaussian, gaussian_flow_map
from tests._compiles import COMPILES

M, S = jnp.array([1.0, -0.5]), jnp.array([0.5, 2.0])
PRESETS = [I.linear, I.vp, I.cosine]
# The identity and sampler tests run on every preset; the costlier ODE and gradient checks run one preset
# each by default and the others with -m slow.
SLOW = pytest.mark.slow
KEY = jax.random.key(0)


def exact_u(ip, mean=M, std=S):
    """The exact MeanFlow model fn(times, x), times = [r, t]."""
    return lambda times, x: gaussian_average_velocity(ip, mean, std, times[0], times[1], x)


def random_points(ip, n, seed, min_gap=0.05):
    """n points x ~ N(M, (2S)²) and pairs t_min + 0.01 ≤ r < t ≤ t_max with t − r ≥ min_gap (NumPy, float32)."""
    rng = np.random.default_rng(seed)
    lo, hi = ip.t_min + 0.01, ip.t_max
    a = np.sort(rng.uniform(lo, hi - min_gap, (n, 2)), axis=1)
    r, t = a[:, 0], np.maximum(a[:, 1], a[:, 0] + min_gap)
    x = np.asarray(M) + 2.0 * np.asarray(S) * rng.standard_normal((n, 2))
    return (jnp.asarray(v, jnp.float32) for v in (x, r, t))


# ----------------------------------------------------------------------------- 1. the identity
@pytest.mark.parametrize("ip", PRESETS, ids=lambda ip: ip.name)
def test_exact_average_velocity_satisfies_the_identity_and_tends_to_v(ip):
    """u* = v* − (t − r) du*/dt with du*/dt the tangent of jvp(u*, (x, r, t), (v*, 0, 1)) (MATH.md §13);
    u*(x, t, t) = v*(t, x); and the Taylor expansion of the flow map along the trajectory gives
    u*(x, t − h, t) = v − (h/2) Dv + (h²/6) D²v + O(h³), with D = ∂_t + v·∂_x (jvp with tangent (1, v))."""
    v = gaussian(M, S).field(ip, "velocity")
    x, r, t = random_points(ip, 64, 1)
    t_mid = 0.3 + 0.6 * (t - t.min()) / (t.max() - t.min())  # away from t_min, where vp/cosine's v* is stiff
    h = 0.01

    @jax.jit
    @jax.vmap
    def sides(x, r, t, tm):
        vel = v(t, x)
        u, dudt = jax.jvp(lambda x, r, t: gaussian_average_velocity(ip, M, S, r, t, x), (x, r, t), (vel, 0.0, 1.0))
        D = lambda f: lambda t, x: jax.jvp(f, (t, x), (1.0, v(t, x)))[1]  # noqa: E731
        vm, dv, d2v = v(tm, x), D(v)(tm, x), D(D(v))(tm, x)
        return {"identity": (u, vel - (t - r) * dudt), "correction": (t - r) * dudt,
                "at_t": (gaussian_average_velocity(ip, M, S, tm, tm, x), vm),
                "taylor": (gaussian_average_velocity(ip, M, S, tm - h, tm, x), vm - 0.5 * h * dv + h**2 / 6 * d2v),
                "first": 0.5 * h * dv}

    out = sides(x, r, t, t_mid)
    # float32: u* is a difference quotient over t − r ≥ 0.05 (relative rounding ~1e-6/0.05 = 2e-5 of |x|).
    np.testing.assert_allclose(*out["identity"], rtol=2e-4, atol=2e-4)
    assert float(jnp.max(jnp.abs(out["correction"]))) > 0.1  # the (t − r) du/dt term matters: the check has power
    np.testing.assert_allclose(*out["at_t"], rtol=1e-5, atol=1e-5)
    # Remainder O(h³): ≤ 3e-5 at |x| ≤ 8 (measured in float64, 8× smaller per halving of h); float32
    # rounding of the quotient ~1e-7·|x|/h ≤ 1e-4.
    np.testing.assert_allclose(*out["taylor"], atol=2e-4)
    assert float(jnp.max(jnp.abs(out["first"]))) > 5e-3  # the expansion is resolved beyond its leading term


# ------------------------------------------------------------------------ 2. average along the ODE
@pytest.mark.parametrize("ip", [pytest.param(I.linear, marks=SLOW), I.vp, pytest.param(I.cosine, marks=SLOW)],
                         ids=lambda ip: ip.name)
def test_average_velocity_is_the_mean_of_v_along_an_ode_solve(ip):
    """(x − ODE_{t→r}(x))/(t − r), with an adaptive Tsit5 solve of the exact velocity, equals u*."""
    v = gaussian(M, S).field(ip, "velocity")
    x, r, t = random_points(ip, 16, 3, min_gap=0.1)
    r, t = r.at[0].set(ip.t_min).at[1].set(0.45), t.at[0].set(ip.t_max).at[1].set(0.55)

    @jax.jit
    @jax.vmap
    def solve(x, r, t):
        end, _ = integrate(lambda s, y, args: v(s, y), x, t, r, rtol=1e-6, atol=1e-6)
        return (x - end) / (t - r), gaussian_average_velocity(ip, M, S, r, t, x)

    got, want = solve(x, r, t)
    # Solver tolerance 1e-6 on x, divided by t − r ≥ 0.1, plus float32 rounding of the quotient.
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)


# ------------------------------------------------------------------------------------ 3. sampler
@pytest.mark.parametrize("ip", PRESETS, ids=lambda ip: ip.name)
def test_one_and_few_steps_with_the_exact_model_are_the_exact_flow_map(ip):
    """With u*, any decreasing grid composes to φ_{t_max→t_min} (the maps compose), per sample."""
    x_init = ip.prior_std() * jax.random.normal(jax.random.key(4), (32, 2))
    want = jax.vmap(lambda x: gaussian_flow_map(ip, M, S, ip.t_max, ip.t_min, x))(x_init)
    model = exact_u(ip)
    for kw, nfe in (({}, 1), ({"ts": [ip.t_max, 0.7, 0.2, 0.05, ip.t_min]}, 4)):
        got, stats = sample_meanflow(model, ip, x_init=x_init, **kw)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)  # float32 rounding of a few affine steps
        assert stats["nfe"] == nfe
    if ip is not I.linear:
        return
    # The maps compose only because u* is the *average* velocity: Euler with v* over 3 steps is far off.
    v = gaussian(M, S).field(ip, "velocity")
    euler, _ = sample_meanflow(lambda times, x: v(times[1], x), ip, x_init=x_init, num_steps=3)
    assert float(jnp.max(jnp.abs(euler - want))) > 0.05


def test_one_step_maps_the_prior_to_the_data():
    """linear (α(1) = 0, so the prior N(0, I) is exact): one step of u* from the prior gives N(M, S²)."""
    n = 20_000
    x, stats = sample_meanflow(exact_u(I.linear), I.linear, jax.random.key(5), (n, 2))
    assert stats == {"nfe": 1}
    # Monte Carlo: se(mean) = S/sqrt(n), se(std) ≈ S/sqrt(2n); 4 standard errors.
    np.testing.assert_allclose(x.mean(0), M, atol=4 * float(S.max()) / math.sqrt(n))
    np.testing.assert_allclose(x.std(0), S, atol=4 * float(S.max()) / math.sqrt(2 * n))
    # Per sample: the prior draw of sample i is σ(t_max)·normal(split(key, n)[i]).
    z = jax.vmap(lambda k: jax.random.normal(k, (2,)))(jax.random.split(jax.random.key(5), n))
    np.testing.assert_allclose(x, M + S * z, rtol=1e-5, atol=1e-5)


def test_conditioning_model_as_data_and_chunks():
    """fn(times, x, c) with per-sample means c; genjax.Model weights are traced (no recompilation)."""
    ip = I.vp
    c = jnp.stack([jnp.linspace(-2.0, 2.0, 10), jnp.linspace(1.0, 0.0, 10)], 1)
    x_init = jax.random.normal(jax.random.key(6), (10, 2))
    cond = lambda times, x, c: gaussian_average_velocity(ip, c, S, times[0], times[1], x)  # noqa: E731
    got, _ = sample_meanflow(cond, ip, x_init=x_init, c=c, num_steps=2, chunk_size=4)
    want = jax.vmap(lambda x, c: gaussian_flow_map(ip, c, S, ip.t_max, ip.t_min, x))(x_init, c)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)

    def apply_fn(params, times, x):
        return gaussian_average_velocity(ip, params["m"], params["s"], times[0], times[1], x)

    first, second = {"m": M, "s": S}, {"m": M + 1.0, "s": S}
    a, _ = sample_meanflow(genjax.Model(apply_fn, first), ip, KEY, (8, 2))
    before = COMPILES.count
    b, _ = sample_meanflow(genjax.Model(apply_fn, second), ip, KEY, (8, 2))
    assert COMPILES.count == before, "new weights recompiled sample_meanflow"
    np.testing.assert_allclose(b - a, np.broadcast_to(gaussian_flow_map(ip, 1.0, S, ip.t_max, ip.t_min, 0.0), a.shape),
                               atol=1e-4)  # φ is affine in the mean: shifting m by 1 shifts samples by φ(0; m = 1)


# --------------------------------------------------------------------------------------- 4. loss
def _model(times, x, c=None):
    """An arbitrary smooth model with hand-written derivatives (in `_hand_loss`)."""
    r, t = times[0], times[1]
    out = jnp.tanh(x * (1.0 + t)) - 0.3 * (t - r) * x[::-1]
    return out if c is None else out + 0.1 * c


def _hand_loss(x0, key, path, time_draw, ratio, p, c_ad, x1=None, c=None):
    """The loss on the documented keys, with du/dt = (∂_x u) ẋ_t + ∂_t u written out by hand."""
    out = []
    for i, k in enumerate(jax.random.split(key, x0.shape[0])):
        k_time, k_z = jax.random.split(k)
        k_t, k_r = jax.random.split(k_time)
        pair = np.sort(np.asarray(time_draw(k_t), np.float64))
        r, t = (pair[0] if bool(jax.random.bernoulli(k_r, ratio)) else pair[1]), pair[1]
        z = np.asarray(jax.random.normal(k_z, x0.shape[1:]), np.float64)
        a, s, da, ds = path(t)
        noise = z if x1 is None else np.asarray(x1[i], np.float64)
        x = a * x0[i] + s * noise
        v = da * x0[i] + ds * noise
        sech2 = 1.0 / np.cosh(x * (1.0 + t)) ** 2
        u = np.tanh(x * (1.0 + t)) - 0.3 * (t - r) * x[::-1] + (0.0 if c is None else 0.1 * c[i])
        dudt = (1.0 + t) * sech2 * v - 0.3 * (t - r) * v[::-1] + x * sech2 - 0.3 * x[::-1]
        err = np.sum((u - (v - (t - r) * dudt)) ** 2)
        out.append(err / (err + c_ad) ** p)
    return np.array(out)


def _linear(t):
    return 1.0 - t, t, -1.0, 1.0


def _trig(t):
    h = math.pi / 2
    return math.cos(h * t), math.sin(h * t), -h * math.sin(h * t), h * math.cos(h * t)


def _lognormal(mu, sd, lo=0.0, hi=1.0):
    return lambda k: lo + (hi - lo) / (1.0 + np.exp(-(mu + sd * np.asarray(jax.random.normal(k, (2,)), np.float64))))


X0 = np.asarray(jax.random.normal(jax.random.key(7), (16, 3))) * 1.5 + 0.5


@pytest.mark.parametrize("case", ["linear-lognormal-p1", "trig-uniform-p05", "linear-x1-c-p0"])
def test_loss_equals_the_hand_written_loss_on_the_same_keys(case):
    """sg(w)‖u − sg(ẋ − (t − r)du/dt)‖², w = 1/(‖Δ‖² + c)^p, r = t unless bernoulli(ratio) (module docstring)."""
    key = jax.random.key(8)
    if case == "linear-lognormal-p1":
        got = jax.jit(lambda x0: meanflow_loss(_model, I.linear, x0, key))(X0)
        want = _hand_loss(X0, key, _linear, _lognormal(-0.4, 1.0), 0.25, 1.0, 1e-3)
    elif case == "trig-uniform-p05":
        got = jax.jit(lambda x0: meanflow_loss(_model, I.trig, x0, key, ratio=0.6, time_sampling="uniform",
                                               adaptive_p=0.5, adaptive_c=0.1))(X0)
        want = _hand_loss(X0, key, _trig, lambda k: np.asarray(jax.random.uniform(k, (2,))), 0.6, 0.5, 0.1)
    else:
        x1 = np.asarray(jax.random.normal(jax.random.key(9), X0.shape))
        c = np.asarray(jax.random.normal(jax.random.key(10), X0.shape))
        got = jax.jit(lambda x0: meanflow_loss(_model, I.linear, x0, key, x1=x1, c=c, ratio=1.0, p_mean=0.3,
                                               p_std=0.5, adaptive_p=0.0))(X0)
        want = _hand_loss(X0, key, _linear, _lognormal(0.3, 0.5), 1.0, 0.0, 1e-3, x1=x1, c=c)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-5)  # float32 against float64


def test_time_pairs_have_the_documented_distribution():
    """Fraction of r ≠ t = ratio; logit-normal: logit times are the min/max of two N(μ, σ²), whose means are
    μ ∓ σ/√π; uniform on [t_min, t_max]: E[min] = 1/3, E[max] = 2/3 of the interval."""
    n = 40_000
    ip = I.vp
    lo, hi = ip.t_min, ip.t_max
    fixed = lambda k: jnp.array([0.7, 0.2])  # noqa: E731

    @jax.jit
    def moments(keys):
        pairs = lambda **kw: jax.vmap(lambda k: sample_time_pair(k, ip, **kw))(keys)  # noqa: E731
        logit = lambda u: jnp.log((u - lo) / (hi - u))  # noqa: E731
        unit = lambda u: (u - lo) / (hi - lo)  # noqa: E731
        r, t = pairs(ratio=0.25)
        rl, tl = pairs(ratio=1.0, p_mean=-0.4, p_std=1.0)
        ru, tu = pairs(ratio=1.0, time_sampling="uniform")
        rf, tf = pairs(ratio=0.0, time_sampling=fixed)
        return {"ordered": jnp.all((lo <= r) & (r <= t) & (t <= hi)), "frac": jnp.mean(r < t),
                "logit_t": logit(tl).mean(), "logit_r": logit(rl).mean(), "unit_r": unit(ru).mean(),
                "unit_t": unit(tu).mean(), "fixed": jnp.all((rf == 0.7) & (tf == 0.7))}

    got = jax.tree.map(float, moments(jax.random.split(jax.random.key(11), n)))
    assert got["ordered"] and got["fixed"]
    assert abs(got["frac"] - 0.25) < 4 * math.sqrt(0.25 * 0.75 / n)
    se = 4 / math.sqrt(n)  # 4 standard errors: each order statistic has std < 1 (logit) or < 1/4 (uniform)
    assert abs(got["logit_t"] - (-0.4 + 1 / math.sqrt(math.pi))) < se
    assert abs(got["logit_r"] - (-0.4 - 1 / math.sqrt(math.pi))) < se
    assert abs(got["unit_r"] - 1 / 3) < se / 4 and abs(got["unit_t"] - 2 / 3) < se / 4


@pytest.mark.parametrize("ip", [I.linear, pytest.param(I.vp, marks=SLOW), pytest.param(I.cosine, marks=SLOW)],
                         ids=lambda ip: ip.name)
def test_exact_model_is_a_stationary_point_of_the_loss(ip):
    """∇_θ E ℓ(u* + δ + θ₁ + θ₂ x) at θ = 0: with p = 0 the θ₁-gradient is 2δ·d (0 at δ = 0) and the
    θ₂-gradient 0 at δ = 0; with p = 1 both are 0 at δ = 0 too, since Δ | (x_t, r, t) is a centred Gaussian
    on Gaussian data and w(Δ) is even.  The target ẋ_t − (t − r) du/dt is affine in ẋ_t, so its conditional
    mean is u* by the identity.  Tolerance: 4 Monte-Carlo standard errors of the per-sample gradients.
    """
    n = 10_000
    x0 = M + S * jax.random.normal(jax.random.key(12), (n, 2))
    u = exact_u(ip)

    def gradients(delta, p):
        def per_sample(theta):
            model = lambda times, x: u(times, x) + delta + theta[0] + theta[1] * x  # noqa: E731
            return meanflow_loss(model, ip, x0, jax.random.key(13), ratio=0.5, adaptive_p=p)

        return jax.jacfwd(per_sample)(jnp.zeros(2))  # (n, 2)

    cases = jax.jit(lambda: (gradients(0.0, 0.0), gradients(0.25, 0.0), gradients(0.0, 1.0)))()
    for grads, want in zip(cases, ((0.0, 0.0), (1.0, None), (0.0, 0.0))):
        grads = np.asarray(grads)
        mean, se = grads.mean(0), grads.std(0) / math.sqrt(n)
        assert np.all(se < 0.1)  # the check resolves effects of 0.4 (= 4·se at most)
        for i, w in enumerate(want):
            if w is not None:
                assert abs(mean[i] - w) < 4 * se[i] + 1e-6, (i, mean, se, want)


# ------------------------------------------------------------------------------------ 5. training
@pytest.fixture(scope="module")
def trained():
    """A tiny IntervalMLP trained on 1-D N(1.5, 0.5²) along linear (uniform pairs, half of them r ≠ t, L2)."""
    m, s = 1.5, 0.5
    net = IntervalMLP(hidden=(32, 32), num_frequencies=4, max_frequency=4.0)
    params = net.init(jax.random.key(0), jnp.zeros(2), jnp.zeros(1))
    steps = 5000
    state, history = train_meanflow(
        net.apply, params, I.linear, lambda key, n: m + s * jax.random.normal(key, (n, 1)), key=jax.random.key(1),
        optimizer=optax.adam(optax.cosine_decay_schedule(1e-2, steps, 0.05)), num_steps=steps, batch_size=256,
        steps_per_call=steps, ema_decay=0.99, progress=False, ratio=0.5, time_sampling="uniform", adaptive_p=0.0)
    return net, state, history, m, s


def test_trained_one_step_model_matches_the_data(trained):
    """One-step samples of a trained model have the data's mean and std (MC error 0.005; the rest is fit)."""
    net, state, history, m, s = trained
    x, stats = sample_meanflow(genjax.Model(net.apply, state.ema_params), I.linear, jax.random.key(2), (20_000, 1))
    assert stats["nfe"] == 1
    assert abs(float(x.mean()) - m) < 0.1 and abs(float(x.std()) - s) < 0.1, (float(x.mean()), float(x.std()))
    # The unweighted error ‖Δ‖² ends near its floor E Var(target | x_t, r, t), about Var(ẋ_t) = 1 + s² here.
    assert history["mse"][-100:].mean() < 1.0 + s**2
    assert history["mse"][:100].mean() > history["mse"][-100:].mean()


def test_interval_mlp_is_timemlp_trunk_on_t_and_t_minus_r():
    """IntervalMLP(times, x) = Dense layers with silu on [x, φ(t), φ(t − r)], written out by hand."""
    net = IntervalMLP(hidden=(5,), num_frequencies=3, max_frequency=7.0)
    x, times = jnp.array([0.3, -1.2]), jnp.array([0.2, 0.9])
    params = net.init(jax.random.key(3), times, x)["params"]
    h = jnp.concatenate([x, fourier_features(0.9, 3, 7.0), fourier_features(0.7, 3, 7.0)])
    h = nn.silu(h @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
    want = h @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"]
    np.testing.assert_allclose(net.apply({"params": params}, times, x), want, rtol=1e-5, atol=1e-6)
    batched = net.apply({"params": params}, jnp.stack([times, jnp.array([0.5, 0.5])]), jnp.stack([x, x]))
    np.testing.assert_allclose(batched[0], want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"times must be the pair \[r, t\]"):
        net.apply({"params": params}, 0.5, x)


# -------------------------------------------------------------------------------------- 6. errors
def test_bad_inputs_raise_clear_errors():
    x0 = jnp.ones((4, 2))
    two_sided = I.bridge()
    with pytest.raises(ValueError, match="one-sided"):
        meanflow_loss(_model, two_sided, x0, KEY, x1=x0)
    with pytest.raises(ValueError, match="one-sided"):
        sample_meanflow(_model, two_sided, x_init=x0)
    for kw, match in (({"ratio": 1.5}, "ratio"), ({"ratio": True}, "ratio"), ({"time_sampling": "beta"}, "time_sampling"),
                      ({"p_std": 0.0}, "p_std"), ({"p_mean": float("nan")}, "p_mean"), ({"adaptive_p": -1.0}, "adaptive_p"),
                      ({"adaptive_c": 0.0}, "adaptive_c")):
        with pytest.raises(ValueError, match=match):
            meanflow_loss(_model, I.linear, x0, KEY, **kw)
        with pytest.raises(ValueError, match=match):
            train_meanflow(lambda p, times, x: _model(times, x), {}, I.linear, x0, key=KEY, optimizer=optax.sgd(0.1),
                           num_steps=1, batch_size=2, **kw)
    with pytest.raises(ValueError, match="unknown options"):
        meanflow_objective(lambda p, times, x: _model(times, x), I.linear, ratios=0.5)
    with pytest.raises(ValueError, match="x1 must have the shape"):
        meanflow_loss(_model, I.linear, x0, KEY, x1=x0[:2])
    with pytest.raises(ValueError, match="x0 must be a batch"):
        meanflow_loss(_model, I.linear, jnp.ones(3), KEY)
    with pytest.raises(ValueError, match="two times"):
        meanflow_loss(_model, I.linear, x0, KEY, time_sampling=lambda k: jnp.zeros(3))
    # Output shape checked once, and a scalar-time model explains the time-pair contract.
    for bad, match in ((lambda times, x: x[:1], "shape and dtype of x"),
                       (lambda times, x: jnp.concatenate([x, times]) @ jnp.ones((4, 3)), r"times = jnp.array\(\[r, t\]\)")):
        with pytest.raises(ValueError, match=match):
            meanflow_loss(bad, I.linear, x0, KEY)
        with pytest.raises(ValueError, match=match):
            sample_meanflow(bad, I.linear, KEY, (4, 2))
    for kw, match in (({"num_steps": 0}, "num_steps"), ({"ts": [0.2, 0.9]}, "ts must decrease"),
                      ({"ts": [1.0, 0.5, 0.7]}, "strictly monotone"), ({"ts": [0.9, -0.1]}, "t_end")):
        with pytest.raises(ValueError, match=match):
            sample_meanflow(_model, I.linear, KEY, (4, 2), **kw)
    with pytest.raises(ValueError, match="shape"):
        sample_meanflow(_model, I.linear, KEY)
    with pytest.raises(ValueError, match="key is required"):
        sample_meanflow(_model, I.linear, None, (4, 2))
    with pytest.raises(FloatingPointError, match="sample_meanflow"):
        sample_meanflow(lambda times, x: x / 0.0, I.linear, KEY, (4, 2))
