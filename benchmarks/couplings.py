"""Training throughput with minibatch couplings (MATH.md §11) against independent CFM, in one run.

Model: the flow-matching loss (``interpolants.linear``, velocity target) on a 2→256×3→2
``TimeMLP`` with Adam, trained by ``genjax.fit`` on ``couplings.coupled_data``: x0 (t = 0) from
``moons``, x1 (t = 1) from N(0, I) (or ``eight_gaussians`` with ``--source``).  Per batch
size, each coupling trains two compiled calls of ``--steps`` steps; the second is timed (the
first call of a compiled program runs ~1.5× slower; compilation is never timed):

* independent CFM (the reference of every ratio);
* exact OT, ``solver="device"``: ``optax.assignment.hungarian_algorithm`` inside the step;
* exact OT, ``solver="host"``: scipy's ``linear_sum_assignment`` through ``jax.pure_callback``,
  the CPU-side solver of torchcfm's OT-CFM (the anchor);
* exact OT, ``solver="auction"``: Bertsekas' ε-scaled Jacobi auction inside the step;
* Sinkhorn (ott-jax, in the step) at ``--epsilon``;
* SB-CFM pairs (entropic OT at ε = 2σ², ``--sigma``), trained here on the same linear path.

Also reported per coupling: the time of the coupling alone on one batch (jitted, best of 3),
the mean ``‖x1 − x0‖²`` of its pairs, and the solver's iterations (Sinkhorn iterations, auction
bidding rounds).  A second table times the three exact-OT solvers alone on batches of
``--assignment-sizes`` (best of 3; one timed call above n = 1024; the device Hungarian only up
to ``--hungarian-max-n``).

    python benchmarks/couplings.py [--steps 20] [--batch-sizes 256 1024]   # writes runs/couplings/
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax import couplings, interpolants, report
from genjax.data import toy
from genjax.nets import TimeMLP
from genjax.train import TrainState, fit, interpolant_objective

COLUMNS = ["batch", "coupling", "steps/s", "ratio to independent", "coupling ms", "E|x1-x0|^2", "iterations"]
SOLVER_COLUMNS = ["n", "solver", "coupling ms", "ratio to host", "E|x1-x0|^2", "iterations"]


@dataclasses.dataclass(frozen=True)
class Config(report.RunConfig):
    steps: int = 20
    """Timed training steps per coupling and batch size (one compiled call, after a warm-up call as long)."""
    batch_sizes: tuple[int, ...] = (256, 1024)
    """Training batch sizes (the OT batch is the training batch)."""
    epsilon: float = 0.1
    """Absolute entropic regularisation of the Sinkhorn coupling (units of ‖x0 − x1‖²)."""
    sigma: float = 0.5
    """SB-CFM σ (entropic OT at ε = 2σ²)."""
    source: Literal["normal", "eight_gaussians"] = "normal"
    """Distribution of x1 (t = 1): N(0, I) or the eight Gaussians."""
    assignment_sizes: tuple[int, ...] = (256, 1024, 4096)
    """Batch sizes of the exact-OT solver table (the coupling alone, no training)."""
    hungarian_max_n: int = 1024
    """Largest batch the device Hungarian is timed at in that table (O(n³), sequential)."""

    def __post_init__(self):
        report.check_positive(self, "steps", "batch_sizes", "epsilon", "sigma", "assignment_sizes", "hungarian_max_n")


def best_ms(fn, *args, repeats: int = 3) -> float:
    """Best of ``repeats`` timed calls of the compiled ``fn`` (after one warm-up call), in ms."""
    jax.block_until_ready(fn(*args))
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best


def iterations(coupling, x0, x1) -> int | None:
    """Sinkhorn iterations or auction bidding rounds of ``coupling`` on ``(x0, x1)``; None for the others."""
    if hasattr(coupling, "solve"):
        return int(coupling.solve(x0, x1).n_iters)
    if getattr(coupling, "solver", None) == "auction":
        return int(coupling.auction(couplings.squared_distances(x0, x1)).n_iters)
    return None


def solver_table(cfg: Config, sample_x0, sample_x1) -> list[dict]:
    """The exact-OT solvers alone on one batch per size (jitted; compilation untimed)."""
    rows = []
    for n in cfg.assignment_sizes:
        key = jax.random.key(cfg.seed + n)
        x0, x1 = sample_x0(jax.random.fold_in(key, 0), n), sample_x1(jax.random.fold_in(key, 1), n)
        host_ms = None
        for solver in ("host", "auction", "device"):
            if solver == "device" and n > cfg.hungarian_max_n:
                continue
            coupling = couplings.exact_ot(solver)
            paired = jax.jit(coupling)
            ms = best_ms(paired, None, x0, x1, repeats=3 if n <= 1024 else 1)
            host_ms = host_ms or ms
            rows.append({"n": n, "solver": solver, "coupling ms": ms, "ratio to host": ms / host_ms,
                         "E|x1-x0|^2": float(couplings.transport_cost(*paired(None, x0, x1))),
                         "iterations": iterations(coupling, x0, x1)})
            print(report.markdown_table(rows[-1:], SOLVER_COLUMNS), flush=True)
    return rows


def steps_per_s(loss_fn, params, key, data, batch: int, steps: int) -> tuple[float, float]:
    """``(steps/s, compile s)`` of ``genjax.fit``'s second compiled call of ``steps`` steps (the first warms up)."""
    with tempfile.TemporaryDirectory() as tmp:
        records = Path(tmp) / "metrics.jsonl"
        _, hist = fit(loss_fn, TrainState.create(params, optax.adam(1e-3), key), data, num_steps=2 * steps,
                      batch_size=batch, steps_per_call=steps, metrics_path=records, progress=False)
        last = json.loads(records.read_text().splitlines()[-1])
    return last["steps_per_s"], hist["compile_s"]


