"""2-D toy data sets in pure JAX, following FFJORD's ``lib/toy_data.py``.

Shapes and scales match Grathwohl et al. 2019 ("FFJORD", ``rtqichen/ffjord``) so numbers
compare with the literature; scikit-learn's ``make_moons`` / ``make_circles`` /
``make_swiss_roll`` use evenly spaced angles, here the angles are uniform random (the
same law as n → ∞).  Every ``sample(key, n)`` is a pure, jit-compiled function of a PRNG
key returning ``(n, 2)`` float32.  Sets with a closed-form density also carry a per-point
``log_prob(x)`` (vmap for batches) and their true differential entropy in nats, the floor
of any model's test NLL (MATH.md §8).
"""

from __future__ import annotations

import dataclasses
import math
import operator
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..targets import GaussianMixture

__all__ = [
    "ToyDataset",
    "DATASETS",
    "get",
    "gaussian_mixture",
    "moons",
    "eight_gaussians",
    "checkerboard",
    "two_spirals",
    "circles",
    "pinwheel",
    "swissroll",
]


@dataclasses.dataclass(frozen=True)
class ToyDataset:
    """A data set: ``sample(key, n) -> (n, dim)``, optional per-point ``log_prob(x)`` and entropy (nats).

    ``log_prob`` and ``entropy`` are ``None`` when no closed form is known.
    """

    name: str
    sample: Callable[[jax.Array, int], jax.Array]
    log_prob: Callable[[jax.Array], jax.Array] | None = None
    entropy: float | None = None
    dim: int = 2


def _check_key(name: str, key) -> None:
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and shape == ()
    raw = dtype == jnp.uint32 and shape == (2,)
    if not (typed or raw):
        raise ValueError(
            f"{name}.sample: key must be one PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)), "
            f"got dtype={dtype}, shape={shape}"
        )


def _dataset(name, sampler, log_prob=None, entropy=None, dim=2) -> ToyDataset:
    """Wrap a raw ``sampler(key, n)`` (compiled once per ``n``) and ``log_prob`` with eager input checks."""
    compiled = jax.jit(sampler, static_argnums=1)

    def sample(key, n: int):
        _check_key(name, key)
        try:
            n = operator.index(n)
        except TypeError:
            raise ValueError(f"{name}.sample: n must be a positive integer, got {n!r}") from None
        if n < 1:
            raise ValueError(f"{name}.sample: n must be a positive integer, got {n}")
        return compiled(key, n)

    sample.__doc__ = sampler.__doc__
    checked_log_prob = None if log_prob is None else _checked_log_prob(name, log_prob, dim)
    return ToyDataset(name, sample, checked_log_prob, None if entropy is None else float(entropy), dim)


def _checked_log_prob(name, log_prob, dim):
    """``log_prob`` that refuses anything but one point of shape ``(dim,)``."""

    def checked_log_prob(x):
        x = jnp.asarray(x)
        if x.shape != (dim,):
            raise ValueError(f"{name}.log_prob: x must be one point of shape ({dim},) (vmap for batches), got {x.shape}")
        return log_prob(x)

    checked_log_prob.__doc__ = log_prob.__doc__
    return checked_log_prob


def gaussian_mixture(
    mixture: GaussianMixture,
    name: str = "gaussian_mixture",
    entropy: float | None = None,
    key: jax.Array | None = None,
    num_entropy_samples: int = 200_000,
) -> ToyDataset:
    """A :class:`ToyDataset` for ``Σ_k w_k N(μ_k, Σ_k)`` with exact ``log_prob``.

    The entropy is ``entropy`` if given, exact for one component, else the Monte-Carlo
    estimate ``−mean log p(x_i)`` over ``num_entropy_samples`` draws with ``key``
    (default ``jax.random.key(0)``); its standard error is ``std(log p)/sqrt(n)``
    (≈ 2e−3 nats for the default n and a spread of ~1 nat).
    """
    if not isinstance(mixture, GaussianMixture):
        raise ValueError(f"gaussian_mixture: mixture must be a genjax.targets.GaussianMixture, got {type(mixture)}")
    if entropy is None and mixture.means.shape[0] == 1:
        entropy = mixture.entropy()
    elif entropy is None:
        n = num_entropy_samples
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"gaussian_mixture: num_entropy_samples must be an integer >= 2, got {n!r}")
        entropy = jax.jit(mixture.entropy, static_argnums=1)(jax.random.key(0) if key is None else key, n)
    return _dataset(name, mixture.sample, mixture.log_prob, entropy, mixture.dim)


