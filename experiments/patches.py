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
  for model samples against training patches, with the floor: other training patches (as many
  as samples) against the same ones;
* NFE and wall time of DDIM and of the adaptive PF-ODE; sample grids beside real patches.

    python experiments/patches.py                     # 16×16 grayscale flow matching, ≈ 7 min on 2 CPU cores
    python experiments/patches.py --models fm ddpm vp-sde cosine
    python experiments/patches.py --color --steps 4000  # 32×32 colour (longer)
    python experiments/patches.py --preset gpu        # larger U-Net and longer training on an accelerator
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import genjax  # noqa: E402
from genjax import metrics, report  # noqa: E402
from genjax.data import images, photos  # noqa: E402
from genjax.nets import count_params  # noqa: E402
from genjax.train import RECIPES  # noqa: E402
from image_common import ImageConfig, build_unet, samplers, timed, train  # noqa: E402

LEVELS = 256


@dataclasses.dataclass(frozen=True)
class Config(ImageConfig):
    PRESETS: ClassVar[dict[str, dict]] = {
        # steps_per_call=1: no loop around the step (XLA:CPU runs convolution gradients slowly inside loops)
        "cpu": dict(steps=1500, batch_size=64, channels=16, channel_mult=(1, 2, 2), num_res_blocks=1,
                    attention_resolutions=(4,), ddim_steps=50, num_samples=500, bpd_images=64,
                    steps_per_call=1, ema_decay=0.995),
        "gpu": dict(steps=40000, batch_size=256, channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=2,
                    attention_resolutions=(8, 4), ddim_steps=100, num_samples=5000, bpd_images=1000,
                    steps_per_call=100, ema_decay=0.999),
    }

    models: tuple[str, ...] = ("fm",)
    """Recipes to train (genjax.train.RECIPES: ddpm, fm, vp-sde, cosine)."""
    color: bool = False
    """32×32 colour patches instead of 16×16 grayscale."""
    num_train: int = 20000
    """Training patches."""
    num_samples: int = 0
    """Model samples, and training patches in the floor's reference set (0: the preset's)."""

    def __post_init__(self):
        super().__post_init__()
        report.check_positive(self, "num_train")
        report.check_nonnegative(self, "num_samples")
        unknown = set(self.models) - set(RECIPES)
        if unknown:
            raise ValueError(f"--models {sorted(unknown)}: expected names among {sorted(RECIPES)}")


def main(cfg: Config):
    out = report.output_dir(__file__, cfg.out)
    size = 32 if cfg.color else 16
    n = cfg.get("num_samples")
    train_x, test_x = photos.load_patches(size, color=cfg.color, num_train=cfg.num_train,
                                          num_test=max(64, cfg.get("bpd_images")), seed=cfg.seed)
    shape = train_x.shape[1:]
    # Two disjoint sets of training patches: the floor is the sampling noise of the metric at this size (test
    # patches come from other photographs, a shift that a model of the training photographs need not bridge).
    n_real = max(2 * n, 2000)
    if cfg.num_train < n_real + n:
        raise ValueError(f"--num-train {cfg.num_train}: the metrics need at least {n_real + n} training patches "
                         f"({n_real} real + {n} for the floor)")
    real = images.to_symmetric(train_x[:n_real], LEVELS)
    reference = images.to_symmetric(train_x[n_real:n_real + n], LEVELS)
    features = metrics.random_conv_features(shape, seed=cfg.seed)
    key = jax.random.key(cfg.seed)
    k_init, k_train, k_sample, k_metric, k_bpd = jax.random.split(key, 5)
    # attention resolutions are given for 16×16 patches and scale with the patch size
    net = build_unet(cfg, attention_resolutions=tuple(r * size // 16 for r in cfg.get("attention_resolutions")))
    params0 = net.init(k_init, jnp.zeros(()), jnp.zeros(shape))
    num_params = count_params(params0)
    print(f"{len(train_x)} training patches {shape}, U-Net {num_params:,} parameters")

    rows, grids = [], {}
    for m, name in enumerate(cfg.models):
        recipe = RECIPES[name]
        print(f"\n== {name}: schedule={recipe.schedule} prediction={recipe.prediction}")
        data = images.image_batches(train_x, batch_size=cfg.get("batch_size"), seed=cfg.seed, flip=True, levels=LEVELS)
        state, history, train_s = train(recipe, name, cfg, net, params0, data, jax.random.fold_in(k_train, m), out)
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

    floor_row = {"model": "data floor", "sampler": "other training patches", **{k: rows[0][f"{k}_floor"]
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
