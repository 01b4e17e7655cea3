"""Rectified flow (reflow) and one-step distillation of one-sided interpolant models (MATH.md §11, §13).

Liu, Gong & Liu 2023, "Flow Straight and Fast: Learning to Generate and Transfer Data with
Rectified Flow".  A trained model's probability-flow ODE couples each prior draw
``z ~ N(0, σ(t_max)² I)`` with the sample it generates, ``x0 = ODE_{t_max→t_min}(z)``.  Retraining
on these deterministic pairs (reflow) gives a field whose paths are straighter and whose
transport cost ``E‖z − x0‖²`` is no larger; repeating it is the k-rectified flow.  One-step
distillation fits ``g(z) ≈ x0`` on the pairs.

Pairs use the loss's convention (:func:`genjax.losses.interpolant_loss` with ``x1``): ``x1`` is the
standardised noise of the one-sided path ``x_t = α x0 + σ x1``, chosen so that the path passes
through the ODE start at ``t_max``: ``x1 = (z − α(t_max) x0)/σ(t_max)``.  On ``linear`` (and
``trig``) with ``t_max = 1`` this is ``x1 = z``.  :func:`prior_end` recovers ``z`` from a pair.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks
from ..interpolants import Interpolant, check_domain, latent_free
from ..metrics.paths import straightness
from ..model import Model, check_conditioning, check_output, filter_jit, per_sample
from ..samplers.common import check_sampler_args, map_chunks, model_field
from ..samplers.ode import sample_ode, velocity_field
from ..train.interpolant import split_batch, train_interpolant
from ..train.loop import fit
from ..train.state import TrainState

__all__ = ["reflow_pairs", "prior_end", "check_pairs", "pair_straightness", "train_reflow", "rectify",
           "distill_loss", "distill_objective", "train_distill"]

_EVAL_FOLD = 0x5EF  # the evaluation key is fold_in(key, _EVAL_FOLD): the same times at every evaluation


def _check_one_sided(interpolant, where: str) -> Interpolant:
    if not isinstance(interpolant, Interpolant):
        raise ValueError(f"{where}: interpolant must be a genjax.Interpolant, got {type(interpolant).__name__}")
    if interpolant.two_sided:
        raise ValueError(
            f"{where}: interpolant {interpolant.name!r} is two-sided; reflow couples the Gaussian prior "
            "N(0, σ(t_max)² I) of a one-sided path with the data it generates. Between two data sets, couple the "
            "samples (genjax.couplings) and train the bridge on the pairs directly"
        )
    return interpolant


def check_pairs(pairs, name: str = "pairs") -> tuple[jax.Array, jax.Array]:
    """``(x0, x1)`` as float arrays of one shape ``(n, *event_shape)``, else a ``ValueError`` naming ``name``."""
    if not (isinstance(pairs, (tuple, list)) and len(pairs) == 2):
        raise ValueError(f"{name} must be a pair (x0, x1) of arrays of shape (n, *event_shape), got "
                         f"{type(pairs).__name__}" + (f" of length {len(pairs)}" if isinstance(pairs, (tuple, list))
                                                      else ""))
    x0 = _checks.float_batch(pairs[0], f"{name}[0] (x0)")
    x1 = _checks.float_batch(pairs[1], f"{name}[1] (x1)")
    if x0.shape != x1.shape:
        raise ValueError(f"{name}: x0 and x1 must have the same shape (n, *event_shape), got {x0.shape} and "
                         f"{x1.shape}")
    return x0, x1


def prior_end(interpolant: Interpolant, pairs):
    """The ODE start of each pair, ``z = α(t_max) x0 + σ(t_max) x1`` (``= x1`` on linear with ``t_max = 1``)."""
    x0, x1 = check_pairs(pairs)
    a, s, _, _ = interpolant.scales(jnp.asarray(interpolant.t_max, jnp.result_type(float)))
    return a * x0 + s * x1


def _pair_cost(interpolant, pairs) -> tuple[float, float]:
    """Transport cost ``E‖z − x0‖²`` of the pairs and its Monte-Carlo standard error ``sd/√n``."""
    x0, _ = check_pairs(pairs)
    return _mean_se(jnp.sum(jnp.reshape(prior_end(interpolant, pairs) - x0, (x0.shape[0], -1)) ** 2, axis=1))


def _mean_se(values) -> tuple[float, float]:
    """Sample mean and its standard error ``sd/√n`` (NaN for one value), in float64."""
    values = np.asarray(values, np.float64)
    se = float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else math.nan
    return float(values.mean()), se


def reflow_pairs(model, interpolant: Interpolant, key, n: int, event_shape, *, prediction, sampler=None,
                 chunk_size: int | None = None, c=None, **sampler_kwargs):
    """Pairs coupled by a model's PF-ODE: ``x0 = ODE_{t_max→t_min}(z)``, ``z ~ N(0, σ(t_max)² I)`` (Liu et al. 2023).

    Args:
      model: per-sample model predicting ``prediction`` (the teacher), passed as data.
      interpolant: a one-sided :class:`~genjax.interpolants.Interpolant`.
      key: PRNG key; ``(k_z, k_sampler) = split(key)``, ``z = σ(t_max) · normal(k_z, (n, *event_shape))``.
      n: number of pairs.  event_shape: per-sample shape, e.g. ``(2,)``.
      prediction: what ``model`` predicts.
      sampler: any genjax sampler with the common contract ``sampler(model, interpolant, key, *,
        prediction, x_init, c, chunk_size, **sampler_kwargs) -> (samples, stats)``; default
        :func:`genjax.sample_ode` (tsit5).  A stochastic sampler gives a stochastic coupling.
      chunk_size, c, sampler_kwargs: passed to the sampler (chunked solves bound the memory).

    Returns:
      ``((x0, x1), stats)``: the pairs in the loss's convention, ``x1 = (z − α(t_max) x0)/σ(t_max)``
      (``= z`` on linear with ``t_max = 1``), ready for ``train_interpolant(data=pairs)``; ``stats`` is
      the sampler's (``nfe`` per sample) plus ``wall_s``, the solve's wall time.
    """
    _check_one_sided(interpolant, "reflow_pairs")
    n = _checks.check_positive_int(n, "n")
    event_shape = (event_shape,) if isinstance(event_shape, (int, np.integer)) else event_shape
    if not isinstance(event_shape, (tuple, list)):
        raise ValueError(f"event_shape must be a tuple of positive ints, e.g. (2,), got {event_shape!r}")
    event_shape = _checks.check_shape((n, *event_shape), "(n, *event_shape)")[1:]
    sampler = sample_ode if sampler is None else sampler
    _checks.check_callable(sampler, "sampler", "sampler(model, interpolant, key, *, prediction, x_init, c, "
                           "chunk_size, ...) -> (samples, stats)")
    k_z, k_sampler = jax.random.split(key)
    t_max = jnp.asarray(interpolant.t_max, jnp.result_type(float))
    a, s, _, _ = interpolant.scales(t_max)
    z = s * jax.random.normal(k_z, (n, *event_shape))
    tic = time.perf_counter()
    x0, stats = sampler(model, interpolant, k_sampler, prediction=prediction, x_init=z, c=c, chunk_size=chunk_size,
                        **sampler_kwargs)
    x0 = jax.block_until_ready(jnp.asarray(x0))
    stats = {**stats, "wall_s": time.perf_counter() - tic}
    if x0.shape != z.shape:
        raise ValueError(f"reflow_pairs: the sampler returned samples of shape {x0.shape}, expected {z.shape}")
    return (x0, (z - a * x0) / s), stats


@filter_jit
def _pair_defects(model, interpolant, prediction, num_times, stratified, inputs):
    # ``stratified`` is a traced boolean: both estimators share one compiled program
    t_min, t_max = interpolant.t_min, interpolant.t_max

    def one(key, x0, x1, c):
        v = velocity_field(model_field(model, c, x0.shape, x0.dtype, "pair_straightness", prediction), interpolant,
                           prediction)
        u = jax.random.uniform(key, (num_times,), jnp.result_type(float))
        u = jnp.where(stratified, (jnp.arange(num_times) + u) / num_times, u)
        times = t_min + (t_max - t_min) * u

        def defect(t):
            a, s, da, ds = interpolant.scales(t)
            return jnp.sum((v(t, a * x0 + s * x1) - (da * x0 + ds * x1)) ** 2)

        return jnp.mean(jax.vmap(defect)(times))

    return jax.vmap(one)(*inputs)


def pair_straightness(model, interpolant: Interpolant, pairs, key, *, prediction="velocity", num_times: int = 8,
                      stratified: bool = True, c=None, chunk_size: int | None = None) -> tuple[float, float]:
    """Reflow straightness of a model on pairs: ``E_t E‖v_θ(t, x_t) − ẋ_t‖²``, with its Monte-Carlo standard error.

    ``x_t = α x0 + σ x1``, ``ẋ_t = α̇ x0 + σ̇ x1``, ``t ~ U(t_min, t_max)``: the reflow loss of Liu et al.
    2023, on the linear path over ``[0, 1]`` ``E∫_0^1 ‖v(t, x_t) − (x1 − x0)‖² dt`` (there the mean over ``t``
    is the integral).  At the field that minimises it for the pairs' coupling it is the CFM defect
    ``L*`` of MATH.md §11: ``0`` for deterministic straight couplings (one reflow of an exact flow),
    ``(π/2) Σ_j s_j`` for independent pairs of ``N(m, diag s²)`` and ``N(0, I)`` on the linear path.

    Estimator: each pair ``i`` gets ``num_times`` times of its own, stratified
    (``t_k = t_min + (t_max − t_min)(k + u_k)/K``, ``u_k ~ U(0, 1)``) or uniform, from ``split(key, n)[i]``;
    ``ℓ_i`` is the mean defect over its times.  The ``ℓ_i`` are i.i.d., so the estimate ``mean_i ℓ_i``
    is unbiased with standard error ``sd(ℓ)/√n`` (returned; NaN for ``n = 1``).  Stratifying
    removes most of the time-sampling variance from ``sd(ℓ)`` for a smooth defect (O(1/K³) against
    O(1/K) per pair).  ``model`` predicts ``prediction`` (converted to velocity, MATH.md §3).

    Returns ``(value, standard_error)``.
    """
    _check_one_sided(interpolant, "pair_straightness")
    x0, x1 = check_pairs(pairs)
    num_times = _checks.check_positive_int(num_times, "num_times")
    check_sampler_args(model, interpolant, prediction, "pair_straightness", interpolant.t_min, interpolant.t_max)
    inputs = (jax.random.split(key, x0.shape[0]), x0, x1, check_conditioning(c, x0.shape[0]))
    flag = jnp.asarray(bool(stratified))
    per = map_chunks(lambda chunk: _pair_defects(model, interpolant, prediction, num_times, flag, chunk), inputs,
                     chunk_size=chunk_size)
    return _mean_se(per)


def _eval_params(state: TrainState, eval_params: str):
    _checks.check_choice(eval_params, "eval_params", ("ema", "params"))
    return state.ema_params if eval_params == "ema" else state.params


def _eval_key(key, eval_key):
    return jax.random.fold_in(key, _EVAL_FOLD) if eval_key is None else eval_key


def _check_train_pairs(pairs, eval_pairs, eval_params, fit_kwargs, where: str):
    """Checked ``(pairs, eval_pairs)`` of a training call; ``eval_pairs`` (optional) replaces ``eval_fn``."""
    pairs = check_pairs(pairs)
    if eval_pairs is not None:
        if "eval_fn" in fit_kwargs:
            raise ValueError(f"{where}: pass either eval_pairs (the built-in evaluation) or eval_fn, not both")
        eval_pairs = check_pairs(eval_pairs, "eval_pairs")
        if eval_pairs[0].shape[1:] != pairs[0].shape[1:]:
            raise ValueError(f"eval_pairs must have the event shape of pairs {pairs[0].shape[1:]}, got "
                             f"{eval_pairs[0].shape[1:]}")
        _checks.check_choice(eval_params, "eval_params", ("ema", "params"))
    return pairs, eval_pairs


def train_reflow(apply_fn: Callable, params: Any, interpolant: Interpolant, pairs, *, key, optimizer,
                 prediction="velocity", eval_pairs=None, eval_key=None, num_times: int = 8,
                 eval_params: str = "ema", **fit_kwargs):
    """Reflow training: ``train_interpolant(apply_fn, params, interpolant, data=pairs, prediction="velocity")``.

    The loss is ``E‖v_θ(t, α x0 + σ x1) − (α̇ x0 + σ̇ x1)‖²`` on the coupled pairs (Liu et al. 2023); the
    path must be latent-free (``γ ≡ 0``, every preset), so that ``x_t`` is deterministic given the pair.
    With ``eval_pairs`` (held-out pairs), ``fit``'s ``eval_fn`` reports :func:`pair_straightness` of
    the model (``eval_params``: ``"ema"`` or ``"params"``) as ``straightness`` and
    ``straightness_se`` in ``history["eval"]`` every ``eval_every`` steps and at the end, with the
    same times at every evaluation (``eval_key``, default ``fold_in(key, ·)``).  ``fit_kwargs``:
    ``num_steps``, ``batch_size``, ``eval_every``, ``ema_decay``, ... (:func:`genjax.train.fit`).

    Returns ``(TrainState, history)``.
    """
    _check_one_sided(interpolant, "train_reflow")
    if not latent_free(interpolant):
        raise ValueError(f"train_reflow: interpolant {interpolant.name!r} has a latent γ z term; reflow trains on "
                         "x_t = α x0 + σ x1 with no extra noise: use a path with γ ≡ 0 (β = σ), e.g. any preset")
    pairs, eval_pairs = _check_train_pairs(pairs, eval_pairs, eval_params, fit_kwargs, "train_reflow")
    if eval_pairs is not None:
        check_domain(interpolant, prediction, interpolant.t_min, interpolant.t_max, what="train_reflow")
        k_eval = _eval_key(key, eval_key)

        def eval_fn(state):
            value, se = pair_straightness(Model(apply_fn, _eval_params(state, eval_params)), interpolant, eval_pairs,
                                          k_eval, prediction=prediction, num_times=num_times)
            return {"straightness": value, "straightness_se": se}

        fit_kwargs["eval_fn"] = eval_fn
    return train_interpolant(apply_fn, params, interpolant, pairs, key=key, optimizer=optimizer,
                             prediction=prediction, **fit_kwargs)


def rectify(apply_fn: Callable, params: Any, interpolant: Interpolant, model, key, *, rounds: int, num_pairs: int,
            event_shape, optimizer, prediction, num_eval_pairs: int = 512, sampler=None, sampler_kwargs=None,
            chunk_size: int | None = None, warm_start: bool = True, num_times: int = 8, **fit_kwargs):
    """k-rectified flow (Liu et al. 2023): ``rounds`` rounds of (pairs from the current model → :func:`train_reflow`).

    Round 1 draws pairs from ``model`` (predicting ``prediction``), later rounds from the previous round's
    velocity model ``Model(apply_fn, state.ema_params)``.  Each round draws ``num_pairs`` training pairs
    and ``num_eval_pairs`` held-out ones with :func:`reflow_pairs` (``sampler``, ``sampler_kwargs``,
    ``chunk_size``) and trains from ``params`` (or, with ``warm_start``, from the previous round's EMA
    parameters, as Liu et al. do) with a fresh optimizer state; ``fit_kwargs`` (``num_steps``,
    ``batch_size``, ``eval_every``, ...) go to every round.

    Returns ``(state, records)``: the last round's ``TrainState`` and one dict per round with
    ``transport_cost`` ``E‖z − x0‖²`` of the round's pairs (and ``transport_cost_se``),
    ``teacher_straightness`` / ``straightness`` (:func:`pair_straightness` of the round's teacher /
    trained model on the held-out pairs, with ``_se``), ``flow_straightness`` (Liu et al.'s ``S`` of the
    trained model's ODE flow from the held-out ``z``, :func:`genjax.metrics.straightness`),
    ``pair_nfe``, ``pair_wall_s``, ``train_wall_s``, ``loss`` (the last training loss) and ``eval``
    (the round's ``history["eval"]``).
    """
    _check_one_sided(interpolant, "rectify")
    rounds = _checks.check_positive_int(rounds, "rounds")
    num_pairs = _checks.check_positive_int(num_pairs, "num_pairs")
    num_eval_pairs = _checks.check_positive_int(num_eval_pairs, "num_eval_pairs")
    if num_eval_pairs < 2:
        raise ValueError(f"num_eval_pairs must be >= 2 (a standard error needs two pairs), got {num_eval_pairs}")
    teacher, teacher_prediction, state, records = model, prediction, None, []
    for r in range(rounds):
        key, k_pairs, k_train, k_eval = jax.random.split(key, 4)
        (x0, x1), stats = reflow_pairs(teacher, interpolant, k_pairs, num_pairs + num_eval_pairs, event_shape,
                                       prediction=teacher_prediction, sampler=sampler, chunk_size=chunk_size,
                                       **(sampler_kwargs or {}))
        held = (x0[num_pairs:], x1[num_pairs:])
        before, before_se = pair_straightness(teacher, interpolant, held, k_eval, prediction=teacher_prediction,
                                              num_times=num_times)
        start = params if state is None or not warm_start else state.ema_params
        tic = time.perf_counter()
        state, history = train_reflow(apply_fn, start, interpolant, (x0[:num_pairs], x1[:num_pairs]), key=k_train,
                                      optimizer=optimizer, eval_pairs=held, eval_key=k_eval, num_times=num_times,
                                      **fit_kwargs)
        train_s = time.perf_counter() - tic
        teacher, teacher_prediction = Model(apply_fn, state.ema_params), "velocity"
        cost, cost_se = _pair_cost(interpolant, (x0, x1))
        final = history["eval"][-1]
        records.append({
            "round": r + 1, "transport_cost": cost, "transport_cost_se": cost_se,
            "teacher_straightness": before, "teacher_straightness_se": before_se,
            "straightness": final["straightness"], "straightness_se": final["straightness_se"],
            "flow_straightness": straightness(teacher, interpolant, prior_end(interpolant, held), backward=True),
            "pair_nfe": int(np.max(stats["nfe"])), "pair_wall_s": stats["wall_s"], "train_wall_s": train_s,
            "loss": float(history["loss"][-1]), "eval": history["eval"],
        })
    return state, records


# ---------------------------------------------------------------------------------
# One-step distillation
# ---------------------------------------------------------------------------------


def distill_loss(model, interpolant: Interpolant, pairs, *, c=None):
    """Per-sample one-step distillation loss ``‖z + (t_min − t_max) v_θ(t_max, z) − x0‖²``, shape ``(n,)``.

    ``z = α(t_max) x0 + σ(t_max) x1`` is the pair's ODE start (:func:`prior_end`).  The student is a
    velocity model queried at ``t_max`` only, so one Euler step of its PF-ODE,
    ``sample_ode(student, interpolant, key, shape, prediction="velocity", solver="euler", num_steps=1)``,
    is the one-step generator ``g(z) = z + (t_min − t_max) v_θ(t_max, z) ≈ x0``; on the linear path
    this is Liu et al. 2023's distillation of a k-rectified flow (``k = 1`` from the teacher's pairs).
    """
    _check_one_sided(interpolant, "distill_loss")
    _checks.check_callable(model, "model", "fn(t, x) or fn(t, x, c)")
    x0, x1 = check_pairs(pairs)
    c = check_conditioning(c, x0.shape[0])
    t_max = jnp.asarray(interpolant.t_max, jnp.result_type(float))
    check_output(model, t_max, jax.ShapeDtypeStruct(x0.shape[1:], x0.dtype),
                 None if c is None else jax.tree.map(lambda a: a[0], c), where="distill_loss")
    a, s, _, _ = interpolant.scales(t_max)
    step = interpolant.t_min - interpolant.t_max

    def one(a0, a1, ci):
        z = a * a0 + s * a1
        return jnp.sum((z + step * per_sample(model, ci)(t_max, z) - a0) ** 2)

    return jax.vmap(one)(x0, x1, c)


def distill_objective(apply_fn: Callable, interpolant: Interpolant) -> Callable:
    """``loss_fn(params, batch, key) = mean distill_loss(Model(apply_fn, params), ...)`` for :func:`genjax.train.fit`.

    ``batch``: ``(x0, x1)`` pairs or a dict ``{"x0", "x1", "c"}`` (:func:`genjax.train.split_batch`).
    The loss is deterministic (``key`` unused); the aux dict is empty.
    """
    _check_one_sided(interpolant, "distill_objective")

    def loss_fn(params, batch, key):
        del key
        x0, x1, c = split_batch(batch)
        if x1 is None:
            raise ValueError("distill_objective: batches must hold pairs (x0, x1)")
        return jnp.mean(distill_loss(Model(apply_fn, params), interpolant, (x0, x1), c=c)), {}

    return loss_fn


_distill_losses = filter_jit(distill_loss)


def train_distill(apply_fn: Callable, params: Any, interpolant: Interpolant, pairs, *, key, optimizer,
                  eval_pairs=None, eval_params: str = "ema", **fit_kwargs):
    """Train the one-step generator (:func:`distill_loss`) on reflow pairs: ``fit(distill_objective(...), ...)``.

    ``apply_fn(params, t, x)`` is a velocity model; after training,
    ``sample_ode(Model(apply_fn, state.ema_params), interpolant, key, shape, prediction="velocity",
    solver="euler", num_steps=1)`` generates in one step.  With ``eval_pairs``, ``history["eval"]``
    reports ``distill_error`` (the mean loss on them, the one-step squared error ``E‖g(z) − x0‖²``)
    and ``distill_error_se``.  ``fit_kwargs``: ``num_steps``, ``batch_size``, ... (:func:`genjax.train.fit`).

    Returns ``(TrainState, history)``.
    """
    loss_fn = distill_objective(apply_fn, interpolant)
    pairs, eval_pairs = _check_train_pairs(pairs, eval_pairs, eval_params, fit_kwargs, "train_distill")
    if eval_pairs is not None:

        def eval_fn(state):
            value, se = _mean_se(_distill_losses(Model(apply_fn, _eval_params(state, eval_params)), interpolant,
                                                 eval_pairs))
            return {"distill_error": value, "distill_error_se": se}

        fit_kwargs["eval_fn"] = eval_fn
    return fit(loss_fn, TrainState.create(params, optimizer, key), pairs, **fit_kwargs)
