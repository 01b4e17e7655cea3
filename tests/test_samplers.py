"""Samplers against analytic oracles (MATH.md §9.1, §9.2, §9.9).

Gaussian data ``x0 ~ N(m, diag(s²))``: every one-sided path has ``p_t = N(α m, α² s² + σ²)``
and affine exact fields (written out below from MATH.md §9.1, independently of
``genjax.interpolants.convert``).  Because those fields are affine, every discrete sampler maps
Gaussians to Gaussians, so the exact mean/std of a sampler's output after its *discrete*
steps follows from a float64 moment recursion written here from the textbook update formulas:
the tests compare samples to that recursion within Monte-Carlo error and state the
discretisation error (recursion vs N(m, s²)) separately.  The PF-ODE flow map is affine too,
so ODE samplers are also checked path by path.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import interpolants as I
from genjax import targets
from genjax.interpolants import ddpm_alpha_bars
from genjax.samplers import gaussian_step, sample_ddim, sample_ddpm, sample_ode, sample_sde

M = np.array([1.0, -2.0])
S = np.array([0.5, 2.0])
PRESETS = {"linear": I.linear, "vp": I.vp, "ve": I.ve, "trig": I.trig, "ddpm": I.ddpm, "subvp": I.subvp,
           "cosine": I.cosine}
Z = 5.0  # Monte-Carlo tolerance in standard errors


def _gaussian_field(ip, prediction):
    """Exact fields of N(M, diag(S²)) under ``ip`` (MATH.md §9.1)."""
    m, s2 = jnp.asarray(M, jnp.float32), jnp.asarray(S**2, jnp.float32)

    def fn(t, x):
        a, s, da, ds = ip.scales(t)
        var = a**2 * s2 + s**2
        if prediction == "velocity":
            return da * m + (a * da * s2 + s * ds) / var * (x - a * m)
        score = -(x - a * m) / var
        return score if prediction == "score" else -s * score  # noise: ε̂ = −σ s

    return fn


_FIELDS = {}


def field(name, prediction):
    """One field object per (preset, prediction), so jit caches are shared across tests."""
    return _FIELDS.setdefault((name, prediction), _gaussian_field(PRESETS[name], prediction))


def scales64(ip, t):
    return tuple(np.asarray(v, np.float64) for v in ip.scales(jnp.asarray(t, jnp.float32)))


def marginal(ip, t):
    """Mean and std of p_t per coordinate."""
    a, s, _, _ = scales64(ip, t)
    return a * M, np.sqrt(a**2 * S**2 + s**2)


def draw_marginal(ip, t, n, seed=1):
    mean, std = marginal(ip, t)
    return jnp.asarray(mean + std * np.asarray(jax.random.normal(jax.random.key(seed), (n, 2))), jnp.float32)


def assert_moments(x, mean, std, extra=0.0, what=""):
    """Sample mean/std equal (mean, std) within Z standard errors (+ an absolute ``extra``)."""
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    assert np.all(np.isfinite(x)), what
    tol_mean = Z * std / math.sqrt(n) + extra
    tol_std = Z * std / math.sqrt(2 * n) + extra  # se of a Gaussian sample std ≈ σ/sqrt(2n)
    np.testing.assert_array_less(np.abs(x.mean(0) - mean), tol_mean, err_msg=f"{what}: mean")
    np.testing.assert_array_less(np.abs(x.std(0) - std), tol_std, err_msg=f"{what}: std")


def propagate(steps, var0):
    """Moments of x under affine Gaussian steps x ← A x + B + c ξ, from N(0, var0)."""
    mean, var = np.zeros(2), np.full(2, var0, dtype=np.float64)
    for a, b, c in steps:
        mean, var = a * mean + b, a**2 * var + c**2
    return mean, np.sqrt(var)


# ---------------------------------------------------------------------------------
# PF-ODE (Oracle 1): path by path against the exact affine flow map, and in distribution.
# ---------------------------------------------------------------------------------

# (preset, solver, num_steps, prediction, pathwise tolerance). Tolerances are max-abs errors
# over 4000 paths with |x| up to ~8 (measured: Euler-200 0.048, Heun-50 1.3e-3, Tsit5 with
# rtol = atol = 1e-5 ≤ 7e-4), with a ~2x margin.
ODE_CASES = [
    ("linear", "euler", 200, "velocity", 0.1),
    ("linear", "heun", 50, "velocity", 3e-3),
    ("vp", "tsit5", 100, "velocity", 2e-3),
    ("ve", "tsit5", 100, "velocity", 2e-3),
    ("trig", "tsit5", 100, "velocity", 2e-3),
    ("vp", "tsit5", 100, "noise", 2e-3),  # mixed predictions: same flow from ε̂ and from s
    ("vp", "heun", 100, "score", 3e-3),
    ("subvp", "tsit5", 100, "velocity", 2e-3),
    ("cosine", "tsit5", 100, "noise", 2e-3),
]


def exact_flow(ip, x, t_from, t_to):
    """The PF-ODE map of Gaussian data: x ↦ α_to m + (std_to/std_from)(x − α_from m) per coordinate."""
    m_from, s_from = marginal(ip, t_from)
    m_to, s_to = marginal(ip, t_to)
    return m_to + s_to / s_from * (np.asarray(x, np.float64) - m_from)


@pytest.mark.parametrize("name", ["linear", "vp", "ve", "cosine"])
def test_gaussian_flow_map_is_the_exact_flow(name):
    """``targets.gaussian_flow_map`` (the oracle of the few-step models) is the float64 map that the
    solver tests below check the PF-ODE against, between interior times in both directions."""
    ip = PRESETS[name]
    x = draw_marginal(ip, 0.7, 64)
    for t, r in ((0.7, 0.2), (0.2, 0.7), (ip.t_max, ip.t_min)):
        got = jax.vmap(lambda xi: targets.gaussian_flow_map(ip, M, S, t, r, xi))(x)
        np.testing.assert_allclose(np.asarray(got), exact_flow(ip, x, t, r), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,solver,num_steps,prediction,tol", ODE_CASES)
def test_ode_gaussian(name, solver, num_steps, prediction, tol):
    ip = PRESETS[name]
    n = 4000
    x1 = draw_marginal(ip, ip.t_max, n)  # exact p_{t_max}: isolates the solver error from the prior mismatch
    xs, stats = sample_ode(field(name, prediction), ip, None, prediction=prediction, solver=solver,
                           num_steps=num_steps, x_init=x1)
    expected = exact_flow(ip, x1, ip.t_max, ip.t_min)
    assert float(np.max(np.abs(np.asarray(xs) - expected))) < tol
    mean, std = marginal(ip, ip.t_min)
    assert_moments(xs, mean, std, extra=tol, what=f"{name}/{solver}/{prediction}")
    if solver in ("euler", "heun"):
        assert int(stats["nfe"]) == num_steps * (1 if solver == "euler" else 2)


def test_ode_default_prior_and_euler_order():
    """Default prior N(0, σ(1)²) is exact for linear (α(1)=0); Euler's error halves when steps double."""
    ip = I.linear
    xs, _ = sample_ode(field("linear", "velocity"), ip, jax.random.key(0), (4000, 2), prediction="velocity",
                       solver="euler", num_steps=200)
    assert_moments(xs, M, S, extra=0.05, what="linear default prior")  # Euler-200 bias < 0.05 (pathwise test)
    x1 = draw_marginal(ip, 1.0, 4000)  # same x_init as test_ode_gaussian: the Euler-200 compilation is reused
    exact = exact_flow(ip, x1, 1.0, 0.0)
    errs = [np.max(np.abs(np.asarray(sample_ode(field("linear", "velocity"), ip, None, prediction="velocity",
                                                solver="euler", num_steps=k, x_init=x1)[0]) - exact)) for k in (200, 400)]
    assert 0.4 < errs[1] / errs[0] < 0.6  # first order: ratio → 1/2