def main(cfg: Config):
    out = report.output_dir(__file__, cfg.out)
    sample_x0 = toy.get("moons").sample
    sample_x1 = (toy.get("eight_gaussians").sample if cfg.source == "eight_gaussians"
                 else lambda key, n: jax.random.normal(key, (n, 2)))
    methods = {
        "independent": couplings.independent(),
        "exact OT (device Hungarian)": couplings.exact_ot("device"),
        "exact OT (host scipy, torchcfm-style)": couplings.exact_ot("host"),
        "exact OT (device auction)": couplings.exact_ot("auction"),
        f"Sinkhorn (ε={cfg.epsilon:g})": couplings.sinkhorn(cfg.epsilon),
        f"SB-CFM (σ={cfg.sigma:g}, ε={2 * cfg.sigma**2:g})": couplings.schrodinger_bridge(cfg.sigma),
    }

    net = TimeMLP(hidden=(256, 256, 256))
    k_params, k_state, k_batch = jax.random.split(jax.random.key(cfg.seed), 3)
    params = net.init(k_params, jnp.zeros(()), jnp.zeros((2,)))
    loss_fn = interpolant_objective(net.apply, interpolants.linear, prediction="velocity")

    rows = []
    for batch in cfg.batch_sizes:
        x0, x1 = sample_x0(jax.random.fold_in(k_batch, 0), batch), sample_x1(jax.random.fold_in(k_batch, 1), batch)
        base = None  # independent CFM's steps/s, measured first
        for name, coupling in methods.items():
            rate, compile_s = steps_per_s(loss_fn, params, k_state,
                                          couplings.coupled_data(sample_x0, sample_x1, coupling), batch, cfg.steps)
            base = base or rate
            paired = jax.jit(coupling)
            rows.append({"batch": batch, "coupling": name, "steps/s": rate, "ratio to independent": rate / base,
                         "coupling ms": best_ms(paired, jax.random.key(0), x0, x1),
                         "E|x1-x0|^2": float(couplings.transport_cost(*paired(jax.random.key(0), x0, x1))),
                         "iterations": iterations(coupling, x0, x1), "compile_s": compile_s})
            print(report.markdown_table(rows[-1:], COLUMNS), flush=True)

    solvers = solver_table(cfg, sample_x0, sample_x1)
    table = report.markdown_table(rows, COLUMNS)
    solver_md = report.markdown_table(solvers, SOLVER_COLUMNS)
    print(f"device: {jax.devices()[0].device_kind}; x0 = moons, x1 = {cfg.source}; {cfg.steps} timed steps per run")
    print(table)
    print(solver_md)
    (out / "results.md").write_text(f"x0 = moons, x1 = {cfg.source}; {cfg.steps} timed steps per run; "
                                    f"device {jax.devices()[0].device_kind}\n\n{table}\n\n"
                                    f"Exact-OT solvers alone (one batch, jitted):\n\n{solver_md}\n")
    path = report.write_results(out, config=cfg, metrics={"rows": rows, "solvers": solvers})
    print(f"wrote {path} and {out / 'results.md'}")


if __name__ == "__main__":
    main(report.cli(Config, __doc__))
