"""Throughput of the image U-Net (``genjax.nets.UNet``): training and sampling images/s, compile
time, GFLOP/s, memory, float32 vs bfloat16 and 1 vs 2 devices, against this machine's peak.

Per image shape, computation dtype and device count, measured in one run:

* training: one jitted optimizer step (the flow-matching interpolant loss of
  ``genjax.train.interpolant_objective`` — linear path, velocity target — and Adam) on a batch;
* sampling: one model evaluation per image, per-sample under ``jax.vmap`` as the samplers call
  the model (an Euler ODE step costs one such evaluation);
* compile time of each, the median time of ``--steps`` calls (``block_until_ready`` after every
  call), GFLOP/s = XLA's FLOP count of the compiled program / time;
* memory: XLA's buffer sizes of the compiled training step (arguments + outputs + temporaries,
  per device)
  and the run's peak so far (the device's ``peak_bytes_in_use`` where the backend reports it,
  else the process's maximum resident set size, which only grows over the run);
* the fraction of peak: the same-shape plain 3×3 convolution (``lax.conv_general_dilated``,
  ``channels → channels`` on the first level's feature map) and its im2col matmul
  ``(N·H·W, 9·channels) @ (9·channels, channels)`` are timed the same way, in the same dtype and
  sharding, and the U-Net's GFLOP/s is reported as a fraction of the faster of the two.

Data parallelism: on 2 devices the batch is sharded over a ``"data"`` mesh axis and the
parameters replicated (``genjax.train.data_mesh``); ``--two-devices`` picks the dtypes measured
there (float32 by default).  On CPU the 2 devices are forced host
devices in a subprocess (``XLA_FLAGS=--xla_force_host_platform_device_count=2``); they share
the same cores.  On an accelerator with ≥ 2 devices the real devices are used in-process.

    python benchmarks/unet_throughput.py                      # 8×8×1 and 16×16×1 (≈ 3 min on 2 CPU cores)
    python benchmarks/unet_throughput.py --images 32x32x3     # CIFAR-sized images

Writes ``runs/unet_throughput/results.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from genjax import interpolants, report
from genjax.nets import UNet, count_params
from genjax.nets.stats import compiled_flops
from genjax.train import data_mesh, interpolant_objective
from genjax.train.parallel import batch_sharded, replicated

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
COLUMNS = ["image", "dtype", "devices", "train img/s", "sample img/s", "train compile s", "sample compile s",
           "train GFLOP/s", "sample GFLOP/s", "conv GFLOP/s", "matmul GFLOP/s", "train of peak", "sample of peak",
           "step MB (XLA)", "peak MB"]


@dataclasses.dataclass(frozen=True)
class Config(report.RunConfig):
    images: tuple[str, ...] = ("8x8x1", "16x16x1")
    """Image shapes HxWxC (square), e.g. 32x32x3."""
    batch_size: int = 64
    """Images per training step and per sampling evaluation."""
    channels: int = 32
    """U-Net base channels."""
    channel_mult: tuple[int, ...] = (1, 2)
    """U-Net channel multiplier per level."""
    num_res_blocks: int = 1
    """Residual blocks per level."""
    attention_resolutions: tuple[int, ...] = ()
    """Feature-map sizes with self-attention (the middle block always has it)."""
    dtypes: tuple[Literal["float32", "bfloat16"], ...] = ("float32", "bfloat16")
    """Computation dtypes (parameters stay float32)."""
    steps: int = 10
    """Timed calls per measurement (the median is reported)."""
    two_devices: tuple[Literal["float32", "bfloat16"], ...] = ("float32",)
    """Dtypes also measured on 2 devices (forced host devices on CPU, real devices elsewhere); none: skip."""
    devices: int = 1
    """Devices of the measurements in this process (the forced-device subprocess sets 2)."""

    def __post_init__(self):
        report.check_positive(self, "batch_size", "channels", "num_res_blocks", "steps", "devices")
        for image in self.images:
            parse_image(image)
        if self.batch_size % max(self.devices, 2 if self.two_devices else 1):
            raise ValueError(f"--batch-size {self.batch_size} must be divisible by the number of devices")


def parse_image(image: str) -> tuple[int, int, int]:
    """``"HxWxC"`` → ``(H, W, C)``."""
    try:
        height, width, channels = (int(v) for v in image.lower().split("x"))
    except ValueError:
        raise ValueError(f"--images: expected shapes like 16x16x1, got {image!r}") from None
    if height != width or min(height, channels) < 1:
        raise ValueError(f"--images: expected square shapes like 16x16x1, got {image!r}")
    return height, width, channels


def time_calls(fn, args, steps: int) -> dict:
    """Compile ``fn(*args)``, call it once, then time ``steps`` calls (blocking on each)."""
    tic = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - tic
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(steps):
        tic = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - tic)
    seconds = float(np.median(times))
    memory = compiled.memory_analysis()
    buffers = None if memory is None else (memory.argument_size_in_bytes + memory.output_size_in_bytes
                                           + memory.temp_size_in_bytes)
    flops = compiled_flops(compiled)
    return {"compile_s": compile_s, "seconds": seconds, "flops": flops, "gflops_per_s": flops / seconds / 1e9,
            "buffer_bytes": buffers}


def peak_memory_bytes() -> tuple[int, str]:
    """The device's peak bytes in use where reported, else the process's maximum RSS."""
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"]), "device peak_bytes_in_use"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process max RSS"


def shard(mesh, batch_args, replicated_args):
    """Batch arrays split over ``"data"`` and the rest replicated (no-op without a mesh)."""
    if mesh is None:
        return batch_args, replicated_args
    return jax.device_put(batch_args, batch_sharded(mesh)), jax.device_put(replicated_args, replicated(mesh))


def peak_kernels(cfg: Config, size: int, dtype, mesh) -> tuple[dict, dict]:
    """Timings of the same-shape 3×3 conv ``channels → channels`` and of its im2col matmul."""
    n, c = cfg.batch_size, cfg.channels
    keys = jax.random.split(jax.random.key(cfg.seed + 1), 4)
    (x, a), (w, b) = shard(mesh, (jax.random.normal(keys[0], (n, size, size, c), dtype),
                                  jax.random.normal(keys[1], (n * size * size, 9 * c), dtype)),
                           (jax.random.normal(keys[2], (3, 3, c, c), dtype), jax.random.normal(keys[3], (9 * c, c), dtype)))

    def conv(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    return time_calls(conv, (x, w), cfg.steps), time_calls(jnp.matmul, (a, b), cfg.steps)


@dataclasses.dataclass(frozen=True)
class Setup:
    """What the measurements of one image shape share: float32 params and Adam state, the batch, the mesh."""

    image: str
    mesh: jax.sharding.Mesh | None
    tx: optax.GradientTransformation
    params: dict
    opt_state: optax.OptState
    x: jax.Array
    t: jax.Array
    key: jax.Array

    @property
    def num_devices(self) -> int:
        return 1 if self.mesh is None else self.mesh.size


def measure(cfg: Config, image: str, dtype_names, num_devices: int) -> list[dict]:
    """Rows for one image shape: training and sampling throughput per computation dtype on ``num_devices``."""
    shape = parse_image(image)
    net = UNet(channels=cfg.channels, channel_mult=cfg.channel_mult, num_res_blocks=cfg.num_res_blocks,
               attention_resolutions=cfg.attention_resolutions)
    mesh = data_mesh(num_devices) if num_devices > 1 else None
    k_init, k_x, k_loss = jax.random.split(jax.random.key(cfg.seed), 3)
    params = jax.jit(net.init)(k_init, 0.0, jnp.zeros(shape))  # float32: the same params serve every dtype
    tx = optax.adam(1e-4)
    x = jax.random.normal(k_x, (cfg.batch_size, *shape))
    t = jnp.linspace(0.05, 0.95, cfg.batch_size)
    (x, t), (params, opt_state) = shard(mesh, (x, t), (params, tx.init(params)))
    setup = Setup(image, mesh, tx, params, opt_state, x, t, k_loss)
    return [measure_dtype(cfg, setup, net.clone(dtype=DTYPES[name]), name) for name in dtype_names]


def measure_dtype(cfg: Config, setup: Setup, net: UNet, dtype_name: str) -> dict:
    """One row.  XLA counts the FLOPs of one device's share of a sharded program, hence ``× devices``."""
    loss_fn = interpolant_objective(net.apply, interpolants.linear, prediction="velocity")

    def train_step(params, opt_state, x, key):
        grads = jax.grad(lambda p: loss_fn(p, x, key)[0])(params)
        updates, opt_state = setup.tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def evaluate(params, t, x):
        return jax.vmap(lambda ti, xi: net.apply(params, ti, xi))(t, x)

    devices = setup.num_devices
    print(f"measuring {setup.image} {dtype_name} on {devices} device(s)…", flush=True)
    train = time_calls(train_step, (setup.params, setup.opt_state, setup.x, setup.key), cfg.steps)
    sample = time_calls(evaluate, (setup.params, setup.t, setup.x), cfg.steps)
    conv, matmul = peak_kernels(cfg, setup.x.shape[1], net.dtype, setup.mesh)
    peak = max(conv["gflops_per_s"], matmul["gflops_per_s"])
    memory, memory_source = peak_memory_bytes()
    return {
        "image": setup.image, "dtype": dtype_name, "devices": devices, "params": count_params(setup.params),
        "train img/s": cfg.batch_size / train["seconds"], "sample img/s": cfg.batch_size / sample["seconds"],
        "train compile s": train["compile_s"], "sample compile s": sample["compile_s"],
        "train GFLOP/s": devices * train["gflops_per_s"], "sample GFLOP/s": devices * sample["gflops_per_s"],
        "conv GFLOP/s": devices * conv["gflops_per_s"], "matmul GFLOP/s": devices * matmul["gflops_per_s"],
        "train of peak": train["gflops_per_s"] / peak, "sample of peak": sample["gflops_per_s"] / peak,
        "step MB (XLA)": None if train["buffer_bytes"] is None else train["buffer_bytes"] / 2**20,
        "peak MB": memory / 2**20, "peak memory source": memory_source,
        "train GFLOP per image": devices * train["flops"] / cfg.batch_size / 1e9,
        "sample GFLOP per image": devices * sample["flops"] / cfg.batch_size / 1e9,
    }


