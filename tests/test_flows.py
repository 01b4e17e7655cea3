"""Bijectors, RealNVP and Glow against analytic oracles (MATH.md §7, §9.6)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax.flows import (
    Flow,
    actnorm,
    affine_coupling,
    chain,
    coupling_masks,
    glow,
    glow_2d,
    lu_linear,
    MLP,
    realnvp,
    squeeze,
)


def perturb(params, seed, scale):
    """Add N(0, scale²) to every parameter so zero-initialised layers become non-trivial.

    Host-side numpy draws: a jitted ``jax.random.normal`` per leaf costs seconds of XLA compilation.
    """
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: jnp.asarray(p + scale * rng.standard_normal(np.shape(p)), jnp.float32),
                        jax.tree.map(np.asarray, params))


def key(seed):
    """A PRNG key for initialisation and sampling.

    The ``unsafe_rbg`` implementation (XLA's RngBitGenerator, also for split/fold_in) compiles several
    times faster on CPU than threefry; the quality of key derivation is irrelevant to these checks.
    """
    return jax.random.key(seed, impl="unsafe_rbg")


def normal(seed, shape):
    """Standard-normal test inputs (float32), drawn on the host."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _case(bijector, shape, scale, seed):
    x = normal(seed, (8, *shape))
    params = Flow(bijector, shape).init(key(seed + 1), 1.5 * x + 0.3)
    return bijector, perturb(params, seed + 2, scale), x, params


@pytest.fixture(scope="module")
def cases():
    """Non-trivial (perturbed) bijectors: whole stacks and single Glow blocks.

    Small stacks (2–3 layers): XLA compile time grows with the number of layers, the checks do not need more.
    """
    return {
        "realnvp_2d": _case(realnvp((2,), 2, (16, 16)), (2,), 0.3, 0),
        "realnvp_5d_checkerboard": _case(realnvp((5,), 3, (16,), mask="checkerboard"), (5,), 0.3, 10),  # m, 1−m, m
        "glow_2d": _case(glow_2d(2, 2, (16,)), (2,), 0.3, 20),
        "realnvp_image": _case(realnvp((4, 4, 2), 2, 8), (4, 4, 2), 0.05, 30),
        "glow_image": _case(glow((8, 8, 1), 2, 1, 8), (8, 8, 1), 0.05, 40),  # two levels: squeeze + split
        "actnorm": _case(actnorm(), (2, 2, 3), 0.3, 50),
        "lu_linear": _case(lu_linear(3, seed=7), (2, 2, 3), 0.3, 60),
        "squeeze": _case(squeeze(), (4, 4, 2), 0.0, 70),
    }


@pytest.mark.parametrize(
    "name",
    ["realnvp_2d", "realnvp_5d_checkerboard", "glow_2d", "realnvp_image", "glow_image", "actnorm", "lu_linear", "squeeze"],
)
def test_invertible_and_logdet_matches_jacobian(cases, name):
    bij, params, x, _ = cases[name]

    @jax.jit
    def check(params, x):
        z, ld_inv = jax.vmap(bij.inverse_and_log_det, (None, 0))(params, x)
        x_back, ld_fwd = jax.vmap(bij.forward_and_log_det, (None, 0))(params, z)
        z_back = jax.vmap(bij.inverse, (None, 0))(params, x_back)

        def slogdet(fn, v):
            jac = jax.jacfwd(lambda u: fn(params, u).reshape(-1))(v)
            return jnp.linalg.slogdet(jac.reshape(jac.shape[0], -1))[1]

        oracle_inv = jax.vmap(lambda v: slogdet(bij.inverse, v))(x)
        oracle_fwd = jax.vmap(lambda v: slogdet(bij.forward, v))(z)
        return z, x_back, z_back, ld_inv, ld_fwd, oracle_inv, oracle_fwd

    z, x_back, z_back, ld_inv, ld_fwd, oracle_inv, oracle_fwd = check(params, x)
    # float32 round trip through a few layers: errors of order depth × 1e-7 × |x| (|z| reaches ~30 here).
    np.testing.assert_allclose(x_back, x, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(z_back, z, rtol=1e-6, atol=1e-5)
    # log|det| of up to 64×64 Jacobians from LU in float32: relative 1e-5 plus 1e-4 absolute.
    np.testing.assert_allclose(ld_inv, oracle_inv, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ld_fwd, oracle_fwd, rtol=1e-5, atol=1e-4)
    if name != "squeeze":  # every other case is a non-trivial map
        assert np.max(np.abs(np.reshape(z, (x.shape[0], -1)) - x.reshape(x.shape[0], -1))) > 1e-2


@pytest.mark.parametrize("name", ["realnvp_2d", "glow_2d"])
def test_density_integrates_to_one(cases, name):
    """∫ p over a box equals 1 minus the flow's own sampled mass outside the box."""
    bij, _, _, params = cases[name]
    flow = Flow(bij, (2,))
    params = perturb(params, 4, 0.1)  # non-Gaussian, yet light-tailed
    half, n = 16.0, 401  # these flows put < 1e-3 of their mass beyond |x| = 16
    grid = np.linspace(-half, half, n)
    xy = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    evaluate = jax.jit(lambda params, xy, k: (flow.log_prob(params, xy), flow.sample(params, k, 50_000)))
    log_density, samples = (np.asarray(a, np.float64) for a in evaluate(params, jnp.asarray(xy, jnp.float32), key(3)))
    near = np.sum(xy**2, axis=1) < 4.0
    gaussian = -0.5 * np.sum(xy**2, axis=1) - math.log(2 * math.pi)
    assert np.max(np.where(near, np.abs(log_density - gaussian), 0.0)) > 0.2  # not N(0, I)
    density = np.exp(log_density).reshape(n, n)
    integral = np.trapezoid(np.trapezoid(density, grid, axis=1), grid)
    inside = np.mean(np.all(np.abs(samples) <= half, axis=1))
    # MC s.e. of the inside fraction sqrt(p(1−p)/n) <= 4.5e-4 for p >= 0.99 (×5 ≈ 2e-3); the
    # trapezoid rule on a 0.08 grid adds ≈ 1e-3 for densities varying on scales >= 0.3.
    assert abs(integral - inside) < 8e-3, (integral, inside)
    assert inside > 0.995


@pytest.mark.parametrize("dim", [2, 5])  # even: the "first half" mask must flip; odd: uneven halves
def test_every_coordinate_changes_after_two_couplings(dim):
    masks = coupling_masks((dim,), 2, "half")
    np.testing.assert_array_equal(masks[0] + masks[1], np.ones(dim))
    bij = realnvp((dim,), 2, (16,))
    x = normal(0, (4, dim))
    params = perturb(Flow(bij, (dim,)).init(key(1), x), 2, 0.5)
    y = jax.jit(jax.vmap(bij.inverse, (None, 0)))(params, x)
    assert np.all(np.abs(y - x) > 1e-4), "a coordinate was left unchanged by the two-layer stack"


def test_single_coupling_changes_only_free_coordinates():
    mask = np.array([1.0, 0.0, 1.0, 0.0], np.float32)
    bij = affine_coupling(mask, MLP((16,), 8))
    x = normal(0, (4, 4))
    params = perturb(jax.jit(bij.init)(key(1), x), 2, 0.5)
    y, ld = jax.jit(jax.vmap(bij.forward_and_log_det, (None, 0)))(params, x)
    np.testing.assert_array_equal(y[:, mask == 1], x[:, mask == 1])
    assert np.all(np.abs(y[:, mask == 0] - x[:, mask == 0]) > 1e-4)
    # log|det| = Σ (1−m)⊙s with s bounded by the default c = 2: |ld| <= 2·(#free).
    assert np.all(np.abs(ld) <= 4.0)


@pytest.mark.parametrize("name", ["realnvp_2d", "realnvp_5d_checkerboard"])  # even / odd dimension
def test_fresh_realnvp_is_identity(cases, name):
    bij, _, x, params = cases[name]  # the unperturbed parameters from Flow.init
    y, ld = jax.jit(jax.vmap(bij.forward_and_log_det, (None, 0)))(params, x)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(ld, 0.0)


def test_actnorm_init_standardises_its_input_through_a_chain():
    """Data-dependent init sees the activations after the preceding layer (chain init order)."""
    bij = chain([lu_linear(3, seed=1), actnorm()])
    x = 5.0 * normal(0, (64, 2, 2, 3)) + np.array([3.0, -1.0, 0.5], np.float32)
    z = np.asarray(jax.jit(lambda k, x: jax.vmap(bij.inverse, (None, 0))(bij.init(k, x), x))(key(1), x))
    np.testing.assert_allclose(np.mean(z, axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.std(z, axis=(0, 1, 2)), 1.0, atol=1e-5)


def test_lu_conv_is_a_1x1_convolution_with_dense_logdet():
    channels, (h, w) = 4, (3, 5)
    bij = lu_linear(channels, seed=3)
    params = perturb(bij.init(None, None), 0, 0.3)
    x = normal(1, (h, w, channels))

    @jax.jit
    def run(params, x):
        z, ld = bij.inverse_and_log_det(params, x)
        # The dense matrix of the per-pixel map, read off one pixel, then an independent 1×1 convolution.
        weight = jax.jacfwd(lambda v: bij.inverse(params, v))(jnp.zeros(channels))
        conv = jax.lax.conv_general_dilated(
            x[None], weight.T[None, None], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )[0]
        return z, ld, weight, conv

    z, ld, weight, conv = run(params, x)
    np.testing.assert_allclose(z, conv, atol=1e-5)
    sign, logabs = np.linalg.slogdet(np.asarray(weight, np.float64))
    assert sign != 0
    np.testing.assert_allclose(ld, h * w * logabs, rtol=1e-5)
    np.testing.assert_allclose(logabs, np.sum(params["log_s"]), atol=1e-5)


def test_squeeze_moves_2x2_blocks_into_channels():
    x = jnp.arange(4 * 6 * 2, dtype=jnp.float32).reshape(4, 6, 2)
    bij = squeeze()
    z = bij.inverse(None, x)
    assert z.shape == (2, 3, 8)
    np.testing.assert_array_equal(np.sort(z[1, 2]), np.sort(x[2:4, 4:6].reshape(-1)))
    np.testing.assert_array_equal(bij.forward(None, z), x)


def test_glow_2d_fits_a_gaussian_to_its_entropy():
    """ActNorm + LU linear can represent any Gaussian: trained NLL → differential entropy."""
    mean = np.array([1.0, -2.0], np.float32)
    chol = np.array([[1.5, 0.0], [0.9, 0.4]], np.float32)
    entropy = 0.5 * 2 * (1 + math.log(2 * math.pi)) + float(np.sum(np.log(np.diag(chol))))
    draw = lambda seed, n: mean + normal(seed, (n, 2)) @ chol.T  # noqa: E731
    train, test = jnp.asarray(draw(0, 2000)), jnp.asarray(draw(1, 20_000))
    flow = Flow(glow_2d(2, 1, (8,)), (2,))
    params = flow.init(key(2), train[:256])
    tx = optax.adam(1e-2)

    @jax.jit
    def fitted_nll(params):
        def step(carry, _):
            params, opt = carry
            grads = jax.grad(lambda p: flow.loss(p, train)[0])(params)
            updates, opt = tx.update(grads, opt)
            return (optax.apply_updates(params, updates), opt), None

        trained = jax.lax.scan(step, (params, tx.init(params)), None, length=300)[0][0]
        return -jnp.mean(flow.log_prob(trained, test))

    nll = float(fitted_nll(params))
    # s.e. of the test mean is sqrt(d/2)/sqrt(2e4) = 0.007; fitting 2000 points adds ~1e-3 nats.
    assert abs(nll - entropy) < 0.04, (nll, entropy)


def test_bad_input_raises(cases):
    bij, params, _, _ = cases["realnvp_2d"]
    flow = Flow(bij, (2,))
    with pytest.raises(ValueError, match=r"x must have shape \(n, 2\)"):
        flow.log_prob(params, jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        flow.log_prob(params, jnp.array([[0.0, jnp.nan]]))
    with pytest.raises(ValueError, match="NaN"):
        flow.init(key(0), jnp.array([[jnp.inf, 0.0]]))
    with pytest.raises(ValueError, match="num_layers"):
        realnvp((2,), 1)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        realnvp((1,), 2)
    with pytest.raises(ValueError, match="kind"):
        coupling_masks((4,), 2, "diagonal")
    with pytest.raises(ValueError, match="divisible"):
        glow((6, 6, 1), num_levels=2)
    with pytest.raises(ValueError, match="mask"):
        affine_coupling(np.ones(3), MLP((4,), 6))
    with pytest.raises(ValueError, match=r"event of shape \(3,\), the mask has shape \(2,\)"):
        Flow(realnvp((2,), 2, (8,)), (3,)).init(key(0), jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="built for 3 channels"):
        lu_linear(3).inverse(lu_linear(3).init(None, None), jnp.ones((2, 2, 4)))
