"""Wasserstein gradient flows of KL(·‖π): JKO steps (closed form, affine and ICNN-gradient maps) against ULA.

The Fokker–Planck equation of ``dX = −∇V dt + sqrt(2) dW`` is the W2 gradient flow of ``KL(·‖π)``,
``π ∝ e^{−V}`` (Jordan, Kinderlehrer & Otto 1998; MATH.md §15).  From ``ρ_0 = N(m, diag s²)`` it is followed
by

* JKO steps of size τ: in closed form over Gaussians (:func:`genjax.stats.jko_gaussian`; Gaussian target
  only), and on particles through a learned map ``ρ_{k+1} = T#ρ_k`` (:func:`genjax.stats.jko_particle_step`),
  affine or the gradient of an input-convex network, warm-started from the previous step's map.  The
  particles carry their log-density, so ``KL(ρ_t ‖ π)`` is a Monte-Carlo mean (± its standard error);
* ULA particles with step h = τ and a small h (no density: KL only where its law is known in closed form,
  on the Gaussian target).

Targets: ``π = N(0, I)`` (the exact solution is the Ornstein–Uhlenbeck marginal, with closed-form KL and
exact samples at every t), and a 2-D two-mode mixture (the reference ``ρ_t`` is ULA with a 10× smaller step
than the smallest one tested, run on independent particles).  W2 (exact assignment) of each method's
particles to the reference sample at t is reported beside its floor, W2 between two independent
reference samples of the same size at the final time; on the mixture also the fraction of particles in
the left mode (binomial s.e. ≈ 0.015 for 1000 particles), which dominates W2 there.

Each JKO step is fitted on fresh particles of ρ_k (new draws of ρ_0 moved by all maps so far) and every
number is measured on one independent held-out set moved by the same maps: T minimises the empirical
objective, so the fitted particles' own Monte-Carlo KL is biased low (shown at the final time).

    python experiments/gradient_flows.py            # ≈ 1 min on 2 busy CPU cores (61 s measured)
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from genjax import metrics, report  # noqa: E402
from genjax.samplers.langevin import run_chains, ula  # noqa: E402
from genjax.stats.divergences import kl_gaussian  # noqa: E402
from genjax.stats.gaussian import gaussian_log_prob  # noqa: E402
from genjax.stats.jko import (affine_map, gaussian_particles, icnn_map, jko_gaussian, jko_particle_step,  # noqa: E402
                              kl_to_target, ou_marginal, push_particles)
from genjax.targets import GaussianMixture  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Config(report.RunConfig):
    particles: int = 1000
    """Particles per method (and reference sample size for W2)."""
    tau: float = 0.1
    """JKO step τ (time per step)."""
    horizon: float = 2.0
    """Final time T; T/τ JKO steps."""
    inner_steps: int = 300
    """Adam steps per JKO step."""
    learning_rate: float = 0.05
    """Adam's initial rate (cosine decay) in each JKO step of the affine map."""
    icnn_learning_rate: float = 0.01
    """The same for the ICNN (0.05 made the held-out KL diverge after t ≈ 1 on the Gaussian target)."""
    hidden: tuple[int, ...] = (32, 32)
    """Widths of the input-convex network."""
    small_step: float = 0.01
    """The small ULA step (the other is τ)."""
    start_mean: tuple[float, float] = (2.0, -1.0)
    """Mean of ρ_0 on the Gaussian target."""
    start_std: tuple[float, float] = (0.5, 1.5)
    """Per-coordinate std of ρ_0 on the Gaussian target."""
    mixture_start_mean: tuple[float, float] = (0.0, 2.5)
    """Mean of ρ_0 on the mixture target (std 0.5)."""
    report_every: int = 5
    """Table rows every this many JKO steps."""

    def __post_init__(self):
        report.check_positive(self, "particles", "tau", "horizon", "inner_steps", "learning_rate",
                              "icnn_learning_rate", "hidden",
                              "small_step", "start_std", "report_every")
        steps = self.horizon / self.tau
        if abs(steps - round(steps)) > 1e-6:
            raise ValueError(f"--horizon ({self.horizon}) must be a multiple of --tau ({self.tau})")
        ratio = self.tau / self.small_step
        if abs(ratio - round(ratio)) > 1e-6:
            raise ValueError(f"--tau ({self.tau}) must be a multiple of --small-step ({self.small_step})")


