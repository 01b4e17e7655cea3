"""``train_interpolant``: ``fit`` on the unified interpolant loss (MATH.md §4)."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from ..interpolants import Interpolant, check_prediction
from ..losses.interpolant import interpolant_loss
from ..model import Model
from .loop import fit
from .state import TrainState

__all__ = ["interpolant_objective", "split_batch", "train_interpolant"]


def split_batch(batch):
    """``(x0, x1, c)`` from a batch: an array ``x0``, a pair ``(x0, x1)``, or a dict with ``x0`` and optional
    ``x1`` (second data set / coupled prior draws) and ``c`` (conditioning, e.g. class labels)."""
    if isinstance(batch, dict):
        unknown = sorted(set(batch) - {"x0", "x1", "c"})
        if "x0" not in batch or unknown:
            raise ValueError(f"a dict batch needs the key 'x0' and optionally 'x1', 'c'; got keys {sorted(batch)}")
        return batch["x0"], batch.get("x1"), batch.get("c")
    if isinstance(batch, (tuple, list)):
        if len(batch) != 2:
            raise ValueError(f"a tuple batch must be (x0, x1), got {len(batch)} entries")
        return batch[0], batch[1], None
    return batch, None, None


def interpolant_objective(
    apply_fn: Callable, interpolant: Interpolant, *, prediction: str, weighting="unit", time_sampling="uniform"
) -> Callable:
    """``loss_fn(params, batch, key) = mean_i interpolant_loss(Model(apply_fn, params), ...)``.

    ``apply_fn(params, t, x)`` (or ``apply_fn(params, t, x, c)``) is per sample (e.g. a Flax
    ``module.apply``).  ``batch``: see :func:`split_batch` (``x0``; ``(x0, x1)``; or
    ``{"x0", "x1", "c"}`` for conditioning).  The aux dict is empty.  The discrete-time grid
    is ``interpolant.num_steps``.
    """
    check_prediction(prediction)

    def loss_fn(params, batch, key):
        x0, x1, c = split_batch(batch)
        losses = interpolant_loss(Model(apply_fn, params), interpolant, x0, key, prediction=prediction,
                                  weighting=weighting, time_sampling=time_sampling, x1=x1, c=c)
        return jnp.mean(losses), {}

    return loss_fn


def train_interpolant(
    apply_fn: Callable,
    params: Any,
    interpolant: Interpolant,
    data,
    *,
    key: jax.Array,
    optimizer,
    prediction: str,
    weighting="unit",
    time_sampling="uniform",
    **fit_kwargs,
) -> tuple[TrainState, dict]:
    """Train ``apply_fn(params, t, x)`` to predict ``prediction`` along ``interpolant``.

    ``fit(interpolant_objective(...), TrainState.create(params, optimizer, key), data,
    **fit_kwargs)``: ``data`` is an array of ``x0`` (or ``(x0, x1)`` pairs, or a dict
    ``{"x0", "x1", "c"}``, see :func:`split_batch`), a callable ``data(key, batch_size)`` or a
    host iterator; ``fit_kwargs`` include ``num_steps`` and ``batch_size`` (required) and
    every other ``fit`` option.  ``genjax.Model(apply_fn, state.ema_params)`` is then the
    trained model for any sampler.
    """
    loss_fn = interpolant_objective(apply_fn, interpolant, prediction=prediction, weighting=weighting,
                                    time_sampling=time_sampling)
    return fit(loss_fn, TrainState.create(params, optimizer, key), data, **fit_kwargs)
