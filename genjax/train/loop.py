"""``fit``: the generic training loop (many steps per compiled call, EMA, clipping, Orbax).

One update (all inside ``jax.lax.scan``, ``steps_per_call`` of them per ``jax.jit`` call)::

    key, k_data, k_loss = split(state.key, 3)
    batch               = draw(k_data)                      # or the stream's next batch
    (loss, aux), g      = value_and_grad(loss_fn)(params, batch, k_loss)
    g                   = clip_by_global_norm(g, clip_norm)  # optional
    params, opt_state   = tx.update(g, opt_state, params)
    ema                 = d · ema + (1 − d) · params        # Polyak averaging
    step               += 1

For arrays and samplers the batches and the loss noise are pure functions of the key
carried in the state, so a run resumed from a checkpoint replays exactly the batches of an
uninterrupted run, and on CPU ends with bit-identical parameters. Streams (host iterators)
are scanned over: the batches of one call are stacked to ``(num, batch, ...)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import numbers
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from .._checks import (
    check_callable,
    check_choice,
    check_optional_positive_int,
    check_positive_float,
    check_positive_int,
)
from .checkpoint import checkpoint_lock, checkpoint_manager, restore_state, save_state, saved_steps
from .parallel import DATA_AXIS, batch_sharded, check_mesh, replicated
from .state import TrainState
from .streams import prepare_data

__all__ = ["fit", "NonFiniteError", "EarlyStopping"]

LossFn = Callable[[Any, Any, jax.Array], tuple[jax.Array, dict]]
_RESERVED = ("step", "loss", "grad_norm", "finite", "skipped", "steps_per_s", "learning_rate", "eval")


class NonFiniteError(FloatingPointError):
    """Training hit a non-finite loss or gradient norm at global step ``step``.

    ``state`` is the last good ``TrainState`` (after step ``step − 1``); nothing was saved
    after it, so the newest checkpoint on disk is finite.
    """

    def __init__(self, message: str, step: int, state: TrainState):
        super().__init__(message)
        self.step = step
        self.state = state


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
    """Stop ``fit`` once ``eval_fn``'s ``metric`` has not improved for ``patience`` evaluations in a row.

    An evaluation improves on the best so far when it is lower by more than ``min_delta``
    (``mode="min"``) or higher by more than ``min_delta`` (``mode="max"``); a non-finite value
    never improves.
    """

    metric: str
    mode: str = "min"
    patience: int = 3
    min_delta: float = 0.0

    def __post_init__(self):
        if not isinstance(self.metric, str) or not self.metric:
            raise ValueError(f"EarlyStopping.metric must be the name of an eval_fn output, got {self.metric!r}")
        check_choice(self.mode, "EarlyStopping.mode", ("min", "max"))
        check_positive_int(self.patience, "EarlyStopping.patience")
        if not (isinstance(self.min_delta, numbers.Real) and 0 <= self.min_delta < math.inf):
            raise ValueError(f"EarlyStopping.min_delta must be a finite float >= 0, got {self.min_delta!r}")

    def improves(self, value: float, best: float | None) -> bool:
        """Whether ``value`` improves on ``best`` (``None``: no evaluation yet)."""
        if not math.isfinite(value):
            return False
        if best is None:
            return True
        return value < best - self.min_delta if self.mode == "min" else value > best + self.min_delta


# ----------------------------------------------------------------------------- the step


def _check_loss_fn(loss_fn, state: TrainState, batch_spec):
    """Trace ``loss_fn`` abstractly; return the aux shapes or raise a ``ValueError``.

    If tracing fails on a batch holding integer arrays, the error says so and how to convert.
    """
    try:
        out = jax.eval_shape(loss_fn, state.params, batch_spec, state.key)
    except Exception as err:
        leaves = jax.tree.leaves(batch_spec)
        ints = [f"{x.dtype}{list(x.shape)}" for x in leaves if not jnp.issubdtype(x.dtype, jnp.inexact)]
        if not ints:
            raise
        raise ValueError(
            f"data holds integer arrays ({', '.join(ints)} per batch) and loss_fn(params, batch, key) failed on them; "
            f"a float array is expected: convert it with np.asarray(data, np.float32) ({type(err).__name__}: {err})"
        ) from err
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


def _learning_rate(opt_state):
    """The first ``hyperparams["learning_rate"]`` in a (nested, e.g. chained) optax state, else ``None``.

    Present when the optimizer was built with ``optax.inject_hyperparams``; after an update
    it is the rate that update used.
    """
    has_hyperparams = lambda node: isinstance(getattr(node, "hyperparams", None), Mapping)  # noqa: E731
    for node in jax.tree.leaves(opt_state, is_leaf=has_hyperparams):
        if has_hyperparams(node) and "learning_rate" in node.hyperparams:
            return jnp.asarray(node.hyperparams["learning_rate"], jnp.float32)
    return None


def _make_step(loss_fn: LossFn, draw, *, ema_decay: float, clip_norm: float | None, skip: bool, batch_sharding):
    """One update ``state, arrays, x -> state, metrics`` (see module doc).

    A non-finite loss or gradient norm leaves params, opt_state and EMA unchanged. With
    ``skip`` the step counter and key still advance. Otherwise they do not either: the
    frozen state replays the same failing step for the rest of the call, so the call returns
    the last good state and the caller raises.
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    clip = None if clip_norm is None else optax.clip_by_global_norm(clip_norm)

    def step(state, arrays, x):
        key, data_key, loss_key = jax.random.split(state.key, 3)
        batch = draw(data_key, arrays, x)
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
        metrics = {"loss": loss, "grad_norm": grad_norm, "finite": finite}
        if (rate := _learning_rate(opt_state)) is not None:
            metrics["learning_rate"] = rate
        return state, {**metrics, **aux}

    return step


