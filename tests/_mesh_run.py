"""Run with XLA_FLAGS=--xla_force_host_platform_device_count=2: sampling and likelihoods on one device
and sharded over a 2-device "data" mesh must agree (each sample draws from its own key)."""

import jax
import numpy as np

import genjax
from genjax import interpolants as I
from genjax import targets
from genjax.train.parallel import data_mesh

assert jax.device_count() == 2, jax.devices()
mesh = data_mesh(2)
field = targets.gaussian([1.0, -1.0], [0.5, 2.0]).field(I.vp, "noise")
key = jax.random.key(0)
one, _ = genjax.sample_ode(field, I.vp, key, (11, 2), prediction="noise", solver="euler", num_steps=8)
two, _ = genjax.sample_ode(field, I.vp, key, (11, 2), prediction="noise", solver="euler", num_steps=8, mesh=mesh)
np.testing.assert_allclose(np.asarray(two), np.asarray(one), rtol=1e-5, atol=1e-5)  # 11 rows: the mesh pads to 12
x = np.asarray(one)
lp_one = genjax.log_likelihood(field, I.vp, x, prediction="noise", solver="euler", num_steps=8)
lp_two = genjax.log_likelihood(field, I.vp, x, prediction="noise", solver="euler", num_steps=8, mesh=mesh)
np.testing.assert_allclose(np.asarray(lp_two), np.asarray(lp_one), rtol=1e-5, atol=1e-4)
print("OK")
