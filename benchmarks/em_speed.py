"""EM speed and final log-likelihood: genjax (compiled JAX) vs a vectorised NumPy EM vs scikit-learn.

All three start from the same k-means++ initialisation (``genjax.stats.init_gmm``) and use the
same ``tol`` (on the mean log-likelihood), ``max_iter`` and ``reg_covar``; scikit-learn gets it
through ``weights_init``/``means_init``/``precisions_init`` with ``n_init=1``.  JAX runs in
float32; the references in float64 by default (``--ref-dtype float32`` to match).  Times are the
best of ``--repeats`` runs; the JAX compile time is reported separately (first call − run).
scikit-learn's time includes its parameter-initialisation pass (one M-step), and it takes one
more M-step after its stopping test, so its ``n_iter`` is ours + 1 when both converge.

On a busy machine OpenBLAS's thread hand-off can dominate the references' small LAPACK calls
(measured here: 16 ms per 2×2 ``scipy.linalg.solve_triangular``, 10 µs with
``OPENBLAS_NUM_THREADS=1``), which inflates scikit-learn's full-covariance times; run under
``OPENBLAS_NUM_THREADS=1`` as well and report both.

Run: ``.venv/bin/python benchmarks/em_speed.py`` (a few minutes); ``--full`` adds
(N, D, K) = (10⁵, 16, 16) and (10⁵, 64, 16).  Writes ``runs/em_speed/results.json``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Literal

import jax
import numpy as np

from genjax import report
from genjax import stats as S

DEFAULT_GRID = ((1_000, 2, 3), (10_000, 2, 3), (10_000, 16, 8), (30_000, 32, 8))
FULL_GRID = DEFAULT_GRID + ((100_000, 16, 16), (100_000, 64, 16))


@dataclasses.dataclass(frozen=True)
class Config(report.RunConfig):
    full: bool = False
    """Add the (N, D, K) = (1e5, 16, 16) and (1e5, 64, 16) cases."""
    covariance_types: tuple[Literal["full", "diag"], ...] = ("full", "diag")
    """Covariance types to run."""
    tol: float = 1e-3
    """Stopping tolerance on the mean log-likelihood."""
    max_iter: int = 100
    """Maximum EM iterations."""
    reg_covar: float = 1e-6
    """Added to the covariance diagonals."""
    repeats: int = 3
    """Timed runs per case (the best is kept)."""
    ref_dtype: Literal["float64", "float32"] = "float64"
    """Float type of the NumPy and scikit-learn references."""

    def __post_init__(self):
        report.check_positive(self, "tol", "max_iter", "repeats")
        report.check_nonnegative(self, "reg_covar")
        if not self.covariance_types or any(c not in ("full", "diag") for c in self.covariance_types):
            raise ValueError(f"--covariance-types {self.covariance_types}: expected one or more of full, diag")

    @property
    def grid(self) -> tuple:
        """The (N, D, K) cases."""
        return FULL_GRID if self.full else DEFAULT_GRID


# -- the NumPy reference ----------------------------------------------------------------
def numpy_em(x, weights, means, covs, *, tol, max_iter, reg_covar):
    """Vectorised NumPy EM with the same E/M-steps and stopping rule as ``genjax.stats.em``.

    Returns ``(weights, means, covs, mean log-likelihood of the returned parameters, n_iter)``.
    """
    n, d = x.shape
    full = covs.ndim == 3
    eye = np.eye(d, dtype=x.dtype)

    def e_step(weights, means, covs):
        if full:
            chol = np.linalg.cholesky(covs)
            log_det_prec = -np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(1)
            log_prob = np.empty((n, len(weights)), x.dtype)
            for k in range(len(weights)):  # vectorised over samples, as in scikit-learn
                prec = np.linalg.solve(chol[k], eye).T  # Σ⁻¹ = P Pᵀ
                y = x @ prec - means[k] @ prec
                log_prob[:, k] = -0.5 * np.einsum("nd,nd->n", y, y)
        else:
            prec = 1.0 / covs
            log_det_prec = 0.5 * np.log(prec).sum(1)
            log_prob = -0.5 * ((x**2) @ prec.T - 2.0 * x @ (means * prec).T + (means**2 * prec).sum(1))
        log_joint = log_prob + log_det_prec - 0.5 * d * np.log(2 * np.pi) + np.log(weights)
        top = log_joint.max(1, keepdims=True)
        log_norm = top + np.log(np.exp(log_joint - top).sum(1, keepdims=True))
        return log_norm.mean(), np.exp(log_joint - log_norm)

    def m_step(resp):
        nk = resp.sum(0) + 10 * np.finfo(x.dtype).eps
        means = resp.T @ x / nk[:, None]
        if full:
            covs = np.empty((len(nk), d, d), x.dtype)
            for k in range(len(nk)):
                diff = x - means[k]
                covs[k] = (resp[:, k, None] * diff).T @ diff / nk[k] + reg_covar * eye
        else:
            covs = (resp.T @ x**2) / nk[:, None] - means**2 + reg_covar
        return nk / nk.sum(), means, covs

    shift = x.mean(0)
    x = x - shift
    params = (weights, means - shift, covs)
    ll, resp = e_step(*params)
    n_iter = 0
    while n_iter < max_iter:
        params = m_step(resp)
        ll_prev, (ll, resp) = ll, e_step(*params)
        n_iter += 1
        if abs(ll - ll_prev) < tol:
            break
    weights, means, covs = params
    return weights, means + shift, covs, ll, n_iter


# -- the benchmark ----------------------------------------------------------------------
def make_data(rng, n, d, k):
    """A K-component mixture sample, means ~ N(0, (3/√D)² I) (pairwise distance ≈ 4.2 in any D), stds in [0.5, 1.5].

    The components overlap, so EM needs tens of iterations rather than two.
    """
    means = rng.normal(0.0, 3.0 / np.sqrt(d), (k, d))
    stds = rng.uniform(0.5, 1.5, (k, d))
    labels = rng.choice(k, size=n, p=rng.dirichlet(np.full(k, 5.0)))
    return (means[labels] + stds[labels] * rng.normal(size=(n, d))).astype(np.float32)


def best_time(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def run_case(cfg: Config, key, x, k, cov_type, sklearn_mixture):
    w, m, c = S.init_gmm(key, x, k, covariance_type=cov_type, reg_covar=cfg.reg_covar)
    opts = dict(tol=cfg.tol, max_iter=cfg.max_iter, reg_covar=cfg.reg_covar)

    def jax_run():
        fit = S.em(x, w, m, c, **opts)
        fit.log_likelihood.block_until_ready()
        return fit

    start = time.perf_counter()
    jax_run()
    first = time.perf_counter() - start
    t_jax, fit = best_time(jax_run, cfg.repeats)

    ref = np.dtype(cfg.ref_dtype)
    xr, wr, mr, cr = (np.asarray(a, ref) for a in (x, w, m, c))
    wr = wr / wr.sum()
    t_np, np_out = best_time(lambda: numpy_em(xr, wr, mr, cr, **opts), cfg.repeats)
    row = dict(
        N=x.shape[0], D=x.shape[1], K=k, cov=cov_type,
        iters_jax=int(fit.n_iter), iters_np=np_out[4],
        compile_s=first - t_jax, jax_s=t_jax, numpy_s=t_np, numpy_over_jax=t_np / t_jax,
        ll_jax=float(fit.log_likelihood), ll_np_minus_jax=float(np_out[3]) - float(fit.log_likelihood),
    )
    if sklearn_mixture is not None:
        prec = np.linalg.inv(cr) if cov_type == "full" else 1.0 / cr

        def sk_run():
            return sklearn_mixture(
                k, covariance_type=cov_type, n_init=1, init_params="random", weights_init=wr, means_init=mr,
                precisions_init=prec, **opts,
            ).fit(xr)

        t_sk, sk = best_time(sk_run, cfg.repeats)
        row.update(iters_sk=int(sk.n_iter_), sklearn_s=t_sk, sklearn_over_jax=t_sk / t_jax,
                   ll_sk_minus_jax=float(sk.score(xr)) - float(fit.log_likelihood))
    return row


def main(cfg: Config):
    out = report.output_dir(__file__, cfg.out)
    try:
        from sklearn.mixture import GaussianMixture as sklearn_mixture
    except ImportError:
        sklearn_mixture = None
        print("scikit-learn not installed: skipping that reference")

    rng = np.random.default_rng(cfg.seed)
    key = jax.random.key(cfg.seed)
    rows = []
    for n, d, k in cfg.grid:
        x = make_data(rng, n, d, k)
        for cov_type in cfg.covariance_types:
            key, sub = jax.random.split(key)
            rows.append(run_case(cfg, sub, x, k, cov_type, sklearn_mixture))
            print(f"N={n} D={d} K={k} {cov_type}: jax {rows[-1]['jax_s']:.3f}s, numpy {rows[-1]['numpy_s']:.3f}s", flush=True)

    cols = ["N", "D", "K", "cov", "iters_jax", "iters_np", "iters_sk", "compile_s", "jax_s", "numpy_s", "sklearn_s",
            "numpy_over_jax", "sklearn_over_jax", "ll_jax", "ll_np_minus_jax", "ll_sk_minus_jax"]
    print(f"\nEM from the same k-means++ init, tol={cfg.tol}, max_iter={cfg.max_iter}; JAX float32 on "
          f"{jax.devices()[0].device_kind}, references {cfg.ref_dtype}; times in s (best of {cfg.repeats}):")
    print(report.markdown_table(rows, [c for c in cols if any(c in r for r in rows)], digits=3))
    report.write_results(out, config={**dataclasses.asdict(cfg), "grid": cfg.grid}, seed=cfg.seed,
                         metrics={"cases": rows})
    print(f"\nwrote {out / 'results.json'}")


if __name__ == "__main__":
    main(report.cli(Config, __doc__))
