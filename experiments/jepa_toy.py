"""A JEPA world model on controlled dynamical systems: which ingredient prevents collapse.

Systems (``genjax.data.dynamics``): ``linear``, a 4-D state ``s_{t+1} = A s_t + B a_t + w_t`` (A = 0.9 × a rotation,
2-D Gaussian actions) seen through 32-D noisy observations ``x_t = C s_t + v_t``; ``sprite``, a 2×2 sprite on an
8×8 image (64 noisy pixels) moved by 5 discrete actions, state = its position.  Every variant trains the same MLP
encoder ``f_θ`` (p → 64 → k) and action-conditioned predictor ``g_φ`` (k + |a| → 64 → k) on
``‖g_φ(f_θ(x_t), a_t) − target(x_{t+1})‖²`` (``genjax.models.jepa``, MATH.md §15) and differs only in the target
and the regulariser:

* ``online``: target ``f_θ(x_{t+1})`` with its gradient, no regulariser (no asymmetry: the loss is 0 at f ≡ const);
* ``stopgrad``: target ``sg[f_θ(x_{t+1})]`` (SimSiam's asymmetry, no average);
* ``ema``: target ``sg[f_θ̄(x_{t+1})]``, θ̄ an EMA of θ (BYOL / I-JEPA), trained through ``fit`` as SGD on θ̄;
* ``vicreg``: the online target plus VICReg's variance hinge and covariance penalty on ``f_θ(x_t)``.

Reported on held-out stationary trajectories, mean ± sd over seeds: per-dimension embedding std (complete collapse
→ 0), effective rank of the centred embeddings (dimensional collapse → 1; the linear state has 4 dimensions) and
RankMe (uncentred: collapse onto a constant → 1), the held-out R² of a linear probe of the true state, and the
relative 1-step and H-step open-loop prediction errors in embedding space (``E‖ẑ_h − f(x_h)‖² / total variance of
f(x_h)``: 1 = predicting the mean).  "train s" includes compilation and the evaluations every ``eval_every`` steps.
The reference row is the oracle world model of the linear system: the fixed encoder ``z = C⁺x`` and the closed-form
population predictor ``[A_eff B_eff]``.
Run: ``python experiments/jepa_toy.py`` (about 2.5 min on 2 busy CPU cores); ``--systems linear`` for one system.
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

from genjax import report  # noqa: E402
from genjax.data.dynamics import LinearGaussianSystem, SpriteSystem, linear_gaussian_system  # noqa: E402
from genjax.models import jepa as J  # noqa: E402
from genjax.nets.vae import MLP  # noqa: E402

Variant = Literal["online", "stopgrad", "ema", "vicreg"]
VARIANTS: tuple[Variant, ...] = ("online", "stopgrad", "ema", "vicreg")
System = Literal["linear", "sprite"]


@dataclasses.dataclass(frozen=True)
class Config(report.RunConfig):
    systems: tuple[System, ...] = ("linear", "sprite")
    """Systems to study: the linear-Gaussian one and/or the moving sprite."""
    variants: tuple[Variant, ...] = VARIANTS
    """Variants to train (see the module doc)."""
    seeds: int = 3
    """Training seeds per variant (network initialisation and data stream)."""
    steps: int = 3000
    """Training steps per run."""
    batch_size: int = 256
    """Transitions per step (fresh draws from the stationary system)."""
    lr: float = 1e-3
    """Adam learning rate."""
    embed_dim: int = 8
    """Embedding dimension k."""
    hidden: int = 64
    """Hidden width of the encoder and predictor MLPs."""
    decay: float = 0.99
    """EMA decay γ of the target encoder (variant ema)."""
    variance_weight: float = 8.0
    """VICReg variance-hinge weight (variant vicreg); VICReg's 25 : 25 ratio with the mean-squared invariance term
    is k : 1 with this summed prediction loss."""
    covariance_weight: float = 0.32
    """VICReg covariance weight (VICReg's ν/λ = 1/25, times k)."""
    obs_dim: int = 32
    """Observation dimension p."""
    obs_std: float = 0.3
    """Observation noise std σ_v."""
    sprite_grid: int = 8
    """Sprite system: image side."""
    sprite_size: int = 2
    """Sprite system: sprite side."""
    sprite_noise: float = 0.1
    """Sprite system: pixel noise std."""
    horizon: int = 5
    """Open-loop prediction horizon H of the evaluation."""
    eval_every: int = 200
    """Steps between evaluations of the training curves."""
    test_trajectories: int = 4000
    """Held-out trajectories (the probe fits on the first half and scores on the second)."""

    def __post_init__(self):
        report.check_positive(self, "seeds", "steps", "batch_size", "lr", "embed_dim", "hidden", "variance_weight",
                              "covariance_weight", "obs_dim", "obs_std", "horizon", "eval_every", "test_trajectories",
                              "sprite_grid", "sprite_size")
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"--decay must lie in [0, 1), got {self.decay!r}")
        if not self.variants or not self.systems:
            raise ValueError("--variants and --systems need at least one entry each")
        if self.steps % self.eval_every:
            raise ValueError(f"--steps ({self.steps}) must be a multiple of --eval-every ({self.eval_every})")


