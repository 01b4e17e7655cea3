"""Glow building blocks (Kingma & Dhariwal 2018, "Glow: Generative Flow with Invertible 1×1 Convolutions").

Events are NHWC images ``(H, W, C)`` without the batch axis, or vectors ``(d,)`` (the 2-D
toy variant).  Directions follow :mod:`genjax.flows.bijector`: ``inverse`` is data → base and
each layer is described in that (normalising) direction, as in the paper:

* ActNorm: ``z = (x − b) ⊙ exp(−log s)`` per channel, ``b, s`` set so ``z`` has zero mean and
  unit variance per channel on the init batch; ``log|det| = −(H·W) Σ log s``.
* Invertible 1×1 convolution, LU form ``W = P L (U + diag(sign(s)·exp(log|s|)))``, applied to
  every pixel's channel vector: ``z = W x``, ``log|det| = H·W·Σ log|s|``.  ``P`` and ``sign(s)``
  are fixed (drawn from ``seed`` when the layer is built); ``L``, ``U``, ``log|s|`` are learnt.
* Affine coupling on channel halves with a small zero-initialised conv net (:mod:`.coupling`).
* Squeeze (space-to-depth) ``(H, W, C) → (H/2, W/2, 4C)`` and the multi-scale split, which sends
  half of the channels straight to the base at the end of every level but the last.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from ..nets.conv import CouplingConvNet
from .bijector import Bijector, chain, reshape
from .coupling import MLP, affine_coupling, coupling_masks

__all__ = ["actnorm", "lu_linear", "squeeze", "factor_out", "glow_step", "glow", "glow_2d"]


def _pixels(x) -> int:
    return math.prod(x.shape[:-1])


def actnorm(eps: float = 1e-6) -> Bijector:
    """ActNorm with data-dependent init: per-channel ``loc`` and ``log_scale`` (last axis)."""

    def init(key, y):
        axes = tuple(range(y.ndim - 1))
        return {"loc": jnp.mean(y, axes), "log_scale": jnp.log(jnp.std(y, axes) + eps)}

    def forward(p, x):
        return x * jnp.exp(p["log_scale"]) + p["loc"], _pixels(x) * jnp.sum(p["log_scale"])

    def inverse(p, y):
        return (y - p["loc"]) * jnp.exp(-p["log_scale"]), -_pixels(y) * jnp.sum(p["log_scale"])

    return Bijector(init, forward, inverse, "actnorm")


def lu_linear(channels: int, seed: int = 0) -> Bijector:
    """Invertible 1×1 convolution (a linear map of the last axis) in LU form, initialised to a random rotation."""
    if channels < 1:
        raise ValueError(f"lu_linear: channels must be >= 1, got {channels}")
    rotation = np.linalg.qr(np.random.default_rng(seed).normal(size=(channels, channels)))[0]
    perm, lower, upper = scipy.linalg.lu(rotation)
    diag = np.diag(upper)
    perm, sign = jnp.asarray(perm, jnp.float32), jnp.asarray(np.sign(diag), jnp.float32)
    eye = jnp.eye(channels, dtype=jnp.float32)
    start = {
        "lower": jnp.asarray(np.tril(lower, -1), jnp.float32),
        "upper": jnp.asarray(np.triu(upper, 1), jnp.float32),
        "log_s": jnp.asarray(np.log(np.abs(diag)), jnp.float32),
    }

    def factors(p, x):
        if x.shape[-1] != channels:
            raise ValueError(f"lu_linear: built for {channels} channels, got an event of shape {x.shape}")
        lo = jnp.tril(p["lower"], -1) + eye
        up = jnp.triu(p["upper"], 1) + jnp.diag(sign * jnp.exp(p["log_s"]))
        return lo, up

    def inverse(p, y):  # z = W y per pixel
        lo, up = factors(p, y)
        w = perm @ lo @ up
        return y @ w.T, _pixels(y) * jnp.sum(p["log_s"])

    def forward(p, x):  # y = W⁻¹ x = U⁻¹ L⁻¹ Pᵀ x per pixel
        lo, up = factors(p, x)
        flat = jnp.reshape(x, (-1, channels)) @ perm  # rows are (Pᵀ x)ᵀ
        a = jax.scipy.linalg.solve_triangular(lo, flat.T, lower=True, unit_diagonal=True)
        b = jax.scipy.linalg.solve_triangular(up, a, lower=False)
        return jnp.reshape(b.T, x.shape), -_pixels(x) * jnp.sum(p["log_s"])

    return Bijector(lambda key, y: start, forward, inverse, "lu_linear")


def _space_to_depth(x):
    h, w, c = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"squeeze: height and width must be even, got event shape {x.shape}")
    return x.reshape(h // 2, 2, w // 2, 2, c).transpose(0, 2, 1, 3, 4).reshape(h // 2, w // 2, 4 * c)


def _depth_to_space(z):
    h, w, c4 = z.shape
    c = c4 // 4
    return z.reshape(h, w, 2, 2, c).transpose(0, 2, 1, 3, 4).reshape(2 * h, 2 * w, c)


def squeeze() -> Bijector:
    """Space-to-depth ``(H, W, C) → (H/2, W/2, 4C)`` on the way to the base (log|det| = 0)."""
    zero = lambda x: jnp.zeros((), x.dtype)  # noqa: E731
    return Bijector(
        init=lambda key, y: (),
        forward_and_log_det=lambda p, z: (_depth_to_space(z), zero(z)),
        inverse_and_log_det=lambda p, x: (_space_to_depth(x), zero(x)),
        name="squeeze",
    )


def factor_out(shape: Sequence[int], inner: Bijector) -> Bijector:
    """Multi-scale split (Dinh et al. 2017 §3.6): of ``(H, W, C)``, channels ``C//2:`` go to the base
    as they are and channels ``:C//2`` continue through ``inner`` (which must end flat).

    Base side: ``concat(flatten(x[..., C//2:]), inner⁻¹(x[..., :C//2]))``; ``log|det|`` is ``inner``'s.
    """
    h, w, c = (int(s) for s in shape)
    if c < 2:
        raise ValueError(f"factor_out: need at least 2 channels, got shape {tuple(shape)}")
    keep = c // 2
    n_out = h * w * (c - keep)

    def inverse(p, x):
        if x.shape != (h, w, c):
            raise ValueError(f"factor_out: built for events of shape {(h, w, c)}, got {x.shape}")
        z, ld = inner.inverse_and_log_det(p, x[..., :keep])
        return jnp.concatenate([x[..., keep:].reshape(-1), z]), ld

    def forward(p, z):
        x, ld = inner.forward_and_log_det(p, z[n_out:])
        return jnp.concatenate([x, z[:n_out].reshape(h, w, c - keep)], axis=-1), ld

    return Bijector(lambda key, y: inner.init(key, y[..., :keep]), forward, inverse, "factor_out")


def glow_step(event_shape: Sequence[int], seed: int, hidden, scale_bound: float = 2.0) -> Bijector:
    """One step of flow: ActNorm → 1×1 conv (LU) → affine coupling on channel halves (data → base order).

    Image events use :class:`genjax.nets.conv.CouplingConvNet` with ``hidden`` channels, vector
    events an :class:`MLP` with ``hidden`` widths.
    """
    event_shape = tuple(event_shape)
    channels = event_shape[-1]
    if len(event_shape) == 3:
        net = CouplingConvNet(int(hidden), 2 * channels)
    else:
        net = MLP((hidden,) if isinstance(hidden, int) else tuple(hidden), 2 * channels)
    mask = coupling_masks(event_shape, 1, "channel")[0]
    return chain([actnorm(), lu_linear(channels, seed), affine_coupling(mask, net, scale_bound)], "glow_step")


def glow(
    event_shape: Sequence[int],
    num_levels: int = 2,
    num_steps: int = 4,
    hidden: int = 64,
    scale_bound: float = 2.0,
) -> Bijector:
    """Multi-scale Glow for ``(H, W, C)`` events: per level squeeze → ``num_steps`` steps → split.

    The base side is flat, of size ``H·W·C``.  ``H`` and ``W`` must be divisible by ``2**num_levels``.
    """
    event_shape = tuple(int(s) for s in event_shape)
    if len(event_shape) != 3:
        raise ValueError(f"glow: event_shape must be (H, W, C), got {event_shape}; use glow_2d for vectors")
    h, w, c = event_shape
    if num_levels < 1 or num_steps < 1:
        raise ValueError(f"glow: num_levels and num_steps must be >= 1, got {num_levels}, {num_steps}")
    if h % 2**num_levels or w % 2**num_levels:
        raise ValueError(f"glow: H and W must be divisible by 2**num_levels={2**num_levels}, got {event_shape}")

    def level(shape, index):
        hh, ww, cc = shape
        inner = (hh // 2, ww // 2, 4 * cc)
        steps = [glow_step(inner, 1000 * index + k, hidden, scale_bound) for k in range(num_steps)]
        if index == num_levels - 1:
            tail = reshape(inner, (math.prod(inner),))
        else:
            keep = inner[-1] // 2
            tail = factor_out(inner, level((inner[0], inner[1], keep), index + 1))
        return chain([squeeze(), *steps, tail], f"glow_level_{index}")

    return level(event_shape, 0)


def glow_2d(dim: int = 2, num_steps: int = 8, hidden: Sequence[int] | int = (64, 64), scale_bound: float = 2.0) -> Bijector:
    """Glow for vectors ``(dim,)``: ``num_steps`` × (ActNorm → LU linear → affine coupling with an MLP)."""
    if dim < 2 or num_steps < 1:
        raise ValueError(f"glow_2d: need dim >= 2 and num_steps >= 1, got dim={dim}, num_steps={num_steps}")
    return chain([glow_step((dim,), k, hidden, scale_bound) for k in range(num_steps)], "glow_2d")
