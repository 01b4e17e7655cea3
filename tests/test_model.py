"""The model contract (genjax.model): the model is traced data, conditioning, chunks, meshes, errors.

Oracles: Euler steps written out by hand; the exact fields of Gaussian data (MATH.md §9.1),
per class for the conditioning tests; the PF-ODE flow map of Gaussian data for trajectories.
"""

import os
import subprocess
import sys
from pathlib import Path

import diffrax
import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import genjax
from genjax import interpolants as I
from genjax import targets
from genjax.samplers import ode as ode_module
from tests._compiles import COMPILES

KEY = jax.random.key(0)
ROOT = Path(__file__).resolve().parents[1]




def _net(width=16):
    return nn.Sequential([nn.Dense(width), nn.tanh, nn.Dense(2)])


class _Linen(nn.Module):
    width: int = 16

    @nn.compact
    def __call__(self, t, x):
        return _net(self.width)(jnp.concatenate([x, jnp.atleast_1d(t)]))


LINEN = _Linen()


def _params(seed, width=16):
    return _Linen(width).init(jax.random.key(seed), 0.5, jnp.zeros(2))


def euler_reference(fn, x, num_steps):
    """Euler on dx/dt = fn(t, x) from t = 1 to 0 (linear path, velocity prediction), vmapped by hand."""
    ts = np.linspace(1.0, 0.0, num_steps + 1)
    for t, s in zip(ts[:-1], ts[1:]):
        x = x + (s - t) * jax.vmap(lambda y: fn(jnp.float32(t), y))(x)
    return np.asarray(x)


X_INIT = jax.random.normal(jax.random.key(1), (64, 2))


def _sample(model, **kw):
    return genjax.sample_ode(model, I.linear, None, prediction="velocity", solver="euler", num_steps=4,
                             x_init=X_INIT, **kw)[0]


# ---------------------------------------------------------------------------------------------
# Model as data: one compilation for new weights, no baked constants, every model kind.
# ---------------------------------------------------------------------------------------------


def test_new_parameters_do_not_recompile():
    model = genjax.Model(LINEN.apply, _params(0))
    for sampler, kw in ((genjax.sample_ode, {"solver": "euler", "num_steps": 3}),
                        (genjax.sample_sde, {"num_steps": 3, "diffusion": lambda t: 0.1}),
                        (genjax.sample_ddim, {"num_steps": 3})):
        ip = I.linear(t_min=1e-3, t_max=0.999)
        x, _ = sampler(model, ip, KEY, (8, 2), prediction="velocity", **kw)
        before = COMPILES.count
        y, _ = sampler(genjax.Model(LINEN.apply, _params(1)), ip, KEY, (8, 2), prediction="velocity", **kw)
        assert COMPILES.count == before, f"{sampler.__name__} recompiled for new weights"
        assert float(jnp.max(jnp.abs(x - y))) > 1e-3, sampler.__name__
    lp = genjax.log_likelihood(model, I.linear, X_INIT[:4], prediction="velocity", solver="euler", num_steps=3)
    before = COMPILES.count
    lp2 = genjax.log_likelihood(genjax.Model(LINEN.apply, _params(1)), I.linear, X_INIT[:4], prediction="velocity",
                                solver="euler", num_steps=3)
    assert COMPILES.count == before and float(jnp.max(jnp.abs(lp - lp2))) > 1e-4


def test_lowered_program_does_not_grow_with_the_parameters():
    """The weights are arguments of the compiled sampler, not constants: 16 vs 512 hidden units, same size."""
    sizes = {}
    for width in (16, 512):
        model = genjax.Model(_Linen(width).apply, _params(0, width))
        inputs = (jax.random.split(KEY, 4), None, None)
        text = ode_module._ode.lower(model, I.linear, "velocity", (2,), jnp.float32, "euler", 3, None, 1e-5, 1e-5,
                                     None, None, None, 1.0, 0.0, inputs).as_text()
        sizes[width] = len(text)
    # 512 hidden units are ~2.6e5 floats: baked in, the text would grow by megabytes.
    assert abs(sizes[512] - sizes[16]) < 2000, sizes


