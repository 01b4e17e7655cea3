"""Affine coupling layers and RealNVP (Dinh, Sohl-Dickstein & Bengio 2017, "Density estimation using Real NVP").

Generative direction (base → data), binary mask ``m`` of the event shape (MATH.md §7):

    y = m⊙x + (1−m)⊙(x⊙exp(s(m⊙x)) + t(m⊙x)),   log|det ∂y/∂x| = Σ (1−m)⊙s,
    x = m⊙y + (1−m)⊙((y − t(m⊙y))⊙exp(−s(m⊙y))).

``s = c·tanh(raw/c)`` bounds the log-scale by ``c``; the conditioner's last layer is
zero-initialised so a fresh coupling (and a fresh flow) is the identity.  Consecutive layers
use ``m`` and ``1 − m``, so every coordinate is transformed within two layers.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from ..nets.conv import CouplingConvNet
from .bijector import Bijector, chain

__all__ = ["MLP", "affine_coupling", "coupling_masks", "realnvp"]

MASKS = ("half", "checkerboard", "channel")


class MLP(nn.Module):
    """Coupling conditioner on vectors: ``hidden`` ReLU layers, then a zero-initialised linear output."""

    hidden: Sequence[int]
    out_dim: int

    @nn.compact
    def __call__(self, x):
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.out_dim, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros)(x)


def affine_coupling(mask, conditioner: nn.Module, scale_bound: float = 2.0, name: str = "affine_coupling") -> Bijector:
    """Affine coupling bijector (formula in the module docstring).

    Args:
      mask: 0/1 array of the event shape; ones are kept and condition the rest.
      conditioner: Flax module mapping ``m⊙x`` (event shape) to an array whose last axis is
        twice the event's: ``[raw log-scale, shift]``.
      scale_bound: ``c`` in ``s = c·tanh(raw/c)`` (> 0).
    """
    mask = np.asarray(mask, np.float32)
    if not np.all((mask == 0) | (mask == 1)) or mask.all() or not mask.any():
        raise ValueError("affine_coupling: mask must be 0/1 with both values present")
    if not scale_bound > 0:
        raise ValueError(f"affine_coupling: scale_bound must be > 0, got {scale_bound}")
    free = 1.0 - mask

    def masked(x):
        if x.shape != mask.shape:
            raise ValueError(f"{name}: got an event of shape {x.shape}, the mask has shape {mask.shape}")
        return x * mask

    def scale_shift(params, x):
        raw, shift = jnp.split(conditioner.apply(params, masked(x)), 2, axis=-1)
        return free * scale_bound * jnp.tanh(raw / scale_bound), free * shift

    def forward(params, x):
        s, t = scale_shift(params, x)
        return x * jnp.exp(s) + t, jnp.sum(s)

    def inverse(params, y):
        s, t = scale_shift(params, y)
        return (y - t) * jnp.exp(-s), -jnp.sum(s)

    def init(key, y):
        return conditioner.init(key, masked(jnp.asarray(y[0])))

    return Bijector(init, forward, inverse, name)


def coupling_masks(event_shape: Sequence[int], num_layers: int, kind: str = "half") -> list[np.ndarray]:
    """Masks ``m, 1−m, m, …`` for ``num_layers`` couplings.

    ``kind``: ``"half"`` (first ⌈d/2⌉ of the flattened event), ``"checkerboard"`` (``(i+j)`` parity
    over the spatial axes of an ``(H, W, C)`` event, or index parity for vectors), ``"channel"``
    (first half of the last axis).
    """
    event_shape = tuple(event_shape)
    size = int(np.prod(event_shape))
    if kind not in MASKS:
        raise ValueError(f"coupling_masks: kind={kind!r} is not known; expected one of {MASKS}")
    if size < 2:
        raise ValueError(f"coupling needs at least 2 dimensions, got event_shape={event_shape}")
    if kind == "half":
        base = (np.arange(size) < (size + 1) // 2).reshape(event_shape)
    elif kind == "checkerboard":
        if len(event_shape) == 3:
            h, w, _ = event_shape
            base = np.broadcast_to(((np.arange(h)[:, None] + np.arange(w)[None, :]) % 2 == 0)[..., None], event_shape)
        else:
            base = (np.arange(size) % 2 == 0).reshape(event_shape)
    else:
        c = event_shape[-1]
        if c < 2:
            raise ValueError(f"channel masks need at least 2 channels, got event_shape={event_shape}")
        base = np.broadcast_to(np.arange(c) < c // 2, event_shape)
    base = base.astype(np.float32)
    return [base if i % 2 == 0 else 1.0 - base for i in range(num_layers)]


def realnvp(
    event_shape: Sequence[int],
    num_layers: int = 8,
    hidden: Sequence[int] | int = (64, 64),
    scale_bound: float = 2.0,
    mask: str | None = None,
) -> Bijector:
    """RealNVP: ``num_layers`` affine couplings with alternating masks.

    Vector events ``(d,)`` use :class:`MLP` conditioners (``hidden`` widths, default mask
    ``"half"``); image events ``(H, W, C)`` use :class:`genjax.nets.conv.CouplingConvNet`
    (``hidden`` channels, default mask ``"checkerboard"``).
    """
    event_shape = tuple(int(s) for s in event_shape)
    if num_layers < 2:
        raise ValueError(f"realnvp: num_layers must be >= 2 so every coordinate is transformed, got {num_layers}")
    if len(event_shape) == 1:
        widths = (hidden,) if isinstance(hidden, int) else tuple(hidden)
        make = lambda: MLP(widths, 2 * event_shape[0])  # noqa: E731
        default = "half"
    elif len(event_shape) == 3:
        width = hidden if isinstance(hidden, int) else int(hidden[0])
        make = lambda: CouplingConvNet(width, 2 * event_shape[-1])  # noqa: E731
        default = "checkerboard"
    else:
        raise ValueError(f"realnvp: event_shape must be (d,) or (H, W, C), got {event_shape}")
    masks = coupling_masks(event_shape, num_layers, mask or default)
    return chain([affine_coupling(m, make(), scale_bound, f"coupling_{i}") for i, m in enumerate(masks)], "realnvp")
