"""The one diffrax core shared by the PF-ODE and SDE samplers, the likelihood and CNFs.

:func:`integrate` solves ``dy/dt = f(t, y, args)`` for one sample (vmap it for a batch) with a
solver given by name (:data:`SOLVERS`) or as a diffrax solver object, on ``num_steps`` equal
steps, an explicit time grid ``ts`` or adaptively (PID controller), optionally saving the
state at ``save_times``.  It never raises inside the trace: ``stats["result"]`` carries
diffrax's outcome and :func:`raise_on_failure` turns it into a clear error on the host.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["SOLVERS", "Solver", "resolve_solver", "integrate", "summarize", "raise_on_failure", "check_grid"]

ADAPTIVE_MAX_STEPS = 4096


class Solver(NamedTuple):
    """A diffrax solver, whether it is adaptive by default, and how many field evaluations it costs.

    ``nfe = initial_evals + evals_per_step · num_steps`` (diffrax's ``num_steps`` counts
    accepted and rejected steps).  Tsit5/Dopri5 are FSAL: 7 stages, the first evaluated once
    at ``t0`` and then reused from the previous step, so 6 new evaluations per step.  Checked
    against an exact call count in ``tests/test_samplers.py``.
    """

    make: Callable[[], diffrax.AbstractSolver]
    adaptive: bool
    evals_per_step: int
    initial_evals: int


SOLVERS = {
    "euler": Solver(diffrax.Euler, False, 1, 0),
    "heun": Solver(diffrax.Heun, False, 2, 0),
    "midpoint": Solver(diffrax.Midpoint, False, 2, 0),
    "tsit5": Solver(diffrax.Tsit5, True, 6, 1),
    "dopri5": Solver(diffrax.Dopri5, True, 6, 1),
}


def resolve_solver(solver) -> Solver:
    """A :class:`Solver` from a name in :data:`SOLVERS` or a diffrax explicit solver object.

    Explicit Runge–Kutta objects (``diffrax.Heun()``, ``Ralston()``, ``Bosh3()``, ``Dopri8()``, …)
    are counted from their Butcher tableau (``stages − fsal`` per step, ``fsal`` once) and
    are adaptive when the tableau has an error estimate; ``diffrax.Euler()`` costs 1.
    """
    if isinstance(solver, str):
        if solver not in SOLVERS:
            raise ValueError(f"solver={solver!r} is not a known solver; expected one of {tuple(SOLVERS)} "
                             "or a diffrax explicit solver object")
        return SOLVERS[solver]
    if isinstance(solver, diffrax.Euler):
        return Solver(lambda: solver, False, 1, 0)
    tableau = getattr(solver, "tableau", None)
    if isinstance(solver, diffrax.AbstractSolver) and isinstance(tableau, diffrax.ButcherTableau):
        stages, fsal = len(tableau.c) + 1, int(tableau.fsal)
        return Solver(lambda: solver, tableau.b_error is not None, stages - fsal, fsal)
    raise ValueError(f"solver must be a name in {tuple(SOLVERS)}, diffrax.Euler() or an explicit Runge–Kutta "
                     f"diffrax solver (one with a Butcher tableau, so its evaluations can be counted); got {solver!r}")


def check_grid(ts, name: str = "ts") -> np.ndarray:
    """A strictly monotone 1-D float grid with at least 2 finite times."""
    ts = np.asarray(ts, np.float64)
    if ts.ndim != 1 or ts.size < 2 or not np.all(np.isfinite(ts)):
        raise ValueError(f"{name} must be a 1-D sequence of at least 2 finite times, got {ts!r:.120}")
    steps = np.diff(ts)
    if not (np.all(steps > 0) or np.all(steps < 0)):
        raise ValueError(f"{name} must be strictly monotone, got {ts.tolist()!r:.200}")
    return ts


def integrate(vector_field, y0, t0, t1, *, solver="tsit5", num_steps=100, ts=None, rtol=1e-5, atol=1e-5,
              max_steps=None, stepsize_controller=None, save_times=None, args=None, adjoint=None, terms=None):
    """Solve ``dy/dt = vector_field(t, y, args)`` from ``t0`` to ``t1`` (either direction) with diffrax.

    Steps: ``ts`` (an explicit grid from ``t0`` to ``t1``, ``diffrax.StepTo``), else a fixed-step
    solver takes ``num_steps`` equal steps (the grid ``linspace(t0, t1, num_steps + 1)``), else an
    adaptive one uses ``stepsize_controller``
    (default ``PIDController(rtol, atol)``) starting from ``(t1 − t0)/num_steps``.  ``y`` may be
    any pytree; ``terms`` replaces ``ODETerm(vector_field)`` (e.g. an SDE's ``MultiTerm``).

    Returns ``(y(t1), stats)``; ``stats`` has ``nfe``, ``num_steps``, ``num_rejected_steps``,
    ``result`` (0 = success, 1 = ``max_steps`` reached, 2 = other failure) and, with
    ``save_times``, ``trajectory`` (``y`` at each save time, stacked on a leading axis).
    """
    spec = resolve_solver(solver)
    adaptive = ts is None and (stepsize_controller is not None or spec.adaptive)
    if adaptive:
        controller = stepsize_controller or diffrax.PIDController(rtol=rtol, atol=atol)
        dt0, steps = (t1 - t0) / num_steps, ADAPTIVE_MAX_STEPS
    elif ts is None and isinstance(adjoint, diffrax.BacksolveAdjoint):  # its reverse solve cannot reuse a grid
        controller, dt0, steps = diffrax.ConstantStepSize(), (t1 - t0) / num_steps, num_steps
    else:  # an explicit grid; equal steps as linspace, whose ends are exactly t0 and t1 (t0 + Δt may miss t1)
        ts = jnp.linspace(t0, t1, num_steps + 1) if ts is None else ts
        controller, dt0, steps = diffrax.StepTo(ts=ts), None, ts.shape[0] - 1
    max_steps = max_steps or steps
    save_ts = jnp.asarray([t1], jnp.result_type(float))
    if save_times is not None:
        save_ts = jnp.concatenate([jnp.asarray(save_times, save_ts.dtype), save_ts])
    sol = diffrax.diffeqsolve(
        terms or diffrax.ODETerm(vector_field), spec.make(), t0, t1, dt0, y0, args=args,
        stepsize_controller=controller, saveat=diffrax.SaveAt(ts=save_ts), max_steps=max_steps,
        adjoint=diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint, throw=False,
    )
    n = sol.stats["num_steps"]
    result = jnp.where(sol.result == diffrax.RESULTS.successful, 0,
                       jnp.where(sol.result == diffrax.RESULTS.max_steps_reached, 1, 2))
    stats = {
        "nfe": spec.initial_evals + spec.evals_per_step * n,
        "num_steps": n,
        "num_rejected_steps": sol.stats["num_rejected_steps"],
        "result": result,
    }
    if save_times is not None:
        stats["trajectory"] = jax.tree.map(lambda leaf: leaf[:-1], sol.ys)
    return jax.tree.map(lambda leaf: leaf[-1], sol.ys), stats


def summarize(stats: dict) -> dict:
    """Per-sample solver stats → ``nfe`` (max over the batch = batched calls of the model) and ``nfe_mean``."""
    per_sample = {k: v for k, v in stats.items() if k != "nfe"}
    return {"nfe": jnp.max(stats["nfe"]), "nfe_mean": jnp.mean(stats["nfe"]), **per_sample}


def raise_on_failure(stats: dict, where: str, max_steps) -> None:
    """Raise a ``RuntimeError`` naming the budget when an adaptive solve stopped early (host side)."""
    result = np.asarray(stats.get("result", 0))
    if np.any(result == 1):
        raise RuntimeError(
            f"{where}: the adaptive solver reached max_steps={max_steps or ADAPTIVE_MAX_STEPS} before the end of "
            f"the interval for {int(np.sum(result == 1))} of {result.size} samples; raise max_steps, loosen "
            "rtol/atol, or use a fixed-step solver (a model returning NaN/inf also makes it reject every step)"
        )
    if np.any(result == 2):
        raise RuntimeError(f"{where}: the ODE solver failed for {int(np.sum(result == 2))} of {result.size} samples")
