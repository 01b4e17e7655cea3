"""Score matching: explicit (ESM) vs denoising (DSM) vs sliced (SSM, SSM-VR) on Gaussian mixtures.

A small score MLP ``s_θ(x)`` is trained with each loss (``genjax.losses.score``, via
``genjax.train.fit``) on a 2-D mixture and on mixtures in d = 2, 8, 32, 128.  Reported: the
relative Fisher divergence ``E_p‖s_θ − ∇log p‖² / E_p‖∇log p‖²`` to the exact score (Monte
Carlo on held-out data samples), the time per training step, and the compiled temporary
memory of one gradient step (``jax.jit(...).lower(...).compile().memory_analysis()``) —
ESM's exact trace needs d JVPs per sample, so its cost grows linearly in d while DSM and
SSM stay flat.  Figures: learned vs true score fields (quiver) and cost/accuracy vs d.

    python experiments/score_matching.py                 # ~4–6 min on 2 CPU cores (ESM at d=128 dominates)
    python experiments/score_matching.py --steps-2d 10000 --steps-dim 3000 --dims 2 8 32 128 256
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

from genjax.losses.score import dsm, esm, ssm  # noqa: E402
from genjax.nets import TimeMLP  # noqa: E402
from genjax import report  # noqa: E402
from genjax.targets import GaussianMixture  # noqa: E402
from genjax.train import TrainState, fit  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Config(report.RunConfig):
    steps_2d: int = 3000
    """Training steps per loss on the 2-D mixture."""
    steps_dim: int = 300
    """Training steps per loss and dimension in the sweep."""
    dims: tuple[int, ...] = (2, 8, 32, 128)
    """Dimensions d of the sweep."""
    batch_size: int = 256
    """Training batch size."""
    hidden: int = 128
    """Width of each hidden layer of the score MLP."""
    depth: int = 3
    """Number of hidden layers."""
    lr: float = 2e-3
    """Adam learning rate."""
    dsm_sigma: float = 0.1
    """Noise level of denoising score matching."""
    n_eval: int = 4000
    """Held-out samples for the relative Fisher divergence."""

    def __post_init__(self):
        report.check_positive(self, "steps_2d", "steps_dim", "dims", "batch_size", "hidden", "depth", "lr",
                              "dsm_sigma", "n_eval")


LOSSES = ("ESM", "DSM", "SSM", "SSM-VR")


def objective(name: str, apply, dsm_sigma: float):
    """``loss_fn(params, batch, key) -> (mean loss, {})`` for one score-matching loss."""

    def loss_fn(params, batch, key):
        score = lambda x: apply(params, x)  # noqa: E731
        if name == "ESM":
            losses = esm(score, batch)
        elif name == "DSM":
            losses = dsm(score, batch, key, dsm_sigma)
        else:
            losses = ssm(score, batch, key, variance_reduction=name == "SSM-VR")
        return jnp.mean(losses), {}

    return loss_fn


def mixture_2d() -> GaussianMixture:
    return GaussianMixture.diagonal(jnp.array([0.3, 0.3, 0.4]), jnp.array([[-2.0, -1.0], [2.0, -1.0], [0.0, 2.0]]), 0.5)


def mixture_nd(d: int) -> GaussianMixture:
    """Two components N(±2u, 0.7² I), u = 1/sqrt(d): separation 4 in every dimension."""
    u = jnp.ones(d) / jnp.sqrt(d)
    return GaussianMixture.diagonal(jnp.array([0.4, 0.6]), jnp.stack([2.0 * u, -2.0 * u]), 0.7)


def relative_fisher(apply, params, target: GaussianMixture, x) -> float:
    """``E‖s_θ − ∇log p‖² / E‖∇log p‖²`` over the samples ``x``."""
    learned = jax.vmap(lambda y: apply(params, y))(x)
    true = jax.vmap(target.score)(x)
    return float(jnp.mean(jnp.sum((learned - true) ** 2, -1)) / jnp.mean(jnp.sum(true**2, -1)))


def step_memory(loss_fn, params, batch, key) -> int:
    """Compiled temporary memory (bytes) of one value-and-grad step, from XLA's memory analysis."""
    grad = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    return int(grad.lower(params, batch, key).compile().memory_analysis().temp_size_in_bytes)


def train(name, target, cfg, steps, key):
    """Fit a fresh MLP with loss ``name`` on samples of ``target``; return (apply, params, ms/step, bytes)."""
    net = TimeMLP(hidden=(cfg.hidden,) * cfg.depth)
    apply = lambda p, x: net.apply(p, 0.0, x)  # noqa: E731  (no noise conditioning: t fixed)
    k_init, k_fit = jax.random.split(key)
    params = net.init(k_init, jnp.zeros(()), jnp.zeros((target.dim,)))
    loss_fn = objective(name, apply, cfg.dsm_sigma)
    memory = step_memory(loss_fn, params, target.sample(k_init, cfg.batch_size), k_init)
    state = TrainState.create(params, optax.adam(cfg.lr), k_fit)
    state, history = fit(loss_fn, state, target.sample, num_steps=steps, batch_size=cfg.batch_size,
                         steps_per_call=min(steps, 200), ema_decay=0.99, clip_norm=10.0, progress=False)
    return apply, state.ema_params, 1e3 / history["steps_per_s"], memory


