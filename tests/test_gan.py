"""GANs (genjax.models.gan) against closed forms and quadrature (docs/MATH.md §15, oracle 9.19).

1-D oracles: data p = N(1, 1), a fixed generator q = N(−0.5, 1.2²) (σ_q² < 2σ_p² and σ_p² < 2σ_q², so every
f-divergence of the table, Pearson and Neyman χ² included, is finite).  The quadratic critic
``a x² + b x + c`` contains every optimum used here: ``log p/q`` is quadratic.
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax.models import gan as G
from genjax.nets.vae import MLP
from genjax.stats.divergences import F_DIVERGENCES

MP, SP, MQ, SQ = 1.0, 1.0, -0.5, 1.2
N = 16384  # samples per side for the trained critics


def log_normal(x, m, s):
    return -0.5 * ((x - m) / s) ** 2 - jnp.log(s) - 0.5 * jnp.log(2 * jnp.pi)


def log_ratio(x):
    """``log p(x)/q(x)``, the exact optimal logit."""
    return log_normal(x, MP, SP) - log_normal(x, MQ, SQ)


def quad_critic(params_d, x):
    return params_d["a"] * jnp.sum(x**2) + jnp.dot(params_d["b"], x) + params_d["c"]


GAN1 = G.GAN(lambda pg, z: pg["m"] + pg["s"] * z, quad_critic, 1)
GEN1 = {"m": jnp.array([MQ]), "s": jnp.array([SQ])}


@pytest.fixture(scope="module")
def samples():
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    return MP + SP * jax.random.normal(k1, (N, 1)), jax.random.normal(k2, (N, 1))


def train_critic(losses, x, z, steps=2000, lr=0.05):
    """Full-batch Adam on the critic loss only (the generator fixed at q)."""
    params = {"a": jnp.zeros(()), "b": jnp.zeros(1), "c": jnp.zeros(())}
    tx = optax.adam(lr)
    grad = jax.grad(lambda pd: losses(GAN1, {"critic": pd, "generator": GEN1}, x, z, jax.random.PRNGKey(1)).critic)

    def body(carry, _):
        pd, state = carry
        updates, state = tx.update(grad(pd), state, pd)
        return (optax.apply_updates(pd, updates), state), None

    return jax.lax.scan(body, (params, tx.init(params)), None, length=steps)[0][0]


def quadrature_grid():
    x = np.linspace(-10.0, 10.0, 40001)  # trapezoid on [−10, 10]: tails below 1e-8, grid error ~1e-10
    return x, np.exp(np.asarray(log_normal(x, MP, SP))), np.exp(np.asarray(log_normal(x, MQ, SQ)))


def trapz(y, x):
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)))


def jsd_quadrature():
    x, p, q = quadrature_grid()
    m = 0.5 * (p + q)
    return 0.5 * trapz(p * np.log(p / m), x) + 0.5 * trapz(q * np.log(q / m), x)


# ----------------------------------------------------------------------------- 9.19: D* and V(D*)


def test_nonsaturating_critic_reaches_optimal_discriminator_and_value(samples):
    x, z = samples
    pd = train_critic(G.nonsaturating, x, z)
    grid = jnp.linspace(-2.5, 3.5, 61)
    d_hat = jax.nn.sigmoid(jax.vmap(quad_critic, (None, 0))(pd, grid[:, None]))
    d_star = jax.nn.sigmoid(log_ratio(grid))  # p/(p + q)
    # Logistic-regression parameters have MC error ~1/sqrt(N) ≈ 0.008, D moves by at most 1/4 of the logit
    # error: observed max error 0.007; a sign slip (q/(p+q)) errs by > 0.5.
    np.testing.assert_allclose(d_hat, d_star, atol=0.02)
    # V of the trained D by quadrature is within second order of V(D*) = −log 4 + 2 JSD.
    xs, p, q = quadrature_grid()
    logit = np.asarray(jax.vmap(quad_critic, (None, 0))(pd, jnp.asarray(xs[:, None], jnp.float32)), np.float64)
    v_hat = trapz(p * -np.logaddexp(0, -logit), xs) + trapz(q * -np.logaddexp(0, logit), xs)
    v_star = -math.log(4.0) + 2.0 * jsd_quadrature()
    assert v_hat <= v_star + 1e-5
    assert v_star - v_hat < 2e-3


def test_nonsaturating_value_at_exact_discriminator():
    """``aux["value"]`` at ``logit = log p/q`` estimates ``−log 4 + 2 JSD`` (MC error of 2·10⁵ samples)."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(3))
    n = 200_000
    x, z = MP + SP * jax.random.normal(k1, (n, 1)), jax.random.normal(k2, (n, 1))
    gan = G.GAN(GAN1.generator, lambda pd, x: log_ratio(x[0]), 1)
    out = G.nonsaturating(gan, {"critic": {}, "generator": GEN1}, x, z)
    v_star = -math.log(4.0) + 2.0 * jsd_quadrature()
    # per-sample log D terms have sd < 1: standard error < 2·(1/sqrt(2e5)) ≈ 0.0045
    assert abs(float(out.aux["value"]) - v_star) < 0.01
    np.testing.assert_allclose(out.critic, -out.aux["value"], rtol=1e-6)


