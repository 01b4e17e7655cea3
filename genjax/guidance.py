"""Classifier-free guidance (Ho & Salimans 2022; MATH.md §16) for any prediction type, and label dropout.

A conditional model ``f(t, x, c)`` trained with the condition replaced by a *null* condition
``∅`` with probability ``p_uncond`` (:func:`drop_conditioning`) also predicts unconditionally,
``f(t, x, ∅)``.  The guided model is

    f_w(t, x, c) = (1 + w(t)) f(t, x, c) − w(t) f(t, x, ∅)

with guidance strength ``w`` (``w = 0``: the conditional model; the "scale" of other
conventions is ``1 + w``).  For the score this is ``∇ log p_t(x|c)^{1+w} / p_t(x)^w``.

**One guidance for every prediction.**  Each conversion between velocity, noise, data and
score (:func:`genjax.convert`, MATH.md §3) is affine in the prediction with an ``x`` term
that does not depend on ``c``: ``P = a(t) x + b(t) s``.  Weights ``1 + w`` and ``−w`` sum to
one, so mixing the raw predictions of any type equals mixing the scores and converting back:
``(1+w) P_c − w P_∅ = a x + b ((1+w) s_c − w s_∅)``.  :class:`ClassifierFree` mixes in the
model's own space (no division by ``σ`` near ``t = 0``); ``to=`` converts the guided output
with :func:`genjax.convert` for samplers that want another prediction.

**Guidance interval** (Kynkäänniemi et al. 2024): ``interval=(t_lo, t_hi)`` applies ``w`` only
for ``t_lo <= t <= t_hi`` (conditional model elsewhere); ``scale`` may also be a schedule ``w(t)``.
"""

from __future__ import annotations

from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from .interpolants import Interpolant, check_prediction, convert
from .model import call

__all__ = ["ClassifierFree", "check_label_dropout", "classifier_free", "drop_conditioning"]


class ClassifierFree(eqx.Module):
    """The guided per-sample model ``(t, x, c) ↦ (1 + w(t)) f(t, x, c) − w(t) f(t, x, ∅)``.

    Build it with :func:`classifier_free`.  A pytree: the inner model's weights, ``null`` and
    a constant ``scale`` are traced, so a sweep over ``w`` or new weights do not recompile.
    """

    model: Any
    null: Any
    scale: Any
    interval: tuple[float, float] | None = eqx.field(static=True)
    convert_to: tuple[Interpolant, str, str] | None = eqx.field(static=True)

    def strength(self, t):
        """``w(t)``: the schedule or constant, zero outside the guidance interval."""
        w = self.scale(t) if callable(self.scale) else self.scale
        if self.interval is not None:
            lo, hi = self.interval
            w = jnp.where((t >= lo) & (t <= hi), w, 0.0)
        return w

    def __call__(self, t, x, c):
        cond = call(self.model, t, x, c)
        uncond = call(self.model, t, x, self.null)
        w = jnp.asarray(self.strength(t), cond.dtype)
        guided = cond + w * (cond - uncond)
        if self.convert_to is None:
            return guided
        interpolant, frm, to = self.convert_to
        return convert(guided, frm, to, interpolant, t, x).astype(x.dtype)


def classifier_free(model, *, scale: float | Callable = 1.0, null: Any, interval: tuple[float, float] | None = None,
                    interpolant: Interpolant | None = None, prediction: str | None = None,
                    to: str | None = None) -> ClassifierFree:
    """Classifier-free guidance of a conditional ``model(t, x, c)`` (Ho & Salimans 2022).

    Args:
      model: per-sample conditional model, passed as data (:mod:`genjax.model`).
      scale: guidance strength ``w >= 0`` (a number, traced) or a schedule ``w(t)``.
      null: the null condition ``∅`` the model was trained with (e.g. the U-Net's
        ``num_classes`` index); one per-sample condition, shared by all samples.
      interval: optional ``(t_lo, t_hi)`` inside which ``w`` applies (Kynkäänniemi et al. 2024).
      interpolant, prediction, to: with ``to``, return the guided output converted from the
        model's ``prediction`` to ``to`` along ``interpolant`` (:func:`genjax.convert`).

    The result is a model ``fn(t, x, c)``: give it and the class batch ``c=`` to any sampler.
    """
    if not callable(model):
        raise ValueError(f"classifier_free: model must be a per-sample callable fn(t, x, c), got {type(model).__name__}")
    if not callable(scale):
        scale = jnp.asarray(scale, jnp.float32)
        if scale.ndim != 0 or not bool(jnp.isfinite(scale)):
            raise ValueError(f"classifier_free: scale must be a finite number or a callable w(t), got {scale}")
    if interval is not None:
        if len(interval) != 2 or not float(interval[0]) <= float(interval[1]):
            raise ValueError(f"classifier_free: interval must be (t_lo, t_hi) with t_lo <= t_hi, got {interval!r}")
        interval = (float(interval[0]), float(interval[1]))
    convert_to = None
    if to is not None:
        if interpolant is None or prediction is None:
            raise ValueError("classifier_free: to= needs the interpolant and the model's prediction")
        convert_to = (interpolant, check_prediction(prediction), check_prediction(to, "to"))
    return ClassifierFree(model, jax.tree.map(jnp.asarray, null), scale, interval, convert_to)


def check_label_dropout(p_uncond: float, null) -> None:
    """Raise ``ValueError`` unless ``0 <= p_uncond < 1`` and, when ``p_uncond > 0``, a ``null`` condition is given."""
    if not 0.0 <= p_uncond < 1.0:
        raise ValueError(f"p_uncond must lie in [0, 1), got {p_uncond}")
    if p_uncond > 0.0 and null is None:
        raise ValueError("p_uncond > 0 needs null=, the null condition (e.g. the U-Net's num_classes index)")


def drop_conditioning(key, c, null, p_uncond: float):
    """Replace each sample's condition by ``null`` with probability ``p_uncond`` (label dropout).

    ``c`` is a batch (a pytree of arrays with leading axis n); ``null`` has the structure of one
    sample's condition.  Trains the unconditional model of classifier-free guidance alongside
    the conditional one (Ho & Salimans 2022, Algorithm 1).
    """
    check_label_dropout(p_uncond, null)
    n = jax.tree.leaves(c)[0].shape[0]
    drop = jax.random.bernoulli(key, p_uncond, (n,))

    def replace(a, nul):
        nul = jnp.asarray(nul, a.dtype)
        if nul.shape != a.shape[1:]:
            raise ValueError(f"null must have the shape of one sample's condition {a.shape[1:]}, got {nul.shape}")
        return jnp.where(drop.reshape((n,) + (1,) * nul.ndim), nul, a)

    return jax.tree.map(replace, c, null)