def make_jepa(cfg: Config, variant: str, encoder: MLP, predictor: MLP) -> J.JEPA:
    regulariser = dict(variance_weight=cfg.variance_weight, covariance_weight=cfg.covariance_weight)
    return J.JEPA(encoder.apply, lambda p, z, a: predictor.apply(p, jnp.concatenate([z, a])),
                  target="online" if variant == "vicreg" else variant, **(regulariser if variant == "vicreg" else {}))


def diagnostics(jepa: J.JEPA, params, test) -> dict:
    """Embedding std, effective rank, held-out probe R² of s_0 and the relative h-step errors on ``test``."""
    z = jax.vmap(lambda x: jepa.encode(params["encoder"], x))(test["x"][:, 0])
    half = z.shape[0] // 2
    std = J.embedding_std(z)
    errors = J.prediction_errors(jepa, params, test["x"], test["a"])
    return {"std_mean": jnp.mean(std), "std_min": jnp.min(std), "effective_rank": J.effective_rank(z),
            "rankme": J.effective_rank(z, center=False),
            "probe_r2": J.linear_probe_r2(z[:half], test["s"][:half, 0], z[half:], test["s"][half:, 0]),
            "error_1": errors[0], "error_H": errors[-1]}


def reference(system, test) -> dict:
    """The oracle world model: z = C⁺x and the closed-form predictor (float32 JEPA with fixed parameters)."""
    E = np.linalg.pinv(system.C)
    P = system.optimal_linear_predictor(E)
    jepa = J.JEPA(lambda p, x: p["E"] @ x, lambda p, z, a: p["A"] @ z + p["B"] @ a, target="online")
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    params = {"encoder": {"E": f32(E)}, "predictor": {"A": f32(P.A), "B": f32(P.B)}}
    errors = np.asarray(J.prediction_errors(jepa, params, test["x"], test["a"])).tolist()
    return {**{k: float(v) for k, v in diagnostics(jepa, params, test).items()}, "errors": errors}


def mean_sd(values) -> str:
    values = np.asarray(values, np.float64)
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}" if values.size > 1 else f"{values.mean():.3f}"


