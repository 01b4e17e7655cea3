"""Fast ODE solvers for one-sided paths: DPM-Solver++ (multistep) and UniPC, one exponential-integrator core.

With the log-SNR ``λ(t) = log(α/σ)`` (decreasing in t) and the data prediction ``x̂0``, the
PF-ODE is linear in ``x/σ``: ``d(x/σ) = e^λ x̂0 dλ``, so from ``t`` to ``s < t``, ``h = λ_s − λ_t``
(MATH.md §12),

    x_s = (σ_s/σ_t) x_t + σ_s ∫_{λ_t}^{λ_s} e^λ x̂0 dλ.

Every solver here replaces ``x̂0(λ)`` by a polynomial through the last few model outputs and
integrates it exactly, ``σ_s ∫ e^λ (λ − λ_t)^k/k! dλ = α_s h^{k+1} φ_{k+1}(−h)`` with
``φ_1(z) = (e^z − 1)/z``, ``φ_{k+1}(z) = (φ_k(z) − 1/k!)/z``.  So each step is a linear
combination ``x_s = a x_t + Σ_j w_j x̂0_{i−j}`` whose coefficients depend on the grid only:
they are computed once on the host in float64 (:func:`dpm_coefficients`,
:func:`unipc_coefficients`) and a single ``lax.scan`` (:func:`_integrate`) runs both solvers.

* Order 1 (``x̂0`` frozen) is DDIM with η = 0, written ``x_s = (σ_s/σ_t) x_t + (α_s − σ_s α_t/σ_t) x̂0``
  so that it stays finite where ``α_t = 0`` (``λ_t = −∞``, e.g. ``linear``/``trig`` at t = 1) and
  returns ``α_s x̂0`` where ``σ_s = 0`` (``λ_s = +∞``, the last step to t = 0).  A step with an
  infinite end (``h = ∞``) always uses it: the first-order step has this finite limit, while any
  extrapolation of the history over an infinite λ-interval diverges.
* Warm-up: step ``i`` (0-based) uses order ``≤ i + 1``, and only history with finite λ.
* ``lower_order_final``: on grids of fewer than 15 steps the last step uses order 1 and the
  one before order ≤ 2, as the reference implementations do (it stabilises few-step sampling).
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks
from ..interpolants import Interpolant, convert
from ..model import filter_jit
from ..ode import check_grid
from .common import (check_interval, check_sampler_args, check_samples, check_start, map_chunks, model_field,
                     prior_draw, sample_inputs)
from .heun import _EDM_SIGMA_MAX, _EDM_SIGMA_MIN, edm_sigmas, sigma_to_time

__all__ = ["SPACINGS", "log_snr", "time_grid", "dpm_coefficients", "unipc_coefficients", "sample_dpm",
           "sample_unipc"]

SPACINGS = ("logsnr", "time", "edm")
ORDERS = (1, 2, 3)
HISTORY = 3  # model outputs kept by the scan (the highest supported order)
LOWER_ORDER_FINAL_BELOW = 15  # lower_order_final applies to grids of fewer steps (diffusers' rule)


# ---------------------------------------------------------------------------------------------
# Log-SNR and time grids
# ---------------------------------------------------------------------------------------------


def _one_sided(interpolant, where: str) -> Interpolant:
    if not isinstance(interpolant, Interpolant):
        raise ValueError(f"{where}: interpolant must be a genjax.Interpolant, got {type(interpolant).__name__}")
    if interpolant.two_sided:
        raise ValueError(f"{where}: needs a one-sided interpolant x_t = α x0 + σ ε (Gaussian prior); the "
                         f"exponential integrator runs in the log-SNR λ = log(α/σ), which a two-sided path "
                         f"{interpolant.name!r} (x_t = α x0 + β x1 + γ z with non-Gaussian x1) does not have")
    return interpolant


def _alpha_sigma(interpolant: Interpolant, t):
    """``(max(α, 0), σ)`` elementwise (float32 ``trig`` has ``α(1) ≈ −4.4e-8``, i.e. 0)."""
    t = jnp.asarray(t, jnp.result_type(float))
    flat = t.reshape(-1)
    a = jax.vmap(interpolant.alpha)(flat)
    s = jax.vmap(interpolant.sigma)(flat)
    return jnp.maximum(a, 0.0).reshape(t.shape), s.reshape(t.shape)


def log_snr(interpolant: Interpolant, t):
    """``λ(t) = log(α(t)/σ(t))`` elementwise (MATH.md §12): ``−inf`` where ``α = 0``, ``+inf`` where ``σ = 0``."""
    a, s = _alpha_sigma(_one_sided(interpolant, "log_snr"), t)
    return jnp.log(a) - jnp.log(s)


def _bucketed(fn, interpolant, values):
    """``fn(interpolant, values)`` elementwise, padded to a power-of-two length: one compilation serves many N."""
    values = np.asarray(values)
    n = values.shape[0]
    size = max(32, 1 << max(n - 1, 0).bit_length())
    padded = np.concatenate([values, np.full(size - n, values[-1] if n else 0.5, values.dtype)])
    return jax.tree.map(lambda v: np.asarray(v)[:n], fn(interpolant, padded))


@partial(jax.jit, static_argnums=0)
def _scales_on(interpolant, t):
    return _alpha_sigma(interpolant, t)


@partial(jax.jit, static_argnums=0)
def _times_of(interpolant, sigma_tilde):
    return sigma_to_time(interpolant, sigma_tilde)


def _host_scales(interpolant: Interpolant, ts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(α, σ, λ)`` on the grid ``ts`` (evaluated in the working float dtype, returned as float64)."""
    ts = np.asarray(ts, jnp.result_type(float))
    a, s = (np.asarray(v, np.float64) for v in _bucketed(_scales_on, interpolant, ts))
    with np.errstate(divide="ignore"):
        return a, s, np.log(a) - np.log(s)


