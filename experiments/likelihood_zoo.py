"""The likelihood zoo: every likelihood model of genjax on the same data, in the same units, in one table.

* **Digits** (scikit-learn's 8×8 digits, 17 grey levels, the fixed 80/20 split of
  ``genjax.data.images``): test bits/dim of the *discrete* images. Exact for the autoregressive
  models (first-order Markov chain in closed form, MADE, PixelCNN, a causal transformer); upper
  bounds for the latent-variable and continuous models: the VAE's ELBO and IWAE-K bound (a
  discretised Gaussian decoder), the VQ-VAE's ``−log p(x | z_q) − log p_prior(codes)`` with a MADE
  prior over its codes, the DDPM bound with fixed and learned variances (MATH.md §14), and the
  dequantised flows (RealNVP, Glow) and PF-ODE of the flow-matching U-Net (MATH.md §6), whose
  bits/dim bound the discrete ones in expectation. Uniform: ``log₂ 17 = 4.09``. The last
  ``--validation`` training digits are held out: the autoregressive models, the VAE and both
  VQ-VAE stages stop once their validation bits/dim stops improving (1438 digits overfit a large
  net in a few thousand steps).
* **Swiss roll** (2-D, continuous, exact density): test negative log-likelihood in nats against the
  data's entropy 2.670 (``genjax.data.toy.swissroll``): a Gaussian fitted by maximum likelihood,
  RealNVP, a VAE (ELBO, IWAE-K), the DDPM bound and the Sohl-Dickstein et al. (2015) bound ``K``
  (also reported as they did, in bits relative to an isotropic unit Gaussian), and the PF-ODE of
  flow matching.

Each row has its parameter count, training steps and wall time; standard errors are over the test
points. Run: ``python experiments/likelihood_zoo.py`` (about 20 min on 2 CPU cores); ``--quick`` is a
smoke run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Literal

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import flows_digits  # noqa: E402  (experiments/ is on sys.path when this script runs)

import genjax  # noqa: E402
from genjax import interpolants, metrics, report  # noqa: E402
from genjax.data import images, toy  # noqa: E402
from genjax.flows import Flow, ffjord, glow_2d, realnvp  # noqa: E402
from genjax.models import autoregressive as ar  # noqa: E402
from genjax.models import diffusion_bound as db  # noqa: E402
from genjax.models import vae as V  # noqa: E402
from genjax.nets import TimeMLP, UNet, count_params  # noqa: E402
from genjax.nets.autoregressive import MADE, CausalTransformer, MarkovChain, PixelCNN  # noqa: E402
from genjax.nets.vae import MLP, GaussianDecoder, GaussianEncoder  # noqa: E402
from genjax.train import RECIPES, EarlyStopping, TrainState, fit  # noqa: E402

SHAPE = (8, 8, 1)
D = 64
LEVELS = images.LEVELS
DigitModel = Literal["markov", "made", "pixelcnn", "transformer", "realnvp", "glow", "vae", "vqvae", "ddpm",
                     "ddpm-learned", "fm"]
DIGIT_MODELS: tuple[DigitModel, ...] = ("markov", "made", "pixelcnn", "transformer", "realnvp", "glow", "vae",
                                        "vqvae", "ddpm", "ddpm-learned", "fm")
ToyModel = Literal["gaussian", "realnvp", "glow", "ffjord", "vae", "ddpm", "ddpm-learned", "fm"]
TOY_MODELS: tuple[ToyModel, ...] = ("gaussian", "realnvp", "glow", "ffjord", "vae", "ddpm", "ddpm-learned", "fm")
DDPM = interpolants.ddpm  # T = 1000, β linear from 1e-4 to 0.02 (Ho et al. 2020)


@dataclasses.dataclass(frozen=True)
class Config(report.RunConfig):
    digit_models: tuple[DigitModel, ...] = DIGIT_MODELS
    """Digit models to train (an empty tuple skips the digits)."""
    toy_models: tuple[ToyModel, ...] = TOY_MODELS
    """Swiss-roll models to train (an empty tuple skips the swiss roll)."""
    steps: int = 3000
    """Training steps of each digit model that trains inside one compiled loop (MLPs, transformer)."""
    conv_steps: int = 1500
    """Training steps of the convolutional digit models (PixelCNN, Glow, the U-Net), one compiled step per call."""
    batch_size: int = 64
    """Digit batch size."""
    lr: float = 2e-3
    """Peak Adam learning rate (cosine decay to 5 % of it)."""
    iwae_k: int = 256
    """Importance samples of the IWAE evaluation bound."""
    made_hidden: tuple[int, ...] = (512, 512)
    """MADE hidden widths."""
    made_lr: float = 5e-4
    """MADE's peak learning rate (at 2e-3 it overfits before the first validation)."""
    vae_latents: int = 16
    """VAE latent dimension (digits)."""
    vq_latents: int = 8
    """VQ-VAE: latent vectors per image."""
    vq_codes: int = 32
    """VQ-VAE: codebook size."""
    validation: int = 144
    """Training digits held out for early stopping (the last ones of the fixed split); every digit model trains
    on the rest."""
    eval_every: int = 250
    """Steps between validation evaluations of the early-stopped digit models."""
    patience: int = 2
    """Evaluations without a better validation bits/dim before training stops."""
    bpd_images: int = 128
    """Test digits scored through the PF-ODE and the DDPM bound (the other digit models score all 359)."""
    iw_chains: int = 8
    """Reverse chains M of the importance-weighted DDPM estimate (swiss roll)."""
    iw_points: int = 500
    """Swiss-roll test points of the importance-weighted estimate."""
    toy_steps: int = 5000
    """Training steps of each swiss-roll model."""
    cnf_steps: int = 400
    """Training steps of FFJORD (an adaptive ODE solve and its adjoint per step)."""
    toy_train: int = 20000
    """Swiss-roll training points (a fixed sample, like a data set)."""
    toy_test: int = 5000
    """Swiss-roll test points."""
    quick: bool = False
    """Smoke run (about 2 min): few steps everywhere, few test points."""

    def __post_init__(self):
        report.check_positive(self, "steps", "conv_steps", "batch_size", "lr", "made_lr", "iwae_k", "vae_latents",
                              "vq_latents", "vq_codes", "validation", "eval_every", "patience", "bpd_images", "iw_chains", "iw_points", "cnf_steps",
                              "toy_steps", "toy_train", "toy_test")

    def resolved(self) -> "Config":
        if not self.quick:
            return self
        return dataclasses.replace(self, steps=60, conv_steps=20, iwae_k=8, bpd_images=8, toy_steps=100,
                                   toy_train=2000, toy_test=500, eval_every=20, iw_chains=2, iw_points=50, cnf_steps=10,
                                   quick=False)


