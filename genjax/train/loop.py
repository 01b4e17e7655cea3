"""``fit``: the generic training loop (many steps per compiled call, EMA, clipping, Orbax).

One update (all inside ``jax.lax.scan``, ``steps_per_call`` of them per ``jax.jit`` call)::

    key, k_data, k_loss = split(state.key, 3)
    batch               = draw(k_data)                      # pure function of the key
    (loss, aux), g      = value_and_grad(loss_fn)(params, batch, k_loss)
    g                   = clip_by_global_norm(g, clip_norm)  # optional
    params, opt_state   = tx.update(g, opt_state, params)
    ema                 = d · ema + (1 − d) · params        # Polyak averaging
    step               += 1

Because the batches and the loss noise are pure functions of the key carried in the state,
a run resumed from a checkpoint replays exactly the batches of an uninterrupted run, and on
CPU ends with bit-identical parameters.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from .checkpoint import checkpoint_manager, restore_state, save_state, saved_steps
from .parallel import DATA_AXIS, batch_sharded, check_mesh, replicated
from .state import TrainState

__all__ = ["fit", "NonFiniteError"]

LossFn = Callable[[Any, Any, jax.Array], tuple[jax.Array, dict]]
_RESERVED = ("step", "loss", "grad_norm", "finite", "skipped", "steps_per_s")


class NonFiniteError(FloatingPointError):
    """Training hit a non-finite loss or gradient norm at global step ``step``.

    ``state`` is the last good ``TrainState`` (after step ``step − 1``); nothing was saved
    after it, so the newest checkpoint on disk is finite.
    """

    def __init__(self, message: str, step: int, state: TrainState):
        super().__init__(message)
        self.step = step
        self.state = state


# ----------------------------------------------------------------------------- validation


def _check_batch(tree, what: str, size: int | None = None) -> int:
    """Check every leaf is a finite numeric array with one shared leading axis; return its size."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError(f"{what} must be an array or a non-empty pytree of arrays, got {tree!r:.80}")
    for leaf in leaves:
        ok = isinstance(leaf, (np.ndarray, jax.Array)) and leaf.ndim >= 1
        if not ok or not (np.issubdtype(leaf.dtype, np.number) or leaf.dtype == bool):
            shape = getattr(leaf, "shape", None)
            raise ValueError(
                f"{what} must hold numeric arrays with a leading example axis (N, ...); "
                f"got a {type(leaf).__name__} with shape {shape}"
            )
    sizes = sorted({leaf.shape[0] for leaf in leaves})
    if len(sizes) > 1:
        raise ValueError(f"{what}: the arrays disagree on the leading (example) axis, sizes {sizes}")
    if sizes[0] == 0:
        raise ValueError(f"{what} is empty (its leading axis has size 0)")
    if size is not None and sizes[0] != size:
        raise ValueError(f"{what} must have leading axis batch_size={size}, got {sizes[0]}")
    for leaf in leaves:
        if jnp.issubdtype(leaf.dtype, jnp.inexact) and not bool(jnp.all(jnp.isfinite(leaf))):
            raise ValueError(f"{what} contains NaN or inf values")
    return sizes[0]


def _prepare_data(data, batch_size: int, replace: bool, sharding):
    """Return ``(draw, arrays)``: ``draw(key, arrays) -> batch`` is pure and traceable.

    An array pytree ``(N, ...)`` is sampled by indices: uniform with replacement
    (``replace=True``, O(batch) per step) or ``batch_size`` distinct indices per step
    (``replace=False``, a random permutation: O(N) per step). A callable is used as
    ``data(key, batch_size)``.
    """
    if callable(data):
        try:
            probe = data(jax.random.PRNGKey(0), batch_size)
        except Exception as err:
            raise ValueError(f"data(key, batch_size) failed on a probe call: {type(err).__name__}: {err}") from err
        _check_batch(probe, "data(key, batch_size)", size=batch_size)
        return (lambda key, arrays: data(key, batch_size)), None
    if data is None or isinstance(data, (str, bytes)):
        raise ValueError(
            f"data must be an array (N, ...), a pytree of such arrays, or a callable data(key, batch_size); "
            f"got {data!r:.80}"
        )
    n = _check_batch(data, "data")
    arrays = jax.device_put(data, sharding)
    if not replace and batch_size > n:
        raise ValueError(
            f"batch_size={batch_size} exceeds the {n} examples in data (replace=False draws distinct examples)"
        )
    if replace:
        indices = lambda key: jax.random.randint(key, (batch_size,), 0, n)
    else:
        indices = lambda key: jax.random.choice(key, n, (batch_size,), replace=False)
    return (lambda key, arrays: jax.tree.map(lambda a: a[indices(key)], arrays)), arrays


