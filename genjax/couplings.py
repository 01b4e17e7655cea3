"""Couplings of a batch ``(x0, x1)``: which ``x1`` each ``x0`` is trained with (MATH.md §11).

A coupling is a pure, jit-compatible function ``coupling(key, x0, x1) -> (x0, x1_paired)``
on batches ``(n, *event_shape)``.  It keeps ``x0`` in order and returns the ``x1`` paired
with each row.  The event axes are flattened for the cost, the raw squared distance

    C_ij = ‖x0_i − x1_j‖²          (neither halved nor normalised),

so entropic regularisations ``ε_ot`` are in the data's units squared.  The losses are
unchanged; only the pairs fed to them differ.  :func:`coupled_data` turns two samplers (or
arrays) and a coupling into the ``data(key, batch_size)`` callable of :func:`genjax.fit`.

Pairs that come with the data (e.g. reflow pairs ``(x0_i, x1_i)``) need no coupling: pass
the arrays ``(x0, x1)`` to ``fit``, which draws the same rows from both.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.optimize
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn as ott_sinkhorn

from .interpolants import Interpolant, bridge
from ._checks import check_choice, check_finite, check_positive_float, check_positive_int, float_batch

__all__ = [
    "Coupling",
    "Independent",
    "ExactOT",
    "Sinkhorn",
    "SchrodingerBridge",
    "SOLVERS",
    "AuctionOutput",
    "independent",
    "exact_ot",
    "sinkhorn",
    "schrodinger_bridge",
    "coupled_data",
    "squared_distances",
    "transport_cost",
]

Coupling = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
SOLVERS = ("device", "host", "auction")


def _check_pair(name: str, x0, x1, *, same_n: bool) -> None:
    """Shape checks (static, so they also run under ``jit``); ``same_n`` for one-to-one pairings."""
    for arg, x in (("x0", x0), ("x1", x1)):
        if np.ndim(x) < 2 or np.shape(x)[0] < 1:
            raise ValueError(f"{name}: {arg} must be a batch of shape (n, *event_shape) with n >= 1, "
                             f"got shape {np.shape(x)}")
        check_finite(f"{name}: {arg}", x)
    if np.shape(x0)[1:] != np.shape(x1)[1:]:
        raise ValueError(f"{name}: x0 and x1 must have the same event shape, got {np.shape(x0)[1:]} and "
                         f"{np.shape(x1)[1:]}")
    if same_n and np.shape(x0)[0] != np.shape(x1)[0]:
        raise ValueError(f"{name}: x0 and x1 must have the same number of rows (a one-to-one pairing), got "
                         f"n0={np.shape(x0)[0]} and n1={np.shape(x1)[0]}; the sinkhorn coupling allows n0 != n1")


def _flat(x) -> jax.Array:
    x = jnp.asarray(x)
    return x.reshape(x.shape[0], -1)


def squared_distances(x0, x1) -> jax.Array:
    """``C_ij = ‖x0_i − x1_j‖²`` over the flattened events, shape ``(n0, n1)``.

    Computed as ``‖x0_i‖² + ‖x1_j‖² − 2⟨x0_i, x1_j⟩`` (one full-precision matmul, no
    ``(n0, n1, d)`` intermediate) and clipped at 0.
    """
    a, b = _flat(x0), _flat(x1)
    cross = jnp.matmul(a, b.T, precision=jax.lax.Precision.HIGHEST)
    return jnp.maximum(jnp.sum(a * a, -1)[:, None] + jnp.sum(b * b, -1)[None, :] - 2.0 * cross, 0.0)


def transport_cost(x0, x1) -> jax.Array:
    """Mean squared displacement ``(1/n) Σ_i ‖x1_i − x0_i‖²`` of a pairing (MATH.md §11).

    On the linear path it is ``E‖x1 − x0‖² = PE + L*``; for exact-OT pairs it is the minibatch
    ``W2²``, which :func:`genjax.metrics.wasserstein2` computes (squared) from unpaired samples.
    """
    _check_pair("transport_cost", x0, x1, same_n=True)
    return jnp.mean(jnp.sum((_flat(x1) - _flat(x0)) ** 2, -1))


@dataclasses.dataclass(frozen=True)
class Independent:
    """The batch as given: ``x1`` was drawn independently of ``x0`` (I-CFM; Lipman et al. 2023)."""

    def __call__(self, key, x0, x1):
        _check_pair("independent", x0, x1, same_n=True)
        return x0, x1


_hungarian = jax.jit(optax.assignment.hungarian_algorithm)  # compiled once per shape, also when called eagerly


def _host_assignment(cost: np.ndarray) -> np.ndarray:
    return scipy.optimize.linear_sum_assignment(cost)[1].astype(np.int32)


class AuctionOutput(NamedTuple):
    """Result of :meth:`ExactOT.auction`."""

    assignment: jax.Array  # π, int32 (n,): row i is assigned column π[i]; always a permutation
    prices: jax.Array  # final column prices p_j (of the row- and column-reduced cost)
    epsilon: jax.Array  # final ε (absolute, units of C): Σ_i C_iπ(i) ≤ optimum + n·ε when converged
    n_iters: jax.Array  # bidding rounds over all ε phases
    converged: jax.Array  # False if max_iterations stopped it (unassigned rows were then filled greedily)


_AUCTION_START = 32.0  # ε_0 = max C̃ / 32
_AUCTION_FACTOR = 4.0  # ε_{k+1} = ε_k / 4
_AUCTION_FLOOR = 2.0**-19  # ε ≥ 2⁻¹⁹ max C̃: 16 float32 ulps of max C̃, so every bid moves a price


def _top2(v: jax.Array, rows: jax.Array):
    """Per row of ``v`` (s, n): ``j1 = argmin``, its value ``w1`` and the second-smallest value ``w2``.

    Exact ties go to the tied ``j`` of least ``j XOR rows[r]`` (a per-row order of the columns), so that
    rows with equal values spread over the tied columns instead of all bidding for the first one.
    """
    n = v.shape[1]
    w1 = v.min(1)
    j1 = jnp.min(jnp.where(v == w1[:, None], jnp.arange(n)[None, :] ^ rows[:, None], 2 * n), 1) ^ rows
    w2 = jnp.min(jnp.where(jnp.arange(n)[None, :] == j1[:, None], jnp.inf, v), 1)
    return j1, w1, w2


def _bid_round(c: jax.Array, size: int):
    """One Jacobi round: the (at most ``size``) unassigned rows bid at once, each object takes its highest bid.

    Row ``i`` bids for ``j1 = argmin_j (c_ij + p_j)``, raising ``p_j1`` by ``w2 − w1 + ε ≥ ε`` (so that
    ``j1`` stays its ε-best object); the winner displaces ``j1``'s owner, who joins the queue.
    """
    n = c.shape[0]

    def round_(p, owner, row_col, queue, k, eps):
        if size == n:  # all rows in index order (the queue is only needed for the smaller sizes)
            bidders, valid, values = jnp.arange(n), row_col < 0, c + p[None, :]
        else:
            bidders, valid = queue[:size], jnp.arange(size) < k
            values = jnp.take(c, jnp.where(valid, bidders, 0), axis=0) + p[None, :]
        j1, w1, w2 = _top2(values, bidders)
        bid = p[j1] + (w2 - w1) + eps
        target = jnp.where(valid, j1, n)
        best = jnp.full(n, -jnp.inf, p.dtype).at[target].max(bid, mode="drop")
        won = valid & (bid == best[j1])
        first = jnp.full(n, n).at[jnp.where(won, j1, n)].min(bidders, mode="drop")  # equal bids: lowest row
        won = won & (first[j1] == bidders)
        target = jnp.where(won, j1, n)
        displaced = owner.at[target].get(mode="fill", fill_value=-1)
        row_col = row_col.at[jnp.where(displaced >= 0, displaced, n)].set(-1, mode="drop")
        row_col = row_col.at[jnp.where(won, bidders, n)].set(j1, mode="drop")
        owner = owner.at[target].set(bidders, mode="drop")
        p = p.at[target].set(bid, mode="drop")
        waiting = jnp.where(won, displaced, jnp.where(valid, bidders, -1))  # unassigned after this round
        slot = jnp.cumsum(waiting >= 0) - 1
        queue = queue.at[jnp.where(waiting >= 0, slot, n)].set(waiting, mode="drop")
        return p, owner, row_col, queue, slot[-1] + 1

    return round_


@jax.jit  # compiled once per shape, also when called eagerly
def _auction(cost: jax.Array, relative_epsilon, max_iterations) -> AuctionOutput:
    n = cost.shape[0]
    if n == 1:
        return AuctionOutput(jnp.zeros(1, jnp.int32), jnp.zeros(1, cost.dtype), jnp.zeros((), cost.dtype),
                             jnp.zeros((), jnp.int32), jnp.ones((), bool))
    c = cost - cost.min(1, keepdims=True)  # same optimal π; values near 0 keep float32 resolution
    c = c - c.min(0, keepdims=True)
    scale = jnp.where(c.max() > 0, c.max(), 1.0)
    eps_final = jnp.maximum(relative_epsilon * c.mean() / n, _AUCTION_FLOOR * scale)
    sizes = [n]  # bidder-set sizes n, n/2, ..., 1: a round costs O(size·n)
    while sizes[-1] > 1:
        sizes.append(sizes[-1] // 2)
    rounds, bounds = [_bid_round(c, s) for s in sizes[::-1]], jnp.array(sizes[:0:-1])

    def bid(state):
        p, owner, row_col, queue, k, eps, it = state
        branch = jnp.searchsorted(bounds, k)  # the smallest size >= k
        return (*jax.lax.switch(branch, rounds, p, owner, row_col, queue, k, eps), eps, it + 1)

    def phase(state):
        p, _, _, _, _, eps, it, _ = state
        empty = jnp.full(n, -1)
        start = (p - p.min(), empty, empty, jnp.arange(n), jnp.asarray(n), eps, it)
        p, owner, row_col, queue, k, _, it = jax.lax.while_loop(
            lambda s: (s[4] > 0) & (s[6] < max_iterations), bid, start)
        return p, owner, row_col, queue, k, jnp.maximum(eps / _AUCTION_FACTOR, eps_final), it, eps <= eps_final

    empty = jnp.full(n, -1)
    state = (jnp.zeros(n, c.dtype), empty, empty, jnp.arange(n), jnp.asarray(n),
             jnp.maximum(scale / _AUCTION_START, eps_final), jnp.asarray(0), jnp.asarray(False))
    p, owner, row_col, _, k, _, it, final = jax.lax.while_loop(
        lambda s: ~(s[7] & (s[4] == 0)) & (s[6] < max_iterations), phase, state)
    free_rows = jnp.nonzero(row_col < 0, size=n, fill_value=n)[0]  # only if stopped by max_iterations
    free_cols = jnp.nonzero(owner < 0, size=n, fill_value=n)[0]
    row_col = row_col.at[free_rows].set(free_cols, mode="drop")
    return AuctionOutput(row_col.astype(jnp.int32), p, eps_final, it, final & (k == 0))


@dataclasses.dataclass(frozen=True)
class ExactOT:
    """Minibatch exact OT (Pooladian et al. 2023; Tong et al. 2023, OT-CFM).

    Pairs ``x0_i`` with ``x1_π(i)``, ``π = argmin_π Σ_i C_iπ(i)`` over permutations (the
    optimal assignment of ``C``; it needs ``n0 = n1``).  All solvers take the float32 ``C``;
    deterministic, the key is unused.

    * ``"device"``: ``optax.assignment.hungarian_algorithm`` inside the compiled step.
    * ``"host"``: scipy's ``linear_sum_assignment`` through ``jax.pure_callback`` (torchcfm's
      CPU-side solver; a host round trip per batch on an accelerator).
    * ``"auction"``: Bertsekas' auction with ε-scaling in the compiled step (:meth:`auction`);
      its Jacobi rounds are data-parallel (the other two solvers are sequential), the one of the
      three suited to a GPU.  Its ``π`` is optimal up to ``n·ε`` (see :meth:`auction`).  On a
      2-core CPU (benchmarks/couplings.py) it beat the device Hungarian at n = 256 and 1024 and
      scipy from n = 1024 on, but not at n = 256, so ``"device"`` stays the default.

    ``auction_epsilon`` (relative final ε) and ``max_iterations`` only concern ``"auction"``.
    """

    solver: str = "device"
    auction_epsilon: float = 1e-3
    max_iterations: int = 1_000_000

    def __post_init__(self):
        check_choice(self.solver, "exact_ot: solver", SOLVERS)
        check_positive_float(self.auction_epsilon, "exact_ot: auction_epsilon")
        check_positive_int(self.max_iterations, "exact_ot: max_iterations")

    def auction(self, cost) -> AuctionOutput:
        """Min-cost assignment of ``cost`` (n, n) by the forward auction with ε-scaling.

        Bertsekas, "The auction algorithm: a distributed relaxation method for the assignment
        problem" (Ann. Oper. Res. 1988); ε-scaling: Bertsekas & Eckstein, "Dual coordinate step
        methods for linear network flow problems" (Math. Prog. 1988).  On ``C̃`` (``C`` minus its
        row, then column minima; same optimal π) with column prices ``p``, every unassigned row
        ``i`` bids at once (Jacobi) for ``j1 = argmin_j C̃_ij + p_j``, raising ``p_j1`` by
        ``w2 − w1 + ε`` (best and second-best ``C̃_ij + p_j``); each object goes to its highest
        bid, its former owner becomes unassigned.  Every assigned pair is ε-complementary slack,
        ``C̃_iπ(i) + p_π(i) ≤ min_j (C̃_ij + p_j) + ε``, so the final π satisfies

            Σ_i C_iπ(i) ≤ min_σ Σ_i C_iσ(i) + n·ε_final.

        ε-scaling: phases from ``ε_0 = max C̃/32``, ``ε ← ε/4`` down to
        ``ε_final = max(auction_epsilon·mean C̃/n, 2⁻¹⁹·max C̃)``; each phase restarts the
        assignment and keeps the prices (shifted to min 0).  The float32 floor ``2⁻¹⁹·max C̃`` (so a bid always
        moves a price) is the larger term for n ≳ 100 on 2-D data; on random 2-D clouds of
        n ≤ 256 the result has equalled scipy's optimum.  Rounds process only the queued
        unassigned rows, in bidder sets of size n, n/2, ..., 1 (``lax.switch``; under ``vmap``
        all sizes run each round).  ``max_iterations`` bounds the rounds of all phases; when it
        stops the auction, ``converged`` is False and the unassigned rows take the free columns
        in index order, so π is still a permutation, but not ε-optimal.
        """
        cost = jnp.asarray(cost)
        cost = cost.astype(jnp.promote_types(cost.dtype, jnp.float32))
        if cost.ndim != 2 or cost.shape[0] != cost.shape[1]:
            raise ValueError(f"exact_ot: the auction needs a square cost matrix, got shape {cost.shape}")
        return _auction(cost, self.auction_epsilon, self.max_iterations)

    def assignment(self, cost) -> jax.Array:
        """``π`` as an int32 array: row ``i`` is assigned column ``π[i]``."""
        if self.solver == "host":
            spec = jax.ShapeDtypeStruct(cost.shape[:1], jnp.int32)
            return jax.pure_callback(_host_assignment, spec, cost, vmap_method="sequential")
        if self.solver == "auction":
            return self.auction(cost).assignment
        rows, cols = _hungarian(cost)
        return jnp.zeros(cost.shape[0], jnp.int32).at[rows].set(cols.astype(jnp.int32))

    def __call__(self, key, x0, x1):
        _check_pair("exact_ot", x0, x1, same_n=True)
        perm = self.assignment(jax.lax.stop_gradient(squared_distances(x0, x1)))
        return x0, jnp.take(x1, perm, axis=0)


def _check_sinkhorn_options(name: str, threshold, max_iterations) -> None:
    check_positive_float(threshold, f"{name}: threshold")
    check_positive_int(max_iterations, f"{name}: max_iterations")


@dataclasses.dataclass(frozen=True)
class Sinkhorn:
    """Entropic OT pairs (Cuturi 2013; Tong et al. 2023): each ``x0_i`` gets ``x1_j``, ``j ~ P_i·/a_i``.

    ``P = argmin ⟨P, C⟩ − ε H(P)`` with uniform marginals ``a = 1/n0``, ``b = 1/n1``, solved by
    ott-jax's log-domain Sinkhorn with the absolute ``ε`` (in the units of ``C``):
    ``P_ij = exp((f_i + g_j − C_ij)/ε)``.  Iterations stop once the column marginal is within
    ``threshold`` of ``b`` in L1 (the row marginal is exact after the last update) or after
    ``max_iterations``, whose plan is then used as it is.  One ``j`` is drawn per row, so every
    ``x0`` appears once and ``x1`` keeps its law on average (``Σ_i a_i P_ij/a_i = b_j``).
    ``ε → 0``: exact OT; ``ε → ∞``: independent pairs.
    """

    epsilon: float
    threshold: float = 1e-3
    max_iterations: int = 2000

    def __post_init__(self):
        check_positive_float(self.epsilon, "sinkhorn: epsilon")
        _check_sinkhorn_options("sinkhorn", self.threshold, self.max_iterations)

    def solve(self, x0, x1):
        """ott-jax's ``SinkhornOutput`` (``.f``, ``.g``, ``.matrix`` = P, ``.converged``, ``.n_iters``)."""
        _check_pair("sinkhorn", x0, x1, same_n=False)
        return _sinkhorn_solve(self, *jax.lax.stop_gradient((_flat(x0), _flat(x1))))

    def plan(self, x0, x1) -> jax.Array:
        """The entropic plan ``P``, shape ``(n0, n1)``, summing to 1."""
        return self.solve(x0, x1).matrix

    def __call__(self, key, x0, x1):
        out = self.solve(x0, x1)
        logits = (out.g[None, :] - out.geom.cost_matrix) / self.epsilon  # log P_ij up to a per-row constant
        cols = jax.random.categorical(key, logits, axis=-1)
        return x0, jnp.take(x1, cols, axis=0)


