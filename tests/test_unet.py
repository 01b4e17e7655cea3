"""The image U-Net (genjax.nets.UNet): shapes, per-sample = batched, zero-init, labels,
dropout, hand parameter counts, XLA FLOP counts, input errors and bfloat16 mixed precision.

Tiny configurations keep the file compile-bound but short.  Parameters are initialised from
an ``rbg`` key: XLA:CPU compiles its one RngBitGenerator op several times faster than the
threefry hash that every initializer would otherwise inline.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax
from jax.flatten_util import ravel_pytree

import genjax
from genjax import interpolants
from genjax.data.images import load_digits
from genjax.losses import interpolant_loss
from genjax.nets import UNet, count_params, flops
from genjax.nets.stats import compiled_flops
from genjax.nets.unet import _num_groups, random_fourier_features

TINY = dict(channels=8, channel_mult=(1, 2), num_res_blocks=1)
ONE_LEVEL = dict(channels=8, channel_mult=(1,), num_res_blocks=1)  # no resampling: the cheapest net to compile
NUM_CLASSES = 3


def init_key(seed=0):
    return jax.random.key(seed, impl="rbg")


def spec(*shape, dtype=jnp.float32):
    return jax.ShapeDtypeStruct(shape, dtype)


def perturbed(params, seed, scale=0.1):
    """``params + scale · ε`` with one normal draw for all leaves: every layer, the zero-initialised ones included, non-zero."""
    flat, unravel = ravel_pytree(params)
    return unravel(flat + scale * jax.random.normal(jax.random.key(seed), flat.shape))


def batch(key, size=8, channels=1, n=4):
    kt, kx, kc = jax.random.split(jax.random.key(key), 3)
    return (jax.random.uniform(kt, (n,)), jax.random.normal(kx, (n, size, size, channels)),
            jax.random.randint(kc, (n,), 0, NUM_CLASSES))


@pytest.fixture(scope="module")
def net():
    return UNet(**ONE_LEVEL, attention_resolutions=(), num_classes=NUM_CLASSES, dropout=0.5)


@pytest.fixture(scope="module")
def params(net):
    return jax.jit(net.init)(init_key(), 0.5, jnp.zeros((8, 8, 1)))


@pytest.fixture(scope="module")
def noisy(params):
    return perturbed(params, 1)


@pytest.fixture(scope="module")
def apply(net):
    return jax.jit(net.apply)


# ----------------------------------------------------------------------------- shapes, per sample, labels, dropout


def test_output_has_the_input_shape_and_dtype_per_sample_and_batched(net, params):
    """Abstract evaluation: ``(H, W, C)`` → ``(H, W, C)`` and ``(N, H, W, C)`` → ``(N, H, W, C)``, in x's dtype."""
    for shape in [(8, 8, 1), (5, 8, 8, 1)]:
        for dtype in (jnp.float32, jnp.bfloat16):
            c = spec(*shape[:-3], dtype=jnp.int32)
            out = jax.eval_shape(net.apply, params, spec(*shape[:-3]), spec(*shape, dtype=dtype), c)
            assert (out.shape, out.dtype) == (shape, dtype)


def test_16x16x3_with_two_head_attention_per_sample_equals_batched():
    net = UNet(**TINY, attention_resolutions=(8,), num_heads=2, num_classes=NUM_CLASSES)
    shapes = jax.eval_shape(net.init, init_key(), 0.5, spec(16, 16, 3))
    params = perturbed(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes), 2)  # any params will do
    t, x, c = batch(3, 16, 3)
    per_sample, batched = jax.jit(lambda p: (jax.vmap(net.apply, in_axes=(None, 0, 0, 0))(p, t, x, c),
                                             net.apply(p, t, x, c)))(params)
    assert per_sample.shape == batched.shape == x.shape and per_sample.dtype == batched.dtype == x.dtype
    assert float(jnp.std(batched)) > 0.01  # a non-trivial output, so the comparison has content
    # The same program up to batching: equal to float32 summation-order differences.
    np.testing.assert_allclose(per_sample, batched, rtol=1e-5, atol=1e-5)


def test_zero_initialised_output_is_exactly_zero(params, apply):
    t, x, c = batch(4)
    np.testing.assert_array_equal(apply(params, t, x, c), 0.0)


