"""The public names promised in the README, used exactly as a user outside the repository would."""

import jax
import jax.numpy as jnp
import numpy as np

import genjax


def test_public_names_exist():
    for name in ("Interpolant", "convert", "interpolant_loss", "sample_ode", "sample_sde", "sample_ddpm",
                 "sample_ddim", "sample_heun", "sample_pc", "sample_annealed_langevin", "Model", "log_likelihood",
                 "bits_per_dim", "fit", "train_interpolant", "metrics"):
        assert hasattr(genjax, name), name
    for preset in ("linear", "trig", "vp", "subvp", "ve", "ddpm", "cosine"):
        assert isinstance(getattr(genjax.interpolants, preset), genjax.Interpolant)
    assert callable(genjax.data.toy.get("eight_gaussians").sample)


def test_sampler_calling_convention_with_an_exact_field():
    """``sample_X(fn, interpolant, key, shape, prediction=...)``; sample_ode returns (samples, stats)."""
    g = genjax.targets.gaussian([1.0, -1.0], [0.5, 0.5])
    ip = genjax.interpolants.vp
    key, shape = jax.random.key(0), (256, 2)
    x, stats = genjax.sample_ode(g.field(ip, "noise"), ip, key, shape, prediction="noise", solver="heun",
                                 num_steps=20)
    assert x.shape == shape and int(stats["nfe"]) == 40
    for sampler, kw in ((genjax.sample_sde, {"num_steps": 100}), (genjax.sample_ddpm, {"num_steps": 100}),
                        (genjax.sample_ddim, {"num_steps": 20})):
        out, stats = sampler(g.field(ip, "noise"), ip, key, shape, prediction="noise", **kw)
        assert int(stats["nfe"]) == {"sample_sde": 100, "sample_ddpm": 100, "sample_ddim": 20}[sampler.__name__]
        assert out.shape == shape and np.all(np.isfinite(np.asarray(out)))
        # 256 samples: the mean is within 5 s.e. (0.5/16) plus a small discretisation error of (1, −1)
        np.testing.assert_allclose(np.asarray(out).mean(0), [1.0, -1.0], atol=0.2)
    logp = genjax.log_likelihood(g.field(ip, "velocity"), ip, x[:8], prediction="velocity", solver="euler",
                                 num_steps=10)
    assert logp.shape == (8,) and np.all(np.isfinite(np.asarray(logp)))
    assert float(genjax.bits_per_dim(jnp.float32(-2 * np.log(2.0)), 2)) == 8.0
