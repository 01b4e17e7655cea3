"""Oracles for schedules and prediction conversions (MATH.md §2, §3, §9.1, §9.4)."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import genjax
from genjax import interpolants as I

PRESETS = [I.linear, I.trig, I.vp, I.subvp, I.ve, I.ddpm, I.cosine]
TS = np.array([0.05, 0.3, 0.5, 0.77, 0.95], np.float32)


def closed_forms(name, t):
    """Independent closed forms of (α, σ, α̇, σ̇) from MATH.md §2 (float64 numpy)."""
    t = np.float64(t)
    if name == "linear":
        return 1 - t, t, -1.0, 1.0
    if name == "trig":
        h = math.pi / 2
        return math.cos(h * t), math.sin(h * t), -h * math.sin(h * t), h * math.cos(h * t)
    if name in ("vp", "subvp"):
        bmin, bmax = 0.1, 20.0
        B, beta = bmin * t + 0.5 * (bmax - bmin) * t**2, bmin + (bmax - bmin) * t
        a, da = math.exp(-0.5 * B), -0.5 * beta * math.exp(-0.5 * B)
        if name == "vp":
            s = math.sqrt(1 - a**2)
            return a, s, da, -a * da / s
        return a, 1 - a**2, da, -2 * a * da
    if name == "ve":
        smin, smax = 0.01, 10.0
        s = smin * (smax / smin) ** t
        return 1.0, s, 0.0, s * math.log(smax / smin)
    raise KeyError(name)


@pytest.mark.parametrize("name", ["linear", "trig", "vp", "subvp", "ve"])
def test_presets_match_math_md_closed_forms(name):
    ip = getattr(I, name)
    for t in TS:
        got = [float(v) for v in ip.scales(jnp.float32(t))]
        want = closed_forms(name, t)
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6, err_msg=f"{name} at t={t}")


def test_ddpm_grid_values_and_vp_limit():
    T = 1000
    betas = np.linspace(1e-4, 0.02, T)
    abar = np.cumprod(1 - betas)
    for i in (1, 10, 250, 500, 999, 1000):
        a, s, _, _ = I.ddpm.scales(jnp.float32(i / T))
        np.testing.assert_allclose(float(a) ** 2, abar[i - 1], rtol=1e-4)
        np.testing.assert_allclose(float(s) ** 2, 1 - abar[i - 1], rtol=1e-4, atol=1e-7)
    # The continuous limit of ddpm is vp(0.1, 20): α agrees to O(1/T) over the whole path.
    ts = jnp.linspace(0.01, 1.0, 50)
    np.testing.assert_allclose(jax.vmap(I.ddpm.alpha)(ts), jax.vmap(I.vp.alpha)(ts), atol=2e-3)


def test_cosine_matches_nichol_dhariwal():
    """ᾱ = f(t)/f(0) up to the end floor, applied in α-space: α = (1−c) sqrt(f/f0) + c, c = sqrt(1e-5)."""
    s, c = 0.008, math.sqrt(1e-5)
    f = lambda t: math.cos((t + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    for t in (0.0, 0.1, 0.5, 0.9, 1.0):
        a = float(I.cosine.alpha(jnp.float32(t)))
        np.testing.assert_allclose(a, (1 - c) * math.sqrt(f(t) / f(0)) + c, rtol=1e-5, atol=1e-6)
        assert abs(a - math.sqrt(f(t) / f(0))) <= c
    np.testing.assert_allclose(float(I.cosine.alpha(1.0)) ** 2, 1e-5, rtol=1e-3)


@pytest.mark.parametrize("ip", PRESETS, ids=lambda ip: ip.name)
def test_jvp_derivatives_match_closed_forms(ip):
    """Between ddpm grid points (mid-segment); at them see test_ddpm_slope_at_knots_is_two_sided."""
    for t in TS + (0.5 / ip.num_steps if ip.num_steps else 0.0):
        np.testing.assert_allclose(ip.derivatives(t), ip.jvp_derivatives(t), rtol=1e-4, atol=1e-5)


def test_cosine_sigma_without_cancellation():
    """σ = sqrt(1 − α²) near t_min against float64 (whose own cancellation error is ≤ 1e-16/(1 − α²) ≈ 3e-10).

    float32 ``1 − α²`` loses 4% at t = 1e-5 (α = 1 − 2e-7 is 3 ulps from 1); the bound 1e-5 is ~100 float32 eps.
    """
    s, c = 0.008, math.sqrt(1e-5)
    theta = lambda t: (t + s) / (1 + s) * math.pi / 2  # noqa: E731
    for t in (1e-5, 1e-4, 1e-3):
        t32 = np.float32(t)
        a = (1 - c) * math.cos(theta(float(t32))) / math.cos(theta(0.0)) + c
        got = float(I.cosine.sigma(jnp.float32(t32)))
        np.testing.assert_allclose(got, math.sqrt(1 - a * a), rtol=1e-5, err_msg=f"t={t}")
        np.testing.assert_allclose(float(I.cosine.scales(jnp.float32(t32))[1]), got, rtol=0)


def _ddpm_log_alpha_bar_slopes(T=1000):
    """Segment slopes of log ᾱ on t_i = i/T from the float64 product (independent of the preset)."""
    log_abar = np.log(np.concatenate([[1.0], np.cumprod(1 - np.linspace(1e-4, 0.02, T))]))
    return np.diff(log_abar) * T


def test_ddpm_slope_at_knots_is_two_sided():
    """d log ᾱ/dt = 2α̇/α: the segment slope between grid points, the mean of the adjacent slopes at a grid
    point, their linear extrapolation at t = 0 and t = 1.  jax.jvp takes one side at a knot (off by half
    the jump, ≈ 1%); 5e-4 covers the float32 table (|log ᾱ| ≤ 10 in steps ≥ 1e-4)."""
    slopes = _ddpm_log_alpha_bar_slopes()
    grid = np.asarray(jnp.linspace(0.0, 1.0, 1001))  # the knots exactly as float32
    dlog = lambda t: 2 * float(I.ddpm.derivatives(t)[0] / I.ddpm.alpha(t))  # noqa: E731
    for i in (1, 50, 500, 999):
        np.testing.assert_allclose(dlog(grid[i]), 0.5 * (slopes[i - 1] + slopes[i]), rtol=5e-4, err_msg=f"knot {i}")
        np.testing.assert_allclose(dlog(jnp.float32((i + 0.3) / 1000)), slopes[i], rtol=5e-4, err_msg=f"segment {i}")
    np.testing.assert_allclose(dlog(grid[0]), 1.5 * slopes[0] - 0.5 * slopes[1], rtol=5e-4)
    np.testing.assert_allclose(dlog(grid[1000]), 1.5 * slopes[-1] - 0.5 * slopes[-2], rtol=5e-4)
    a, s, da, ds = I.ddpm.scales(grid[500])  # σ̇ from the same slope: σσ̇ = −αα̇
    np.testing.assert_allclose(float(s * ds), float(-a * da), rtol=1e-5)


def _heun_error(ip, num_steps, m=1.0, sd=0.5, first_knot=1000, last_knot=200):
    """Max error of fixed-step Heun on the exact Gaussian PF-ODE (MATH.md §9.1) from t = 1 to t = 0.2, every step
    from one float32 grid point i/1000 to another, against the exact map φ(x) = α_e m + (std_e/std_1)(x − α_1 m)."""
    times = jnp.linspace(0.0, 1.0, 1001)[np.linspace(first_knot, last_knot, num_steps + 1).astype(int)]

    def velocity(t, x):
        a, s, da, ds = ip.scales(t)
        return da * m + (a * da * sd**2 + s * ds) / (a**2 * sd**2 + s**2) * (x - a * m)

    def heun(x, interval):
        t0, t1 = interval
        k0 = velocity(t0, x)
        return x + 0.5 * (t1 - t0) * (k0 + velocity(t1, x + (t1 - t0) * k0)), None

    x1 = jnp.linspace(-2.0, 2.0, 5)
    x_end, _ = jax.lax.scan(heun, x1, (times[:-1], times[1:]))
    (a1, s1, _, _), (ae, se, _, _) = ip.scales(times[0]), ip.scales(times[-1])
    ratio = jnp.sqrt(ae**2 * sd**2 + se**2) / jnp.sqrt(a1**2 * sd**2 + s1**2)
    return float(jnp.max(jnp.abs(x_end - (ae * m + ratio * (x1 - a1 * m)))))


def test_ddpm_heun_on_grid_points_is_second_order():
    """Heun with 20/40/80 steps landing on grid points: error falls ~4× per doubling (measured orders 2.05, 2.02;
    the smooth vp path gives the same).  With the one-sided jvp slope the field is off by O(1/T) at every
    evaluation: measured errors 2.0e-3, 1.7e-3, 1.6e-3 (orders 0.25, 0.05), a floor."""
    errors = [_heun_error(I.ddpm, n) for n in (20, 40, 80)]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(orders >= 1.7), (errors, orders)
    assert errors[-1] < 2e-4


def test_sde_coefficients_vp():
    """VP: f = −β(t)/2 and g² = β(t) (MATH.md §3)."""
    for t in TS:
        beta = 0.1 + 19.9 * t
        f, g2 = I.vp.sde_coefficients(jnp.float32(t))
        np.testing.assert_allclose([float(f), float(g2)], [-beta / 2, beta], rtol=1e-4)


@pytest.mark.parametrize("ip", PRESETS, ids=lambda ip: ip.name)
def test_conversions_round_trip(ip):
    """Every pair round-trips; in float64 because score <-> data is conditioned like 1/σ² near t = 0."""
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (3,), jnp.float64)
        value = jax.random.normal(jax.random.key(1), (3,), jnp.float64)
        _round_trips(ip, x, value)


def _round_trips(ip, x, value):
    for t in TS.astype(np.float64):
        for a, b in itertools.permutations(I.PREDICTIONS, 2):
            there = genjax.convert(value, a, b, ip, t, x)
            back = genjax.convert(there, b, a, ip, t, x)
            np.testing.assert_allclose(back, value, rtol=1e-4, atol=1e-6, err_msg=f"{ip.name} {a}->{b} t={t}")


@pytest.mark.parametrize("ip", [I.linear, I.trig, I.vp, I.ve, I.cosine], ids=lambda ip: ip.name)
def test_conversions_of_exact_gaussian_fields(ip):
    """For x0 ~ N(m, s²): s_t = −(x−αm)/(α²s²+σ²), v* = α̇m + (αα̇s²+σσ̇)/(α²s²+σ²)(x−αm) (MATH.md §9.1)."""
    m, sd = jnp.array([1.0, -2.0]), jnp.array([0.5, 2.0])
    x = jnp.array([0.3, 0.9])
    for t in TS:
        a, s, da, ds = (float(v) for v in ip.scales(t))
        var = a**2 * sd**2 + s**2
        score = -(x - a * m) / var
        velocity = da * m + (a * da * sd**2 + s * ds) / var * (x - a * m)
        noise = -s * score
        data = (x + s**2 * score) / a
        exact = {"score": score, "velocity": velocity, "noise": noise, "data": data}
        for frm, to in itertools.permutations(I.PREDICTIONS, 2):
            got = genjax.convert(exact[frm], frm, to, ip, t, x)
            np.testing.assert_allclose(got, exact[to], rtol=1e-3, atol=1e-4, err_msg=f"{frm}->{to} t={t}")


def test_preset_reparameterisation():
    ip = I.vp(beta_max=10.0)
    a, _, _, _ = ip.scales(1.0)
    np.testing.assert_allclose(float(a), math.exp(-0.5 * (0.1 + 0.5 * 9.9)), rtol=1e-5)
    assert I.ve(sigma_max=50.0).prior_std() == pytest.approx(50.0, rel=1e-5)


def test_invalid_schedules_raise():
    with pytest.raises(ValueError, match="D\\(t\\)"):
        I.Interpolant(lambda t: 1 - t + 0.3 * jnp.sin(8 * t), lambda t: t, lambda t: 0 * t)
    with pytest.raises(ValueError, match="α\\(0\\) = 1"):
        I.Interpolant(lambda t: 0.5 - 0.5 * t, lambda t: t, lambda t: 0 * t)
    with pytest.raises(ValueError, match="σ\\(0\\)"):
        I.Interpolant(lambda t: 1 - t, lambda t: 0.5 + t, lambda t: 0 * t)
    with pytest.raises(ValueError, match="not finite"):
        I.Interpolant(lambda t: 1 - t, lambda t: t, lambda t: jnp.log(t - 0.5))
    with pytest.raises(ValueError, match="t_min"):
        I.linear(t_min=0.5, t_max=0.2)
    with pytest.raises(ValueError, match="β\\(1\\) = 1"):
        I.Interpolant(lambda t: 1 - t, lambda t: 0.5 * t, lambda t: t * (1 - t), two_sided=True)
    with pytest.raises(ValueError, match="sigma_min"):
        I.ve(sigma_min=2.0, sigma_max=1.0)


@pytest.mark.parametrize("ip", PRESETS, ids=lambda ip: ip.name)
@pytest.mark.parametrize("prediction", I.PREDICTIONS)
def test_check_domain_presets(ip, prediction):
    """On [t_min, t_max]: linear and trig reach α(1) = 0 (noise, score) and σ(0) = 0 (data, score); the other
    presets keep α(t_max) ≥ 0.003 and σ(t_min) ≥ 1e-6, so every prediction converts to velocity."""
    singular = {("linear", "noise"): "α\\(1\\) = ", ("linear", "data"): "σ\\(0\\) = 0",
                ("linear", "score"): "σ\\(0\\) = 0"}
    singular.update({("trig", p): m for (_, p), m in singular.items()})
    key = (ip.name, prediction)
    if key not in singular:
        assert I.check_domain(ip, prediction, ip.t_min, ip.t_max) is ip
        return
    with pytest.raises(ValueError, match=f"what: prediction='{prediction}' on '{ip.name}' is singular at t = .*"
                                         f"{singular[key]}"):
        I.check_domain(ip, prediction, ip.t_min, ip.t_max, what="what")


def test_check_domain_messages_and_remedies():
    msg = ("sample_ode: prediction='noise' on 'linear' is singular at t = 1 (α(1) = 0): converting noise to velocity "
           "needs α > 0 (x̂0 = (x − σ ε̂)/α; MATH.md §3); pass an interpolant with t_max < 1, "
           "e.g. genjax.interpolants.linear(t_max=0.999) (or predict 'velocity', which needs only D > 0)")
    with pytest.raises(ValueError) as err:
        I.check_domain(I.linear, "noise", 0.0, 1.0, what="sample_ode")
    assert str(err.value) == msg
    # the suggested remedies pass; a shorter interval passes too
    I.check_domain(I.linear(t_max=0.999), "noise", 0.0, 0.999)
    I.check_domain(I.linear(t_min=0.001), "data", 0.001, 1.0)
    I.check_domain(I.linear, "score", 0.001, 0.999)
    # targets other than velocity: noise → score and velocity → score divide by σ, noise → data by α
    I.check_domain(I.linear, "noise", 0.0, 0.999, to="data")
    for prediction in ("noise", "velocity"):
        with pytest.raises(ValueError, match="to score needs σ > 0.*t_min > 0"):
            I.check_domain(I.linear, prediction, 0.0, 0.5, to=("velocity", "score"))
    with pytest.raises(ValueError, match="interpolant.replace\\(t_min=0.001\\)"):
        I.check_domain(I.vp(beta_max=10.0), "data", 0.0, 1.0)
    # no conversion, nothing to check; bad arguments
    assert I.check_domain(I.linear, "velocity", 0.0, 1.0) is I.linear
    with pytest.raises(ValueError, match="to='eps'"):
        I.check_domain(I.linear, "noise", 0.1, 0.9, to="eps")
    with pytest.raises(ValueError, match="t_lo <= t_hi"):
        I.check_domain(I.linear, "noise", 0.9, 0.1)
    with pytest.raises(ValueError, match="concrete"):
        jax.jit(lambda t: I.check_domain(I.linear, "noise", t, 0.9) and t)(0.1)
    bridge = I.Interpolant(lambda t: 1 - t, lambda t: t, lambda t: jnp.sqrt(t * (1 - t)), two_sided=True,
                           t_min=0.1, t_max=0.9)
    with pytest.raises(ValueError, match="velocity on a two-sided path needs the 'data' prediction"):
        I.check_domain(bridge, "noise", 0.1, 0.9)
    assert I.check_domain(bridge, ("data", "noise"), 0.1, 0.9, to=("velocity", "score")) is bridge
    with pytest.raises(ValueError, match=r"singular at t = 0 \(γ\(0\) = 0\).*keep t away from 0 \(the interpolant's t_min"):
        I.check_domain(I.bridge(gamma="quadratic"), ("velocity", "noise"), 0.0, 1.0, to="score")
    with pytest.raises(ValueError, match=r"singular at t = 0 \(β\(0\) = 0\)"):
        I.check_domain(I.bridge(), "data", 0.0, 1.0)
    assert I.check_domain(I.bridge(), "data", 0.01, 1.0) is not None  # γ ≡ 0: x̂0 alone gives b
    with pytest.raises(ValueError, match="with γ ≠ 0 also needs η"):
        I.check_domain(I.bridge(gamma="sin2"), "data", 0.01, 1.0)


@pytest.mark.parametrize("build, match", [
    (lambda: I.ddpm(num_steps=0), "ddpm: need num_steps to be a positive integer.*got num_steps=0"),
    (lambda: I.ddpm(num_steps=-3), "num_steps=-3"),
    (lambda: I.ddpm(num_steps=10.5), "num_steps=10.5"),
    (lambda: I.ddpm(num_steps=True), "num_steps=True"),
    (lambda: I.ddpm(beta_start=0.03), "0 < beta_start <= beta_end < 1"),
    (lambda: I.ddpm(beta_end=1.5), "beta_end=1.5"),
    (lambda: I.vp(beta_min=20.0, beta_max=20.0), "vp: need 0 < beta_min < beta_max"),
    (lambda: I.vp(beta_min=0.0), "beta_min=0.0"),
    (lambda: I.subvp(beta_max=float("nan")), "subvp: need 0 < beta_min < beta_max"),
    (lambda: I.ve(sigma_min=0.0), "ve: need 0 < sigma_min"),
    (lambda: I.ve(sigma_max="10"), "sigma_max='10'"),
    (lambda: I.cosine(s=-0.1), "cosine: need 0 <= s"),
    (lambda: I.cosine(floor=1.0), "floor=1.0"),
])
def test_preset_parameters_are_checked(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_two_sided_interpolant_and_bad_names():
    ip = I.Interpolant(lambda t: 1 - t, lambda t: t, lambda t: jnp.sqrt(2 * t * (1 - t)), two_sided=True, name="bridge",
                         t_min=1e-3, t_max=1 - 1e-3)
    assert ip.two_sided
    g = np.sqrt(2 * 0.5 * 0.5)
    np.testing.assert_allclose(genjax.convert(jnp.ones(2), "noise", "score", ip, 0.5, jnp.ones(2)), -1 / g, rtol=1e-6)
    with pytest.raises(ValueError, match="not determined.*second head"):
        genjax.convert(jnp.ones(2), "velocity", "score", ip, 0.5, jnp.ones(2))
    with pytest.raises(ValueError, match="prediction|frm"):
        genjax.convert(jnp.ones(2), "eps", "score", I.linear, 0.5, jnp.ones(2))


@pytest.mark.parametrize("ip", PRESETS, ids=lambda ip: ip.name)
def test_every_preset_passes_validation(ip):
    """Presets skip the grid check at import; it runs here (and when a preset is re-parameterised)."""
    assert I.check_interpolant(ip) is ip
    assert ip().name == ip.name  # re-building validates without error