def study(cfg: Config, name: str, system, out, key) -> dict:
    """Train every variant on ``system`` for ``cfg.seeds`` seeds; print the table, write the figures."""
    key_test, key_runs = jax.random.split(key)
    test = jax.jit(lambda k: system.sample_trajectories(k, cfg.test_trajectories, cfg.horizon))(key_test)
    encoder = MLP((cfg.embed_dim,), hidden=(cfg.hidden,))
    predictor = MLP((cfg.embed_dim,), hidden=(cfg.hidden,))

    runs = {}
    for variant in cfg.variants:
        for seed, key in enumerate(jax.random.split(key_runs, cfg.seeds)):
            k_enc, k_pred, k_fit = jax.random.split(key, 3)
            enc_params = encoder.init(k_enc, jnp.zeros(system.obs_dim))
            pred_params = predictor.init(k_pred, jnp.zeros(cfg.embed_dim + system.action_dim))
            jepa = make_jepa(cfg, variant, encoder, predictor)
            evaluate = jax.jit(lambda params, jepa=jepa: diagnostics(jepa, params, test))
            start = {k: float(v) for k, v in evaluate(J.init_jepa_params(jepa, enc_params, pred_params)).items()}
            tic = time.perf_counter()
            state, history = J.train_jepa(
                jepa, enc_params, pred_params, system.sample_transitions, key=k_fit, optimizer=optax.adam(cfg.lr),
                decay=cfg.decay, num_steps=cfg.steps, batch_size=cfg.batch_size, steps_per_call=cfg.eval_every,
                eval_fn=lambda s, evaluate=evaluate: evaluate(s.params), eval_every=cfg.eval_every, progress=False)
            curve = [{"step": 0, **start}] + history["eval"]
            errors = J.prediction_errors(jepa, state.params, test["x"], test["a"])
            runs.setdefault(variant, []).append({"seed": seed, "train_s": time.perf_counter() - tic, "final": curve[-1],
                                                 "curve": curve, "errors": np.asarray(errors).tolist(),
                                                 "loss": float(np.mean(history["loss"][-100:]))})
            print(f"{name} {variant:9s} seed {seed}: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in curve[-1].items() if k != "step")
                  + f" ({runs[variant][-1]['train_s']:.1f} s)", flush=True)

    ref = reference(system, test) if isinstance(system, LinearGaussianSystem) else None
    cols = ["variant", "std (mean)", "std (min)", "effective rank", "RankMe", "probe R²", "error h=1",
            f"error h={cfg.horizon}", "train s"]
    keys = {"std (mean)": "std_mean", "std (min)": "std_min", "effective rank": "effective_rank", "RankMe": "rankme",
            "probe R²": "probe_r2", "error h=1": "error_1", f"error h={cfg.horizon}": "error_H"}
    rows = [{"variant": v, **{c: mean_sd([r["final"][k] for r in rs]) for c, k in keys.items()},
             "train s": f"{np.mean([r['train_s'] for r in rs]):.1f}"} for v, rs in runs.items()]
    if ref is not None:
        rows.append({"variant": "reference: z = C⁺x, closed-form predictor",
                     **{c: f"{ref[k]:.3f}" for c, k in keys.items()}, "train s": "–"})
    init = [r["curve"][0] for rs in runs.values() for r in rs]
    print(f"\nJEPA on the {describe(cfg, system)}; k = {cfg.embed_dim}, {cfg.steps} steps of {cfg.batch_size}; "
          f"{cfg.seeds} seeds, mean ± sd; initial encoders: std {mean_sd([c['std_mean'] for c in init])}, "
          f"effective rank {mean_sd([c['effective_rank'] for c in init])}, probe R² "
          f"{mean_sd([c['probe_r2'] for c in init])}")
    print(report.markdown_table(rows, cols) + "\n")

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = (("effective_rank", "effective rank of f(x)"), ("probe_r2", "held-out linear-probe R² of the state"),
              ("std_mean", "mean embedding std"))
    for i, (variant, rs) in enumerate(runs.items()):
        for j, r in enumerate(rs):
            steps = [c["step"] for c in r["curve"]]
            for ax, (metric, _) in zip(axes, panels):
                ax.plot(steps, [c[metric] for c in r["curve"]], f"C{i}-", alpha=0.8, label=variant if j == 0 else None)
    for ax, (metric, title) in zip(axes, panels):
        if ref is not None:
            ax.axhline(ref[metric], color="k", ls=":", lw=1, label="reference (C⁺x)")
        ax.set(xlabel="training step", title=f"{name}: {title}")
    axes[2].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"jepa_{name}_training.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4.2))
    horizons = np.arange(1, cfg.horizon + 1)
    for i, (variant, rs) in enumerate(runs.items()):
        ax.plot(horizons, np.mean([r["errors"] for r in rs], axis=0), f"C{i}o-", label=variant)
    if ref is not None:
        ax.plot(horizons, ref["errors"], "k:", marker="s", label="reference (C⁺x, closed form)")
    ax.set(xlabel="open-loop horizon h", ylabel="relative error in embedding space", yscale="log",
           title=f"{name}: h-step prediction error (1 = the mean)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"jepa_{name}_horizon.png", dpi=120)
    plt.close(fig)
    return {"rows": rows, "reference": ref, "runs": runs}


def describe(cfg: Config, system) -> str:
    if isinstance(system, LinearGaussianSystem):
        return (f"linear-Gaussian system (state {system.state_dim}, actions {system.action_dim}, observations "
                f"{system.obs_dim}, σ_v = {system.obs_std})")
    return (f"sprite system ({system.size}×{system.size} sprite on {system.grid}×{system.grid}, 5 actions, pixel noise "
            f"{system.noise_std})")


def main(cfg: Config):
    out = report.output_dir(__file__, cfg.out)
    systems = {"linear": linear_gaussian_system(cfg.seed, obs_dim=cfg.obs_dim, obs_std=cfg.obs_std),
               "sprite": SpriteSystem(cfg.sprite_grid, cfg.sprite_size, cfg.sprite_noise)}
    results = {name: study(cfg, name, systems[name], out, key)
               for name, key in zip(cfg.systems, jax.random.split(jax.random.key(cfg.seed), len(cfg.systems)))}
    report.write_results(out, config=cfg, metrics=results)
    print(f"wrote {out / 'results.json'} and the figures jepa_<system>_training.png, jepa_<system>_horizon.png "
          f"in {out}")


if __name__ == "__main__":
    main(report.cli(Config, __doc__))