# ----------------------------------------------------------------------------- f-GAN


@pytest.mark.parametrize("name, optimum", [
    ("kl", lambda x: 1.0 + log_ratio(x)),                              # T* = 1 + log(p/q)
    ("hellinger", lambda x: 1.0 - jnp.exp(-0.5 * log_ratio(x))),       # T* = 1 − sqrt(q/p)
])
def test_f_gan_critic_approaches_f_prime_and_bound_is_tight(samples, name, optimum):
    x, z = samples
    div = F_DIVERGENCES[name]
    pd = train_critic(functools.partial(G.f_gan, divergence=name), x, z)
    grid = jnp.linspace(-2.5, 3.5, 61)
    t_hat = div.activation(jax.vmap(quad_critic, (None, 0))(pd, grid[:, None]))
    np.testing.assert_allclose(optimum(grid), div.f_prime(jnp.exp(log_ratio(grid))), rtol=1e-5, atol=1e-5)
    # parameter MC error ~0.01 (as for D*), times |x|² ≤ 12 on the grid: observed max error 0.07 (KL)
    np.testing.assert_allclose(t_hat, optimum(grid), atol=0.15)
    # the bound at the trained critic, on fresh samples, equals D_f by quadrature within its MC error
    k1, k2 = jax.random.split(jax.random.PRNGKey(5))
    n = 100_000
    xf, zf = MP + SP * jax.random.normal(k1, (n, 1)), jax.random.normal(k2, (n, 1))
    bound = float(G.f_gan(GAN1, {"critic": pd, "generator": GEN1}, xf, zf, divergence=name).aux["bound"])
    xs, p, q = quadrature_grid()
    d_f = trapz(q * np.asarray(div.f(p / q)), xs)
    assert abs(bound - d_f) < 0.02  # sd of T and f*(T) below 1.5 here: MC s.e. < 0.007, plus O(Δθ²)


@pytest.mark.parametrize("name", sorted(F_DIVERGENCES))
def test_f_gan_bound_is_tight_at_exact_critic(name):
    """``∫p T* − ∫q f*(T*) = ∫q f(p/q)`` at ``T* = f′(p/q)``, by quadrature in float64, every divergence."""
    div = F_DIVERGENCES[name]
    xs, p, q = quadrature_grid()
    with jax.enable_x64(True):
        t_star = div.f_prime(jnp.asarray(p / q))
        bound = trapz(p * np.asarray(t_star), xs) - trapz(q * np.asarray(div.conjugate(t_star)), xs)
        d_f = trapz(q * np.asarray(div.f(jnp.asarray(p / q))), xs)
        below = trapz(p * np.asarray(t_star - 0.1), xs) - trapz(q * np.asarray(div.conjugate(t_star - 0.1)), xs)
    assert d_f > 0.01
    np.testing.assert_allclose(bound, d_f, rtol=1e-6)
    assert below < d_f  # any other critic is below (a shift of T* by 0.1 lowers the bound)


