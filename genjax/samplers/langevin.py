"""Langevin samplers (MATH.md §5): ULA, MALA, SGLD, annealed Langevin, predictor–corrector.

Every method is one move, ``x ← x + h ∇log p(x) + sqrt(2h) ξ`` (:func:`langevin_move`), or with a
constant SPD preconditioner M, ``x ← x + h M ∇log p(x) + sqrt(2h) M^{1/2} ξ`` (Girolami & Calderhead
2011, constant metric; :func:`preconditioner`):

* ULA — the move itself (Roberts & Tweedie 1996, "unadjusted");
* MALA — the move as a proposal with a Metropolis–Hastings correction (Roberts & Tweedie 1996);
* SGLD — the move with a minibatch gradient and a decaying step (Welling & Teh 2011);
* annealed Langevin — ULA with ``h = a_i/2`` at decreasing noise levels (Song & Ermon 2019);
* predictor–corrector — a reverse-time step plus ULA corrector steps (Song et al. 2021).

Kernels follow blackjax: ``kernel.init(position) -> state`` and
``kernel.step(key, state) -> (state, info)`` act on ONE chain with explicit state;
:func:`run_chains` vmaps them over chains and scans the steps in one compiled call.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Callable, NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_batch, check_positive_int, is_concrete
from ..interpolants import Interpolant, convert
from ..model import call, filter_jit
from ..ode import integrate
from .discrete import check_times
from .common import (check_interval, check_sampler_args, check_samples, check_start, map_chunks, model_field,
                     prior_draw, sample_inputs)
from .ode import velocity_field
from .sde import check_diffusion, resolve_diffusion, sde_drift, sde_terms

__all__ = [
    "Kernel",
    "LangevinState",
    "MALAState",
    "MALAInfo",
    "SGLDState",
    "SGLDInfo",
    "Preconditioner",
    "preconditioner",
    "langevin_move",
    "ula",
    "mala",
    "sgld",
    "polynomial_decay",
    "run_chains",
    "sample_annealed_langevin",
    "PREDICTORS",
    "sample_pc",
]

PREDICTORS = ("reverse_sde", "ode")


class Kernel(NamedTuple):
    """A Markov kernel on one chain: ``init(position) -> state``, ``step(key, state) -> (state, info)``."""

    init: Callable[[Any], Any]
    step: Callable[[Any, Any], tuple[Any, Any]]


class LangevinState(NamedTuple):
    position: jax.Array


class MALAState(NamedTuple):
    position: jax.Array
    log_prob: jax.Array
    score: jax.Array


class MALAInfo(NamedTuple):
    acceptance_rate: jax.Array  # min(1, MH ratio) of this step's proposal
    is_accepted: jax.Array


class SGLDState(NamedTuple):
    position: jax.Array
    count: jax.Array  # step index k


class SGLDInfo(NamedTuple):
    step_size: jax.Array


class Preconditioner(NamedTuple):
    """A constant SPD matrix ``M``, as its diagonal (the event shape) or a ``(d, d)`` matrix for events ``(d,)``,
    and its Cholesky factor ``C`` (``C Cᵀ = M``; the elementwise square root for a diagonal)."""

    matrix: jax.Array
    factor: jax.Array

    def _full(self, v) -> bool:
        """Whether M acts on ``v`` as a matrix; raises a ``ValueError`` if the shapes do not fit."""
        if self.matrix.ndim == 2 and v.ndim == 1 and self.matrix.shape == (v.shape[0],) * 2:
            return True
        if self.matrix.shape != v.shape:
            raise ValueError(f"preconditioner of shape {self.matrix.shape} does not fit positions of event shape "
                             f"{v.shape}: give the diagonal (shape {v.shape}) or, for events (d,), a (d, d) matrix")
        return False

    def apply(self, v):
        """``M v``."""
        return self.matrix @ v if self._full(v) else self.matrix * v

    def root(self, v):
        """``C v``: ``M^{1/2} ξ`` in law (``Cov(C ξ) = M``)."""
        return self.factor @ v if self._full(v) else self.factor * v

    def inverse_quadratic(self, v):
        """``vᵀ M⁻¹ v``."""
        if self._full(v):
            return jnp.sum(jax.scipy.linalg.solve_triangular(self.factor, v, lower=True) ** 2)
        return jnp.sum(v**2 / self.matrix)


def preconditioner(matrix, name: str = "preconditioner") -> Preconditioner:
    """A :class:`Preconditioner` from a positive diagonal (the event shape) or a ``(d, d)`` SPD matrix.

    A square 2-D array is read as the matrix (for events ``(d,)``); other arrays as the diagonal.

    With ``M = Σ`` on a Gaussian target ``N(μ, Σ)`` the drift ``−h (x − μ)`` contracts every direction
    alike, so the usable step no longer shrinks with the condition number of Σ.
    """
    m = jnp.asarray(matrix, jnp.result_type(float))
    if m.ndim == 0:
        raise ValueError(f"{name}: give the diagonal of M as an array (event shape) or a (d, d) matrix, got a scalar")
    if is_concrete(m) and not bool(jnp.all(jnp.isfinite(m))):
        raise ValueError(f"{name} contains NaN or inf values")
    if m.ndim == 2 and m.shape[0] == m.shape[1]:
        if is_concrete(m) and not bool(jnp.allclose(m, m.T, rtol=1e-5, atol=1e-6)):
            raise ValueError(f"{name}: a (d, d) matrix M must be symmetric")
        factor = jnp.linalg.cholesky(m)
        if is_concrete(m) and not bool(jnp.all(jnp.isfinite(factor))):
            raise ValueError(f"{name}: M must be positive definite (its Cholesky factorisation failed)")
        return Preconditioner(m, factor)
    if is_concrete(m) and not bool(jnp.all(m > 0)):
        raise ValueError(f"{name}: a diagonal M must be positive, got {m}")
    return Preconditioner(m, jnp.sqrt(m))


def langevin_move(x, score, step_size, noise, precondition: Preconditioner | None = None):
    """``x + h s + sqrt(2h) ξ``: Euler–Maruyama for ``dx = ∇log p dt + sqrt(2) dW`` with step ``h``.

    With ``precondition`` (M): ``x + h M s + sqrt(2h) M^{1/2} ξ``, Euler–Maruyama for
    ``dx = M ∇log p dt + sqrt(2) M^{1/2} dW``, which also leaves p invariant.
    """
    if precondition is not None:
        score, noise = precondition.apply(score), precondition.root(noise)
    return x + step_size * score + jnp.sqrt(2.0 * step_size) * noise


def _check_step_size(name, step_size):
    if callable(step_size) or not is_concrete(step_size):
        return
    h = float(step_size)
    if not (math.isfinite(h) and h > 0):
        raise ValueError(f"{name}: step_size must be a finite positive number, got {step_size!r}")


def _score_of(name, score_fn, log_prob_fn):
    if (score_fn is None) == (log_prob_fn is None):
        raise ValueError(f"{name}: pass exactly one of score_fn (x -> ∇log p(x)) or log_prob_fn (x -> log p(x))")
    if score_fn is not None:
        if not callable(score_fn):
            raise ValueError(f"{name}: score_fn must be a callable x -> ∇log p(x), got {score_fn!r}")
        return score_fn
    if not callable(log_prob_fn):
        raise ValueError(f"{name}: log_prob_fn must be a callable x -> log p(x), got {log_prob_fn!r}")
    return jax.grad(log_prob_fn)


def ula(step_size, *, score_fn: Callable | None = None, log_prob_fn: Callable | None = None,
        precondition=None) -> Kernel:
    """Unadjusted Langevin: ``x ← x + h ∇log p(x) + sqrt(2h) ξ``.

    Give the score ``score_fn(x)`` or the log-density ``log_prob_fn(x)`` (differentiated by
    ``jax.grad``).  Biased for ``h > 0``: on ``N(0, s²)`` the stationary variance is
    ``s² / (1 − h/(2s²))`` (MATH.md §9.8).  ``precondition``: a constant SPD M (its diagonal or a
    ``(d, d)`` matrix, see :func:`preconditioner`) for ``x ← x + h M ∇log p(x) + sqrt(2h) M^{1/2} ξ``;
    on ``N(0, diag s²)`` with diagonal M coordinate i has stationary variance ``s_i²/(1 − h m_i/(2 s_i²))``.
    """
    _check_step_size("ula", step_size)
    score = _score_of("ula", score_fn, log_prob_fn)
    precondition = None if precondition is None else preconditioner(precondition, "ula: precondition")

    def step(key, state):
        x = state.position
        x = langevin_move(x, score(x), step_size, jax.random.normal(key, x.shape, x.dtype), precondition)
        return LangevinState(x), {}

    return Kernel(LangevinState, step)


def mala(log_prob_fn: Callable, step_size, *, precondition=None) -> Kernel:
    """Metropolis-adjusted Langevin (Roberts & Tweedie 1996); exact stationary law ``p``.

    Proposal ``y = x + h ∇log p(x) + sqrt(2h) ξ``, accepted with probability
    ``min(1, p(y) q(x|y) / (p(x) q(y|x)))``, ``q(y|x) ∝ exp(−‖y − x − h∇log p(x)‖²/(4h))``.
    With ``precondition`` M (as in :func:`ula`): ``y = x + h M ∇log p(x) + sqrt(2h) M^{1/2} ξ`` and
    ``q(y|x) ∝ exp(−(y − x − hM∇log p(x))ᵀ M⁻¹ (y − x − hM∇log p(x))/(4h))`` (Girolami & Calderhead 2011).
    """
    if not callable(log_prob_fn):
        raise ValueError(f"mala: log_prob_fn must be a callable x -> log p(x), got {log_prob_fn!r}")
    _check_step_size("mala", step_size)
    value_and_grad = jax.value_and_grad(log_prob_fn)
    precondition = None if precondition is None else preconditioner(precondition, "mala: precondition")

    def init(position):
        return MALAState(position, *value_and_grad(position))

    def log_q(to, frm, frm_score):
        if precondition is None:
            return -jnp.sum((to - frm - step_size * frm_score) ** 2) / (4.0 * step_size)
        return -precondition.inverse_quadratic(to - frm - step_size * precondition.apply(frm_score)) / (4.0 * step_size)

    def step(key, state):
        k_move, k_accept = jax.random.split(key)
        x = state.position
        y = langevin_move(x, state.score, step_size, jax.random.normal(k_move, x.shape, x.dtype), precondition)
        proposal = MALAState(y, *value_and_grad(y))
        log_ratio = proposal.log_prob - state.log_prob + log_q(x, y, proposal.score) - log_q(y, x, state.score)
        log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
        accepted = jnp.log(jax.random.uniform(k_accept)) < log_ratio
        new = jax.tree.map(lambda a, b: jnp.where(accepted, a, b), proposal, state)
        return new, MALAInfo(jnp.minimum(1.0, jnp.exp(log_ratio)), accepted)

    return Kernel(init, step)


def polynomial_decay(a: float, b: float = 1.0, gamma: float = 0.55) -> Callable:
    """Step schedule ``h_k = a (b + k)^(−γ)`` (Welling & Teh 2011: ``γ ∈ (0.5, 1]``)."""
    if not (a > 0 and b > 0 and 0 < gamma <= 1):
        raise ValueError(f"polynomial_decay: need a > 0, b > 0 and 0 < gamma <= 1, got a={a}, b={b}, gamma={gamma}")
    return lambda k: a * (b + k) ** (-gamma)


def sgld(log_prior_fn: Callable, log_likelihood_fn: Callable, data, batch_size: int, step_size) -> Kernel:
    """Stochastic-gradient Langevin dynamics (Welling & Teh 2011).

    ``θ ← θ + h_k ĝ(θ) + sqrt(2 h_k) ξ`` with the unbiased minibatch gradient
    ``ĝ = ∇[log p(θ) + (N/n) Σ_{j∈B} log p(x_j | θ)]`` (``n = batch_size`` indices drawn
    uniformly with replacement from the ``N`` rows of ``data``) and ``h_k = step_size(k)``
    (e.g. :func:`polynomial_decay`) or a constant.  In the paper's notation ``ε_k = 2 h_k``.
    ``log_likelihood_fn(θ, x_j)`` is the log-likelihood of one datum.
    """
    data = jnp.asarray(data)
    if data.ndim < 1 or data.shape[0] < 1:
        raise ValueError(f"sgld: data must be an array of shape (N, ...) with N >= 1, got shape {data.shape}")
    if int(batch_size) != batch_size or not 1 <= batch_size <= data.shape[0]:
        raise ValueError(f"sgld: batch_size must be an integer in [1, N={data.shape[0]}], got {batch_size!r}")
    _check_step_size("sgld", step_size)
    num_data, batch_size = data.shape[0], int(batch_size)
    schedule = step_size if callable(step_size) else (lambda k: step_size)

    def log_post(theta, batch):
        log_lik = jnp.sum(jax.vmap(lambda xj: log_likelihood_fn(theta, xj))(batch))
        return log_prior_fn(theta) + (num_data / batch_size) * log_lik

    def step(key, state):
        k_batch, k_noise = jax.random.split(key)
        batch = data[jax.random.randint(k_batch, (batch_size,), 0, num_data)]
        theta = state.position
        h = jnp.asarray(schedule(state.count), theta.dtype)
        noise = jax.random.normal(k_noise, theta.shape, theta.dtype)
        return SGLDState(langevin_move(theta, jax.grad(log_post)(theta, batch), h, noise), state.count + 1), SGLDInfo(h)

    return Kernel(lambda position: SGLDState(position, jnp.zeros((), jnp.int32)), step)


def _scan_kernel(kernel: Kernel, key, state, num_steps: int):
    """``num_steps`` kernel steps of one chain by ``lax.scan``; returns (final state, stacked infos)."""
    return jax.lax.scan(lambda s, k: kernel.step(k, s), state, jax.random.split(key, num_steps))


@partial(jax.jit, static_argnames=("kernel", "num_steps"))
def _run_chains(kernel, key, positions, num_steps):
    states = jax.vmap(kernel.init)(positions)
    keys = jax.random.split(key, positions.shape[0])
    return jax.vmap(lambda k, s: _scan_kernel(kernel, k, s, num_steps), out_axes=(0, 1))(keys, states)


def run_chains(kernel: Kernel, key, positions, num_steps: int):
    """Run ``num_steps`` of ``kernel`` on every chain; one compiled call (vmap over chains, scan over steps).

    Args:
      kernel: from :func:`ula`, :func:`mala`, :func:`sgld` (or any ``Kernel``).
      positions: initial positions, shape ``(num_chains, *event_shape)``.

    Returns ``(states, infos)``: the final states (leading axis chains) and the per-step
    infos stacked as ``(num_steps, num_chains, ...)`` (e.g. MALA acceptance rates).
    """
    if not isinstance(kernel, Kernel):
        raise ValueError(f"run_chains: kernel must be a genjax Kernel(init, step), got {type(kernel).__name__}")
    check_batch("run_chains: positions", positions, min_ndim=1)
    positions = jnp.asarray(positions)
    return _run_chains(kernel, key, positions, check_positive_int(num_steps, "run_chains: num_steps"))


def _check_sigmas(name, sigmas):
    if np.ndim(sigmas) != 1 or np.shape(sigmas)[0] < 1:
        raise ValueError(f"{name}: sigmas must be a 1-D array of noise levels, got shape {np.shape(sigmas)}")
    if is_concrete(sigmas):
        values = np.asarray(sigmas)
        if not (np.all(values > 0) and np.all(np.isfinite(values)) and np.all(np.diff(values) < 0)):
            raise ValueError(f"{name}: sigmas must be finite, positive and strictly decreasing (largest first), got {values}")
    return jnp.asarray(sigmas, jnp.float32)


@filter_jit
def _annealed(score_fn, sigmas, step_lr, steps_per_level, denoise, event_shape, inputs):
    step_sizes = 0.5 * step_lr * sigmas**2 / sigmas[-1] ** 2  # h_i = a_i / 2

    def chain(key, x, c):
        k_init, k_run = jax.random.split(key)
        x = sigmas[0] * jax.random.normal(k_init, event_shape) if x is None else x
        score = lambda sigma, y: call(score_fn, sigma, y, c)

        def level(x, inputs):
            k, sigma, h = inputs
            kernel = ula(h, score_fn=lambda y: score(sigma, y))
            state, _ = _scan_kernel(kernel, k, kernel.init(x), steps_per_level)
            return state.position, None

        x, _ = jax.lax.scan(level, x, (jax.random.split(k_run, sigmas.shape[0]), sigmas, step_sizes))
        if denoise:  # Tweedie: E[x0 | x] = x + σ_L² s(σ_L, x)
            x = x + sigmas[-1] ** 2 * score(sigmas[-1], x)
        return x

    return jax.vmap(chain)(*inputs)


def sample_annealed_langevin(score_fn, key, shape=None, sigmas=None, *, steps_per_level: int = 100,
                             step_lr: float = 2e-5, denoise: bool = True, x_init=None, c=None,
                             chunk_size: int | None = None, mesh=None):
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1) with a noise-conditional score.

    For ``σ_1 > … > σ_L``: ``steps_per_level`` steps of
    ``x ← x + (a_i/2) s(σ_i, x) + sqrt(a_i) ξ``, ``a_i = δ σ_i²/σ_L²`` (``δ = step_lr``),
    i.e. :func:`ula` with ``h = a_i/2``; then, if ``denoise``, the Tweedie step
    ``x + σ_L² s(σ_L, x)`` (Jolicoeur-Martineau et al. 2021; Song & Ermon 2020).

    Args:
      score_fn: per-sample ``score_fn(sigma, x) ≈ ∇ log p_σ(x)`` (data convolved with ``N(0, σ²I)``),
        or ``score_fn(sigma, x, c)`` with a conditioning batch ``c``; passed as data like every model.
      shape: ``(n, *event_shape)`` (may be ``None`` with ``x_init``); chain ``i`` starts at
        ``x_init[i]`` or ``N(0, σ_1² I)`` and draws its noise from ``split(key, n)[i]``.
      sigmas: the decreasing noise levels (required).
      chunk_size, mesh: as :func:`genjax.samplers.sample_ode`.

    Returns ``(samples, stats)`` with ``stats["nfe"] = L · steps_per_level (+1)``.
    """
    if not callable(score_fn):
        raise ValueError(f"sample_annealed_langevin: score_fn must be a callable (sigma, x) -> score, got {score_fn!r}")
    if sigmas is None:
        raise ValueError("sample_annealed_langevin: sigmas (the decreasing noise levels) is required")
    sigmas = _check_sigmas("sample_annealed_langevin", sigmas)
    steps = check_positive_int(steps_per_level, "sample_annealed_langevin: steps_per_level")
    _check_step_size("sample_annealed_langevin (step_lr)", step_lr)
    if key is None:
        raise ValueError("sample_annealed_langevin: key is required (it drives the Langevin noise)")
    shape, x_init = check_start(key, shape, x_init)
    samples = map_chunks(
        lambda chunk: _annealed(score_fn, sigmas, jnp.float32(step_lr), steps, bool(denoise), shape[1:], chunk),
        sample_inputs(key, shape, x_init, c), chunk_size=chunk_size, mesh=mesh)
    check_samples(samples, "sample_annealed_langevin")
    return samples, {"nfe": sigmas.shape[0] * steps + int(bool(denoise))}


