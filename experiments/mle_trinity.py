"""MLE = cross-entropy minimisation = forward-KL minimisation, and asymptotic normality of the MLE.

Part 1 (MATH.md §8): data ``x ~ p = N(μ0, σ0²)``; over a scan of ``q_θ = N(μ, σ²)`` compare
  (a) the negative mean log-likelihood ``−(1/N) Σ log q_θ(x_i)`` (what MLE minimises),
  (b) the cross-entropy ``H(p, q_θ) = −∫ p log q_θ`` (Gauss–Hermite quadrature),
  (c) the forward KL ``KL(p ‖ q_θ)`` (closed form).
(b) − (c) is the data entropy ``H(p) = ½ log(2πe σ0²)`` at every θ, so (b) and (c) share their
argmin; (a) is a Monte-Carlo estimate of (b), so its argmin (the MLE) is within a standard
error of the truth.
Part 2: over many replications (vmapped), the spread of ``μ̂`` and ``σ̂`` against the Fisher
standard errors ``σ/√N`` and ``σ/√(2N)`` for N from 10 to 5000, and the Wald 95% coverage.

Run: ``.venv/bin/python experiments/mle_trinity.py`` (≈ 10 s); ``--reps`` for more replications.
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
from genjax import stats as S  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Config(report.RunConfig):
    mu0: float = 1.0
    """Mean of the data distribution p = N(mu0, sigma0²)."""
    sigma0: float = 2.0
    """Standard deviation of p."""
    n_data: int = 2000
    """Data points for the parameter scan."""
    scan_points: int = 601
    """Points of each scan (601: grid steps 0.01 in μ and 0.005 in σ that contain the truth)."""
    quadrature_nodes: int = 40
    """Gauss–Hermite nodes for the cross-entropy."""
    sample_sizes: tuple[int, ...] = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
    """Sample sizes N of the replication study."""
    reps: int = 4000
    """Replications per sample size."""

    def __post_init__(self):
        report.check_positive(self, "sigma0", "n_data", "scan_points", "quadrature_nodes", "reps")
        if not self.sample_sizes or min(self.sample_sizes) < 2:
            raise ValueError(f"--sample-sizes must be integers >= 2, got {self.sample_sizes}")


def objectives(x, mu0, sigma0, nodes, weights):
    """(NLL on x, cross-entropy by quadrature, closed-form KL) as functions of (μ, σ)."""

    def nll(mu, sigma):
        return -jnp.mean(jax.vmap(S.gaussian_log_prob, (0, None, None))(x, mu, sigma**2))

    def cross_entropy(mu, sigma):  # E_p[f] = Σ w_j f(μ0 + σ0 z_j) (probabilists' Gauss–Hermite)
        pts = mu0 + sigma0 * nodes
        return -jnp.sum(weights * jax.vmap(S.gaussian_log_prob, (0, None, None))(pts, mu, sigma**2))

    def kl(mu, sigma):
        return S.kl_gaussian(mu0, sigma0**2, mu, sigma**2)

    return nll, cross_entropy, kl


def scan(cfg: Config, key):
    x = cfg.mu0 + cfg.sigma0 * jax.random.normal(key, (cfg.n_data,))
    nodes, weights = np.polynomial.hermite_e.hermegauss(cfg.quadrature_nodes)
    fns = objectives(x, cfg.mu0, cfg.sigma0, jnp.asarray(nodes, jnp.float32), jnp.asarray(weights / weights.sum(), jnp.float32))
    mus = jnp.linspace(cfg.mu0 - 3.0, cfg.mu0 + 3.0, cfg.scan_points)
    sigmas = jnp.linspace(0.5 * cfg.sigma0, 2.0 * cfg.sigma0, cfg.scan_points)
    curves = jax.jit(
        lambda: (
            [jax.vmap(f, (0, None))(mus, cfg.sigma0) for f in fns],
            [jax.vmap(f, (None, 0))(cfg.mu0, sigmas) for f in fns],
        )
    )()
    return x, mus, sigmas, curves


def replications(cfg: Config, key):
    """Empirical spread of (μ̂, σ̂) over ``reps`` data sets per N, vmapped."""
    rows = []
    for n, k in zip(cfg.sample_sizes, jax.random.split(key, len(cfg.sample_sizes))):
        data = cfg.mu0 + cfg.sigma0 * jax.random.normal(k, (cfg.reps, n))
        mean, var = jax.jit(jax.vmap(S.gaussian_mle))(data)
        std = jnp.sqrt(var)
        se_mu, se_sigma = (float(v) for v in S.mle_standard_errors(cfg.sigma0, n))
        covered = jnp.abs(mean - cfg.mu0) <= 1.96 * std / math.sqrt(n)
        rows.append(
            dict(
                N=n,
                sd_mu_hat=float(jnp.std(mean)),
                fisher_se_mu=se_mu,
                ratio_mu=float(jnp.std(mean)) / se_mu,
                sd_sigma_hat=float(jnp.std(std)),
                fisher_se_sigma=se_sigma,
                ratio_sigma=float(jnp.std(std)) / se_sigma,
                bias_sigma_hat=float(jnp.mean(std)) - cfg.sigma0,
                # E[σ̂] = σ √(2/N) Γ(N/2)/Γ((N−1)/2) for the biased σ̂ (σ̂² N/σ² ~ χ²_{N−1})
                bias_theory=cfg.sigma0 * (math.sqrt(2 / n) * math.exp(math.lgamma(n / 2) - math.lgamma((n - 1) / 2)) - 1),
                wald95_coverage=float(jnp.mean(covered)),
                z_sigma=np.asarray((std - cfg.sigma0) / se_sigma),
            )
        )
    return rows


def main(cfg: Config):
    out = report.output_dir(__file__, cfg.out)
    k1, k2 = jax.random.split(jax.random.key(cfg.seed))

    x, mus, sigmas, (mu_curves, sigma_curves) = scan(cfg, k1)
    entropy = 0.5 * math.log(2 * math.pi * math.e * cfg.sigma0**2)
    mle_mean, mle_var = S.gaussian_mle(x)
    scan_rows = []
    for label, grid, curves, se, mle in (
        ("mu", mus, mu_curves, cfg.sigma0 / math.sqrt(cfg.n_data), float(mle_mean)),
        ("sigma", sigmas, sigma_curves, cfg.sigma0 / math.sqrt(2 * cfg.n_data), float(jnp.sqrt(jnp.mean((x - cfg.mu0) ** 2)))),
    ):
        nll, ce, kl = (np.asarray(c, np.float64) for c in curves)
        g = np.asarray(grid)
        scan_rows.append(
            dict(
                scan=label,
                argmin_nll=g[nll.argmin()],
                argmin_cross_entropy=g[ce.argmin()],
                argmin_kl=g[kl.argmin()],
                mle_closed_form=mle,
                truth=cfg.mu0 if label == "mu" else cfg.sigma0,
                standard_error=se,
                ce_minus_kl_mean=float(np.mean(ce - kl)),
                ce_minus_kl_spread=float(np.ptp(ce - kl)),
                nll_minus_kl_mean=float(np.mean(nll - kl)),
                nll_minus_kl_spread=float(np.ptp(nll - kl)),
                entropy=entropy,
            )
        )
    rep_rows = replications(cfg, k2)

    cols1 = ["scan", "argmin_nll", "mle_closed_form", "argmin_cross_entropy", "argmin_kl", "truth", "standard_error",
             "ce_minus_kl_mean", "ce_minus_kl_spread", "nll_minus_kl_mean", "nll_minus_kl_spread", "entropy"]
    cols2 = ["N", "sd_mu_hat", "fisher_se_mu", "ratio_mu", "sd_sigma_hat", "fisher_se_sigma", "ratio_sigma",
             "bias_sigma_hat", "bias_theory", "wald95_coverage"]
    print(f"Scan of q = N(mu, sigma^2) against p = N({cfg.mu0}, {cfg.sigma0}^2), N = {cfg.n_data} data points, grid step "
          f"{float(mus[1] - mus[0]):.3g} (mu) / {float(sigmas[1] - sigmas[0]):.3g} (sigma):")
    print(report.markdown_table(scan_rows, cols1, digits=5))
    print(f"\nMLE spread over {cfg.reps} replications vs Fisher standard errors:")
    print(report.markdown_table(rep_rows, cols2))

    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    for a, grid, curves, name, truth in ((ax[0, 0], mus, mu_curves, "μ", cfg.mu0), (ax[0, 1], sigmas, sigma_curves, "σ", cfg.sigma0)):
        for c, label, style in zip(curves, ("NLL on data (MLE objective)", "cross-entropy H(p, q)", "KL(p‖q) + H(p)"), ("-", "--", ":")):
            shift = entropy if label.startswith("KL") else 0.0
            a.plot(grid, np.asarray(c) + shift, style, lw=2, label=label)
        for c, colour in zip(curves, ("C0", "C1", "C2")):
            a.axvline(float(grid[int(jnp.argmin(c))]), color=colour, lw=0.8)
        a.set(xlabel=name, ylabel="nats", title=f"scan over {name} (other parameter at the truth)")
        a.legend(fontsize=8)
    ns = np.array(cfg.sample_sizes, float)
    a = ax[1, 0]
    a.loglog(ns, [r["sd_mu_hat"] for r in rep_rows], "o", label="sd(μ̂) empirical")
    a.loglog(ns, cfg.sigma0 / np.sqrt(ns), "-", label="σ/√N (Fisher)")
    a.loglog(ns, [r["sd_sigma_hat"] for r in rep_rows], "s", label="sd(σ̂) empirical")
    a.loglog(ns, cfg.sigma0 / np.sqrt(2 * ns), "--", label="σ/√(2N) (Fisher)")
    a.set(xlabel="N", ylabel="standard error", title=f"MLE spread over {cfg.reps} replications")
    a.legend(fontsize=8)
    a = ax[1, 1]
    zs = np.linspace(-4, 4, 200)
    for r in (rep_rows[0], rep_rows[-1]):
        a.hist(r["z_sigma"], bins=60, range=(-5, 4), density=True, histtype="step", lw=1.5, label=f"(σ̂−σ)/(σ/√2N), N={r['N']}")
    a.plot(zs, np.exp(-0.5 * zs**2) / math.sqrt(2 * math.pi), "k--", label="N(0, 1)")
    a.set(xlabel="standardised σ̂", title="asymptotic normality of σ̂")
    a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "mle_trinity.png", dpi=120)

    for r in rep_rows:
        r.pop("z_sigma")
    report.write_results(out, config=cfg, metrics={"scan": scan_rows, "replications": rep_rows})
    print(f"\nwrote {out / 'results.json'} and {out / 'mle_trinity.png'}")


if __name__ == "__main__":
    main(report.cli(Config, __doc__))
