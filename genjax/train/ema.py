"""Exponential moving averages kept in the params and trained by ``fit`` (docs/MATH.md §15).

An EMA ``p ← γp + (1 − γ)t`` is one SGD step of rate ``1 − γ`` on ``½‖p − sg[t]‖²``; so a model whose loss adds
that term (value removed, ``R − sg[R]``) and whose optimiser gives the averaged entry ``optax.sgd(1 − γ)`` trains
its averages inside an ordinary ``fit`` loop (the VQ-VAE's EMA codebook, a JEPA's target encoder).
"""

from __future__ import annotations

import optax

from .. import _checks

__all__ = ["ema_partition"]


def ema_partition(optimizer, ema_key: str, *, decay: float = 0.99, clip_norm: float | None = None,
                  where: str = "ema_partition") -> optax.GradientTransformation:
    """``optax.partition``: ``optax.sgd(1 − decay)`` on ``params[ema_key]`` and ``optimizer`` on every other entry
    of the params dict, after clipping their gradients' global norm to ``clip_norm`` (if set).

    Clip here, never with ``fit(clip_norm=…)``: that clips all gradients together, the averages' included, which
    breaks the EMA identity.  ``fit``'s ``grad_norm`` likewise includes the averages' gradients.  ``where`` names
    the caller in error messages.
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"{where}: decay must lie in [0, 1), got {decay!r}")
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise ValueError(f"{where}: optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}")
    if clip_norm is not None:
        optimizer = optax.chain(optax.clip_by_global_norm(_checks.check_positive_float(clip_norm, "clip_norm")),
                                optimizer)

    def labels(params):
        if not (isinstance(params, dict) and ema_key in params):
            raise ValueError(f"{where}: params must be a dict holding the averaged entry under {ema_key!r}")
        return {k: "ema" if k == ema_key else "model" for k in params}

    return optax.partition({"ema": optax.sgd(1.0 - decay), "model": optimizer}, labels)
