"""8×8 digits loader, dequantisation, scalings and bits/dim (module doc of genjax.data.images)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.data import images


def test_load_digits_split_is_fixed_and_complete():
    train, test = images.load_digits(test_fraction=0.2, seed=0)
    assert train.shape[1:] == (8, 8, 1) and test.shape[1:] == (8, 8, 1)
    assert len(train) + len(test) == 1797 and len(test) == round(0.2 * 1797)
    assert train.min() == 0 and max(train.max(), test.max()) == images.LEVELS - 1
    again, _ = images.load_digits(test_fraction=0.2, seed=0)
    np.testing.assert_array_equal(train, again)
    other, _ = images.load_digits(test_fraction=0.2, seed=1)
    assert not np.array_equal(train, other)
    # Same multiset of images as the raw data set: compare sorted row sums of flattened pixels.
    from sklearn.datasets import load_digits

    raw = load_digits().data.reshape(-1, 64)
    both = np.concatenate([train, test]).reshape(-1, 64)
    np.testing.assert_array_equal(np.sort(raw @ np.arange(64)), np.sort(both @ np.arange(64)))


def test_dequantised_values_stay_in_their_cell():
    x = np.arange(images.LEVELS).reshape(1, -1).repeat(50, axis=0)
    u = images.dequantize(jax.random.PRNGKey(0), x)
    np.testing.assert_array_equal(np.floor(np.asarray(u) * images.LEVELS), x)


def test_discrete_bits_per_dim_hand_computation():
    # −(log p + log|det| − D log K)/(D ln 2) with log p = −10, log|det| = 3, D = 64, K = 17:
    # (10 − 3 + 64·2.833213344)/(64·0.693147181) = 188.3256540/44.3614196 = 4.245257611.
    np.testing.assert_allclose(images.discrete_bits_per_dim(-10.0, 3.0, 64, 17), 4.245257611, rtol=1e-6)
    # MATH.md §6 for 8-bit data in [−1, 1]: the scaling contributes log|det| = D log 2.
    log_p, d = -1234.5, 3072
    expected = -(log_p + d * math.log(2 / 256)) / (d * math.log(2))
    np.testing.assert_allclose(images.discrete_bits_per_dim(log_p, d * math.log(2.0), d, 256), expected, rtol=1e-6)


@pytest.mark.parametrize("scaling", images.SCALINGS)
def test_uniform_model_scores_log2_levels(scaling):
    """The model 'u is uniform on [0,1)^D', written in y-space, has bpd = log₂ K exactly."""
    x = images.load_digits()[1][:16]
    alpha = 0.05
    y, log_det = images.to_model_space(jax.random.PRNGKey(1), x, scaling=scaling, alpha=alpha)
    if scaling == "symmetric":  # uniform on [−1, 1)^D
        log_p = jnp.full(len(x), -64 * math.log(2.0))
    else:  # density of logit(α + (1−2α)u) for uniform u: Π σ(y)(1 − σ(y))/(1 − 2α)
        s = jax.nn.sigmoid(y.reshape(len(x), -1))
        log_p = jnp.sum(jnp.log(s * (1 - s) / (1 - 2 * alpha)), axis=1)
    bpd = images.discrete_bits_per_dim(log_p, log_det, 64)
    np.testing.assert_allclose(bpd, math.log2(images.LEVELS), atol=2e-5)  # float32 sums of 64 logs


def test_logit_log_det_matches_jacobian_and_inverse():
    x = images.load_digits()[1][:2]
    key = jax.random.PRNGKey(2)
    u = images.dequantize(key, x)
    y, log_det = images.to_model_space(key, x, scaling="logit", alpha=0.05)
    scale = lambda v: jnp.log(0.05 + 0.9 * v) - jnp.log(0.95 - 0.9 * v)  # noqa: E731
    jac = jax.jacfwd(lambda v: scale(v).reshape(-1))(u[0])
    np.testing.assert_allclose(log_det[0], jnp.linalg.slogdet(jac.reshape(64, 64))[1], rtol=1e-5)
    np.testing.assert_allclose(images.to_unit_interval(y, "logit", 0.05), u, atol=1e-5)
    np.testing.assert_allclose(images.to_unit_interval(2 * u - 1, "symmetric"), u, atol=1e-6)


def test_bad_input_raises():
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="integers in 0..16"):
        images.dequantize(key, np.array([[0.5, 1.0]]))
    with pytest.raises(ValueError, match="integers in 0..16"):
        images.dequantize(key, np.array([[17]]))
    with pytest.raises(ValueError, match="integers in 0..16"):
        images.dequantize(key, np.array([[np.nan]]))
    with pytest.raises(ValueError, match="scaling"):
        images.to_model_space(key, np.zeros((1, 2), int), scaling="tanh")
    with pytest.raises(ValueError, match="alpha"):
        images.to_model_space(key, np.zeros((1, 2), int), alpha=0.5)
    with pytest.raises(ValueError, match="test_fraction"):
        images.load_digits(test_fraction=1.0)
