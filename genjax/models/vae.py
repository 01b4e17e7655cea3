"""Variational autoencoders (MATH.md §15): VAE, β-VAE, IWAE, VQ-VAE and FSQ.

**VAE** (Kingma & Welling 2014).  An encoder ``q(z|x) = N(m(x), diag e^{v(x)})`` and a decoder
``p(x|z)`` with the prior ``p(z) = N(0, I)``:

    ELBO(x) = E_q log p(x|z) − KL(q(z|x) ‖ p(z)) ≤ log p(x),

one reparameterised draw ``z = m + e^{v/2} ε`` for the first term and the closed-form KL
(:func:`gaussian_kl`).  β-VAE (Higgins et al. 2017) maximises ``E_q log p(x|z) − β KL``.
IWAE (Burda et al. 2016): ``L_K = E log (1/K) Σ_k p(x, z_k)/q(z_k|x)`` (a logsumexp of K
log-weights per sample) with ``ELBO = L_1 ≤ L_K ≤ L_{K+1} ≤ log p(x)``.

**Decoders.**  ``decode(params, z) -> (mean, log_var)`` of a Gaussian over the event shape, read as

* ``"gaussian"``: a density of continuous x (learned or fixed variance, :class:`genjax.nets.vae.GaussianDecoder`);
* ``"discretized"``: a distribution over the ``L`` levels of integer data, level ``k`` getting the
  Gaussian's mass on its bin ``[2k/L − 1, 2(k + 1)/L − 1)`` of ``[−1, 1)`` (the bins of
  :func:`genjax.data.images.to_symmetric`), with the outer edges moved to ``∓∞`` so the L
  probabilities sum to 1 (:func:`discretized_gaussian_log_prob`).

The digits use ``"discretized"``: its ELBO bounds the *discrete* log-likelihood, so bits/dim are
``−ELBO/(D ln 2)`` with no dequantisation; the open end bins hold the mass of the many saturated
pixels (levels 0 and 16) that a density would spread outside ``[−1, 1)``; and it needs two outputs
per pixel where a categorical over 17 levels needs 17 and ignores their order.  The encoder sees
the bin centres ``to_symmetric(x, L)``.  A ``"gaussian"`` decoder with ``levels`` scores
dequantised data in ``[−1, 1)`` (MATH.md §17): bits/dim ``−(ELBO + D log(2/L))/(D ln 2)``.

**VQ-VAE** (van den Oord et al. 2017): nearest-code quantiser, straight-through
``z_q = z_e + sg[e − z_e]``, loss ``−log p(x|z_q) + ‖sg[z_e] − e‖² + β ‖z_e − sg[e]‖²``
(β = 0.25), or the codebook as exponential moving averages of cluster counts and sums
(:func:`ema_codebook_update`).  Through :func:`genjax.train.fit` the EMA runs as gradient descent: an EMA
``p ← γ p + (1 − γ) t`` is one SGD step of rate ``1 − γ`` on ``½‖p − sg[t]‖²``, so the statistics live in
``params["codebook_ema"]`` (:func:`init_vqvae_ema_params`), :func:`vqvae_ema_objective` adds those quadratic
terms and :func:`vqvae_ema_optimizer` gives the statistics ``optax.sgd(1 − γ)``.

**FSQ** (Mentzer et al. 2023): each channel bounded to L levels and rounded with a straight-through gradient
(:func:`fsq_quantize`), an implicit codebook of ``Π L_i`` codes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks
from ..data.images import from_symmetric, to_symmetric
from ..likelihood import bits_per_dim
from ..stats.gaussian import gaussian_log_prob
from ..train.interpolant import split_batch
from ..train.ema import ema_partition
from ..train.loop import fit
from ..train.state import TrainState
from .diffusion_bound import discretized_gaussian_log_prob as discretized_levels_log_prob

__all__ = [
    "DECODERS", "VAE", "ELBO", "VQVAE", "VQEMAState",
    "reparameterize", "gaussian_kl", "discretized_gaussian_log_prob", "decoder_log_prob",
    "vae_elbo", "iwae_log_weights", "iwae_bound", "vae_bits_per_dim", "vae_objective", "train_vae", "sample_vae",
    "straight_through", "quantize", "vq_losses", "vqvae_loss", "vqvae_objective", "train_vqvae",
    "init_ema_codebook", "ema_codebook_update", "ema_codebook", "code_perplexity",
    "VQ_EMA_KEY", "init_vqvae_ema_params", "vqvae_ema_objective", "vqvae_ema_optimizer",
    "round_ste", "fsq_bound", "fsq_quantize", "fsq_codebook_size", "fsq_codes_to_indices", "fsq_indices_to_codes",
]

DECODERS = ("gaussian", "discretized")
_LOG_2PI = math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------- decoders


def _check_decoder(decoder: str, levels, where: str):
    _checks.check_choice(decoder, f"{where}.decoder", DECODERS)
    if levels is not None and (_checks.check_positive_int(levels, f"{where}.levels") < 2):
        raise ValueError(f"{where}.levels must be >= 2, got {levels}")
    if decoder == "discretized" and levels is None:
        raise ValueError(f"{where}: decoder='discretized' needs levels (the number L of data levels, e.g. 17)")


def discretized_gaussian_log_prob(x, mean, log_var, levels: int):
    """``Σ_d log P(x_d)``, ``P(k) = Φ((e_{k+1} − μ)/σ) − Φ((e_k − μ)/σ)``, ``e_k = 2k/L − 1``, ``e_0 = −∞``,
    ``e_L = +∞``: the discretised Gaussian over L levels (MATH.md §15).

    ``x`` holds integer levels ``0..L−1`` (any shape); ``mean`` and ``log_var = log σ²`` broadcast
    against it.  The bins are those of the centres ``(2k + 1)/L − 1``
    (:func:`genjax.models.diffusion_bound.discretized_gaussian_log_prob` with ``level_grid="centres"``,
    which takes each difference of CDFs in its smaller tail); the probabilities sum to 1 over levels.
    """
    mean = jnp.asarray(mean)
    centres = (2.0 * jnp.asarray(x).astype(mean.dtype) + 1.0) / levels - 1.0
    shape = jnp.broadcast_shapes(centres.shape, mean.shape, jnp.shape(log_var))
    std = jnp.broadcast_to(jnp.exp(0.5 * jnp.asarray(log_var)), shape)
    return discretized_levels_log_prob(jnp.broadcast_to(centres, shape), jnp.broadcast_to(mean, shape), std, levels,
                                       "centres")


def decoder_log_prob(decoder: str, levels, x, mean, log_var):
    """``log p(x|z)`` of one sample for a decoder output ``(mean, log_var)``: a diagonal Gaussian density
    (``"gaussian"``) or :func:`discretized_gaussian_log_prob` (``"discretized"``)."""
    if decoder == "discretized":
        return discretized_gaussian_log_prob(x, mean, log_var, levels)
    x = jnp.ravel(x)
    var = jnp.broadcast_to(jnp.exp(jnp.asarray(log_var)), jnp.shape(mean)).ravel()
    return gaussian_log_prob(x, jnp.ravel(mean), var)


def _encoder_input(decoder: str, levels, x):
    """The bin centres ``to_symmetric(x, L)`` for integer levels (``"discretized"``), else ``x``."""
    return to_symmetric(x, levels) if decoder == "discretized" else x


def _decoder_draw(decoder: str, levels, key, mean, log_var):
    """A draw from ``p(x|z)``: ``y ~ N(mean, e^{log_var})``, binned to levels for ``"discretized"`` (the ends
    open: :func:`from_symmetric` clips to ``0`` and ``L − 1``)."""
    y = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, jnp.shape(mean), jnp.result_type(mean))
    return from_symmetric(y, levels) if decoder == "discretized" else y


def vae_bits_per_dim(decoder: str, levels, bound, num_dims: int):
    """Bits/dim of a bound (nats): ``−bound/(D ln 2)`` for ``"discretized"`` (a discrete likelihood); for
    ``"gaussian"`` with ``levels`` on data in ``[−1, 1)`` MATH.md §17's ``−(bound + D log(2/L))/(D ln 2)``;
    ``None`` for ``"gaussian"`` without ``levels``."""
    if decoder == "discretized":
        return -jnp.asarray(bound) / (num_dims * math.log(2.0))
    if levels is None:
        return None
    return bits_per_dim(bound, num_dims, num_bins=levels, data_range=2.0)


# ----------------------------------------------------------------------------- VAE


@dataclasses.dataclass(frozen=True)
class VAE:
    """A VAE: per-sample ``encode(params, x) -> (mean, log_var)`` of ``q(z|x)``, each ``(q,)``, and
    ``decode(params, z) -> (mean, log_var)`` of ``p(x|z)`` read as ``decoder`` (:data:`DECODERS`) with
    ``levels`` L (required for ``"discretized"``, optional for ``"gaussian"``, see the module doc).

    ``params`` is one pytree given to both (e.g. ``{"encoder": …, "decoder": …}``); the prior is N(0, I).
    """

    encode: Callable
    decode: Callable
    decoder: str = "gaussian"
    levels: int | None = None

    def __post_init__(self):
        _checks.check_callable(self.encode, "VAE.encode", "encode(params, x) -> (mean, log_var)")
        _checks.check_callable(self.decode, "VAE.decode", "decode(params, z) -> (mean, log_var)")
        _check_decoder(self.decoder, self.levels, "VAE")

    def posterior(self, params, x):
        """``(mean, log_var)`` of ``q(z|x)`` for one sample ``x`` (integer levels for ``"discretized"``)."""
        mean, log_var = self.encode(params, _encoder_input(self.decoder, self.levels, x))
        if jnp.ndim(mean) != 1 or jnp.shape(log_var) != jnp.shape(mean):
            raise ValueError(f"VAE.encode must return (mean, log_var) of shape (latent_dim,) each per sample, got "
                             f"shapes {jnp.shape(mean)} and {jnp.shape(log_var)}")
        return mean, log_var

    def log_likelihood(self, params, x, z):
        """``log p(x|z)`` for one sample."""
        mean, log_var = self.decode(params, z)
        return decoder_log_prob(self.decoder, self.levels, x, mean, log_var)


class ELBO(NamedTuple):
    """Per-sample ELBO terms in nats: ``elbo = log_likelihood − kl`` (one draw of ``log p(x|z)``, the exact KL)."""

    elbo: jax.Array
    log_likelihood: jax.Array
    kl: jax.Array


def reparameterize(key, mean, log_var):
    """``z = mean + exp(log_var/2) ε``, ``ε ~ N(0, I)``: a draw from ``N(mean, diag e^{log_var})`` differentiable
    in ``(mean, log_var)`` (Kingma & Welling 2014)."""
    return mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, jnp.shape(mean), jnp.result_type(mean))


def gaussian_kl(mean, log_var):
    """``KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ_j (μ_j² + σ_j² − 1 − log σ_j²)`` (MATH.md §15's Gaussian KL with Σ2 = I)."""
    return 0.5 * jnp.sum(mean**2 + jnp.exp(log_var) - 1.0 - log_var)


def vae_elbo(vae: VAE, params, x, key) -> ELBO:
    """The ELBO of one sample ``x``: ``log p(x|z) − KL(q(z|x) ‖ N(0, I))`` with ``z`` reparameterised from ``key``."""
    mean, log_var = vae.posterior(params, x)
    log_lik = vae.log_likelihood(params, x, reparameterize(key, mean, log_var))
    kl = gaussian_kl(mean, log_var)
    return ELBO(log_lik - kl, log_lik, kl)


def iwae_log_weights(vae: VAE, params, x, key, num_samples: int):
    """``log w_k = log p(x|z_k) + log p(z_k) − log q(z_k|x)``, ``z_k ~ q(z|x)``, ``k = 1…K``: shape ``(K,)``."""
    mean, log_var = vae.posterior(params, x)
    eps = jax.random.normal(key, (num_samples, mean.shape[0]), jnp.result_type(mean))
    z = mean + jnp.exp(0.5 * log_var) * eps
    log_q = -0.5 * jnp.sum(eps**2 + log_var + _LOG_2PI, axis=-1)
    log_prior = -0.5 * jnp.sum(z**2 + _LOG_2PI, axis=-1)
    return jax.vmap(lambda zk: vae.log_likelihood(params, x, zk))(z) + log_prior - log_q


def iwae_bound(vae: VAE, params, x, key, num_samples: int):
    """One draw of ``L_K = log (1/K) Σ_k w_k`` for one sample (Burda et al. 2016): a logsumexp of
    :func:`iwae_log_weights`.  Its expectation rises with K to ``log p(x)``; K = 1 is the ELBO with a
    sampled KL."""
    num_samples = _checks.check_positive_int(num_samples, "num_samples")
    return jax.nn.logsumexp(iwae_log_weights(vae, params, x, key, num_samples)) - math.log(num_samples)


def _unconditional(batch, where: str):
    x, x1, c = split_batch(batch)
    if x1 is not None or c is not None:
        raise ValueError(f"{where}: the batch must be the data x (an array or {{'x0': x}}); x1 and c are not used")
    return x


def vae_objective(vae: VAE, *, beta: float = 1.0, num_samples: int = 1) -> Callable:
    """``loss_fn(params, batch, key)`` for :func:`genjax.train.fit`: minus the batch mean of the β-ELBO
    ``log p(x|z) − β KL`` (``num_samples = 1``) or of the IWAE bound ``L_K`` (``num_samples = K > 1``, β = 1).

    ``batch``: the data x or ``{"x0": x}``.  Aux: ``bound`` (the ELBO, β = 1, or ``L_K``, nats per
    sample), ``bits_per_dim`` of it (when defined, :func:`vae_bits_per_dim`) and, for K = 1,
    ``log_likelihood`` and ``kl``.
    """
    if not isinstance(vae, VAE):
        raise ValueError(f"vae must be a VAE(encode, decode, decoder, levels), got {type(vae).__name__}")
    beta = _checks.check_positive_float(beta, "beta")
    num_samples = _checks.check_positive_int(num_samples, "num_samples")
    if num_samples > 1 and beta != 1.0:
        raise ValueError(f"beta={beta} weights the KL of the ELBO; the IWAE bound (num_samples={num_samples}) "
                         "has no separate KL term, so beta must be 1")

    def loss_fn(params, batch, key):
        x = _unconditional(batch, "vae_objective")
        keys = jax.random.split(key, x.shape[0])
        num_dims = math.prod(x.shape[1:])
        if num_samples == 1:
            terms = jax.vmap(lambda xi, k: vae_elbo(vae, params, xi, k))(x, keys)
            bound = jnp.mean(terms.elbo)
            loss = -jnp.mean(terms.log_likelihood - beta * terms.kl)
            aux = {"bound": bound, "log_likelihood": jnp.mean(terms.log_likelihood), "kl": jnp.mean(terms.kl)}
        else:
            bound = jnp.mean(jax.vmap(lambda xi, k: iwae_bound(vae, params, xi, k, num_samples))(x, keys))
            loss, aux = -bound, {"bound": bound}
        bpd = vae_bits_per_dim(vae.decoder, vae.levels, bound, num_dims)
        return loss, aux if bpd is None else {**aux, "bits_per_dim": bpd}

    return loss_fn


def train_vae(vae: VAE, params: Any, data, *, key: jax.Array, optimizer, beta: float = 1.0, num_samples: int = 1,
              **fit_kwargs) -> tuple[TrainState, dict]:
    """``fit(vae_objective(vae, beta=beta, num_samples=num_samples), TrainState.create(params, optimizer, key), data,
    **fit_kwargs)`` (``num_steps`` and ``batch_size`` required).  Integer level arrays (``"discretized"``) are
    valid data; ``history["bound"]`` and ``history["bits_per_dim"]`` track the bound."""
    loss_fn = vae_objective(vae, beta=beta, num_samples=num_samples)
    return fit(loss_fn, TrainState.create(params, optimizer, key), data, **fit_kwargs)


def sample_vae(vae: VAE, params, key, num: int, latent_dim: int, *, mean: bool = False):
    """``(x, z)``: ``num`` draws ``z ~ N(0, I_q)`` and ``x ~ p(x|z)`` (integer levels for ``"discretized"``), or
    the decoder means ``x = mean(z)`` with ``mean=True``."""
    num = _checks.check_positive_int(num, "num")
    latent_dim = _checks.check_positive_int(latent_dim, "latent_dim")
    return _sample_vae(vae, params, key, num, latent_dim, bool(mean))


@functools.partial(jax.jit, static_argnums=(0, 3, 4, 5))
def _sample_vae(vae, params, key, num, latent_dim, mean):
    z_key, x_key = jax.random.split(key)
    z = jax.random.normal(z_key, (num, latent_dim))

    def one(z, k):
        out_mean, log_var = vae.decode(params, z)
        return out_mean if mean else _decoder_draw(vae.decoder, vae.levels, k, out_mean, log_var)

    return jax.vmap(one)(z, jax.random.split(x_key, num)), z


# ----------------------------------------------------------------------------- VQ-VAE


def straight_through(z_e, e):
    """``z_q = z_e + sg[e − z_e]``: the value of ``e``, the gradient of ``z_e`` (identity Jacobian; none for ``e``)."""
    return z_e + jax.lax.stop_gradient(e - z_e)


def quantize(z_e, codebook):
    """Nearest-code quantisation of ``z_e`` ``(..., D)`` with ``codebook`` ``(K, D)``: ``(z_q, codes, e)``.

    ``codes = argmin_k ‖z_e − e_k‖²`` (int32, shape ``z_e.shape[:-1]``), ``e = codebook[codes]`` and
    ``z_q = straight_through(z_e, e)``.
    """
    codebook = jnp.asarray(codebook)
    if codebook.ndim != 2 or jnp.shape(z_e)[-1:] != codebook.shape[1:]:
        raise ValueError(f"quantize: codebook must be (K, D) with D the last axis of z_e; got codebook "
                         f"{codebook.shape} and z_e {jnp.shape(z_e)}")
    distances = (jnp.sum(z_e**2, -1, keepdims=True) - 2.0 * z_e @ codebook.T + jnp.sum(codebook**2, -1))
    codes = jnp.argmin(distances, axis=-1).astype(jnp.int32)
    e = codebook[codes]
    return straight_through(z_e, e), codes, e


def vq_losses(z_e, e):
    """``(codebook, commitment) = (‖sg[z_e] − e‖², ‖z_e − sg[e]‖²)`` summed over one sample: equal values, the
    first moves only the codes, the second only the encoder (van den Oord et al. 2017, eq. 3)."""
    sg = jax.lax.stop_gradient
    return jnp.sum((sg(z_e) - e) ** 2), jnp.sum((z_e - sg(e)) ** 2)


@dataclasses.dataclass(frozen=True)
class VQVAE:
    """A VQ-VAE: per-sample ``encode(params, x) -> z_e`` ``(..., D)`` and ``decode(params, z_q) -> (mean,
    log_var)`` read as ``decoder`` with ``levels``, as for :class:`VAE`; ``beta`` weights the commitment loss."""

    encode: Callable
    decode: Callable
    decoder: str = "gaussian"
    levels: int | None = None
    beta: float = 0.25

    def __post_init__(self):
        _checks.check_callable(self.encode, "VQVAE.encode", "encode(params, x) -> z_e")
        _checks.check_callable(self.decode, "VQVAE.decode", "decode(params, z_q) -> (mean, log_var)")
        _check_decoder(self.decoder, self.levels, "VQVAE")
        if not (isinstance(self.beta, (int, float)) and self.beta >= 0):
            raise ValueError(f"VQVAE.beta must be a float >= 0, got {self.beta!r}")


def vqvae_loss(vq: VQVAE, params, x, codebook, *, codebook_loss: bool = True):
    """One sample's loss ``−log p(x|z_q) + ‖sg[z_e] − e‖² + β ‖z_e − sg[e]‖²`` and its terms.

    ``codebook_loss=False`` drops the codebook term (the codes then follow :func:`ema_codebook_update`).
    Returns ``(loss, {"nll", "commitment", "codes", "z_e"})``.
    """
    z_e = vq.encode(params, _encoder_input(vq.decoder, vq.levels, x))
    z_q, codes, e = quantize(z_e, codebook)
    mean, log_var = vq.decode(params, z_q)
    nll = -decoder_log_prob(vq.decoder, vq.levels, x, mean, log_var)
    to_codes, commitment = vq_losses(z_e, e)
    loss = nll + vq.beta * commitment + (to_codes if codebook_loss else 0.0)
    return loss, {"nll": nll, "commitment": commitment, "codes": codes, "z_e": z_e}


def code_perplexity(codes, num_codes: int):
    """``(perplexity, usage)`` of a batch of codes: ``exp(−Σ_k p̄_k log p̄_k)`` of the code frequencies ``p̄``
    (``num_codes`` for uniform use, 1 for one code) and the fraction of codes used at least once."""
    counts = jnp.bincount(jnp.ravel(codes), length=num_codes)
    freq = counts / jnp.sum(counts)
    entropy = -jnp.sum(jnp.where(freq > 0, freq * jnp.log(jnp.where(freq > 0, freq, 1.0)), 0.0))
    return jnp.exp(entropy), jnp.mean(counts > 0)


def _vq_aux(vq: VQVAE, x, terms, num_codes: int) -> dict:
    """The aux of a VQ-VAE objective (see :func:`vqvae_objective`) from :func:`vqvae_loss`'s batched terms."""
    perplexity, usage = code_perplexity(terms["codes"], num_codes)
    nll = jnp.mean(terms["nll"])
    aux = {"nll": nll, "commitment": jnp.mean(terms["commitment"]), "perplexity": perplexity, "usage": usage}
    rate = math.prod(terms["codes"].shape[1:]) * math.log(num_codes)
    bpd = vae_bits_per_dim(vq.decoder, vq.levels, -nll - rate, math.prod(x.shape[1:]))
    return aux if bpd is None else {**aux, "bits_per_dim": bpd}


def _check_vqvae(vq, where: str):
    if not isinstance(vq, VQVAE):
        raise ValueError(f"{where}: vq must be a VQVAE(encode, decode, decoder, levels, beta), got {type(vq).__name__}")


def vqvae_objective(vq: VQVAE) -> Callable:
    """``loss_fn(params, batch, key)`` for :func:`genjax.train.fit`: the batch mean of :func:`vqvae_loss` with the
    codebook ``params["codebook"]`` ``(K, D)`` learned by gradient (the rest of ``params`` goes to encode/decode).

    Aux: ``nll`` ``−log p(x|z_q)`` (nats per sample), ``commitment``, code ``perplexity`` and ``usage`` over the
    batch, and (when defined, :func:`vae_bits_per_dim`) ``bits_per_dim`` of the bound
    ``log p(x) ≥ log p(x|z_q) − M log K`` for a uniform prior over the K codes at each of the M latent positions
    (the KL of the deterministic ``q(z|x)``; van den Oord et al. 2017, §3.1).  ``key`` is unused.
    """
    _check_vqvae(vq, "vqvae_objective")

    def loss_fn(params, batch, key):
        if not (isinstance(params, dict) and "codebook" in params):
            raise ValueError("vqvae_objective: params must be a dict holding the codebook (K, D) under 'codebook'")
        x = _unconditional(batch, "vqvae_objective")
        codebook = params["codebook"]
        losses, terms = jax.vmap(lambda xi: vqvae_loss(vq, params, xi, codebook))(x)
        return jnp.mean(losses), _vq_aux(vq, x, terms, codebook.shape[0])

    return loss_fn


class VQEMAState(NamedTuple):
    """An EMA codebook: ``codebook`` ``(K, D)``, smoothed ``cluster_size`` ``N_k`` ``(K,)`` and ``embed_sum`` ``m_k``
    ``(K, D)``, with ``codebook = m_k / Ñ_k`` (Ñ: Laplace-smoothed N)."""

    codebook: jax.Array
    cluster_size: jax.Array
    embed_sum: jax.Array


def init_ema_codebook(codebook) -> VQEMAState:
    """An EMA state whose codes start at ``codebook``: one pseudo-count per code, ``N_k = 1``, ``m_k = e_k``."""
    codebook = jnp.asarray(codebook)
    if codebook.ndim != 2:
        raise ValueError(f"init_ema_codebook: codebook must be (K, D), got shape {codebook.shape}")
    return VQEMAState(codebook, jnp.ones(codebook.shape[0], codebook.dtype), codebook)


def _check_ema(decay, epsilon, where: str):
    if decay is not None and not 0.0 <= decay < 1.0:
        raise ValueError(f"{where}: decay must lie in [0, 1), got {decay!r}")
    if epsilon is not None and not epsilon >= 0.0:
        raise ValueError(f"{where}: epsilon must be >= 0, got {epsilon!r}")


def _cluster_stats(z_e, codes, num_codes: int):
    """The batch statistics ``(n_k, s_k)``: code counts ``(K,)`` and sums ``Σ_{i: code_i = k} sg[z_e,i]`` ``(K, D)``."""
    flat = jax.lax.stop_gradient(jnp.reshape(z_e, (-1, jnp.shape(z_e)[-1])))
    one_hot = jax.nn.one_hot(jnp.ravel(codes), num_codes, dtype=flat.dtype)
    return jnp.sum(one_hot, axis=0), one_hot.T @ flat


def ema_codebook(cluster_size, embed_sum, *, epsilon: float = 1e-5):
    """``e_k = m_k / Ñ_k``, ``Ñ_k = (N_k + ε) / (Σ_j N_j + K ε) · Σ_j N_j``: the codebook of the EMA statistics
    ``N_k`` ``(K,)`` and ``m_k`` ``(K, D)`` with Laplace smoothing ε (van den Oord et al. 2017, App. A.1)."""
    total = jnp.sum(cluster_size)
    smoothed = (cluster_size + epsilon) / (total + cluster_size.shape[0] * epsilon) * total
    return embed_sum / smoothed[:, None]


def ema_codebook_update(state: VQEMAState, z_e, codes, *, decay: float = 0.99, epsilon: float = 1e-5) -> VQEMAState:
    """One EMA codebook step (van den Oord et al. 2017, App. A.1) on encoder outputs ``z_e`` ``(..., D)`` and their
    ``codes`` ``(...)``:

        N_k ← γ N_k + (1 − γ) n_k,   m_k ← γ m_k + (1 − γ) Σ_{i: code_i = k} z_e,i,
        Ñ_k = (N_k + ε) / (Σ_j N_j + K ε) · Σ_j N_j,   e_k = m_k / Ñ_k

    (``γ = decay``; ε: Laplace smoothing, keeps unused codes finite; ``n_k`` and the sums are over the whole
    batch, not means).  With ``γ = 0`` and ``ε = 0`` it is one k-means (Lloyd) step: each used code moves to the
    mean of its cluster, the fixed point of the update.  A pure function: carry the state beside the training
    state (``z_e`` under ``stop_gradient``), or train through ``fit`` with :func:`vqvae_ema_objective`.
    """
    _check_ema(decay, epsilon, "ema_codebook_update")
    counts, sums = _cluster_stats(z_e, codes, state.codebook.shape[0])
    cluster_size = decay * state.cluster_size + (1.0 - decay) * counts
    embed_sum = decay * state.embed_sum + (1.0 - decay) * sums
    return VQEMAState(ema_codebook(cluster_size, embed_sum, epsilon=epsilon), cluster_size, embed_sum)


VQ_EMA_KEY = "codebook_ema"


def init_vqvae_ema_params(params: dict) -> dict:
    """``params`` with its ``"codebook"`` ``(K, D)`` replaced by the EMA statistics of :func:`init_ema_codebook`,
    ``params["codebook_ema"] = {"cluster_size": N_k = 1, "embed_sum": m_k = e_k}`` (so the codebook starts at
    ``e_k`` for any ε): the parameters of :func:`vqvae_ema_objective`."""
    if not (isinstance(params, dict) and "codebook" in params and VQ_EMA_KEY not in params):
        raise ValueError(f"init_vqvae_ema_params: params must be a dict holding the codebook (K, D) under 'codebook' "
                         f"and nothing under {VQ_EMA_KEY!r}")
    state = init_ema_codebook(params["codebook"])
    rest = {k: v for k, v in params.items() if k != "codebook"}
    return {**rest, VQ_EMA_KEY: {"cluster_size": state.cluster_size, "embed_sum": state.embed_sum}}


def vqvae_ema_objective(vq: VQVAE, *, epsilon: float = 1e-5) -> Callable:
    """``loss_fn(params, batch, key)`` for :func:`genjax.train.fit` with the EMA codebook (MATH.md §15) of
    :func:`ema_codebook_update` kept in ``params["codebook_ema"]`` (:func:`init_vqvae_ema_params`); train it with
    :func:`vqvae_ema_optimizer`.

    The codebook is ``e = sg[ema_codebook(N, m, ε)]``; the encoder and decoder get the gradient of the batch mean of
    ``−log p(x|z_q) + β ‖z_e − sg[e]‖²`` (no codebook term) and the statistics that of

        R = ½ Σ_k (N_k − sg[n_k])² + ½ Σ_k ‖m_k − sg[s_k]‖²,   s_k = Σ_{i: code_i = k} z_e,i

    (batch counts and sums over all B·M latent vectors, as in :func:`ema_codebook_update`): one SGD step of rate
    ``1 − γ`` on R is the EMA ``N ← γ N + (1 − γ) n``, ``m ← γ m + (1 − γ) s``.  The returned loss is
    ``mean(nll + β commitment) + R − sg[R]``, whose value leaves R out; aux adds ``ema_residual`` (R) to those of
    :func:`vqvae_objective`.  ``key`` is unused.
    """
    _check_vqvae(vq, "vqvae_ema_objective")
    _check_ema(None, epsilon, "vqvae_ema_objective")

    def loss_fn(params, batch, key):
        stats = params.get(VQ_EMA_KEY) if isinstance(params, dict) else None
        if not (isinstance(stats, dict) and set(stats) == {"cluster_size", "embed_sum"}):
            raise ValueError(f"vqvae_ema_objective: params must be a dict holding {{'cluster_size': (K,), "
                             f"'embed_sum': (K, D)}} under {VQ_EMA_KEY!r} (see init_vqvae_ema_params)")
        x = _unconditional(batch, "vqvae_ema_objective")
        size, embed_sum = stats["cluster_size"], stats["embed_sum"]
        codebook = jax.lax.stop_gradient(ema_codebook(size, embed_sum, epsilon=epsilon))
        losses, terms = jax.vmap(lambda xi: vqvae_loss(vq, params, xi, codebook, codebook_loss=False))(x)
        counts, sums = _cluster_stats(terms["z_e"], terms["codes"], codebook.shape[0])
        residual = 0.5 * jnp.sum((size - counts) ** 2) + 0.5 * jnp.sum((embed_sum - sums) ** 2)
        loss = jnp.mean(losses) + (residual - jax.lax.stop_gradient(residual))
        return loss, {**_vq_aux(vq, x, terms, codebook.shape[0]), "ema_residual": residual}

    return loss_fn


def vqvae_ema_optimizer(optimizer, *, decay: float = 0.99, clip_norm: float | None = None):
    """``optax.partition``: ``optax.sgd(1 − decay)`` on ``params["codebook_ema"]`` (the EMA of
    :func:`vqvae_ema_objective`) and ``optimizer`` on every other entry of the params dict, after clipping their
    gradients' global norm to ``clip_norm`` (if set).

    Clip here, never with ``fit(clip_norm=…)``: that clips all gradients together, the statistics' included,
    which breaks the EMA identity (``train_vqvae(codebook="ema")`` routes its ``clip_norm`` here).  ``fit``'s
    ``grad_norm`` likewise includes the statistics' gradients ``N − n`` and ``m − s``.
    """
    return ema_partition(optimizer, VQ_EMA_KEY, decay=decay, clip_norm=clip_norm, where="vqvae_ema_optimizer")


def train_vqvae(vq: VQVAE, params: Any, data, *, key: jax.Array, optimizer, codebook: str = "gradient",
                decay: float = 0.99, epsilon: float = 1e-5, **fit_kwargs) -> tuple[TrainState, dict]:
    """Train a VQ-VAE with :func:`genjax.train.fit` (``num_steps`` and ``batch_size`` required); ``params`` holds the
    initial codebook ``(K, D)`` under ``"codebook"``.

    * ``codebook="gradient"``: ``fit(vqvae_objective(vq), TrainState.create(params, optimizer, key), data, …)``;
    * ``codebook="ema"``: the EMA codebook (``decay`` γ, Laplace ``epsilon``), ``fit`` on
      :func:`vqvae_ema_objective` with :func:`init_vqvae_ema_params` and :func:`vqvae_ema_optimizer`, which takes
      ``clip_norm`` (clipping the encoder and decoder gradients only).  The codebook of the result is
      ``ema_codebook(**state.params["codebook_ema"], epsilon=epsilon)``.  ``state.ema_params`` (fit's Polyak
      average) averages the statistics too: its codebook ``m̄_k / Ñ̄_k`` is still a weighted mean of past
      encoder outputs, over a longer window (harmless for the averaged encoder; ``state.params`` holds the
      paper's codebook).
    """
    _checks.check_choice(codebook, "codebook", ("gradient", "ema"))
    if codebook == "gradient":
        return fit(vqvae_objective(vq), TrainState.create(params, optimizer, key), data, **fit_kwargs)
    tx = vqvae_ema_optimizer(optimizer, decay=decay, clip_norm=fit_kwargs.pop("clip_norm", None))
    state = TrainState.create(init_vqvae_ema_params(params), tx, key)
    return fit(vqvae_ema_objective(vq, epsilon=epsilon), state, data, **fit_kwargs)


# ----------------------------------------------------------------------------- FSQ


def round_ste(y):
    """``y + sg(round(y) − y)``: rounds, with the identity as gradient."""
    return y + jax.lax.stop_gradient(jnp.round(y) - y)


def _fsq_levels(levels) -> np.ndarray:
    levels = np.asarray(levels)
    if levels.ndim != 1 or levels.size < 1 or not np.issubdtype(levels.dtype, np.integer) or levels.min() < 2:
        raise ValueError(f"levels must be a non-empty sequence of integers >= 2 (one per channel), got {levels!r}")
    return levels.astype(np.int64)


def fsq_bound(z, levels: Sequence[int], delta: float = 1e-3):
    """``f(z) = h tanh(z + a) − o`` per channel (last axis), ``h = (L − 1)(1 + δ)/2``, ``o = ½`` for even L and
    0 for odd, ``a = atanh(o/h)``: ``f(0) = 0`` and ``round(f(z)) ∈ {−⌊L/2⌋, …, ⌈L/2⌉ − 1}`` (MATH.md §15)."""
    lv = _fsq_levels(levels)
    if not 0.0 < delta < 1.0 / (lv.max() - 1):
        raise ValueError(f"fsq_bound: delta must lie in (0, 1/(max L − 1)) so that the end values round inward, "
                         f"got {delta!r}")
    half = (lv - 1) * (1.0 + delta) / 2.0
    offset = np.where(lv % 2 == 0, 0.5, 0.0)
    shift = np.arctanh(offset / half)
    z = jnp.asarray(z)
    if z.ndim < 1 or z.shape[-1] != lv.size:
        raise ValueError(f"fsq_bound: z must have {lv.size} channels on its last axis (one per level), got shape "
                         f"{z.shape}")
    z = z if jnp.issubdtype(z.dtype, jnp.floating) else z.astype(jnp.result_type(float))
    return (half * jnp.tanh(z + shift) - offset).astype(z.dtype)


def fsq_quantize(z, levels: Sequence[int], delta: float = 1e-3):
    """``ẑ = round_ste(f(z))/⌊L/2⌋`` per channel (Mentzer et al. 2023): ``L_i`` values per channel, gradient of f."""
    bounded = fsq_bound(z, levels, delta)
    return round_ste(bounded) / (_fsq_levels(levels) // 2).astype(bounded.dtype)


def fsq_codebook_size(levels: Sequence[int]) -> int:
    """The number of FSQ codes ``Π_i L_i``."""
    return int(np.prod(_fsq_levels(levels)))


def fsq_codes_to_indices(codes, levels: Sequence[int]):
    """Codes ``ẑ`` ``(..., C)`` ↦ indices ``Σ_i k_i Π_{j<i} L_j`` in ``0..Π L_i − 1`` (int32), with the digits
    ``k_i = ẑ_i ⌊L_i/2⌋ + ⌊L_i/2⌋ ∈ {0, …, L_i − 1}``."""
    lv = _fsq_levels(levels)
    digits = jnp.round(jnp.asarray(codes) * (lv // 2) + lv // 2).astype(jnp.int32)
    basis = np.concatenate([[1], np.cumprod(lv[:-1])]).astype(np.int32)
    return jnp.sum(digits * basis, axis=-1)


def fsq_indices_to_codes(indices, levels: Sequence[int]):
    """Indices ``(...)`` ↦ codes ``(..., C)``: the inverse of :func:`fsq_codes_to_indices`."""
    lv = _fsq_levels(levels)
    basis = np.concatenate([[1], np.cumprod(lv[:-1])]).astype(np.int32)
    digits = (jnp.asarray(indices, jnp.int32)[..., None] // basis) % lv.astype(np.int32)
    return ((digits - lv // 2) / (lv // 2)).astype(jnp.result_type(float))
