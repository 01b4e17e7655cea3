"""Fast ODE solvers (genjax.samplers.fast): DPM-Solver++ and UniPC against analytic oracles (MATH.md §12).

Oracles: DDIM with η = 0 (``sample_ddim``) and the closed-form first-order step for order 1; a
constant denoiser, which every exponential integrator integrates exactly; the exact PF-ODE map of
Gaussian data (MATH.md §9.1, §13, ``gaussian_flow_map``) for convergence orders and every preset;
Taylor's theorem for the local error of one step with exact history; the defining property of
each time grid.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import genjax
from genjax import interpolants as I
from genjax import targets
from genjax.samplers.discrete import sample_ddim
from genjax.samplers.fast import (dpm_coefficients, log_snr, sample_dpm, sample_unipc, step_orders, time_grid,
                                  unipc_coefficients)
from tests._compiles import COMPILES

KEY = jax.random.key(0)
M = np.array([0.5, -1.0])  # Gaussian data N(M, diag(S²)), 2-D
S = np.array([1.5, 0.5])
SOLVERS = {"dpm": sample_dpm, "unipc": sample_unipc}


def posterior_mean(ip, m=M, s=S):
    """Exact ``E[x0 | x_t = x] = m + α s²/(α² s² + σ²)(x − α m)`` of Gaussian data (MATH.md §9.1)."""
    def fn(t, x):
        a, sg = ip.alpha(t), ip.sigma(t)
        return (m + a * s**2 / (a**2 * s**2 + sg**2) * (x - a * m)).astype(x.dtype)
    return fn


def test_posterior_mean_is_the_library_field():
    """The closed form above (cheap to compile) is the exact field ``gaussian(m, s).field(ip, "data")``."""
    for ip in (I.vp, I.linear):
        field = targets.gaussian(M, S).field(ip, "data")
        x = jnp.array([0.3, -2.0], jnp.float32)
        for t in (0.9, 0.3):
            np.testing.assert_allclose(posterior_mean(ip)(jnp.float32(t), x), field(jnp.float32(t), x), rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# 1. Order 1 is DDIM (η = 0); a constant denoiser is integrated exactly by every order.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, prediction", [("vp", "noise"), ("linear", "data")])
def test_order_one_equals_ddim(name, prediction):
    """DPM-Solver++ of order 1 on any grid is DDIM η = 0 (MATH.md §12, §9.15); here an arbitrary
    nonlinear model, the full interval (linear: α = 0 at t = 1, σ = 0 at t = 0).  Float32 rounding
    of the two formulas over 8 steps stays below 1e-5."""
    ip = getattr(I, name)
    model = lambda t, x: jnp.sin(x) * (1.0 + t) - 0.3 * t  # noqa: E731
    x_init = jax.random.normal(KEY, (16, 2)) * ip.sigma(ip.t_max)
    ts = time_grid(ip, 8)
    ours, stats = sample_dpm(model, ip, prediction=prediction, order=1, ts=ts, x_init=x_init)
    ddim, _ = sample_ddim(model, ip, prediction=prediction, timesteps=stats["ts"], eta=0.0, x_init=x_init)
    assert stats["nfe"] == 8 and (stats["orders"] == 1).all()
    np.testing.assert_allclose(ours, ddim, atol=1e-5 * float(jnp.max(jnp.abs(ddim))))


@pytest.mark.parametrize("name, t0, t1", [("linear", 1.0, 0.3), ("linear", 0.6, 0.0), ("vp", 1.0, 0.2)])
def test_single_step_is_the_closed_form(name, t0, t1):
    """One step of either solver: ``x_1 = (σ_1/σ_0) x_0 + (α_1 − σ_1 α_0/σ_0) x̂0(t_0, x_0)``, finite at
    α_0 = 0 (λ_0 = −∞) and returning ``α_1 x̂0`` at σ_1 = 0; UniPC does not correct its last step."""
    ip = getattr(I, name)
    x0 = np.asarray(jax.random.normal(KEY, (8, 2)), np.float64)
    model = posterior_mean(ip)
    a0, s0, a1, s1 = (float(f(t)) for t in (t0, t1) for f in (ip.alpha, ip.sigma))
    a0 = max(a0, 0.0)
    d = np.asarray(jax.vmap(lambda x: model(jnp.float32(t0), x))(jnp.asarray(x0, jnp.float32)), np.float64)
    want = s1 / s0 * x0 + (a1 - s1 * a0 / s0) * d
    for solver in SOLVERS.values():
        got, stats = solver(model, ip, prediction="data", order=2, ts=[t0, t1], x_init=jnp.asarray(x0, jnp.float32))
        assert stats["nfe"] == 1
        np.testing.assert_allclose(got, want, atol=2e-6)


@pytest.mark.parametrize("solver, order", [(s, o) for s in SOLVERS for o in (1, 2, 3)])
def test_constant_denoiser_is_exact(solver, order):
    """With ``x̂0 ≡ c`` (per sample, passed as conditioning) the integrand of MATH.md §12 is
    ``e^λ c`` and every order integrates it exactly: ``x_N = (σ_N/σ_0) x_0 + (α_N − σ_N α_0/σ_0) c``.
    So the weights of each step sum to the first-order weight, history included (float32 rounding:
    1e-5).  Run in chunks of 3."""
    ip = I.vp
    x_init = jax.random.normal(KEY, (8, 2))
    c = jax.random.normal(jax.random.key(1), (8, 2))
    got, stats = SOLVERS[solver](lambda t, x, c: c, ip, prediction="data", order=order, num_steps=6, x_init=x_init,
                                 c=c, chunk_size=3)
    t0, t1 = stats["ts"][0], stats["ts"][-1]
    a0, s0, a1, s1 = (float(f(jnp.float32(t))) for t in (t0, t1) for f in (ip.alpha, ip.sigma))
    want = s1 / s0 * np.asarray(x_init, np.float64) + (a1 - s1 * a0 / s0) * np.asarray(c, np.float64)
    assert max(stats["orders"]) == order
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_unipc_calls_the_model_once_per_step():
    """UniPC reuses the evaluation at the predicted point for its corrector: NFE = N (counted)."""
    calls = []
    model = lambda t, x: jax.debug.callback(lambda: calls.append(1)) or posterior_mean(I.vp)(t, x)  # noqa: E731
    _, stats = sample_unipc(model, I.vp, KEY, (1, 2), prediction="data", num_steps=7)
    jax.effects_barrier()
    assert len(calls) == stats["nfe"] == 7


# ---------------------------------------------------------------------------------------------
# 2. Convergence orders on Gaussian data (float64).
# ---------------------------------------------------------------------------------------------


def _slope(ns, errors):
    return -np.polyfit(np.log(ns), np.log(errors), 1)[0]


def test_convergence_orders():
    """Global error vs N on vp from t = 1 to t = 0.1 (λ from −5.0 to 1.1), float64 (float32's
    floor of ~1e-6 would flatten UniPC-3), N ∈ {20, 40, 80, 160}: the fitted slope of log error vs
    log N is the order, within ±0.3 (the pre-asymptotic drift measured over this range is < 0.25):
    DDIM 1, DPM-Solver++ 2M 2 and 3M 3; UniPC-p p + 1 (UniP-p plus UniC, Zhao et al. 2023, Thm 3.2).

    Why this interval: any multistep method that warms up with a first-order step is capped at
    order 2 as N → ∞ unless x̂0 is flat where it starts (at t = 1 of vp, dx̂0/dλ ∝ α(1) = 0.0066, so
    the cap is far below these errors); and over the whole generation (to t_min) the leading h³
    error term of 3M nearly cancels for Gaussian data (measured slope ≈ 4 there), which would
    hide its order."""
    ip, t0, t1, ns = I.vp, 1.0, 0.1, (20, 40, 80, 160)
    cases = [("dpm", 1, 1), ("dpm", 2, 2), ("dpm", 3, 3), ("unipc", 1, 2), ("unipc", 2, 3), ("unipc", 3, 4)]
    with jax.enable_x64(True):
        m, s = jnp.asarray(M), jnp.asarray(S)  # float64 arrays made here (NumPy constants may keep float32)
        model = posterior_mean(ip, m, s)
        x_init = jax.random.normal(KEY, (64, 2), jnp.float64) * float(ip.sigma(t0))
        exact = targets.gaussian_flow_map(ip, m, s, jnp.float64(t0), jnp.float64(t1), x_init)
        errors = {}
        for solver, order, _ in cases:
            for n in ns:
                x, _ = SOLVERS[solver](model, ip, prediction="data", num_steps=n, order=order, t_start=t0, t_end=t1,
                                       x_init=x_init, lower_order_final=False)
                assert x.dtype == jnp.float64
                errors[solver, order, n] = float(jnp.sqrt(jnp.mean((x - exact) ** 2)))
    assert jnp.zeros(1).dtype == jnp.float32  # x64 did not leak
    for solver, order, expected in cases:
        errs = [errors[solver, order, n] for n in ns]
        slope = _slope(ns, errs)
        assert abs(slope - expected) < 0.3, (solver, order, slope, errs)


def test_one_step_local_error_orders():
    """One step with exact history (Taylor's theorem): the local error of a step that interpolates
    x̂0 by a polynomial through k points is O(h^{k+1}).  DPM-Solver++ order p: O(h^{p+1}) (for 3M
    this needs the full quadratic term 2hφ_3 D2; with hφ_3 D2 it would be O(h³)).  UniP-p:
    O(h^{p+1}); UniC-p, with x̂0 evaluated at the prediction: O(h^{p+2}).  Linear path, λ = log((1−t)/t)
    uniform around 0 with step h ∈ {0.2, …, 0.025}, float64; slopes within ±0.3."""
    ip, hs, z = I.linear, np.array([0.2, 0.1, 0.05, 0.025]), np.array([0.7, -1.3])
    with jax.enable_x64(True):
        m, s = jnp.asarray(M), jnp.asarray(S)
        model = posterior_mean(ip, m, s)
        errs = {}
        for h in hs:
            lam = h * np.arange(-2.0, 2.0)  # λ_{−2}, λ_{−1}, λ_0 and the target λ_1
            ts = 1.0 / (1.0 + np.exp(lam))
            alpha, sigma = 1.0 - ts, ts
            # the exact trajectory through z at t = 1
            xs = [np.asarray(targets.gaussian_flow_map(ip, m, s, 1.0, t, jnp.asarray(z))) for t in ts]
            d = [np.asarray(model(jnp.float64(t), jnp.asarray(x))) for t, x in zip(ts, xs)]
            hist = np.stack([d[2], d[1], d[0]])  # newest first
            for p in (1, 2, 3):
                orders = np.minimum(np.arange(1, 4), p)
                a, w = dpm_coefficients(alpha, sigma, lam, orders)
                errs["dpm", p] = errs.get(("dpm", p), []) + [np.abs(a[2] * xs[2] + w[2] @ hist - xs[3]).max()]
                a, wp, wc, wn = unipc_coefficients(alpha, sigma, lam, orders)
                pred = a[2] * xs[2] + wp[2] @ hist
                corr = a[2] * xs[2] + wc[2] @ hist + wn[2] * np.asarray(model(jnp.float64(ts[3]), jnp.asarray(pred)))
                errs["unip", p] = errs.get(("unip", p), []) + [np.abs(pred - xs[3]).max()]
                errs["unic", p] = errs.get(("unic", p), []) + [np.abs(corr - xs[3]).max()]
    expected = {("dpm", p): p + 1 for p in (1, 2, 3)} | {("unip", p): p + 1 for p in (1, 2, 3)} | {
        ("unic", p): p + 2 for p in (1, 2, 3)}
    for key, order in expected.items():
        slope = np.polyfit(np.log(hs), np.log(errs[key]), 1)[0]
        assert abs(slope - order) < 0.3, (key, slope, errs[key])


# ---------------------------------------------------------------------------------------------
# 3. Every preset over its full interval (infinite-λ ends included).
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["linear", "trig", "vp", "subvp", "ve", "cosine"])
def test_every_preset_converges(name):
    """2M with the exact x̂0 of Gaussian data over the full ``[t_min, t_max]`` (linear/trig: λ = ∓∞ at
    both ends, first-order end steps): the RMS error of the final sample against the exact flow map
    falls from 5 to 20 steps and is below 0.08 at 20 steps (measured 0.007–0.04; data std ≤ 1.5)."""
    ip = getattr(I, name)
    x_init = jax.random.normal(KEY, (256, 2)) * ip.sigma(ip.t_max)
    errors = []
    for n in (5, 20):
        x, stats = sample_dpm(posterior_mean(ip), ip, prediction="data", num_steps=n, x_init=x_init)
        assert stats["ts"][0] == pytest.approx(ip.t_max) and stats["ts"][-1] == pytest.approx(ip.t_min)
        exact = targets.gaussian_flow_map(ip, M, S, ip.t_max, ip.t_min, x_init)
        errors.append(float(jnp.sqrt(jnp.mean((x - exact) ** 2))))
    assert errors[1] < errors[0] and errors[1] < 0.08, errors


# ---------------------------------------------------------------------------------------------
# 4. Time grids.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vp", "linear"])
@pytest.mark.parametrize("spacing", ["logsnr", "time", "edm"])
def test_time_grid(name, spacing):
    """Ends exact, strictly decreasing, and the defining property: uniform steps in λ, in t, or in
    ``σ̃^{1/ρ}`` (σ̃ = σ/α = e^{−λ}).  Where λ is infinite (linear at t = 1 and 0) the interior
    uses EDM's clamp σ̃ ∈ [0.002, 80].  Interior times come from a float32 bisection: tolerance 1e-4
    in λ (float32 λ of |λ| ≤ 12 is good to ~1e-6)."""
    ip, n, rho = getattr(I, name), 9, 7.0
    ts = time_grid(ip, n, spacing=spacing, rho=rho)
    assert ts.shape == (n + 1,) and ts[0] == ip.t_max and ts[-1] == ip.t_min and np.all(np.diff(ts) < 0)
    lam = np.asarray(log_snr(ip, ts), np.float64)
    lam_a, lam_b = (lam[0], lam[-1]) if name == "vp" else (-np.log(80.0), -np.log(0.002))
    if name == "linear":
        assert lam[0] == -np.inf and lam[-1] == np.inf
    frac = np.arange(n + 1) / n
    if spacing == "time":
        np.testing.assert_allclose(np.diff(ts), (ts[-1] - ts[0]) / n, rtol=1e-9)
    elif spacing == "logsnr":
        np.testing.assert_allclose(lam[1:-1], (lam_a + frac * (lam_b - lam_a))[1:-1], atol=1e-4)
    else:
        root = lambda l: np.exp(-l / rho)  # noqa: E731  σ̃^{1/ρ}
        want = root(lam_a) + frac * (root(lam_b) - root(lam_a))
        np.testing.assert_allclose(root(lam[1:-1]), want[1:-1], rtol=1e-4)


def test_time_grid_subinterval_and_step_orders():
    """A sub-interval keeps its ends; warm-up, finite history and lower_order_final set each step's order."""
    ts = time_grid(I.linear, 4, t_start=0.9, t_end=0.2)
    assert ts[0] == 0.9 and ts[-1] == 0.2 and np.all(np.diff(ts) < 0)
    inf = np.inf
    # λ = −∞ at the start: step 0 is first order, step 1 may not use it, then the orders grow.
    np.testing.assert_array_equal(step_orders(np.array([-inf, -2, -1, 0, 1, 2, 3.0]), 3, False), [1, 1, 2, 3, 3, 3])
    np.testing.assert_array_equal(step_orders(np.array([-2, -1, 0, 1, 2, inf]), 3, True), [1, 2, 3, 2, 1])
    np.testing.assert_array_equal(step_orders(np.array([-2, -1, 0, 1, 2, 3.0]), 2, True), [1, 2, 2, 2, 1])
    assert step_orders(np.linspace(-3, 3, 16), 3, True)[-1] == 3  # 15 steps: no lower-order final step


# ---------------------------------------------------------------------------------------------
# 5. Bad input.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    ({"interpolant": I.bridge}, "one-sided"),
    ({"num_steps": 0}, "num_steps"),
    ({"num_steps": 2.5}, "num_steps"),
    ({"order": 4}, "order"),
    ({"order": True}, "order"),
    ({"spacing": "cosine"}, "spacing"),
    ({"prediction": "epsilon"}, "prediction"),
    ({"ts": [0.5, 0.7, 0.1]}, "strictly monotone"),
    ({"ts": [0.1, 0.5, 0.9]}, "strictly decreasing"),
    ({"ts": [1.5, 0.5, 0.1]}, "t_start"),
    ({"ts": [0.9, 0.5, 0.0]}, "t_end"),
    ({"ts": [0.9, 0.1], "t_start": 0.9}, "not both"),
    ({"t_start": 0.2, "t_end": 0.5}, "t_end < t_start"),
])
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_bad_input(solver, kwargs, match):
    args = {"interpolant": I.vp, "prediction": "data", **kwargs}
    ip = args.pop("interpolant")
    with pytest.raises(ValueError, match=match):
        SOLVERS[solver](posterior_mean(I.vp), ip, KEY, (4, 2), **args)