# -- moons ----------------------------------------------------------------------------
# Raw moons: upper arc (cos θ, sin θ), lower arc (1 − cos θ, 1/2 − sin θ), θ ~ U(0, π),
# each with probability 1/2, plus N(0, 0.1² I).  Exact moments: mean (1/2, 1/4),
# var_x = 3/4 + 0.01, var_y = 9/16 − 1/π + 0.01.  (FFJORD instead maps x ↦ 2x + (−1, −0.2).)
MOONS_MEAN = (0.5, 0.25)
MOONS_STD = (math.sqrt(0.75 + 0.01), math.sqrt(9 / 16 - 1 / math.pi + 0.01))


def _moons(key, n):
    """sklearn ``make_moons(noise=0.1)`` standardised exactly: ``(x − MOONS_MEAN) / MOONS_STD``."""
    ka, kb, kz = jax.random.split(key, 3)
    theta = jax.random.uniform(ka, (n,), maxval=jnp.pi)
    c, s = jnp.cos(theta), jnp.sin(theta)
    upper = jax.random.bernoulli(kb, 0.5, (n, 1))
    x = jnp.where(upper, jnp.stack([c, s], -1), jnp.stack([1.0 - c, 0.5 - s], -1))
    x = x + 0.1 * jax.random.normal(kz, (n, 2))
    return (x - jnp.asarray(MOONS_MEAN)) / jnp.asarray(MOONS_STD)


def _log_mix_gaussians(x, centres, log_weights, std: float):
    """``log Σ_j w_j N(x; c_j, std² I)`` for a 2-D point ``x``: a quadrature rule (nodes ``c_j = c(t_j)``, weights
    ``w_j``) for a density ``∫ N(x; c(t), std² I) dt`` averaged over a curve's parameter."""
    dtype = jnp.result_type(float)
    sq = jnp.sum((x - jnp.asarray(centres, dtype)) ** 2, -1)
    return jax.nn.logsumexp(jnp.asarray(log_weights, dtype) - sq / (2 * std**2)) - math.log(2 * math.pi * std**2)


# The raw density averages the noise kernel over both arcs, p(x) = (1/2π) Σ_arc ∫_0^π N(x; c_arc(θ), 0.1² I) dθ,
# by Gauss–Legendre quadrature on MOONS_NODES nodes per arc: 1e−12 from scipy's adaptive quadrature in float64
# on and off the arcs.  (The midpoint rule is off by 2e−4 nats next to an arc's end, its O(h²) endpoint term,
# even with 1024 nodes.)  The standardised density is p(MOONS_MEAN + MOONS_STD·y) · MOONS_STD_x · MOONS_STD_y.
MOONS_NODES = 256
_MOONS_GL_NODES, _MOONS_GL_WEIGHTS = np.polynomial.legendre.leggauss(MOONS_NODES)  # on [−1, 1]
_MOONS_THETA = np.pi * (_MOONS_GL_NODES + 1.0) / 2.0
_MOONS_CENTRES = np.concatenate([np.stack([np.cos(_MOONS_THETA), np.sin(_MOONS_THETA)], -1),
                                 np.stack([1.0 - np.cos(_MOONS_THETA), 0.5 - np.sin(_MOONS_THETA)], -1)])
_MOONS_LOG_WEIGHTS = np.log(np.tile(_MOONS_GL_WEIGHTS, 2) / 4.0)  # (π/2) w_j / (2π): both arcs, θ ∈ [0, π]
_MOONS_LOG_JACOBIAN = math.log(MOONS_STD[0] * MOONS_STD[1])
# −∫ p log p of the standardised moons by the 2-D midpoint rule in float64 on [−4.5, 4.5]² (h = 0.02 and 0.01
# agree to 1e−13); the Monte-Carlo estimate −mean log p over 10⁶ draws of the generator (key 0) is
# 1.82965 ± 0.00075 (s.e.).
MOONS_ENTROPY = 1.8296396639


