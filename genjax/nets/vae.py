"""Per-sample MLP encoders and decoders for VAEs and VQ-VAEs (Flax linen; MATH.md §15).

Every module takes one sample of any shape (flattened on entry) and returns arrays of fixed
shapes, so :mod:`genjax.models.vae` vmaps them over a batch.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

__all__ = ["MLP", "GaussianEncoder", "GaussianDecoder"]

VARIANCES = ("pixel", "shared")


class MLP(nn.Module):
    """``x ↦ Dense(…activation(Dense(ravel x))…)`` reshaped to ``out_shape``: the trunk of the modules below."""

    out_shape: tuple[int, ...]
    hidden: Sequence[int] = (256, 256)
    activation: Callable = nn.silu

    @nn.compact
    def __call__(self, x):
        h = jnp.ravel(x)
        for width in self.hidden:
            h = self.activation(nn.Dense(width)(h))
        return nn.Dense(math.prod(self.out_shape))(h).reshape(self.out_shape)


class GaussianEncoder(nn.Module):
    """``q(z|x) = N(mean, diag(exp log_var))``: one sample ``x`` ↦ ``(mean, log_var)``, each ``(latent_dim,)``."""

    latent_dim: int
    hidden: Sequence[int] = (256, 256)
    activation: Callable = nn.silu

    @nn.compact
    def __call__(self, x):
        out = MLP((2, self.latent_dim), self.hidden, self.activation)(x)
        return out[0], out[1]


class GaussianDecoder(nn.Module):
    """``z ↦ (mean, log_var)`` of a Gaussian over ``event_shape`` (continuous, or discretised by the VAE).

    ``variance``: ``"pixel"`` (a log-variance per coordinate, output by the net), ``"shared"`` (one
    learned scalar log-variance, initialised to 0) or a float, a fixed variance.
    """

    event_shape: tuple[int, ...]
    hidden: Sequence[int] = (256, 256)
    variance: str | float = "pixel"
    activation: Callable = nn.silu

    @nn.compact
    def __call__(self, z):
        if isinstance(self.variance, str) and self.variance not in VARIANCES:
            raise ValueError(f"GaussianDecoder.variance={self.variance!r} is not known; expected one of "
                             f"{VARIANCES} or a positive float (a fixed variance)")
        if not isinstance(self.variance, str) and not self.variance > 0:
            raise ValueError(f"GaussianDecoder.variance must be positive when fixed, got {self.variance!r}")
        heads = 2 if self.variance == "pixel" else 1
        out = MLP((heads, *self.event_shape), self.hidden, self.activation)(z)
        if self.variance == "pixel":
            return out[0], out[1]
        if self.variance == "shared":
            log_var = self.param("log_var", nn.initializers.zeros, ())
        else:
            log_var = jnp.asarray(math.log(self.variance), out.dtype)
        return out[0], jnp.broadcast_to(log_var, self.event_shape)
