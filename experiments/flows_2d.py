"""Normalizing flows, a CNF and flow matching on 2-D toy data: test NLL, cost, densities, samples.

Models (all with base/prior N(0, I); data at t = 0 for the ODE models):

* RealNVP (Dinh et al. 2017): affine couplings, alternating masks, MLP conditioners;
* Glow-2D (Kingma & Dhariwal 2018): ActNorm → LU linear → affine coupling, per step;
* FFJORD (Grathwohl et al. 2019): CNF by maximum likelihood, Hutchinson divergence, Tsit5;
* flow matching (Lipman et al. 2023): ``linear`` interpolant, velocity target, evaluated by the
  PF-ODE likelihood (exact divergence) — the same ``cnf_log_prob`` core as FFJORD.

FFJORD and flow matching share the field network (a ``TimeMLP`` with 4 time frequencies up to 4,
smoother in t than ``TimeMLP``'s default of 8 frequencies up to 30; with 16 frequencies up to 1000
the field oscillated in t and Tsit5 needed ~1100 NFE per sample instead of ~40).

Test NLL (nats) is on fresh samples and sits next to the true differential entropy where the
density is known (its floor).  ``train_s`` includes compilation; ``sample_s`` is the compiled
time to draw the samples; NFE counts vector-field evaluations per sample (sampling and
likelihood; the training NFE is FFJORD's forward count).

Sample quality (``genjax.report.evaluator``): W2 and energy distance of ``--n-eval`` samples
against held-out data next to the floor of two data samples, and, where the density is
known, the cross-entropy ``−mean log p_data`` of the samples next to the data's (with the
fraction of samples off the support, where ``p_data = 0``).  The flow-matching models are
saved as runs (``runs/flows_2d/flow_matching_<dataset>/``) for ``python -m genjax.sample``.

Run: ``.venv/bin/python experiments/flows_2d.py`` (≈ 4 min on a 2-core CPU); raise
``--flow-steps --cnf-steps --fm-steps`` for sharper densities.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Literal

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import genjax  # noqa: E402
from genjax import metrics, report  # noqa: E402
from genjax.data import toy  # noqa: E402
from genjax.flows import Flow, ffjord, glow_2d, realnvp  # noqa: E402
from genjax.interpolants import linear  # noqa: E402
from genjax.nets import TimeMLP  # noqa: E402
from genjax.train import TrainState, fit, train_interpolant  # noqa: E402

ModelName = Literal["realnvp", "glow_2d", "ffjord", "flow_matching"]
DatasetName = Literal["moons", "eight_gaussians", "checkerboard"]
MODELS: tuple[ModelName, ...] = ("realnvp", "glow_2d", "ffjord", "flow_matching")
DATASETS: tuple[DatasetName, ...] = ("moons", "eight_gaussians", "checkerboard")
BOXES = {"moons": 3.0, "eight_gaussians": 4.5, "checkerboard": 4.5}


@dataclasses.dataclass(frozen=True)
class Config(report.RunConfig):
    flow_steps: int = 2000
    """Training steps of RealNVP and Glow-2D."""
    cnf_steps: int = 400
    """Training steps of FFJORD."""
    fm_steps: int = 2000
    """Training steps of flow matching."""
    batch_size: int = 256
    """Batch size (RealNVP, Glow-2D, flow matching)."""
    cnf_batch_size: int = 128
    """Batch size of FFJORD."""
    lr: float = 2e-3
    """Adam learning rate."""
    ema_decay: float = 0.995
    """Decay of the EMA weights that are evaluated."""
    flow_layers: int = 8
    """Coupling layers of RealNVP (Glow-2D: half as many steps)."""
    hidden: int = 64
    """Hidden width of every network."""
    cnf_rtol: float = 1e-4
    """rtol = atol of FFJORD's training solve; evaluation uses 1e-5 and the exact divergence."""
    n_test: int = 4000
    """Held-out points for the test NLL."""
    n_samples: int = 4000
    """Samples drawn per model (figures)."""
    n_eval: int = 2000
    """Samples (and held-out points) for W2, energy and cross-entropy."""
    floor_repeats: int = 3
    """Pairs of data samples for the data floor."""
    grid: int = 100
    """Density grid resolution per axis."""
    datasets: tuple[DatasetName, ...] = DATASETS
    """Data sets to run."""
    models: tuple[ModelName, ...] = MODELS
    """Models to run."""
    save_runs: bool = True
    """Save the flow-matching models under <out>/flow_matching_<dataset>/ (genjax.save_run)."""

    def __post_init__(self):
        report.check_positive(self, "flow_steps", "cnf_steps", "fm_steps", "batch_size", "cnf_batch_size", "lr",
                              "flow_layers", "hidden", "cnf_rtol", "n_test", "n_samples", "n_eval", "grid")
        for name, values, allowed in (("datasets", self.datasets, DATASETS), ("models", self.models, MODELS)):
            if not values or any(v not in allowed for v in values):
                raise ValueError(f"--{name} {' '.join(map(str, values))}: expected one or more of {allowed}")
        if self.n_eval > self.n_samples:
            raise ValueError(f"--n-eval ({self.n_eval}) must be <= --n-samples ({self.n_samples})")
        if self.floor_repeats < 2:
            raise ValueError(f"--floor-repeats must be >= 2, got {self.floor_repeats}")