def time_grid(interpolant: Interpolant, num_steps: int, *, spacing: str = "logsnr", rho: float = 7.0,
              t_start=None, t_end=None) -> np.ndarray:
    """``num_steps + 1`` strictly decreasing times from ``t_start`` (default ``t_max``) to ``t_end`` (default ``t_min``).

    ``spacing``:
      * ``"logsnr"``: uniform in ``λ = log(α/σ)`` (DPM-Solver's ``logSNR`` grid);
      * ``"time"``: uniform in t;
      * ``"edm"``: Karras et al. (2022) ρ-spacing in ``σ̃ = σ/α = e^{−λ}``,
        ``σ̃_i = (σ̃_max^{1/ρ} + i/N (σ̃_min^{1/ρ} − σ̃_max^{1/ρ}))^ρ`` (:func:`edm_sigmas`).

    For ``"logsnr"`` and ``"edm"`` an end with infinite λ (``α = 0`` at ``t_start`` or ``σ = 0`` at
    ``t_end``, e.g. ``linear`` on [0, 1]) is replaced, for placing the interior points only, by
    EDM's clamp ``σ̃ = 80`` resp. ``0.002`` (as :func:`genjax.samplers.sample_heun`; if the other
    end lies beyond that value, by the other end's ``σ̃`` times ``e^{±1}``); the first and last
    times stay exactly ``t_start`` and ``t_end``.  Interior times come from ``σ̃`` by bisection
    (:func:`sigma_to_time`, float32).  Returns a NumPy float64 array.

    ``"time"`` on ``vp``-like paths down to ``t_min = 1e-5`` ends with one step over several units of
    λ after many short ones, where multistep extrapolation is unstable; ``"logsnr"`` (the default)
    and ``"edm"`` spread λ evenly.
    """
    _one_sided(interpolant, "time_grid")
    num_steps = _checks.check_positive_int(num_steps, "num_steps")
    _checks.check_choice(spacing, "spacing", SPACINGS)
    rho = _checks.check_positive_float(rho, "rho")
    t_start, t_end = check_interval(interpolant, t_start, t_end, decreasing=True)
    if spacing == "time":
        ts = np.linspace(t_start, t_end, num_steps + 1)
    else:
        _, _, (lam_a, lam_b) = _host_scales(interpolant, np.array([t_start, t_end]))
        if not np.isfinite(lam_a):
            lam_a = min(-math.log(_EDM_SIGMA_MAX), lam_b - 1.0)
        if not np.isfinite(lam_b):
            lam_b = max(-math.log(_EDM_SIGMA_MIN), lam_a + 1.0)
        if spacing == "logsnr":
            sigma_tilde = np.exp(-np.linspace(lam_a, lam_b, num_steps + 1))
        else:
            sigma_tilde = np.asarray(edm_sigmas(num_steps + 1, math.exp(-lam_b), math.exp(-lam_a), rho), np.float64)
        ts = np.asarray(_bucketed(_times_of, interpolant, sigma_tilde[1:-1].astype(np.float32)), np.float64)
        ts = np.concatenate([[t_start], ts, [t_end]])
    if not np.all(np.diff(ts) < 0):
        raise ValueError(f"time_grid: {num_steps} {spacing!r} steps on [{t_end}, {t_start}] of {interpolant.name!r} "
                         f"are too fine to resolve in float32 (the times are not strictly decreasing); use fewer "
                         f"steps or spacing='time'")
    return ts