def ula_flow(score, key, x, h, tau, num):
    """ULA particles at times kτ, k = 0..num (τ/h steps between records, one compiled call each)."""
    kernel, per = ula(h, score_fn=score), int(round(tau / h))
    out = [x]
    for k in jax.random.split(key, num):
        x = run_chains(kernel, k, x, per)[0].position
        out.append(x)
    return out


def jko_flow(transport_map, potential, start, held_out, cfg, key, num, learning_rate):
    """JKO steps, each fitted on fresh particles of ρ_k (draws of ρ_0 moved by the maps so far, as in Mokrov
    et al. 2021) and warm-started from the previous map; returns the held-out particles moved by the same
    maps, the last fitted particles and the seconds."""
    out, maps, seconds = [held_out], [], time.perf_counter()
    for k in range(num):
        particles = start(jax.random.fold_in(key, k))
        for params in maps:
            particles = push_particles(transport_map, params, particles)
        particles, params, _ = jko_particle_step(transport_map, potential, particles, cfg.tau,
                                                 params=maps[-1] if maps else None, key=key,
                                                 num_steps=cfg.inner_steps, learning_rate=learning_rate)
        maps.append(params)
        out.append(push_particles(transport_map, params, out[-1]))
    return out, particles, time.perf_counter() - seconds


def run_target(name, cfg, key, log_pi, start, reference, exact_kl=None, ula_kl=None):
    """All methods on one target; returns per-step rows, the final particles and the seconds per method."""
    num = int(round(cfg.horizon / cfg.tau))
    k_held, k_affine, k_icnn, k_ula = jax.random.split(key, 4)
    potential = lambda x: -log_pi(x)  # noqa: E731
    score = jax.grad(log_pi)
    held_out = start(k_held)
    runs, seconds, fitted = {}, {}, {}
    for method, transport_map, k, rate in (("JKO affine", affine_map(), k_affine, cfg.learning_rate),
                                           ("JKO ICNN", icnn_map(cfg.hidden), k_icnn, cfg.icnn_learning_rate)):
        runs[method], fitted[method], seconds[method] = jko_flow(transport_map, potential, start, held_out, cfg, k,
                                                                 num, rate)
    for h in (cfg.tau, cfg.small_step):
        tic = time.perf_counter()
        runs[f"ULA h={h:g}"] = ula_flow(score, jax.random.fold_in(k_ula, int(h * 1e6)), held_out.x, h, cfg.tau, num)
        seconds[f"ULA h={h:g}"] = time.perf_counter() - tic
    rows = []
    for k in range(num + 1):
        row = {"target": name, "t": round(k * cfg.tau, 6)}
        if exact_kl is not None:
            row["KL exact"] = exact_kl(k * cfg.tau)
        for method, states in runs.items():
            x = np.asarray(states[k].x if hasattr(states[k], "x") else states[k])
            if k % cfg.report_every == 0 or k == num:
                row[f"W2 {method}"] = metrics.wasserstein2(x, reference[k])
                row[f"left {method}"] = float(np.mean(x[:, 0] < 0))
            if hasattr(states[k], "x"):
                kl, se = kl_to_target(states[k], log_pi)
                row[f"KL {method}"], row[f"KL {method} se"] = float(kl), float(se)
            elif ula_kl is not None:
                row[f"KL {method}"] = ula_kl(method, k * cfg.tau)
        rows.append(row)
    for method, p in fitted.items():  # the fitted particles' own KL: optimistic, T minimised it
        kl, se = kl_to_target(p, log_pi)
        rows[-1][f"KL {method} (fitted particles)"] = report.plus_minus(float(kl), float(se))
    final = {m: np.asarray(s[-1].x if hasattr(s[-1], "x") else s[-1]) for m, s in runs.items()}
    return rows, final, seconds


