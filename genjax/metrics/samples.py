"""Sample metrics: MMD², energy distance, KID, sliced / exact Wasserstein, Fréchet distance, NLL, cross-entropy.

Samples are 2-D arrays ``(n, d)``.  Inputs are checked eagerly (shape, size, finiteness) and
a ``ValueError`` names the argument; under ``jit``/``vmap`` only the shape checks apply.
The kernel estimators share one formula (Gretton et al. 2012, "A Kernel Two-Sample Test",
eq. 3): ``MMD²_u = mean_{i≠j} k(x_i,x_j) + mean_{i≠j} k(y_i,y_j) − 2 mean_{i,j} k(x_i,y_j)``,
unbiased for independent samples.  For ``y = x`` it equals ``−(2/n)(k̄_diag − k̄_offdiag)``,
zero only up to O(1/n); ``unbiased=False`` gives the V-statistic (diagonals kept), which is
``≥ 0`` and exactly 0 for identical samples.  Report every metric next to its data floor
(:func:`data_floor`, MATH.md §8).
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
import scipy.spatial.distance

from .. import likelihood

__all__ = [
    "energy_distance",
    "mmd2",
    "kid",
    "sliced_wasserstein",
    "wasserstein2",
    "frechet_distance",
    "frechet_distance_samples",
    "nll",
    "mean_bits_per_dim",
    "cross_entropy",
    "data_floor",
    "MEDIAN_MULTIPLES",
]

# Default RBF bandwidths of :func:`mmd2`, as multiples of the median pairwise distance.
MEDIAN_MULTIPLES = (0.25, 0.5, 1.0, 2.0, 4.0)


# -- input checks ---------------------------------------------------------------------
def _concrete_all(predicate) -> bool | None:
    """``bool(predicate)``, or ``None`` under ``jit``/``vmap`` where values are unknown."""
    try:
        return bool(predicate)
    except jax.errors.ConcretizationTypeError:
        return None


def _finite(fn: str, arg: str, a) -> None:
    if _concrete_all(jnp.all(jnp.isfinite(a))) is False:
        raise ValueError(f"{fn}: {arg} contains NaN or inf")


def _sample(fn: str, arg: str, a, min_n: int = 1):
    """Check one sample of shape ``(n, d)``; return it as a float32 array."""
    a = jnp.asarray(a, jnp.float32)
    if a.ndim != 2:
        raise ValueError(f"{fn}: {arg} must be a 2-D array of shape (n, d), got shape {a.shape}")
    if a.shape[0] < min_n:
        raise ValueError(f"{fn}: {arg} needs at least {min_n} samples, got {a.shape[0]}")
    _finite(fn, arg, a)
    return a


def _samples(fn: str, x, y, *, min_n: int = 1, equal: bool = False, names: tuple[str, str] = ("x", "y")):
    """Check two samples of shape ``(n, d)`` and ``(m, d)`` (called ``names``); return them as float32 arrays."""
    (a, b), x, y = names, _sample(fn, names[0], x, min_n), _sample(fn, names[1], y, min_n)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"{fn}: {a} and {b} must have the same dimension d, got {x.shape[1]} and {y.shape[1]}")
    if equal and x.shape[0] != y.shape[0]:
        raise ValueError(f"{fn}: {a} and {b} must have the same number of samples, got {x.shape[0]} and {y.shape[0]}")
    return x, y


def _positive(fn: str, arg: str, value, integer: bool = False):
    ok = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.number))
    if not ok or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        kind = "a positive integer" if integer else "a positive finite number"
        raise ValueError(f"{fn}: {arg} must be {kind}, got {value!r}")
    return value


# -- kernel two-sample statistics -----------------------------------------------------
def _sq_dists(x, y):
    """``‖x_i − y_j‖²`` by direct differences (exact 0 on coincident points; XLA fuses the reduction)."""
    return jnp.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)


def _mmd2(kxx, kyy, kxy, unbiased: bool):
    """``MMD²`` from the three kernel blocks: U-statistic within samples (diagonal excluded) or V-statistic."""

    def within(k):
        n = k.shape[0]
        return (jnp.sum(k) - jnp.trace(k)) / (n * (n - 1)) if unbiased else jnp.mean(k)

    return within(kxx) + within(kyy) - 2.0 * jnp.mean(kxy)


@functools.partial(jax.jit, static_argnames="unbiased")
def _energy(x, y, unbiased):
    # Distance kernel k(a, b) = −‖a − b‖ turns MMD² into the energy distance; the floor inside
    # the square root keeps gradients finite on the diagonal.
    neg_dist = lambda a, b: -jnp.sqrt(jnp.maximum(_sq_dists(a, b), 1e-30))  # noqa: E731
    return _mmd2(neg_dist(x, x), neg_dist(y, y), neg_dist(x, y), unbiased)


def energy_distance(x, y, *, unbiased: bool = True):
    """Energy distance ``2E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖`` (Székely & Rizzo 2013) between samples.

    The within-sample means exclude ``i = j`` (U-statistics; unbiased) unless
    ``unbiased=False``; the cross mean is over all pairs.  In 1-D the V-statistic equals
    ``2∫(F_n − G_m)²`` of the empirical CDFs.
    """
    x, y = _samples("energy_distance", x, y, min_n=2 if unbiased else 1)
    return _energy(x, y, unbiased)


@functools.partial(jax.jit, static_argnames=("relative", "unbiased"))
def _rbf_mmd2(x, y, bandwidths, relative, unbiased):
    dxx, dyy, dxy = _sq_dists(x, x), _sq_dists(y, y), _sq_dists(x, y)
    if relative:  # bandwidths are multiples of the pooled median pairwise distance
        n, m = x.shape[0], y.shape[0]
        pooled = jnp.concatenate([dxx[jnp.triu_indices(n, 1)], dyy[jnp.triu_indices(m, 1)], dxy.ravel()])
        median = jax.lax.stop_gradient(jnp.sqrt(jnp.median(pooled)))
        bandwidths = jnp.maximum(median, 1e-12) * bandwidths
    kernel = lambda d2: jnp.sum(jnp.exp(-d2[..., None] / (2.0 * bandwidths**2)), -1)  # noqa: E731
    return _mmd2(kernel(dxx), kernel(dyy), kernel(dxy), unbiased)


def mmd2(x, y, bandwidths: Sequence[float] | None = None, *, unbiased: bool = True):
    """Squared MMD (Gretton et al. 2012, eq. 3) with ``k(a,b) = Σ_b exp(−‖a−b‖²/(2b²))``.

    ``bandwidths=None`` uses ``ℓ · MEDIAN_MULTIPLES`` = ``ℓ·(1/4, 1/2, 1, 2, 4)`` with ``ℓ`` the
    median pairwise distance of the pooled sample (median heuristic; treated as a constant).
    Unbiased (U-statistic within samples) unless ``unbiased=False``; can be slightly negative.
    """
    x, y = _samples("mmd2", x, y, min_n=2 if unbiased else 1)
    bw = np.atleast_1d(np.asarray(MEDIAN_MULTIPLES if bandwidths is None else bandwidths, dtype=np.float64))
    if bw.ndim != 1 or bw.size == 0 or not np.all(np.isfinite(bw)) or not np.all(bw > 0):
        raise ValueError(f"mmd2: bandwidths must be a non-empty sequence of positive numbers, got {bandwidths!r}")
    return _rbf_mmd2(x, y, jnp.asarray(bw, jnp.float32), bandwidths is None, unbiased)


@functools.partial(jax.jit, static_argnames=("degree", "subset_size"))
def _kid(x, y, keys, degree, gamma, coef0, subset_size):
    kernel = lambda a, b: (gamma * a @ b.T + coef0) ** degree  # noqa: E731

    def one(key):
        if key is None:
            xs, ys = x, y
        else:
            kx, ky = jax.random.split(key)
            xs = x[jax.random.permutation(kx, x.shape[0])[:subset_size]]
            ys = y[jax.random.permutation(ky, y.shape[0])[:subset_size]]
        return _mmd2(kernel(xs, xs), kernel(ys, ys), kernel(xs, ys), True)

    return one(None) if keys is None else jnp.mean(jax.lax.map(one, keys))


def kid(
    x,
    y,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    *,
    num_subsets: int | None = None,
    subset_size: int | None = None,
    key: jax.Array | None = None,
):
    """Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with ``k(a,b) = (γ aᵀb + c0)^degree``.

    ``γ = 1/d`` by default.  With ``num_subsets`` the estimate is averaged over that many
    random subsets of ``subset_size`` points from each sample (default ``min(n, m, 1000)``),
    drawn without replacement with ``key``, as in the paper.
    """
    x, y = _samples("kid", x, y, min_n=2)
    _positive("kid", "degree", degree, integer=True)
    gamma = 1.0 / x.shape[1] if gamma is None else _positive("kid", "gamma", gamma)
    if not isinstance(coef0, (int, float, np.number)) or not math.isfinite(coef0):
        raise ValueError(f"kid: coef0 must be a finite number, got {coef0!r}")
    keys = None
    if num_subsets is not None:
        _positive("kid", "num_subsets", num_subsets, integer=True)
        smallest = min(x.shape[0], y.shape[0])
        subset_size = min(smallest, 1000) if subset_size is None else subset_size
        _positive("kid", "subset_size", subset_size, integer=True)
        if not 2 <= subset_size <= smallest:
            raise ValueError(f"kid: subset_size must lie in [2, min(n, m) = {smallest}], got {subset_size}")
        if key is None:
            raise ValueError("kid: a PRNG key is needed to draw subsets (num_subsets was given)")
        keys = jax.random.split(key, num_subsets)
    elif subset_size is not None:
        raise ValueError("kid: subset_size needs num_subsets")
    return _kid(x, y, keys, degree, jnp.float32(gamma), jnp.float32(coef0), subset_size)


# -- Wasserstein ----------------------------------------------------------------------
def _quantile_grid(n: int, m: int):
    """Widths and sorted-sample indices of the intervals where both empirical quantile functions are constant."""
    levels = np.unique(np.concatenate([np.arange(1, n + 1) / n, np.arange(1, m + 1) / m]))
    widths = np.diff(levels, prepend=0.0)
    mid = levels - widths / 2
    index = lambda k: np.minimum(np.floor(mid * k).astype(np.int32), k - 1)  # noqa: E731
    return widths.astype(np.float32), index(n), index(m)


@functools.partial(jax.jit, static_argnames=("num_projections", "p"))
def _sliced(x, y, key, num_projections, p):
    widths, ix, iy = _quantile_grid(x.shape[0], y.shape[0])
    dirs = jax.random.normal(key, (num_projections, x.shape[1]))
    dirs = dirs / jnp.linalg.norm(dirs, axis=-1, keepdims=True)
    px, py = jnp.sort(x @ dirs.T, axis=0), jnp.sort(y @ dirs.T, axis=0)  # (n, L), (m, L)
    wpp = jnp.sum(widths[:, None] * jnp.abs(px[ix] - py[iy]) ** p, axis=0)  # W_p^p per direction
    return jnp.mean(wpp) ** (1.0 / p)


def sliced_wasserstein(x, y, key, num_projections: int = 128, p: float = 2):
    """Sliced Wasserstein ``SW_p = (E_θ W_p^p(θᵀX, θᵀY))^{1/p}`` with θ uniform on the unit sphere.

    Each 1-D ``W_p^p = ∫₀¹ |F⁻¹(u) − G⁻¹(u)|^p du`` is exact for the empirical measures, summed over
    the merged grid of levels ``{i/n} ∪ {j/m}`` (plain sorted matching when ``n = m``).  Monte Carlo
    over ``num_projections`` directions drawn with ``key`` (Bonneel et al. 2015).
    """
    x, y = _samples("sliced_wasserstein", x, y)
    _positive("sliced_wasserstein", "num_projections", num_projections, integer=True)
    if _positive("sliced_wasserstein", "p", p) < 1:
        raise ValueError(f"sliced_wasserstein: p must be >= 1, got {p}")
    return _sliced(x, y, key, num_projections, float(p))


def wasserstein2(x, y) -> float:
    """Exact ``W2 = sqrt(min_π (1/n) Σ_i ‖x_i − y_π(i)‖²)`` between two equal-size samples.

    Optimal assignment on the squared-distance matrix (``scipy.optimize.linear_sum_assignment``,
    float64, on the host; O(n³), fine for n up to a few thousand).  Returns W2, not W2².
    """
    x, y = _samples("wasserstein2", x, y, equal=True)
    cost = scipy.spatial.distance.cdist(np.asarray(x, np.float64), np.asarray(y, np.float64), "sqeuclidean")
    rows, cols = scipy.optimize.linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))


# -- Fréchet distance -----------------------------------------------------------------
def _frechet_with(xp, mu1, cov1, mu2, cov2):
    """``‖μ1−μ2‖² + tr Σ1 + tr Σ2 − 2 tr (Σ1^{1/2} Σ2 Σ1^{1/2})^{1/2}`` with ``xp`` = ``jax.numpy`` or ``numpy``;
    symmetric square roots by ``eigh``, tiny negative eigenvalues clipped to 0."""
    def sqrt_eigs(a):
        lam, vec = xp.linalg.eigh(0.5 * (a + a.T))
        return xp.maximum(lam, 0.0), vec

    lam, vec = sqrt_eigs(cov1)
    root1 = (vec * xp.sqrt(lam)) @ vec.T  # Σ1^{1/2}
    mid, _ = sqrt_eigs(root1 @ cov2 @ root1)  # Σ1^{1/2} Σ2 Σ1^{1/2}
    return xp.sum((mu1 - mu2) ** 2) + xp.trace(cov1) + xp.trace(cov2) - 2.0 * xp.sum(xp.sqrt(mid))


_frechet = jax.jit(functools.partial(_frechet_with, jnp))


def _frechet_float64(mu1, cov1, mu2, cov2) -> float:
    """In float64 NumPy: the traces nearly cancel when the distributions are close (features with ``tr Σ``
    ≈ 10–100 at a distance ≈ 0.03), which float32 turns into negative distances."""
    return float(_frechet_with(np, *(np.asarray(a, np.float64) for a in (mu1, cov1, mu2, cov2))))


def frechet_distance(mu1, cov1, mu2, cov2):
    """Fréchet (2-Wasserstein²) distance between ``N(μ1, Σ1)`` and ``N(μ2, Σ2)`` (Dowson & Landau 1982).

    ``‖μ1−μ2‖² + tr(Σ1 + Σ2 − 2(Σ1^{1/2} Σ2 Σ1^{1/2})^{1/2})`` with symmetric square roots by
    ``eigh`` (tiny negative eigenvalues clipped to 0); never ``sqrtm(Σ1 Σ2)``.  This is FID when
    the inputs are Inception-feature moments (Heusel et al. 2017).  Scalars are read as ``d = 1``.
    """
    fn = "frechet_distance"
    mu1, mu2 = (jnp.atleast_1d(jnp.asarray(m, jnp.float32)) for m in (mu1, mu2))
    cov1, cov2 = (jnp.atleast_2d(jnp.asarray(c, jnp.float32)) for c in (cov1, cov2))
    if mu1.ndim != 1:
        raise ValueError(f"{fn}: mu1 must have shape (d,), got {mu1.shape}")
    d = mu1.shape[0]
    for arg, a, shape in (("mu1", mu1, (d,)), ("cov1", cov1, (d, d)), ("mu2", mu2, (d,)), ("cov2", cov2, (d, d))):
        if a.shape != shape:
            raise ValueError(f"{fn}: {arg} must have shape {shape} (d = len(mu1)), got {a.shape}")
        _finite(fn, arg, a)
    for arg, c in (("cov1", cov1), ("cov2", cov2)):
        scale = jnp.max(jnp.abs(c)) + 1e-30
        if _concrete_all(jnp.max(jnp.abs(c - c.T)) > 1e-4 * scale):
            raise ValueError(f"{fn}: {arg} must be symmetric")
        if _concrete_all(jnp.min(jnp.linalg.eigvalsh(c)) < -1e-4 * scale):
            raise ValueError(f"{fn}: {arg} must be positive semi-definite")
    if _concrete_all(jnp.all(jnp.isfinite(mu1))) is None:  # traced: float32 under jit
        return _frechet(mu1, cov1, mu2, cov2)
    return _frechet_float64(mu1, cov1, mu2, cov2)


def frechet_distance_samples(x, y):
    """:func:`frechet_distance` between the sample means and unbiased (``n − 1``) covariances of ``x`` and ``y``
    (moments in float64 for concrete samples)."""
    x, y = _samples("frechet_distance_samples", x, y, min_n=2)
    if _concrete_all(jnp.all(jnp.isfinite(x))) is not None:
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        return _frechet_float64(x.mean(0), np.atleast_2d(np.cov(x, rowvar=False)), y.mean(0),
                                np.atleast_2d(np.cov(y, rowvar=False)))
    moments = lambda a: (jnp.mean(a, 0), jnp.atleast_2d(jnp.cov(a, rowvar=False)))  # noqa: E731
    return frechet_distance(*moments(x), *moments(y))


# -- likelihood reporting -------------------------------------------------------------
def _mean_and_se(fn: str, values, arg: str = "log_prob_values"):
    """Mean and standard error ``sd/sqrt(n)`` (``ddof=1``) of ``n >= 2`` finite per-sample values."""
    values = np.asarray(values, np.float64)
    if values.ndim != 1 or values.size < 2:
        raise ValueError(f"{fn}: {arg} must be a 1-D array of at least 2 per-sample values, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{fn}: {arg} contains NaN or inf")
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


def nll(log_prob_values) -> tuple[float, float]:
    """Mean negative log-likelihood in nats and its standard error ``std/sqrt(n)``."""
    mean, se = _mean_and_se("nll", log_prob_values)
    return -mean, se


def mean_bits_per_dim(log_prob_values, dim: int, *, num_bins: int = 256, data_range: float = 2.0) -> tuple[float, float]:
    """Mean bits/dim and its standard error over per-point log-densities (nats).

    Each value is :func:`genjax.likelihood.bits_per_dim` (MATH.md §6): ``num_bins``-level data
    scaled to an interval of width ``data_range`` (8-bit data in [−1, 1]: 256 and 2).
    """
    mean, se = _mean_and_se("mean_bits_per_dim", log_prob_values)
    values = likelihood.bits_per_dim(jnp.asarray([mean, mean - se]), dim, num_bins=num_bins, data_range=data_range)
    return float(values[0]), float(values[1] - values[0])


@functools.lru_cache(maxsize=32)
def _batched(log_prob: Callable) -> Callable:
    """``jit(vmap(log_prob))``, compiled once per density (e.g. a toy set's ``log_prob``)."""
    return jax.jit(jax.vmap(log_prob))


def cross_entropy(log_prob: Callable, samples) -> tuple[float, float]:
    """``−(1/n) Σ log p(x_i)`` over model samples ``x_i ~ q`` under a known density ``p``, and its standard error.

    Estimates the cross-entropy ``E_q[−log p] = H(q) + KL(q‖p)`` of the model's samples
    under the data density (e.g. ``toy.eight_gaussians.log_prob``); the standard error is
    ``sd/sqrt(n)`` (``ddof=1``).  It scores every sample where ``p`` is small, so it exposes
    over-dispersed samples (blurred modes, a thin halo of outliers) that W2 or the energy
    distance on ~2000 points do not resolve.  Samples of the data itself reach the data's
    entropy ``H(p)`` (the ``entropy`` of a toy set), the value to report it against.  That is
    a reference, not a lower bound: samples concentrated at the modes of ``p`` score below
    ``H(p)`` (``N(0, s²)`` under ``N(0, 1)``: ``½log(2π) + s²/2`` per dimension), and dropped
    modes cost nothing, so report it with a sample metric or the test NLL ``E_p[−log q] ≥ H(p)``
    (MATH.md §8).  A sample where ``p = 0`` (e.g. off the checkerboard) makes both values ``inf``.

    Args:
      log_prob: per-point log-density ``log_prob(x)`` for ``x`` of shape ``(d,)`` (vmapped here).
      samples: ``(n, d)`` model samples, ``n >= 2``.
    """
    x = _sample("cross_entropy", "samples", samples, min_n=2)
    if not callable(log_prob):
        raise ValueError(f"cross_entropy: log_prob must be a callable log_prob(x) of one point, got {log_prob!r:.80}")
    try:
        batched = _batched(log_prob)
    except TypeError:  # an unhashable callable (e.g. a module holding arrays): compile it without the cache
        batched = jax.jit(jax.vmap(log_prob))
    values = -np.asarray(batched(x), np.float64)
    if values.shape != (x.shape[0],):
        raise ValueError(f"cross_entropy: log_prob must return a scalar per point, got shape {values.shape[1:]}")
    if np.isnan(values).any() or np.isneginf(values).any():
        raise ValueError("cross_entropy: log_prob returned NaN or +inf (not a log-density)")
    if np.isposinf(values).any():
        return math.inf, math.inf
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


# -- floors ---------------------------------------------------------------------------
def data_floor(
    metric: Callable, sample_fn: Callable, key, n_model: int, n_data: int, repeats: int = 5
) -> tuple[float, float]:
    """Mean and std over ``repeats`` of ``metric(a, b)`` for independent data samples of sizes ``n_model``, ``n_data``.

    The value a perfect model reaches at these sample sizes (MATH.md §8).  ``metric`` takes
    two samples (bind keys and options with ``functools.partial``); ``sample_fn(key, n)``
    draws data, e.g. ``toy.moons.sample``.
    """
    _positive("data_floor", "n_model", n_model, integer=True)
    _positive("data_floor", "n_data", n_data, integer=True)
    if _positive("data_floor", "repeats", repeats, integer=True) < 2:
        raise ValueError(f"data_floor: repeats must be >= 2 to give a spread, got {repeats}")
    values = []
    for k in jax.random.split(key, repeats):
        ka, kb = jax.random.split(k)
        values.append(float(metric(sample_fn(ka, n_model), sample_fn(kb, n_data))))
    values = np.asarray(values)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"data_floor: metric returned non-finite values {values}")
    return float(values.mean()), float(values.std(ddof=1))