def test_output_depends_on_the_label_and_none_is_the_null_class(net, noisy, apply):
    t, x, _ = batch(5)
    outs = [apply(noisy, t, x, jnp.full((4,), label)) for label in range(NUM_CLASSES + 1)]
    for a in range(len(outs)):
        for b in range(a):
            assert float(jnp.max(jnp.abs(outs[a] - outs[b]))) > 1e-3, (a, b)
    assert net.null_class == NUM_CLASSES
    np.testing.assert_array_equal(apply(noisy, t, x), outs[net.null_class])


def test_group_count_is_the_largest_divisor_of_the_channels_up_to_groups():
    assert [_num_groups(c, g) for c, g in [(64, 32), (48, 32), (8, 32), (8, 3), (7, 4)]] == [32, 24, 8, 2, 1]


def test_null_class_needs_a_class_embedding():
    with pytest.raises(ValueError, match="num_classes=None"):
        UNet(**TINY).null_class


def test_dropout_only_in_training_with_per_sample_keys_under_vmap(net, noisy, apply):
    """The trainer's form: ``net.apply(params, t, x, c, train=True, rngs={"dropout": key})`` per sample
    under ``vmap``.  Without ``train`` no rng is needed and the output is the evaluation output."""
    t, x, c = batch(6)
    same = (jnp.full((4,), t[0]), jnp.broadcast_to(x[0], x.shape), jnp.full((4,), c[0]))  # one input, 4 times
    keys = jax.random.split(jax.random.key(2), 4)
    keys = keys.at[1].set(keys[0])
    train = jax.jit(jax.vmap(lambda k, ti, xi, ci: net.apply(noisy, ti, xi, ci, train=True, rngs={"dropout": k})))
    out = train(keys, *same)
    np.testing.assert_array_equal(out[0], out[1])  # equal keys, equal masks
    assert float(jnp.max(jnp.abs(out[0] - out[2]))) > 1e-3  # different keys, different masks
    evaluated = apply(noisy, *same)
    assert float(jnp.max(jnp.abs(out[0] - evaluated[0]))) > 1e-3
    np.testing.assert_array_equal(evaluated[0], evaluated[3])


# ----------------------------------------------------------------------------- parameter counts


def conv(c_in, c_out, k=3):
    return k * k * c_in * c_out + c_out


def dense(c_in, c_out):
    return c_in * c_out + c_out


def norm(c):
    return 2 * c


def res_block(c_in, c_out, emb):
    """GN–conv, scale-shift Dense(emb → 2·c_out), GN–conv, and a 1×1 skip conv when the width changes."""
    skip = 0 if c_in == c_out else conv(c_in, c_out, 1)
    return norm(c_in) + conv(c_in, c_out) + dense(emb, 2 * c_out) + norm(c_out) + conv(c_out, c_out) + skip


def attention(c):
    return norm(c) + dense(c, 3 * c) + dense(c, c)  # = 4c² + 6c


def count(net):
    return count_params(jax.eval_shape(net.init, init_key(), 0.5, spec(8, 8, 1)))


def test_count_params_equals_a_hand_count(params):
    """8×8×1 input, channels 8, 3 classes (+ null), time embedding width 32 on 8 Fourier features."""
    emb = 32
    embeddings = dense(8, emb) + dense(emb, emb) + (NUM_CLASSES + 1) * emb  # time MLP; label table
    head = norm(8) + conv(8, 1)
    one_level = (  # the fixture's net
        embeddings + conv(1, 8)  # stem; skips: [8]
        + res_block(8, 8, emb)  # encoder; skips: [8, 8]
        + 2 * res_block(8, 8, emb) + attention(8)  # middle
        + 2 * res_block(8 + 8, 8, emb)  # decoder
        + head
    )
    two_levels = (  # channel_mult (1, 2)
        embeddings + conv(1, 8)  # stem; skips: [8]
        + res_block(8, 8, emb) + conv(8, 8)  # level 0 (8×8) and the stride-2 conv; skips: [8, 8, 8]
        + res_block(8, 16, emb)  # level 1 (4×4); skips: [8, 8, 8, 16]
        + 2 * res_block(16, 16, emb) + attention(16)  # middle
        + res_block(16 + 16, 16, emb) + res_block(16 + 8, 16, emb) + conv(16, 16)  # decoder level 1, upsampling conv
        + res_block(16 + 8, 8, emb) + res_block(8 + 8, 8, emb)  # decoder level 0
        + head
    )
    assert count_params(params) == one_level == 12_041
    assert count(UNet(**TINY, attention_resolutions=(), num_classes=NUM_CLASSES)) == two_levels == 45_169


