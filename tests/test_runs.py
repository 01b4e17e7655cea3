"""genjax.runs (save_run / load_run) and the ``python -m genjax.sample`` command line on a saved run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import genjax
from genjax import interpolants
from genjax.nets import TimeMLP
from genjax.sample import SampleConfig, sample_run

NET = TimeMLP(hidden=(16, 16), num_frequencies=2, max_frequency=4.0)
IP = ("ve", {"sigma_min": 0.02, "sigma_max": 3.0})
_init = jax.jit(NET.init)


def params(seed):
    return _init(jax.random.key(seed), jnp.zeros(()), jnp.zeros((2,)))


def save(run_dir, seed=0, **kw):
    args = dict(net=NET, params=params(seed), interpolant="vp", prediction="noise", config={"steps": 3, "seed": seed},
                event_shape=(2,))
    return genjax.save_run(run_dir, **{**args, **kw})


def test_two_head_bridge_run_round_trips(tmp_path):
    """A two-sided (b, η) run: TimeMLP(heads=2), the bridge preset with params, a tuple prediction; the SDE runs on it."""
    net = TimeMLP(hidden=(16,), num_frequencies=2, heads=2)
    p = jax.jit(net.init)(jax.random.key(0), jnp.zeros(()), jnp.zeros((2,)))
    spec = ("bridge", {"path": "trig", "gamma": "brownian", "a": 0.25})
    genjax.save_run(tmp_path / "b", net=net, params=p, interpolant=spec, prediction=("velocity", "noise"), config={},
                    event_shape=(2,))
    run = genjax.load_run(tmp_path / "b")
    assert run.prediction == ("velocity", "noise") and run.interpolant.two_sided
    x = jnp.ones((3, 2))
    for got, want in zip(run.model(0.3, x), net.apply(p, 0.3, x)):
        np.testing.assert_array_equal(got, want)
    xs, _ = genjax.sample_sde(run.model, run.interpolant, jax.random.key(1), x_init=x, prediction=run.prediction,
                              diffusion=0.1, num_steps=4)
    assert xs.shape == x.shape
    np.save(tmp_path / "x0.npy", np.asarray(x))
    cfg = SampleConfig(run_dir=str(tmp_path / "b"), sampler="sde", x_init=str(tmp_path / "x0.npy"), forward=True,
                       diffusion=0.1, num_steps=4)
    ys, stats = sample_run(run, cfg)
    assert ys.shape == x.shape and int(stats["nfe"]) == 4
    with pytest.raises(ValueError, match="pass x_init"):
        sample_run(run, SampleConfig(run_dir=str(tmp_path / "b"), n=3))
    with pytest.raises(ValueError, match="several heads are for two-sided"):
        genjax.save_run(tmp_path / "c", net=net, params=p, interpolant="linear", prediction=("velocity", "noise"),
                        config={}, event_shape=(2,))


def test_save_then_load_gives_the_same_model(tmp_path):
    save(tmp_path / "run", interpolant=IP)
    run = genjax.load_run(tmp_path / "run")
    t = jnp.linspace(0.0, 1.0, 5)
    x = jax.random.normal(jax.random.key(1), (5, 2))
    batched = jax.jit(jax.vmap(lambda model, t, x: model(t, x), (None, 0, 0)))
    expected = batched(genjax.Model(NET.apply, params(0)), t, x)
    np.testing.assert_array_equal(np.asarray(batched(run.model, t, x)), np.asarray(expected))
    assert isinstance(run.model, genjax.Model)
    assert run.prediction == "noise" and run.event_shape == (2,) and run.config == {"steps": 3, "seed": 0}
    assert run.net == NET and run.interpolant_spec == {"preset": "ve", "params": IP[1]}
    assert float(run.interpolant.beta(0.0)) == pytest.approx(0.02, rel=1e-6)  # σ(0) = σ_min
    assert float(run.interpolant.beta(1.0)) == pytest.approx(3.0, rel=1e-6)  # σ(1) = σ_max
    # the same network is rebuilt once per process, so compiled samplers are shared across loads
    assert genjax.load_run(tmp_path / "run").model.apply_fn == run.model.apply_fn


def test_sample_cli_in_a_new_process_uses_the_saved_params(tmp_path):
    save(tmp_path / "run")
    out = tmp_path / "out" / "x.npy"
    args = [str(tmp_path / "run"), "--sampler", "ddim", "--num-steps", "4", "--n", "7", "--chunk-size", "4",
            "--seed", "3", "--out", str(out)]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-m", "genjax.sample", *args], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "NFE 4" in done.stdout
    samples = np.load(out)
    assert samples.shape == (7, 2) and np.all(np.isfinite(samples))
    assert out.with_suffix(".png").stat().st_size > 0
    # the same draws in this process from the same saved params...
    cfg = SampleConfig(run_dir=str(tmp_path / "run"), sampler="ddim", num_steps=4, n=7, chunk_size=4, seed=3)
    same, _ = sample_run(genjax.load_run(tmp_path / "run"), cfg)
    np.testing.assert_allclose(np.asarray(same), samples, rtol=1e-5, atol=1e-6)
    # ...and other draws once other params are saved there: the model really comes from disk
    save(tmp_path / "run", seed=1)
    other, _ = sample_run(genjax.load_run(tmp_path / "run"), cfg)
    assert np.max(np.abs(np.asarray(other) - samples)) > 1e-2


def test_load_run_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        genjax.load_run(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="run.json"):
        genjax.load_run(tmp_path / "empty")
    run = save(tmp_path / "run")
    record = json.loads((run / "run.json").read_text())

    def broken(name, text):
        path = tmp_path / name
        save(path)
        (path / "run.json").write_text(text)
        return path

    with pytest.raises(ValueError, match="not valid JSON"):
        genjax.load_run(broken("bad_json", "{"))
    with pytest.raises(ValueError, match="unknown network class 'NoSuchNet'"):
        genjax.load_run(broken("bad_net", json.dumps({**record, "net": {**record["net"], "class": "NoSuchNet"}})))
    with pytest.raises(ValueError, match="interpolant"):
        genjax.load_run(broken("bad_ip", json.dumps({**record, "interpolant": {"preset": "warp", "params": {}}})))
    with pytest.raises(ValueError, match="prediction"):
        genjax.load_run(broken("bad_pred", json.dumps({**record, "prediction": "epsilon"})))
    with pytest.raises(ValueError, match="params do not match"):  # a wider net than the saved params
        wide = {**record["net"], "fields": {**record["net"]["fields"], "hidden": [32, 16]}}
        genjax.load_run(broken("bad_shape", json.dumps({**record, "net": wide})))
    missing = broken("no_params", json.dumps(record))
    for file in sorted((missing / "params").rglob("*"), reverse=True):
        file.unlink() if file.is_file() else file.rmdir()
    (missing / "params").rmdir()
    with pytest.raises(FileNotFoundError, match="parameter checkpoint"):
        genjax.load_run(missing)


def test_save_run_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="not a default preset"):
        save(tmp_path / "a", interpolant=interpolants.ve(sigma_max=3.0))  # re-parameterised: needs (name, kwargs)
    with pytest.raises(ValueError, match="unknown interpolant preset"):
        save(tmp_path / "b", interpolant="warp")
    with pytest.raises(ValueError, match="prediction"):
        save(tmp_path / "c", prediction="epsilon")
    with pytest.raises(ValueError, match="params do not match"):
        save(tmp_path / "d", event_shape=(3,))
    with pytest.raises(ValueError, match="finite"):
        save(tmp_path / "e", params=jax.tree.map(lambda a: a * jnp.nan, params(0)))
    assert not (tmp_path / "a").exists()
    save(tmp_path / "f", interpolant=interpolants.linear)  # a default preset object is recorded by name
    assert genjax.load_run(tmp_path / "f").interpolant_spec == {"preset": "linear", "params": {}}


def test_sample_cli_fast_solvers(tmp_path):
    """``--sampler dpm --order 1 --spacing time`` is DDIM (η = 0) on the grid uniform in t (MATH.md §12);
    ``dpm``/``unipc`` take N model calls for N steps, with warm-up and final lower orders (N < 15); the options are checked."""
    save(tmp_path / "run")
    run = genjax.load_run(tmp_path / "run")
    x = np.asarray(jax.random.normal(jax.random.key(0), (6, 2)))
    np.save(tmp_path / "x.npy", x)
    common = dict(run_dir=str(tmp_path / "run"), num_steps=4, x_init=str(tmp_path / "x.npy"))
    dpm1, stats = sample_run(run, SampleConfig(sampler="dpm", order=1, spacing="time", **common))
    ip = run.interpolant
    np.testing.assert_allclose(stats["ts"], np.linspace(ip.t_max, ip.t_min, 5), rtol=1e-6)
    ddim, _ = genjax.samplers.sample_ddim(run.model, ip, prediction="noise", timesteps=stats["ts"], x_init=x)
    np.testing.assert_allclose(np.asarray(dpm1), np.asarray(ddim), atol=1e-5 * float(np.max(np.abs(ddim))))
    for sampler in ("dpm", "unipc"):
        y, stats = sample_run(run, SampleConfig(sampler=sampler, order=3, spacing="edm", **common))
        assert y.shape == (6, 2) and int(stats["nfe"]) == 4 and list(np.asarray(stats["orders"])) == [1, 2, 2, 1]
    with pytest.raises(ValueError, match="--order must be 1, 2 or 3"):
        SampleConfig(sampler="dpm", order=4, run_dir=str(tmp_path / "run"))
