"""Density estimators in 1-D: single Gaussian vs GMM-EM vs KDE (Scott, Silverman).

Truth: ``p = 0.3 N(−2.5, 0.5²) + 0.5 N(0.5, 0.8²) + 0.2 N(3, 0.4²)``.  For each sample size
and replication, fit (i) a Gaussian by MLE, (ii) a 3-component GMM by EM (k-means++, 5
restarts in parallel), (iii) Gaussian KDEs with Scott's and Silverman's bandwidths, and report
``KL(p ‖ p̂) = ∫ p log(p/p̂)`` by the trapezoid rule on a fine grid (mean ± s.d. over
replications).  A BIC scan over K = 1..5 at N = 1000 checks that BIC picks K = 3.

Run: ``.venv/bin/python experiments/estimators_1d.py`` (≈ 1 min); ``--reps``, ``--sizes``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from genjax import report  # noqa: E402
from genjax import stats as S  # noqa: E402
from genjax.targets import GaussianMixture, gaussian  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Config(report.RunConfig):
    weights: tuple[float, ...] = (0.3, 0.5, 0.2)
    """Mixture weights of the true density."""
    means: tuple[float, ...] = (-2.5, 0.5, 3.0)
    """Component means."""
    stds: tuple[float, ...] = (0.5, 0.8, 0.4)
    """Component standard deviations."""
    sizes: tuple[int, ...] = (100, 1000, 10000)
    """Sample sizes N."""
    reps: int = 3
    """Replications per sample size."""
    n_init: int = 5
    """EM restarts (k-means++), run in parallel."""
    grid: tuple[float, float, int] = (-10.0, 10.0, 8001)
    """Quadrature grid (start, stop, points) for the KL; the default step is 0.0025."""
    bic_n: int = 1000
    """Sample size of the BIC scan."""
    bic_ks: tuple[int, ...] = (1, 2, 3, 4, 5)
    """Components K tried by the BIC scan."""

    def __post_init__(self):
        report.check_positive(self, "weights", "stds", "sizes", "reps", "n_init", "bic_n", "bic_ks")
        if not len(self.weights) == len(self.means) == len(self.stds):
            raise ValueError(f"--weights, --means and --stds need one value per component, got "
                             f"{len(self.weights)}, {len(self.means)} and {len(self.stds)}")
        if abs(sum(self.weights) - 1.0) > 1e-6:
            raise ValueError(f"--weights must sum to 1, got {sum(self.weights)}")
        if not (self.grid[0] < self.grid[1] and self.grid[2] >= 3):
            raise ValueError(f"--grid must be START STOP POINTS with START < STOP and POINTS >= 3, got {self.grid}")


ESTIMATORS = ("gaussian", "gmm_em_k3", "kde_scott", "kde_silverman")
STYLE = {"gaussian": ("C0", "--", "o"), "gmm_em_k3": ("C3", "-", "s"), "kde_scott": ("C1", "-", "^"), "kde_silverman": ("C2", ":", "v")}


@jax.jit
def grid_log_density(model, grid):
    """``log p̂`` on the grid for any model with a per-sample ``log_prob`` (a pytree)."""
    return jax.vmap(model.log_prob)(grid[:, None])


def fit_all(key, x, cfg: Config):
    mean, var = S.gaussian_mle(x[:, 0])
    return {
        "gaussian": gaussian(mean, jnp.sqrt(var)),
        "gmm_em_k3": S.fit_gmm(key, x, 3, covariance_type="diag", n_init=cfg.n_init, tol=1e-5, max_iter=500),
        "kde_scott": S.kde(x, "scott"),
        "kde_silverman": S.kde(x, "silverman"),
    }


def main(cfg: Config):
    out = report.output_dir(__file__, cfg.out)

    truth = GaussianMixture.diagonal(jnp.array(cfg.weights), jnp.array(cfg.means)[:, None], jnp.array(cfg.stds)[:, None])
    grid = jnp.linspace(*cfg.grid[:2], int(cfg.grid[2]))
    log_p = grid_log_density(truth, grid)
    p = jnp.exp(log_p)

    def kl_to(model):
        return float(jnp.trapezoid(p * (log_p - grid_log_density(model, grid)), grid))

    keys = jax.random.split(jax.random.key(cfg.seed), len(cfg.sizes) * cfg.reps * 2).reshape(len(cfg.sizes), cfg.reps, 2)
    rows, kls, shown = [], {}, {}
    for i, n in enumerate(cfg.sizes):
        per = {name: [] for name in ESTIMATORS}
        for r in range(cfg.reps):
            x = truth.sample(keys[i, r, 0], n)
            models = fit_all(keys[i, r, 1], x, cfg)
            for name, model in models.items():
                per[name].append(kl_to(model))
            if r == 0:
                shown[n] = (x, models)
        kls[n] = per
        row = {"N": n}
        for name in ESTIMATORS:
            row[name] = f"{np.mean(per[name]):.4f} ± {np.std(per[name]):.4f}"
        rows.append(row)
        print(f"N={n}: done", flush=True)

    # BIC over K at one sample size
    x = truth.sample(jax.random.fold_in(jax.random.key(cfg.seed), 1), cfg.bic_n)
    bic_rows = []
    for k in cfg.bic_ks:
        fit = S.fit_gmm(jax.random.key(k), x, k, covariance_type="diag", n_init=cfg.n_init, tol=1e-5, max_iter=500)
        bic_rows.append(dict(K=k, mean_log_likelihood=float(fit.log_likelihood), aic=float(fit.aic(x)), bic=float(fit.bic(x)), kl=kl_to(fit)))
    best_k = min(bic_rows, key=lambda r: r["bic"])["K"]

    print(f"\nKL(truth || estimate) in nats (trapezoid on {int(cfg.grid[2])} points over [{cfg.grid[0]:g}, {cfg.grid[1]:g}]), "
          f"mean ± s.d. over {cfg.reps} replications:")
    print(report.markdown_table(rows, ["N", *ESTIMATORS]))
    print(f"\nGMM model selection at N = {cfg.bic_n} (diagonal EM, {cfg.n_init} restarts); BIC picks K = {best_k}:")
    print(report.markdown_table(bic_rows, ["K", "mean_log_likelihood", "aic", "bic", "kl"], digits=6))

    fig, ax = plt.subplots(1, 2, figsize=(13, 4.8))
    n_show = cfg.sizes[min(1, len(cfg.sizes) - 1)]
    x_show, models = shown[n_show]
    g = np.asarray(grid)
    ax[0].hist(np.asarray(x_show[:, 0]), bins=60, density=True, color="0.85", label=f"data (N={n_show})")
    ax[0].plot(g, np.asarray(p), "k-", lw=2.5, label="truth")
    for name in ESTIMATORS:
        colour, line, _ = STYLE[name]
        ax[0].plot(g, np.exp(np.asarray(grid_log_density(models[name], grid))), line, color=colour, lw=1.6, label=name)
    ax[0].set(xlim=(-5, 5), xlabel="x", ylabel="density", title=f"estimates from N = {n_show}")
    ax[0].legend(fontsize=8)
    ns = np.array(cfg.sizes, float)
    for name in ESTIMATORS:
        colour, _, marker = STYLE[name]
        vals = np.array([kls[n][name] for n in cfg.sizes])
        ax[1].errorbar(ns, vals.mean(1), yerr=vals.std(1), color=colour, marker=marker, capsize=3, label=name)
    ax[1].set(xscale="log", yscale="log", xlabel="N", ylabel="KL(truth ‖ estimate) [nats]", title="KL on a fine grid")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "estimators_1d.png", dpi=120)

    metrics = {"kl": {str(n): kls[n] for n in cfg.sizes}, "table": rows, "bic_scan": bic_rows, "bic_choice": best_k}
    report.write_results(out, config=cfg, metrics=metrics)
    print(f"\nwrote {out / 'results.json'} and {out / 'estimators_1d.png'}")


if __name__ == "__main__":
    main(report.cli(Config, __doc__))