def test_attention_at_a_resolution_adds_one_block_per_resnet_block_there():
    """At 8×8 (8 channels): one encoder and two decoder blocks get a one-head block of 4C² + 6C parameters."""
    base = UNet(**TINY, attention_resolutions=())
    assert attention(8) == 304
    assert count(base.clone(attention_resolutions=(8,))) - count(base) == 3 * attention(8)
    assert count(base.clone(attention_resolutions=(4,))) - count(base) == 3 * attention(16)
    assert count(base.clone(attention_resolutions=(8,), num_heads=4)) == count(base.clone(attention_resolutions=(8,)))


# ----------------------------------------------------------------------------- FLOP counts


def test_flops_are_xla_counts_of_multiply_adds():
    """XLA counts a multiply–add as 2 FLOPs: ``(m, k) @ (k, n)`` is 2mnk; a VALID conv is 2·N·Ho·Wo·Co·kh·kw·Ci.

    A SAME conv counts only the taps that fall inside the image: along a row of 8 outputs a
    3-tap kernel has 2 + 3·6 + 2 = 22 taps in bounds (not 8·3 = 24), so 22² per channel pair
    and image instead of 8²·9.
    """
    m, k, n = 3, 5, 7
    assert flops(jnp.matmul, jnp.ones((m, k)), jnp.ones((k, n))) == 2 * m * n * k
    layer = nn.Dense(n, use_bias=False)
    assert flops(layer.apply, layer.init(jax.random.key(0), jnp.ones((m, k))), jnp.ones((m, k))) == 2 * m * n * k

    def conv2d(padding):
        return lambda x, w: lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))

    x, w = jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32), jax.ShapeDtypeStruct((3, 3, 3, 4), jnp.float32)
    assert flops(conv2d("VALID"), x, w) == 2 * 2 * 6 * 6 * 4 * 3 * 3 * 3
    assert flops(conv2d("SAME"), x, w) == 2 * 2 * 4 * 3 * (2 + 3 * 6 + 2) ** 2


def test_flops_without_an_xla_count_is_an_error():
    class NoCount:
        def cost_analysis(self):
            return [{}]

    with pytest.raises(RuntimeError, match="reports no 'flops' entry"):
        compiled_flops(NoCount())


# ----------------------------------------------------------------------------- input errors


@pytest.mark.parametrize("t, x, c, match", [
    (0.5, spec(8, 8), None, "x must be an image"),
    (0.5, spec(8, 16, 1), None, "x must be square"),
    (0.5, spec(8, 8, 1, dtype=jnp.int32), None, "x must be a floating-point"),
    (spec(3), spec(2, 8, 8, 1), None, r"t must be a scalar or of shape \(2,\)"),
    (spec(2), spec(8, 8, 1), None, "t must be a scalar for x"),
    (0.5, spec(2, 8, 8, 1), spec(3, dtype=jnp.int32), r"c must hold integer class labels in 0..3"),
    (0.5, spec(8, 8, 1), spec(dtype=jnp.float32), "c must hold integer class labels"),
])
def test_bad_inputs_raise_naming_the_argument(net, t, x, c, match):
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(net.init, init_key(), t, x, c)


def test_bad_labels_and_configs_raise(net, params):
    with pytest.raises(ValueError, match="labels out of range"):
        net.apply(params, 0.5, jnp.zeros((8, 8, 1)), NUM_CLASSES + 1)
    x = spec(8, 8, 1)
    for bad, x, c, match in [
        (UNet(**TINY), spec(9, 9, 1), None, r"side divisible by 2\^\(len\(channel_mult\) - 1\) = 2"),
        (UNet(**TINY), x, 0, "c was given but the net has no class embedding"),
        (UNet(**TINY, attention_resolutions=(2,)), x, None, r"attention_resolutions \[2\] never occur"),
        (UNet(**TINY, attention_resolutions=(8,), num_heads=3), x, None, "num_heads=3 must divide the 8 channels"),
        (UNet(channels=8, channel_mult=()), x, None, "channel_mult must be a non-empty tuple"),
        (UNet(**TINY, dropout=1.0), x, None, r"dropout must lie in \[0, 1\)"),
    ]:
        with pytest.raises(ValueError, match=match):
            jax.eval_shape(bad.init, init_key(), 0.5, x, c)


