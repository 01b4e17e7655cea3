"""Image conventions (levels, dequantisation, scaling, bits/dim), the 8×8 digits, training streams and grids.

Images are integer **levels** ``x ∈ {0, …, K−1}`` (``K = 256`` for 8-bit images; the digits of
``sklearn.datasets.load_digits``, 1797 images, no download, have ``K = 17``), stored NHWC.  Level
``x`` owns the bin ``[x/K, (x+1)/K)`` of the unit interval, and ``[2x/K − 1, 2(x+1)/K − 1)`` of
``[−1, 1)``.  A continuous model of discrete data (Theis et al. 2016; Dinh et al. 2017 §4.1) sees
``u = (x + v)/K`` with ``v ~ U[0, 1)^D`` and then ``y = g(u)``:

* ``"symmetric"``: ``y = 2u − 1 ∈ [−1, 1)``, ``log|det ∂y/∂u| = D log 2``;
* ``"logit"`` (RealNVP): ``p = λ + (1 − 2λ) u``, ``y = logit p``,
  ``log|det ∂y/∂u| = Σ_i [log(1 − 2λ) − log p_i − log(1 − p_i)]``.

The density of ``x + v`` on ``[0, K)^D`` is ``p_Y(y) |det ∂y/∂u| K^{−D}``, and its expectation
over ``v`` lower-bounds ``log P(x)`` of the discrete data, so the reported bits/dim

    bpd = −(log p_Y(y) + log|det ∂y/∂u| − D log K) / (D ln 2)

refer to the discrete images (uniform model: ``log₂ K``, ``log₂ 17 ≈ 4.09`` for the digits).  For
8-bit data scaled to ``[−1, 1]`` (``K = 256``) this is MATH.md §6's ``−(log p + D log(2/256))/(D ln 2)``.

Dequantised values lie in their level's bin *exactly* in float32 (rounding is clipped to the
bin's float32 edges), so ``from_symmetric`` recovers the levels.  ``to_symmetric`` computes the same
values from NumPy arrays (host pipelines such as :func:`image_batches`) as from JAX arrays.
"""

from __future__ import annotations

import functools
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from .. import likelihood
from .._checks import check_finite, check_positive_int, is_concrete

__all__ = ["LEVELS", "SCALINGS", "load_digits", "to_symmetric", "from_symmetric", "dequantize", "to_model_space",
           "to_unit_interval", "discrete_bits_per_dim", "image_batches", "image_grid"]

LEVELS = 17
SCALINGS = ("symmetric", "logit")


def load_digits(test_fraction: float = 0.2, seed: int = 0, *, labels: bool = False):
    """``(train, test)`` integer arrays ``(N, 8, 8, 1)`` (NHWC) with values ``0..16``, split by a fixed-seed permutation.

    ``labels=True`` returns ``((x_train, y_train), (x_test, y_test))`` with the digit classes
    ``0..9`` as int32 (the same split).
    """
    from sklearn.datasets import load_digits as _load

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"load_digits: test_fraction must lie in (0, 1), got {test_fraction}")
    raw = _load()
    images = raw.images.astype(np.int32)[..., None]
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = int(round(test_fraction * len(images)))
    train, test = order[n_test:], order[:n_test]
    if labels:
        classes = raw.target.astype(np.int32)
        return (images[train], classes[train]), (images[test], classes[test])
    return images[train], images[test]


# ----------------------------------------------------------------------------- levels and bins


def _check_levels(x, levels: int):
    check_positive_int(levels, "levels")
    if levels < 2:
        raise ValueError(f"levels must be >= 2, got {levels}")
    if is_concrete(x):
        xa = np.asarray(x)
        if xa.size == 0:
            return
        if not np.issubdtype(xa.dtype, np.integer) and (not np.all(np.isfinite(xa)) or np.any(xa != np.round(xa))):
            raise ValueError(f"x must hold integers in 0..{levels - 1} (discrete pixel levels)")
        if xa.min() < 0 or xa.max() > levels - 1:
            raise ValueError(f"x must hold integers in 0..{levels - 1} (discrete pixel levels), "
                             f"got values in [{xa.min()}, {xa.max()}]")


