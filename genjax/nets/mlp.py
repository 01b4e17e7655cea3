"""Time-conditioned MLPs for vector data (Flax linen): ``TimeMLP`` ``fn(t, x)`` and ``IntervalMLP`` ``fn([r, t], x)``."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

__all__ = ["TimeMLP", "IntervalMLP", "fourier_features"]


def fourier_features(t, num_frequencies: int = 8, max_frequency: float = 30.0):
    """Sinusoidal time features ``[sin(f_k t), cos(f_k t)]``, ``f_k`` geometric in ``[1, max_frequency]``.

    The transformer/DDPM position embedding (Vaswani et al. 2017; Ho et al. 2020) for ``t ∈ [0, 1]``.
    ``t`` of shape ``(...)`` gives features of shape ``(..., 2 num_frequencies)``.
    """
    freqs = jnp.exp(jnp.linspace(0.0, math.log(max_frequency), num_frequencies))
    angles = jnp.asarray(t)[..., None] * freqs
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def _check_x(x, name: str):
    x = jnp.asarray(x)
    if x.ndim == 0:
        raise ValueError(f"{name}: x must have a feature axis, shape (d,) or (n, d)")
    return x


class TimeMLP(nn.Module):
    """``fn(t, x)``: an MLP on ``[x, fourier_features(t)]`` for flat vector data.

    Works per sample (scalar ``t``, ``x`` of shape ``(d,)``) and batched (``t`` scalar or
    ``(n,)``, ``x`` of shape ``(n, d)``).  Output dimension ``out_dim`` (default ``d``).
    ``zero_init`` zero-initialises the output layer (the model starts at 0).  ``heads > 1``
    returns a tuple of ``heads`` outputs of that dimension from one shared trunk (a two-sided
    ``(b, η)`` model, ``prediction=("velocity", "noise")``).

    Low time frequencies keep the learned field smooth in ``t``: on the quickstart, adaptive
    PF-ODE sampling took 91–295 NFE with 8 frequencies up to 30, against 481–709 with 16 up
    to 1000, with equal or better sample quality and NLL.
    """

    hidden: Sequence[int] = (256, 256, 256)
    out_dim: int | None = None
    num_frequencies: int = 8
    max_frequency: float = 30.0
    activation: Callable = nn.silu
    zero_init: bool = False
    heads: int = 1

    @nn.compact
    def __call__(self, t, x):
        x = _check_x(x, type(self).__name__)
        return self._trunk(x, self._features(t, x))

    def _features(self, t, x):
        """``fourier_features(t)`` with ``t`` broadcast to the batch shape of ``x``."""
        t = jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:-1])
        return fourier_features(t, self.num_frequencies, self.max_frequency).astype(x.dtype)

    def _trunk(self, x, features):
        """The shared network: Dense layers with ``activation`` on ``[x, features]``, then the output layer."""
        h = jnp.concatenate([x, features], -1)
        for width in self.hidden:
            h = self.activation(nn.Dense(width)(h))
        init = nn.initializers.zeros if self.zero_init else nn.linear.default_kernel_init
        out_dim = self.out_dim or x.shape[-1]
        out = nn.Dense(out_dim * self.heads, kernel_init=init)(h)
        if self.heads == 1:
            return out
        return tuple(out[..., i * out_dim:(i + 1) * out_dim] for i in range(self.heads))


class IntervalMLP(TimeMLP):
    """``fn(times, x)`` with ``times = [r, t]``: :class:`TimeMLP`'s trunk on ``[x, φ(t), φ(t − r)]``.

    A two-time network for MeanFlow average velocities ``u(x, r, t)`` (Geng et al. 2025, whose
    best embedding is ``(t, t − r)``): ``φ = fourier_features`` with the same frequencies for
    both times.  ``times`` has shape ``(2,)`` per sample, or ``(n, 2)`` with ``x`` of shape
    ``(n, d)`` (a single ``(2,)`` pair is broadcast over the batch).  The options are TimeMLP's.
    """

    @nn.compact
    def __call__(self, times, x):
        x = _check_x(x, "IntervalMLP")
        times = jnp.asarray(times, x.dtype)
        if times.ndim < 1 or times.shape[-1] != 2:
            raise ValueError(f"IntervalMLP: times must be the pair [r, t], shape (2,) or (n, 2), got shape {times.shape}")
        r, t = times[..., 0], times[..., 1]
        return self._trunk(x, jnp.concatenate([self._features(t, x), self._features(t - r, x)], -1))
