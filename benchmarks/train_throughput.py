"""Throughput of the compiled trainer against a per-step jitted loop, and against the matmul peak.

Model: the flow-matching loss on a 2→256×3→2 ``TimeMLP``, batch 256, Adam.  Measured in one
run on the same machine:

* ``fit`` (``steps_per_call`` steps per compiled ``lax.scan``) vs a Python loop calling a
  ``jax.jit``-ed single step (the usual hand-written loop), as a steps/s ratio;
* the step's FLOP count (XLA cost analysis) × steps/s vs this machine's float32 matmul
  throughput: the peak (a large square ``jnp.dot``) and the throughput of a matmul of the
  step's own shape (256 × 256 @ 256 × 256), which bounds what a batch-256 MLP step can reach.

    python benchmarks/train_throughput.py [--steps 3000] [--matmul-size 1024]   # writes runs/train_throughput/
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax import interpolants, report
from genjax.nets import TimeMLP
from genjax.nets.stats import compiled_flops
from genjax.train import TrainState, fit, interpolant_objective


@dataclasses.dataclass(frozen=True)
class Config(report.RunConfig):
    steps: int = 3000
    """Timed training steps per trainer."""
    steps_per_call: int = 1000
    """Steps per compiled call of genjax.fit."""
    batch_size: int = 256
    """Training batch size."""
    matmul_size: int = 1024
    """n of the n×n float32 matmul that measures the peak."""
    unroll: int = 4
    """Scan unroll of the second genjax.fit run."""

    def __post_init__(self):
        report.check_positive(self, "steps", "steps_per_call", "batch_size", "matmul_size", "unroll")


def matmul_flops_per_s(n: int, repeats: int = 20) -> float:
    """float32 ``n×n @ n×n`` throughput (2n³ FLOP per product), best of ``repeats`` timed batches."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    mm = jax.jit(lambda a, b: a @ b)
    mm(a, b).block_until_ready()
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        mm(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def main(cfg: Config):
    out = report.output_dir(__file__, cfg.out)

    net = TimeMLP(hidden=(256, 256, 256))
    k_params, k_data, k_state = jax.random.split(jax.random.key(cfg.seed), 3)
    params = net.init(k_params, jnp.zeros(()), jnp.zeros((2,)))
    tx = optax.adam(1e-3)
    data = jax.random.normal(k_data, (50_000, 2))
    loss_fn = interpolant_objective(net.apply, interpolants.linear, prediction="velocity")

    # Reference: a per-step jitted update driven from Python (one dispatch per step).
    @jax.jit
    def step(state: TrainState):
        key, k_idx, k_loss = jax.random.split(state.key, 3)
        batch = data[jax.random.randint(k_idx, (cfg.batch_size,), 0, data.shape[0])]
        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, k_loss)
        updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = jax.tree.map(lambda e, p: 0.999 * e + 0.001 * p, state.ema_params, params)
        return state.replace(params=params, opt_state=opt_state, ema_params=ema, step=state.step + 1, key=key), loss

    state = TrainState.create(params, tx, k_state)
    t0 = time.perf_counter()
    compiled = step.lower(state).compile()
    loop_compile = time.perf_counter() - t0
    flops = compiled_flops(compiled)
    s, _ = compiled(state)
    jax.block_until_ready(s)
    t0 = time.perf_counter()
    s = state
    for _ in range(cfg.steps):
        s, loss = compiled(s)
    jax.block_until_ready(s)
    loop_rate = cfg.steps / (time.perf_counter() - t0)

    # genjax.fit: many steps per compiled call (plain scan, then unrolled).
    rates = {}
    for unroll in (1, cfg.unroll):
        _, hist = fit(loss_fn, TrainState.create(params, tx, k_state), data, num_steps=cfg.steps,
                      batch_size=cfg.batch_size, steps_per_call=cfg.steps_per_call, unroll=unroll, progress=False)
        rates[unroll] = (hist["steps_per_s"], hist["compile_s"])
    peak = matmul_flops_per_s(cfg.matmul_size)
    same_shape = matmul_flops_per_s(cfg.batch_size)

    def row(name, rate, compile_s):
        return {"trainer": name, "steps/s": rate, "compile_s": compile_s, "GFLOP/s": flops * rate / 1e9,
                "of matmul peak": flops * rate / peak, "of same-shape matmul": flops * rate / same_shape}

    rows = [row("per-step jit loop", loop_rate, loop_compile)]
    rows += [row(f"genjax.fit (scan × {cfg.steps_per_call}, unroll {u})", *rates[u]) for u in rates]
    print(f"device: {jax.devices()[0].device_kind}; step = {flops / 1e6:.1f} MFLOP (XLA cost analysis); "
          f"float32 matmul: peak ({cfg.matmul_size}²) {peak / 1e9:.1f} GFLOP/s, "
          f"same shape ({cfg.batch_size}²) {same_shape / 1e9:.1f} GFLOP/s")
    print(report.markdown_table(rows, ["trainer", "steps/s", "compile_s", "GFLOP/s", "of matmul peak",
                                "of same-shape matmul"]))
    best = max(r for r, _ in rates.values())
    print(f"ratio fit / per-step loop = {rates[1][0] / loop_rate:.2f}× (unroll 1), {best / loop_rate:.2f}× (best)")
    path = report.write_results(out, config=cfg, metrics={
        "rows": rows, "step_flops": flops, "matmul_peak_flops_per_s": peak, "same_shape_flops_per_s": same_shape,
        "ratio_fit_over_loop": rates[1][0] / loop_rate})
    print(f"wrote {path}")


if __name__ == "__main__":
    main(report.cli(Config, __doc__))