def adam(cfg: Config, steps: int, lr: float | None = None):
    return optax.adam(optax.cosine_decay_schedule(lr or cfg.lr, steps, alpha=0.05))


def fit_kwargs(cfg: Config, steps: int, *, conv: bool = False, batch_size: int | None = None) -> dict:
    """``fit`` options: one compiled step per call for convolutions (XLA:CPU runs their gradients slowly in loops)."""
    return dict(num_steps=steps, batch_size=batch_size or cfg.batch_size,
                steps_per_call=1 if conv else math.gcd(steps, 250), ema_decay=0.995 if steps >= 1000 else 0.9,
                clip_norm=1.0, progress=False)


def early_stopped(cfg: Config, steps: int, val, bits, *, conv: bool = False) -> dict:
    """``fit`` options that stop once the validation bits/dim ``mean(bits(params, val))`` of the EMA weights has not
    improved for ``patience`` evaluations: 1438 training digits overfit a large net within a few thousand steps."""
    every = cfg.eval_every if conv else math.lcm(cfg.eval_every, fit_kwargs(cfg, steps)["steps_per_call"])
    score = jax.jit(lambda params: jnp.mean(bits(params, jnp.asarray(val))))
    return dict(eval_fn=lambda state: {"val_bpd": float(score(state.ema_params))}, eval_every=min(every, steps),
                early_stopping=EarlyStopping("val_bpd", "min", cfg.patience))


