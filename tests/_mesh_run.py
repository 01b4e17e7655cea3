"""Run with XLA_FLAGS=--xla_force_host_platform_device_count=2: sampling and likelihoods on one device
and sharded over a 2-device "data" mesh must agree (each sample draws from its own key)."""

import jax
import jax.numpy as jnp
import numpy as np

import genjax
from genjax import interpolants as I
from genjax import targets
from genjax.train.parallel import data_mesh

assert jax.device_count() == 2, jax.devices()
mesh = data_mesh(2)
field = targets.gaussian([1.0, -1.0], [0.5, 2.0]).field(I.vp, "noise")
key = jax.random.key(0)
for sampler, kw in ((genjax.sample_ode, {"solver": "euler", "num_steps": 8}),
                    (genjax.sample_ddim, {"eta": 0.5, "num_steps": 8})):
    one, _ = sampler(field, I.vp, key, (11, 2), prediction="noise", **kw)  # 11: the mesh pads to 12
    two, _ = sampler(field, I.vp, key, (11, 2), prediction="noise", mesh=mesh, **kw)
    np.testing.assert_allclose(np.asarray(two), np.asarray(one), rtol=1e-5, atol=1e-5, err_msg=sampler.__name__)
    chunked, _ = sampler(field, I.vp, key, (11, 2), prediction="noise", mesh=mesh, chunk_size=4, **kw)
    np.testing.assert_allclose(chunked, np.asarray(one), rtol=1e-5, atol=1e-5, err_msg=sampler.__name__)
x = np.asarray(one)
lp_one = genjax.log_likelihood(field, I.vp, x, prediction="noise", solver="euler", num_steps=8)
lp_two = genjax.log_likelihood(field, I.vp, x, prediction="noise", solver="euler", num_steps=8, mesh=mesh)
np.testing.assert_allclose(np.asarray(lp_two), np.asarray(lp_one), rtol=1e-5, atol=1e-4)
print("OK")
