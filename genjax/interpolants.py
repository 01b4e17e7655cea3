"""Stochastic interpolants ``x_t = α(t) x0 + β(t) x1 + γ(t) z`` and prediction conversions.

Conventions (MATH.md §1): data at t = 0, prior at t = 1, generation runs 1 → 0.

* One-sided paths (``x1 ~ N(0, I)``): only ``σ(t) = sqrt(β² + γ²)`` matters, so
  ``x_t = α x0 + σ ε``.  Every preset is one-sided with ``γ ≡ 0`` and ``β = σ``.
* Two-sided paths (``two_sided=True``) bridge two data sets (Albergo, Boffi &
  Vanden-Eijnden 2023, "Stochastic Interpolants").

Derivatives come from ``jax.jvp`` of the user's scalar functions unless closed forms are
supplied (the presets supply them; the tests compare the two).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Interpolant",
    "PREDICTIONS",
    "GAMMAS",
    "convert",
    "check_prediction",
    "check_predictions",
    "check_interpolant",
    "check_domain",
    "linear",
    "trig",
    "vp",
    "subvp",
    "ve",
    "ddpm",
    "cosine",
    "bridge",
]

PREDICTIONS = ("velocity", "noise", "data", "score")

ScalarFn = Callable[[jax.Array], jax.Array]


def check_prediction(prediction: str, argument: str = "prediction") -> str:
    """Return ``prediction`` if it names a known target, else raise a ``ValueError``."""
    if prediction not in PREDICTIONS:
        raise ValueError(
            f"{argument}={prediction!r} is not a known prediction; expected one of {PREDICTIONS}"
        )
    return prediction


def check_predictions(prediction, interpolant: "Interpolant", argument: str = "prediction") -> tuple[str, ...]:
    """``prediction`` as a tuple of names: one name, or (two-sided paths only) a tuple of distinct names
    for a model with one output head per name, e.g. ``("velocity", "noise")`` for ``(b, η)``."""
    if isinstance(prediction, str):
        return (check_prediction(prediction, argument),)
    names = tuple(prediction) if isinstance(prediction, (tuple, list)) else ()
    if not names or len(set(names)) != len(names):
        raise ValueError(f"{argument}={prediction!r} must be a prediction name or a tuple of distinct names, one "
                         f"per output head, from {PREDICTIONS}")
    for name in names:
        check_prediction(name, argument)
    if len(names) > 1 and not interpolant.two_sided:
        raise ValueError(f"{argument}={prediction!r}: several heads are for two-sided interpolants (b and η); a "
                         f"one-sided model predicts one of {PREDICTIONS}, the others follow by convert")
    return names


def _tangent(fn: ScalarFn, t):
    t = jnp.asarray(t, dtype=jnp.result_type(float))
    return jax.jvp(fn, (t,), (jnp.ones_like(t),))[1]


@dataclasses.dataclass(frozen=True)
class Interpolant:
    """A path ``x_t = α(t) x0 + β(t) x1 + γ(t) z`` given by three scalar functions of t.

    Args:
      alpha, beta, gamma: scalar functions of a scalar ``t`` (jax-traceable).
      name: label used in messages and results.
      t_min, t_max: the time interval on which losses, samplers and likelihoods work
        (conversions are singular where ``σ = 0`` or ``α = 0``, MATH.md §3).
      two_sided: ``True`` for a bridge between two data sets; boundary conditions
        ``α(0)=1, β(0)=0, α(1)=0, β(1)=1, γ(0)=γ(1)=0`` are then enforced.
      num_steps: size T of the discrete grid ``t_i = i/T`` (DDPM), if the path has one.
      dalpha, dbeta, dgamma: optional closed-form derivatives (else ``jax.jvp``).

    Construction validates the path on a grid of ``[t_min, t_max]`` and raises a
    ``ValueError`` naming the violated condition and where.
    """

    alpha: ScalarFn
    beta: ScalarFn
    gamma: ScalarFn
    name: str = "custom"
    t_min: float = 0.0
    t_max: float = 1.0
    two_sided: bool = False
    num_steps: int | None = None
    dalpha: ScalarFn | None = None
    dbeta: ScalarFn | None = None
    dgamma: ScalarFn | None = None
    validate: bool = dataclasses.field(default=True, compare=False, repr=False)

    def __post_init__(self):
        for field in ("alpha", "beta", "gamma"):
            if not callable(getattr(self, field)):
                raise ValueError(f"Interpolant {field} must be a callable of t, got {getattr(self, field)!r}")
        if not (0.0 <= self.t_min < self.t_max <= 1.0):
            raise ValueError(
                f"Interpolant {self.name!r}: need 0 <= t_min < t_max <= 1, got t_min={self.t_min}, t_max={self.t_max}"
            )
        if self.num_steps is not None and (int(self.num_steps) != self.num_steps or self.num_steps < 1):
            raise ValueError(f"Interpolant {self.name!r}: num_steps must be a positive integer, got {self.num_steps!r}")
        if self.validate:
            check_interpolant(self)

    # -- coefficients ---------------------------------------------------------------
    def coefficients(self, t):
        """``(α(t), β(t), γ(t))``."""
        return self.alpha(t), self.beta(t), self.gamma(t)

    def derivatives(self, t):
        """``(α̇(t), β̇(t), γ̇(t))``: closed forms when given, else ``jax.jvp``."""
        return tuple(
            closed(t) if closed is not None else _tangent(fn, t)
            for fn, closed in ((self.alpha, self.dalpha), (self.beta, self.dbeta), (self.gamma, self.dgamma))
        )

    def jvp_derivatives(self, t):
        """``(α̇, β̇, γ̇)`` by ``jax.jvp``, ignoring any closed forms."""
        return tuple(_tangent(fn, t) for fn in (self.alpha, self.beta, self.gamma))

    def scales(self, t):
        """One-sided ``(α, σ, α̇, σ̇)`` with ``σ = sqrt(β² + γ²)`` (MATH.md §1)."""
        a, b, g = self.coefficients(t)
        da, db, dg = self.derivatives(t)
        sigma = jnp.sqrt(b**2 + g**2)
        # d/dt sqrt(β²+γ²) = (ββ̇+γγ̇)/σ; its limit where σ = 0 is sqrt(β̇²+γ̇²).
        safe = jnp.where(sigma > 0, sigma, 1.0)
        dsigma = jnp.where(sigma > 0, (b * db + g * dg) / safe, jnp.sqrt(db**2 + dg**2))
        return a, sigma, da, dsigma

    def sigma(self, t):
        """Total noise scale ``σ(t) = sqrt(β² + γ²)``."""
        return jnp.sqrt(self.beta(t) ** 2 + self.gamma(t) ** 2)

    def prior_std(self):
        """Std of the one-sided prior ``N(0, σ(t_max)² I)`` that generation starts from."""
        return self.sigma(self.t_max)

    def sde_coefficients(self, t):
        """Forward-SDE drift factor and squared diffusion ``(f, g²)`` of the one-sided path.

        ``f = α̇/α``, ``g² = 2σσ̇ − 2 (α̇/α) σ²`` (MATH.md §3; VP: ``f = −β(t)/2, g² = β(t)``).
        """
        a, s, da, ds = self.scales(t)
        f = da / a
        return f, 2.0 * s * ds - 2.0 * f * s**2

    def sample_path(self, x0, t, eps, x1=None):
        """``x_t`` for one sample: ``α x0 + σ ε`` (one-sided) or ``α x0 + β x1 + γ ε`` (two-sided)."""
        if x1 is None:
            a, s, _, _ = self.scales(t)
            return a * x0 + s * eps
        a, b, g = self.coefficients(t)
        return a * x0 + b * x1 + g * eps

    def replace(self, **changes) -> "Interpolant":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def check_interpolant(ip: Interpolant, grid_size: int = 257) -> Interpolant:
    """Validate ``ip`` on a grid of ``[t_min, t_max]`` (done at construction); return it or raise ``ValueError``."""
    ts = np.linspace(ip.t_min, ip.t_max, grid_size)
    where = lambda mask: float(ts[int(np.argmax(mask))])  # noqa: E731
    try:
        coeffs = [np.asarray(jax.vmap(f)(jnp.asarray(ts))) for f in (ip.alpha, ip.beta, ip.gamma)]
        derivs = [np.asarray(d) for d in jax.vmap(ip.derivatives)(jnp.asarray(ts))]
    except Exception as err:  # the user's functions fail to trace
        raise ValueError(f"Interpolant {ip.name!r}: α, β, γ must be jax-traceable scalar functions of t ({err})") from err
    for label, arr in zip(("α", "β", "γ", "α̇", "β̇", "γ̇"), coeffs + derivs):
        if arr.shape != ts.shape:
            raise ValueError(f"Interpolant {ip.name!r}: {label}(t) must return a scalar, got shape {arr.shape[1:]}")
        bad = ~np.isfinite(arr)
        if bad.any():
            raise ValueError(f"Interpolant {ip.name!r}: {label}(t) is not finite at t={where(bad):.4g}")
    end = {t: [float(f(jnp.asarray(t, jnp.float32))) for f in (ip.alpha, ip.beta, ip.gamma)] for t in (0.0, 1.0)}
    if ip.two_sided:
        conditions = [("α(0) = 1", end[0.0][0], 1.0), ("β(0) = 0", end[0.0][1], 0.0),
                      ("γ(0) = 0", end[0.0][2], 0.0), ("α(1) = 0", end[1.0][0], 0.0),
                      ("β(1) = 1", end[1.0][1], 1.0), ("γ(1) = 0", end[1.0][2], 0.0)]
        for cond, got, want in conditions:
            if abs(got - want) > 1e-5:
                raise ValueError(f"Interpolant {ip.name!r}: two-sided boundary condition {cond} violated (got {got:.6g})")
        if (coeffs[2] < -1e-6).any():
            raise ValueError(f"Interpolant {ip.name!r}: γ(t) must be >= 0, got γ<0 at t={where(coeffs[2] < -1e-6):.4g}")
        return ip
    a0, s0 = end[0.0][0], math.hypot(end[0.0][1], end[0.0][2])
    a1, s1 = end[1.0][0], math.hypot(end[1.0][1], end[1.0][2])
    if abs(a0 - 1.0) > 1e-3:
        raise ValueError(f"Interpolant {ip.name!r}: boundary condition α(0) = 1 violated (got α(0)={a0:.6g})")
    if s0 > 0.05:
        raise ValueError(f"Interpolant {ip.name!r}: boundary condition σ(0) ≈ 0 violated (got σ(0)={s0:.6g} > 0.05)")
    if not a1 < s1:
        raise ValueError(
            f"Interpolant {ip.name!r}: the prior end must be noise-dominated, α(1) < σ(1) (got α(1)={a1:.4g}, σ(1)={s1:.4g})"
        )
    if (coeffs[0] < -1e-6).any():
        raise ValueError(f"Interpolant {ip.name!r}: α(t) must be >= 0, got α<0 at t={where(coeffs[0] < -1e-6):.4g}")
    a, s, da, ds = (np.asarray(v) for v in jax.vmap(ip.scales)(jnp.asarray(ts)))
    D = a * ds - s * da
    if not (D > 0).all():
        i = int(np.argmax(~(D > 0)))
        raise ValueError(
            f"Interpolant {ip.name!r}: D(t) = α σ̇ − σ α̇ must be > 0 on [t_min, t_max] (signal-to-noise α/σ strictly "
            f"decreasing); found D({ts[i]:.4g}) = {D[i]:.4g}"
        )
    return ip


# ---------------------------------------------------------------------------------
# Prediction conversions (MATH.md §3), one-sided Gaussian paths.
# ---------------------------------------------------------------------------------


def _noise_from(value, frm, a, s, da, ds, x):
    if frm == "noise":
        return value
    if frm == "data":
        return (x - a * value) / s
    if frm == "score":
        return -s * value
    return (a * value - da * x) / (a * ds - s * da)  # velocity


def _data_from(value, frm, a, s, da, ds, x):
    if frm == "data":
        return value
    if frm == "noise":
        return (x - s * value) / a
    if frm == "score":
        return (x + s**2 * value) / a  # Tweedie
    return (ds * x - s * value) / (a * ds - s * da)  # velocity


def convert(value, frm, to: str, interpolant: Interpolant, t, x):
    """Convert a prediction at ``(t, x)`` between ``velocity | noise | data | score``.

    One-sided paths: with ``x = α x0 + σ ε``, ``v = α̇ x0 + σ̇ ε`` and ``D = α σ̇ − σ α̇``
    (MATH.md §3): ``x̂0 = (x − σ ε̂)/α``, ``s = −ε̂/σ``, ``ε̂ = −σ s``, ``x̂0 = (σ̇ x − σ v)/D``,
    ``ε̂ = (α v − α̇ x)/D``.  Only the divisions that the pair needs are made, so e.g.
    noise → score is finite at ``α = 0``.  ``t`` must broadcast against ``x``.

    Two-sided paths (MATH.md §10): ``frm`` may be a tuple of names with ``value`` the tuple of
    the model's heads, e.g. ``("velocity", "noise")`` for ``(b, η)``; see :func:`convert_two_sided`.
    """
    if interpolant.two_sided:
        names = check_predictions(frm, interpolant, "frm")
        values = (value,) if isinstance(frm, str) else tuple(value)
        return convert_two_sided(dict(zip(names, values)), to, interpolant, t, x)
    check_prediction(frm, "frm")
    check_prediction(to, "to")
    if frm == to:
        return value
    a, s, da, ds = interpolant.scales(t)
    if to == "noise":
        return _noise_from(value, frm, a, s, da, ds, x)
    if to == "data":
        return _data_from(value, frm, a, s, da, ds, x)
    if to == "score":
        if frm == "data":
            return -(x - a * value) / s**2
        return -_noise_from(value, frm, a, s, da, ds, x) / s
    # to velocity: v = α̇ x̂0 + σ̇ ε̂
    if frm == "data":
        return da * value + ds * (x - a * value) / s
    eps = _noise_from(value, frm, a, s, da, ds, x)
    return da * (x - s * eps) / a + ds * eps


def latent_free(interpolant: Interpolant) -> bool:
    """``True`` if ``γ ≡ 0`` (checked on 257 points of ``[0, 1]``): the path has no latent ``γ z``."""
    return _latent_free(interpolant)


@functools.lru_cache(maxsize=256)
def _latent_free(interpolant: Interpolant) -> bool:
    with jax.ensure_compile_time_eval():
        ts = jnp.linspace(interpolant.t_min, interpolant.t_max, 257)
        gamma = np.asarray(jax.vmap(interpolant.gamma)(ts))
        dgamma = np.asarray(jax.vmap(lambda t: interpolant.derivatives(t)[2])(ts))
    return bool(np.all(gamma == 0) and np.all(dgamma == 0))


def convert_two_sided(values: dict, to: str, interpolant: Interpolant, t, x):
    """``to`` at ``(t, x)`` from the known two-sided predictions ``values`` (``{name: array}``, MATH.md §10).

    With ``x_t = α x0 + β x1 + γ z``, every prediction is linear in ``(x̂0, x̂1, η) = E[(x0, x1, z) | x_t]``,
    which satisfy ``x = α x̂0 + β x̂1 + γ η``:

    * ``velocity`` ``b = α̇ x̂0 + β̇ x̂1 + γ̇ η = E[α̇x0 + β̇x1 | x_t] − γγ̇ s`` (the ODE's field);
    * ``noise`` ``η``; ``score`` ``s = −η/γ``; ``data`` ``x̂0``.

    So ``η`` and ``s`` follow from each other; ``b`` from ``x̂0`` and ``η`` (``x̂1 = (x − α x̂0 − γ η)/β``);
    ``x̂0`` from ``b`` and ``η`` (``x̂0 = (β(b − γ̇η) − β̇(x − γη)) / (α̇β − αβ̇)``).  On a latent-free path
    (``γ ≡ 0``) ``η`` is not needed.  A ``ValueError`` names what is missing otherwise (e.g. an SDE needs
    the score, which a velocity model alone does not determine: learn ``η`` as a second head).
    """
    if to in values:
        return values[to]
    check_prediction(to, "to")
    missing = _two_sided_missing(tuple(values), to, latent_free(interpolant))
    if missing:
        raise ValueError(f"convert: {missing}")
    a, b, g = interpolant.coefficients(t)
    da, db, dg = interpolant.derivatives(t)
    eta = values.get("noise")
    if eta is None and "score" in values:
        eta = -g * values["score"]
    if to == "noise":
        return eta
    if to == "score":
        return -eta / g
    if eta is None:  # latent-free: γ = γ̇ = 0
        eta = jnp.zeros_like(x)
    if to == "velocity":
        x0 = values["data"]
        return da * x0 + db * (x - a * x0 - g * eta) / b + dg * eta
    v = values["velocity"]
    return (b * (v - dg * eta) - db * (x - g * eta)) / (da * b - a * db)


def _two_sided_missing(names: tuple[str, ...], to: str, no_latent: bool) -> str:
    """Why ``names`` do not determine ``to`` on a two-sided path ("" if they do)."""
    if to in names:
        return ""
    has_eta = "noise" in names or "score" in names
    if to in ("noise", "score"):
        if has_eta:
            return ""
        return (f"{to} is not determined by {names} on a two-sided path: learn the denoiser η = E[z | x_t] "
                "(prediction 'noise') as a second head, e.g. prediction=('velocity', 'noise')")
    other = "data" if to == "velocity" else "velocity"
    if other not in names:
        return f"{to} on a two-sided path needs the {other!r} prediction (with η unless γ ≡ 0); got {names}"
    if not (has_eta or no_latent):
        return (f"{to} from {other!r} on a two-sided path with γ ≠ 0 also needs η: predict ('{other}', 'noise')")
    return ""


# A divisor at or below this is zero up to float32 rounding (cos(π/2) gives −4e−8; α, σ, D are O(1) scales).
_SINGULAR = float(np.finfo(np.float32).eps)
_SYMBOLS = {"alpha": "α", "sigma": "σ", "D": "D", "gamma": "γ", "beta": "β", "det": "|α̇β − αβ̇|"}


def _divisors(frm: str, to: str) -> dict[str, str]:
    """``{quantity: formula}``: what converting ``frm`` into ``to`` divides by (MATH.md §3)."""
    if frm == to:
        return {}
    if frm == "noise":
        return {"sigma": "s = −ε̂/σ"} if to == "score" else {"alpha": "x̂0 = (x − σ ε̂)/α"}
    if frm == "data":
        return {"sigma": "ε̂ = (x − α x̂0)/σ"}
    if frm == "score":
        need = {"sigma": "the score target −ε/σ is unbounded as σ → 0"}
        if to in ("data", "velocity"):
            need["alpha"] = "x̂0 = (x + σ² s)/α"
        return need
    need = {"D": "x̂0 = (σ̇ x − σ v)/D, ε̂ = (α v − α̇ x)/D"}
    if to == "score":
        need["sigma"] = "s = −ε̂/σ"
    return need


def _suggest(ip: Interpolant, field: str, value: float) -> str:
    """``e.g. genjax.interpolants.linear(t_max=0.999)`` (or ``.replace(...)`` for other interpolants)."""
    if globals().get(ip.name) is ip:
        return f"genjax.interpolants.{ip.name}({field}={value:g})"
    return f"interpolant.replace({field}={value:g})"


def check_domain(interpolant: Interpolant, prediction: str, t_lo, t_hi, *, to="velocity",
                 what: str = "check_domain") -> Interpolant:
    """Raise a ``ValueError`` if a ``prediction`` model cannot be converted to ``to`` on ``[t_lo, t_hi]``.

    Conversions (MATH.md §3) divide by ``α`` (noise → data/velocity, score → data/velocity),
    by ``σ`` (data → any, noise → score, velocity → score) or by ``D = α σ̇ − σ α̇``
    (velocity → noise/data/score); a score model needs ``σ > 0`` for any conversion, as its
    target ``−ε/σ`` is unbounded where ``σ → 0``.  Two-sided paths (MATH.md §10) divide by
    ``γ`` (η ↔ score), ``β`` (data → velocity) or ``α̇β − αβ̇`` (velocity → data), and some
    targets need a second head (:func:`convert_two_sided`).  Samplers and likelihoods call
    this before any work.  The divisors are evaluated on 257 points of ``[t_lo, t_hi]`` (ends
    included); a value ``≤ 1.2e-7`` (float32 eps: zero up to rounding) or not finite is
    singular, and the message says where, what vanishes and how to avoid it.

    Args:
      interpolant: an :class:`Interpolant`.
      prediction: what the model predicts (``velocity | noise | data | score``; two-sided
        paths: also a tuple of names, one per output head).
      t_lo, t_hi: concrete times, ``0 <= t_lo <= t_hi <= 1``, where the model is evaluated.
      to: the target or targets the caller converts to (default ``"velocity"``: ODE
        samplers and likelihoods; an SDE sampler also needs ``"score"``).
      what: the caller's name, used as the message prefix.

    Returns ``interpolant``.
    """
    names = check_predictions(prediction, interpolant)
    targets = (to,) if isinstance(to, str) else tuple(to)
    for target in targets:
        check_prediction(target, "to")
    needs = {}
    for target in targets:
        if interpolant.two_sided:
            missing = _two_sided_missing(names, target, latent_free(interpolant))
            if missing:
                raise ValueError(f"{what}: {missing}")
            divisors = _two_sided_divisors(names, target)
        else:
            divisors = _divisors(names[0], target)
        for quantity, formula in divisors.items():
            needs.setdefault(quantity, (target, formula))
    if not needs:
        return interpolant
    try:
        t_lo, t_hi = float(t_lo), float(t_hi)
    except TypeError as err:  # includes tracers under jit
        raise ValueError(f"{what}: t_lo and t_hi must be concrete numbers, got {t_lo!r}, {t_hi!r}") from err
    if not 0.0 <= t_lo <= t_hi <= 1.0:
        raise ValueError(f"{what}: need 0 <= t_lo <= t_hi <= 1, got t_lo={t_lo}, t_hi={t_hi}")
    ts = np.linspace(t_lo, t_hi, 257)
    values = _divisor_values(interpolant, ts)
    for quantity, (target, formula) in needs.items():
        v = np.where(np.isfinite(values[quantity]), values[quantity], -np.inf)
        if (v > _SINGULAR).all():
            continue
        i = int(np.argmin(v))
        t, sym = float(ts[i]), _SYMBOLS[quantity]
        section = "§10" if interpolant.two_sided else "§3"
        problem = (f"{what}: prediction={prediction!r} on {interpolant.name!r} is singular at t = {t:.4g} "
                   f"({sym}({t:.4g}) = {values[quantity][i]:.3g}): converting {prediction} to {target} needs "
                   f"{sym} > 0 ({formula}; MATH.md {section})")
        if interpolant.two_sided:
            field = "t_max" if t - ts[0] > ts[-1] - t else "t_min"
            raise ValueError(f"{problem}; keep t away from {t:.4g} (the interpolant's {field}, or t_start/t_end)")
        raise ValueError(f"{problem}; {_remedy(interpolant, ts, i, names[0])}")
    return interpolant


def _divisor_values(ip: Interpolant, ts) -> dict[str, np.ndarray]:
    """The quantities conversions divide by, on the grid ``ts`` (|·| where only non-zero matters)."""
    if ip.two_sided:
        (a, b, g), (da, db, _) = (tuple(np.asarray(v, np.float64) for v in jax.vmap(f)(jnp.asarray(ts)))
                                  for f in (ip.coefficients, ip.derivatives))
        return {"gamma": g, "beta": b, "det": np.abs(da * b - a * db)}
    a, s, da, ds = (np.asarray(v, np.float64) for v in jax.vmap(ip.scales)(jnp.asarray(ts)))
    return {"alpha": a, "sigma": s, "D": a * ds - s * da}


def _two_sided_divisors(names: tuple[str, ...], to: str) -> dict[str, str]:
    """``{quantity: formula}``: what a two-sided conversion of ``names`` into ``to`` divides by (MATH.md §10)."""
    need = {}
    if "score" in names:
        need["gamma"] = "the score target −z/γ is unbounded as γ → 0"
    if to in names:
        return need
    if to == "score":
        need["gamma"] = "s = −η/γ"
    elif to == "velocity":
        need["beta"] = "x̂1 = (x − α x̂0 − γ η)/β"
    elif to == "data":
        need["det"] = "x̂0 = (β(b − γ̇η) − β̇(x − γη))/(α̇β − αβ̇)"
    return need


def _remedy(ip: Interpolant, ts, i: int, prediction: str) -> str:
    """How to keep the solver away from ``ts[i]``: a shorter interval, or a velocity model."""
    t = float(ts[i])
    upper = t - ts[0] > ts[-1] - t  # the singular point sits at the high (α → 0) or low (σ → 0) end
    field = "t_max" if upper else "t_min"
    fix = f"pass an interpolant with {field} {'<' if upper else '>'} {t:.4g}"
    for step in (1e-3, 1e-2, 1e-1):
        cand = round(t - step, 3) if upper else round(t + step, 3)
        if 0.0 <= cand <= 1.0:
            a, s, da, ds = (float(v) for v in ip.scales(jnp.float32(cand)))
            checked = {"α": a, "σ": s, "D": a * ds - s * da}
            if all(math.isfinite(v) and v > _SINGULAR for v in checked.values()):
                fix += f", e.g. {_suggest(ip, field, cand)}"
                break
    if prediction != "velocity":
        fix += " (or predict 'velocity', which needs only D > 0)"
    return fix


# ---------------------------------------------------------------------------------
# Presets (MATH.md §2). Each preset is an Interpolant; calling it with keyword
# arguments returns a re-parameterised copy, e.g. ``vp(beta_max=10.0)``.
# ---------------------------------------------------------------------------------


def _zero(t):
    return jnp.zeros_like(jnp.asarray(t, dtype=jnp.result_type(float)))


@dataclasses.dataclass(frozen=True)
class Preset(Interpolant):
    """A preset schedule; ``preset(**params)`` rebuilds it with other parameters."""

    factory: Callable[..., Interpolant] | None = dataclasses.field(default=None, compare=False, repr=False)

    def __call__(self, **params) -> Interpolant:
        return self.factory(**params)


# The default presets are checked by the test suite (tests/test_interpolants.py), not at
# every import; a re-parameterised preset, e.g. ``vp(beta_max=10.)``, is checked when built.


def _preset(factory):
    @functools.lru_cache(maxsize=64)
    def cached(validate: bool, params: tuple):
        ip = factory(**dict(params), validate=False)
        fields = {f.name: getattr(ip, f.name) for f in dataclasses.fields(Interpolant)}
        return Preset(**{**fields, "validate": validate}, factory=build)

    def build(validate: bool = True, **params):
        # One object per parameter set: samplers hash the interpolant, so a rebuilt preset would recompile them.
        try:
            return cached(validate, tuple(sorted(params.items())))
        except TypeError:  # an unhashable value: build it (and let the preset's checks name it)
            return cached.__wrapped__(validate, tuple(sorted(params.items())))

    build.__name__ = factory.__name__
    build.__doc__ = factory.__doc__
    return build


@_preset
def _linear(t_min: float = 0.0, t_max: float = 1.0, validate: bool = True):
    """Flow matching / rectified flow: ``α = 1 − t``, ``σ = t`` (velocity target ``ε − x0``)."""
    return Interpolant(
        lambda t: 1.0 - t, lambda t: t, _zero, name="linear", t_min=t_min, t_max=t_max, validate=validate,
        dalpha=lambda t: -jnp.ones_like(t), dbeta=lambda t: jnp.ones_like(t), dgamma=_zero,
    )


@_preset
def _trig(t_min: float = 0.0, t_max: float = 1.0, validate: bool = True):
    """Cosine flow matching ("GVP"): ``α = cos(πt/2)``, ``σ = sin(πt/2)``."""
    h = math.pi / 2
    return Interpolant(
        lambda t: jnp.cos(h * t), lambda t: jnp.sin(h * t), _zero, name="trig", t_min=t_min, t_max=t_max, validate=validate,
        dalpha=lambda t: -h * jnp.sin(h * t), dbeta=lambda t: h * jnp.cos(h * t), dgamma=_zero,
    )


def _check_range(preset: str, condition: Callable[..., bool], need: str, **got) -> None:
    """Raise a ``ValueError`` naming the preset's parameters unless ``condition(**got)`` holds."""
    try:
        ok = bool(condition(**got))
    except TypeError:  # e.g. a string where a number belongs
        ok = False
    if not ok:
        values = ", ".join(f"{k}={v!r}" for k, v in got.items())
        raise ValueError(f"{preset}: need {need}, got {values}")


def _vp_alpha(preset, beta_min, beta_max):
    _check_range(preset, lambda beta_min, beta_max: 0 < beta_min < beta_max < math.inf,
                 "0 < beta_min < beta_max < inf (noise rates)", beta_min=beta_min, beta_max=beta_max)

    def log_alpha(t):
        return -0.5 * (beta_min * t + 0.5 * (beta_max - beta_min) * t**2)

    def beta_t(t):
        return beta_min + (beta_max - beta_min) * t

    return log_alpha, beta_t


@_preset
def _vp(beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-5, t_max: float = 1.0, validate: bool = True):
    """VP-SDE (Song et al. 2021): ``α = exp(−½B(t))``, ``B = β_min t + ½(β_max−β_min)t²``, ``σ = sqrt(1−α²)``."""
    log_alpha, beta_t = _vp_alpha("vp", beta_min, beta_max)
    alpha = lambda t: jnp.exp(log_alpha(t))  # noqa: E731
    sigma = lambda t: jnp.sqrt(-jnp.expm1(2.0 * log_alpha(t)))  # noqa: E731
    return Interpolant(
        alpha, sigma, _zero, name="vp", t_min=t_min, t_max=t_max, validate=validate,
        dalpha=lambda t: -0.5 * beta_t(t) * alpha(t),
        dbeta=lambda t: 0.5 * beta_t(t) * alpha(t) ** 2 / sigma(t),
        dgamma=_zero,
    )


@_preset
def _subvp(beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-5, t_max: float = 1.0, validate: bool = True):
    """sub-VP (Song et al. 2021): the VP ``α`` with ``σ = 1 − α²``."""
    log_alpha, beta_t = _vp_alpha("subvp", beta_min, beta_max)
    alpha = lambda t: jnp.exp(log_alpha(t))  # noqa: E731
    return Interpolant(
        alpha, lambda t: -jnp.expm1(2.0 * log_alpha(t)), _zero, name="subvp", t_min=t_min, t_max=t_max, validate=validate,
        dalpha=lambda t: -0.5 * beta_t(t) * alpha(t),
        dbeta=lambda t: beta_t(t) * alpha(t) ** 2,
        dgamma=_zero,
    )


@_preset
def _ve(sigma_min: float = 0.01, sigma_max: float = 10.0, t_min: float = 0.0, t_max: float = 1.0, validate: bool = True):
    """VE-SDE / SMLD (Song & Ermon 2019): ``α = 1``, ``σ = σ_min (σ_max/σ_min)^t``.

    Choose ``sigma_max`` about the largest pairwise distance in the data.
    """
    _check_range("ve", lambda sigma_min, sigma_max: 0 < sigma_min < sigma_max < math.inf,
                 "0 < sigma_min < sigma_max < inf", sigma_min=sigma_min, sigma_max=sigma_max)
    rate = math.log(sigma_max / sigma_min)
    sigma = lambda t: sigma_min * jnp.exp(rate * t)  # noqa: E731
    return Interpolant(
        lambda t: jnp.ones_like(jnp.asarray(t, dtype=jnp.result_type(float))), sigma, _zero,
        name="ve", t_min=t_min, t_max=t_max, validate=validate,
        dalpha=_zero, dbeta=lambda t: rate * sigma(t), dgamma=_zero,
    )


def ddpm_alpha_bars(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """``ᾱ_i = ∏_{j≤i}(1 − β_j)`` for ``i = 0..T`` (``ᾱ_0 = 1``), ``β`` linear (Ho et al. 2020)."""
    betas = np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)
    return np.concatenate([[1.0], np.cumprod(1.0 - betas)])


# A time within this fraction of a segment of a grid point t_i = i/T counts as the grid point
# (float32 times from t = 1 downward carry ~1e-7 absolute error, i.e. 1e-4 of a segment at T = 1000).
_KNOT_TOLERANCE = 1e-2


def _knot_slopes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slopes of the piecewise-linear interpolant of ``values`` on ``t_i = i/T``: per segment and at the knots.

    A segment slope is the smooth slope at the segment's midpoint to O(1/T²); at a knot the
    mean of the two adjacent segment slopes (at the ends, their linear extrapolation) is the
    smooth slope there to O(1/T²), where either one-sided slope is off by O(1/T).
    """
    T = values.size - 1
    segment = np.diff(values.astype(np.float64)) * T
    if T == 1:
        return segment, np.repeat(segment, 2)
    knot = np.concatenate([[1.5 * segment[0] - 0.5 * segment[1]], 0.5 * (segment[:-1] + segment[1:]),
                           [1.5 * segment[-1] - 0.5 * segment[-2]]])
    return segment, knot


@_preset
def _ddpm(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
          t_min: float | None = None, t_max: float = 1.0, validate: bool = True):
    """DDPM (Ho et al. 2020): ``α = sqrt(ᾱ_i)`` at ``t_i = i/T``, log ᾱ linear in between.

    The kinks at grid points make adaptive ODE solvers slow: sample with the smooth
    ``vp`` equivalent or with fixed steps on the grid.  ``t_min`` defaults to ``1/T``.
    The closed-form ``α̇, σ̇`` use the segment slope of log ᾱ between grid points and, at a
    grid point (within 1% of a segment), the mean of the two adjacent slopes: the slope of
    the smooth path to O(1/T²), so a fixed-step second-order solver whose steps land on grid
    points stays second order (``jax.jvp`` of the interpolation takes one side's slope,
    wrong by O(1/T)).
    """
    _check_range("ddpm", lambda num_steps: isinstance(num_steps, (int, np.integer)) and not isinstance(num_steps, bool)
                 and num_steps >= 1, "num_steps to be a positive integer (the number T of steps)", num_steps=num_steps)
    _check_range("ddpm", lambda beta_start, beta_end: 0 < beta_start <= beta_end < 1, "0 < beta_start <= beta_end < 1",
                 beta_start=beta_start, beta_end=beta_end)
    T = int(num_steps)
    table = np.log(ddpm_alpha_bars(T, beta_start, beta_end)).astype(np.float32)
    segment, knot = (jnp.asarray(v, jnp.float32) for v in _knot_slopes(table))
    log_abar, grid = jnp.asarray(table), jnp.linspace(0.0, 1.0, T + 1)
    log_alpha_bar = lambda t: jnp.interp(t, grid, log_abar)  # noqa: E731

    def dlog_alpha_bar(t):
        u = jnp.asarray(t, jnp.result_type(float)) * T
        nearest = jnp.round(u)
        on_knot = jnp.abs(u - nearest) <= _KNOT_TOLERANCE
        return jnp.where(on_knot, knot[jnp.clip(nearest, 0, T).astype(jnp.int32)],
                         segment[jnp.clip(jnp.floor(u), 0, T - 1).astype(jnp.int32)])

    alpha = lambda t: jnp.exp(0.5 * log_alpha_bar(t))  # noqa: E731
    sigma = lambda t: jnp.sqrt(-jnp.expm1(log_alpha_bar(t)))  # noqa: E731
    return Interpolant(
        alpha, sigma, _zero, name="ddpm", t_min=1.0 / T if t_min is None else t_min, t_max=t_max,
        num_steps=T, validate=validate,
        dalpha=lambda t: 0.5 * dlog_alpha_bar(t) * alpha(t),
        dbeta=lambda t: -0.5 * dlog_alpha_bar(t) * jnp.exp(log_alpha_bar(t)) / sigma(t),
        dgamma=_zero,
    )


@_preset
def _cosine(s: float = 0.008, floor: float = 1e-5, t_min: float = 1e-5, t_max: float = 1.0, validate: bool = True):
    """Cosine schedule (Nichol & Dhariwal 2021): ``ᾱ = f(t)/f(0)``, ``f = cos²(((t+s)/(1+s))π/2)``.

    The end is floored smoothly in ``α = sqrt(ᾱ)``: ``α ← (1 − c) α + c`` with ``c = sqrt(floor)``,
    so ``ᾱ(0) = 1``, ``ᾱ(1) = floor`` and ``D > 0`` up to ``t = 1``; ``σ = sqrt((1 − α)(1 + α))``
    with ``1 − α = (1 − c)(cos θ_0 − cos θ)/cos θ_0 = 2(1 − c) sin((θ + θ_0)/2) sin((θ − θ_0)/2)/cos θ_0``,
    free of the float32 cancellation of ``1 − α²`` near ``t = 0``.
    """
    _check_range("cosine", lambda s, floor: 0 <= s < math.inf and 0 <= floor < 1, "0 <= s < inf and 0 <= floor < 1",
                 s=s, floor=floor)
    c = math.sqrt(floor)
    theta = lambda t: (t + s) / (1 + s) * math.pi / 2  # noqa: E731
    alpha = lambda t: (1.0 - c) * jnp.cos(theta(t)) / math.cos(theta(0.0)) + c  # noqa: E731
    rate = math.pi / 2 / (1 + s)  # θ(t) − θ_0 = rate·t, computed without the rounding of θ(t)

    def sigma(t):
        half = 0.5 * rate * t
        one_minus_alpha = 2.0 * (1.0 - c) / math.cos(theta(0.0)) * jnp.sin(theta(0.0) + half) * jnp.sin(half)
        return jnp.sqrt(one_minus_alpha * (1.0 + alpha(t)))

    return Interpolant(alpha, sigma, _zero, name="cosine", t_min=t_min, t_max=t_max, validate=validate)


def _gamma_menu(a: float):
    """``{name: (γ, γ̇)}`` for the latent scale of a two-sided path (Albergo, Boffi & Vanden-Eijnden 2023)."""

    def brownian(t):
        return jnp.sqrt(a * t * (1.0 - t))

    return {
        "none": (_zero, _zero),
        "brownian": (brownian, lambda t: a * (1.0 - 2.0 * t) / (2.0 * brownian(t))),
        "quadratic": (lambda t: a * t * (1.0 - t), lambda t: a * (1.0 - 2.0 * t)),
        "sin2": (lambda t: a * jnp.sin(math.pi * t) ** 2, lambda t: a * math.pi * jnp.sin(2.0 * math.pi * t)),
    }


GAMMAS = ("none", "brownian", "quadratic", "sin2")
_BROWNIAN_MARGIN = 1e-3  # γ̇ = a(1 − 2t)/(2γ) is infinite at t = 0, 1: train and sample on [1e-3, 1 − 1e-3]


@_preset
def _bridge(path: str = "linear", gamma: str = "none", a: float = 1.0, t_min: float | None = None,
            t_max: float | None = None, validate: bool = True):
    """Two-sided path between two data sets: ``x_t = α x0 + β x1 + γ z`` (MATH.md §10).

    ``path``: ``linear`` (``α = 1 − t``, ``β = t``) or ``trig`` (``α = cos(πt/2)``, ``β = sin(πt/2)``).
    ``gamma``: ``none`` (``γ = 0``: a deterministic bridge, e.g. OT-CFM), ``brownian``
    (``γ = sqrt(a t(1−t))``: a Brownian bridge of variance ``a``, the SB-CFM path with ``a = σ²``,
    Tong et al. 2023), ``quadratic`` (``γ = a t(1−t)``) or ``sin2`` (``γ = a sin²(πt)``).
    ``t_min``/``t_max`` default to ``[0, 1]``, and to ``[1e-3, 1 − 1e-3]`` for ``brownian`` (where ``γ̇``
    is infinite at the ends).
    """
    _check_range("bridge", lambda path: path in ("linear", "trig"), "path in ('linear', 'trig')", path=path)
    _check_range("bridge", lambda gamma: gamma in GAMMAS, f"gamma in {GAMMAS}", gamma=gamma)
    _check_range("bridge", lambda a: 0 < a < math.inf, "0 < a < inf (the scale of γ)", a=a)
    margin = _BROWNIAN_MARGIN if gamma == "brownian" else 0.0
    h = math.pi / 2
    if path == "linear":
        ab = (lambda t: 1.0 - t, lambda t: t, lambda t: -jnp.ones_like(t), lambda t: jnp.ones_like(t))
    else:
        ab = (lambda t: jnp.cos(h * t), lambda t: jnp.sin(h * t), lambda t: -h * jnp.sin(h * t),
              lambda t: h * jnp.cos(h * t))
    g, dg = _gamma_menu(float(a))[gamma]
    return Interpolant(
        ab[0], ab[1], g, name="bridge", t_min=margin if t_min is None else t_min,
        t_max=1.0 - margin if t_max is None else t_max, two_sided=True, validate=validate,
        dalpha=ab[2], dbeta=ab[3], dgamma=dg,
    )


linear = _linear(validate=False)
trig = _trig(validate=False)
vp = _vp(validate=False)
subvp = _subvp(validate=False)
ve = _ve(validate=False)
ddpm = _ddpm(validate=False)
cosine = _cosine(validate=False)
bridge = _bridge(validate=False)