def _timed(fn, *args):
    """Compile with one call, then time a second call (blocked)."""
    jax.block_until_ready(fn(*args))
    tic = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - tic


def train_bijective(name, cfg, data, key):
    k_init, k_fit = jax.random.split(key)
    bij = realnvp((2,), cfg.flow_layers, (cfg.hidden, cfg.hidden)) if name == "realnvp" else glow_2d(
        2, cfg.flow_layers // 2, (cfg.hidden, cfg.hidden))
    flow = Flow(bij, (2,))
    params = flow.init(k_init, data.sample(k_init, 1024))
    state, _ = fit(flow.loss, TrainState.create(params, optax.adam(cfg.lr), k_fit), data.sample,
                   num_steps=cfg.flow_steps, batch_size=cfg.batch_size, steps_per_call=500,
                   ema_decay=cfg.ema_decay, progress=False)
    params = state.ema_params
    log_prob = jax.jit(lambda x: (flow.log_prob(params, x), None))
    sample = jax.jit(lambda key: (flow.sample(params, key, cfg.n_samples), None))
    return log_prob, sample, None


def train_ffjord(cfg, data, key):
    k_init, k_fit = jax.random.split(key)
    cnf = ffjord(2, (cfg.hidden,) * 3, rtol=cfg.cnf_rtol, atol=cfg.cnf_rtol)
    params = cnf.init(k_init, data.sample(k_init, 8))
    state, history = fit(cnf.loss, TrainState.create(params, optax.adam(cfg.lr), k_fit), data.sample,
                         num_steps=cfg.cnf_steps, batch_size=cfg.cnf_batch_size, steps_per_call=100,
                         ema_decay=cfg.ema_decay, progress=False)
    params = state.ema_params
    evaluate = dataclasses.replace(cnf, rtol=1e-5, atol=1e-5)
    log_prob = jax.jit(lambda x: evaluate.log_prob(params, x, return_stats=True))
    sample = jax.jit(lambda key: evaluate.sample(params, key, cfg.n_samples, return_stats=True))
    return log_prob, sample, float(np.mean(history["nfe"][-50:]))


def train_flow_matching(cfg, data, key):
    k_init, k_fit = jax.random.split(key)
    module = TimeMLP((cfg.hidden,) * 3, num_frequencies=4, max_frequency=4.0)  # FFJORD's field, smooth in t
    params = module.init(k_init, jnp.zeros(()), jnp.zeros(2))
    state, _ = train_interpolant(module.apply, params, linear, data.sample, key=k_fit, optimizer=optax.adam(cfg.lr),
                                 prediction="velocity", num_steps=cfg.fm_steps, batch_size=cfg.batch_size,
                                 steps_per_call=500, ema_decay=cfg.ema_decay, progress=False)
    model = genjax.Model(module.apply, state.ema_params)
    log_prob = lambda x: genjax.log_likelihood(model, linear, x, prediction="velocity", return_stats=True)  # noqa: E731
    sample = lambda key: genjax.sample_ode(model, linear, key, (cfg.n_samples, 2), prediction="velocity")  # noqa: E731
    if cfg.save_runs:
        genjax.save_run(report.output_dir(__file__, cfg.out) / f"flow_matching_{data.name}", net=module,
                        params=state.ema_params, interpolant="linear", prediction="velocity", config=cfg,
                        event_shape=(2,))
    return log_prob, sample, None


def run(name, cfg, data, key, evaluate):
    tic = time.perf_counter()
    if name in ("realnvp", "glow_2d"):
        log_prob, sample, train_nfe = train_bijective(name, cfg, data, key)
    elif name == "ffjord":
        log_prob, sample, train_nfe = train_ffjord(cfg, data, key)
    else:
        log_prob, sample, train_nfe = train_flow_matching(cfg, data, key)
    train_s = time.perf_counter() - tic
    test = data.sample(jax.random.PRNGKey(10_000), cfg.n_test)
    (test_lp, lp_stats), _ = _timed(log_prob, test)
    (samples, s_stats), sample_s = _timed(sample, jax.random.PRNGKey(20_000))
    half = BOXES[data.name]
    axis = jnp.linspace(-half, half, cfg.grid)
    grid = jnp.stack(jnp.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)
    density = np.exp(np.asarray(log_prob(grid)[0])).reshape(cfg.grid, cfg.grid)
    row = {
        "dataset": data.name, "model": name, "test_nll": float(-jnp.mean(test_lp)), "entropy": data.entropy,
        "train_s": train_s, "sample_s": sample_s,
        "nfe_sample": None if s_stats is None else int(s_stats["nfe"]),
        "nfe_nll": None if lp_stats is None else int(lp_stats["nfe"]),
        "nfe_train": train_nfe,
        **evaluate(np.asarray(samples)[: cfg.n_eval]),
    }
    return row, np.asarray(samples), density


def figures(out, cfg, panels):
    """``panels[dataset][model] = (samples, density)``; the first column shows the data."""
    columns = ("data", *cfg.models)
    for kind in ("density", "samples"):
        fig, axes = plt.subplots(len(cfg.datasets), len(columns), figsize=(2.6 * len(columns), 2.6 * len(cfg.datasets)),
                                 squeeze=False)
        for i, ds in enumerate(cfg.datasets):
            half = BOXES[ds]
            for j, col in enumerate(columns):
                ax = axes[i, j]
                samples, density = panels[ds][col]
                if kind == "density" and col != "data":
                    ax.imshow(density, origin="lower", extent=(-half, half, -half, half), cmap="magma")
                elif kind == "density":
                    ax.hist2d(samples[:, 0], samples[:, 1], bins=cfg.grid, range=[[-half, half]] * 2, cmap="magma")
                else:
                    ax.scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.4)
                    ax.set_xlim(-half, half)
                    ax.set_ylim(-half, half)
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(col)
                if j == 0:
                    ax.set_ylabel(ds)
        fig.tight_layout()
        fig.savefig(out / f"{kind}.png", dpi=100)
        plt.close(fig)