def trained_steps(history: dict, steps: int) -> int:
    """The steps ``fit`` ran (fewer than ``steps`` when it stopped early)."""
    evals = history.get("eval") or []
    return int(evals[-1]["step"]) if evals else steps


def mean_se(values) -> tuple[float, float]:
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


def timed(fn, *args, **kwargs):
    tic = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - tic


def row(data, model, bound, value, se, params, steps, train_s, **extra) -> dict:
    return {"data": data, "model": model, "bound": bound, "value": value, "se": se, "params": params,
            "steps": steps, "train_s": train_s, **extra}


# ----------------------------------------------------------------------------- digits


def autoregressive_rows(cfg, name, train, val, test, key):
    """Exact test bits/dim of one autoregressive model (early-stopped on ``val``), and 64 ancestral samples."""
    k_init, k_fit, k_sample = jax.random.split(key, 3)
    if name == "markov":
        net, steps = MarkovChain(SHAPE, LEVELS), 0
        (params, train_s) = timed(ar.markov_chain_mle, train, LEVELS)
    else:
        net = {"made": MADE(SHAPE, LEVELS, hidden=cfg.made_hidden),
               "pixelcnn": PixelCNN(LEVELS, features=64, num_layers=4),
               "transformer": CausalTransformer(SHAPE, LEVELS, width=64, depth=2, heads=4)}[name]
        conv = name == "pixelcnn"
        steps = cfg.conv_steps if conv else cfg.steps
        params = net.init(k_init, jnp.asarray(train[:1]))
        bits = lambda p, x: ar.bits_per_dim(jax.tree_util.Partial(net.apply, p), x)  # noqa: E731
        (state, history), train_s = timed(ar.train_autoregressive, net.apply, params, train, key=k_fit,
                                          optimizer=adam(cfg, steps, cfg.made_lr if name == "made" else None),
                                          **fit_kwargs(cfg, steps, conv=conv),
                                          **early_stopped(cfg, steps, val, bits, conv=conv))
        params, steps = state.ema_params, trained_steps(history, steps)
    model = jax.tree_util.Partial(net.apply, params)
    bpd, se = mean_se(ar.bits_per_dim(model, jnp.asarray(test)))
    samples, _ = ar.sample_autoregressive(model, k_sample, (64, *SHAPE))
    label = {"markov": "Markov chain (closed-form MLE)", "made": "MADE", "pixelcnn": "PixelCNN",
             "transformer": "causal transformer"}[name]
    return row("digits", label, "exact", bpd, se, count_params(params), steps, train_s), np.asarray(samples)


def flow_rows(cfg, name, train, test, key):
    """RealNVP / Glow as in experiments/flows_digits.py (dequantised, logit scaling)."""
    fcfg = flows_digits.Config(steps=cfg.conv_steps if name == "glow" else cfg.steps, batch_size=cfg.batch_size)
    result, pixels = flows_digits.run_model(name, fcfg, train, test, key)
    label = {"realnvp": "RealNVP", "glow": "Glow"}[name]
    levels = np.clip(np.round(np.asarray(pixels) * (LEVELS - 1)), 0, LEVELS - 1)
    return row("digits", label, "dequantised (upper bound)", result["test_bpd"], None, result["params"],
               fcfg.steps, result["train_s"]), levels


