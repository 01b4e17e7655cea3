"""Bijectors, RealNVP and Glow against analytic oracles (MATH.md §7, §9.6)."""

import functools
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


@functools.partial(jax.jit, static_argnums=2)
def perturb(params, key, scale):
    """Add N(0, scale²) to every parameter so zero-initialised layers become non-trivial."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, max(len(leaves), 1))
    return jax.tree_util.tree_unflatten(tree, [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


def _case(bijector, shape, scale, seed):
    x = jax.random.normal(jax.random.PRNGKey(seed), (8, *shape))
    params = Flow(bijector, shape).init(jax.random.PRNGKey(seed + 1), 1.5 * x + 0.3)
    return bijector, perturb(params, jax.random.PRNGKey(seed + 2), scale), x, params


@pytest.fixture(scope="module")
def cases():
    """Non-trivial (perturbed) bijectors: whole stacks and single Glow blocks."""
    return {
        "realnvp_2d": _case(realnvp((2,), 4, (16, 16)), (2,), 0.3, 0),
        "realnvp_5d_checkerboard": _case(realnvp((5,), 4, (16,), mask="checkerboard"), (5,), 0.3, 10),
        "glow_2d": _case(glow_2d(2, 3, (16,)), (2,), 0.3, 20),
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
    # float32 round trip through a few layers: errors of order depth × 1e-7 × |x|.
    np.testing.assert_allclose(x_back, x, atol=1e-5)
    np.testing.assert_allclose(z_back, z, atol=1e-5)
    # log|det| of up to 64×64 Jacobians from LU in float32: relative 1e-5 plus 1e-4 absolute.
    np.testing.assert_allclose(ld_inv, oracle_inv, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ld_fwd, oracle_fwd, rtol=1e-5, atol=1e-4)
    if name != "squeeze":  # every other case is a non-trivial map
        assert float(jnp.max(jnp.abs(z.reshape(x.shape[0], -1) - x.reshape(x.shape[0], -1)))) > 1e-2


@pytest.mark.parametrize("name", ["realnvp_2d", "glow_2d"])
def test_density_integrates_to_one(cases, name):
    """∫ p over a box equals 1 minus the flow's own sampled mass outside the box."""
    bij, _, _, params = cases[name]
    flow = Flow(bij, (2,))
    params = perturb(params, jax.random.PRNGKey(4), 0.1)  # non-Gaussian, yet light-tailed
    half, n = 16.0, 401  # these flows put < 1e-3 of their mass beyond |x| = 16
    grid = jnp.linspace(-half, half, n)
    xy = jnp.stack(jnp.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    log_density = jax.jit(flow.log_prob)(params, xy)
    near = jnp.sum(xy**2, axis=1) < 4.0
    gaussian = -0.5 * jnp.sum(xy**2, axis=1) - math.log(2 * math.pi)
    assert float(jnp.max(jnp.where(near, jnp.abs(log_density - gaussian), 0.0))) > 0.2  # not N(0, I)
    density = jnp.exp(log_density).reshape(n, n)
    integral = float(jnp.trapezoid(jnp.trapezoid(density, grid, axis=1), grid))
    samples = jax.jit(flow.sample, static_argnums=2)(params, jax.random.PRNGKey(3), 50_000)
    inside = float(jnp.mean(jnp.all(jnp.abs(samples) <= half, axis=1)))
    # MC s.e. of the inside fraction sqrt(p(1−p)/n) <= 4.5e-4 for p >= 0.99 (×5 ≈ 2e-3); the
    # trapezoid rule on a 0.08 grid adds ≈ 1e-3 for densities varying on scales >= 0.3.
    assert abs(integral - inside) < 8e-3, (integral, inside)
    assert inside > 0.995


@pytest.mark.parametrize("dim", [2, 5])  # even: the "first half" mask must flip; odd: uneven halves
def test_every_coordinate_changes_after_two_couplings(dim):
    masks = coupling_masks((dim,), 2, "half")
    np.testing.assert_array_equal(masks[0] + masks[1], np.ones(dim))
    bij = realnvp((dim,), 2, (16,))
    x = jax.random.normal(jax.random.PRNGKey(0), (4, dim))
    params = perturb(Flow(bij, (dim,)).init(jax.random.PRNGKey(1), x), jax.random.PRNGKey(2), 0.5)
    y = jax.vmap(bij.inverse, (None, 0))(params, x)
    assert bool(jnp.all(jnp.abs(y - x) > 1e-4)), "a coordinate was left unchanged by the two-layer stack"


def test_single_coupling_changes_only_free_coordinates():
    mask = np.array([1.0, 0.0, 1.0, 0.0], np.float32)
    bij = affine_coupling(mask, MLP((16,), 8))
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 4))
    params = perturb(bij.init(jax.random.PRNGKey(1), x), jax.random.PRNGKey(2), 0.5)
    y, ld = jax.vmap(bij.forward_and_log_det, (None, 0))(params, x)
    np.testing.assert_array_equal(y[:, mask == 1], x[:, mask == 1])
    assert bool(jnp.all(jnp.abs(y[:, mask == 0] - x[:, mask == 0]) > 1e-4))
    # log|det| = Σ (1−m)⊙s with s bounded by the default c = 2: |ld| <= 2·(#free).
    assert bool(jnp.all(jnp.abs(ld) <= 4.0))


