"""Sample a saved run (genjax.save_run) in a new process: samples to .npy, a PNG figure, NFE and time.

Loads the run, draws ``--n`` samples with the chosen sampler (in chunks of ``--chunk-size``),
writes them as ``.npy`` (default ``RUN_DIR/samples_<sampler>.npy``) with a PNG figure next to
it (a scatter of the first two coordinates, or a grid of images for ``(H, W, C)`` events),
and prints the NFE and the wall time::

    python -m genjax.sample runs/quickstart/FM --sampler ode --n 4000 --chunk-size 1000 --out fm.npy

Few-step sampling of a one-sided run: ``--sampler dpm --order 3 --num-steps 10`` (DPM-Solver++ 3M)
or ``--sampler unipc``, on the grid named by ``--spacing``.

A two-sided (bridge) run starts from given points: ``--x-init x1.npy`` (samples of ρ1, run back
to ρ0) or ``--x-init x0.npy --forward``; its SDE needs ``--diffusion``.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Annotated, Literal

import jax
import numpy as np
import tyro

from . import samplers
from .runs import load_run

__all__ = ["SampleConfig", "sample_run", "main"]

SAMPLERS = ("ode", "sde", "ddpm", "ddim", "heun", "pc", "dpm", "unipc")


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    """Options of ``python -m genjax.sample``."""

    run_dir: tyro.conf.Positional[Annotated[str, tyro.conf.arg(metavar="RUN_DIR")]]
    """A run directory written by genjax.save_run (it holds run.json and params/)."""
    sampler: Literal["ode", "sde", "ddpm", "ddim", "heun", "pc", "dpm", "unipc"] = "ode"
    """ode: probability-flow ODE; sde: reverse SDE (Euler-Maruyama); ddpm: ancestral; ddim; heun: EDM; pc: predictor-corrector; dpm: DPM-Solver++ (--order 1-3); unipc: UniPC (--order 1-3)."""
    n: int = 1000
    """Number of samples."""
    chunk_size: int | None = None
    """Draw at most this many samples at once (bounded memory); default: all at once."""
    seed: int = 0
    """PRNG seed."""
    out: str | None = None
    """Output .npy file (default: RUN_DIR/samples_<sampler>.npy); the PNG goes next to it."""
    num_steps: int | None = None
    """Steps of the sampler (default: ode 100 for fixed-step solvers, sde 1000, ddpm the grid or 1000, ddim 50, heun 18, pc 1000, dpm/unipc 10)."""
    order: int = 2
    """Order of --sampler dpm (1: DDIM, 2: 2M, 3: 3M) or unipc (1-3)."""
    spacing: Literal["logsnr", "time", "edm"] = "logsnr"
    """Time grid of --sampler dpm/unipc: uniform in log-SNR, uniform in t, or EDM's rho-spacing."""
    solver: Literal["tsit5", "dopri5", "euler", "heun", "midpoint"] = "tsit5"
    """ODE solver (--sampler ode): tsit5/dopri5 adaptive with --tol, the others with --num-steps fixed steps."""
    tol: float = 1e-4
    """rtol = atol of an adaptive ODE solve."""
    x_init: str | None = None
    """A .npy of starting points (then --n is its row count); required for a two-sided (bridge) run: samples of rho1, or of rho0 with --forward."""
    forward: bool = False
    """Run t_min -> t_max (ode, sde): encode data, or carry rho0 to rho1 on a bridge."""
    diffusion: float | None = None
    """Constant SDE diffusion eps (--sampler sde); default g^2/2 (one-sided runs; a bridge needs it)."""

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"--n must be a positive integer, got {self.n}")
        for name in ("chunk_size", "num_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
        if self.order not in (1, 2, 3):
            raise ValueError(f"--order must be 1, 2 or 3, got {self.order}")
        if not self.tol > 0:
            raise ValueError(f"--tol must be positive, got {self.tol}")


def sample_run(run, cfg: SampleConfig):
    """``(samples, stats)`` from a loaded :class:`genjax.runs.Run` with the sampler named in ``cfg``."""
    key = jax.random.key(cfg.seed)
    ip, model = run.interpolant, run.model
    x_init = None if cfg.x_init is None else np.load(cfg.x_init)
    shape = (cfg.n, *run.event_shape) if x_init is None else None
    common = dict(prediction=run.prediction, chunk_size=cfg.chunk_size, x_init=x_init)
    steps = {} if cfg.num_steps is None else {"num_steps": cfg.num_steps}
    if cfg.forward:
        if cfg.sampler not in ("ode", "sde"):
            raise ValueError(f"--forward runs only with --sampler ode or sde, got --sampler {cfg.sampler}")
        steps.update(t_start=ip.t_min, t_end=ip.t_max)
    if cfg.sampler == "ode":
        return samplers.sample_ode(model, ip, key, shape, solver=cfg.solver, rtol=cfg.tol, atol=cfg.tol, **steps,
                                   **common)
    if cfg.sampler == "sde":
        return samplers.sample_sde(model, ip, key, shape, diffusion=cfg.diffusion, **steps, **common)
    if cfg.sampler == "ddpm":
        if ip.num_steps is None and cfg.num_steps is None:
            steps = {"num_steps": 1000}
        return samplers.sample_ddpm(model, ip, key, shape, **steps, **common)
    if cfg.sampler == "ddim":
        return samplers.sample_ddim(model, ip, key, shape, **steps, **common)
    if cfg.sampler == "heun":
        return samplers.sample_heun(model, ip, key, shape, **steps, **common)
    if cfg.sampler in ("dpm", "unipc"):
        fast = samplers.sample_dpm if cfg.sampler == "dpm" else samplers.sample_unipc
        return fast(model, ip, key, shape, order=cfg.order, spacing=cfg.spacing, **steps, **common)
    return samplers.sample_pc(model, ip, key, shape, **steps, **common)


def figure(samples: np.ndarray, path: Path, title: str) -> None:
    """A scatter of the first two coordinates, or an image grid for ``(n, H, W, C)`` samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if samples.ndim == 4:
        k = min(8, math.isqrt(samples.shape[0]))
        imgs = samples[: k * k]
        lo, hi = float(imgs.min()), float(imgs.max())
        imgs = (imgs - lo) / max(hi - lo, 1e-12)
        h, w, c = imgs.shape[1:]
        tiles = imgs.reshape(k, k, h, w, c).transpose(0, 2, 1, 3, 4).reshape(k * h, k * w, c)
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.imshow(tiles[..., 0] if c == 1 else tiles, cmap="gray_r" if c == 1 else None)
        ax.axis("off")
    else:
        flat = samples.reshape(samples.shape[0], -1)
        fig, ax = plt.subplots(figsize=(5, 5))
        y = flat[:, 1] if flat.shape[1] > 1 else np.zeros(len(flat))
        ax.scatter(flat[:, 0], y, s=1, alpha=0.5)
        ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args=None) -> Path:
    """Run the command line (``args`` replaces ``sys.argv[1:]``); returns the ``.npy`` path."""
    cfg = tyro.cli(SampleConfig, prog="python -m genjax.sample", description=__doc__.splitlines()[0], args=args)
    try:
        run = load_run(cfg.run_dir)
        tic = time.perf_counter()
        samples, stats = sample_run(run, cfg)
        samples = np.asarray(jax.block_until_ready(samples))
        seconds = time.perf_counter() - tic
    except (FileNotFoundError, ValueError) as err:
        print(f"genjax.sample: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    out = Path(cfg.out) if cfg.out else Path(cfg.run_dir) / f"samples_{cfg.sampler}.npy"
    if out.suffix != ".npy":
        out = out.with_name(out.name + ".npy")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, samples)
    nfe = int(np.max(np.asarray(stats["nfe"])))
    title = f"{Path(cfg.run_dir).name}: {cfg.sampler}, {len(samples)} samples, NFE {nfe}"
    figure(samples, out.with_suffix(".png"), title)
    print(f"{cfg.sampler}: {len(samples)} samples of shape {run.event_shape}, NFE {nfe}, {seconds:.2f} s "
          f"(incl. compilation) -> {out}, {out.with_suffix('.png')}")
    return out


if __name__ == "__main__":
    main()
