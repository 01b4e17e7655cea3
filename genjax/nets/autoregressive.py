"""Autoregressive networks over discrete data (Flax linen): MADE, PixelCNN, a causal transformer, a Markov chain.

Every network maps levels ``x ∈ {0, …, K−1}`` of an event shape (``(D,)``, or ``(H, W, 1)`` NHWC
images) to logits of shape ``(*event, K)``, where the logits of coordinate ``i`` (in raster order,
``x.reshape(-1)``) depend only on the coordinates ``j < i``: ``p(x) = Π_i softmax(logits_i)[x_i]``
(MATH.md §15, autoregressive models).  Inputs are integer levels ``(..., *event)`` (one-hot encoded
inside), or float arrays ``(..., *event, K)`` used as they are: one-hot rows, or any continuous
relaxation (so ``jax.jacfwd`` with respect to the input can check the causal structure).  Leading
axes are batch axes.  :mod:`genjax.models.autoregressive` holds the likelihood, the training
objective and the sampler.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from .._checks import check_positive_int

__all__ = ["MADE", "PixelCNN", "CausalTransformer", "MarkovChain", "made_masks", "conv_mask"]


def _check_levels(levels: int, where: str) -> int:
    levels = check_positive_int(levels, f"{where}.levels")
    if levels < 2:
        raise ValueError(f"{where}.levels must be >= 2 (the number of categories per coordinate), got {levels}")
    return levels


def _one_hot(x, event_shape: tuple[int, ...], levels: int, where: str):
    """``x`` as float one-hot rows ``(..., *event_shape, K)``: integer levels are encoded, floats pass through."""
    x = jnp.asarray(x)
    n = len(event_shape)
    if jnp.issubdtype(x.dtype, jnp.integer):
        if x.shape[x.ndim - n:] != tuple(event_shape) or x.ndim < n:
            raise ValueError(f"{where}: integer x must have shape (..., *{tuple(event_shape)}) (levels "
                             f"0..{levels - 1}), got shape {x.shape}")
        return _encode(x, levels)
    if not jnp.issubdtype(x.dtype, jnp.floating) or x.ndim < n + 1 or x.shape[x.ndim - n - 1:] != (
            *event_shape, levels):
        raise ValueError(f"{where}: x must be integer levels (..., *{tuple(event_shape)}) or float one-hot rows "
                         f"(..., *{tuple(event_shape)}, {levels}), got dtype {x.dtype} and shape {x.shape}")
    return x


def _encode(x, levels: int):
    """One-hot rows of integer levels, in the default float dtype."""
    return (x[..., None] == jnp.arange(levels)).astype(jnp.result_type(float))


def _output_init(zero_init: bool):
    return nn.initializers.zeros if zero_init else nn.linear.default_kernel_init


# ----------------------------------------------------------------------------- MADE


def made_masks(num_dims: int, levels: int, hidden: Sequence[int]) -> list[np.ndarray]:
    """MADE's connectivity masks (Germain et al. 2015, Eq. 12–13) for the natural order ``1, …, D``.

    Input unit ``(d, k)`` (one-hot level ``k`` of coordinate ``d``) has degree ``d``; hidden unit
    ``u`` of every layer has degree ``m(u) = 1 + (u mod (D − 1))`` (cycling through ``1 … D−1``, so
    every degree occurs when the width is at least ``D − 1``); output unit ``(d, k)`` has degree ``d``.
    A hidden layer connects ``m(u) ≥ m(u′)``, the output layer ``d > m(u)`` (strict), so output ``d``
    sees exactly the inputs ``d′ < d`` through any path.  Returns the ``(in, out)`` masks, last one
    to the ``D·K`` outputs (coordinate-major).
    """
    num_dims, levels = check_positive_int(num_dims, "num_dims"), _check_levels(levels, "made_masks")
    degrees = [np.repeat(np.arange(1, num_dims + 1), levels)]
    for width in hidden:
        degrees.append(1 + np.arange(check_positive_int(width, "hidden width")) % max(num_dims - 1, 1))
    masks = [(d_out[None, :] >= d_in[:, None]) for d_in, d_out in zip(degrees[:-1], degrees[1:])]
    masks.append(degrees[0][None, :] > degrees[-1][:, None])
    return [m.astype(np.float32) for m in masks]


class MaskedDense(nn.Module):
    """``y = x (W ⊙ M) + b`` with a fixed 0/1 mask ``M`` of shape ``(in, out)``."""

    mask: np.ndarray
    kernel_init: Callable = nn.linear.default_kernel_init

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", self.kernel_init, self.mask.shape)
        bias = self.param("bias", nn.initializers.zeros, self.mask.shape[1:])
        return x @ (kernel * jnp.asarray(self.mask, kernel.dtype)) + bias


class MADE(nn.Module):
    """MADE, the masked autoencoder for distribution estimation (Germain et al. 2015), categorical outputs.

    A masked MLP on the one-hot input ``(D·K,)``: ``h_l = act(h_{l−1} (W_l ⊙ M_l) + b_l)``,
    logits ``= h_L (V ⊙ M_V) + c`` reshaped to ``(*event_shape, K)``, with the masks of
    :func:`made_masks` in the natural raster order of ``event_shape`` (``x.reshape(-1)``): logit
    ``i`` depends exactly on the inputs ``j < i`` (every ``j < i`` when each hidden width is at least
    ``D − 1``).  One forward pass gives all ``D`` conditionals.  ``zero_init`` zero-initialises the
    output layer (the model starts uniform, ``log₂ K`` bits/dim).
    """

    event_shape: Sequence[int]
    levels: int
    hidden: Sequence[int] = (512, 512)
    activation: Callable = nn.relu
    zero_init: bool = False

    @nn.compact
    def __call__(self, x):
        event, levels = tuple(self.event_shape), _check_levels(self.levels, "MADE")
        h = _one_hot(x, event, levels, "MADE")
        num_dims = math.prod(event)
        h = h.reshape(*h.shape[:h.ndim - len(event) - 1], num_dims * levels)
        masks = made_masks(num_dims, levels, self.hidden)
        for mask in masks[:-1]:
            h = self.activation(MaskedDense(mask)(h))
        out = MaskedDense(masks[-1], kernel_init=_output_init(self.zero_init))(h)
        return out.reshape(*out.shape[:-1], *event, levels)


# ----------------------------------------------------------------------------- PixelCNN


def conv_mask(kernel_size: int, in_features: int, out_features: int, mask_type: str) -> np.ndarray:
    """PixelCNN's kernel mask (van den Oord et al. 2016, §3.4) of shape ``(k, k, in, out)``, single colour channel.

    The kernel sees the rows above the centre and, on the centre row, the columns left of the
    centre; type ``"A"`` excludes the centre itself (first layer: pixel ``i`` must not see ``x_i``),
    type ``"B"`` includes it (later layers: the centre feature already depends on ``x_{<i}`` only).
    """
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd positive integer, got {kernel_size!r}")
    c = kernel_size // 2
    mask = np.zeros((kernel_size, kernel_size, in_features, out_features), np.float32)
    mask[:c] = 1.0
    mask[c, :c + (mask_type == "B")] = 1.0
    return mask


class PixelCNN(nn.Module):
    """PixelCNN (van den Oord et al. 2016) for grey images ``(H, W, 1)``: per-pixel categorical logits over K levels.

    A masked ``k_A × k_A`` convolution of type A on the one-hot image, then ``num_layers``
    residual blocks ``h ← h + conv_B(relu(h))`` (masked 3×3, type B), then two 1×1 convolutions
    (ReLU between) to ``K`` logits per pixel; output ``(..., H, W, 1, K)``.  Pixel ``i`` (raster
    order) sees only pixels ``j < i``.  Colour-channel masking (R → G → B within a pixel) is not
    implemented: the images here have one channel.  Like the original PixelCNN the stack has a
    blind spot (pixels up and to the right beyond the kernel's reach are never seen; the gated
    PixelCNN's two stacks remove it).  ``zero_init`` zero-initialises the output convolution.
    """

    levels: int
    features: int = 64
    num_layers: int = 4
    first_kernel: int = 5
    zero_init: bool = False

    @nn.compact
    def __call__(self, x):
        levels = _check_levels(self.levels, "PixelCNN")
        x = jnp.asarray(x)
        spatial = x.ndim - (0 if jnp.issubdtype(x.dtype, jnp.integer) else 1)
        if spatial < 3 or x.shape[spatial - 1] != 1:
            raise ValueError(f"PixelCNN: x must be grey images (..., H, W, 1) of integer levels or float one-hot rows "
                             f"(..., H, W, 1, {levels}), got dtype {x.dtype} and shape {x.shape}")
        h = _one_hot(x, x.shape[spatial - 3:spatial], levels, "PixelCNN")[..., 0, :]  # (..., H, W, K)
        batch = h.shape[:-3]
        h = h.reshape(-1, *h.shape[-3:])
        first = conv_mask(self.first_kernel, levels, self.features, "A")
        h = nn.Conv(self.features, (self.first_kernel,) * 2, mask=first)(h)
        for _ in range(self.num_layers):
            h = h + nn.Conv(self.features, (3, 3), mask=conv_mask(3, self.features, self.features, "B"))(nn.relu(h))
        h = nn.relu(nn.Conv(self.features, (1, 1))(nn.relu(h)))
        h = nn.Conv(levels, (1, 1), kernel_init=_output_init(self.zero_init))(h)
        return h.reshape(*batch, *h.shape[1:3], 1, levels)


# ----------------------------------------------------------------------------- transformer


class _Block(nn.Module):
    """Pre-LN transformer block: ``h + Attn(LN h)`` with a causal mask, then ``h + MLP(LN h)``."""

    heads: int
    mlp_ratio: int

    @nn.compact
    def __call__(self, h, mask):
        h = h + nn.MultiHeadDotProductAttention(self.heads)(nn.LayerNorm()(h), mask=mask)
        width = h.shape[-1]
        return h + nn.Dense(width)(nn.gelu(nn.Dense(self.mlp_ratio * width)(nn.LayerNorm()(h))))


class CausalTransformer(nn.Module):
    """A small decoder-only transformer over the raster-ordered coordinates (Vaswani et al. 2017; Radford et al. 2018).

    Tokens are the one-hot levels times a learned embedding; the sequence is shifted right by one
    with a learned start token, ``s_0 = start``, ``s_i = E x_{i−1}``, plus learned position
    embeddings; ``depth`` pre-LN blocks with causal self-attention (position ``i`` attends to
    ``j ≤ i``), a final LayerNorm and a linear read-out give at position ``i`` the logits of
    ``x_i``, a function of ``x_{<i}`` only.  Output ``(..., *event_shape, K)``; ``zero_init``
    zero-initialises the read-out.
    """

    event_shape: Sequence[int]
    levels: int
    width: int = 64
    depth: int = 2
    heads: int = 4
    mlp_ratio: int = 4
    zero_init: bool = False

    @nn.compact
    def __call__(self, x):
        event, levels = tuple(self.event_shape), _check_levels(self.levels, "CausalTransformer")
        h = _one_hot(x, event, levels, "CausalTransformer")
        num_dims = math.prod(event)
        batch = h.shape[:h.ndim - len(event) - 1]
        tokens = nn.Dense(self.width, use_bias=False, name="embed")(h.reshape(*batch, num_dims, levels))
        init = nn.initializers.normal(0.02)
        start = jnp.broadcast_to(self.param("start", init, (self.width,)), (*batch, 1, self.width))
        h = jnp.concatenate([start.astype(tokens.dtype), tokens[..., :-1, :]], axis=-2)
        h = h + self.param("position", init, (num_dims, self.width))
        mask = jnp.tril(jnp.ones((num_dims, num_dims), bool))
        for _ in range(self.depth):
            h = _Block(self.heads, self.mlp_ratio)(h, mask)
        out = nn.Dense(levels, kernel_init=_output_init(self.zero_init))(nn.LayerNorm()(h))
        return out.reshape(*batch, *event, levels)


# ----------------------------------------------------------------------------- Markov chain


class MarkovChain(nn.Module):
    """A homogeneous first-order Markov chain over the raster order: ``p(x) = π(x_0) Π_{i≥1} P(x_i | x_{i−1})``.

    Parameters: ``initial`` logits ``(K,)`` and ``transition`` logits ``(K, K)`` (row = previous
    level); logits ``i`` are ``initial`` for ``i = 0`` and ``x_{i−1} @ transition`` otherwise.  The
    order-1 baseline of the autoregressive family, fitted in closed form by
    :func:`genjax.models.autoregressive.markov_chain_mle`.  Starts uniform.
    """

    event_shape: Sequence[int]
    levels: int

    @nn.compact
    def __call__(self, x):
        event, levels = tuple(self.event_shape), _check_levels(self.levels, "MarkovChain")
        h = _one_hot(x, event, levels, "MarkovChain")
        batch = h.shape[:h.ndim - len(event) - 1]
        h = h.reshape(*batch, math.prod(event), levels)
        initial = self.param("initial", nn.initializers.zeros, (levels,))
        transition = self.param("transition", nn.initializers.zeros, (levels, levels))
        first = jnp.broadcast_to(initial, (*batch, 1, levels)).astype(h.dtype)
        out = jnp.concatenate([first, h[..., :-1, :] @ transition], axis=-2)
        return out.reshape(*batch, *event, levels)