def _counting_field():
    calls = [0]

    def fn(t, x):
        jax.debug.callback(lambda: calls.__setitem__(0, calls[0] + 1))
        return -x

    return fn, calls


@pytest.mark.parametrize("solver,num_steps", [("euler", 10), ("heun", 10), ("tsit5", 100)])
def test_nfe_counts_calls(solver, num_steps):
    """stats['nfe'] equals the true number of calls of fn (one sample, so no batching effects)."""
    fn, calls = _counting_field()
    _, stats = sample_ode(fn, I.linear, None, prediction="velocity", solver=solver, num_steps=num_steps,
                          x_init=jnp.ones((1, 2)))
    jax.effects_barrier()
    assert int(stats["nfe"]) == calls[0]
    if solver != "tsit5":
        assert int(stats["nfe"]) == num_steps * (1 if solver == "euler" else 2)
    else:
        assert int(stats["nfe"]) == 1 + 6 * int(stats["num_steps"][0])


# ---------------------------------------------------------------------------------
# Reverse SDE (Oracle 1): Euler–Maruyama moments against the float64 EM recursion.
# ---------------------------------------------------------------------------------


def em_moments(ip, diffusion, num_steps, var0, mean0):
    """Exact moments after EM on dx = [v − ε s]dt + sqrt(2ε) dW̄ with the affine Gaussian fields (dt < 0)."""
    ts = np.linspace(ip.t_max, ip.t_min, num_steps + 1)
    mean, var = np.array(mean0, np.float64), np.full(2, var0, np.float64)
    for t, t_next in zip(ts[:-1], ts[1:]):
        a, s, da, ds = scales64(ip, t)
        eps = float(diffusion(t))
        v_var = a**2 * S**2 + s**2
        gain = (a * da * S**2 + s * ds) / v_var + eps / v_var  # drift = α̇m + gain (x − αm)
        h = t_next - t
        mean = mean + h * (da * M + gain * (mean - a * M))
        var = (1 + h * gain) ** 2 * var + 2 * eps * abs(h)  # the noise adds 2ε|h|
    return mean, np.sqrt(var)


