"""Generative adversarial networks (MATH.md §15): GAN, WGAN-GP, f-GAN, RpGAN, spectral normalisation.

A :class:`GAN` holds two per-sample functions, the generator ``G(params_g, z) -> x`` and the
critic ``D(params_d, x) -> scalar`` (raw, before any activation), and its parameters are one
pytree ``{"generator": params_g, "critic": params_d}``.  Each loss below maps
``(gan, params, x, z, key)`` (a batch of real data ``x`` ``(n, *event)`` and noise ``z``
``(n, latent_dim)``) to :class:`GANLosses` ``(critic, generator, aux)``, both minimised:

* **non-saturating** (Goodfellow et al. 2014), ``D = σ(logit)``: the critic minimises
  ``−V = E_p softplus(−logit(x)) + E_z softplus(logit(G z))``, ``V = E_p log D + E_z log(1 − D(G z))``,
  whose minimiser is ``D* = p/(p + q)`` with ``V(D*) = −log 4 + 2 JSD(p‖q)``; the generator
  minimises ``E_z softplus(−logit(G z)) = −E_z log D(G z)``;
* **WGAN-GP** (Gulrajani et al. 2017): critic ``E_z D(G z) − E_p D(x) + λ E(‖∇D(x̂)‖ − 1)²``,
  ``x̂ = u x + (1 − u) G z``, ``u ~ U(0, 1)`` per sample, λ = 10; generator ``−E_z D(G z)``;
* **f-GAN** (Nowozin et al. 2016), any row of :data:`genjax.stats.F_DIVERGENCES`: with
  ``T = g_f(D)`` (the row's ``activation``) the critic maximises the variational bound
  ``E_p T(x) − E_z f*(T(G z)) ≤ D_f(P‖Q)`` (the row's ``conjugate``), tight at ``T* = f′(p/q)``;
  the generator minimises the same bound (the saddle point of the paper's Eq. 6);
* **RpGAN** (Jolicoeur-Martineau 2019; Huang et al. 2024, R3GAN): pairs ``(x_i, G z_i)``, critic
  ``E softplus(D(G z) − D(x)) + (γ₁/2) E_p‖∇D‖² + (γ₂/2) E_z‖∇D(G z)‖²`` (R1 on real, R2 on fake
  data, Mescheder et al. 2018), generator ``E softplus(D(x) − D(G z))``.

:func:`gan_objective` turns a loss into one ``loss_fn(params, batch, key)`` for
:func:`genjax.train.fit` whose gradient with respect to the critic is the critic loss's and
with respect to the generator the generator loss's (``stop_gradient`` on the other group);
:func:`alternating` is the optax transform that applies ``n_critic`` critic updates, then one
generator update, from one state (two optimizers and a counter), so ``fit`` runs the usual
alternating GAN training unchanged.  :func:`spectral_normalize` (Miyato et al. 2018) divides a
critic's kernels by their largest singular value before ``apply``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .. import _checks
from ..stats.divergences import FDivergence, f_divergence
from ..train.loop import fit
from ..train.state import TrainState

__all__ = [
    "GAN", "GANLosses", "AlternatingState",
    "nonsaturating", "wgan_gp", "f_gan", "F_GAN_GENERATOR_LOSSES", "rpgan",
    "gradient_penalty", "gradient_sq_norm_penalty",
    "gan_objective", "alternating", "train_gan",
    "spectral_norm", "spectral_normalize", "spectrally_normalized",
]

GROUPS = ("critic", "generator")


@dataclasses.dataclass(frozen=True)
class GAN:
    """A generator ``generator(params_g, z) -> x`` and a critic ``critic(params_d, x) -> scalar``, per sample.

    ``latent_dim`` is the size of the noise ``z ~ N(0, I)``.  ``params`` are ``{"generator": …, "critic": …}``.
    """

    generator: Callable
    critic: Callable
    latent_dim: int

    def __post_init__(self):
        _checks.check_callable(self.generator, "GAN.generator", "generator(params_g, z) -> x, per sample")
        _checks.check_callable(self.critic, "GAN.critic", "critic(params_d, x) -> scalar, per sample")
        _checks.check_positive_int(self.latent_dim, "GAN.latent_dim")

    def generate(self, params_g, z):
        """``G(z)`` for a batch ``z`` ``(n, latent_dim)``."""
        return jax.vmap(self.generator, (None, 0))(params_g, z)

    def critic_values(self, params_d, x):
        """``D(x)`` for a batch ``x`` ``(n, *event)``, shape ``(n,)``."""
        return jax.vmap(self.critic, (None, 0))(params_d, x)

    def critic_gradients(self, params_d, x):
        """``∇_x D(x)`` per sample, shape of ``x``."""
        return jax.vmap(jax.grad(self.critic, argnums=1), (None, 0))(params_d, x)

    def noise(self, key, n: int):
        """``z ~ N(0, I)``, shape ``(n, latent_dim)``."""
        return jax.random.normal(key, (n, self.latent_dim))

    def sample(self, params, key, n: int):
        """``n`` samples ``G(z)``, ``z ~ N(0, I)``; ``params`` is the GAN pytree (or its EMA)."""
        _checks.check_positive_int(n, "n")
        return self.generate(_group(params, "generator", "GAN.sample"), self.noise(key, n))


class GANLosses(NamedTuple):
    """Critic and generator losses (both minimised) and named diagnostics."""

    critic: jax.Array
    generator: jax.Array
    aux: dict


def _group(params, name: str, where: str):
    if not (isinstance(params, dict) and set(params) == set(GROUPS)):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"{where}: params must be a dict {{'generator': params_g, 'critic': params_d}}, got {got}")
    return params[name]


def _real_and_fake(gan: GAN, params, x, z, where: str):
    """``(x, G(z), D(x), D(G z))`` after checking the batch shapes."""
    params_d, params_g = _group(params, "critic", where), _group(params, "generator", where)
    if jnp.ndim(x) < 2 or jnp.ndim(z) != 2 or z.shape[-1] != gan.latent_dim or z.shape[0] != x.shape[0]:
        raise ValueError(f"{where}: need real data x of shape (n, *event) and noise z of shape (n, "
                         f"{gan.latent_dim}), got x {jnp.shape(x)} and z {jnp.shape(z)}")
    fake = gan.generate(params_g, z)
    if fake.shape != x.shape:
        raise ValueError(f"{where}: the generator returns samples of shape {fake.shape[1:]}, the data have "
                         f"shape {x.shape[1:]}")
    return fake, gan.critic_values(params_d, x), gan.critic_values(params_d, fake)


# ----------------------------------------------------------------------------- penalties


def _batch_mean_sq_norm(g):
    return jnp.mean(jnp.sum(g.reshape(g.shape[0], -1) ** 2, -1))


def gradient_sq_norm_penalty(gan: GAN, params_d, x, gamma: float):
    """R1 / R2 (Mescheder et al. 2018): ``(γ/2) E‖∇_x D(x)‖²`` over the batch ``x`` (real: R1, fake: R2)."""
    return 0.5 * gamma * _batch_mean_sq_norm(gan.critic_gradients(params_d, x))


def gradient_penalty(gan: GAN, params_d, x_real, x_fake, key, weight: float = 10.0):
    """WGAN-GP: ``λ E(‖∇D(x̂)‖ − 1)²`` at ``x̂ = u x + (1 − u) x̃``, ``u ~ U(0, 1)`` per sample."""
    u = jax.random.uniform(key, (x_real.shape[0],) + (1,) * (x_real.ndim - 1), x_real.dtype)
    g = gan.critic_gradients(params_d, u * x_real + (1.0 - u) * x_fake)
    norms = optax.safe_norm(g.reshape(g.shape[0], -1), 1e-12, axis=-1)  # finite gradient at ∇D = 0
    return weight * jnp.mean((norms - 1.0) ** 2)


# ----------------------------------------------------------------------------- losses


def nonsaturating(gan: GAN, params, x, z, key=None) -> GANLosses:
    """Goodfellow et al. (2014) with the non-saturating generator loss; ``aux["value"]`` is ``V(D, G)``."""
    del key
    _, d_real, d_fake = _real_and_fake(gan, params, x, z, "nonsaturating")
    critic = jnp.mean(jax.nn.softplus(-d_real)) + jnp.mean(jax.nn.softplus(d_fake))
    return GANLosses(critic, jnp.mean(jax.nn.softplus(-d_fake)), {"value": -critic})


def wgan_gp(gan: GAN, params, x, z, key, *, weight: float = 10.0) -> GANLosses:
    """Gulrajani et al. (2017); ``aux["wasserstein"]`` is ``E_p D − E_z D(G z)`` and ``aux["penalty"]`` the GP."""
    _checks.check_positive_float(weight, "weight")
    fake, d_real, d_fake = _real_and_fake(gan, params, x, z, "wgan_gp")
    gap = jnp.mean(d_real) - jnp.mean(d_fake)
    penalty = gradient_penalty(gan, params["critic"], x, fake, key, weight)
    return GANLosses(-gap + penalty, -jnp.mean(d_fake), {"wasserstein": gap, "penalty": penalty})


F_GAN_GENERATOR_LOSSES = ("saddle", "alternative")


def f_gan(gan: GAN, params, x, z, key=None, *, divergence: str | FDivergence = "kl",
          generator_loss: str = "saddle") -> GANLosses:
    """Nowozin et al. (2016) for a row of :data:`genjax.stats.F_DIVERGENCES` (a name or an :class:`FDivergence`).

    ``aux["bound"]`` is ``E_p g_f(D) − E_z f*(g_f(D(G z)))``, a lower bound on ``D_f(P‖Q_G)``.  The generator
    minimises that bound (``"saddle"``, their Eq. 6) or maximises ``E_z g_f(D(G z))`` (``"alternative"``, their
    §3.2, the analogue of the non-saturating loss: it avoids the saddle form's ``f*`` on the fakes, e.g. KL's
    ``exp(T − 1)``, whose gradient overflows once the critic is large there).
    """
    del key
    _checks.check_choice(generator_loss, "generator_loss", F_GAN_GENERATOR_LOSSES)
    div = divergence if isinstance(divergence, FDivergence) else f_divergence(divergence)
    _, d_real, d_fake = _real_and_fake(gan, params, x, z, "f_gan")
    t_fake = div.activation(d_fake)
    bound = jnp.mean(div.activation(d_real)) - jnp.mean(div.conjugate_activation(d_fake))
    generator = bound if generator_loss == "saddle" else -jnp.mean(t_fake)
    return GANLosses(-bound, generator, {"bound": bound})


def rpgan(gan: GAN, params, x, z, key=None, *, r1: float = 1.0, r2: float = 1.0) -> GANLosses:
    """Relativistic pairing with R1 (γ₁ = ``r1``) and R2 (γ₂ = ``r2``) penalties (R3GAN; 0 turns one off)."""
    del key
    for name, gamma in (("r1", r1), ("r2", r2)):
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 <= gamma < float("inf"):
            raise ValueError(f"rpgan: {name} must be a finite number >= 0, got {gamma!r}")
    fake, d_real, d_fake = _real_and_fake(gan, params, x, z, "rpgan")
    diff = d_fake - d_real
    penalty = (gradient_sq_norm_penalty(gan, params["critic"], x, r1) if r1 else 0.0) + (
        gradient_sq_norm_penalty(gan, params["critic"], fake, r2) if r2 else 0.0)
    return GANLosses(jnp.mean(jax.nn.softplus(diff)) + penalty, jnp.mean(jax.nn.softplus(-diff)),
                     {"penalty": jnp.asarray(penalty)})


# ----------------------------------------------------------------------------- training


def gan_objective(gan: GAN, losses: Callable = nonsaturating) -> Callable:
    """``loss_fn(params, batch, key) -> (loss, aux)`` for :func:`genjax.train.fit` (``batch``: real data ``(n, *event)``).

    ``loss = L_D(θ_D, sg θ_G) + L_G(sg θ_D, θ_G)``: its gradient in ``params["critic"]`` is the critic
    loss's and in ``params["generator"]`` the generator loss's, on the same noise ``z ~ N(0, I)``
    (drawn from ``key``).  ``losses`` is one of :func:`nonsaturating`, :func:`wgan_gp`, :func:`f_gan`,
    :func:`rpgan` (options bound with ``functools.partial``); ``aux`` holds ``critic_loss``,
    ``generator_loss`` and the loss's diagnostics.  Train with :func:`alternating`.
    """
    if not isinstance(gan, GAN):
        raise ValueError(f"gan_objective: gan must be a GAN, got {type(gan).__name__}")
    _checks.check_callable(losses, "losses", "losses(gan, params, x, z, key) -> GANLosses")
    sg = jax.lax.stop_gradient

    def loss_fn(params, batch, key):
        k_z, k_loss = jax.random.split(key)
        z = gan.noise(k_z, batch.shape[0])
        params_d, params_g = _group(params, "critic", "gan_objective"), params["generator"]
        critic = losses(gan, {"critic": params_d, "generator": sg(params_g)}, batch, z, k_loss)
        generator = losses(gan, {"critic": sg(params_d), "generator": params_g}, batch, z, k_loss).generator
        aux = {"critic_loss": critic.critic, "generator_loss": generator, **critic.aux}
        return critic.critic + generator, aux

    return loss_fn


class AlternatingState(NamedTuple):
    """State of :func:`alternating`: the update counter and each group's optimizer state."""

    count: jax.Array
    critic: Any
    generator: Any


