"""NCSN on a 2-D toy set: one noise-conditional score network, five samplers, quality vs NFE.

The network ``ε_θ(t, x)`` (a ``TimeMLP``) is trained on the ``ve`` interpolant
``x_t = x0 + σ(t) ε``, ``σ(t) = σ_min (σ_max/σ_min)^t``, with the noise target:
``‖ε_θ − ε‖² = σ² ‖s_θ + ε/σ‖²`` for ``s_θ = −ε_θ/σ``, i.e. exactly the σ²-weighted
denoising score-matching loss of NCSN (Song & Ermon 2019) with levels log-uniform in
``[σ_min, σ_max]`` and NCSNv2's ``1/σ`` output scaling (Song & Ermon 2020).  The same
network is then sampled by annealed Langevin dynamics (NCSN), predictor–corrector and the
reverse SDE (Song et al. 2021), the PF-ODE (Euler and Tsit5) and EDM's Heun sampler
(Karras et al. 2022); sample quality is the energy distance and the exact W2 to held-out
data, next to the floor of two independent data samples of the same size, and the
cross-entropy ``−mean log p_data`` of the samples next to the data's with the fraction of
samples off the support (on the checkerboard any sample off the squares makes the
cross-entropy infinite; the off-support fraction is then the informative number).  The EMA
model is saved as a run (``runs/ncsn_2d/ncsn/``) for ``python -m genjax.sample``.

    python experiments/ncsn_2d.py                            # checkerboard, ~4 min on 2 CPU cores
    python experiments/ncsn_2d.py --dataset two_spirals --steps 20000
"""

from __future__ import annotations

import dataclasses
import functools
import math
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
from genjax import interpolants, metrics, report  # noqa: E402
from genjax.data import toy  # noqa: E402
from genjax.losses.score import geometric_sigmas  # noqa: E402
from genjax.nets import TimeMLP  # noqa: E402
from genjax.samplers import sample_annealed_langevin, sample_heun, sample_ode, sample_pc, sample_sde  # noqa: E402
from genjax.train import train_interpolant  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Config(report.RunConfig):
    dataset: Literal[tuple(toy.DATASETS)] = "checkerboard"  # type: ignore[valid-type]
    """Toy data set (genjax.data.toy)."""
    steps: int = 6000
    """Training steps."""
    batch_size: int = 256
    """Training batch size."""
    hidden: int = 256
    """Width of each hidden layer of the TimeMLP."""
    depth: int = 3
    """Number of hidden layers."""
    lr: float = 2e-3
    """Adam learning rate."""
    ema_decay: float = 0.999
    """Decay of the EMA weights used for sampling."""
    clip_norm: float = 1.0
    """Global gradient-norm clip."""
    sigma_min: float = 0.01
    """Smallest noise level of the ve interpolant."""
    sigma_max: float = 0.0
    """Largest noise level; 0: the largest pairwise distance of 2000 data points (Song & Ermon 2020)."""
    step_ratio: float = 0.5
    """Annealed Langevin a_i = step_ratio · σ_i², i.e. δ = step_ratio · σ_L² (h/c ≤ step_ratio/2)."""
    snrs: tuple[float, ...] = (0.16, 0.05)
    """Predictor-corrector signal-to-noise ratios: Song et al.'s image default, and a 2-D one."""
    n_samples: int = 2000
    """Samples per sampler, and size of the held-out reference sample."""
    floor_repeats: int = 3
    """Pairs of data samples for the data floor (mean ± sd)."""
    save_run: bool = True
    """Save the EMA model under <out>/ncsn/ (genjax.save_run)."""

    def __post_init__(self):
        if self.dataset not in toy.DATASETS:
            raise ValueError(f"--dataset {self.dataset!r} is not a toy data set; expected one of {sorted(toy.DATASETS)}")
        report.check_positive(self, "steps", "batch_size", "hidden", "depth", "lr", "clip_norm", "sigma_min",
                              "step_ratio", "snrs", "n_samples")
        report.check_nonnegative(self, "sigma_max")
        if 0 < self.sigma_max <= self.sigma_min:
            raise ValueError(f"--sigma-max ({self.sigma_max}) must exceed --sigma-min ({self.sigma_min}) (or be 0)")
        if self.floor_repeats < 2:
            raise ValueError(f"--floor-repeats must be >= 2, got {self.floor_repeats}")


def _noise_conditional_score(apply_fn, sigma_min, rate, params, sigma, x):
    """s(σ, x) = −ε_θ(t(σ), x)/σ with t(σ) = log(σ/σ_min)/log(σ_max/σ_min)."""
    return -apply_fn(params, jnp.log(sigma / sigma_min) / rate, x) / sigma


