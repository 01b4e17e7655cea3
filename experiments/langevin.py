"""Langevin samplers on a well-separated 2-D mixture with unequal weights (0.2 / 0.8).

ULA and MALA use the exact score / log-density of the target; annealed Langevin (Song &
Ermon 2019) uses the exact noise-conditional scores of the target convolved with
``N(0, σ² I)`` (``genjax.targets.noised``).  All chains start uniform on ``[−8, 8]²``.  ULA
and MALA mix within a mode but almost never cross the low-density gap, so the mode weights
they report are those of the starting basins (~0.5); annealing through large σ, where the
modes overlap, recovers 0.2 / 0.8.  Reported: the weight of the left mode, the energy
distance to exact samples next to the floor of two exact samples, MALA's acceptance rate,
and the score evaluations per chain.

    python experiments/langevin.py                 # ~1 min on 2 CPU cores
    python experiments/langevin.py --chains 20000 --steps 5000
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

from genjax import metrics  # noqa: E402
from genjax.losses.score import geometric_sigmas  # noqa: E402
from genjax.report import parse_config, markdown_table, output_dir, write_results  # noqa: E402
from genjax.samplers.langevin import mala, run_chains, sample_annealed_langevin, ula  # noqa: E402
from genjax.targets import GaussianMixture, noised  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Config:
    chains: int = 4000
    steps: int = 1000  # ULA / MALA steps; annealed Langevin uses levels × steps_per_level ≈ the same NFE
    ula_step: float = 0.01
    mala_step: float = 0.1
    levels: int = 20
    steps_per_level: int = 50
    step_ratio: float = 0.5  # a_i = step_ratio · σ_i², i.e. δ = step_ratio · σ_L² (h/c ≤ step_ratio/2)
    sigma_max: float = 8.0
    sigma_min: float = 0.05
    separation: float = 4.0
    std: float = 0.5
    n_metric: int = 2000
    floor_repeats: int = 5


def main():
    cfg, args = parse_config(Config, __doc__.splitlines()[0])
    out = output_dir(__file__, args.out)
    key = jax.random.key(args.seed)
    k_init, k_ula, k_mala, k_ann, k_ref, k_floor = jax.random.split(key, 6)

    c = cfg.separation
    target = GaussianMixture.diagonal(jnp.array([0.2, 0.8]), jnp.array([[-c, 0.0], [c, 0.0]]), cfg.std)
    x0 = jax.random.uniform(k_init, (cfg.chains, 2), minval=-8.0, maxval=8.0)
    reference = target.sample(k_ref, cfg.n_metric)
    floor = metrics.data_floor(metrics.energy_distance, target.sample, k_floor, cfg.n_metric, cfg.n_metric,
                               repeats=cfg.floor_repeats)

    runs = {}
    tic = time.perf_counter()
    states, _ = run_chains(ula(cfg.ula_step, score_fn=target.score), k_ula, x0, cfg.steps)
    runs["ULA"] = (jax.block_until_ready(states.position), cfg.steps, None, time.perf_counter() - tic)
    tic = time.perf_counter()
    states, info = run_chains(mala(target.log_prob, cfg.mala_step), k_mala, x0, cfg.steps)
    runs["MALA"] = (jax.block_until_ready(states.position), cfg.steps + 1, float(jnp.mean(info.acceptance_rate)),
                    time.perf_counter() - tic)
    tic = time.perf_counter()
    sigmas = geometric_sigmas(cfg.sigma_max, cfg.sigma_min, cfg.levels)
    x, stats = sample_annealed_langevin(lambda sigma, y: noised(target, sigma).score(y), k_ann, x0.shape, sigmas,
                                        steps_per_level=cfg.steps_per_level,
                                        step_lr=cfg.step_ratio * cfg.sigma_min**2, x_init=x0)
    runs["annealed Langevin"] = (jax.block_until_ready(x), stats["nfe"], None, time.perf_counter() - tic)

    rows = [{"sampler": "exact (floor)", "w_left": 0.2, "energy": floor[0]}]
    for name, (samples, nfe, acceptance, seconds) in runs.items():
        rows.append({
            "sampler": name,
            "w_left": float(jnp.mean(samples[:, 0] < 0)),
            "energy": float(metrics.energy_distance(samples[: cfg.n_metric], reference)),
            "acceptance": acceptance,
            "nfe": nfe,
            "std_right": float(jnp.std(samples[samples[:, 0] > 0][:, 1])),
            "seconds": seconds,
        })
    columns = ["sampler", "w_left", "energy", "acceptance", "nfe", "std_right", "seconds"]
    print(f"\nMixture 0.2 N((−{c}, 0), {cfg.std}²) + 0.8 N(({c}, 0), {cfg.std}²), {cfg.chains} chains from U[−8, 8]²:\n")
    print(markdown_table(rows, columns))

    fig, axes = plt.subplots(1, 5, figsize=(18, 3.6), gridspec_kw={"width_ratios": [1, 1, 1, 1, 1.1]})
    exact = np.asarray(target.sample(k_ref, cfg.chains))
    for ax, (name, samples) in zip(axes, [("exact", exact)] + [(n, np.asarray(r[0])) for n, r in runs.items()]):
        ax.scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.3)
        ax.set_xlim(-8, 8)
        ax.set_ylim(-4, 4)
        ax.set_title(f"{name}: w_left = {np.mean(samples[:, 0] < 0):.3f}")
    names = [r["sampler"] for r in rows]
    axes[-1].bar(range(len(rows)), [r["w_left"] for r in rows], color=["k", "C0", "C1", "C2"])
    axes[-1].axhline(0.2, color="k", ls="--", lw=1)
    axes[-1].set_xticks(range(len(rows)), ["exact", "ULA", "MALA", "annealed"])
    axes[-1].set_title("weight of the left mode (truth 0.2)")
    fig.tight_layout()
    fig.savefig(out / "langevin_mixture.png", dpi=110)
    plt.close(fig)
    path = write_results(out, config=cfg, seed=args.seed, metrics={"rows": rows, "energy_floor_mean_std": floor,
                                                                    "samplers": names})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