@functools.partial(jax.jit, static_argnums=0)  # compiled once per shape, also when called eagerly
def _sinkhorn_solve(coupling: Sinkhorn, x0, x1):
    geom = pointcloud.PointCloud(x0, x1, epsilon=coupling.epsilon, relative_epsilon=None, scale_cost=1.0)
    solver = ott_sinkhorn.Sinkhorn(lse_mode=True, threshold=coupling.threshold, max_iterations=coupling.max_iterations)
    return solver(linear_problem.LinearProblem(geom))


@dataclasses.dataclass(frozen=True)
class SchrodingerBridge:
    """SB-CFM pairs (Tong et al. 2023, "Simulation-free Schrödinger bridges via score and flow matching").

    The Schrödinger bridge with reference ``σW`` has the endpoint coupling of entropic OT at
    ``ε = 2σ²`` (reference endpoint law ∝ ``exp(−‖x1 − x0‖²/(2σ²))``; torchcfm's
    ``reg=2*sigma**2``): :class:`Sinkhorn` at that ``ε``.  Train with the bridge interpolant
    ``x_t = (1 − t) x0 + t x1 + σ sqrt(t(1 − t)) z`` of the same ``sigma`` (:attr:`interpolant`);
    its SDE is the forward/backward SDE of MATH.md §10 with ``ε = σ²/2`` (:attr:`diffusion`).
    """

    sigma: float
    threshold: float = 1e-3
    max_iterations: int = 2000

    def __post_init__(self):
        check_positive_float(self.sigma, "schrodinger_bridge: sigma")
        _check_sinkhorn_options("schrodinger_bridge", self.threshold, self.max_iterations)

    @property
    def epsilon(self) -> float:
        return 2.0 * self.sigma**2

    @functools.cached_property
    def interpolant(self) -> Interpolant:
        """The Brownian bridge ``x_t = (1 − t) x0 + t x1 + σ sqrt(t(1 − t)) z`` (``genjax.interpolants.bridge``)."""
        return bridge(path="linear", gamma="brownian", a=self.sigma**2)

    @property
    def diffusion(self) -> float:
        """``ε = σ²/2``: the bridge SDE ``dX = [b ± ε s] dt + σ dW``."""
        return 0.5 * self.sigma**2

    @property
    def entropic(self) -> Sinkhorn:
        return Sinkhorn(self.epsilon, threshold=self.threshold, max_iterations=self.max_iterations)

    def solve(self, x0, x1):
        return self.entropic.solve(x0, x1)

    def plan(self, x0, x1) -> jax.Array:
        return self.entropic.plan(x0, x1)

    def __call__(self, key, x0, x1):
        return self.entropic(key, x0, x1)


