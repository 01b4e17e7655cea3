"""Five classical studies (MATH.md §8, §15): MAP vs MLE, label switching, large deviations, the Inception score,
and the moons entropy floor.

1. **MAP vs MLE** for the mean of ``N(θ, σ²)`` with prior ``N(μ0, τ²)``: Monte-Carlo MSEs over a grid of
   ``θ − μ0`` and ``n`` against the closed forms, the flip point ``(θ − μ0)² = 2τ² + σ²/n``, and the
   prior-averaged risks (MAP always lower on average).
2. **Label switching**: EM (``genjax.stats.fit_gmm``) from several k-means++ seeds returns one fit up to a
   permutation of its components; MALA over the two means of a 1-D mixture visits the mirrored modes, so the
   posterior mean of ``μ_1`` is the average of both components until the means are ordered (compared with a
   grid quadrature of the posterior).
3. **Large deviations** of coin flips: exact ``log P(p̂_n ≥ a)`` against ``−n KL(a‖p)`` (Chernoff upper bound),
   ``−n KL − log(n + 1)`` (method of types lower bound) and Bahadur–Rao's exact prefactor.
4. **Inception score** ``exp(E KL(p(y|x) ‖ p(y)))`` with the digit classifier: real, dequantised, class-restricted
   and noised digits, and one digit per class repeated (which it cannot tell from real data; the Fréchet
   distance in the same classifier's features can).
5. **Moons entropy**: ``MOONS_ENTROPY`` against a Monte-Carlo estimate from the generator and a 2-D quadrature.

Run: ``.venv/bin/python experiments/classical_studies.py`` (≈ 1–2 min on 2 CPU cores).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from genjax import report  # noqa: E402
from genjax.data import images as image_data  # noqa: E402
from genjax.data import toy  # noqa: E402
from genjax.metrics.features import bin_centres, digit_classifier  # noqa: E402
from genjax.metrics.image import inception_score  # noqa: E402
from genjax.metrics.samples import frechet_distance_samples, nll  # noqa: E402
from genjax.samplers.langevin import mala  # noqa: E402
from genjax.stats.classical import (coin_large_deviations, map_flip_point, match_labels,  # noqa: E402
                                    mixture_means_log_posterior, mle_map_bayes_risk, mle_map_estimates, mle_map_mse,
                                    relabel)
from genjax.stats.gmm import fit_gmm  # noqa: E402
from genjax.targets import GaussianMixture  # noqa: E402

@dataclasses.dataclass(frozen=True)
class Config(report.RunConfig):
    sigma: float = 1.0
    """Noise std σ of the MAP/MLE study."""
    tau: float = 1.0
    """Prior std τ (prior mean μ0 = 0)."""
    deltas: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
    """Values of θ − μ0."""
    sizes: tuple[int, ...] = (1, 4, 16)
    """Sample sizes n of the MAP/MLE study."""
    reps: int = 200_000
    """Monte-Carlo replications per (θ, n)."""
    em_seeds: int = 8
    """k-means++ seeds of the EM runs."""
    posterior_sizes: tuple[int, ...] = (10, 100)
    """Data sizes of the label-switching posteriors (½N(−1, 1) + ½N(1, 1))."""
    chains: int = 400
    """MALA chains per posterior."""
    chain_steps: int = 2000
    """MALA steps per chain (the first half is burn-in)."""
    step_size: float = 0.02
    """MALA step size (multiplied by 10/n for the posterior of n points)."""
    coin_p: float = 0.5
    """Success probability p of the coin."""
    coin_a: float = 0.6
    """Threshold a > p of the empirical frequency."""
    coin_sizes: tuple[int, ...] = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
    """Numbers of flips n (n·a must be an integer)."""
    splits: int = 5
    """Inception-score splits."""
    noise_levels: tuple[float, ...] = (0.25, 0.5, 1.0)
    """Std of the Gaussian noise added to test digits (model space [−1, 1])."""
    moons_samples: int = 200_000
    """Draws for the Monte-Carlo moons entropy."""
    moons_h: tuple[float, ...] = (0.04, 0.02)
    """Grid steps of the moons quadrature on [−4.5, 4.5]²."""

    def __post_init__(self):
        report.check_positive(self, "sigma", "tau", "sizes", "reps", "em_seeds", "posterior_sizes", "chains",
                              "chain_steps", "step_size", "coin_sizes", "splits", "moons_samples", "moons_h")
        if not 0 < self.coin_p < self.coin_a < 1:
            raise ValueError(f"--coin-p and --coin-a must satisfy 0 < p < a < 1, got {self.coin_p}, {self.coin_a}")
        if any(abs(n * self.coin_a - round(n * self.coin_a)) > 1e-9 for n in self.coin_sizes):
            raise ValueError(f"--coin-sizes: n·a must be an integer for every n, got a = {self.coin_a}")


# -- 1. MAP vs MLE ----------------------------------------------------------------------------------
def _better(mse_mle: float, mse_map: float) -> str:
    """Which estimator has the lower exact MSE ("tie" within float64 rounding, as on the flip point)."""
    if abs(mse_map - mse_mle) <= 1e-12 * mse_mle:
        return "tie"
    return "MAP" if mse_map < mse_mle else "MLE"


def map_vs_mle(cfg: Config, key):
    rows, curves = [], {}
    deltas = jnp.asarray(cfg.deltas, jnp.float32)
    for n, k in zip(cfg.sizes, jax.random.split(key, len(cfg.sizes))):
        x = deltas[:, None, None] + cfg.sigma * jax.random.normal(k, (deltas.shape[0], cfg.reps, n))
        errors = [np.asarray((e - deltas[:, None]) ** 2, np.float64) for e in
                  mle_map_estimates(x, sigma=cfg.sigma, mu0=0.0, tau=cfg.tau)]
        exact = [np.asarray(m, np.float64) for m in mle_map_mse(deltas, n, sigma=cfg.sigma, mu0=0.0, tau=cfg.tau)]
        flip = math.sqrt(map_flip_point(n, sigma=cfg.sigma, tau=cfg.tau))
        for i, delta in enumerate(cfg.deltas):
            mc = [(e[i].mean(), e[i].std() / math.sqrt(cfg.reps)) for e in errors]
            rows.append({"n": n, "θ−μ0": delta, "MLE MSE (MC)": report.plus_minus(*mc[0]), "MLE exact": exact[0][i],
                         "MAP MSE (MC)": report.plus_minus(*mc[1]), "MAP exact": exact[1][i],
                         "better": _better(exact[0][i], exact[1][i]), "flip |θ−μ0|": flip})
        grid = jnp.linspace(0.0, max(cfg.deltas), 200)
        curves[n] = (np.asarray(grid), *(np.asarray(m) for m in mle_map_mse(grid, n, sigma=cfg.sigma, mu0=0.0,
                                                                              tau=cfg.tau)), flip,
                     [e.mean(1) for e in errors])
    risk_rows = []
    for n, k in zip(cfg.sizes, jax.random.split(jax.random.fold_in(key, 1), len(cfg.sizes))):
        k_theta, k_x = jax.random.split(k)
        theta = cfg.tau * jax.random.normal(k_theta, (cfg.reps,))
        x = theta[:, None] + cfg.sigma * jax.random.normal(k_x, (cfg.reps, n))
        mle, map_ = (np.asarray((e - theta) ** 2, np.float64) for e in
                     mle_map_estimates(x, sigma=cfg.sigma, mu0=0.0, tau=cfg.tau))
        exact = mle_map_bayes_risk(n, sigma=cfg.sigma, tau=cfg.tau)
        risk_rows.append({"n": n, "MLE risk (MC)": report.plus_minus(mle.mean(), mle.std() / math.sqrt(cfg.reps)),
                          "σ²/n": exact[0], "MAP risk (MC)": report.plus_minus(map_.mean(), map_.std() / math.sqrt(cfg.reps)),
                          "τ²σ²/(nτ²+σ²)": exact[1], "ratio = w": exact[1] / exact[0]})
    return rows, risk_rows, curves


# -- 2. label switching -----------------------------------------------------------------------------
def em_permutations(cfg: Config, key):
    """fit_gmm (one k-means++ start each) on 2-D data from three components; every fit relabelled to seed 0's order."""
    truth = GaussianMixture.diagonal(jnp.array([0.3, 0.3, 0.4]), jnp.array([[-3.0, 0.0], [0.0, 3.0], [3.0, 0.0]]), 0.8)
    x = truth.sample(key, 1500)
    fits = [fit_gmm(k, x, 3, tol=1e-6, max_iter=500) for k in jax.random.split(jax.random.fold_in(key, 1), cfg.em_seeds)]
    reference = fits[0].to_mixture()
    rows = []
    for seed, fit in enumerate(fits):
        perm = match_labels(fit.means, reference.means)
        aligned = relabel(fit.to_mixture(), perm)
        gap = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(aligned), jax.tree.leaves(reference)))
        rows.append({"seed": seed, "order of the fitted components (seed 0's labels)": str(np.argsort(perm).tolist()),
                     "log-likelihood": float(fit.log_likelihood), "max |Δ parameter| after relabelling": gap})
    return rows


