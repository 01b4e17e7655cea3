"""scikit-learn's bundled 8×8 digits as images, dequantisation, scaling and bits/dim.

The digits (``sklearn.datasets.load_digits``: 1797 images, no download) take integer values
``0..16``, i.e. ``K = 17`` levels.  A continuous model of discrete data (Theis et al. 2016;
Dinh et al. 2017 §4.1) sees ``u = (x + v)/K`` with ``v ~ U[0, 1)^D`` and then ``y = g(u)``:

* ``"symmetric"``: ``y = 2u − 1 ∈ [−1, 1)``, ``log|det ∂y/∂u| = D log 2``;
* ``"logit"`` (RealNVP): ``p = λ + (1 − 2λ) u``, ``y = logit p``,
  ``log|det ∂y/∂u| = Σ_i [log(1 − 2λ) − log p_i − log(1 − p_i)]``.

The density of ``x + v`` on ``[0, K)^D`` is ``p_Y(y) |det ∂y/∂u| K^{−D}``, and its expectation
over ``v`` lower-bounds ``log P(x)`` of the discrete data, so the reported bits/dim

    bpd = −(log p_Y(y) + log|det ∂y/∂u| − D log K) / (D ln 2)

refer to the discrete digits (uniform model: ``log₂ 17 ≈ 4.09``).  For 8-bit data scaled to
``[−1, 1]`` (``K = 256``) this is MATH.md §6's ``−(log p + D log(2/256))/(D ln 2)``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .. import likelihood
from .._checks import is_concrete

__all__ = ["LEVELS", "SCALINGS", "load_digits", "dequantize", "to_model_space", "to_unit_interval",
           "discrete_bits_per_dim"]

LEVELS = 17
SCALINGS = ("symmetric", "logit")


def load_digits(test_fraction: float = 0.2, seed: int = 0):
    """``(train, test)`` integer arrays ``(N, 8, 8, 1)`` (NHWC) with values ``0..16``, split by a fixed-seed permutation."""
    from sklearn.datasets import load_digits as _load

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"load_digits: test_fraction must lie in (0, 1), got {test_fraction}")
    images = _load().images.astype(np.int32)[..., None]
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = int(round(test_fraction * len(images)))
    return images[order[n_test:]], images[order[:n_test]]


def _check_levels(x, levels: int):
    if levels < 2:
        raise ValueError(f"levels must be >= 2, got {levels}")
    if is_concrete(x):
        xa = np.asarray(x)
        if not np.all(np.isfinite(xa)) or np.any(xa != np.round(xa)) or xa.min() < 0 or xa.max() > levels - 1:
            raise ValueError(f"x must hold integers in 0..{levels - 1} (discrete pixel levels)")


def dequantize(key, x, levels: int = LEVELS):
    """``u = (x + v)/K`` with ``v ~ U[0, 1)`` elementwise: continuous data in ``[0, 1)``."""
    _check_levels(x, levels)
    x = jnp.asarray(x, jnp.float32)
    return (x + jax.random.uniform(key, x.shape)) / levels


def _scale(u, scaling: str, alpha: float):
    """``(y, log|det ∂y/∂u|)`` for one sample ``u`` in ``[0, 1)``."""
    if scaling == "symmetric":
        return 2.0 * u - 1.0, u.size * math.log(2.0)
    p = alpha + (1.0 - 2.0 * alpha) * u
    log_det = jnp.sum(math.log1p(-2.0 * alpha) - jnp.log(p) - jnp.log1p(-p))
    return jnp.log(p) - jnp.log1p(-p), log_det


def to_model_space(key, x, levels: int = LEVELS, scaling: str = "logit", alpha: float = 0.05):
    """Dequantise a batch ``x`` ``(n, ...)`` of integer levels and scale it: returns ``(y, log|det ∂y/∂u|)`` with shape ``(n,)``.

    ``alpha`` is the logit margin ``λ`` (``0 < λ < 1/2``, ignored for ``"symmetric"``).
    """
    if scaling not in SCALINGS:
        raise ValueError(f"scaling={scaling!r} is not known; expected one of {SCALINGS}")
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must lie in (0, 1/2), got {alpha}")
    u = dequantize(key, x, levels)
    return jax.vmap(lambda v: _scale(v, scaling, alpha))(u)


def to_unit_interval(y, scaling: str = "logit", alpha: float = 0.05):
    """Map model-space values back to ``[0, 1]`` (inverse of the scaling, clipped) for plotting."""
    if scaling not in SCALINGS:
        raise ValueError(f"scaling={scaling!r} is not known; expected one of {SCALINGS}")
    u = (y + 1.0) / 2.0 if scaling == "symmetric" else (jax.nn.sigmoid(y) - alpha) / (1.0 - 2.0 * alpha)
    return jnp.clip(u, 0.0, 1.0)


def discrete_bits_per_dim(log_prob, log_det, num_dims: int, levels: int = LEVELS):
    """``−(log p_Y(y) + log|det ∂y/∂u| − D log K)/(D ln 2)``: bits/dim of the discrete data (see module doc).

    That is :func:`genjax.likelihood.bits_per_dim` of ``log p_U(u) = log p_Y + log|det|`` for
    ``K`` bins on the unit interval.
    """
    return likelihood.bits_per_dim(jnp.asarray(log_prob) + jnp.asarray(log_det), num_dims, num_bins=levels,
                                   data_range=1.0)