def _run_chunk(step, num: int, unroll: int, state: TrainState, arrays, xs):
    """``num`` steps in one ``lax.scan`` (over the stacked stream batches ``xs``, if any); one step without a loop."""
    if num == 1:  # no loop at all: XLA:CPU runs convolution gradients far slower inside loop bodies
        state, metrics = step(state, arrays, jax.tree.map(lambda a: a[0], xs))
        return state, jax.tree.map(lambda a: a[None], metrics)
    return jax.lax.scan(lambda carry, x: step(carry, arrays, x), state, xs, length=num, unroll=min(unroll, num))


# ----------------------------------------------------------------------------- records


def _finite_mean(x: np.ndarray):
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def _json_float(x: float):
    return float(x) if math.isfinite(x) else None


class _Recorder:
    """Collects per-step metrics into the history and writes JSONL records.

    A record holds ``step``, the mean finite ``loss``, ``grad_norm`` and scalar aux over the
    steps since the last record, cumulative ``skipped``, the call's ``steps_per_s``, the
    ``learning_rate`` at that step (if logged) and the evaluation ``eval`` made there (if
    any). One is written every ``every`` steps, after each evaluation and at the end. The
    file is started anew, or on a resume from step ``resumed`` cut to the records up to it.
    """

    def __init__(self, path, every: int, aux_spec: dict, learning_rate: bool, resumed: int | None):
        self.path = None if path is None else Path(path)
        self.every = every
        empty = {"loss": np.zeros(0, np.float32), "grad_norm": np.zeros(0, np.float32)}
        empty.update({k: np.zeros((0, *v.shape), v.dtype) for k, v in aux_spec.items()})
        self.window = {k: [] for k, v in empty.items() if v.ndim == 1}
        if learning_rate:
            empty["learning_rate"] = np.zeros(0, np.float32)
        self.chunks = [{"step": np.zeros(0, np.int64), "skipped": np.zeros(0, bool), **empty}]
        self.skipped = 0
        if self.path is not None and jax.process_index() == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            kept = [] if resumed is None else _records_upto(self.path, resumed)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            tmp.replace(self.path)

    def add(self, steps: np.ndarray, metrics: dict, skipped: np.ndarray, steps_per_s: float, *, final: bool = False,
            evals: dict | None = None):
        """Add one call's steps; with ``final`` or ``evals`` a record closes at its last step."""
        self.chunks.append({"step": steps, "skipped": skipped, **metrics})
        ends = set(np.flatnonzero(steps % self.every == 0))
        if (final or evals is not None) and len(steps):
            ends.add(len(steps) - 1)
        lo = 0
        for hi in [*(end + 1 for end in sorted(ends)), None]:
            for k, values in self.window.items():
                values.append(metrics[k][lo:hi])
            self.skipped += int(skipped[lo:hi].sum())
            if hi is not None:
                record = {"step": int(steps[hi - 1]), **{k: _finite_mean(np.concatenate(v)) for k, v in
                                                          self.window.items()}}
                record.update(skipped=self.skipped, steps_per_s=steps_per_s)
                if "learning_rate" in metrics:
                    record["learning_rate"] = float(metrics["learning_rate"][hi - 1])
                if evals is not None and hi == len(steps):
                    record["eval"] = {k: _json_float(v) for k, v in evals.items()}
                self._write(record)
                lo = hi

    def _write(self, record: dict):
        self.window = {k: [] for k in self.window}
        if self.path is not None and jax.process_index() == 0:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def history(self) -> dict:
        return {k: np.concatenate([c[k] for c in self.chunks]) for k in self.chunks[0]}