def test_fresh_realnvp_is_identity():
    bij = realnvp((3,), 4, (16,))
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
    params = Flow(bij, (3,)).init(jax.random.PRNGKey(1), x)
    y, ld = jax.vmap(bij.forward_and_log_det, (None, 0))(params, x)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(ld, 0.0)


def test_actnorm_init_standardises_its_input_through_a_chain():
    """Data-dependent init sees the activations after the preceding layer (chain init order)."""
    bij = chain([lu_linear(3, seed=1), actnorm()])
    x = 5.0 * jax.random.normal(jax.random.PRNGKey(0), (64, 2, 2, 3)) + jnp.array([3.0, -1.0, 0.5])
    params = bij.init(jax.random.PRNGKey(1), x)
    z = jax.vmap(bij.inverse, (None, 0))(params, x)
    np.testing.assert_allclose(jnp.mean(z, axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(jnp.std(z, axis=(0, 1, 2)), 1.0, atol=1e-5)


def test_lu_conv_is_a_1x1_convolution_with_dense_logdet():
    channels, (h, w) = 4, (3, 5)
    bij = lu_linear(channels, seed=3)
    params = perturb(bij.init(None, None), jax.random.PRNGKey(0), 0.3)
    x = jax.random.normal(jax.random.PRNGKey(1), (h, w, channels))
    z, ld = bij.inverse_and_log_det(params, x)
    # The dense matrix of the per-pixel map, read off one pixel, then an independent 1×1 convolution.
    weight = jax.jacfwd(lambda v: bij.inverse(params, v))(jnp.zeros(channels))
    conv = jax.lax.conv_general_dilated(
        x[None], weight.T[None, None], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )[0]
    np.testing.assert_allclose(z, conv, atol=1e-5)
    sign, logabs = np.linalg.slogdet(np.asarray(weight, np.float64))
    assert sign != 0
    np.testing.assert_allclose(ld, h * w * logabs, rtol=1e-5)
    np.testing.assert_allclose(logabs, jnp.sum(params["log_s"]), atol=1e-5)


def test_squeeze_moves_2x2_blocks_into_channels():
    x = jnp.arange(4 * 6 * 2, dtype=jnp.float32).reshape(4, 6, 2)
    bij = squeeze()
    z = bij.inverse(None, x)
    assert z.shape == (2, 3, 8)
    np.testing.assert_array_equal(np.sort(z[1, 2]), np.sort(x[2:4, 4:6].reshape(-1)))
    np.testing.assert_array_equal(bij.forward(None, z), x)


def test_glow_2d_fits_a_gaussian_to_its_entropy():
    """ActNorm + LU linear can represent any Gaussian: trained NLL → differential entropy."""
    mean = jnp.array([1.0, -2.0])
    chol = jnp.array([[1.5, 0.0], [0.9, 0.4]])
    entropy = 0.5 * 2 * (1 + math.log(2 * math.pi)) + float(jnp.sum(jnp.log(jnp.diag(chol))))
    draw = lambda key, n: mean + jax.random.normal(key, (n, 2)) @ chol.T  # noqa: E731
    train, test = draw(jax.random.PRNGKey(0), 2000), draw(jax.random.PRNGKey(1), 20_000)
    flow = Flow(glow_2d(2, 1, (8,)), (2,))
    params = flow.init(jax.random.PRNGKey(2), train[:256])
    tx = optax.adam(1e-2)

    @jax.jit
    def run(params):
        def step(carry, _):
            params, opt = carry
            grads = jax.grad(lambda p: flow.loss(p, train)[0])(params)
            updates, opt = tx.update(grads, opt)
            return (optax.apply_updates(params, updates), opt), None

        return jax.lax.scan(step, (params, tx.init(params)), None, length=300)[0][0]

    nll = -float(jnp.mean(flow.log_prob(run(params), test)))
    # s.e. of the test mean is sqrt(d/2)/sqrt(2e4) = 0.007; fitting 2000 points adds ~1e-3 nats.
    assert abs(nll - entropy) < 0.04, (nll, entropy)


def test_bad_input_raises():
    flow = Flow(realnvp((2,), 2, (8,)), (2,))
    params = flow.init(jax.random.PRNGKey(0), jnp.ones((4, 2)) * jnp.arange(4.0)[:, None])
    with pytest.raises(ValueError, match=r"x must have shape \(n, 2\)"):
        flow.log_prob(params, jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        flow.log_prob(params, jnp.array([[0.0, jnp.nan]]))
    with pytest.raises(ValueError, match="NaN"):
        flow.init(jax.random.PRNGKey(0), jnp.array([[jnp.inf, 0.0]]))
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
        Flow(realnvp((2,), 2, (8,)), (3,)).init(jax.random.PRNGKey(0), jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="built for 3 channels"):
        lu_linear(3).inverse(lu_linear(3).init(None, None), jnp.ones((2, 2, 4)))