def _g2_half(ip):
    def eps(t):
        a, s, da, ds = scales64(ip, t)
        return s * ds - da / a * s**2  # g²/2 = σσ̇ − (α̇/α)σ² (MATH.md §3)

    return eps


# (preset, prediction, diffusion or None for g²/2).  From the recursion, 250 EM steps bias the
# std by < 0.5% and the mean by < 0.5 % of s, far below the Monte-Carlo error; bound: 1%.
SDE_CASES = [
    ("vp", "score", None),
    ("ve", "score", None),
    ("linear", "velocity", "half_t"),  # linear's g² blows up at t=1: use ε(t) = t/2
    ("vp", "noise", "zero"),  # ε = 0: the PF-ODE with Euler steps
]
_DIFFUSIONS = {"half_t": lambda t: 0.5 * t, "zero": lambda t: 0.0}


@pytest.mark.parametrize("name,prediction,diffusion", SDE_CASES)
def test_sde_gaussian(name, prediction, diffusion):
    ip = PRESETS[name]
    n, steps, bias = 10000, 250, 0.01
    x1 = draw_marginal(ip, ip.t_max, n)
    eps_fn = _DIFFUSIONS.get(diffusion)
    xs, _ = sample_sde(field(name, prediction), ip, jax.random.key(2), prediction=prediction, diffusion=eps_fn,
                    num_steps=steps, x_init=x1)
    x1_np = np.asarray(x1, np.float64)
    # Start the recursion from the empirical moments of x_init (removes its MC error from the comparison).
    eps_np = eps_fn or _g2_half(ip)
    mean, std = em_moments(ip, eps_np, steps, x1_np.var(0), x1_np.mean(0))
    assert_moments(xs, mean, std, what=f"sde {name}")
    # Discretisation error of EM from the exact p_{t_max}, relative to the continuous answer p_{t_min}.
    m1, s1 = marginal(ip, ip.t_max)
    mean, std = em_moments(ip, eps_np, steps, s1**2, m1)
    m0, s0 = marginal(ip, ip.t_min)
    np.testing.assert_array_less(np.abs(std - s0) / s0, bias)
    np.testing.assert_array_less(np.abs(mean - m0), bias * s0)