def _batch_norm(a):
    """Mean over the batch of the per-sample Euclidean norms."""
    return jnp.mean(jnp.sqrt(jnp.sum(a.reshape(a.shape[0], -1) ** 2, axis=-1)))


@filter_jit
def _pc(model, interpolant, prediction, event_shape, dtype, corrector_steps, predictor, times, snr, inputs):
    keys, x, c = inputs
    n = keys.shape[0]
    diffusion = resolve_diffusion(interpolant, None) if predictor == "reverse_sde" else None

    def field(c_i):
        return model_field(model, c_i, event_shape, dtype, "sample_pc")

    def score(t, y):
        return jax.vmap(lambda yi, ci: convert(field(ci)(t, yi), prediction, "score", interpolant, t, yi))(y, c)

    def correct(t, alpha_ratio, y, k):
        s, noise = score(t, y), jax.random.normal(k, y.shape, y.dtype)
        h = 2.0 * alpha_ratio * (snr * _batch_norm(noise) / _batch_norm(s)) ** 2
        return langevin_move(y, s, h, noise)

    def predict_one(t, s, yi, ci, ki):
        f = field(ci)
        if diffusion is None:  # PF-ODE Euler step
            v = velocity_field(f, interpolant, prediction)
            return integrate(lambda tt, yy, args: v(tt, yy), yi, t, s, solver="euler", num_steps=1)[0]
        terms = sde_terms(sde_drift(f, interpolant, prediction, diffusion), diffusion, yi, ki)
        return integrate(None, yi, t, s, solver="euler", num_steps=1, terms=terms, adjoint=diffrax.ForwardMode())[0]

    def step(y, inputs):
        t, s, k = inputs
        k_corr, k_pred = jax.random.split(k)
        alpha_ratio = (interpolant.alpha(t) / interpolant.alpha(s)) ** 2  # 1 − β_i of DDPM; 1 for VE
        y, _ = jax.lax.scan(lambda z, kk: (correct(t, alpha_ratio, z, kk), None), y,
                            jax.random.split(k_corr, corrector_steps))
        y = jax.vmap(lambda yi, ci, ki: predict_one(t, s, yi, ci, ki))(y, c, jax.random.split(k_pred, n))
        return y, None

    k_init = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
    if x is None:
        x = jax.vmap(lambda k: prior_draw(k, event_shape, interpolant.sigma(times[0])).astype(dtype))(k_init)
    # The corrector's step uses batch statistics, so the chunk shares one noise stream (from its first key).
    y, _ = jax.lax.scan(step, x, (times[:-1], times[1:], jax.random.split(jax.random.fold_in(keys[0], 1),
                                                                         times.shape[0] - 1)))
    return y


