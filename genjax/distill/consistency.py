"""Consistency models for any one-sided interpolant (MATH.md §13): model, sampler, training.

* :class:`ConsistencyModel` wraps a network ``F_θ`` into ``f(x, t) = α(t_min)[c_skip x̃ + c_out F_θ(t, c_in x̃)]``
  (:func:`genjax.losses.consistency.consistency_function`), a per-sample model that predicts the clean sample.
* :func:`sample_consistency`: one-step or multistep consistency sampling (Song et al. 2023, Alg. 1).
* :func:`train_consistency`: consistency training with the improved-CT step-count curriculum (Song &
  Dhariwal 2024), or consistency distillation from a teacher, on :func:`genjax.train.fit`.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks
from ..interpolants import Interpolant
from ..losses.consistency import (SIGMA_DATA, check_one_sided, check_options, consistency_function, consistency_loss,
                                  grid_times, sigma_bounds)
from ..model import Model, filter_jit
from ..samplers.common import check_samples, check_start, map_chunks, model_field, prior_draw, sample_inputs
from ..samplers.heun import edm_sigmas
from ..train.checkpoint import resume_step
from ..train.interpolant import split_batch
from ..train.loop import fit
from ..train.state import TrainState

__all__ = ["ConsistencyModel", "sample_consistency", "consistency_times", "ict_num_scales", "ict_stages",
           "consistency_objective", "train_consistency"]

_LOSS_OPTIONS = ("teacher_solver", "metric", "huber_c", "noise", "p_mean", "p_std", "rho", "weighting")


class ConsistencyModel(eqx.Module):
    """``ConsistencyModel(net, interpolant, sigma_data=0.5)``: the per-sample ``(t, x[, c]) ↦ f(x, t)``.

    ``f(x, t) = α(t_min)[c_skip x̃ + c_out F_θ(t, c_in x̃)]`` with ``x̃ = x/α(t)``, the scalings of
    :func:`genjax.losses.consistency.consistency_scalings` and ``F_θ = net``, any per-sample genjax model
    ``fn(t, x[, c])`` (e.g. ``genjax.Model(TimeMLP().apply, params)``), fed the interpolant time ``t``
    and ``c_in x̃``.  ``f(x, t_min) = x`` exactly.  An equinox module: a pytree whose leaves are the
    net's weights, so samplers take it as data (new weights never recompile).  It predicts the clean
    sample ``x_{t_min}``, so it is also a ``prediction="data"`` model for the genjax samplers.
    """

    net: Any
    interpolant: Interpolant = eqx.field(static=True)
    sigma_data: float = eqx.field(static=True, default=SIGMA_DATA)

    def __check_init__(self):
        _checks.check_callable(self.net, "net", "fn(t, x) or fn(t, x, c)")
        check_one_sided(self.interpolant, "ConsistencyModel")
        _checks.check_positive_float(self.sigma_data, "sigma_data")

    def __call__(self, t, x, c=None):
        return consistency_function(self.net, self.interpolant, t, x, c, self.sigma_data)


# ----------------------------------------------------------------------------- sampling


def consistency_times(interpolant: Interpolant, num_steps: int, rho: float = 7.0) -> np.ndarray:
    """Default decreasing sampling times for K = ``num_steps``: ``t_max``, then ``t(σ̃_k)``, ``k = 1..K−1``.

    ``σ̃_0 > … > σ̃_K`` is the ρ-grid ``edm_sigmas(K + 1, σ̃_min, σ̃_max, ρ)`` (``σ̃_min = σ̃(t_min)``, or
    0.002 where that is 0; ``σ̃_max = min(σ̃(t_max), 80)``), as in training.  Its first point is replaced
    by ``t_max``, where the prior is drawn, and its last, ``σ̃_min``, is dropped: since
    ``f(x, t_min) = x`` that step would only add noise.  K = 2 on ``linear``: ``σ̃_1 ≈ 2.50``.
    """
    check_one_sided(interpolant, "consistency_times")
    num_steps = _checks.check_positive_int(num_steps, "num_steps")
    if num_steps == 1:
        return np.array([interpolant.t_max], np.float32)
    lo, hi = sigma_bounds(interpolant)
    with jax.ensure_compile_time_eval():
        sigmas = edm_sigmas(num_steps + 1, lo, hi, _checks.check_positive_float(rho, "rho"))[1:-1]
    return np.concatenate([np.array([interpolant.t_max], np.float32), grid_times(interpolant, sigmas)])


def _check_times(interpolant: Interpolant, ts) -> np.ndarray:
    ts = np.atleast_1d(np.asarray(ts, np.float64))
    lo, hi = interpolant.t_min, interpolant.t_max
    if ts.ndim != 1 or ts.size < 1 or not np.all(np.isfinite(ts)) or np.any(ts <= lo) or np.any(ts > hi) or (
            ts.size > 1 and not np.all(np.diff(ts) < 0)):
        raise ValueError(f"ts must be a 1-D strictly decreasing sequence of times in (t_min, t_max] = ({lo}, {hi}] "
                         f"(at t_min the consistency function is the identity), got {ts.tolist()!r:.200}")
    return ts.astype(np.float32)


@filter_jit
def _consistency(model, interpolant, event_shape, dtype, ts, inputs):
    def one(key, x_init, c):
        f = model_field(model, c, event_shape, dtype, "sample_consistency", "data")
        k_init, k_run = jax.random.split(key)
        x = prior_draw(k_init, event_shape, interpolant.sigma(ts[0])).astype(dtype) if x_init is None else x_init
        x = f(ts[0], x)

        def step(x, inputs):
            k, t = inputs
            xt = interpolant.alpha(t) * x + interpolant.sigma(t) * jax.random.normal(k, event_shape, dtype)
            return f(t, xt), None

        x, _ = jax.lax.scan(step, x, (jax.random.split(k_run, ts.shape[0] - 1), ts[1:]))
        return x

    return jax.vmap(one)(*inputs)


def sample_consistency(model, interpolant: Interpolant, key, shape=None, *, num_steps: int = 1, ts=None,
                       x_init=None, c=None, chunk_size: int | None = None, mesh=None):
    """Multistep consistency sampling (Song et al. 2023, Alg. 1) on a one-sided path.

    ``x ← f(x_{t_0}, t_0)`` with ``x_{t_0} ~ N(0, σ(t_0)² I)`` (or ``x_init``); then for each further
    ``t_i``: ``x ← f(α(t_i) x + σ(t_i) ξ, t_i)``.  One model evaluation per time.

    Args:
      model: the consistency function ``fn(t, x[, c])``, e.g. a :class:`ConsistencyModel`, passed as data.
      key, shape, x_init, c, chunk_size, mesh: as :func:`genjax.samplers.sample_ode` (sample ``i`` draws
        its prior and its noises from ``split(key, n)[i]``; ``x_init`` is the state at ``t_0``).
      num_steps: K, with the default times :func:`consistency_times` (``t_max`` and, for K > 1, a
        Karras ρ = 7 grid in ``σ̃`` mapped to t).
      ts: explicit strictly decreasing times in ``(t_min, t_max]`` instead of ``num_steps``.

    Returns ``(samples, {"nfe": len(ts)})``.
    """
    check_one_sided(interpolant, "sample_consistency")
    _checks.check_callable(model, "model", "fn(t, x) or fn(t, x, c) returning the clean sample")
    if ts is None:
        ts = consistency_times(interpolant, num_steps)
    elif num_steps != 1:
        raise ValueError("pass either num_steps or an explicit ts, not both")
    else:
        ts = _check_times(interpolant, ts)
    shape, x_init = check_start(key, shape, x_init)
    dtype = jnp.result_type(float) if x_init is None else x_init.dtype
    grid = jnp.asarray(ts)
    samples = map_chunks(lambda chunk: _consistency(model, interpolant, shape[1:], dtype, grid, chunk),
                         sample_inputs(key, shape, x_init, c), chunk_size=chunk_size, mesh=mesh)
    check_samples(samples, "sample_consistency")
    return samples, {"nfe": int(ts.shape[0])}


# ----------------------------------------------------------------------------- training


def _stage_length(total_steps: int, s0: int, s1: int) -> int:
    """``K' = ⌊K/(log2⌊s1/s0⌋ + 1)⌋`` (at least 1)."""
    return max(1, math.floor(total_steps / (math.log2(s1 // s0) + 1)))


def _check_curriculum(total_steps, s0, s1):
    total_steps = _checks.check_positive_int(total_steps, "num_steps")
    s0, s1 = _checks.check_positive_int(s0, "s0"), _checks.check_positive_int(s1, "s1")
    if s1 < s0:
        raise ValueError(f"need s0 <= s1 (initial and final numbers of discretisation steps), got s0={s0}, s1={s1}")
    return total_steps, s0, s1


def ict_num_scales(step: int, total_steps: int, s0: int = 10, s1: int = 1280) -> int:
    """The improved-CT curriculum ``N(k) = min(s0 · 2^{⌊k/K'⌋}, s1) + 1``, ``K' = ⌊K/(log2⌊s1/s0⌋ + 1)⌋``.

    Song & Dhariwal 2024, K = ``total_steps``; ``K'`` is at least 1.
    """
    total_steps, s0, s1 = _check_curriculum(total_steps, s0, s1)
    doublings = int(step) // _stage_length(total_steps, s0, s1)
    return min(s0 * 2 ** min(doublings, 62), s1) + 1


def ict_stages(total_steps: int, s0: int = 10, s1: int = 1280) -> list[tuple[int, int, int]]:
    """The curriculum as stages ``(start, end, N)``: steps ``start ≤ k < end`` use ``N`` grid points."""
    total_steps, s0, s1 = _check_curriculum(total_steps, s0, s1)
    length, stages, start = _stage_length(total_steps, s0, s1), [], 0
    while start < total_steps:
        n = ict_num_scales(start, total_steps, s0, s1)
        end = total_steps if n == s1 + 1 else min(start + length, total_steps)
        stages.append((start, end, n))
        start = end
    return stages


def consistency_objective(apply_fn: Callable, interpolant: Interpolant, *, num_scales: int, teacher=None,
                          teacher_prediction=None, sigma_data: float = SIGMA_DATA, **loss_kwargs) -> Callable:
    """``loss_fn(params, batch, key) = mean_i consistency_loss(ConsistencyModel(Model(apply_fn, params)), ...)``.

    ``batch``: an array ``x0`` or a dict ``{"x0", "c"}`` (:func:`genjax.train.interpolant.split_batch`);
    ``loss_kwargs``: the options of :func:`genjax.losses.consistency.consistency_loss`.  The aux dict
    records ``num_scales``.
    """
    check_one_sided(interpolant, "consistency_objective")
    check_options(num_scales=num_scales, teacher=teacher, teacher_prediction=teacher_prediction, **loss_kwargs)
    _checks.check_positive_float(sigma_data, "sigma_data")

    def loss_fn(params, batch, key):
        x0, x1, c = split_batch(batch)
        if x1 is not None:
            raise ValueError("consistency training takes batches of x0 (or {'x0', 'c'}), not (x0, x1) pairs")
        model = ConsistencyModel(Model(apply_fn, params), interpolant, sigma_data)
        losses = consistency_loss(model, interpolant, x0, key, num_scales=num_scales, teacher=teacher,
                                  teacher_prediction=teacher_prediction, c=c, **loss_kwargs)
        return jnp.mean(losses), {"num_scales": jnp.asarray(num_scales, jnp.float32)}

    return loss_fn


def _merge(histories: list[dict], stages: list) -> dict:
    steps = sum(len(h["step"]) for h in histories)
    run_s = sum(len(h["step"]) / h["steps_per_s"] for h in histories if h["steps_per_s"] > 0)
    merged = {key: np.concatenate([h[key] for h in histories]) for key, value in histories[0].items()
              if isinstance(value, np.ndarray) and value.shape[:1] == histories[0]["step"].shape}
    last = histories[-1]
    merged.update(eval=[e for h in histories for e in h["eval"]], num_skipped=sum(h["num_skipped"] for h in histories),
                  steps_per_s=steps / run_s if run_s else math.nan, compile_s=sum(h["compile_s"] for h in histories),
                  stopped_early=last["stopped_early"], stop_step=last["stop_step"], stop_reason=last["stop_reason"],
                  stages=stages)
    return merged


def train_consistency(apply_fn: Callable, params: Any, interpolant: Interpolant, data, *, key: jax.Array, optimizer,
                      num_steps: int, batch_size: int, teacher=None, teacher_prediction: str | None = None,
                      num_scales: int | None = None, s0: int = 10, s1: int = 1280, sigma_data: float = SIGMA_DATA,
                      **loss_and_fit_kwargs) -> tuple[TrainState, dict]:
    """Consistency training (no teacher) or distillation (``teacher``) of ``F_θ = apply_fn(params, t, x[, c])``.

    CT uses the improved-CT curriculum (Song & Dhariwal 2024): ``N(k) = min(s0 · 2^{⌊k/K'⌋}, s1) + 1``
    grid points at step k, ``K' = ⌊K/(log2⌊s1/s0⌋ + 1)⌋``, ``K = num_steps`` (:func:`ict_stages`), run as
    one :func:`genjax.train.fit` call per stage, each continuing the returned state up to the stage's
    total step count (one compilation per stage); ``num_scales`` fixes N instead.  CD uses a fixed
    ``num_scales`` (default 18) and the teacher's one-step ODE targets.

    ``loss_and_fit_kwargs``: the options of :func:`genjax.losses.consistency.consistency_loss`
    (``teacher_solver``, ``metric``, ``huber_c``, ``noise``, ``p_mean``, ``p_std``, ``rho``, ``weighting``)
    and of ``fit`` (e.g. ``steps_per_call``, ``ema_decay``, ``checkpoint_dir``; later stages resume from
    the checkpoint the previous one saved, and ``resume=True`` skips the stages already done; early
    stopping counts restart at each stage).

    Returns ``(state, history)``: the stage histories merged (per-step arrays concatenated, with
    ``num_scales`` per step; ``stages`` lists ``(start, end, N)``).  The sampling model is then
    ``ConsistencyModel(Model(apply_fn, state.ema_params), interpolant, sigma_data)``.
    """
    check_one_sided(interpolant, "train_consistency")
    loss_kwargs = {k: loss_and_fit_kwargs.pop(k) for k in _LOSS_OPTIONS if k in loss_and_fit_kwargs}
    fit_kwargs = loss_and_fit_kwargs
    num_steps = _checks.check_positive_int(num_steps, "num_steps")
    if teacher is not None or num_scales is not None:
        n = 18 if num_scales is None else num_scales
        check_options(num_scales=n, teacher=teacher, teacher_prediction=teacher_prediction, **loss_kwargs)
        stages = [(0, num_steps, n)]
    else:
        stages = ict_stages(num_steps, s0, s1)
        check_options(num_scales=stages[0][2], teacher_prediction=teacher_prediction, **loss_kwargs)
    state = TrainState.create(params, optimizer, key)
    resume = bool(fit_kwargs.pop("resume", False))
    done = resume_step(fit_kwargs["checkpoint_dir"]) if resume and fit_kwargs.get("checkpoint_dir") else 0
    histories = []
    for start, end, n in stages:
        if end <= done and end < num_steps:
            continue
        loss_fn = consistency_objective(apply_fn, interpolant, num_scales=n, teacher=teacher,
                                        teacher_prediction=teacher_prediction, sigma_data=sigma_data, **loss_kwargs)
        state, history = fit(loss_fn, state, data, num_steps=end, batch_size=batch_size, resume=resume, **fit_kwargs)
        histories.append(history)
        resume = fit_kwargs.get("checkpoint_dir") is not None  # the next stage continues from this stage's save
        if history["stopped_early"]:
            break
    return state, _merge(histories, stages)