def test_f_gan_generator_losses():
    """Saddle: the generator's loss is the bound; alternative: ``−E g_f(D(G z))`` (closed form on given values)."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(6))
    x, z = jax.random.normal(k1, (64, 1)), jax.random.normal(k2, (64, 1))
    pd = {"a": jnp.asarray(-0.1), "b": jnp.asarray([0.5]), "c": jnp.asarray(0.2)}
    params = {"critic": pd, "generator": GEN1}
    v = lambda y: -0.1 * y[:, 0] ** 2 + 0.5 * y[:, 0] + 0.2  # noqa: E731
    fake = MQ + SQ * z
    div = F_DIVERGENCES["hellinger"]  # g_f(v) = 1 − e^v, f*(g_f(v)) = e^{−v} − 1
    bound = np.mean(1 - np.exp(v(x))) - np.mean(np.exp(-v(fake)) - 1)
    saddle = G.f_gan(GAN1, params, x, z, divergence=div)
    np.testing.assert_allclose([saddle.critic, saddle.generator], [-bound, bound], rtol=1e-5)
    alternative = G.f_gan(GAN1, params, x, z, divergence="hellinger", generator_loss="alternative")
    np.testing.assert_allclose(alternative.generator, -np.mean(1 - np.exp(v(fake))), rtol=1e-5)


# ----------------------------------------------------------------------------- WGAN-GP


def linear_critic(pd, x):
    return jnp.dot(pd["w"], x) + pd["c"]


GAN_LIN = G.GAN(lambda pg, z: pg["m"] + z, linear_critic, 2)


def test_gradient_penalty_of_linear_critic_is_closed_form():
    x, fake = jax.random.normal(jax.random.PRNGKey(0), (2, 64, 2))
    penalty = jax.jit(functools.partial(G.gradient_penalty, GAN_LIN))
    for w, expected in (([0.6, 0.8], 0.0), ([3.0, 4.0], 10.0 * 16.0), ([0.3, 0.4], 10.0 * 0.25)):
        pd = {"w": jnp.asarray(w), "c": jnp.zeros(())}  # ∇D = w everywhere: λ(‖w‖ − 1)²
        gp = penalty(pd, x, fake, jax.random.PRNGKey(1))
        np.testing.assert_allclose(gp, expected, atol=1e-5, rtol=1e-6)


def test_wgan_gp_linear_critic_recovers_mean_difference():
    """Linear critic: ``−w·(x̄ − ȳ) + λ(‖w‖ − 1)²`` is minimised at ``w = (1 + d/2λ) Δ/‖Δ‖`` (``d = ‖Δ‖``)."""
    mu_p, mu_q, n = jnp.array([1.0, 2.0]), jnp.array([-1.0, 0.5]), 8192
    k1, k2 = jax.random.split(jax.random.PRNGKey(2))
    x, z = mu_p + jax.random.normal(k1, (n, 2)), jax.random.normal(k2, (n, 2))
    params = {"critic": {"w": jnp.zeros(2), "c": jnp.zeros(())}, "generator": {"m": mu_q}}
    tx = optax.adam(0.05)

    def body(carry, key):
        pd, state = carry
        g = jax.grad(lambda pd: G.wgan_gp(GAN_LIN, {**params, "critic": pd}, x, z, key).critic)(pd)
        updates, state = tx.update(g, state, pd)
        return (optax.apply_updates(pd, updates), state), None

    pd = jax.lax.scan(body, (params["critic"], tx.init(params["critic"])), jax.random.split(k1, 2000))[0][0]
    out = G.wgan_gp(GAN_LIN, {**params, "critic": pd}, x, z, k2)
    delta_hat = jnp.mean(x, 0) - jnp.mean(z + mu_q, 0)   # the sample optimum is exact in the sample means
    d_hat = jnp.linalg.norm(delta_hat)
    np.testing.assert_allclose(pd["w"], (1 + d_hat / 20.0) * delta_hat / d_hat, atol=2e-3)
    # against the population: Δ = μ_p − μ_q, the sample means have s.e. sqrt(2/n) = 0.016 per coordinate
    delta = mu_p - mu_q
    w_norm = jnp.linalg.norm(pd["w"])
    np.testing.assert_allclose(pd["w"] / w_norm, delta / jnp.linalg.norm(delta), atol=0.02)
    np.testing.assert_allclose(out.aux["wasserstein"] / w_norm, jnp.linalg.norm(delta), atol=0.05)  # W1 = ‖Δ‖


# ----------------------------------------------------------------------------- R1 / R2, RpGAN


def test_r1_r2_of_quadratic_critic_are_closed_form():
    """``D = a‖x‖² + b·x + c``: ``∇D = 2a x + b``; RpGAN's critic loss adds ``(γ₁/2)E‖∇D(x)‖² + (γ₂/2)E‖∇D(G z)‖²``."""
    a, b, m = 0.7, np.array([0.5, -1.0]), np.array([2.0, 1.0])
    pd = {"a": jnp.asarray(a), "b": jnp.asarray(b), "c": jnp.asarray(0.3)}
    gan = G.GAN(lambda pg, z: pg["m"] + z, quad_critic, 2)
    k1, k2 = jax.random.split(jax.random.PRNGKey(4))
    x, z = np.asarray(jax.random.normal(k1, (4000, 2))), np.asarray(jax.random.normal(k2, (4000, 2)))
    fake = m + z
    r1 = 0.5 * 2.0 * np.mean(np.sum((2 * a * x + b) ** 2, -1))
    np.testing.assert_allclose(G.gradient_sq_norm_penalty(gan, pd, jnp.asarray(x), 2.0), r1, rtol=1e-5)
    # population form for x ~ N(0, I): E‖2ax + b‖² = ‖b‖² + 4a²d, MC error ≈ 1.5%
    np.testing.assert_allclose(r1, np.sum(b**2) + 4 * a**2 * 2, rtol=0.05)
    params = {"critic": pd, "generator": {"m": jnp.asarray(m)}}
    out = G.rpgan(gan, params, jnp.asarray(x), jnp.asarray(z), r1=2.0, r2=0.5)
    d = lambda y: a * np.sum(y**2, -1) + y @ b + 0.3  # noqa: E731
    expected = (np.mean(np.logaddexp(0.0, d(fake) - d(x))) + r1
                + 0.25 * np.mean(np.sum((2 * a * fake + b) ** 2, -1)))
    np.testing.assert_allclose(out.critic, expected, rtol=1e-5)
    np.testing.assert_allclose(out.generator, np.mean(np.logaddexp(0.0, d(x) - d(fake))), rtol=1e-5)