@functools.lru_cache(maxsize=32)
def _bin_bounds(levels: int, low: int, high: int) -> tuple[np.ndarray, np.ndarray]:
    """The smallest and the largest float32 inside each bin ``[b_k, b_{k+1})``, ``b_k = low + (high − low) k/K``.

    A float32 ``y`` lies in bin ``k`` exactly when ``first[k] ≤ y ≤ last[k]``.  Comparisons are
    exact: ``b_k = n_k/K`` with an integer ``n_k``, and ``e·K`` of a float32 ``e`` is exact in float64.
    Below an edge at 0 ``last`` is the largest *normal* float32, ``−2⁻¹²⁶``: XLA treats subnormals as 0.
    """
    num = low * levels + (high - low) * np.arange(levels + 1)
    below = lambda e: e.astype(np.float64) * levels < num  # noqa: E731  (e < b_k, exactly)
    edges = (num / levels).astype(np.float32)  # within one float32 step of b_k
    edges = np.where(below(edges), np.nextafter(edges, np.float32(np.inf)), edges)
    previous = np.nextafter(edges, np.float32(-np.inf))
    edges = np.where(below(previous), edges, previous)
    first = edges[:-1]
    last = np.where(edges[1:] == 0, -np.finfo(np.float32).tiny, np.nextafter(edges[1:], np.float32(-np.inf)))
    for bound in (first, last):
        bound.setflags(write=False)
    return first, last


def _on_host(*arrays) -> bool:
    return all(isinstance(a, (np.ndarray, np.generic, numbers.Number)) for a in arrays)


def _into_bins(x, noise, levels: int, low: int, high: int):
    """``low + (high − low)(x + v)/K`` in float32, inside ``x``'s bin of ``[low, high)`` despite rounding.

    Written as ``((x + v) − c)·w`` (no multiply–add that a compiler could fuse, no division by a
    constant that XLA turns into a reciprocal), so NumPy and JAX (``jit`` included) agree bit for bit.
    """
    xp = np if _on_host(x, noise) else jnp
    first, last = (xp.asarray(b) for b in _bin_bounds(levels, low, high))
    x = xp.asarray(x)
    offset, width = -low * levels / (high - low), np.float32((high - low) / levels)  # y = (x + v − offset)·width
    y = ((x.astype(xp.float32) + xp.asarray(noise, xp.float32)) - offset) * width
    index = x.astype(xp.int32)
    return xp.clip(y, first[index], last[index])


def _check_noise(noise):
    if is_concrete(noise):
        v = np.asarray(noise)
        if v.size and not (v.min() >= 0.0 and v.max() < 1.0):
            raise ValueError(f"noise must lie in [0, 1) (the offset inside each level's bin), got values in "
                             f"[{v.min()}, {v.max()}]")


def to_symmetric(x, levels: int, noise=0.5):
    """Levels ``x`` → ``y = 2(x + v)/K − 1 ∈ [−1, 1)`` (float32), inside ``x``'s bin ``[2x/K − 1, 2(x+1)/K − 1)``.

    ``noise`` ``v ∈ [0, 1)`` (broadcast against ``x``): ``½`` gives the bin centres, ``v ~ U[0, 1)``
    uniform dequantisation (MATH.md §6).  NumPy inputs give a NumPy array, JAX inputs a JAX array,
    with the same values.
    """
    _check_levels(x, levels)
    _check_noise(noise)
    return _into_bins(x, noise, levels, -1, 1)


def from_symmetric(y, levels: int):
    """The level whose bin holds ``y`` (``y`` outside ``[−1, 1)`` clipped to ``0`` or ``K − 1``), int32.

    The exact inverse of :func:`to_symmetric` for every ``noise``; for model samples it quantises
    to ``K`` levels (``np.asarray(from_symmetric(samples, 256), np.uint8)`` for 8-bit images).
    """
    check_positive_int(levels, "levels")
    check_finite("y", y)
    xp = np if _on_host(y) else jnp
    first, _ = _bin_bounds(levels, -1, 1)
    index = xp.searchsorted(xp.asarray(first), xp.asarray(y, xp.float32), side="right") - 1
    return xp.clip(index, 0, levels - 1).astype(xp.int32)


def dequantize(key, x, levels: int = LEVELS):
    """``u = (x + v)/K`` with ``v ~ U[0, 1)`` elementwise: continuous data in ``[0, 1)``, inside ``x``'s bin."""
    _check_levels(x, levels)
    x = jnp.asarray(x)
    return _into_bins(x, jax.random.uniform(key, x.shape), levels, 0, 1)


def _logit(u, alpha: float):
    """``(logit p, log|det ∂y/∂u|)`` for one sample ``u`` in ``[0, 1)``, ``p = α + (1 − 2α) u``."""
    p = alpha + (1.0 - 2.0 * alpha) * u
    log_det = jnp.sum(math.log1p(-2.0 * alpha) - jnp.log(p) - jnp.log1p(-p))
    return jnp.log(p) - jnp.log1p(-p), log_det


