"""``train_interpolant``: ``fit`` on the unified interpolant loss (MATH.md §4)."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from ..interpolants import Interpolant, check_prediction
from ..losses.interpolant import interpolant_loss
from .loop import fit
from .state import TrainState

__all__ = ["interpolant_objective", "train_interpolant"]


def interpolant_objective(
    apply_fn: Callable, interpolant: Interpolant, *, prediction="velocity", weighting="unit", time_sampling="uniform"
) -> Callable:
    """``loss_fn(params, batch, key) = mean_i interpolant_loss(t, x ↦ apply_fn(params, t, x))``.

    ``apply_fn(params, t, x)`` is per sample (e.g. a Flax ``model.apply``). ``batch`` is the
    data ``x0`` of shape ``(n, ...)``, or a pair ``(x0, x1)`` for a two-sided path. The aux
    dict is empty. The discrete-time grid is ``interpolant.num_steps``.
    """
    check_prediction(prediction)

    def loss_fn(params, batch, key):
        x0, x1 = batch if isinstance(batch, (tuple, list)) else (batch, None)
        fn = lambda t, x: apply_fn(params, t, x)
        losses = interpolant_loss(fn, interpolant, x0, key, prediction=prediction, weighting=weighting,
                                  time_sampling=time_sampling, x1=x1)
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
    prediction: str = "velocity",
    weighting="unit",
    time_sampling="uniform",
    **fit_kwargs,
) -> tuple[TrainState, dict]:
    """Train ``apply_fn(params, t, x)`` to predict ``prediction`` along ``interpolant``.

    ``fit(interpolant_objective(...), TrainState.create(params, optimizer, key), data,
    **fit_kwargs)``: ``data`` is an array of ``x0`` (or ``(x0, x1)`` pairs for a two-sided
    path) or a callable ``data(key, batch_size)``; ``fit_kwargs`` include ``num_steps`` and
    ``batch_size`` (required) and every other ``fit`` option.
    """
    loss_fn = interpolant_objective(apply_fn, interpolant, prediction=prediction, weighting=weighting,
                                    time_sampling=time_sampling)
    return fit(loss_fn, TrainState.create(params, optimizer, key), data, **fit_kwargs)
