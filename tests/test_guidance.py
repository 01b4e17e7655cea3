"""Classifier-free guidance against Gaussian oracles (MATH.md §16).

Class conditionals ``p(x|c) = N(μ_c, Σ_c)`` and a Gaussian null model ``N(m, S)``: under a
one-sided path ``p_t(x|c) = N(α μ_c, C_c)``, ``C_c = α² Σ_c + σ² I``, and the guided score
``(1+w) ∇log p_t(x|c) − w ∇log p_t(x|∅)`` is the score of ``N(m_g, P_g⁻¹)`` with
``P_g = (1+w) C_c⁻¹ − w C_∅⁻¹`` and ``P_g m_g = α((1+w) C_c⁻¹ μ_c − w C_∅⁻¹ m)`` — written here
in float64 NumPy.  With equal covariances ``Σ_c = S = Σ`` the guided marginals are exactly the
path's marginals of ``N((1+w) μ_c − w m, Σ)``, so every sampler driven by the exact guided field
must produce that Gaussian.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import genjax
from genjax import guidance, interpolants as I, targets
from genjax.train.interpolant import interpolant_objective

Z = 5.0  # Monte-Carlo tolerance in standard errors
PREDICTIONS = ("velocity", "noise", "data", "score")


def class_model(components, interpolant, prediction):
    """``fn(t, x, c)``: the exact field of ``components[c]`` (the last one is the null model)."""
    fields = [comp.field(interpolant, prediction) for comp in components]

    def fn(t, x, c):
        return jax.lax.switch(c, [lambda t, x, f=f: f(t, x) for f in fields], t, x)

    return fn


def gaussian(mean, cov):
    return targets.GaussianMixture.create(np.ones(1), np.asarray(mean)[None], np.asarray(cov)[None])


def guided_gaussian(ip, t, w, mu_c, cov_c, m, cov_u):
    """``(m_g, P_g)`` of the guided score at time t (float64)."""
    a, s, _, _ = (float(v) for v in ip.scales(jnp.float32(t)))
    eye = np.eye(len(m))
    prec_c = np.linalg.inv(a**2 * cov_c + s**2 * eye)
    prec_u = np.linalg.inv(a**2 * cov_u + s**2 * eye)
    prec = (1 + w) * prec_c - w * prec_u
    mean = np.linalg.solve(prec, a * ((1 + w) * prec_c @ mu_c - w * prec_u @ m))
    return mean, prec


MU = np.array([[1.5, 0.0], [-1.0, 1.0]])
M_NULL = np.array([0.2, 0.5])
COV_C = np.array([[0.6, 0.2], [0.2, 0.5]])
COV_U = np.array([[1.5, 0.3], [0.3, 1.2]])


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_guided_field_is_the_score_of_the_guided_gaussian(prediction):
    """Guiding any prediction type and converting to the score gives ``−P_g (x − m_g)`` exactly."""
    ip = I.vp()
    comps = [gaussian(MU[0], COV_C), gaussian(MU[1], 0.5 * COV_C), gaussian(M_NULL, COV_U)]
    w = 1.5
    guided = genjax.classifier_free(class_model(comps, ip, prediction), scale=w, null=2)
    as_score = genjax.classifier_free(class_model(comps, ip, prediction), scale=w, null=2, interpolant=ip,
                                      prediction=prediction, to="score")
    xs = np.random.default_rng(0).normal(size=(6, 2)).astype(np.float32)

    @jax.jit
    def scores(t, c):
        out = jax.vmap(lambda x: guided(t, x, c))(xs)
        return genjax.convert(out, prediction, "score", ip, t, xs), jax.vmap(lambda x: as_score(t, x, c))(xs)

    for t in (0.05, 0.3, 0.7):
        for c, cov_c in ((0, COV_C), (1, 0.5 * COV_C)):
            mean, prec = guided_gaussian(ip, t, w, MU[c], cov_c, M_NULL, COV_U)
            expected = -(xs - mean) @ prec.T
            for got in scores(jnp.float32(t), c):
                np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-4 * np.abs(expected).max())


def test_zero_strength_is_the_conditional_model_and_the_interval_switches_it_off():
    ip = I.linear()
    comps = [gaussian(MU[0], COV_C), gaussian(MU[1], COV_C), gaussian(M_NULL, COV_C)]
    model = class_model(comps, ip, "velocity")
    x = jnp.array([0.3, -0.4])
    cond = model(0.4, x, 1)
    np.testing.assert_array_equal(genjax.classifier_free(model, scale=0.0, null=2)(0.4, x, 1), cond)
    outside = genjax.classifier_free(model, scale=3.0, null=2, interval=(0.5, 1.0))
    np.testing.assert_array_equal(outside(0.4, x, 1), cond)
    schedule = genjax.classifier_free(model, scale=lambda t: 2.0 * t, null=2)
    np.testing.assert_allclose(schedule(0.4, x, 1), 1.8 * cond - 0.8 * model(0.4, x, 2), rtol=1e-6)


# -- samplers with the exact guided field (equal covariances: a closed-form target) ----------------

SIGMA = np.array([[1.0, 0.4], [0.4, 0.8]])
W = 2.0
N = 4000


@pytest.fixture(scope="module")
def equal_cov_model():
    ip = I.vp()
    comps = [gaussian(MU[0], SIGMA), gaussian(MU[1], SIGMA), gaussian(M_NULL, SIGMA)]
    return ip, class_model(comps, ip, "noise")


def _check_class_moments(x, labels, means, cov, extra_mean_tol=0.0, extra_cov_tol=0.0):
    for c, mean in enumerate(means):
        xc = np.asarray(x)[labels == c]
        se_mean = np.sqrt(np.diag(cov) / len(xc))
        np.testing.assert_array_less(np.abs(xc.mean(0) - mean), Z * se_mean + extra_mean_tol)
        se_cov = np.sqrt((cov**2 + np.outer(np.diag(cov), np.diag(cov))) / len(xc))
        np.testing.assert_array_less(np.abs(np.cov(xc.T) - cov), Z * se_cov + extra_cov_tol)


SAMPLERS = {
    # name: (call, discretisation allowance on the mean, on the covariance)
    "ode": (lambda m, ip, k, c: genjax.sample_ode(m, ip, k, (N, 2), prediction="noise", c=c), 0.0, 0.0),
    "sde": (lambda m, ip, k, c: genjax.sample_sde(m, ip, k, (N, 2), prediction="noise", c=c, num_steps=200),
            0.03, 0.03),
    "ddim": (lambda m, ip, k, c: genjax.sample_ddim(m, ip, k, (N, 2), prediction="noise", c=c, num_steps=100),
             0.03, 0.03),
    "heun": (lambda m, ip, k, c: genjax.sample_heun(m, ip, k, (N, 2), prediction="noise", c=c, num_steps=18),
             0.02, 0.02),
}


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_every_sampler_reproduces_the_guided_gaussian(equal_cov_model, sampler):
    """Guided samples follow ``N((1+w) μ_c − w m, Σ)``; conditional ones (w = 0) would sit 3 units away."""
    ip, model = equal_cov_model
    call, mean_tol, cov_tol = SAMPLERS[sampler]
    labels = np.arange(N) % 2
    x, _ = call(genjax.classifier_free(model, scale=W, null=2), ip, jax.random.key(1), jnp.asarray(labels))
    targets_mean = [(1 + W) * MU[c] - W * M_NULL for c in (0, 1)]
    _check_class_moments(x, labels, targets_mean, SIGMA, mean_tol, cov_tol)


def test_guidance_interval_on_the_ode_matches_the_gaussian_flow_map():
    """Guidance on ``[t_b, 1]`` only: the conditional PF-ODE from ``t_b`` keeps ``(x − α μ_c)/sqrt(α²s² + σ²)``
    constant, so the final mean is ``μ_c + r (m_g − μ_c)`` with ``r = α s / sqrt(α² s² + σ²)`` at ``t_b``."""
    ip, s, t_b = I.vp(), 0.7, 0.5
    comps = [gaussian(MU[0], s**2 * np.eye(2)), gaussian(MU[1], s**2 * np.eye(2)),
             gaussian(M_NULL, s**2 * np.eye(2))]
    model = genjax.classifier_free(class_model(comps, ip, "velocity"), scale=W, null=2, interval=(t_b, 1.0))
    labels = np.arange(N) % 2
    x, _ = genjax.sample_ode(model, ip, jax.random.key(2), (N, 2), prediction="velocity", c=jnp.asarray(labels))
    a, sig, _, _ = (float(v) for v in ip.scales(jnp.float32(t_b)))
    r = a * s / np.sqrt(a**2 * s**2 + sig**2)
    means = [MU[c] + r * W * (MU[c] - M_NULL) for c in (0, 1)]
    _check_class_moments(x, labels, means, s**2 * np.eye(2))


# -- label dropout in training ------------------------------------------------------------------------

def test_drop_conditioning_rate_and_values():
    c = jnp.arange(20000) % 7
    out = np.asarray(guidance.drop_conditioning(jax.random.key(0), c, 7, 0.1))
    dropped = out == 7
    np.testing.assert_array_equal(out[~dropped], np.asarray(c)[~dropped])
    assert abs(dropped.mean() - 0.1) < Z * np.sqrt(0.1 * 0.9 / len(out))
    np.testing.assert_array_equal(guidance.drop_conditioning(jax.random.key(0), c, 7, 0.0), c)
    with pytest.raises(ValueError, match="p_uncond"):
        guidance.drop_conditioning(jax.random.key(0), c, 7, 1.0)
    with pytest.raises(ValueError, match="null must have the shape"):
        guidance.drop_conditioning(jax.random.key(0), c, jnp.zeros(3), 0.1)


def test_objective_trains_the_null_class_at_rate_p_uncond():
    """Model: 0 for a class label, the constant A for the null label; noise target ε ~ N(0, I).

    Per-sample loss ``‖ε‖²`` or ``‖A − ε‖²``, so the mean is ``d + p ‖A‖²`` up to Monte-Carlo error.
    """
    d, n, p, null = 2, 20000, 0.1, 5
    a_vec = jnp.array([6.0, 8.0])  # ‖A‖² = 100

    def apply_fn(params, t, x, c):
        return jnp.where(c == null, params, 0.0) * jnp.ones_like(x)

    loss_fn = interpolant_objective(apply_fn, I.linear(), prediction="noise", p_uncond=p, null=null)
    batch = {"x0": jnp.zeros((n, d)), "c": jnp.arange(n) % null}
    loss, _ = loss_fn(a_vec, batch, jax.random.key(3))
    se = np.sqrt(p * (1 - p) * 100.0**2 / n + 4 * d / n)
    assert abs(float(loss) - (d + p * 100.0)) < Z * se
    with pytest.raises(ValueError, match="null="):
        interpolant_objective(apply_fn, I.linear(), prediction="noise", p_uncond=0.1)
    with pytest.raises(ValueError, match="'c'"):
        loss_fn(a_vec, jnp.zeros((4, d)), jax.random.key(0))


def test_train_apply_fn_gets_independent_per_sample_keys():
    """``train_apply_fn`` returning ``N(0, I)`` noise from its key: with independent keys the mean loss
    ``mean_i ‖ξ_i − ε_i‖²`` concentrates at ``2d``; one key shared by the batch would give ``‖ξ‖² + d``,
    which scatters by ``sqrt(2d)`` from call to call.  Ignoring the key reproduces the keyless loss."""
    d, n = 64, 512
    ip = I.linear()

    def noisy(params, t, x, c, key):
        return jax.random.normal(key, x.shape)

    def apply_fn(params, t, x):
        return params * x

    keyed = interpolant_objective(apply_fn, ip, prediction="noise", train_apply_fn=noisy)
    x0 = jnp.zeros((n, d))
    for seed in range(5):
        loss, _ = keyed(jnp.float32(0.0), x0, jax.random.key(seed))
        assert abs(float(loss) - 2 * d) < Z * np.sqrt(8 * d / n)
    plain = interpolant_objective(apply_fn, ip, prediction="noise")
    same = interpolant_objective(apply_fn, ip, prediction="noise",
                                 train_apply_fn=lambda p, t, x, c, k: apply_fn(p, t, x))
    x0 = jax.random.normal(jax.random.key(9), (n, d))
    np.testing.assert_array_equal(plain(jnp.float32(0.3), x0, jax.random.key(4))[0],
                                  same(jnp.float32(0.3), x0, jax.random.key(4))[0])


def test_classifier_free_argument_errors():
    model = lambda t, x, c: x  # noqa: E731
    with pytest.raises(ValueError, match="scale"):
        genjax.classifier_free(model, scale=float("nan"), null=0)
    with pytest.raises(ValueError, match="interval"):
        genjax.classifier_free(model, scale=1.0, null=0, interval=(0.8, 0.2))
    with pytest.raises(ValueError, match="to= needs"):
        genjax.classifier_free(model, scale=1.0, null=0, to="score")