def alternating(critic_optimizer: optax.GradientTransformation, generator_optimizer: optax.GradientTransformation,
                n_critic: int = 1) -> optax.GradientTransformation:
    """Alternating GAN updates as one optax transform on ``{"critic", "generator"}`` gradients.

    Update ``k`` (counting from 0) is a critic update when ``k mod (n_critic + 1) < n_critic`` and a
    generator update otherwise: the chosen group gets its optimizer's update, the other a zero update
    and keeps its optimizer state unchanged (so e.g. Adam's moments and step count advance only on
    that group's own updates, as with two separate optimizers).  ``fit(clip_norm=…)`` would clip both
    groups' gradients together; clip inside each optimizer instead (``optax.chain(clip, adam)``).
    """
    for name, tx in (("critic_optimizer", critic_optimizer), ("generator_optimizer", generator_optimizer)):
        if not (hasattr(tx, "init") and hasattr(tx, "update")):
            raise ValueError(f"alternating: {name} must be an optax.GradientTransformation, got {type(tx).__name__}")
    n_critic = _checks.check_positive_int(n_critic, "n_critic")

    def init(params):
        return AlternatingState(jnp.zeros((), jnp.int32), critic_optimizer.init(_group(params, "critic", "alternating")),
                                generator_optimizer.init(params["generator"]))

    def update(grads, state, params=None):
        g_d, g_g = _group(grads, "critic", "alternating"), grads["generator"]
        p_d, p_g = (None, None) if params is None else (params["critic"], params["generator"])

        def critic_step(_):
            u_d, s_d = critic_optimizer.update(g_d, state.critic, p_d)
            return {"critic": u_d, "generator": jax.tree.map(jnp.zeros_like, g_g)}, s_d, state.generator

        def generator_step(_):
            u_g, s_g = generator_optimizer.update(g_g, state.generator, p_g)
            return {"critic": jax.tree.map(jnp.zeros_like, g_d), "generator": u_g}, state.critic, s_g

        updates, s_d, s_g = jax.lax.cond(state.count % (n_critic + 1) < n_critic, critic_step, generator_step, None)
        return updates, AlternatingState(state.count + 1, s_d, s_g)

    return optax.GradientTransformation(init, update)