def digit_vae(cfg, train, val, test, key):
    """A VAE with a discretised Gaussian decoder: test ELBO and IWAE-K in bits/dim, and prior samples."""
    k_enc, k_dec, k_fit, k_eval, k_sample = jax.random.split(key, 5)
    encoder, decoder = GaussianEncoder(cfg.vae_latents, (512, 256)), GaussianDecoder(SHAPE, (256, 512))
    params = {"encoder": encoder.init(k_enc, jnp.zeros(SHAPE)),
              "decoder": decoder.init(k_dec, jnp.zeros((cfg.vae_latents,)))}
    vae = V.VAE(lambda p, x: encoder.apply(p["encoder"], x), lambda p, z: decoder.apply(p["decoder"], z),
                "discretized", LEVELS)
    to_bits = lambda b: V.vae_bits_per_dim("discretized", LEVELS, b, D)  # noqa: E731

    def bits(p, x):  # the validation ELBO in bits/dim, one fixed key per image
        keys = jax.random.split(jax.random.key(0), x.shape[0])
        return to_bits(jax.vmap(lambda x, k: V.vae_elbo(vae, p, x, k).elbo)(x, keys))

    (state, history), train_s = timed(V.train_vae, vae, params, train, key=k_fit, optimizer=adam(cfg, cfg.steps),
                                      **fit_kwargs(cfg, cfg.steps), **early_stopped(cfg, cfg.steps, val, bits))
    params, steps = state.ema_params, trained_steps(history, cfg.steps)
    x = jnp.asarray(test)
    keys = jax.random.split(k_eval, len(test))
    elbo = jax.jit(jax.vmap(lambda x, k: V.vae_elbo(vae, params, x, k).elbo))(x, keys)
    iwae = jax.jit(jax.vmap(lambda x, k: V.iwae_bound(vae, params, x, k, cfg.iwae_k)))(x, keys)
    n = count_params(params)
    rows = [row("digits", "VAE", "ELBO", *mean_se(to_bits(elbo)), n, steps, train_s),
            row("digits", "VAE", f"IWAE-{cfg.iwae_k}", *mean_se(to_bits(iwae)), n, steps, train_s)]
    samples, _ = V.sample_vae(vae, params, k_sample, 64, cfg.vae_latents)
    return rows, np.asarray(samples)


def digit_vqvae(cfg, train, val, test, key):
    """VQ-VAE with the EMA codebook (van den Oord et al. 2017), then a MADE prior over its codes, each stage
    early-stopped on ``val``: ``−log p(x) ≤ −log p(x | z_q) − log p_prior(codes)``."""
    k_enc, k_dec, k_code, k_fit, k_prior, k_fit2, k_sample = jax.random.split(key, 7)
    m, dim, codes_n = cfg.vq_latents, 4, cfg.vq_codes
    encoder, decoder = MLP((m, dim), (512, 256)), GaussianDecoder(SHAPE, (256, 512))
    params = {"encoder": encoder.init(k_enc, jnp.zeros(SHAPE)), "decoder": decoder.init(k_dec, jnp.zeros((m, dim))),
              "codebook": jax.random.normal(k_code, (codes_n, dim))}  # train_vqvae(codebook="ema") makes the EMA state
    vq = V.VQVAE(lambda p, x: encoder.apply(p["encoder"], x), lambda p, z: decoder.apply(p["decoder"], z),
                 "discretized", LEVELS)

    def encode(p, x):  # per image: its codes and log p(x | z_q)
        codebook = V.ema_codebook(**p[V.VQ_EMA_KEY])
        _, codes, _ = V.quantize(vq.encode(p, images.to_symmetric(x, LEVELS)), codebook)
        mean, log_var = vq.decode(p, codebook[codes])
        return codes, V.decoder_log_prob("discretized", LEVELS, x, mean, log_var)

    rec_bits = lambda p, x: -jax.vmap(lambda x: encode(p, x)[1])(x) / (D * math.log(2))  # noqa: E731  (EMA params)
    (state, history), train_s = timed(V.train_vqvae, vq, params, train, key=k_fit, optimizer=adam(cfg, cfg.steps),
                                      codebook="ema", **fit_kwargs(cfg, cfg.steps),
                                      **early_stopped(cfg, cfg.steps, val, rec_bits))
    params, steps = state.ema_params, trained_steps(history, cfg.steps)
    encode_all = jax.jit(jax.vmap(lambda x: encode(params, x)))
    (train_codes, _), (val_codes, _), (test_codes, test_rec) = (encode_all(jnp.asarray(a)) for a in (train, val, test))
    prior = MADE((m,), codes_n, hidden=(256, 256))
    prior_bits = lambda p, c: ar.bits_per_dim(jax.tree_util.Partial(prior.apply, p), c)  # noqa: E731
    (pstate, phistory), prior_s = timed(ar.train_autoregressive, prior.apply, prior.init(k_prior, train_codes[:1]),
                                        np.asarray(train_codes), key=k_fit2, optimizer=adam(cfg, cfg.steps),
                                        **fit_kwargs(cfg, cfg.steps),
                                        **early_stopped(cfg, cfg.steps, np.asarray(val_codes), prior_bits))
    prior_model = jax.tree_util.Partial(prior.apply, pstate.ema_params)
    nats = -(test_rec + ar.log_likelihood(prior_model, test_codes))
    usage = len(np.unique(np.asarray(train_codes)))
    codes, _ = ar.sample_autoregressive(prior_model, k_sample, (64, m))
    codebook = V.ema_codebook(**params[V.VQ_EMA_KEY])
    mean, _ = jax.vmap(lambda c: vq.decode(params, codebook[c]))(codes)
    samples = np.asarray(images.from_symmetric(jnp.clip(mean, -1, 1), LEVELS))
    n = count_params({k: v for k, v in params.items() if k != V.VQ_EMA_KEY}) + count_params(pstate.ema_params)
    return row("digits", f"VQ-VAE ({m}×{codes_n}, EMA) + MADE prior", "−log p(x|z_q) − log p(codes)",
               *mean_se(nats / (D * math.log(2))), n, steps + trained_steps(phistory, cfg.steps), train_s + prior_s,
               codes_used=usage), samples