def _moons_log_prob(y):
    """``log p(MOONS_MEAN + MOONS_STD·y) + log(MOONS_STD_x MOONS_STD_y)``, ``p`` the raw moons by Gauss–Legendre."""
    x = jnp.asarray(MOONS_MEAN) + jnp.asarray(MOONS_STD) * y
    return _log_mix_gaussians(x, _MOONS_CENTRES, _MOONS_LOG_WEIGHTS, 0.1) + _MOONS_LOG_JACOBIAN


# -- eight Gaussians ------------------------------------------------------------------
# FFJORD: centre 4(cos kπ/4, sin kπ/4) + 0.5 N(0, I), then everything divided by 1.414.
_RING_SCALE = 1.414
# −∫ p log p by tensor-product quadrature in float64 (3000² points on [−7, 7]²; converged to
# 1e−12 between grids).  Well-separated components would give log 8 + log(2πe·0.5²/1.414²)
# = 2.83818; the small overlap lowers it by 0.0063.
EIGHT_GAUSSIANS_ENTROPY = 2.8318804061372


def _eight_gaussians_mixture() -> GaussianMixture:
    angles = np.arange(8) * np.pi / 4
    means = 4.0 * np.stack([np.cos(angles), np.sin(angles)], -1) / _RING_SCALE
    return GaussianMixture.diagonal(np.ones(8), means, 0.5 / _RING_SCALE)


# -- checkerboard ---------------------------------------------------------------------
def _checkerboard(key, n):
    """FFJORD's checkerboard: ``x1 ~ U(−2, 2)``, ``x2 = U(0,1) − 2·randint{0,1} + (⌊x1⌋ mod 2)``, times 2.

    Uniform on 8 squares of side 2 in ``[−4, 4]²`` (total area 32).
    """
    k1, k2, k3 = jax.random.split(key, 3)
    x1 = jax.random.uniform(k1, (n,), minval=-2.0, maxval=2.0)
    x2 = jax.random.uniform(k2, (n,)) - 2.0 * jax.random.randint(k3, (n,), 0, 2) + jnp.floor(x1) % 2
    return 2.0 * jnp.stack([x1, x2], -1)


CHECKERBOARD_AREA = 32.0


def _checkerboard_log_prob(x):
    """``−log 32`` on the squares (``x ∈ [−4, 4)²`` with ``⌊x1/2⌋ + ⌊x2/2⌋`` even), ``−inf`` elsewhere."""
    inside = jnp.all((x >= -4.0) & (x < 4.0)) & (jnp.sum(jnp.floor(x / 2.0)) % 2 == 0)
    return jnp.where(inside, -jnp.log(CHECKERBOARD_AREA), -jnp.inf)


# -- sets without a closed-form density -----------------------------------------------
def _two_spirals(key, n):
    """FFJORD's 2spirals: ``r = 3π sqrt(U)``, arm ``(−r cos r + U/2, r sin r + U/2)``, random sign, ``/3 + 0.1 N``."""
    kr, ku, ks, kz = jax.random.split(key, 4)
    r = jnp.sqrt(jax.random.uniform(kr, (n, 1))) * (540.0 * 2.0 * jnp.pi / 360.0)
    arm = jnp.concatenate([-jnp.cos(r) * r, jnp.sin(r) * r], -1) + 0.5 * jax.random.uniform(ku, (n, 2))
    sign = jnp.where(jax.random.bernoulli(ks, 0.5, (n, 1)), 1.0, -1.0)
    return sign * arm / 3.0 + 0.1 * jax.random.normal(kz, (n, 2))


def _circles(key, n):
    """sklearn ``make_circles(factor=0.5, noise=0.08)`` times 3: radii 3 and 1.5, noise std 0.24."""
    ka, kb, kz = jax.random.split(key, 3)
    theta = jax.random.uniform(ka, (n,), maxval=2.0 * jnp.pi)
    radius = jnp.where(jax.random.bernoulli(kb, 0.5, (n, 1)), 1.0, 0.5)
    x = radius * jnp.stack([jnp.cos(theta), jnp.sin(theta)], -1) + 0.08 * jax.random.normal(kz, (n, 2))
    return 3.0 * x