def to_model_space(key, x, levels: int = LEVELS, scaling: str = "logit", alpha: float = 0.05):
    """Dequantise a batch ``x`` ``(n, ...)`` of integer levels and scale it: returns ``(y, log|det ∂y/∂u|)`` with shape ``(n,)``.

    Both scalings use the same noise ``v`` (``jax.random.uniform(key, x.shape)``): ``"symmetric"`` is
    :func:`to_symmetric`, ``"logit"`` is applied to :func:`dequantize`.  ``alpha`` is the logit margin
    ``λ`` (``0 < λ < 1/2``, ignored for ``"symmetric"``).
    """
    if scaling not in SCALINGS:
        raise ValueError(f"scaling={scaling!r} is not known; expected one of {SCALINGS}")
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must lie in (0, 1/2), got {alpha}")
    if scaling == "symmetric":
        x = jnp.asarray(x)
        y = to_symmetric(x, levels, jax.random.uniform(key, x.shape))
        return y, jnp.full(x.shape[0], math.prod(x.shape[1:]) * math.log(2.0))
    return jax.vmap(lambda u: _logit(u, alpha))(dequantize(key, x, levels))


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


# ----------------------------------------------------------------------------- training stream


def _check_images(images, levels: int) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] < 1 or not np.issubdtype(images.dtype, np.integer):
        raise ValueError(f"images must be a non-empty integer array (N, H, W, C) of levels (e.g. uint8), "
                         f"got dtype {images.dtype} and shape {images.shape}")
    _check_levels(images, levels)
    return images


def _check_labels(labels, n: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be {n} integers (one per image), got dtype {labels.dtype} and shape "
                         f"{labels.shape}")
    return labels.astype(np.int32)


def image_batches(images, labels=None, *, batch_size: int, seed: int, flip: bool = True, levels: int = 256):
    """Endless shuffled training batches of integer images for ``fit`` / ``train_interpolant`` (a generator).

    Yields ``{"x0": y, "c": labels}`` (no ``"c"`` when ``labels`` is None): ``y`` float32 ``(batch_size,
    H, W, C)`` in ``[−1, 1)``, ``c`` int32.  Every epoch visits the images in a fresh random order and
    batches run on across epoch ends, so each image appears once per epoch and no batch is short.
    Each image is flipped left–right with probability ½ (``flip=True``), then dequantised,
    ``y = to_symmetric(x, levels, v)`` with ``v ~ U[0, 1)``.  All randomness comes from
    ``numpy.random.default_rng(seed)``: the same arguments give the same batches.  Pass the same
    ``batch_size`` to ``fit``; to resume at step ``s``, skip the first ``s`` batches
    (``itertools.islice(stream, s, None)``).
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    images = _check_images(images, levels)
    labels = None if labels is None else _check_labels(labels, len(images))
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return _batches(images, labels, batch_size, np.random.default_rng(seed), bool(flip), levels)


def _batches(images, labels, batch_size, rng, flip, levels):
    order = np.empty(0, np.int64)
    while True:
        while len(order) < batch_size:
            order = np.concatenate([order, rng.permutation(len(images))])
        index, order = order[:batch_size], order[batch_size:]
        x = images[index]
        if flip:
            flipped = rng.random(batch_size) < 0.5
            x = np.where(flipped[:, None, None, None], x[:, :, ::-1], x)
        batch = {"x0": to_symmetric(x, levels, rng.random(x.shape, dtype=np.float32))}
        if labels is not None:
            batch["c"] = labels[index]
        yield batch


# ----------------------------------------------------------------------------- figures


def image_grid(images, ncols: int, pad: int = 1, pad_value=0) -> np.ndarray:
    """Tile ``images`` ``(n, H, W, C)`` or ``(n, H, W)`` row by row into a grid of ``ncols`` columns.

    ``pad`` pixels of ``pad_value`` surround every tile (also at the border) and fill the unused
    cells of the last row.  Returns ``(rows·(H + pad) + pad, ncols·(W + pad) + pad, C)`` in the
    images' dtype (uint8 levels or floats), without the channel axis when ``C = 1`` (as
    ``plt.imshow`` and ``PIL.Image.fromarray`` take it).
    """
    x = np.asarray(images)
    x = x[..., None] if x.ndim == 3 else x
    if x.ndim != 4 or x.shape[0] < 1:
        raise ValueError(f"images must be a non-empty array (n, H, W, C) or (n, H, W), got shape {np.shape(images)}")
    ncols = check_positive_int(ncols, "ncols")
    if isinstance(pad, bool) or not isinstance(pad, (int, np.integer)) or pad < 0:
        raise ValueError(f"pad must be an integer >= 0, got {pad!r}")
    n, h, w, c = x.shape
    rows = -(-n // ncols)
    cells = np.full((rows * ncols, h + pad, w + pad, c), pad_value, x.dtype)
    cells[:n, pad:, pad:] = x
    grid = cells.reshape(rows, ncols, h + pad, w + pad, c).swapaxes(1, 2)
    grid = grid.reshape(rows * (h + pad), ncols * (w + pad), c)
    grid = np.pad(grid, ((0, pad), (0, pad), (0, 0)), constant_values=pad_value)
    return grid[..., 0] if c == 1 else grid
