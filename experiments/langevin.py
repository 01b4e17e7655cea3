"""Langevin samplers on a well-separated 2-D mixture with unequal weights (0.2 / 0.8).

ULA and MALA use the exact score / log-density of the target; annealed Langevin (Song &
Ermon 2019) uses the exact noise-conditional scores of the target convolved with
``N(0, σ² I)`` (``genjax.targets.noised``).  All chains start uniform on ``[−8, 8]²``.  ULA
and MALA mix within a mode but almost never cross the low-density gap, so the mode weights
they report are those of the starting basins (~0.5); annealing through large σ, where the
modes overlap, recovers 0.2 / 0.8.  Reported: the weight of the left mode, the energy
distance to exact samples and the cross-entropy ``−mean log p(x)`` of the chains under the
target (``genjax.report.evaluator``) next to their floors (two exact samples; exact samples
under ``p``, whose mean is the target's entropy), MALA's acceptance rate, and the score
evaluations per chain.  A wrong mode weight shows in the cross-entropy
(``0.5·(−log 0.2) + 0.5·(−log 0.8)`` against ``0.2·(−log 0.2) + 0.8·(−log 0.8)``: +0.42 nats)
even where the energy distance is noisy.

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

from genjax import metrics, report  # noqa: E402
from genjax.losses.score import geometric_sigmas  # noqa: E402
from genjax.samplers.langevin import mala, run_chains, sample_annealed_langevin, ula  # noqa: E402
from genjax.targets import GaussianMixture, noised  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Config(report.RunConfig):
    chains: int = 4000
    """Number of chains (each starts uniform on [−8, 8]²)."""
    steps: int = 1000
    """ULA / MALA steps; annealed Langevin uses levels × steps_per_level ≈ the same NFE."""
    ula_step: float = 0.01
    """ULA step size h."""
    mala_step: float = 0.1
    """MALA step size h."""
    levels: int = 20
    """Noise levels of annealed Langevin (geometric from sigma_max to sigma_min)."""
    steps_per_level: int = 50
    """Langevin steps per noise level."""
    step_ratio: float = 0.5
    """Annealed step a_i = step_ratio · σ_i², i.e. δ = step_ratio · σ_L² (h/c ≤ step_ratio/2)."""
    sigma_max: float = 8.0
    """Largest noise level."""
    sigma_min: float = 0.05
    """Smallest noise level."""
    separation: float = 4.0
    """The modes sit at (±separation, 0)."""
    std: float = 0.5
    """Standard deviation of each mode."""
    n_metric: int = 2000
    """Chains (and exact samples) used for the energy distance and cross-entropy."""
    floor_repeats: int = 5
    """Pairs of exact samples for the floor (mean ± sd)."""

    def __post_init__(self):
        report.check_positive(self, "chains", "steps", "ula_step", "mala_step", "levels", "steps_per_level",
                              "step_ratio", "sigma_max", "sigma_min", "separation", "std", "n_metric")
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"--sigma-min ({self.sigma_min}) must be below --sigma-max ({self.sigma_max})")
        if self.n_metric > self.chains:
            raise ValueError(f"--n-metric ({self.n_metric}) must be <= --chains ({self.chains})")
        if self.floor_repeats < 2:
            raise ValueError(f"--floor-repeats must be >= 2, got {self.floor_repeats}")


def main(cfg: Config):
    out = report.output_dir(__file__, cfg.out)
    key = jax.random.key(cfg.seed)
    k_init, k_ula, k_mala, k_ann, k_ref, k_floor = jax.random.split(key, 6)

    c = cfg.separation
    target = GaussianMixture.diagonal(jnp.array([0.2, 0.8]), jnp.array([[-c, 0.0], [c, 0.0]]), cfg.std)
    x0 = jax.random.uniform(k_init, (cfg.chains, 2), minval=-8.0, maxval=8.0)
    entropy = float(target.entropy(jax.random.fold_in(k_floor, 1)))
    evaluate = report.evaluator(target.sample, k_floor, cfg.n_metric, {"energy": metrics.energy_distance},
                                repeats=cfg.floor_repeats, log_prob=target.log_prob, entropy=entropy)

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

    rows = [{"sampler": f"exact (floor, {cfg.floor_repeats} repeats)", "w_left": 0.2, **evaluate.floor_row()}]
    for name, (samples, nfe, acceptance, seconds) in runs.items():
        rows.append({
            "sampler": name,
            "w_left": float(jnp.mean(samples[:, 0] < 0)),
            **evaluate(samples[: cfg.n_metric]),
            "acceptance": acceptance,
            "nfe": nfe,
            "std_right": float(jnp.std(samples[samples[:, 0] > 0][:, 1])),
            "seconds": seconds,
        })
    columns = ["sampler", "w_left", "energy", "cross-entropy", "acceptance", "nfe", "std_right", "seconds"]
    print(f"\nMixture 0.2 N((−{c}, 0), {cfg.std}²) + 0.8 N(({c}, 0), {cfg.std}²), {cfg.chains} chains from U[−8, 8]²:\n")
    print(report.markdown_table(rows, columns))
    print(f"\ntarget entropy H(p) = {entropy:.4f} nats (Monte Carlo, 200 000 draws)")

    fig, axes = plt.subplots(1, 5, figsize=(18, 3.6), gridspec_kw={"width_ratios": [1, 1, 1, 1, 1.1]})
    exact = np.asarray(target.sample(k_ref, cfg.chains))  # for the figure
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
    path = report.write_results(out, config=cfg, metrics={"rows": rows, "floors": evaluate.summary(),
                                                          "samplers": names})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main(report.cli(Config, __doc__))
