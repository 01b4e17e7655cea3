"""Image metrics: feature nets, the metric table against its data floor, conditional accuracy, bits/dim (MATH.md §6, §8)."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits

from genjax import interpolants, metrics
from genjax.data import images
from genjax.metrics import features as feature_nets

TINY = metrics.ClassifierConfig(widths=(8, 16), feature_dim=32, steps=60, batch_size=64)


@pytest.fixture(scope="module")
def digits():
    """All 1797 digits (N, 8, 8, 1) and their labels in a fixed random order."""
    raw = load_digits()
    order = np.random.default_rng(0).permutation(len(raw.target))
    return raw.images.astype(np.int32)[order, ..., None], raw.target[order]


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    cache = tmp_path_factory.mktemp("feature_nets")
    return cache, metrics.digit_classifier(cache, TINY)


# -- feature nets -----------------------------------------------------------------------
def test_bin_centres():
    np.testing.assert_allclose(metrics.bin_centres(np.array([0, 8, 16])), [-16 / 17, 0.0, 16 / 17], rtol=1e-6)
    # the centre is the mean of the symmetric dequantisation 2(x + v)/K − 1, v ~ U[0, 1)
    y, _ = images.to_model_space(jax.random.key(0), np.full((20000, 1), 5), 17, "symmetric")
    centre = float(metrics.bin_centres(np.array([5]))[0])
    assert float(jnp.mean(y)) == pytest.approx(centre, abs=4 * (2 / 17) / math.sqrt(12 * 20000))  # 4 s.e. of U-noise
    with pytest.raises(ValueError, match=r"integers in 0..16"):
        metrics.bin_centres(np.array([17]))


def test_random_conv_features_are_fixed_multiscale_and_positively_homogeneous(digits):
    x = metrics.bin_centres(digits[0][:40])
    net = metrics.random_conv_features((8, 8, 1))
    assert net.info["num_scales"] == 3 and net.features(x).shape == (40, 3 * 64)
    np.testing.assert_array_equal(net.features(x), metrics.random_conv_features((8, 8, 1), seed=0).features(x))
    assert not np.allclose(net.features(x), metrics.random_conv_features((8, 8, 1), seed=1).features(x))
    # ReLU, no biases, average pooling: f(c x) = c f(x) for c > 0 (contrast is kept, not normalised away)
    np.testing.assert_allclose(net.features(0.5 * x), 0.5 * net.features(x), rtol=1e-5, atol=1e-7)
    # batching does not change the features
    np.testing.assert_allclose(net.features(x, batch_size=7), net.features(x), rtol=1e-6, atol=1e-7)
    patches = metrics.random_conv_features((32, 24, 3), width=16)
    assert patches.info["num_scales"] == 4 and patches.features(jnp.zeros((3, 32, 24, 3))).shape == (3, 64)
    for shape in ((4, 8, 1), (8, 8, 2), (8, 8)):
        with pytest.raises(ValueError, match="image_shape must be"):
            metrics.random_conv_features(shape)
    with pytest.raises(ValueError, match="not a classifier"):
        net.logits(x)
    with pytest.raises(ValueError, match=r"images must have shape \(n, 8, 8, 1\)"):
        net.features(jnp.zeros((2, 8, 8)))


def test_digit_classifier_is_deterministic_and_cached(tiny_classifier, monkeypatch):
    cache, net = tiny_classifier
    assert net.info["source"] == "trained" and net.num_classes == 10
    assert net.info["test_accuracy"] > 0.5  # 60 steps of a tiny net: well above chance (0.1)
    # a second training from scratch gives bit-identical weights
    again = feature_nets._train_classifier(net.module, TINY, *images.load_digits(labels=True)[0])
    jax.tree.map(np.testing.assert_array_equal, net.params, again)

    # cache hit: no training, the same weights
    def no_training(*args):
        raise AssertionError("trained despite a valid cache")

    monkeypatch.setattr(feature_nets, "_train_classifier", no_training)
    cached = metrics.digit_classifier(cache, TINY)
    assert cached.info["source"] == "cache" and cached.info["test_accuracy"] == net.info["test_accuracy"]
    jax.tree.map(np.testing.assert_array_equal, net.params, cached.params)

    # a changed config or a changed training-data hash retrains
    calls = []
    monkeypatch.setattr(feature_nets, "_train_classifier", lambda module, config, x, y: calls.append(config) or net.params)
    assert metrics.digit_classifier(cache, dataclasses.replace(TINY, steps=61)).info["source"] == "trained"
    info = json.loads((cache / "digit_classifier.json").read_text())
    (cache / "digit_classifier.json").write_text(json.dumps({**info, "data_sha256": "0" * 64}))
    assert metrics.digit_classifier(cache, TINY).info["source"] == "trained"
    assert [c.steps for c in calls] == [61, 60]


def test_conditional_accuracy(tiny_classifier, digits):
    _, net = tiny_classifier
    x = metrics.bin_centres(digits[0][:200])
    predicted = net.predict(x)
    assert metrics.conditional_accuracy(net, x, predicted) == 1.0
    assert metrics.conditional_accuracy(net, x, (predicted + 1) % 10) == 0.0
    half_wrong = np.where(np.arange(200) < 50, (predicted + 3) % 10, predicted)
    assert metrics.conditional_accuracy(net, x, half_wrong) == 0.75
    with pytest.raises(ValueError, match=r"labels must be 200 integers in 0..9"):
        metrics.conditional_accuracy(net, x, np.full(200, 10))
    with pytest.raises(ValueError, match="logits layer"):
        metrics.conditional_accuracy(metrics.random_conv_features((8, 8, 1)), x, predicted)


@pytest.mark.slow
def test_default_digit_classifier_accuracy(tmp_path):
    """The default CNN reaches >= 97% test accuracy, at bin centres and on dequantised inputs (measured 98.6%, 98.9%)."""
    net = metrics.digit_classifier(tmp_path)
    assert net.info["test_accuracy"] >= 0.97 and net.info["test_accuracy_dequantised"] >= 0.97
    assert net.features(jnp.zeros((2, 8, 8, 1))).shape == (2, 128)


# -- the metric table -------------------------------------------------------------------
def test_image_metrics_against_the_data_floor(digits):
    """Random-conv features of the digits: the reference set sits at the floor by definition; samples of
    digits 0–4 only keep precision at the floor and lose recall (measured 0.63 vs 0.95) with a larger FD (6×);
    uniform-noise images and 2×2-blurred digits leave the data manifold (precision and recall ≤ 0.025, FD ≥ 87×
    and KID ≥ 500× the floor's magnitude)."""
    x, y = digits
    real, reference, rest, rest_y = x[:600], x[600:1000], x[1000:], y[1000:]
    low_digits = rest[rest_y < 5][:400]
    noise = np.random.default_rng(0).integers(0, 17, size=(400, 8, 8, 1))
    blurred = 0.25 * (rest[:400] + np.roll(rest[:400], 1, 1) + np.roll(rest[:400], 1, 2) + np.roll(rest[:400], 1, (1, 2)))
    net = metrics.random_conv_features((8, 8, 1), width=16)  # 48-d features: cheap eigendecompositions for FD
    table = lambda samples, **kw: metrics.image_metrics(  # noqa: E731
        samples, metrics.bin_centres(real), metrics.bin_centres(reference), net, **kw)

    same = table(metrics.bin_centres(reference))
    assert set(same) == {f"{m}{s}" for m in ("fd", "kid", "precision", "recall") for s in ("", "_floor")}
    for name in ("fd", "kid", "precision", "recall"):
        assert same[name] == same[f"{name}_floor"]
    assert same["precision_floor"] > 0.85 and same["recall_floor"] > 0.85

    low = table(metrics.bin_centres(low_digits))
    assert abs(low["precision"] - low["precision_floor"]) < 0.05
    assert low["recall"] < low["recall_floor"] - 0.2 and low["fd"] > 3 * low["fd_floor"]

    for bad in (metrics.bin_centres(noise), jnp.asarray(2 * (blurred + 0.5) / 17 - 1, jnp.float32)):
        row = table(bad, key=jax.random.key(0))
        assert row["precision"] < 0.05 and row["recall"] < 0.05
        assert row["fd"] > 50 * row["fd_floor"] and row["kid"] > 100 * abs(row["kid_floor"])

    with pytest.raises(ValueError, match="same number of images"):
        table(metrics.bin_centres(low_digits[:10]))


# -- bits per dimension through the PF-ODE ----------------------------------------------
K = images.LEVELS
HEUN = {"solver": "heun", "num_steps": 64}  # 1.6e-4 bits from the adaptive tsit5 value; compiles faster


@pytest.fixture(scope="module")
def gaussian_digits(digits):
    """A 64-d Gaussian N(m, C) fitted to the digits (C the sample covariance + 0.05 I: full and well conditioned, so
    the velocity's Jacobian is a dense 64×64 matrix), its exact linear-path velocity on 8×8×1 images, and one test
    image repeated 64 times with its exact-divergence bits/dim.

    Velocity (MATH.md §9.1): v = α̇ m + (αα̇ C + σσ̇ I)(α² C + σ² I)⁻¹ (x − α m), applied in C's eigenbasis.
    (``jnp.linalg.solve`` in this field, as in ``targets.GaussianMixture.field``, made the exact-divergence solve
    block indefinitely on its second call with jax 0.10.2 on CPU.)"""
    y = np.asarray(metrics.bin_centres(digits[0][:1000]), np.float64).reshape(1000, 64)
    m, c = y.mean(0), np.cov(y.T) + 0.05 * np.eye(64)
    lam, u = (jnp.asarray(a, jnp.float32) for a in np.linalg.eigh(c))
    mean = jnp.asarray(m, jnp.float32)

    def model(t, x):
        a, s, da, ds = interpolants.linear.scales(t)
        gain = (a * da * lam + s * ds) / (a**2 * lam + s**2)
        return (da * mean + u @ (gain * (u.T @ (x.reshape(-1) - a * mean)))).reshape(x.shape)

    x = np.repeat(digits[0][1500:1501], 64, axis=0)
    key = jax.random.key(7)
    exact = metrics.image_bits_per_dim(model, interpolants.linear, x, key, prediction="velocity", levels=K,
                                       divergence="exact", **HEUN)
    return m, c, model, x, key, exact


def test_image_bits_per_dim_of_a_gaussian_equals_the_analytic_value(gaussian_digits):
    """Linear path: α(1) = 0, so the prior is exact and log p(y) = log N(y; m, C).  With y = ȳ + w, ȳ the bin
    centre and w ~ U[−1/K, 1/K)^D (variance s² = 1/(3K²)),
    E[−log p] = ½(ȳ − m)ᵀC⁻¹(ȳ − m) + ½ s² tr C⁻¹ + ½ log det(2πC), and
    bpd = (E[−log p] − D log 2 + D log K)/(D ln 2).
    The image is repeated, so the standard error is the dequantisation noise alone (measured 0.0008 bits, the
    deviation 0.0005): dropping the D log 2 term would move the value by 1 bit, dequantisation noise of the wrong
    width the ½ s² tr C⁻¹ term (0.008 bits ≈ 11 s.e.)."""
    m, c, _, x, _, (bpd, se) = gaussian_digits
    precision = np.linalg.inv(c)
    delta = np.asarray(metrics.bin_centres(x[0]), np.float64).reshape(64) - m
    nats = 0.5 * (delta @ precision @ delta + np.trace(precision) / (3 * K**2)) + 0.5 * np.linalg.slogdet(2 * np.pi * c)[1]
    analytic = (nats - 64 * math.log(2) + 64 * math.log(K)) / (64 * math.log(2))
    assert 0 < se < 0.005
    assert abs(bpd - analytic) < 4 * se


def test_image_bits_per_dim_hutchinson_agrees_with_the_exact_divergence(gaussian_digits):
    """The same key gives the same dequantised images, so the Hutchinson values are the exact ones plus zero-mean
    probe noise ε_i (one Rademacher probe per trajectory: unbiased), uncorrelated with them: Var(h) = Var(e) + Var(ε),
    and the difference of the means has standard error √(se_h² − se_e²) (measured 0.013 bits; the probe noise is
    17× the dequantisation noise, the Jacobian being dense).  Here the difference is 2.1 s.e.; over 12 other keys
    the differences in s.e. averaged 0.28 ± 0.38 (sd 1.3), as an unbiased estimator's should."""
    _, _, model, x, key, (exact, se_exact) = gaussian_digits
    hutchinson, se_h = metrics.image_bits_per_dim(model, interpolants.linear, x, key, prediction="velocity", levels=K,
                                                  **HEUN)
    assert se_h > 5 * se_exact
    assert abs(hutchinson - exact) < 4 * math.sqrt(se_h**2 - se_exact**2)


def test_image_bits_per_dim_bad_input(gaussian_digits):
    _, _, model, x, key, _ = gaussian_digits
    with pytest.raises(ValueError, match="at least 2 integer images"):
        metrics.image_bits_per_dim(model, interpolants.linear, x[:1], key, prediction="velocity", levels=K)
    with pytest.raises(ValueError, match="integers in 0..16"):
        metrics.image_bits_per_dim(model, interpolants.linear, x + 0.5, key, prediction="velocity", levels=K)
    with pytest.raises(ValueError, match="divergence"):
        metrics.image_bits_per_dim(model, interpolants.linear, x, key, prediction="velocity", levels=K, divergence="x")
