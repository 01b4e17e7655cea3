"""EDM sampler (Karras, Aittala, Aila & Laine 2022, Alg. 2) for any one-sided interpolant.

With ``x = α x0 + σ ε`` put ``x̃ = x/α`` and ``σ̃ = σ/α``: then ``x̃ = x0 + σ̃ ε`` is the VE
form, and the PF-ODE is ``dx̃/dσ̃ = (x̃ − x̂0(x̃, σ̃))/σ̃`` with the denoiser
``x̂0 = E[x0 | x_t = α(t) x̃]`` at the time ``t(σ̃)``.  The sampler walks the ρ-spaced grid
``σ_i = (σ_max^{1/ρ} + i/(N−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ``, ``σ_N = 0`` (MATH.md §5),
with Heun steps (the last step, to σ = 0, is Euler and returns the denoiser).  ``t(σ̃)``
inverts the increasing map ``σ̃(t) = σ(t)/α(t)`` (guaranteed by ``D > 0``) by bisection in
``log σ̃``, vectorised in JAX, once for the whole grid (it does not depend on the data).
"""

from __future__ import annotations

import math
from functools import partial
import jax
import jax.numpy as jnp

from ..interpolants import Interpolant, convert
from ..model import filter_jit
from .common import check_sampler_args, check_samples, check_start, map_chunks, model_field, sample_inputs

__all__ = ["edm_sigmas", "sigma_to_time", "sample_heun"]

_EDM_SIGMA_MIN = 0.002  # EDM defaults, used only where the interpolant's σ̃ range is 0 or ∞
_EDM_SIGMA_MAX = 80.0
_BISECTION_STEPS = 60


def edm_sigmas(num_steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0):
    """The EDM grid ``σ_i = (σ_max^{1/ρ} + i/(N−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ``, ``i = 0..N−1`` (no final 0)."""
    if int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"edm_sigmas: num_steps must be a positive integer, got {num_steps!r}")
    if not 0 < sigma_min <= sigma_max < math.inf:
        raise ValueError(f"edm_sigmas: need 0 < sigma_min <= sigma_max < inf, got {sigma_min}, {sigma_max}")
    if not rho > 0:
        raise ValueError(f"edm_sigmas: rho must be > 0, got {rho}")
    frac = jnp.linspace(0.0, 1.0, int(num_steps)) if num_steps > 1 else jnp.zeros(1)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    return (hi + frac * (lo - hi)) ** rho


def _log_snr_inverse(interpolant: Interpolant, t):
    """``log σ̃(t) = log σ(t) − log α(t)`` (−∞ where σ = 0, +∞ where α = 0)."""
    return jnp.log(interpolant.sigma(t)) - jnp.log(jnp.maximum(interpolant.alpha(t), 0.0))