# ---------------------------------------------------------------------------------------------
# Step coefficients (host, float64): x_s = a x_t + Σ_j w_j x̂0_{i−j}  [+ w_new x̂0(s, x_s^pred)]
# ---------------------------------------------------------------------------------------------


def _phi(k: int, z: np.ndarray) -> np.ndarray:
    """``φ_k(z) = Σ_{j≥0} z^j/(j+k)!`` (``φ_1 = (e^z − 1)/z``, ``φ_{k+1} = (φ_k − 1/k!)/z``), stable near 0."""
    z = np.asarray(z, np.float64)
    small = np.abs(z) < 0.5
    zs = np.where(small, z, 0.0)
    series = sum(zs**j / math.factorial(j + k) for j in range(24))
    zl = np.where(small, 1.0, z)
    rec = np.expm1(zl) / zl
    for m in range(1, k):
        rec = (rec - 1.0 / math.factorial(m)) / zl
    return np.where(small, series, rec)


def step_orders(lam: np.ndarray, order: int, lower_order_final: bool) -> np.ndarray:
    """The order of each step ``i`` (``t_i → t_{i+1}``): ``min(order, i + 1)``, at most the number of
    consecutive finite λ's ending at ``t_i``, 1 where ``λ_i`` or ``λ_{i+1}`` is infinite, and with
    ``lower_order_final`` on fewer than 15 steps at most ``N − i`` (1 on the last step)."""
    n = lam.size - 1
    i = np.arange(n)
    finite = np.isfinite(lam)
    last_infinite = np.maximum.accumulate(np.where(~finite[:n], i, -1))
    k = np.minimum(np.minimum(order, i + 1), i - last_infinite)
    if lower_order_final and n < LOWER_ORDER_FINAL_BELOW:
        k = np.minimum(k, n - i)
    return np.where(finite[:n] & finite[1:], np.maximum(k, 1), 1).astype(np.int32)


