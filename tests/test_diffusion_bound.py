"""The discrete-time diffusion bound (MATH.md §14; oracle 9.17).

Oracles: the ε-form identity and Gaussian conditioning of the posterior (closed forms from ᾱ);
the discretised decoder against Φ differences written with ``math.erfc``; on Gaussian data
``x0 ~ N(m, s² I)`` with linear-Gaussian reverse kernels, closed forms for every expected term of the
bound and for the model's exact marginal ``log p_θ(x0)`` (a backward recursion of means and variances);
with the exact reverse kernels (the true ``q(x_{i−1}|x_i)`` of the Gaussian chain) the bound is tight.
Monte-Carlo tolerances are stated in standard errors (s.e.).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax import Model
from genjax import interpolants as I
from genjax.losses import interpolant_loss
from genjax.models import diffusion_bound as db
from genjax.nets import TimeMLP

T = 20
IP = I.ddpm(num_steps=T, beta_start=1e-3, beta_end=0.3)  # ᾱ_T ≈ 0.03 on a short grid
M_DATA, S_DATA = np.array([0.4, -0.3]), 0.5  # Gaussian data N(m, s² I), d = 2
X_POINTS = np.array([[0.9, -0.8], [0.1, 0.2], [-0.5, 0.6]])


def alpha_bars(ip, steps):
    """ᾱ_i = α(t_i)², i = 0..T, from the preset's α (float64 under x64)."""
    return np.asarray(jax.jit(jax.vmap(ip.alpha))(jnp.arange(steps + 1) / steps), np.float64) ** 2


