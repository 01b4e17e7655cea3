"""Consistency losses and the boundary parameterisation (MATH.md §13).

A consistency function maps every point of a PF-ODE trajectory to its end at ``t_min``:
``f(x_t, t) = x_{t_min}``, with ``f(x, t_min) = x`` (Song, Dhariwal, Chen & Sutskever 2023,
"Consistency Models").  For any one-sided path ``x_t = α x0 + σ ε`` the parameterisation works
in the VE frame ``x̃ = x/α``, ``σ̃ = σ/α`` (EDM, Karras et al. 2022)::

    f(x, t) = α(t_min) [c_skip x̃ + c_out F_θ(t, c_in x̃)]
    c_skip = σ_d²/((σ̃ − σ̃_min)² + σ_d²),  c_out = σ_d (σ̃ − σ̃_min)/sqrt(σ_d² + σ̃²),
    c_in = 1/sqrt(σ̃² + σ_d²),  σ̃_min = σ̃(t_min),  σ_d = 0.5,

so ``c_skip(t_min) = 1`` and ``c_out(t_min) = 0``: the boundary condition holds for every ``F_θ``.

Loss on the grid ``t_1 = t_min < … < t_N`` (Karras ρ-spacing in σ̃, :func:`consistency_grid`)::

    λ(n) d(f_θ(x_{t_{n+1}}, t_{n+1}), sg(f_θ(x̂_{t_n}, t_n))),  x_{t_{n+1}} = α x0 + σ z,

with ``x̂_{t_n} = α(t_n) x0 + σ(t_n) z`` (consistency training, CT: the same ``x0`` and ``z``) or
one ODE step of a teacher from ``t_{n+1}`` to ``t_n`` (consistency distillation, CD).  The target
network is ``θ⁻ = sg(θ)`` (improved CT, Song & Dhariwal 2024, "Improved Techniques for Training
Consistency Models"), which replaces the EMA target of the 2023 paper.

Randomness, per sample ``i``: ``k_i = split(key, n)[i]``, ``(k_n, k_z) = split(k_i)``, the index
``n = sample_index(k_n, log p)`` and ``z = normal(k_z, event_shape)``.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_batch, check_callable, check_choice, check_positive_float, check_positive_int
from ..interpolants import Interpolant, check_prediction
from ..model import call, check_conditioning, check_output, per_sample
from ..ode import integrate, resolve_solver
from ..samplers.heun import _EDM_SIGMA_MAX, _EDM_SIGMA_MIN, edm_sigmas, sigma_to_time
from ..samplers.ode import velocity_field

__all__ = ["METRICS", "NOISES", "WEIGHTINGS", "SIGMA_DATA", "consistency_scalings", "consistency_function",
           "consistency_grid", "index_probabilities", "sample_index", "pseudo_huber", "teacher_step",
           "consistency_loss", "check_one_sided", "check_options", "grid_times", "sigma_bounds"]

METRICS = ("pseudo_huber", "l2")
NOISES = ("lognormal", "uniform")
WEIGHTINGS = ("reciprocal", "unit")
SIGMA_DATA = 0.5
HUBER_SCALE = 0.00054  # c = 0.00054 sqrt(d) (Song & Dhariwal 2024)


def check_one_sided(interpolant, where: str) -> Interpolant:
    """``interpolant`` if it is a one-sided :class:`Interpolant`, else a ``ValueError``."""
    if not isinstance(interpolant, Interpolant) or interpolant.two_sided:
        got = "a two-sided interpolant" if isinstance(interpolant, Interpolant) else type(interpolant).__name__
        raise ValueError(f"{where}: interpolant must be a one-sided genjax.Interpolant (x_t = α x0 + σ ε; "
                         f"consistency functions follow its PF-ODE), got {got}")
    return interpolant


def _ends(interpolant: Interpolant, t):
    """``(α(t), σ(t), α(t_min), σ(t_min))`` from one evaluation on ``[t, t_min]`` (bitwise equal at t = t_min)."""
    ts = jnp.stack([jnp.asarray(t, jnp.result_type(float)), jnp.asarray(interpolant.t_min, jnp.result_type(float))])
    a, s = jax.vmap(interpolant.alpha)(ts), jax.vmap(interpolant.sigma)(ts)
    return a[0], s[0], a[1], s[1]


def _scalings(interpolant: Interpolant, t, sigma_data: float):
    """``(c_skip, c_out, c_in, α, σ, α_min)``; where ``α(t) ≤ 0`` (σ̃ = ∞) the limits ``(0, σ_d, 0)``."""
    a, s, a_min, s_min = _ends(interpolant, t)
    finite = a > 0
    a_safe = jnp.where(finite, a, 1.0)
    sig = s / a_safe
    gap = sig - s_min / a_min  # exactly 0 at t = t_min: the same operations on the same values
    sd2 = sigma_data**2
    c_skip = jnp.where(finite, sd2 / (gap**2 + sd2), 0.0)
    c_out = jnp.where(finite, sigma_data * gap / jnp.sqrt(sd2 + sig**2), sigma_data)
    c_in = jnp.where(finite, 1.0 / jnp.sqrt(sig**2 + sd2), 0.0)
    return c_skip, c_out, c_in, a, s, a_min


def consistency_scalings(interpolant: Interpolant, t, sigma_data: float = SIGMA_DATA):
    """``(c_skip, c_out, c_in)`` at time ``t`` (MATH.md §13), functions of ``σ̃ = σ(t)/α(t)``.

    ``c_skip = σ_d²/((σ̃ − σ̃_min)² + σ_d²)``, ``c_out = σ_d (σ̃ − σ̃_min)/sqrt(σ_d² + σ̃²)``,
    ``c_in = 1/sqrt(σ̃² + σ_d²)``; at ``t_min`` exactly ``(1, 0, 1/sqrt(σ̃_min² + σ_d²))``.  Where
    ``α(t) = 0`` (``linear``, ``trig`` at t = 1) ``σ̃ = ∞`` and they take their limits ``(0, σ_d, 0)``.
    """
    check_one_sided(interpolant, "consistency_scalings")
    return _scalings(interpolant, t, sigma_data)[:3]


def consistency_function(net, interpolant: Interpolant, t, x, c=None, sigma_data: float = SIGMA_DATA):
    """``f(x, t) = α(t_min)[c_skip x̃ + c_out F(t, c_in x̃)]`` for one sample, ``F = net`` (``fn(t, x[, c])``).

    Computed in x-space, ``c_skip x̃ = (c_skip/α) x`` and ``c_in x̃ = x/sqrt(σ² + α² σ_d²)``, so it stays
    finite where ``α = 0``; at ``t_min`` the skip factor is ``(α_min/α) c_skip = 1`` and ``c_out = 0``,
    hence ``f(x, t_min) = x`` exactly for any finite ``F``.
    """
    c_skip, c_out, _, a, s, a_min = _scalings(interpolant, t, sigma_data)
    skip = jnp.where(a > 0, a_min / jnp.where(a > 0, a, 1.0), 0.0) * c_skip
    inner = x / jnp.sqrt(s**2 + (a * sigma_data) ** 2)
    return skip * x + (a_min * c_out) * call(net, t, inner, c)


# ----------------------------------------------------------------------------- the discretisation


def _sigma_tilde(interpolant: Interpolant, t: float) -> float:
    with jax.ensure_compile_time_eval():
        a, s = float(interpolant.alpha(jnp.float32(t))), float(interpolant.sigma(jnp.float32(t)))
    return s / a if a > 0 else math.inf


def sigma_bounds(interpolant: Interpolant) -> tuple[float, float]:
    """The ends of the ρ-grids in ``σ̃ = σ/α``: ``σ̃(t_min)`` (EDM's 0.002 where it is 0) and ``min(σ̃(t_max), 80)``."""
    lo, hi = _sigma_tilde(interpolant, interpolant.t_min), _sigma_tilde(interpolant, interpolant.t_max)
    lo, hi = lo if lo > 0 else _EDM_SIGMA_MIN, min(hi, _EDM_SIGMA_MAX)
    if not lo < hi:
        raise ValueError(f"interpolant {interpolant.name!r} has σ̃ = σ/α from {lo:.4g} to {hi:.4g} on [t_min, t_max]; "
                         f"consistency grids need σ̃(t_min) < min(σ̃(t_max), {_EDM_SIGMA_MAX})")
    return lo, hi


_jit_sigma_to_time = jax.jit(sigma_to_time, static_argnums=0)


def grid_times(interpolant: Interpolant, sigmas) -> np.ndarray:
    """``sigma_to_time(interpolant, sigmas)`` as float32 NumPy, compiled once per interpolant and power-of-2 size."""
    sigmas = np.asarray(sigmas, np.float32)
    size = max(16, 1 << (sigmas.size - 1).bit_length())
    padded = np.concatenate([sigmas, np.full(size - sigmas.size, sigmas[-1], np.float32)])
    with jax.ensure_compile_time_eval():  # concrete even when called while tracing a loss
        return np.array(_jit_sigma_to_time(interpolant, padded)[:sigmas.size], np.float32)


@functools.lru_cache(maxsize=64)
def _grid(interpolant: Interpolant, num_scales: int, rho: float):
    lo, hi = sigma_bounds(interpolant)
    with jax.ensure_compile_time_eval():
        sigmas = np.asarray(edm_sigmas(num_scales, lo, hi, rho), np.float64)[::-1].copy()
    ts = grid_times(interpolant, sigmas)
    ts[0], sigmas[0] = interpolant.t_min, _sigma_tilde(interpolant, interpolant.t_min)
    if hi == _sigma_tilde(interpolant, interpolant.t_max):
        ts[-1] = interpolant.t_max
    if not np.all(np.diff(ts) > 0):
        raise ValueError(f"consistency_grid: num_scales={num_scales} is too fine for float32 times on interpolant "
                         f"{interpolant.name!r} (two grid times coincide); use fewer scales")
    ts.setflags(write=False)
    sigmas.setflags(write=False)
    return ts, sigmas


def consistency_grid(interpolant: Interpolant, num_scales: int, rho: float = 7.0):
    """The grid ``(ts, sigmas)``, increasing, ``N = num_scales`` points (NumPy, float32 / float64).

    ``sigmas`` are Karras et al.'s ρ-spaced levels in ``σ̃ = σ/α`` from ``σ̃_min = σ̃(t_min)`` to
    ``σ̃_max = min(σ̃(t_max), 80)``, and ``ts = sigma_to_time(sigmas)``.  Where ``σ̃(t_min) = 0``
    (``linear``, ``trig``) the ρ-grid starts at EDM's 0.002, and its first point is then replaced by
    ``t_min`` itself (``sigmas[0] = 0``), so ``t_1 = t_min`` on every path: the consistency target at
    ``n = 1`` is the boundary ``f(x, t_min) = x``.  ``ts[0] = t_min`` and (when ``σ̃(t_max) ≤ 80``)
    ``ts[-1] = t_max`` are set exactly rather than by bisection.
    """
    check_one_sided(interpolant, "consistency_grid")
    num_scales = check_positive_int(num_scales, "num_scales")
    if num_scales < 2:
        raise ValueError(f"num_scales must be an integer >= 2 (grid points t_1 < … < t_N), got {num_scales}")
    rho = check_positive_float(rho, "rho")
    return _grid(interpolant, num_scales, rho)


def index_probabilities(sigmas, noise: str = "lognormal", p_mean: float = -1.1, p_std: float = 2.0) -> np.ndarray:
    """``p(n)``, ``n = 1..N−1`` (array index ``n − 1``), of the step ``t_n → t_{n+1}`` of the grid ``sigmas``.

    ``"lognormal"`` (improved CT, Song & Dhariwal 2024):
    ``p(n) ∝ erf((log σ̃_{n+1} − P_mean)/(√2 P_std)) − erf((log σ̃_n − P_mean)/(√2 P_std))``, the mass of
    ``log σ̃ ~ N(P_mean, P_std²)`` on each interval; ``"uniform"``: ``p(n) = 1/(N − 1)``.
    """
    check_choice(noise, "noise", NOISES)
    sigmas = np.asarray(sigmas, np.float64)
    if noise == "uniform":
        return np.full(sigmas.size - 1, 1.0 / (sigmas.size - 1))
    check_positive_float(p_std, "p_std")
    if not (isinstance(p_mean, (int, float, np.number)) and math.isfinite(p_mean)):
        raise ValueError(f"p_mean must be a finite number, got {p_mean!r}")
    with np.errstate(divide="ignore"):
        u = (np.log(sigmas) - p_mean) / (math.sqrt(2.0) * p_std)
    cdf = np.array([math.erf(v) for v in u])
    mass = np.diff(cdf)
    return mass / mass.sum()


def sample_index(key, log_probs):
    """One grid index ``n − 1 ∈ {0, …, N−2}`` drawn as ``categorical(key, log_probs)``."""
    return jax.random.categorical(key, log_probs)


def pseudo_huber(a, b, c):
    """``d(a, b) = sqrt(‖a − b‖² + c²) − c`` for one sample (Song & Dhariwal 2024), ``c > 0``.

    Evaluated as ``‖a − b‖²/(sqrt(‖a − b‖² + c²) + c)`` (the same number, without cancellation when
    ``‖a − b‖ ≪ c``): ``≈ ½‖a − b‖²/c`` for small and ``≈ ‖a − b‖ − c`` for large differences.
    """
    sq = jnp.sum((a - b) ** 2)
    return sq / (jnp.sqrt(sq + c**2) + c)


def teacher_step(teacher, interpolant: Interpolant, x, t, r, *, prediction: str, solver="heun"):
    """One ODE step of a teacher ``fn(t, x)`` (predicting ``prediction``) from ``t`` to ``r``, one sample.

    ``genjax.ode.integrate`` on ``velocity_field(teacher, interpolant, prediction)`` over the grid
    ``[t, r]``: exactly one step of ``solver`` (any name in :data:`genjax.ode.SOLVERS` or a diffrax
    solver; an adaptive one takes one step of its method, no step-size control).
    """
    v = velocity_field(teacher, interpolant, prediction)
    grid = jnp.stack([jnp.asarray(t, jnp.result_type(float)), jnp.asarray(r, jnp.result_type(float))])
    x_r, _ = integrate(lambda tau, y, args: v(tau, y), x, grid[0], grid[1], solver=solver, ts=grid)
    return x_r


def check_options(*, num_scales, teacher=None, teacher_prediction=None, teacher_solver="heun",
                  metric="pseudo_huber", huber_c=None, noise="lognormal", p_mean=-1.1, p_std=2.0, rho=7.0,
                  weighting="reciprocal") -> None:
    """The argument checks of :func:`consistency_loss` (``ValueError`` naming the argument)."""
    num_scales = check_positive_int(num_scales, "num_scales")
    if num_scales < 2:
        raise ValueError(f"num_scales must be an integer >= 2 (grid points t_1 < … < t_N), got {num_scales}")
    check_choice(metric, "metric", METRICS)
    check_choice(noise, "noise", NOISES)
    check_choice(weighting, "weighting", WEIGHTINGS)
    if huber_c is not None:
        check_positive_float(huber_c, "huber_c")
    check_positive_float(rho, "rho")
    check_positive_float(p_std, "p_std")
    if not (isinstance(p_mean, (int, float, np.number)) and not isinstance(p_mean, bool) and math.isfinite(p_mean)):
        raise ValueError(f"p_mean must be a finite number, got {p_mean!r}")
    if teacher is None:
        if teacher_prediction is not None:
            raise ValueError("teacher_prediction is given without a teacher: pass teacher=fn(t, x) for consistency "
                             "distillation, or neither for consistency training")
        return
    check_callable(teacher, "teacher", "fn(t, x) or fn(t, x, c)")
    if teacher_prediction is None:
        raise ValueError("a teacher needs teacher_prediction: what it predicts, one of velocity | noise | data | score")
    check_prediction(teacher_prediction, "teacher_prediction")
    resolve_solver(teacher_solver)


def consistency_loss(model: Callable, interpolant: Interpolant, x0, key, *, num_scales: int, teacher=None,
                     teacher_prediction: str | None = None, teacher_solver="heun", metric: str = "pseudo_huber",
                     huber_c: float | None = None, noise: str = "lognormal", p_mean: float = -1.1,
                     p_std: float = 2.0, rho: float = 7.0, weighting: str = "reciprocal", c=None):
    """Per-sample consistency losses, shape ``(n,)`` (MATH.md §13; take the mean to train).

    ``λ(n) d(f_θ(x_{t_{n+1}}, t_{n+1}), sg(f_θ(x̂_{t_n}, t_n)))`` on the grid of :func:`consistency_grid`,
    ``x_{t_{n+1}} = α(t_{n+1}) x0 + σ(t_{n+1}) z``.  Without a teacher (consistency training, Song et
    al. 2023; improved CT, Song & Dhariwal 2024) ``x̂_{t_n} = α(t_n) x0 + σ(t_n) z`` with the same
    ``x0`` and ``z``; with one (consistency distillation) ``x̂_{t_n}`` is one ``teacher_solver`` step of
    the teacher's PF-ODE from ``t_{n+1}`` to ``t_n`` (:func:`teacher_step`).  The target uses
    ``θ⁻ = sg(θ)`` (iCT), in place of the 2023 paper's EMA network.

    Args:
      model: the consistency function ``f_θ`` as a per-sample ``fn(t, x[, c])``, e.g.
        :class:`genjax.distill.consistency.ConsistencyModel`, passed as data.
      interpolant: a one-sided path.
      x0: data batch ``(n, *event_shape)``; key: PRNG key (per-sample keys, see the module docstring).
      num_scales: ``N >= 2`` grid points.
      teacher, teacher_prediction, teacher_solver: a per-sample model (called with ``c`` when given)
        predicting ``velocity | noise | data | score``, and the solver (:data:`genjax.ode.SOLVERS`).
      metric: ``"pseudo_huber"`` ``sqrt(‖a − b‖² + c²) − c``, ``c = huber_c`` (default
        ``0.00054 sqrt(d)``), or ``"l2"`` ``‖a − b‖²``.
      noise, p_mean, p_std: the index law, see :func:`index_probabilities`; rho: the grid's ρ.
      weighting: ``"reciprocal"`` ``λ(n) = 1/(σ̃_{n+1} − σ̃_n)`` or ``"unit"`` ``λ = 1``.
      c: optional conditioning batch (leading axis n).
    """
    check_callable(model, "model", "fn(t, x) or fn(t, x, c) returning the clean sample")
    check_one_sided(interpolant, "consistency_loss")
    check_options(num_scales=num_scales, teacher=teacher, teacher_prediction=teacher_prediction,
                  teacher_solver=teacher_solver, metric=metric, huber_c=huber_c, noise=noise, p_mean=p_mean,
                  p_std=p_std, rho=rho, weighting=weighting)
    check_batch("x0", x0)
    x0 = jnp.asarray(x0)
    ts, sigmas = consistency_grid(interpolant, num_scales, rho)
    with np.errstate(divide="ignore"):
        log_probs = jnp.asarray(np.log(index_probabilities(sigmas, noise, p_mean, p_std)), jnp.float32)
    lam = jnp.asarray(1.0 / np.diff(sigmas) if weighting == "reciprocal" else np.ones(num_scales - 1), jnp.float32)
    ts = jnp.asarray(ts)
    dim = math.prod(x0.shape[1:])
    huber = HUBER_SCALE * math.sqrt(dim) if huber_c is None else float(huber_c)
    n = x0.shape[0]
    c = check_conditioning(c, n)
    c0 = None if c is None else jax.tree.map(lambda a: a[0], c)
    x_spec = jax.ShapeDtypeStruct(x0.shape[1:], x0.dtype)
    check_output(model, jnp.zeros(()), x_spec, c0, where="consistency_loss")
    if teacher is not None:
        check_output(teacher, jnp.zeros(()), x_spec, c0, where="consistency_loss (teacher)")

    def one(k, a0, ci):
        k_n, k_z = jax.random.split(k)
        i = sample_index(k_n, log_probs)
        z = jax.random.normal(k_z, a0.shape, a0.dtype)
        t_lo, t_hi = ts[i], ts[i + 1]
        x_hi = interpolant.alpha(t_hi) * a0 + interpolant.sigma(t_hi) * z
        if teacher is None:
            x_lo = interpolant.alpha(t_lo) * a0 + interpolant.sigma(t_lo) * z
        else:
            x_lo = teacher_step(per_sample(teacher, ci), interpolant, x_hi, t_hi, t_lo,
                                prediction=teacher_prediction, solver=teacher_solver)
        f = per_sample(model, ci)
        online = f(t_hi, x_hi)
        target = jax.lax.stop_gradient(f(t_lo, jax.lax.stop_gradient(x_lo)))
        dist = pseudo_huber(online, target, huber) if metric == "pseudo_huber" else jnp.sum((online - target) ** 2)
        return lam[i] * dist

    return jax.vmap(one)(jax.random.split(key, n), x0, c)
