"""The DDPM/ADM image U-Net (Flax linen, NHWC), with mixed precision.

Ho et al. 2020 (DDPM, App. B) and Dhariwal & Nichol 2021 (ADM, "guided diffusion"): a
convolutional encoder–decoder with skip connections whose residual blocks
(GroupNorm → SiLU → conv) all receive an embedding of the time ``t`` (and of a class label),
with self-attention at chosen feature-map resolutions.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_positive_float, check_positive_int, is_concrete
from .mlp import fourier_features

__all__ = ["UNet"]

_zeros = nn.initializers.zeros


def _num_groups(channels: int, groups: int) -> int:
    """The largest divisor of ``channels`` that is at most ``groups`` (GroupNorm needs groups | channels)."""
    return max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0)


def _group_norm(channels: int, groups: int, dtype, param_dtype) -> nn.GroupNorm:
    """GroupNorm (Wu & He 2018); flax computes its mean and variance in at least float32 for any ``dtype``."""
    return nn.GroupNorm(_num_groups(channels, groups), dtype=dtype, param_dtype=param_dtype)


def random_fourier_features(t, frequencies):
    """``[sin(2π w_k t), cos(2π w_k t)]`` for the given ``frequencies`` ``w_k``, held fixed (no gradient).

    Gaussian random Fourier features (Tancik et al. 2020) draw ``w_k ~ N(0, σ²)``; Song et al.
    2021 use ``σ = 16``.
    """
    angles = 2 * math.pi * jnp.asarray(t)[..., None] * jax.lax.stop_gradient(frequencies)
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class ResBlock(nn.Module):
    """ADM residual block: ``x ↦ skip(x) + conv(drop(SiLU(GN(h) ⊙ (1 + s) + b)))``, ``h = conv(SiLU(GN(x)))``.

    ``(s, b) = Dense(SiLU(emb))`` (scale-shift norm, Dhariwal & Nichol 2021 §3), or
    DDPM's additive ``h + Dense(SiLU(emb))`` before the second norm when ``scale_shift`` is
    False.  The last conv is zero-initialised, so the block starts as ``skip`` (a 1×1 conv
    when the channel count changes, else the identity).
    """

    channels: int
    groups: int
    dropout: float
    scale_shift: bool
    dtype: Any
    param_dtype: Any

    @nn.compact
    def __call__(self, x, emb, train: bool):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = nn.silu(_group_norm(x.shape[-1], self.groups, **kw)(x))
        h = nn.Conv(self.channels, (3, 3), **kw)(h)
        e = nn.Dense(self.channels * (2 if self.scale_shift else 1), **kw)(nn.silu(emb))[:, None, None, :]
        norm = _group_norm(self.channels, self.groups, **kw)
        if self.scale_shift:
            scale, shift = jnp.split(e, 2, axis=-1)
            h = norm(h) * (1 + scale) + shift
        else:
            h = norm(h + e)
        h = nn.Dropout(self.dropout, deterministic=not train)(nn.silu(h))
        h = nn.Conv(self.channels, (3, 3), kernel_init=_zeros, **kw)(h)
        skip = x if x.shape[-1] == self.channels else nn.Conv(self.channels, (1, 1), **kw)(x)
        return skip + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the ``H·W`` positions, residual: ``x + W_o attn(W_qkv GN(x))``.

    ``softmax(q kᵀ/√d) v`` per head (Vaswani et al. 2017) with the logits accumulated and the
    softmax taken in float32 whatever the compute dtype; the output projection ``W_o`` is
    zero-initialised (ADM).  One block has ``4C² + 6C`` parameters for ``C`` channels (norm
    ``2C``, ``W_qkv`` ``3C² + 3C``, ``W_o`` ``C² + C``), whatever ``num_heads``.
    """

    num_heads: int
    groups: int
    dtype: Any
    param_dtype: Any

    @nn.compact
    def __call__(self, x):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        n, height, width, channels = x.shape
        head_dim = channels // self.num_heads
        qkv = nn.Dense(3 * channels, **kw)(_group_norm(channels, self.groups, **kw)(x))
        q, k, v = jnp.split(qkv.reshape(n, height * width, 3 * self.num_heads, head_dim), 3, axis=2)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) / math.sqrt(head_dim)
        weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(x.shape)
        return x + nn.Dense(channels, kernel_init=_zeros, **kw)(out)


