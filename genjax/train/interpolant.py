"""``train_interpolant``: ``fit`` on the unified interpolant loss (MATH.md §4)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from .. import interpolants
from ..guidance import check_label_dropout, drop_conditioning
from ..interpolants import Interpolant, check_predictions
from ..losses.interpolant import interpolant_loss
from ..model import Model
from .loop import fit
from .state import TrainState

__all__ = ["RECIPES", "Recipe", "interpolant_objective", "split_batch", "train_interpolant"]


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A published model as a choice of the unified trainer's four knobs (MATH.md §2).

    ``schedule`` names a preset of :mod:`genjax.interpolants`; ``ode_schedule`` the preset its
    PF-ODE samplers and likelihoods use (DDPM's piecewise ``ddpm`` grid has the smooth
    continuous equivalent ``vp(0.1, 20)``, on which an adaptive solver does not step at the kinks).
    """

    schedule: str
    prediction: str
    time_sampling: str
    weighting: str
    ode_schedule: str | None = None

    @property
    def interpolant(self) -> Interpolant:
        return getattr(interpolants, self.schedule)

    @property
    def ode_interpolant(self) -> Interpolant:
        return getattr(interpolants, self.ode_schedule or self.schedule)

    def train_kwargs(self) -> dict:
        """``prediction``, ``time_sampling`` and ``weighting`` for :func:`train_interpolant`."""
        return {"prediction": self.prediction, "time_sampling": self.time_sampling, "weighting": self.weighting}


RECIPES = {
    "ddpm": Recipe("ddpm", "noise", "discrete", "unit", ode_schedule="vp"),  # Ho et al. 2020, L_simple
    "fm": Recipe("linear", "velocity", "uniform", "unit"),  # Lipman et al. 2023; Liu et al. 2023
    "vp-sde": Recipe("vp", "score", "uniform", "sigma2"),  # Song et al. 2021
    # Nichol & Dhariwal 2021's schedule with velocity prediction (Salimans & Ho 2022's reason for v-prediction):
    # with α(1) = 0.003 a noise model's x̂0 = (x − σε̂)/α multiplies errors in ε̂ by ~300 near t = 1.
    "cosine": Recipe("cosine", "velocity", "uniform", "unit"),
}


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


def _keyed_model(train_apply_fn: Callable) -> Callable:
    """``apply_fn(params, t, x, {"c", "key"})`` calling ``train_apply_fn(params, t, x, c, key)``: the
    per-sample key travels as conditioning, so each sample gets its own (dropout) randomness."""

    def apply_fn(params, t, x, ck):
        return train_apply_fn(params, t, x, ck["c"], ck["key"])

    return apply_fn


def interpolant_objective(
    apply_fn: Callable, interpolant: Interpolant, *, prediction, weighting="unit", time_sampling="uniform",
    p_uncond: float = 0.0, null: Any = None, train_apply_fn: Callable | None = None, antithetic: bool = False,
) -> Callable:
    """``loss_fn(params, batch, key) = mean_i interpolant_loss(Model(apply_fn, params), ...)``.

    ``apply_fn(params, t, x)`` (or ``apply_fn(params, t, x, c)``) is per sample (e.g. a Flax
    ``module.apply``).  ``batch``: see :func:`split_batch` (``x0``; ``(x0, x1)``; or
    ``{"x0", "x1", "c"}`` for conditioning).  The aux dict is empty.  The discrete-time grid
    is ``interpolant.num_steps``.

    Classifier-free guidance training: with ``p_uncond > 0`` each sample's ``c`` is replaced
    by ``null`` with that probability (:func:`genjax.guidance.drop_conditioning`).
    ``train_apply_fn(params, t, x, c, key)``, if given, is used instead of ``apply_fn`` and
    receives a per-sample PRNG key (e.g. ``lambda p, t, x, c, k: net.apply(p, t, x, c,
    train=True, rngs={"dropout": k})`` for dropout).  Both draw from ``fold_in(key, ·)``, so
    the loss's own randomness (times and noise) is the same with or without them.

    Two-sided paths: ``prediction`` may name several heads, e.g. ``("velocity", "noise")`` with an
    ``apply_fn`` returning ``(b̂, η̂)``; ``antithetic=True`` uses the antithetic loss
    (:func:`genjax.losses.interpolant_loss`).
    """
    check_predictions(prediction, interpolant)
    check_label_dropout(p_uncond, null)
    keyed = None if train_apply_fn is None else _keyed_model(train_apply_fn)

    def loss_fn(params, batch, key):
        x0, x1, c = split_batch(batch)
        if p_uncond > 0.0:
            if c is None:
                raise ValueError("p_uncond > 0 needs conditioned batches: a dict batch with the key 'c'")
            c = drop_conditioning(jax.random.fold_in(key, 1), c, null, p_uncond)
        model = Model(apply_fn if keyed is None else keyed, params)
        if keyed is not None:
            c = {"c": c, "key": jax.random.split(jax.random.fold_in(key, 2), jnp.shape(x0)[0])}
        losses = interpolant_loss(model, interpolant, x0, key, prediction=prediction,
                                  weighting=weighting, time_sampling=time_sampling, x1=x1, c=c,
                                  antithetic=antithetic)
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
    prediction,
    weighting="unit",
    time_sampling="uniform",
    p_uncond: float = 0.0,
    null: Any = None,
    train_apply_fn: Callable | None = None,
    antithetic: bool = False,
    **fit_kwargs,
) -> tuple[TrainState, dict]:
    """Train ``apply_fn(params, t, x)`` to predict ``prediction`` along ``interpolant``.

    ``fit(interpolant_objective(...), TrainState.create(params, optimizer, key), data,
    **fit_kwargs)``: ``data`` is an array of ``x0`` (or ``(x0, x1)`` pairs, or a dict
    ``{"x0", "x1", "c"}``, see :func:`split_batch`), a callable ``data(key, batch_size)`` or a
    host iterator; ``fit_kwargs`` include ``num_steps`` and ``batch_size`` (required) and
    every other ``fit`` option.  ``p_uncond``, ``null`` (label dropout for classifier-free
    guidance), ``train_apply_fn`` (per-sample keys, e.g. dropout) and ``antithetic``: see
    :func:`interpolant_objective`.  Two-sided paths take ``data`` as ``(x0, x1)`` arrays or
    a coupled sampler (:func:`genjax.couplings.coupled_data`).  ``genjax.Model(apply_fn, state.ema_params)`` is then the
    trained model for any sampler (guided: :func:`genjax.guidance.classifier_free`).
    """
    loss_fn = interpolant_objective(apply_fn, interpolant, prediction=prediction, weighting=weighting,
                                    time_sampling=time_sampling, p_uncond=p_uncond, null=null,
                                    train_apply_fn=train_apply_fn, antithetic=antithetic)
    return fit(loss_fn, TrainState.create(params, optimizer, key), data, **fit_kwargs)
