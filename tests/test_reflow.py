"""Reflow and one-step distillation (MATH.md §11, §13; oracles 9.14) against closed forms for Gaussian data.

Data ``N(m, diag s²)`` on the linear path (``σ(t_max) = 1``, ``α(t_max) = 0``), per coordinate:

* the exact PF-ODE map is the monotone (OT) map ``x0 = φ_{1→0}(z) = m + s z`` (``gaussian_flow_map``),
  so reflow pairs cost ``E(z − x0)² = m² + (s − 1)² = W2²(N(m, s²), N(0, 1))``, against
  ``m² + s² + 1`` for independent pairs;
* on those pairs ``x_t = (1 − t)m + ((1 − t)s + t) z`` is invertible in z, so the reflowed field
  ``v*(t, x) = ẋ_t = −m + (1 − s) z(t, x)`` is exact: its reflow straightness is 0 and one Euler step
  from ``t = 1`` lands on ``x0``;
* the exact field of independent pairs, ``v(t, x) = −m + k_t (x − (1 − t)m)`` with
  ``k_t = (t − (1 − t)s²)/V_t``, ``V_t = (1 − t)²s² + t²``, has on independent pairs the CFM defect
  ``L* = ∫ (Var ẋ_t − Cov(ẋ_t, x_t)²/V_t) dt = ∫ s²/V_t dt = πs/2`` (``π/2`` for ``s = 1``, oracle 9.14),
  on the reflow pairs ``s² ∫ (t − (1 − t)s)²/V_t² dt = (π/2 − 1)s`` (both checked by scipy quad), and one
  Euler step of it from
  ``t = 1`` collapses every z onto ``m`` (``v(1, z) = z − m``), a one-step W2 of ``sqrt(Σ s²)``.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.integrate

from genjax import Model
from genjax import interpolants as I
from genjax import targets as T
from genjax.distill.reflow import (distill_loss, pair_straightness, prior_end, rectify, reflow_pairs, train_distill,
                                   train_reflow)
from genjax.metrics import frechet_distance, wasserstein2
from genjax.nets import TimeMLP
from genjax.samplers import sample_ode

LINEAR = I.linear
M = np.array([1.0, -0.5])
S = np.array([0.5, 1.5])
DATA = T.gaussian(M, S)
FIELD = DATA.field(LINEAR, "velocity")  # one object: the samplers' compiled solve is shared between tests
N, N_EVAL = 3584, 512  # 4096 pairs in all
W2_SQUARED = float(np.sum(M**2 + (S - 1) ** 2))
NET = TimeMLP(hidden=(64, 64))
PARAMS = NET.init(jax.random.key(5), jnp.zeros(()), jnp.zeros(2))
TOL = dict(rtol=1e-6, atol=1e-6)  # tsit5's global error is then ≲ 2e-5 on these pairs (1e-3 at 1e-5)
FAST = dict(batch_size=256, ema_decay=0.99, progress=False)
Z_TEST = jax.random.normal(jax.random.key(15), (4096, 2))  # prior draws of every one-step solve: compiled once


def reflowed_field(t, x):
    """``v*(t, x) = −m + (1 − s) z`` with ``z = (x − (1 − t)m)/((1 − t)s + t)``: the exact field of the reflow pairs."""
    z = (x - (1 - t) * M) / ((1 - t) * S + t)
    return (-M + (1 - S) * z).astype(x.dtype)


def mean_se(values):
    values = np.asarray(values, np.float64)
    return values.mean(), values.std(ddof=1) / math.sqrt(values.size)


@pytest.fixture(scope="module")
def pairs():
    """4096 reflow pairs of the exact field (tsit5, rtol = atol = 1e-6): the first N train, the rest are held out."""
    (x0, x1), stats = reflow_pairs(FIELD, LINEAR, jax.random.key(0), N + N_EVAL, (2,), prediction="velocity", **TOL)
    return x0, x1, stats


def test_pairs_are_the_ot_map_with_the_w2_cost(pairs):
    x0, x1, stats = pairs
    assert x0.shape == x1.shape == (N + N_EVAL, 2) and stats["nfe"] > 1 and stats["wall_s"] > 0
    np.testing.assert_array_equal(prior_end(LINEAR, (x0, x1)), x1)  # α(1) = 0, σ(1) = 1: x1 = z
    # the flow map, to the solver's tolerance (global error ≲ 2e-5 measured at rtol = atol = 1e-6)
    np.testing.assert_allclose(x0, T.gaussian_flow_map(LINEAR, M, S, 1.0, 0.0, x1), atol=1e-4)
    np.testing.assert_allclose(T.gaussian_flow_map(LINEAR, M, S, 1.0, 0.0, x1), M + S * x1, atol=1e-6)
    # W2² of the Gaussians (Fréchet formula, an independent oracle) is the closed-form reflow cost
    assert frechet_distance(M, np.diag(S**2), np.zeros(2), np.eye(2)) == pytest.approx(W2_SQUARED, rel=1e-6)
    cost, se = mean_se(np.sum((x1 - x0) ** 2, 1))
    assert abs(cost - W2_SQUARED) < 4 * se and se < 0.02 * W2_SQUARED  # 4 standard errors, ~1.3% each
    # independent pairs of the same marginals cost Σ m² + s² + 1 = 5.75, far above
    independent, se_i = mean_se(np.sum((x1 - DATA.sample(jax.random.key(1), N + N_EVAL)) ** 2, 1))
    assert abs(independent - np.sum(M**2 + S**2 + 1)) < 4 * se_i
    assert cost + 4 * se < independent - 4 * se_i


def test_pairs_plug_in_any_sampler():
    """``sampler`` and its options are used: one Euler step of the exact independent field maps every z to m."""
    euler = functools.partial(sample_ode, solver="euler")
    (x0, x1), stats = reflow_pairs(FIELD, LINEAR, jax.random.key(2), 4096, 2, prediction="velocity", sampler=euler,
                                   num_steps=1)
    assert int(np.max(stats["nfe"])) == 1
    np.testing.assert_allclose(x0, np.broadcast_to(M, x0.shape), atol=1e-5)
    assert float(jnp.std(x1)) > 0.5  # the z are prior draws, not m


def test_pairs_on_vp_pass_through_the_ode_start():
    """VP (α(1) = 0.0066): the pair's noise x1 = (z − α(1) x0)/σ(1) puts the path's end at the ODE start z, so the
    exact flow map of ``prior_end`` is x0 (storing x1 = z/σ(1) would miss by α(1)·x0 ≈ 0.007, 70× the tolerance)."""
    vp = I.vp
    (x0, x1), _ = reflow_pairs(DATA.field(vp, "velocity"), vp, jax.random.key(3), 256, (2,), prediction="velocity",
                               **TOL)
    z = prior_end(vp, (x0, x1))
    np.testing.assert_allclose(x0, T.gaussian_flow_map(vp, M, S, vp.t_max, vp.t_min, z), atol=1e-4)
    assert abs(float(jnp.std(z)) - float(vp.sigma(1.0))) < 0.1  # prior draws N(0, σ(1)²): SE of the std ≈ 0.03


def test_pair_straightness_oracles(pairs):
    x0, x1, _ = pairs
    # the reflowed field is exact on the pairs: zero up to float32 rounding (and the 1e-5 solver error of x0)
    value, se = pair_straightness(reflowed_field, LINEAR, (x0, x1), jax.random.key(4))
    assert 0 <= value < 1e-8 and se < 1e-8
    # so one Euler step from t = 1 is exact
    y, stats = sample_ode(reflowed_field, LINEAR, x_init=x1, prediction="velocity", solver="euler", num_steps=1)
    assert stats["nfe"] == 1
    np.testing.assert_allclose(y, M + S * x1, atol=1e-5)
    # the exact independent-pair field on the reflow pairs: s² ∫ (t − (1 − t)s)²/V_t² dt = (π/2 − 1)s per coordinate
    on_pairs = sum(s**2 * scipy.integrate.quad(lambda t: (t - (1 - t) * s) ** 2 / ((1 - t) ** 2 * s**2 + t**2) ** 2,
                                               0, 1, epsabs=1e-13)[0] for s in S)
    assert on_pairs == pytest.approx((math.pi / 2 - 1) * S.sum(), rel=1e-10)
    value, se = pair_straightness(FIELD, LINEAR, (x0, x1), jax.random.key(5))
    assert abs(value - on_pairs) < 4 * se and se < 0.06 * on_pairs
    # and on independent pairs it is L* = (π/2) Σ s (π/2 per unit-variance coordinate, oracle 9.14)
    l_star = sum(scipy.integrate.quad(lambda t: s**2 / ((1 - t) ** 2 * s**2 + t**2), 0, 1, epsabs=1e-13)[0] for s in S)
    assert l_star == pytest.approx(math.pi / 2 * S.sum(), rel=1e-10)
    independent = (DATA.sample(jax.random.key(6), N + N_EVAL), jax.random.normal(jax.random.key(7), (N + N_EVAL, 2)))
    for stratified in (True, False):
        value, se = pair_straightness(FIELD, LINEAR, independent, jax.random.key(8), stratified=stratified)
        assert abs(value - l_star) < 4 * se and se < 0.03 * l_star  # 4 SE ≈ 6%; Σ s²π/2 = 3.93 would fail


def test_train_reflow_straightens_and_generates_in_one_step(pairs):
    """A tiny TimeMLP trained on the exact field's pairs: the held-out straightness reported by fit's eval hook falls
    (0.29 → 0.001 measured), and the one-step W2 falls from the teacher's sqrt(Σ s²) = 1.58 to the sampling floor."""
    x0, x1, _ = pairs
    state, history = train_reflow(NET.apply, PARAMS, LINEAR, (x0[:N], x1[:N]), key=jax.random.key(9),
                                  optimizer=optax.adam(3e-3), eval_pairs=(x0[N:], x1[N:]), num_steps=400,
                                  eval_every=100, **FAST)
    evals = history["eval"]
    assert [e["step"] for e in evals] == [100, 200, 300, 400]
    first, last = evals[0], evals[-1]
    upper_last = last["straightness"] + 4 * last["straightness_se"]  # 4 standard errors either side
    assert upper_last < 0.05 * (first["straightness"] - 4 * first["straightness_se"])
    assert last["straightness"] < 0.01

    one_step = dict(x_init=Z_TEST, prediction="velocity", solver="euler", num_steps=1)
    teacher, _ = sample_ode(FIELD, LINEAR, **one_step)
    np.testing.assert_allclose(teacher, np.broadcast_to(M, teacher.shape), atol=1e-5)  # the collapse onto m
    student, _ = sample_ode(Model(NET.apply, state.ema_params), LINEAR, **one_step)
    n = 1024  # exact W2 by assignment on the first n samples
    data = DATA.sample(jax.random.key(11), n)
    floor = wasserstein2(DATA.sample(jax.random.key(12), n), data)  # two data samples: ≈ 0.19 at n = 1024
    w2_teacher, w2_student = wasserstein2(teacher[:n], data), wasserstein2(student[:n], data)
    assert abs(w2_teacher - math.sqrt(np.sum(S**2))) < 0.15  # 1.58 up to the sample's own spread
    assert w2_student < floor + 0.1 and w2_student < 0.25 * w2_teacher