def main(cfg: Config):
    out = report.output_dir(__file__, cfg.out)
    key = jax.random.PRNGKey(cfg.seed)

    rows, panels, floors = [], {}, {}
    sample_metrics = {"W2": metrics.wasserstein2, "energy": metrics.energy_distance}
    for i, ds in enumerate(cfg.datasets):
        data = toy.get(ds)
        panels[ds] = {"data": (np.asarray(data.sample(jax.random.PRNGKey(30_000), cfg.n_samples)), None)}
        evaluate = report.evaluator(data.sample, jax.random.PRNGKey(40_000 + i), cfg.n_eval, sample_metrics,
                                    repeats=cfg.floor_repeats, log_prob=data.log_prob, entropy=data.entropy)
        floors[ds] = evaluate.summary()
        for j, name in enumerate(cfg.models):
            row, samples, density = run(name, cfg, data, jax.random.fold_in(key, 100 * i + j), evaluate)
            rows.append(row)
            panels[ds][name] = (samples, density)
            print(f"{ds:16s} {name:14s} test NLL {row['test_nll']:.3f}  W2 {row['W2']:.3f}  "
                  f"cross-entropy {row.get('cross-entropy', '–')}  train {row['train_s']:.1f}s", flush=True)
        rows.append({"dataset": ds, "model": "data floor", "entropy": data.entropy,
                     **evaluate.floor_row()})

    figures(out, cfg, panels)
    columns = ["dataset", "model", "test_nll", "entropy", "W2", "energy", "cross-entropy", "off_support", "train_s",
               "sample_s", "nfe_sample", "nfe_nll", "nfe_train"]
    print(report.markdown_table(rows, columns))
    print(f"\nW2, energy, cross-entropy on {cfg.n_eval} samples vs {cfg.n_eval} held-out points; data floor: "
          f"two data samples ({cfg.floor_repeats} repeats, mean ± sd)")
    report.write_results(out, config=cfg, metrics={"rows": rows, "floors": floors})
    print(f"wrote {out}/results.json, density.png, samples.png")


if __name__ == "__main__":
    main(report.cli(Config, __doc__))
