"""The discrete-time diffusion bound (Sohl-Dickstein et al. 2015; Ho et al. 2020; Nichol & Dhariwal 2021), MATH.md §14.

A one-sided path ``x_t = α(t) x0 + σ(t) ε`` read on the grid ``t_i = i/T`` is the Markov chain
``x_i = α_i x0 + σ_i ε`` (``x_0`` the data: ``α_0 = 1, σ_0 = 0``) with forward steps
``q(x_i | x_{i−1}) = N(α_{i|i−1} x_{i−1}, β_i I)``, ``α_{i|i−1} = α_i/α_{i−1}``,
``β_i = σ_i² − α²_{i|i−1} σ²_{i−1}`` (MATH.md §5).  On the ``ddpm`` preset ``α_i² = ᾱ_i`` and these
are Ho et al.'s ``sqrt(α_i) = sqrt(1 − β_i)`` and ``β_i``.  The model's reverse kernels
``p_θ(x_{i−1} | x_i) = N(μ_θ, Σ_θ)`` give the bound

    −log p(x0) ≤ L = L_T + Σ_{i=2}^T L_{i−1} + L_0,
    L_T = KL(q(x_T|x0) ‖ p(x_T)),  L_{i−1} = KL(q(x_{i−1}|x_i, x0) ‖ p_θ(x_{i−1}|x_i)),  L_0 = −log p_θ(x0|x1).

* The model is a per-sample ``fn(t, x)`` (:mod:`genjax.model`) predicting ``prediction`` at ``t = i/T``
  (any of ``velocity | noise | data | score``, converted by :func:`genjax.interpolants.convert`).
* Variances: ``"beta"`` (``Σ = β_i``), ``"beta_tilde"`` (``Σ = β̃_i``, the posterior variance; at ``i = 1``,
  where ``β̃_1 = 0``, the clipped ``β̃_2`` of Ho et al.'s and Nichol & Dhariwal's code), or ``"learned"``:
  the model returns ``(prediction, v)`` (e.g. ``genjax.nets.TimeMLP(heads=2)``) and
  ``Σ = exp(v log β_i + (1 − v) log β̃_i)`` per coordinate.
* ``L_0``: for data on ``levels`` levels in ``[−1, 1]`` the discretised Gaussian of Ho et al. (bins halfway
  between neighbouring levels, ``±∞`` at the extreme levels); with ``levels=None`` (continuous data) the
  Gaussian ``N(x0; μ_θ(x1), Σ_θ)``.

Per-sample randomness: ``k_n = split(key, n)[n]``.  Exact sums draw ``x_i`` with
``normal(fold_in(k_n, i))``; one-step estimates and losses use ``(k_t, k_z) = split(k_n)``, ``i``
uniform on ``{1..T}`` from ``k_t`` and ``ε = normal(k_z)``, the keys of
:func:`genjax.losses.interpolant.interpolant_loss`, so ``L_simple`` equals its (ddpm, noise, discrete) loss.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr

from .. import _checks
from ..data.images import LEVELS
from ..interpolants import Interpolant, check_prediction, convert
from ..model import Model, check_conditioning, check_output, filter_jit, per_sample
from ..stats.gaussian import gaussian_log_prob
from ..train.interpolant import split_batch
from ..train.loop import fit
from ..train.state import TrainState

__all__ = ["VARIANCES", "LEVEL_GRIDS", "LOSSES", "LOSS_OPTIONS", "Chain", "chain", "posterior", "reverse_kernel",
           "normal_kl", "discretized_gaussian_log_prob", "bound_terms", "ddpm_loss", "ddpm_objective", "train_ddpm",
           "sohl_dickstein_k", "k_exact_gap", "iw_log_likelihood"]

VARIANCES = ("beta", "beta_tilde", "learned")
LEVEL_GRIDS = ("endpoints", "centres")
LOSSES = ("simple", "vlb", "hybrid")
LOSS_OPTIONS = ("loss", "prediction", "variance", "levels", "level_grid", "weight", "num_steps", "prior_mean",
                "prior_std")

_LOG_2PI_E = math.log(2.0 * math.pi * math.e)


class Chain(NamedTuple):
    """The discrete chain of a one-sided path on ``t_i = i/T``; every field is indexed by ``i = 0..T``.

    ``alpha``, ``sigma``: ``α_i = α(t_i)``, ``σ_i = σ(t_i)`` with ``α_0 = 1``, ``σ_0 = 0`` (``ᾱ_i = α_i²``).
    ``scale``: ``α_{i|i−1} = α_i/α_{i−1}`` (``sqrt(1 − β_i)``).  ``beta``: ``β_i = σ_i² − α²_{i|i−1}σ²_{i−1}``.
    ``beta_tilde``: ``β̃_i = β_i σ²_{i−1}/σ_i²`` (``β̃_1 = 0``).  ``log_beta_tilde``: ``log β̃_i`` with
    ``i = 1`` clipped to ``log β̃_2`` (``log β_1`` when ``T = 1``).  ``coef_x0``, ``coef_xt``: the posterior
    mean ``μ̃ = coef_x0 x0 + coef_xt x_i``, ``coef_x0 = α_{i−1}β_i/σ_i²``, ``coef_xt = α_{i|i−1}σ²_{i−1}/σ_i²``.
    Entries at ``i = 0`` are unused (``scale = 1``, the others 0).
    """

    alpha: Any
    sigma: Any
    scale: Any
    beta: Any
    beta_tilde: Any
    log_beta_tilde: Any
    coef_x0: Any
    coef_xt: Any

    @property
    def num_steps(self) -> int:
        return self.alpha.shape[0] - 1


def _check_interpolant(interpolant) -> Interpolant:
    if not isinstance(interpolant, Interpolant) or interpolant.two_sided:
        raise ValueError(f"interpolant must be a one-sided genjax.Interpolant (e.g. genjax.interpolants.ddpm), got "
                         f"{interpolant!r:.80}")
    return interpolant


def _num_steps(interpolant: Interpolant, num_steps) -> int:
    if num_steps is None:
        if interpolant.num_steps is None:
            raise ValueError(f"the discrete bound needs a grid size: pass num_steps=T or use an interpolant with "
                             f"num_steps (interpolant {interpolant.name!r} has none)")
        return interpolant.num_steps
    return _checks.check_positive_int(num_steps, "num_steps")


@functools.lru_cache(maxsize=64)
def _chain_host(interpolant: Interpolant, T: int, dtype: str) -> tuple[np.ndarray, ...]:
    """The :class:`Chain` fields in float64 NumPy, from ``α(t_i), σ(t_i)`` evaluated in ``dtype``."""
    lo, hi = 1.0 / T, 1.0
    if lo < interpolant.t_min - 1e-9 or interpolant.t_max < hi - 1e-9:
        raise ValueError(f"the grid t_i = i/T, i = 1..{T}, must lie in [t_min, t_max] = [{interpolant.t_min}, "
                         f"{interpolant.t_max}] of interpolant {interpolant.name!r}")
    with jax.ensure_compile_time_eval():  # values now, even when first called inside a trace
        ts = jnp.arange(1, T + 1, dtype=dtype) / T
        a, s = (np.asarray(v, np.float64) for v in jax.jit(jax.vmap(lambda t: (interpolant.alpha(t),
                                                                                interpolant.sigma(t))))(ts))
    bad = ~(np.isfinite(a) & np.isfinite(s) & (a > 0) & (s > 0))
    if bad.any():
        i = int(np.argmax(bad)) + 1
        raise ValueError(f"the discrete chain of interpolant {interpolant.name!r} needs finite α(t_i) > 0 and "
                         f"σ(t_i) > 0 for i = 1..T; at t = {i}/{T}: α = {a[i - 1]:.4g}, σ = {s[i - 1]:.4g}")
    a, s = np.concatenate([[1.0], a]), np.concatenate([[0.0], s])
    scale = np.concatenate([[1.0], a[1:] / a[:-1]])
    beta = np.concatenate([[0.0], s[1:] ** 2 - scale[1:] ** 2 * s[:-1] ** 2])
    if not (beta[1:] > 0).all():
        i = int(np.argmax(~(beta[1:] > 0))) + 1
        raise ValueError(f"the discrete chain of interpolant {interpolant.name!r} needs β_i = σ_i² − (α_i/α_{{i−1}})² "
                         f"σ_{{i−1}}² > 0 (signal-to-noise strictly decreasing); β_{i} = {beta[i]:.4g}")
    safe = np.where(s > 0, s, 1.0) ** 2
    beta_tilde = np.where(s > 0, beta * np.concatenate([[0.0], s[:-1] ** 2]) / safe, 0.0)
    log_bt = np.log(np.where(beta_tilde > 0, beta_tilde, 1.0))
    log_bt[0], log_bt[1] = 0.0, (log_bt[2] if T >= 2 else math.log(beta[1]))
    coef_x0 = np.where(s > 0, np.concatenate([[0.0], a[:-1]]) * beta / safe, 0.0)
    coef_xt = np.where(s > 0, scale * np.concatenate([[0.0], s[:-1] ** 2]) / safe, 0.0)
    out = (a, s, scale, beta, beta_tilde, log_bt, coef_x0, coef_xt)
    for arr in out:
        arr.setflags(write=False)
    return out


def chain(interpolant: Interpolant, num_steps: int | None = None, dtype=None) -> Chain:
    """The discrete chain of ``interpolant`` on ``t_i = i/T`` (``T = num_steps`` or ``interpolant.num_steps``).

    Derived in float64 from ``α(t_i), σ(t_i)`` (MATH.md §5, §14) and returned as ``dtype`` arrays (default
    the float type).  Raises ``ValueError`` unless ``t_i ∈ [t_min, t_max]``, ``α_i, σ_i > 0`` and ``β_i > 0``.
    """
    interpolant = _check_interpolant(interpolant)
    T = _num_steps(interpolant, num_steps)
    dtype = jnp.dtype(dtype or jnp.result_type(float))
    return Chain(*(jnp.asarray(v, dtype) for v in _chain_host(interpolant, T, dtype.name)))


# ----------------------------------------------------------------------------- per-sample pieces


def posterior(ch: Chain, i, x0, x):
    """``q(x_{i−1} | x_i = x, x0) = N(μ̃, β̃_i I)``, ``μ̃ = coef_x0 x0 + coef_xt x`` (MATH.md §5; ``i ≥ 1``).

    On ``ddpm``: ``μ̃ = [sqrt(ᾱ_{i−1})β_i/(1 − ᾱ_i)] x0 + [sqrt(1 − β_i)(1 − ᾱ_{i−1})/(1 − ᾱ_i)] x_i``,
    ``β̃_i = β_i(1 − ᾱ_{i−1})/(1 − ᾱ_i)`` (Ho et al. 2020, eq. 6–7).  Returns ``(μ̃, β̃_i)``.
    """
    return ch.coef_x0[i] * x0 + ch.coef_xt[i] * x, ch.beta_tilde[i]


def reverse_kernel(output, ch: Chain, interpolant: Interpolant, i, x, *, prediction: str = "noise",
                   variance: str = "beta"):
    """``p_θ(x_{i−1} | x_i = x) = N(μ_θ, Σ_θ)`` from the model's ``output`` at ``(i/T, x)``; returns ``(μ_θ, Σ_θ)``.

    ``μ_θ`` is the posterior mean with ``x0`` replaced by the model's ``x̂0``; for a noise model it is
    computed in the ε-form ``μ_θ = (x − β_i ε̂/σ_i)/α_{i|i−1}`` (Ho et al. 2020, eq. 11), in which
    ``‖μ̃ − μ_θ‖² = β_i²/(α_{i|i−1}² σ_i²) ‖ε − ε̂‖²`` (MATH.md §14).  ``Σ_θ``: ``β_i``, ``β̃_i`` or, with
    ``variance="learned"`` and ``output = (prediction, v)``, ``exp(v log β_i + (1 − v) log β̃_i)``
    (Nichol & Dhariwal 2021, eq. 15).
    """
    if variance == "learned":
        output, v = output
        var = jnp.exp(v * jnp.log(ch.beta[i]) + (1.0 - v) * ch.log_beta_tilde[i])
    else:
        var = ch.beta[i] if variance == "beta" else jnp.exp(ch.log_beta_tilde[i])
    if prediction == "noise":
        mean = (x - ch.beta[i] / ch.sigma[i] * output) / ch.scale[i]
    else:
        t = jnp.asarray(i, x.dtype) / ch.num_steps
        mean = ch.coef_x0[i] * convert(output, prediction, "data", interpolant, t, x) + ch.coef_xt[i] * x
    return mean, var


def _broadcast_sum(terms, shape):
    return jnp.sum(jnp.broadcast_to(terms, shape))


def normal_kl(mean1, var1, mean2, var2):
    """``KL(N(μ1, diag v1) ‖ N(μ2, diag v2)) = ½ Σ [v1/v2 − 1 − log(v1/v2) + (μ1 − μ2)²/v2]`` for one sample.

    Variances are scalars (isotropic) or arrays broadcasting against the means; summed over all
    coordinates (MATH.md §14).
    """
    ratio = var1 / var2
    terms = ratio - 1.0 - jnp.log(ratio) + (mean1 - mean2) ** 2 / var2
    return 0.5 * _broadcast_sum(terms, jnp.broadcast_shapes(jnp.shape(mean1), jnp.shape(mean2), jnp.shape(terms)))


def _log_normal(x, mean, var):
    """``log N(x; mean, diag var)`` of one sample, summed over its coordinates."""
    flat = lambda a: jnp.ravel(jnp.broadcast_to(a, x.shape))  # noqa: E731
    return gaussian_log_prob(jnp.ravel(x), flat(mean), flat(var))


def _log1mexp(u):
    """``log(1 − exp(u))`` for ``u < 0``, accurate on both sides of ``−log 2`` (Mächler 2012); each branch gets
    a harmless stand-in where it is not selected, so neither it nor its gradient is ever infinite there."""
    near = u > -math.log(2.0)
    return jnp.where(near, jnp.log(-jnp.expm1(jnp.where(near, u, -0.5))),
                     jnp.log1p(-jnp.exp(jnp.where(near, -1.0, u))))


def _log_ndtr_diff(a, b):
    """``log(Φ(b) − Φ(a))`` for finite ``a < b``, on the side of the smaller tail: ``Φ(b) − Φ(a) = Φ(−a) − Φ(−b)``."""
    flip = a + b > 0
    hi, lo = jnp.where(flip, -a, b), jnp.where(flip, -b, a)
    log_hi = log_ndtr(hi)
    return log_hi + _log1mexp(log_ndtr(lo) - log_hi)


def _level_spacing(levels: int, level_grid: str) -> tuple[float, float]:
    """``(first level, spacing)`` of the grid in ``[−1, 1]``."""
    if level_grid == "endpoints":
        return -1.0, 2.0 / (levels - 1)
    return -1.0 + 1.0 / levels, 2.0 / levels


def discretized_gaussian_log_prob(x0, mean, std, levels: int = LEVELS, level_grid: str = "endpoints"):
    """``log p(x0 | x1) = Σ_d log[Φ((δ₊ − μ_d)/s_d) − Φ((δ₋ − μ_d)/s_d)]`` for one sample (Ho et al. 2020, eq. 13).

    ``x0`` lies on ``levels`` levels in ``[−1, 1]``: ``level_grid="endpoints"`` puts level ``k`` at
    ``2k/(L − 1) − 1`` (MATH.md §14, Ho et al.); ``"centres"`` at ``(2k + 1)/L − 1``, the bin centres of
    :func:`genjax.data.images.to_symmetric`.  ``δ±`` lie halfway to the neighbouring levels, with ``δ₊ = +∞``
    at the top level and ``δ₋ = −∞`` at the bottom one, so the probabilities of the ``L`` levels sum to 1.
    The differences of ``Φ`` are taken in log space on the side of the smaller tail.
    """
    first, spacing = _level_spacing(levels, level_grid)
    k = jnp.clip(jnp.round((x0 - first) / spacing), 0, levels - 1)
    lo_edge, hi_edge = k == 0, k == levels - 1
    a = (x0 - 0.5 * spacing - mean) / std
    b = (x0 + 0.5 * spacing - mean) / std
    # Finite stand-ins where an edge is infinite, so that no branch (nor its gradient) sees ±∞.
    a_safe, b_safe = jnp.where(lo_edge, b - 1.0, a), jnp.where(hi_edge, a + 1.0, b)
    middle = _log_ndtr_diff(a_safe, b_safe)
    log_p = jnp.where(lo_edge, log_ndtr(b_safe), jnp.where(hi_edge, log_ndtr(-a_safe), middle))
    return jnp.sum(log_p)


# ----------------------------------------------------------------------------- option checks


class _Options(NamedTuple):
    prediction: str
    variance: str
    levels: int | None
    level_grid: str


def _check_options(prediction, variance, levels, level_grid) -> _Options:
    check_prediction(prediction)
    _checks.check_choice(variance, "variance", VARIANCES)
    if levels is not None:
        levels = _checks.check_positive_int(levels, "levels")
        if levels < 2:
            raise ValueError(f"levels must be >= 2 (or None for continuous data), got {levels}")
    _checks.check_choice(level_grid, "level_grid", LEVEL_GRIDS)
    return _Options(prediction, variance, levels, level_grid)


def _check_on_levels(x0, opts: _Options) -> None:
    """Eagerly refuse ``x0`` off the level grid of the discrete decoder."""
    if opts.levels is None or not _checks.is_concrete(x0):
        return
    first, spacing = _level_spacing(opts.levels, opts.level_grid)
    u = (np.asarray(x0, np.float64) - first) / spacing
    if not (np.all(np.abs(u - np.round(u)) <= 1e-3) and u.min() > -0.5 and u.max() < opts.levels - 0.5):
        raise ValueError(f"x0 must lie on the {opts.levels} levels of level_grid={opts.level_grid!r} in [−1, 1] "
                         f"(k·{spacing:.4g} + {first:.4g}) for the discrete decoder; pass levels=None for continuous "
                         f"data (Gaussian decoder)")


def _prepare(model, interpolant, x0, c, opts: _Options, num_steps, where: str):
    _checks.check_callable(model, "model", "fn(t, x) or fn(t, x, c)")
    interpolant = _check_interpolant(interpolant)
    x0 = _checks.float_batch(x0, "x0")
    c = check_conditioning(c, x0.shape[0])
    ch = chain(interpolant, num_steps, x0.dtype)
    check_output(model, jnp.zeros((), x0.dtype), jax.ShapeDtypeStruct(x0.shape[1:], x0.dtype),
                 None if c is None else jax.tree.map(lambda a: a[0], c), where=where,
                 heads=2 if opts.variance == "learned" else 1)
    return interpolant, x0, c, ch


def _prior(prior_mean, prior_std, dtype):
    """``(mean, variance)`` of ``p(x_T)``; variance ``None`` means ``σ_T²`` (:func:`_prior_kl`)."""
    _checks.check_finite("prior_mean", np.asarray(prior_mean))
    if prior_std is None:
        return jnp.asarray(prior_mean, dtype), None
    return jnp.asarray(prior_mean, dtype), jnp.asarray(_checks.check_positive_float(prior_std, "prior_std") ** 2, dtype)


def _prior_kl(ch: Chain, prior, x0):
    """``L_T = KL(N(α_T x0, σ_T² I) ‖ N(mean, var I))``, default ``p(x_T) = N(0, σ_T² I)`` (MATH.md §6)."""
    var = ch.sigma[-1] ** 2 if prior[1] is None else prior[1]
    return normal_kl(ch.alpha[-1] * x0, ch.sigma[-1] ** 2, prior[0], var)


def _log_prior(ch: Chain, prior, x):
    return _log_normal(x, prior[0], ch.sigma[-1] ** 2 if prior[1] is None else prior[1])


# ----------------------------------------------------------------------------- terms at one step


def _kernel_at(f, ch, interpolant, opts, i, x, stop_mean=False):
    """The model's output at ``(i/T, x)`` and its reverse kernel ``(μ_θ, Σ_θ)``, ``μ_θ`` optionally stop-gradient."""
    t = jnp.asarray(i, x.dtype) / ch.num_steps
    out = f(t, x)
    kernel_in = out
    if stop_mean:
        learned = opts.variance == "learned"
        kernel_in = (jax.lax.stop_gradient(out[0]), out[1]) if learned else jax.lax.stop_gradient(out)
    return out, reverse_kernel(kernel_in, ch, interpolant, i, x, prediction=opts.prediction, variance=opts.variance)