def test_random_fourier_features_are_fixed_sinusoids():
    """``[sin 2πwt, cos 2πwt]`` with no gradient into the frequencies (they are not trained)."""
    w = jnp.array([0.5, 2.0])
    np.testing.assert_allclose(random_fourier_features(0.5, w), [1.0, 0.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_array_equal(jax.grad(lambda w: random_fourier_features(0.3, w).sum())(w), 0.0)
    shapes = jax.eval_shape(UNet(**TINY, fourier_scale=16.0).init, init_key(), 0.5, spec(8, 8, 1))
    assert shapes["params"]["fourier_frequencies"].shape == (4,)


# ----------------------------------------------------------------------------- mixed precision


def test_bfloat16_forward_and_gradient_agree_with_float32_and_stay_float32(net, noisy):
    """bfloat16 activations, float32 params, output and gradient (so optimizer state and EMA stay float32).

    bfloat16 keeps 8 significant bits (unit roundoff 2⁻⁸ ≈ 0.4%); the roundings of
    activations and weights through the net's ~15 layers leave a relative error of ~1%
    (measured: output 1.4%, gradient of ``mean ‖out − x‖²`` 0.5%), so the bound is 3%
    (8 unit roundoffs).  A float32 run of the same program differs by ~1e-7: the lower bound
    shows the bfloat16 path is really taken.  Perturbed params, so every layer matters.
    """
    net16 = net.clone(dtype=jnp.bfloat16)
    shapes = jax.eval_shape(net16.init, init_key(), 0.5, spec(8, 8, 1))
    assert {leaf.dtype for leaf in jax.tree.leaves(shapes)} == {jnp.dtype(jnp.float32)}
    t, x, c = batch(7, n=16)
    assert jax.eval_shape(net16.apply, noisy, t, x.astype(jnp.bfloat16), c).dtype == jnp.bfloat16

    def output_and_gradient(module):
        def loss(p):
            out = module.apply(p, t, x, c)
            return jnp.mean((out - x) ** 2), out

        (_, out), grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(noisy)
        return out, ravel_pytree(grad)[0], {leaf.dtype for leaf in jax.tree.leaves(grad)}

    out32, grad32, _ = output_and_gradient(net)
    out16, grad16, grad_dtypes = output_and_gradient(net16)
    assert out16.dtype == jnp.float32 and out16.shape == x.shape and grad_dtypes == {jnp.dtype(jnp.float32)}
    for a16, a32 in [(out16, out32), (grad16, grad32)]:
        relative = float(jnp.linalg.norm(a16 - a32) / jnp.linalg.norm(a32))
        assert 1e-4 < relative < 3e-2, relative


def digits():
    """The 8×8 digits scaled to [−1, 1]: ``2 (x + ½)/17 − 1`` (pixel-bin centres), float32."""
    train, test = load_digits()
    return [jnp.asarray(2 * (a + 0.5) / 17 - 1, jnp.float32) for a in (train, test[:128])]


def test_bfloat16_training_tracks_float32_training(net, params):
    """Flow matching on the digits for 100 steps, in float32 and in bfloat16 from the same init
    and keys (unconditional: the null class); both trained models are scored in float32 on the
    same held-out batch and key (two trainings of one compiled step each, ~25 s on 2 busy CPU cores).

    Tolerance 0.2% relative.  Measured with keys 1–4: bfloat16 lands within 0.004–0.04% of
    float32, while float32 runs with different keys differ by 0.25–1.45% (43.16, 43.45, 43.56,
    42.93; the untrained loss is 102): bfloat16 follows the float32 run far more closely than
    run-to-run noise.
    """
    train, held_out = digits()
    score = jax.jit(lambda p: jnp.mean(interpolant_loss(genjax.Model(net.apply, p), interpolants.linear, held_out,
                                                        jax.random.key(9), prediction="velocity")))
    losses = {}
    for dtype in (jnp.float32, jnp.bfloat16):
        state, _ = genjax.train_interpolant(
            net.clone(dtype=dtype).apply, params, interpolants.linear, train, key=jax.random.key(1),
            optimizer=optax.adam(3e-3), prediction="velocity", num_steps=100, batch_size=32, steps_per_call=1,
            progress=False)
        assert {leaf.dtype for leaf in jax.tree.leaves(state.opt_state)} <= {jnp.dtype(jnp.float32),
                                                                             jnp.dtype(jnp.int32)}
        losses[dtype] = float(score(state.params))
    untrained = float(score(params))
    assert losses[jnp.float32] < 0.5 * untrained
    np.testing.assert_allclose(losses[jnp.bfloat16], losses[jnp.float32], rtol=2e-3)
