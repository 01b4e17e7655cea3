"""Langevin theory on Gaussians: ULA's step-size bias, the condition number, preconditioning, MALA.

On ``N(0, diag s²)`` ULA with a diagonal preconditioner ``m`` is linear per coordinate,
``x_i ← a_i x_i + sqrt(2h m_i) ξ``, ``a_i = 1 − h m_i/s_i²``, so its law from a fixed start is Gaussian in
closed form at every step: mean ``a_i^k x_i(0)``, variance ``v_i (1 − a_i^{2k})`` with the stationary
``v_i = 2h m_i/(1 − a_i²) = s_i²/(1 − h m_i/(2s_i²))`` (MATH.md §9.8).  The script checks these laws
against simulated chains and uses them:

(a) ULA's stationary variance against ``s²/(1 − h/(2s²))`` over h, with MALA at the same h (its
    stationary law is exact: variance s², W2 at the floor) and its acceptance rate;
(b) on ``N(0, diag(1, …, κ))`` (d variances geometric from 1 to κ): the stationary whitened W2 bias of ULA
    and of ULA preconditioned with ``M = Σ`` (closed form and measured), and the iterations needed to reach
    a whitened W2 tolerance from ``x(0) = 3 sqrt(diag Σ)``, minimised over h: plain ULA's h is limited by
    the stiffest direction (variance 1) while the slowest direction (variance κ) contracts by
    ``1 − h/κ`` per step, so the count grows like κ; with ``M = Σ`` every direction contracts by
    ``1 − h`` and the count is flat in κ.

W2 in (b) is whitened, i.e. taken after ``x ↦ Σ^{−1/2} x`` (a tolerance then means the same for every κ;
unwhitened, M = Σ's bias in the variance-κ direction grows like sqrt(κ)), and measured as the Gaussian
(Fréchet) W2 of the chains' sample moments (the laws are Gaussian), next to its floor for exact samples.  In 1-D (a), W2 of the chains to the exact quantiles of N(0, s²).

    python experiments/langevin_theory.py            # ≈ 2 min on 2 busy CPU cores (127 s measured)
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import scipy.stats

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from genjax import metrics, report  # noqa: E402
from genjax.samplers.langevin import mala, run_chains, ula  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Config(report.RunConfig):
    chains: int = 20_000
    """Chains per run."""
    variance: float = 1.0
    """s² of the 1-D target in (a)."""
    steps_1d: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.7, 1.0, 1.4)
    """Step sizes h of (a) (ULA is stable for h < 2s²)."""
    dim: int = 4
    """Dimension d of (b); variances geometric from 1 to κ."""
    kappas: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0)
    """Condition numbers κ of (b)."""
    steps_kappa: tuple[float, ...] = (0.05, 0.2, 0.5, 1.0)
    """Step sizes of the stationary-bias table of (b)."""
    tolerance: float = 0.1
    """Whitened W2 tolerance of the iteration counts in (b)."""
    max_iterations: int = 100_000
    """Iteration cap of the closed-form counts."""
    simulate_kappa_max: float = 100.0
    """Check the closed-form counts by simulation for κ up to this."""
    max_simulated_steps: int = 5000
    """Measure a stationary W2 only where reaching stationarity (e^{−20}) takes at most this many steps."""

    def __post_init__(self):
        report.check_positive(self, "chains", "variance", "steps_1d", "dim", "kappas", "steps_kappa", "tolerance",
                              "max_iterations", "simulate_kappa_max", "max_simulated_steps")
        if max(self.steps_1d) >= 2 * self.variance:
            raise ValueError(f"--steps-1d must stay below 2 s² = {2 * self.variance} (ULA diverges beyond)")
        if max(self.steps_kappa) >= 2:
            raise ValueError("--steps-kappa must stay below 2 (ULA diverges beyond on the variance-1 direction)")


def ula_law(h, m, s2, x0, k):
    """Closed-form mean and variance after k ULA steps on N(0, diag s2) with diagonal preconditioner m."""
    a = 1.0 - h * m / s2
    stationary = 2.0 * h * m / (1.0 - a**2)
    return a**k * x0, stationary * (1.0 - a ** (2 * k))


def whitened_w2(mean, var, s2):
    """W2 between N(mean, diag var) and N(0, diag s2) after whitening by diag(s2)^{−1/2}."""
    return np.sqrt(np.sum(mean**2 / s2 + (np.sqrt(var / s2) - 1.0) ** 2, axis=-1))


def measured_whitened_w2(x, s2):
    """Fréchet W2 between the sample moments of Σ^{−1/2} x and N(0, I), Σ = diag s2."""
    x = np.asarray(x, np.float64) / np.sqrt(s2)
    w2 = metrics.frechet_distance(x.mean(0), np.cov(x.T, bias=True), np.zeros_like(s2), np.eye(len(s2)))
    return math.sqrt(max(float(w2), 0.0))


def iterations_to(tol, h_grid, m_of, s2, x0, max_k):
    """min over h of the first k with whitened W2(law_k, π) ≤ tol (closed form), and that h."""
    best = (None, None)
    ks = np.arange(0, max_k + 1)
    for h in h_grid:
        mean, var = ula_law(h, m_of(s2), s2, x0, ks[:, None])
        hit = np.flatnonzero(whitened_w2(mean, var, s2) <= tol)
        if hit.size and (best[0] is None or hit[0] < best[0]):
            best = (int(hit[0]), float(h))
    return best


def part_a(cfg, key):
    s2, n = cfg.variance, cfg.chains
    quantiles = math.sqrt(s2) * scipy.stats.norm.ppf((np.arange(n) + 0.5) / n)
    w2_1d = lambda x: float(np.sqrt(np.mean((np.sort(np.asarray(x).ravel()) - quantiles) ** 2)))  # noqa: E731
    floor = w2_1d(math.sqrt(s2) * jax.random.normal(jax.random.fold_in(key, 99), (n,)))
    x0 = math.sqrt(s2) * jax.random.normal(jax.random.fold_in(key, 98), (n, 1))  # start at π: only the bias shows
    log_p = lambda x: -0.5 * jnp.sum(x**2) / s2  # noqa: E731
    rows = []
    for i, h in enumerate(cfg.steps_1d):
        steps = int(math.ceil(20 * s2 / min(h, 2 * s2 - h)))  # |1 − h/s²|^steps ≤ e^{−20}
        ula_x = run_chains(ula(h, log_prob_fn=log_p), jax.random.fold_in(key, i), x0, steps)[0].position
        mala_x, info = run_chains(mala(log_p, h), jax.random.fold_in(key, 100 + i), x0, steps)
        want = s2 / (1.0 - h / (2.0 * s2))
        rows.append({"h": h, "steps": steps, "ULA var (closed form)": want, "ULA var": float(jnp.var(ula_x)),
                     "ULA W2 (closed form)": abs(math.sqrt(want) - math.sqrt(s2)), "ULA W2": w2_1d(ula_x),
                     "MALA var": float(jnp.var(mala_x.position)), "MALA W2": w2_1d(mala_x.position),
                     "MALA acceptance": float(jnp.mean(info.acceptance_rate))})
    return rows, floor


def part_b(cfg, key):
    n, d = cfg.chains, cfg.dim
    bias_rows, count_rows = [], []
    plain, precond = (lambda s2: np.ones_like(s2)), (lambda s2: s2)
    for j, kappa in enumerate(cfg.kappas):
        s2 = np.geomspace(1.0, kappa, d)
        s2j = jnp.asarray(s2, jnp.float32)
        score = lambda x, s2j=s2j: -x / s2j  # noqa: E731
        start = np.sqrt(s2) * jax.random.normal(jax.random.fold_in(key, 1000 + j), (n, d))
        floor = measured_whitened_w2(np.sqrt(s2) * np.asarray(jax.random.normal(jax.random.fold_in(key, 2000 + j),
                                                                                 (n, d))), s2)
        for i, h in enumerate(cfg.steps_kappa):
            row = {"κ": kappa, "h": h, "floor": floor}
            for name, m_of in (("ULA", plain), ("ULA, M = Σ", precond)):
                m = m_of(s2)
                _, var = ula_law(h, m, s2, 0.0, np.inf)
                row[f"{name} W2 (closed form)"] = float(whitened_w2(0.0, var, s2))
                # from π, until every direction has forgotten it (e^{−20})
                steps = int(math.ceil(20.0 / np.min(np.minimum(h * m / s2, 2 - h * m / s2))))
                if kappa <= cfg.simulate_kappa_max and steps <= cfg.max_simulated_steps:
                    kernel = ula(h, score_fn=score, precondition=None if m_of is plain else s2j)
                    x = run_chains(kernel, jax.random.fold_in(key, 10 * j + i), jnp.asarray(start, jnp.float32),
                                   steps)[0].position
                    row[f"{name} W2"] = measured_whitened_w2(x, s2)
            bias_rows.append(row)
        x0 = 3.0 * np.sqrt(s2)
        row = {"κ": kappa}
        for name, m_of, h_max in (("ULA", plain, 2.0), ("ULA, M = Σ", precond, 2.0)):
            k, h = iterations_to(cfg.tolerance, np.geomspace(1e-3, 0.99 * h_max, 80), m_of, s2, x0,
                                 cfg.max_iterations)
            row[f"{name} iterations"], row[f"{name} best h"] = k, h
            if k is not None and kappa <= cfg.simulate_kappa_max:
                kernel = ula(h, score_fn=score, precondition=None if m_of is plain else s2j)
                x = run_chains(kernel, jax.random.fold_in(key, 5000 + j), jnp.broadcast_to(jnp.asarray(x0, jnp.float32),
                                                                                          (n, d)), k)[0].position
                row[f"{name} measured W2 at k"] = measured_whitened_w2(x, s2)
        count_rows.append(row)
    return bias_rows, count_rows


def main(cfg: Config):
    out = report.output_dir(__file__, cfg.out)
    key = jax.random.key(cfg.seed)
    k_a, k_b = jax.random.split(key)
    tic = time.perf_counter()
    rows_a, floor_a = part_a(cfg, k_a)
    print(f"\n(a) ULA and MALA on N(0, {cfg.variance}), {cfg.chains} chains started at π, run to stationarity;"
          f" W2 to the exact quantiles (floor for exact samples: {floor_a:.4f}):\n")
    print(report.markdown_table(rows_a, list(rows_a[0])))
    bias_rows, count_rows = part_b(cfg, k_b)
    print(f"\n(b) Stationary whitened W2 bias on N(0, diag(1, …, κ)), d = {cfg.dim}: closed form and measured "
          f"({cfg.chains} chains; floor: the same estimate on exact samples):\n")
    print(report.markdown_table(bias_rows, ["κ", "h", "ULA W2 (closed form)", "ULA W2", "ULA, M = Σ W2 (closed form)",
                                            "ULA, M = Σ W2", "floor"]))
    print(f"\n(b) Iterations to whitened W2 ≤ {cfg.tolerance} from x(0) = 3 sqrt(diag Σ), best h of 80 in "
          "[1e-3, 1.98] (closed form; measured whitened W2 of the chains at that k):\n")
    print(report.markdown_table(count_rows, ["κ", "ULA iterations", "ULA best h", "ULA measured W2 at k",
                                             "ULA, M = Σ iterations", "ULA, M = Σ best h",
                                             "ULA, M = Σ measured W2 at k"]))
    seconds = time.perf_counter() - tic
    print(f"\n{seconds:.0f} s")

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    h = np.array([r["h"] for r in rows_a])
    hh = np.linspace(0.01, max(h), 200)
    axes[0].plot(hh, cfg.variance / (1 - hh / (2 * cfg.variance)), "k-", lw=1, label="ULA, s²/(1 − h/(2s²))")
    axes[0].plot(h, [r["ULA var"] for r in rows_a], "C0o", label="ULA, measured")
    axes[0].plot(h, [r["MALA var"] for r in rows_a], "C1s", label="MALA, measured")
    axes[0].axhline(cfg.variance, color="k", ls=":", lw=1)
    axes[0].set(xlabel="step h", ylabel="stationary variance", title=f"(a) N(0, {cfg.variance})")
    axes[0].legend()
    for kappa, c in zip(cfg.kappas, ("C0", "C1", "C2", "C3", "C4", "C5")):
        rs = [r for r in bias_rows if r["κ"] == kappa]
        axes[1].loglog([r["h"] for r in rs], [r["ULA W2 (closed form)"] for r in rs], c + "-", label=f"ULA κ={kappa:g}")
        axes[1].loglog([r["h"] for r in rs], [r["ULA, M = Σ W2 (closed form)"] for r in rs], c + "--")
    axes[1].set(xlabel="step h", ylabel="stationary whitened W2 (closed form)", title="(b) bias; dashed: M = Σ")
    axes[1].legend(fontsize=8)
    kappas = np.array([r["κ"] for r in count_rows])
    for name, style in (("ULA", "C0o-"), ("ULA, M = Σ", "C1s-")):
        axes[2].loglog(kappas, [r[f"{name} iterations"] or np.nan for r in count_rows], style, label=name)
    axes[2].set(xlabel="condition number κ", ylabel=f"iterations to whitened W2 ≤ {cfg.tolerance}",
                title="(b) iterations, best h")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(out / "langevin_theory_bias_kappa.png", dpi=110)
    plt.close(fig)
    path = report.write_results(out, config=cfg, metrics={"a": rows_a, "a_floor": floor_a, "b_bias": bias_rows,
                                                          "b_iterations": count_rows, "seconds": seconds})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main(report.cli(Config, __doc__))