def _pinwheel(key, n):
    """FFJORD's pinwheel: 5 arms, ``f ~ N((1, 0), diag(0.3², 0.1²))``, angle ``a = 2πk/5 + 0.25 exp(f_r)``, output ``2 fᵀR(a)``."""
    kl, kf = jax.random.split(key)
    label = jax.random.randint(kl, (n,), 0, 5)
    f = jax.random.normal(kf, (n, 2)) * jnp.array([0.3, 0.1]) + jnp.array([1.0, 0.0])
    a = 2.0 * jnp.pi * label / 5 + 0.25 * jnp.exp(f[:, 0])
    c, s = jnp.cos(a), jnp.sin(a)
    return 2.0 * jnp.stack([f[:, 0] * c + f[:, 1] * s, -f[:, 0] * s + f[:, 1] * c], -1)


def _swissroll(key, n):
    """sklearn ``make_swiss_roll(noise=1)`` coordinates (0, 2) over 5: ``t = 1.5π(1 + 2U)``, ``(t cos t, t sin t)/5 + 0.2 N``."""
    kt, kz = jax.random.split(key)
    t = 1.5 * jnp.pi * (1.0 + 2.0 * jax.random.uniform(kt, (n, 1)))
    return jnp.concatenate([t * jnp.cos(t), t * jnp.sin(t)], -1) / 5.0 + 0.2 * jax.random.normal(kz, (n, 2))


# The roll's density is a 1-D integral over its parameter, p(x) = (1/3π) ∫ N(x; c(t), 0.2² I) dt with
# c(t) = (t cos t, t sin t)/5 on [1.5π, 4.5π]: the midpoint rule on SWISSROLL_NODES points (spacing
# 0.0046 in t against a kernel width in t of at least 0.2·5/sqrt(1 + t²) ≥ 0.07) is spectrally accurate.
SWISSROLL_NODES = 2048
_SWISSROLL_T = 1.5 * np.pi * (1.0 + 2.0 * (np.arange(SWISSROLL_NODES) + 0.5) / SWISSROLL_NODES)
_SWISSROLL_CENTRES = np.stack([_SWISSROLL_T * np.cos(_SWISSROLL_T), _SWISSROLL_T * np.sin(_SWISSROLL_T)], -1) / 5.0
# −∫ p log p by the 2-D midpoint rule (h = 0.02 and 0.01 on [−4.5, 4.5]², float64, agree to 1e-12).
SWISSROLL_ENTROPY = 2.6696446


def _swissroll_log_prob(x):
    """``log (1/N) Σ_j N(x; c(t_j), 0.2² I)`` over the midpoint nodes ``t_j`` of ``[1.5π, 4.5π]``."""
    return _log_mix_gaussians(x, _SWISSROLL_CENTRES, -math.log(SWISSROLL_NODES), 0.2)


moons = _dataset("moons", _moons, _moons_log_prob, MOONS_ENTROPY)
eight_gaussians = gaussian_mixture(_eight_gaussians_mixture(), "eight_gaussians", EIGHT_GAUSSIANS_ENTROPY)
checkerboard = _dataset("checkerboard", _checkerboard, _checkerboard_log_prob, math.log(CHECKERBOARD_AREA))
two_spirals = _dataset("two_spirals", _two_spirals)
circles = _dataset("circles", _circles)
pinwheel = _dataset("pinwheel", _pinwheel)
swissroll = _dataset("swissroll", _swissroll, _swissroll_log_prob, SWISSROLL_ENTROPY)

DATASETS: dict[str, ToyDataset] = {
    ds.name: ds for ds in (moons, eight_gaussians, checkerboard, two_spirals, circles, pinwheel, swissroll)
}


def get(name: str) -> ToyDataset:
    """The toy data set called ``name``; a ``ValueError`` lists the valid names otherwise."""
    if name not in DATASETS:
        raise ValueError(f"unknown toy data set {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[name]
