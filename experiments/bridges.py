"""Bridges between two data sets: couplings and latent noise, sample quality, NFE, straightness, path energy.

Two-sided interpolants ``x_t = (1 − t) x0 + t x1 + γ(t) z`` (MATH.md §10) between toy sets, as in Tong et
al. 2023 ("Improving and generalizing flow-based generative models with minibatch optimal transport";
"Simulation-free Schrödinger bridges via score and flow matching"): ``moons → eight_gaussians`` and
``eight_gaussians → checkerboard`` (x0 the first, x1 the second; the toy sets keep FFJORD's scales, see
README).  One ``TimeMLP`` per model, trained with the same steps and optimiser on pairs from a coupling
(MATH.md §11, ``genjax.couplings``):

* γ = 0 (``bridge()``, velocity b): independent pairs (I-CFM), minibatch exact OT (OT-CFM), Sinkhorn
  pairs at ``--sinkhorn-epsilon``;
* γ = σ sqrt(t(1 − t)) (``bridge(gamma="brownian", a=σ²)`` on [1e-3, 1 − 1e-3]; heads ``(b, η)``,
  antithetic loss): independent pairs (a stochastic interpolant, Albergo et al. 2023) and SB-CFM
  (entropic OT at ``ε = 2σ²``, the Schrödinger bridge of ``σW``).  Their SDEs run at ``ε = σ²/2``.

Each model transports held-out samples both ways with the ODE of b (forward x0 → x1, backward x1 → x0):
W2 to held-out target data beside the floor of two data samples, the cross-entropy ``−E log p_target`` of
the samples where the target's density is known (beside its entropy), for Euler with ``--euler-steps`` and
adaptive Tsit5, and the SDE for the γ > 0 models.  Path diagnostics (``genjax.metrics.paths``) along the
forward Tsit5 flow: path energy ``PE = ∫E‖b‖²dt``, ``NPE = |PE − W2²|/W2²`` (W2² by exact OT between data
samples), straightness ``S = ∫E‖(Z_1 − Z_0) − Ż_t‖²dt`` and ``S/PE``; for γ = 0, ``E‖x1 − x0‖²`` of the
training pairs against ``PE + L*`` (``L*`` ≈ the final training loss, MATH.md §11).

Then noise → data on the quickstart sets: the one-sided ``linear`` path with Gaussian draws paired to the
data by exact OT (OT-CFM) or left independent (I-CFM), equal steps, sampled from noise.

    python experiments/bridges.py            # ≈ 12 min on 2 idle CPU cores
    python experiments/bridges.py --quick    # smoke run, < 1 min
"""

from __future__ import annotations

import dataclasses
import math
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
from genjax import couplings, interpolants, metrics, report  # noqa: E402
from genjax.data import toy  # noqa: E402
from genjax.nets import TimeMLP  # noqa: E402

TaskName = Literal["moons-eight_gaussians", "eight_gaussians-checkerboard"]
TASKS: tuple[TaskName, ...] = ("moons-eight_gaussians", "eight_gaussians-checkerboard")
ModelName = Literal["I-CFM", "OT-CFM", "Sinkhorn-CFM", "I-SI", "SB-CFM"]
MODELS: tuple[ModelName, ...] = ("I-CFM", "OT-CFM", "Sinkhorn-CFM", "I-SI", "SB-CFM")
NoiseSet = Literal["eight_gaussians", "checkerboard", "moons"]
TRAJECTORY_PANELS = ("I-CFM", "OT-CFM", "SB-CFM")  # ODE paths in the figure, plus SB-CFM's SDE


