"""Controlled dynamical systems for world models: linear-Gaussian state space with closed forms (MATH.md §15), sprites.

    s_{t+1} = A s_t + B a_t + w_t,   w_t ~ N(0, σ_w² I),   a_t ~ N(0, σ_a² I)  (i.i.d., independent of s_t)
    x_t     = C s_t + v_t,           v_t ~ N(0, σ_v² I)

with a low-dimensional state ``s`` (n), actions ``a`` (m) and high-dimensional observations ``x`` (p ≫ n).
With ``ρ(A) < 1`` the state has the stationary law ``N(0, Σ)``, ``Σ = A Σ Aᵀ + σ_a² B Bᵀ + σ_w² I`` (a discrete
Lyapunov equation, :meth:`LinearGaussianSystem.stationary_covariance`); trajectories start there, so every
``(x_t, a_t, x_{t+1})`` has one Gaussian law and linear regressions on it have population coefficients in closed
form (:meth:`LinearGaussianSystem.optimal_linear_predictor`): the oracle of a JEPA's linear predictor.

:class:`SpriteSystem` is a nonlinear counterpart: a square sprite on a small image moved by discrete actions.
Samplers are pure functions of a PRNG key (``fit``-ready: ``data(key, batch_size)``).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import linalg

from .. import _checks

__all__ = ["LinearGaussianSystem", "LinearPredictor", "SpriteSystem", "linear_gaussian_system", "transitions"]


def transitions(trajectories: dict) -> dict:
    """The first step of each trajectory as a transition ``{"x", "a", "x_next", "s", "s_next"}``."""
    return {"x": trajectories["x"][:, 0], "a": trajectories["a"][:, 0], "x_next": trajectories["x"][:, 1],
            "s": trajectories["s"][:, 0], "s_next": trajectories["s"][:, 1]}


class LinearPredictor(NamedTuple):
    """The population least-squares predictor ``z' ≈ A z + B a`` of encoded transitions and its residual covariance
    (the minimum of ``E‖z' − A z − B a‖²`` is ``trace(residual)``)."""

    A: np.ndarray
    B: np.ndarray
    residual: np.ndarray


@dataclasses.dataclass(frozen=True)
class LinearGaussianSystem:
    """``s' = A s + B a + w``, ``x = C s + v`` (module doc): ``A`` ``(n, n)`` with spectral radius < 1, ``B``
    ``(n, m)``, ``C`` ``(p, n)``, and the standard deviations of the process noise ``w``, the observation noise
    ``v`` and the i.i.d. actions ``a``."""

    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    process_std: float = 0.3
    obs_std: float = 0.1
    action_std: float = 1.0

    def __post_init__(self):
        A, B, C = (np.asarray(getattr(self, k), np.float64) for k in "ABC")
        if A.ndim != 2 or A.shape[0] != A.shape[1] or B.ndim != 2 or B.shape[0] != A.shape[0] or C.ndim != 2 \
                or C.shape[1] != A.shape[0]:
            raise ValueError(f"LinearGaussianSystem: A must be (n, n), B (n, m) and C (p, n); got shapes {A.shape}, "
                             f"{B.shape}, {C.shape}")
        radius = np.max(np.abs(np.linalg.eigvals(A)))
        if not radius < 1.0:
            raise ValueError(f"LinearGaussianSystem: A must be stable (spectral radius < 1), got {radius:.4g}")
        for name in ("process_std", "obs_std"):
            if not (np.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"LinearGaussianSystem.{name} must be a finite float >= 0, got "
                                 f"{getattr(self, name)!r}")
        _checks.check_positive_float(self.action_std, "LinearGaussianSystem.action_std")
        for k, v in zip("ABC", (A, B, C)):
            object.__setattr__(self, k, v)

    @property
    def state_dim(self) -> int:
        return self.A.shape[0]

    @property
    def action_dim(self) -> int:
        return self.B.shape[1]

    @property
    def obs_dim(self) -> int:
        return self.C.shape[0]

    def stationary_covariance(self) -> np.ndarray:
        """``Σ`` solving ``Σ = A Σ Aᵀ + σ_a² B Bᵀ + σ_w² I`` (``scipy.linalg.solve_discrete_lyapunov``), float64."""
        q = self.action_std**2 * self.B @ self.B.T + self.process_std**2 * np.eye(self.state_dim)
        sigma = linalg.solve_discrete_lyapunov(self.A, q)
        return 0.5 * (sigma + sigma.T)

    def sample_trajectories(self, key, n: int, horizon: int) -> dict:
        """``n`` stationary trajectories of ``horizon`` actions: ``{"s": (n, H+1, n_s), "x": (n, H+1, p),
        "a": (n, H, m)}`` float32, ``s_0 ~ N(0, Σ)``."""
        n = _checks.check_positive_int(n, "n")
        horizon = _checks.check_positive_int(horizon, "horizon")
        k0, ka, kw, kv = jax.random.split(key, 4)
        chol = jnp.asarray(np.linalg.cholesky(self.stationary_covariance()), jnp.float32)
        A, B, C = (jnp.asarray(m, jnp.float32) for m in (self.A, self.B, self.C))
        s0 = jax.random.normal(k0, (n, self.state_dim)) @ chol.T
        a = self.action_std * jax.random.normal(ka, (horizon, n, self.action_dim))
        w = self.process_std * jax.random.normal(kw, (horizon, n, self.state_dim))

        def step(s, aw):
            s = s @ A.T + aw[0] @ B.T + aw[1]
            return s, s

        _, s_rest = jax.lax.scan(step, s0, (a, w))
        s = jnp.concatenate([s0[:, None], jnp.moveaxis(s_rest, 0, 1)], axis=1)
        x = s @ C.T + self.obs_std * jax.random.normal(kv, (n, horizon + 1, self.obs_dim))
        return {"s": s, "x": x, "a": jnp.moveaxis(a, 0, 1)}

    def sample_transitions(self, key, n: int) -> dict:
        """``n`` stationary transitions ``{"x", "a", "x_next", "s", "s_next"}`` (one-step trajectories): a sampler
        ``data(key, batch_size)`` for :func:`genjax.train.fit`."""
        return transitions(self.sample_trajectories(key, n, 1))

    def optimal_linear_predictor(self, encoder) -> LinearPredictor:
        """The population regression of ``z' = E x_{t+1}`` on ``(z, a) = (E x_t, a_t)`` for a fixed linear encoder
        ``E`` ``(k, p)``:

            [A_eff B_eff] = Σ_{z'(z,a)} Σ_{(z,a)}⁻¹,   Σ_{zz} = E (C Σ Cᵀ + σ_v² I) Eᵀ,  Σ_{aa} = σ_a² I,  Σ_{za} = 0,
            Σ_{z'z} = E C A Σ Cᵀ Eᵀ,   Σ_{z'a} = σ_a² E C B,

        so ``A_eff = E C A Σ Cᵀ Eᵀ Σ_{zz}⁻¹`` and ``B_eff = E C B``; residual ``Σ_{z'z'} − A_eff Σ_{zz} A_effᵀ −
        σ_a² B_eff B_effᵀ``.  Noise-free (σ_v = 0) with ``E C`` invertible: ``A_eff = (EC) A (EC)⁻¹``.  Float64.
        """
        E = np.asarray(encoder, np.float64)
        if E.ndim != 2 or E.shape[1] != self.obs_dim:
            raise ValueError(f"optimal_linear_predictor: encoder must be a matrix (k, {self.obs_dim}), got shape "
                             f"{E.shape}")
        sigma = self.stationary_covariance()
        EC = E @ self.C
        zz = EC @ sigma @ EC.T + self.obs_std**2 * E @ E.T
        if np.linalg.matrix_rank(zz) < zz.shape[0]:
            raise ValueError("optimal_linear_predictor: the encoded covariance E Cov(x) Eᵀ is singular (more embedding "
                             "dimensions than the state carries with noise-free observations); use fewer rows in E")
        A_eff = np.linalg.solve(zz, (EC @ self.A @ sigma @ EC.T).T).T
        B_eff = EC @ self.B
        residual = zz - A_eff @ zz @ A_eff.T - self.action_std**2 * B_eff @ B_eff.T
        return LinearPredictor(A_eff, B_eff, 0.5 * (residual + residual.T))


def linear_gaussian_system(seed: int = 0, *, state_dim: int = 4, action_dim: int = 2, obs_dim: int = 32,
                           spectral_radius: float = 0.9, process_std: float = 0.3, obs_std: float = 0.1,
                           action_std: float = 1.0) -> LinearGaussianSystem:
    """A random system: ``A = ρ Q`` with ``Q`` a random rotation (every eigenvalue has modulus ρ: damped
    oscillations), ``B`` with N(0, 1/n) entries and ``C`` with N(0, 1/n) entries (unit-scale observations of a
    unit-scale state), all drawn with ``numpy.random.default_rng(seed)``."""
    for name, value in (("state_dim", state_dim), ("action_dim", action_dim), ("obs_dim", obs_dim)):
        _checks.check_positive_int(value, name)
    if not 0.0 <= spectral_radius < 1.0:
        raise ValueError(f"spectral_radius must lie in [0, 1), got {spectral_radius!r}")
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(state_dim, state_dim)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    B = rng.normal(size=(state_dim, action_dim)) / np.sqrt(state_dim)
    C = rng.normal(size=(obs_dim, state_dim)) / np.sqrt(state_dim)
    return LinearGaussianSystem(spectral_radius * q, B, C, process_std, obs_std, action_std)


MOVES = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]])