def _check_loss_fn(loss_fn, state: TrainState, batch_spec):
    """Trace ``loss_fn`` abstractly; return the aux shapes or raise a ``ValueError``."""
    out = jax.eval_shape(loss_fn, state.params, batch_spec, state.key)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ValueError("loss_fn(params, batch, key) must return a pair (loss_scalar, aux_dict)")
    loss, aux = out
    if loss.shape != () or not jnp.issubdtype(loss.dtype, jnp.floating):
        raise ValueError(f"loss_fn must return a float scalar loss, got shape {loss.shape} dtype {loss.dtype}")
    if not isinstance(aux, Mapping) or not all(isinstance(k, str) for k in aux):
        raise ValueError(f"loss_fn's aux must be a dict with str keys, got {type(aux).__name__}")
    clash = sorted(set(aux) & set(_RESERVED))
    if clash:
        raise ValueError(f"loss_fn's aux uses reserved names {clash}; rename them")
    return aux


# ----------------------------------------------------------------------------- the step


def _make_step(loss_fn: LossFn, draw, *, ema_decay: float, clip_norm: float | None, skip: bool, batch_sharding):
    """One update ``state, arrays -> state, metrics`` (see module doc).

    A non-finite loss or gradient norm leaves params, opt_state and EMA unchanged. With
    ``skip`` the step counter and key still advance. Otherwise they do not either: the
    frozen state replays the same failing step for the rest of the call, so the call returns
    the last good state and the caller raises.
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    clip = None if clip_norm is None else optax.clip_by_global_norm(clip_norm)

    def step(state, arrays):
        key, data_key, loss_key = jax.random.split(state.key, 3)
        batch = draw(data_key, arrays)
        if batch_sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        (loss, aux), grads = grad_fn(state.params, batch, loss_key)
        grad_norm = optax.global_norm(grads)
        if clip is not None:
            grads, _ = clip.update(grads, clip.init(grads))
        updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, state.ema_params, params)

        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        moved = state.replace(step=state.step + 1, key=key)
        updated = moved.replace(params=params, opt_state=opt_state, ema_params=ema)
        fallback = moved if skip else state
        state = jax.tree.map(lambda a, b: jnp.where(finite, a, b), updated, fallback)
        return state, {"loss": loss, "grad_norm": grad_norm, "finite": finite, **aux}

    return step


def _run_chunk(step, num: int, unroll: int, state: TrainState, arrays):
    """``num`` steps in one ``lax.scan``; returns the new state and per-step metrics."""
    return jax.lax.scan(lambda carry, _: step(carry, arrays), state, length=num, unroll=min(unroll, num))


# ----------------------------------------------------------------------------- records


def _finite_mean(x: np.ndarray):
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


class _Recorder:
    """Collects per-step metrics into the history and writes JSONL window means.

    A record (``step``, mean finite ``loss``, ``grad_norm`` and scalar aux over the steps
    since the last record, cumulative ``skipped``, the call's ``steps_per_s``) is written
    every ``every`` steps and at ``last_step``.
    """

    def __init__(self, path, every: int, last_step: int, aux_spec: dict):
        self.path = None if path is None else Path(path)
        self.every, self.last_step = every, last_step
        empty = {"loss": np.zeros(0, np.float32), "grad_norm": np.zeros(0, np.float32)}
        empty.update({k: np.zeros((0, *v.shape), v.dtype) for k, v in aux_spec.items()})
        self.chunks = [{"step": np.zeros(0, np.int64), "skipped": np.zeros(0, bool), **empty}]
        self.window = {k: [] for k, v in empty.items() if v.ndim == 1}
        self.skipped = 0
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, steps: np.ndarray, metrics: dict, skipped: np.ndarray, steps_per_s: float):
        self.chunks.append({"step": steps, "skipped": skipped, **metrics})
        lo = 0
        for hi in [*(np.flatnonzero((steps % self.every == 0) | (steps == self.last_step)) + 1), None]:
            for k, values in self.window.items():
                values.append(metrics[k][lo:hi])
            self.skipped += int(skipped[lo:hi].sum())
            if hi is not None:
                self._write(int(steps[hi - 1]), steps_per_s)
                lo = hi

    def _write(self, step: int, steps_per_s: float):
        record = {"step": step, **{k: _finite_mean(np.concatenate(v)) for k, v in self.window.items()}}
        record.update(skipped=self.skipped, steps_per_s=steps_per_s)
        self.window = {k: [] for k in self.window}
        if self.path is not None and jax.process_index() == 0:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def history(self) -> dict:
        return {k: np.concatenate([c[k] for c in self.chunks]) for k in self.chunks[0]}


# ----------------------------------------------------------------------------- fit


def _check_options(num_steps, batch_size, steps_per_call, log_every, keep, on_nonfinite, ema_decay, clip_norm,
                   checkpoint_dir, checkpoint_every, resume, mesh):
    for name, value in (("num_steps", num_steps), ("batch_size", batch_size), ("steps_per_call", steps_per_call),
                        ("log_every", log_every), ("keep", keep), ("checkpoint_every", checkpoint_every)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if on_nonfinite not in ("raise", "skip"):
        raise ValueError(f"on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}")
    if not (isinstance(ema_decay, numbers.Real) and 0.0 <= ema_decay < 1.0):
        raise ValueError(f"ema_decay must be a float in [0, 1), got {ema_decay!r}")
    if clip_norm is not None and not (isinstance(clip_norm, numbers.Real) and 0 < clip_norm < math.inf):
        raise ValueError(f"clip_norm must be a positive finite float or None, got {clip_norm!r}")
    if (checkpoint_every is not None or resume) and checkpoint_dir is None:
        raise ValueError("checkpoint_every and resume=True need a checkpoint_dir")
    if checkpoint_every is not None and checkpoint_every % steps_per_call:
        raise ValueError(f"checkpoint_every={checkpoint_every} must be a multiple of steps_per_call={steps_per_call}")
    if mesh is not None and batch_size % check_mesh(mesh).shape[DATA_AXIS]:
        raise ValueError(
            f"batch_size={batch_size} must be divisible by the {mesh.shape[DATA_AXIS]} devices on the mesh's "
            f"{DATA_AXIS!r} axis"
        )


def _open_checkpoints(checkpoint_dir, keep: int, resume: bool, state: TrainState):
    """Return ``(manager, state)``, restoring the latest checkpoint into ``state`` on ``resume``."""
    if checkpoint_dir is None:
        return None, state
    if resume:
        state = restore_state(checkpoint_dir, state)
    elif saved := saved_steps(checkpoint_dir):
        raise ValueError(
            f"checkpoint_dir {str(checkpoint_dir)!r} already holds checkpoints (steps {saved}); "
            "pass resume=True to continue from the latest, or use an empty directory"
        )
    return checkpoint_manager(checkpoint_dir, keep), state


def fit(
    loss_fn: LossFn,
    state: TrainState,
    data,
    *,
    num_steps: int,
    batch_size: int,
    steps_per_call: int = 100,
    unroll: int = 1,
    replace: bool = True,
    ema_decay: float = 0.999,
    clip_norm: float | None = None,
    log_every: int | None = None,
    metrics_path=None,
    checkpoint_dir=None,
    checkpoint_every: int | None = None,
    keep: int = 3,
    resume: bool = False,
    on_nonfinite: str = "raise",
    mesh: jax.sharding.Mesh | None = None,
    progress: bool = True,
) -> tuple[TrainState, dict]:
    """Train ``state`` on ``loss_fn(params, batch, key) -> (loss, aux)`` up to ``num_steps`` total.

    Args:
      data: an array ``(N, ...)`` or pytree of arrays sharing ``N`` (minibatches of
        ``batch_size`` drawn by index each step from the state's key, uniformly with
        replacement, or without replacement within a batch if ``replace=False``), or a
        callable ``data(key, batch_size) -> batch`` (jax-traceable, e.g. a toy sampler; ``key``
        is a raw ``uint32[2]`` key). Checked eagerly: non-empty, numeric, finite (a callable
        by one probe call). The batch is what ``loss_fn`` receives.
      steps_per_call: updates per compiled call (one ``lax.scan``; the host syncs once per
        call). Calls are aligned to multiples of it in the global step, so a resumed run
        makes the same calls as an uninterrupted one.
      unroll: steps unrolled per iteration of that scan (``lax.scan(unroll=...)``). On XLA:CPU
        some ops (convolution gradients) run far slower inside loop bodies; unrolling ~10
        recovers plain-``jit`` speed at the cost of compile time.
      ema_decay: ``d`` in ``ema ← d·ema + (1−d)·params``, in ``[0, 1)``.
      clip_norm: if set, gradients are clipped by global norm (``optax.clip_by_global_norm``)
        before ``state.tx``, applied explicitly so the optimizer state keeps its structure.
      log_every: a JSONL record every ``log_every`` steps (default ``steps_per_call``) and at
        the end, appended to ``metrics_path`` if given (see ``_Recorder``).
      checkpoint_dir, checkpoint_every, keep: Orbax checkpoints of the whole state every
        ``checkpoint_every`` steps (a multiple of ``steps_per_call``) and at the end, keeping
        the newest ``keep``. ``resume=True`` restores the latest one and continues to
        ``num_steps``; a missing directory raises ``FileNotFoundError``, an empty or corrupt
        one ``ValueError``. Without ``resume`` the directory must hold no checkpoint.
      on_nonfinite: ``"raise"`` stops at the first non-finite loss or gradient norm with
        ``NonFiniteError`` (a ``FloatingPointError``) naming the global step, saving nothing
        after the last good state; ``"skip"`` leaves params, optimizer and EMA unchanged for
        that step (the step counter and key still advance) and flags it in ``skipped``.
      mesh: a ``Mesh`` with a ``"data"`` axis (``data_mesh()``): batch sharded over it, state
        and data arrays replicated; ``batch_size`` must be divisible by its size.
      progress: show a tqdm bar with the loss and steps/s.

    Returns:
      ``(state, history)``; history holds per-step numpy arrays ``step`` (1-based global
      step), ``loss``, ``grad_norm`` (before clipping), ``skipped`` and every aux entry, plus
      ``num_skipped``, ``steps_per_s`` (compiled calls only) and ``compile_s``. After a
      resume it covers only the new steps.
    """
    if not isinstance(state, TrainState):
        raise ValueError(f"state must be a TrainState (TrainState.create(params, tx, key)), got {type(state).__name__}")
    log_every = steps_per_call if log_every is None else log_every
    if isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1:
        raise ValueError(f"unroll must be a positive integer, got {unroll!r}")
    _check_options(num_steps, batch_size, steps_per_call, log_every, keep, on_nonfinite, ema_decay, clip_norm,
                   checkpoint_dir, checkpoint_every, resume, mesh)
    sharding = None if mesh is None else replicated(mesh)
    state = jax.device_put(state, sharding)
    draw, arrays = _prepare_data(data, batch_size, replace, sharding)
    aux_spec = _check_loss_fn(loss_fn, state, jax.eval_shape(draw, state.key, arrays))
    manager, state = _open_checkpoints(checkpoint_dir, keep, resume, state)

    step = _make_step(loss_fn, draw, ema_decay=float(ema_decay), clip_norm=clip_norm, skip=on_nonfinite == "skip",
                      batch_sharding=None if mesh is None else batch_sharded(mesh))
    compiled, compile_s, run_s = {}, 0.0, 0.0
    recorder = _Recorder(metrics_path, log_every, num_steps, aux_spec)
    current = int(state.step)
    bar = tqdm(total=num_steps, initial=min(current, num_steps), unit="step",
               disable=not progress or jax.process_index() != 0)
    try:
        while current < num_steps:
            num = min(steps_per_call - current % steps_per_call, num_steps - current)
            if num not in compiled:
                tic = time.perf_counter()
                chunk = jax.jit(functools.partial(_run_chunk, step, num, unroll), out_shardings=sharding)
                compiled[num] = chunk.lower(state, arrays).compile()
                compile_s += time.perf_counter() - tic
            tic = time.perf_counter()
            # Block on every call: one host sync per call (never per step); with several
            # CPU devices, unsynced calls holding collectives can deadlock XLA's all-reduce.
            new_state, metrics = jax.block_until_ready(compiled[num](state, arrays))
            metrics = jax.device_get(metrics)
            elapsed = time.perf_counter() - tic
            run_s += elapsed
            finite = metrics.pop("finite")
            good = num if on_nonfinite == "skip" or finite.all() else int(np.argmin(finite))
            recorder.add(np.arange(current + 1, current + good + 1), {k: v[:good] for k, v in metrics.items()},
                         ~finite[:good], num / elapsed)
            if good < num:
                bad, newest = current + good + 1, None if manager is None else manager.latest_step()
                raise NonFiniteError(
                    f"non-finite loss or gradient at step {bad} (loss={float(metrics['loss'][good])}); training "
                    f"stopped. The error's .state is the state after step {bad - 1}; newest checkpoint: "
                    + ("none" if newest is None else f"step {newest} in {str(checkpoint_dir)!r}"),
                    step=bad,
                    state=new_state,
                )
            state, current = new_state, current + num
            bar.update(num)
            bar.set_postfix(loss=_finite_mean(metrics["loss"]), steps_per_s=round(num / elapsed, 1))
            if manager is not None and (current == num_steps or checkpoint_every and current % checkpoint_every == 0):
                save_state(manager, state)
    finally:
        bar.close()
        if manager is not None:
            manager.close()

    history = recorder.history()
    history.update(num_skipped=int(history["skipped"].sum()), steps_per_s=len(history["step"]) / run_s if run_s
                   else math.nan, compile_s=compile_s)
    return state, history