def sample_pc(model, interpolant: Interpolant, key, shape=None, *, prediction: str, num_steps: int = 1000,
              ts=None, corrector_steps: int = 1, snr: float = 0.16, predictor: str = "reverse_sde", x_init=None,
              c=None, chunk_size: int | None = None, mesh=None):
    """Predictor–corrector sampling (Song et al. 2021, Alg. 1, 4, 5) for any one-sided interpolant model.

    On ``num_steps`` equal steps from ``t_max`` down to ``t_min`` (or the decreasing grid ``ts``), at each ``t_i``:

    * corrector: ``corrector_steps`` Langevin moves ``x ← x + h s(t_i, x) + sqrt(2h) ξ`` with the
      signal-to-noise rule ``h = 2 α_i (r ‖ξ‖/‖s‖)²``, ``r = snr``, ``α_i = α(t_i)²/α(t_{i+1})²``
      (``1 − β_i`` for VP, ``1`` for VE).  As in the reference implementation the norms are
      batch means of per-sample norms, so the step is shared by the batch (by the chunk, with
      ``chunk_size``: samples then depend on the chunking);
    * predictor: one Euler–Maruyama step ``t_i → t_{i+1}`` of the reverse SDE
      ``dx = [v − ε s] dt + sqrt(2ε) dW̄`` with ``ε = g²/2`` — the terms and diffrax core of
      :func:`genjax.samplers.sample_sde` (``predictor="reverse_sde"``) — or the PF-ODE Euler
      step of :func:`genjax.samplers.sample_ode` (``"ode"``).

    Starts from ``x_init`` or the prior ``N(0, σ(t_max)² I)``; every step (the last included)
    adds its noise.  Returns ``(samples, stats)`` with ``stats["nfe"] = num_steps · (1 + corrector_steps)``.
    """
    if predictor not in PREDICTORS:
        raise ValueError(f"sample_pc: predictor={predictor!r} is not known; expected one of {PREDICTORS}")
    if ts is None:
        num_steps = check_positive_int(num_steps, "num_steps")
        t_start, t_end = check_interval(interpolant, None, None, decreasing=True)
        times = np.linspace(t_start, t_end, num_steps + 1)
    else:
        times = check_times(interpolant, ts, "ts")
        t_start, t_end = check_interval(interpolant, times[0], times[-1], decreasing=True)
        num_steps = times.size - 1
    # the corrector and the Euler predictor evaluate the model at every grid time but the last
    check_sampler_args(model, interpolant, prediction, "sample_pc", float(times[-2]), t_start,
                       to=("velocity", "score"))
    if isinstance(corrector_steps, bool) or int(corrector_steps) != corrector_steps or corrector_steps < 0:
        raise ValueError(f"sample_pc: corrector_steps must be an integer >= 0, got {corrector_steps!r}")
    if not (math.isfinite(snr) and snr > 0):
        raise ValueError(f"sample_pc: snr must be a finite positive number, got {snr!r}")
    if predictor == "reverse_sde":
        check_diffusion(resolve_diffusion(interpolant, None), t_start, t_end)
    if key is None:
        raise ValueError("sample_pc: key is required (it drives the Langevin and SDE noise)")
    shape, x_init = check_start(key, shape, x_init)
    dtype = jnp.result_type(float) if x_init is None else x_init.dtype
    times = jnp.asarray(times, jnp.result_type(float))
    samples = map_chunks(
        lambda chunk: _pc(model, interpolant, prediction, shape[1:], dtype, int(corrector_steps), predictor, times,
                          jnp.float32(snr), chunk),
        sample_inputs(key, shape, x_init, c), chunk_size=chunk_size, mesh=mesh)
    check_samples(samples, "sample_pc")
    return samples, {"nfe": num_steps * (1 + int(corrector_steps))}