def quiver_figure(path, target, fields):
    """True score and each learned field on a grid, over the density's contours."""
    g = np.linspace(-4, 4, 17)
    xx, yy = np.meshgrid(g, g)
    grid = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], -1), jnp.float32)
    fine = np.linspace(-4, 4, 120)
    fx, fy = np.meshgrid(fine, fine)
    dens = np.exp(np.asarray(jax.vmap(target.log_prob)(jnp.asarray(np.stack([fx.ravel(), fy.ravel()], -1),
                                                                   jnp.float32)))).reshape(fx.shape)
    panels = [("true ∇log p", jax.vmap(target.score)(grid))] + [
        (f"{name} (rel. Fisher {fisher:.3f})", jax.vmap(lambda y, a=apply, p=params: a(p, y))(grid))
        for name, (apply, params, fisher) in fields.items()
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6))
    for ax, (title, vec) in zip(axes, panels):
        vec = np.asarray(vec)
        norm = np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-8)
        ax.contourf(fx, fy, dens, levels=12, cmap="Greys", alpha=0.5)
        ax.quiver(grid[:, 0], grid[:, 1], vec[:, 0] / norm[:, 0], vec[:, 1] / norm[:, 0], np.log1p(norm[:, 0]),
                  cmap="viridis", scale=22, width=0.006)
        ax.set_title(title, fontsize=9)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Score fields (direction; colour = log(1 + ‖s‖)), 3-component 2-D mixture")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def scaling_figure(path, rows, dims):
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for name in LOSSES:
        sel = [r for r in rows if r["loss"] == name]
        for ax, key in zip(axes, ("rel_fisher", "ms_per_step", "step_temp_MiB")):
            ax.plot([r["d"] for r in sel], [r[key] for r in sel], "o-", label=name)
    for ax, title in zip(axes, ("relative Fisher divergence", "time per training step (ms)",
                                "compiled temp memory of one step (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(dims, [str(d) for d in dims])
        ax.set_xlabel("dimension d")
        ax.set_title(title)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(cfg: Config):
    out = report.output_dir(__file__, cfg.out)
    key = jax.random.key(cfg.seed)
    k_2d, k_dim = jax.random.split(key)

    # -- 2-D mixture: all four losses, quiver plot -------------------------------------
    target = mixture_2d()
    x_eval = target.sample(jax.random.fold_in(k_2d, 99), cfg.n_eval)
    fields, rows_2d = {}, []
    for i, name in enumerate(LOSSES):
        tic = time.perf_counter()
        apply, params, ms, memory = train(name, target, cfg, cfg.steps_2d, jax.random.fold_in(k_2d, i))
        fisher = relative_fisher(apply, params, target, x_eval)
        fields[name] = (apply, params, fisher)
        rows_2d.append({"loss": name, "rel_fisher": fisher, "ms_per_step": ms, "wall_s": time.perf_counter() - tic})
        print(f"2-D {name}: relative Fisher {fisher:.4f}, {ms:.2f} ms/step")
    quiver_figure(out / "score_fields_2d.png", target, fields)

    # -- dimension sweep ------------------------------------------------------------------
    rows = []
    for d in cfg.dims:
        target = mixture_nd(d)
        x_eval = target.sample(jax.random.fold_in(k_dim, 1000 + d), cfg.n_eval)
        for i, name in enumerate(LOSSES):
            apply, params, ms, memory = train(name, target, cfg, cfg.steps_dim, jax.random.fold_in(k_dim, 10 * d + i))
            row = {"d": d, "loss": name, "rel_fisher": relative_fisher(apply, params, target, x_eval),
                   "ms_per_step": ms, "step_temp_MiB": memory / 2**20}
            rows.append(row)
            print(f"d={d} {name}: relative Fisher {row['rel_fisher']:.4f}, {ms:.2f} ms/step, "
                  f"{row['step_temp_MiB']:.2f} MiB")
    scaling_figure(out / "score_matching_vs_dim.png", rows, list(cfg.dims))

    print("\n2-D mixture (3 components), relative Fisher divergence of the EMA score network:\n")
    print(report.markdown_table(rows_2d, ["loss", "rel_fisher", "ms_per_step"]))
    print(f"\nDimension sweep ({cfg.steps_dim} steps, batch {cfg.batch_size}):\n")
    print(report.markdown_table(rows, ["d", "loss", "rel_fisher", "ms_per_step", "step_temp_MiB"]))
    path = report.write_results(out, config=cfg, metrics={"two_d": rows_2d, "dims": rows})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main(report.cli(Config, __doc__))