def test_train_distill_generates_the_gaussian_in_one_step():
    """Exact pairs (m + s z, z): after training, g(z) = z − v_θ(1, z) is the OT map to within training error, and its
    samples have the moments of N(m, s²) within 4 standard errors of the sample moments plus that error."""
    z = jax.random.normal(jax.random.key(13), (4096, 2))
    pairs = (M + S * z, z)
    state, history = train_distill(NET.apply, PARAMS, LINEAR, pairs, key=jax.random.key(14),
                                   optimizer=optax.adam(3e-3), eval_pairs=(pairs[0][:512], pairs[1][:512]),
                                   num_steps=600, **FAST)
    assert history["eval"][-1]["distill_error"] < 1e-3  # E‖g(z) − x0‖² on held pairs: 2e-5 measured (5e-4 at 400)
    n, zt = Z_TEST.shape[0], Z_TEST
    y, stats = sample_ode(Model(NET.apply, state.ema_params), LINEAR, x_init=zt, prediction="velocity",
                          solver="euler", num_steps=1)
    assert stats["nfe"] == 1
    assert float(jnp.sqrt(jnp.mean(jnp.sum((y - (M + S * zt)) ** 2, 1)))) < 0.05
    np.testing.assert_array_less(np.abs(np.mean(y, 0) - M), 4 * S / math.sqrt(n) + 0.03)
    np.testing.assert_array_less(np.abs(np.std(y, 0) - S), 4 * S / math.sqrt(2 * n) + 0.03)