def main(cfg: Config):
    out = report.output_dir(__file__, cfg.out)
    key = jax.random.key(cfg.seed)
    k_gauss, k_mix, k_ref, k_floor = jax.random.split(key, 4)
    n, num = cfg.particles, int(round(cfg.horizon / cfg.tau))
    times = cfg.tau * np.arange(num + 1)
    tic = time.perf_counter()

    # -- Gaussian target: the exact flow is the OU marginal.
    m0, s0 = np.array(cfg.start_mean), np.array(cfg.start_std)
    log_gauss = lambda x: gaussian_log_prob(x, jnp.zeros(2), jnp.ones(2))  # noqa: E731

    def ou_sample(k, t):
        m, s = ou_marginal(m0, s0, t)
        return np.asarray(m + s * jax.random.normal(k, (n, 2)))

    def exact_kl(t):
        m, s = ou_marginal(m0, s0, t)
        return float(kl_gaussian(m, s**2, jnp.zeros(2), jnp.ones(2)))

    closed = [(jnp.asarray(m0), jnp.asarray(s0))]
    for _ in range(num):
        closed.append(jko_gaussian(*closed[-1], cfg.tau))

    def ula_kl(method, t):  # ULA on N(0, I) from N(m0, s0²): a = 1 − h, the law stays Gaussian
        h = float(method.split("=")[1])
        a, k = 1.0 - h, round(t / h)
        var = a ** (2 * k) * s0**2 + 2 * h * (1 - a ** (2 * k)) / (1 - a**2)
        return float(kl_gaussian(a**k * m0, var, jnp.zeros(2), jnp.ones(2)))

    reference = [ou_sample(jax.random.fold_in(k_ref, k), t) for k, t in enumerate(times)]
    rows_g, final_g, seconds_g = run_target("Gaussian", cfg, k_gauss, log_gauss,
                                            lambda k: gaussian_particles(k, n, m0, s0), reference, exact_kl, ula_kl)
    for row, (m, s) in zip(rows_g, closed):
        row["KL JKO closed form"] = float(kl_gaussian(m, s**2, jnp.zeros(2), jnp.ones(2)))
    floor_g = metrics.wasserstein2(ou_sample(jax.random.fold_in(k_floor, 0), cfg.horizon),
                                   ou_sample(jax.random.fold_in(k_floor, 1), cfg.horizon))

    # -- Mixture target: the reference flow is ULA with a 10× smaller step on independent particles.
    weights, means, std = jnp.array([0.3, 0.7]), jnp.array([[-2.0, 0.0], [2.0, 0.0]]), 0.6
    mixture = GaussianMixture.diagonal(weights, means, std)

    def log_mixture(x):  # mixture.log_prob for isotropic components, without its Cholesky factorisations
        sq = jnp.sum((x - means) ** 2, axis=-1) / std**2
        return jax.nn.logsumexp(jnp.log(weights) - 0.5 * sq) - jnp.log(2 * jnp.pi * std**2)

    x_check = mixture.sample(jax.random.fold_in(k_ref, 7), 100)
    np.testing.assert_allclose(jax.vmap(log_mixture)(x_check), jax.vmap(mixture.log_prob)(x_check), atol=1e-4)
    mix_start = lambda k: gaussian_particles(k, n, jnp.array(cfg.mixture_start_mean), 0.5)  # noqa: E731
    h_ref = cfg.small_step / 10

    def reference_flow(k):
        return [np.asarray(x) for x in ula_flow(jax.grad(log_mixture), k, mix_start(jax.random.fold_in(k, 1)).x,
                                                h_ref, cfg.tau, num)]

    reference_m = reference_flow(jax.random.fold_in(k_ref, 10_000))
    rows_m, final_m, seconds_m = run_target("mixture", cfg, k_mix, log_mixture, mix_start, reference_m)
    floor_m = metrics.wasserstein2(reference_m[-1], reference_flow(jax.random.fold_in(k_floor, 2))[-1])
    seconds = time.perf_counter() - tic

    methods = ["JKO affine", "JKO ICNN", f"ULA h={cfg.tau:g}", f"ULA h={cfg.small_step:g}"]
    shown = lambda rows: [r for i, r in enumerate(rows) if i % cfg.report_every == 0 or i == num]  # noqa: E731
    mixture_title = f"mixture target 0.3 N((−2, 0), 0.6²) + 0.7 N((2, 0), 0.6²), reference = ULA h={h_ref:g}"
    tables = (("KL", "KL(ρ_t ‖ π) (JKO: Monte Carlo over the held-out particles' carried log-densities; ULA on the "
                     "Gaussian: its closed-form Gaussian law)"),
              ("W2", "W2 of the held-out particles to the reference sample at t"),
              ("left", "fraction of particles left of x₁ = 0"))
    for key_name, caption in tables:
        print(f"\n{caption}:\n")
        for title, rows, extra, floor in (("Gaussian target N(0, I), exact = OU marginal", rows_g,
                                           ["KL exact", "KL JKO closed form"] if key_name == "KL" else [], floor_g),
                                          (mixture_title, rows_m, [], floor_m)):
            if key_name == "left" and rows is rows_g:
                continue
            table = []
            for r in shown(rows):
                entry = {"t": r["t"], **{c: r.get(c) for c in extra}}
                for m in methods:
                    value, se = r.get(f"{key_name} {m}"), r.get(f"{key_name} {m} se")
                    entry[m] = report.plus_minus(value, se) if se is not None else value
                table.append(entry)
            if key_name == "left":
                table.append({"t": "reference", **{m: float(np.mean(reference_m[-1][:, 0] < 0)) for m in methods}})
            suffix = f" (W2 floor at T: {floor:.3f})" if key_name == "W2" else ""
            print(f"{title}{suffix}\n")
            print(report.markdown_table(table, ["t", *extra, *methods]))
            print()
    print("KL at T of the particles the maps were fitted on (optimistic):\n")
    print(report.markdown_table([{"target": r[-1]["target"], **{m: r[-1][f"KL {m} (fitted particles)"] for m in
                                                                methods[:2]}} for r in (rows_g, rows_m)],
                                ["target", *methods[:2]]))
    print()
    timing = [{"target": t, **{m: s[m] for m in methods}} for t, s in (("Gaussian", seconds_g), ("mixture", seconds_m))]
    print("seconds per flow:\n")
    print(report.markdown_table(timing, ["target", *methods], digits=3))
    print(f"\ntotal {seconds:.0f} s")

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
    for ax, rows, title in ((axes[0], rows_g, "Gaussian target"), (axes[1], rows_m, "mixture target")):
        if "KL exact" in rows[0]:
            ax.semilogy(times, [r["KL exact"] for r in rows], "k-", lw=2, label="exact (OU)")
            ax.semilogy(times, [r["KL JKO closed form"] for r in rows], "k:", label="JKO closed form")
        for m, c in zip(methods, ("C0", "C1", "C2", "C3")):
            values = [r.get(f"KL {m}") for r in rows]
            if values[0] is not None:
                ax.semilogy(times, values, c + ("-" if m.startswith("JKO") else "--"), label=m)
        ax.set(xlabel="t", ylabel="KL(ρ_t ‖ π)", title=f"{title}: KL")
        ax.legend(fontsize=8)
    for rows, floor, ls, label in ((rows_g, floor_g, "-", "Gaussian"), (rows_m, floor_m, "--", "mixture")):
        for m, c in zip(methods, ("C0", "C1", "C2", "C3")):
            pts = [(r["t"], r[f"W2 {m}"]) for r in rows if r.get(f"W2 {m}") is not None]
            axes[2].plot(*zip(*pts), c + ls + "o", ms=3, label=f"{m} ({label})")
        axes[2].axhline(floor, color="k", ls=ls, lw=1)
    axes[2].set(xlabel="t", ylabel="W2 to the reference", title="W2 (black: floor at T)")
    axes[2].legend(fontsize=6)
    axes[3].scatter(*reference_m[-1].T, s=2, c="k", alpha=0.3, label="reference")
    for m, c in zip(("JKO affine", "JKO ICNN", f"ULA h={cfg.tau:g}"), ("C0", "C1", "C2")):
        axes[3].scatter(*final_m[m].T, s=2, c=c, alpha=0.3, label=m)
    axes[3].set(title=f"mixture, t = {cfg.horizon:g}", xlim=(-4.5, 4.5), ylim=(-3, 4))
    axes[3].legend(fontsize=7, markerscale=4)
    fig.tight_layout()
    fig.savefig(out / "gradient_flows_kl_w2.png", dpi=110)
    plt.close(fig)
    path = report.write_results(out, config=cfg, metrics={"gaussian": rows_g, "mixture": rows_m, "floor_gaussian":
                                                          floor_g, "floor_mixture": floor_m, "seconds": timing,
                                                          "total_seconds": seconds})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main(report.cli(Config, __doc__))