@dataclasses.dataclass(frozen=True)
class SpriteSystem:
    """A ``size × size`` square sprite on a ``grid × grid`` image moved by actions: the state ``s`` is its top-left
    cell (row, column), an action is one of stay / up / down / left / right (one-hot, uniform), a move into a wall
    stays put, and the observation is the flattened image (1 on the sprite, 0 elsewhere) plus N(0, σ²) pixel noise.

    The moves are symmetric and blocked moves stay, so the transition matrix is symmetric, hence doubly stochastic:
    the uniform law over the ``(grid − size + 1)²`` positions is stationary, and trajectories start there.
    """

    grid: int = 8
    size: int = 2
    noise_std: float = 0.1

    def __post_init__(self):
        _checks.check_positive_int(self.grid, "SpriteSystem.grid")
        _checks.check_positive_int(self.size, "SpriteSystem.size")
        if self.size > self.grid:
            raise ValueError(f"SpriteSystem.size must be <= grid, got size={self.size}, grid={self.grid}")
        if not (np.isfinite(self.noise_std) and self.noise_std >= 0):
            raise ValueError(f"SpriteSystem.noise_std must be a finite float >= 0, got {self.noise_std!r}")

    state_dim = 2
    action_dim = len(MOVES)

    @property
    def obs_dim(self) -> int:
        return self.grid**2

    def render(self, s):
        """Noise-free images ``(..., grid²)`` of integer positions ``s`` ``(..., 2)``."""
        cells = jnp.arange(self.grid)
        rows = (cells >= s[..., :1]) & (cells < s[..., :1] + self.size)
        cols = (cells >= s[..., 1:]) & (cells < s[..., 1:] + self.size)
        return (rows[..., :, None] & cols[..., None, :]).reshape(*s.shape[:-1], self.grid**2).astype(jnp.float32)

    def sample_trajectories(self, key, n: int, horizon: int) -> dict:
        """``n`` stationary trajectories: ``{"s": (n, H+1, 2)`` positions (float32), ``"x": (n, H+1, grid²)``,
        ``"a": (n, H, 5)`` one-hot actions``}``."""
        n = _checks.check_positive_int(n, "n")
        horizon = _checks.check_positive_int(horizon, "horizon")
        k0, ka, kv = jax.random.split(key, 3)
        last = self.grid - self.size
        s0 = jax.random.randint(k0, (n, 2), 0, last + 1)
        actions = jax.random.randint(ka, (n, horizon), 0, len(MOVES))
        steps = jnp.asarray(MOVES)[actions]

        def step(pos, move):
            pos = jnp.clip(pos + move, 0, last)
            return pos, pos

        s = jnp.concatenate([s0[:, None], jnp.moveaxis(jax.lax.scan(step, s0, jnp.moveaxis(steps, 1, 0))[1], 0, 1)],
                            axis=1)
        x = self.render(s) + self.noise_std * jax.random.normal(kv, (n, horizon + 1, self.grid**2))
        return {"s": s.astype(jnp.float32), "x": x, "a": jax.nn.one_hot(actions, len(MOVES))}

    def sample_transitions(self, key, n: int) -> dict:
        """``n`` stationary transitions (see :meth:`LinearGaussianSystem.sample_transitions`)."""
        return transitions(self.sample_trajectories(key, n, 1))
