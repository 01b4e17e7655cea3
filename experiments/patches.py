"""Unconditional diffusion/flow models of natural-image patches: bits/dim and Fréchet distance vs the data floor.

Patches come from the photographs bundled with scikit-image and scikit-learn
(``genjax.data.photos.load_patches``: 16×16 grayscale by default, 32×32 colour with
``--color``), split by photograph so test patches come from photographs never trained on.
The same ``genjax.nets.UNet`` is trained by the unified trainer for each recipe
(``genjax.train.RECIPES``; MATH.md §2) and reported with

* test bits/dim of the 8-bit patches through the PF-ODE (Hutchinson divergence), beside the
  uniform model's 8 bits/dim;
* Fréchet distance, KID and k-NN precision/recall in the features of a fixed random
  convolutional network (``genjax.metrics.random_conv_features``: no labels exist for patches),
  for model samples against training patches, with the floor: held-out test patches against the
  same training patches (it includes the shift between photographs);
* NFE and wall time of DDIM and of the adaptive PF-ODE; sample grids beside real patches.

    python experiments/patches.py                     # 16×16 grayscale flow matching, ≈ 7 min on 2 CPU cores
    python experiments/patches.py --models fm ddpm vp-sde cosine
    python experiments/patches.py --color --steps 4000  # 32×32 colour (longer)
    python experiments/patches.py --preset gpu        # larger U-Net and longer training on an accelerator
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
from genjax.data import images, photos  # noqa: E402
from genjax.nets import UNet, count_params  # noqa: E402
from genjax.train import RECIPES, Recipe  # noqa: E402

LEVELS = 256

PRESETS = {
    # steps_per_call=1: no loop around the step (XLA:CPU runs convolution gradients slowly inside loops)
    "cpu": dict(steps=1500, batch_size=64, channels=16, channel_mult=(1, 2, 2), num_res_blocks=1,
                attention_resolutions=(4,), ddim_steps=50, num_samples=500, bpd_images=64,
                steps_per_call=1, ema_decay=0.995),
    "gpu": dict(steps=40000, batch_size=256, channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=2,
                attention_resolutions=(8, 4), ddim_steps=100, num_samples=5000, bpd_images=1000,
                steps_per_call=100, ema_decay=0.999),
}


@dataclasses.dataclass(frozen=True)
class Config(report.RunConfig):
    preset: Literal["cpu", "gpu"] = "cpu"
    """Default sizes: 'cpu' for 2 CPU cores; 'gpu' is a longer run for an accelerator."""
    color: bool = False
    """32×32 colour patches instead of 16×16 grayscale."""
    models: tuple[Literal["ddpm", "fm", "vp-sde", "cosine"], ...] = ("fm",)
    """Recipes to train (genjax.train.RECIPES)."""
    steps: int = 0
    """Training steps per model (0: the preset's)."""
    batch_size: int = 0
    """Training batch size (0: the preset's)."""
    channels: int = 0
    """U-Net base channels (0: the preset's)."""
    channel_mult: tuple[int, ...] = ()
    """U-Net channel multipliers (empty: the preset's)."""
    num_res_blocks: int = 0
    """Residual blocks per resolution (0: the preset's)."""
    attention_resolutions: tuple[int, ...] = ()
    """Feature-map sizes with self-attention (empty: the preset's)."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """U-Net activation dtype (bfloat16: mixed precision, float32 parameters)."""
    lr: float = 2e-3
    """Adam learning rate (cosine decay to 5 % after a warm-up)."""
    ema_decay: float | None = None
    """Decay of the EMA weights that are sampled (None: the preset's). Keep decay^steps ≈ 0: else the EMA
    still holds the zero-output initial net, which shrinks noise predictions, and x̂0 = (x − σε̂)/α blows up."""
    num_train: int = 20000
    """Training patches."""
    num_samples: int = 0
    """Model samples = held-out real patches of the floor (0: the preset's)."""
    ddim_steps: int = 0
    """DDIM steps (0: the preset's)."""
    ode_tol: float = 1e-3
    """rtol = atol of the adaptive PF-ODE sampler."""
    bpd_images: int = 0
    """Test patches scored with the PF-ODE (0: the preset's)."""
    bpd_tol: float = 1e-4
    """rtol = atol of the likelihood ODE."""

    def __post_init__(self):
        report.check_positive(self, "lr", "ode_tol", "bpd_tol", "num_train")
        report.check_nonnegative(self, "steps", "batch_size", "channels", "num_res_blocks", "num_samples", "ddim_steps",
                                 "bpd_images")
        if not self.models:
            raise ValueError(f"--models: name at least one of {sorted(RECIPES)}")
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise ValueError(f"--ema-decay must be in [0, 1), got {self.ema_decay}")

    def get(self, name: str):
        """The flag's value, or the preset's when the flag is left at 0 / empty."""
        value = getattr(self, name)
        unset = value is None if name == "ema_decay" else not value
        return PRESETS[self.preset][name] if unset else value


def train(recipe: Recipe, name: str, cfg: Config, net: UNet, params, train_x, key, out):
    steps, batch_size = cfg.get("steps"), cfg.get("batch_size")
    schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, min(200, steps // 4), steps, cfg.lr * 0.05)
    data = images.image_batches(train_x, batch_size=batch_size, seed=cfg.seed, flip=True, levels=LEVELS)
    tic = time.perf_counter()
    state, history = genjax.train_interpolant(
        net.apply, params, recipe.interpolant, data, key=key, optimizer=optax.adam(schedule), **recipe.train_kwargs(),
        num_steps=steps, batch_size=batch_size, steps_per_call=PRESETS[cfg.preset]["steps_per_call"],
        ema_decay=cfg.get("ema_decay"),
        clip_norm=1.0, metrics_path=out / f"train_{name}.jsonl")
    return state, history, time.perf_counter() - tic


def samplers(recipe: Recipe, cfg: Config, shape):
    """``label -> sampler(model, key)``: DDIM on the recipe's schedule (x̂0 clipped to [−1, 1]) and the PF-ODE."""
    n_ddim = cfg.get("ddim_steps")
    return {
        f"DDIM-{n_ddim}": lambda model, key: genjax.sample_ddim(
            model, recipe.interpolant, key, shape, prediction=recipe.prediction, num_steps=n_ddim, clip_x0=(-1.0, 1.0)),
        "PF-ODE tsit5": lambda model, key: genjax.sample_ode(
            model, recipe.ode_interpolant, key, shape, prediction=recipe.prediction, solver="tsit5", rtol=cfg.ode_tol,
            atol=cfg.ode_tol),
    }


def timed(fn, *args):
    """``(samples, stats, seconds)`` of a second call (the first one compiles)."""
    jax.block_until_ready(fn(*args)[0])
    tic = time.perf_counter()
    samples, stats = fn(*args)
    samples = jax.block_until_ready(samples)
    return np.asarray(samples), stats, time.perf_counter() - tic


def main(cfg: Config):
    out = report.output_dir(__file__, cfg.out)
    size = 32 if cfg.color else 16
    n = cfg.get("num_samples")
    train_x, test_x = photos.load_patches(size, color=cfg.color, num_train=cfg.num_train,
                                          num_test=max(n, cfg.get("bpd_images")), seed=cfg.seed)
    shape = train_x.shape[1:]
    real = images.to_symmetric(train_x[:max(2 * n, 2000)], LEVELS)
    reference = images.to_symmetric(test_x[:n], LEVELS)
    features = metrics.random_conv_features(shape, seed=cfg.seed)
    key = jax.random.key(cfg.seed)
    k_init, k_train, k_sample, k_metric, k_bpd = jax.random.split(key, 5)
    net = UNet(channels=cfg.get("channels"), channel_mult=cfg.get("channel_mult"),
               num_res_blocks=cfg.get("num_res_blocks"), attention_resolutions=cfg.get("attention_resolutions"),
               dtype=jnp.dtype(cfg.dtype))
    params0 = net.init(k_init, jnp.zeros(()), jnp.zeros(shape))
    num_params = count_params(params0)
    print(f"{len(train_x)} training patches {shape}, U-Net {num_params:,} parameters")

    rows, grids = [], {}
    for m, name in enumerate(cfg.models):
        recipe = RECIPES[name]
        print(f"\n== {name}: schedule={recipe.schedule} prediction={recipe.prediction}")
        state, history, train_s = train(recipe, name, cfg, net, params0, train_x, jax.random.fold_in(k_train, m), out)
        model = genjax.Model(net.apply, state.ema_params)
        bpd, bpd_se = metrics.image_bits_per_dim(model, recipe.ode_interpolant, test_x[:cfg.get("bpd_images")],
                                                 jax.random.fold_in(k_bpd, m), prediction=recipe.prediction,
                                                 levels=LEVELS, rtol=cfg.bpd_tol, atol=cfg.bpd_tol)
        print(f"  trained {cfg.get('steps')} steps in {train_s:.0f} s; "
              f"test bits/dim (PF-ODE) {bpd:.3f} ± {bpd_se:.3f}")
        for s, (label, sampler) in enumerate(samplers(recipe, cfg, (n, *shape)).items()):
            samples, stats, seconds = timed(sampler, model, jax.random.fold_in(k_sample, 10 * m + s))
            row = {"model": name, "sampler": label, "NFE": int(np.max(np.asarray(stats["nfe"]))), "sample_s": seconds,
                   "test_bpd": bpd, "test_bpd_se": bpd_se, "train_s": train_s, "params": num_params,
                   **metrics.image_metrics(samples, real, reference, features, key=jax.random.fold_in(k_metric, m))}
            rows.append(row)
            print(f"  {label:14s} FD {row['fd']:.3f} (floor {row['fd_floor']:.3f})  KID {row['kid']:.4f}  "
                  f"P/R {row['precision']:.2f}/{row['recall']:.2f}  NFE {row['NFE']}  {seconds:.1f} s")
            if s == 0:
                grids[name] = samples

    floor_row = {"model": "data floor", "sampler": "test patches", **{k: rows[0][f"{k}_floor"]
                                                                    for k in ("fd", "kid", "precision", "recall")}}
    columns = ["model", "sampler", "test_bpd", "fd", "kid", "precision", "recall", "NFE", "sample_s", "train_s"]
    table = report.markdown_table(rows + [floor_row, {"model": "uniform (8 bit)", "test_bpd": 8.0}], columns, digits=3)
    print("\n" + table)
    (out / "table.md").write_text(table + "\n")
    report.write_results(out, config=cfg, metrics={"rows": rows, "floor": floor_row, "params": num_params,
                                                   "features": features.info})
    plot(grids, test_x, out / "samples.png")
    print(f"\nwrote {out / 'results.json'}, {out / 'table.md'} and {out / 'samples.png'}")


def plot(grids, test_x, path):
    panels = {"test patches": test_x[:64] / (LEVELS - 1)}
    panels.update({name: np.asarray(images.to_unit_interval(samples[:64], "symmetric"))
                   for name, samples in grids.items()})
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    for ax, (title, pixels) in zip(np.atleast_1d(axes), panels.items()):
        ax.imshow(images.image_grid(pixels, ncols=8, pad_value=1.0), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    main(report.cli(Config, __doc__))
