"""Continuous normalizing flows trained by maximum likelihood (FFJORD; Grathwohl et al. 2019).

``dz/dt = f_θ(t, z)`` with data at ``t = 0`` and the base ``N(0, I)`` at ``t = 1`` (MATH.md §1, §6):

    log p(x) = log N(z(1); 0, I) + ∫_0^1 ∇·f_θ(t, z(t)) dt,    z(0) = x,

computed by :func:`genjax.likelihood.cnf_log_prob` (the same core as the interpolant models'
PF-ODE likelihood): exact divergence or Hutchinson's estimator with one probe per
trajectory, adaptive or fixed-step diffrax solvers, gradients by recursive checkpointing
(default) or the backsolve adjoint (Chen et al. 2018).  Sampling integrates ``z ~ N(0, I)``
from ``t = 1`` down to ``t = 0``.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import diffrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from ..likelihood import DIVERGENCES, PROBES, cnf_log_prob
from ..nets.mlp import TimeMLP
from .._checks import check_choice, check_positive_float, check_positive_int
from ..ode import SOLVERS, integrate, summarize
from .bijector import check_batch

__all__ = ["ADJOINTS", "CNF", "ffjord"]

ADJOINTS = {"recursive": diffrax.RecursiveCheckpointAdjoint, "backsolve": diffrax.BacksolveAdjoint}


@dataclasses.dataclass(frozen=True)
class CNF:
    """A CNF with vector field ``module.apply(params, t, z)`` (per sample) on events of ``event_shape``.

    Args:
      module: Flax module called as ``module(t, z)``, e.g. :class:`genjax.nets.TimeMLP`.
      divergence, probe: the training estimator of ``∇·f`` (``"hutchinson"``/``"exact"``,
        ``"rademacher"``/``"gaussian"``).
      solver, rtol, atol, num_steps, max_steps: the diffrax solve (``num_steps`` equal steps for
        fixed-step solvers, the first step ``1/num_steps`` for adaptive ones).
      adjoint: ``"recursive"`` (``diffrax.RecursiveCheckpointAdjoint``, exact gradients of the
        discrete solve) or ``"backsolve"`` (``diffrax.BacksolveAdjoint``, O(1) memory, gradients
        from a second ODE solve backwards in time).
      kinetic_weight, jacobian_weight: RNODE regularisation (Finlay et al. 2020) added to the
        training loss, ``λ_K E∫‖f‖² dt + λ_J E∫‖∂f/∂z‖_F² dt`` (0 disables it).
    """

    module: nn.Module
    event_shape: tuple[int, ...]
    divergence: str = "hutchinson"
    probe: str = "rademacher"
    solver: str = "tsit5"
    rtol: float = 1e-5
    atol: float = 1e-5
    num_steps: int = 20
    max_steps: int | None = None
    adjoint: str = "recursive"
    kinetic_weight: float = 0.0
    jacobian_weight: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "event_shape", tuple(int(s) for s in self.event_shape))
        check_choice(self.divergence, "divergence", DIVERGENCES)
        check_choice(self.probe, "probe", PROBES)
        check_choice(self.solver, "solver", SOLVERS)
        check_choice(self.adjoint, "adjoint", ADJOINTS)
        check_positive_int(self.num_steps, "num_steps")
        check_positive_float(self.rtol, "rtol")
        check_positive_float(self.atol, "atol")
        for name in ("kinetic_weight", "jacobian_weight"):
            if not (isinstance(getattr(self, name), (int, float)) and getattr(self, name) >= 0):
                raise ValueError(f"CNF: {name} must be a number >= 0, got {getattr(self, name)!r}")

    def _solver_kwargs(self):
        return dict(solver=self.solver, rtol=self.rtol, atol=self.atol, num_steps=self.num_steps,
                    max_steps=self.max_steps)

    def init(self, key, x):
        """Parameters of ``module`` (``x``: a batch ``(n, *event)`` that fixes the shapes)."""
        x = check_batch(x, self.event_shape, "x", allow_single=False)
        return self.module.init(key, jnp.zeros(()), x[0])

    def field(self, params):
        """The per-sample vector field ``f_θ(t, z)``."""
        return lambda t, z: self.module.apply(params, t, z)

    def log_prob(self, params, x, key=None, *, divergence: str = "exact", return_stats: bool = False,
                 regularization: bool = False):
        """``log p(x)`` for a batch ``(n, *event)``; exact divergence unless told otherwise (then ``key`` draws probes).

        ``regularization`` adds the per-row RNODE integrals to the stats (see :func:`genjax.cnf_log_prob`).
        """
        x = check_batch(x, self.event_shape, "x", allow_single=False)
        check_choice(divergence, "divergence", DIVERGENCES)
        return cnf_log_prob(self.field(params), x, key, t0=0.0, t1=1.0, divergence=divergence, probe=self.probe,
                            adjoint=ADJOINTS[self.adjoint](), return_stats=return_stats,
                            regularization=regularization, **self._solver_kwargs())

    def sample(self, params, key, n: int, *, return_stats: bool = False):
        """``n`` draws: ``z ~ N(0, I)`` integrated from ``t = 1`` to ``t = 0``; ``stats["nfe"]`` if asked."""
        n = check_positive_int(n, "n")
        field = self.field(params)
        z = jax.random.normal(key, (n, *self.event_shape))
        solve = lambda z1: integrate(lambda t, y, args: field(t, y), z1, 1.0, 0.0, **self._solver_kwargs())  # noqa: E731
        x, stats = jax.vmap(solve)(z)
        return (x, summarize(stats)) if return_stats else x

    def loss(self, params, batch, key):
        """Training loss for ``genjax.fit``: ``(mean −log p + RNODE terms, {"nll", "nfe", ...})``.

        ``nfe`` counts forward evaluations of the augmented field (the batch's maximum); with
        RNODE weights the aux also holds the batch means ``kinetic`` and ``jacobian_frobenius``.
        """
        regularize = self.kinetic_weight > 0 or self.jacobian_weight > 0
        log_prob, stats = self.log_prob(params, batch, key, divergence=self.divergence, return_stats=True,
                                        regularization=regularize)
        nll = -jnp.mean(log_prob)
        aux = {"nll": nll, "nfe": stats["nfe"]}
        if not regularize:
            return nll, aux
        aux["kinetic"] = jnp.mean(stats["kinetic"])
        aux["jacobian_frobenius"] = jnp.mean(stats["jacobian_frobenius"])
        return nll + self.kinetic_weight * aux["kinetic"] + self.jacobian_weight * aux["jacobian_frobenius"], aux


def ffjord(dim: int, hidden: Sequence[int] = (64, 64, 64), *, num_frequencies: int = 4, max_frequency: float = 4.0,
           **options) -> CNF:
    """An FFJORD CNF on vectors ``(dim,)`` with a :class:`genjax.nets.TimeMLP` field.

    Low time frequencies keep ``f_θ`` smooth in ``t`` (so adaptive solvers take few steps);
    ``options`` are :class:`CNF` fields (divergence, solver, adjoint, ...).
    """
    dim = check_positive_int(dim, "dim")
    module = TimeMLP(tuple(hidden), out_dim=dim, num_frequencies=num_frequencies, max_frequency=max_frequency)
    return CNF(module, (dim,), **options)