def cli_args(cfg: Config, **overrides) -> list[str]:
    """The command-line flags that rebuild ``cfg`` (with ``overrides``) through :func:`report.cli`."""
    args = []
    for field in dataclasses.fields(cfg):
        value = overrides.get(field.name, getattr(cfg, field.name))
        flag = "--" + field.name.replace("_", "-")
        if isinstance(value, tuple):
            args += [flag, *map(str, value)]
        elif value is not None:
            args += [flag, str(value)]
    return args


def two_device_rows(cfg: Config) -> list[dict]:
    """The rows on 2 devices: real devices when there are ≥ 2, else 2 forced host devices in a subprocess on CPU."""
    if len(jax.devices()) >= 2:
        return [row for image in cfg.images for row in measure(cfg, image, cfg.two_devices, 2)]
    if jax.default_backend() != "cpu":
        print(f"2 devices: skipped (one {jax.default_backend()} device; forced host devices exist only on CPU)")
        return []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2"}
        command = [sys.executable, __file__, *cli_args(cfg, dtypes=cfg.two_devices, two_devices=(), devices=2, out=tmp)]
        print("2 forced CPU devices: running a subprocess…", flush=True)
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"the 2-device subprocess failed:\n{done.stdout}\n{done.stderr}")
        return json.loads((Path(tmp) / "results.json").read_text())["metrics"]["rows"]


