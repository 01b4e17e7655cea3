"""Quickstart: DDPM, flow matching and a VP score SDE from ONE trainer on ONE network.

The three models differ only in the interpolant schedule, the prediction target, the time
sampling and the weighting (MATH.md §2).  Each is sampled with its published sampler and
with the adaptive probability-flow ODE (EMA weights), then compared on held-out data:
W2 and energy distance next to the data's own floor, NFE, sampling time, and test NLL via
the PF-ODE next to the true density's NLL on the same points.

    python experiments/quickstart.py                      # eight_gaussians, about 70 s on 2 CPU cores
    python experiments/quickstart.py --dataset checkerboard --steps 20000
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import genjax  # noqa: E402
from genjax import interpolants, metrics  # noqa: E402
from genjax.data import toy  # noqa: E402
from genjax.nets import TimeMLP  # noqa: E402
from genjax.report import parse_config, markdown_table, output_dir, write_results  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Config:
    dataset: str = "eight_gaussians"
    steps: int = 4000
    batch_size: int = 256
    hidden: int = 256
    depth: int = 3
    time_frequencies: int = 8
    max_frequency: float = 30.0
    lr: float = 2e-3
    ema_decay: float = 0.999
    clip_norm: float = 1.0
    n_samples: int = 2000
    n_test: int = 1000
    floor_repeats: int = 5
    nll_tol: float = 1e-5


# name, schedule, prediction, time sampling, weighting (MATH.md §2: what recovers which model)
MODELS = (
    ("DDPM", interpolants.ddpm, "noise", "discrete", "unit"),
    ("FM", interpolants.linear, "velocity", "uniform", "unit"),
    ("VP-SDE", interpolants.vp, "score", "uniform", "sigma2"),
)


def samplers_for(name: str, interpolant, prediction: str):
    """(label, callable key, shape -> (samples, nfe)) for the model's published sampler(s) and the PF-ODE.

    The DDPM network is trained on the piecewise-log-linear ``ddpm`` grid; its ODE sampler and
    likelihood use the smooth continuous equivalent ``vp(0.1, 20)`` (MATH.md §2: an adaptive
    solver on the kinked schedule takes ~T steps).
    """
    ode_path = interpolants.vp if name == "DDPM" else interpolant

    def ode(solver, **kw):
        return lambda fn, key, shape: genjax.sample_ode(fn, ode_path, key, shape, prediction, solver=solver, **kw)

    if name == "DDPM":
        published = [("ancestral-1000", lambda fn, key, shape: (
            genjax.sample_ddpm(fn, interpolant, key, shape, prediction, variance="beta"), {"nfe": interpolant.num_steps}))]
    elif name == "FM":
        published = [(f"euler-{n}", ode("euler", num_steps=n)) for n in (10, 100)]
    else:
        published = [("reverse-SDE EM-1000", lambda fn, key, shape: (
            genjax.sample_sde(fn, interpolant, key, shape, prediction, num_steps=1000), {"nfe": 1000}))]
    return published + [("PF-ODE tsit5", ode("tsit5", rtol=1e-4, atol=1e-4))]


def main():
    cfg, args = parse_config(Config, __doc__.splitlines()[0])
    out = output_dir(__file__, args.out)
    dataset = toy.get(cfg.dataset)
    key = jax.random.key(args.seed)
    k_train, k_test, k_ref, k_floor, k_sample, k_nll = jax.random.split(key, 6)

    test = dataset.sample(k_test, cfg.n_test)
    reference = dataset.sample(k_ref, cfg.n_samples)  # held-out points for the sample metrics
    sample_metrics = {"W2": metrics.wasserstein2, "energy": metrics.energy_distance}
    floors = {
        name: metrics.data_floor(fn, dataset.sample, k_floor, cfg.n_samples, cfg.n_samples, repeats=cfg.floor_repeats)
        for name, fn in sample_metrics.items()
    }
    true_nll = float(-jnp.mean(jax.vmap(dataset.log_prob)(test))) if dataset.log_prob is not None else None

    net = TimeMLP(hidden=(cfg.hidden,) * cfg.depth, num_frequencies=cfg.time_frequencies,
                  max_frequency=cfg.max_frequency)
    params0 = net.init(k_train, jnp.zeros(()), jnp.zeros((2,)))
    optimizer = optax.adam(cfg.lr)
    rows, runs = [], {}
    for m, (name, ip, prediction, time_sampling, weighting) in enumerate(MODELS):
        print(f"\n== {name}: schedule={ip.name} prediction={prediction} t~{time_sampling} weighting={weighting}")
        state, history = genjax.train_interpolant(
            net.apply, params0, ip, dataset.sample, key=jax.random.fold_in(k_train, m), optimizer=optimizer,
            prediction=prediction, weighting=weighting, time_sampling=time_sampling,
            num_steps=cfg.steps, batch_size=cfg.batch_size, steps_per_call=500, ema_decay=cfg.ema_decay,
            clip_norm=cfg.clip_norm, metrics_path=out / f"train_{name}.jsonl",
        )
        ema = state.ema_params
        fn = lambda t, x, p=ema: net.apply(p, t, x)  # noqa: E731
        nll_path = interpolants.vp if name == "DDPM" else ip
        t0 = time.perf_counter()
        logp, nll_stats = genjax.log_likelihood(fn, nll_path, test, prediction=prediction, rtol=cfg.nll_tol,
                                                atol=cfg.nll_tol, return_stats=True)
        nll = float(-jnp.mean(logp))
        nll_time = time.perf_counter() - t0
        runs[name] = {"loss": history["loss"], "samples": {}}
        for s, (label, sampler) in enumerate(samplers_for(name, ip, prediction)):
            sk = jax.random.fold_in(k_sample, 10 * m + s)
            shape = (cfg.n_samples, 2)
            jax.block_until_ready(sampler(fn, sk, shape)[0])  # compile
            t0 = time.perf_counter()
            samples, stats = sampler(fn, sk, shape)
            samples = jax.block_until_ready(samples)
            elapsed = time.perf_counter() - t0
            row = {"model": name, "sampler": label, "NFE": int(np.mean(np.asarray(stats["nfe"]))),
                   "sample_s": elapsed, "train_steps_per_s": history["steps_per_s"]}
            for metric, mfn in sample_metrics.items():
                row[metric] = float(mfn(samples, reference))
            if label.startswith("PF-ODE"):
                row.update({"test_NLL": nll, "true_NLL": true_nll, "nll_NFE": float(np.mean(nll_stats["nfe"])),
                            "nll_s": nll_time})
            rows.append(row)
            runs[name]["samples"][label] = np.asarray(samples)
            print(f"  {label:22s} W2={row['W2']:.4f} energy={row['energy']:.4f} NFE={row['NFE']} ({elapsed:.2f}s)")
        print(f"  test NLL via PF-ODE: {nll:.4f} nats (true density: {true_nll})")

    columns = ["model", "sampler", "W2", "energy", "NFE", "sample_s", "test_NLL", "true_NLL", "train_steps_per_s"]
    floor_row = {"model": "data floor", "sampler": "(two data samples)",
                 "W2": f"{floors['W2'][0]:.4f} ± {floors['W2'][1]:.4f}",
                 "energy": f"{floors['energy'][0]:.4f} ± {floors['energy'][1]:.4f}", "true_NLL": true_nll}
    table = markdown_table(rows + [floor_row], columns)
    print("\n" + table)
    (out / "table.md").write_text(table + "\n")
    write_results(out, config=cfg, seed=args.seed, metrics={
        "rows": rows, "floors": {k: {"mean": v[0], "std": v[1]} for k, v in floors.items()},
        "true_nll": true_nll, "entropy": dataset.entropy,
    })
    plot(runs, reference, out / "samples.png", cfg.dataset)
    print(f"\nwrote {out / 'results.json'}, {out / 'samples.png'}")


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
    main()