def mala_trajectories(kernel, key, starts, steps: int):
    """Every position of every chain, ``(chains, steps, 2)`` (``run_chains`` keeps only the final states)."""

    def chain(k, start):
        step = lambda state, kk: (kernel.step(kk, state)[0],) * 2  # noqa: E731
        return jax.lax.scan(step, kernel.init(start), jax.random.split(k, steps))[1].position

    return jax.jit(jax.vmap(chain))(jax.random.split(key, starts.shape[0]), starts)


def label_switching(cfg: Config, key):
    rows, panels = [], []
    grid = jnp.linspace(-4.0, 4.0, 241)
    g = np.asarray(grid, np.float64)
    low = np.minimum(g[:, None], g[None, :])
    for n, k in zip(cfg.posterior_sizes, jax.random.split(key, len(cfg.posterior_sizes))):
        k_c, k_z, k_init, k_run = jax.random.split(k, 4)
        x = jnp.where(jax.random.bernoulli(k_c, 0.5, (n,)), -1.0, 1.0) + jax.random.normal(k_z, (n,))
        posterior = jax.jit(lambda m, x=x: mixture_means_log_posterior(m, x, weights=jnp.array([0.5, 0.5]), std=1.0,
                                                                       prior_std=3.0))
        log_post = np.asarray(jax.vmap(lambda a: jax.vmap(lambda b: posterior(jnp.stack([a, b])))(grid))(grid), np.float64)
        p = np.exp(log_post - log_post.max())
        p /= p.sum()
        exact = {"P(μ1<μ2)": np.triu(p, 1).sum() + 0.5 * np.trace(p), "E μ1": p.sum(1) @ g,
                 "E min": (p * low).sum(), "E max": (p * (g[:, None] + g[None, :] - low)).sum()}
        starts = x[jax.random.randint(k_init, (cfg.chains, 2), 0, n)]  # exchangeable, and no empty component
        trace = mala_trajectories(mala(posterior, cfg.step_size * 10 / n), k_run, starts, cfg.chain_steps)
        mu = np.asarray(trace[:, cfg.chain_steps // 2:], np.float64)  # (chains, steps, 2): the first half is burn-in
        flips = np.mean(np.sum(np.diff(np.sign(mu[..., 0] - mu[..., 1]), axis=1) != 0, axis=1))
        ordered = np.sort(mu, axis=-1)
        se = lambda v: v.reshape(cfg.chains, -1).mean(1).std() / math.sqrt(cfg.chains)  # noqa: E731  (chain means)
        rows.append({"n": n, "label switches per 1000 steps": flips / (cfg.chain_steps // 2) * 1000,
                     "P(μ1<μ2) MCMC": report.plus_minus(np.mean(mu[..., 0] < mu[..., 1]), se(mu[..., 0] < mu[..., 1])),
                     "P(μ1<μ2) grid": exact["P(μ1<μ2)"],
                     "E μ1 MCMC": report.plus_minus(mu[..., 0].mean(), se(mu[..., 0])), "E μ1 grid": exact["E μ1"],
                     "E min MCMC": report.plus_minus(ordered[..., 0].mean(), se(ordered[..., 0])), "E min grid": exact["E min"],
                     "E max MCMC": report.plus_minus(ordered[..., 1].mean(), se(ordered[..., 1])), "E max grid": exact["E max"]})
        panels.append((n, g, p, mu))
    return rows, panels


# -- 3. large deviations ----------------------------------------------------------------------------
def large_deviations(cfg: Config):
    rows = []
    for n in cfg.coin_sizes:
        ld = coin_large_deviations(n, round(n * cfg.coin_a), cfg.coin_p)
        rows.append({"n": n, "log P exact": ld.log_tail, "−n KL (upper)": ld.chernoff,
                     "−n KL − log(n+1) (lower)": ld.types_lower, "Bahadur–Rao": ld.bahadur_rao,
                     "−(1/n) log P": -ld.log_tail / n, "KL(a‖p)": ld.kl, "n·gap": -ld.log_tail - n * ld.kl,
                     "½ log n": 0.5 * math.log(n), "log P − BR": ld.log_tail - ld.bahadur_rao})
    return rows


# -- 4. Inception score -----------------------------------------------------------------------------
def inception_table(cfg: Config, key):
    (train_x, train_y), (test_x, test_y) = image_data.load_digits(labels=True)
    classifier = digit_classifier()
    n = len(test_x)
    test = bin_centres(test_x)
    train = bin_centres(train_x)
    reference = np.asarray(classifier.features(train))
    keys = jax.random.split(key, 3 + len(cfg.noise_levels))
    one_per_class = np.stack([np.flatnonzero(train_y == c)[0] for c in range(10)])
    sets = {
        "test digits": test,
        "train digits (first n)": train[:n],
        "test digits, dequantised": image_data.to_model_space(keys[0], test_x, image_data.LEVELS, "symmetric")[0],
        "train digits of class 0": train[train_y == 0],
        "train digits of classes 0–1": train[train_y < 2],
        "train digits of classes 0–4": train[train_y < 5],
        "one train digit per class, repeated": train[np.resize(one_per_class, n)],
        "uniform noise": jax.random.uniform(keys[1], test.shape, minval=-1.0, maxval=1.0),
    }
    for level, k in zip(cfg.noise_levels, keys[3:]):
        sets[f"test digits + N(0, {level}²)"] = test + level * jax.random.normal(k, test.shape)
    rows = []
    for name, images in sets.items():
        mean, sd = inception_score(classifier, images, splits=cfg.splits)
        fd = float(frechet_distance_samples(np.asarray(classifier.features(images)), reference))
        rows.append({"images": name, "n": len(images), "IS (mean ± s.d. over splits)": report.plus_minus(mean, sd),
                     "IS": mean, "FD to train features": fd})
    return rows, classifier.info.get("test_accuracy")


# -- 5. moons entropy -------------------------------------------------------------------------------
def moons_entropy(cfg: Config, key):
    log_prob = jax.jit(jax.vmap(toy.moons.log_prob))
    x = toy.moons.sample(key, cfg.moons_samples)
    values = np.concatenate([np.asarray(log_prob(c), np.float64) for c in jnp.array_split(x, 20)])
    mc, se = nll(values)
    rows = [{"estimate": f"Monte Carlo, {cfg.moons_samples} draws", "entropy (nats)": report.plus_minus(mc, se, 3),
             "− stored": mc - toy.MOONS_ENTROPY, "mass": None}]
    for h in cfg.moons_h:
        g = np.arange(-4.5 + h / 2, 4.5, h)
        pts = jnp.asarray(np.stack(np.meshgrid(g, g), -1).reshape(-1, 2), jnp.float32)
        lp = np.concatenate([np.asarray(log_prob(c), np.float64) for c in jnp.array_split(pts, 20)])
        p = np.exp(lp)
        quad = -(p * lp).sum() * h**2
        rows.append({"estimate": f"2-D midpoint rule, h = {h} (float32)", "entropy (nats)": f"{quad:.6f}",
                     "− stored": quad - toy.MOONS_ENTROPY, "mass": p.sum() * h**2})
    rows.append({"estimate": "MOONS_ENTROPY (float64 quadrature)", "entropy (nats)": f"{toy.MOONS_ENTROPY:.10f}",
                 "− stored": 0.0, "mass": None})
    return rows, np.asarray(x[:3000])


# -- figures ----------------------------------------------------------------------------------------
def figures(cfg, out, curves, panels, sanov_rows, is_rows, moons_points):
    paths = []
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.6), squeeze=False)
    for ax, (n, (grid, mle, map_, flip, mc)) in zip(axes[0], curves.items()):
        ax.plot(grid, mle, "C0-", lw=2, label="MLE  σ²/n")
        ax.plot(grid, map_, "C3-", lw=2, label="MAP  w²σ²/n + (1−w)²(θ−μ0)²")
        ax.plot(cfg.deltas, mc[0], "C0o", ms=4, label="Monte Carlo")
        ax.plot(cfg.deltas, mc[1], "C3o", ms=4)
        ax.axvline(flip, color="k", ls=":", label=f"flip √(2τ²+σ²/n) = {flip:.3f}")
        ax.set(xlabel="|θ − μ0|", ylabel="MSE", title=f"n = {n}")
        ax.legend(fontsize=7)
    paths.append(_save(fig, out, "map_mle.png"))

    fig, axes = plt.subplots(2, len(panels), figsize=(4.5 * len(panels), 8), squeeze=False)
    for j, (n, g, p, mu) in enumerate(panels):
        ax = axes[0, j]
        ax.contour(g, g, p.T, levels=p.max() * np.linspace(0.05, 0.95, 7), colors="0.4", linewidths=0.8)
        ax.plot(mu[:, ::50, 0].ravel(), mu[:, ::50, 1].ravel(), ".", ms=1, color="C3", alpha=0.3)
        ax.plot(g, g, "k:", lw=0.8)
        ax.set(xlabel="μ1", ylabel="μ2", title=f"posterior of (μ1, μ2), n = {n}: two mirrored modes", aspect="equal",
               xlim=(g[0], g[-1]), ylim=(g[0], g[-1]))
        ax = axes[1, j]
        ax.hist(mu[..., 0].ravel(), bins=80, density=True, histtype="step", lw=1.5, label="μ1 (unordered)")
        ax.hist(np.min(mu, -1).ravel(), bins=80, density=True, histtype="step", lw=1.5, label="min(μ1, μ2)")
        ax.hist(np.max(mu, -1).ravel(), bins=80, density=True, histtype="step", lw=1.5, label="max(μ1, μ2)")
        ax.plot(g, p.sum(1) / (g[1] - g[0]), "k--", lw=0.8, label="grid marginal of μ1")
        ax.set(xlabel="mean", title="MALA draws; ordering restores identifiability")
        ax.legend(fontsize=7)
    paths.append(_save(fig, out, "label_switching.png"))

    ns = np.array([r["n"] for r in sanov_rows], float)
    kl = sanov_rows[0]["KL(a‖p)"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    ax.semilogx(ns, [r["−(1/n) log P"] for r in sanov_rows], "o-", label="−(1/n) log P(p̂ ≥ a) (exact)")
    ax.semilogx(ns, kl + np.log(ns + 1) / ns, "--", label="KL + log(n+1)/n (types lower bound on P)")
    ax.semilogx(ns, [-r["Bahadur–Rao"] / r["n"] for r in sanov_rows], ":", label="Bahadur–Rao")
    ax.axhline(kl, color="k", lw=0.8, label=f"KL(a‖p) = {kl:.5f} (Chernoff)")
    ax.set(xlabel="n", ylabel="rate (nats per flip)", title=f"p = {cfg.coin_p}, a = {cfg.coin_a}")
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.semilogx(ns, [r["n·gap"] for r in sanov_rows], "o-", label="n(−(1/n) log P − KL)")
    ax.semilogx(ns, np.log(ns + 1), "--", label="log(n+1)")
    ax.semilogx(ns, 0.5 * np.log(ns) + (r0 := sanov_rows[-1]["n·gap"] - 0.5 * math.log(ns[-1])), ":",
                label=f"½ log n + {r0:.3f}")
    ax.set(xlabel="n", ylabel="nats", title="the gap is O(log n / n): ½ log n + const")
    ax.legend(fontsize=7)
    paths.append(_save(fig, out, "sanov.png"))

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    names = [r["images"] for r in is_rows]
    ax = axes[0]
    ax.barh(names, [r["IS"] for r in is_rows], color="C0")
    ax.set(xlabel="Inception score (digit classifier)", title="IS: high for real digits and for 10 repeated ones")
    ax.invert_yaxis()
    ax2 = axes[1]
    ax2.barh(names, [r["FD to train features"] for r in is_rows], color="C1")
    ax2.set(xlabel="FD to train features", xscale="log", yticklabels=[])
    ax2.invert_yaxis()
    paths.append(_save(fig, out, "inception_score.png"))

    fig, ax = plt.subplots(figsize=(5, 4))
    g = np.linspace(-2.8, 2.8, 300)
    pts = jnp.asarray(np.stack(np.meshgrid(g, g), -1).reshape(-1, 2), jnp.float32)
    dens = np.exp(np.asarray(jax.jit(jax.vmap(toy.moons.log_prob))(pts))).reshape(300, 300)
    ax.imshow(dens, extent=(g[0], g[-1], g[0], g[-1]), origin="lower", cmap="magma")
    ax.plot(moons_points[:500, 0], moons_points[:500, 1], ".", ms=1.5, color="C2")
    ax.set(title=f"standardised moons: exact density, H = {toy.MOONS_ENTROPY:.4f} nats")
    paths.append(_save(fig, out, "moons_density.png"))
    return paths


def _save(fig, out, name):
    fig.tight_layout()
    path = out / name
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(cfg: Config):
    out = report.output_dir(__file__, cfg.out)
    keys = jax.random.split(jax.random.key(cfg.seed), 5)

    mse_rows, risk_rows, curves = map_vs_mle(cfg, keys[0])
    print(f"## 1. MAP vs MLE: x_i ~ N(θ, {cfg.sigma}²), prior N(0, {cfg.tau}²), {cfg.reps} replications (MC ± s.e.)\n")
    print(report.markdown_table(mse_rows, list(mse_rows[0])))
    print("\nPrior-averaged MSE (Bayes risk), θ ~ N(0, τ²):\n")
    print(report.markdown_table(risk_rows, list(risk_rows[0])))

    em_rows = em_permutations(cfg, keys[1])
    ls_rows, panels = label_switching(cfg, keys[2])
    print("\n## 2. Label switching\n\nfit_gmm (K = 3, one k-means++ start per seed) on 1500 points; each fit relabelled "
          "to seed 0's order by match_labels:\n")
    print(report.markdown_table(em_rows, list(em_rows[0]), digits=6))
    print(f"\nPosterior of (μ1, μ2) for n draws of ½N(−1, 1) + ½N(1, 1), prior N(0, 3²) on each mean; {cfg.chains} "
          f"MALA chains started at random data points, {cfg.chain_steps} steps, second half kept (± s.e. over chains), against a "
          "241² grid quadrature:\n")
    print(report.markdown_table(ls_rows, list(ls_rows[0])))

    sanov_rows = large_deviations(cfg)
    print(f"\n## 3. Large deviations: P(p̂_n ≥ {cfg.coin_a}) for a coin with p = {cfg.coin_p} (nats)\n")
    print(report.markdown_table(sanov_rows, list(sanov_rows[0]), digits=6))

    is_rows, accuracy = inception_table(cfg, keys[3])
    print(f"\n## 4. Inception score with the digit classifier (test accuracy {accuracy}), {cfg.splits} splits\n")
    print(report.markdown_table(is_rows, ["images", "n", "IS (mean ± s.d. over splits)", "FD to train features"]))

    moons_rows, moons_points = moons_entropy(cfg, keys[4])
    print("\n## 5. Entropy of the standardised moons\n")
    print(report.markdown_table(moons_rows, list(moons_rows[0]), digits=6))

    paths = figures(cfg, out, curves, panels, sanov_rows, is_rows, moons_points)
    results = report.write_results(out, config=cfg, metrics={"map_mle": mse_rows, "bayes_risk": risk_rows,
                                                             "em": em_rows, "label_switching": ls_rows,
                                                             "large_deviations": sanov_rows, "inception_score": is_rows,
                                                             "moons_entropy": moons_rows})
    print(f"\nwrote {results} and {', '.join(map(str, paths))}")


if __name__ == "__main__":
    main(report.cli(Config, __doc__))
