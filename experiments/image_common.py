"""What the image experiments (digits.py, patches.py) share: U-Net flags with presets, training, samplers, timing."""

from __future__ import annotations

import dataclasses
import time
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

import genjax
from genjax import report
from genjax.nets import UNet
from genjax.train import RECIPES, Recipe


@dataclasses.dataclass(frozen=True)
class ImageConfig(report.RunConfig):
    """U-Net, training and sampler flags; a flag left at 0 / empty / None takes the value of ``PRESETS[preset]``."""

    PRESETS: ClassVar[dict[str, dict]] = {}

    preset: Literal["cpu", "gpu"] = "cpu"
    """Default sizes: 'cpu' for 2 CPU cores; 'gpu' is a longer run for an accelerator."""
    models: tuple[Literal["ddpm", "fm", "vp-sde", "cosine"], ...] = ("ddpm", "fm", "vp-sde", "cosine")
    """Recipes to train (genjax.train.RECIPES; MATH.md §2), each with the same U-Net and trainer."""
    steps: int = 0
    """Training steps per model (0: the preset's)."""
    batch_size: int = 0
    """Training batch size (0: the preset's)."""
    channels: int = 0
    """U-Net base channels (0: the preset's)."""
    channel_mult: tuple[int, ...] = ()
    """U-Net channel multipliers per resolution (empty: the preset's)."""
    num_res_blocks: int = 0
    """Residual blocks per resolution (0: the preset's)."""
    attention_resolutions: tuple[int, ...] = ()
    """Feature-map sizes with self-attention (empty: the preset's)."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """U-Net activation dtype (bfloat16: mixed precision, float32 parameters)."""
    lr: float = 2e-3
    """Adam learning rate (cosine decay to 5 % after a warm-up of at most 200 steps)."""
    ema_decay: float | None = None
    """Decay of the EMA weights that are sampled (None: the preset's). Keep decay^steps ≈ 0: else the EMA
    still holds the zero-output initial net, which shrinks noise predictions, and x̂0 = (x − σε̂)/α blows up."""
    ddim_steps: int = 0
    """DDIM steps (0: the preset's)."""
    ode_tol: float = 1e-3
    """rtol = atol of the adaptive PF-ODE sampler."""
    bpd_images: int = 0
    """Test images scored with the PF-ODE (0: the preset's)."""
    bpd_tol: float = 1e-4
    """rtol = atol of the likelihood ODE."""

    def __post_init__(self):
        report.check_positive(self, "lr", "ode_tol", "bpd_tol")
        report.check_nonnegative(self, "steps", "batch_size", "channels", "num_res_blocks", "ddim_steps", "bpd_images")
        if not self.models:
            raise ValueError(f"--models: name at least one of {sorted(RECIPES)}")
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise ValueError(f"--ema-decay must be in [0, 1), got {self.ema_decay}")

    def get(self, name: str):
        """The flag's value, or the preset's when the flag is left unset."""
        value = getattr(self, name)
        unset = value is None if name == "ema_decay" else not value
        return self.PRESETS[self.preset][name] if unset else value


def build_unet(cfg: ImageConfig, **fields) -> UNet:
    """The U-Net of the flags and preset; ``fields`` add or override U-Net fields."""
    config = dict(channels=cfg.get("channels"), channel_mult=cfg.get("channel_mult"),
                  num_res_blocks=cfg.get("num_res_blocks"), attention_resolutions=cfg.get("attention_resolutions"),
                  dtype=jnp.dtype(cfg.dtype))
    return UNet(**{**config, **fields})


def train(recipe: Recipe, name: str, cfg: ImageConfig, net: UNet, params, data, key, out, **train_kwargs):
    """``train_interpolant`` with the recipe, Adam with warm-up + cosine decay, clipping and the preset's EMA.

    ``steps_per_call`` comes from the preset: 1 on CPU, where XLA runs convolution gradients far
    slower inside a loop (``genjax.fit``), more on an accelerator.  Returns ``(state, history, seconds)``.
    """
    steps = cfg.get("steps")
    schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, min(200, steps // 4), steps, cfg.lr * 0.05)
    tic = time.perf_counter()
    state, history = genjax.train_interpolant(
        net.apply, params, recipe.interpolant, data, key=key, optimizer=optax.adam(schedule), **recipe.train_kwargs(),
        num_steps=steps, batch_size=cfg.get("batch_size"), steps_per_call=cfg.PRESETS[cfg.preset]["steps_per_call"],
        ema_decay=cfg.get("ema_decay"), clip_norm=1.0, metrics_path=out / f"train_{name}.jsonl", **train_kwargs)
    return state, history, time.perf_counter() - tic


def samplers(recipe: Recipe, cfg: ImageConfig, shape):
    """``label -> sampler(model, key, c=None)``: DDIM on the recipe's schedule, x̂0 clipped to the data range
    [−1, 1] (Ho et al. 2020's ``clip_denoised``), and the adaptive PF-ODE on its ODE schedule."""
    n_ddim = cfg.get("ddim_steps")

    def ddim(model, key, c=None):
        return genjax.sample_ddim(model, recipe.interpolant, key, shape, prediction=recipe.prediction,
                                  num_steps=n_ddim, c=c, clip_x0=(-1.0, 1.0))

    def ode(model, key, c=None):
        return genjax.sample_ode(model, recipe.ode_interpolant, key, shape, prediction=recipe.prediction,
                                 solver="tsit5", rtol=cfg.ode_tol, atol=cfg.ode_tol, c=c)

    return {f"DDIM-{n_ddim}": ddim, "PF-ODE tsit5": ode}


def timed(fn, *args):
    """``(samples, stats, seconds)`` of a second call (the first one compiles)."""
    jax.block_until_ready(fn(*args)[0])
    tic = time.perf_counter()
    samples, stats = fn(*args)
    samples = jax.block_until_ready(samples)
    return np.asarray(samples), stats, time.perf_counter() - tic
