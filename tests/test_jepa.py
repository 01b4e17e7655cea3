"""JEPA world model and controlled linear-Gaussian systems (MATH.md §15).

Oracles: the discrete Lyapunov equation and Monte-Carlo moments of the stationary system; the population
regression ``[A_eff B_eff] = Σ_{z'(z,a)} Σ_{(z,a)}⁻¹`` (noise-free: the similarity transform ``(EC) A (EC)⁻¹``)
against least squares on fresh samples and against a linear predictor trained through ``fit``; the closed-form
h-step error ``σ_w² Σ_{j<h} tr(A^j A^jᵀ) / tr Σ`` of the exact model; one ``fit`` step of the EMA objective is
``θ̄ ← γθ̄ + (1 − γ)θ``; effective rank, probe R² and VICReg terms on batches built with known singular values,
signal-to-noise and covariance; collapse without the target asymmetry, none with the variance hinge; the sprite
system's images, moves and uniform stationary law (χ²).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats as sps

from genjax.data.dynamics import LinearGaussianSystem, SpriteSystem, linear_gaussian_system
from genjax.models import jepa as J
from genjax.nets.vae import MLP
from genjax.train import TrainState, fit

KEY = jax.random.key(0)


def linear_jepa(encoder_matrix=None, **kw):
    """A JEPA with ``z = W x`` (``W = params["W"]``, or a fixed ``encoder_matrix``) and ``g(z, a) = A z + B a``."""
    encode = (lambda p, x: p["W"] @ x) if encoder_matrix is None else (lambda p, x: encoder_matrix @ x)
    return J.JEPA(encode, lambda p, z, a: p["A"] @ z + p["B"] @ a, **kw)


# ----------------------------------------------------------------------------- the system


@pytest.fixture(scope="module")
def noisy_system():
    """The system with visible observation noise (σ_v = 0.5, p = 16) and 200 000 of its transitions (float64)."""
    system = linear_gaussian_system(2, obs_dim=16, obs_std=0.5)
    draws = jax.jit(lambda k: system.sample_transitions(k, 200_000))(KEY)
    return system, {k: np.asarray(v, np.float64) for k, v in draws.items()}


def test_stationary_covariance_solves_lyapunov_and_matches_samples(noisy_system):
    """Σ = AΣAᵀ + σ_a²BBᵀ + σ_w²I to 1e-12, and the covariances of s_t and s_{t+1} over 200 000 draws match Σ within
    5 standard errors per entry (s.e. of a sample covariance of Gaussians: sqrt((Σ_ii Σ_jj + Σ_ij²)/N)); x = Cs + v
    has covariance CΣCᵀ + σ_v²I (same rule)."""
    system, data = noisy_system
    sigma = system.stationary_covariance()
    q = system.action_std**2 * system.B @ system.B.T + system.process_std**2 * np.eye(4)
    np.testing.assert_allclose(system.A @ sigma @ system.A.T + q, sigma, atol=1e-12)
    n = data["s"].shape[0]
    for name, cov in (("s", sigma), ("s_next", sigma), ("x", system.C @ sigma @ system.C.T + 0.25 * np.eye(16))):
        se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
        assert np.all(np.abs(np.cov(data[name].T) - cov) < 5 * se), name
    assert np.all(np.abs(data["a"].mean(0)) < 5 / math.sqrt(n))


def test_optimal_linear_predictor_closed_forms(noisy_system):
    """Noise-free observations and a square encoder E: A_eff = (EC) A (EC)⁻¹, B_eff = EC B, residual σ_w² EC(EC)ᵀ
    (float64 round-off).  Noisy observations: least squares of z' on (z, a) over 200 000 fresh transitions agrees
    with the population coefficients within 6e-3 (their s.e. here is ~1e-3), and its residual covariance's trace
    with the closed form within 1%."""
    E = np.random.default_rng(0).normal(size=(4, 16)) / 4
    clean = linear_gaussian_system(2, obs_dim=16, obs_std=0.0)
    P = clean.optimal_linear_predictor(E)
    EC = E @ clean.C
    np.testing.assert_allclose(P.A, EC @ clean.A @ np.linalg.inv(EC), atol=1e-10)
    np.testing.assert_allclose(P.B, EC @ clean.B, atol=1e-12)
    np.testing.assert_allclose(P.residual, clean.process_std**2 * EC @ EC.T, atol=1e-10)

    noisy, d = noisy_system
    P = noisy.optimal_linear_predictor(E)
    assert np.abs(P.A - EC @ noisy.A @ np.linalg.inv(EC)).max() > 0.1  # observation noise shrinks A_eff
    design = np.hstack([d["x"] @ E.T, d["a"]])
    coef, *_ = np.linalg.lstsq(design, d["x_next"] @ E.T, rcond=None)
    np.testing.assert_allclose(coef.T, np.hstack([P.A, P.B]), atol=6e-3)
    residual = d["x_next"] @ E.T - design @ coef
    np.testing.assert_allclose(np.trace(np.cov(residual.T)), np.trace(P.residual), rtol=1e-2)


def test_rollout_errors_of_the_exact_model_match_the_closed_form():
    """z = C⁺x = s (noise-free observations), predictor (A, B): the open-loop h-step error is the accumulated process
    noise Σ_{j<h} A^j w_j, so E‖ẑ_h − z_h‖² / tr Σ = σ_w² Σ_{j<h} tr(A^j A^jᵀ) / tr Σ (here A = ρQ: σ_w² n Σ_j ρ^{2j}).
    4000 trajectories: the relative Monte-Carlo error of each mean is below 2%, tolerance 6%."""
    system = linear_gaussian_system(3, obs_dim=16, obs_std=0.0)
    jepa = linear_jepa(jnp.asarray(np.linalg.pinv(system.C), jnp.float32), target="online")
    params = {"encoder": {}, "predictor": {"A": jnp.asarray(system.A, jnp.float32),
                                           "B": jnp.asarray(system.B, jnp.float32)}}
    traj = jax.jit(lambda k: system.sample_trajectories(k, 4000, 4))(KEY)
    errors = np.asarray(J.prediction_errors(jepa, params, traj["x"], traj["a"]))
    h = np.arange(1, 5)
    expected = system.process_std**2 * 4 * (1 - 0.9 ** (2 * h)) / (1 - 0.81) / np.trace(system.stationary_covariance())
    np.testing.assert_allclose(errors, expected, rtol=0.06)


def test_sprite_images_moves_and_uniform_stationary_law():
    """Noise-free sprite images hold exactly size² ones at rows/columns [s, s + size); every step is the action's move,
    or none when it would leave the image; after 3 steps the 25 positions are still uniform (χ² test, 24 degrees of
    freedom, p > 10⁻³: the symmetric walk with blocked moves is doubly stochastic)."""
    sprite = SpriteSystem(grid=6, size=2, noise_std=0.0)
    traj = {k: np.asarray(v) for k, v in jax.jit(lambda k: sprite.sample_trajectories(k, 20_000, 3))(KEY).items()}
    s = traj["s"].astype(int)
    images = traj["x"].reshape(20_000, 4, 6, 6)
    for i, t in ((0, 0), (1, 3), (2, 1)):
        expected = np.zeros((6, 6))
        expected[s[i, t, 0]:s[i, t, 0] + 2, s[i, t, 1]:s[i, t, 1] + 2] = 1.0
        np.testing.assert_array_equal(images[i, t], expected)
    assert np.all(images.sum(axis=(2, 3)) == 4)
    moves = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]])[traj["a"].argmax(-1)]
    wanted = s[:, :-1] + moves
    inside = np.all((wanted >= 0) & (wanted <= 4), axis=-1)
    np.testing.assert_array_equal(s[:, 1:], np.where(inside[..., None], wanted, s[:, :-1]))
    counts = np.bincount(s[:, 3, 0] * 5 + s[:, 3, 1], minlength=25)
    assert sps.chisquare(counts).pvalue > 1e-3


# ----------------------------------------------------------------------------- training


def test_trained_linear_predictor_equals_the_population_regression(noisy_system):
    """A fixed linear encoder E (4 × 16) and a linear predictor trained through fit on fresh transitions (Adam 3e-2,
    cosine decay to 0, 600 steps of 256: the population risk) reach the closed-form [A_eff B_eff] of
    optimal_linear_predictor within 0.02 (measured 0.007–0.011 over four seeds: the last ~200 steps average ~5·10⁴
    transitions, s.e. ~3e-3, plus Adam's residual noise) and the loss its floor tr(residual) within 3% (measured
    ≤ 0.7%)."""
    system = noisy_system[0]
    E = np.random.default_rng(0).normal(size=(4, 16)) / 4
    P = system.optimal_linear_predictor(E)
    jepa = linear_jepa(jnp.asarray(E, jnp.float32), target="online")
    predictor = {"A": jnp.zeros((4, 4)), "B": jnp.zeros((4, 2))}
    state, history = J.train_jepa(jepa, {}, predictor, system.sample_transitions, key=KEY,
                                  optimizer=optax.adam(optax.cosine_decay_schedule(3e-2, 600)), num_steps=600,
                                  batch_size=256, steps_per_call=600, progress=False)
    np.testing.assert_allclose(state.params["predictor"]["A"], P.A, atol=0.02)
    np.testing.assert_allclose(state.params["predictor"]["B"], P.B, atol=0.02)
    np.testing.assert_allclose(np.mean(history["prediction"][-120:]), np.trace(P.residual), rtol=0.03)


def test_one_fit_step_of_the_ema_objective_is_the_ema_update():
    """One fit step (γ = 0.9, encoder and predictor on optax.sgd(0.1), the whole batch): θ̄₁ = γθ̄₀ + (1 − γ)θ₀ with
    θ₀ the encoder *before* the step (float32 rounding: 1e-6), not the updated θ₁ (that differs by (1 − γ)·0.1·∇);
    θ and φ move by −0.1 ∇ of mean ‖A W x + B a − θ̄₀ x'‖² written out here; the loss is that value (R excluded)
    and aux ema_residual is R = ½‖θ̄₀ − θ₀‖²."""
    rng = np.random.default_rng(1)
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    batch = {"x": f32(rng.normal(size=(32, 5))), "a": f32(rng.normal(size=(32, 2))), "x_next": f32(rng.normal(size=(32, 5)))}
    W0, target0 = f32(rng.normal(size=(3, 5))), f32(rng.normal(size=(3, 5)))
    predictor0 = {"A": f32(rng.normal(size=(3, 3))), "B": f32(rng.normal(size=(3, 2)))}
    params = {"encoder": {"W": W0}, "predictor": predictor0, "target": {"W": target0}}
    jepa, decay, lr = linear_jepa(target="ema"), 0.9, 0.1
    state = TrainState.create(params, J.jepa_optimizer(optax.sgd(lr), decay=decay), KEY)
    state, history = fit(J.jepa_objective(jepa), state, batch, num_steps=1, batch_size=32, replace=False,
                         steps_per_call=1, progress=False)

    def hand_loss(model):
        pred = batch["x"] @ model["W"].T @ model["A"].T + batch["a"] @ model["B"].T
        return jnp.mean(jnp.sum((pred - batch["x_next"] @ target0.T) ** 2, axis=1))

    value, grad = jax.value_and_grad(hand_loss)({"W": W0, **predictor0})
    np.testing.assert_allclose(state.params["target"]["W"], decay * target0 + (1 - decay) * W0, rtol=1e-6, atol=1e-6)
    W1 = state.params["encoder"]["W"]
    np.testing.assert_allclose(W1, W0 - lr * grad["W"], rtol=1e-5, atol=1e-5)
    assert np.abs((1 - decay) * (W1 - W0)).max() > 1e-3  # the post-update θ would be visibly different
    for k in ("A", "B"):
        np.testing.assert_allclose(state.params["predictor"][k], predictor0[k] - lr * grad[k], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(history["loss"][0], value, rtol=1e-6)
    np.testing.assert_allclose(history["ema_residual"][0], 0.5 * np.sum((target0 - W0) ** 2), rtol=1e-6)


@pytest.fixture(scope="module")
def collapse_runs():
    """The same MLP encoder (16 → 16 → 4) and predictor trained for 600 Adam steps with the online target, without
    and with VICReg's variance hinge (σ₀ = 1, weight 4), side by side in one fit: the loss is the sum of the two
    objectives on disjoint parameters and Adam acts per coordinate, so the two runs do not interact.  Returns
    {variant: (initial std, final std, initial probe R², final probe R²)} on 2000 held-out transitions."""
    system = linear_gaussian_system(0, obs_dim=16)
    enc, pred = MLP((4,), hidden=(16,)), MLP((4,), hidden=(16,))
    enc0, pred0 = enc.init(jax.random.key(1), jnp.zeros(16)), pred.init(jax.random.key(2), jnp.zeros(6))
    jepas = {name: J.JEPA(enc.apply, lambda p, z, a: pred.apply(p, jnp.concatenate([z, a])), target="online",
                          variance_weight=weight) for name, weight in (("online", 0.0), ("hinge", 4.0))}
    objectives = {name: J.jepa_objective(jepa) for name, jepa in jepas.items()}

    def loss_fn(params, batch, key):
        return sum(objectives[name](params[name], batch, key)[0] for name in jepas), {}

    params = {name: J.init_jepa_params(jepa, enc0, pred0) for name, jepa in jepas.items()}
    state, _ = fit(loss_fn, TrainState.create(params, optax.adam(3e-3), KEY), system.sample_transitions,
                   num_steps=600, batch_size=128, steps_per_call=600, progress=False)
    test = jax.jit(lambda k: system.sample_transitions(k, 2000))(jax.random.key(9))
    embed = jax.jit(jax.vmap(enc.apply, (None, 0)))
    out = {}
    for name in jepas:
        z0, z = (embed(p, test["x"]) for p in (enc0, state.params[name]["encoder"]))
        r2 = (float(J.linear_probe_r2(e[:1000], test["s"][:1000], e[1000:], test["s"][1000:])) for e in (z0, z))
        out[name] = (np.asarray(J.embedding_std(z0)), np.asarray(J.embedding_std(z)), *r2)
    return out


def test_embeddings_collapse_without_the_target_asymmetry(collapse_runs):
    """Online target (gradient through both branches), no regulariser: the loss is 0 at f ≡ const, and 600 Adam steps
    shrink every embedding dimension's std below 1/10 of its initial value (measured 0.045–0.075 over four seeds) and
    leave a held-out linear probe of the state at R² < 0.1 (initial encoders: 0.54–0.69; after: 0.003–0.021)."""
    std0, std, r2_0, r2 = collapse_runs["online"]
    assert np.all(std < 0.1 * std0) and r2 < 0.1 < r2_0


def test_variance_hinge_prevents_collapse(collapse_runs):
    """Same run with VICReg's variance hinge (σ₀ = 1, weight 4): every dimension keeps std ≥ 0.9 σ₀ (measured ≥ 1.01
    over four seeds) and the embeddings keep what they knew of the state (held-out probe R² ≥ 0.8 × the initial
    encoder's; measured ratios 0.99–1.66)."""
    _, std, r2_0, r2 = collapse_runs["hinge"]
    assert np.all(std > 0.9) and r2 > 0.8 * r2_0


# ----------------------------------------------------------------------------- diagnostics


def _batch_with_singular_values(rng, n, sv):
    """A centred (n, k) batch whose singular values are exactly ``sv``: Q diag(sv) Vᵀ with Q ⊥ 1."""
    m = rng.normal(size=(n, len(sv)))
    q, _ = np.linalg.qr(m - m.mean(0))
    v, _ = np.linalg.qr(rng.normal(size=(len(sv), len(sv))))
    return q * np.asarray(sv) @ v.T


def test_effective_rank_and_vicreg_terms_on_constructed_batches():
    """Singular values σ = (3, 2, 1, 0.5): exp(H(σ/Σσ)); equal σ: k; one σ: 1; a constant batch: 0 centred, 1 raw
    (RankMe) (float32, 1e-4).
    A batch with unbiased covariance exactly Σ: v = mean relu(σ₀ − sqrt(Σ_jj + ε)) (σ₀ = 1), c = Σ_{i≠j} Σ_ij² / k."""
    rng = np.random.default_rng(0)
    sv = np.array([3.0, 2.0, 1.0, 0.5])
    p = sv / sv.sum()
    z = jnp.asarray(_batch_with_singular_values(rng, 200, sv) + 5.0, jnp.float32)  # an offset: centring is needed
    np.testing.assert_allclose(J.effective_rank(z), np.exp(-np.sum(p * np.log(p))), rtol=1e-4)
    for sv, expected in (([1.0] * 4, 4.0), ([1.0, 0, 0, 0], 1.0)):
        batch = jnp.asarray(_batch_with_singular_values(rng, 200, sv), jnp.float32)
        np.testing.assert_allclose(J.effective_rank(batch), expected, rtol=1e-4)
    assert float(J.effective_rank(jnp.ones((200, 4)))) == 0.0
    np.testing.assert_allclose(J.effective_rank(jnp.ones((200, 4)), center=False), 1.0, rtol=1e-4)  # RankMe

    cov = np.array([[0.25, 0.1, 0.0], [0.1, 2.0, -0.3], [0.0, -0.3, 1.0]])
    white = _batch_with_singular_values(rng, 100, [math.sqrt(99)] * 3)  # unbiased covariance I
    z = jnp.asarray(white @ np.linalg.cholesky(cov).T)
    expected_v = np.mean(np.maximum(0.0, 1.0 - np.sqrt(np.diag(cov) + 1e-4)))
    np.testing.assert_allclose(J.vicreg_variance(z, 1.0, 1e-4), expected_v, rtol=1e-4)
    np.testing.assert_allclose(J.vicreg_covariance(z), 2 * (0.1**2 + 0.3**2) / 3, rtol=1e-4)


def test_linear_probe_r2_against_the_signal_to_noise_ratio():
    """s = zW + b + noise (σ = 0.5) with z ~ N(0, I): held-out R² = ‖W‖²/(‖W‖² + dσ²) within 0.01 (20 000 test rows,
    s.e. ~3e-3); the same with z scaled by 1e-6 (the probe is scale-invariant); an exact affine s gives R² = 1."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(40_000, 3))
    W = rng.normal(size=(3, 2))
    s = z @ W + 1.0 + 0.5 * rng.normal(size=(40_000, 2))
    expected = np.sum(W**2) / (np.sum(W**2) + 2 * 0.25)
    for scale in (1.0, 1e-6):
        zs = jnp.asarray(scale * z, jnp.float32)
        r2 = J.linear_probe_r2(zs[:20_000], s[:20_000], zs[20_000:], s[20_000:])
        assert abs(float(r2) - expected) < 0.01
    zs = jnp.asarray(z, jnp.float32)
    affine = z @ W - 2.0
    np.testing.assert_allclose(J.linear_probe_r2(zs[:20_000], affine[:20_000], zs[20_000:], affine[20_000:]), 1.0,
                               atol=1e-5)


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="JEPA.target"):
        linear_jepa(target="byol")
    with pytest.raises(ValueError, match="variance_weight"):
        linear_jepa(variance_weight=-1.0)
    jepa = linear_jepa(target="ema")
    batch = {"x": jnp.zeros((4, 3)), "a": jnp.zeros((4, 1)), "x_next": jnp.zeros((4, 3))}
    with pytest.raises(ValueError, match="'target'"):
        J.jepa_objective(jepa)({"encoder": {}, "predictor": {}}, batch, KEY)
    with pytest.raises(ValueError, match="'x_next'"):
        J.jepa_loss(linear_jepa(target="online"), {"encoder": {}, "predictor": {}}, {"x": batch["x"]})
    with pytest.raises(ValueError, match="decay"):
        J.jepa_optimizer(optax.sgd(1.0), decay=1.0)
    with pytest.raises(ValueError, match="z must be"):
        J.effective_rank(jnp.zeros(5))
    with pytest.raises(ValueError, match="spectral radius"):
        LinearGaussianSystem(np.eye(2), np.ones((2, 1)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="encoder must be a matrix"):
        linear_gaussian_system(0).optimal_linear_predictor(np.ones((2, 5)))
    with pytest.raises(ValueError, match="size must be <= grid"):
        SpriteSystem(grid=4, size=5)
    with pytest.raises(ValueError, match="singular"):
        linear_gaussian_system(0, obs_std=0.0).optimal_linear_predictor(np.eye(32)[:6])