def samplers(cfg: Config, ve, sigma_max: float, net, params):
    """(label, run(key, shape) -> (samples, stats)) for every sampler of the one noise-prediction network."""
    fn = genjax.Model(net.apply, params)
    score = genjax.Model(functools.partial(_noise_conditional_score, net.apply, cfg.sigma_min,
                                           math.log(sigma_max / cfg.sigma_min)), params)
    step_lr = cfg.step_ratio * cfg.sigma_min**2

    def annealed(levels, k):
        sigmas = geometric_sigmas(sigma_max, cfg.sigma_min, levels)
        return lambda key, shape: sample_annealed_langevin(score, key, shape, sigmas, steps_per_level=k, step_lr=step_lr)

    def pc(n, snr):
        return lambda key, shape: sample_pc(fn, ve, key, shape, prediction="noise", num_steps=n, corrector_steps=1,
                                            snr=snr)

    def sde(n):
        return lambda key, shape: sample_sde(fn, ve, key, shape, prediction="noise", num_steps=n)

    def ode(solver, **kw):
        return lambda key, shape: sample_ode(fn, ve, key, shape, prediction="noise", solver=solver, **kw)

    def heun(n):
        return lambda key, shape: sample_heun(fn, ve, key, shape, prediction="noise", num_steps=n)

    return [
        ("annealed Langevin 10×10", annealed(10, 10)),
        ("annealed Langevin 30×10", annealed(30, 10)),
        ("annealed Langevin 10×100", annealed(10, 100)),
        *[(f"PC {n} (EM + 1 corrector, snr {r})", pc(n, r)) for r in cfg.snrs for n in (100, 500)],
        ("reverse SDE EM 100", sde(100)),
        ("reverse SDE EM 1000", sde(1000)),
        ("PF-ODE Euler 100", ode("euler", num_steps=100)),
        ("PF-ODE Tsit5 (1e-4)", ode("tsit5", rtol=1e-4, atol=1e-4)),
        ("EDM Heun 18", heun(18)),
        ("EDM Heun 50", heun(50)),
    ]


def main(cfg: Config):
    out = report.output_dir(__file__, cfg.out)
    dataset = toy.get(cfg.dataset)
    key = jax.random.key(cfg.seed)
    k_train, k_eval, k_sample, k_init, k_sig = jax.random.split(key, 5)

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
    if cfg.save_run:
        genjax.save_run(out / "ncsn", net=net, params=state.ema_params, prediction="noise", config=cfg,
                        interpolant=("ve", {"sigma_min": cfg.sigma_min, "sigma_max": sigma_max}), event_shape=(2,))

    evaluate = report.evaluator(dataset.sample, k_eval, cfg.n_samples,
                                {"energy": metrics.energy_distance, "W2": metrics.wasserstein2},
                                repeats=cfg.floor_repeats, log_prob=dataset.log_prob, entropy=dataset.entropy)
    rows = [{"sampler": f"data (floor, {cfg.floor_repeats} repeats)", **evaluate.floor_row()}]
    results = {}
    for i, (label, run) in enumerate(samplers(cfg, ve, sigma_max, net, state.ema_params)):
        tic = time.perf_counter()
        x, stats = run(jax.random.fold_in(k_sample, i), (cfg.n_samples, 2))
        x = jax.block_until_ready(x)
        seconds = time.perf_counter() - tic
        row = {"sampler": label, "NFE": int(np.max(np.asarray(stats["nfe"]))), "seconds": seconds, **evaluate(x)}
        rows.append(row)
        results[label] = np.asarray(x)
        print(f"{label}: NFE {row['NFE']}, energy {row['energy']:.4f}, W2 {row['W2']:.4f}, "
              f"cross-entropy {row.get('cross-entropy', '–')}, off-support {row.get('off_support', '–')} "
              f"({seconds:.1f} s incl. compile)")

    print(f"\nNCSN on {cfg.dataset} ({cfg.steps} steps, {train_s:.0f} s): sample quality vs NFE "
          f"({cfg.n_samples} samples vs {cfg.n_samples} held-out points; seconds include compilation)\n")
    columns = ["sampler", "NFE", "energy", "W2"]
    if dataset.log_prob is not None:
        columns += ["cross-entropy", "off_support"]
    print(report.markdown_table(rows, columns + ["seconds"]))
    if dataset.entropy is not None:
        print(f"\ndata entropy H(p) = {dataset.entropy:.4f} nats; off_support = fraction of samples where p_data = 0")

    panels = [("data", np.asarray(evaluate.reference))] + list(results.items())
    cols = 4
    fig, axes = plt.subplots(math.ceil(len(panels) / cols), cols, figsize=(3.3 * cols, 3.3 * math.ceil(len(panels) / cols)))
    lim = float(np.abs(np.asarray(evaluate.reference)).max()) * 1.15
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
    path = report.write_results(out, config={**dataclasses.asdict(cfg), "sigma_max_used": sigma_max}, seed=cfg.seed,
                                metrics={"rows": rows, "floors": evaluate.summary(), "train_seconds": train_s,
                                         "final_loss": float(np.mean(history["loss"][-100:]))})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main(report.cli(Config, __doc__))