# ----------------------------------------------------------------------------- spectral normalisation


@pytest.mark.parametrize("shape", [(16, 8), (3, 3, 4, 8)])
def test_spectral_normalisation_has_unit_spectral_norm(shape):
    w = jax.random.normal(jax.random.PRNGKey(0), shape)
    matrix = np.asarray(w).reshape(-1, shape[-1])  # conv kernels as (kh·kw·in, out)
    sigma = np.linalg.svd(matrix, compute_uv=False)
    sn = jax.jit(jax.value_and_grad(G.spectral_norm), static_argnums=1)
    value, grad = sn(w, 100)
    np.testing.assert_allclose(value, sigma[0], rtol=1e-5)
    normalised = np.asarray(w / value).reshape(matrix.shape)
    np.testing.assert_allclose(np.linalg.svd(normalised, compute_uv=False)[0], 1.0, rtol=1e-5)
    # the gradient of σ is u₁v₁ᵀ (SVD)
    u, _, vt = np.linalg.svd(matrix)
    np.testing.assert_allclose(np.asarray(grad).reshape(matrix.shape), np.outer(u[:, 0], vt[0]), atol=1e-4)
    # one iteration: never above σ (a Rayleigh quotient); the error shrinks as (σ₂/σ₁)^(2k)
    assert sn(w, 1)[0] <= sigma[0] * (1 + 1e-6)