class _NNX(nnx.Module):
    def __init__(self, rngs):
        self.dense = nnx.Linear(3, 2, rngs=rngs)

    def __call__(self, t, x):
        return self.dense(jnp.concatenate([x, jnp.atleast_1d(t)]))


class _Eqx(eqx.Module):
    dense: eqx.nn.Linear

    def __call__(self, t, x):
        return self.dense(jnp.concatenate([x, jnp.atleast_1d(t)]))


def test_linen_nnx_equinox_and_plain_functions_follow_their_weights():
    """Each kind of model gives Euler's answer for its current weights; new weights give new samples."""
    linen = genjax.Model(LINEN.apply, _params(0))
    nnx_model = _NNX(nnx.Rngs(0))
    eqx_model = _Eqx(eqx.nn.Linear(3, 2, key=jax.random.key(2)))
    plain = lambda t, x: -x + t  # noqa: E731
    partial = jax.tree_util.Partial(lambda w, t, x: w * x, jnp.float32(0.7))
    for model in (linen, nnx_model, eqx_model, plain, partial):
        np.testing.assert_allclose(_sample(model), euler_reference(model, X_INIT, 4), rtol=1e-5, atol=1e-5)
    # the stale-weights regression: mutate the NNX module in place, replace the Equinox weights
    old = _sample(nnx_model)
    nnx_model.dense.kernel.set_value(nnx_model.dense.kernel.get_value() * 2.0)
    new = _sample(nnx_model)
    np.testing.assert_allclose(new, euler_reference(nnx_model, X_INIT, 4), rtol=1e-5, atol=1e-5)
    assert np.max(np.abs(new - old)) > 1e-2
    eqx_new = eqx.tree_at(lambda m: m.dense.weight, eqx_model, eqx_model.dense.weight * 2.0)
    np.testing.assert_allclose(_sample(eqx_new), euler_reference(eqx_new, X_INIT, 4), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Conditioning: fn(t, x, c) with c batched alongside x through samplers, likelihood and loss.
# ---------------------------------------------------------------------------------------------

MEANS = jnp.array([[2.0, 0.0], [-2.0, 1.0], [0.0, -3.0]])
STD = 0.5


def _class_field(ip, prediction):
    """The exact field of N(MEANS[c], STD² I) for the class label c (MATH.md §9.1)."""
    def fn(t, x, c):
        m = MEANS[c]
        a, s, da, ds = ip.scales(t)
        var = a**2 * STD**2 + s**2
        score = -(x - a * m) / var
        return {"velocity": da * m + (a * da * STD**2 + s * ds) / var * (x - a * m), "score": score,
                "noise": -s * score, "data": (x + s**2 * score) / a}[prediction]

    return fn


LABELS = jnp.arange(300) % 3


@pytest.mark.parametrize("sampler,ip,prediction,kw", [
    (genjax.sample_ode, I.vp, "velocity", {"solver": "heun", "num_steps": 20}),
    (genjax.sample_sde, I.vp, "score", {"num_steps": 100}),
    (genjax.sample_ddim, I.vp, "noise", {"num_steps": 20}),
    (genjax.sample_heun, I.vp, "data", {"num_steps": 10}),
    (genjax.sample_pc, I.vp, "score", {"num_steps": 100, "snr": 0.05}),
], ids=["ode", "sde", "ddim", "heun", "pc"])
def test_conditioning_reaches_every_sampler(sampler, ip, prediction, kw):
    """Each class's samples have its mean: 100 per class, 5 s.e. = 0.25, plus 0.05 discretisation."""
    x, _ = sampler(_class_field(ip, prediction), ip, KEY, (LABELS.shape[0], 2), prediction=prediction, c=LABELS,
                   **kw)
    for label in range(3):
        got = np.asarray(x)[np.asarray(LABELS) == label].mean(0)
        np.testing.assert_allclose(got, MEANS[label], atol=5 * STD / np.sqrt(100) + 0.05)
        assert np.linalg.norm(got - MEANS[(label + 1) % 3]) > 1.0  # and not another class's mean


def test_conditioning_in_the_likelihood_and_the_loss():
    ip = I.linear
    x = MEANS[LABELS[:6]] + STD * jax.random.normal(KEY, (6, 2))
    lp = genjax.log_likelihood(_class_field(ip, "velocity"), ip, x, prediction="velocity", c=LABELS[:6],
                               rtol=1e-6, atol=1e-6)
    exact = -0.5 * jnp.sum((x - MEANS[LABELS[:6]]) ** 2, 1) / STD**2 - 2 * np.log(STD) - np.log(2 * np.pi)
    np.testing.assert_allclose(lp, exact, atol=1e-3)
    # The loss: per sample i, (t, z) from split(split(key, n)[i]) (losses/interpolant.py), CFM target z − x0.
    model = lambda t, y, c: y * (c + 1.0)  # noqa: E731
    losses = genjax.interpolant_loss(model, ip, x, KEY, prediction="velocity", c=LABELS[:6].astype(jnp.float32))
    for i, k in enumerate(jax.random.split(KEY, 6)):
        kt, kz = jax.random.split(k)
        t = jax.random.uniform(kt, (), minval=ip.t_min, maxval=ip.t_max)
        z = jax.random.normal(kz, (2,))
        xt = (1 - t) * x[i] + t * z
        want = jnp.sum((xt * (LABELS[i] + 1.0) - (z - x[i])) ** 2)
        np.testing.assert_allclose(losses[i], want, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Large sample sets: chunks give the same samples; trajectories; explicit grids; solver objects.
# ---------------------------------------------------------------------------------------------


def test_chunks_give_the_same_samples():
    """Each sample draws from its own key: chunking changes nothing (the diffrax and the grid cores)."""
    field = targets.gaussian([1.0, -1.0], [0.5, 2.0]).field(I.vp, "noise")
    for sampler, kw in ((genjax.sample_ode, {"solver": "euler", "num_steps": 8}),
                        (genjax.sample_ddim, {"eta": 0.5, "num_steps": 8})):
        whole, _ = sampler(field, I.vp, KEY, (10, 2), prediction="noise", **kw)
        chunked, _ = sampler(field, I.vp, KEY, (10, 2), prediction="noise", chunk_size=4, **kw)
        assert isinstance(chunked, np.ndarray) and chunked.shape == (10, 2)
        np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-5, err_msg=sampler.__name__)
    x = np.asarray(whole)
    lp = genjax.log_likelihood(field, I.vp, x, prediction="noise", solver="euler", num_steps=8)
    np.testing.assert_allclose(genjax.log_likelihood(field, I.vp, x, prediction="noise", solver="euler", num_steps=8,
                                                     chunk_size=3), lp, rtol=1e-5, atol=1e-5)


def test_trajectory_follows_the_exact_flow_and_grids_match():
    g = targets.gaussian([1.0, -1.0], [0.5, 2.0])
    ip = I.trig
    x1 = jax.random.normal(KEY, (256, 2))
    save = [0.75, 0.5, 0.25]
    x, stats = genjax.sample_ode(g.field(ip, "velocity"), ip, None, prediction="velocity", x_init=x1,
                                 save_times=save, solver="heun", num_steps=40)
    assert stats["trajectory"].shape == (3, 256, 2)
    for k, t in enumerate(save):  # the flow map of Gaussian data: mean α m, std sqrt(α²s² + σ²)
        a, s, _, _ = ip.scales(jnp.float32(t))
        std = jnp.sqrt(a**2 * jnp.array([0.25, 4.0]) + s**2)
        want = a * jnp.array([1.0, -1.0]) + std * x1  # std(1) = 1 for trig
        np.testing.assert_allclose(stats["trajectory"][k], want, rtol=2e-3, atol=2e-3)  # Heun-40: O(h²), measured 6e-4 rel.
    grid, _ = genjax.sample_ode(g.field(ip, "velocity"), ip, None, prediction="velocity", x_init=x1,
                                solver="heun", ts=np.linspace(1.0, 0.0, 41))
    np.testing.assert_allclose(grid, x, rtol=1e-5, atol=1e-5)  # float32 grids: linspace in float64 vs float32
    _, ddim_stats = genjax.sample_ddim(g.field(I.vp, "noise"), I.vp, KEY, (4, 2), prediction="noise", num_steps=4,
                                       save_times=[0.5, 0.25])
    assert ddim_stats["trajectory"].shape == (2, 4, 2)


def test_diffrax_solver_objects_and_their_evaluation_counts():
    calls = [0]

    def fn(t, x):
        jax.debug.callback(lambda: calls.__setitem__(0, calls[0] + 1))
        return -x

    for solver in (diffrax.Ralston(), diffrax.Dopri8()):  # adaptive: 2nd order with an error estimate; FSAL
        calls[0] = 0
        x, stats = genjax.sample_ode(fn, I.linear, None, prediction="velocity", solver=solver, num_steps=10,
                                     x_init=jnp.ones((1, 2)))
        jax.effects_barrier()
        assert int(stats["nfe"]) == calls[0]
        np.testing.assert_allclose(x, np.exp(1.0) * np.ones((1, 2)), rtol=1e-2)  # dx/dt = −x from 1 to 0
    with pytest.raises(ValueError, match="Butcher tableau"):
        genjax.sample_ode(fn, I.linear, None, prediction="velocity", solver=diffrax.ImplicitEuler(),
                          x_init=jnp.ones((1, 2)))


def test_one_and_two_devices_give_the_same_samples_and_likelihoods():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "_mesh_run.py")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout, out.stdout


