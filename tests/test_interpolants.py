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
    for t in TS:
        np.testing.assert_allclose(ip.derivatives(t), ip.jvp_derivatives(t), rtol=1e-4, atol=1e-5)


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


def test_two_sided_interpolant_and_bad_names():
    ip = I.Interpolant(lambda t: 1 - t, lambda t: t, lambda t: jnp.sqrt(2 * t * (1 - t)), two_sided=True, name="bridge",
                         t_min=1e-3, t_max=1 - 1e-3)
    assert ip.two_sided
    with pytest.raises(ValueError, match="one-sided"):
        genjax.convert(jnp.ones(2), "noise", "score", ip, 0.5, jnp.ones(2))
    with pytest.raises(ValueError, match="prediction|frm"):
        genjax.convert(jnp.ones(2), "eps", "score", I.linear, 0.5, jnp.ones(2))


@pytest.mark.parametrize("ip", PRESETS, ids=lambda ip: ip.name)
def test_every_preset_passes_validation(ip):
    """Presets skip the grid check at import; it runs here (and when a preset is re-parameterised)."""
    assert I.check_interpolant(ip) is ip
    assert ip().name == ip.name  # re-building validates without error