# ---------------------------------------------------------------------------------
# DDPM / DDIM (Oracle 1): moments against the ᾱ-form recursion of MATH.md §5.
# ---------------------------------------------------------------------------------

ABAR = ddpm_alpha_bars(1000)


def _eps_gain(ab):
    """Exact ε̂ = k (x − sqrt(ᾱ) m) for N(m, s²) data under the ddpm path."""
    return np.sqrt(1 - ab) / (ab * S**2 + 1 - ab)


def ddpm_steps(variance):
    for i in range(1000, 0, -1):
        ab, ab_prev = ABAR[i], ABAR[i - 1]
        beta = 1 - ab / ab_prev
        k = _eps_gain(ab)
        # Ho et al. (2020): x_{i−1} = (x_i − β/sqrt(1−ᾱ) ε̂)/sqrt(1−β) + σ_i ξ, no noise at the end
        a = (1 - beta * k / np.sqrt(1 - ab)) / np.sqrt(1 - beta)
        b = beta * k * np.sqrt(ab) * M / (np.sqrt(1 - ab) * np.sqrt(1 - beta))
        var = beta if variance == "beta" else beta * (1 - ab_prev) / (1 - ab)
        yield a, b, 0.0 if i == 1 else np.sqrt(var)


def ddim_steps(indices, eta):
    for i, j in zip(indices[:-1], indices[1:]):
        ab_t, ab_s = ABAR[i], ABAR[j]
        k = _eps_gain(ab_t)
        sig = eta * np.sqrt((1 - ab_s) / (1 - ab_t)) * np.sqrt(1 - ab_t / ab_s)
        e = np.sqrt(1 - ab_s - sig**2)
        r = np.sqrt(ab_s / ab_t)
        # x_s = sqrt(ᾱ_s) x̂0 + sqrt(1−ᾱ_s−σ²) ε̂ + σ ξ,  x̂0 = (x − sqrt(1−ᾱ_t) ε̂)/sqrt(ᾱ_t)
        yield r * (1 - np.sqrt(1 - ab_t) * k) + e * k, (r * np.sqrt(1 - ab_t) - e) * k * np.sqrt(ab_t) * M, sig


@pytest.fixture(scope="module")
def ddpm_samples():
    return {v: sample_ddpm(field("ddpm", "noise"), I.ddpm, jax.random.key(3), (10000, 2), prediction="noise",
                           variance=v)[0] for v in ("beta", "beta_tilde")}


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_ddpm_gaussian(ddpm_samples, variance):
    mean, std = propagate(ddpm_steps(variance), 1 - ABAR[-1])
    assert_moments(ddpm_samples[variance], mean, std, what=f"ddpm {variance}")
    # T = 1000 ancestral steps: the discrete chain is within 1% of N(m, s²) (recursion: 0.15% for β, 0.8% for β̃).
    np.testing.assert_array_less(np.abs(std - S) / S, 0.01)
    np.testing.assert_array_less(np.abs(mean - M), 0.01 * S)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_gaussian(eta):
    steps = 50
    xs, _ = sample_ddim(field("ddpm", "noise"), I.ddpm, jax.random.key(4), (10000, 2), prediction="noise", eta=eta,
                        num_steps=steps)
    indices = np.round(np.linspace(1000, 0, steps + 1)).astype(int)
    mean, std = propagate(ddim_steps(indices, eta), 1 - ABAR[-1])
    assert_moments(xs, mean, std, what=f"ddim eta={eta}")
    # Discretisation error of 50 steps (from the recursion): the std shrinks by 5.7% / 3.0% (η=0)
    # and 11.2% / 5.7% (η=1) on the s = 0.5 / s = 2 coordinates; DDIM's bound is stated, not hidden.
    np.testing.assert_array_less(np.abs(std - S) / S, [0.07, 0.04] if eta == 0 else [0.13, 0.07])


