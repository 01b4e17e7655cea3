"""Class-conditional diffusion and flow models on scikit-learn's 8×8 digits with ONE U-Net and ONE trainer.

DDPM, flow matching, the VP score SDE and the cosine schedule differ only in the interpolant,
prediction, time sampling and weighting (MATH.md §2); all four train the same
``genjax.nets.UNet`` with label dropout (``p_uncond``) and are sampled with classifier-free
guidance (MATH.md §16).  Reported, each next to its data floor:

* test bits/dim through the PF-ODE (Hutchinson divergence, unconditional: the null class),
  beside RealNVP/Glow from ``experiments/flows_digits.py`` when its results exist;
* Fréchet distance, KID and k-NN precision/recall in the features of a digit classifier
  (``genjax.metrics.digit_classifier``, cached under ``runs/feature_nets``), for samples
  conditioned on the test labels, against the training images; the floor is the test images;
* conditional accuracy: how often the classifier reads the requested class (floor: its test accuracy);
* NFE and wall time per sampler (DDIM and the adaptive PF-ODE; with guidance each step calls the
  network twice), and a guidance sweep (strength w vs accuracy vs FD).

    python experiments/digits.py                     # ≈ 9 min on 2 CPU cores
    python experiments/digits.py --preset gpu        # larger U-Net, longer training, on an accelerator
    python experiments/digits.py --models fm --steps 6000
"""

from __future__ import annotations

import dataclasses
import json
from typing import ClassVar

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import genjax  # noqa: E402
from genjax import metrics, report  # noqa: E402
from genjax.data import images  # noqa: E402
from genjax.nets import UNet, count_params  # noqa: E402
from genjax.train import RECIPES  # noqa: E402
from image_common import ImageConfig, build_unet, samplers, timed, train  # noqa: E402