def _step_geometry(alpha, sigma, lam):
    """Per step: ``a = σ_s/σ_t``, the first-order weight ``c1 = α_s − σ_s α_t/σ_t = α_s(1 − e^{−h})``,
    ``h`` and the ratios ``r_m = (λ_{i−m} − λ_i)/h`` (m = 1, 2; ``nan`` before the grid)."""
    a_s, s_s, s_t, a_t = alpha[1:], sigma[1:], sigma[:-1], alpha[:-1]
    with np.errstate(all="ignore"):
        a = s_s / s_t
        c1 = a_s - s_s * a_t / s_t
        h = lam[1:] - lam[:-1]
        pad = np.full(HISTORY - 1, np.nan)
        past = np.concatenate([pad, lam[:-1]])
        n = h.size
        rks = np.stack([(past[HISTORY - 1 - m:HISTORY - 1 - m + n] - lam[:-1]) / h for m in (1, 2)], axis=1)
    return a, c1, h, rks


def dpm_coefficients(alpha, sigma, lam, orders):
    """DPM-Solver++ multistep weights (Lu et al. 2022), data prediction; returns ``(a, w)``, ``w`` of shape (N, 3).

    ``x_{i+1} = a_i x_i + Σ_j w_{ij} x̂0_{i−j}`` with ``h = λ_{i+1} − λ_i``, ``h_0 = λ_i − λ_{i−1}``,
    ``h_1 = λ_{i−1} − λ_{i−2}``, ``r_0 = h_0/h``, ``r_1 = h_1/h``:
      * order 1: ``w = c1·[1, 0, 0]``, ``c1 = α_{i+1}(1 − e^{−h})`` (DDIM η = 0);
      * 2M (MATH.md §12, whose ``r_i`` is ``r_0``): ``c1·[1 + 1/(2r_0), −1/(2r_0), 0]``;
      * 3M: ``D1_0 = (x̂0_i − x̂0_{i−1})/r_0``, ``D1_1 = (x̂0_{i−1} − x̂0_{i−2})/r_1``,
        ``D1 = D1_0 + r_0/(r_0 + r_1)(D1_0 − D1_1)`` (``≈ h x̂0'``),
        ``D2 = (D1_0 − D1_1)/(r_0 + r_1)`` (``≈ h² x̂0''/2``), and
        ``x_{i+1} = a x_i + α_{i+1}[h φ_1 x̂0_i + h φ_2 D1 + 2h φ_3 D2]``, ``φ_k = φ_k(−h)``: the
        exact integral of the quadratic through the last three outputs.  The reference
        implementations' multistep update uses ``h φ_3 D2`` (half the quadratic term): its local
        error is then O(h³) instead of O(h⁴), i.e. second order; the factor 2 restores third order.
    """
    a, c1, h, rks = _step_geometry(alpha, sigma, lam)
    w = np.zeros((h.size, HISTORY))
    w[:, 0] = c1
    with np.errstate(all="ignore"):
        r0, r1 = -rks[:, 0], rks[:, 0] - rks[:, 1]  # h_0/h, h_1/h
        one, zero = np.ones_like(r0), np.zeros_like(r0)
        two = orders == 2
        w[two] = (c1[:, None] * np.stack([1 + 0.5 / r0, -0.5 / r0, zero], axis=1))[two]
        three = orders == 3
        if three.any():
            d10 = np.stack([one / r0, -one / r0, zero], axis=1)  # rows: weights on (x̂0_i, x̂0_{i−1}, x̂0_{i−2})
            d11 = np.stack([zero, one / r1, -one / r1], axis=1)
            d1 = d10 + (r0 / (r0 + r1))[:, None] * (d10 - d11)
            d2 = (d10 - d11) / (r0 + r1)[:, None]
            z = -h
            w3 = (alpha[1:] * h)[:, None] * (_phi(1, z)[:, None] * np.eye(HISTORY)[0] + _phi(2, z)[:, None] * d1
                                             + 2.0 * _phi(3, z)[:, None] * d2)
            w[three] = w3[three]
    return a, w