def train_gan(gan: GAN, params, data, *, key: jax.Array, losses: Callable = nonsaturating,
              critic_optimizer: optax.GradientTransformation, generator_optimizer: optax.GradientTransformation,
              n_critic: int = 1, **fit_kwargs) -> tuple[TrainState, dict]:
    """``fit(gan_objective(gan, losses), TrainState.create(params, alternating(…), key), data, **fit_kwargs)``.

    ``fit_kwargs`` need ``num_steps`` (critic and generator updates together) and ``batch_size``.
    """
    tx = alternating(critic_optimizer, generator_optimizer, n_critic)
    return fit(gan_objective(gan, losses), TrainState.create(params, tx, key), data, **fit_kwargs)


# ----------------------------------------------------------------------------- spectral normalisation


def _matrix(w):
    """A kernel as a matrix ``(fan_in, out)``: Dense ``(in, out)`` as is, conv ``(*window, in, out)`` flattened."""
    return w.reshape(-1, w.shape[-1])


def spectral_norm(w, num_iterations: int = 20):
    """Largest singular value ``σ(W)`` of a kernel by power iteration (Miyato et al. 2018, Alg. 1).

    ``W`` of shape ``(in, out)`` or ``(*window, in, out)`` is read as the ``(prod(shape[:-1]), out)``
    matrix.  Stateless: every call starts from the same fixed vector and runs ``num_iterations``
    steps ``u = Wv/‖Wv‖``, ``v = Wᵀu/‖Wᵀu‖``, then ``σ = uᵀWv`` with ``u, v`` under ``stop_gradient``,
    whose gradient ``u vᵀ`` is the exact gradient of ``σ`` at convergence.  The estimate never exceeds
    ``σ`` and converges as ``(σ₂/σ₁)^{2k}``; Miyato et al. instead keep ``u`` across training steps and
    run one iteration per step, which amortises the same convergence over the slowly moving ``W``.
    """
    _checks.check_positive_int(num_iterations, "num_iterations")
    if jnp.ndim(w) < 2:
        raise ValueError(f"spectral_norm: w must be a kernel of shape (in, out) or (*window, in, out), got {jnp.shape(w)}")
    m = _matrix(w)
    v = jax.random.normal(jax.random.PRNGKey(0), (m.shape[1],), m.dtype)
    v = v / jnp.linalg.norm(v)

    def power(_, uv):
        u = m @ uv[1]
        u = u / (jnp.linalg.norm(u) + 1e-12)
        v = m.T @ u
        return u, v / (jnp.linalg.norm(v) + 1e-12)

    u, v = jax.lax.fori_loop(0, num_iterations, power, (jnp.zeros(m.shape[0], m.dtype), v))
    u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
    return u @ m @ v


def spectral_normalize(params, num_iterations: int = 20, is_kernel: Callable | None = None):
    """``W ↦ W/σ(W)`` for every kernel in ``params`` (:func:`spectral_norm`); other leaves pass unchanged.

    By default a kernel is a leaf named ``"kernel"`` with at least two axes (flax ``Dense`` and ``Conv``);
    ``is_kernel(path, leaf) -> bool`` overrides the choice (``path`` from ``jax.tree_util``).
    """
    _checks.check_positive_int(num_iterations, "num_iterations")
    if is_kernel is None:
        def is_kernel(path, leaf):
            last = path[-1] if path else None
            return getattr(last, "key", None) == "kernel" and jnp.ndim(leaf) >= 2
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: leaf / spectral_norm(leaf, num_iterations) if is_kernel(path, leaf) else leaf, params)


def spectrally_normalized(critic: Callable, num_iterations: int = 20) -> Callable:
    """``critic(spectral_normalize(params_d), x)``: a spectrally normalised critic for :class:`GAN`."""
    _checks.check_callable(critic, "critic", "critic(params_d, x) -> scalar, per sample")
    _checks.check_positive_int(num_iterations, "num_iterations")
    return lambda params_d, x: critic(spectral_normalize(params_d, num_iterations), x)
