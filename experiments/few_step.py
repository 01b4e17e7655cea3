"""The few-step frontier: sample quality against NFE for fast solvers, reflow, consistency and MeanFlow.

One flow-matching teacher per data set (``linear`` path, velocity, the quickstart's TimeMLP, cosine
learning-rate decay) is sampled with Euler, Heun, DPM-Solver++ (2M, 3M) and UniPC at each NFE in
``--nfes`` (MATH.md §12). From it, or from the data alone, the few-step models of MATH.md §13 are built:

* reflow (Liu et al. 2023): pairs ``(ODE_{1→0}(z), z)`` from the teacher's PF-ODE, retrained from the
  teacher's weights (1-rectified), and again from the 1-rectified model's pairs (2-rectified); sampled
  with Euler;
* one-step distillation of the teacher's pairs, from the 1-rectified weights (the teacher's coupling
  is the most accurate one: pairs of a rectified model inherit its ODE error);
* consistency distillation (CD) from the teacher's Heun step and consistency training (CT, the improved
  recipe: pseudo-Huber, log-normal noise, step curriculum) from data; multistep consistency sampling;
* MeanFlow (Geng et al. 2025) from data; steps ``x_r = x_t − (t − r) u``.

Quality: W2 to held-out data beside the floor of two data samples, and where the density is known
(eight_gaussians) the cross-entropy ``−E_model log p_data`` of ``--n-ce`` samples beside the entropy, which
exposes over-dispersed samples that W2 on 2 000 points does not see. Cost: training steps and wall time of
every stage (teacher, pair generation with its NFE, student), so each method's total is on record.

    python experiments/few_step.py            # ≈ 15 min on 2 idle CPU cores
    python experiments/few_step.py --quick    # smoke run, < 2 min
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
from genjax import interpolants, metrics, report  # noqa: E402
from genjax.data import toy  # noqa: E402
from genjax.distill import (ConsistencyModel, reflow_pairs, sample_consistency, sample_meanflow,  # noqa: E402
                            train_consistency, train_distill, train_meanflow, train_reflow)
from genjax.nets import IntervalMLP, TimeMLP  # noqa: E402
from genjax.samplers import sample_dpm, sample_unipc  # noqa: E402

DataName = Literal["moons", "eight_gaussians"]
Method = Literal["euler", "heun", "dpm++2m", "dpm++3m", "unipc", "reflow-1", "reflow-2", "distill", "CD", "CT",
                 "MeanFlow"]
METHODS: tuple[Method, ...] = ("euler", "heun", "dpm++2m", "dpm++3m", "unipc", "reflow-1", "reflow-2", "distill",
                               "CD", "CT", "MeanFlow")
SOLVER_METHODS = ("euler", "heun", "dpm++2m", "dpm++3m", "unipc")


@dataclasses.dataclass(frozen=True)
class Config(report.RunConfig):
    datasets: tuple[DataName, ...] = ("moons", "eight_gaussians")
    """Toy data sets (genjax.data.toy)."""
    methods: tuple[Method, ...] = METHODS
    """Samplers of the teacher and few-step models."""
    nfes: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    """Model evaluations per sample on the frontier."""
    teacher_steps: int = 20000
    """Training steps of the flow-matching teacher."""
    reflow_steps: int = 10000
    """Training steps of each reflow round (from the previous model's weights)."""
    distill_steps: int = 10000
    """Training steps of the one-step distillation (the teacher's pairs, from the 1-rectified weights)."""
    consistency_steps: int = 20000
    """Training steps of CD and of CT."""
    meanflow_steps: int = 20000
    """Training steps of MeanFlow."""
    meanflow_ratio: float = 0.5
    """Fraction of MeanFlow pairs with r ≠ t (the paper's 0.25 left the one-step map under-trained on 2-D sets)."""
    meanflow_time_sampling: Literal["uniform", "lognormal"] = "uniform"
    """MeanFlow's time-pair law: uniform reaches the (t_min, t_max) pair that one-step sampling uses."""
    meanflow_adaptive_p: float = 0.0
    """MeanFlow's adaptive-weight power p (0: plain squared error)."""
    num_pairs: int = 50000
    """Noise–sample pairs generated per reflow round."""
    pair_solver_steps: int = 32
    """DPM-Solver++(3M) steps that generate the reflow pairs (NFE per pair)."""
    batch_size: int = 256
    """Training batch size."""
    hidden: int = 256
    """Width of each hidden layer."""
    depth: int = 3
    """Number of hidden layers."""
    lr: float = 2e-3
    """Peak Adam learning rate (cosine decay to 0 over each run)."""
    ema_decay: float = 0.999
    """Decay of the EMA weights that are sampled."""
    clip_norm: float = 1.0
    """Global gradient-norm clip."""
    n_eval: int = 2000
    """Samples and held-out points of W2 (exact OT)."""
    n_ce: int = 20000
    """Samples whose cross-entropy under the true density is reported."""
    floor_repeats: int = 5
    """Pairs of data samples for the floors."""
    quick: bool = False
    """Smoke run (< 2 min): one data set, 300 training steps everywhere, a small net, few samples."""

    def __post_init__(self):
        report.check_positive(self, "nfes", "teacher_steps", "reflow_steps", "distill_steps", "consistency_steps",
                              "meanflow_steps", "num_pairs", "pair_solver_steps", "batch_size", "hidden", "depth",
                              "lr", "clip_norm", "n_eval", "n_ce")
        if not self.datasets or not self.methods:
            raise ValueError("--datasets and --methods need at least one entry each")
        if not 0 <= self.meanflow_ratio <= 1:
            raise ValueError(f"--meanflow-ratio must be in [0, 1], got {self.meanflow_ratio}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"--ema-decay must be in [0, 1), got {self.ema_decay}")
        if self.floor_repeats < 2:
            raise ValueError(f"--floor-repeats must be >= 2 (it gives a spread), got {self.floor_repeats}")

    def resolved(self) -> "Config":
        if not self.quick:
            return self
        steps = 300
        return dataclasses.replace(self, datasets=self.datasets[-1:], teacher_steps=steps, reflow_steps=steps,
                                   distill_steps=steps, consistency_steps=steps, meanflow_steps=steps,
                                   num_pairs=2048, pair_solver_steps=8, hidden=64, ema_decay=0.9, n_eval=256,
                                   n_ce=1024, floor_repeats=2, nfes=(1, 4), quick=False)


def fit_kwargs(cfg: Config, steps: int) -> dict:
    return dict(num_steps=steps, batch_size=cfg.batch_size, steps_per_call=math.gcd(steps, 1000),
                ema_decay=cfg.ema_decay, clip_norm=cfg.clip_norm, progress=False)


def optimizer(cfg: Config, steps: int):
    return optax.adam(optax.cosine_decay_schedule(cfg.lr, steps))


class Stopwatch:
    """Wall time of the stages of one data set, in seconds."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def __call__(self, stage: str, fn, *args, **kwargs):
        tic = time.perf_counter()
        out = jax.block_until_ready(fn(*args, **kwargs))
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - tic
        return out


def sample_fns(cfg: Config, models: dict, ip) -> dict:
    """method → ``sample(key, n, nfe) -> samples`` (or ``None`` where the method cannot spend ``nfe``)."""
    teacher, shape = models.get("teacher"), (2,)

    def ode(model, solver):
        def sample(key, n, nfe):
            if solver == "heun" and nfe % 2:
                return None  # two evaluations per Heun step
            steps = nfe // 2 if solver == "heun" else nfe
            return genjax.sample_ode(model, ip, key, (n, *shape), prediction="velocity", solver=solver,
                                     num_steps=steps)[0]
        return sample

    def fast(fn, **kw):
        return lambda key, n, nfe: fn(teacher, ip, key, (n, *shape), prediction="velocity", num_steps=nfe, **kw)[0]

    table = {}
    if teacher is not None:
        table.update({"euler": ode(teacher, "euler"), "heun": ode(teacher, "heun"),
                      "dpm++2m": fast(sample_dpm, order=2), "dpm++3m": fast(sample_dpm, order=3),
                      "unipc": fast(sample_unipc, order=2)})
    for name in ("reflow-1", "reflow-2"):
        if name in models:
            table[name] = ode(models[name], "euler")
    if "distill" in models:
        one = ode(models["distill"], "euler")
        table["distill"] = lambda key, n, nfe: one(key, n, 1) if nfe == 1 else None
    for name in ("CD", "CT"):
        if name in models:
            table[name] = (lambda m: lambda key, n, nfe: sample_consistency(m, ip, key, (n, *shape),
                                                                            num_steps=nfe)[0])(models[name])
    if "MeanFlow" in models:
        table["MeanFlow"] = lambda key, n, nfe: sample_meanflow(models["MeanFlow"], ip, key, (n, *shape),
                                                                num_steps=nfe)[0]
    return {name: fn for name, fn in table.items() if name in cfg.methods}


def train_models(cfg: Config, ds, key, watch: Stopwatch, log_dir) -> tuple[dict, dict]:
    """The teacher and every few-step model the methods need; ``(models, record)``."""
    ip = interpolants.linear
    k_teacher, k_pairs, k_reflow, k_distill, k_cd, k_ct, k_mf, k_init = jax.random.split(key, 8)
    net = TimeMLP(hidden=(cfg.hidden,) * cfg.depth)
    params0 = net.init(k_init, jnp.zeros(()), jnp.zeros((2,)))
    wanted = set(cfg.methods)
    record, models = {}, {}

    def train(stage, fn, *args, steps, **kwargs):
        state, history = watch(stage, fn, *args, optimizer=optimizer(cfg, steps), **fit_kwargs(cfg, steps),
                               metrics_path=log_dir / f"train_{ds.name}_{stage}.jsonl", **kwargs)
        record[stage] = {"steps": steps, "final_loss": float(np.mean(history["loss"][-max(1, steps // 10):])),
                         **{k: v for k, v in history.items() if k == "eval"}}
        return state

    needs_teacher = wanted & {*SOLVER_METHODS, "reflow-1", "reflow-2", "distill", "CD"}
    if needs_teacher:
        state = train("teacher", genjax.train_interpolant, net.apply, params0, ip, ds.sample, key=k_teacher,
                      prediction="velocity", steps=cfg.teacher_steps)
        models["teacher"] = genjax.Model(net.apply, state.ema_params)
    previous = models.get("teacher")
    params = state.ema_params if needs_teacher else params0
    rounds = 2 if "reflow-2" in wanted else 1 if wanted & {"reflow-1", "distill"} else 0
    for r in range(1, rounds + 1):
        pairs, _ = watch(f"pairs-{r}", reflow_pairs, previous, ip, jax.random.fold_in(k_pairs, r), cfg.num_pairs + 2048,
                      (2,), prediction="velocity", sampler=sample_dpm, order=3, num_steps=cfg.pair_solver_steps)
        train_pairs = tuple(a[:cfg.num_pairs] for a in pairs)
        eval_pairs = tuple(a[cfg.num_pairs:] for a in pairs)
        record[f"pairs-{r}"] = {"num_pairs": cfg.num_pairs, "nfe_per_pair": cfg.pair_solver_steps,
                                "transport_cost": float(np.mean(np.sum((train_pairs[1] - train_pairs[0]) ** 2, -1)))}
        state = train(f"reflow-{r}", train_reflow, net.apply, params, ip, train_pairs,
                      key=jax.random.fold_in(k_reflow, r), eval_pairs=eval_pairs, steps=cfg.reflow_steps)
        params = state.ema_params
        previous = models[f"reflow-{r}"] = genjax.Model(net.apply, params)
        if r == 1:
            teacher_pairs = train_pairs
    if "distill" in wanted:
        state = train("distill", train_distill, net.apply, models["reflow-1"].params, ip, teacher_pairs,
                      key=k_distill, steps=cfg.distill_steps)
        models["distill"] = genjax.Model(net.apply, state.ema_params)
    if "CD" in wanted:
        state = train("CD", train_consistency, net.apply, params0, ip, ds.sample, key=k_cd,
                      teacher=models["teacher"], teacher_prediction="velocity", steps=cfg.consistency_steps)
        models["CD"] = ConsistencyModel(genjax.Model(net.apply, state.ema_params), ip)
    if "CT" in wanted:
        state = train("CT", train_consistency, net.apply, params0, ip, ds.sample, key=k_ct,
                      steps=cfg.consistency_steps)
        models["CT"] = ConsistencyModel(genjax.Model(net.apply, state.ema_params), ip)
    if "MeanFlow" in wanted:
        mf_net = IntervalMLP(hidden=(cfg.hidden,) * cfg.depth)
        mf_params = mf_net.init(k_init, jnp.zeros((2,)), jnp.zeros((2,)))
        state = train("MeanFlow", train_meanflow, mf_net.apply, mf_params, ip, ds.sample, key=k_mf,
                      steps=cfg.meanflow_steps, ratio=cfg.meanflow_ratio, time_sampling=cfg.meanflow_time_sampling,
                      adaptive_p=cfg.meanflow_adaptive_p)
        models["MeanFlow"] = genjax.Model(mf_net.apply, state.ema_params)
    return models, record


STAGES = {  # the training stages each method's samples depend on (its honest cost)
    **{name: ("teacher",) for name in SOLVER_METHODS},
    "reflow-1": ("teacher", "pairs-1", "reflow-1"),
    "reflow-2": ("teacher", "pairs-1", "reflow-1", "pairs-2", "reflow-2"),
    "distill": ("teacher", "pairs-1", "reflow-1", "distill"),
    "CD": ("teacher", "CD"),
    "CT": ("CT",),
    "MeanFlow": ("MeanFlow",),
}


def evaluate(cfg: Config, ev, ds, samples) -> dict:
    """W2 on the first ``n_eval`` samples; the cross-entropy (and its s.e.) of all of them."""
    samples = np.asarray(samples)
    row = {"W2": float(metrics.wasserstein2(samples[:cfg.n_eval], ev.reference))}
    if ds.log_prob is not None:
        row["cross_entropy"], row["cross_entropy_se"] = metrics.cross_entropy(ds.log_prob, samples)
        row["excess"] = row["cross_entropy"] - ds.entropy
    return row


def targets(results: dict) -> list[dict]:
    """The README's targets, measured: the best method within each NFE budget."""
    rows = []

    def best(dataset, key, nfe_max):
        cands = [(abs(r[key]), r["method"], r["NFE"]) for r in results["frontier"]
                 if r["dataset"] == dataset and r["NFE"] <= nfe_max and key in r]
        return min(cands) if cands else None

    if "moons" in results["floors"]:
        floor = results["floors"]["moons"]["W2"]["mean"]
        for nfe_max, bound in ((10, 1.3), (1, 2.0)):
            b = best("moons", "W2", nfe_max)
            if b:
                rows.append({"target": f"moons W2 ≤ {bound}× floor at ≤ {nfe_max} NFE", "method": b[1], "NFE": b[2],
                             "measured": f"{b[0]:.3f} = {b[0] / floor:.2f}× floor ({floor:.3f})",
                             "met": b[0] <= bound * floor})
    if "eight_gaussians" in results["floors"]:
        b = best("eight_gaussians", "excess", 4)
        if b:
            rows.append({"target": "eight_gaussians cross-entropy within 0.05 nats of the entropy at ≤ 4 NFE", "method": b[1],
                         "NFE": b[2], "measured": f"{b[0]:.3f} nats from the entropy",
                         "met": b[0] <= 0.05})
    return rows


def main(cfg: Config):
    cfg = cfg.resolved()
    out = report.output_dir(__file__, cfg.out)
    key = jax.random.key(cfg.seed)
    tic = time.perf_counter()
    results = {"frontier": [], "floors": {}, "entropy": {}, "stages": {}, "costs": {}}
    scatter = {}
    for i, name in enumerate(cfg.datasets):
        ds = toy.get(name)
        k_ev, k_train, k_sample = jax.random.split(jax.random.fold_in(key, i), 3)
        ev = report.evaluator(ds.sample, k_ev, cfg.n_eval, {"W2": metrics.wasserstein2}, repeats=cfg.floor_repeats,
                              log_prob=ds.log_prob, entropy=ds.entropy)
        results["floors"][name] = ev.summary()
        results["entropy"][name] = ds.entropy
        print(f"\n== {name}: W2 floor {ev.floors['W2'][0]:.3f} ± {ev.floors['W2'][1]:.3f}", flush=True)
        watch = Stopwatch()
        models, record = train_models(cfg, ds, k_train, watch, out)
        results["stages"][name] = {stage: {**record.get(stage, {}), "seconds": s} for stage, s in watch.seconds.items()}
        ip = interpolants.linear
        for method, sample in sample_fns(cfg, models, ip).items():
            stages = STAGES[method]
            cost = sum(watch.seconds.get(s, 0.0) for s in stages)
            results["costs"].setdefault(name, {})[method] = {"stages": list(stages), "seconds": cost}
            line = []
            for nfe in cfg.nfes:
                t0 = time.perf_counter()
                samples = sample(jax.random.fold_in(k_sample, nfe), max(cfg.n_eval, cfg.n_ce), nfe)
                if samples is None:
                    continue
                samples = jax.block_until_ready(samples)
                row = {"dataset": name, "method": method, "NFE": nfe, "sample_s": time.perf_counter() - t0,
                       **evaluate(cfg, ev, ds, samples)}
                results["frontier"].append(row)
                if nfe in (1, 4):
                    scatter[(name, method, nfe)] = np.asarray(samples[:1000])
                line.append(f"{nfe}:{row['W2']:.3f}" + (f"/{row['excess']:+.3f}" if "excess" in row else ""))
            print(f"  {method:9s} (cost {cost:5.0f} s) W2[/CE−H] by NFE  " + "  ".join(line), flush=True)
    results["targets"] = targets(results)
    results["wall_s"] = time.perf_counter() - tic
    tables = markdown(cfg, results)
    print("\n" + tables)
    (out / "results.md").write_text(tables + "\n")
    report.write_results(out, config=cfg, metrics=results)
    figure_frontier(cfg, results, out / "frontier.png")
    figure_samples(cfg, scatter, out / "samples.png")
    print(f"\nwall time {results['wall_s']:.0f} s; wrote {out / 'results.json'}, results.md, frontier.png, samples.png")


# -- tables and figures ---------------------------------------------------------------
def markdown(cfg: Config, results: dict) -> str:
    parts = []
    for name in cfg.datasets:
        floor = results["floors"][name]
        rows = [r for r in results["frontier"] if r["dataset"] == name]
        methods = list(dict.fromkeys(r["method"] for r in rows))
        known = results["entropy"][name] is not None

        def cell(method, nfe):
            r = next((r for r in rows if r["method"] == method and r["NFE"] == nfe), None)
            if r is None:
                return "–"
            return f"{r['W2']:.3f}" + (f" / {r['excess']:+.3f}" if known else "")

        header = "W2 / cross-entropy − entropy (nats)" if known else "W2"
        table = [{"method": m, **{f"NFE {n}": cell(m, n) for n in cfg.nfes},
                  "cost (s)": f"{results['costs'][name][m]['seconds']:.0f}"} for m in methods]
        floor_cell = f"{floor['W2']['mean']:.3f} ± {floor['W2']['sd']:.3f}"
        if known:
            ce = floor["cross_entropy"]
            floor_cell += f" / {ce['mean'] - results['entropy'][name]:+.3f} ± {ce['sd']:.3f}"
        table.append({"method": "data floor", **{f"NFE {n}": floor_cell if n == cfg.nfes[0] else "" for n in cfg.nfes},
                      "cost (s)": ""})
        parts.append(f"### {name}: {header}\n\n" + report.markdown_table(
            table, ["method", *[f"NFE {n}" for n in cfg.nfes], "cost (s)"]))
        stages = results["stages"][name]
        parts.append(report.markdown_table(
            [{"stage": s, "steps / pairs": v.get("steps", v.get("num_pairs", "")), "seconds": f"{v['seconds']:.0f}",
              "note": (f"NFE/pair {v['nfe_per_pair']}, E‖x1−x0‖² {v['transport_cost']:.3f}" if "nfe_per_pair" in v
                       else f"final loss {v['final_loss']:.4g}" if "final_loss" in v else "")}
             for s, v in stages.items()], ["stage", "steps / pairs", "seconds", "note"]))
    if results["targets"]:
        parts.append("### Targets\n\n" + report.markdown_table(
            [{**t, "met": "yes" if t["met"] else "no"} for t in results["targets"]],
            ["target", "method", "NFE", "measured", "met"]))
    return "\n\n".join(parts)


def figure_frontier(cfg: Config, results: dict, path):
    panels = [(name, "W2") for name in cfg.datasets] + [(name, "excess") for name in cfg.datasets
                                                         if results["entropy"][name] is not None]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (name, key) in zip(axes[0], panels):
        rows = [r for r in results["frontier"] if r["dataset"] == name]
        for method in dict.fromkeys(r["method"] for r in rows):
            pts = sorted((r["NFE"], r[key]) for r in rows if r["method"] == method)
            style = "--" if method in SOLVER_METHODS else "-"
            ax.plot(*zip(*pts), style, marker="o", ms=3, label=method)
        floor = results["floors"][name]
        if key == "W2":
            m, s = floor["W2"]["mean"], floor["W2"]["sd"]
            ax.set_ylabel("W2 to held-out data")
        else:
            m, s = floor["cross_entropy"]["mean"] - results["entropy"][name], floor["cross_entropy"]["sd"]
            ax.set_ylabel("cross-entropy − entropy (nats)")
        ax.axhspan(m - s, m + s, color="grey", alpha=0.3, label="data floor")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log" if key == "W2" else "symlog", **({} if key == "W2" else {"linthresh": 0.05}))
        ax.set_xlabel("NFE")
        ax.set_title(name)
    axes[0][-1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def figure_samples(cfg: Config, scatter: dict, path):
    keys = sorted(scatter, key=lambda k: (cfg.datasets.index(k[0]), k[2], METHODS.index(k[1])))
    cols = sorted({(k[0], k[2]) for k in keys}, key=lambda k: (cfg.datasets.index(k[0]), k[1]))
    rows = [m for m in METHODS if any(k[1] == m for k in keys)]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(2 * len(cols), 2 * len(rows)), squeeze=False)
    for i, method in enumerate(rows):
        for j, (name, nfe) in enumerate(cols):
            ax = axes[i][j]
            pts = scatter.get((name, method, nfe))
            if pts is not None:
                ax.scatter(pts[:, 0], pts[:, 1], s=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"{name}, NFE {nfe}", fontsize=8)
            if j == 0:
                ax.set_ylabel(method, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main(report.cli(Config, __doc__))