def digit_ddpm(cfg, train, test, key, learned: bool):
    """DDPM (T = 1000) with the digits U-Net on the bin centres of the levels: ``L_simple`` with fixed variances
    (the bound with σ² = β and σ² = β̃) or ``L_hybrid`` with learned ones (Nichol & Dhariwal 2021); the
    discretised decoder makes the bound one on the discrete digits (MATH.md §14)."""
    k_init, k_fit, k_bound, k_sample = jax.random.split(key, 4)
    net = UNet(channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(4,),
               out_channels=2 if learned else None)
    apply_fn = (lambda p, t, x: tuple(jnp.split(net.apply(p, t, x), 2, axis=-1))) if learned else net.apply
    params = net.init(k_init, jnp.zeros(()), jnp.zeros(SHAPE))
    options = dict(prediction="noise", levels=LEVELS, level_grid="centres")
    loss = dict(loss="hybrid", variance="learned") if learned else dict(loss="simple")
    (state, _), train_s = timed(db.train_ddpm, apply_fn, params, DDPM, images.to_symmetric(train, LEVELS), key=k_fit,
                                optimizer=adam(cfg, cfg.conv_steps), **options, **loss,
                                **fit_kwargs(cfg, cfg.conv_steps, conv=True))
    model = genjax.Model(apply_fn, state.ema_params)
    x0 = images.to_symmetric(test[:cfg.bpd_images], LEVELS)
    rows = []
    for variance in (("learned",) if learned else ("beta", "beta_tilde")):
        terms = db.bound_terms(model, DDPM, x0, k_bound, variance=variance, **options)
        label = {"learned": "DDPM, learned Σ (L_hybrid)", "beta": "DDPM, σ² = β (L_simple)",
                 "beta_tilde": "DDPM, σ² = β̃ (L_simple)"}[variance]
        rows.append(row("digits", label, "discrete-time bound, T = 1000", *mean_se(terms["bits_per_dim"]),
                        count_params(params), cfg.conv_steps, train_s, scored=len(x0)))
    x, _ = genjax.sample_ddim(model if not learned else genjax.Model(lambda p, t, x: apply_fn(p, t, x)[0],
                                                                     state.ema_params),
                              DDPM, k_sample, (64, *SHAPE), prediction="noise", num_steps=50, clip_x0=(-1.0, 1.0))
    return rows, np.asarray(images.from_symmetric(jnp.clip(x, -1, 1), LEVELS))


