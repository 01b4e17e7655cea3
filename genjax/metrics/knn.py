"""k-nearest-neighbour precision and recall (Kynkäänniemi et al. 2019).

Each point ``a`` of a set ``A`` gets the radius ``r_A(a)`` = distance to its ``k``-th nearest
*other* point of ``A``; the union of the balls ``B(a, r_A(a))`` estimates the support
(manifold) of ``A``'s distribution.  With real features ``Φ_r`` and generated features ``Φ_g``:

    precision = (1/|Φ_g|) Σ_{g ∈ Φ_g} 1[∃ r ∈ Φ_r: ‖g − r‖ ≤ r_{Φ_r}(r)]
    recall    = (1/|Φ_r|) Σ_{r ∈ Φ_r} 1[∃ g ∈ Φ_g: ‖r − g‖ ≤ r_{Φ_g}(g)]

Precision measures fidelity (samples lie on the data manifold), recall diversity (the data
manifold is covered by the samples'); mode dropping lowers recall only.  One outlier sample
gets a large ball and can cover many real points (Naeem et al. 2020), so report both next to
their data floor.  Distances are computed ``chunk_size`` query rows at a time: memory
``O(chunk_size · n)``, fine for tens of thousands of points.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from .samples import _positive, _samples

__all__ = ["knn_precision_recall"]


def _sq_dists_to(a, points, sq_norms):
    """``‖a − p_j‖²`` for one query ``a`` as ``‖a‖² + ‖p‖² − 2aᵀp`` (a matrix product once batched)."""
    return jnp.maximum(jnp.sum(a**2) + sq_norms - 2.0 * points @ a, 0.0)


def _kth_smallest(values, k):
    """The ``k``-th smallest entry (0-based) of a vector: ``k`` minima removed one at a time (``top_k``/``sort`` are
    ~10× slower on CPU for small ``k``)."""
    index = jnp.arange(values.shape[-1])
    drop_min = lambda _, v: jnp.where(index == jnp.argmin(v), jnp.inf, v)  # noqa: E731
    return jnp.min(jax.lax.fori_loop(0, k, drop_min, values))


def _knn_sq_radii(points, k, chunk_size: int):
    """Squared distance of each point to its ``k``-th nearest other point (the ``k + 1``-th smallest, self included)."""
    sq_norms = jnp.sum(points**2, -1)
    kth = lambda a: _kth_smallest(_sq_dists_to(a, points, sq_norms), k)  # noqa: E731
    return jax.lax.map(kth, points, batch_size=chunk_size)


def _coverage(queries, centres, sq_radii, chunk_size: int):
    """Fraction of ``queries`` inside at least one ball ``B(centre_j, radius_j)``."""
    sq_norms = jnp.sum(centres**2, -1)
    inside = lambda q: jnp.any(_sq_dists_to(q, centres, sq_norms) <= sq_radii)  # noqa: E731
    return jnp.mean(jax.lax.map(inside, queries, batch_size=chunk_size).astype(jnp.float32))


@functools.partial(jax.jit, static_argnames="chunk_size")
def _precision_recall(real, fake, k, chunk_size):
    centre = jnp.mean(real, 0)  # translating both sets keeps distances and shrinks the rounding of ‖a‖² + ‖b‖² − 2aᵀb
    real, fake = real - centre, fake - centre
    precision = _coverage(fake, real, _knn_sq_radii(real, k, chunk_size), chunk_size)
    recall = _coverage(real, fake, _knn_sq_radii(fake, k, chunk_size), chunk_size)
    return precision, recall


def knn_precision_recall(real, fake, k: int = 3, *, chunk_size: int = 256) -> tuple[float, float]:
    """``(precision, recall)`` of ``fake`` against ``real`` feature vectors with k-NN balls (module doc).

    Kynkäänniemi, Karras, Laine, Lehtinen & Aila (2019), "Improved precision and recall metric
    for assessing generative models", with their default ``k = 3``.  A point on a
    ball's boundary counts as inside.

    Args:
      real: ``(n, d)`` features of real data, ``n > k``.
      fake: ``(m, d)`` features of generated samples, ``m > k``.
      k: neighbour rank that sets each ball's radius.
      chunk_size: query rows per distance block (memory ``chunk_size · max(n, m)`` floats).
    """
    fn = "knn_precision_recall"
    real, fake = _samples(fn, real, fake, names=("real", "fake"))
    _positive(fn, "k", k, integer=True)
    _positive(fn, "chunk_size", chunk_size, integer=True)
    for arg, a in (("real", real), ("fake", fake)):
        if a.shape[0] <= k:
            raise ValueError(f"{fn}: {arg} needs more than k = {k} points (each radius is a k-th neighbour "
                             f"distance), got {a.shape[0]}")
    precision, recall = _precision_recall(real, fake, int(k), int(chunk_size))  # k traced: no recompilation
    return float(precision), float(recall)