def sigma_to_time(interpolant: Interpolant, sigma):
    """``t`` in ``[t_min, t_max]`` with ``σ(t)/α(t) = sigma`` (elementwise), by bisection in ``log σ̃``.

    Values outside the interpolant's range clamp to ``t_min`` / ``t_max``.
    """
    sigma = jnp.asarray(sigma, jnp.float32)
    target = jnp.log(sigma)
    log_ratio = jax.vmap(partial(_log_snr_inverse, interpolant))

    def bisect(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        above = log_ratio(mid.ravel()).reshape(mid.shape) > target
        return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

    lo, hi = jax.lax.fori_loop(0, _BISECTION_STEPS, bisect,
                               (jnp.full_like(target, interpolant.t_min), jnp.full_like(target, interpolant.t_max)))
    return 0.5 * (lo + hi)


def _sigma_range(interpolant: Interpolant):
    ends = jnp.exp(jax.vmap(partial(_log_snr_inverse, interpolant))(jnp.array([interpolant.t_min, interpolant.t_max])))
    return float(ends[0]), float(ends[1])


@filter_jit
def _heun(model, interpolant, prediction, event_shape, dtype, sigmas, churn, s_tmin, s_tmax, s_noise, sigma_top,
          inputs):
    n = sigmas.shape[0]
    in_range = (sigmas >= s_tmin) & (sigmas <= s_tmax)
    gamma = jnp.where(in_range, jnp.minimum(churn / n, math.sqrt(2.0) - 1.0), 0.0)
    sig_hat = jnp.minimum(sigmas * (1.0 + gamma), jnp.maximum(sigma_top, sigmas))  # never query beyond t_max
    sig_next = jnp.concatenate([sigmas[1:], jnp.zeros(1, sigmas.dtype)])
    t_hat, t_next = sigma_to_time(interpolant, sig_hat), sigma_to_time(interpolant, sig_next[:-1])
    t_first = sigma_to_time(interpolant, sigmas[:1])[0]

    def churn_noise(key, x, sig, s_hat):
        return x + jnp.sqrt(jnp.maximum(s_hat**2 - sig**2, 0.0)) * s_noise * jax.random.normal(key, x.shape, x.dtype)

    def one(key, x_init, c):
        f = model_field(model, c, event_shape, dtype, "sample_heun")

        def denoise(t, x_tilde):
            x = interpolant.alpha(t) * x_tilde
            return convert(f(t, x), prediction, "data", interpolant, t, x)

        def heun_step(x, inputs):
            key, sig, s_hat, th, s_next, tn = inputs
            x = churn_noise(key, x, sig, s_hat)
            d = (x - denoise(th, x)) / s_hat
            x_euler = x + (s_next - s_hat) * d
            d_next = (x_euler - denoise(tn, x_euler)) / s_next
            return x + 0.5 * (s_next - s_hat) * (d + d_next), None

        k_init, k_run = jax.random.split(key)
        if x_init is None:
            x = sigmas[0] * jax.random.normal(k_init, event_shape, dtype)
        else:  # x-space state at t(σ_0) → x̃ = x/α
            x = x_init / interpolant.alpha(t_first)
        keys = jax.random.split(k_run, n)
        x, _ = jax.lax.scan(heun_step, x, (keys[:-1], sigmas[:-1], sig_hat[:-1], t_hat[:-1], sig_next[:-1], t_next))
        # Last step, Euler to σ = 0: x + (0 − σ̂)(x − x̂0)/σ̂ = x̂0; then x = α(0) x̃ = x̃.
        return denoise(t_hat[-1], churn_noise(keys[-1], x, sigmas[-1], sig_hat[-1]))

    return jax.vmap(one)(*inputs)


def sample_heun(model, interpolant: Interpolant, key, shape=None, *, prediction: str, num_steps: int = 18,
                sigmas=None, rho: float = 7.0, sigma_min: float | None = None, sigma_max: float | None = None,
                churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = math.inf, s_noise: float = 1.0,
                x_init=None, c=None, chunk_size: int | None = None, mesh=None):
    """EDM Heun sampler (Karras et al. 2022, Alg. 2) for a model on a one-sided path.

    Args:
      model, prediction, c, chunk_size, mesh: as :func:`genjax.samplers.sample_ode`.
      shape: ``(n, *event_shape)``; ``x̃`` starts from ``N(0, σ_0² I)``, or from ``x_init/α(t(σ_0))``
        (``x_init`` is the x-space state at the first grid time).
      num_steps: grid size N (NFE = 2N − 1).
      sigmas: an explicit decreasing grid ``σ_0 > … > σ_{N−1} > 0`` in ``σ̃ = σ/α`` units (the
        sampler appends ``σ_N = 0``), instead of the ρ-spaced grid from ``num_steps``, ``rho``,
        ``sigma_min``, ``sigma_max``.
      sigma_min, sigma_max: the ρ-grid's ends; default ``σ̃(t_min)``, ``σ̃(t_max)`` (replaced by
        EDM's 0.002 / 80 where those are 0 / ∞, e.g. ``linear``).  Every σ must lie in
        ``[σ̃(t_min), σ̃(t_max)]``.
      churn, s_tmin, s_tmax, s_noise: stochastic churn — for ``σ_i ∈ [s_tmin, s_tmax]`` raise
        ``σ̂ = σ_i (1 + γ_i)``, ``γ_i = min(churn/N, √2 − 1)``, by adding
        ``sqrt(σ̂² − σ_i²) s_noise ξ`` (``σ̂`` capped at ``σ̃(t_max)``).  ``churn = 0`` is the
        deterministic sampler.

    Returns ``(samples, stats)`` with ``stats["nfe"] = 2N − 1``.
    """
    if not isinstance(interpolant, Interpolant) or interpolant.two_sided:
        raise ValueError("sample_heun: interpolant must be a one-sided genjax.Interpolant (x_t = α x0 + σ ε)")
    check_sampler_args(model, interpolant, prediction, "sample_heun", interpolant.t_min, interpolant.t_max,
                       to=("data",))
    shape, x_init = check_start(key, shape, x_init)
    if key is None and churn > 0:
        raise ValueError("sample_heun: key is required with churn > 0 (it drives the churn noise)")
    if key is None and x_init is None:
        raise ValueError("sample_heun: key is required to draw the initial state (or pass x_init)")
    for name, value in (("churn", churn), ("s_tmin", s_tmin), ("s_tmax", s_tmax), ("s_noise", s_noise)):
        if not value >= 0:  # also rejects NaN
            raise ValueError(f"sample_heun: {name} must be >= 0, got {value!r}")
    lo, hi = _sigma_range(interpolant)
    if sigmas is None:
        sigma_min = (lo if lo > 0 else _EDM_SIGMA_MIN) if sigma_min is None else float(sigma_min)
        sigma_max = (hi if math.isfinite(hi) else _EDM_SIGMA_MAX) if sigma_max is None else float(sigma_max)
        bounds = (("sigma_min", sigma_min), ("sigma_max", sigma_max))
        sigmas = edm_sigmas(num_steps, sigma_min, sigma_max, rho)
    else:
        values = jnp.asarray(sigmas, jnp.float32)
        if values.ndim != 1 or values.size < 1 or not bool(jnp.all(values > 0)) or not bool(
                jnp.all(jnp.diff(values) < 0)):
            raise ValueError(f"sample_heun: sigmas must be a 1-D strictly decreasing grid of positive σ̃, got {sigmas!r}")
        bounds, sigmas = (("sigmas[-1]", float(values[-1])), ("sigmas[0]", float(values[0]))), values
    tol = 1e-4
    for name, value in bounds:
        if not lo * (1 - tol) <= value <= hi * (1 + tol):
            raise ValueError(
                f"sample_heun: {name}={value:.6g} is outside the interpolant {interpolant.name!r}'s range "
                f"σ/α ∈ [{lo:.6g}, {hi:.6g}] on [t_min, t_max]"
            )
    dtype = jnp.result_type(float) if x_init is None else x_init.dtype
    samples = map_chunks(
        lambda chunk: _heun(model, interpolant, prediction, shape[1:], dtype, sigmas, jnp.float32(churn),
                            jnp.float32(s_tmin), jnp.float32(s_tmax), jnp.float32(s_noise), jnp.float32(hi), chunk),
        sample_inputs(key, shape, x_init, c), chunk_size=chunk_size, mesh=mesh)
    check_samples(samples, "sample_heun")
    return samples, {"nfe": 2 * int(sigmas.shape[0]) - 1}
