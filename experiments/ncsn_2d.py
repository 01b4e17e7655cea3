"""NCSN on a 2-D toy set: one noise-conditional score network, five samplers, quality vs NFE.

The network ``ε_θ(t, x)`` (a ``TimeMLP``) is trained on the ``ve`` interpolant
``x_t = x0 + σ(t) ε``, ``σ(t) = σ_min (σ_max/σ_min)^t``, with the noise target:
``‖ε_θ − ε‖² = σ² ‖s_θ + ε/σ‖²`` for ``s_θ = −ε_θ/σ``, i.e. exactly the σ²-weighted
denoising score-matching loss of NCSN (Song & Ermon 2019) with levels log-uniform in
``[σ_min, σ_max]`` and NCSNv2's ``1/σ`` output scaling (Song & Ermon 2020).  The same
network is then sampled by annealed Langevin dynamics (NCSN), predictor–corrector and the
reverse SDE (Song et al. 2021), the PF-ODE (Euler and Tsit5) and EDM's Heun sampler
(Karras et al. 2022); sample quality is the energy distance and the exact W2 to held-out
data, next to the floor of two independent data samples of the same size.

    python experiments/ncsn_2d.py                            # checkerboard, ~4 min on 2 CPU cores
    python experiments/ncsn_2d.py --dataset two_spirals --steps 20000
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from genjax import interpolants, metrics  # noqa: E402
from genjax.data import toy  # noqa: E402
from genjax.losses.score import geometric_sigmas  # noqa: E402
from genjax.nets import TimeMLP  # noqa: E402
from genjax.report import parse_config, markdown_table, output_dir, write_results  # noqa: E402
from genjax.samplers import sample_ode, sample_sde  # noqa: E402
from genjax.samplers.heun import sample_heun  # noqa: E402
from genjax.samplers.langevin import sample_annealed_langevin, sample_pc  # noqa: E402
from genjax.train import train_interpolant  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Config:
    dataset: str = "checkerboard"
    steps: int = 6000
    batch_size: int = 256
    hidden: int = 256
    depth: int = 3
    lr: float = 2e-3
    ema_decay: float = 0.999
    clip_norm: float = 1.0
    sigma_min: float = 0.01
    sigma_max: float = 0.0  # 0: the largest pairwise distance of 2000 data points (Song & Ermon 2020)
    step_ratio: float = 0.5  # annealed Langevin a_i = step_ratio · σ_i², i.e. δ = step_ratio · σ_L² (h/c ≤ 0.25)
    snrs: str = "0.16,0.05"  # PC corrector signal-to-noise ratios: Song et al.'s image default, and a 2-D one
    n_samples: int = 2000
    floor_repeats: int = 3


def samplers(cfg: Config, ve, sigma_max: float, fn):
    """(label, run(key, shape) -> (samples, stats)) for every sampler of the one noise-prediction network."""
    rate = math.log(sigma_max / cfg.sigma_min)

    def score(sigma, x):  # s(σ, x) = −ε_θ(t(σ), x)/σ with t(σ) = log(σ/σ_min)/log(σ_max/σ_min)
        return -fn(jnp.log(sigma / cfg.sigma_min) / rate, x) / sigma

    step_lr = cfg.step_ratio * cfg.sigma_min**2

    def annealed(levels, k):
        sigmas = geometric_sigmas(sigma_max, cfg.sigma_min, levels)
        return lambda key, shape: sample_annealed_langevin(score, key, shape, sigmas, steps_per_level=k, step_lr=step_lr)

    def pc(n, snr):
        return lambda key, shape: sample_pc(fn, ve, key, shape, "noise", num_steps=n, corrector_steps=1, snr=snr)

    def sde(n):
        return lambda key, shape: (sample_sde(fn, ve, key, shape, "noise", num_steps=n), {"nfe": n})

    def ode(solver, **kw):
        return lambda key, shape: sample_ode(fn, ve, key, shape, "noise", solver=solver, **kw)

    def heun(n):
        return lambda key, shape: sample_heun(fn, ve, key, shape, "noise", num_steps=n)

    snrs = [float(r) for r in cfg.snrs.split(",")]
    return [
        ("annealed Langevin 10×10", annealed(10, 10)),
        ("annealed Langevin 30×10", annealed(30, 10)),
        ("annealed Langevin 10×100", annealed(10, 100)),
        *[(f"PC {n} (EM + 1 corrector, snr {r})", pc(n, r)) for r in snrs for n in (100, 500)],
        ("reverse SDE EM 100", sde(100)),
        ("reverse SDE EM 1000", sde(1000)),
        ("PF-ODE Euler 100", ode("euler", num_steps=100)),
        ("PF-ODE Tsit5 (1e-4)", ode("tsit5", rtol=1e-4, atol=1e-4)),
        ("EDM Heun 18", heun(18)),
        ("EDM Heun 50", heun(50)),
    ]


def main():
    cfg, args = parse_config(Config, __doc__.splitlines()[0])
    out = output_dir(__file__, args.out)
    dataset = toy.get(cfg.dataset)
    key = jax.random.key(args.seed)
    k_train, k_ref, k_floor, k_sample, k_init, k_sig = jax.random.split(key, 6)

    sigma_max = cfg.sigma_max
    if sigma_max <= 0:
        pts = dataset.sample(k_sig, 2000)
        sigma_max = float(jnp.sqrt(jnp.max(jnp.sum((pts[:, None] - pts[None]) ** 2, -1))))
    ve = interpolants.ve(sigma_min=cfg.sigma_min, sigma_max=sigma_max)
    print(f"{cfg.dataset}: ve interpolant with sigma_min={cfg.sigma_min}, sigma_max={sigma_max:.3f}")

    net = TimeMLP(hidden=(cfg.hidden,) * cfg.depth)
    params = net.init(k_init, jnp.zeros(()), jnp.zeros((2,)))
    tic = time.perf_counter()
    state, history = train_interpolant(
        net.apply, params, ve, dataset.sample, key=k_train, optimizer=optax.adam(cfg.lr), prediction="noise",
        num_steps=cfg.steps, batch_size=cfg.batch_size, steps_per_call=500, ema_decay=cfg.ema_decay,
        clip_norm=cfg.clip_norm, metrics_path=out / "train.jsonl",
    )
    train_s = time.perf_counter() - tic
    ema = state.ema_params
    fn = lambda t, x: net.apply(ema, t, x)  # noqa: E731

    reference = dataset.sample(k_ref, cfg.n_samples)
    sample_metrics = {"energy": metrics.energy_distance, "W2": metrics.wasserstein2}
    floors = {name: metrics.data_floor(f, dataset.sample, k_floor, cfg.n_samples, cfg.n_samples,
                                       repeats=cfg.floor_repeats) for name, f in sample_metrics.items()}
    rows = [{"sampler": "data (floor)", **{name: floor[0] for name, floor in floors.items()}}]
    results = {}
    for i, (label, run) in enumerate(samplers(cfg, ve, sigma_max, fn)):
        tic = time.perf_counter()
        x, stats = run(jax.random.fold_in(k_sample, i), (cfg.n_samples, 2))
        x = jax.block_until_ready(x)
        seconds = time.perf_counter() - tic
        row = {"sampler": label, "NFE": int(stats["nfe"]), "seconds": seconds}
        row.update({name: float(f(x, reference)) for name, f in sample_metrics.items()})
        rows.append(row)
        results[label] = np.asarray(x)
        print(f"{label}: NFE {row['NFE']}, energy {row['energy']:.4f}, W2 {row['W2']:.4f} ({seconds:.1f} s incl. compile)")

    print(f"\nNCSN on {cfg.dataset} ({cfg.steps} steps, {train_s:.0f} s): sample quality vs NFE "
          f"({cfg.n_samples} samples vs {cfg.n_samples} held-out points; seconds include compilation)\n")
    print(markdown_table(rows, ["sampler", "NFE", "energy", "W2", "seconds"]))
    print("\nfloor spread (std over repeats): " + ", ".join(f"{k} ± {v[1]:.3g}" for k, v in floors.items()))

    panels = [("data", np.asarray(reference))] + list(results.items())
    cols = 4
    fig, axes = plt.subplots(math.ceil(len(panels) / cols), cols, figsize=(3.3 * cols, 3.3 * math.ceil(len(panels) / cols)))
    lim = float(np.abs(np.asarray(reference)).max()) * 1.15
    for ax, (label, pts) in zip(axes.ravel(), panels):
        ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.4)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "ncsn_samples.png", dpi=110)
    plt.close(fig)
    path = write_results(out, config={**dataclasses.asdict(cfg), "sigma_max_used": sigma_max}, seed=args.seed,
                         metrics={"rows": rows, "floors": floors, "train_seconds": train_s,
                                  "final_loss": float(np.mean(history["loss"][-100:]))})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