def independent() -> Independent:
    """The identity coupling: independent draws of ``x0`` and ``x1`` stay as they are."""
    return Independent()


def exact_ot(solver: str = "device", *, auction_epsilon: float = 1e-3, max_iterations: int = 1_000_000) -> ExactOT:
    """Minibatch exact-OT pairs (:class:`ExactOT`); ``solver``: ``"device"`` (Hungarian, in jit), ``"host"``
    (scipy) or ``"auction"`` (ε-scaled auction, in jit)."""
    return ExactOT(solver, auction_epsilon, max_iterations)


def sinkhorn(epsilon: float, *, threshold: float = 1e-3, max_iterations: int = 2000) -> Sinkhorn:
    """Entropic-OT pairs at absolute regularisation ``epsilon`` (units of ``C``; :class:`Sinkhorn`)."""
    return Sinkhorn(epsilon, threshold, max_iterations)


def schrodinger_bridge(sigma: float, *, threshold: float = 1e-3, max_iterations: int = 2000) -> SchrodingerBridge:
    """SB-CFM pairs: entropic OT at ``ε = 2σ²`` (:class:`SchrodingerBridge`)."""
    return SchrodingerBridge(sigma, threshold, max_iterations)


def _sampler(source, name: str) -> Callable[[jax.Array, int], jax.Array]:
    """``source`` if it is a sampler ``(key, n) -> (n, *event)``, else rows of the array drawn with replacement."""
    if callable(source):
        return source
    x = float_batch(source, name)
    return lambda key, n: jnp.take(x, jax.random.randint(key, (n,), 0, x.shape[0]), axis=0)