def test_distill_loss_closed_forms(pairs):
    """v ≡ 0 leaves ‖z − x0‖²; the exact one-step velocity (z − (m + s z))/(t_max − t_min) gives 0."""
    x0, x1, _ = pairs
    zero = lambda t, x: jnp.zeros_like(x)  # noqa: E731
    np.testing.assert_allclose(distill_loss(zero, LINEAR, (x0, x1)), np.sum((x1 - x0) ** 2, 1), rtol=1e-6)
    exact = lambda t, x: (x - (M + S * x)).astype(x.dtype)  # noqa: E731
    assert float(jnp.max(distill_loss(exact, LINEAR, (M + S * x1, x1)))) < 1e-10


def test_rectify_one_round_records(pairs):
    """One round from the exact field (the fixture's size, so the compiled solve is shared): its record holds the
    pairs' W2² cost, the teacher's straightness on them ((π/2 − 1) Σ s, test_pair_straightness_oracles), the
    trained model's far lower one and the straightness S of its ODE flow."""
    x0, x1, stats = pairs
    state, records = rectify(NET.apply, PARAMS, LINEAR, FIELD, jax.random.key(16), rounds=1, num_pairs=N,
                             event_shape=(2,), optimizer=optax.adam(3e-3), prediction="velocity",
                             num_eval_pairs=N_EVAL, sampler_kwargs=TOL, num_steps=300, **FAST)
    (record,) = records
    assert record["round"] == 1 and record["pair_nfe"] > 1 and record["train_wall_s"] > 0
    assert abs(record["transport_cost"] - W2_SQUARED) < 4 * record["transport_cost_se"]
    assert abs(record["teacher_straightness"] - (math.pi / 2 - 1) * S.sum()) < 4 * record["teacher_straightness_se"]
    assert record["straightness"] < 0.02 * record["teacher_straightness"]
    assert record["flow_straightness"] < 0.01  # of order the pair straightness: the trained flow is nearly straight
    assert record["eval"][-1]["straightness"] == record["straightness"]
    assert int(state.step) == 300