def _decoder_nll(x0, mean, var, opts: _Options):
    """``L_0 = −log p_θ(x0 | x1)``: discretised Gaussian (``levels``) or Gaussian (``levels=None``)."""
    if opts.levels is None:
        return -_log_normal(x0, mean, var)
    return -discretized_gaussian_log_prob(x0, mean, jnp.sqrt(var), opts.levels, opts.level_grid)


def _step_kl(ch, i, x0, x, mean, var):
    """``L_{i−1} = KL(q(x_{i−1}|x_i, x0) ‖ p_θ(x_{i−1}|x_i))`` (``β̃_1 = 0`` replaced by 1: unused at i = 1)."""
    mu, bt = posterior(ch, i, x0, x)
    return normal_kl(mu, jnp.where(i >= 2, bt, 1.0), mean, var)


def _reversed_first_step_nll(ch, x0, x1):
    """``−log p(x0|x1)`` for ``p(x0|x1) = q(x1|x0) π(x0)/π(x1)``, ``π = N(0, I)`` (Sohl-Dickstein et al. 2015)."""
    return -(_log_normal(x1, ch.scale[1] * x0, ch.beta[1]) + _log_normal(x0, 0.0, 1.0) - _log_normal(x1, 0.0, 1.0))


# ----------------------------------------------------------------------------- the exact sum over i