def test_ddim_eta1_full_grid_equals_ddpm_beta_tilde(ddpm_samples):
    """Same key, same noise: DDIM(η=1) on every grid point is DDPM with β̃ (σ(0)=0: last step noiseless)."""
    b, _ = sample_ddim(field("ddpm", "noise"), I.ddpm, jax.random.key(3), (10000, 2), prediction="noise", eta=1.0,
                       timesteps=np.arange(1000, -1, -1) / 1000)
    np.testing.assert_allclose(np.asarray(ddpm_samples["beta_tilde"]), np.asarray(b), atol=1e-5)


def ddim_general_steps(ip, times, eta):
    """Affine DDIM steps in the ᾱ = α² form of MATH.md §5 (variance-preserving paths), exact ε̂ of N(M, S²)."""
    for t, t_next in zip(times[:-1], times[1:]):
        a_t, s_t, _, _ = scales64(ip, t)
        a_s, _, _, _ = scales64(ip, t_next)
        ab_t, ab_s = a_t**2, a_s**2
        k = s_t / (a_t**2 * S**2 + s_t**2)  # ε̂ = k (x − α_t m)
        sig = eta * np.sqrt((1 - ab_s) / (1 - ab_t)) * np.sqrt(1 - ab_t / ab_s)
        e = np.sqrt(max(1 - ab_s - sig**2, 0.0))
        # x_s = sqrt(ᾱ_s) x̂0 + e ε̂ + σ ξ with x̂0 = (x − sqrt(1−ᾱ_t) ε̂)/sqrt(ᾱ_t)
        yield (np.sqrt(ab_s) * (1 - s_t * k) / a_t + e * k, np.sqrt(ab_s) * s_t * k * M - e * k * a_t * M, sig)


@pytest.mark.parametrize("name,eta", [("vp", 0.5), ("cosine", 0.3)])
def test_ddim_partial_eta_off_the_ddpm_grid(name, eta):
    """0 < η < 1 on continuous schedules: moments equal the ᾱ-form recursion within Monte-Carlo error."""
    ip, steps = PRESETS[name], 40
    xs, stats = sample_ddim(field(name, "noise"), ip, jax.random.key(5), (10000, 2), prediction="noise", eta=eta,
                            num_steps=steps)
    assert stats["nfe"] == steps
    _, s1, _, _ = scales64(ip, ip.t_max)
    mean, std = propagate(ddim_general_steps(ip, np.linspace(ip.t_max, 0.0, steps + 1), eta), s1**2)
    assert_moments(xs, mean, std, what=f"ddim {name} eta={eta}")


# ---------------------------------------------------------------------------------
# The one Gaussian step (Oracle 9): posterior mean/variance and the DDPM/DDIM formulas.
# ---------------------------------------------------------------------------------


