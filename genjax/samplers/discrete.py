"""Discrete-time ancestral samplers, DDPM and DDIM, derived from one Gaussian step.

For a one-sided path ``x_t = α_t x0 + σ_t ε`` the forward transition from ``s < t`` is
``x_t | x_s ~ N(α_{t|s} x_s, σ²_{t|s} I)`` with ``α_{t|s} = α_t/α_s`` and
``σ²_{t|s} = σ_t² − α²_{t|s} σ_s²``; its posterior ``q(x_s | x_t, x0)`` has variance
``σ̃² = σ²_{t|s} σ_s²/σ_t²``.  The η-family (Song, Meng & Ermon 2021, eq. 12)

    x_s = α_s x̂0 + sqrt(σ_s² − c²) ε̂ + c ξ,   c = η σ̃,

is DDIM at ``η = 0`` and the posterior step (DDPM with ``β̃``, Ho et al. 2020) at ``η = 1``;
DDPM with variance ``β`` keeps the ``η = 1`` mean and draws noise of std ``σ_{t|s}``.  When
``α² + σ² = 1`` these are the familiar ``ᾱ = α²`` formulas (MATH.md §5), so the same code
runs the ``ddpm``, ``vp`` and ``cosine`` schedules (and any other one-sided path).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks
from ..interpolants import Interpolant, convert
from ..model import filter_jit
from .common import check_sampler_args, check_samples, check_start, map_chunks, model_field, prior_draw, sample_inputs

__all__ = ["gaussian_step", "sample_ddpm", "sample_ddim", "ddim_timesteps", "check_times", "grid_save_indices"]

_NOISE = ("eta", "beta", "beta_tilde")


def gaussian_step(interpolant: Interpolant, t, s, x0_hat, eps_hat, eta=1.0):
    """One reverse step ``t → s < t`` of the η-family: returns ``(mean, c, σ_{t|s})``.

    ``mean = α_s x̂0 + sqrt(σ_s² − c²) ε̂`` and
    ``c = η σ̃ = η σ_s sqrt(1 − α_t²σ_s²/(α_s²σ_t²))``
    (Song, Meng & Ermon 2021, eq. 12/16, general α, σ form); ``σ_{t|s} = sqrt(σ_t² − (α_t/α_s)² σ_s²)``
    is the forward transition std (``sqrt(β_i)`` in DDPM).  With ``η = 1`` the mean is the
    posterior mean ``μ̃`` of ``q(x_s | x_t, x̂0)`` and ``c² = β̃`` (Ho et al. 2020, eq. 6–7).
    """
    a_t, s_t, _, _ = interpolant.scales(t)
    a_s, s_s, _, _ = interpolant.scales(s)
    var_ts = jnp.maximum(s_t**2 - (a_t / a_s) ** 2 * s_s**2, 0.0)
    c = eta * jnp.sqrt(var_ts * s_s**2) / s_t
    mean = a_s * x0_hat + jnp.sqrt(jnp.maximum(s_s**2 - c**2, 0.0)) * eps_hat
    return mean, c, jnp.sqrt(var_ts)


@filter_jit
def _ancestral(model, interpolant, prediction, event_shape, dtype, noise, times, eta, clip_x0, save_index, inputs,
               where):
    """Run the Gaussian steps ``times[k] → times[k+1]`` per sample with ``lax.scan``.

    ``noise``: ``"eta"`` (std ``c``, DDIM), ``"beta_tilde"`` (``c`` with η = 1) or ``"beta"``
    (std ``σ_{t|s}``); the DDPM variants add no noise on the last step (Ho et al. 2020, Alg. 2).
    A chain that ends at ``t = 0`` returns the model's ``x̂0`` on its last step — the Gaussian
    step itself when ``σ(0) = 0``, and the denoised sample when ``σ(0) > 0`` (``ve``).  With
    ``clip_x0 = (lo, hi)``, ``x̂0`` is clipped to the data range and ``ε̂ = (x − α x̂0)/σ`` recomputed.
    """
    num = times.shape[0] - 1
    last = jnp.arange(num) == num - 1
    to_data = times[-1] == 0

    def one(key, x, c):
        f = model_field(model, c, event_shape, dtype, where)
        k_init, k_steps = jax.random.split(key)
        x = prior_draw(k_init, event_shape, interpolant.sigma(times[0])).astype(dtype) if x is None else x

        def step(x, inputs):
            t, s, k, is_last = inputs
            out = f(t, x)
            x0_hat = convert(out, prediction, "data", interpolant, t, x)
            eps_hat = convert(out, prediction, "noise", interpolant, t, x)
            if clip_x0 is not None:
                x0_hat = jnp.clip(x0_hat, *clip_x0)
                eps_hat = convert(x0_hat, "data", "noise", interpolant, t, x)
            mean, c_std, trans = gaussian_step(interpolant, t, s, x0_hat, eps_hat, eta)
            std = trans if noise == "beta" else c_std
            if noise != "eta":
                std = jnp.where(is_last, 0.0, std)
            x_next = mean + std * jax.random.normal(k, x.shape, x.dtype)
            x_next = jnp.where(is_last & to_data, x0_hat, x_next)
            return x_next, (x_next if save_index is not None else None)

        x, path = jax.lax.scan(step, x, (times[:-1], times[1:], jax.random.split(k_steps, num), last))
        return x, ({} if save_index is None else {"trajectory": path[save_index]})

    return jax.vmap(one)(*inputs)


def check_times(interpolant: Interpolant, times, name: str) -> np.ndarray:
    """Strictly decreasing times in ``[0, t_max]`` whose model evaluations (all but the last) are ``>= t_min``."""
    if not isinstance(interpolant, Interpolant) or interpolant.two_sided:
        raise ValueError("samplers need a one-sided genjax.Interpolant (Gaussian prior)")
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or times.size < 2 or not np.all(np.isfinite(times)):
        raise ValueError(f"{name} must be a 1-D sequence of at least 2 finite times, got {times!r}")
    if not np.all(np.diff(times) < 0):
        raise ValueError(f"{name} must be strictly decreasing, got {times.tolist()}")
    tol = 1e-9
    if times[0] > interpolant.t_max + tol or times[-1] < -tol or times[-2] < interpolant.t_min - tol:
        raise ValueError(
            f"{name} must start at or below t_max={interpolant.t_max}, end at or above 0, and evaluate the model only "
            f"on [t_min, t_max] = [{interpolant.t_min}, {interpolant.t_max}] (all but the last time), got "
            f"[{times[0]}, ..., {times[-2]}, {times[-1]}]"
        )
    return times


def grid_save_indices(times: np.ndarray, save_times):
    """Indices into the states after each step (times[1:]) of the requested ``save_times`` (grid times only)."""
    if save_times is None:
        return None
    wanted = np.atleast_1d(np.asarray(save_times, np.float64))
    grid = times[1:]
    index = np.abs(grid[None, :] - wanted[:, None]).argmin(axis=1)
    if wanted.ndim != 1 or not np.allclose(grid[index], wanted, rtol=0, atol=1e-6):
        raise ValueError(f"save_times must be times of the sampler's grid after a step, {grid.tolist()!r:.300}; "
                         f"got {wanted.tolist()!r:.200}")
    return jnp.asarray(index)


def _check_clip(clip_x0):
    if clip_x0 is None:
        return None
    if len(clip_x0) != 2 or not float(clip_x0[0]) < float(clip_x0[1]):
        raise ValueError(f"clip_x0 must be a data range (lo, hi) with lo < hi, or None; got {clip_x0!r}")
    return float(clip_x0[0]), float(clip_x0[1])


def _run(model, interpolant, prediction, key, shape, x_init, c, noise, times, eta, clip_x0, save_times, chunk_size,
         mesh, where):
    times = np.asarray(times, np.float64)
    save_index = grid_save_indices(times, save_times)
    dtype = jnp.result_type(float) if x_init is None else x_init.dtype
    samples, stats = map_chunks(
        lambda chunk: _ancestral(model, interpolant, prediction, shape[1:], dtype, noise,
                                 jnp.asarray(times, jnp.result_type(float)), eta, _check_clip(clip_x0), save_index,
                                 chunk, where),
        sample_inputs(key, shape, x_init, c), chunk_size=chunk_size, mesh=mesh)
    check_samples(samples, where)
    stats = {"nfe": times.size - 1, **stats}
    if save_index is not None:
        stats["trajectory"] = jnp.moveaxis(jnp.asarray(stats["trajectory"]), 1, 0)
        stats["save_times"] = times[1:][np.asarray(save_index)]
    return samples, stats


def _key(key, x_init, deterministic: bool, name: str):
    if key is not None:
        return key
    if deterministic and x_init is not None:
        return None  # never used for randomness: no noise is drawn
    raise ValueError(f"{name}: key is required (for the prior draw and the noise)")


def sample_ddpm(model, interpolant: Interpolant, key, shape=None, *, prediction: str, variance: str = "beta",
                num_steps: int | None = None, x_init=None, c=None, save_times=None, clip_x0=None,
                chunk_size: int | None = None, mesh=None):
    """DDPM ancestral sampling (Ho et al. 2020, Alg. 2) on the grid ``t_i = i/T`` (MATH.md §5).

    ``x_{i−1} = (x_i − β_i/sqrt(1−ᾱ_i) ε̂)/sqrt(1−β_i) + σ_i ξ`` with ``σ_i² = β_i`` or
    ``β̃_i = β_i(1−ᾱ_{i−1})/(1−ᾱ_i)`` and no noise on the last step, written in the general
    α, σ form of :func:`gaussian_step` (``ᾱ = α²``): any one-sided schedule works (``ddpm``,
    ``vp``, ``cosine``).  ``T = num_steps`` or ``interpolant.num_steps``; the model is
    evaluated at ``t_T..t_1``, which must lie in ``[t_min, t_max]``; the chain ends at t = 0
    with the model's ``x̂0``.  Starts from ``x_init`` or the prior ``N(0, σ(1)² I)``.

    Args: as :func:`genjax.samplers.sample_ode`; ``save_times`` must be grid times ``i/T``;
    ``clip_x0=(lo, hi)`` clips each ``x̂0`` to the data range and recomputes ``ε̂`` from it (Ho et al.
    2020's ``clip_denoised`` for images in ``[−1, 1]``).
    Returns ``(samples, stats)`` with ``stats["nfe"] = T``.
    """
    if variance not in ("beta", "beta_tilde"):
        raise ValueError(f"variance={variance!r} is not known; expected 'beta' or 'beta_tilde'")
    if num_steps is None:
        num_steps = getattr(interpolant, "num_steps", None)
        if num_steps is None:
            raise ValueError(f"sample_ddpm: interpolant {interpolant.name!r} has no discrete grid; pass num_steps=T")
    num_steps = _checks.check_positive_int(num_steps, "num_steps")
    times = check_times(interpolant, np.arange(num_steps, -1, -1) / num_steps, "the DDPM grid t_i = i/T")
    check_sampler_args(model, interpolant, prediction, "sample_ddpm", times[-2], times[0], to=("data", "noise"))
    shape, x_init = check_start(key, shape, x_init)
    key = _key(key, x_init, False, "sample_ddpm")
    return _run(model, interpolant, prediction, key, shape, x_init, c, variance, times, 1.0, clip_x0, save_times,
                chunk_size, mesh, "sample_ddpm")


def ddim_timesteps(interpolant: Interpolant, num_steps: int) -> np.ndarray:
    """``num_steps + 1`` times from ``t_max`` to 0, equally spaced, on the grid ``i/T`` if the path has one."""
    times = np.linspace(interpolant.t_max, 0.0, num_steps + 1)
    if interpolant.num_steps is not None:
        grid = interpolant.num_steps
        times = np.round(times * grid) / grid
    return times


def sample_ddim(model, interpolant: Interpolant, key=None, shape=None, *, prediction: str,
                num_steps: int | None = None, timesteps=None, eta: float = 0.0, x_init=None, c=None,
                save_times=None, clip_x0=None, chunk_size: int | None = None, mesh=None):
    """DDIM (Song, Meng & Ermon 2021): ``x_s = α_s x̂0 + sqrt(σ_s² − c²) ε̂ + c ξ`` on any decreasing times.

    ``c = η σ_s sqrt(1 − α_t²σ_s²/(α_s²σ_t²))``, the general α, σ form of MATH.md §5
    (``= η sqrt((1−ᾱ_s)/(1−ᾱ_t)) sqrt(1−ᾱ_t/ᾱ_s)`` when ``α²+σ²=1``); η = 0 is deterministic,
    η = 1 is ancestral sampling with ``β̃``.

    Args:
      timesteps: strictly decreasing times ``t_0 > … > t_N`` (``t_0 <= t_max``, ``t_N >= 0``;
        the model is evaluated at ``t_0..t_{N−1}``, which must be ``>= t_min``).  A grid
        ending at 0 returns the model's ``x̂0`` on its last step (so ``ve``, whose
        ``σ(0) = σ_min > 0``, also ends on the data).
      num_steps: instead of ``timesteps``: N equal steps from ``t_max`` to 0 (snapped to the
        interpolant's grid ``i/T`` if it has one); default 50.
      eta: in [0, 1].
      key: PRNG key; may be None with ``x_init`` and ``eta = 0``.
      model, prediction, c, save_times, clip_x0, chunk_size, mesh: as :func:`sample_ddpm`.

    Returns ``(samples, stats)`` with ``stats["nfe"] = N``, starting from ``x_init`` or ``N(0, σ(t_0)² I)``.
    """
    if isinstance(eta, bool) or not isinstance(eta, (int, float, np.number)) or not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be a number in [0, 1], got {eta!r}")
    if timesteps is None:
        num_steps = _checks.check_positive_int(50 if num_steps is None else num_steps, "num_steps")
        times = check_times(interpolant, ddim_timesteps(interpolant, num_steps),
                            f"the DDIM grid for num_steps={num_steps}")
    elif num_steps is not None:
        raise ValueError("pass either num_steps or timesteps to sample_ddim, not both")
    else:
        times = check_times(interpolant, timesteps, "timesteps")
    check_sampler_args(model, interpolant, prediction, "sample_ddim", times[-2], times[0], to=("data", "noise"))
    shape, x_init = check_start(key, shape, x_init)
    key = _key(key, x_init, eta == 0, "sample_ddim")
    return _run(model, interpolant, prediction, key, shape, x_init, c, "eta", times, float(eta), clip_x0, save_times,
                chunk_size, mesh, "sample_ddim")