@filter_jit
def _terms(model, interpolant, ch, opts, prior, key, x0, c, steps_per_call, sohl_dickstein):
    """Per sample ``(L_T, [L_1..L_{T−1}], L_0)``; ``sohl_dickstein``: prior ``N(0, I)``, reversed first step as L_0."""
    T = ch.num_steps

    def one(key, x0, c):
        f = per_sample(model, c)

        def x_at(i):  # x_i ~ q(x_i | x0), its own draw for every step
            return ch.alpha[i] * x0 + ch.sigma[i] * jax.random.normal(jax.random.fold_in(key, i), x0.shape, x0.dtype)

        def kl_at(i):
            x = x_at(i)
            _, (mean, var) = _kernel_at(f, ch, interpolant, opts, i, x)
            return _step_kl(ch, i, x0, x, mean, var)

        # Steps 2..T in rows of steps_per_call (the last row padded with step T, dropped): one compiled body.
        per_call = min(steps_per_call, max(T - 1, 1))
        rows = -(-(T - 1) // per_call)
        steps = jnp.minimum(jnp.arange(rows * per_call) + 2, T).reshape(rows, per_call)
        kls = jax.lax.map(jax.vmap(kl_at), steps).reshape(-1)[:T - 1]
        x1 = x_at(1)
        if sohl_dickstein:  # p(x_T) = π = N(0, I) and the reversed first step as decoder
            prior_kl = normal_kl(ch.alpha[T] * x0, ch.sigma[T] ** 2, 0.0, 1.0)
            return prior_kl, kls, _reversed_first_step_nll(ch, x0, x1)
        _, (mean, var) = _kernel_at(f, ch, interpolant, opts, 1, x1)
        return _prior_kl(ch, prior, x0), kls, _decoder_nll(x0, mean, var, opts)

    return jax.vmap(one)(jax.random.split(key, x0.shape[0]), x0, c)


def _bits(nats, x0):
    """Nats per sample → bits per dimension."""
    return nats / (math.prod(x0.shape[1:]) * math.log(2.0))


@filter_jit
def _bound(model, interpolant, ch, opts, prior, key, x0, c, steps_per_call):
    prior_kl, kls, decoder = _terms(model, interpolant, ch, opts, prior, key, x0, c, steps_per_call, False)
    nats = prior_kl + jnp.sum(kls, axis=1) + decoder
    return {"prior": prior_kl, "kl": kls, "decoder": decoder, "nats": nats, "bits_per_dim": _bits(nats, x0)}


def bound_terms(model, interpolant: Interpolant, x0, key, *, prediction: str = "noise", variance: str = "beta",
                levels: int | None = LEVELS, level_grid: str = "endpoints", num_steps: int | None = None,
                prior_mean=0.0, prior_std: float | None = None, c=None, steps_per_call: int = 10) -> dict:
    """The terms of ``−log p(x0) ≤ L = L_T + Σ_{i=2}^T L_{i−1} + L_0`` per sample, all ``i`` (Ho et al. 2020; §14).

    Each ``L_{i−1}`` is evaluated at its own draw ``x_i ~ q(x_i|x0)`` (``normal(fold_in(k_n, i))``), so the
    total is an unbiased estimate of ``L``; the steps run in a ``lax.map`` of ``steps_per_call`` steps per
    batched model call, so memory stays bounded for ``T = 1000``.

    Args:
      model: per-sample ``fn(t, x)`` (or ``fn(t, x, c)``) predicting ``prediction``; with
        ``variance="learned"`` it returns ``(prediction, v)``.
      interpolant: a one-sided path with ``α(t_i), σ(t_i) > 0`` on ``t_i = i/T`` (e.g. ``ddpm``).
      x0: data ``(n, *event)``: on ``levels`` levels of ``level_grid`` in ``[−1, 1]``, or continuous
        with ``levels=None`` (Gaussian decoder).
      key: PRNG key.  prediction, variance, levels, level_grid: see the module docstring.
      num_steps: T (default ``interpolant.num_steps``).
      prior_mean, prior_std: ``p(x_T) = N(prior_mean, prior_std² I)``, default ``N(0, σ(1)² I)`` (MATH.md §6).
      c: optional conditioning batch.  steps_per_call: steps per batched model call.

    Returns a dict of per-sample arrays: ``prior`` ``L_T`` (n,), ``kl`` ``L_1..L_{T−1}`` (n, T − 1) (column
    ``j`` is step ``i = j + 2``), ``decoder`` ``L_0`` (n,), ``nats`` ``L`` (n,) and ``bits_per_dim``
    ``L/(D ln 2)`` (n,), the bits of the discrete data for the discrete decoder.
    """
    opts = _check_options(prediction, variance, levels, level_grid)
    interpolant, x0, c, ch = _prepare(model, interpolant, x0, c, opts, num_steps, "bound_terms")
    _check_on_levels(x0, opts)
    steps_per_call = _checks.check_positive_int(steps_per_call, "steps_per_call")
    return _bound(model, interpolant, ch, opts, _prior(prior_mean, prior_std, x0.dtype), key, x0, c, steps_per_call)


# ----------------------------------------------------------------------------- one random step: losses


def _one_step(model, interpolant, ch, opts, prior, key, x0, c, stop_mean):
    """Per sample at one ``i`` uniform on ``{1..T}``: ``(‖ε − ε̂‖², L_T + T·L_{i−1})`` (``L_{i−1} = L_0`` at i = 1)."""
    T = ch.num_steps
    f = per_sample(model, c)
    k_t, k_z = jax.random.split(key)
    i = jax.random.randint(k_t, (), 1, T + 1)
    eps = jax.random.normal(k_z, x0.shape, x0.dtype)
    x = ch.alpha[i] * x0 + ch.sigma[i] * eps
    out, (mean, var) = _kernel_at(f, ch, interpolant, opts, i, x, stop_mean)
    pred = out[0] if opts.variance == "learned" else out
    t = jnp.asarray(i, x.dtype) / T
    simple = jnp.sum((eps - convert(pred, opts.prediction, "noise", interpolant, t, x)) ** 2)
    term = jnp.where(i == 1, _decoder_nll(x0, mean, var, opts), _step_kl(ch, i, x0, x, mean, var))
    return simple, _prior_kl(ch, prior, x0) + T * term


@filter_jit
def _one_step_batch(model, interpolant, ch, opts, prior, key, x0, c, loss, weight):
    one = functools.partial(_one_step, model, interpolant, ch, opts, prior, stop_mean=loss == "hybrid")
    simple, vlb = jax.vmap(one)(jax.random.split(key, x0.shape[0]), x0, c)
    return {"simple": simple, "vlb": vlb, "hybrid": simple + weight * vlb}[loss], {"simple": simple, "vlb": vlb}


def ddpm_loss(model, interpolant: Interpolant, x0, key, *, loss: str = "simple", weight: float = 1e-3,
              prediction: str = "noise", variance: str = "beta", levels: int | None = LEVELS,
              level_grid: str = "endpoints", num_steps: int | None = None, prior_mean=0.0,
              prior_std: float | None = None, c=None):
    """Per-sample DDPM losses at one step ``i`` uniform on ``{1..T}`` per sample; returns ``(losses (n,), aux)``.

    * ``"simple"``: ``L_simple = ‖ε − ε̂_θ(x_i, t_i)‖²`` (Ho et al. 2020, eq. 14), ``ε̂`` the model's
      prediction converted to noise; with a noise model on ``ddpm`` it equals
      ``interpolant_loss(..., prediction="noise", time_sampling="discrete")`` on the same key.
    * ``"vlb"``: the unbiased estimate ``L_T + T·L_{i−1}`` of the bound ``L`` (``L_0`` at ``i = 1``).
    * ``"hybrid"``: ``L_simple + weight·L_vlb`` with ``μ_θ`` under stop-gradient inside ``L_vlb``, so the
      variance learns from ``L_vlb`` and the mean from ``L_simple`` (Nichol & Dhariwal 2021, λ = 0.001; they
      measure ``L_vlb`` in bits, i.e. their λ is ``weight = 0.001/ln 2`` here).  Needs ``variance="learned"``.

    ``aux`` holds the per-sample ``simple`` and ``vlb`` values.  Other arguments as :func:`bound_terms`.
    """
    _checks.check_choice(loss, "loss", LOSSES)
    weight = float(weight) if loss != "hybrid" else _checks.check_positive_float(weight, "weight")
    opts = _check_options(prediction, variance, levels, level_grid)
    if loss == "hybrid" and variance != "learned":
        raise ValueError("loss='hybrid' trains the variance through L_vlb (μ_θ under stop-gradient): it needs "
                         f"variance='learned' and a model returning (prediction, v), got variance={variance!r}")
    interpolant, x0, c, ch = _prepare(model, interpolant, x0, c, opts, num_steps, "ddpm_loss")
    return _one_step_batch(model, interpolant, ch, opts, _prior(prior_mean, prior_std, x0.dtype), key, x0, c,
                           loss, weight)


def ddpm_objective(apply_fn: Callable, interpolant: Interpolant, **loss_options) -> Callable:
    """``loss_fn(params, batch, key) = mean_n ddpm_loss(Model(apply_fn, params), ...)`` for :func:`genjax.fit`.

    ``apply_fn(params, t, x[, c])`` is per sample; ``batch``: an array ``x0`` or a dict ``{"x0", "c"}``.
    ``loss_options``: :data:`LOSS_OPTIONS` of :func:`ddpm_loss` (checked here).  The aux dict holds the
    batch means ``simple``, ``vlb`` and ``bits_per_dim`` (of the ``vlb`` estimate).
    """
    unknown = sorted(set(loss_options) - set(LOSS_OPTIONS))
    if unknown:
        raise ValueError(f"ddpm_objective: unknown options {unknown}; expected some of {LOSS_OPTIONS}")
    _checks.check_callable(apply_fn, "apply_fn", "apply_fn(params, t, x) or apply_fn(params, t, x, c)")
    interpolant = _check_interpolant(interpolant)
    chain(interpolant, loss_options.get("num_steps"))  # the grid and the chain are checked once, here
    _check_options(*(loss_options.get(k, d) for k, d in (("prediction", "noise"), ("variance", "beta"),
                                                         ("levels", LEVELS), ("level_grid", "endpoints"))))

    def loss_fn(params, batch, key):
        x0, x1, c = split_batch(batch)
        if x1 is not None:
            raise ValueError("ddpm_objective: the batch is data x0 (an array or {'x0', 'c'}); the chain draws the "
                             "noise itself")
        losses, aux = ddpm_loss(Model(apply_fn, params), interpolant, x0, key, c=c, **loss_options)
        vlb = jnp.mean(aux["vlb"])
        return jnp.mean(losses), {"simple": jnp.mean(aux["simple"]), "vlb": vlb, "bits_per_dim": _bits(vlb, x0)}

    return loss_fn


def train_ddpm(apply_fn: Callable, params: Any, interpolant: Interpolant, data, *, key: jax.Array, optimizer,
               **loss_and_fit_kwargs) -> tuple[TrainState, dict]:
    """Train a DDPM ``apply_fn(params, t, x[, c])`` on ``data`` with ``L_simple``, ``L_vlb`` or ``L_hybrid``.

    ``fit(ddpm_objective(apply_fn, interpolant, **loss_options), TrainState.create(params, optimizer, key),
    data, **fit_kwargs)``: the keywords in :data:`LOSS_OPTIONS` go to :func:`ddpm_loss`, all others to
    :func:`genjax.train.fit` (``num_steps`` and ``batch_size`` are required there, so the chain's T is
    ``interpolant.num_steps``).  ``data``: model-space ``x0`` (on the levels for the discrete decoder), or
    a dict ``{"x0", "c"}``.  ``history`` holds ``simple``, ``vlb`` and ``bits_per_dim``.
    """
    loss_options = {k: v for k, v in loss_and_fit_kwargs.items() if k in LOSS_OPTIONS and k != "num_steps"}
    fit_kwargs = {k: v for k, v in loss_and_fit_kwargs.items() if k not in loss_options}
    loss_fn = ddpm_objective(apply_fn, interpolant, **loss_options)
    return fit(loss_fn, TrainState.create(params, optimizer, key), data, **fit_kwargs)


# ----------------------------------------------------------------------------- Sohl-Dickstein et al.'s K


def _check_variance_preserving(ch: Chain, interpolant: Interpolant, where: str) -> None:
    host = Chain(*_chain_host(interpolant, ch.num_steps, ch.alpha.dtype.name))
    gap = np.max(np.abs(host.alpha**2 + host.sigma**2 - 1.0))
    if gap > 1e-4:
        raise ValueError(f"{where} needs a variance-preserving chain (α_i² + σ_i² = 1, stationary law N(0, I), e.g. "
                         f"ddpm, vp, cosine); interpolant {interpolant.name!r} is off by {gap:.3g}")


def sohl_dickstein_k(model, interpolant: Interpolant, x0, key, *, prediction: str = "noise", variance: str = "beta",
                     num_steps: int | None = None, c=None, steps_per_call: int = 10) -> dict:
    """Sohl-Dickstein et al. (2015)'s ``K`` per sample, its exact counterpart and its report in bits (MATH.md §14).

    ``K = −Σ_{i≥2} KL(q(x_{i−1}|x_i, x0) ‖ p_θ(x_{i−1}|x_i)) + H_q(X_T|X_0) − H_q(X_1|X_0) − H_p(X_T)`` with
    ``H_q(X_T|X_0) = (D/2) log(2πe σ_T²)``, ``H_q(X_1|X_0) = (D/2) log(2πe β_1)``, ``H_p(X_T) = (D/2) log(2πe)``.
    ``K_exact = −L`` for ``p(x_T) = π = N(0, I)`` and the reversed first step
    ``p(x0|x1) = q(x1|x0) π(x0)/π(x1)`` as decoder, with the same KL draws (as :func:`bound_terms`);
    in expectation ``K_exact − K = ½(ᾱ_T + β_1)(D − ‖x0‖²)`` (:func:`k_exact_gap`).  ``bits`` is the paper's
    report ``(K/D − L_null)/ln 2`` per dimension, ``L_null = −½ log(2πe)`` (a unit Gaussian on unit-variance
    data).  Continuous ``x0`` on a variance-preserving chain; other arguments as :func:`bound_terms`.

    Returns per-sample ``K``, ``K_exact`` (nats, per sample) and ``bits``.
    """
    opts = _check_options(prediction, variance, None, "endpoints")
    interpolant, x0, c, ch = _prepare(model, interpolant, x0, c, opts, num_steps, "sohl_dickstein_k")
    _check_variance_preserving(ch, interpolant, "sohl_dickstein_k")
    steps_per_call = _checks.check_positive_int(steps_per_call, "steps_per_call")
    return _sohl_dickstein(model, interpolant, ch, opts, key, x0, c, steps_per_call)


@filter_jit
def _sohl_dickstein(model, interpolant, ch, opts, key, x0, c, steps_per_call):
    prior_kl, kls, decoder = _terms(model, interpolant, ch, opts, None, key, x0, c, steps_per_call, True)
    d = math.prod(x0.shape[1:])
    kl_sum = jnp.sum(kls, axis=1)
    entropies = 0.5 * d * (jnp.log(ch.sigma[-1] ** 2) - jnp.log(ch.beta[1]) - _LOG_2PI_E)
    k = -kl_sum + entropies
    return {"K": k, "K_exact": -(prior_kl + kl_sum + decoder), "bits": (k / d + 0.5 * _LOG_2PI_E) / math.log(2.0)}


def k_exact_gap(interpolant: Interpolant, x0, num_steps: int | None = None):
    """``K_exact − K = ½(ᾱ_T + β_1)(D − ‖x0‖²)`` per sample, in expectation over the chain (MATH.md §14).

    From ``E L_0 = H_q(X_1|X_0) + ½β_1(‖x0‖² − D)`` and ``L_T = H_p(X_T) − H_q(X_T|X_0) + ½ᾱ_T(‖x0‖² − D)``
    on a variance-preserving chain; zero on average for whitened data.
    """
    interpolant = _check_interpolant(interpolant)
    x0 = _checks.float_batch(x0, "x0")
    ch = chain(interpolant, num_steps, x0.dtype)
    _check_variance_preserving(ch, interpolant, "k_exact_gap")
    sq = jnp.sum(jnp.reshape(x0, (x0.shape[0], -1)) ** 2, axis=1)
    return 0.5 * (ch.alpha[-1] ** 2 + ch.beta[1]) * (math.prod(x0.shape[1:]) - sq)


# ----------------------------------------------------------------------------- importance weighting


@filter_jit
def _log_weights(model, interpolant, ch, opts, prior, key, x0, c, num_chains):
    T = ch.num_steps

    def chain_weight(key, x0, c):
        f = per_sample(model, c)
        k_top, k_steps = jax.random.split(key)
        x = ch.alpha[T] * x0 + ch.sigma[T] * jax.random.normal(k_top, x0.shape, x0.dtype)
        log_w = _log_prior(ch, prior, x) - _log_normal(x, ch.alpha[T] * x0, ch.sigma[T] ** 2)

        def step(carry, inputs):
            x, log_w = carry
            i, k = inputs
            _, (mean, var) = _kernel_at(f, ch, interpolant, opts, i, x)
            mu, bt = posterior(ch, i, x0, x)
            x_prev = mu + jnp.sqrt(bt) * jax.random.normal(k, x.shape, x.dtype)
            return (x_prev, log_w + _log_normal(x_prev, mean, var) - _log_normal(x_prev, mu, bt)), None

        (x, log_w), _ = jax.lax.scan(step, (x, log_w), (jnp.arange(T, 1, -1), jax.random.split(k_steps, T - 1)))
        _, (mean, var) = _kernel_at(f, ch, interpolant, opts, 1, x)
        return log_w - _decoder_nll(x0, mean, var, opts)

    def chains(key, x0, c):
        return jax.vmap(chain_weight, (0, None, None))(jax.random.split(key, num_chains), x0, c)

    log_w = jax.vmap(chains)(jax.random.split(key, x0.shape[0]), x0, c)
    log_p = jax.nn.logsumexp(log_w, axis=1) - math.log(num_chains)
    return {"log_p": log_p, "log_weights": log_w, "bits_per_dim": _bits(-log_p, x0)}


def iw_log_likelihood(model, interpolant: Interpolant, x0, key, *, num_chains: int, prediction: str = "noise",
                      variance: str = "beta", levels: int | None = LEVELS, level_grid: str = "endpoints",
                      num_steps: int | None = None, prior_mean=0.0, prior_std: float | None = None, c=None) -> dict:
    """Importance-weighted ``log p(x0) ≥ E log (1/M) Σ_m p(x_{0:T}^m)/q(x_{1:T}^m | x0)`` (Burda et al. 2016; §14).

    ``M = num_chains`` reverse trajectories per sample drawn from ``q(x_{1:T}|x0) = q(x_T|x0)
    ∏_{i≥2} q(x_{i−1}|x_i, x0)`` (``x_T`` then the posteriors, i = T..2); each log-weight is
    ``log p(x_T)/q(x_T|x0) + Σ_{i≥2} log p_θ(x_{i−1}|x_i)/q(x_{i−1}|x_i, x0) + log p_θ(x0|x1)``, whose
    expectation is ``−L``.  The estimate increases with M towards ``log p_θ(x0)``.  Chain ``m`` of sample
    ``n`` uses ``split(split(key, n)[n], M)[m]``.  Other arguments as :func:`bound_terms`.

    Returns per-sample ``log_p`` (n,) (the logsumexp − log M), ``log_weights`` (n, M) and ``bits_per_dim``
    ``−log_p/(D ln 2)`` (n,).
    """
    opts = _check_options(prediction, variance, levels, level_grid)
    num_chains = _checks.check_positive_int(num_chains, "num_chains")
    interpolant, x0, c, ch = _prepare(model, interpolant, x0, c, opts, num_steps, "iw_log_likelihood")
    _check_on_levels(x0, opts)
    return _log_weights(model, interpolant, ch, opts, _prior(prior_mean, prior_std, x0.dtype), key, x0, c,
                        num_chains)