def digit_flow_matching(cfg, train, test, key):
    """The unified trainer's flow-matching recipe with the digits U-Net; PF-ODE bits/dim of ``bpd_images`` digits."""
    recipe = RECIPES["fm"]
    k_init, k_fit, k_bpd, k_sample = jax.random.split(key, 4)
    net = UNet(channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(4,))
    params = net.init(k_init, jnp.zeros(()), jnp.zeros(SHAPE))
    data = images.image_batches(train, batch_size=cfg.batch_size, seed=cfg.seed, flip=False, levels=LEVELS)
    (state, _), train_s = timed(genjax.train_interpolant, net.apply, params, recipe.interpolant, data, key=k_fit,
                                optimizer=adam(cfg, cfg.conv_steps), **recipe.train_kwargs(),
                                **{**fit_kwargs(cfg, cfg.conv_steps, conv=True), "batch_size": cfg.batch_size})
    model = genjax.Model(net.apply, state.ema_params)
    bpd, se = metrics.image_bits_per_dim(model, recipe.ode_interpolant, test[:cfg.bpd_images], k_bpd,
                                         prediction=recipe.prediction, levels=LEVELS, rtol=1e-4, atol=1e-4)
    x, _ = genjax.sample_ddim(model, recipe.interpolant, k_sample, (64, *SHAPE), prediction=recipe.prediction,
                              num_steps=50, clip_x0=(-1.0, 1.0))
    samples = np.asarray(images.from_symmetric(jnp.clip(x, -1, 1), LEVELS))
    return row("digits", "flow matching (U-Net)", "PF-ODE, dequantised (upper bound)", bpd, se, count_params(params),
               cfg.conv_steps, train_s, scored=min(cfg.bpd_images, len(test))), samples


# ----------------------------------------------------------------------------- swiss roll


