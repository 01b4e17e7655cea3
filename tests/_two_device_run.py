"""Subprocess helper for tests/test_train.py: train a tiny MLP with ``fit(mesh=data_mesh())``.

Usage: ``python tests/_two_device_run.py NUM_DEVICES OUT.npz CHECKPOINT_DIR``. Forces
``NUM_DEVICES`` host CPU devices (``XLA_FLAGS`` must be set before jax is imported, hence a
subprocess), trains once on a sampler and once on a host stream (checkpointed to
``CHECKPOINT_DIR``), and writes the per-step losses, the final params and EMA, and the
device count used.
"""

import os
import sys

num_devices, out, checkpoint_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from genjax.train import TrainState, data_mesh, fit  # noqa: E402


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.tanh(nn.Dense(16)(x)))[..., 0]


def data(key, batch_size):
    """Inputs ``x ~ N(0, I_2)`` and targets ``sin(x_0) x_1``."""
    x = jax.random.normal(key, (batch_size, 2))
    return x, jnp.sin(x[:, 0]) * x[:, 1]


model = MLP()


def loss_fn(params, batch, key):
    x, y = batch
    residual = model.apply(params, x + 0.01 * jax.random.normal(key, x.shape)) - y
    return jnp.mean(residual**2), {}


def stream():
    """The same kind of batches from a host generator (NumPy)."""
    rng = np.random.default_rng(0)
    while True:
        x = rng.normal(size=(32, 2)).astype(np.float32)
        yield x, np.sin(x[:, 0]) * x[:, 1]


def flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


mesh = data_mesh()
start = TrainState.create(model.init(jax.random.PRNGKey(1), jnp.zeros((1, 2))), optax.adam(1e-2), jax.random.PRNGKey(0))
options = dict(batch_size=32, clip_norm=1.0, mesh=mesh, progress=False)
state, history = fit(loss_fn, start, data, num_steps=50, steps_per_call=25, **options)
streamed, stream_history = fit(loss_fn, start, stream(), num_steps=20, steps_per_call=10,
                               checkpoint_dir=checkpoint_dir, **options)
np.savez(
    out,
    loss=history["loss"],
    params=flat(state.params),
    ema=flat(state.ema_params),
    mesh_devices=mesh.devices.size,
    params_devices=len(jax.tree.leaves(state.params)[0].sharding.device_set),
    stream_loss=stream_history["loss"],
    stream_ema=flat(streamed.ema_params),
)