def test_spectral_normalize_flax_params():
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.Conv(4, (3, 3))(x).reshape(-1)
            return nn.Dense(1)(h)[0]

    params = Net().init(jax.random.PRNGKey(0), jnp.zeros((5, 5, 2)))
    normalised = jax.jit(G.spectral_normalize, static_argnums=1)(params, 100)
    for layer in ("Conv_0", "Dense_0"):
        kernel = np.asarray(normalised["params"][layer]["kernel"])
        assert np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0] == pytest.approx(1.0, rel=1e-5)
        np.testing.assert_array_equal(normalised["params"][layer]["bias"], params["params"][layer]["bias"])
    critic = jax.jit(G.spectrally_normalized(lambda p, x: Net().apply(p, x), 100))
    np.testing.assert_allclose(critic(params, jnp.ones((5, 5, 2))), Net().apply(normalised, jnp.ones((5, 5, 2))),
                               rtol=1e-6)


# ----------------------------------------------------------------------------- alternating updates through fit


def sample_data(key, n):
    return MP + SP * jax.random.normal(key, (n, 1))


def test_alternating_fit_equals_hand_written_loop():
    """``fit`` + :func:`alternating` = a loop with two separate Adams: n_critic critic steps, then one generator step."""
    n_critic, steps, batch = 2, 9, 32
    params = {"critic": {"a": jnp.array(0.1), "b": jnp.array([0.2]), "c": jnp.array(0.0)},
              "generator": {"m": jnp.array([0.3]), "s": jnp.array([0.8])}}
    opt_d, opt_g = optax.adam(0.05), optax.adam(0.02, b1=0.5)
    key = jax.random.PRNGKey(7)
    state, hist = G.train_gan(GAN1, params, sample_data, key=key, critic_optimizer=opt_d, generator_optimizer=opt_g,
                              n_critic=n_critic, num_steps=steps, batch_size=batch, steps_per_call=steps,
                              progress=False)
    # by hand, with fit's key schedule
    losses = jax.jit(lambda pd, pg, x, z: G.nonsaturating(GAN1, {"critic": pd, "generator": pg}, x, z))
    grad_d = jax.jit(jax.grad(lambda pd, pg, x, z: losses(pd, pg, x, z).critic))
    grad_g = jax.jit(jax.grad(lambda pg, pd, x, z: losses(pd, pg, x, z).generator))
    pd, pg, sd, sg = params["critic"], params["generator"], opt_d.init(params["critic"]), opt_g.init(params["generator"])
    for k in range(steps):
        key, k_data, k_loss = jax.random.split(key, 3)
        x = sample_data(k_data, batch)
        k_z, k_rest = jax.random.split(k_loss)
        z = GAN1.noise(k_z, batch)
        if k % (n_critic + 1) < n_critic:
            u, sd = opt_d.update(grad_d(pd, pg, x, z), sd, pd)
            pd = optax.apply_updates(pd, u)
        else:
            u, sg = opt_g.update(grad_g(pg, pd, x, z), sg, pg)
            pg = optax.apply_updates(pg, u)
    for got, want in ((state.params["critic"], pd), (state.params["generator"], pg),
                      (state.opt_state.critic, sd), (state.opt_state.generator, sg)):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, want)
    assert int(state.opt_state.count) == steps
    assert {"critic_loss", "generator_loss", "value"} <= set(hist)