# ---------------------------------------------------------------------------------------------
# Errors a user can act on.
# ---------------------------------------------------------------------------------------------

SAMPLERS = {
    "ode": (genjax.sample_ode, {}),
    "sde": (genjax.sample_sde, {"num_steps": 4}),
    "ddpm": (genjax.sample_ddpm, {"num_steps": 4}),
    "ddim": (genjax.sample_ddim, {"num_steps": 4}),
    "heun": (genjax.sample_heun, {"num_steps": 4}),
    "pc": (genjax.sample_pc, {"num_steps": 4}),
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_wrong_output_shape_is_reported(name):
    sampler, kw = SAMPLERS[name]
    with pytest.raises(ValueError, match=r"per-sample shape and dtype of x, \(2,\) float32; got \(1,\)"):
        sampler(lambda t, x: x[:1], I.vp, KEY, (4, 2), prediction="noise", **kw)


def test_non_finite_output_and_step_budget():
    with pytest.raises(FloatingPointError, match="non-finite"):
        genjax.sample_ode(lambda t, x: x / 0.0, I.linear, KEY, (4, 2), prediction="velocity", solver="euler")
    with pytest.raises(FloatingPointError, match="non-finite"):
        genjax.sample_ddim(lambda t, x: jnp.log(-jnp.abs(x) - 1.0), I.vp, KEY, (4, 2), prediction="noise")
    with pytest.raises(RuntimeError, match="max_steps=3"):
        genjax.sample_ode(lambda t, x: jnp.sin(50 * t) * x, I.linear, KEY, (4, 2), prediction="velocity",
                          max_steps=3)


def test_singular_schedule_prediction_pairs_are_rejected_up_front():
    with pytest.raises(ValueError, match=r"linear\(t_max=0\.99"):
        genjax.sample_ode(lambda t, x: x, I.linear, KEY, (4, 2), prediction="noise")
    with pytest.raises(ValueError, match="singular"):
        genjax.log_likelihood(lambda t, x: x, I.linear, np.ones((2, 2)), prediction="score")
    with pytest.raises(ValueError, match="model must be a callable"):
        genjax.sample_ode(None, I.linear, KEY, (4, 2), prediction="velocity")
    with pytest.raises(ValueError, match="c must be batched"):
        genjax.sample_ode(lambda t, x, c: x, I.linear, KEY, (4, 2), prediction="velocity", c=jnp.zeros(3))