def ddpm_closed_forms(abar):
    """β_i, the DDPM step factor α_i = 1 − β_i, β̃_i and the posterior coefficients (Ho et al. 2020, eq. 6–7)."""
    beta = np.concatenate([[0.0], 1.0 - abar[1:] / abar[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        coef_x0 = np.sqrt(np.concatenate([[0.0], abar[:-1]])) * beta / (1.0 - abar)
        coef_xt = np.sqrt(1.0 - beta) * np.concatenate([[0.0], 1.0 - abar[:-1]]) / (1.0 - abar)
        beta_tilde = beta * np.concatenate([[0.0], 1.0 - abar[:-1]]) / (1.0 - abar)
    return beta, 1.0 - beta, beta_tilde, coef_x0, coef_xt


class LinearGaussianChain:
    """Gaussian data N(m, s² I) on the ddpm chain and a model whose x̂0 is the exact E[x0|x_i] for data mean m_model.

    The reverse kernel is then affine, ``μ_θ(x_i) = P_i x_i + Q_i``, with variance ``W_i = var_scale·V_i`` (through
    the learned-variance head), ``V_i = Var[x_{i−1}|x_i] = β̃_i + coef_x0² Var[x0|x_i]`` the true reverse variance,
    and prior ``N(a_T m_model, a_T² s² + σ_T²)``.  ``m_model = m`` and ``var_scale = 1`` are the true reverse
    conditionals q(x_{i−1}|x_i) and the true marginal of x_T.
    """

    def __init__(self, m_model, var_scale=1.0):
        abar = alpha_bars(IP, T)
        beta, _, bt, c0, ct = ddpm_closed_forms(abar)
        a, var_noise = np.sqrt(abar), 1.0 - abar
        with np.errstate(divide="ignore", invalid="ignore"):  # index 0 is unused
            gain = a * S_DATA**2 / (abar * S_DATA**2 + var_noise)  # E[x0|x] = m + gain (x − a m)
            post_var_x0 = S_DATA**2 * var_noise / (abar * S_DATA**2 + var_noise)
            self.W = var_scale * (bt + c0**2 * post_var_x0)
            log_bt = np.log(np.where(bt > 0, bt, np.nan))
            log_bt[1] = log_bt[2]  # the clipped β̃_1
            self.v = (np.log(self.W) - log_bt) / (np.log(beta) - log_bt)
        self.gain, self.a, self.m_model = gain, a, np.asarray(m_model, np.float64)
        self.P = ct + c0 * gain  # index 1: ct = 0, c0 = 1
        self.Q = (c0 * (1.0 - gain * a))[:, None] * self.m_model[None, :]
        self.bt, self.c0, self.ct, self.var_noise = bt, c0, ct, var_noise
        self.prior_mean, self.prior_var = a[-1] * self.m_model, abar[-1] * S_DATA**2 + var_noise[-1]

    def model(self):
        """The per-sample fn(t, x) -> (x̂0, v) at t = i/T, as data: every chain shares one compiled program."""
        return Model(_gaussian_apply, tuple(jnp.asarray(u) for u in (self.gain, self.a, self.m_model, self.v)))

    def options(self):
        return {"prediction": "data", "levels": None, "variance": "learned", "prior_mean": jnp.asarray(self.prior_mean),
                "prior_std": float(np.sqrt(self.prior_var))}

    def expected_terms(self, x0):
        """E over q of L_T, of each L_{i−1} (i = 2..T) and of L_0, in closed form (x0 of shape (d,))."""
        d, a, pv = x0.size, self.a, self.prior_var
        prior = 0.5 * np.sum(self.var_noise[-1] / pv - 1 - np.log(self.var_noise[-1] / pv)
                             + (a[-1] * x0 - self.prior_mean) ** 2 / pv)
        kls = []
        for i in range(2, T + 1):
            slope = self.ct[i] - self.P[i]  # μ̃ − μ_θ = slope x_i + c0 x0 − Q_i, x_i ~ N(a_i x0, σ_i²)
            mean_diff = slope * a[i] * x0 + self.c0[i] * x0 - self.Q[i]
            ratio = self.bt[i] / self.W[i]
            kls.append(0.5 * (d * (ratio - 1 - np.log(ratio))
                              + (np.sum(mean_diff**2) + d * slope**2 * self.var_noise[i]) / self.W[i]))
        resid = x0 - self.P[1] * a[1] * x0 - self.Q[1]
        decoder = 0.5 * (np.sum(resid**2) + d * self.P[1] ** 2 * self.var_noise[1]) / self.W[1] \
            + 0.5 * d * np.log(2 * np.pi * self.W[1])
        return prior, np.array(kls), decoder

    def log_marginal(self, x0):
        """The model's exact log p_θ(x0): x_T ~ N(prior), x_{i−1} = P_i x_i + Q_i + sqrt(W_i) ξ down to i = 1."""
        mean, var = self.prior_mean.copy(), self.prior_var
        for i in range(T, 0, -1):
            mean, var = self.P[i] * mean + self.Q[i], self.P[i] ** 2 * var + self.W[i]
        return float(np.sum(-0.5 * (x0 - mean) ** 2 / var - 0.5 * np.log(2 * np.pi * var)))


def _gaussian_apply(params, t, x):
    gain, a, m, v = params
    i = jnp.round(t * T).astype(jnp.int32)
    return m + gain[i] * (x - a[i] * m), jnp.full_like(x, v[i])


def log_normal_data(x0):
    return float(np.sum(-0.5 * (x0 - M_DATA) ** 2 / S_DATA**2 - 0.5 * np.log(2 * np.pi * S_DATA**2)))


def repeat(x0, r):
    return jnp.asarray(np.repeat(x0[None], r, axis=0))


# ----------------------------------------------------------------------------- (a) ε-form and posterior


@pytest.mark.parametrize("ip,steps", [(I.ddpm, 1000), (IP, T)], ids=["ddpm1000", "ddpm20"])
def test_eps_form_identity_and_posterior_closed_forms(ip, steps):
    """‖μ̃ − μ_θ‖² = β_i²/(α_i(1 − ᾱ_i)) ‖ε − ε_θ‖² (MATH.md §14) and μ̃, β̃ equal Ho et al.'s eq. 6–7, every i."""
    with jax.enable_x64(True):
        abar = alpha_bars(ip, steps)
        beta, alpha, bt, c0, ct = ddpm_closed_forms(abar)
        ch = db.chain(ip)
        rng = np.random.default_rng(0)
        x0, eps, eps_hat = (rng.standard_normal((steps, 5)) for _ in range(3))
        i = np.arange(1, steps + 1)
        xi = np.sqrt(abar[i])[:, None] * x0 + np.sqrt(1 - abar[i])[:, None] * eps
        both = jax.jit(jax.vmap(lambda i, a, e, x: (db.posterior(ch, i, a, x), db.reverse_kernel(e, ch, ip, i, x))))
        (mu, var), (mu_theta, var_theta) = both(*(jnp.asarray(u) for u in (i, x0, eps_hat, xi)))
        np.testing.assert_allclose(mu, c0[i, None] * x0 + ct[i, None] * xi, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(var, bt[i], rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(var_theta, beta[i], rtol=1e-9)
        lhs = np.sum((np.asarray(mu) - np.asarray(mu_theta)) ** 2, axis=1)
        rhs = beta[i] ** 2 / (alpha[i] * (1 - abar[i])) * np.sum((eps - eps_hat) ** 2, axis=1)
        np.testing.assert_allclose(lhs, rhs, rtol=1e-8)


@pytest.mark.parametrize("ip", [I.cosine, I.ve], ids=lambda ip: ip.name)
def test_posterior_is_gaussian_conditioning_on_any_path(ip):
    """q(x_{i−1}|x_i, x0) from the joint Gaussian of (x_{i−1}, x_i) given x0 (oracle 9.9), and a prediction converted
    to velocity, data or score gives the noise model's μ_θ."""
    with jax.enable_x64(True):
        ch = db.chain(ip, 50)
        ts = jnp.arange(51) / 50
        a, s = (np.array(v, np.float64) for v in jax.jit(jax.vmap(lambda t: (ip.alpha(t), ip.sigma(t))))(ts))
        a[0], s[0] = 1.0, 0.0
        rng = np.random.default_rng(1)
        x0, x, eps_hat = (jnp.asarray(rng.standard_normal(3)) for _ in range(3))
        steps = np.array([1, 2, 17, 50])

        @jax.jit
        @jax.vmap
        def kernels(i):
            t = i / 50
            means = [db.reverse_kernel(I.convert(eps_hat, "noise", pred, ip, t, x), ch, ip, i, x, prediction=pred)[0]
                     for pred in I.PREDICTIONS]
            return db.posterior(ch, i, x0, x), jnp.stack(means)

        (mean, var), means = kernels(jnp.asarray(steps))
        cov = a[steps] / a[steps - 1] * s[steps - 1] ** 2  # Cov(x_{i−1}, x_i | x0) per coordinate
        want_mean = a[steps - 1, None] * x0 + (cov / s[steps] ** 2)[:, None] * (x - a[steps, None] * x0)
        np.testing.assert_allclose(mean, want_mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(var, s[steps - 1] ** 2 - cov**2 / s[steps] ** 2, rtol=1e-8, atol=1e-15)
        np.testing.assert_allclose(means, np.repeat(means[:, :1], 4, axis=1), rtol=1e-7, atol=1e-9)


# ----------------------------------------------------------------------------- (c) the decoder


def _phi(z):
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


@pytest.mark.parametrize("level_grid", db.LEVEL_GRIDS)
def test_discretized_decoder_sums_to_one_and_matches_phi(level_grid):
    """Σ over the 17 levels of p(x0|x1) = 1, and each p is a Φ difference (edges ±∞ at the extreme levels),
    accurate in the tails where Φ(b) − Φ(a) underflows if taken naively."""
    L = 17
    first, spacing = (-1.0, 2 / (L - 1)) if level_grid == "endpoints" else (-1 + 1 / L, 2 / L)
    levels = first + spacing * np.arange(L)
    with jax.enable_x64(True):
        logp = jax.jit(jax.vmap(lambda x, m, s: db.discretized_gaussian_log_prob(x, m, s, L, level_grid),
                                (0, None, None)))
        for mean, std in [(0.0, 0.01), (0.3, 0.1), (-0.97, 0.3), (1.4, 1.0), (-0.2, 7.0)]:
            p = np.exp(np.asarray(logp(jnp.asarray(levels)[:, None], jnp.asarray([mean]), jnp.asarray([std]))))
            assert abs(p.sum() - 1.0) < 1e-12
        cases = [(0, 0.1, 0.2), (5, 0.1, 0.2), (L - 1, 0.1, 0.2), (0, 0.9, 0.1), (12, -0.8, 0.1), (L - 1, -0.5, 0.05)]
        for k, mean, std in cases:
            x = levels[k]
            upper = 1.0 if k == L - 1 else _phi((x + spacing / 2 - mean) / std)
            lower = 0.0 if k == 0 else _phi((x - spacing / 2 - mean) / std)
            if k == L - 1:  # 1 − Φ(a) = Φ(−a), exact in the far tail
                want = _phi(-(x - spacing / 2 - mean) / std)
            elif lower > 0.5:  # both in the right tail: Φ(−a) − Φ(−b)
                want = _phi(-(x - spacing / 2 - mean) / std) - _phi(-(x + spacing / 2 - mean) / std)
            else:
                want = upper - lower
            got = float(logp(jnp.asarray([[x]]), jnp.asarray([mean]), jnp.asarray([std]))[0])
            np.testing.assert_allclose(got, math.log(want), rtol=1e-10)
        grads = jax.grad(lambda m: db.discretized_gaussian_log_prob(jnp.asarray(levels), m, 0.05, L, level_grid))(
            jnp.zeros(L))
        assert np.all(np.isfinite(np.asarray(grads)))


# ----------------------------------------------------------------------------- (b), (e) Gaussian data

R = 2000  # rows of every bound_terms call on Gaussian data (one compiled program for all of them)
IW_ROWS, IW_CHAINS = 1000, 64  # every iw_log_likelihood call on Gaussian data


@pytest.fixture(scope="module")
def exact_chain():
    with jax.enable_x64(True):
        return LinearGaussianChain(M_DATA)


@pytest.fixture(scope="module")
def wrong_chain():
    """A wrong data mean (shifted by (0.3, −0.2)) and reverse variances 1.25× too large: L − (−log p_θ) ≈ 0.44."""
    with jax.enable_x64(True):
        return LinearGaussianChain(M_DATA + np.array([0.3, -0.2]), var_scale=1.25)


def test_exact_reverse_kernels_make_the_bound_tight(exact_chain):
    """With the true reverse conditionals and the true marginal of x_T every importance log-weight equals
    log N(x0; m, s²) (zero variance across chains), and the bound's terms have their closed-form expectations,
    which add up to −log N(x0; m, s²)."""
    lg = exact_chain
    with jax.enable_x64(True):
        rows = np.resize(X_POINTS, (IW_ROWS, 2))
        iw = db.iw_log_likelihood(lg.model(), IP, jnp.asarray(rows), jax.random.key(0), num_chains=IW_CHAINS,
                                  **lg.options())
        want = np.array([log_normal_data(x) for x in rows])
        assert np.abs(np.asarray(iw["log_weights"]) - want[:, None]).max() < 1e-9
        np.testing.assert_allclose(iw["log_p"], want, rtol=0, atol=1e-9)
        for x0 in X_POINTS[:2]:
            prior, kls, decoder = lg.expected_terms(x0)
            assert abs(prior + kls.sum() + decoder + log_normal_data(x0)) < 1e-9  # the closed forms themselves
            terms = db.bound_terms(lg.model(), IP, repeat(x0, R), jax.random.key(1), **lg.options())
            np.testing.assert_allclose(terms["prior"], prior, rtol=1e-10)
            kl = np.asarray(terms["kl"])
            z = (kl.mean(0) - kls) / (kl.std(0, ddof=1) / math.sqrt(R))
            assert np.abs(z).max() < 4.5, z  # 19 terms, each within 4.5 s.e.
            nats = np.asarray(terms["nats"])
            se = nats.std(ddof=1) / math.sqrt(R)
            assert abs(nats.mean() + log_normal_data(x0)) < 4 * se, (nats.mean(), se)


@pytest.fixture(scope="module")
def wrong_log_weights(wrong_chain):
    """IW_ROWS × IW_CHAINS iid log-weights at X_POINTS[0] (one x0), and the library's M = 64 estimates."""
    lg = wrong_chain
    with jax.enable_x64(True):
        iw = db.iw_log_likelihood(lg.model(), IP, repeat(X_POINTS[0], IW_ROWS), jax.random.key(9),
                                  num_chains=IW_CHAINS, **lg.options())
    return np.asarray(iw["log_weights"]), np.asarray(iw["log_p"])


def test_bound_estimates_agree_with_the_closed_form_bound(wrong_chain, wrong_log_weights):
    """The exact sum over i (bound_terms), the one-step estimate L_T + T·L_{i−1} (ddpm_loss 'vlb') and −log w of one
    chain (the Monte-Carlo ELBO) all average to the closed-form L, which exceeds the exact −log p_θ(x0)."""
    lg, x0 = wrong_chain, X_POINTS[0]
    with jax.enable_x64(True):
        prior, kls, decoder = lg.expected_terms(x0)
        bound = prior + kls.sum() + decoder
        assert bound > -lg.log_marginal(x0) + 0.3
        opts = lg.options()
        estimates = {
            "sum": db.bound_terms(lg.model(), IP, repeat(x0, R), jax.random.key(2), **opts)["nats"],
            "one_step": db.ddpm_loss(lg.model(), IP, repeat(x0, 10 * R), jax.random.key(3), loss="vlb", **opts)[0],
            "elbo": -wrong_log_weights[0].ravel(),
        }
        for name, values in estimates.items():
            values = np.asarray(values)
            se = values.std(ddof=1) / math.sqrt(values.size)
            assert abs(values.mean() - bound) < 4 * se, (name, values.mean(), bound, se)


def test_importance_weighted_estimate_rises_with_chains(wrong_chain, wrong_log_weights):
    """E log (1/M) Σ w rises with M = 1, 8, 64 (Burda et al. 2016) towards the exact log p_θ(x0) and stays below it
    (the M-chain estimates from disjoint blocks of the iid log-weights; M = 64 is the library's logsumexp)."""
    exact = wrong_chain.log_marginal(X_POINTS[0])
    log_w, log_p = wrong_log_weights
    flat = log_w.ravel()
    est = [flat, jax.nn.logsumexp(flat.reshape(-1, 8), axis=1) - math.log(8), log_p]
    means = np.array([np.mean(e) for e in est])
    ses = np.array([np.std(e, ddof=1) / math.sqrt(e.size) for e in est])
    rises = np.diff(means) / np.sqrt(ses[1:] ** 2 + ses[:-1] ** 2)
    assert np.all(rises > 4), (means, ses, exact)
    assert np.all(means < exact + 3 * ses), (means, exact)
    assert exact - means[-1] < 0.1 * (exact - means[0]), (means, exact)


# ----------------------------------------------------------------------------- (d) Sohl-Dickstein et al.'s K


def test_sohl_dickstein_k_and_its_exact_relation(exact_chain):
    """K's entropy terms in closed form, its bits (K/D + ½ log 2πe)/ln 2, and E[K_exact − K] = ½(ᾱ_T + β_1)(D − ‖x0‖²)
    (any model: its KL terms cancel in K_exact − K)."""
    lg, D = exact_chain, 2
    with jax.enable_x64(True):
        abar = alpha_bars(IP, T)
        beta = ddpm_closed_forms(abar)[0]
        opts = {k: v for k, v in lg.options().items() if k in ("prediction", "variance")}
        for x0 in np.array([[0.3, -0.2], [4.0, -4.0]]):
            x = repeat(x0, R)
            k = db.sohl_dickstein_k(lg.model(), IP, x, jax.random.key(5), **opts)
            kl = db.bound_terms(lg.model(), IP, x, jax.random.key(5), **lg.options())["kl"]  # the same draws
            entropies = 0.5 * D * np.log((1 - abar[T]) / beta[1]) - 0.5 * D * np.log(2 * np.pi * np.e)
            np.testing.assert_allclose(k["K"], -np.sum(kl, axis=1) + entropies, rtol=1e-10)
            np.testing.assert_allclose(k["bits"], (np.asarray(k["K"]) / D + 0.5 * np.log(2 * np.pi * np.e))
                                       / np.log(2), rtol=1e-12, atol=1e-14)
            diff = np.asarray(k["K_exact"] - k["K"])
            want = 0.5 * (abar[T] + beta[1]) * (D - np.sum(x0**2))
            np.testing.assert_allclose(db.k_exact_gap(IP, x)[0], want, rtol=1e-10)
            se = diff.std(ddof=1) / math.sqrt(R)
            assert abs(diff.mean() - want) < 4 * se, (diff.mean(), want, se)


# ----------------------------------------------------------------------------- (f) learned variance ends; losses


def _levels_batch(n, d, seed):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.integers(0, 17, (n, d)) * (2 / 16) - 1.0, jnp.float32)


def test_learned_variance_ends_equal_the_fixed_variances():
    """Σ_θ = exp(v log β_i + (1 − v) log β̃_i): v = 1 is β_i and v = 0 is β̃_i (β̃_2 at i = 1, where β̃_1 = 0), so
    the KLs of every step and the decoder equal those of the fixed variances."""
    with jax.enable_x64(True):
        abar = alpha_bars(IP, T)
        beta, _, bt, _, _ = ddpm_closed_forms(abar)
        ch = db.chain(IP)
        rng = np.random.default_rng(3)
        x0, x, eps_hat = (jnp.asarray(rng.standard_normal(4)) for _ in range(3))
        x0_levels = jnp.asarray(rng.integers(0, 17, 4) / 8.0 - 1.0)

        @jax.jit
        @jax.vmap
        def terms(i):
            post_mean, post_var = db.posterior(ch, i, x0, x)
            out = []
            for variance, v in (("learned", 1.0), ("beta", None), ("learned", 0.0), ("beta_tilde", None)):
                output = (eps_hat, jnp.full_like(x, v)) if variance == "learned" else eps_hat
                mean, var = db.reverse_kernel(output, ch, IP, i, x, variance=variance)
                var_mean = jnp.mean(jnp.broadcast_to(var, x.shape))
                out.append(jnp.stack([var_mean, db.normal_kl(post_mean, post_var, mean, var),
                                      db.discretized_gaussian_log_prob(x0_levels, mean, jnp.sqrt(var))]))
            return jnp.stack(out)

        got = np.asarray(terms(jnp.arange(1, T + 1)))  # (step, variance, [Σ, KL, log p_decoder]); KL is ∞ at i = 1
        np.testing.assert_allclose(got[1:, 0], got[1:, 1], rtol=1e-12)
        np.testing.assert_allclose(got[1:, 2], got[1:, 3], rtol=1e-12)
        np.testing.assert_allclose(got[:, 0, 2], got[:, 1, 2], rtol=1e-12)  # the decoder at every step's (μ, Σ)
        np.testing.assert_allclose(got[:, 2, 2], got[:, 3, 2], rtol=1e-12)
        np.testing.assert_allclose(got[:, 1, 0], beta[1:], rtol=1e-9)
        np.testing.assert_allclose(got[:, 3, 0], np.concatenate([[bt[2]], bt[2:]]), rtol=1e-9)


def test_losses_simple_equals_interpolant_loss_and_hybrid_stops_the_mean():
    """L_simple is the (ddpm, noise, discrete) interpolant loss on the same key (oracle 9.3); in L_hybrid the mean's
    gradient is L_simple's and the variance's is λ times L_vlb's (μ_θ under stop-gradient)."""
    x0 = _levels_batch(32, 3, 1)
    key = jax.random.key(8)

    def apply_fn(params, t, x):
        return params["a"] * jnp.tanh(x) * (1 + t), jnp.full_like(x, params["b"])

    params = {"a": jnp.asarray(0.7), "b": jnp.asarray(0.3)}
    objectives = {loss: db.ddpm_objective(apply_fn, IP, loss=loss, variance="learned", levels=None)
                  for loss in db.LOSSES}  # the Gaussian decoder: a smaller program than the discretised one
    out = jax.jit(lambda p: {k: jax.value_and_grad(lambda q, f=f: f(q, x0, key)[0])(p)
                             for k, f in objectives.items()})(params)
    values, grads = ({k: v[j] for k, v in out.items()} for j in (0, 1))
    noise_only = lambda t, x: apply_fn(params, t, x)[0]  # noqa: E731
    want = jax.jit(lambda x: interpolant_loss(noise_only, IP, x, key, prediction="noise", time_sampling="discrete"))(x0)
    np.testing.assert_allclose(values["simple"], jnp.mean(want), rtol=1e-5)
    np.testing.assert_allclose(grads["hybrid"]["a"], grads["simple"]["a"], rtol=1e-5)
    np.testing.assert_allclose(grads["hybrid"]["b"], 1e-3 * grads["vlb"]["b"], rtol=1e-4)
    assert abs(float(grads["vlb"]["a"])) > 1e-3 and abs(float(grads["vlb"]["b"])) > 1e-3


@pytest.mark.slow
def test_train_ddpm_hybrid_lowers_the_bound():
    """A learned-variance TimeMLP trained with L_hybrid on Gaussian data: the exact-sum bound (Gaussian decoder)
    falls well below the untrained one and stays above the data entropy H = E −log N(x0; m, s²) (Gibbs)."""
    net = TimeMLP(hidden=(64, 64), heads=2, zero_init=True)
    x = jnp.asarray(M_DATA + S_DATA * np.random.default_rng(2).standard_normal((512, 2)), jnp.float32)
    params = net.init(jax.random.key(0), jnp.zeros(()), jnp.zeros(2))
    state, history = db.train_ddpm(net.apply, params, IP, x, key=jax.random.key(1), optimizer=optax.adam(3e-3),
                                   loss="hybrid", variance="learned", levels=None, num_steps=600, batch_size=128,
                                   ema_decay=0.99, progress=False)
    test = x[:256]

    def bound(p):
        return float(np.mean(db.bound_terms(Model(net.apply, p), IP, test, jax.random.key(2), variance="learned",
                                            levels=None)["nats"]))

    entropy = 2 * (0.5 * np.log(2 * np.pi * np.e * S_DATA**2))
    before, after = bound(params), bound(state.ema_params)
    assert after < before - 1.0 and after > entropy - 0.1, (before, after, entropy)
    assert set(history) >= {"simple", "vlb", "bits_per_dim"}


def test_bad_input():
    x0 = _levels_batch(4, 3, 3)
    noise = lambda t, x: 0.1 * x  # noqa: E731
    with pytest.raises(ValueError, match="variance='learned'"):
        db.ddpm_loss(noise, IP, x0, jax.random.key(0), loss="hybrid")
    with pytest.raises(ValueError, match="levels"):
        db.bound_terms(noise, IP, x0 + 0.01, jax.random.key(0))
    with pytest.raises(ValueError, match="num_steps"):
        db.bound_terms(noise, I.vp, x0, jax.random.key(0))
    with pytest.raises(ValueError, match="variance-preserving"):
        db.sohl_dickstein_k(noise, I.ve, x0, jax.random.key(0), num_steps=10)
    with pytest.raises(ValueError, match="tuple of 2"):
        db.bound_terms(noise, IP, x0, jax.random.key(0), variance="learned")
    with pytest.raises(ValueError, match="variance"):
        db.bound_terms(noise, IP, x0, jax.random.key(0), variance="large")
    with pytest.raises(ValueError, match="α"):
        db.chain(I.linear, 10)
