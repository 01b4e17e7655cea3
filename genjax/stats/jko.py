"""Wasserstein gradient flows of ``KL(·‖π)``: JKO steps in closed form and on particles (MATH.md §15).

The JKO scheme (Jordan, Kinderlehrer & Otto 1998) discretises the Fokker–Planck equation
``∂_t ρ = ∇·(ρ ∇V) + Δρ`` of ``dX = −∇V dt + sqrt(2) dW``, ``π ∝ e^{−V}``, in time::

    ρ_{k+1} = argmin_ρ KL(ρ ‖ π) + W2²(ρ, ρ_k) / (2τ).

* Gaussians: for ``π = N(μ, σ²)`` per coordinate the step from ``N(m, s²)`` and the exact
  Ornstein–Uhlenbeck marginal are closed form (:func:`jko_gaussian`, :func:`ou_marginal`);
  :func:`jko_step_gaussian` minimises any energy over diagonal Gaussians numerically.
* Particles (Mokrov et al. 2021; Alvarez-Melis et al. 2022): ``ρ_{k+1} = T#ρ_k`` with ``T``
  minimising ``E_{x∼ρ_k}[V(T(x)) − log|det ∇T(x)| + ‖T(x) − x‖²/(2τ)]`` (the entropy change is the
  log-determinant), trained by :func:`genjax.stats.minimise` on the particles.  Particles carry
  ``log ρ_{k+1}(T(x)) = log ρ_k(x) − log|det ∇T(x)|``, so ``KL(ρ_k ‖ π)`` is known at every step
  (:func:`kl_to_target`; on held-out particles moved by :func:`push_particles`, since the fitted ones
  are optimistic).  Maps: :func:`affine_map` (the step is then the Gaussian one) and :func:`icnn_map`
  (``T = ∇ψ``, ψ input-convex: Amos et al. 2017).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .._checks import check_positive_int
from .gaussian import as_data, gaussian_log_prob, minimise

__all__ = [
    "jko_gaussian",
    "ou_marginal",
    "jko_step_gaussian",
    "Particles",
    "gaussian_particles",
    "TransportMap",
    "affine_map",
    "icnn_map",
    "jko_objective",
    "jko_particle_step",
    "push_particles",
    "kl_to_target",
]


def _check_positive(name: str, value) -> None:
    if not bool(jnp.all(jnp.asarray(value) > 0)):
        raise ValueError(f"{name} must be positive, got {value!r}")


def jko_gaussian(mean, std, tau, *, target_mean=0.0, target_std=1.0):
    """The exact JKO step for ``KL(·‖N(μ, σ²))`` from ``N(m, s²)``, per coordinate (MATH.md §15).

    ``m' = μ + (m − μ) σ²/(σ² + τ)`` and ``s'`` the positive root of ``(σ² + τ) s'² − σ² s s' − τσ² = 0``,
    ``s' = (σ² s + sqrt(σ⁴ s² + 4τσ²(σ² + τ)))/(2(σ² + τ))``; for ``σ = 1``: ``m/(1 + τ)`` and
    ``(s + sqrt(s² + 4τ(1 + τ)))/(2(1 + τ))``.  Returns ``(m', s')``.
    """
    _check_positive("tau", tau)
    _check_positive("std", std)
    _check_positive("target_std", target_std)
    v = jnp.asarray(target_std) ** 2
    new_mean = target_mean + (jnp.asarray(mean) - target_mean) * v / (v + tau)
    new_std = (v * std + jnp.sqrt(v**2 * jnp.asarray(std) ** 2 + 4.0 * tau * v * (v + tau))) / (2.0 * (v + tau))
    return new_mean, new_std


def ou_marginal(mean, std, t, *, target_mean=0.0, target_std=1.0):
    """The Fokker–Planck solution for ``π = N(μ, σ²)`` from ``N(m, s²)``: ``dX = −(X − μ)/σ² dt + sqrt(2) dW``.

    ``X_t ~ N(μ + (m − μ) e^{−t/σ²}, σ² + (s² − σ²) e^{−2t/σ²})`` per coordinate; ``σ = 1``:
    mean ``m e^{−t}``, variance ``1 + (s² − 1) e^{−2t}``.  Returns ``(mean_t, std_t)``.
    """
    if not bool(jnp.all(jnp.asarray(t) >= 0)):
        raise ValueError(f"t must be >= 0, got {t!r}")
    _check_positive("std", std)
    _check_positive("target_std", target_std)
    v = jnp.asarray(target_std) ** 2
    decay = jnp.exp(-jnp.asarray(t) / v)
    return target_mean + (jnp.asarray(mean) - target_mean) * decay, jnp.sqrt(v + (jnp.asarray(std) ** 2 - v) * decay**2)


def _jko_objective(params, mean, std, tau, *, energy):
    new_mean, log_std = params
    new_std = jnp.exp(log_std)
    w2 = jnp.sum((new_mean - mean) ** 2) + jnp.sum((new_std - std) ** 2)
    return energy(new_mean, new_std) + w2 / (2.0 * tau)


def jko_step_gaussian(energy: Callable, mean, std, tau, *, steps: int = 400, learning_rate: float = 0.05):
    """One JKO step restricted to diagonal Gaussians, minimised numerically.

    ``argmin_{m', s'} F(m', s') + W2²(N(m, s²), N(m', s'²)) / (2τ)`` with the exact
    ``W2² = ‖m − m'‖² + ‖s − s'‖²`` of diagonal Gaussians, by Adam with a cosine-decayed step on
    ``(m', log s')`` (``lax.scan``) from ``(m, s)``.  ``energy(mean, std)`` is ``F``; for
    ``KL(·‖N(0, 1))`` the minimiser is :func:`jko_gaussian` (MATH.md §9.21).  Returns ``(m', s')``.
    """
    if not float(tau) > 0:
        raise ValueError(f"tau must be positive, got {tau!r}")
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.broadcast_to(jnp.asarray(std, jnp.float32), mean.shape)
    if not bool(jnp.all(std > 0)):
        raise ValueError("std must be positive")
    objective = functools.partial(_jko_objective, energy=energy)
    optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
    (new_mean, log_std), _ = minimise(objective, (mean, jnp.log(std)), optimizer, steps, mean, std, tau)
    return new_mean, jnp.exp(log_std)


# ----------------------------------------------------------------------------- particles


class Particles(NamedTuple):
    """Samples ``x_i ~ ρ`` with their log-density ``log ρ(x_i)``."""

    x: jax.Array  # (N, d)
    log_density: jax.Array  # (N,)


def gaussian_particles(key, n: int, mean, std) -> Particles:
    """``n`` draws of ``N(mean, diag(std²))`` (``mean`` of shape ``(d,)``) with their exact log-density."""
    n = check_positive_int(n, "n")
    mean = jnp.atleast_1d(jnp.asarray(mean, jnp.float32))
    std = jnp.broadcast_to(jnp.asarray(std, jnp.float32), mean.shape)
    _check_positive("std", std)
    x = mean + std * jax.random.normal(key, (n, mean.shape[0]))
    return Particles(x, jax.vmap(gaussian_log_prob, (0, None, None))(x, mean, std**2))


class TransportMap(NamedTuple):
    """A family of maps: ``init(key, dim) -> params`` (near the identity) and the per-point
    ``apply(params, x) -> (T(x), log|det ∇T(x)|)``."""

    init: Callable[[jax.Array, int], Any]
    apply: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]


def affine_map() -> TransportMap:
    """``T(x) = A x + b``, ``log|det A|``; from the identity.  On Gaussians the JKO step over this
    family is the exact one (the optimal map between Gaussians is affine)."""

    def init(key, dim):
        return {"A": jnp.eye(dim), "b": jnp.zeros(dim)}

    def apply(params, x):
        return params["A"] @ x + params["b"], jnp.linalg.slogdet(params["A"])[1]

    return TransportMap(init, apply)


def _softplus_inverse(y):
    return y + jnp.log(-jnp.expm1(-y))


def icnn_map(hidden: tuple[int, ...] = (32, 32), init_scale: float = 0.01) -> TransportMap:
    """``T = ∇ψ`` with ``ψ(x) = ½ xᵀ L Lᵀ x + bᵀx + φ(x)`` and φ an input-convex network (Amos et al. 2017).

    ``z_1 = softplus(W_0 x + c_0)``, ``z_{l+1} = softplus(W_l⁺ z_l + U_l x + c_l)``, ``φ = w⁺ · z_L``;
    the weights acting on ``z`` are ``softplus`` of free parameters (``≥ 0``), so φ is convex and
    smooth, ψ strictly convex while ``L`` is invertible, and T is the optimal map from ρ to ``T#ρ``
    (Brenier 1991).  ``log det ∇T = log det ∇²ψ`` by ``jax.jacfwd`` of ``∇ψ``.  At init ``L = I``,
    ``b = 0`` and the positive weights are ``init_scale``: T is the identity plus a small convex term.
    """
    if not (isinstance(hidden, tuple) and hidden and all(isinstance(h, int) and h > 0 for h in hidden)):
        raise ValueError(f"icnn_map: hidden must be a non-empty tuple of positive ints, got {hidden!r}")
    _check_positive("icnn_map: init_scale", init_scale)
    raw = float(_softplus_inverse(jnp.float32(init_scale)))

    def init(key, dim):
        keys = jax.random.split(key, len(hidden))
        dense = jax.nn.initializers.lecun_normal()
        params = {"L": jnp.eye(dim), "b": jnp.zeros(dim), "U": [], "c": [], "Wz": []}
        for i, (k, width) in enumerate(zip(keys, hidden)):
            params["U"].append(dense(k, (dim, width)))
            params["c"].append(jnp.zeros(width))
            if i:
                params["Wz"].append(jnp.full((hidden[i - 1], width), raw, jnp.float32))
        params["w"] = jnp.full(hidden[-1], raw, jnp.float32)
        return params

    def psi(params, x):
        z = jax.nn.softplus(x @ params["U"][0] + params["c"][0])
        for wz, u, c in zip(params["Wz"], params["U"][1:], params["c"][1:]):
            z = jax.nn.softplus(z @ jax.nn.softplus(wz) + x @ u + c)
        lx = params["L"].T @ x
        return 0.5 * lx @ lx + params["b"] @ x + jax.nn.softplus(params["w"]) @ z

    def apply(params, x):
        grad = jax.grad(psi, argnums=1)
        hessian, y = jax.jacfwd(lambda v: (grad(params, v),) * 2, has_aux=True)(x)
        return y, jnp.linalg.slogdet(hessian)[1]

    return TransportMap(init, apply)


@functools.lru_cache(maxsize=None)
def jko_objective(transport_map: TransportMap, potential: Callable) -> Callable:
    """The JKO objective of a map: ``objective(params, x, tau)`` on a batch ``x`` of particles of ρ,

    ``mean_i V(T(x_i)) − log|det ∇T(x_i)| + ‖T(x_i) − x_i‖²/(2τ)``, which is
    ``KL(T#ρ ‖ π) + E‖T(x) − x‖²/(2τ)`` less the constant ``H(ρ) − log Z`` (MATH.md §15); the transport term
    is ``W2²(ρ, T#ρ)`` when T is a gradient of a convex function.  One function per
    ``(transport_map, potential)`` pair (cached), so a whole flow compiles once.
    """
    if not isinstance(transport_map, TransportMap):
        raise ValueError(f"transport_map must be a TransportMap (affine_map(), icnn_map()), got {transport_map!r:.80}")
    if not callable(potential):
        raise ValueError(f"potential must be a callable x -> V(x) with π ∝ exp(−V), got {potential!r:.80}")

    def objective(params, x, tau):
        y, log_det = jax.vmap(transport_map.apply, (None, 0))(params, x)
        return jnp.mean(jax.vmap(potential)(y) - log_det + jnp.sum((y - x) ** 2, axis=-1) / (2.0 * tau))

    return objective


@functools.lru_cache(maxsize=None)
def _adam_cosine(learning_rate: float, num_steps: int):
    return optax.adam(optax.cosine_decay_schedule(learning_rate, num_steps))


def jko_particle_step(transport_map: TransportMap, potential: Callable, particles: Particles, tau, *, params=None,
                      key=None, num_steps: int = 300, learning_rate: float = 0.05):
    """One particle JKO step: fit T to :func:`jko_objective` on all particles, then push them.

    ``num_steps`` of Adam with a cosine-decayed rate (:func:`genjax.stats.minimise`, one compiled
    ``lax.scan``; the objective and optimizer are cached, so a flow of many steps compiles once) from
    ``params`` (e.g. the previous step's map) or ``transport_map.init(key, d)``.  Returns
    ``(particles', params, losses)`` with ``x' = T(x)`` and ``log ρ'(x') = log ρ(x) − log|det ∇T(x)|``.
    """
    x = as_data(particles.x, "particles.x")
    if jnp.shape(particles.log_density) != x.shape[:1]:
        raise ValueError(f"particles.log_density must have shape ({x.shape[0]},), "
                         f"got {jnp.shape(particles.log_density)}")
    _check_positive("tau", tau)
    if not float(learning_rate) > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
    if params is None:
        if key is None:
            raise ValueError("pass params (e.g. the previous step's map) or a key to initialise the map")
        params = transport_map.init(key, x.shape[1])
    num_steps = check_positive_int(num_steps, "num_steps")
    objective = jko_objective(transport_map, potential)
    params, losses = minimise(objective, params, _adam_cosine(float(learning_rate), num_steps), num_steps, x,
                              jnp.float32(tau))
    return push_particles(transport_map, params, particles), params, losses


def push_particles(transport_map: TransportMap, params, particles: Particles) -> Particles:
    """``T#ρ`` on particles: ``x' = T(x)``, ``log ρ'(x') = log ρ(x) − log|det ∇T(x)|``.

    Push held-out particles (not used to fit T) to estimate ``KL(T#ρ ‖ π)`` without the optimism of the
    fitted ones: T minimises the empirical objective, which lowers their Monte-Carlo KL.
    """
    y, log_det = _push(transport_map.apply, params, as_data(particles.x, "particles.x"))
    return Particles(y, particles.log_density - log_det)


@functools.partial(jax.jit, static_argnums=0)
def _push(apply, params, x):
    return jax.vmap(apply, (None, 0))(params, x)


def kl_to_target(particles: Particles, log_prob: Callable):
    """``mean_i log ρ(x_i) − log π(x_i)``: the Monte-Carlo ``KL(ρ ‖ π)`` (``log_prob`` normalised;
    with ``−V`` instead it is ``KL − log Z``).  Returns ``(kl, standard error)``."""
    ratio = particles.log_density - jax.vmap(log_prob)(particles.x)
    return jnp.mean(ratio), jnp.std(ratio) / jnp.sqrt(ratio.shape[0])