def coupled_data(sample_x0, sample_x1, coupling: Coupling, *, ot_batch_size: int | None = None):
    """``data(key, batch_size) -> (x0, x1)`` of coupled pairs for :func:`genjax.fit` / ``train_interpolant``.

    ``sample_x0`` and ``sample_x1`` are samplers ``(key, n) -> (n, *event)`` (e.g. a toy set's
    ``.sample``, or ``lambda k, n: jax.random.normal(k, (n, d))`` for a Gaussian prior) or
    arrays ``(N, *event)``, whose rows are drawn uniformly with replacement (the array becomes
    a constant of the compiled step).  Each call draws ``m = ot_batch_size or batch_size``
    from each, couples them with ``coupling(key, x0, x1)`` and returns ``batch_size`` of the
    ``m`` pairs, chosen at random without replacement (all of them when ``m = batch_size``).
    jax-traceable; ``batch_size`` must be a Python int.
    """
    if not callable(coupling):
        raise ValueError(f"coupled_data: coupling must be a callable coupling(key, x0, x1) -> (x0, x1), "
                         f"e.g. genjax.couplings.exact_ot(), got {coupling!r:.80}")
    if ot_batch_size is not None:
        check_positive_int(ot_batch_size, "coupled_data: ot_batch_size")
    draw_x0, draw_x1 = _sampler(sample_x0, "coupled_data: sample_x0"), _sampler(sample_x1, "coupled_data: sample_x1")

    def data(key, batch_size: int):
        batch_size = operator.index(batch_size)
        m = ot_batch_size or batch_size
        if m < batch_size:
            raise ValueError(f"coupled_data: ot_batch_size={ot_batch_size} must be >= the training batch_size="
                             f"{batch_size} (the batch is a subset of the coupled pairs)")
        k0, k1, k_couple, k_subset = jax.random.split(key, 4)
        x0, x1 = draw_x0(k0, m), draw_x1(k1, m)
        for arg, x in (("sample_x0", x0), ("sample_x1", x1)):
            if np.ndim(x) < 2 or np.shape(x)[0] != m:
                raise ValueError(f"coupled_data: {arg}(key, {m}) must return shape ({m}, *event_shape), "
                                 f"got {np.shape(x)}")
        x0, x1 = coupling(k_couple, x0, x1)
        if m > batch_size:
            rows = jax.random.choice(k_subset, m, (batch_size,), replace=False)
            x0, x1 = jnp.take(x0, rows, axis=0), jnp.take(x1, rows, axis=0)
        return x0, x1

    return data