def unipc_coefficients(alpha, sigma, lam, orders):
    """UniPC weights (Zhao et al. 2023), data prediction, ``B(h) = e^{h} − 1`` ("bh2"); returns
    ``(a, w_pred, w_corr, w_new)``.

    Step ``i`` of order p uses ``x̂0_i`` and the ``p − 1`` earlier outputs, at
    ``r_m = (λ_{i−m} − λ_i)/h`` (negative), with ``D_m = (x̂0_{i−m} − x̂0_i)/r_m``:

    * UniP-p: ``x̃_{i+1} = a x_i + c1 [x̂0_i + Σ_{m<p} ρ^p_m D_m]``, ``c1 = α_{i+1}(1 − e^{−h})``;
    * UniC-p, with ``x̂0_new = x̂0(t_{i+1}, x̃_{i+1})`` (the next step's model call, r = 1):
      ``x_{i+1} = a x_i + c1 [x̂0_i + Σ_{m<p} ρ^c_m D_m + ρ^c_p (x̂0_new − x̂0_i)]``.

    ``ρ`` solve the paper's system ``R ρ = g/B``: ``R_{jk} = r_k^j`` over ``r = (r_1, …, r_{p−1}, 1)``
    (the predictor drops the last row and column), ``g_j/B = j! φ_{j+1}(−h)/φ_1(−h)`` for
    ``j = 1..p`` (the ``bh2`` choice ``B = e^{−h} − 1`` in data-prediction form).  UniPC-p (UniP-p
    plus UniC) has order p + 1.  ``w_new`` multiplies ``x̂0_new``; it is 0 on steps of infinite h
    (first-order step, no correction).  The reference implementation replaces the 1×1 solves of
    UniP-2 and UniC-1 by their h → 0 limit ½ (same order); here every ρ solves the system.
    """
    a, c1, h, rks = _step_geometry(alpha, sigma, lam)
    n = h.size
    w_pred = np.zeros((n, HISTORY))
    w_pred[:, 0] = c1
    w_corr, w_new = w_pred.copy(), np.zeros(n)
    z = -h
    with np.errstate(all="ignore"):
        b = np.stack([math.factorial(j) * _phi(j + 1, z) / _phi(1, z) for j in (1, 2, 3)], axis=1)  # (N, 3)
    for p in ORDERS:
        sel = (orders == p) & np.isfinite(h)
        if not sel.any():
            continue
        r = np.concatenate([rks[sel, :p - 1], np.ones((sel.sum(), 1))], axis=1)  # (M, p)
        big_r = r[:, None, :] ** np.arange(p)[None, :, None]  # (M, p, p): R_jk = r_k^j
        rho_c = np.linalg.solve(big_r, b[sel, :p, None])[..., 0]
        rho_p = (np.linalg.solve(big_r[:, :p - 1, :p - 1], b[sel, :p - 1, None])[..., 0] if p > 1
                 else np.zeros((sel.sum(), 0)))
        cs = c1[sel]

        def weights(rho, new=0.0):
            w = np.zeros((cs.size, HISTORY))
            w[:, 0] = 1.0 - new
            for m in range(1, p):
                w[:, m] += rho[:, m - 1] / r[:, m - 1]
                w[:, 0] -= rho[:, m - 1] / r[:, m - 1]
            return cs[:, None] * w

        w_pred[sel] = weights(rho_p)
        w_corr[sel] = weights(rho_c, rho_c[:, -1])
        w_new[sel] = cs * rho_c[:, -1]
    return a, w_pred, w_corr, w_new


# ---------------------------------------------------------------------------------------------
# The shared core: one scan, one model call per step
# ---------------------------------------------------------------------------------------------