def toy_rows(cfg, name, train, test, key):
    """Test NLL (nats) of one swiss-roll model; ``train`` is a fixed sample."""
    k_init, k_fit, k_eval = jax.random.split(key, 3)
    steps, kw = cfg.toy_steps, fit_kwargs(cfg, cfg.toy_steps, batch_size=256)
    if name == "gaussian":
        mean, cov = train.mean(0), np.cov(train.T)
        diff = test - mean
        nll = 0.5 * (np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff) + np.log(np.linalg.det(2 * np.pi * cov)))
        return [row("swissroll", "Gaussian (MLE)", "exact", *mean_se(nll), 5, 0, 0.0)]
    if name in ("realnvp", "glow"):  # the 2-D flows of experiments/flows_2d.py
        flow = Flow(realnvp((2,), 8, (64, 64)) if name == "realnvp" else glow_2d(2, 4, (64, 64)), (2,))
        params = flow.init(k_init, jnp.asarray(train[:1024]))
        (state, _), train_s = timed(fit, flow.loss, TrainState.create(params, adam(cfg, steps), k_fit),
                                    jnp.asarray(train), **kw)
        nll = -jax.jit(flow.log_prob)(state.ema_params, jnp.asarray(test))
        return [row("swissroll", {"realnvp": "RealNVP", "glow": "Glow-2D"}[name], "exact", *mean_se(nll),
                    count_params(params), steps, train_s)]
    if name == "ffjord":
        cnf = ffjord(2, (64,) * 3, rtol=1e-4, atol=1e-4)
        params = cnf.init(k_init, jnp.asarray(train[:8]))
        (state, _), train_s = timed(fit, cnf.loss, TrainState.create(params, adam(cfg, cfg.cnf_steps), k_fit),
                                    jnp.asarray(train), **fit_kwargs(cfg, cfg.cnf_steps, batch_size=128))
        evaluate = dataclasses.replace(cnf, rtol=1e-5, atol=1e-5)
        nll = -jax.jit(evaluate.log_prob)(state.ema_params, jnp.asarray(test))
        return [row("swissroll", "FFJORD", "exact divergence", *mean_se(nll), count_params(params), cfg.cnf_steps,
                    train_s)]
    if name == "vae":
        k_enc, k_dec = jax.random.split(k_init)
        encoder, decoder = GaussianEncoder(2, (128, 128)), GaussianDecoder((2,), (128, 128))
        params = {"encoder": encoder.init(k_enc, jnp.zeros(2)), "decoder": decoder.init(k_dec, jnp.zeros(2))}
        vae = V.VAE(lambda p, x: encoder.apply(p["encoder"], x), lambda p, z: decoder.apply(p["decoder"], z))
        (state, _), train_s = timed(V.train_vae, vae, params, jnp.asarray(train), key=k_fit,
                                    optimizer=adam(cfg, steps), **kw)
        p, x = state.ema_params, jnp.asarray(test)
        keys = jax.random.split(k_eval, len(test))
        elbo = jax.jit(jax.vmap(lambda x, k: V.vae_elbo(vae, p, x, k).elbo))(x, keys)
        iwae = jax.jit(jax.vmap(lambda x, k: V.iwae_bound(vae, p, x, k, cfg.iwae_k)))(x, keys)
        n = count_params(params)
        return [row("swissroll", "VAE", "ELBO", *mean_se(-elbo), n, steps, train_s),
                row("swissroll", "VAE", f"IWAE-{cfg.iwae_k}", *mean_se(-iwae), n, steps, train_s)]
    if name in ("ddpm", "ddpm-learned"):
        learned = name == "ddpm-learned"
        net = TimeMLP((256,) * 3, heads=2 if learned else 1)
        params = net.init(k_init, jnp.zeros(()), jnp.zeros(2))
        loss = dict(loss="hybrid", variance="learned") if learned else dict(loss="simple")
        (state, _), train_s = timed(db.train_ddpm, net.apply, params, DDPM, jnp.asarray(train), key=k_fit,
                                    optimizer=adam(cfg, steps), levels=None, **loss, **kw)
        model, x0, n = genjax.Model(net.apply, state.ema_params), jnp.asarray(test), count_params(params)
        if learned:
            terms = db.bound_terms(model, DDPM, x0, k_eval, variance="learned", levels=None)
            return [row("swissroll", "DDPM, learned Σ (L_hybrid)", "discrete-time bound, T = 1000",
                        *mean_se(terms["nats"]), n, steps, train_s)]
        rows = []
        for variance in ("beta", "beta_tilde"):
            terms = db.bound_terms(model, DDPM, x0, k_eval, variance=variance, levels=None)
            rows.append(row("swissroll", f"DDPM, σ² = {'β' if variance == 'beta' else 'β̃'} (L_simple)",
                            "discrete-time bound, T = 1000", *mean_se(terms["nats"]), n, steps, train_s))
        iw = db.iw_log_likelihood(model, DDPM, x0[:cfg.iw_points], k_eval, num_chains=cfg.iw_chains, variance="beta",
                                  levels=None)
        rows.append(row("swissroll", f"DDPM, σ² = β: importance-weighted, M = {cfg.iw_chains}",
                        f"−IW log p (first {cfg.iw_points} test points)", *mean_se(-iw["log_p"]), n, steps, train_s))
        k = db.sohl_dickstein_k(model, DDPM, x0, k_eval, variance="beta")
        rows.append(row("swissroll", "DDPM, σ² = β: Sohl-Dickstein K", "−K (their entropy form)", *mean_se(-k["K"]),
                        n, steps, train_s, bits_vs_isotropic=mean_se(k["bits"])[0]))
        return rows
    if name == "fm":
        net = TimeMLP((256,) * 3)
        params = net.init(k_init, jnp.zeros(()), jnp.zeros(2))
        (state, _), train_s = timed(genjax.train_interpolant, net.apply, params, interpolants.linear,
                                    jnp.asarray(train), key=k_fit, optimizer=adam(cfg, steps), prediction="velocity",
                                    **kw)
        model = genjax.Model(net.apply, state.ema_params)
        log_p = genjax.log_likelihood(model, interpolants.linear, jnp.asarray(test), prediction="velocity",
                                      rtol=1e-5, atol=1e-5)
        return [row("swissroll", "flow matching", "PF-ODE, exact divergence", *mean_se(-log_p), count_params(params),
                    steps, train_s)]
    raise ValueError(f"unknown swiss-roll model {name!r}")


