"""Joint-embedding predictive architecture (JEPA) world model, with collapse diagnostics (MATH.md §15).

An encoder ``f_θ``, a target encoder ``f_θ̄`` and an action-conditioned predictor ``g_φ`` (LeCun 2022; I-JEPA,
Assran et al. 2023) learn to predict the *embedding* of the next observation, not the observation:

    L(θ, φ) = E ‖g_φ(f_θ(x_t), a_t) − sg[f_θ̄(x_{t+1})]‖²  (+ VICReg terms on z = f_θ(x_t)),

with the target ``θ̄`` an exponential moving average of ``θ`` (BYOL, Grill et al. 2020).  The target can be
switched (:data:`TARGETS`): ``"ema"`` (``f_θ̄``), ``"stopgrad"`` (``sg[f_θ]``, θ̄ = θ: SimSiam's asymmetry
without the average) or ``"online"`` (``f_θ`` with its gradient: no asymmetry, the loss is zero for a constant ``f_θ``
and the embeddings collapse).  The optional VICReg regulariser (Bardes et al. 2022) on a batch ``Z`` ``(B, k)``:

    v(Z) = (1/k) Σ_j max(0, σ₀ − sqrt(Var z_j + ε)),   c(Z) = (1/k) Σ_{i≠j} Cov(Z)_ij².

**The EMA through ``fit``.**  ``θ̄`` lives in ``params["target"]``; :func:`jepa_objective` adds
``R − sg[R]``, ``R = ½‖θ̄ − sg[θ]‖²`` (zero value, gradient ``θ̄ − θ`` for θ̄ only), and :func:`jepa_optimizer`
gives ``θ̄`` ``optax.sgd(1 − γ)``: one step is ``θ̄ ← θ̄ − (1 − γ)(θ̄ − θ) = γ θ̄ + (1 − γ) θ`` with ``θ`` the
encoder *before* that step's update (BYOL averages the updated θ: the average lags one step more here).  The
same device as the VQ-VAE's EMA codebook (both through :func:`genjax.train.ema_partition`).

**Diagnostics.**  Per-dimension embedding std (complete collapse: → 0), effective rank ``exp H(σ/‖σ‖₁)`` of the
embeddings' singular values (Roy & Vetterli 2007), centred (dimensional collapse: → 1) or raw (RankMe, Garrido
et al. 2023: collapse onto a constant → 1), the R² of a least-squares linear probe of the true state, and the
relative h-step prediction error in embedding space.  The rank and the probe are scale-invariant: a shrinking
embedding is seen by the std, an embedding that loses the state by the probe.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp

from .. import _checks
from ..train.ema import ema_partition
from ..train.loop import fit
from ..train.state import TrainState

__all__ = [
    "TARGETS", "JEPA", "init_jepa_params", "vicreg_variance", "vicreg_covariance", "jepa_loss", "jepa_objective",
    "jepa_optimizer", "train_jepa", "embedding_std", "effective_rank", "linear_probe_r2", "rollout",
    "prediction_errors", "TARGET_KEY",
]

TARGETS = ("ema", "stopgrad", "online")
TARGET_KEY = "target"


@dataclasses.dataclass(frozen=True)
class JEPA:
    """A JEPA: per-sample ``encode(params, x) -> z`` ``(k,)`` and ``predict(params, z, a) -> z'`` ``(k,)``.

    ``params`` of the model is ``{"encoder": θ, "predictor": φ}`` (plus ``"target": θ̄`` for ``target="ema"``,
    :func:`init_jepa_params`); ``encode`` gets θ (or θ̄), ``predict`` gets φ.  ``target`` is one of
    :data:`TARGETS`; ``variance_weight`` and ``covariance_weight`` weight VICReg's ``v`` (hinge at
    ``std_target`` σ₀, ``eps`` ε) and ``c`` on the online embeddings of ``x_t``.
    """

    encode: Callable
    predict: Callable
    target: str = "ema"
    variance_weight: float = 0.0
    covariance_weight: float = 0.0
    std_target: float = 1.0
    eps: float = 1e-4

    def __post_init__(self):
        _checks.check_callable(self.encode, "JEPA.encode", "encode(params, x) -> z")
        _checks.check_callable(self.predict, "JEPA.predict", "predict(params, z, a) -> z_next")
        _checks.check_choice(self.target, "JEPA.target", TARGETS)
        for name in ("variance_weight", "covariance_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"JEPA.{name} must be a float >= 0, got {value!r}")
        _checks.check_positive_float(self.std_target, "JEPA.std_target")
        _checks.check_positive_float(self.eps, "JEPA.eps")


def init_jepa_params(jepa: JEPA, encoder_params, predictor_params) -> dict:
    """``{"encoder": θ, "predictor": φ}``, plus ``"target": θ̄ = θ`` (a copy) when ``jepa.target == "ema"``."""
    params = {"encoder": encoder_params, "predictor": predictor_params}
    if jepa.target == "ema":
        params[TARGET_KEY] = jax.tree.map(jnp.array, encoder_params)
    return params


def _check_params(jepa: JEPA, params, where: str):
    need = {"encoder", "predictor"} | ({TARGET_KEY} if jepa.target == "ema" else set())
    if not (isinstance(params, dict) and set(params) == need):
        raise ValueError(f"{where}: params must be a dict with keys {sorted(need)} for target={jepa.target!r} "
                         f"(see init_jepa_params), got {sorted(params) if isinstance(params, dict) else type(params)}")


def _target_params(jepa: JEPA, params):
    """The parameters of the target branch: θ̄ (``"ema"``) or θ."""
    return params[TARGET_KEY] if jepa.target == "ema" else params["encoder"]


def vicreg_variance(z, std_target: float = 1.0, eps: float = 1e-4):
    """``(1/k) Σ_j max(0, σ₀ − sqrt(Var z_j + ε))`` (σ₀ = ``std_target``) of a batch ``z`` ``(B, k)`` (unbiased
    variance)."""
    std = jnp.sqrt(jnp.var(z, axis=0, ddof=1) + eps)
    return jnp.mean(jax.nn.relu(std_target - std))


def vicreg_covariance(z):
    """``(1/k) Σ_{i≠j} C_ij²`` of the unbiased covariance ``C`` of a batch ``z`` ``(B, k)``."""
    zc = z - jnp.mean(z, axis=0)
    cov = zc.T @ zc / (z.shape[0] - 1)
    return (jnp.sum(cov**2) - jnp.sum(jnp.diag(cov) ** 2)) / z.shape[1]


def _check_batch(batch, where: str):
    if not (isinstance(batch, dict) and {"x", "a", "x_next"} <= set(batch)):
        raise ValueError(f"{where}: the batch must be a dict with 'x' (B, ...), 'a' (B, m) and 'x_next' (B, ...), "
                         f"e.g. LinearGaussianSystem.sample_transitions; got {type(batch).__name__}")
    return batch["x"], batch["a"], batch["x_next"]


def jepa_loss(jepa: JEPA, params, batch):
    """``(loss, terms)``: the batch mean of ``‖g_φ(f_θ(x), a) − target(x')‖²`` plus the weighted VICReg terms of
    ``Z = f_θ(x)``, without the EMA term (see :func:`jepa_objective`).  ``target(x')`` is ``sg[f_θ̄(x')]``,
    ``sg[f_θ(x')]`` or ``f_θ(x')`` by ``jepa.target``.  Terms: ``prediction``, ``variance``, ``covariance``,
    ``embedding_std`` (mean per-dimension std of Z)."""
    x, a, x_next = _check_batch(batch, "jepa_loss")
    z = jax.vmap(lambda xi: jepa.encode(params["encoder"], xi))(x)
    target = jax.vmap(lambda xi: jepa.encode(_target_params(jepa, params), xi))(x_next)
    if jepa.target != "online":
        target = jax.lax.stop_gradient(target)
    pred = jax.vmap(lambda zi, ai: jepa.predict(params["predictor"], zi, ai))(z, a)
    if pred.shape != target.shape or pred.ndim != 2:
        raise ValueError(f"jepa_loss: encode must return (k,) and predict (k,) per sample; got predictions "
                         f"{pred.shape[1:]} and targets {target.shape[1:]}")
    prediction = jnp.mean(jnp.sum((pred - target) ** 2, axis=-1))
    variance = vicreg_variance(z, jepa.std_target, jepa.eps)
    covariance = vicreg_covariance(z)
    loss = prediction + jepa.variance_weight * variance + jepa.covariance_weight * covariance
    return loss, {"prediction": prediction, "variance": variance, "covariance": covariance,
                  "embedding_std": jnp.mean(jnp.std(z, axis=0))}


def jepa_objective(jepa: JEPA) -> Callable:
    """``loss_fn(params, batch, key)`` for :func:`genjax.train.fit`: :func:`jepa_loss` plus, for ``"ema"``,
    ``R − sg[R]`` with ``R = ½‖θ̄ − sg[θ]‖²`` (its value leaves the loss unchanged; its gradient ``θ̄ − θ`` reaches
    θ̄ only); train with :func:`jepa_optimizer`.  Aux: the terms of :func:`jepa_loss` and ``ema_residual`` (R).
    ``key`` is unused."""
    if not isinstance(jepa, JEPA):
        raise ValueError(f"jepa must be a JEPA(encode, predict, ...), got {type(jepa).__name__}")

    def loss_fn(params, batch, key):
        _check_params(jepa, params, "jepa_objective")
        loss, terms = jepa_loss(jepa, params, batch)
        if jepa.target == "ema":
            diff = jax.tree.map(lambda t, p: t - jax.lax.stop_gradient(p), params[TARGET_KEY], params["encoder"])
            residual = 0.5 * sum(jnp.sum(d**2) for d in jax.tree.leaves(diff))
            loss = loss + (residual - jax.lax.stop_gradient(residual))
            terms = {**terms, "ema_residual": residual}
        return loss, terms

    return loss_fn


def jepa_optimizer(optimizer, *, decay: float = 0.99, clip_norm: float | None = None):
    """``optax.partition``: ``optax.sgd(1 − decay)`` on ``params["target"]`` (the EMA of :func:`jepa_objective`)
    and ``optimizer`` on the encoder and predictor, after clipping their gradients' global norm to ``clip_norm``
    (if set; never clip with ``fit(clip_norm=…)``, which would clip θ̄'s gradient too and break the EMA)."""
    return ema_partition(optimizer, TARGET_KEY, decay=decay, clip_norm=clip_norm, where="jepa_optimizer")


def train_jepa(jepa: JEPA, encoder_params, predictor_params, data, *, key: jax.Array, optimizer,
               decay: float = 0.99, **fit_kwargs) -> tuple[TrainState, dict]:
    """``fit(jepa_objective(jepa), TrainState.create(init_jepa_params(...), tx, key), data, **fit_kwargs)`` with
    ``tx = jepa_optimizer(optimizer, decay=decay, clip_norm=…)`` for ``"ema"`` (``fit``'s ``clip_norm`` is routed
    there) and ``optimizer`` otherwise.  ``data``: transitions ``{"x", "a", "x_next", …}`` (arrays or a sampler such
    as ``LinearGaussianSystem.sample_transitions``); ``num_steps`` and ``batch_size`` required."""
    objective = jepa_objective(jepa)
    params = init_jepa_params(jepa, encoder_params, predictor_params)
    if jepa.target == "ema":
        optimizer = jepa_optimizer(optimizer, decay=decay, clip_norm=fit_kwargs.pop("clip_norm", None))
    return fit(objective, TrainState.create(params, optimizer, key), data, **fit_kwargs)


# ----------------------------------------------------------------------------- diagnostics


def _as_embeddings(z, where: str):
    z = jnp.asarray(z)
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"{where}: z must be a batch of embeddings (n >= 2, k), got shape {z.shape}")
    return z


@jax.jit
def embedding_std(z):
    """Per-dimension standard deviation ``(k,)`` of embeddings ``z`` ``(n, k)``: all → 0 under complete collapse."""
    return jnp.std(_as_embeddings(z, "embedding_std"), axis=0)


@functools.partial(jax.jit, static_argnames="center")
def effective_rank(z, center: bool = True):
    """``exp(−Σ_i p_i log p_i)``, ``p = σ/‖σ‖₁``, of the singular values σ of ``z`` ``(n, k)`` (Roy & Vetterli
    2007): k for isotropic embeddings, 1 for one direction, 0 if all σ vanish.

    ``center=True`` (default) uses ``z − mean z``: the rank of the embeddings' *variation* (dimensional collapse
    → 1; a collapsed, shrunken cloud keeps whatever shape its remnant has, since the rank is scale-invariant: read
    it beside :func:`embedding_std`).  ``center=False`` is RankMe (Garrido et al. 2023), on the raw embeddings: a
    collapse onto a constant non-zero vector → 1.
    """
    z = _as_embeddings(z, "effective_rank")
    sv = jnp.linalg.svd(z - jnp.mean(z, axis=0) if center else z, compute_uv=False)
    total = jnp.sum(sv)
    p = sv / jnp.where(total > 0, total, 1.0)
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
    return jnp.where(total > 0, jnp.exp(entropy), 0.0)


@jax.jit
def linear_probe_r2(z, s, z_test=None, s_test=None):
    """R² ``= 1 − Σ‖s − ŝ‖² / Σ‖s − s̄‖²`` of the least-squares affine probe ``ŝ = W z + b`` of targets ``s``
    ``(n, d)`` from embeddings ``z`` ``(n, k)``, fitted on ``(z, s)`` and scored on ``(z_test, s_test)`` (default:
    the fitting set).  Variance-weighted over the d targets; 1 when ``s`` is an affine function of ``z``, ≤ 0 for
    uninformative embeddings on held-out data.  The probe is scale-invariant: shrunken embeddings keep their R²."""
    z, s = _as_embeddings(z, "linear_probe_r2"), jnp.asarray(s)
    z_test, s_test = (z, s) if z_test is None else (_as_embeddings(z_test, "linear_probe_r2"), jnp.asarray(s_test))
    if s.shape[0] != z.shape[0] or s_test.shape[0] != z_test.shape[0] or s.ndim != 2 or s_test.shape[1:] != s.shape[1:]:
        raise ValueError(f"linear_probe_r2: s must be (n, d) with the rows of z (and s_test likewise of z_test); got "
                         f"z {z.shape}, s {s.shape}, z_test {z_test.shape}, s_test {s_test.shape}")
    mean_z, mean_s = jnp.mean(z, axis=0), jnp.mean(s, axis=0)
    scale = jnp.std(z, axis=0) + 1e-30  # standardise, so lstsq's relative cutoff does not see the embedding scale
    coef, *_ = jnp.linalg.lstsq((z - mean_z) / scale, s - mean_s)
    pred = ((z_test - mean_z) / scale) @ coef + mean_s
    return 1.0 - jnp.sum((s_test - pred) ** 2) / jnp.sum((s_test - jnp.mean(s_test, axis=0)) ** 2)


def rollout(jepa: JEPA, params, x0, actions):
    """Open-loop predicted embeddings of one sample: ``ẑ_0 = f_θ(x_0)``, ``ẑ_{h+1} = g_φ(ẑ_h, a_h)``; returns
    ``(H, k)`` for ``actions`` ``(H, m)`` (``ẑ_1 … ẑ_H``)."""

    def step(z, a):
        z = jepa.predict(params["predictor"], z, a)
        return z, z

    return jax.lax.scan(step, jepa.encode(params["encoder"], x0), actions)[1]


@functools.partial(jax.jit, static_argnums=0)
def prediction_errors(jepa: JEPA, params, x, actions):
    """Relative h-step errors ``E‖ẑ_h − f_tgt(x_h)‖² / E‖f_tgt(x_h) − E f_tgt(x_h)‖²``, h = 1…H, of
    :func:`rollout` against the target branch (θ̄ or θ) on trajectories ``x`` ``(n, H+1, ...)`` and ``actions``
    ``(n, H, m)``: 0 for perfect prediction, 1 for predicting the mean; normalising by the targets' variance keeps
    collapsed embeddings from scoring 0."""
    x, actions = jnp.asarray(x), jnp.asarray(actions)
    if x.ndim < 3 or actions.ndim != 3 or x.shape[:2] != (actions.shape[0], actions.shape[1] + 1):
        raise ValueError(f"prediction_errors: x must be (n, H+1, ...) and actions (n, H, m); got {x.shape} and "
                         f"{actions.shape}")
    pred = jax.vmap(lambda xi, ai: rollout(jepa, params, xi[0], ai))(x, actions)
    target = jax.vmap(jax.vmap(lambda xi: jepa.encode(_target_params(jepa, params), xi)))(x[:, 1:])
    err = jnp.mean(jnp.sum((pred - target) ** 2, axis=-1), axis=0)
    return err / jnp.sum(jnp.var(target, axis=0), axis=-1)