def main(cfg: Config):
    out = report.output_dir(__file__, cfg.out)
    if len(jax.devices()) < cfg.devices:
        raise ValueError(f"--devices {cfg.devices}: only {len(jax.devices())} device(s) available")
    device = jax.devices()[0]
    print(f"device: {device.device_kind} ({device.platform}), {len(jax.devices())} device(s); U-Net channels "
          f"{cfg.channels}, channel_mult {cfg.channel_mult}, {cfg.num_res_blocks} block(s)/level, attention at "
          f"{cfg.attention_resolutions or 'the middle only'}; batch {cfg.batch_size}")
    rows = [row for image in cfg.images for row in measure(cfg, image, cfg.dtypes, cfg.devices)]
    if cfg.two_devices and cfg.devices == 1:
        rows += two_device_rows(cfg)
    print(report.markdown_table(rows, COLUMNS, digits=3))
    sizes = sorted({f"{row['image']}: {row['params']:,}" for row in rows})
    print(f"params: {', '.join(sizes)}; peak memory from the {rows[0]['peak memory source']}")
    path = report.write_results(out, config=cfg, metrics={"rows": rows, "device_kind": device.device_kind,
                                                          "platform": device.platform})
    print(f"wrote {path}")


if __name__ == "__main__":
    main(report.cli(Config, __doc__))