@dataclasses.dataclass(frozen=True)
class Config(report.RunConfig):
    tasks: tuple[TaskName, ...] = TASKS
    """Bridge tasks x0-x1."""
    models: tuple[ModelName, ...] = MODELS
    """Bridge models (coupling × γ)."""
    noise_sets: tuple[NoiseSet, ...] = ("eight_gaussians", "checkerboard")
    """Data sets of the noise → data comparison (I-CFM vs OT-CFM); empty to skip."""
    steps: int = 3000
    """Training steps of every model."""
    batch_size: int = 256
    """Training batch size (= the coupling's minibatch)."""
    hidden: int = 256
    """Width of each hidden layer of the TimeMLP."""
    depth: int = 3
    """Number of hidden layers."""
    lr: float = 2e-3
    """Adam learning rate."""
    ema_decay: float = 0.995
    """Decay of the EMA weights that are evaluated (no bias correction: keep 1/(1 − decay) << steps)."""
    clip_norm: float = 1.0
    """Global gradient-norm clip."""
    sigma: float = 0.5
    """σ of the Brownian bridge γ = σ sqrt(t(1 − t)) and of SB-CFM (entropic OT at ε = 2σ²; SDE ε = σ²/2)."""
    sinkhorn_epsilon: float = 0.2
    """Absolute entropic regularisation of the Sinkhorn-CFM pairs (units of the squared distance)."""
    n_eval: int = 2000
    """Transported samples per direction and solver, and held-out target points (W2, cross-entropy)."""
    floor_repeats: int = 3
    """Pairs of data samples for the floors and for the W2² estimate."""
    euler_steps: tuple[int, ...] = (1, 2, 4, 10, 100)
    """Euler steps of the NFE table."""
    sde_steps: int = 200
    """Euler–Maruyama steps of the SDE (γ > 0 models)."""
    tol: float = 1e-4
    """rtol = atol of the adaptive Tsit5 solves."""
    num_times: int = 65
    """Saved times of the path diagnostics (Simpson's rule)."""
    n_plot: int = 300
    """Trajectories drawn per panel."""
    quick: bool = False
    """Smoke run (< 1 min): the first task, I-CFM/OT-CFM/SB-CFM, one noise set, 200 steps, 256 samples, a small
    net; overrides those flags."""

    def __post_init__(self):
        report.check_positive(self, "steps", "batch_size", "hidden", "depth", "lr", "clip_norm", "sigma",
                              "sinkhorn_epsilon", "n_eval", "euler_steps", "sde_steps", "tol", "num_times", "n_plot")
        if not self.tasks or not self.models:
            raise ValueError("--tasks and --models need at least one entry each")
        if self.floor_repeats < 2:
            raise ValueError(f"--floor-repeats must be >= 2 (it gives a spread), got {self.floor_repeats}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"--ema-decay must be in [0, 1), got {self.ema_decay}")
        if self.num_times < 3:
            raise ValueError(f"--num-times must be >= 3, got {self.num_times}")
        if self.n_plot > self.n_eval:
            raise ValueError(f"--n-plot ({self.n_plot}) must be <= --n-eval ({self.n_eval})")

    def resolved(self) -> "Config":
        """The configuration that runs: ``--quick`` replaces the sizes by a smoke run's."""
        if not self.quick:
            return self
        return dataclasses.replace(self, tasks=self.tasks[:1], models=("I-CFM", "OT-CFM", "SB-CFM"),
                                   noise_sets=self.noise_sets[:1], steps=200, hidden=64, ema_decay=0.9, n_eval=256,
                                   floor_repeats=2, euler_steps=(1, 10), sde_steps=20, num_times=17, n_plot=64,
                                   quick=False)


def gaussian_noise(key, n):
    return jax.random.normal(key, (n, 2))


def bridge_models(cfg: Config) -> dict:
    """name → (coupling, γ menu entry) (MATH.md §11)."""
    menu = {
        "I-CFM": (couplings.independent(), "none"),
        "OT-CFM": (couplings.exact_ot("host"), "none"),
        "Sinkhorn-CFM": (couplings.sinkhorn(cfg.sinkhorn_epsilon), "none"),
        "I-SI": (couplings.independent(), "brownian"),
        "SB-CFM": (couplings.schrodinger_bridge(cfg.sigma), "brownian"),
    }
    return {name: menu[name] for name in cfg.models}


def train(cfg, apply_fn, params, ip, data, prediction, key, log_path):
    """EMA model, the mean training loss of the last 10% of steps, steps/s."""
    state, history = genjax.train_interpolant(
        apply_fn, params, ip, data, key=key, optimizer=optax.adam(cfg.lr), prediction=prediction,
        antithetic=not interpolants.latent_free(ip), num_steps=cfg.steps, batch_size=cfg.batch_size,
        steps_per_call=math.gcd(cfg.steps, 500), ema_decay=cfg.ema_decay, clip_norm=cfg.clip_norm, progress=False,
        metrics_path=log_path)
    loss = float(np.mean(history["loss"][-max(1, cfg.steps // 10):]))
    return genjax.Model(apply_fn, state.ema_params), loss, history["steps_per_s"]


def pair_cost(data, key, batch_size: int, batches: int = 8) -> float:
    """``E‖x1 − x0‖²`` of the coupled training pairs (MATH.md §11: ``= PE + L*`` on the linear path)."""
    return float(np.mean([couplings.transport_cost(*data(k, batch_size)) for k in jax.random.split(key, batches)]))


def w2_squared(sample0, sample1, key, n: int, repeats: int) -> tuple[float, float]:
    """Mean and sd of ``W2²`` between ``n`` draws of each end (exact OT), over ``repeats``."""
    values = [metrics.wasserstein2(sample0(k0, n), sample1(k1, n)) ** 2
              for k0, k1 in (jax.random.split(k) for k in jax.random.split(key, repeats))]
    return float(np.mean(values)), float(np.std(values, ddof=1))


def transport(cfg, model, ip, prediction, x_init, backward, evaluate, sde=None):
    """Samples of the other end from ``x_init``: ``{sampler: evaluate(samples) + NFE}`` and the Tsit5 trajectory.

    ``sde = (key, ε)`` adds Euler–Maruyama with diffusion ε (needs a ``(b, η)`` model).
    """
    ends = dict(t_start=ip.t_max, t_end=ip.t_min) if backward else dict(t_start=ip.t_min, t_end=ip.t_max)
    traj = metrics.ode_trajectory(model, ip, x_init, prediction=prediction, backward=backward,
                                  num_times=cfg.num_times, rtol=cfg.tol, atol=cfg.tol)
    rows = {}
    for n in cfg.euler_steps:
        samples, _ = genjax.sample_ode(model, ip, x_init=x_init, prediction=prediction, solver="euler", num_steps=n,
                                       **ends)
        rows[f"euler-{n}"] = {**evaluate(samples), "NFE": n}
    rows["tsit5"] = {**evaluate(traj.z[0] if backward else traj.z[-1]), "NFE": traj.nfe}  # times increase in traj
    if sde is not None:
        samples, _ = genjax.sample_sde(model, ip, sde[0], x_init=x_init, prediction=prediction, diffusion=sde[1],
                                       num_steps=cfg.sde_steps, **ends)
        rows["sde"] = {**evaluate(samples), "NFE": cfg.sde_steps}
    return rows, traj


def path_row(traj, w2sq, cost, loss, latent_free: bool) -> dict:
    pe = metrics.path_energy(traj)
    row = {"PE": pe, "W2²": w2sq[0], "W2² sd": w2sq[1], "NPE": metrics.normalised_path_energy(pe, w2sq[0]),
           "S": metrics.straightness(traj), "S/PE": metrics.straightness(traj, normalised=True),
           "E‖x1−x0‖²": cost}
    if latent_free:  # the loss is the velocity loss: its minimum is L*
        row.update({"loss": loss, "PE + loss": pe + loss})
    return row


def cross_entropy_cell(row: dict):
    """``"mean ± se"``, or the fraction of samples off the support where the cross-entropy is infinite."""
    if "cross_entropy" not in row:
        return None
    if math.isinf(row["cross_entropy"]):
        return f"∞ ({row['off_support']:.1%} off support)"
    return row["cross-entropy"]


def main(cfg: Config):
    cfg = cfg.resolved()
    out = report.output_dir(__file__, cfg.out)
    key = jax.random.key(cfg.seed)
    k_data, k_train, k_sde, k_w2, k_pairs = jax.random.split(key, 5)
    tic = time.perf_counter()

    evaluators = {}

    def evaluator(name):
        if name not in evaluators:
            ds = toy.get(name)
            evaluators[name] = report.evaluator(ds.sample, jax.random.fold_in(k_data, len(evaluators)), cfg.n_eval,
                                                {"W2": metrics.wasserstein2}, repeats=cfg.floor_repeats,
                                                log_prob=ds.log_prob, entropy=ds.entropy)
        return evaluators[name]

    nets = {heads: TimeMLP(hidden=(cfg.hidden,) * cfg.depth, heads=heads) for heads in (1, 2)}
    applies = {heads: net.apply for heads, net in nets.items()}  # one apply_fn per net: samplers compile once
    params0 = {heads: net.init(k_train, jnp.zeros(()), jnp.zeros((2,))) for heads, net in nets.items()}
    paths = {"none": interpolants.bridge(), "brownian": interpolants.bridge(gamma="brownian", a=cfg.sigma**2)}
    diffusion = 0.5 * cfg.sigma**2

    results = {"bridges": [], "noise_to_data": [], "floors": {}, "w2_squared": {}}
    panels = {}
    for i, task in enumerate(cfg.tasks):
        name0, name1 = task.split("-")
        ds0, ds1 = toy.get(name0), toy.get(name1)
        ev0, ev1 = evaluator(name0), evaluator(name1)
        results["floors"][task] = {"x0": ev0.summary(), "x1": ev1.summary()}
        w2sq = w2_squared(ds0.sample, ds1.sample, jax.random.fold_in(k_w2, i), cfg.n_eval, cfg.floor_repeats)
        results["w2_squared"][task] = {"mean": w2sq[0], "sd": w2sq[1], "n": cfg.n_eval}
        x0 = ds0.sample(jax.random.fold_in(k_data, 100 + i), cfg.n_eval)  # held out, shared by the models
        x1 = ds1.sample(jax.random.fold_in(k_data, 200 + i), cfg.n_eval)
        print(f"\n== {task}: W2² = {w2sq[0]:.3f} ± {w2sq[1]:.3f} (exact OT, n = {cfg.n_eval})", flush=True)
        panels[task] = {}
        for j, (name, (coupling, gamma)) in enumerate(bridge_models(cfg).items()):
            ip, heads = paths[gamma], 1 if gamma == "none" else 2
            prediction = "velocity" if heads == 1 else ("velocity", "noise")
            data = couplings.coupled_data(ds0.sample, ds1.sample, coupling)
            t0 = time.perf_counter()
            model, loss, steps_per_s = train(cfg, applies[heads], params0[heads], ip, data, prediction,
                                             jax.random.fold_in(k_train, 10 * i + j),
                                             out / f"train_{task}_{name}.jsonl")
            train_s = time.perf_counter() - t0
            sde = None if heads == 1 else (jax.random.fold_in(k_sde, 10 * i + j), diffusion)
            fwd, traj = transport(cfg, model, ip, prediction, x0, False, ev1, sde)
            bwd, traj_bwd = transport(cfg, model, ip, prediction, x1, True, ev0, sde)
            row = {"task": task, "model": name, "coupling": type(coupling).__name__, "gamma": gamma,
                   "forward": fwd, "backward": bwd, "train_s": train_s, "train_steps_per_s": steps_per_s,
                   "eval_s": time.perf_counter() - t0 - train_s, "PE backward": metrics.path_energy(traj_bwd),
                   "S backward": metrics.straightness(traj_bwd),
                   **path_row(traj, w2sq, pair_cost(data, k_pairs, cfg.batch_size), loss, heads == 1)}
            results["bridges"].append(row)
            if name in TRAJECTORY_PANELS:
                panels[task][name] = traj.z[:, :cfg.n_plot]
            if name == "SB-CFM":
                _, stats = genjax.sample_sde(model, ip, jax.random.fold_in(k_sde, 999), x_init=x0[:cfg.n_plot],
                                             prediction=prediction, diffusion=diffusion, num_steps=cfg.sde_steps,
                                             t_start=ip.t_min, t_end=ip.t_max,
                                             save_times=np.linspace(ip.t_min, ip.t_max, cfg.num_times))
                panels[task]["SB-CFM SDE"] = np.asarray(stats["trajectory"])
            print(f"  {name:13s} W2 fwd {fwd['tsit5']['W2']:.3f} bwd {bwd['tsit5']['W2']:.3f} "
                  f"NPE {row['NPE']:.3f} S {row['S']:.3f} S/PE {row['S/PE']:.3f} "
                  f"(train {train_s:.0f} s, eval {row['eval_s']:.0f} s)", flush=True)

    for i, name in enumerate(cfg.noise_sets):
        ds, ev = toy.get(name), evaluator(name)
        w2sq = w2_squared(ds.sample, gaussian_noise, jax.random.fold_in(k_w2, 100 + i), cfg.n_eval,
                          cfg.floor_repeats)
        results["w2_squared"][f"{name}-normal"] = {"mean": w2sq[0], "sd": w2sq[1], "n": cfg.n_eval}
        noise = gaussian_noise(jax.random.fold_in(k_data, 300 + i), cfg.n_eval)
        print(f"\n== N(0, I) → {name}: W2² = {w2sq[0]:.3f} ± {w2sq[1]:.3f}", flush=True)
        for j, (model_name, coupling) in enumerate((("I-CFM", couplings.independent()),
                                                    ("OT-CFM", couplings.exact_ot("host")))):
            data = couplings.coupled_data(ds.sample, gaussian_noise, coupling)
            t0 = time.perf_counter()
            model, loss, steps_per_s = train(cfg, applies[1], params0[1], interpolants.linear, data, "velocity",
                                             jax.random.fold_in(k_train, 1000 + 10 * i + j),
                                             out / f"train_noise_{name}_{model_name}.jsonl")
            train_s = time.perf_counter() - t0
            rows, traj = transport(cfg, model, interpolants.linear, "velocity", noise, True, ev)
            row = {"dataset": name, "model": model_name, "samples": rows, "train_s": train_s,
                   "train_steps_per_s": steps_per_s,
                   **path_row(traj, w2sq, pair_cost(data, k_pairs, cfg.batch_size), loss, True)}
            results["noise_to_data"].append(row)
            print(f"  {model_name:13s} W2 euler-1 {rows[f'euler-{cfg.euler_steps[0]}']['W2']:.3f} "
                  f"tsit5 {rows['tsit5']['W2']:.3f} (NFE {rows['tsit5']['NFE']}) NPE {row['NPE']:.3f} "
                  f"S {row['S']:.3f} (train {train_s:.0f} s)", flush=True)

    results["wall_s"] = time.perf_counter() - tic
    tables = markdown(cfg, results, evaluators)
    print("\n" + tables)
    (out / "results.md").write_text(tables + "\n")
    report.write_results(out, config=cfg, metrics=results)
    figure_trajectories(panels, out / "trajectories.png")
    figure_nfe(cfg, results, evaluators, out / "nfe.png")
    print(f"\nwall time {results['wall_s']:.0f} s; wrote {out / 'results.json'}, results.md, trajectories.png, nfe.png")


# -- tables ---------------------------------------------------------------------------
def markdown(cfg, results, evaluators) -> str:
    sde_label = f"SDE ε = σ²/2, EM-{cfg.sde_steps}"
    quality, paths, nfe, noise = [], [], [], []
    solvers = [f"euler-{n}" for n in cfg.euler_steps] + ["tsit5"]
    for task in cfg.tasks:
        name0, name1 = task.split("-")
        for r in (r for r in results["bridges"] if r["task"] == task):
            model = f"{r['model']} (γ = {'0' if r['gamma'] == 'none' else 'σ√(t(1−t))'})"
            for sampler, label in (("tsit5", "ODE tsit5"), ("sde", sde_label)):
                if sampler in r["forward"]:
                    f, b = r["forward"][sampler], r["backward"][sampler]
                    quality.append({"task": task, "model": model, "sampler": label, "W2 → x1": f["W2"],
                                    "CE → x1": cross_entropy_cell(f), "W2 → x0": b["W2"],
                                    "CE → x0": cross_entropy_cell(b), "NFE": f"{f['NFE']} / {b['NFE']}"})
            paths.append({**r, "model": model})
            for direction in ("forward", "backward"):
                nfe.append({"task": task, "model": r["model"], "direction": direction,
                            **{s: r[direction][s]["W2"] for s in solvers},
                            "tsit5 NFE": r[direction]["tsit5"]["NFE"]})
        f0, f1 = evaluators[name0].floor_row(), evaluators[name1].floor_row()
        quality.append({"task": task, "model": "data floor", "sampler": "two data samples", "W2 → x1": f1["W2"],
                        "CE → x1": f1.get("cross-entropy"), "W2 → x0": f0["W2"], "CE → x0": f0.get("cross-entropy")})
        for direction, floor in (("forward", f1), ("backward", f0)):
            nfe.append({"task": task, "model": "data floor", "direction": direction, "tsit5": floor["W2"]})
    for r in results["noise_to_data"]:
        tsit5 = r["samples"]["tsit5"]
        noise.append({"data": r["dataset"], "model": r["model"], **{s: r["samples"][s]["W2"] for s in solvers},
                      "tsit5 NFE": tsit5["NFE"], "CE (tsit5)": cross_entropy_cell(tsit5),
                      **{k: r[k] for k in ("E‖x1−x0‖²", "PE", "NPE", "S", "S/PE")}})
    for name in cfg.noise_sets:
        floor = evaluators[name].floor_row()
        noise.append({"data": name, "model": "data floor", "tsit5": floor["W2"],
                      "CE (tsit5)": floor.get("cross-entropy")})
    entropies = ", ".join(f"{name} {toy.get(name).entropy:.4f}" for name in evaluators if toy.get(name).entropy)
    parts = [
        f"TimeMLP 2→{cfg.hidden}×{cfg.depth}→2 (×2 heads (b, η) for γ > 0), Adam {cfg.lr:g}, clip {cfg.clip_norm:g}, "
        f"batch {cfg.batch_size}, {cfg.steps} steps, EMA {cfg.ema_decay:g}; σ = {cfg.sigma:g}, Sinkhorn ε = "
        f"{cfg.sinkhorn_epsilon:g}; Tsit5 rtol = atol = {cfg.tol:g}; wall time {results['wall_s']:.0f} s.",
        f"### Sample quality (n = {cfg.n_eval}; W2 to held-out data, cross-entropy −E log p_target where known)",
        report.markdown_table(quality, ["task", "model", "sampler", "W2 → x1", "CE → x1", "W2 → x0", "CE → x0", "NFE"]),
        f"Floors: two independent data samples ({cfg.floor_repeats} repeats, mean ± sd); entropies (nats): "
        f"{entropies}.",
        "### Paths (forward Tsit5 flow; W2² by exact OT between data samples)",
        report.markdown_table(paths, ["task", "model", "E‖x1−x0‖²", "loss", "PE + loss", "PE", "W2²", "NPE", "S",
                                      "S/PE", "train_steps_per_s"]),
        "### W2 against the number of steps (the floor in the tsit5 column)",
        report.markdown_table(nfe, ["task", "model", "direction", *solvers, "tsit5 NFE"]),
    ]
    if noise:
        parts += ["### Noise → data, linear one-sided path: I-CFM vs OT-CFM (W2 by solver; paths from noise)",
                  report.markdown_table(noise, ["data", "model", *solvers, "tsit5 NFE", "CE (tsit5)", "E‖x1−x0‖²", "PE",
                                                "NPE", "S", "S/PE"])]
    return "\n\n".join(parts)


# -- figures --------------------------------------------------------------------------
def figure_trajectories(panels, path):
    columns = [c for c in (*TRAJECTORY_PANELS, "SB-CFM SDE") if any(c in p for p in panels.values())]
    fig, axes = plt.subplots(len(panels), len(columns), figsize=(3.2 * len(columns), 3.2 * len(panels)),
                             squeeze=False)
    for i, (task, p) in enumerate(panels.items()):
        half = 1.05 * max(float(np.max(np.abs(p[c]))) for c in columns if c in p)
        for j, col in enumerate(columns):
            ax = axes[i, j]
            ax.set_xticks([]), ax.set_yticks([])
            if col not in p:
                ax.axis("off")
                continue
            z = p[col]
            ax.plot(z[:, :, 0], z[:, :, 1], color="0.5", lw=0.3, alpha=0.5)
            ax.scatter(z[0, :, 0], z[0, :, 1], s=2, color="C0", label="x0")
            ax.scatter(z[-1, :, 0], z[-1, :, 1], s=2, color="C3", label="transported")
            ax.set(xlim=(-half, half), ylim=(-half, half), aspect="equal")
            if i == 0:
                ax.set_title(col, fontsize=9)
            if j == 0:
                ax.set_ylabel(task.replace("-", " → "), fontsize=9)
    axes[0, 0].legend(loc="lower left", fontsize=7, markerscale=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure_nfe(cfg, results, evaluators, path):
    curves = []
    for task in cfg.tasks:
        name0, name1 = task.split("-")
        for direction, source, target in (("forward", name0, name1), ("backward", name1, name0)):
            lines = {r["model"]: r[direction] for r in results["bridges"] if r["task"] == task}
            curves.append((f"{source} → {target} ({direction})", lines, evaluators[target].floors["W2"]))
    for name in cfg.noise_sets:
        lines = {r["model"]: r["samples"] for r in results["noise_to_data"] if r["dataset"] == name}
        curves.append((f"N(0, I) → {name}", lines, evaluators[name].floors["W2"]))
    cols = min(3, len(curves))
    rows = math.ceil(len(curves) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, (title, lines, (floor, sd)) in zip(axes.flat, curves):
        for k, (model, samplers) in enumerate(lines.items()):
            steps = [samplers[f"euler-{n}"] for n in cfg.euler_steps]
            ax.plot([s["NFE"] for s in steps], [s["W2"] for s in steps], "o-", color=f"C{k}", ms=3, label=model)
            ax.plot(samplers["tsit5"]["NFE"], samplers["tsit5"]["W2"], "*", color=f"C{k}", ms=9)
        ax.axhspan(floor - sd, floor + sd, color="0.85")
        ax.axhline(floor, color="0.4", lw=0.8)
        ax.set(xscale="log", yscale="log", xlabel="NFE (Euler ●, Tsit5 ★)", ylabel="W2", title=title)
        ax.title.set_fontsize(9)
    for ax in list(axes.flat)[len(curves):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main(report.cli(Config, __doc__))
