"""Quickstart: DDPM, flow matching and a VP score SDE from ONE trainer on ONE network.

The three models differ only in the interpolant schedule, the prediction target, the time
sampling and the weighting (MATH.md §2).  Each is sampled with its published sampler and
with the adaptive probability-flow ODE (EMA weights), then compared on held-out data:
W2 and energy distance next to the data's own floor, the cross-entropy of the samples
under the true density next to the data's (which exposes over-dispersed samples that W2
and energy on 2000 points do not), NFE, sampling time, and test NLL via the PF-ODE next to
the true density's NLL on the same points.  The EMA models are saved as runs
(``runs/quickstart/<model>/``) that ``python -m genjax.sample`` can load.

    python experiments/quickstart.py                      # eight_gaussians, about 80 s on 2 idle CPU cores
    python experiments/quickstart.py --dataset checkerboard --steps 20000
"""

from __future__ import annotations

import dataclasses
import time
from typing import Literal

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import genjax  # noqa: E402
from genjax import metrics, report  # noqa: E402
from genjax.data import toy  # noqa: E402
from genjax.nets import TimeMLP  # noqa: E402
from genjax.train import RECIPES, Recipe  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Config(report.RunConfig):
    dataset: Literal[tuple(toy.DATASETS)] = "eight_gaussians"  # type: ignore[valid-type]
    """Toy data set (genjax.data.toy); the cross-entropy needs one with a known density."""
    steps: int = 4000
    """Training steps per model."""
    batch_size: int = 256
    """Training batch size."""
    hidden: int = 256
    """Width of each hidden layer of the TimeMLP."""
    depth: int = 3
    """Number of hidden layers."""
    time_frequencies: int = 8
    """Fourier time features of the TimeMLP."""
    max_frequency: float = 30.0
    """Highest time frequency."""
    lr: float = 2e-3
    """Adam learning rate."""
    ema_decay: float = 0.999
    """Decay of the EMA weights used for sampling."""
    clip_norm: float = 1.0
    """Global gradient-norm clip."""
    n_samples: int = 2000
    """Model samples per sampler, and size of the held-out reference sample."""
    n_test: int = 1000
    """Held-out points for the test NLL."""
    floor_repeats: int = 5
    """Pairs of data samples for the data floor (mean ± sd)."""
    nll_tol: float = 1e-5
    """rtol = atol of the likelihood ODE."""
    save_runs: bool = True
    """Save each EMA model under <out>/<model>/ (genjax.save_run)."""

    def __post_init__(self):
        if self.dataset not in toy.DATASETS:
            raise ValueError(f"--dataset {self.dataset!r} is not a toy data set; expected one of {sorted(toy.DATASETS)}")
        report.check_positive(self, "steps", "batch_size", "hidden", "depth", "time_frequencies", "max_frequency",
                              "lr", "clip_norm", "n_samples", "n_test", "nll_tol")
        if self.floor_repeats < 2:
            raise ValueError(f"--floor-repeats must be >= 2 (it gives a spread), got {self.floor_repeats}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"--ema-decay must be in [0, 1), got {self.ema_decay}")


# display name -> the trainer's recipe (genjax.train.RECIPES; MATH.md §2: what recovers which model)
MODELS = {"DDPM": "ddpm", "FM": "fm", "VP-SDE": "vp-sde"}


def samplers_for(name: str, recipe: Recipe):
    """(label, callable model, key, shape -> (samples, stats)) for the published sampler(s) and the PF-ODE.

    The DDPM network is trained on the piecewise-log-linear ``ddpm`` grid; its ODE sampler and
    likelihood use the smooth continuous equivalent ``vp(0.1, 20)`` (``recipe.ode_interpolant``;
    MATH.md §2: an adaptive solver on the kinked schedule takes ~T steps).
    """
    interpolant, prediction, ode_path = recipe.interpolant, recipe.prediction, recipe.ode_interpolant

    def ode(solver, **kw):
        return lambda model, key, shape: genjax.sample_ode(model, ode_path, key, shape, prediction=prediction,
                                                           solver=solver, **kw)

    if name == "DDPM":
        published = [("ancestral-1000 (σ² = β)", lambda model, key, shape: genjax.sample_ddpm(
            model, interpolant, key, shape, prediction=prediction, variance="beta"))]
    elif name == "FM":
        published = [(f"euler-{n}", ode("euler", num_steps=n)) for n in (10, 100)]
    else:
        published = [("reverse-SDE Euler–Maruyama 1000", lambda model, key, shape: genjax.sample_sde(
            model, interpolant, key, shape, prediction=prediction, num_steps=1000))]
    label = "PF-ODE tsit5" + (" (vp equivalent)" if name == "DDPM" else "")
    return published + [(label, ode("tsit5", rtol=1e-4, atol=1e-4))]


def main(cfg: Config):
    out = report.output_dir(__file__, cfg.out)
    dataset = toy.get(cfg.dataset)
    key = jax.random.key(cfg.seed)
    k_train, k_test, k_eval, k_sample = jax.random.split(key, 4)

    test = dataset.sample(k_test, cfg.n_test)
    evaluate = report.evaluator(dataset.sample, k_eval, cfg.n_samples,
                                {"W2": metrics.wasserstein2, "energy": metrics.energy_distance},
                                repeats=cfg.floor_repeats, log_prob=dataset.log_prob, entropy=dataset.entropy)
    true_nll = float(-jnp.mean(jax.vmap(dataset.log_prob)(test))) if dataset.log_prob is not None else None

    net = TimeMLP(hidden=(cfg.hidden,) * cfg.depth, num_frequencies=cfg.time_frequencies,
                  max_frequency=cfg.max_frequency)
    params0 = net.init(k_train, jnp.zeros(()), jnp.zeros((2,)))
    optimizer = optax.adam(cfg.lr)
    rows, runs = [], {}
    for m, (name, recipe_name) in enumerate(MODELS.items()):
        recipe = RECIPES[recipe_name]
        ip, prediction = recipe.interpolant, recipe.prediction
        print(f"\n== {name}: schedule={recipe.schedule} prediction={prediction} t~{recipe.time_sampling} "
              f"weighting={recipe.weighting}")
        state, history = genjax.train_interpolant(
            net.apply, params0, ip, dataset.sample, key=jax.random.fold_in(k_train, m), optimizer=optimizer,
            **recipe.train_kwargs(),
            num_steps=cfg.steps, batch_size=cfg.batch_size, steps_per_call=500, ema_decay=cfg.ema_decay,
            clip_norm=cfg.clip_norm, metrics_path=out / f"train_{name}.jsonl",
        )
        model = genjax.Model(net.apply, state.ema_params)
        if cfg.save_runs:
            genjax.save_run(out / name, net=net, params=state.ema_params, interpolant=recipe.schedule,
                            prediction=prediction, config=cfg, event_shape=(2,))
        t0 = time.perf_counter()
        logp, nll_stats = genjax.log_likelihood(model, recipe.ode_interpolant, test, prediction=prediction,
                                                rtol=cfg.nll_tol, atol=cfg.nll_tol, return_stats=True)
        nll = float(-jnp.mean(logp))
        nll_time = time.perf_counter() - t0
        runs[name] = {"loss": history["loss"], "samples": {}}
        for s, (label, sampler) in enumerate(samplers_for(name, recipe)):
            sk = jax.random.fold_in(k_sample, 10 * m + s)
            shape = (cfg.n_samples, 2)
            jax.block_until_ready(sampler(model, sk, shape)[0])  # compile
            t0 = time.perf_counter()
            samples, stats = sampler(model, sk, shape)
            samples = jax.block_until_ready(samples)
            elapsed = time.perf_counter() - t0
            row = {"model": name, "sampler": label, "NFE": int(np.max(np.asarray(stats["nfe"]))),
                   "sample_s": elapsed, "train_steps_per_s": history["steps_per_s"], **evaluate(samples)}
            if label.startswith("PF-ODE"):
                row.update({"test_NLL": nll, "true_NLL": true_nll, "nll_NFE": float(np.mean(nll_stats["nfe"])),
                            "nll_s": nll_time})
            rows.append(row)
            runs[name]["samples"][label] = np.asarray(samples)
            print(f"  {label:32s} W2={row['W2']:.4f} energy={row['energy']:.4f} "
                  f"cross-entropy={row.get('cross-entropy')} NFE={row['NFE']} ({elapsed:.2f}s)")
        print(f"  test NLL via PF-ODE: {nll:.4f} nats (true density: {true_nll})")

    columns = ["model", "sampler", "W2", "energy", "cross-entropy", "NFE", "sample_s", "test_NLL", "true_NLL",
               "train_steps_per_s"]
    if any(row.get("off_support") for row in rows):
        columns.insert(5, "off_support")
    floor_row = {"model": "data floor", "sampler": f"two independent data samples ({cfg.floor_repeats} repeats)",
                 **evaluate.floor_row(), "true_NLL": true_nll}
    table = report.markdown_table(rows + [floor_row], columns)
    print("\n" + table)
    if dataset.entropy is not None:
        print(f"\ncross-entropy = −mean log p_data(x) over the {cfg.n_samples} samples ± its standard error; "
              f"data entropy H(p) = {dataset.entropy:.4f} nats")
    (out / "table.md").write_text(table + "\n")
    report.write_results(out, config=cfg, metrics={
        "rows": rows, "floors": evaluate.summary(), "true_nll": true_nll, "entropy": dataset.entropy,
    })
    plot(runs, evaluate.reference, out / "samples.png", cfg.dataset)
    print(f"\nwrote {out / 'results.json'}, {out / 'samples.png'}"
          + (f", runs {', '.join(str(out / n) for n in MODELS)}" if cfg.save_runs else ""))


def plot(runs, reference, path, dataset_name):
    columns = 1 + max(len(r["samples"]) for r in runs.values())
    fig, axes = plt.subplots(len(runs), columns, figsize=(3 * columns, 3 * len(runs)), squeeze=False)
    lim = float(np.quantile(np.abs(np.asarray(reference)), 0.995)) * 1.2
    for i, (name, run) in enumerate(runs.items()):
        panels = [("data", np.asarray(reference))] + list(run["samples"].items())
        for j in range(columns):
            ax = axes[i, j]
            ax.set_xticks([]), ax.set_yticks([])
            if j >= len(panels):
                ax.axis("off")
                continue
            label, pts = panels[j]
            ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.5, color="k" if label == "data" else "C0")
            ax.set_xlim(-lim, lim), ax.set_ylim(-lim, lim)
            ax.set_title(f"{name}: {label}" if label != "data" else f"{dataset_name} (held out)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main(report.cli(Config, __doc__))
