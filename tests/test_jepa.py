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

from genjax.data.dynamics import LinearGaussianSystem, SpriteSystem, linear_gaussian_system, transitions
from genjax.models import jepa as J
from genjax.train import TrainState, fit

KEY = jax.random.key(0)


def linear_jepa(encoder_matrix=None, **kw):
    """A JEPA with ``z = W x`` (``W = params["W"]``, or a fixed ``encoder_matrix``) and ``g(z, a) = A z + B a``."""
    encode = (lambda p, x: p["W"] @ x) if encoder_matrix is None else (lambda p, x: encoder_matrix @ x)
    return J.JEPA(encode, lambda p, z, a: p["A"] @ z + p["B"] @ a, **kw)


# ----------------------------------------------------------------------------- the system


@pytest.fixture(scope="module")
def noisy_system():
    """The system with visible observation noise (σ_v = 0.5, p = 16), 100 000 of its stationary trajectories of 4
    actions and their first transitions (float64)."""
    system = linear_gaussian_system(2, obs_dim=16, obs_std=0.5)
    traj = jax.jit(lambda k: system.sample_trajectories(k, 100_000, 4))(KEY)
    traj = {k: np.asarray(v, np.float64) for k, v in traj.items()}
    return system, traj, transitions(traj)


def test_stationary_covariance_solves_lyapunov_and_matches_samples(noisy_system):
    """Σ = AΣAᵀ + σ_a²BBᵀ + σ_w²I to 1e-12, and the covariances of s_t and s_{t+1} over 100 000 draws match Σ within
    5 standard errors per entry (s.e. of a sample covariance of Gaussians: sqrt((Σ_ii Σ_jj + Σ_ij²)/N)); x = Cs + v
    has covariance CΣCᵀ + σ_v²I (same rule)."""
    system, _, data = noisy_system
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
    (float64 round-off).  Noisy observations: least squares of z' on (z, a) over 100 000 transitions agrees
    with the population coefficients within 6e-3 (their s.e. here is ~1.5e-3), and its residual covariance's trace
    with the closed form within 1%."""
    E = np.random.default_rng(0).normal(size=(4, 16)) / 4
    clean = linear_gaussian_system(2, obs_dim=16, obs_std=0.0)
    P = clean.optimal_linear_predictor(E)
    EC = E @ clean.C
    np.testing.assert_allclose(P.A, EC @ clean.A @ np.linalg.inv(EC), atol=1e-10)
    np.testing.assert_allclose(P.B, EC @ clean.B, atol=1e-12)
    np.testing.assert_allclose(P.residual, clean.process_std**2 * EC @ EC.T, atol=1e-10)

    noisy, _, d = noisy_system
    P = noisy.optimal_linear_predictor(E)
    assert np.abs(P.A - EC @ noisy.A @ np.linalg.inv(EC)).max() > 0.1  # observation noise shrinks A_eff
    design = np.hstack([d["x"] @ E.T, d["a"]])
    coef, *_ = np.linalg.lstsq(design, d["x_next"] @ E.T, rcond=None)
    np.testing.assert_allclose(coef.T, np.hstack([P.A, P.B]), atol=6e-3)
    residual = d["x_next"] @ E.T - design @ coef
    np.testing.assert_allclose(np.trace(np.cov(residual.T)), np.trace(P.residual), rtol=1e-2)


def test_rollout_errors_of_the_exact_model_match_the_closed_form(noisy_system):
    """z = C⁺x = s + u, u = C⁺v ~ N(0, N), N = σ_v² C⁺C⁺ᵀ; the predictor (A, B) run open loop from z_0 errs by
    ẑ_h − z_h = A^h u_0 − Σ_{j<h} A^{h−1−j} w_j − u_h, so with A = ρQ the relative error is
    (ρ^{2h} tr N + σ_w² n (1 − ρ^{2h})/(1 − ρ²) + tr N) / tr(Σ + N).  100 000 trajectories: the Monte-Carlo error of
    each ratio is below 0.5%, tolerance 2%."""
    system, traj, _ = noisy_system
    pinv = np.linalg.pinv(system.C)
    jepa = linear_jepa(jnp.asarray(pinv, jnp.float32), target="online")
    params = {"encoder": {}, "predictor": {"A": jnp.asarray(system.A, jnp.float32),
                                           "B": jnp.asarray(system.B, jnp.float32)}}
    errors = np.asarray(J.prediction_errors(jepa, params, jnp.asarray(traj["x"], jnp.float32),
                                            jnp.asarray(traj["a"], jnp.float32)))
    rho2, trace_n = 0.9**2, system.obs_std**2 * np.trace(pinv @ pinv.T)
    h = np.arange(1, 5)
    expected = (rho2**h * trace_n + system.process_std**2 * 4 * (1 - rho2**h) / (1 - rho2) + trace_n) / (
        np.trace(system.stationary_covariance()) + trace_n)
    np.testing.assert_allclose(errors, expected, rtol=0.02)


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


def test_one_fit_step_of_the_ema_objective_is_the_ema_update():
    """One fit step (γ = 0.9, encoder and predictor on optax.sgd(0.1), the whole batch): θ̄₁ = γθ̄₀ + (1 − γ)θ₀ with
    θ₀ the encoder *before* the step (float32 rounding: 1e-6), not the updated θ₁ (that differs by (1 − γ)·0.1·∇);
    θ and φ move by −0.1 ∇ of mean ‖A W x + B a − θ̄₀ x'‖² written out here; the loss is that value (R excluded)
    and aux ema_residual is R = ½‖θ̄₀ − θ₀‖²."""
    rng = np.random.default_rng(1)
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    batch = {"x": f32(rng.normal(size=(32, 5))), "a": f32(rng.normal(size=(32, 2))),
             "x_next": f32(rng.normal(size=(32, 5)))}
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


def tanh_mlp(params, x):
    """``W2 tanh(W1 x + b1) + b2``."""
    return params["W2"] @ jnp.tanh(params["W1"] @ x + params["b1"]) + params["b2"]


def init_tanh_mlp(rng, n_in, n_out, hidden=16):
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return {"W1": f32(rng.normal(size=(hidden, n_in)) / math.sqrt(n_in)), "b1": f32(np.zeros(hidden)),
            "W2": f32(rng.normal(size=(n_out, hidden)) / math.sqrt(hidden)), "b2": f32(np.zeros(n_out))}


@pytest.fixture(scope="module")
def trained(noisy_system):
    """Three JEPAs trained side by side in one fit for 600 steps of 256 fresh transitions of the noisy system (the loss
    is the sum of their objectives on disjoint parameters and Adam acts per coordinate, so the runs do not interact):

    * ``"online"`` and ``"hinge"``: one tanh-MLP encoder (16 → 16 → 4) and predictor (6 → 16 → 4), online target,
      without and with VICReg's variance hinge (σ₀ = 1, weight 4), Adam 5e-3;
    * ``"linear"``: the fixed linear encoder ``E`` and a linear predictor from zero, Adam 3e-2 with cosine decay to 0.

    Returns ``(state, history, E, diagnostics)``, diagnostics ``{variant: (initial std, final std, initial probe R²,
    final probe R²)}`` of the MLP variants on 2000 held-out transitions."""
    system, _, held_out = noisy_system
    rng = np.random.default_rng(0)
    enc0, pred0 = init_tanh_mlp(rng, 16, 4), init_tanh_mlp(rng, 6, 4)
    E = rng.normal(size=(4, 16)) / 4
    jepas = {name: J.JEPA(tanh_mlp, lambda p, z, a: tanh_mlp(p, jnp.concatenate([z, a])), target="online",
                          variance_weight=weight) for name, weight in (("online", 0.0), ("hinge", 4.0))}
    jepas["linear"] = linear_jepa(jnp.asarray(E, jnp.float32), target="online")
    objectives = {name: J.jepa_objective(jepa) for name, jepa in jepas.items()}

    def loss_fn(params, batch, key):
        losses = {name: objectives[name](params[name], batch, key) for name in jepas}
        return sum(loss for loss, _ in losses.values()), {"linear_prediction": losses["linear"][1]["prediction"]}

    params = {name: J.init_jepa_params(jepas[name], enc0, pred0) for name in ("online", "hinge")}
    params["linear"] = {"encoder": {}, "predictor": {"A": jnp.zeros((4, 4)), "B": jnp.zeros((4, 2))}}
    tx = optax.partition({"mlp": optax.adam(5e-3), "linear": optax.adam(optax.cosine_decay_schedule(3e-2, 600))},
                         {"online": "mlp", "hinge": "mlp", "linear": "linear"})
    state, history = fit(loss_fn, TrainState.create(params, tx, KEY), system.sample_transitions, num_steps=600,
                         batch_size=256, steps_per_call=600, progress=False)
    x, s = (jnp.asarray(held_out[k][:2000], jnp.float32) for k in ("x", "s"))
    embed = jax.jit(jax.vmap(tanh_mlp, (None, 0)))
    diagnostics = {}
    for name in ("online", "hinge"):
        z0, z = (embed(p, x) for p in (enc0, state.params[name]["encoder"]))
        r2 = (float(J.linear_probe_r2(e[:1000], s[:1000], e[1000:], s[1000:])) for e in (z0, z))
        diagnostics[name] = (np.asarray(J.embedding_std(z0)), np.asarray(J.embedding_std(z)), *r2)
    return state, history, E, diagnostics


def test_trained_linear_predictor_equals_the_population_regression(noisy_system, trained):
    """A fixed linear encoder E (4 × 16) and a linear predictor trained through fit on fresh transitions (Adam 3e-2,
    cosine decay to 0, 600 steps of 256: the population risk) reach the closed-form [A_eff B_eff] of
    optimal_linear_predictor within 0.02 (measured 0.007–0.011 over four seeds: the last ~200 steps average ~5·10⁴
    transitions, s.e. ~3e-3, plus Adam's residual noise) and the loss its floor tr(residual) within 3% (measured
    ≤ 0.9%)."""
    state, history, E, _ = trained
    P = noisy_system[0].optimal_linear_predictor(E)
    np.testing.assert_allclose(state.params["linear"]["predictor"]["A"], P.A, atol=0.02)
    np.testing.assert_allclose(state.params["linear"]["predictor"]["B"], P.B, atol=0.02)
    np.testing.assert_allclose(np.mean(history["linear_prediction"][-120:]), np.trace(P.residual), rtol=0.03)


def test_embeddings_collapse_without_the_target_asymmetry(trained):
    """Online target (gradient through both branches), no regulariser: the loss is 0 at f ≡ const, and 600 Adam steps
    shrink every embedding dimension's std below 1/10 of its initial value (measured ≤ 0.038 over five seeds) and
    leave a held-out linear probe of the state at R² < 0.1 (initial encoders: 0.44–0.62; after: ≤ 0.041)."""
    std0, std, r2_0, r2 = trained[3]["online"]
    assert np.all(std < 0.1 * std0) and r2 < 0.1 < r2_0


def test_variance_hinge_prevents_collapse(trained):
    """Same run with VICReg's variance hinge (σ₀ = 1, weight 4): every dimension keeps std ≥ 0.9 σ₀ (measured
    ≥ 0.975 over five seeds) and the embeddings keep what they knew of the state (held-out probe R² ≥ 0.8 × the
    initial encoder's; measured ratios 1.01–1.81)."""
    _, std, r2_0, r2 = trained[3]["hinge"]
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