def test_bad_grid_arguments():
    for kwargs, match in (({"spacing": "uniform"}, "spacing"), ({"num_steps": -1}, "num_steps"),
                          ({"rho": 0.0}, "rho"), ({"t_end": 2.0}, "t_end")):
        with pytest.raises(ValueError, match=match):
            time_grid(I.vp, **{"num_steps": 4, **kwargs})
    with pytest.raises(ValueError, match="one-sided"):
        log_snr(I.bridge, 0.5)


# ---------------------------------------------------------------------------------------------
# 6. The model is data: new weights never recompile.
# ---------------------------------------------------------------------------------------------




def _apply(params, t, x):
    return jnp.tanh(params["w"] @ x + params["b"] * t)


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_new_weights_do_not_recompile(solver):
    params = [{"w": jax.random.normal(jax.random.key(i), (2, 2)), "b": jnp.full(2, float(i))} for i in (1, 2)]
    x, _ = SOLVERS[solver](genjax.Model(_apply, params[0]), I.vp, KEY, (8, 2), prediction="data", order=3)
    before = COMPILES.count
    y, _ = SOLVERS[solver](genjax.Model(_apply, params[1]), I.vp, KEY, (8, 2), prediction="data", order=3)
    assert COMPILES.count == before, f"sample_{solver} recompiled for new weights"
    assert float(jnp.max(jnp.abs(x - y))) > 1e-3
