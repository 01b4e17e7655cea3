"""GANs against flow matching and a RealNVP flow on 2-D toy data with exact densities, at equal wall time.

Models (``genjax.models.gan`` for the GANs; every GAN shares the generator and critic architecture):

* NS-GAN (Goodfellow et al. 2014), non-saturating generator loss;
* WGAN-GP (Gulrajani et al. 2017), λ = 10, ``--wgan-n-critic`` critic updates per generator update;
* f-GAN (Nowozin et al. 2016) with ``--f-divergence`` (a row of ``genjax.stats.F_DIVERGENCES``; squared
  Hellinger by default), generator on the saddle-point loss (``--f-generator-loss alternative``: ``−E g_f(D(G z))``);
* RpGAN + R1 + R2 (Huang et al. 2024, R3GAN's loss) with γ = ``--gamma``;
* flow matching (``genjax.train_interpolant``, ``linear`` path, velocity), sampled by the adaptive PF-ODE;
* RealNVP (``genjax.flows``), trained by maximum likelihood.

**Equal wall time.** Every model trains for ``--train-seconds`` of wall time through ``genjax.fit``,
compilation included: an ``eval_fn`` reads the clock every ``--steps-per-call`` steps and
``EarlyStopping`` ends the run at the first check past the budget (overshoot ≤ one call).  The steps
done are reported; a GAN step is one critic *or* one generator update (``alternating``).

**Metrics** (``--n-eval`` samples, EMA weights, docs/MATH.md §8):

* W2 (exact, by assignment) against held-out data, beside the floor of two data samples;
* the samples' cross-entropy under the true density minus the data entropy, ``CE − H(p)``, beside the same
  number for data samples (its floor);
* high-quality fraction: the share of samples inside the data's 99% highest-density region
  ``{x : log p(x) ≥ τ}``, ``τ`` the 1% quantile of ``log p`` over data samples (data: 0.99);
* mode coverage (eight_gaussians): mode k is hit when at least a quarter of its expected share ``n/8`` of the
  samples lies within 3 standard deviations of its centre; coverage is the fraction of the 8 modes hit.

Run: ``.venv/bin/python experiments/gans_2d.py`` (≈ 9 min on 2 CPU cores); ``--train-seconds 60`` for longer runs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import shutil
import time
from pathlib import Path
from typing import Literal

import flax.linen as nn
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
from genjax.flows import Flow, realnvp  # noqa: E402
from genjax.interpolants import linear  # noqa: E402
from genjax.models import gan as G  # noqa: E402
from genjax.nets import TimeMLP  # noqa: E402
from genjax.nets.vae import MLP  # noqa: E402
from genjax.stats.divergences import F_DIVERGENCES  # noqa: E402
from genjax.train import EarlyStopping, TrainState, fit, train_interpolant  # noqa: E402

ModelName = Literal["ns_gan", "wgan_gp", "f_gan", "rpgan", "flow_matching", "realnvp"]
DatasetName = Literal["eight_gaussians", "swissroll", "moons"]
MODELS: tuple[ModelName, ...] = ("ns_gan", "wgan_gp", "f_gan", "rpgan", "flow_matching", "realnvp")
DATASETS: tuple[DatasetName, ...] = ("eight_gaussians", "swissroll", "moons")
BOXES = {"eight_gaussians": 4.0, "swissroll": 3.5, "moons": 3.0}
EIGHT_STD = 0.5 / 1.414  # component std of toy.eight_gaussians
EIGHT_RADIUS = 4.0 / 1.414


@dataclasses.dataclass(frozen=True)
class Config(report.RunConfig):
    train_seconds: float = 25.0
    """Wall-time training budget of every model (compilation included)."""
    datasets: tuple[DatasetName, ...] = DATASETS
    """Toy data sets with exact densities (moons only if toy.moons.log_prob exists)."""
    models: tuple[ModelName, ...] = MODELS
    """Models to train."""
    batch_size: int = 256
    """Batch size of every model."""
    hidden: int = 128
    """Width of the three hidden layers of every network (generator, critic, velocity field, couplings: two)."""
    latent_dim: int = 8
    """Generator noise dimension."""
    gan_lr: float = 1e-3
    """Adam rate of NS-GAN, f-GAN and RpGAN (β = (0.5, 0.9)); WGAN-GP uses --wgan-lr."""
    wgan_lr: float = 2e-3
    """Adam rate of WGAN-GP (β = (0.5, 0.9) as Gulrajani et al.; their 1e-4 barely moves in this budget)."""
    wgan_n_critic: int = 5
    """Critic updates per generator update in WGAN-GP (the others: 1)."""
    f_divergence: str = "hellinger"
    """f-GAN divergence (a row of genjax.stats.F_DIVERGENCES; KL's exp(T − 1) overflowed on the swiss roll)."""
    f_generator_loss: Literal["saddle", "alternative"] = "saddle"
    """f-GAN generator loss: the saddle point or Nowozin et al.'s alternative −E g_f(D(G z))."""
    gamma: float = 0.1
    """R1 and R2 weight γ of RpGAN."""
    lr: float = 2e-3
    """Adam rate of flow matching and RealNVP."""
    ema_decay: float = 0.995
    """EMA of the evaluated weights (generators, velocity field, flow): a window of ~200 steps."""
    steps_per_call: int = 200
    """Steps per compiled call; the clock is read between calls."""
    n_eval: int = 2000
    """Samples (and held-out points) for W2, cross-entropy, quality and coverage."""
    floor_repeats: int = 3
    """Pairs of data samples for the data floors."""
    figure_dir: str = "docs/figures"
    """Where gans_2d_samples.png is copied (empty: not copied)."""

    def __post_init__(self):
        report.check_positive(self, "train_seconds", "batch_size", "hidden", "latent_dim", "gan_lr", "wgan_lr",
                              "wgan_n_critic", "gamma", "lr", "steps_per_call", "n_eval")
        for name, values, allowed in (("datasets", self.datasets, DATASETS), ("models", self.models, MODELS)):
            if not values or any(v not in allowed for v in values):
                raise ValueError(f"--{name} {' '.join(map(str, values))}: expected one or more of {allowed}")
        if self.f_divergence not in F_DIVERGENCES:
            raise ValueError(f"--f-divergence {self.f_divergence}: expected one of {tuple(F_DIVERGENCES)}")
        if self.floor_repeats < 2:
            raise ValueError(f"--floor-repeats must be >= 2, got {self.floor_repeats}")


# ----------------------------------------------------------------------------- equal wall time


def timed_fit(train, cfg):
    """``train(**fit_kwargs)`` (``fit`` or a layer over it) until ``cfg.train_seconds`` of wall time have passed.

    Returns ``(state, steps, seconds)``.
    """
    start = time.perf_counter()

    def clock(_):  # an improving value while within budget, NaN (never an improvement) after it
        elapsed = time.perf_counter() - start
        return {"elapsed_s": elapsed if elapsed < cfg.train_seconds else math.nan}

    state, _ = train(num_steps=10**7, batch_size=cfg.batch_size, steps_per_call=cfg.steps_per_call,
                     ema_decay=cfg.ema_decay, eval_fn=clock, eval_every=cfg.steps_per_call,
                     early_stopping=EarlyStopping("elapsed_s", mode="max", patience=1), progress=False)
    return state, int(state.step), time.perf_counter() - start


# ----------------------------------------------------------------------------- models


def gan_losses(name, cfg):
    return {"ns_gan": G.nonsaturating, "wgan_gp": G.wgan_gp,
            "f_gan": functools.partial(G.f_gan, divergence=cfg.f_divergence, generator_loss=cfg.f_generator_loss),
            "rpgan": functools.partial(G.rpgan, r1=cfg.gamma, r2=cfg.gamma)}[name]


def train_gan_model(name, cfg, data, key):
    k_g, k_d, k_fit = jax.random.split(key, 3)
    width = (cfg.hidden,) * 3
    generator, critic = MLP((2,), width, nn.leaky_relu), MLP((), width, nn.leaky_relu)
    gan = G.GAN(generator.apply, critic.apply, cfg.latent_dim)
    params = {"generator": generator.init(k_g, jnp.zeros(cfg.latent_dim)), "critic": critic.init(k_d, jnp.zeros(2))}
    lr, n_critic = (cfg.wgan_lr, cfg.wgan_n_critic) if name == "wgan_gp" else (cfg.gan_lr, 1)
    adam = optax.adam(lr, b1=0.5, b2=0.9)
    train = functools.partial(G.train_gan, gan, params, data.sample, key=k_fit, losses=gan_losses(name, cfg),
                              critic_optimizer=adam, generator_optimizer=adam, n_critic=n_critic)
    state, steps, seconds = timed_fit(train, cfg)
    params = state.ema_params
    return jax.jit(lambda key: gan.sample(params, key, cfg.n_eval)), steps, seconds


def train_flow_matching(cfg, data, key):
    k_init, k_fit = jax.random.split(key)
    module = TimeMLP((cfg.hidden,) * 3, num_frequencies=4, max_frequency=4.0)  # flows_2d's field, smooth in t
    params = module.init(k_init, jnp.zeros(()), jnp.zeros(2))
    train = functools.partial(train_interpolant, module.apply, params, linear, data.sample, key=k_fit,
                              optimizer=optax.adam(cfg.lr), prediction="velocity")
    state, steps, seconds = timed_fit(train, cfg)
    model = genjax.Model(module.apply, state.ema_params)
    return (lambda key: genjax.sample_ode(model, linear, key, (cfg.n_eval, 2), prediction="velocity")[0]), steps, seconds


def train_realnvp(cfg, data, key):
    k_init, k_fit = jax.random.split(key)
    flow = Flow(realnvp((2,), 8, (cfg.hidden, cfg.hidden)), (2,))
    params = flow.init(k_init, data.sample(k_init, 1024))
    train = functools.partial(fit, flow.loss, TrainState.create(params, optax.adam(cfg.lr), k_fit), data.sample)
    state, steps, seconds = timed_fit(train, cfg)
    params = state.ema_params
    return jax.jit(lambda key: flow.sample(params, key, cfg.n_eval)), steps, seconds


def train_model(name, cfg, data, key):
    if name == "flow_matching":
        return train_flow_matching(cfg, data, key)
    if name == "realnvp":
        return train_realnvp(cfg, data, key)
    return train_gan_model(name, cfg, data, key)


# ----------------------------------------------------------------------------- metrics


def quality_threshold(data, key, n: int = 100_000) -> float:
    """``τ``: the 1% quantile of ``log p`` over data samples (the 99% highest-density region is ``log p ≥ τ``)."""
    return float(np.quantile(np.asarray(jax.vmap(data.log_prob)(data.sample(key, n))), 0.01))


def high_quality_fraction(data, tau: float, samples) -> float:
    return float(np.mean(np.asarray(jax.vmap(data.log_prob)(jnp.asarray(samples))) >= tau))


def mode_coverage(samples) -> float:
    """Fraction of the 8 modes holding ≥ ¼ of their share n/8 of the samples within 3 std of the centre."""
    angles = np.arange(8) * np.pi / 4
    centres = EIGHT_RADIUS * np.stack([np.cos(angles), np.sin(angles)], -1)
    dist = np.linalg.norm(np.asarray(samples)[:, None, :] - centres[None], axis=-1)
    counts = np.sum(dist <= 3 * EIGHT_STD, axis=0)
    return float(np.mean(counts >= 0.25 * len(samples) / 8))


def evaluate(row, samples, data, evaluator, tau):
    row.update(evaluator(samples))
    row["CE − H"] = row["cross_entropy"] - data.entropy
    row["high_quality"] = high_quality_fraction(data, tau, samples)
    if data.name == "eight_gaussians":
        row["mode_coverage"] = mode_coverage(samples)
    return row


def figure(path, cfg, panels):
    columns = ("data", *cfg.models)
    fig, axes = plt.subplots(len(cfg.datasets), len(columns), figsize=(2.4 * len(columns), 2.4 * len(cfg.datasets)),
                             squeeze=False)
    for i, ds in enumerate(cfg.datasets):
        half = BOXES[ds]
        for j, col in enumerate(columns):
            ax = axes[i, j]
            x = panels[ds][col]
            ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.4)
            ax.set_xlim(-half, half)
            ax.set_ylim(-half, half)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(col)
            if j == 0:
                ax.set_ylabel(ds)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(cfg: Config):
    out = report.output_dir(__file__, cfg.out)
    key = jax.random.PRNGKey(cfg.seed)
    datasets = [ds for ds in cfg.datasets if toy.get(ds).log_prob is not None]
    if len(datasets) < len(cfg.datasets):
        print(f"skipping data sets without an exact density: {sorted(set(cfg.datasets) - set(datasets))}")
        cfg = dataclasses.replace(cfg, datasets=tuple(datasets))
    rows, panels, floors = [], {}, {}
    for i, ds in enumerate(cfg.datasets):
        data = toy.get(ds)
        evaluator = report.evaluator(data.sample, jax.random.PRNGKey(40_000 + i), cfg.n_eval,
                                     {"W2": metrics.wasserstein2}, repeats=cfg.floor_repeats, log_prob=data.log_prob,
                                     entropy=data.entropy)
        tau = quality_threshold(data, jax.random.PRNGKey(50_000 + i))
        floor_samples = [np.asarray(data.sample(k, cfg.n_eval))
                         for k in jax.random.split(jax.random.PRNGKey(60_000 + i), cfg.floor_repeats)]
        panels[ds] = {"data": floor_samples[0]}
        floor = {"dataset": ds, "model": "data floor", **evaluator.floor_row()}
        ce = evaluator.cross_entropy_floor
        floor["CE − H"] = report.plus_minus(ce[0] - data.entropy, ce[1])
        floor["high_quality"] = report.plus_minus(*_mean_sd([high_quality_fraction(data, tau, s) for s in floor_samples]))
        if ds == "eight_gaussians":
            floor["mode_coverage"] = report.plus_minus(*_mean_sd([mode_coverage(s) for s in floor_samples]))
        floors[ds] = {**evaluator.summary(), "tau": tau}
        for j, name in enumerate(cfg.models):
            sample, steps, seconds = train_model(name, cfg, data, jax.random.fold_in(key, 100 * i + j))
            samples = np.asarray(sample(jax.random.PRNGKey(20_000 + i)))
            row = evaluate({"dataset": ds, "model": name, "steps": steps, "train_s": seconds}, samples, data,
                           evaluator, tau)
            rows.append(row)
            panels[ds][name] = samples
            print(f"{ds:16s} {name:14s} steps {steps:6d} in {seconds:5.1f}s  W2 {row['W2']:.3f}  "
                  f"CE−H {row['CE − H']:.3f}  quality {row['high_quality']:.3f}  "
                  f"coverage {row.get('mode_coverage', '–')}", flush=True)
        rows.append(floor)

    figure(out / "samples.png", cfg, panels)
    if cfg.figure_dir:
        Path(cfg.figure_dir).mkdir(parents=True, exist_ok=True)
        shutil.copy(out / "samples.png", Path(cfg.figure_dir) / "gans_2d_samples.png")
    columns = ["dataset", "model", "steps", "train_s", "W2", "CE − H", "high_quality", "mode_coverage"]
    print(report.markdown_table(rows, columns))
    print(f"\n{cfg.train_seconds:g} s of training each (compilation included); W2 and CE on {cfg.n_eval} samples "
          f"vs {cfg.n_eval} held-out points; data floor: {cfg.floor_repeats} pairs of data samples (mean ± sd)")
    report.write_results(out, config=cfg, metrics={"rows": rows, "floors": floors})
    print(f"wrote {out}/results.json, samples.png")


def _mean_sd(values):
    return float(np.mean(values)), float(np.std(values, ddof=1))


if __name__ == "__main__":
    main(report.cli(Config, __doc__))