def test_gaussian_step_matches_ddpm_formulas():
    ip = I.ddpm
    rng = np.random.default_rng(0)
    for i in [1, 2, 10, 250, 600, 1000]:
        ab, ab_prev = ABAR[i], ABAR[i - 1]
        beta = 1 - ab / ab_prev
        x0 = rng.normal(size=3)
        eps = rng.normal(size=3)
        x = np.sqrt(ab) * x0 + np.sqrt(1 - ab) * eps
        t, s = jnp.float32(i / 1000), jnp.float32((i - 1) / 1000)
        out = gaussian_step(ip, t, s, jnp.asarray(x0, jnp.float32), jnp.asarray(eps, jnp.float32), 1.0)
        mean, c, trans = (np.asarray(v, np.float64) for v in out)
        # μ̃ (MATH.md §5) and Ho et al.'s update, both from ᾱ in float64.
        mu_tilde = np.sqrt(ab_prev) * beta / (1 - ab) * x0 + np.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab) * x
        ho = (x - beta / np.sqrt(1 - ab) * eps) / np.sqrt(1 - beta)
        beta_tilde = beta * (1 - ab_prev) / (1 - ab)
        np.testing.assert_allclose(mean, mu_tilde, atol=2e-5)
        np.testing.assert_allclose(mean, ho, atol=2e-5)
        np.testing.assert_allclose(c**2, beta_tilde, rtol=1e-3, atol=1e-9)
        np.testing.assert_allclose(trans**2, beta, rtol=1e-3)
        # DDIM's σ in ᾱ form at η = 0.3 (MATH.md §5)
        _, c3, _ = gaussian_step(ip, t, s, jnp.zeros(3), jnp.zeros(3), 0.3)
        sig = 0.3 * np.sqrt((1 - ab_prev) / (1 - ab)) * np.sqrt(1 - ab / ab_prev)
        np.testing.assert_allclose(float(c3), sig, rtol=1e-3, atol=1e-9)