def _records_upto(path: Path, step: int) -> list[str]:
    """The JSONL lines of ``path`` (if it exists) whose record has ``step <= step``."""
    if not path.is_file():
        return []
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line cut short by a crash
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
            kept.append(line)
    return kept


class _Evaluation:
    """Runs ``eval_fn(state)``, checks its scalars, keeps them and tracks early stopping."""

    def __init__(self, eval_fn, every: int | None, early_stopping: EarlyStopping | None):
        self.eval_fn, self.every, self.early_stopping = eval_fn, every, early_stopping
        self.records: list[dict] = []
        self.best, self.best_step, self.stale = None, None, 0

    def due(self, step: int, final: bool) -> bool:
        return self.eval_fn is not None and (final or bool(self.every) and step % self.every == 0)

    def __call__(self, state: TrainState, step: int) -> dict:
        out = self.eval_fn(state)
        if not isinstance(out, Mapping) or not all(isinstance(k, str) and k != "step" for k in out):
            raise ValueError(f"eval_fn(state) must return a dict of named scalars (not 'step'), got {out!r:.80}")
        try:
            scalars = {k: float(v) for k, v in out.items() if np.ndim(v) == 0}
        except TypeError:
            scalars = {}
        if len(scalars) != len(out):
            raise ValueError(f"eval_fn(state) must return scalar float values, got {out!r:.120}")
        self.records.append({"step": step, **scalars})
        stopping = self.early_stopping
        if stopping is not None:
            if stopping.metric not in scalars:
                raise ValueError(f"EarlyStopping.metric={stopping.metric!r} is not among eval_fn's outputs "
                                 f"{sorted(scalars)}")
            if stopping.improves(scalars[stopping.metric], self.best):
                self.best, self.best_step, self.stale = scalars[stopping.metric], step, 0
            else:
                self.stale += 1
        return scalars

    def stop_reason(self) -> str | None:
        stopping = self.early_stopping
        if stopping is None or self.stale < stopping.patience:
            return None
        best = "none finite" if self.best is None else f"best {self.best:.6g} at step {self.best_step}"
        return f"early stopping: {stopping.metric} did not improve for {stopping.patience} evaluations ({best})"


# ----------------------------------------------------------------------------- fit


def _check_options(num_steps, batch_size, steps_per_call, unroll, log_every, keep, on_nonfinite, ema_decay, clip_norm,
                   checkpoint_dir, checkpoint_every, resume, mesh, eval_fn, eval_every, early_stopping, prefetch):
    for name, value in (("num_steps", num_steps), ("batch_size", batch_size), ("steps_per_call", steps_per_call),
                        ("unroll", unroll), ("log_every", log_every), ("prefetch", prefetch)):
        check_positive_int(value, name)
    for name, value in (("keep", keep), ("checkpoint_every", checkpoint_every), ("eval_every", eval_every)):
        check_optional_positive_int(value, name)
    check_choice(on_nonfinite, "on_nonfinite", ("raise", "skip"))
    if not (isinstance(ema_decay, numbers.Real) and 0.0 <= ema_decay < 1.0):
        raise ValueError(f"ema_decay must be a float in [0, 1), got {ema_decay!r}")
    if clip_norm is not None:
        check_positive_float(clip_norm, "clip_norm")
    if (checkpoint_every is not None or resume) and checkpoint_dir is None:
        raise ValueError("checkpoint_every and resume=True need a checkpoint_dir")
    for name, every in (("checkpoint_every", checkpoint_every), ("eval_every", eval_every)):
        if every is not None and every % steps_per_call:
            raise ValueError(f"{name}={every} must be a multiple of steps_per_call={steps_per_call}")
    if eval_fn is not None:
        check_callable(eval_fn, "eval_fn", "eval_fn(state) -> dict of floats")
    if eval_every is not None and eval_fn is None:
        raise ValueError("eval_every needs an eval_fn")
    if early_stopping is not None:
        if not isinstance(early_stopping, EarlyStopping):
            raise ValueError(f"early_stopping must be an EarlyStopping(metric=...), got {early_stopping!r:.80}")
        if eval_every is None:
            raise ValueError("early_stopping needs an eval_fn and eval_every")
    if mesh is not None and batch_size % check_mesh(mesh).shape[DATA_AXIS]:
        raise ValueError(
            f"batch_size={batch_size} must be divisible by the {mesh.shape[DATA_AXIS]} devices on the mesh's "
            f"{DATA_AXIS!r} axis"
        )