@filter_jit
def _integrate(model, interpolant, prediction, event_shape, dtype, where, times, coefs, inputs):
    """Per sample: ``x̂0_i = x̂0(t_i, x̃_i)``; ``x_i = x_part_i + w_in_i x̂0_i`` (the corrector of step i−1,
    none for DPM-Solver); ``x̃_{i+1} = a_i x_i + Σ_j w_pred_ij x̂0_{i−j}``; returns ``x̃_N``."""
    a, w_pred, w_corr, w_in = coefs

    def one(key, x, c):
        f = model_field(model, c, event_shape, dtype, where)
        x = prior_draw(key, event_shape, interpolant.sigma(times[0])).astype(dtype) if x is None else x

        def step(carry, inp):
            x_pred, x_part, hist = carry
            t, a_i, wp, wc, wi = inp
            x0_hat = convert(f(t, x_pred), prediction, "data", interpolant, t, x_pred)
            x_now = x_pred if wi is None else x_part + wi * x0_hat
            hist = jnp.concatenate([x0_hat[None], hist[:-1]])
            x_next = a_i * x_now + jnp.tensordot(wp, hist, axes=1)
            part = x_next if wc is None else a_i * x_now + jnp.tensordot(wc, hist, axes=1)
            return (x_next, part, hist), None

        hist = jnp.zeros((HISTORY, *event_shape), dtype)
        (x, _, _), _ = jax.lax.scan(step, (x, x, hist), (times[:-1], a, w_pred, w_corr, w_in))
        return x

    return jax.vmap(one)(*inputs)


def _resolve_grid(interpolant, num_steps, spacing, rho, ts, t_start, t_end, where):
    if ts is None:
        return time_grid(interpolant, num_steps, spacing=spacing, rho=rho, t_start=t_start, t_end=t_end)
    if t_start is not None or t_end is not None:
        raise ValueError(f"{where}: pass either ts (an explicit time grid) or t_start/t_end, not both")
    ts = check_grid(ts, "ts")
    if not np.all(np.diff(ts) < 0):
        raise ValueError(f"{where}: ts must be strictly decreasing (generation runs t_max → t_min), got "
                         f"{ts.tolist()!r:.200}")
    check_interval(interpolant, ts[0], ts[-1], decreasing=True)
    return ts


def _run(solver, model, interpolant, key, shape, prediction, num_steps, order, spacing, rho, ts, t_start, t_end,
         lower_order_final, x_init, c, chunk_size, mesh):
    where = f"sample_{solver}"
    _one_sided(interpolant, where)
    if isinstance(order, bool) or order not in ORDERS:
        raise ValueError(f"{where}: order must be one of {ORDERS}, got {order!r}")
    if ts is None:
        num_steps = _checks.check_positive_int(num_steps, "num_steps")
    ts = _resolve_grid(interpolant, num_steps, spacing, rho, ts, t_start, t_end, where)
    check_sampler_args(model, interpolant, prediction, where, ts[-2], ts[0], to=("data",))
    shape, x_init = check_start(key, shape, x_init)
    dtype = jnp.result_type(float) if x_init is None else x_init.dtype
    times = jnp.asarray(ts, jnp.result_type(float))  # the model sees exactly these times
    alpha, sigma, lam = _host_scales(interpolant, times)
    orders = step_orders(lam, order, bool(lower_order_final))
    if solver == "dpm":
        a, w_pred = dpm_coefficients(alpha, sigma, lam, orders)
        coefs = (a, w_pred, None, None)
    else:
        a, w_pred, w_corr, w_new = unipc_coefficients(alpha, sigma, lam, orders)
        # w_in[i]: weight of x̂0_i in the corrected x_i (the corrector of step i − 1).
        coefs = (a, w_pred, w_corr, np.concatenate([[0.0], w_new[:-1]]))
    coefs = tuple(None if v is None else jnp.asarray(v, dtype) for v in coefs)
    samples = map_chunks(
        lambda chunk: _integrate(model, interpolant, prediction, shape[1:], dtype, where, times, coefs, chunk),
        sample_inputs(key, shape, x_init, c), chunk_size=chunk_size, mesh=mesh)
    check_samples(samples, where)
    return samples, {"nfe": int(ts.size - 1), "ts": np.asarray(times, np.float64), "orders": orders}