# ----------------------------------------------------------------------------- report


def grid_figure(grids: dict, path, ncols: int = 7) -> None:
    """One 8×8 grid of 8×8 digits per model (levels 0..16), ``ncols`` per row."""
    nrows = -(-len(grids) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.3 * ncols, 2.6 * nrows), squeeze=False)
    for ax in axes.ravel()[len(grids):]:
        ax.axis("off")
    for ax, (title, levels) in zip(axes.ravel(), grids.items()):
        flows_digits.grid(ax, np.asarray(levels, np.float64)[:64] / (LEVELS - 1), title)
        ax.title.set_fontsize(7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(cfg: Config):
    cfg = cfg.resolved()
    out = report.output_dir(__file__, cfg.out)
    key = jax.random.key(cfg.seed)
    k_digits, k_toy = jax.random.split(key)
    tic = time.perf_counter()
    rows, grids = [], {}
    if cfg.digit_models:
        train, test = images.load_digits(seed=0)
        train, val = train[:-cfg.validation], train[-cfg.validation:]
        grids["data (test)"] = test[:64]
        rows.append(row("digits", "uniform", "exact", math.log2(LEVELS), 0.0, 0, 0, 0.0))
        for i, name in enumerate(cfg.digit_models):
            k = jax.random.fold_in(k_digits, i)
            if name in ("markov", "made", "pixelcnn", "transformer"):
                new, samples = autoregressive_rows(cfg, name, train, val, test, k)
            elif name in ("realnvp", "glow"):
                new, samples = flow_rows(cfg, name, train, test, k)
            elif name == "vae":
                new, samples = digit_vae(cfg, train, val, test, k)
            elif name == "vqvae":
                new, samples = digit_vqvae(cfg, train, val, test, k)
            elif name in ("ddpm", "ddpm-learned"):
                new, samples = digit_ddpm(cfg, train, test, k, learned=name == "ddpm-learned")
            else:
                new, samples = digit_flow_matching(cfg, train, test, k)
            new = new if isinstance(new, list) else [new]
            rows += new
            grids[new[0]["model"]] = samples
            for r in new:
                print(f"digits  {r['model']:38s} {r['bound']:34s} {r['value']:.3f} bits/dim  "
                      f"({r['train_s']:.0f} s)", flush=True)
    if cfg.toy_models:
        ds = toy.swissroll
        k_train, k_test, k_models = jax.random.split(k_toy, 3)
        train, test = np.asarray(ds.sample(k_train, cfg.toy_train)), np.asarray(ds.sample(k_test, cfg.toy_test))
        log_p = jax.jit(jax.vmap(ds.log_prob))(jnp.asarray(test))
        rows.append(row("swissroll", "the data's own density (floor)", "−mean log p_data", *mean_se(-log_p), 0, 0, 0.0))
        for i, name in enumerate(cfg.toy_models):
            for r in toy_rows(cfg, name, train, test, jax.random.fold_in(k_models, i)):
                rows.append(r)
                print(f"swiss   {r['model']:38s} {r['bound']:34s} {r['value']:.3f} nats  ({r['train_s']:.0f} s)",
                      flush=True)
    columns = ["data", "model", "bound", "value", "se", "params", "steps", "train_s", "bits_vs_isotropic"]
    table = report.markdown_table(rows, columns, digits=3)
    print("\n" + table)
    (out / "table.md").write_text(table + "\n")
    if len(grids) > 1:
        np.savez_compressed(out / "samples.npz", **{f"{i:02d} {name}": g for i, (name, g) in enumerate(grids.items())})
        grid_figure(grids, out / "samples.png")
    report.write_results(out, config=cfg, metrics={"rows": rows, "entropy_swissroll": toy.swissroll.entropy,
                                                   "wall_s": time.perf_counter() - tic})
    print(f"\nwall time {time.perf_counter() - tic:.0f} s; wrote {out}/results.json, table.md, samples.png")


if __name__ == "__main__":
    main(report.cli(Config, __doc__))