SHAPE = (8, 8, 1)
NUM_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class Config(ImageConfig):
    PRESETS: ClassVar[dict[str, dict]] = {
        # steps_per_call=1: no loop around the step (XLA:CPU runs convolution gradients slowly inside loops)
        "cpu": dict(steps=1600, batch_size=64, channels=16, channel_mult=(1, 2), num_res_blocks=1,
                    attention_resolutions=(4,), ddim_steps=50, bpd_images=128, sweep_models=("fm",),
                    steps_per_call=1, ema_decay=0.995),
        "gpu": dict(steps=30000, batch_size=256, channels=96, channel_mult=(1, 2, 2), num_res_blocks=2,
                    attention_resolutions=(4, 2), ddim_steps=100, bpd_images=359, sweep_models=tuple(RECIPES),
                    steps_per_call=100, ema_decay=0.999),
    }

    dropout: float = 0.1
    """Dropout in the residual blocks."""
    p_uncond: float = 0.1
    """Label dropout: probability of training on the null class."""
    guidance: float = 0.0
    """Guidance strength w of the main table ((1 + w) cond − w uncond; 0: the conditional model)."""
    sweep: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)
    """Guidance strengths of the sweep."""
    sweep_models: tuple[str, ...] = ()
    """Models swept over w (empty: the preset's)."""

    def __post_init__(self):
        super().__post_init__()
        report.check_nonnegative(self, "guidance")
        if not 0 <= self.p_uncond < 1:
            raise ValueError(f"--p-uncond must be in [0, 1), got {self.p_uncond}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.p_uncond == 0 and (self.guidance > 0 or any(w > 0 for w in self.sweep)):
            raise ValueError("--guidance or --sweep strengths > 0 need --p-uncond > 0 (the null class must be trained)")
        unknown = set(self.sweep_models) - set(RECIPES)
        if unknown:
            raise ValueError(f"--sweep-models {sorted(unknown)}: expected names among {sorted(RECIPES)}")


def guide(model, w: float, net: UNet):
    """The classifier-free guided model (MATH.md §16); at ``w = 0`` the conditional model itself (one call per step)."""
    return model if w == 0 else genjax.classifier_free(model, scale=w, null=net.null_class)


def sample_metrics(samples, labels, real, reference, classifier, key) -> dict:
    row = metrics.image_metrics(samples, real, reference, classifier, key=key)
    row["accuracy"] = metrics.conditional_accuracy(classifier, samples, labels)
    return row


def flow_rows(out) -> list[dict]:
    """RealNVP/Glow bits/dim from ``experiments/flows_digits.py``'s results, if that experiment was run."""
    path = out.parent / "flows_digits" / "results.json"
    if not path.exists():
        return []
    rows = json.loads(path.read_text())["metrics"]["rows"]
    return [{"model": f"{row['model']} (flows_digits)", "test_bpd": row["test_bpd"]} for row in rows]


def main(cfg: Config):
    out = report.output_dir(__file__, cfg.out)
    (train_x, train_y), (test_x, test_y) = images.load_digits(labels=True)
    real, reference = metrics.bin_centres(train_x), metrics.bin_centres(test_x)
    classifier = metrics.digit_classifier()
    print(f"digit classifier: test accuracy {classifier.info['test_accuracy']:.4f} ({classifier.info['source']})")
    labels = jnp.asarray(test_y)  # samples conditioned on the test labels: the reference's class balance
    key = jax.random.key(cfg.seed)
    k_init, k_train, k_sample, k_metric, k_bpd = jax.random.split(key, 5)

    net = build_unet(cfg, dropout=cfg.dropout, num_classes=NUM_CLASSES)
    params0 = net.init(k_init, jnp.zeros(()), jnp.zeros(SHAPE), jnp.zeros((), jnp.int32))
    num_params = count_params(params0)
    print(f"U-Net: {num_params:,} parameters, {cfg.dtype} activations")

    rows, sweep_rows, grids = [], [], {}
    for m, name in enumerate(cfg.models):
        recipe = RECIPES[name]
        print(f"\n== {name}: schedule={recipe.schedule} prediction={recipe.prediction}")
        data = images.image_batches(train_x, train_y, batch_size=cfg.get("batch_size"), seed=cfg.seed, flip=False,
                                    levels=images.LEVELS)
        state, history, train_s = train(
            recipe, name, cfg, net, params0, data, jax.random.fold_in(k_train, m), out, p_uncond=cfg.p_uncond,
            null=net.null_class,
            train_apply_fn=lambda p, t, x, c, k: net.apply(p, t, x, c, train=True, rngs={"dropout": k}))
        model = genjax.Model(net.apply, state.ema_params)
        bpd, bpd_se = metrics.image_bits_per_dim(
            model, recipe.ode_interpolant, test_x[:cfg.get("bpd_images")], jax.random.fold_in(k_bpd, m),
            prediction=recipe.prediction, levels=images.LEVELS, rtol=cfg.bpd_tol, atol=cfg.bpd_tol,
            c=jnp.full((min(cfg.get("bpd_images"), len(test_x)),), net.null_class))
        print(f"  trained {cfg.get('steps')} steps in {train_s:.0f} s; test bits/dim (PF-ODE, unconditional) "
              f"{bpd:.3f} ± {bpd_se:.3f}")
        guided = guide(model, cfg.guidance, net)
        for s, (label, sampler) in enumerate(samplers(recipe, cfg, (len(labels), *SHAPE)).items()):
            samples, stats, seconds = timed(sampler, guided, jax.random.fold_in(k_sample, 10 * m + s), labels)
            row = {"model": name, "sampler": label, "w": cfg.guidance,
                   "NFE": int(np.max(np.asarray(stats["nfe"]))) * (2 if cfg.guidance else 1),
                   "sample_s": seconds, "test_bpd": bpd, "test_bpd_se": bpd_se, "train_s": train_s,
                   "params": num_params,
                   **sample_metrics(samples, test_y, real, reference, classifier, jax.random.fold_in(k_metric, m))}
            rows.append(row)
            print(f"  {label:14s} FD {row['fd']:.2f} (floor {row['fd_floor']:.2f})  KID {row['kid']:.4f}  "
                  f"P/R {row['precision']:.2f}/{row['recall']:.2f}  acc {row['accuracy']:.3f}  "
                  f"NFE {row['NFE']}  {seconds:.1f} s")
            if s == 0:
                grids[name] = samples
        if name in cfg.get("sweep_models"):
            sampler = next(iter(samplers(recipe, cfg, (len(labels), *SHAPE)).values()))
            for w in cfg.sweep:
                samples, _ = sampler(guide(model, w, net), jax.random.fold_in(k_sample, 1000 + m), labels)
                sweep_rows.append({"model": name, "w": w, **sample_metrics(
                    np.asarray(samples), test_y, real, reference, classifier, jax.random.fold_in(k_metric, m))})
                print(f"  sweep w={w:<4} acc {sweep_rows[-1]['accuracy']:.3f}  FD {sweep_rows[-1]['fd']:.2f}")

    floor = {key_: rows[0][f"{key_}_floor"] for key_ in ("fd", "kid", "precision", "recall")}
    floor_row = {"model": "data floor", "sampler": "test images", "accuracy": classifier.info["test_accuracy"],
                 **floor}
    extra = flow_rows(out) + [{"model": "uniform (17 levels)", "test_bpd": float(np.log2(images.LEVELS))}]
    columns = ["model", "sampler", "w", "test_bpd", "fd", "kid", "precision", "recall", "accuracy", "NFE",
               "sample_s", "train_s"]
    table = report.markdown_table(rows + [floor_row] + extra, columns, digits=3)
    sweep_table = report.markdown_table(sweep_rows, ["model", "w", "accuracy", "fd", "kid", "precision", "recall"],
                                        digits=3) if sweep_rows else ""
    print("\n" + table + ("\n\n" + sweep_table if sweep_table else ""))
    (out / "table.md").write_text(table + "\n" + ("\n" + sweep_table + "\n" if sweep_table else ""))
    report.write_results(out, config=cfg, metrics={"rows": rows, "sweep": sweep_rows, "floor": floor_row,
                                                   "classifier": classifier.info, "params": num_params})
    plot_grids(grids, test_x, test_y, out / "samples.png", cfg.guidance)
    if sweep_rows:
        plot_sweep(sweep_rows, floor_row, out / "guidance_sweep.png")
    print(f"\nwrote {out / 'results.json'}, {out / 'table.md'} and figures")


def class_grid(pixels, labels, per_class: int = 10):
    """Rows = classes 0..9, ``per_class`` images each (values in [0, 1])."""
    rows = [pixels[np.flatnonzero(labels == c)[:per_class]] for c in range(NUM_CLASSES)]
    return images.image_grid(np.concatenate(rows), ncols=per_class)


def plot_grids(grids, test_x, test_y, path, w):
    panels = {"test images": test_x / (images.LEVELS - 1)}
    panels.update({f"{name} (w = {w:g})": images.to_unit_interval(samples, "symmetric")
                   for name, samples in grids.items()})
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9))
    for ax, (title, pixels) in zip(np.atleast_1d(axes), panels.items()):
        ax.imshow(np.squeeze(class_grid(np.asarray(pixels), np.asarray(test_y))), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_sweep(sweep_rows, floor_row, path):
    fig, (ax_acc, ax_fd) = plt.subplots(1, 2, figsize=(8, 3.2))
    for name in dict.fromkeys(r["model"] for r in sweep_rows):
        rs = [r for r in sweep_rows if r["model"] == name]
        ax_acc.plot([r["w"] for r in rs], [r["accuracy"] for r in rs], "o-", label=name)
        ax_fd.plot([r["w"] for r in rs], [r["fd"] for r in rs], "o-", label=name)
    ax_acc.axhline(floor_row["accuracy"], color="k", ls="--", lw=1, label="classifier test accuracy")
    ax_fd.axhline(floor_row["fd"], color="k", ls="--", lw=1, label="data floor")
    ax_acc.set(xlabel="guidance strength w", ylabel="conditional accuracy")
    ax_fd.set(xlabel="guidance strength w", ylabel="Fréchet distance (classifier features)")
    ax_acc.legend(fontsize=8), ax_fd.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    main(report.cli(Config, __doc__))