@pytest.mark.parametrize("name", ["linear", "vp", "ve", "trig"])
def test_gaussian_step_is_gaussian_conditioning(name):
    """η = 1: mean and variance of q(x_s | x_t, x0) by conditioning the joint Gaussian of (x_s, x_t) given x0."""
    ip = PRESETS[name]
    rng = np.random.default_rng(1)
    for t, s in [(0.9, 0.5), (0.5, 0.45), (0.3, 0.05), (0.8, 0.0)]:
        a_t, s_t, _, _ = scales64(ip, t)
        a_s, s_s, _, _ = scales64(ip, s)
        x0, x = rng.normal(size=2), rng.normal(size=2) * 2
        # Markov forward process x_t = (α_t/α_s) x_s + noise: Cov[x_s, x_t | x0] = (α_t/α_s) σ_s².
        cov = np.array([[s_s**2, a_t / a_s * s_s**2], [a_t / a_s * s_s**2, s_t**2]])
        cond_mean = a_s * x0 + cov[0, 1] / cov[1, 1] * (x - a_t * x0)
        cond_var = cov[0, 0] - cov[0, 1] ** 2 / cov[1, 1]
        eps = (x - a_t * x0) / s_t  # the ε̂ consistent with x̂0 = x0
        mean, c, _ = gaussian_step(ip, jnp.float32(t), jnp.float32(s), jnp.asarray(x0, jnp.float32),
                                   jnp.asarray(eps, jnp.float32), 1.0)
        np.testing.assert_allclose(np.asarray(mean), cond_mean, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(float(c) ** 2, cond_var, rtol=1e-3, atol=1e-6)


def test_ddim_point_mass_lands_exactly():
    """η = 0 with the exact ε of a point mass lands on it from any x_T, for any subsequence (MATH.md §9.9)."""
    c = jnp.array([0.7, -1.3, 2.0])
    for ip in (I.ddpm, I.vp, I.ve):  # ve: σ(0) = 0.01 > 0, so the chain must end on x̂0
        def fn(t, x, ip=ip):
            a, s, _, _ = ip.scales(t)
            return (x - a * c) / s

        x_init = 3.0 * jax.random.normal(jax.random.key(6), (16, 3))
        for times in ([1.0, 0.7, 0.31, 0.05, 0.0], [0.999, 0.9, 0.5, 0.2, 0.0], [0.6, 0.5, 0.4, 0.3, 0.0]):
            out, _ = sample_ddim(fn, ip, None, prediction="noise", timesteps=times, x_init=x_init)
            np.testing.assert_allclose(np.asarray(out), np.broadcast_to(np.asarray(c), out.shape), atol=2e-5)


# ---------------------------------------------------------------------------------
# Gaussian mixture (Oracle 2): ODE and SDE reproduce mean, covariance and mode weights.
# ---------------------------------------------------------------------------------

MIX = targets.GaussianMixture.diagonal([0.3, 0.7], [[-2.0, 0.0], [2.0, 1.0]], [[0.5, 0.8], [0.7, 0.4]])


@pytest.fixture(scope="module")
def mixture_samples():
    ip = I.vp
    n = 3000
    ode, _ = sample_ode(MIX.field(ip, "velocity"), ip, jax.random.key(7), (n, 2), prediction="velocity")
    sde, _ = sample_sde(MIX.field(ip, "score"), ip, jax.random.key(8), (n, 2), prediction="score", num_steps=250)
    return np.asarray(ode, np.float64), np.asarray(sde, np.float64)


def _moment_se(x):
    """Means, covariance entries and P(x[0] > 0), with their standard errors from the sample."""
    n = x.shape[0]
    c = x - x.mean(0)
    prods = np.stack([c[:, 0] ** 2, c[:, 0] * c[:, 1], c[:, 1] ** 2], 1)
    frac = (x[:, 0] > 0).astype(float)
    values = np.concatenate([x.mean(0), prods.mean(0), [frac.mean()]])
    ses = np.concatenate([x.std(0), prods.std(0), [frac.std()]]) / math.sqrt(n)
    return values, ses


def test_mixture_ode_and_sde(mixture_samples):
    cov = np.asarray(MIX.covariance(), np.float64)
    truth = np.concatenate([np.asarray(MIX.mean(), np.float64), [cov[0, 0], cov[0, 1], cov[1, 1]], [0.7]])
    # Components sit 4 widths apart: P(x[0] > 0) = 0.7 up to ~1e-8.  The vp prior mismatch
    # (α(1) ≈ 0.0066) and 250 EM steps move moments by < 0.03 (stated discretisation allowance).
    results = []
    for name, x in zip(("ode", "sde"), mixture_samples):
        values, ses = _moment_se(x)
        np.testing.assert_array_less(np.abs(values - truth), Z * ses + 0.03, err_msg=name)
        results.append((values, ses))
    (v1, s1), (v2, s2) = results
    np.testing.assert_array_less(np.abs(v1 - v2), Z * np.sqrt(s1**2 + s2**2) + 0.03, err_msg="ode vs sde")


# ---------------------------------------------------------------------------------
# Bad input.
# ---------------------------------------------------------------------------------


def _fn(t, x):
    return -x


BAD_CALLS = [
    (lambda: sample_ode(_fn, I.linear, jax.random.key(0), 5, prediction="velocity"), "shape"),
    (lambda: sample_ode(_fn, I.linear, jax.random.key(0), (5,), prediction="velocity"), "shape"),
    (lambda: sample_ode(_fn, I.linear, jax.random.key(0), (5, 0), prediction="velocity"), "shape"),
    (lambda: sample_ode(_fn, I.linear, None, x_init=jnp.array([[0.0, jnp.nan]]), prediction="velocity"), "x_init"),
    (lambda: sample_ode(_fn, I.linear, None, x_init=jnp.ones(3), prediction="velocity"), "x_init"),
    (lambda: sample_ode(_fn, I.linear, None, (2, 3), x_init=jnp.ones((2, 2)), prediction="velocity"), "shape"),
    (lambda: sample_ode(_fn, I.linear, None, (2, 2), prediction="velocity"), "key"),
    (lambda: sample_ode(_fn, I.linear, jax.random.key(0), (2, 2), prediction="epsilon"), "prediction"),
    (lambda: sample_ode(_fn, I.linear, jax.random.key(0), (2, 2), solver="rk4", prediction="velocity"), "solver"),
    (lambda: sample_ode(_fn, I.linear, jax.random.key(0), (2, 2), num_steps=0, prediction="velocity"), "num_steps"),
    (lambda: sample_ode(_fn, I.linear, jax.random.key(0), (2, 2), rtol=-1.0, prediction="velocity"), "rtol"),
    (lambda: sample_ode(_fn, I.vp, jax.random.key(0), (2, 2), t_end=0.0, prediction="velocity"), "t_end"),
    (lambda: sample_ode(_fn, I.linear, jax.random.key(0), (2, 2), t_start=0.2, t_end=0.5, prediction="velocity"), "x_init"),
    (lambda: sample_sde(_fn, I.vp, jax.random.key(0), (2, 2), t_start=0.2, t_end=0.5, prediction="velocity"), "x_init"),
    (lambda: sample_sde(_fn, I.vp, None, (2, 2), prediction="velocity"), "key"),
    (lambda: sample_sde(_fn, I.linear, jax.random.key(0), (2, 2), prediction="velocity"), "diffusion"),
    (lambda: sample_sde(_fn, I.vp, jax.random.key(0), (2, 2), diffusion=lambda t: -1.0, prediction="velocity"), "diffusion"),
    (lambda: sample_sde(_fn, I.vp, jax.random.key(0), (2, 2), diffusion="0.5", prediction="velocity"), "diffusion"),
    (lambda: sample_sde(_fn, I.vp, jax.random.key(0), (2, 2), diffusion=-0.5, prediction="velocity"), "diffusion"),
    (lambda: sample_ddpm(_fn, I.ddpm, jax.random.key(0), (2, 2), variance="sigma", prediction="noise"), "variance"),
    (lambda: sample_ddpm(_fn, I.vp, jax.random.key(0), (2, 2), prediction="noise"), "num_steps"),
    (lambda: sample_ddpm(_fn, I.ddpm, jax.random.key(0), (2, 2), prediction="noize"), "prediction"),
    (lambda: sample_ddim(_fn, I.ddpm, jax.random.key(0), (2, 2), eta=1.5, prediction="noise"), "eta"),
    (lambda: sample_ddim(_fn, I.ddpm, jax.random.key(0), (2, 2), timesteps=[0.5, 0.7, 0.0], prediction="noise"), "decreasing"),
    (lambda: sample_ddim(_fn, I.ddpm, jax.random.key(0), (2, 2), timesteps=[1.5, 0.7, 0.0], prediction="noise"), "t_max"),
    (lambda: sample_ddim(_fn, I.ddpm, jax.random.key(0), (2, 2), timesteps=[1.0, 0.0005, 0.0], prediction="noise"), "t_min"),
    (lambda: sample_ddim(_fn, I.ddpm, jax.random.key(0), (2, 2), timesteps=[1.0], prediction="noise"), "timesteps"),
    (lambda: sample_ddim(_fn, I.ddpm, jax.random.key(0), (2, 2), num_steps=5, timesteps=[1.0, 0.0], prediction="noise"), "either"),
    (lambda: sample_ddim(_fn, I.ddpm, None, (2, 2), eta=0.5, prediction="noise"), "key"),
]


@pytest.mark.parametrize("call,match", BAD_CALLS)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_clip_x0_keeps_ddim_and_ddpm_in_the_data_range():
    """``clip_x0``: every sample ends inside the range (the last step returns the clipped x̂0); a range wider
    than every x̂0 on the path leaves DDIM's samples unchanged up to float32 rounding (ε̂ is recomputed from x̂0)."""
    ip, key = PRESETS["vp"], jax.random.key(5)
    model = field("vp", "noise")
    ddim = lambda **kw: sample_ddim(model, ip, key, (500, 2), prediction="noise", num_steps=20, **kw)[0]  # noqa: E731
    plain = np.asarray(ddim())
    assert np.abs(plain).max() > 1.5  # N(M, S²) reaches far outside [−1, 1]
    np.testing.assert_allclose(np.asarray(ddim(clip_x0=(-1e4, 1e4))), plain, rtol=1e-4, atol=1e-4)
    for x in (ddim(clip_x0=(-1.0, 1.0)),
              sample_ddpm(model, I.ddpm(), key, (500, 2), prediction="noise", num_steps=50, clip_x0=(-1.0, 1.0))[0]):
        assert np.all(np.abs(np.asarray(x)) <= 1.0)
    with pytest.raises(ValueError, match="clip_x0"):
        ddim(clip_x0=(1.0, -1.0))