def _open_checkpoints(checkpoint_dir, keep: int, resume: bool, num_steps: int, state: TrainState):
    """Return ``(manager, state)``, restoring the newest intact checkpoint into ``state`` on ``resume``.

    Corrupt steps newer than the restored one are renamed ``corrupt-<step>`` so that the
    resumed run can save those steps again.
    """
    path = Path(checkpoint_dir).expanduser().resolve()
    if resume:
        state = restore_state(path, state)
        restored = int(state.step)
        if restored > num_steps:
            raise ValueError(f"num_steps={num_steps} is below step {restored}, restored from {str(path)!r}; "
                             f"pass num_steps >= {restored}")
        for newer in (s for s in saved_steps(path) if s > restored):
            if jax.process_index() == 0:
                aside = path / f"corrupt-{newer}"
                while aside.exists():
                    aside = aside.with_name(aside.name + "-")
                (path / str(newer)).rename(aside)
                warnings.warn(f"moved corrupt checkpoint step {newer} to {str(aside)!r}", stacklevel=3)
    elif saved := saved_steps(path):
        raise ValueError(
            f"checkpoint_dir {str(path)!r} already holds checkpoints (steps {saved}); "
            "pass resume=True to continue from the newest, or use an empty directory"
        )
    return checkpoint_manager(path, keep), state