def test_alternating_leaves_the_other_group_untouched():
    tx = G.alternating(optax.adam(0.1), optax.adam(0.1), n_critic=1)
    params = {"critic": jnp.ones(2), "generator": jnp.ones(3)}
    grads = {"critic": jnp.full(2, 0.5), "generator": jnp.full(3, -0.5)}
    state = tx.init(params)
    updates, new = tx.update(grads, state, params)  # count 0: critic
    np.testing.assert_array_equal(updates["generator"], 0.0)
    assert np.all(np.asarray(updates["critic"]) < 0)
    jax.tree.map(np.testing.assert_array_equal, new.generator, state.generator)
    updates, newer = tx.update(grads, new, params)  # count 1: generator
    np.testing.assert_array_equal(updates["critic"], 0.0)
    assert np.all(np.asarray(updates["generator"]) > 0)
    jax.tree.map(np.testing.assert_array_equal, newer.critic, new.critic)


def test_mlp_gan_trains_through_fit():
    """A small MLP RpGAN (R1 = R2 = 0.1) on N(1, 1): the generated mean and std approach the data's."""
    gen, crit = MLP((1,), (32, 32)), MLP((), (32, 32), nn.leaky_relu)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    params = {"generator": gen.init(k1, jnp.zeros(1)), "critic": crit.init(k2, jnp.zeros(1))}
    gan = G.GAN(gen.apply, crit.apply, 1)
    x0 = np.asarray(gan.sample(params, jax.random.PRNGKey(1), 4000))
    assert abs(x0.mean() - MP) > 1.0  # the untrained generator
    state, hist = G.train_gan(gan, params, sample_data, key=k3, losses=functools.partial(G.rpgan, r1=0.1, r2=0.1),
                              critic_optimizer=optax.adam(2e-3, b1=0.5), generator_optimizer=optax.adam(2e-3, b1=0.5),
                              num_steps=1500, batch_size=256, steps_per_call=1500, progress=False)
    x = np.asarray(gan.sample(state.params, jax.random.PRNGKey(1), 4000))
    # 750 generator steps, not converged (observed mean 0.92, std 0.97); MC error of 4000 samples ≈ 0.02
    assert abs(x.mean() - MP) < 0.15 and abs(x.std() - SP) < 0.15
    assert np.isfinite(hist["loss"]).all()


# ----------------------------------------------------------------------------- bad input


def test_bad_input():
    with pytest.raises(ValueError, match="latent_dim"):
        G.GAN(GAN1.generator, quad_critic, 0)
    with pytest.raises(ValueError, match="generator"):
        G.nonsaturating(GAN1, {"critic": {}}, jnp.zeros((4, 1)), jnp.zeros((4, 1)))
    with pytest.raises(ValueError, match="noise z of shape"):
        G.nonsaturating(GAN1, {"critic": {}, "generator": GEN1}, jnp.zeros((4, 1)), jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="not known"):
        G.f_gan(GAN1, {"critic": {}, "generator": GEN1}, jnp.zeros((4, 1)), jnp.zeros((4, 1)), divergence="wasserstein")
    with pytest.raises(ValueError, match="generator_loss"):
        G.f_gan(GAN1, {"critic": {}, "generator": GEN1}, jnp.zeros((4, 1)), jnp.zeros((4, 1)), generator_loss="ns")
    with pytest.raises(ValueError, match="n_critic"):
        G.alternating(optax.adam(1e-3), optax.adam(1e-3), n_critic=0)
    with pytest.raises(ValueError, match="generator_optimizer"):
        G.alternating(optax.adam(1e-3), "adam")
    with pytest.raises(ValueError, match="r2"):
        G.rpgan(GAN1, {"critic": {}, "generator": GEN1}, jnp.zeros((4, 1)), jnp.zeros((4, 1)), r2=-1.0)
    with pytest.raises(ValueError, match="kernel"):
        G.spectral_norm(jnp.ones(3))