_ARGS_DOC = """
    Args:
      model: per-sample model ``fn(t, x)`` or ``fn(t, x, c)``, passed as data (:mod:`genjax.model`).
      interpolant: a one-sided :class:`~genjax.interpolants.Interpolant` (two-sided ones are refused).
      key: PRNG key of the prior draws ``N(0, σ(t_0)² I)`` (sample i uses ``split(key, n)[i]``);
        may be None with ``x_init``.
      shape: ``(n, *event_shape)``; may be omitted with ``x_init``.
      prediction: what the model predicts (``velocity | noise | data | score``), turned into
        ``x̂0`` by :func:`genjax.interpolants.convert`.
      num_steps: N (NFE = N); ignored when ``ts`` is given.
      order: 1, 2 or 3 (see above).
      spacing, rho, t_start, t_end: the grid, :func:`time_grid`.
      ts: an explicit strictly decreasing grid in ``[t_min, t_max]`` instead.
      lower_order_final: on grids of fewer than 15 steps, order 1 on the last step and ≤ 2 on the
        one before (default True; the reference implementations' rule).
      x_init: the states at ``ts[0]`` (n, *event_shape) instead of prior draws.
      c, chunk_size, mesh: as :func:`genjax.samplers.sample_ode`.

    Returns ``(samples, stats)``: ``stats["nfe"] = N``, ``stats["ts"]`` the grid (as the model saw
    it) and ``stats["orders"]`` the order of each step.  Raises ``FloatingPointError`` on
    non-finite samples.
"""


def sample_dpm(model, interpolant: Interpolant, key=None, shape=None, *, prediction, num_steps: int = 10,
               order: int = 2, spacing: str = "logsnr", rho: float = 7.0, ts=None, t_start=None, t_end=None,
               lower_order_final: bool = True, x_init=None, c=None, chunk_size: int | None = None, mesh=None):
    """Multistep DPM-Solver++ (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of
    Diffusion Probabilistic Models"), data prediction, one model call per step (MATH.md §12).

    ``x_{i+1} = (σ_{i+1}/σ_i) x_i + α_{i+1}(1 − e^{−h_i}) D_i`` with ``D_i = x̂0_i`` (order 1, DDIM
    η = 0), ``D_i = (1 + 1/(2r_i)) x̂0_i − x̂0_{i−1}/(2r_i)``, ``r_i = h_{i−1}/h_i`` (2M), or the
    quadratic-extrapolation 3M of :func:`dpm_coefficients`; lower orders on warm-up steps and on
    steps with an infinite λ end.  Order 3 is third order: the reference implementations' 3M
    halves the quadratic term and is second order (see :func:`dpm_coefficients`).
    """
    return _run("dpm", model, interpolant, key, shape, prediction, num_steps, order, spacing, rho, ts, t_start,
                t_end, lower_order_final, x_init, c, chunk_size, mesh)


def sample_unipc(model, interpolant: Interpolant, key=None, shape=None, *, prediction, num_steps: int = 10,
                 order: int = 2, spacing: str = "logsnr", rho: float = 7.0, ts=None, t_start=None, t_end=None,
                 lower_order_final: bool = True, x_init=None, c=None, chunk_size: int | None = None, mesh=None):
    """UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
    Diffusion Models"), data prediction, ``B(h) = e^h − 1`` ("bh2").

    Each step predicts with UniP-p, evaluates the model once at the prediction, and corrects with
    UniC-p using that evaluation, which is also the next step's history entry (MATH.md §12;
    coefficients in :func:`unipc_coefficients`).  The last step is not corrected, so NFE = N.
    UniPC-p converges with order p + 1 (orders 1–3 are supported).
    """
    return _run("unipc", model, interpolant, key, shape, prediction, num_steps, order, spacing, rho, ts, t_start,
                t_end, lower_order_final, x_init, c, chunk_size, mesh)


sample_dpm.__doc__ += _ARGS_DOC
sample_unipc.__doc__ += _ARGS_DOC