class UNet(nn.Module):
    """``fn(t, x[, c])``: the DDPM/ADM U-Net (Ho et al. 2020; Dhariwal & Nichol 2021) for NHWC images.

    Per sample (scalar ``t``, ``x`` of shape ``(H, W, C)``, ``c`` a scalar int label) or
    batched (``x`` ``(N, H, W, C)``, ``t`` scalar or ``(N,)``, ``c`` ``(N,)``); square images
    with ``H`` divisible by ``2^(len(channel_mult) − 1)``.  The output has ``x``'s shape (with
    ``out_channels`` channels, default ``C``) and ``x``'s dtype.

    Layout: a 3×3 conv to ``channels``; per level ``i`` ``num_res_blocks`` residual blocks of
    ``channels · channel_mult[i]`` channels, each followed by self-attention when the feature
    map is ``r × r`` with ``r`` in ``attention_resolutions`` (pixels, e.g. ``(16, 8)``; each must
    occur), then a stride-2 conv; a middle ResBlock–attention–ResBlock (attention at the
    lowest resolution always); the mirrored decoder (``num_res_blocks + 1`` blocks per
    level on the concatenated skips, nearest ×2 upsampling + 3×3 conv); GroupNorm–SiLU and a
    zero-initialised 3×3 conv, so the net outputs exactly 0 at initialisation.

    Time embedding: ``fourier_features(t, channels // 2, max_frequency)`` (DDPM's sinusoidal
    embedding, frequencies geometric in ``[1, max_frequency]`` for ``t ∈ [0, 1]``; DDPM's
    ``1000 t`` reaches 1000) or, with ``fourier_scale`` set, random Fourier features
    with fixed frequencies ``~ N(0, fourier_scale²)``; then Dense(4·channels)–SiLU–Dense.
    With ``num_classes`` a learned label embedding of ``num_classes + 1`` rows is added to it;
    the last row, :attr:`null_class`, is the unconditional label for classifier-free guidance
    (Ho & Salimans 2022) and is used when ``c`` is None.  ``train=True`` turns on dropout in
    the residual blocks, drawn from the flax rng stream ``"dropout"``
    (``net.apply(params, t, x, c, train=True, rngs={"dropout": key})``, also per sample under
    ``jax.vmap``).

    Mixed precision: ``dtype`` is the computation dtype and ``param_dtype`` the parameters'.
    The policy is ``dtype=jnp.bfloat16`` with ``param_dtype=jnp.float32``: convolutions and
    matmuls run on bfloat16 activations while parameters, and hence the optimizer state and
    the EMA that follow their dtype, stay float32 (weights are cast to bfloat16 per use);
    GroupNorm statistics and the attention logits and softmax are computed in float32; the
    output is cast back to ``x``'s dtype, so losses are float32 for float32 data.  bfloat16
    has float32's exponent range, so no loss scaling is needed; float16 activations would
    need loss scaling, which is not provided.
    """

    channels: int = 64
    channel_mult: Sequence[int] = (1, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: Sequence[int] = ()
    num_heads: int = 1
    dropout: float = 0.0
    groups: int = 32
    scale_shift: bool = True
    num_classes: int | None = None
    out_channels: int | None = None
    max_frequency: float = 1000.0
    fourier_scale: float | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @property
    def null_class(self) -> int:
        """The label of the unconditional (null) class, ``num_classes``, for classifier-free guidance."""
        if self.num_classes is None:
            raise ValueError("UNet.null_class: this net has no class embedding (num_classes=None)")
        return self.num_classes

    @property
    def num_levels(self) -> int:
        return len(self.channel_mult)

    def _check_config(self):
        check_positive_int(self.channels, "UNet channels")
        check_positive_int(self.num_res_blocks, "UNet num_res_blocks")
        check_positive_int(self.num_heads, "UNet num_heads")
        check_positive_int(self.groups, "UNet groups")
        check_positive_float(self.max_frequency, "UNet max_frequency")
        if self.channels < 2:
            raise ValueError(f"UNet channels must be >= 2 (the time embedding has channels // 2 frequencies), "
                             f"got {self.channels}")
        if not self.channel_mult or not all(isinstance(m, int) and m >= 1 for m in self.channel_mult):
            raise ValueError(f"UNet channel_mult must be a non-empty tuple of positive ints, got {self.channel_mult!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"UNet dropout must lie in [0, 1), got {self.dropout!r}")
        if self.num_classes is not None:
            check_positive_int(self.num_classes, "UNet num_classes")
        if self.out_channels is not None:
            check_positive_int(self.out_channels, "UNet out_channels")
        if self.fourier_scale is not None:
            check_positive_float(self.fourier_scale, "UNet fourier_scale")

    def _check_inputs(self, t, x, c):
        """``(t (N,), x (N, H, W, C), c (N,) | None, per_sample)`` after checking the forms."""
        if x.ndim not in (3, 4):
            raise ValueError(f"UNet: x must be an image (H, W, C) or a batch (N, H, W, C), got shape {x.shape}")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"UNet: x must be a floating-point image, got dtype {x.dtype}")
        single = x.ndim == 3
        batch = x[None] if single else x
        size = batch.shape[1]
        factor = 2 ** (self.num_levels - 1)
        if batch.shape[2] != size or size % factor:
            raise ValueError(f"UNet: x must be square with a side divisible by 2^(len(channel_mult) - 1) = {factor}, "
                             f"got spatial shape {batch.shape[1:3]}")
        sizes = [size // 2**level for level in range(self.num_levels)]
        missing = sorted(set(self.attention_resolutions) - set(sizes))
        if missing:
            raise ValueError(f"UNet: attention_resolutions {missing} never occur for a {size}×{size} input; the "
                             f"feature maps are {sizes} pixels wide")
        n = batch.shape[0]
        if jnp.ndim(t) not in (0, 1) or (jnp.ndim(t) == 1 and (single or jnp.shape(t)[0] != n)):
            raise ValueError("UNet: t must be a scalar" + ("" if single else f" or of shape ({n},)")
                             + f" for x of shape {x.shape}, got shape {jnp.shape(t)}")
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (n,))
        if c is None:
            return t, batch, None if self.num_classes is None else jnp.full((n,), self.num_classes), single
        if self.num_classes is None:
            raise ValueError("UNet: c was given but the net has no class embedding; set num_classes or pass c=None")
        outside = is_concrete(c) and bool(np.any((np.asarray(c) < 0) | (np.asarray(c) > self.num_classes)))
        c = jnp.asarray(c)
        shapes = [()] if single else [(), (n,)]
        if c.shape not in shapes or not jnp.issubdtype(c.dtype, jnp.integer) or outside:
            raise ValueError(f"UNet: c must hold integer class labels in 0..{self.num_classes} (the last is the null "
                             f"class) of shape {' or '.join(map(str, shapes))} for x of shape {x.shape}, got "
                             f"{c.dtype} of shape {c.shape}" + (" with labels out of range" if outside else ""))
        return t, batch, jnp.broadcast_to(c, (n,)), single

    def _time_embedding(self, t):
        half = self.channels // 2
        if self.fourier_scale is None:
            features = fourier_features(t, half, self.max_frequency)
        else:
            w = self.param("fourier_frequencies", nn.initializers.normal(self.fourier_scale), (half,), jnp.float32)
            features = random_fourier_features(t, w)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        width = 4 * self.channels
        return nn.Dense(width, **kw)(nn.silu(nn.Dense(width, **kw)(features)))

    @nn.compact
    def __call__(self, t, x, c=None, *, train: bool = False):
        self._check_config()
        x = jnp.asarray(x)
        t, h, labels, single = self._check_inputs(t, x, c)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        emb = self._time_embedding(t)
        if labels is not None:
            emb = emb + nn.Embed(self.num_classes + 1, 4 * self.channels, **kw)(labels)

        def res_block(h, mult):
            return ResBlock(self.channels * mult, self.groups, self.dropout, self.scale_shift, **kw)(h, emb, train)

        def attention(h):
            if h.shape[-1] % self.num_heads:
                raise ValueError(f"UNet: num_heads={self.num_heads} must divide the {h.shape[-1]} channels of the "
                                 f"{h.shape[1]}×{h.shape[1]} attention layer")
            return AttentionBlock(self.num_heads, self.groups, **kw)(h)

        def attend(h):
            return attention(h) if h.shape[1] in self.attention_resolutions else h

        h = nn.Conv(self.channels, (3, 3), **kw)(h.astype(self.dtype))
        skips = [h]
        for level, mult in enumerate(self.channel_mult):
            for _ in range(self.num_res_blocks):
                h = attend(res_block(h, mult))
                skips.append(h)
            if level < self.num_levels - 1:
                h = nn.Conv(h.shape[-1], (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), **kw)(h)
                skips.append(h)
        h = res_block(h, self.channel_mult[-1])
        h = attention(h)
        h = res_block(h, self.channel_mult[-1])
        for level, mult in reversed(list(enumerate(self.channel_mult))):
            for _ in range(self.num_res_blocks + 1):
                h = attend(res_block(jnp.concatenate([h, skips.pop()], axis=-1), mult))
            if level > 0:
                h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)
                h = nn.Conv(h.shape[-1], (3, 3), **kw)(h)
        h = nn.silu(_group_norm(h.shape[-1], self.groups, **kw)(h))
        out = nn.Conv(self.out_channels or x.shape[-1], (3, 3), kernel_init=_zeros, bias_init=_zeros, **kw)(h)
        out = out.astype(x.dtype)
        return out[0] if single else out