@pytest.mark.slow
def test_rectify_two_rounds():
    """Two rounds: the second round's pairs still cost about W2² and its model stays straight."""
    _, records = rectify(NET.apply, PARAMS, LINEAR, FIELD, jax.random.key(17), rounds=2, num_pairs=2048,
                         event_shape=(2,), optimizer=optax.adam(3e-3), prediction="velocity", num_eval_pairs=512,
                         num_steps=400, **FAST)
    assert [r["round"] for r in records] == [1, 2]
    assert abs(records[1]["transport_cost"] - W2_SQUARED) < 0.1 * W2_SQUARED
    assert records[1]["teacher_straightness"] < 0.01 and records[1]["straightness"] < 0.01


def test_bad_inputs(pairs):
    x0, x1, _ = pairs
    bridge = I.bridge()
    key = jax.random.key(0)
    opt = optax.adam(1e-3)
    with pytest.raises(ValueError, match="two-sided"):
        reflow_pairs(FIELD, bridge, key, 8, (2,), prediction="velocity")
    with pytest.raises(ValueError, match="two-sided"):
        pair_straightness(FIELD, bridge, (x0, x1), key)
    with pytest.raises(ValueError, match="two-sided"):
        distill_loss(FIELD, bridge, (x0, x1))
    with pytest.raises(ValueError, match="two-sided"):
        train_reflow(NET.apply, PARAMS, bridge, (x0, x1), key=key, optimizer=opt, num_steps=1, batch_size=8)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        reflow_pairs(FIELD, LINEAR, key, 0, (2,), prediction="velocity")
    with pytest.raises(ValueError, match="event_shape"):
        reflow_pairs(FIELD, LINEAR, key, 8, "2", prediction="velocity")
    with pytest.raises(ValueError, match="sampler must be a callable"):
        reflow_pairs(FIELD, LINEAR, key, 8, (2,), prediction="velocity", sampler="tsit5")
    with pytest.raises(ValueError, match="same shape"):
        pair_straightness(FIELD, LINEAR, (x0, x1[:10]), key)
    with pytest.raises(ValueError, match=r"pair \(x0, x1\)"):
        pair_straightness(FIELD, LINEAR, x0, key)
    with pytest.raises(ValueError, match="num_times"):
        pair_straightness(FIELD, LINEAR, (x0, x1), key, num_times=0)
    with pytest.raises(ValueError, match="prediction"):
        pair_straightness(FIELD, LINEAR, (x0, x1), key, prediction="flow")
    latent = I.Interpolant(lambda t: 1.0 - t, lambda t: 0.6 * t, lambda t: 0.8 * t, name="latent")
    with pytest.raises(ValueError, match="latent"):
        train_reflow(NET.apply, PARAMS, latent, (x0, x1), key=key, optimizer=opt, num_steps=1, batch_size=8)
    with pytest.raises(ValueError, match="eval_pairs must have the event shape"):
        train_reflow(NET.apply, PARAMS, LINEAR, (x0, x1), key=key, optimizer=opt, eval_pairs=(x0[:, :1], x1[:, :1]),
                     num_steps=1, batch_size=8)
    with pytest.raises(ValueError, match="eval_params"):
        train_reflow(NET.apply, PARAMS, LINEAR, (x0, x1), key=key, optimizer=opt, eval_pairs=(x0, x1),
                     eval_params="best", num_steps=1, batch_size=8)
    with pytest.raises(ValueError, match="same shape"):
        train_distill(NET.apply, PARAMS, LINEAR, (x0, x1[:, :1]), key=key, optimizer=opt, num_steps=1, batch_size=8)
    with pytest.raises(ValueError, match="rounds must be a positive integer"):
        rectify(NET.apply, PARAMS, LINEAR, FIELD, key, rounds=0, num_pairs=8, event_shape=(2,), optimizer=opt,
                prediction="velocity", num_steps=1, batch_size=8)
    with pytest.raises(ValueError, match="num_eval_pairs must be >= 2"):
        rectify(NET.apply, PARAMS, LINEAR, FIELD, key, rounds=1, num_pairs=8, event_shape=(2,), optimizer=opt,
                prediction="velocity", num_eval_pairs=1, num_steps=1, batch_size=8)