def _call_lengths(start: int, num_steps: int, steps_per_call: int) -> list[int]:
    """Steps per compiled call from ``start`` to ``num_steps``, calls aligned to multiples of ``steps_per_call``."""
    lengths = []
    while start < num_steps:
        lengths.append(min(steps_per_call - start % steps_per_call, num_steps - start))
        start += lengths[-1]
    return lengths


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
    eval_fn: Callable[[TrainState], Mapping[str, float]] | None = None,
    eval_every: int | None = None,
    early_stopping: EarlyStopping | None = None,
    checkpoint_dir=None,
    checkpoint_every: int | None = None,
    keep: int | None = 3,
    resume: bool = False,
    on_nonfinite: str = "raise",
    mesh: jax.sharding.Mesh | None = None,
    prefetch: int = 2,
    progress: bool = True,
) -> tuple[TrainState, dict]:
    """Train ``state`` on ``loss_fn(params, batch, key) -> (loss, aux)`` up to ``num_steps`` total.

    Args:
      data: what ``loss_fn`` gets its ``batch`` from, checked eagerly (non-empty, numeric,
        finite; Python lists are refused; integer arrays are passed through, and if
        ``loss_fn`` fails on them the error says to convert them to float):

        * an array ``(N, ...)`` or a pytree (tuple/list/dict) of arrays sharing ``N``:
          minibatches of ``batch_size`` drawn by index from the state's key, uniformly with
          replacement, or without replacement within a batch if ``replace=False``;
        * a callable ``data(key, batch_size) -> batch`` (jax-traceable, e.g. a toy sampler;
          ``key`` is a raw ``uint32[2]`` key), checked by one probe call;
        * a stream: any other non-callable iterable (iterator, generator, grain
          ``DataLoader``) yielding NumPy batches ``(batch_size, ...)`` (under a multi-host
          ``mesh``, each process yields its ``batch_size / jax.process_count()`` rows). ``fit``
          calls ``iter(data)`` once and checks the first batch (later ones must match its
          structure and shapes; their values are not checked), and a background thread
          stacks the batches of each call and puts them on device ahead of training.
          If the stream runs out, training stops after its last batch with a warning (see
          Returns), evaluating and checkpointing there. Streams are not rewound or skipped:
          to resume, pass an iterator positioned at the restored step (``resume_step(dir)``;
          e.g. a grain iterator restored from its saved state). When ``fit`` returns, the
          thread may have read up to ``prefetch + 1`` calls beyond the last trained step.
      steps_per_call: updates per compiled call (one ``lax.scan``; the host syncs once per
        call). Calls are aligned to multiples of it in the global step, so a resumed run
        makes the same calls as an uninterrupted one.
      unroll: steps unrolled per iteration of that scan (``lax.scan(unroll=...)``). On XLA:CPU
        convolution gradients run far slower inside loop bodies (a small U-Net step: 384 ms in
        a scan, 57 ms without a loop); ``steps_per_call=1`` compiles one step with no loop
        (the fastest for convolutional nets on CPU), unrolling ~10 also recovers most of the
        speed but multiplies the compile time.
      ema_decay: ``d`` in ``ema ← d·ema + (1−d)·params``, in ``[0, 1)``.
      clip_norm: if set, gradients are clipped by global norm (``optax.clip_by_global_norm``)
        before ``state.tx``, applied explicitly so the optimizer state keeps its structure.
      log_every: a JSONL record every ``log_every`` steps (default ``steps_per_call``), after
        each evaluation and at the end, written to ``metrics_path`` if given (see
        ``_Recorder``). A fresh run starts that file anew; a resumed run keeps its records
        up to the restored step and appends after them.
      eval_fn, eval_every: ``eval_fn(state) -> {name: float}`` is called after every
        ``eval_every`` steps (a multiple of ``steps_per_call``) and at the end, with the
        ``TrainState`` (jit it yourself; its shapes never change, so it compiles once). Its
        values go into that step's JSONL record (under ``"eval"``), the progress bar and
        ``history["eval"]``.
      early_stopping: an ``EarlyStopping(metric, mode, patience, min_delta)`` on an
        ``eval_fn`` output; training stops (and checkpoints, if on) after ``patience``
        evaluations without improvement. Its counters are not checkpointed.
      checkpoint_dir, checkpoint_every, keep: Orbax checkpoints of the whole state every
        ``checkpoint_every`` steps (a multiple of ``steps_per_call``) and at the end, keeping
        the newest ``keep`` (``None``: all); each is checksummed. The directory is locked
        for the run: a second run on it raises ``ValueError``. ``resume=True`` restores the newest intact
        checkpoint (corrupt newer ones are reported and renamed ``corrupt-<step>``) and
        continues to ``num_steps`` (which must not be below the restored step); a missing
        directory raises ``FileNotFoundError``, one with no intact checkpoint ``ValueError``.
        Without ``resume`` the directory must hold no checkpoint.
      on_nonfinite: ``"raise"`` stops at the first non-finite loss or gradient norm with
        ``NonFiniteError`` (a ``FloatingPointError``) naming the global step, saving nothing
        after the last good state; ``"skip"`` leaves params, optimizer and EMA unchanged for
        that step (the step counter and key still advance) and flags it in ``skipped``.
      mesh: a ``Mesh`` with a ``"data"`` axis (``data_mesh()``): batch sharded over it, state
        and data arrays replicated; ``batch_size`` must be divisible by its size.
      prefetch: how many calls' worth of stream batches may wait on device (one more is
        being built); each is ``(steps_per_call, batch_size, ...)``.
      progress: show a tqdm bar with the loss, steps/s and the latest evaluation.

    Returns:
      ``(state, history)``; history holds per-step numpy arrays ``step`` (1-based global
      step), ``loss``, ``grad_norm`` (before clipping), ``skipped``, ``learning_rate`` (when
      the optimizer comes from ``optax.inject_hyperparams``: the rate each step used) and
      every aux entry; ``eval``, a list of ``{"step": s, **eval_fn(state)}``; ``num_skipped``,
      ``steps_per_s`` (compiled calls only) and ``compile_s``; ``stopped_early`` (bool),
      ``stop_step`` and ``stop_reason`` (``None`` unless early stopping or an exhausted stream
      ended the run before ``num_steps``). After a resume it covers only the new steps.
    """
    if not isinstance(state, TrainState):
        raise ValueError(f"state must be a TrainState (TrainState.create(params, tx, key)), got {type(state).__name__}")
    log_every = steps_per_call if log_every is None else log_every
    _check_options(num_steps, batch_size, steps_per_call, unroll, log_every, keep, on_nonfinite, ema_decay, clip_norm,
                   checkpoint_dir, checkpoint_every, resume, mesh, eval_fn, eval_every, early_stopping, prefetch)
    sharding = None if mesh is None else replicated(mesh)
    state = jax.device_put(state, sharding)
    source = prepare_data(data, batch_size, replace=replace, mesh=mesh)
    aux_spec = _check_loss_fn(loss_fn, state, source.spec)
    if resume and not Path(checkpoint_dir).expanduser().is_dir():
        raise FileNotFoundError(f"checkpoint directory {str(checkpoint_dir)!r} does not exist")

    step = _make_step(loss_fn, source.draw, ema_decay=float(ema_decay), clip_norm=clip_norm,
                      skip=on_nonfinite == "skip", batch_sharding=None if mesh is None else batch_sharded(mesh))
    evaluation = _Evaluation(eval_fn, eval_every, early_stopping)
    compiled, compile_s, run_s, stop_reason, postfix = {}, 0.0, 0.0, None, {}
    with contextlib.ExitStack() as stack:
        manager = None
        if checkpoint_dir is not None:
            stack.enter_context(checkpoint_lock(checkpoint_dir))
            manager, state = _open_checkpoints(checkpoint_dir, keep, resume, num_steps, state)
            stack.callback(manager.close)
        current = int(state.step)
        recorder = _Recorder(metrics_path, log_every, aux_spec, _learning_rate(state.opt_state) is not None,
                             current if resume else None)
        lengths = _call_lengths(current, num_steps, steps_per_call)
        stream = None
        if source.stream is not None and lengths:
            stream = stack.enter_context(source.stream.prefetch(lengths, current, prefetch))
        bar = stack.enter_context(tqdm(total=num_steps, initial=min(current, num_steps), unit="step",
                                       disable=not progress or jax.process_index() != 0))
        xs = None if stream is None else stream.get()
        for planned in lengths:
            num = planned if xs is None else jax.tree.leaves(xs)[0].shape[0]
            if num not in compiled:
                tic = time.perf_counter()
                chunk = jax.jit(functools.partial(_run_chunk, step, num, unroll), out_shardings=sharding)
                compiled[num] = chunk.lower(state, source.arrays, xs).compile()
                compile_s += time.perf_counter() - tic
            tic = time.perf_counter()
            # Block on every call: one host sync per call (never per step); with several
            # CPU devices, unsynced calls holding collectives can deadlock XLA's all-reduce.
            new_state, metrics = jax.block_until_ready(compiled[num](state, source.arrays, xs))
            metrics = jax.device_get(metrics)
            elapsed = time.perf_counter() - tic
            run_s += elapsed
            finite = metrics.pop("finite")
            good = num if on_nonfinite == "skip" or finite.all() else int(np.argmin(finite))
            steps = np.arange(current + 1, current + good + 1)
            if good < num:
                recorder.add(steps, {k: v[:good] for k, v in metrics.items()}, ~finite[:good], num / elapsed)
                bad, newest = current + good + 1, None if manager is None else manager.latest_step()
                raise NonFiniteError(
                    f"non-finite loss or gradient at step {bad} (loss={float(metrics['loss'][good])}); training "
                    f"stopped. The error's .state is the state after step {bad - 1}; newest checkpoint: "
                    + ("none" if newest is None else f"step {newest} in {str(checkpoint_dir)!r}"),
                    step=bad,
                    state=new_state,
                )
            state, current = new_state, current + num
            if stream is not None and current < num_steps:
                xs = stream.get() if num == planned else None  # a short call means the stream ran out
                if xs is None:
                    stop_reason = f"data ran out after step {current} of num_steps={num_steps}"
                    warnings.warn(f"{stop_reason}; training stopped there", stacklevel=2)
            final = current >= num_steps or stop_reason is not None
            evals = None
            if evaluation.due(current, final):
                evals = evaluation(state, current)
                postfix.update(evals)
                stop_reason = stop_reason or evaluation.stop_reason()
                final = final or stop_reason is not None
            recorder.add(steps, metrics, ~finite, num / elapsed, final=final, evals=evals)
            bar.update(num)
            bar.set_postfix(loss=_finite_mean(metrics["loss"]), steps_per_s=round(num / elapsed, 1), **postfix)
            if manager is not None and (final or checkpoint_every and current % checkpoint_every == 0):
                save_state(manager, state)
            if final:
                break

    history = recorder.history()
    history.update(num_skipped=int(history["skipped"].sum()), steps_per_s=len(history["step"]) / run_s if run_s
                   else math.nan, compile_s=compile_s, eval=evaluation.records, stopped_early=stop_reason is not None,
                   stop_step=current if stop_reason is not None else None, stop_reason=stop_reason)
    return state, history
