"""Checkpoints of the trainer: bit-exact resume (arrays and streams), the metrics file on resume,
the directory lock, checksums with fallback to the newest intact step, and ``load_params``."""

import itertools
import json
import re
import shutil
import subprocess
import sys
import textwrap
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax.train import (
    TrainState,
    checkpoint_lock,
    checkpoint_manager,
    fit,
    load_params,
    restore_state,
    resume_step,
    save_state,
    saved_steps,
)


class TinyMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.tanh(nn.Dense(8)(x)))[..., 0]


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    """A small MLP regression with Adam, clipping, EMA and loss noise from the step key, run for 20
    steps with a checkpoint every 5 (kept: 5, 10, 15, 20). Tests must not modify ``dir``."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(96, 2)).astype(np.float32)
    y = np.sin(x[:, 0]) * x[:, 1]
    model = TinyMLP()

    def loss_fn(p, batch, key):
        xb, yb = batch
        residual = model.apply(p, xb + 0.01 * jax.random.normal(key, xb.shape)) - yb
        return jnp.mean(residual**2), {"max_abs": jnp.max(jnp.abs(residual))}

    state = TrainState.create(model.init(jax.random.PRNGKey(1), x[:1]), optax.adam(1e-2), jax.random.PRNGKey(0))
    kwargs = dict(batch_size=16, steps_per_call=5, clip_norm=1.0, ema_decay=0.9, progress=False)
    directory = tmp_path_factory.mktemp("regression") / "ckpt"
    full, history = fit(loss_fn, state, (x, y), num_steps=20, checkpoint_dir=directory, checkpoint_every=5, keep=4,
                        **kwargs)
    return dict(model=model, loss_fn=loss_fn, state=state, data=(x, y), kwargs=kwargs, full=full, history=history,
                dir=directory)


def assert_states_equal(a, b):
    for field in ("params", "ema_params", "opt_state", "step", "key"):
        jax.tree.map(np.testing.assert_array_equal, getattr(a, field), getattr(b, field))


def messages(record) -> str:
    return "\n".join(str(w.message) for w in record)


# ----------------------------------------------------------------------------- exact resume


@pytest.mark.parametrize("stop", [10, 7])  # at a checkpoint_every boundary, and mid-call (final save at 7)
def test_exact_resume_is_bit_identical_and_cuts_the_metrics_file(regression, tmp_path, stop):
    r = regression
    ckpt, metrics = tmp_path / "ckpt", tmp_path / "metrics.jsonl"
    fit(r["loss_fn"], r["state"], r["data"], num_steps=stop, checkpoint_dir=ckpt, checkpoint_every=5, keep=2,
        metrics_path=metrics, **r["kwargs"])
    assert saved_steps(ckpt) == [5, stop]
    first = [5, stop]
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == first
    with metrics.open("a") as f:  # what a crash after the last checkpoint leaves behind: later records, a cut line
        f.write('{"step": 12, "loss": 0.0}\n{"step": 1')

    resumed, history = fit(r["loss_fn"], r["state"], r["data"], num_steps=20, checkpoint_dir=ckpt,
                           checkpoint_every=5, keep=2, resume=True, metrics_path=metrics, **r["kwargs"])
    assert_states_equal(resumed, r["full"])  # bit-identical on CPU
    np.testing.assert_array_equal(history["step"], np.arange(stop + 1, 21))
    np.testing.assert_array_equal(history["loss"], r["history"]["loss"][stop:])
    assert saved_steps(ckpt) == [15, 20]  # keep=2: only the newest two remain
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [rec["step"] for rec in records] == first + [s for s in (10, 15, 20) if s > stop]
    np.testing.assert_allclose(records[-1]["loss"], np.mean(r["history"]["loss"][15:20]), rtol=1e-6)

    again, history = fit(r["loss_fn"], r["state"], r["data"], num_steps=20, checkpoint_dir=ckpt, resume=True,
                         **r["kwargs"])  # already complete: restores, runs nothing, compiles nothing
    assert_states_equal(again, r["full"])
    assert len(history["step"]) == 0 and history["compile_s"] == 0


def replayed_stream(r, start: int):
    """The batches the array source of ``regression`` draws (``key, k_data, _ = split(key, 3)``, then
    16 indices uniform from ``k_data``), from global step ``start + 1`` on: a positioned stream."""
    (x, y), key = r["data"], r["state"].key
    for step in itertools.count():
        key, data_key, _ = jax.random.split(key, 3)
        if step >= start:
            index = np.asarray(jax.random.randint(data_key, (16,), 0, len(x)))
            yield x[index], y[index]


def test_stream_resumes_exactly_when_positioned(regression, tmp_path):
    """Resumed from step 10 with a stream of the batches the arrays would have given from there,
    training ends bit-identical to the uninterrupted run on the arrays."""
    r = regression
    ckpt = tmp_path / "ckpt"
    shutil.copytree(r["dir"], ckpt, ignore=lambda folder, names: {"15", "20"} if folder == str(r["dir"]) else set())
    start = resume_step(ckpt)
    assert start == 10
    resumed, history = fit(r["loss_fn"], r["state"], replayed_stream(r, start), num_steps=20, checkpoint_dir=ckpt,
                           resume=True, **r["kwargs"])
    assert_states_equal(resumed, r["full"])
    np.testing.assert_array_equal(history["loss"], r["history"]["loss"][10:])


# ----------------------------------------------------------------------------- errors


def test_checkpoint_errors(regression, tmp_path):
    r = regression
    args = (r["loss_fn"], r["state"], r["data"])
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match="missing"):
        fit(*args, num_steps=20, checkpoint_dir=missing, resume=True, **r["kwargs"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no checkpoint"):
        fit(*args, num_steps=20, checkpoint_dir=tmp_path / "empty", resume=True, **r["kwargs"])
    with pytest.raises(ValueError, match="num_steps=15 is below step 20"):
        fit(*args, num_steps=15, checkpoint_dir=r["dir"], resume=True, **r["kwargs"])

    ckpt = tmp_path / "ckpt"
    with checkpoint_manager(ckpt) as manager:
        save_state(manager, r["full"])
    with pytest.raises(ValueError, match="already holds checkpoints"):
        fit(*args, num_steps=20, checkpoint_dir=ckpt, **r["kwargs"])
    for file in (ckpt / "20").rglob("*"):  # truncate every file of the saved step
        if file.is_file():
            file.write_bytes(b"")
    with pytest.warns(UserWarning, match="step 20 .* is corrupt"), pytest.raises(ValueError, match="corrupt"):
        restore_state(ckpt, r["state"])

    with checkpoint_manager(tmp_path / "nan") as manager, pytest.raises(FloatingPointError, match="non-finite"):
        save_state(manager, r["state"].replace(ema_params=jax.tree.map(lambda p: p * jnp.nan, r["state"].params)))
    assert saved_steps(tmp_path / "nan") == []
    with pytest.raises(ValueError, match="which must be"):
        load_params(r["dir"], which="opt_state")


# ----------------------------------------------------------------------------- integrity


def flip_bit(step_dir) -> str:
    """Flip one bit in the middle of the largest array-data file of a saved step; return its path in the step."""
    file = max((f for f in step_dir.rglob("*") if f.is_file() and f.parent.name == "d"), key=lambda f: f.stat().st_size)
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 1
    file.write_bytes(bytes(data))
    return file.relative_to(step_dir).as_posix()


def test_corrupt_newest_step_is_reported_and_resume_falls_back(regression, tmp_path):
    r = regression
    ckpt = tmp_path / "ckpt"
    shutil.copytree(r["dir"], ckpt)
    name = flip_bit(ckpt / "20")
    problem = f"step 20 in .* is corrupt: file {re.escape(name)} does not match its SHA-256"

    with pytest.raises(ValueError, match=problem):  # a specific corrupt step is an error
        restore_state(ckpt, r["state"], step=20)
    with pytest.raises(ValueError, match=problem):
        load_params(ckpt, step=20)
    with pytest.warns(UserWarning) as record:  # the newest intact one otherwise
        assert int(restore_state(ckpt, r["state"]).step) == 15
    assert re.search(problem, messages(record)) and "falling back to step 15" in messages(record)

    with pytest.warns(UserWarning) as record:
        resumed, history = fit(r["loss_fn"], r["state"], r["data"], num_steps=20, checkpoint_dir=ckpt,
                               checkpoint_every=5, keep=4, resume=True, **r["kwargs"])
    assert "falling back to step 15" in messages(record) and "moved corrupt checkpoint step 20" in messages(record)
    np.testing.assert_array_equal(history["step"], np.arange(16, 21))
    assert_states_equal(resumed, r["full"])  # resumed from 15, redid 16..20 exactly
    assert saved_steps(ckpt) == [5, 10, 15, 20] and (ckpt / "corrupt-20" / name).is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new step 20 is intact
        assert_states_equal(restore_state(ckpt, r["state"]), r["full"])


def test_load_params_without_a_template(regression):
    r = regression
    x = r["data"][0][:5]
    ema = load_params(r["dir"])
    assert jax.tree.structure(ema) == jax.tree.structure(r["full"].ema_params)
    np.testing.assert_array_equal(r["model"].apply(ema, x), r["model"].apply(r["full"].ema_params, x))
    jax.tree.map(np.testing.assert_array_equal, load_params(r["dir"], which="params"), r["full"].params)
    older = restore_state(r["dir"], r["state"], step=10)
    jax.tree.map(np.testing.assert_array_equal, load_params(r["dir"], step=10), older.ema_params)


# ----------------------------------------------------------------------------- the lock

HOLD_LOCK = textwrap.dedent("""
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.write(fd, b"pid %d" % os.getpid())
    print("locked", flush=True)
    time.sleep(120)
""")


def test_checkpoint_dir_is_locked_while_in_use(regression, tmp_path):
    r = regression
    args, ckpt = (r["loss_fn"], r["state"], r["data"]), tmp_path / "ckpt"
    with checkpoint_lock(ckpt):  # a second open in this process conflicts: flock locks open files
        with pytest.raises(ValueError, match=r"in use by another training run \(pid \d+ on "):
            fit(*args, num_steps=20, checkpoint_dir=ckpt, **r["kwargs"])

    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(ckpt / ".lock")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match=f"in use by another training run \\(pid {holder.pid}\\)"):
            fit(*args, num_steps=20, checkpoint_dir=ckpt, resume=True, **r["kwargs"])
    finally:
        holder.kill()
        holder.wait()
    assert (ckpt / ".lock").is_file()  # left behind by the killed process, but its lock died with it
    with checkpoint_manager(ckpt) as manager:
        save_state(manager, r["full"])
    with pytest.raises(ValueError, match="already holds checkpoints"):  # fails after taking the lock ...
        fit(*args, num_steps=20, checkpoint_dir=ckpt, **r["kwargs"])
    with checkpoint_lock(ckpt):  # ... and released it
        assert saved_steps(ckpt) == [20]
